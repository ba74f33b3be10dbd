//! `postlog dump`: everything in a store, as text for people or one JSON document for
//! scripts. Read-only: it works on a store a running server holds.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use serde::Serialize;

use postlog_engine::format::{Codec, SEGMENT_HEADER_LEN};
use postlog_engine::record::{BLOB_PREFIX_LEN, META_PREFIX_LEN, Record, kind};
use postlog_engine::state::State;

use crate::cli::DumpArgs;
use crate::config::Config;
use crate::inspect::{Corruption, load, snapshot_present};
use crate::logscan::{describe, scan_segment, segment_ids, tmp_files};
use crate::util::{CmdError, exit, flag_names, fmt_time, hex, special_use_names};

#[derive(Debug, Serialize)]
pub struct Dump {
    pub data_dir: String,
    pub recovery: RecoveryView,
    /// The store's zstd dictionaries (`dict-*.zdict`), by id.
    pub dictionaries: Vec<DictionaryView>,
    pub segments: Vec<SegmentView>,
    pub blobs: Vec<BlobView>,
    pub accounts: Vec<AccountView>,
}

#[derive(Debug, Serialize)]
pub struct RecoveryView {
    /// "clean", "torn-tail" or "corrupt".
    pub outcome: &'static str,
    /// "recovery", or "salvage" when recovery refuses the log.
    pub state_source: &'static str,
    pub snapshot_file: bool,
    pub snapshot_used: bool,
    pub snapshot_problem: Option<String>,
    pub records_replayed: u64,
    pub bytes_replayed: u64,
    pub torn_tail: Option<TornView>,
    pub corruption: Option<CorruptionView>,
    /// Temporary files recovery removes.
    pub leftover_files: Vec<String>,
    pub salvage_problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DictionaryView {
    pub id: u32,
    /// `0x8001`, as zstd tools and error messages show it.
    pub id_hex: String,
    pub file: String,
    /// Size of the file, header included.
    pub bytes: u64,
    /// Header and body checksums right and the body loads as a zstd dictionary.
    pub crc_ok: bool,
    pub problem: Option<String>,
    /// Blobs compressed with it (as their frame headers say).
    pub blobs: u64,
}

#[derive(Debug, Serialize)]
pub struct TornView {
    pub segment: u64,
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct CorruptionView {
    pub segment: u64,
    pub offset: u64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct SegmentView {
    pub id: u64,
    pub file: String,
    pub size: u64,
    pub header: Option<HeaderView>,
    pub header_error: Option<String>,
    pub records: Vec<RecordView>,
    pub damage: Vec<DamageView>,
    /// Offset just past the last readable record.
    pub end: u64,
    pub live_bytes: u64,
    pub dead_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct HeaderView {
    pub segment_id: u64,
    pub base_lsn: u64,
    pub created_unix: u64,
    pub created: String,
}

#[derive(Debug, Serialize)]
pub struct RecordView {
    pub offset: u64,
    pub lsn: u64,
    pub kind: u8,
    pub kind_name: &'static str,
    pub payload_len: u32,
    pub codec: &'static str,
    pub crc_ok: bool,
    pub account: u32,
    pub account_name: Option<String>,
    pub detail: Option<String>,
    pub decode_error: Option<String>,
    pub commit: Option<CommitView>,
}

#[derive(Debug, Serialize)]
pub struct CommitView {
    pub first_lsn: u64,
    pub count: u32,
    pub batch_seq: u64,
    pub batch_end: bool,
}

#[derive(Debug, Serialize)]
pub struct DamageView {
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct BlobView {
    pub id: u64,
    pub sha256: String,
    pub segment: u64,
    pub offset: u64,
    pub raw_size: u64,
    pub stored_size: u32,
    pub codec: &'static str,
    pub refcount: u32,
    pub meta: Option<LocView>,
}

#[derive(Debug, Serialize)]
pub struct LocView {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, Serialize)]
pub struct AccountView {
    pub id: u32,
    pub name: String,
    pub modseq: u64,
    pub message_count: u64,
    pub bytes: u64,
    /// The highest thread id given in the account.
    pub last_thread: u32,
    /// Threads with a message in the account.
    pub live_threads: usize,
    /// Links from message-id hashes to threads (some may be of dead threads, until swept).
    pub thread_links: usize,
    pub mailboxes: Vec<MailboxView>,
}

#[derive(Debug, Serialize)]
pub struct MailboxView {
    pub id: u32,
    pub name: String,
    pub special_use: Vec<String>,
    pub subscribed: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub message_count: usize,
    pub unseen: u32,
    pub bytes: u64,
    pub messages: Vec<MessageView>,
}

#[derive(Debug, Serialize)]
pub struct MessageView {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Vec<String>,
    pub keywords: Vec<String>,
    pub size: u64,
    /// Unix seconds.
    pub internal_date: i64,
    pub blob: u64,
    /// The thread id in the account (IMAP THREADID `T` + hex).
    pub thread: u32,
}

fn codec_name(c: u8) -> &'static str {
    Codec::from_u8(c).map_or("unknown", Codec::name)
}

/// Live bytes per segment: blob data and metadata still referenced, frames included (the
/// measure compaction uses).
pub fn live_bytes(state: &State) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for b in state.blobs.values().filter(|b| b.refs > 0) {
        *out.entry(b.data.segment).or_insert(0) += u64::from(b.data.len) + BLOB_PREFIX_LEN as u64 + 32;
        if let Some(m) = b.meta {
            *out.entry(m.segment).or_insert(0) += u64::from(m.len) + META_PREFIX_LEN as u64 + 32;
        }
    }
    out
}

/// Builds the whole dump.
pub fn build(config: &Config, args: &DumpArgs) -> Result<Dump, CmdError> {
    let backend = crate::reader::open_read_only(&config.data_dir)?;
    let io = |e: std::io::Error| CmdError::new(format!("cannot read {}: {e}", config.data_dir.display()));
    let loaded = load(&backend)?;
    let state = &loaded.state;

    // The selection.
    let (acc_filter, mb_filter) = match (&args.account, &args.mailbox) {
        (Some(a), _) => (Some(a.clone()), None),
        (None, Some(m)) => {
            let (a, n) = m.split_once('/').ok_or_else(|| {
                CmdError::new(format!("--mailbox {m:?}: give ACCOUNT/NAME, e.g. alice@example.org/INBOX"))
            })?;
            let n = postlog_engine::store::canonical_mailbox_name(n)
                .map_err(|e| CmdError::new(format!("--mailbox {m:?}: {e}")))?;
            (Some(a.to_string()), Some(n))
        }
        (None, None) => (None, None),
    };
    let acc_id = match &acc_filter {
        Some(name) => Some(
            *state
                .account_names
                .get(name)
                .ok_or_else(|| CmdError::new(format!("no account {name} in {}", config.data_dir.display())))?,
        ),
        None => None,
    };
    if let (Some(a), Some(n)) = (acc_id, &mb_filter)
        && state.account(a).and_then(|acc| acc.mailbox_by_name(n)).is_none()
    {
        return Err(CmdError::new(format!("no mailbox {n:?} in account {}", acc_filter.as_deref().unwrap_or(""))));
    }

    // Accounts.
    let mut accounts = Vec::new();
    let mut selected_blobs: HashSet<u64> = HashSet::new();
    for acc in state.accounts.values() {
        if acc_id.is_some_and(|id| id != acc.id) {
            continue;
        }
        let mut mailboxes = Vec::new();
        for mb in acc.by_name.values().filter_map(|id| acc.mailboxes.get(id)) {
            if mb_filter.as_ref().is_some_and(|n| *n != mb.name) {
                continue;
            }
            let messages = mb
                .messages
                .iter()
                .map(|m| {
                    selected_blobs.insert(m.blob);
                    MessageView {
                        uid: m.uid,
                        modseq: m.modseq,
                        flags: flag_names(m.flags),
                        keywords: mb.keyword_names(m.keywords),
                        size: m.size,
                        internal_date: m.internal_date,
                        blob: m.blob,
                        thread: m.thread,
                    }
                })
                .collect();
            mailboxes.push(MailboxView {
                id: mb.id,
                name: mb.name.clone(),
                special_use: special_use_names(mb.special_use),
                subscribed: acc.subscriptions.contains(&mb.name),
                uidvalidity: mb.uidvalidity,
                uidnext: mb.uidnext,
                highest_modseq: mb.highest_modseq,
                message_count: mb.messages.len(),
                unseen: mb.unseen,
                bytes: mb.bytes,
                messages,
            });
        }
        accounts.push(AccountView {
            id: acc.id,
            name: acc.name.clone(),
            modseq: acc.modseq,
            message_count: acc.messages,
            bytes: acc.bytes,
            last_thread: acc.threads.last,
            live_threads: acc.threads.live_count(),
            thread_links: acc.threads.links.len(),
            mailboxes,
        });
    }

    // Segments.
    let live = live_bytes(state);
    let mut segments = Vec::new();
    for id in segment_ids(&backend).map_err(io)? {
        if args.segment.is_some_and(|s| s != id) {
            continue;
        }
        let scan = scan_segment(&backend, id).map_err(io)?;
        let records = scan
            .records
            .iter()
            .filter(|r| acc_id.is_none_or(|a| r.frame.account == a))
            .map(|r| {
                let commit = match &r.decoded {
                    Ok(Record::Commit { first_lsn, count, batch_seq, batch_end }) => Some(CommitView {
                        first_lsn: *first_lsn,
                        count: *count,
                        batch_seq: *batch_seq,
                        batch_end: *batch_end,
                    }),
                    _ => None,
                };
                RecordView {
                    offset: r.offset,
                    lsn: r.frame.lsn,
                    kind: r.frame.kind,
                    kind_name: kind::name(r.frame.kind),
                    payload_len: r.frame.payload_len,
                    codec: codec_name(r.frame.codec),
                    crc_ok: r.crc_ok,
                    account: r.frame.account,
                    account_name: state.account(r.frame.account).map(|a| a.name.clone()),
                    detail: r.decoded.as_ref().ok().map(describe),
                    decode_error: r.decoded.as_ref().err().cloned(),
                    commit,
                }
            })
            .collect();
        let live_here = live.get(&id).copied().unwrap_or(0);
        let used = scan.end.saturating_sub(SEGMENT_HEADER_LEN as u64);
        segments.push(SegmentView {
            id,
            file: scan.file.clone(),
            size: scan.size,
            header: scan.header.as_ref().ok().map(|h| HeaderView {
                segment_id: h.segment_id,
                base_lsn: h.base_lsn,
                created_unix: h.created_unix,
                created: fmt_time(h.created_unix as i64),
            }),
            header_error: scan.header.as_ref().err().cloned(),
            records,
            damage: scan
                .damage
                .iter()
                .map(|d| DamageView { offset: d.offset, len: d.len, reason: d.reason.clone() })
                .collect(),
            end: scan.end,
            live_bytes: live_here,
            dead_bytes: used.saturating_sub(live_here),
        });
    }

    // Blobs.
    let mut blob_ids: Vec<&u64> = state.blobs.keys().collect();
    blob_ids.sort_unstable();
    let blobs = blob_ids
        .into_iter()
        .map(|id| (*id, &state.blobs[id]))
        .filter(|(id, b)| {
            args.segment.is_none_or(|s| b.data.segment == s) && (acc_id.is_none() || selected_blobs.contains(id))
        })
        .map(|(id, b)| BlobView {
            id,
            sha256: hex(&b.hash),
            segment: b.data.segment,
            offset: b.data.offset,
            raw_size: b.raw_len,
            stored_size: b.data.len,
            codec: codec_name(b.codec),
            refcount: b.refs,
            meta: b.meta.map(|m| LocView { segment: m.segment, offset: m.offset, len: m.len }),
        })
        .collect();

    // Dictionaries, and the blobs naming each (one read of each codec-2 blob's frame header).
    let mut users: BTreeMap<u32, u64> = BTreeMap::new();
    for b in state.blobs.values().filter(|b| b.codec == Codec::ZstdDict as u8) {
        if let Ok(data) = postlog_engine::read::read_data(&loaded.segments, b.data, BLOB_PREFIX_LEN)
            && let Some(id) = postlog_engine::dict::frame_dict_id(&data)
        {
            *users.entry(id).or_insert(0) += 1;
        }
    }
    let mut dictionaries: Vec<DictionaryView> = loaded
        .segments
        .dictionaries()
        .files()
        .into_iter()
        .map(|f| DictionaryView {
            id: f.id,
            id_hex: format!("{:#x}", f.id),
            file: f.name,
            bytes: f.file_bytes,
            crc_ok: f.problem.is_none(),
            problem: f.problem,
            blobs: users.remove(&f.id).unwrap_or(0),
        })
        .collect();
    // Named by blobs, but without a file.
    for (id, blobs) in users {
        dictionaries.push(DictionaryView {
            id,
            id_hex: format!("{id:#x}"),
            file: postlog_engine::dict::dict_file_name(id),
            bytes: 0,
            crc_ok: false,
            problem: Some("the file is missing".into()),
            blobs,
        });
    }

    let report = loaded.report.clone().unwrap_or_default();
    let outcome = match (&loaded.corruption, report.torn_cut) {
        (Some(_), _) => "corrupt",
        (None, Some(_)) => "torn-tail",
        (None, None) => "clean",
    };
    let recovery = RecoveryView {
        outcome,
        state_source: if loaded.corruption.is_some() { "salvage" } else { "recovery" },
        snapshot_file: snapshot_present(&backend),
        snapshot_used: report.snapshot_used,
        snapshot_problem: report.snapshot_problem.clone(),
        records_replayed: report.records_replayed,
        bytes_replayed: report.bytes_replayed,
        torn_tail: report.torn_cut.map(|(segment, offset, bytes)| TornView { segment, offset, bytes }),
        corruption: loaded.corruption.as_ref().map(|Corruption { segment, offset, reason }| CorruptionView {
            segment: *segment,
            offset: *offset,
            reason: reason.clone(),
        }),
        leftover_files: tmp_files(&backend).map_err(io)?,
        salvage_problems: loaded.salvage_problems.clone(),
    };
    Ok(Dump { data_dir: config.data_dir.display().to_string(), recovery, dictionaries, segments, blobs, accounts })
}

pub fn run(config: &Config, args: &DumpArgs) -> Result<i32, CmdError> {
    let dump = build(config, args)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let res = if args.json {
        serde_json::to_writer(&mut out, &dump).map_err(std::io::Error::other).and_then(|()| writeln!(out))
    } else {
        write_text(&mut out, &dump)
    };
    match res.and_then(|()| out.flush()) {
        Ok(()) => Ok(exit::OK),
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(CmdError::new(format!("writing the dump: {e}"))),
    }
}

fn write_text(out: &mut impl Write, d: &Dump) -> std::io::Result<()> {
    let r = &d.recovery;
    writeln!(out, "store {}", d.data_dir)?;
    writeln!(
        out,
        "recovery: {} (state from {}); snapshot {}{}; {} records replayed ({} bytes)",
        r.outcome,
        r.state_source,
        if r.snapshot_used {
            "used"
        } else if r.snapshot_file {
            "present but not used"
        } else {
            "absent"
        },
        r.snapshot_problem.as_ref().filter(|_| r.snapshot_file).map(|p| format!(" ({p})")).unwrap_or_default(),
        r.records_replayed,
        r.bytes_replayed
    )?;
    if let Some(t) = &r.torn_tail {
        writeln!(
            out,
            "  torn tail: recovery would cut {} bytes of segment {} from offset {}",
            t.bytes, t.segment, t.offset
        )?;
    }
    if let Some(c) = &r.corruption {
        writeln!(out, "  CORRUPT: segment {} offset {}: {}", c.segment, c.offset, c.reason)?;
    }
    for f in &r.leftover_files {
        writeln!(out, "  leftover file {f} (recovery removes it)")?;
    }
    for p in &r.salvage_problems {
        writeln!(out, "  salvage: {p}")?;
    }
    if !d.dictionaries.is_empty() {
        writeln!(out)?;
    }
    for x in &d.dictionaries {
        writeln!(
            out,
            "dictionary {} ({}): {} bytes, {}; {} blobs",
            x.id_hex,
            x.file,
            x.bytes,
            match &x.problem {
                None => "crc ok".to_string(),
                Some(p) => format!("UNUSABLE: {p}"),
            },
            x.blobs
        )?;
    }
    for s in &d.segments {
        writeln!(out)?;
        match &s.header {
            Some(h) => writeln!(
                out,
                "segment {} ({}): base LSN {}, created {}, {} bytes, records end at {}; live {} bytes, dead {} bytes",
                s.id, s.file, h.base_lsn, h.created, s.size, s.end, s.live_bytes, s.dead_bytes
            )?,
            None => writeln!(
                out,
                "segment {} ({}): HEADER UNREADABLE ({}), {} bytes; live {} bytes, dead {} bytes",
                s.id,
                s.file,
                s.header_error.as_deref().unwrap_or("?"),
                s.size,
                s.live_bytes,
                s.dead_bytes
            )?,
        }
        let mut damage = s.damage.iter().peekable();
        for rec in &s.records {
            while let Some(dm) = damage.next_if(|dm| dm.offset < rec.offset) {
                writeln!(out, "  {:>10}  DAMAGE {} bytes: {}", dm.offset, dm.len, dm.reason)?;
            }
            if let Some(c) = &rec.commit {
                writeln!(
                    out,
                    "  {:>10}  LSN {:<8} commit  LSNs {}..{} ({} records) batch {}{}{}",
                    rec.offset,
                    rec.lsn,
                    c.first_lsn,
                    (c.first_lsn + u64::from(c.count)).saturating_sub(1),
                    c.count,
                    c.batch_seq,
                    if c.batch_end { " end" } else { "" },
                    if rec.crc_ok { "" } else { " CRC BAD" }
                )?;
                continue;
            }
            let account = match (&rec.account_name, rec.account) {
                (_, 0) => String::new(),
                (Some(n), a) => format!(" account {a} ({n})"),
                (None, a) => format!(" account {a}"),
            };
            writeln!(
                out,
                "  {:>10}  LSN {:<8} {:<14} {:>8} B {:<4} crc {}{}  {}",
                rec.offset,
                rec.lsn,
                rec.kind_name,
                rec.payload_len,
                rec.codec,
                if rec.crc_ok { "ok" } else { "BAD" },
                account,
                rec.detail
                    .clone()
                    .or_else(|| rec.decode_error.as_ref().map(|e| format!("DOES NOT DECODE: {e}")))
                    .unwrap_or_default()
            )?;
        }
        for dm in damage {
            writeln!(out, "  {:>10}  DAMAGE {} bytes: {}", dm.offset, dm.len, dm.reason)?;
        }
    }
    writeln!(out)?;
    writeln!(out, "blobs: {}", d.blobs.len())?;
    for b in &d.blobs {
        writeln!(
            out,
            "  blob {:<6} sha256 {} segment {} offset {} raw {} stored {} {} refs {}",
            b.id, b.sha256, b.segment, b.offset, b.raw_size, b.stored_size, b.codec, b.refcount
        )?;
    }
    for a in &d.accounts {
        writeln!(out)?;
        writeln!(
            out,
            "account {} {}: modseq {}, {} messages, {} bytes; {} threads (last id {}), {} thread links",
            a.id, a.name, a.modseq, a.message_count, a.bytes, a.live_threads, a.last_thread, a.thread_links
        )?;
        for m in &a.mailboxes {
            writeln!(
                out,
                "  mailbox {} {:?}{}{}: UIDVALIDITY {} UIDNEXT {} HIGHESTMODSEQ {}, {} messages ({} unseen), {} bytes",
                m.id,
                m.name,
                if m.special_use.is_empty() { String::new() } else { format!(" {}", m.special_use.join(" ")) },
                if m.subscribed { " subscribed" } else { "" },
                m.uidvalidity,
                m.uidnext,
                m.highest_modseq,
                m.message_count,
                m.unseen,
                m.bytes
            )?;
            for msg in &m.messages {
                let mut flags = msg.flags.clone();
                flags.extend(msg.keywords.iter().cloned());
                writeln!(
                    out,
                    "    UID {:<6} MODSEQ {:<6} ({}) {} bytes, {} blob {} thread {}",
                    msg.uid,
                    msg.modseq,
                    flags.join(" "),
                    msg.size,
                    fmt_time(msg.internal_date),
                    msg.blob,
                    msg.thread
                )?;
            }
        }
    }
    Ok(())
}
