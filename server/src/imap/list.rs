//! LIST and LSUB: which names a listing shows and with which attributes, as a pure function
//! of the account's mailboxes and subscriptions (no store, no session).
//!
//! The rules, by the RFCs:
//! - One response per name, however many patterns match it (RFC 5258 section 3: patterns are
//!   "or"ed).
//! - Base LIST (RFC 3501/9051 section 6.3.9) shows existing mailboxes. A level of hierarchy
//!   that does not exist but holds a mailbox the patterns do not reach (`%` stopping above it,
//!   a name without wildcards) is shown too: `\Noselect` for IMAP4rev1, `\NonExistent` (which
//!   implies `\Noselect`) in the extended form or once IMAP4rev2 is enabled.
//! - LSUB (RFC 3501 section 6.3.9) shows subscribed names, existing or not; a name that is not
//!   subscribed but has a subscribed descendant `%` stops above is shown with `\Noselect`.
//! - `(SUBSCRIBED)` selects subscribed names, existing or not (those that do not exist with
//!   `\NonExistent`) and implies `RETURN (SUBSCRIBED)`; `(SPECIAL-USE)` (RFC 6154) selects
//!   mailboxes with a special use and implies returning them. Without `RECURSIVEMATCH` no other
//!   name is shown (RFC 5258 example 5.8: `LIST (SUBSCRIBED) "" "%"` shows nothing when only
//!   `Foo/Baz` is subscribed).
//! - `RECURSIVEMATCH` (RFC 5258 section 3.5) adds `("CHILDINFO" (...))` to a matching name one of
//!   whose descendants meets the selection but is not matched itself (so the client would not
//!   see it), and shows that name even if it does not meet the selection; it is not added when
//!   every such descendant is listed anyway (example 5.9: `baz2` is not returned).
//! - Plain LIST (no selection, no return options, one pattern) keeps what IMAP4rev1 clients
//!   expect: `\HasChildren`/`\HasNoChildren` and the special-use attributes always, `\Subscribed`
//!   never. The extended form answers what was asked: children only with `RETURN (CHILDREN)`,
//!   special use only with `RETURN (SPECIAL-USE)` or the selection option, `\Subscribed` only
//!   with `SUBSCRIBED`.
//! - `\HasChildren` counts existing child mailboxes only (RFC 5258 section 4), and a mailbox gets
//!   at most one of `\HasChildren` and `\HasNoChildren`. `\Noinferiors` is never sent: any
//!   mailbox, INBOX too, can have children here.
//! - LIST-STATUS (RFC 5819 section 2): STATUS only for the names that are selectable
//!   ([`Entry::selectable`]), never for `\Noselect`/`\NonExistent` ones.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use postlog_engine::special_use;
use postlog_protocol::imap::ListSelection;

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';

/// What the client asked.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// LSUB rather than LIST.
    pub lsub: bool,
    /// The LIST-EXTENDED syntax was used ([`postlog_protocol::imap::List::is_extended`]).
    pub extended: bool,
    /// IMAP4rev2 is enabled: `\NonExistent` is part of the base protocol.
    pub rev2: bool,
    pub selection: ListSelection,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    /// Canonical patterns (the reference and each pattern joined), never empty strings.
    pub patterns: Vec<String>,
}

/// One name to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub attributes: Vec<&'static str>,
    /// The selection criteria met by descendants, for `("CHILDINFO" (...))`; empty for none.
    pub child_info: Vec<&'static str>,
    /// An existing mailbox, which LIST-STATUS gives a STATUS for.
    pub selectable: bool,
}

