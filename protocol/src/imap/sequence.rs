//! Sequence sets: message sequence numbers or UIDs (RFC 9051 section 9, `sequence-set`), and
//! `$`, the result saved by `SEARCH RETURN (SAVE)` (RFC 5182).

use std::fmt;
use std::num::NonZeroU32;

/// One end of a range: a number, or `*` for the largest number in use.
///
/// ```text
/// seq-number = nz-number / "*"
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeqNumber {
    Value(NonZeroU32),
    /// `*`: the largest sequence number (or UID) in the mailbox.
    Largest,
}

impl SeqNumber {
    /// The number, with `*` standing for `largest`.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            Self::Value(n) => n.get(),
            Self::Largest => largest,
        }
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(n) => write!(f, "{n}"),
            Self::Largest => f.write_str("*"),
        }
    }
}

/// A number or a range. `2:4` and `4:2` are the same range (RFC 9051 section 9: "the
/// contained sequence numbers are those between the two values inclusive, in either order").
///
/// ```text
/// seq-range = seq-number ":" seq-number
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sequence {
    Single(SeqNumber),
    Range(SeqNumber, SeqNumber),
}

impl Sequence {
    /// The range as `(low, high)`, with `*` standing for `largest`.
    pub fn resolve(self, largest: u32) -> (u32, u32) {
        let (a, b) = match self {
            Self::Single(n) => (n.resolve(largest), n.resolve(largest)),
            Self::Range(a, b) => (a.resolve(largest), b.resolve(largest)),
        };
        (a.min(b), a.max(b))
    }

    fn uses_largest(self) -> bool {
        match self {
            Self::Single(n) => n == SeqNumber::Largest,
            Self::Range(a, b) => a == SeqNumber::Largest || b == SeqNumber::Largest,
        }
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(n) => write!(f, "{n}"),
            Self::Range(a, b) => write!(f, "{a}:{b}"),
        }
    }
}

/// A set of message numbers or UIDs.
///
/// ```text
/// sequence-set     = (seq-number / seq-range) ["," sequence-set] / seq-last-command
/// seq-last-command = "$"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SequenceSet {
    /// The numbers and ranges in the order sent. Invariant: not empty.
    Ranges(Vec<Sequence>),
    /// `$`: the set saved by the last `SEARCH RETURN (SAVE)` (RFC 5182).
    Saved,
}

impl SequenceSet {
    /// A set of one number or range.
    pub fn single(sequence: Sequence) -> Self {
        Self::Ranges(vec![sequence])
    }

    /// Whether `*` appears (known-uids of QRESYNC may not use it).
    pub fn uses_largest(&self) -> bool {
        match self {
            Self::Ranges(ranges) => ranges.iter().any(|r| r.uses_largest()),
            Self::Saved => false,
        }
    }

    /// The set as sorted, merged, inclusive `(low, high)` ranges, `*` standing for `largest`.
    /// `None` for [`SequenceSet::Saved`]: the session holds that set.
    pub fn to_ranges(&self, largest: u32) -> Option<Vec<(u32, u32)>> {
        let Self::Ranges(ranges) = self else {
            return None;
        };
        let mut resolved: Vec<(u32, u32)> = ranges.iter().map(|r| r.resolve(largest)).collect();
        resolved.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(resolved.len());
        for (low, high) in resolved {
            match merged.last_mut() {
                Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
                _ => merged.push((low, high)),
            }
        }
        Some(merged)
    }

    /// Whether `n` is in the set, `*` standing for `largest`; `false` for `$`.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        match self {
            Self::Ranges(ranges) => ranges.iter().any(|r| {
                let (low, high) = r.resolve(largest);
                (low..=high).contains(&n)
            }),
            Self::Saved => false,
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Saved => f.write_str("$"),
            Self::Ranges(ranges) => {
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> SeqNumber {
        SeqNumber::Value(NonZeroU32::new(v).expect("non-zero in tests"))
    }

    #[test]
    fn ranges_resolve_in_either_order() {
        assert_eq!(Sequence::Range(n(4), n(2)).resolve(10), (2, 4));
        assert_eq!(Sequence::Range(SeqNumber::Largest, n(3)).resolve(10), (3, 10));
        assert_eq!(Sequence::Single(SeqNumber::Largest).resolve(7), (7, 7));
    }

    #[test]
    fn to_ranges_sorts_and_merges() {
        let set = SequenceSet::Ranges(vec![
            Sequence::Range(n(9), n(7)),
            Sequence::Single(n(1)),
            Sequence::Range(n(2), n(3)),
            Sequence::Single(SeqNumber::Largest),
            Sequence::Single(n(8)),
        ]);
        assert_eq!(set.to_ranges(20), Some(vec![(1, 3), (7, 9), (20, 20)]));
        assert_eq!(set.to_string(), "9:7,1,2:3,*,8");
        assert!(set.uses_largest());
        assert!(set.contains(8, 20) && set.contains(20, 20) && !set.contains(5, 20));
        assert_eq!(SequenceSet::Saved.to_ranges(3), None);
        assert_eq!(SequenceSet::Saved.to_string(), "$");
        assert!(!SequenceSet::single(Sequence::Range(n(1), n(u32::MAX))).uses_largest());
        assert_eq!(
            SequenceSet::Ranges(vec![Sequence::Range(n(1), n(u32::MAX)), Sequence::Single(n(5))]).to_ranges(0),
            Some(vec![(1, u32::MAX)])
        );
    }
}
