//! The `daemonic` command; everything is in [`daemonic::cli`].

fn main() -> std::process::ExitCode {
    daemonic::cli::main()
}
