//! Postlog's IMAP command parser against imap-codec 1.0 on arbitrary bytes taken as one whole
//! command (`postlog_imap_oracle::compare`): both must accept with the same essentials (tag,
//! command name, the arguments of the commands a server acts on) or both reject, except where
//! `postlog_imap_oracle::ALLOWED` lists the difference with its RFC reason. Neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postlog_imap_oracle::{Verdict, compare};

fuzz_target!(|data: &[u8]| {
    if let Verdict::Disagree { ours, theirs } = compare(data) {
        panic!("the parsers disagree on {}\n  ours:   {ours:?}\n  theirs: {theirs:?}", data.escape_ascii());
    }
});
