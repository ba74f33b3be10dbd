//! The inbound filter pipeline: checks run on every message at the end of `DATA`, before it
//! is stored.
//!
//! Each [`Filter`] looks at the message and its envelope and answers with a [`Decision`]:
//! accept, reject (5xx), defer (4xx), and independently add header fields or file the message
//! into a folder (e.g. Junk). The [`Pipeline`] runs them in order; the first reject or defer
//! ends it. Filters are async so that checks which ask the network (DNS for SPF/DKIM/DMARC,
//! clamd, a spam scorer) slot in as they are; CPU-heavy ones should use
//! `tokio::task::spawn_blocking` inside.
//!
//! This module ships [`Sanity`]: the size of the header section, mail loops (too many
//! `Received:` fields) and NUL octets in header fields.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use postlog_protocol::smtp::{Mailbox, Reply};

/// What a filter sees.
#[derive(Debug)]
pub struct Inspection<'a> {
    /// The content as received (before this server's trace fields are added).
    pub message: &'a [u8],
    /// Octets of the header section, up to and including the empty line (the whole message
    /// when it has no body; 0 when it has no header fields).
    pub header_len: usize,
    pub sender: Option<&'a Mailbox>,
    /// Recipients as accepted (a bare `<Postmaster>` as the `postmaster@domain` it reached).
    pub recipients: Vec<String>,
    pub client_ip: IpAddr,
    pub helo: &'a str,
    pub tls: bool,
    /// The authenticated user (submission).
    pub authenticated: Option<&'a str>,
}

/// Where a message is filed instead of INBOX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    /// The mailbox with this special-use attribute (`postlog_engine::special_use`), e.g. Junk.
    SpecialUse(u8),
    /// A mailbox by name.
    Named(String),
}

/// A filter's verdict on the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// A 5xx reply: the sender gives up.
    Reject(Reply),
    /// A 4xx reply: the sender tries again later.
    Defer(Reply),
}

/// What one filter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Header fields to add on top of the message, as (name, value).
    pub add_headers: Vec<(String, String)>,
    pub file_into: Option<Folder>,
}

impl Decision {
    pub fn accept() -> Decision {
        Decision { verdict: Verdict::Accept, add_headers: Vec::new(), file_into: None }
    }

    pub fn reject(reply: Reply) -> Decision {
        debug_assert!(reply.is_permanent(), "{reply}");
        Decision { verdict: Verdict::Reject(reply), ..Decision::accept() }
    }

    pub fn defer(reply: Reply) -> Decision {
        debug_assert!(reply.is_transient(), "{reply}");
        Decision { verdict: Verdict::Defer(reply), ..Decision::accept() }
    }
}

pub type DecisionFuture<'a> = Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;

/// One inbound check.
pub trait Filter: Send + Sync {
    /// A short name for logs (`sanity`, `spf`, `clamav`...).
    fn name(&self) -> &'static str;
    fn check<'a>(&'a self, message: &'a Inspection<'a>) -> DecisionFuture<'a>;
}

/// The outcome of the whole pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The filter that rejected or deferred.
    pub decided_by: Option<&'static str>,
    pub add_headers: Vec<(String, String)>,
    /// The last folder any filter asked for.
    pub file_into: Option<Folder>,
}

/// The filters, in the order they run.
#[derive(Clone, Default)]
pub struct Pipeline {
    filters: Vec<Arc<dyn Filter>>,
}

impl Pipeline {
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> Pipeline {
        Pipeline { filters }
    }

    /// The pipeline every listener runs unless configured otherwise.
    pub fn standard(settings: &crate::config::Smtp) -> Pipeline {
        Pipeline::new(vec![Arc::new(Sanity {
            max_header_size: settings.max_header_size,
            max_hops: settings.max_hops as usize,
        })])
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    pub async fn run(&self, message: &Inspection<'_>) -> Outcome {
        let mut out = Outcome { verdict: Verdict::Accept, decided_by: None, add_headers: Vec::new(), file_into: None };
        for f in &self.filters {
            let d = f.check(message).await;
            out.add_headers.extend(d.add_headers);
            if d.file_into.is_some() {
                out.file_into = d.file_into;
            }
            if d.verdict != Verdict::Accept {
                out.verdict = d.verdict;
                out.decided_by = Some(f.name());
                break;
            }
        }
        out
    }
}

/// The length of the header section of `message`: up to and including the first empty line;
/// 0 when the first line is not a header field (the message is all body); the whole message
/// when there is no empty line.
pub fn header_len(message: &[u8]) -> usize {
    let mut pos = 0;
    let mut first = true;
    while pos < message.len() {
        let end = message[pos..].iter().position(|&b| b == b'\n').map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            return end;
        }
        if first && !is_field_start(text) {
            return 0;
        }
        first = false;
        pos = end;
    }
    message.len()
}

/// `name:` with a name of printable ASCII other than `:` (RFC 5322 section 3.6.8), or a
/// continuation line.
fn is_field_start(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(i) => line[..i].iter().all(|&b| (33..=126).contains(&b)),
    }
}

