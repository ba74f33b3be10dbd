//! SORT and THREAD (RFC 5256, DISPLAYFROM/DISPLAYTO of RFC 5957): sort keys and threads
//! computed from the stored metadata, as pure functions.

use std::collections::{BTreeMap, HashMap};

use postlog_engine::meta::{Address, MessageMeta};
use postlog_protocol::imap::{SortCriterion, SortKey};

/// What sorting and threading need of one message.
#[derive(Debug, Clone)]
pub struct Item {
    /// Sequence number or UID: what the answer lists.
    pub id: u32,
    /// Sequence number: the final tie-breaker (RFC 5256 section 3).
    pub seq: u32,
    pub internal_date: i64,
    pub size: u64,
    pub meta: Option<MessageMeta>,
}

/// Decodes RFC 2047 encoded words of a header value (for subjects).
pub fn decode_header_value(raw: &str) -> String {
    if !raw.contains("=?") {
        return raw.to_string();
    }
    let fake = format!("Subject: {raw}\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse(fake.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| raw.to_string())
}

/// The base subject of RFC 5256 section 2.1: decoded, whitespace collapsed, subject
/// leaders (`Re:`, `Fw:`, `Fwd:`, with `[...]` blobs) and trailers (`(fwd)`) and the
/// `[fwd: ...]` wrapper removed, repeatedly; compared case-insensitively (lowercased here).
pub fn base_subject(raw: &str) -> String {
    let decoded = decode_header_value(raw);
    let mut s: String = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let before = s.clone();
        // (2) trailers.
        loop {
            let t = s.trim_end();
            let lower = t.to_lowercase();
            if lower.ends_with("(fwd)") {
                s = t[..t.len() - 5].to_string();
            } else {
                s = t.to_string();
                break;
            }
        }
        // (3)-(5) leaders and blobs.
        loop {
            let t = s.trim_start();
            let next = strip_leader(t).or_else(|| strip_blob(t).filter(|rest| !rest.trim().is_empty()));
            match next {
                Some(rest) => s = rest.to_string(),
                None => {
                    s = t.to_string();
                    break;
                }
            }
        }
        // (6) [fwd: ...] wrapper.
        let lower = s.to_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].trim().to_string();
        }
        if s == before {
            break;
        }
    }
    s.to_lowercase()
}

/// `re`, `fw` or `fwd`, optional blobs, then `:`.
fn strip_leader(s: &str) -> Option<&str> {
    let lower = s.to_ascii_lowercase();
    let word = ["fwd", "fw", "re"].into_iter().find(|w| lower.starts_with(w))?;
    let mut rest = &s[word.len()..];
    loop {
        rest = rest.trim_start();
        match strip_blob(rest) {
            Some(r) => rest = r,
            None => break,
        }
    }
    rest.strip_prefix(':')
}

/// `[...]` without nested brackets.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(']')?;
    if inner[..end].contains('[') {
        return None;
    }
    Some(&inner[end + 1..])
}

fn first_mailbox(list: &[Address]) -> String {
    list.iter().find(|a| a.host.is_some()).and_then(|a| a.mailbox.clone()).unwrap_or_default().to_lowercase()
}

/// RFC 5957: the display name of the first address, or its addr-spec.
fn display(list: &[Address]) -> String {
    let Some(a) = list.iter().find(|a| a.host.is_some()) else { return String::new() };
    match a.name.as_deref().filter(|n| !n.trim().is_empty()) {
        Some(n) => n.trim().to_lowercase(),
        None => format!("{}@{}", a.mailbox.as_deref().unwrap_or(""), a.host.as_deref().unwrap_or("")).to_lowercase(),
    }
}

/// The sent date (falling back to the internal date), RFC 5256 section 2.2.
fn date(item: &Item) -> i64 {
    item.meta.as_ref().and_then(|m| m.sent_date).unwrap_or(item.internal_date)
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Num(i64),
    Text(String),
}

