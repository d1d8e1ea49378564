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

/// The clients watching one (db, key): each client's dirty flag, and
/// whether the key was already expired (not yet deleted) when it watched
/// it, shared with the client's own list (see [`Watches::touch`]).
type Watchers = Vec<(Arc<AtomicBool>, Arc<AtomicBool>)>;

/// A key's state in a database, as a flush or SWAPDB judges watches by it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Absent,
    Live,
    /// There, but past its expiry time.
    Expired,
}

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

    /// `stale`: the key was there but expired as it was watched.
    pub fn watch(&self, db: usize, key: &[u8], flag: &Arc<AtomicBool>, stale: &Arc<AtomicBool>) {
        let mut m = self.map.lock();
        let v = m.entry((db, key.to_vec())).or_default();
        if !v.iter().any(|(f, _)| Arc::ptr_eq(f, flag)) {
            v.push((flag.clone(), stale.clone()));
            self.entries.fetch_add(1, Relaxed);
        }
    }

    pub fn unwatch(&self, db: usize, key: &[u8], flag: &Arc<AtomicBool>) {
        let mut m = self.map.lock();
        let k = (db, key.to_vec());
        if let Some(v) = m.get_mut(&k) {
            let before = v.len();
            v.retain(|(f, _)| !Arc::ptr_eq(f, flag));
            self.entries.fetch_sub(before - v.len(), Relaxed);
            if v.is_empty() {
                m.remove(&k);
            }
        }
    }

    /// A key of `db` changed; `deleted`: the change deleted it. As in
    /// Redis, deleting a key that was already expired when it was watched
    /// changes nothing logically: that watch is kept, the key now counted
    /// as absent.
    pub fn touch(&self, db: usize, key: &[u8], deleted: bool) {
        if self.is_empty() {
            return;
        }
        if let Some(v) = self.map.lock().get(&(db, key.to_vec())) {
            for (flag, stale) in v {
                if deleted && stale.swap(false, Relaxed) {
                    continue;
                }
                flag.store(true, Relaxed);
            }
        }
    }

    /// FLUSHDB, FLUSHALL and SWAPDB, before they change anything: each
    /// `(emptied, replaced_with)` pair names a database whose keys go and
    /// the one whose keys take their place (SWAPDB's other), and `state`
    /// says how a key stands in a database. As Redis judges it: a watch on
    /// a key in neither survives; an expired key that goes, or stays
    /// expired, is no change; an absent key replaced by an expired one now
    /// counts as expired; anything else touches the watch.
    pub fn touch_replaced(
        &self,
        dbs: &[(usize, Option<usize>)],
        mut state: impl FnMut(usize, &[u8]) -> KeyState,
    ) {
        if self.is_empty() {
            return;
        }
        for ((d, key), v) in self.map.lock().iter() {
            let Some(&(_, replaced)) = dbs.iter().find(|(e, _)| e == d) else {
                continue;
            };
            let in_emptied = state(*d, key) != KeyState::Absent;
            let incoming = replaced.map_or(KeyState::Absent, |r| state(r, key));
            if !in_emptied && incoming == KeyState::Absent {
                continue;
            }
            for (flag, stale) in v {
                if stale.load(Relaxed) {
                    match incoming {
                        KeyState::Absent => {
                            stale.store(false, Relaxed);
                            continue;
                        }
                        KeyState::Expired => continue,
                        KeyState::Live => {}
                    }
                } else if !in_emptied && incoming == KeyState::Expired {
                    stale.store(true, Relaxed);
                    continue;
                }
                flag.store(true, Relaxed);
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
    /// This thread holds the gate exclusively: what it runs meanwhile
    /// (DEBUG RELOAD replaying a snapshot, which takes the gate shared
    /// for each command) already has it.
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`Gate::shared_while`] stopped waiting.
#[derive(Debug)]
pub struct GaveUp;

/// The gate held exclusively, until dropped.
pub struct Exclusive<'a> {
    _shards: Vec<RwLockWriteGuard<'a, ()>>,
    /// Taken inside another hold on the same thread: that one releases.
    nested: bool,
    /// Another holder made this one wait: time went on meanwhile.
    pub waited: bool,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        if !self.nested {
            HOLDING.set(false);
        }
    }
}

