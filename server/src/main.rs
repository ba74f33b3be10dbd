//! The `postlog` binary. All logic lives in the library (`postlog_server::cli`).

/// mimalloc instead of glibc's malloc: an append allocates many small, short-lived values
/// (parsed header fields, records, replies), and glibc's allocator was ~15% of the CPU of a
/// 16-writer append run; mimalloc took 7–10% off the CPU per append (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    postlog_server::cli::main()
}
