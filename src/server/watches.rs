//! WATCH's registry and the transaction gate.
//!
//! [`Watches`] maps each watched `(db, key)` to the flags of the clients
//! watching it. Every change to the keyspace goes through the effect
//! stream, so the command layer calls [`Watches::touch`] for the keys of
//! every effect it records (and the active expiry cycle for the keys it
//! deletes): a watching client's flag is set, and its EXEC fails. When
//! nobody watches anything, the check is one relaxed load.
//!
//! [`Gate`] is what makes EXEC atomic across any number of keys: every
//! command runs holding a *shared* gate, EXEC holds it *exclusively*, so
//! while a transaction runs no other client's command does — what Redis's
//! single thread gives for free. The gate is split in shards (one per
//! thread, cache-line aligned), so that the shared side, taken by every
//! command, never bounces a cache line between cores; EXEC takes every
//! shard, in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The flags of the clients watching one (db, key).
type Watchers = Vec<Arc<AtomicBool>>;

#[derive(Default)]
pub struct Watches {
    /// Watched (db, key) entries; 0 lets every write skip the map.
    entries: AtomicUsize,
    map: Mutex<HashMap<(usize, Vec<u8>), Watchers>>,
}

impl Watches {
    pub fn is_empty(&self) -> bool {
        self.entries.load(Relaxed) == 0
    }

    pub fn watch(&self, db: usize, key: &[u8], flag: &Arc<AtomicBool>) {
        let mut m = self.map.lock();
        let v = m.entry((db, key.to_vec())).or_default();
        if !v.iter().any(|f| Arc::ptr_eq(f, flag)) {
            v.push(flag.clone());
            self.entries.fetch_add(1, Relaxed);
        }
    }

    pub fn unwatch(&self, db: usize, key: &[u8], flag: &Arc<AtomicBool>) {
        let mut m = self.map.lock();
        let k = (db, key.to_vec());
        if let Some(v) = m.get_mut(&k) {
            let before = v.len();
            v.retain(|f| !Arc::ptr_eq(f, flag));
            self.entries.fetch_sub(before - v.len(), Relaxed);
            if v.is_empty() {
                m.remove(&k);
            }
        }
    }

    /// A key of `db` changed.
    pub fn touch(&self, db: usize, key: &[u8]) {
        if self.is_empty() {
            return;
        }
        if let Some(v) = self.map.lock().get(&(db, key.to_vec())) {
            v.iter().for_each(|f| f.store(true, Relaxed));
        }
    }

    /// FLUSHDB, FLUSHALL and SWAPDB, before they change anything: the
    /// watched keys of `dbs` for which `exists` says yes are touched. As in
    /// Redis, a WATCH on a key that was not there survives a flush; SWAPDB's
    /// `exists` looks in both databases.
    pub fn touch_existing(&self, dbs: &[usize], mut exists: impl FnMut(usize, &[u8]) -> bool) {
        if self.is_empty() {
            return;
        }
        for ((d, key), v) in self.map.lock().iter() {
            if dbs.contains(d) && exists(*d, key) {
                v.iter().for_each(|f| f.store(true, Relaxed));
            }
        }
    }
}

const SHARDS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<()>);

#[derive(Default)]
pub struct Gate {
    shards: [Shard; SHARDS],
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}

impl Gate {
    /// Held by every command but EXEC while it runs.
    pub fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.shards[MY_SHARD.with(|s| *s)].0.read()
    }

    /// Held by EXEC: no other command runs meanwhile.
    pub fn exclusive(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        self.shards.iter().map(|s| s.0.write()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_sets_only_the_watchers_flags() {
        let w = Watches::default();
        let (a, b) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        w.watch(0, b"k", &a);
        w.watch(0, b"k", &a);
        w.watch(1, b"k", &b);
        w.touch(0, b"other");
        w.touch(0, b"k");
        assert!(a.load(Relaxed) && !b.load(Relaxed));
        w.touch_existing(&[1], |_, k| k != b"k");
        assert!(!b.load(Relaxed), "a key that was not there");
        w.touch_existing(&[1], |_, _| true);
        assert!(b.load(Relaxed));
        w.unwatch(0, b"k", &a);
        w.unwatch(1, b"k", &b);
        assert!(w.is_empty());
    }
}
