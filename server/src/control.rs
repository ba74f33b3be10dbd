//! The control channel: `postlog domain|user|alias ...` work whether or not the server runs.
//!
//! ```text
//!  postlog user add ──► Store::open(data_dir) ── ok ──────► execute(&Directory, Request) ──► Response
//!                                  │ Locked (a server holds the store)        ▲
//!                                  ▼                                          │
//!                       <data_dir>/control.sock ── one JSON line ──► server thread
//!                                               ◄── one JSON line ──
//! ```
//! Both paths run [`execute`], so a command means the same either way, and a running server
//! sees the change as soon as it is durable. The socket is mode 0600 in the data directory:
//! only the server's user (and root) may connect. Passwords never cross it: the command hashes
//! them itself and sends [`Credentials`].
//!
//! Protocol: one request per line, one response per line, JSON (shapes: [`Request`],
//! [`Response`]); several requests may follow each other on one connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use postlog_engine::{OpenError, Options, Store};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::directory::{AliasDeletion, AliasEntry, Credentials, Directory, DomainEntry, UserEntry};
use crate::util::{CmdError, exit, human_bytes};

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request line taken.
const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// Connections served at once; more are told to retry.
const MAX_CONNECTIONS: usize = 8;
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// A directory command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    DomainAdd {
        domain: String,
    },
    DomainDel {
        domain: String,
        force: bool,
    },
    DomainList,
    UserAdd {
        address: String,
        credentials: Credentials,
    },
    UserDel {
        address: String,
    },
    UserPasswd {
        address: String,
        credentials: Credentials,
    },
    UserList {
        domain: Option<String>,
    },
    /// `quota_bytes`: `None` for the configured default, 0 for unlimited.
    UserQuota {
        address: String,
        quota_bytes: Option<u64>,
    },
    AliasAdd {
        source: String,
        targets: Vec<String>,
    },
    /// No targets: the whole alias.
    AliasDel {
        source: String,
        targets: Vec<String>,
    },
    AliasList {
        domain: Option<String>,
    },
    /// Makes (or replaces) the DKIM key of a local domain.
    DkimGenerate {
        domain: String,
        selector: String,
        algorithm: String,
    },
    DkimShow {
        domain: String,
    },
    DkimList,
    DkimDelete {
        domain: String,
    },
    QueueList,
    QueueShow {
        id: String,
    },
    /// `None`: every entry (`postlog queue flush`).
    QueueRetry {
        id: Option<String>,
    },
    QueueDelete {
        id: String,
    },
}

impl Request {
    fn is_queue(&self) -> bool {
        matches!(
            self,
            Request::QueueList | Request::QueueShow { .. } | Request::QueueRetry { .. } | Request::QueueDelete { .. }
        )
    }
}

/// What `postlog dkim` shows of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimPublic {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    /// The TXT record to publish.
    pub record: String,
}