/// The names to show, in name order. `mailboxes` maps each existing mailbox to its special-use
/// bits.
pub fn list(mailboxes: &BTreeMap<String, u8>, subscriptions: &BTreeSet<String>, req: &Request) -> Vec<Entry> {
    let patterns: Vec<Vec<char>> = req.patterns.iter().map(|p| p.chars().collect()).collect();
    let matched = |name: &str| patterns.iter().any(|p| matches_name(p, name));
    let sel = req.selection;
    let filtered = sel.subscribed || sel.special_use;
    let selected = |name: &str| -> bool {
        if req.lsub {
            return subscriptions.contains(name);
        }
        if !filtered {
            return mailboxes.contains_key(name);
        }
        (!sel.subscribed || subscriptions.contains(name))
            && (!sel.special_use || mailboxes.get(name).is_some_and(|&su| su != 0))
    };
    // Every name that exists or is subscribed, and every level of hierarchy above them.
    let mut candidates: BTreeSet<&str> = BTreeSet::new();
    for name in mailboxes.keys().chain(subscriptions) {
        candidates.extend(name.match_indices(DELIMITER).map(|(i, _)| &name[..i]));
        candidates.insert(name);
    }
    let recursive = sel.recursive_match && !req.lsub;
    // The levels of hierarchy of base LIST and LSUB (RFC 3501 section 6.3.8, 6.3.9).
    let hierarchy = req.lsub || !filtered;
    let mut out = Vec::new();
    for &name in candidates.iter().filter(|n| matched(n)) {
        let prefix = format!("{name}{DELIMITER}");
        let is_selected = selected(name);
        // Whether a descendant meets the selection but no pattern reaches it: a walk over the
        // descendants, taken only where the answer matters (RECURSIVEMATCH, or a name shown
        // only as a level of hierarchy).
        let hidden_below = (recursive || (!is_selected && hierarchy))
            && candidates
                .range::<&str, _>(prefix.as_str()..)
                .take_while(|d| d.starts_with(&prefix))
                .any(|d| selected(d) && !matched(d));
        if !is_selected && !hidden_below {
            continue;
        }
        let exists = mailboxes.contains_key(name);
        let has_children = mailboxes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(d, _)| d.starts_with(&prefix));
        let mut attributes = Vec::new();
        if req.lsub {
            if !is_selected {
                attributes.push("\\Noselect");
            } else if exists {
                attributes.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" });
            }
        } else {
            if !exists {
                attributes.push(if req.extended || req.rev2 { "\\NonExistent" } else { "\\Noselect" });
            }
            if !req.extended || req.return_children {
                if has_children {
                    attributes.push("\\HasChildren");
                } else if exists {
                    attributes.push("\\HasNoChildren");
                }
            }
            if exists && (!req.extended || req.return_special_use || sel.special_use) {
                let bits = mailboxes[name];
                attributes.extend(special_use::NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n));
            }
            if (req.return_subscribed || sel.subscribed) && subscriptions.contains(name) {
                attributes.push("\\Subscribed");
            }
        }
        let mut child_info = Vec::new();
        if recursive && hidden_below {
            if sel.subscribed {
                child_info.push("SUBSCRIBED");
            }
            if sel.special_use {
                child_info.push("SPECIAL-USE");
            }
        }
        out.push(Entry { name: name.to_string(), attributes, child_info, selectable: exists });
    }
    out
}

/// Whether `name` matches a canonical pattern: `*` matches anything, `%` anything but the
/// delimiter; `INBOX` as the first level matches in any case (RFC 9051 section 5.1).
pub fn matches_name(pattern: &[char], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    if matches(pattern, &name) {
        return true;
    }
    let inbox: Vec<char> = "INBOX".chars().collect();
    let at_inbox = name.starts_with(&inbox) && name.get(5).is_none_or(|&c| c == DELIMITER);
    if !at_inbox || pattern.len() < 5 || !pattern[..5].iter().zip(&inbox).all(|(a, b)| a.eq_ignore_ascii_case(b)) {
        return false;
    }
    let mut upper = pattern.to_vec();
    upper[..5].copy_from_slice(&inbox);
    matches(&upper, &name)
}

