//! The keyspace: databases made of 16384 per-slot tables.
//!
//! ```text
//!   Keyspace ── dbs[0..databases] ── Db ── cells[0..16384] ── Cell: Mutex<SlotTable>, count
//!                                                                    └─ HashTable<Box<Node>>
//! ```
//!
//! Every key lives in the table of its hash slot (CRC16/XMODEM of the key, or
//! of its `{hash tag}`, mod 16384), the same slot Redis Cluster gives it. Per
//! slot tables make slot counts O(1) and make a slot the unit that cluster
//! routing, migration and locking all share.
//!
//! A slot's table is made the first time a key lands in it (a pointer a
//! slot until then, and never freed after): a database holding a few
//! keys costs a few of them, not 16384 tables (1 MB). Whatever visits
//! every slot (SCAN, KEYS, FLUSHALL, snapshots, the expiry cycle) passes
//! over the slots never used.
//!
//! ## Locking and atomicity
//! A slot table is only touched under its mutex. A command locks every slot it
//! touches before it reads or writes anything and releases them after it has
//! recorded its effects, so each command is atomic. Locks are always taken in
//! ascending `(db, slot)` order, which is what makes multi-key and multi-db
//! commands (MSET, RENAME, MOVE, SWAPDB, FLUSHALL) deadlock-free: see
//! [`Keyspace::lock`]. Single-key commands on different slots run in parallel
//! on different cores.
//!
//! ## Snapshots without stopping the world
//! A snapshot (the base of a log rewrite) must capture every slot as it was
//! at one instant S while clients keep writing. [`Keyspace::start_snapshot`]
//! fixes S with every slot locked for an instant and raises the snapshot
//! epoch; from then on, whoever locks a slot whose table has not been
//! captured yet (a client, or the snapshot's own pass over all slots) hands
//! it to the observer first, under the same lock, before anything can change
//! it. Each slot is captured exactly once, as it was at S, and nothing is
//! copied that is not written out: no fork, no second copy of the dataset.
//!
//! ## What is absent
//! This module never awaits, never does I/O and knows nothing of RESP,
//! clients or effects; it is plain data behind locks.

pub mod evict;
pub mod hash;
pub mod intset;
pub mod list;
pub mod member;
pub mod packed;
pub mod set;
pub mod stream;
pub mod table;
pub mod value;
pub mod zset;

use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

pub use hash::Hash;
pub use list::List;
pub use set::Set;
pub use stream::Stream;
pub use table::{Expiry, Lookup, SlotTable};
pub use value::{Collection, Kind, Node, SmallBuf, Value};
pub use zset::ZSet;

/// When a small collection outgrows its compact encoding: more than
/// `entries` elements, or one element longer than `value` bytes (Redis's
/// `*-max-listpack-entries` / `*-max-listpack-value`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub entries: usize,
    pub value: usize,
}

/// A set's limits: its listpack's, and how many members a set of
/// integers keeps as an intset (`set-max-intset-entries`).
#[derive(Clone, Copy, Debug)]
pub struct SetLimits {
    pub listpack: Limits,
    pub ints: usize,
}

/// The compact-encoding limits of each collection type.
#[derive(Clone, Copy, Debug)]
pub struct Encodings {
    pub hash: Limits,
    pub set: SetLimits,
    pub zset: Limits,
    pub list: list::ChunkLimit,
    pub stream: stream::NodeLimits,
}

impl Default for Encodings {
    /// Redis's defaults.
    fn default() -> Self {
        let l = Limits {
            entries: 128,
            value: 64,
        };
        Encodings {
            hash: l,
            set: SetLimits {
                listpack: l,
                ints: 512,
            },
            zset: l,
            list: list::ChunkLimit::default(),
            stream: stream::NodeLimits::default(),
        }
    }
}

pub const SLOTS: usize = 16384;

/// A hash slot, 0..16384.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(pub u16);

/// The slot of a key, as Redis Cluster computes it: if the key has a `{...}`
/// with at least one byte between the first `{` and the next `}`, only that
/// part is hashed, so related keys can be kept in one slot.
pub fn key_hash_slot(key: &[u8]) -> SlotId {
    let part = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    SlotId(CRC16.checksum(part) & 0x3FFF)
}

/// CRC16/XMODEM with a slice-by-16 table: every command hashes its key (and
/// the pipelining prefetch hashes the next one), so this is on the hot path.
static CRC16: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_XMODEM);

/// Receives each slot table's contents once per snapshot (see the module
/// docs). Called with the slot locked: it must only copy out, never lock.
pub trait SnapshotObserver: Send + Sync {
    fn capture(&self, db: usize, table: &SlotTable);
}

