//! `postlog queue list|show|retry|delete|flush`: the same requests whether the server runs
//! (answered by its scheduler, through the control socket) or not (on the store directly).

use std::time::Duration;

use super::scheduler::{Answer, Command};
use super::{Entry, Queue, QueueHandle, Status, now_unix};
use crate::control::{Request, Response};

/// Who answers queue requests.
pub enum Access {
    /// The running server's scheduler (the only writer of entries while it runs).
    Running(QueueHandle),
    /// No server runs: the store, opened by the command.
    Offline(Queue),
}

const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

fn ask<T>(handle: &QueueHandle, make: impl FnOnce(Answer<T>) -> Command) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    if !handle.scheduler.send(make(tx)) {
        return Err("the queue scheduler is not running (the server is stopping)".into());
    }
    rx.recv_timeout(ANSWER_TIMEOUT).map_err(|_| "the queue scheduler did not answer".to_string())
}

fn error(message: String) -> Response {
    Response::Error { message }
}

pub fn execute(access: &Access, request: Request) -> Response {
    let all = || -> Result<Vec<Entry>, String> {
        match access {
            Access::Running(h) => ask(h, Command::List),
            Access::Offline(q) => Ok(q.entries()),
        }
    };
    match request {
        Request::QueueList => match all() {
            Ok(entries) => Response::Queue { entries, detail: false },
            Err(e) => error(e),
        },
        Request::QueueShow { id } => match all() {
            Ok(entries) => match entries.into_iter().find(|e| e.id.eq_ignore_ascii_case(&id)) {
                Some(e) => Response::Queue { entries: vec![e], detail: true },
                None => error(format!("no queued message {id}")),
            },
            Err(e) => error(e),
        },
        Request::QueueRetry { id } => {
            let id = id.map(|i| i.to_ascii_uppercase());
            let n = match access {
                Access::Running(h) => ask(h, |tx| Command::Retry(id.clone(), tx)),
                Access::Offline(q) => {
                    let now = now_unix();
                    let mut n = 0;
                    for mut e in q.entries() {
                        if id.as_ref().is_some_and(|i| *i != e.id) {
                            continue;
                        }
                        e.next_attempt = now;
                        if let Err(err) = q.save(&e) {
                            return error(format!("saving {}: {err}", e.id));
                        }
                        n += 1;
                    }
                    Ok(n)
                }
            };
            match (n, id) {
                (Err(e), _) => error(e),
                (Ok(0), Some(id)) => error(format!("no queued message {id}")),
                (Ok(_), Some(id)) => Response::Done { message: format!("{id} will be attempted now") },
                (Ok(n), None) => Response::Done { message: format!("{n} queued messages will be attempted now") },
            }
        }
        Request::QueueDelete { id } => {
            let id = id.to_ascii_uppercase();
            let deleted = match access {
                Access::Running(h) => ask(h, |tx| Command::Delete(id.clone(), tx)).and_then(|r| r),
                Access::Offline(q) => match q.entry(&id) {
                    Some(e) => q.finish(&e, None).map(|_| true).map_err(|e| e.to_string()),
                    None => Ok(false),
                },
            };
            match deleted {
                Ok(true) => Response::Done { message: format!("deleted {id} (no bounce sent)") },
                Ok(false) => error(format!("no queued message {id}")),
                Err(e) => error(e),
            }
        }
        _ => error("not a queue request".into()),
    }
}

fn when(t: i64) -> String {
    crate::util::rfc5322_date(t)
}

/// Prints entries as `postlog queue list` (one line each) or `show` (everything).
pub fn print(entries: &[Entry], detail: bool) {
    if !detail {
        if entries.is_empty() {
            println!("the queue is empty");
        }
        for e in entries {
            let pending: Vec<&str> = e.pending().map(|r| r.address.as_str()).collect();
            println!(
                "{}\t{} bytes\t{}\t{}\t{} pending: {}\tnext attempt {}",
                e.id,
                e.size,
                when(e.arrived),
                e.sender_display(),
                pending.len(),
                pending.join(", "),
                when(e.next_attempt)
            );
        }
        return;
    }
    for e in entries {
        println!("id: {}", e.id);
        println!("from: {}", e.sender_display());
        println!("size: {} bytes", e.size);
        println!("arrived: {}", when(e.arrived));
        println!("expires: {}", when(e.expires));
        println!("attempts: {}", e.attempts);
        println!("next attempt: {}", when(e.next_attempt));
        if let Some(envid) = &e.envid {
            println!("envid: {envid}");
        }
        for r in &e.recipients {
            let status = match r.status {
                Status::Pending => "pending",
                Status::Delivered => "delivered",
                Status::Failed => "failed",
            };
            let code = r.code.as_deref().unwrap_or("-");
            let remote = r.remote.as_deref().unwrap_or("-");
            let said = r.diagnostic.as_deref().unwrap_or("not attempted yet");
            println!("recipient: {}\t{status}\t{code}\t{remote}\t{said}", r.address);
        }
    }
}
