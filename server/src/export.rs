//! `postlog export`: every mailbox of an account as a Maildir++ tree, with flags, keywords
//! and internal dates. Read-only on the store (works while a server runs). From a damaged
//! store it exports what the engine's salvage still reads, and skips (and reports) every
//! message it cannot read.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ExportArgs;
use crate::config::Config;
use crate::inspect::load;
use crate::mailfmt::{MailMessage, MaildirWriter};
use crate::reader::read_body;
use crate::util::{CmdError, exit, flag_names, human_bytes};

pub fn run(config: &Config, args: &ExportArgs) -> Result<i32, CmdError> {
    let backend = crate::reader::open_read_only(&config.data_dir)?;
    let loaded = load(&backend)?;
    if let Some(c) = &loaded.corruption {
        eprintln!(
            "postlog export: the log is corrupt in segment {} at offset {}: {}; exporting what salvage can read",
            c.segment, c.offset, c.reason
        );
        for p in &loaded.salvage_problems {
            eprintln!("postlog export: salvage: {p}");
        }
    }
    let state = &loaded.state;
    let acc = state
        .account_names
        .get(&args.account)
        .and_then(|id| state.account(*id))
        .ok_or_else(|| CmdError::new(format!("no account {} in {}", args.account, config.data_dir.display())))?;
    let mut skipped = 0u64;
    for (a, m, uid) in loaded.lost_messages.iter().filter(|(a, _, _)| *a == acc.id) {
        let _ = a;
        eprintln!("postlog export: skipped mailbox {m} UID {uid}: unreadable in the damaged log");
        skipped += 1;
    }
    let mut writer = MaildirWriter::create(&args.maildir).map_err(|e| CmdError::new(e.to_string()))?;
    let total: u64 = acc.mailboxes.values().map(|m| m.messages.len() as u64).sum();
    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(total) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut exported, mut bytes, mut mailboxes) = (0u64, 0u64, 0u64);
    for mb in acc.by_name.values().filter_map(|id| acc.mailboxes.get(id)) {
        if let Err(e) = writer.create_folder(&mb.name) {
            bar.suspend(|| {
                eprintln!("postlog export: skipped mailbox {:?} ({} messages): {e}", mb.name, mb.messages.len())
            });
            skipped += mb.messages.len() as u64;
            bar.inc(mb.messages.len() as u64);
            continue;
        }
        mailboxes += 1;
        for m in &mb.messages {
            bar.inc(1);
            let skip =
                |why: String| bar.suspend(|| eprintln!("postlog export: skipped {:?} UID {}: {why}", mb.name, m.uid));
            let Some(blob) = state.blobs.get(&m.blob) else {
                skip(format!("its blob {} is missing", m.blob));
                skipped += 1;
                continue;
            };
            let body = match read_body(&loaded.segments, blob) {
                Ok(b) => b,
                Err(e) => {
                    skip(e.to_string());
                    skipped += 1;
                    continue;
                }
            };
            let msg = MailMessage {
                folder: mb.name.clone(),
                flags: flag_names(m.flags),
                keywords: mb.keyword_names(m.keywords),
                internal_date: m.internal_date,
                bytes: body,
            };
            match writer.append(&msg) {
                Ok(w) => {
                    if !w.dropped_keywords.is_empty() {
                        bar.suspend(|| {
                            eprintln!(
                                "postlog export: {:?} UID {}: keywords not writable in Maildir: {:?}",
                                mb.name, m.uid, w.dropped_keywords
                            )
                        });
                    }
                    exported += 1;
                    bytes += msg.bytes.len() as u64;
                }
                Err(e) => {
                    skip(e.to_string());
                    skipped += 1;
                }
            }
        }
    }
    bar.finish_and_clear();
    writer.finish().map_err(|e| CmdError::new(e.to_string()))?;
    println!(
        "exported {exported} messages ({}) from {mailboxes} mailboxes of {} into {}; {skipped} skipped",
        human_bytes(bytes),
        args.account,
        args.maildir.display()
    );
    Ok(if skipped == 0 && loaded.corruption.is_none() { exit::OK } else { exit::FINDINGS })
}
