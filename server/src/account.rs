//! `postlog account add|list`.

use postlog_engine::{Store, special_use};

use crate::config::Config;
use crate::util::{CmdError, exit, human_bytes, validate_address};

/// The mailboxes every new account gets besides INBOX.
pub const DEFAULT_MAILBOXES: [(&str, u8); 5] = [
    ("Drafts", special_use::DRAFTS),
    ("Sent", special_use::SENT),
    ("Junk", special_use::JUNK),
    ("Trash", special_use::TRASH),
    ("Archive", special_use::ARCHIVE),
];

/// Opens the store for writing (takes its lock). Commands compress bodies before their
/// commit whatever `store.compression` says: a command ends before a background thread would
/// have run (`serve` is where background compression pays).
pub fn open_store(config: &Config) -> Result<Store, CmdError> {
    let options =
        postlog_engine::Options { compression: postlog_engine::Compression::Inline, ..config.store_options() };
    Store::open(&config.data_dir, options).map_err(|e| match e {
        postlog_engine::OpenError::Locked { .. } => CmdError::new(format!("{e}; stop the server first")),
        e => CmdError::new(e.to_string()),
    })
}

pub fn add(config: &Config, address: &str) -> Result<i32, CmdError> {
    validate_address(address)?;
    let store = open_store(config)?;
    let id = store.create_account(address, &DEFAULT_MAILBOXES).map_err(|e| CmdError::new(e.to_string()))?;
    store.close().map_err(|e| CmdError::new(format!("closing the store: {e}")))?;
    println!("created account {address} (id {id})");
    Ok(exit::OK)
}

pub fn list(config: &Config) -> Result<i32, CmdError> {
    let backend = crate::reader::open_read_only(&config.data_dir)?;
    let rec = postlog_engine::recovery::recover(&backend, true).map_err(|e| CmdError::new(e.to_string()))?;
    for acc in rec.state.accounts.values() {
        println!(
            "{}\tid {}\t{} mailboxes\t{} messages\t{}",
            acc.name,
            acc.id,
            acc.mailboxes.len(),
            acc.messages,
            human_bytes(acc.bytes)
        );
    }
    Ok(exit::OK)
}
