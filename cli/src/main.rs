//! The `p2pa` binary; everything it does is in the library (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    p2pa_cli::main()
}
