//! placeholder: replaced by the probe guest work.
fn main() {}