#[derive(Default)]
struct Snapshots {
    /// The epoch being captured; 0 when no snapshot is running.
    active: AtomicU64,
    last: AtomicU64,
    observer: Mutex<Option<Arc<dyn SnapshotObserver>>>,
    /// Serialises the making of slot tables with whatever locks a
    /// database whole (the start of a snapshot, FLUSHALL, KEYS): a table
    /// made after a snapshot's S starts out as captured (it was empty at
    /// S), and none appears under a flush.
    init: Mutex<()>,
    /// The running snapshot's keys at S, and those captured so far (INFO's
    /// current_save_keys_total/processed); both 0 between snapshots.
    keys_total: AtomicU64,
    keys_done: AtomicU64,
}

impl Snapshots {
    /// Captures a freshly locked table if the running snapshot has not yet.
    #[inline]
    fn on_lock(&self, db: usize, t: &mut SlotTable) {
        let active = self.active.load(Ordering::Acquire);
        if active != 0 && t.snapshot_epoch < active {
            if let Some(obs) = self.observer.lock().clone() {
                obs.capture(db, t);
            }
            self.keys_done.fetch_add(t.len() as u64, Ordering::Relaxed);
            t.snapshot_epoch = active;
        }
    }
}

/// A slot that has held a key: its table, and the table's key count
/// (low 32 bits) and volatile key count (high 32) as of its last unlock,
/// so that RANDOMKEY, eviction and the expiry cycle skip empty slots
/// without locking them.
struct Cell {
    table: Mutex<SlotTable>,
    count: AtomicU64,
}

// Cells are shared between threads through raw pointers, which do not
// ask for this themselves.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Cell>()
};

pub struct Db {
    index: usize,
    /// Each slot's cell, made on its first lock ([`Db::lock_slot`]) and
    /// freed with the database: null until then, a pointer a slot (8
    /// bytes, where an empty table would take 64).
    cells: Box<[AtomicPtr<Cell>]>,
    /// The same counts' changes, added up per thread: DBSIZE sums
    /// [`STRIPES`] of these instead of 16384 slots (it ran at a sixth of
    /// Redis's rate), and a thread adds to a stripe no other thread
    /// usually writes, so a write that creates or deletes a key costs no
    /// cache line moving between cores.
    totals: Box<[Stripe]>,
    snapshots: Arc<Snapshots>,
    /// Where the active expiry cycle goes on in this database: a slot
    /// table and a bucket in it, as `slot << 32 | bucket`.
    pub expire_cursor: std::sync::atomic::AtomicUsize,
    /// The volatile keys' average time to live in ms, as the expiry cycle
    /// samples it (INFO keyspace's `avg_ttl`, smoothed as Redis's).
    pub avg_ttl: std::sync::atomic::AtomicI64,
}

/// Stripes of [`Db::totals`]: enough for the I/O threads and the helper
/// threads that write (log loading, the replica link, expiry) to land on
/// different ones; threads share a stripe only beyond that, which costs
/// speed, never exactness (the adds are atomic).
const STRIPES: usize = 16;

/// Key and volatile-key count changes made by the threads of one stripe;
/// its own cache line. The sum over a database's stripes is its count.
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    keys: AtomicI64,
    volatile: AtomicI64,
}