impl From<&crate::dkim::DkimKey> for DkimPublic {
    fn from(k: &crate::dkim::DkimKey) -> Self {
        DkimPublic {
            domain: k.domain.clone(),
            selector: k.selector.clone(),
            algorithm: k.algorithm.clone(),
            record: k.txt_record(),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// Done; `message` says what was done.
    Done {
        message: String,
    },
    Domains {
        domains: Vec<DomainEntry>,
    },
    Users {
        users: Vec<UserEntry>,
    },
    Aliases {
        aliases: Vec<AliasEntry>,
    },
    /// DKIM keys: their DNS records (never the private keys).
    Dkim {
        keys: Vec<DkimPublic>,
    },
    /// Queue entries; `detail`: one entry in full (`postlog queue show`).
    Queue {
        entries: Vec<crate::queue::Entry>,
        detail: bool,
    },
    /// Nothing was done (unless the message says otherwise); `message` says why.
    Error {
        message: String,
    },
}

/// Runs a request against the directory: the same function for the command line (store
/// opened directly) and for the running server (over the socket).
pub fn execute(directory: &Directory, request: Request) -> Response {
    let done = |message: String| {
        tracing::info!("directory: {message}");
        Response::Done { message }
    };
    let result = match request {
        Request::DomainAdd { domain } => directory.add_domain(&domain).map(|d| done(format!("added the domain {d}"))),
        Request::DomainDel { domain, force } => directory.delete_domain(&domain, force).map(|gone| {
            let mut message = format!("deleted the domain {}", domain.to_ascii_lowercase());
            if !gone.users.is_empty() {
                message += &format!(", its users {} (with their mail)", gone.users.join(", "));
            }
            if !gone.aliases.is_empty() {
                message += &format!(", its aliases {}", gone.aliases.join(", "));
            }
            done(message)
        }),
        Request::DomainList => directory.domains().map(|domains| Response::Domains { domains }),
        Request::UserAdd { address, credentials } => directory
            .add_user(&address, &credentials)
            .map(|u| done(format!("added the user {} (account {})", u.address, u.account))),
        Request::UserDel { address } => {
            directory.delete_user(&address).map(|()| done(format!("deleted the user {address} and all its mail")))
        }
        Request::UserPasswd { address, credentials } => directory
            .set_credentials(&address, &credentials)
            .map(|()| done(format!("changed the password of {address}"))),
        Request::UserList { domain } => directory.users(domain.as_deref()).map(|users| Response::Users { users }),
        Request::UserQuota { address, quota_bytes } => directory.set_quota(&address, quota_bytes).map(|()| {
            done(match quota_bytes {
                None => format!("the quota of {address} follows the configured default"),
                Some(0) => format!("the quota of {address} is unlimited"),
                Some(n) => format!("the quota of {address} is {} ({n} bytes)", human_bytes(n)),
            })
        }),
        Request::AliasAdd { source, targets } => directory
            .add_alias(&source, &targets)
            .map(|a| done(format!("the alias {} delivers to {}", a.source, a.targets.join(", ")))),
        Request::AliasDel { source, targets } => directory.delete_alias(&source, &targets).map(|d| match d {
            AliasDeletion::Deleted => done(format!("deleted the alias {source}")),
            AliasDeletion::Remaining(rest) => done(format!("the alias {source} now delivers to {}", rest.join(", "))),
        }),
        Request::AliasList { domain } => {
            directory.aliases(domain.as_deref()).map(|aliases| Response::Aliases { aliases })
        }
        Request::QueueList | Request::QueueShow { .. } | Request::QueueRetry { .. } | Request::QueueDelete { .. } => {
            return Response::Error { message: "queue requests are answered by the queue".into() };
        }
        Request::DkimGenerate { domain, selector, algorithm } => {
            return dkim_generate(directory, &domain, &selector, &algorithm);
        }
        Request::DkimShow { domain } => {
            return match crate::dkim::key(directory.store(), domain.trim_end_matches('.')) {
                Some(k) => Response::Dkim { keys: vec![DkimPublic::from(&k)] },
                None => {
                    Response::Error { message: format!("{domain} has no DKIM key (postlog dkim generate {domain})") }
                }
            };
        }
        Request::DkimList => {
            let keys = crate::dkim::keys(directory.store());
            return Response::Dkim { keys: keys.iter().map(DkimPublic::from).collect() };
        }
        Request::DkimDelete { domain } => {
            return match crate::dkim::delete(directory.store(), &domain) {
                Ok(true) => done(format!("deleted the DKIM key of {domain}; mail from it goes unsigned")),
                Ok(false) => Response::Error { message: format!("{domain} has no DKIM key") },
                Err(e) => Response::Error { message: e },
            };
        }
    };
    result.unwrap_or_else(|e| Response::Error { message: e.to_string() })
}

fn dkim_generate(directory: &Directory, domain: &str, selector: &str, algorithm: &str) -> Response {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !directory.is_local_domain(&domain) {
        return Response::Error { message: format!("{domain} is not a local domain (postlog domain add {domain})") };
    }
    match crate::dkim::generate(&domain, selector, algorithm, crate::util::now_unix())
        .and_then(|k| crate::dkim::save(directory.store(), &k).map(|()| k))
    {
        Ok(k) => {
            tracing::info!(domain = %k.domain, selector = %k.selector, algorithm = %k.algorithm, "dkim: key generated");
            Response::Dkim { keys: vec![DkimPublic::from(&k)] }
        }
        Err(e) => Response::Error { message: e },
    }
}

// ---------------------------------------------------------------------------------------------
// Server side

/// The running control server. Dropping it (or [`ControlHandle::shutdown`]) stops accepting
/// and removes the socket; connections already open are not waited for (their requests fail
/// once the store is closed). Stop it before closing the store.
pub struct ControlHandle {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = UnixStream::connect(&self.path);
        let _ = thread.join();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves the control socket at `path` (normally [`socket_path`] of the data directory) on
/// its own threads. A socket file left by an earlier server that is gone is replaced; one
/// that answers is an error (`AddrInUse`).
pub fn spawn_control_server(
    directory: Directory,
    queue: Option<crate::queue::QueueHandle>,
    path: &Path,
) -> io::Result<ControlHandle> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process serves the control socket {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // A fresh socket is writable (connectable) by its owner only under the usual umasks;
    // tighten it to 0600 before serving.
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create the control socket {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("postlog-control".into())
            .spawn(move || accept_loop(listener, directory, queue, stop))?
    };
    tracing::info!("control socket listening at {}", path.display());
    Ok(ControlHandle { path: path.to_path_buf(), stop, thread: Some(thread) })
}

fn accept_loop(
    listener: UnixListener,
    directory: Directory,
    queue: Option<crate::queue::QueueHandle>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let mut s = stream;
            let _ = write_response(&mut s, &Response::Error { message: "the server is busy; try again".into() });
            continue;
        }
        let directory = directory.clone();
        let queue = queue.clone().map(crate::queue::control::Access::Running);
        let active = active.clone();
        let spawned = std::thread::Builder::new().name("postlog-control-conn".into()).spawn(move || {
            if let Err(e) = serve_connection(stream, &directory, queue.as_ref()) {
                tracing::debug!("control connection ended: {e}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            tracing::warn!("control socket: cannot start a connection thread: {e}");
        }
    }
}

fn serve_connection(
    stream: UnixStream,
    directory: &Directory,
    queue: Option<&crate::queue::control::Access>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader).take(MAX_REQUEST_BYTES + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() as u64 > MAX_REQUEST_BYTES {
            let message = format!("request longer than {MAX_REQUEST_BYTES} bytes");
            write_response(&mut writer, &Response::Error { message })?;
            return Ok(());
        }
        let response = match serde_json::from_slice::<Request>(&line) {
            Ok(request) if request.is_queue() => match queue {
                Some(q) => crate::queue::control::execute(q, request),
                None => Response::Error { message: "this server runs without an outbound queue".into() },
            },
            Ok(request) => execute(directory, request),
            Err(e) => Response::Error { message: format!("malformed request: {e}") },
        };
        write_response(&mut writer, &response)?;
    }
}

fn write_response(w: &mut impl Write, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Sends one request to the control socket at `path` and reads its response.
pub fn send(path: &Path, request: &Request, timeout: Duration) -> io::Result<Response> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = Vec::new();
    BufReader::new(stream).take(64 << 20).read_until(b'\n', &mut answer)?;
    if answer.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection without answering"));
    }
    serde_json::from_slice(&answer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

// ---------------------------------------------------------------------------------------------
// Command-line side

/// Runs a request for the command line: on the store directly when no server holds it, else
/// through the running server's control socket. `quota_default_bytes` is the configured
/// default quota (used for listings when the store is opened directly).
pub fn run_request(config: &Config, quota_default_bytes: u64, request: Request) -> Result<Response, CmdError> {
    let dir = &config.data_dir;
    let read_only = matches!(
        request,
        Request::DomainList
            | Request::UserList { .. }
            | Request::AliasList { .. }
            | Request::QueueList
            | Request::QueueShow { .. }
            | Request::DkimList
            | Request::DkimShow { .. }
    );
    if read_only && !dir.is_dir() {
        return Err(CmdError::new(format!("the data directory {} does not exist", dir.display())));
    }
    match Store::open(dir, Options::default()) {
        Ok(store) => {
            let directory = Directory::new(store.clone(), quota_default_bytes);
            let response = if request.is_queue() {
                match crate::queue::Queue::open(store.clone(), config.queue.clone()) {
                    Ok(q) => crate::queue::control::execute(&crate::queue::control::Access::Offline(q), request),
                    Err(e) => Response::Error { message: format!("opening the queue: {e}") },
                }
            } else {
                execute(&directory, request)
            };
            drop(directory);
            store.close().map_err(|e| CmdError::new(format!("closing the store: {e}")))?;
            Ok(response)
        }
        Err(OpenError::Locked { .. }) => {
            let path = socket_path(dir);
            send(&path, &request, Duration::from_secs(600)).map_err(|e| {
                CmdError::new(format!(
                    "the store in {} is in use by another process, and its control socket {} does not answer ({e}); \
                     if that process is not `postlog serve`, wait for it to end",
                    dir.display(),
                    path.display()
                ))
            })
        }
        Err(e) => Err(CmdError::new(e.to_string())),
    }
}

/// Prints a response as the command line shows it; returns the exit code.
pub fn print_response(response: &Response) -> Result<i32, CmdError> {
    match response {
        Response::Done { message } => println!("{message}"),
        Response::Domains { domains } => {
            for d in domains {
                println!("{}\t{} users\t{} aliases", d.domain, d.users, d.aliases);
            }
        }
        Response::Users { users } => {
            for u in users {
                let account = u.account.map_or("account missing".to_string(), |a| format!("account {a}"));
                let limit = u.quota.limit_bytes.map_or("unlimited".to_string(), human_bytes);
                let own = if u.quota.overridden { " (own)" } else { "" };
                println!(
                    "{}\t{account}\t{} messages\t{} used of {limit}{own}",
                    u.address,
                    u.quota.messages,
                    human_bytes(u.quota.used_bytes)
                );
            }
        }
        Response::Aliases { aliases } => {
            for a in aliases {
                println!("{}\t{}", a.source, a.targets.join(", "));
            }
        }
        Response::Queue { entries, detail } => crate::queue::control::print(entries, *detail),
        Response::Dkim { keys } => {
            for k in keys {
                println!("; {} selector {} ({}): publish this TXT record", k.domain, k.selector, k.algorithm);
                println!("{}", k.record);
            }
        }
        Response::Error { message } => return Err(CmdError::new(message.clone())),
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_each() {
        let request = Request::AliasAdd { source: "@example.test".into(), targets: vec!["a@example.test".into()] };
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(line, r#"{"command":"alias_add","source":"@example.test","targets":["a@example.test"]}"#);
        assert!(serde_json::from_str::<Request>(r#"{"command":"domain_add","domain":"x","force":true}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"command":"domain_drop","domain":"x"}"#).is_err());
        let response = Response::Error { message: "no".into() };
        assert_eq!(serde_json::to_string(&response).unwrap(), r#"{"status":"error","message":"no"}"#);
    }

    #[test]
    fn the_server_answers_over_the_socket_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data"), Options::default()).unwrap();
        let directory = Directory::new(store.clone(), 0);
        let path = dir.path().join("control.sock");
        let handle = spawn_control_server(directory.clone(), None, &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(spawn_control_server(directory.clone(), None, &path).is_err(), "a second server is refused");

        let timeout = Duration::from_secs(10);
        let r = send(&path, &Request::DomainAdd { domain: "Example.TEST".into() }, timeout).unwrap();
        assert_eq!(r, Response::Done { message: "added the domain example.test".into() });
        assert!(directory.is_local_domain("example.test"), "the change is visible in the server at once");
        let r = send(&path, &Request::DomainAdd { domain: "example.test".into() }, timeout).unwrap();
        assert_eq!(r, Response::Error { message: "the domain example.test already exists".into() });

        // Garbage and several requests on one connection.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{nonsense\n{\"command\":\"domain_list\"}\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let lines: Vec<Response> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(matches!(&lines[0], Response::Error { message } if message.starts_with("malformed request")));
        assert_eq!(
            lines[1],
            Response::Domains { domains: vec![DomainEntry { domain: "example.test".into(), users: 0, aliases: 0 }] }
        );

        handle.shutdown();
        assert!(!path.exists(), "the socket is removed");
        assert!(send(&path, &Request::DomainList, timeout).is_err());
        // A socket file left behind by a dead server is replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let handle = spawn_control_server(directory, None, &path).unwrap();
        assert!(matches!(send(&path, &Request::DomainList, timeout).unwrap(), Response::Domains { .. }));
        drop(handle);
        assert!(!path.exists());
        store.close().unwrap();
    }
}
