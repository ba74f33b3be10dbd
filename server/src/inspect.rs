//! The state the read-only tools work from: what recovery (read-only) gives, or, when
//! recovery refuses a damaged log, what the engine's salvage still reads.

use std::sync::Arc;

use postlog_engine::OpenError;
use postlog_engine::backend::FileBackend;
use postlog_engine::log::Segments;
use postlog_engine::recovery::{RecoveryReport, recover};
use postlog_engine::state::State;

use crate::util::CmdError;

/// Where recovery found the log corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub segment: u64,
    pub offset: u64,
    pub reason: String,
}

pub struct Loaded {
    pub state: State,
    pub segments: Arc<Segments>,
    /// What recovery did (would do), when it accepted the log.
    pub report: Option<RecoveryReport>,
    /// Why recovery refused the log; then `state` comes from salvage.
    pub corruption: Option<Corruption>,
    pub salvage_problems: Vec<String>,
    /// Messages salvage dropped: (account, mailbox, uid).
    pub lost_messages: Vec<(u32, u32, u32)>,
}

/// Recovers read-only; on corruption falls back to salvage. Fails only when the directory
/// cannot be read at all.
pub fn load(backend: &FileBackend) -> Result<Loaded, CmdError> {
    match recover(backend, true) {
        Ok(rec) => Ok(Loaded {
            state: rec.state,
            segments: rec.segments,
            report: Some(rec.report),
            corruption: None,
            salvage_problems: Vec::new(),
            lost_messages: Vec::new(),
        }),
        Err(OpenError::Corrupt { segment, offset, reason }) => {
            let s = postlog_engine::salvage::salvage(backend);
            Ok(Loaded {
                state: s.state,
                segments: s.segments,
                report: None,
                corruption: Some(Corruption { segment, offset, reason }),
                salvage_problems: s.problems.iter().map(|p| p.to_string()).collect(),
                lost_messages: s.lost_messages,
            })
        }
        Err(e) => Err(CmdError::new(e.to_string())),
    }
}

/// Whether the directory holds a snapshot file.
pub fn snapshot_present(backend: &FileBackend) -> bool {
    use postlog_engine::backend::Backend;
    backend.list().is_ok_and(|l| l.iter().any(|n| n == postlog_engine::snapshot::SNAPSHOT_FILE))
}
