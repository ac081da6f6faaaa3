//! placeholder: replaced by the domus-vmm work.
fn main() {}