/// `*`/`%` matching in O(pattern × name) steps (no backtracking: a pattern like `*a*a*a*b` must
/// not cost exponential time).
fn matches(pattern: &[char], name: &[char]) -> bool {
    // reach[j]: the pattern read so far matches the first j characters of the name.
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            next[j] = match p {
                '*' => reach[j] || (j > 0 && next[j - 1]),
                '%' => reach[j] || (j > 0 && next[j - 1] && name[j - 1] != DELIMITER),
                c => j > 0 && reach[j - 1] && name[j - 1] == c,
            };
        }
        reach = next;
    }
    reach[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        matches_name(&p.chars().collect::<Vec<_>>(), n)
    }

    #[test]
    fn patterns() {
        assert!(m("*", "INBOX") && m("*", "a/b/c") && m("a/*", "a/b/c"));
        assert!(m("%", "Sent") && !m("%", "a/b") && m("a/%", "a/b") && !m("a/%", "a/b/c"));
        assert!(m("S%t", "Sent") && !m("x*", "Sent") && m("%/%", "a/b") && !m("%/%", "a"));
        assert!(m("inbox", "INBOX") && m("Inbox/%", "INBOX/x") && !m("inboxes", "INBOX") && !m("sent", "Sent"));
        assert!(m("", "") && !m("", "a") && m("**%", "a/b"));
    }

    #[test]
    fn patterns_do_not_backtrack() {
        let name = "a".repeat(200);
        let pattern: String = "*a".repeat(100) + "b";
        assert!(!m(&pattern, &name));
    }

    fn account(boxes: &[&str], subscribed: &[&str]) -> (BTreeMap<String, u8>, BTreeSet<String>) {
        (boxes.iter().map(|b| (b.to_string(), 0)).collect(), subscribed.iter().map(|s| s.to_string()).collect())
    }

    fn render(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let mut l = format!("({}) {}", e.attributes.join(" "), e.name);
                if !e.child_info.is_empty() {
                    l.push_str(&format!(" CHILDINFO {}", e.child_info.join(" ")));
                }
                l
            })
            .collect()
    }

    fn req(patterns: &[&str]) -> Request {
        Request { patterns: patterns.iter().map(|p| p.to_string()).collect(), ..Request::default() }
    }

    #[test]
    fn hierarchy_levels_of_base_list() {
        // `a` was deleted; `a/b` is still there.
        let (boxes, subs) = account(&["INBOX", "a/b"], &[]);
        assert_eq!(
            render(&list(&boxes, &subs, &req(&["%"]))),
            ["(\\HasNoChildren) INBOX", "(\\Noselect \\HasChildren) a"]
        );
        assert_eq!(render(&list(&boxes, &subs, &req(&["*"]))), ["(\\HasNoChildren) INBOX", "(\\HasNoChildren) a/b"]);
        let rev2 = Request { rev2: true, ..req(&["a"]) };
        assert_eq!(render(&list(&boxes, &subs, &rev2)), ["(\\NonExistent \\HasChildren) a"]);
    }

    #[test]
    fn several_patterns_list_a_name_once() {
        let (boxes, subs) = account(&["INBOX", "Sent", "a/b"], &[]);
        let r = Request { extended: true, ..req(&["*", "%", "INBOX", "a/%"]) };
        assert_eq!(render(&list(&boxes, &subs, &r)), ["() INBOX", "() Sent", "() a/b"]);
        let r = Request { extended: true, ..req(&["%", "inbox"]) };
        assert_eq!(render(&list(&boxes, &subs, &r)), ["() INBOX", "() Sent", "(\\NonExistent) a"]);
    }

    #[test]
    fn lsub_shows_a_noselect_parent() {
        // RFC 3501 section 6.3.9's example, with "/" for ".".
        let (boxes, subs) = account(
            &["news/comp/mail/misc", "news/comp/mail/mime", "news/comp/mail/sanity"],
            &["news/comp/mail/misc", "news/comp/mail/mime", "gone"],
        );
        let lsub = |p: &str| render(&list(&boxes, &subs, &Request { lsub: true, ..req(&[p]) }));
        assert_eq!(
            lsub("news/comp/mail/*"),
            ["(\\HasNoChildren) news/comp/mail/mime", "(\\HasNoChildren) news/comp/mail/misc"]
        );
        assert_eq!(lsub("news/comp/%"), ["(\\Noselect) news/comp/mail"]);
        assert_eq!(lsub("%"), ["() gone", "(\\Noselect) news"]);
    }

    #[test]
    fn special_use_selection_and_return() {
        let mut boxes: BTreeMap<String, u8> =
            [("INBOX", 0), ("Sent", special_use::SENT), ("Old/Trash", special_use::TRASH)]
                .iter()
                .map(|(n, b)| (n.to_string(), *b))
                .collect();
        boxes.insert("Old".into(), 0);
        let subs = BTreeSet::new();
        let selection = ListSelection { special_use: true, ..ListSelection::default() };
        let r = Request { extended: true, selection, ..req(&["*"]) };
        assert_eq!(render(&list(&boxes, &subs, &r)), ["(\\Trash) Old/Trash", "(\\Sent) Sent"]);
        let r = Request { extended: true, return_special_use: true, ..req(&["%"]) };
        assert_eq!(render(&list(&boxes, &subs, &r)), ["() INBOX", "() Old", "(\\Sent) Sent"]);
        let r =
            Request { extended: true, selection: ListSelection { recursive_match: true, ..selection }, ..req(&["%"]) };
        assert_eq!(render(&list(&boxes, &subs, &r)), ["() Old CHILDINFO SPECIAL-USE", "(\\Sent) Sent"]);
    }

    /// RFC 5258 section 5, examples 1 to 9 that do not need remote mailboxes, on the
    /// example's hierarchy (INBOX has no `\Noinferiors` here).
    #[test]
    fn rfc5258_examples() {
        let (boxes, subs) = account(
            &[
                "INBOX",
                "Fruit",
                "Fruit/Apple",
                "Fruit/Banana",
                "Tofu",
                "Vegetable",
                "Vegetable/Broccoli",
                "Vegetable/Corn",
            ],
            &["Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"],
        );
        let sub = ListSelection { subscribed: true, ..ListSelection::default() };
        let ext = |r: Request| render(&list(&boxes, &subs, &Request { extended: true, ..r }));
        // 5.1: LIST "" "*" (plain) and LIST () "" "*" (extended, nothing asked).
        assert_eq!(ext(req(&["*"])).len(), 8);
        assert!(ext(req(&["*"])).iter().all(|l| l.starts_with("() ")));
        // 5.2: LIST (SUBSCRIBED) "" "*".
        assert_eq!(
            ext(Request { selection: sub, ..req(&["*"]) }),
            [
                "(\\Subscribed) Fruit/Banana",
                "(\\NonExistent \\Subscribed) Fruit/Peach",
                "(\\Subscribed) Vegetable",
                "(\\Subscribed) Vegetable/Broccoli"
            ]
        );
        // 5.3: LIST () "" "%" RETURN (CHILDREN).
        assert_eq!(
            ext(Request { return_children: true, ..req(&["%"]) }),
            ["(\\HasChildren) Fruit", "(\\HasNoChildren) INBOX", "(\\HasNoChildren) Tofu", "(\\HasChildren) Vegetable"]
        );
        // 5.6: LIST "" "*" RETURN (SUBSCRIBED): all mailboxes, the subscription state as well.
        let r = ext(Request { return_subscribed: true, ..req(&["*"]) });
        assert_eq!(r.iter().filter(|l| l.contains("\\Subscribed")).count(), 3, "{r:?}");
        // 5.7: several patterns.
        assert_eq!(
            ext(req(&["INBOX", "Vegetable", "Fruit/%"])),
            ["() Fruit/Apple", "() Fruit/Banana", "() INBOX", "() Vegetable"]
        );
    }

    /// RFC 5258 example 5.8 (RECURSIVEMATCH) on its own hierarchy.
    #[test]
    fn rfc5258_recursivematch() {
        let boxes: BTreeMap<String, u8> =
            ["Foo", "Foo/Bar", "Foo/Baz", "Moo"].iter().map(|b| (b.to_string(), 0)).collect();
        let sub = ListSelection { subscribed: true, ..ListSelection::default() };
        let rec = ListSelection { recursive_match: true, ..sub };
        let run = |subs: &[&str], selection: ListSelection, children: bool| {
            let subs = subs.iter().map(|s| s.to_string()).collect();
            let r = Request { extended: true, selection, return_children: children, ..req(&["%"]) };
            render(&list(&boxes, &subs, &r))
        };
        assert_eq!(run(&["Foo/Baz"], sub, false), Vec::<String>::new());
        assert_eq!(run(&["Foo/Baz"], rec, false), ["() Foo CHILDINFO SUBSCRIBED"]);
        assert_eq!(run(&["Foo", "Foo/Baz"], rec, false), ["(\\Subscribed) Foo CHILDINFO SUBSCRIBED"]);
        // 5.8 A2: a subscribed child of a name that does not exist.
        assert_eq!(run(&["Xyzzy/Plugh"], rec, false), ["(\\NonExistent) Xyzzy CHILDINFO SUBSCRIBED"]);
        assert_eq!(run(&[], rec, false), Vec::<String>::new());
        assert_eq!(
            run(&["Foo", "Moo"], rec, true),
            ["(\\HasChildren \\Subscribed) Foo", "(\\HasNoChildren \\Subscribed) Moo"]
        );
    }

    /// RFC 5258 example 5.9: CHILDINFO only where a descendant meeting the selection is not
    /// listed itself.
    #[test]
    fn rfc5258_childinfo_only_for_hidden_descendants() {
        let (boxes, subs) = account(
            &[
                "foo2",
                "foo2/bar1",
                "foo2/bar2",
                "baz2",
                "baz2/bar2",
                "baz2/bar22",
                "baz2/bar222",
                "eps2",
                "eps2/mamba",
                "qux2/bar2",
            ],
            &["foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2", "eps2/mamba", "qux2/bar2"],
        );
        let selection = ListSelection { subscribed: true, recursive_match: true, ..ListSelection::default() };
        let r = Request { extended: true, selection, ..req(&["*2"]) };
        assert_eq!(
            render(&list(&boxes, &subs, &r)),
            [
                "(\\Subscribed) baz2/bar2",
                "(\\Subscribed) baz2/bar22",
                "(\\Subscribed) baz2/bar222",
                "(\\Subscribed) eps2 CHILDINFO SUBSCRIBED",
                "() foo2 CHILDINFO SUBSCRIBED",
                "(\\Subscribed) foo2/bar2",
                "(\\Subscribed) qux2/bar2",
            ]
        );
    }

    #[test]
    fn status_only_for_existing_mailboxes() {
        let (boxes, subs) = account(&["a/b"], &["gone", "a/b"]);
        let selection = ListSelection { subscribed: true, ..ListSelection::default() };
        let r = Request { extended: true, selection, ..req(&["*"]) };
        let selectable: Vec<_> = list(&boxes, &subs, &r).into_iter().map(|e| (e.name, e.selectable)).collect();
        assert_eq!(selectable, [("a/b".to_string(), true), ("gone".to_string(), false)]);
    }
}