impl Gate {
    /// Held by every command but EXEC while it runs; `None` on a thread
    /// that holds the gate exclusively already.
    pub fn shared(&self) -> Option<RwLockReadGuard<'_, ()>> {
        if HOLDING.get() {
            return None;
        }
        Some(self.shards[MY_SHARD.with(|s| *s)].0.read())
    }

    /// As [`Gate::shared`], but waiting only while `wait` says so (asked
    /// every few milliseconds): a script past busy-reply-threshold holds
    /// the gate (see `server::busy`). Also says whether it waited.
    pub fn shared_while(
        &self,
        wait: impl Fn() -> bool,
    ) -> Result<(Option<RwLockReadGuard<'_, ()>>, bool), GaveUp> {
        if HOLDING.get() {
            return Ok((None, false));
        }
        let shard = &self.shards[MY_SHARD.with(|s| *s)].0;
        if let Some(g) = shard.try_read() {
            return Ok((Some(g), false));
        }
        loop {
            if !wait() {
                return Err(GaveUp);
            }
            if let Some(g) = shard.try_read_for(std::time::Duration::from_millis(10)) {
                return Ok((Some(g), true));
            }
        }
    }

    /// Whether this thread holds the gate exclusively.
    pub fn held_here(&self) -> bool {
        HOLDING.get()
    }

    /// Held by EXEC: no other command runs meanwhile. Re-entrant on the
    /// thread that holds it.
    pub fn exclusive(&self) -> Exclusive<'_> {
        if HOLDING.get() {
            return Exclusive {
                _shards: Vec::new(),
                nested: true,
                waited: false,
            };
        }
        let mut waited = false;
        let shards = (self.shards.iter())
            .map(|s| {
                s.0.try_write().unwrap_or_else(|| {
                    waited = true;
                    s.0.write()
                })
            })
            .collect();
        HOLDING.set(true);
        Exclusive {
            _shards: shards,
            nested: false,
            waited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_sets_only_the_watchers_flags() {
        let w = Watches::default();
        let flag = || Arc::new(AtomicBool::new(false));
        let (a, b, not_stale) = (flag(), flag(), flag());
        w.watch(0, b"k", &a, &not_stale);
        w.watch(0, b"k", &a, &not_stale);
        w.watch(1, b"k", &b, &flag());
        w.touch(0, b"other", false);
        w.touch(0, b"k", true);
        assert!(a.load(Relaxed) && !b.load(Relaxed));
        let absent = |_: usize, k: &[u8]| {
            if k == b"k" {
                KeyState::Absent
            } else {
                KeyState::Live
            }
        };
        w.touch_replaced(&[(1, None)], absent);
        assert!(!b.load(Relaxed), "a key that was not there");
        w.touch_replaced(&[(1, None)], |_, _| KeyState::Live);
        assert!(b.load(Relaxed));
        w.unwatch(0, b"k", &a);
        w.unwatch(1, b"k", &b);
        assert!(w.is_empty());
    }

    /// Redis's rules for a key already expired when watched: its deletion
    /// is no change, and SWAPDB bringing an expired key in its place keeps
    /// it so.
    #[test]
    fn an_expired_key_watched_is_no_change_when_it_goes() {
        let w = Watches::default();
        let (dirty, stale) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(true)),
        );
        w.watch(0, b"k", &dirty, &stale);
        w.touch(0, b"k", true);
        assert!(!dirty.load(Relaxed) && !stale.load(Relaxed));
        // Now absent: an expired key swapped in keeps it expired, then a
        // flush removing it again is no change either.
        let swapped_in = |d: usize, _: &[u8]| {
            if d == 0 {
                KeyState::Absent
            } else {
                KeyState::Expired
            }
        };
        w.touch_replaced(&[(0, Some(1)), (1, Some(0))], swapped_in);
        assert!(!dirty.load(Relaxed) && stale.load(Relaxed));
        w.touch_replaced(&[(0, None)], |_, _| KeyState::Expired);
        assert!(!dirty.load(Relaxed) && !stale.load(Relaxed));
        // A live key in its place is a change.
        w.touch_replaced(&[(0, Some(1))], |d, _| {
            if d == 0 {
                KeyState::Absent
            } else {
                KeyState::Live
            }
        });
        assert!(dirty.load(Relaxed));
    }
}
