//! The effect stream: the ordered record of every change to the keyspace.
//!
//! Every write command, once it has changed the keyspace, appends one or more
//! *effects*: RESP-encoded commands that, replayed in order on an empty
//! keyspace, rebuild the same data. Effects are deterministic where the
//! command was not: `EXPIRE k 10` is recorded as `PEXPIREAT k <abs ms>`,
//! `SET k v EX 10` as `SET k v PXAT <abs ms>`, `INCRBYFLOAT` as `SET ... KEEPTTL`
//! with the resulting value, and a key found expired on access as `DEL k`.
//!
//! ```text
//!  command ──(slot locks held)──▶ EffectStream::append ──▶ backlog (ring)
//!                                       │ offset += bytes      ├─▶ append-only log (disk)
//!                                       └ SELECT db if changed └─▶ replicas
//! ```
//!
//! Invariants:
//! - An effect is appended while the command still holds the slot locks of the
//!   keys it changed (DESIGN.md, invariant 2), so the order of effects on one
//!   key is the order of execution. The stream's own mutex is innermost: it is
//!   taken after slot locks and nothing but a tap's (a leaf) is locked while
//!   holding it.
//! - The replication offset is the number of bytes ever appended. The backlog
//!   keeps the last `repl-backlog-size` bytes of the stream for partial resync.
//! - As in Redis, the backlog exists only once something may need history
//!   (the first replica, or a restart that read the stream's identity back
//!   from the log; see [`EffectStream::activate_backlog`]). Until then an
//!   effect only advances the offset, by exactly the bytes it would have
//!   taken, so offsets are the same whether or not history is kept.
//! - A `SELECT` is emitted whenever the next effect is for another database
//!   than the previous one, as in Redis's replication stream.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::persistence::aof;
use crate::server::memory::allocation_size;

pub struct EffectStream {
    inner: Mutex<Inner>,
    /// Wakes the append-only log writer: for a file switch (a rewrite),
    /// to stop, and for the first record after it went idle. While records
    /// keep coming it collects them on its own timer.
    pending: Condvar,
}

struct Inner {
    /// The history this stream continues: a random id, new whenever the
    /// history forks (a replica promoted, a fresh data set), and the id it
    /// continued before that, valid up to `second_offset` (Redis's replid2).
    replid: String,
    replid2: String,
    /// Offset up to which `replid2`'s history is ours too; -1: none.
    second_offset: i64,
    /// Total bytes ever appended: the replication offset.
    offset: u64,
    /// Effects ever appended (Redis's `dirty`, for `save` rules).
    changes: u64,
    selected_db: Option<usize>,
    /// `repl-backlog-size`, applied when the backlog is (re)created.
    backlog_size: usize,
    backlog: Option<Backlog>,
    scratch: Vec<u8>,
    /// Framed records not yet taken by the log writer, and the stream
    /// offset they end at; `None` while there is no append-only log.
    aof: Option<(Vec<u8>, u64)>,
    /// A switch of log file at offset S (a rewrite began): the records
    /// before S, S, and the file that records from S on go to.
    rotation: Option<(Vec<u8>, u64, std::path::PathBuf)>,
    /// The capacity of the buffer the log writer took last (being
    /// written, or kept to hand back as the next pending one).
    log_taken: usize,
    /// When the pending log records started to gather (the oldest one).
    pending_since: Option<std::time::Instant>,
    /// The log writer sleeps until the next record (see `wait_for_log`).
    writer_idle: bool,
    /// The log writer is to come round at once (`wake_log_writer`).
    writer_kicked: bool,
    /// Replicas being fed: every appended byte is copied to each.
    taps: Vec<Arc<Tap>>,
}

/// One replica's output buffer: what the stream appended that has not yet
/// been written to the replica's socket. Filled under the stream's mutex,
/// so its order is the stream's.
///
/// Who writes it out: an I/O thread that filled it writes it itself as it
/// goes idle ([`flush_filled_taps`], from the runtime's park hook; a
/// thread that polls instead, after [`TAP_HOLD`]; a busy one, once it
/// holds [`TAP_HOLD_BYTES`]), as Redis writes its
/// replicas before its event loop sleeps; waking the
/// replica's feeder on another thread instead cost an eventfd write, a
/// context switch and a send for every few writes. The feeder
/// (`replication::primary`) writes whatever a thread could not: a
/// partial write, a full socket, writes from other threads, and the bytes
/// it already holds, which nobody may overtake (`feeder_writing`).
pub struct Tap {
    state: Mutex<TapState>,
    /// Wakes the feeder: the buffer went from empty to non-empty and no
    /// I/O thread will write it, or a direct write left some behind.
    pub ready: tokio::sync::Notify,
    /// `client-output-buffer-limit replica` hard limit, in bytes (0: none).
    pub hard_limit: usize,
    /// Why the feeder is to drop the replica, once there is a reason (a
    /// [`Close`]; 0: none). The first reason stays.
    closing: AtomicU8,
    /// Bytes I/O threads wrote to the socket themselves, not yet counted
    /// in the server's statistics by the feeder.
    pub direct_bytes: AtomicU64,
}

struct TapState {
    pending: Vec<u8>,
    /// The replica's socket (a duplicate of the feeder's) while the feeder
    /// streams; None before (a full sync owns the socket) and after.
    socket: Option<std::net::TcpStream>,
    /// The feeder took bytes it has not finished writing.
    feeder_writing: bool,
    /// The capacity of the buffer the feeder took last (being written,
    /// or kept to hand back as the next `pending`).
    feeder_held: usize,
}

