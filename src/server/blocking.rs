//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN, ...).
//!
//! ```text
//!  BLPOP finds every list empty ─▶ Action::Block ─▶ connection registers a
//!  Waiter at the back of each key's queue, then loops:
//!        retry the command ── served ──▶ reply, leave the queues, signal
//!           │ still empty                 the keys again (the next waiter
//!           ▼                             may be served too)
//!        wait: signal │ timeout (null reply) │ CLIENT UNBLOCK │ kill
//! ```
//!
//! A write to a key (any effect naming it) *signals* it: the waiter at the
//! front of that key's queue is woken and retries its command. Only the
//! front one is woken, and a waiter keeps its place until it is served or
//! gives up, so clients blocked on a key are served first come, first
//! served; a stream reader that was woken and found nothing for it wakes
//! the next (see [`Blocked::pass_on`]). The retry runs as an ordinary
//! command (slot locks, effects, gate), so a blocking command's pop is
//! exactly a non-blocking one, and is recorded as one (`LPOP`, `LMOVE`,
//! `ZPOPMIN`...).
//!
//! Registering first and retrying once before the first wait closes the
//! window between "found nothing" and "registered": a push in between
//! leaves a stored permit on the waiter's `Notify`, never a lost wake-up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// How a wait ended other than by being served.
pub const UNBLOCK_TIMEOUT: u8 = 1;
pub const UNBLOCK_ERROR: u8 = 2;

pub struct Waiter {
    pub client_id: u64,
    pub wake: Notify,
    /// Set by CLIENT UNBLOCK: 0, UNBLOCK_TIMEOUT or UNBLOCK_ERROR.
    pub unblock: AtomicU8,
}

#[derive(Default)]
pub struct Blocked {
    /// Registered waiters; 0 lets every write skip the map.
    waiting: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<(usize, Vec<u8>), VecDeque<Arc<Waiter>>>,
    by_client: HashMap<u64, Arc<Waiter>>,
}

impl Blocked {
    pub fn is_empty(&self) -> bool {
        self.waiting.load(Relaxed) == 0
    }

    pub fn register(&self, db: usize, keys: &[bytes::Bytes], client_id: u64) -> Arc<Waiter> {
        let w = Arc::new(Waiter {
            client_id,
            wake: Notify::new(),
            unblock: AtomicU8::new(0),
        });
        let mut g = self.inner.lock();
        for k in keys {
            let q = g.keys.entry((db, k.to_vec())).or_default();
            if !q.iter().any(|x| Arc::ptr_eq(x, &w)) {
                q.push_back(w.clone());
            }
        }
        g.by_client.insert(client_id, w.clone());
        self.waiting.fetch_add(1, Relaxed);
        w
    }

    pub fn unregister(&self, db: usize, keys: &[bytes::Bytes], w: &Arc<Waiter>) {
        let mut g = self.inner.lock();
        for k in keys {
            let key = (db, k.to_vec());
            if let Some(q) = g.keys.get_mut(&key) {
                q.retain(|x| !Arc::ptr_eq(x, w));
                if q.is_empty() {
                    g.keys.remove(&key);
                }
            }
        }
        g.by_client.remove(&w.client_id);
        self.waiting.fetch_sub(1, Relaxed);
    }

    /// A key may have become non-empty: wake the first client waiting on it.
    pub fn signal(&self, db: usize, key: &[u8]) {
        if self.is_empty() {
            return;
        }
        if let Some(w) = self
            .inner
            .lock()
            .keys
            .get(&(db, key.to_vec()))
            .and_then(|q| q.front())
        {
            w.wake.notify_one();
        }
    }

    /// A woken waiter whose retry found nothing for it hands the wake-up to
    /// the waiter right behind it on each of its keys: what it could not
    /// take may serve another (a stream entry too old for one reader is
    /// new to the next; another group's reader). Registration order is the
    /// same in every queue, so hand-overs only go backwards and end.
    pub fn pass_on(&self, db: usize, keys: &[bytes::Bytes], waiter: &Arc<Waiter>) {
        if self.is_empty() {
            return;
        }
        let inner = self.inner.lock();
        for k in keys {
            let Some(q) = inner.keys.get(&(db, k.to_vec())) else {
                continue;
            };
            if let Some(pos) = q.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                if let Some(next) = q.get(pos + 1) {
                    next.wake.notify_one();
                }
            }
        }
    }

    /// Every key of `db` (or of all) may have changed (SWAPDB, FLUSHALL...).
    pub fn signal_db(&self, db: Option<usize>) {
        if self.is_empty() {
            return;
        }
        for ((d, _), q) in self.inner.lock().keys.iter() {
            if db.is_none_or(|db| db == *d) {
                if let Some(w) = q.front() {
                    w.wake.notify_one();
                }
            }
        }
    }

    /// CLIENT UNBLOCK: ends a client's wait; false if it is not blocked.
    pub fn unblock(&self, client_id: u64, how: u8) -> bool {
        match self.inner.lock().by_client.get(&client_id) {
            Some(w) => {
                w.unblock.store(how, Relaxed);
                w.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// How many clients are blocked (INFO `blocked_clients`).
    pub fn count(&self) -> usize {
        self.waiting.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_waiter_is_woken_and_unblock_finds_clients() {
        let b = Blocked::default();
        let keys = [bytes::Bytes::from_static(b"k")];
        let first = b.register(0, &keys, 1);
        let second = b.register(0, &keys, 2);
        b.signal(0, b"k");
        // A stored permit: the first waiter's next wait returns at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            first.wake.notified().await;
            let second_woken =
                tokio::time::timeout(std::time::Duration::from_millis(10), second.wake.notified())
                    .await;
            assert!(second_woken.is_err());
        });
        assert!(b.unblock(2, UNBLOCK_ERROR));
        assert!(!b.unblock(3, UNBLOCK_ERROR));
        b.unregister(0, &keys, &first);
        b.unregister(0, &keys, &second);
        assert!(b.is_empty());
    }
}
