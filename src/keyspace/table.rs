//! One slot's table of keys.
//!
//! A [`SlotTable`] holds the keys of one hash slot of one database. It is always
//! used under its slot's mutex, so its methods take `&mut self` and never
//! block, await or do I/O. Lazy expiry lives here: [`SlotTable::lookup`]
//! removes a key whose time has passed and says so, so that the caller can
//! record the deletion's effect while it still holds the lock.

use std::sync::LazyLock;

use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;
use std::hash::BuildHasher;

use super::value::{Node, Value};

thread_local! {
    /// Keys this thread has added to a table while a command runs that
    /// must tell of new keys (keyspace notifications of class `n`): the
    /// command's notifications take them (see [`record_created`]).
    static CREATED: std::cell::RefCell<Option<Vec<Vec<u8>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Starts (`true`) or stops recording the keys this thread creates;
/// returns what was recorded and not yet taken.
pub fn record_created(on: bool) -> Vec<Vec<u8>> {
    CREATED.with(|c| {
        let mut c = c.borrow_mut();
        let left = c.take().unwrap_or_default();
        if on {
            *c = Some(Vec::new());
        }
        left
    })
}

/// The keys created since the last call, while recording.
pub fn take_created() -> Vec<Vec<u8>> {
    CREATED.with(|c| {
        c.borrow_mut()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    })
}

fn created(key: &[u8]) {
    CREATED.with(|c| {
        if let Some(keys) = c.borrow_mut().as_mut() {
            keys.push(key.to_vec());
        }
    });
}

/// One hasher for every table: per-process random keys defeat hash flooding,
/// and a shared one lets a key's hash be computed once outside any lock.
static HASHER: LazyLock<DefaultHashBuilder> = LazyLock::new(DefaultHashBuilder::default);

pub fn hash_key(key: &[u8]) -> u64 {
    HASHER.hash_one(key)
}

/// An element of `t` chosen uniformly at random, or None if it is empty.
/// Random buckets are probed until a full one turns up: expected
/// `buckets / len` probes, which [`Buckets::remove`] keeps under ten,
/// where walking to a random position of iteration order costs `len`.
pub fn random_in<'a, T>(t: &'a HashTable<T>, rng: &mut impl rand::Rng) -> Option<&'a T> {
    if t.is_empty() {
        return None;
    }
    loop {
        if let Some(e) = t.get_bucket(rng.gen_range(0..t.num_buckets())) {
            return Some(e);
        }
    }
}

/// `n` elements of a collection drawn at random: `distinct` ones (at most
/// `all`'s length) or with repeats. A hash table is drawn from by probing
/// buckets ([`random_in`]), whatever its size; a compact collection
/// (`table` None, at most a few hundred elements) is collected once.
/// Distinct draws repeat, skipping what `key` says was drawn, while `n` is
/// a third of the size or less, as Redis does; past that everything is
/// collected and sampled.
pub fn draw<'a, T, E: Copy, K: Eq + std::hash::Hash>(
    table: Option<&'a HashTable<T>>,
    elem: impl Fn(&'a T) -> E,
    all: impl FnOnce() -> Vec<E>,
    key: impl Fn(&E) -> K,
    n: usize,
    distinct: bool,
    rng: &mut impl rand::Rng,
) -> Vec<E> {
    match table {
        Some(t) if !distinct => (0..n)
            .filter_map(|_| random_in(t, rng).map(&elem))
            .collect(),
        Some(t) if n * 3 <= t.len() => {
            let mut seen = std::collections::HashSet::with_capacity(n);
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let Some(e) = random_in(t, rng).map(&elem) else {
                    break;
                };
                if seen.insert(key(&e)) {
                    out.push(e);
                }
            }
            out
        }
        _ => {
            let all = all();
            positions(all.len(), n, distinct, rng)
                .into_iter()
                .map(|i| all[i])
                .collect()
        }
    }
}

