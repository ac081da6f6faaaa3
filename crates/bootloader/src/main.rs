//! `domus-bootloader`: the sandboxed child of [`domus_bootloader::launch`]; not run by hand.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(domus_bootloader::child::main(&args));
}