thread_local! {
    /// On an I/O thread, the taps it filled since it last went idle: it
    /// writes them out before it sleeps. None on other threads, whose
    /// appends wake the feeder.
    static FILLED: RefCell<Option<Vec<Arc<Tap>>>> = const { RefCell::new(None) };
    /// When this thread filled the first of them.
    static FILLED_AT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Someone waits for them (see [`release_held_taps`]), or one holds
    /// [`TAP_HOLD_BYTES`].
    static FILLED_DUE: Cell<bool> = const { Cell::new(false) };
}

/// Makes this thread one that writes the taps it fills as it goes idle;
/// it must then call [`flush_filled_taps`] before each sleep.
pub fn write_filled_taps_on_this_thread() {
    FILLED.set(Some(Vec::new()));
}

/// Writes out what this thread appended to replicas' taps (the park hook
/// of an I/O thread: every connection on it has run).
pub fn flush_filled_taps() {
    FILLED_AT.set(None);
    FILLED_DUE.set(false);
    let taps = FILLED.with(|f| f.borrow_mut().as_mut().map(std::mem::take));
    for tap in taps.into_iter().flatten() {
        tap.write_directly();
    }
}

/// [`flush_filled_taps`] for a thread that stays busy (it polls for more
/// requests rather than sleeping, see `server::spin`): once the first of
/// them was filled [`TAP_HOLD`] ago, or one holds [`TAP_HOLD_BYTES`].
/// Redis writes to its replicas once per turn of its event loop, some 20
/// requests apart under a load at pipeline 1; writing on every poll
/// instead made the primary send three times as often, and woke the
/// replica as often.
pub fn flush_filled_taps_held() {
    if FILLED_DUE.get() || FILLED_AT.get().is_some_and(|t| t.elapsed() >= TAP_HOLD) {
        flush_filled_taps();
    }
}

/// Writes the taps this thread filled if one holds [`TAP_HOLD_BYTES`] or
/// someone waits for them, however short the hold; no clock read.
pub fn flush_filled_taps_due() {
    if FILLED_DUE.get() {
        flush_filled_taps();
    }
}

/// What this thread holds for replicas goes out at its next chance (the
/// end of its write round, or its park hook), however short it was held:
/// a WAIT has just asked the replicas to acknowledge, and waits for them;
/// a sidecar's reads wait for the write it has just forwarded.
pub fn release_held_taps() {
    FILLED_DUE.set(true);
}

/// How long a busy I/O thread holds what it appended to replicas' taps
/// (see [`flush_filled_taps_held`]). Measured with one replica, SET at
/// pipeline 1 under 50 clients on two cores: writing on every poll (0),
/// the primary wrote to the replica once per 7 requests (Redis: 24) and
/// the replica spent 2.2-4.0 µs a request (Redis's 1.9-3.3); held 1 ms,
/// once per 60, the replica 1.7-2.2 µs, and the primary's throughput
/// went from 0.94 to 1.03 of Redis's (median of 8 rounds each). What
/// the thread holds goes out as soon as it sleeps, or when a WAIT asks
/// ([`release_held_taps`]): only a steady load sees its replicas up to
/// this much later.
pub const TAP_HOLD: Duration = Duration::from_millis(1);

/// A busy thread writes what it holds for a replica once it is this much,
/// however short the hold: at pipeline 16 a millisecond gathers some
/// 30 KB, and the replica then applies it in one long burst while the
/// benchmark client, on the same two cores, waits for its turn. Redis
/// writes about 10 KB a turn of its event loop under that load. SET with
/// one replica at pipeline 16, 20 interleaved rounds, median of the
/// ratios to Redis's: 0.98 with the time hold alone, 1.04-1.06 with 8 KB
/// (1.05, 1.04 with 4 KB; 1.02 with 16 KB; 1.01 with 2 KB). Pipeline 1
/// holds less than this in a millisecond, and is unchanged.
///
/// A connection writes them as soon as its commands have run
/// ([`flush_filled_taps_due`]). Checked only after a write round's yield,
/// the sends were twice as large (17 KB, 2.5 a thousand requests against
/// Redis's 4.8): the round's other connections had run by then. Writing
/// them first, 5.7 sends a thousand requests, and SET with one replica at
/// pipeline 16 went from 1.06 to 1.12, 0.99 to 1.08 and 1.03 to 1.17 of
/// Redis's in three runs of 16-20 paired rounds (pipeline 1: 0.99 and
/// 1.02, the same).
pub const TAP_HOLD_BYTES: usize = 8 * 1024;

/// Past this many pending bytes the feeder is woken even though a thread
/// means to write them: a burst is not held until the thread is idle.
const DIRECT_MAX: usize = 1 << 20;

/// A buffer of the stream (a replica's, the log's) that emptied with more
/// capacity than this is dropped rather than kept for the next round: none
/// keeps the size of a past burst (megabytes, for good).
const KEEP_MAX: usize = 1 << 20;

/// Why a primary drops one of its replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// The replica's output buffer passed `client-output-buffer-limit
    /// replica`'s hard limit.
    Overflow = 1,
    /// This node's history went on under a new id (a promotion, or its
    /// primary's), or is about to be replaced (a full sync of this node):
    /// the replica reconnects to learn which, and continues with a partial
    /// resync where it can. Redis drops its replicas then too. Kept on,
    /// a replica would follow the new history under the old id, and
    /// its next reconnection would ask for more of the old history than
    /// the old id covers: a full sync.
    Superseded = 2,
}