/// `n` positions among `len` drawn at random: distinct ones (all of them,
/// in order, when `n` is `len` or more) or with repeats.
pub fn positions(len: usize, n: usize, distinct: bool, rng: &mut impl rand::Rng) -> Vec<usize> {
    if len == 0 {
        Vec::new()
    } else if !distinct {
        (0..n).map(|_| rng.gen_range(0..len)).collect()
    } else if n >= len {
        (0..len).collect()
    } else {
        rand::seq::index::sample(rng, len, n).into_vec()
    }
}

/// A collection's hash table (a large set's or hash's) and its layout
/// epoch. Elements stay in their buckets except when the table is rebuilt
/// (grown, rehashed in place, shrunk), and the epoch changes exactly then
/// (it counts the table's rebuilds from a random start): a scan cursor
/// that names a bucket and an epoch still means the same place while the
/// epoch holds (see `command::element_scan`).
///
/// Reads go through `Deref`; every change that could rebuild the table is
/// a method here, so none can forget the epoch.
#[derive(Clone, Debug)]
pub struct Buckets<T> {
    table: HashTable<T>,
    epoch: u16,
}

impl<T> std::ops::Deref for Buckets<T> {
    type Target = HashTable<T>;
    fn deref(&self) -> &HashTable<T> {
        &self.table
    }
}

impl<T> Buckets<T> {
    pub fn with_capacity(n: usize) -> Self {
        Buckets {
            table: HashTable::with_capacity(n),
            epoch: rand::random(),
        }
    }

    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// Before anything that may insert: hashbrown rebuilds a table with no
    /// room left (`len == capacity`) on the next insert, even the lookup
    /// part of `entry`.
    fn before_insert(&mut self) {
        if self.table.len() == self.table.capacity() {
            self.epoch = self.epoch.wrapping_add(1);
        }
    }

    pub fn insert_unique(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        self.before_insert();
        self.table.insert_unique(hash, value, hasher);
    }

    pub fn entry(
        &mut self,
        hash: u64,
        eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
    ) -> Entry<'_, T> {
        self.before_insert();
        self.table.entry(hash, eq, hasher)
    }

    /// Changes an element in place (never moves it).
    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        self.table.find_mut(hash, eq)
    }

    /// Removes an element; a table left less than 1/8 full is shrunk to
    /// twice its length, giving memory back (hashbrown never shrinks by
    /// itself) and keeping [`random_in`] fast. Amortised O(1): the next
    /// shrink needs three quarters of the remaining elements gone.
    pub fn remove(
        &mut self,
        hash: u64,
        eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
    ) -> Option<T> {
        let (gone, _) = self.table.find_entry(hash, eq).ok()?.remove();
        if self.table.capacity() > 64 && self.table.len() * 8 < self.table.capacity() {
            self.table.shrink_to(self.table.len() * 2, hasher);
            self.epoch = self.epoch.wrapping_add(1);
        }
        Some(gone)
    }
}

/// Rehashing a table hashes each node's key again (no hash is stored: 8
/// bytes a key matter more than the rare rehash).
#[allow(clippy::borrowed_box)] // the table's element type is Box<Node>
fn node_hash(n: &Box<Node>) -> u64 {
    hash_key(n.key.as_bytes())
}

/// What a lookup does with a key whose time has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Remove it (a primary: the caller records the deletion).
    Remove,
    /// Report it missing but leave it: a replica waits for its primary's
    /// `DEL`, so that its copy changes only by the primary's stream.
    Hide,
    /// Report it present: the primary's own commands, and the log being
    /// replayed, act on the data exactly as it was when they were recorded.
    Keep,
}

/// What [`SlotTable::lookup`] found.
pub enum Lookup<'a> {
    Found(&'a mut Node),
    Missing,
    /// The key was there but expired; it has now been removed.
    Expired,
}