fn key(item: &Item, k: SortKey) -> Key {
    let env = item.meta.as_ref().map(|m| &m.envelope);
    match k {
        SortKey::Arrival => Key::Num(item.internal_date),
        SortKey::Date => Key::Num(date(item)),
        SortKey::Size => Key::Num(item.size as i64),
        SortKey::Subject => Key::Text(env.and_then(|e| e.subject.as_deref()).map(base_subject).unwrap_or_default()),
        SortKey::From => Key::Text(env.map(|e| first_mailbox(&e.from)).unwrap_or_default()),
        SortKey::To => Key::Text(env.map(|e| first_mailbox(&e.to)).unwrap_or_default()),
        SortKey::Cc => Key::Text(env.map(|e| first_mailbox(&e.cc)).unwrap_or_default()),
        SortKey::DisplayFrom => Key::Text(env.map(|e| display(&e.from)).unwrap_or_default()),
        SortKey::DisplayTo => Key::Text(env.map(|e| display(&e.to)).unwrap_or_default()),
    }
}

/// The ids of `items` in SORT order.
pub fn sort(mut items: Vec<Item>, criteria: &[SortCriterion]) -> Vec<u32> {
    let keys: Vec<Vec<Key>> = items.iter().map(|i| criteria.iter().map(|c| key(i, c.key)).collect()).collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        for (n, c) in criteria.iter().enumerate() {
            let o = keys[a][n].cmp(&keys[b][n]);
            let o = if c.reverse { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        items[a].seq.cmp(&items[b].seq)
    });
    let ids: Vec<u32> = order.iter().map(|&i| items[i].id).collect();
    items.clear();
    ids
}

/// A thread: a message (or a missing parent, `None`) and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub id: Option<u32>,
    pub children: Vec<Thread>,
}