/// Stops feeding every replica: their feeders drop them.
fn close_taps(inner: &mut Inner) {
    for t in std::mem::take(&mut inner.taps) {
        t.close(Close::Superseded);
    }
}

impl Tap {
    /// The reason the feeder is to drop the replica, if there is one.
    pub fn closing(&self) -> Option<Close> {
        match self.closing.load(Relaxed) {
            1 => Some(Close::Overflow),
            2 => Some(Close::Superseded),
            _ => None,
        }
    }

    /// Has the feeder drop the replica (nothing more is pushed to it).
    fn close(&self, why: Close) {
        let _ = self
            .closing
            .compare_exchange(0, why as u8, Relaxed, Relaxed);
        self.ready.notify_one();
    }

    pub fn new(hard_limit: usize) -> Arc<Tap> {
        Arc::new(Tap {
            state: Mutex::new(TapState {
                pending: Vec::new(),
                socket: None,
                feeder_writing: false,
                feeder_held: 0,
            }),
            ready: tokio::sync::Notify::new(),
            hard_limit,
            closing: AtomicU8::new(0),
            direct_bytes: AtomicU64::new(0),
        })
    }

    fn push(self: &Arc<Self>, data: &[u8]) {
        let mut st = self.state.lock();
        if self.closing.load(Relaxed) != 0 {
            return;
        }
        let was_empty = st.pending.is_empty();
        st.pending.extend_from_slice(data);
        if self.hard_limit > 0 && st.pending.len() > self.hard_limit {
            // Stop growing at once; the feeder closes the link.
            st.pending = Vec::new();
            self.close(Close::Overflow);
        } else if was_empty {
            let direct = st.socket.is_some()
                && !st.feeder_writing
                && FILLED.with(|f| match f.borrow_mut().as_mut() {
                    Some(filled) => {
                        if filled.is_empty() {
                            FILLED_AT.set(Some(Instant::now()));
                        }
                        filled.push(self.clone());
                        true
                    }
                    None => false,
                });
            if !direct {
                self.ready.notify_one();
            }
        } else if st.pending.len() >= DIRECT_MAX && st.pending.len() - data.len() < DIRECT_MAX {
            self.ready.notify_one();
        }
        if st.pending.len() >= TAP_HOLD_BYTES && st.pending.len() - data.len() < TAP_HOLD_BYTES {
            FILLED_DUE.set(true);
        }
    }

    /// An I/O thread going idle writes what is pending, without blocking;
    /// what it cannot write is the feeder's.
    fn write_directly(&self) {
        let mut st = self.state.lock();
        if st.feeder_writing || st.pending.is_empty() {
            return;
        }
        let Some(mut socket) = st.socket.as_ref() else {
            return;
        };
        match socket.write(&st.pending) {
            Ok(n) => {
                self.direct_bytes.fetch_add(n as u64, Relaxed);
                if n == st.pending.len() {
                    st.pending.clear();
                    if st.pending.capacity() > KEEP_MAX {
                        st.pending = Vec::new();
                    }
                } else {
                    st.pending.drain(..n);
                    self.ready.notify_one();
                }
            }
            // A full socket or a broken link: the feeder's to handle.
            Err(_) => self.ready.notify_one(),
        }
    }

    /// The feeder starts streaming on `socket` (a duplicate of its own),
    /// or (None) stops: threads may write directly only in between.
    pub fn set_socket(&self, socket: Option<std::net::TcpStream>) {
        self.state.lock().socket = socket;
    }

    /// The feeder takes what is pending, handing back `spare` for the next
    /// round; until [`Tap::written`], no one else writes.
    pub fn take(&self, spare: Vec<u8>) -> Vec<u8> {
        let mut spare = spare;
        spare.clear();
        if spare.capacity() > KEEP_MAX {
            spare = Vec::with_capacity(64 * 1024);
        }
        let mut st = self.state.lock();
        let out = std::mem::replace(&mut st.pending, spare);
        st.feeder_writing = !out.is_empty();
        st.feeder_held = out.capacity();
        out
    }

    /// The feeder wrote all it took.
    pub fn written(&self) {
        self.state.lock().feeder_writing = false;
    }

    /// Bytes held for the replica: the buffer of what it has not been
    /// sent, and the one the feeder is writing from.
    fn held(&self) -> usize {
        let st = self.state.lock();
        allocation_size(st.pending.capacity()) + allocation_size(st.feeder_held)
    }
}

/// The stream's identity: which history, and how far into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub replid: String,
    pub offset: u64,
}

/// Why a replica cannot continue from where it is (PSYNC falls back to a
/// full sync).
#[derive(Debug, PartialEq, Eq)]
pub enum NoContinue {
    UnknownHistory,
    OutOfBacklog,
}

/// Marks, in the append-only log, where the stream stands: the records
/// after it continue history `replid` from `offset`, in database `db`.
/// It is not part of the stream (it takes no offset); start-up reads it to
/// learn the node's replication id and offset, so a restarted replica can
/// continue instead of syncing in full.
pub const STATE_RECORD: &[u8] = b"SHOAL-REPLSTATE";

/// The history a stream continued before its current one (a promotion):
/// Redis's replid2, valid up to `second_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastHistory {
    pub replid2: String,
    pub second_offset: i64,
}

/// What a state record says: the stream's identity, the database its
/// next bytes are in, and the history it continued before (if promoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub id: Identity,
    pub db: Option<usize>,
    pub past: Option<PastHistory>,
}

