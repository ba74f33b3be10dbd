//! The `postlog` binary. All logic lives in the library (`postlog_server::cli`).

fn main() -> std::process::ExitCode {
    postlog_server::cli::main()
}
