//! placeholder: replaced by the toolstack work.
fn main() {}