#[derive(Default)]
pub struct SlotTable {
    table: HashTable<Box<Node>>,
    /// How many keys here carry an expiry, so the active expiry cycle can skip
    /// tables without any and INFO keyspace can report `expires=`.
    volatile: usize,
    /// The latest snapshot that has captured this table (see `Snapshots`).
    pub(crate) snapshot_epoch: u64,
}

impl SlotTable {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn volatile(&self) -> usize {
        self.volatile
    }

    /// Makes room for `additional` more keys at once (a load that knows
    /// how many are coming), instead of growing in steps.
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional, node_hash);
    }

    /// Finds a key, expiring it first if its time has come.
    pub fn lookup(&mut self, key: &[u8], now_ms: i64) -> Lookup<'_> {
        self.lookup_with(key, now_ms, Expiry::Remove, true)
    }

    pub fn lookup_with(
        &mut self,
        key: &[u8],
        now_ms: i64,
        expiry: Expiry,
        touch: bool,
    ) -> Lookup<'_> {
        let hash = hash_key(key);
        match self.table.find_entry(hash, |n| n.key.as_bytes() == key) {
            Ok(e) => {
                if expiry != Expiry::Keep && e.get().is_expired(now_ms) {
                    if expiry == Expiry::Hide {
                        return Lookup::Missing;
                    }
                    e.remove();
                    self.volatile -= 1;
                    Lookup::Expired
                } else {
                    let node = e.into_mut();
                    if touch {
                        node.access = (now_ms / 1000) as u32;
                    }
                    Lookup::Found(node)
                }
            }
            Err(_) => Lookup::Missing,
        }
    }

    /// Looks a key up without touching its access time or expiring it.
    pub fn peek(&self, key: &[u8]) -> Option<&Node> {
        self.table
            .find(hash_key(key), |n| n.key.as_bytes() == key)
            .map(|b| &**b)
    }

    /// A live key for changing in place, without expiry or access bookkeeping
    /// (the caller has just looked it up).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Node> {
        self.table
            .find_mut(hash_key(key), |n| n.key.as_bytes() == key)
            .map(|b| &mut **b)
    }

    /// Inserts or replaces a key's value. A replaced key loses its expiry
    /// unless `keep_ttl` (SET ... KEEPTTL).
    pub fn set(&mut self, key: &[u8], value: Value, now_ms: i64, keep_ttl: bool) -> &mut Node {
        let hash = hash_key(key);
        match self
            .table
            .entry(hash, |n| n.key.as_bytes() == key, node_hash)
        {
            Entry::Occupied(e) => {
                let node = e.into_mut();
                node.value = value;
                node.access = (now_ms / 1000) as u32;
                if !keep_ttl && node.expire_at != 0 {
                    node.expire_at = 0;
                    self.volatile -= 1;
                }
                node
            }
            Entry::Vacant(v) => {
                created(key);
                v.insert(Node::new(key, value, now_ms)).into_mut()
            }
        }
    }

    /// Inserts a whole node (RENAME, MOVE, COPY), replacing any key of
    /// that name: as Redis deletes that key and adds this one, the key is
    /// new either way.
    pub fn insert_node(&mut self, node: Box<Node>) {
        let hash = node_hash(&node);
        if node.expire_at != 0 {
            self.volatile += 1;
        }
        let key = node.key.as_bytes().to_vec();
        created(&key);
        match self
            .table
            .entry(hash, |n| n.key.as_bytes() == key.as_slice(), node_hash)
        {
            Entry::Occupied(mut e) => {
                if e.get().expire_at != 0 {
                    self.volatile -= 1;
                }
                *e.get_mut() = node;
            }
            Entry::Vacant(v) => {
                v.insert(node);
            }
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Box<Node>> {
        let hash = hash_key(key);
        match self.table.find_entry(hash, |n| n.key.as_bytes() == key) {
            Ok(e) => {
                let (node, _) = e.remove();
                if node.expire_at != 0 {
                    self.volatile -= 1;
                }
                Some(node)
            }
            Err(_) => None,
        }
    }

    /// Sets or clears (`at == 0`) a key's absolute expiry.
    pub fn set_expire(&mut self, key: &[u8], at: i64) -> bool {
        let hash = hash_key(key);
        let Some(node) = self.table.find_mut(hash, |n| n.key.as_bytes() == key) else {
            return false;
        };
        match (node.expire_at != 0, at != 0) {
            (false, true) => self.volatile += 1,
            (true, false) => self.volatile -= 1,
            _ => {}
        }
        node.expire_at = at;
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.table.iter().map(|b| &**b)
    }

    /// Moves the keys out (to free them elsewhere), leaving an empty table
    /// that keeps its snapshot bookkeeping.
    pub fn take_keys(&mut self) -> SlotTable {
        let epoch = self.snapshot_epoch;
        let old = std::mem::take(self);
        self.snapshot_epoch = epoch;
        old
    }

    pub fn clear(&mut self) -> usize {
        let n = self.table.len();
        self.table = HashTable::new();
        self.volatile = 0;
        n
    }

    /// Removes every key whose expiry has passed; returns their names.
    pub fn remove_expired(&mut self, now_ms: i64, out: &mut Vec<Vec<u8>>) {
        let before = out.len();
        self.table.retain(|n| {
            if n.is_expired(now_ms) {
                out.push(n.key.as_bytes().to_vec());
                false
            } else {
                true
            }
        });
        self.volatile -= out.len() - before;
    }

    /// The active expiry cycle's sample: looks at the buckets from `from`
    /// on until `want` volatile keys were seen, removing the expired ones
    /// (their names pushed to `out`). Returns where to go on next time
    /// (`None`: the table's end was reached), the volatile keys seen, and
    /// the time to live left to those that stay, summed, in ms. A removal
    /// moves no other key, so bucket indexes stay good for the walk; a
    /// table grown since makes the next walk start somewhere else, which a
    /// sample may.
    pub fn expire_some(
        &mut self,
        from: usize,
        want: usize,
        now_ms: i64,
        out: &mut Vec<Vec<u8>>,
    ) -> (Option<usize>, usize, i64) {
        let (mut seen, mut ttl, mut removed) = (0, 0i64, 0);
        let buckets = self.table.num_buckets();
        let mut at = from;
        while at < buckets && seen < want {
            let expired = match self.table.get_bucket(at) {
                Some(n) if n.expire_at != 0 => {
                    seen += 1;
                    if n.is_expired(now_ms) {
                        out.push(n.key.as_bytes().to_vec());
                        true
                    } else {
                        // Saturating: PXAT takes times up to i64::MAX.
                        ttl = ttl.saturating_add(n.expire_at - now_ms);
                        false
                    }
                }
                _ => false,
            };
            if expired {
                if let Ok(entry) = self.table.get_bucket_entry(at) {
                    entry.remove();
                    removed += 1;
                }
            }
            at += 1;
        }
        self.volatile -= removed;
        ((at < buckets).then_some(at), seen, ttl)
    }

    /// Gives memory back after mass deletion, as Redis's cron resizes its
    /// dicts: a table under 1/8 full shrinks to twice its keys, and an
    /// empty one lets its buckets go. (Small tables were kept whole: after
    /// a million keys were deleted, a third of the 16384 tables held their
    /// 64 buckets, 4 MB for nothing.)
    pub fn shrink(&mut self) {
        let (len, cap) = (self.table.len(), self.table.capacity());
        if cap > 0 && len * 8 < cap && (cap > 64 || len == 0) {
            self.table.shrink_to(len * 2, node_hash);
        }
    }

    /// Heap bytes held by the table itself (buckets and control bytes).
    pub fn overhead(&self) -> usize {
        self.table.capacity() * 9
    }
}