/// Header-section sanity: size, mail loops, NUL octets.
#[derive(Debug, Clone)]
pub struct Sanity {
    pub max_header_size: u64,
    pub max_hops: usize,
}

impl Sanity {
    pub fn decide(&self, m: &Inspection<'_>) -> Decision {
        let header = &m.message[..m.header_len];
        if header.len() as u64 > self.max_header_size {
            return Decision::reject(Reply::new(552, "5.3.4", "Error: message header too big"));
        }
        if header.contains(&0) {
            return Decision::reject(Reply::new(554, "5.6.0", "Error: NUL octet in the message header"));
        }
        let hops = header_lines(header).filter(|l| l.len() > 9 && l[..9].eq_ignore_ascii_case(b"received:")).count();
        if hops > self.max_hops {
            return Decision::reject(Reply::new(
                554,
                "5.4.6",
                format!("Error: too many hops ({hops} Received: header fields): mail loop?"),
            ));
        }
        Decision::accept()
    }
}

fn header_lines(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header.split(|&b| b == b'\n')
}

impl Filter for Sanity {
    fn name(&self) -> &'static str {
        "sanity"
    }

    fn check<'a>(&'a self, message: &'a Inspection<'a>) -> DecisionFuture<'a> {
        let d = self.decide(message);
        Box::pin(async move { d })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect(message: &[u8]) -> Inspection<'_> {
        Inspection {
            message,
            header_len: header_len(message),
            sender: None,
            recipients: vec!["a@example.test".into()],
            client_ip: "127.0.0.1".parse().unwrap(),
            helo: "client",
            tls: false,
            authenticated: None,
        }
    }

    #[test]
    fn header_section_length() {
        assert_eq!(header_len(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"), 14);
        assert_eq!(header_len(b"A: 1\r\n folded\r\n\r\n"), 17);
        assert_eq!(header_len(b"just a body\r\n"), 0);
        assert_eq!(header_len(b"A: 1\r\nB: 2\r\n"), 12);
        assert_eq!(header_len(b"\r\nbody"), 2);
        assert_eq!(header_len(b""), 0);
    }

    struct Tag(&'static str, Verdict, Option<Folder>);

    impl Filter for Tag {
        fn name(&self) -> &'static str {
            self.0
        }

        fn check<'a>(&'a self, _: &'a Inspection<'a>) -> DecisionFuture<'a> {
            let d = Decision {
                verdict: self.1.clone(),
                add_headers: vec![("X-Checked-By".into(), self.0.into())],
                file_into: self.2.clone(),
            };
            Box::pin(async move { d })
        }
    }

    #[tokio::test]
    async fn pipeline_runs_in_order_and_stops_at_the_first_refusal() {
        let junk = Some(Folder::SpecialUse(postlog_engine::special_use::JUNK));
        let defer = Verdict::Defer(Reply::new(451, "4.7.1", "later"));
        let p = Pipeline::new(vec![
            Arc::new(Tag("one", Verdict::Accept, junk.clone())),
            Arc::new(Tag("two", defer.clone(), None)),
            Arc::new(Tag("three", Verdict::Reject(Reply::new(550, "5.7.1", "no")), None)),
        ]);
        let msg = b"Subject: x\r\n\r\nhi\r\n";
        let out = p.run(&inspect(msg)).await;
        assert_eq!(out.verdict, defer);
        assert_eq!(out.decided_by, Some("two"));
        assert_eq!(out.file_into, junk);
        assert_eq!(out.add_headers.len(), 2);
        assert_eq!(p.names(), ["one", "two", "three"]);
    }

    #[test]
    fn sanity_checks() {
        let s = Sanity { max_header_size: 100, max_hops: 2 };
        assert_eq!(s.decide(&inspect(b"Subject: x\r\n\r\nhi\r\n")).verdict, Verdict::Accept);
        assert_eq!(s.decide(&inspect(b"no header at all\r\n")).verdict, Verdict::Accept);
        let big = format!("Subject: {}\r\n\r\n", "x".repeat(100));
        assert!(matches!(s.decide(&inspect(big.as_bytes())).verdict, Verdict::Reject(r) if r.status == "5.3.4"));
        let nul = b"Subject: a\0b\r\n\r\n";
        assert!(matches!(s.decide(&inspect(nul)).verdict, Verdict::Reject(r) if r.status == "5.6.0"));
        // A NUL in the body is the body's business.
        assert_eq!(s.decide(&inspect(b"Subject: a\r\n\r\n\0\r\n")).verdict, Verdict::Accept);
        let hops = b"Received: a\r\nreceived: b\r\nRECEIVED: c\r\n\r\n";
        assert!(matches!(s.decide(&inspect(hops)).verdict, Verdict::Reject(r) if r.status == "5.4.6"));
        assert_eq!(s.decide(&inspect(&hops[13..])).verdict, Verdict::Accept);
    }
}