impl StreamState {
    /// The record's payload: `SHOAL-REPLSTATE replid offset db [replid2
    /// second_offset]` (db -1 when none is selected).
    pub fn record(&self) -> Vec<u8> {
        let mut rec = Vec::with_capacity(160);
        let (mut b1, mut b2, mut b3) = (
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        );
        let mut argv: Vec<&[u8]> = vec![
            STATE_RECORD,
            self.id.replid.as_bytes(),
            b1.format(self.id.offset).as_bytes(),
            b2.format(self.db.map_or(-1, |d| d as i64)).as_bytes(),
        ];
        if let Some(p) = &self.past {
            argv.push(p.replid2.as_bytes());
            argv.push(b3.format(p.second_offset).as_bytes());
        }
        encode_command(&mut rec, &argv);
        rec
    }

    /// Reads a state record back: `None` if `argv` is not one.
    pub fn parse<A: AsRef<[u8]>>(argv: &[A]) -> Option<Result<StreamState, String>> {
        if argv.first()?.as_ref() != STATE_RECORD {
            return None;
        }
        let field = |i: usize| {
            argv.get(i)
                .and_then(|a| std::str::from_utf8(a.as_ref()).ok())
                .ok_or_else(|| "a malformed stream state record".to_string())
        };
        let int = |i: usize| -> Result<i64, String> {
            field(i)?
                .parse()
                .map_err(|e: std::num::ParseIntError| e.to_string())
        };
        Some((|| {
            Ok(StreamState {
                id: Identity {
                    replid: field(1)?.to_string(),
                    offset: int(2)?.max(0) as u64,
                },
                db: usize::try_from(int(3)?).ok(),
                past: match argv.len() {
                    6 => Some(PastHistory {
                        replid2: field(4)?.to_string(),
                        second_offset: int(5)?,
                    }),
                    _ => None,
                },
            })
        })())
    }
}

/// A ring buffer over the tail of the stream.
struct Backlog {
    buf: Vec<u8>,
    /// Bytes of history held (at most `buf.len()`).
    histlen: usize,
    /// Where the next byte goes.
    head: usize,
}

