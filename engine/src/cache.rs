//! Decoded message bodies, shared by every reader of the store.
//!
//! A compressed body is decoded on each read. Several sessions often read the same bodies at
//! about the same time (a user's phone, laptop and tablet fetching the mail that just came;
//! a client fetching a message's parts one FETCH at a time), so the store keeps the last
//! decoded bodies, up to a byte budget, keyed by blob id and content hash (a blob's content
//! never changes, wherever compaction or background compression moves its bytes). The id is
//! part of the key because the hash is only as trustworthy as the log: two blobs of a damaged
//! or crafted log may claim one hash with different bodies, and each must read as its own.
//! Eviction is first in, first out: the readers this serves read the same bodies close
//! together in time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A blob's id and content hash.
pub(crate) type Key = (u64, [u8; 32]);

pub(crate) struct BodyCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Arc<[u8]>>,
    order: VecDeque<Key>,
    bytes: usize,
}

impl BodyCache {
    /// A cache of at most `capacity` bytes of bodies (0: none).
    pub fn new(capacity: usize) -> BodyCache {
        BodyCache { capacity, inner: Mutex::new(Inner::default()) }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<[u8]>> {
        if self.capacity == 0 {
            return None;
        }
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).map.get(key).cloned()
    }

    /// Keeps `body` (shared, not copied), evicting the oldest bodies to stay within the
    /// budget. Bodies bigger than an eighth of it are not kept (one would push out many).
    pub fn insert(&self, key: Key, body: &Arc<[u8]>) {
        if body.len() > self.capacity / 8 {
            return;
        }
        let body = body.clone();
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if c.map.contains_key(&key) {
            return;
        }
        while c.bytes + body.len() > self.capacity {
            let Some(old) = c.order.pop_front() else { break };
            if let Some(b) = c.map.remove(&old) {
                c.bytes -= b.len();
            }
        }
        c.bytes += body.len();
        c.order.push_back(key);
        c.map.insert(key, body);
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bodies_within_the_budget() {
        let cache = BodyCache::new(1000);
        let body = |n: u8, len: usize| -> Arc<[u8]> { vec![n; len].into() };
        for n in 0..10u8 {
            cache.insert((1, [n; 32]), &body(n, 100));
        }
        assert_eq!(cache.bytes(), 1000);
        cache.insert((1, [10; 32]), &body(10, 120));
        assert!(cache.get(&(1, [0; 32])).is_none() && cache.get(&(1, [1; 32])).is_none(), "the oldest went first");
        assert_eq!(cache.get(&(1, [10; 32])).unwrap().len(), 120);
        assert_eq!(cache.get(&(1, [9; 32])).unwrap()[0], 9);
        assert!(cache.bytes() <= 1000);
        cache.insert((1, [11; 32]), &body(11, 126)); // more than an eighth: not kept
        assert!(cache.get(&(1, [11; 32])).is_none());
        let none = BodyCache::new(0);
        none.insert((1, [1; 32]), &body(1, 0));
        assert!(none.get(&(1, [1; 32])).is_none());
    }
}