thread_local! {
    /// This thread's stripe in every database's `totals`.
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

/// A locked slot table. On unlock it publishes the table's counts to its
/// database's `counts`, and their change to its `totals` (only when they
/// changed).
pub struct SlotGuard<'a> {
    table: MutexGuard<'a, SlotTable>,
    count: &'a AtomicU64,
    totals: &'a [Stripe],
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = SlotTable;
    fn deref(&self) -> &SlotTable {
        &self.table
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut SlotTable {
        &mut self.table
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let now = pack_counts(self.table.len(), self.table.volatile());
        let before = self.count.load(Ordering::Relaxed);
        if before != now {
            // Only this slot's lock holder stores its count, so the
            // change is exact.
            self.count.store(now, Ordering::Relaxed);
            let ((k0, v0), (k1, v1)) = (unpack_counts(before), unpack_counts(now));
            let stripe = &self.totals[STRIPE.with(|s| *s)];
            if k0 != k1 {
                stripe
                    .keys
                    .fetch_add(k1 as i64 - k0 as i64, Ordering::Relaxed);
            }
            if v0 != v1 {
                stripe
                    .volatile
                    .fetch_add(v1 as i64 - v0 as i64, Ordering::Relaxed);
            }
        }
    }
}

fn pack_counts(keys: usize, volatile: usize) -> u64 {
    keys as u64 | (volatile as u64) << 32
}

fn unpack_counts(c: u64) -> (usize, usize) {
    ((c & 0xFFFF_FFFF) as usize, (c >> 32) as usize)
}

impl Db {
    fn new(index: usize, snapshots: Arc<Snapshots>) -> Db {
        Db {
            index,
            cells: (0..SLOTS).map(|_| AtomicPtr::default()).collect(),
            totals: (0..STRIPES).map(|_| Stripe::default()).collect(),
            snapshots,
            expire_cursor: Default::default(),
            avg_ttl: Default::default(),
        }
    }

    /// A slot's cell, made if the slot has never been used. Only for
    /// callers that hold no slot lock: making one waits for a database
    /// locked whole, which may wait for any slot lock.
    #[inline]
    fn cell(&self, slot: SlotId) -> &Cell {
        match self.used_cell(slot) {
            Some(c) => c,
            None => self.make_cell(slot),
        }
    }

    /// A slot's cell if it has been made.
    #[inline]
    fn used_cell(&self, slot: SlotId) -> Option<&Cell> {
        let p = self.cells[slot.0 as usize].load(Ordering::Acquire);
        // SAFETY: a pointer stored here came from `Box::into_raw` in
        // `make_cell`, was published with Release (so the cell it points
        // to is fully written), and is freed only by `Db::drop`, which
        // cannot run while `&self` is borrowed.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Makes a cell under `init`, published before `init` is let go: a
    /// snapshot starting (S) either finds the cell or sees it made after
    /// S, empty then, so captured already.
    #[cold]
    fn make_cell(&self, slot: SlotId) -> &Cell {
        let no_whole_lock = self.snapshots.init.lock();
        self.make_cell_held(slot, &no_whole_lock)
    }

    /// [`Db::make_cell`] for a caller that holds `init` already (its
    /// guard is the proof).
    fn make_cell_held(&self, slot: SlotId, _init: &MutexGuard<'_, ()>) -> &Cell {
        if let Some(c) = self.used_cell(slot) {
            return c;
        }
        let mut table = SlotTable::default();
        table.snapshot_epoch = self.snapshots.active.load(Ordering::Acquire);
        let cell = Box::into_raw(Box::new(Cell {
            table: Mutex::new(table),
            count: AtomicU64::new(0),
        }));
        self.cells[slot.0 as usize].store(cell, Ordering::Release);
        // SAFETY: just made from a Box; freed only by `Db::drop`.
        unsafe { &*cell }
    }

    fn guard<'a>(&'a self, cell: &'a Cell) -> SlotGuard<'a> {
        let mut table = cell.table.lock();
        self.snapshots.on_lock(self.index, &mut table);
        SlotGuard {
            table,
            count: &cell.count,
            totals: &self.totals,
        }
    }

    /// Locks one slot, making its table if it has never been used. Only
    /// for callers that hold no other slot lock.
    pub fn lock_slot(&self, slot: SlotId) -> SlotGuard<'_> {
        self.guard(self.cell(slot))
    }

    /// Locks one slot if it has ever held a key: for walks over every
    /// slot, which make nothing.
    pub fn lock_used_slot(&self, slot: SlotId) -> Option<SlotGuard<'_>> {
        Some(self.guard(self.used_cell(slot)?))
    }

    /// Sizes every slot's table for `keys` keys spread over the slots, as
    /// Redis sizes its dictionary from an RDB file's RESIZEDB: a load of
    /// millions of keys then never rebuilds a table. Below a few keys per
    /// slot growing costs little, and room in 16384 tables would cost more.
    pub fn reserve_keys(&self, keys: usize) {
        let per_slot = keys / SLOTS;
        if per_slot < 8 {
            return;
        }
        // Slots are filled unevenly (about ±sqrt(n)): a quarter more.
        let per_slot = per_slot + per_slot / 4;
        for slot in 0..SLOTS {
            let mut t = self.lock_slot(SlotId(slot as u16));
            let room = per_slot.saturating_sub(t.len());
            t.reserve(room);
        }
    }

    /// Heap bytes of the slots' tables themselves (their buckets, not the
    /// keys): MEMORY STATS's `overhead.hashtable.main`. Locks each slot in
    /// turn.
    pub fn table_overhead(&self) -> usize {
        (0..SLOTS)
            .filter_map(|slot| self.lock_used_slot(SlotId(slot as u16)))
            .map(|t| t.overhead())
            .sum()
    }

    /// Key and volatile-key counts without locking: each slot as of its
    /// last unlock.
    pub fn counts(&self) -> (usize, usize) {
        let (k, v) = self.totals.iter().fold((0i64, 0i64), |(k, v), s| {
            (
                k + s.keys.load(Ordering::Relaxed),
                v + s.volatile.load(Ordering::Relaxed),
            )
        });
        // Stripes are read one after another while others add to them: a
        // key moved meanwhile may be seen deleted and not yet created.
        (k.max(0) as usize, v.max(0) as usize)
    }

    /// A slot's key and volatile-key counts as of its last unlock.
    pub fn slot_counts(&self, slot: SlotId) -> (usize, usize) {
        match self.used_cell(slot) {
            Some(c) => unpack_counts(c.count.load(Ordering::Relaxed)),
            None => (0, 0),
        }
    }

    /// How many slots have had their table made.
    #[cfg(test)]
    fn cells_made(&self) -> usize {
        self.cells
            .iter()
            .filter(|c| !c.load(Ordering::Relaxed).is_null())
            .count()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for cell in self.cells.iter_mut() {
            let p = *cell.get_mut();
            if !p.is_null() {
                // SAFETY: made by `Box::into_raw` in `make_cell`, freed
                // here only, once: no borrow of the database is left.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// A set of locked slot tables, held in ascending `(db, slot)` order.
pub struct Locked<'a> {
    /// Each guard's `(db, slot)` as one integer ([`lock_id`]), in the same
    /// order: a command finds a key's table here once per key, and a
    /// search over plain integers runs without branches (over the tuples
    /// it was an eighth of an EXISTS of 100 keys).
    ids: SmallVec<[u64; 4]>,
    guards: SmallVec<[(usize, SlotId, SlotGuard<'a>); 2]>,
    /// Databases locked whole hold off the making of slot tables until
    /// unlocked (see [`Keyspace::lock_dbs`]).
    _no_new_cells: Option<MutexGuard<'a, ()>>,
}

/// The [`Locked`] slots of keys a command named, with the keys: a command
/// that reaches for its keys in the order it named them (most do) finds
/// each one's table without hashing the key again or searching. The keys
/// are borrowed for as long as the locks are held, so the very same bytes
/// (same address and length) are the same key.
pub struct KeyLocks<'a, 'k> {
    locked: Locked<'a>,
    /// Each named key and the position of its guard, in the order named.
    named: SmallVec<[(&'k [u8], u32); 4]>,
    next: usize,
}

impl<'a> KeyLocks<'a, '_> {
    /// The locked table of `key` in `db` (see [`Locked::table_for`]).
    pub fn table_for(&mut self, db: usize, key: &[u8]) -> &mut SlotTable {
        if let Some(&(named, pos)) = self.named.get(self.next) {
            let pos = pos as usize;
            if std::ptr::eq(named, key) && self.locked.guards[pos].0 == db {
                self.next += 1;
                return &mut self.locked.guards[pos].2;
            }
        }
        self.locked.table_for(db, key)
    }

    /// The locks alone, for a command whose keys do not outlive them.
    pub fn into_locked(self) -> Locked<'a> {
        self.locked
    }
}

impl<'a> std::ops::Deref for KeyLocks<'a, '_> {
    type Target = Locked<'a>;

    fn deref(&self) -> &Locked<'a> {
        &self.locked
    }
}

impl<'a> std::ops::DerefMut for KeyLocks<'a, '_> {
    fn deref_mut(&mut self) -> &mut Locked<'a> {
        &mut self.locked
    }
}

/// `(db, slot)` as one integer with the same order.
fn lock_id(db: usize, slot: SlotId) -> u64 {
    (db as u64) << 16 | slot.0 as u64
}

impl<'a> Locked<'a> {
    /// The locked table of `slot` in `db`. Panics if the caller did not lock
    /// it: that is a bug in the command, never a client input.
    pub fn table(&mut self, db: usize, slot: SlotId) -> &mut SlotTable {
        let i = self.position(db, slot);
        &mut self.guards[i].2
    }

    /// The locked table of `key` in `db`. Panics as [`Locked::table`] does.
    pub fn table_for(&mut self, db: usize, key: &[u8]) -> &mut SlotTable {
        self.table(db, key_hash_slot(key))
    }

    /// A key's table if this command locked its slot: for a database
    /// locked whole, where a slot never used has no table (and no key).
    pub fn locked_table_for(&mut self, db: usize, key: &[u8]) -> Option<&mut SlotTable> {
        let i = self.find(db, key_hash_slot(key))?;
        Some(&mut self.guards[i].2)
    }

    /// Where a slot's guard is, if this command locked it.
    fn find(&self, db: usize, slot: SlotId) -> Option<usize> {
        self.ids.binary_search(&lock_id(db, slot)).ok()
    }

    fn position(&self, db: usize, slot: SlotId) -> usize {
        self.find(db, slot)
            .expect("slot table not locked by this command")
    }

    /// Exchanges the contents of two locked databases, slot by slot (SWAPDB).
    /// Both must have been locked whole with [`Keyspace::lock_dbs`].
    pub fn swap_dbs(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let split = self
            .guards
            .iter()
            .position(|(d, _, _)| *d == hi)
            .expect("both databases locked");
        let (left, right) = self.guards.split_at_mut(split);
        let left = left.iter_mut().filter(|(d, _, _)| *d == lo);
        for ((_, s1, t1), (_, s2, t2)) in left.zip(right.iter_mut()) {
            debug_assert_eq!(s1, s2);
            std::mem::swap(&mut **t1, &mut **t2);
        }
    }

    /// Shared views of several keys' values at once, None for a missing key
    /// or one `visible` hides (past its expiry, on a replica): for commands
    /// that read one key while looking into others (SINTERCARD walks the
    /// smallest set and asks the others). Callers look each key up first,
    /// which expires what is due where keys are expired.
    pub fn values<K: AsRef<[u8]>>(
        &self,
        db: usize,
        keys: &[K],
        visible: impl Fn(&Node) -> bool,
    ) -> Vec<Option<&Value>> {
        keys.iter()
            .map(|k| {
                let k = k.as_ref();
                let n = self.guards[self.position(db, key_hash_slot(k))].2.peek(k)?;
                visible(n).then_some(&n.value)
            })
            .collect()
    }

    pub fn tables(
        &mut self,
    ) -> impl Iterator<Item = (usize, SlotId, &mut SlotTable)> + use<'_, 'a> {
        self.guards.iter_mut().map(|(d, s, g)| (*d, *s, &mut **g))
    }
}

pub struct Keyspace {
    /// Databases are created on first use: most deployments use db 0 only,
    /// and an unused db then costs nothing.
    dbs: Box<[OnceLock<Db>]>,
    snapshots: Arc<Snapshots>,
}

impl Keyspace {
    pub fn new(databases: usize) -> Keyspace {
        Keyspace {
            dbs: (0..databases).map(|_| OnceLock::new()).collect(),
            snapshots: Arc::default(),
        }
    }

    pub fn databases(&self) -> usize {
        self.dbs.len()
    }

    pub fn db(&self, idx: usize) -> &Db {
        self.dbs[idx].get_or_init(|| Db::new(idx, self.snapshots.clone()))
    }

    /// The databases that have ever been used, with their indexes.
    pub fn used_dbs(&self) -> impl Iterator<Item = (usize, &Db)> {
        self.dbs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.get().map(|d| (i, d)))
    }

    /// Hints the CPU to load a slot's table header: a pure performance hint
    /// that reads nothing and never faults, whatever the slot's state.
    #[inline]
    pub fn prefetch(&self, db: usize, slot: SlotId) {
        let cell = self
            .dbs
            .get(db)
            .and_then(|d| d.get())
            .and_then(|d| d.used_cell(slot));
        if let Some(cell) = cell {
            let p = cell as *const Cell as *const i8;
            #[cfg(target_arch = "x86_64")]
            // SAFETY: prefetching an address has no side effects and cannot
            // fault; the pointer is in bounds anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = p;
        }
    }

    /// Locks the given `(db, slot)` pairs in ascending order (duplicates are
    /// locked once). Every lock a command takes goes through here or through
    /// [`Db::lock_slot`] for a single slot, so no two commands can wait on each
    /// other in a cycle.
    pub fn lock(&self, want: SmallVec<[(usize, SlotId); 4]>) -> Locked<'_> {
        let mut ids: SmallVec<[u64; 4]> = want.iter().map(|&(d, s)| lock_id(d, s)).collect();
        ids.sort_unstable();
        ids.dedup();
        self.lock_ids(ids)
    }

    /// Locks the slots `ids` (ascending, distinct [`lock_id`]s).
    fn lock_ids(&self, ids: SmallVec<[u64; 4]>) -> Locked<'_> {
        // Slot tables are made before any slot is locked: making one
        // waits for a database locked whole, which waits for every slot
        // lock.
        let cells: SmallVec<[&Cell; 4]> = ids
            .iter()
            .map(|&id| self.db((id >> 16) as usize).cell(SlotId(id as u16)))
            .collect();
        let guards = ids
            .iter()
            .zip(cells)
            .map(|(&id, cell)| {
                let (d, s) = ((id >> 16) as usize, SlotId(id as u16));
                (d, s, self.db(d).guard(cell))
            })
            .collect();
        Locked {
            ids,
            guards,
            _no_new_cells: None,
        }
    }

    /// Locks the slots of `keys` in `db` as [`Keyspace::lock`] does, and
    /// remembers which key is in which (see [`KeyLocks`]).
    pub fn lock_keys<'k>(
        &self,
        db: usize,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> KeyLocks<'_, 'k> {
        let mut named: SmallVec<[(&'k [u8], u32); 4]> = SmallVec::new();
        let mut order: SmallVec<[(u64, u32); 4]> = SmallVec::new();
        for (i, k) in keys.enumerate() {
            named.push((k, 0));
            order.push((lock_id(db, key_hash_slot(k)), i as u32));
        }
        order.sort_unstable();
        let mut ids: SmallVec<[u64; 4]> = SmallVec::new();
        for &(id, i) in &order {
            if ids.last() != Some(&id) {
                ids.push(id);
            }
            named[i as usize].1 = (ids.len() - 1) as u32;
        }
        KeyLocks {
            locked: self.lock_ids(ids),
            named,
            next: 0,
        }
    }

    /// Locks the given databases whole (FLUSHDB, KEYS): every slot that
    /// has held a key, and no slot table is made until they are
    /// unlocked, so nothing lands beside the locked ones.
    pub fn lock_dbs(&self, dbs: &[usize]) -> Locked<'_> {
        let no_new = self.snapshots.init.lock();
        self.lock_whole(dbs, no_new)
    }

    /// Locks every database in use whole (a snapshot's start, FLUSHALL,
    /// DEBUG DIGEST), with their indexes. They are listed under the lock
    /// that holds off new slot tables: a database first used after that
    /// makes its tables once the lock is let go, so nothing is written
    /// beside the locked ones. (Listed before taking it, a database first
    /// used in between escaped the lock with a key already in it: a
    /// snapshot held a write made after its instant, a flush left a key.)
    pub fn lock_used_dbs(&self) -> (Vec<usize>, Locked<'_>) {
        let no_new = self.snapshots.init.lock();
        let dbs: Vec<usize> = self.used_dbs().map(|(i, _)| i).collect();
        let locked = self.lock_whole(&dbs, no_new);
        (dbs, locked)
    }

    /// Locks the given databases whole with the same slots' tables in
    /// each (SWAPDB, which swaps slot with slot): a slot with a table in
    /// one gets an empty one in the others, made under the lock that holds
    /// off any other, so the sets cannot drift apart before they are
    /// locked. Slots none of them has used stay without.
    pub fn lock_dbs_alike(&self, dbs: &[usize]) -> Locked<'_> {
        let no_new = self.snapshots.init.lock();
        let each: Vec<&Db> = dbs.iter().map(|&d| self.db(d)).collect();
        for s in 0..SLOTS {
            let slot = SlotId(s as u16);
            if each.iter().any(|db| db.used_cell(slot).is_some()) {
                for db in &each {
                    db.make_cell_held(slot, &no_new);
                }
            }
        }
        self.lock_whole(dbs, no_new)
    }

    fn lock_whole<'a>(&'a self, dbs: &[usize], no_new: MutexGuard<'a, ()>) -> Locked<'a> {
        let mut dbs = dbs.to_vec();
        dbs.sort_unstable();
        dbs.dedup();
        let (mut ids, mut guards) = (SmallVec::new(), SmallVec::new());
        for d in dbs {
            let db = self.db(d);
            for s in 0..SLOTS {
                let slot = SlotId(s as u16);
                if let Some(g) = db.lock_used_slot(slot) {
                    ids.push(lock_id(d, slot));
                    guards.push((d, slot, g));
                }
            }
        }
        Locked {
            ids,
            guards,
            _no_new_cells: Some(no_new),
        }
    }

    /// Starts a snapshot (see the module docs): with every slot of every
    /// database locked, raises the epoch and runs `at_instant` — the caller
    /// marks the instant S there (the log switches files). Returns the epoch.
    pub fn start_snapshot(
        &self,
        observer: Arc<dyn SnapshotObserver>,
        at_instant: impl FnOnce(),
    ) -> u64 {
        let (dbs, all) = self.lock_used_dbs();
        let keys: usize = dbs.iter().map(|&d| self.db(d).counts().0).sum();
        self.snapshots
            .keys_total
            .store(keys as u64, Ordering::Relaxed);
        self.snapshots.keys_done.store(0, Ordering::Relaxed);
        let epoch = self.snapshots.last.fetch_add(1, Ordering::AcqRel) + 1;
        *self.snapshots.observer.lock() = Some(observer);
        self.snapshots.active.store(epoch, Ordering::Release);
        at_instant();
        drop(all);
        epoch
    }

    /// Visits every slot, capturing those no client has touched yet, then
    /// ends the snapshot. `progress` runs between slots (to drain output).
    pub fn complete_snapshot(&self, mut progress: impl FnMut()) {
        let dbs: Vec<usize> = self.used_dbs().map(|(i, _)| i).collect();
        for d in dbs {
            let db = self.db(d);
            for s in 0..SLOTS {
                // A slot never used was empty at S, or was made after it.
                drop(db.lock_used_slot(SlotId(s as u16)));
                if s % 256 == 255 {
                    progress();
                }
            }
        }
        self.snapshots.active.store(0, Ordering::Release);
        *self.snapshots.observer.lock() = None;
        self.snapshots.keys_total.store(0, Ordering::Relaxed);
        self.snapshots.keys_done.store(0, Ordering::Relaxed);
        progress();
    }

    /// The running snapshot's progress: keys captured, and keys there were
    /// at its instant (0 and 0 when none runs).
    pub fn snapshot_progress(&self) -> (u64, u64) {
        (
            self.snapshots.keys_done.load(Ordering::Relaxed),
            self.snapshots.keys_total.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what each capture saw.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(usize, Vec<String>)>>);

    impl SnapshotObserver for Recorder {
        fn capture(&self, db: usize, table: &SlotTable) {
            let mut keys: Vec<String> = table
                .iter()
                .map(|n| String::from_utf8_lossy(n.key.as_bytes()).into_owned())
                .collect();
            keys.sort();
            if !keys.is_empty() {
                self.0.lock().push((db, keys));
            }
        }
    }

    #[test]
    fn reserving_sizes_every_slot_for_its_share() {
        let ks = Keyspace::new(1);
        let db = ks.db(0);
        db.reserve_keys(1000);
        assert_eq!(
            db.lock_slot(SlotId(5)).overhead(),
            0,
            "too few to reserve for"
        );
        db.reserve_keys(SLOTS * 40);
        for slot in [0, 777, SLOTS - 1] {
            let t = db.lock_slot(SlotId(slot as u16));
            assert!(t.overhead() >= 50 * 9, "{}", t.overhead());
        }
    }

    #[test]
    fn a_snapshot_sees_each_slot_as_it_was_at_the_start() {
        let ks = Keyspace::new(4);
        let a = b"{a}k1";
        let slot = key_hash_slot(a);
        ks.db(0)
            .lock_slot(slot)
            .set(a, Value::string(b"1"), 0, false);
        let rec = Arc::new(Recorder::default());
        ks.start_snapshot(rec.clone(), || {});
        assert_eq!(ks.snapshot_progress(), (0, 1), "one key at S");
        // A write after S: the slot is captured first, without it.
        {
            let mut t = ks.db(0).lock_slot(slot);
            t.set(b"{a}k2", Value::string(b"2"), 0, false);
        }
        assert_eq!(ks.snapshot_progress(), (1, 1), "its slot is captured");
        // A database first used after S was empty at S.
        ks.db(3)
            .lock_slot(slot)
            .set(b"late", Value::string(b"x"), 0, false);
        ks.complete_snapshot(|| {});
        assert_eq!(ks.snapshot_progress(), (0, 0), "none runs");
        let seen = rec.0.lock().clone();
        assert_eq!(seen, vec![(0, vec!["{a}k1".to_string()])]);
        // A second snapshot sees everything once more.
        let rec2 = Arc::new(Recorder::default());
        ks.start_snapshot(rec2.clone(), || {});
        ks.complete_snapshot(|| {});
        let mut seen = rec2.0.lock().clone();
        seen.sort();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], (0, vec!["{a}k1".to_string(), "{a}k2".to_string()]));
    }

    /// A slot's table is made by its first key: a database of a few keys
    /// makes a few, and walks over every slot make none.
    #[test]
    fn slot_tables_are_made_by_their_first_key_only() {
        let ks = Keyspace::new(2);
        let db = ks.db(1);
        for k in ["a", "b", "c"] {
            db.lock_slot(key_hash_slot(k.as_bytes())).set(
                k.as_bytes(),
                Value::string(b"v"),
                0,
                false,
            );
        }
        assert_eq!(db.cells_made(), 3);
        drop(ks.lock_dbs(&[1]));
        db.table_overhead();
        let rec = Arc::new(Recorder::default());
        ks.start_snapshot(rec.clone(), || {});
        ks.complete_snapshot(|| {});
        assert_eq!(rec.0.lock().len(), 3);
        assert_eq!(db.cells_made(), 3, "no walk made any");
        drop(ks.lock_dbs_alike(&[0, 1]));
        assert_eq!(ks.db(0).cells_made(), 3, "the same slots as db 1's");
    }

    /// A writer putting keys into slots never used while snapshots start
    /// and end: each snapshot holds exactly the keys written before its
    /// instant S, however the making of a slot's table meets S. It failed
    /// about once in 300 runs while the databases were listed before the
    /// lock was taken: the snapshot's thread, preempted in between, missed
    /// databases the writer made meanwhile.
    #[test]
    fn slots_made_while_snapshots_start_are_captured_as_at_s() {
        // Keys spread over 16 databases: most land in a slot never used.
        let ks = Keyspace::new(16);
        let written = AtomicUsize::new(0);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..100_000usize {
                    let key = format!("k{i}");
                    let db = ks.db(i % 16);
                    let mut t = db.lock_slot(key_hash_slot(key.as_bytes()));
                    t.set(key.as_bytes(), Value::string(b"v"), 0, false);
                    // Counted under the slot's lock: S sees it or not.
                    written.store(i + 1, Ordering::SeqCst);
                }
                done.store(true, Ordering::SeqCst);
            });
            let mut rounds = 0;
            while !done.load(Ordering::SeqCst) || rounds < 3 {
                let rec = Arc::new(Recorder::default());
                let at_s = AtomicUsize::new(0);
                ks.start_snapshot(rec.clone(), || {
                    at_s.store(written.load(Ordering::SeqCst), Ordering::SeqCst)
                });
                ks.complete_snapshot(|| {});
                let mut seen: Vec<String> =
                    rec.0.lock().iter().flat_map(|(_, k)| k.clone()).collect();
                seen.sort();
                let n = at_s.load(Ordering::SeqCst);
                let mut want: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
                want.sort();
                assert_eq!(seen, want, "snapshot {rounds} at {n} keys");
                rounds += 1;
            }
        });
    }

    /// Threads creating, expiring and deleting keys at once: the striped
    /// totals DBSIZE reads add up to the slots' own counts, exactly.
    #[test]
    fn database_counts_follow_concurrent_changes_exactly() {
        let ks = Keyspace::new(1);
        std::thread::scope(|scope| {
            for t in 0..6u64 {
                let ks = &ks;
                scope.spawn(move || {
                    let mut x = t + 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Threads share keys: a key one thread created
                        // another may delete.
                        let key = format!("k{}", x % 3000);
                        let mut g = ks.db(0).lock_slot(key_hash_slot(key.as_bytes()));
                        match (x >> 32) % 4 {
                            0 | 1 => {
                                g.set(key.as_bytes(), Value::string(b"v"), 0, false);
                            }
                            2 => {
                                g.set_expire(key.as_bytes(), 1 << 50);
                            }
                            _ => {
                                g.remove(key.as_bytes());
                            }
                        }
                    }
                });
            }
        });
        let db = ks.db(0);
        let (mut keys, mut volatile) = (0, 0);
        for slot in 0..SLOTS {
            let t = db.lock_slot(SlotId(slot as u16));
            keys += t.len();
            volatile += t.volatile();
        }
        assert!(keys > 0 && volatile > 0);
        assert_eq!(db.counts(), (keys, volatile));
    }

    #[test]
    fn hash_slot_vectors_match_redis_cluster() {
        // Values from Redis Cluster (CLUSTER KEYSLOT).
        assert_eq!(key_hash_slot(b"foo"), SlotId(12182));
        assert_eq!(key_hash_slot(b"bar"), SlotId(5061));
        assert_eq!(key_hash_slot(b"123456789"), SlotId(0x31C3 & 0x3FFF));
        assert_eq!(
            key_hash_slot(b"{user1000}.following"),
            key_hash_slot(b"user1000")
        );
        assert_eq!(key_hash_slot(b"foo{}{bar}"), key_hash_slot(b"foo{}{bar}"));
        assert_ne!(key_hash_slot(b"foo{}{bar}"), key_hash_slot(b"bar"));
        assert_eq!(key_hash_slot(b"foo{{bar}}zap"), key_hash_slot(b"{bar"));
        assert_eq!(key_hash_slot(b"foo{bar}{zap}"), key_hash_slot(b"bar"));
        assert_eq!(key_hash_slot(b""), SlotId(0));
    }

    /// Named keys are found in the order named, out of order, repeated,
    /// and as copies at other addresses: always the table of their slot.
    #[test]
    fn key_locks_find_each_named_key_in_any_order() {
        let ks = Keyspace::new(2);
        let named: Vec<Vec<u8>> = ["a", "b", "a", "{a}x", "c", "zz"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let mut l = ks.lock_keys(1, named.iter().map(|k| &k[..]));
        let copies = named.clone();
        let orders: [&[usize]; 3] = [
            &[0, 1, 2, 3, 4, 5],
            &[5, 4, 3, 2, 1, 0],
            &[1, 1, 0, 5, 2, 3],
        ];
        for order in orders {
            for &i in order {
                for k in [&named[i][..], &copies[i][..]] {
                    let want: *const SlotTable = l.table(1, key_hash_slot(k));
                    let got: *const SlotTable = l.table_for(1, k);
                    assert_eq!(got, want, "{}", String::from_utf8_lossy(k));
                }
            }
        }
    }

    #[test]
    fn multi_slot_locks_are_ordered_and_deduplicated() {
        let ks = Keyspace::new(2);
        let mut l = ks.lock(smallvec::smallvec![
            (1, SlotId(5)),
            (0, SlotId(9)),
            (1, SlotId(5))
        ]);
        let order: Vec<_> = l.tables().map(|(d, s, _)| (d, s)).collect();
        assert_eq!(order, vec![(0, SlotId(9)), (1, SlotId(5))]);
    }
}
