//! `postlog serve`: until the network front ends exist, open (and recover) the store, say
//! what recovery did, hold the store until SIGTERM or SIGINT, then close it cleanly.

use postlog_engine::{Options, Store};

use crate::config::Config;
use crate::util::{CmdError, exit};

pub fn run(config: &Config) -> Result<i32, CmdError> {
    // Block the signals before any thread exists (threads inherit the mask), so that they
    // are only ever taken by `sigwait` below, never by their default action.
    let signals =
        signals::block_term_and_int().map_err(|e| CmdError::new(format!("cannot set up signal handling: {e}")))?;
    let dir = &config.data_dir;
    let store = Store::open(dir, Options::default()).map_err(|e| CmdError::new(e.to_string()))?;
    let r = store.recovery_report();
    let accounts = store.accounts();
    let messages: u64 = accounts.iter().filter_map(|(id, _)| store.usage(*id)).map(|u| u.messages).sum();
    let torn = match r.torn_cut {
        Some((seg, off, bytes)) => format!("cut {bytes} bytes of a torn final batch in segment {seg} at offset {off}"),
        None => "no torn tail".into(),
    };
    let snapshot = if r.snapshot_used {
        "snapshot used".to_string()
    } else {
        format!("no snapshot used ({})", r.snapshot_problem.as_deref().unwrap_or("none"))
    };
    let removed =
        if r.removed_files.is_empty() { String::new() } else { format!(", removed {}", r.removed_files.join(" ")) };
    tracing::info!(
        "store open in {}: {snapshot}, replayed {} records ({} bytes), {torn}{removed}; {} accounts, {messages} \
         messages; hostname {}; waiting for SIGTERM or SIGINT",
        dir.display(),
        r.records_replayed,
        r.bytes_replayed,
        accounts.len(),
        config.hostname,
    );
    let sig = signals::wait(&signals);
    tracing::info!("received {}, closing the store", signals::name(sig));
    match store.close() {
        Ok(()) => {
            tracing::info!("store closed cleanly (snapshot written)");
            Ok(exit::OK)
        }
        Err(e) => Err(CmdError { code: exit::FINDINGS, message: format!("closing the store failed: {e}") }),
    }
}

/// Synchronous signal handling with a blocked mask and `sigwait`: no handler runs
/// asynchronously, so nothing here needs to be async-signal-safe.
#[allow(unsafe_code)]
mod signals {
    use std::io;

    pub struct Set(libc::sigset_t);

    /// Blocks SIGTERM and SIGINT in the calling thread (and threads it starts later).
    pub fn block_term_and_int() -> io::Result<Set> {
        // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own; pthread_sigmask
        // reads it and changes only this thread's mask. No memory outlives the calls.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(Set(set))
        }
    }

    /// Waits until one of the blocked signals arrives and returns it.
    pub fn wait(set: &Set) -> i32 {
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the initialised set and writes one int we own.
            let rc = unsafe { libc::sigwait(&set.0, &mut sig) };
            if rc == 0 {
                return sig;
            }
        }
    }

    pub fn name(sig: i32) -> &'static str {
        match sig {
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            _ => "a signal",
        }
    }
}