/// THREAD=ORDEREDSUBJECT (RFC 5256 section 3): by base subject, threads ordered by their first
/// message's date, messages of a thread by date, each a child of the first.
pub fn ordered_subject(items: &[Item]) -> Vec<Thread> {
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by_key(|i| (date(i), i.seq));
    let mut groups: Vec<(String, Vec<&Item>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for i in sorted {
        let subject = i.meta.as_ref().and_then(|m| m.envelope.subject.as_deref()).map(base_subject).unwrap_or_default();
        match index.get(&subject) {
            Some(&g) => groups[g].1.push(i),
            None => {
                index.insert(subject.clone(), groups.len());
                groups.push((subject, vec![i]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(_, msgs)| Thread {
            id: Some(msgs[0].id),
            children: msgs[1..].iter().map(|m| Thread { id: Some(m.id), children: vec![] }).collect(),
        })
        .collect()
}

/// THREAD=REFERENCES (RFC 5256 section 3, after JWZ): parents from References/In-Reply-To,
/// missing parents as placeholders, then root threads with the same base subject merged and
/// everything ordered by date.
pub fn references(items: &[Item]) -> Vec<Thread> {
    #[derive(Default)]
    struct Node {
        item: Option<usize>,
        parent: Option<usize>,
        children: Vec<usize>,
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut node_for = |id: &str, nodes: &mut Vec<Node>| -> usize {
        *by_id.entry(id.to_string()).or_insert_with(|| {
            nodes.push(Node::default());
            nodes.len() - 1
        })
    };
    fn is_ancestor(nodes: &[Node], maybe: usize, of: usize) -> bool {
        let mut cur = Some(of);
        let mut steps = 0;
        while let Some(c) = cur {
            if c == maybe {
                return true;
            }
            cur = nodes[c].parent;
            steps += 1;
            if steps > nodes.len() {
                return true;
            }
        }
        false
    }
    for (n, item) in items.iter().enumerate() {
        let env = item.meta.as_ref().map(|m| &m.envelope);
        let own_id = env.and_then(|e| e.message_id.as_deref()).map(|s| s.trim_matches(['<', '>', ' ']).to_string());
        let me = match own_id.filter(|id| !id.is_empty()) {
            Some(id) => {
                let k = node_for(&id, &mut nodes);
                if nodes[k].item.is_some() {
                    // A duplicate Message-ID: a node of its own.
                    nodes.push(Node::default());
                    nodes.len() - 1
                } else {
                    k
                }
            }
            None => {
                nodes.push(Node::default());
                nodes.len() - 1
            }
        };
        nodes[me].item = Some(n);
        let mut refs: Vec<String> = item.meta.as_ref().map(|m| m.references.clone()).unwrap_or_default();
        if refs.is_empty()
            && let Some(irt) = env.and_then(|e| e.in_reply_to.as_deref())
            && let Some(first) = irt.split('>').next()
        {
            let id = first.trim().trim_start_matches('<').to_string();
            if !id.is_empty() {
                refs.push(id);
            }
        }
        // Link the references in order, each a child of the previous, unless that loops.
        let mut prev: Option<usize> = None;
        for r in &refs {
            let k = node_for(r, &mut nodes);
            if let Some(p) = prev
                && nodes[k].parent.is_none()
                && k != p
                && !is_ancestor(&nodes, k, p)
            {
                nodes[k].parent = Some(p);
                nodes[p].children.push(k);
            }
            prev = Some(k);
        }
        // The message's parent is the last reference.
        if let Some(old) = nodes[me].parent.take() {
            nodes[old].children.retain(|&c| c != me);
        }
        if let Some(p) = prev
            && p != me
            && !is_ancestor(&nodes, me, p)
        {
            nodes[me].parent = Some(p);
            nodes[p].children.push(me);
        }
    }
    // Build trees from the roots, pruning empty placeholders.
    fn build(nodes: &[Node], k: usize, items: &[Item]) -> Vec<Thread> {
        let mut children: Vec<Thread> = nodes[k].children.iter().flat_map(|&c| build(nodes, c, items)).collect();
        match nodes[k].item {
            Some(i) => vec![Thread { id: Some(items[i].id), children }],
            None if children.is_empty() => vec![],
            // A placeholder with one child is replaced by it; with several it stays (as a
            // root: RFC 5256 step 4).
            None if children.len() == 1 => vec![children.remove(0)],
            None => vec![Thread { id: None, children }],
        }
    }
    let roots: Vec<usize> = (0..nodes.len()).filter(|&k| nodes[k].parent.is_none()).collect();
    let mut threads: Vec<Thread> = roots.iter().flat_map(|&k| build(&nodes, k, items)).collect();
    // Merge root threads with the same base subject (simplified RFC 5256 step 5).
    let id_index: HashMap<u32, usize> = items.iter().enumerate().map(|(n, i)| (i.id, n)).collect();
    let first_item = |t: &Thread| -> Option<usize> {
        fn first(t: &Thread, idx: &HashMap<u32, usize>) -> Option<usize> {
            t.id.and_then(|id| idx.get(&id).copied()).or_else(|| t.children.iter().find_map(|c| first(c, idx)))
        }
        first(t, &id_index)
    };
    let mut merged: Vec<Thread> = Vec::new();
    let mut by_subject: BTreeMap<String, usize> = BTreeMap::new();
    for t in threads.drain(..) {
        let subject = first_item(&t)
            .and_then(|i| items[i].meta.as_ref())
            .and_then(|m| m.envelope.subject.as_deref())
            .map(base_subject)
            .unwrap_or_default();
        match by_subject.get(&subject) {
            Some(&m) if !subject.is_empty() => {
                let target = &mut merged[m];
                if target.id.is_some() {
                    let old = std::mem::replace(target, Thread { id: None, children: vec![] });
                    target.children.push(old);
                }
                target.children.push(t);
            }
            _ => {
                by_subject.insert(subject, merged.len());
                merged.push(t);
            }
        }
    }
    // Order siblings and roots by the date of their first message.
    fn thread_date(t: &Thread, items: &[Item], idx: &HashMap<u32, usize>) -> (i64, u32) {
        match t.id.and_then(|id| idx.get(&id)) {
            Some(&i) => (date(&items[i]), items[i].seq),
            None => t.children.iter().map(|c| thread_date(c, items, idx)).min().unwrap_or((i64::MAX, u32::MAX)),
        }
    }
    fn order(ts: &mut [Thread], items: &[Item], idx: &HashMap<u32, usize>) {
        for t in ts.iter_mut() {
            order(&mut t.children, items, idx);
        }
        ts.sort_by_key(|t| thread_date(t, items, idx));
    }
    order(&mut merged, items, &id_index);
    merged
}

/// A thread list as IMAP writes it: `(1 2 (3)(4))`.
pub fn encode_threads(threads: &[Thread]) -> String {
    fn one(t: &Thread, out: &mut String, nested: bool) {
        if !nested {
            out.push('(');
        }
        if let Some(id) = t.id {
            out.push_str(&id.to_string());
        }
        match t.children.len() {
            0 => {}
            1 => {
                if t.id.is_some() {
                    out.push(' ');
                }
                one(&t.children[0], out, true);
            }
            _ => {
                if t.id.is_some() {
                    out.push(' ');
                }
                for c in &t.children {
                    one(c, out, false);
                }
            }
        }
        if !nested {
            out.push(')');
        }
    }
    let mut out = String::new();
    for t in threads {
        one(t, &mut out, false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        assert_eq!(base_subject("Re: Fwd: [list] Hello  world (fwd)"), "hello world");
        assert_eq!(base_subject("[Fwd: Re: Lunch]"), "lunch");
        assert_eq!(base_subject("RE [2]: re: x"), "x");
        assert_eq!(base_subject("=?utf-8?q?Gr=C3=BC=C3=9Fe?="), "grüße");
        assert_eq!(base_subject("[only a blob]"), "[only a blob]");
        assert_eq!(base_subject(""), "");
    }

    fn item(id: u32, subject: &str, date: i64, message_id: &str, refs: &[&str]) -> Item {
        let raw = format!(
            "Subject: {subject}\r\nMessage-ID: <{message_id}>\r\n{}Date: Thu, 1 Jan 2026 00:00:{:02} +0000\r\n\r\nx\r\n",
            if refs.is_empty() {
                String::new()
            } else {
                format!("References: {}\r\n", refs.iter().map(|r| format!("<{r}>")).collect::<Vec<_>>().join(" "))
            },
            date
        );
        Item {
            id,
            seq: id,
            internal_date: 1000 - date,
            size: 10 * u64::from(id),
            meta: Some(postlog_engine::meta::parse(raw.as_bytes())),
        }
    }

    #[test]
    fn sorts_by_keys_then_sequence() {
        let items = vec![item(1, "b", 3, "1@x", &[]), item(2, "Re: a", 1, "2@x", &[]), item(3, "a", 2, "3@x", &[])];
        let c = |key, reverse| SortCriterion { key, reverse };
        assert_eq!(sort(items.clone(), &[c(SortKey::Subject, false)]), vec![2, 3, 1]);
        assert_eq!(sort(items.clone(), &[c(SortKey::Date, false)]), vec![2, 3, 1]);
        assert_eq!(sort(items.clone(), &[c(SortKey::Size, true)]), vec![3, 2, 1]);
        assert_eq!(sort(items, &[c(SortKey::Arrival, false)]), vec![1, 3, 2]);
    }

    #[test]
    fn threads() {
        let items = vec![
            item(1, "hello", 1, "a@x", &[]),
            item(2, "Re: hello", 2, "b@x", &["a@x"]),
            item(3, "other", 3, "c@x", &[]),
            item(4, "Re: hello", 4, "d@x", &["a@x", "b@x"]),
            item(5, "Re: hello", 5, "e@x", &["a@x"]),
        ];
        assert_eq!(encode_threads(&references(&items)), "(1 (2 4)(5))(3)");
        assert_eq!(encode_threads(&ordered_subject(&items)), "(1 (2)(4)(5))(3)");
        // A missing parent with two replies: a placeholder root.
        let orphans = vec![item(1, "Re: q", 1, "r1@x", &["gone@x"]), item(2, "Re: q", 2, "r2@x", &["gone@x"])];
        assert_eq!(encode_threads(&references(&orphans)), "((1)(2))");
    }
}