impl Backlog {
    fn new(size: usize) -> Backlog {
        Backlog {
            buf: vec![0; size.max(1)],
            histlen: 0,
            head: 0,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        let cap = self.buf.len();
        if data.len() >= cap {
            data = &data[data.len() - cap..];
        }
        let first = (cap - self.head).min(data.len());
        self.buf[self.head..self.head + first].copy_from_slice(&data[..first]);
        let rest = data.len() - first;
        self.buf[..rest].copy_from_slice(&data[first..]);
        self.head = (self.head + data.len()) % cap;
        self.histlen = (self.histlen + data.len()).min(cap);
    }

    /// The last `n` bytes, oldest first (`n <= histlen`).
    fn tail(&self, n: usize) -> Vec<u8> {
        let cap = self.buf.len();
        let start = (self.head + cap - n) % cap;
        let mut out = Vec::with_capacity(n);
        if start + n <= cap {
            out.extend_from_slice(&self.buf[start..start + n]);
        } else {
            out.extend_from_slice(&self.buf[start..]);
            out.extend_from_slice(&self.buf[..n - (cap - start)]);
        }
        out
    }
}

/// Records taken by the log writer: they end at stream offset `end`; after
/// writing them the writer must move on to `rotate_to`, if set.
pub struct LogBatch {
    pub bytes: Vec<u8>,
    pub end: u64,
    pub rotate_to: Option<std::path::PathBuf>,
}

/// What INFO replication shows about the stream.
pub struct StreamInfo {
    pub offset: u64,
    pub backlog_active: bool,
    pub backlog_size: usize,
    pub backlog_first_byte_offset: u64,
    pub backlog_histlen: usize,
}

/// Memory the stream holds beside the data (MEMORY STATS, INFO memory,
/// and what eviction leaves out of `used_memory`, as Redis does).
pub struct StreamMemory {
    pub backlog: usize,
    /// Replicas' output buffers.
    pub replicas: usize,
    /// Log records not yet written: pending, and the writer's batch.
    pub log: usize,
}

impl StreamMemory {
    /// What `maxmemory` does not count, as in Redis: replicas' output
    /// buffers and log records not yet written. Evicting keys for them
    /// would only grow them (each eviction is a `DEL` they carry), and a
    /// replica catching up would empty the primary.
    pub fn not_counted_for_evict(&self) -> u64 {
        (self.replicas + self.log) as u64
    }
}

/// Redis's "no id" for an unset replid2.
pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

pub fn random_replid() -> String {
    use rand::Rng;
    let mut r = rand::thread_rng();
    (0..40)
        .map(|_| std::char::from_digit(r.gen_range(0..16), 16).unwrap())
        .collect()
}

pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, argv: &[A]) {
    let mut b = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(b.format(argv.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in argv {
        let a = a.as_ref();
        out.push(b'$');
        out.extend_from_slice(b.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The size of [`encode_command`]'s output, without writing it.
pub fn encoded_len<A: AsRef<[u8]>>(argv: &[A]) -> usize {
    let digits = |n: usize| itoa::Buffer::new().format(n).len();
    1 + digits(argv.len())
        + 2
        + argv
            .iter()
            .map(|a| 1 + digits(a.as_ref().len()) + 2 + a.as_ref().len() + 2)
            .sum::<usize>()
}

impl EffectStream {
    pub fn new(backlog_size: usize) -> EffectStream {
        EffectStream {
            inner: Mutex::new(Inner {
                replid: random_replid(),
                replid2: NO_REPLID.to_string(),
                second_offset: -1,
                offset: 0,
                changes: 0,
                selected_db: None,
                backlog_size,
                backlog: None,
                scratch: Vec::with_capacity(256),
                aof: None,
                rotation: None,
                log_taken: 0,
                pending_since: None,
                writer_idle: false,
                writer_kicked: false,
                taps: Vec::new(),
            }),
            pending: Condvar::new(),
        }
    }

    /// Appends one effect for database `db`. Callers hold the slot locks of
    /// the keys the effect touches (or, for whole-database effects, of all).
    /// Returns the stream offset just past this effect.
    pub fn append(&self, db: usize, argv: &[&[u8]]) -> u64 {
        self.append_any(Some(db), argv)
    }

    /// Appends an effect that is not tied to one database (FLUSHALL, SWAPDB).
    pub fn append_global(&self, argv: &[&[u8]]) -> u64 {
        self.append_any(None, argv)
    }

    /// Appends an effect in database `db`, or in none (`None`).
    pub fn append_any<A: AsRef<[u8]>>(&self, db: Option<usize>, argv: &[A]) -> u64 {
        self.append_with(db, 1, || encoded_len(argv), |out| encode_command(out, argv))
    }

    /// Appends effects that are one change, at once: nothing another
    /// client records lands between them, and the log holds them as one
    /// record (a crash keeps all or none). More than one go in MULTI ...
    /// EXEC, after the SELECT of `db`, as Redis wraps a command's effects.
    pub fn append_unit<A: AsRef<[u8]>>(&self, db: Option<usize>, unit: &[Vec<A>]) -> u64 {
        let wrap = unit.len() > 1;
        let (multi, exec): ([&[u8]; 1], [&[u8]; 1]) = ([b"MULTI"], [b"EXEC"]);
        let len = || {
            let wrapping = if wrap {
                encoded_len(&multi) + encoded_len(&exec)
            } else {
                0
            };
            unit.iter().map(|argv| encoded_len(argv)).sum::<usize>() + wrapping
        };
        self.append_with(db, unit.len() as u64, len, |out| {
            if wrap {
                encode_command(out, &multi);
            }
            for argv in unit {
                encode_command(out, argv);
            }
            if wrap {
                encode_command(out, &exec);
            }
        })
    }

    /// Appends what `encode` writes (`len` bytes, `changes` effects) in
    /// database `db`, after a SELECT if the stream is elsewhere. With
    /// nothing reading the stream (no backlog, log or replica) only the
    /// offset moves, by `len`.
    fn append_with(
        &self,
        db: Option<usize>,
        changes: u64,
        len: impl FnOnce() -> usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> u64 {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.changes += changes;
        let select = match db {
            Some(db) if inner.selected_db != Some(db) => {
                inner.selected_db = Some(db);
                Some(db)
            }
            _ => None,
        };
        let mut b = itoa::Buffer::new();
        let select_argv: Option<[&[u8]; 2]> = select.map(|db| [b"SELECT", b.format(db).as_bytes()]);
        if inner.backlog.is_none() && inner.aof.is_none() && inner.taps.is_empty() {
            let mut n = len();
            if let Some(sel) = &select_argv {
                n += encoded_len(sel);
            }
            inner.offset += n as u64;
            return inner.offset;
        }
        inner.scratch.clear();
        if let Some(sel) = &select_argv {
            encode_command(&mut inner.scratch, sel);
        }
        encode(&mut inner.scratch);
        let scratch = std::mem::take(&mut inner.scratch);
        self.push(inner, &scratch);
        inner.scratch = scratch;
        inner.offset
    }

    /// Sends stream bytes everywhere the stream goes: the offset, the
    /// backlog, each replica, and the log (as one record).
    fn push(&self, inner: &mut Inner, bytes: &[u8]) {
        inner.offset += bytes.len() as u64;
        if let Some(backlog) = &mut inner.backlog {
            backlog.push(bytes);
        }
        for t in &inner.taps {
            t.push(bytes);
        }
        if let Some((pending, end)) = &mut inner.aof {
            let was_empty = pending.is_empty();
            aof::frame(pending, bytes);
            *end = inner.offset;
            // While writes keep coming the writer comes round on its own
            // short timer, so a write costs no wake-up of another thread
            // (with appendfsync always the I/O threads sync themselves, see
            // `persistence::log`); only the first one after a quiet spell
            // wakes it.
            if was_empty {
                inner.pending_since = Some(std::time::Instant::now());
            }
            self.wake_idle_writer(inner);
        }
    }

    fn wake_idle_writer(&self, inner: &mut Inner) {
        if std::mem::take(&mut inner.writer_idle) {
            self.pending.notify_one();
        }
    }

    /// Appends bytes received from this node's primary, exactly as they
    /// came (a replica's stream is its primary's, byte for byte, so the
    /// offsets agree); `db` is the database selected after them.
    pub fn append_raw(&self, bytes: &[u8], db: usize) -> u64 {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.selected_db = Some(db);
        inner.changes += 1;
        self.push(inner, bytes);
        inner.offset
    }

    /// Frames a state record (see [`STATE_RECORD`]) into the pending log
    /// data, so that what follows in the log is known to continue here.
    fn mark_state(&self, inner: &mut Inner) {
        if let Some((pending, end)) = &mut inner.aof {
            let state = StreamState {
                id: Identity {
                    replid: inner.replid.clone(),
                    offset: inner.offset,
                },
                db: inner.selected_db,
                past: (inner.second_offset >= 0).then(|| PastHistory {
                    replid2: inner.replid2.clone(),
                    second_offset: inner.second_offset,
                }),
            };
            if pending.is_empty() {
                // The writer's clock for what waits: without it, a record
                // pending with no age looked like nothing to take over and
                // the writer (appendfsync always) spun until the next write.
                inner.pending_since = Some(std::time::Instant::now());
            }
            aof::frame(pending, &state.record());
            // The log stands where the stream does, also when a change of
            // history moved it and nothing was appended since.
            *end = inner.offset;
            self.wake_idle_writer(inner);
        }
    }

    /// Effects appended since start-up (what `save` rules count).
    pub fn changes(&self) -> u64 {
        self.inner.lock().changes
    }

    /// The database the stream's last effect was in, if it says.
    pub fn selected_db(&self) -> Option<usize> {
        self.inner.lock().selected_db
    }

    pub fn identity(&self) -> Identity {
        let g = self.inner.lock();
        Identity {
            replid: g.replid.clone(),
            offset: g.offset,
        }
    }

    /// `(replid, replid2, second_offset)` for INFO replication.
    pub fn ids(&self) -> (String, String, i64) {
        let g = self.inner.lock();
        (g.replid.clone(), g.replid2.clone(), g.second_offset)
    }

    /// Sets where the stream stands, as read back from the log at start-up.
    pub fn restore_identity(&self, state: StreamState) {
        let mut g = self.inner.lock();
        g.replid = state.id.replid;
        g.offset = state.id.offset;
        g.selected_db = state.db;
        if let Some(p) = state.past {
            g.replid2 = p.replid2;
            g.second_offset = p.second_offset;
        }
    }

    /// Starts a new history: this node's data stops being a copy of
    /// anything it was a copy of (a full sync is about to replace it). The
    /// log records that, so a crash half-way cannot be mistaken for the
    /// old history.
    pub fn forget_history(&self) {
        let mut g = self.inner.lock();
        g.replid = random_replid();
        g.replid2 = NO_REPLID.to_string();
        g.second_offset = -1;
        g.offset = 0;
        g.selected_db = None;
        if let Some(b) = &mut g.backlog {
            *b = Backlog::new(b.buf.len());
        }
        self.mark_state(&mut g);
    }

    /// After a full sync: the data now is the primary's at `id`, and its
    /// stream continues from there in database `db`.
    pub fn adopt(&self, id: Identity, db: Option<usize>) {
        let mut g = self.inner.lock();
        g.replid = id.replid;
        g.offset = id.offset;
        g.replid2 = NO_REPLID.to_string();
        g.second_offset = -1;
        g.selected_db = db;
        if let Some(b) = &mut g.backlog {
            *b = Backlog::new(b.buf.len());
        }
        self.mark_state(&mut g);
    }

    /// The history goes on under a new id with everything so far kept
    /// (a replica promoted to primary, or one whose primary was): the old
    /// id stays valid up to here, so replicas that followed it continue.
    /// The replicas fed so far are dropped in the same step (see
    /// [`Close::Superseded`]): nothing of the new history reaches one
    /// under the old id.
    pub fn fork_history(&self, new_replid: Option<String>) {
        let mut g = self.inner.lock();
        let old = std::mem::replace(&mut g.replid, new_replid.unwrap_or_else(random_replid));
        g.replid2 = old;
        g.second_offset = g.offset as i64 + 1;
        self.mark_state(&mut g);
        close_taps(&mut g);
    }

    /// Starts feeding a replica from the current point (a full sync's
    /// instant S: the caller holds every slot lock). Returns where the
    /// replica's copy stands and the database the stream is in there,
    /// which the replica starts in. The stream's next record says SELECT
    /// all the same, as Redis's does after a full sync: a reader that
    /// skipped the snapshot (SYNC from a tool) learns its database too.
    pub fn attach_at_now(&self, tap: Arc<Tap>) -> (Identity, Option<usize>) {
        let mut g = self.inner.lock();
        if g.backlog.is_none() {
            g.backlog = Some(Backlog::new(g.backlog_size));
        }
        g.taps.push(tap);
        let id = Identity {
            replid: g.replid.clone(),
            offset: g.offset,
        };
        (id, g.selected_db.take())
    }

    /// Starts feeding a replica that holds history `replid` up to `offset`
    /// (PSYNC's continuation): returns the id to continue under and the
    /// bytes it is missing, or why it cannot continue.
    pub fn attach_continuing(
        &self,
        replid: &str,
        offset: u64,
        tap: Arc<Tap>,
    ) -> Result<(String, Vec<u8>), NoContinue> {
        let mut g = self.inner.lock();
        let known =
            replid == g.replid || (replid == g.replid2 && (offset as i64) < g.second_offset);
        if !known {
            return Err(NoContinue::UnknownHistory);
        }
        let missing = if offset == g.offset {
            Vec::new()
        } else {
            let Some(b) = &g.backlog else {
                return Err(NoContinue::OutOfBacklog);
            };
            let first = g.offset - b.histlen as u64;
            if offset < first || offset > g.offset {
                return Err(NoContinue::OutOfBacklog);
            }
            b.tail((g.offset - offset) as usize)
        };
        if g.backlog.is_none() {
            g.backlog = Some(Backlog::new(g.backlog_size));
        }
        g.taps.push(tap);
        Ok((g.replid.clone(), missing))
    }

    /// Whether any replica is being fed.
    pub fn feeds_replicas(&self) -> bool {
        !self.inner.lock().taps.is_empty()
    }

    /// Stops feeding a replica.
    pub fn detach(&self, tap: &Arc<Tap>) {
        self.inner.lock().taps.retain(|t| !Arc::ptr_eq(t, tap));
    }

    /// Stops feeding every replica (their feeders drop them): this node's
    /// history is about to be replaced.
    pub fn detach_all(&self) {
        close_taps(&mut self.inner.lock());
    }

    /// Starts framing effects for the append-only log (after loading it).
    /// Returns the offset from which records are kept for the log.
    pub fn attach_log(&self) -> u64 {
        let mut g = self.inner.lock();
        if g.aof.is_none() {
            let end = g.offset;
            g.aof = Some((Vec::with_capacity(64 * 1024), end));
            self.mark_state(&mut g);
        }
        g.aof.as_ref().map_or(g.offset, |(_, end)| *end)
    }

    /// The log is turned off (CONFIG SET appendonly no): no more records
    /// are kept for it, and what was pending is dropped.
    pub fn detach_log(&self) {
        let mut g = self.inner.lock();
        g.aof = None;
        g.rotation = None;
        g.pending_since = None;
        g.log_taken = 0;
    }

    /// How long the oldest pending log record has waited, if any.
    pub fn pending_age(&self) -> Option<Duration> {
        self.inner.lock().pending_since.map(|t| t.elapsed())
    }

    /// Marks the instant S at which the log moves to `next`: what is pending
    /// now belongs to the current file, everything appended later to `next`.
    /// The caller holds every slot lock, so no effect is half-way.
    pub fn rotate_log(&self, next: std::path::PathBuf) {
        let mut g = self.inner.lock();
        let offset = g.offset;
        if let Some((pending, end)) = &mut g.aof {
            let before = std::mem::take(pending);
            *end = offset;
            debug_assert!(g.rotation.is_none(), "one rewrite at a time");
            g.rotation = Some((before, offset, next));
            // The new file starts by saying where the stream stands, its
            // database included: a replica's stream bytes carry a SELECT
            // only where its primary's did.
            self.mark_state(&mut g);
            self.pending.notify_one();
        }
    }

    /// For the log writer: waits until records are pending (or a file
    /// switch is, or `wake_log_writer` was called), without taking them.
    /// While records keep coming it waits at most `round`, and the records
    /// wake nobody. Once a whole round passed with nothing appended (an
    /// idle node) it sleeps until the next record wakes it, or for at most
    /// `quiet_limit` when that is set (a sync falling due).
    pub fn wait_for_log(&self, round: Duration, quiet_limit: Option<Duration>) {
        fn nothing_to_take(inner: &Inner) -> bool {
            inner.rotation.is_none() && inner.aof.as_ref().is_some_and(|(p, _)| p.is_empty())
        }
        let mut g = self.inner.lock();
        if std::mem::take(&mut g.writer_kicked) || !nothing_to_take(&g) {
            return;
        }
        let offset = g.offset;
        self.pending.wait_for(&mut g, round);
        if std::mem::take(&mut g.writer_kicked) || !nothing_to_take(&g) || g.offset != offset {
            return;
        }
        g.writer_idle = true;
        match quiet_limit {
            Some(limit) => {
                self.pending.wait_for(&mut g, limit);
            }
            None => self.pending.wait(&mut g),
        }
        g.writer_idle = false;
        g.writer_kicked = false;
    }

    /// Has the log writer come round at once: to stop, or to retry a
    /// write that failed on an I/O thread.
    pub fn wake_log_writer(&self) {
        let mut g = self.inner.lock();
        g.writer_kicked = true;
        self.pending.notify_one();
    }

    /// For the log writer: waits up to `timeout` for pending records and
    /// takes them, handing back `spare` (emptied) for the next round.
    pub fn take_log(&self, spare: Vec<u8>, timeout: Duration) -> LogBatch {
        let mut g = self.inner.lock();
        if let Some((bytes, end, next)) = g.rotation.take() {
            g.log_taken = bytes.capacity();
            return LogBatch {
                bytes,
                end,
                rotate_to: Some(next),
            };
        }
        if g.aof.as_ref().is_some_and(|(p, _)| p.is_empty()) {
            self.pending.wait_for(&mut g, timeout);
        }
        if let Some((bytes, end, next)) = g.rotation.take() {
            g.log_taken = bytes.capacity();
            return LogBatch {
                bytes,
                end,
                rotate_to: Some(next),
            };
        }
        let inner = &mut *g;
        inner.pending_since = None;
        match &mut inner.aof {
            Some((pending, end)) => {
                let mut spare = spare;
                spare.clear();
                if spare.capacity() > KEEP_MAX {
                    spare = Vec::with_capacity(64 * 1024);
                }
                let bytes = std::mem::replace(pending, spare);
                inner.log_taken = bytes.capacity();
                LogBatch {
                    bytes,
                    end: *end,
                    rotate_to: None,
                }
            }
            None => LogBatch {
                bytes: Vec::new(),
                end: g.offset,
                rotate_to: None,
            },
        }
    }

    /// Starts keeping history (the first replica calls this). Idempotent.
    pub fn activate_backlog(&self) {
        let mut g = self.inner.lock();
        if g.backlog.is_none() {
            g.backlog = Some(Backlog::new(g.backlog_size));
        }
    }

    pub fn offset(&self) -> u64 {
        self.inner.lock().offset
    }

    /// The stream from `offset` to now, if the backlog still holds it.
    pub fn read_from(&self, offset: u64) -> Option<Vec<u8>> {
        let g = self.inner.lock();
        let backlog = g.backlog.as_ref()?;
        let first = g.offset - backlog.histlen as u64;
        if offset < first || offset > g.offset {
            return None;
        }
        Some(backlog.tail((g.offset - offset) as usize))
    }

    /// Resizes the backlog (CONFIG SET repl-backlog-size). History is dropped,
    /// which resync logic must treat as "needs a full sync".
    pub fn resize_backlog(&self, size: usize) {
        let mut g = self.inner.lock();
        g.backlog_size = size;
        if g.backlog
            .as_ref()
            .is_some_and(|b| b.buf.len() != size.max(1))
        {
            g.backlog = Some(Backlog::new(size));
        }
    }

    pub fn memory(&self) -> StreamMemory {
        let g = self.inner.lock();
        StreamMemory {
            backlog: g
                .backlog
                .as_ref()
                .map_or(0, |b| allocation_size(b.buf.capacity())),
            replicas: g.taps.iter().map(|t| t.held()).sum(),
            log: g
                .aof
                .as_ref()
                .map_or(0, |(v, _)| allocation_size(v.capacity()))
                + g.rotation
                    .as_ref()
                    .map_or(0, |(v, _, _)| allocation_size(v.capacity()))
                + allocation_size(g.log_taken),
        }
    }

    pub fn info(&self) -> StreamInfo {
        let g = self.inner.lock();
        let (active, histlen) = match &g.backlog {
            Some(b) => (true, b.histlen),
            None => (false, 0),
        };
        StreamInfo {
            offset: g.offset,
            backlog_active: active,
            backlog_size: g.backlog_size,
            backlog_first_byte_offset: if active {
                g.offset - histlen as u64 + 1
            } else {
                0
            },
            backlog_histlen: histlen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst's buffer handed back by the log writer is not kept as the
    /// next pending buffer; an ordinary one is.
    #[test]
    fn the_log_keeps_no_burst_sized_buffer() {
        let s = EffectStream::new(1024);
        s.attach_log();
        let pending_capacity = |s: &EffectStream| {
            s.inner
                .lock()
                .aof
                .as_ref()
                .map(|(p, _)| p.capacity())
                .unwrap()
        };
        let taken = s.take_log(Vec::with_capacity(8 << 20), Duration::ZERO);
        assert!(
            !taken.bytes.is_empty(),
            "the state record a log starts with"
        );
        assert!(pending_capacity(&s) <= 1 << 20);
        s.append(0, &[b"SET", b"k", b"v"]);
        s.take_log(Vec::with_capacity(100_000), Duration::ZERO);
        assert_eq!(pending_capacity(&s), 100_000);
    }

    #[test]
    fn select_is_emitted_on_db_change_only() {
        let s = EffectStream::new(1024);
        s.activate_backlog();
        s.append(0, &[b"SET", b"k", b"v"]);
        s.append(0, &[b"DEL", b"k"]);
        s.append(3, &[b"DEL", b"k"]);
        let all = s.read_from(0).unwrap();
        let text = String::from_utf8(all).unwrap();
        assert_eq!(text.matches("SELECT").count(), 2);
        assert!(text.starts_with("*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET"));
        assert_eq!(s.offset(), text.len() as u64);
    }

    #[test]
    fn offsets_are_the_same_without_a_backlog() {
        let with = EffectStream::new(1 << 20);
        with.activate_backlog();
        let without = EffectStream::new(1 << 20);
        for s in [&with, &without] {
            s.append(0, &[b"SET", b"key", &[b'x'; 1000]]);
            s.append(12, &[b"PEXPIREAT", b"key", b"1700000000000"]);
            s.append_global(&[b"FLUSHALL"]);
            s.append(12, &[b"DEL", b"k"]);
        }
        assert_eq!(with.offset(), without.offset());
        assert!(without.read_from(0).is_none());
        assert!(!without.info().backlog_active);
    }

    #[test]
    fn state_records_read_back_what_they_say() {
        for past in [
            None,
            Some(PastHistory {
                replid2: random_replid(),
                second_offset: 77,
            }),
        ] {
            let state = StreamState {
                id: Identity {
                    replid: random_replid(),
                    offset: 12345,
                },
                db: Some(3),
                past,
            };
            let mut buf = bytes::BytesMut::from(&state.record()[..]);
            let limits = crate::protocol::RequestLimits {
                max_bulk_len: 1 << 20,
            };
            let argv = crate::protocol::parse_request(&mut buf, limits)
                .unwrap()
                .unwrap();
            assert_eq!(StreamState::parse(&argv), Some(Ok(state)));
        }
        let set: [&[u8]; 2] = [b"SET", b"k"];
        assert_eq!(StreamState::parse(&set), None);
        let bad: [&[u8]; 4] = [STATE_RECORD, b"id", b"x", b"0"];
        assert!(matches!(StreamState::parse(&bad), Some(Err(_))));
    }

    #[test]
    fn backlog_wraps_and_forgets_old_history() {
        let s = EffectStream::new(64);
        s.activate_backlog();
        for _ in 0..10 {
            s.append(0, &[b"INCR", b"counter"]);
        }
        let off = s.offset();
        assert!(
            s.read_from(0).is_none(),
            "history older than the backlog is gone"
        );
        let one = {
            let mut v = Vec::new();
            encode_command::<&[u8]>(&mut v, &[b"INCR", b"counter"]);
            v
        };
        let tail = s.read_from(off - one.len() as u64).unwrap();
        assert_eq!(tail, one);
        assert_eq!(s.read_from(off).unwrap(), Vec::<u8>::new());
        let info = s.info();
        assert_eq!(info.backlog_histlen, 64);
        assert_eq!(info.backlog_first_byte_offset, off - 64 + 1);
    }
}
