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
//!   taken after slot locks and nothing is locked while holding it.
//! - The replication offset is the number of bytes ever appended. The backlog
//!   keeps the last `repl-backlog-size` bytes of the stream for partial resync.
//! - As in Redis, the backlog exists only once something may need history
//!   (the first replica; see [`EffectStream::activate_backlog`]). Until then an
//!   effect only advances the offset, by exactly the bytes it would have
//!   taken, so offsets are the same whether or not history is kept.
//! - A `SELECT` is emitted whenever the next effect is for another database
//!   than the previous one, as in Redis's replication stream.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::persistence::aof;

pub struct EffectStream {
    inner: Mutex<Inner>,
    /// Wakes the append-only log writer when records are pending.
    pending: Condvar,
}

struct Inner {
    /// Total bytes ever appended: the replication offset.
    offset: u64,
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
    /// Wake the writer on every first pending record (appendfsync always,
    /// where replies wait for it); otherwise it comes round on its own
    /// short timer, and a write costs no cross-thread wake-up.
    wake_writer: bool,
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
                offset: 0,
                selected_db: None,
                backlog_size,
                backlog: None,
                scratch: Vec::with_capacity(256),
                aof: None,
                rotation: None,
                wake_writer: false,
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

    /// [`EffectStream::append`] for a command's own arguments, recorded as is.
    pub fn append_argv(&self, db: usize, argv: &[bytes::Bytes]) -> u64 {
        self.append_any(Some(db), argv)
    }

    /// Appends an effect that is not tied to one database (FLUSHALL, SWAPDB).
    pub fn append_global(&self, argv: &[&[u8]]) -> u64 {
        self.append_any(None, argv)
    }

    fn append_any<A: AsRef<[u8]>>(&self, db: Option<usize>, argv: &[A]) -> u64 {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let select = match db {
            Some(db) if inner.selected_db != Some(db) => {
                inner.selected_db = Some(db);
                Some(db)
            }
            _ => None,
        };
        let mut b = itoa::Buffer::new();
        let select_argv: Option<[&[u8]; 2]> = select.map(|db| [b"SELECT", b.format(db).as_bytes()]);
        if inner.backlog.is_none() && inner.aof.is_none() {
            let mut n = encoded_len(argv);
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
        encode_command(&mut inner.scratch, argv);
        inner.offset += inner.scratch.len() as u64;
        if let Some(backlog) = &mut inner.backlog {
            backlog.push(&inner.scratch);
        }
        if let Some((pending, end)) = &mut inner.aof {
            let was_empty = pending.is_empty();
            aof::frame(pending, &inner.scratch);
            *end = inner.offset;
            if was_empty && inner.wake_writer {
                self.pending.notify_one();
            }
        }
        inner.offset
    }

    /// Starts framing effects for the append-only log (after loading it).
    pub fn attach_log(&self) {
        let mut g = self.inner.lock();
        if g.aof.is_none() {
            let end = g.offset;
            g.aof = Some((Vec::with_capacity(64 * 1024), end));
        }
    }

    /// Whether appends wake the log writer at once (see `Inner::wake_writer`).
    pub fn set_writer_wakeups(&self, on: bool) {
        self.inner.lock().wake_writer = on;
        if on {
            self.pending.notify_one();
        }
    }

    /// Marks the instant S at which the log moves to `next`: what is pending
    /// now belongs to the current file, everything appended later to `next`.
    /// The caller holds every slot lock, so no effect is half-way.
    pub fn rotate_log(&self, next: std::path::PathBuf) {
        let mut g = self.inner.lock();
        let offset = g.offset;
        // The new file must not depend on the old one's last SELECT.
        g.selected_db = None;
        if let Some((pending, end)) = &mut g.aof {
            let before = std::mem::take(pending);
            *end = offset;
            debug_assert!(g.rotation.is_none(), "one rewrite at a time");
            g.rotation = Some((before, offset, next));
            self.pending.notify_one();
        }
    }

    /// For the log writer: waits up to `timeout` until records are pending
    /// (or a file switch is), without taking them.
    pub fn wait_for_log(&self, timeout: Duration) {
        let mut g = self.inner.lock();
        if g.rotation.is_none() && g.aof.as_ref().is_some_and(|(p, _)| p.is_empty()) {
            self.pending.wait_for(&mut g, timeout);
        }
    }

    /// For the log writer: waits up to `timeout` for pending records and
    /// takes them, handing back `spare` (emptied) for the next round.
    pub fn take_log(&self, spare: Vec<u8>, timeout: Duration) -> LogBatch {
        let mut g = self.inner.lock();
        if let Some((bytes, end, next)) = g.rotation.take() {
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
            return LogBatch {
                bytes,
                end,
                rotate_to: Some(next),
            };
        }
        match &mut g.aof {
            Some((pending, end)) => {
                let mut spare = spare;
                spare.clear();
                LogBatch {
                    bytes: std::mem::replace(pending, spare),
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
