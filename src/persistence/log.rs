//! The append-only log writer: one thread that moves framed effects from the
//! effect stream to the current log file and syncs it per `appendfsync`.
//!
//! ```text
//!  commands ──frame──▶ EffectStream (pending records) ──take──▶ writer thread
//!                                                               │ write(2)
//!                                                               │ fsync per policy
//!                                                               ▼
//!                                             durable offset ──▶ waiting replies
//! ```
//!
//! - `always`: a connection whose last effect lies beyond the durable
//!   offset holds its replies until it moves. The write and fsync happen on
//!   the last I/O thread to go idle (tokio's park hook, where Redis syncs
//!   before its event loop sleeps), after one more read of its sockets:
//!   every connection that was ready has run, so one fsync covers all their
//!   writes (group commit) and the replies need no round trip through
//!   another thread. The writer thread takes
//!   over records that waited a millisecond (a thread too busy to go idle,
//!   an effect from outside a connection).
//! - `everysec`: written within 10 ms (the writer's round; a write costs no
//!   wake-up of another thread), synced once a second: at most about a
//!   second of acknowledged writes can be lost on power loss, 10 ms on a
//!   crash of the process alone.
//! - `no`: written like `everysec`; the kernel decides when it reaches disk.
//!
//! The writer's timer runs only while records come: after a round (1 ms
//! with `always`, 10 ms otherwise) in which nothing was appended it sleeps
//! until the next record wakes it, or until an `everysec` sync falls due,
//! so an idle node has it asleep (it once woke a thousand times a second).
//!
//! Apart from `durable` (what replies wait for), the log keeps how far it
//! is really fsynced, whatever the policy: WAITAOF counts it, and a
//! replica reports it to its primary (FACK). Offsets belong to a history:
//! a replica's full sync starts a new one, and a sync of bytes taken
//! before that says nothing about the new offsets.
//!
//! A rewrite switches the log to a new file at an exact stream offset (see
//! `EffectStream::rotate_log`): the writer finishes and syncs everything
//! before the switch in the old file, then appends to the new one.
//!
//! With `always` the file is written ahead with zeros (`ROOM`, synced),
//! and records overwrite them at their positions: a sync then flushes the
//! data alone. Appending changed the file's size, and each sync also
//! committed that to the file system's journal: 240 µs a sync on this
//! project's test machine (ext4) against 155 µs. The room is cut off when
//! the writer stops and when a file is sealed, so a file at rest ends at its
//! last record; after a crash the loader reads zeros after the last record
//! as room (`aof::scan`) and start-up cuts them.
//!
//! A failed write or fsync (disk full, I/O error) sets the error that makes
//! the server refuse writes with `-MISCONF`, cuts the file back to its last
//! whole record, and retries every second with nothing dropped; reads go on.
//! The first success clears the error.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::effects::EffectStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always = 0,
    Everysec = 1,
    No = 2,
}

impl FsyncPolicy {
    pub fn parse(s: &str) -> FsyncPolicy {
        match s {
            "always" => FsyncPolicy::Always,
            "no" => FsyncPolicy::No,
            _ => FsyncPolicy::Everysec,
        }
    }

    fn from_u8(v: u8) -> FsyncPolicy {
        match v {
            0 => FsyncPolicy::Always,
            2 => FsyncPolicy::No,
            _ => FsyncPolicy::Everysec,
        }
    }
}

/// What the rest of the server sees of the log.
pub struct LogState {
    /// `appendonly`: records are being written (see [`LogState::enabled`]).
    enabled: AtomicBool,
    /// Turns on and off (CONFIG SET appendonly), counted: a turning on
    /// that finds the count moved gives up (`super::toggle`).
    pub toggles: AtomicU64,
    /// The writer thread, while there is one.
    pub writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    policy: AtomicU8,
    /// Stream offset up to which effects are on disk (per the policy).
    pub durable: AtomicU64,
    /// The history the stream's offsets belong to: a replica's full sync
    /// starts a new one (see [`LogState::new_history`]).
    history: AtomicU64,
    /// `(history, offset)`: the stream is fsynced up to `offset` of that
    /// history, whatever the policy (WAITAOF's local count, a replica's
    /// FACK).
    fsynced: Mutex<(u64, u64)>,
    /// Told after every fsync: WAITAOF waiters and a replica's link,
    /// which acknowledges its synced offset to its primary.
    pub synced: tokio::sync::Notify,
    /// Each I/O thread's waiting connections, told when `durable`
    /// advances or the writer stops.
    threads: Mutex<Vec<Arc<ThreadWaiters>>>,
    /// Connections waiting for `durable` (appendfsync always), on any I/O
    /// thread: the last thread to go idle syncs for all of them.
    waiting: std::sync::atomic::AtomicUsize,
    /// I/O threads not parked (see `sync_before_park`).
    io_running: std::sync::atomic::AtomicUsize,
    failing: AtomicBool,
    /// The file's room runs low: the writer thread makes more (see
    /// [`LogFile::make_room`]), off the I/O threads' syncs.
    wants_room: AtomicBool,
    error: Mutex<String>,
    /// Bytes in the current log file.
    pub size: AtomicU64,
    stop: AtomicBool,
    pub stopped: AtomicBool,
    /// File switches the writer has completed (a rewrite waits for its own).
    pub rotations: AtomicU64,
    /// The open log file, once the log is loaded.
    pub file: Mutex<Option<LogFile>>,
    /// The log's directory and manifest, once loaded.
    pub files: Mutex<Option<(super::aof::AofDir, super::aof::Manifest)>>,
    pub rewriting: AtomicBool,
    /// CONFIG SET appendonly yes's not finished (the base not written):
    /// they count as a rewrite in progress, from the reply on.
    pub turning_on: std::sync::atomic::AtomicUsize,
    /// Any snapshot (rewrite or save) running: only one at a time.
    pub snapshot_busy: AtomicBool,
    pub saving: AtomicBool,
    /// BGSAVE SCHEDULE came while a rewrite ran: save once it is done.
    pub save_scheduled: AtomicBool,
    pub last_save_ok: AtomicBool,
    pub rewrites: AtomicU64,
    pub last_rewrite_ok: AtomicBool,
    /// Timings INFO reports: when the running snapshot save / rewrite
    /// began (Unix ms, 0: none), how long the last one took (seconds, -1:
    /// none yet), successful saves, rewrites failed in a row.
    pub save_started_ms: AtomicI64,
    pub last_save_secs: AtomicI64,
    pub saves: AtomicU64,
    pub rewrite_started_ms: AtomicI64,
    pub last_rewrite_secs: AtomicI64,
    pub rewrite_failures: AtomicU64,
    /// Keys loaded from, and found expired in, the last Redis RDB file
    /// loaded (a dump.rdb, an RDB base or preamble).
    pub rdb_loaded_keys: AtomicU64,
    pub rdb_expired_keys: AtomicU64,
    /// Size of the base file, and of the whole log right after the last
    /// rewrite (or start-up): automatic rewrites measure growth from it.
    pub base_size: AtomicU64,
    pub size_after_rewrite: AtomicU64,
    /// The server's latency monitor: slow writes and syncs are spikes.
    latency: Arc<crate::server::latency::Monitor>,
}

impl LogState {
    /// INFO's `aof_rewrite_in_progress`: a rewrite, or a turning on
    /// whose base is yet to be written.
    pub fn rewrite_in_progress(&self) -> bool {
        self.rewriting.load(Relaxed) || self.turning_on.load(Relaxed) > 0
    }

    pub fn new(
        enabled: bool,
        policy: FsyncPolicy,
        latency: Arc<crate::server::latency::Monitor>,
    ) -> LogState {
        LogState {
            enabled: AtomicBool::new(enabled),
            toggles: AtomicU64::new(0),
            writer: Mutex::new(None),
            policy: AtomicU8::new(policy as u8),
            durable: AtomicU64::new(0),
            history: AtomicU64::new(0),
            fsynced: Mutex::new((0, 0)),
            synced: tokio::sync::Notify::new(),
            threads: Mutex::new(Vec::new()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            io_running: std::sync::atomic::AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            wants_room: AtomicBool::new(false),
            error: Mutex::new(String::new()),
            size: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            rotations: AtomicU64::new(0),
            file: Mutex::new(None),
            files: Mutex::new(None),
            rewriting: AtomicBool::new(false),
            turning_on: std::sync::atomic::AtomicUsize::new(0),
            snapshot_busy: AtomicBool::new(false),
            saving: AtomicBool::new(false),
            save_scheduled: AtomicBool::new(false),
            last_save_ok: AtomicBool::new(true),
            rewrites: AtomicU64::new(0),
            last_rewrite_ok: AtomicBool::new(true),
            save_started_ms: AtomicI64::new(0),
            last_save_secs: AtomicI64::new(-1),
            saves: AtomicU64::new(0),
            rewrite_started_ms: AtomicI64::new(0),
            last_rewrite_secs: AtomicI64::new(-1),
            rewrite_failures: AtomicU64::new(0),
            rdb_loaded_keys: AtomicU64::new(0),
            rdb_expired_keys: AtomicU64::new(0),
            base_size: AtomicU64::new(0),
            size_after_rewrite: AtomicU64::new(0),
            latency,
        }
    }

    /// Whether the log is on: records are kept and written, and replies
    /// wait for them under `appendfsync always`.
    pub fn enabled(&self) -> bool {
        self.enabled.load(SeqCst)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, SeqCst);
        if !on {
            // Replies waiting for the log to be synced wait no more.
            self.wake_all();
        }
    }

    /// Before a writer thread starts (again): not stopping, not stopped.
    pub fn resume(&self) {
        self.stop.store(false, Relaxed);
        self.stopped.store(false, SeqCst);
    }

    /// Stops the writer once it has written and synced what is pending,
    /// and waits for it.
    pub fn stop_writer(&self, effects: &EffectStream) {
        let handle = self.writer.lock().take();
        if let Some(w) = handle {
            self.request_stop();
            effects.wake_log_writer();
            let _ = w.join();
        }
    }

    pub fn policy(&self) -> FsyncPolicy {
        FsyncPolicy::from_u8(self.policy.load(Relaxed))
    }

    pub fn set_policy(&self, p: FsyncPolicy) {
        self.policy.store(p as u8, Relaxed);
    }

    /// The write error that makes the server refuse writes, if any.
    pub fn failure(&self) -> Option<String> {
        if self.failing.load(Relaxed) {
            Some(self.error.lock().clone())
        } else {
            None
        }
    }

    /// Whether a reply acknowledging writes up to `offset` must wait.
    pub fn must_wait(&self, offset: u64) -> bool {
        self.enabled()
            // SeqCst, paired with `advance`: see `ThreadWaiters`.
            && offset > self.durable.load(SeqCst)
            && self.policy() == FsyncPolicy::Always
            && !self.stopped.load(Relaxed)
    }

    /// Whether the log is on and fsynced up to `offset` (WAITAOF).
    pub fn fsynced_to(&self, offset: u64) -> bool {
        self.fsynced_offset().is_some_and(|f| f >= offset)
    }

    /// The offset the log is fsynced to, if the log is on (a replica's
    /// FACK).
    pub fn fsynced_offset(&self) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let (history, offset) = *self.fsynced.lock();
        Some(if history == self.history.load(SeqCst) {
            offset
        } else {
            0
        })
    }

    /// The stream's offsets start over (a replica's full sync forgot its
    /// history, or adopted its primary's): nothing of the new history is
    /// known to be synced yet, and a sync of bytes taken before now no
    /// longer says anything. Called after the stream changed.
    pub fn new_history(&self) {
        let mut f = self.fsynced.lock();
        let history = self.history.fetch_add(1, SeqCst) + 1;
        *f = (history, 0);
    }

    /// Records an fsync that covered the stream up to `offset` of
    /// `history` (as read before the bytes were taken; the latest offset
    /// wins, as with `advance`) and tells whoever waits for one.
    fn record_sync(&self, history: u64, offset: u64) {
        {
            let mut f = self.fsynced.lock();
            if history == self.history.load(SeqCst) {
                *f = (history, offset);
            }
        }
        self.synced.notify_waiters();
    }

    /// Asks the writer to write and sync what is pending, then exit.
    pub fn request_stop(&self) {
        self.stop.store(true, Relaxed);
    }

    fn fail(&self, what: &str, e: &std::io::Error) {
        // The text first: whoever sees the flag must find the reason.
        *self.error.lock() = describe(e);
        let first = !self.failing.swap(true, Relaxed);
        if first {
            tracing::warn!(
                "Error {what} the append only file: {e}; refusing writes until it works again"
            );
        }
    }

    fn recover(&self) {
        if self.failing.swap(false, Relaxed) {
            tracing::warn!("Append only file writes work again; accepting writes");
        }
    }

    /// Records how far the log is durable. Only the writer calls this, in
    /// stream order; the stream's offset may move back (a replica's full
    /// sync adopts its primary's offsets), so this is the latest, not the
    /// largest.
    fn advance(&self, durable: u64) {
        self.durable.store(durable, SeqCst);
        for t in self.threads.lock().iter() {
            if t.waiting.load(SeqCst) > 0 {
                t.wake.notify_one();
            }
        }
    }

    /// Wakes every waiting connection, to find the log stopped.
    fn wake_all(&self) {
        for t in self.threads.lock().iter() {
            t.wake.notify_one();
        }
    }

    /// The waiters of a new I/O thread (which runs [`relay_synced`]).
    pub fn register_thread(&self) -> Arc<ThreadWaiters> {
        let t = Arc::new(ThreadWaiters {
            waiting: std::sync::atomic::AtomicUsize::new(0),
            wake: tokio::sync::Notify::new(),
            local: tokio::sync::Notify::new(),
            polled: AtomicBool::new(false),
        });
        self.threads.lock().push(t.clone());
        t
    }
}

/// An I/O error as the C library says it ("No space left on device"),
/// without Rust's " (os error 28)" suffix, as in Redis's -MISCONF reply.
pub fn describe(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Zeros written ahead at a time under `appendfsync always`, and how few
/// are left when the writer thread is asked for more: a megabyte is about
/// 20,000 small writes, and takes a few milliseconds to write and sync.
const ROOM: u64 = 1 << 20;
const ROOM_LOW: u64 = ROOM / 2;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The open log file and what is on its way into it, behind one mutex so
/// that whoever writes writes in stream order. Records are written at
/// their positions (`good_len`), never appended: the file may have room
/// past them. The file must not be opened to append, where Linux ignores
/// the position given.
pub struct LogFile {
    file: File,
    good_len: u64,
    /// Where the zeros written ahead end (`good_len` when there are none).
    room_end: u64,
    /// After a failure to make room (a full disk), when to try again.
    room_retry: Option<Instant>,
    unwritten: Vec<u8>,
    unwritten_end: u64,
    written_end: u64,
    spare: Vec<u8>,
    /// A file switch waiting until everything before it is written.
    rotate_to: Option<std::path::PathBuf>,
    last_sync: Instant,
}

impl LogFile {
    pub fn new(file: File, stream_offset: u64, state: &LogState) -> LogFile {
        let good_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        state.size.store(good_len, Relaxed);
        state.advance(stream_offset);
        // What start-up read back is on disk.
        state.record_sync(state.history.load(SeqCst), stream_offset);
        LogFile {
            file,
            good_len,
            room_end: good_len,
            room_retry: None,
            unwritten: Vec::new(),
            unwritten_end: 0,
            written_end: stream_offset,
            spare: Vec::new(),
            rotate_to: None,
            last_sync: Instant::now(),
        }
    }

    /// Writes `ROOM` zeros past the records and syncs them, so that
    /// records written there change neither the file's size nor its block
    /// map. A failure (a full disk) takes the zeros back and is only
    /// retried a second later: records are appended meanwhile, as without
    /// room.
    fn make_room(&mut self) {
        if self.room_retry.is_some_and(|t| t > Instant::now()) {
            return;
        }
        let start = self.room_end;
        let made = (|| {
            let mut at = start;
            while at < start + ROOM {
                self.file.write_all_at(&ZEROS, at)?;
                at += ZEROS.len() as u64;
            }
            self.file.sync_data()
        })();
        match made {
            Ok(()) => {
                self.room_end = start + ROOM;
                self.room_retry = None;
            }
            Err(e) => {
                let _ = self.file.set_len(start);
                self.room_retry = Some(Instant::now() + Duration::from_secs(1));
                tracing::debug!("Could not write room ahead in the append only file: {e}");
            }
        }
    }

    /// Cuts the room off: the file ends at its last record.
    fn trim(&mut self) -> std::io::Result<()> {
        if self.room_end > self.good_len {
            self.file.set_len(self.good_len)?;
            self.room_end = self.good_len;
        }
        Ok(())
    }

    fn idle(&self) -> bool {
        self.unwritten.is_empty() && self.rotate_to.is_none()
    }

    /// How long the writer may sleep once records stop coming: until a
    /// sync falls due (everysec, with bytes written since the last one),
    /// not at all while it has something to finish, and for good (`None`)
    /// when all it wrote is synced.
    fn quiet_limit(&self, state: &LogState) -> Option<Duration> {
        if !self.idle() {
            return Some(Duration::ZERO);
        }
        if state.durable.load(Relaxed) >= self.written_end {
            return None;
        }
        match state.policy() {
            FsyncPolicy::Everysec => {
                Some(Duration::from_secs(1).saturating_sub(self.last_sync.elapsed()))
            }
            FsyncPolicy::Always => Some(Duration::ZERO),
            FsyncPolicy::No => None,
        }
    }

    /// Takes what is pending, writes it, syncs when the policy (or
    /// `force_sync`) asks, and performs a due file switch. Returns false
    /// after a failure (recorded in `state`); nothing is lost, the next
    /// round retries.
    fn round(&mut self, effects: &EffectStream, state: &LogState, force_sync: bool) -> bool {
        let policy = state.policy();
        // Read first: bytes taken after a change of history may belong to
        // the new one, never the other way round.
        let history = state.history.load(SeqCst);
        let taken = effects.take_log(std::mem::take(&mut self.spare), Duration::ZERO);
        if taken.rotate_to.is_some() {
            self.rotate_to = taken.rotate_to;
        }
        if self.unwritten.is_empty() {
            self.spare = std::mem::replace(&mut self.unwritten, taken.bytes);
        } else {
            self.unwritten.extend_from_slice(&taken.bytes);
            self.spare = taken.bytes;
        }
        // Batches come in stream order: the last one's end is where the
        // stream is (offsets can jump when a replica adopts its primary's).
        self.unwritten_end = taken.end;
        if !self.unwritten.is_empty() {
            let started = Instant::now();
            let written = self.file.write_all_at(&self.unwritten, self.good_len);
            state
                .latency
                .observe("aof-write", started.elapsed().as_millis() as u64);
            if let Err(e) = written {
                state.fail("writing", &e);
                // Never leave half a record behind: cut back to the last
                // whole one; the next round writes it all again.
                let _ = self.file.set_len(self.good_len);
                self.room_end = self.good_len;
                return false;
            }
            self.good_len += self.unwritten.len() as u64;
            self.room_end = self.room_end.max(self.good_len);
            state.size.store(self.good_len, Relaxed);
            self.written_end = self.unwritten_end;
            self.unwritten.clear();
            if policy != FsyncPolicy::Always {
                state.recover();
            } else if self.room_end - self.good_len < ROOM_LOW
                && self.room_retry.is_none_or(|t| t <= Instant::now())
                && !state.wants_room.swap(true, Relaxed)
            {
                effects.wake_log_writer();
            }
        }
        let behind = state.durable.load(Relaxed) < self.written_end;
        let sync_due = match policy {
            FsyncPolicy::Always => behind,
            FsyncPolicy::Everysec => behind && self.last_sync.elapsed() >= Duration::from_secs(1),
            FsyncPolicy::No => false,
        };
        if sync_due || (force_sync && behind) {
            let started = Instant::now();
            let synced = self.file.sync_data();
            if policy == FsyncPolicy::Always {
                let ms = started.elapsed().as_millis() as u64;
                state.latency.observe("aof-fsync-always", ms);
            }
            if let Err(e) = synced {
                state.fail("syncing", &e);
                return false;
            }
            self.last_sync = Instant::now();
            state.recover();
            state.advance(self.written_end);
            state.record_sync(history, self.written_end);
        } else if policy == FsyncPolicy::No {
            state.advance(self.written_end);
        }
        if self.unwritten.is_empty() {
            if let Some(next) = self.rotate_to.take() {
                // Everything before the switch is written: seal the old file
                // and carry on in the new one.
                let switched = self
                    .trim()
                    .and_then(|_| self.file.sync_data())
                    .and_then(|_| {
                        std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(&next)
                    });
                match switched {
                    Ok(f) => {
                        self.file = f;
                        self.good_len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                        self.room_end = self.good_len;
                        state.size.store(self.good_len, Relaxed);
                        state.advance(self.written_end);
                        // The old file was synced before the switch.
                        state.record_sync(history, self.written_end);
                        state.rotations.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        state.fail("switching", &e);
                        self.rotate_to = Some(next);
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// The connections of one I/O thread waiting for their writes to be
/// durable (appendfsync always).
///
/// A task woken from another thread costs that thread a write to its
/// runtime's eventfd, and the woken thread a trip out of `epoll_wait`. So a
/// sync wakes one task per I/O thread, [`relay_synced`], which wakes the
/// thread's connections on `local` for nothing; and only threads with a
/// connection waiting: with every client on one thread, the other slept
/// through, where it had been woken by each sync.
///
/// No wake-up is missed: a connection counts itself in `waiting`, then
/// checks `durable`; `advance` stores `durable`, then reads `waiting`. Both
/// sequentially consistent, at least one of them sees the other's write.
pub struct ThreadWaiters {
    waiting: std::sync::atomic::AtomicUsize,
    /// The relay's: `notify_one` keeps the wake-up if the relay is busy.
    wake: tokio::sync::Notify,
    /// Where this thread's connections wait.
    pub local: tokio::sync::Notify,
    /// `sync_before_park` has had the thread read its sockets once more
    /// before its next sync.
    polled: AtomicBool,
}

/// Counts a connection as waiting for its writes to be durable for as long
/// as it lives (however the wait ends).
pub struct Waiting<'a>(&'a LogState, &'a ThreadWaiters);

impl<'a> Waiting<'a> {
    pub fn start(state: &'a LogState, thread: &'a ThreadWaiters) -> Waiting<'a> {
        state.waiting.fetch_add(1, Relaxed);
        thread.waiting.fetch_add(1, SeqCst);
        Waiting(state, thread)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.1.waiting.fetch_sub(1, Relaxed);
        self.0.waiting.fetch_sub(1, Relaxed);
    }
}

/// Passes the wake-ups of a thread's [`ThreadWaiters`] on to its waiting
/// connections, on their own thread.
pub async fn relay_synced(thread: &ThreadWaiters) {
    loop {
        thread.wake.notified().await;
        thread.local.notify_waiters();
    }
}

/// An I/O thread starts running tasks (started, or woken from its park).
pub fn io_thread_running(state: &LogState) {
    state.io_running.fetch_add(1, Relaxed);
}

/// An I/O thread has stopped for good (it was running: `block_on` returned).
pub fn io_thread_exits(state: &LogState) {
    state.io_running.fetch_sub(1, Relaxed);
}

/// `appendfsync always`, on an I/O thread about to sleep: every connection
/// on it has run, so the writes they wait for are all pending; writing and
/// syncing them here, as Redis does before its event loop sleeps, answers
/// them without a round trip through the writer thread.
///
/// Only the last I/O thread to go idle syncs: the others' connections are
/// waiting too, and one sync then covers every request the clients had
/// sent, as Redis's one sync per event loop turn does. With each thread
/// syncing as it went idle, a sync covered 12 writes where Redis's covers
/// 29 (measured, 50 clients): more device flushes and inode writes.
///
/// The thread reads its sockets once more before it syncs. Tokio calls
/// this hook before it polls them, so the requests that clients sent as
/// the last sync's replies reached them are still unread here; syncing
/// without them splits the clients into two groups that take turns (50
/// clients: 25 writes a sync, against Redis's 30, whose sync comes after
/// its event loop has read everything that arrived). Returns true when the
/// thread is to do that read (polling, not sleeping) and come back here.
pub fn sync_before_park(effects: &EffectStream, state: &LogState, thread: &ThreadWaiters) -> bool {
    let others_running = state.io_running.fetch_sub(1, Relaxed) > 1;
    let none_waiting = state.waiting.load(Relaxed) == 0;
    if none_waiting {
        // Whoever synced the last group, the next one gets its extra read.
        thread.polled.store(false, Relaxed);
    }
    if others_running
        || !state.enabled()
        || none_waiting
        || state.policy() != FsyncPolicy::Always
        || state.stop.load(Relaxed)
        // A failing disk is retried by the writer, once a second.
        || state.failing.load(Relaxed)
    {
        return false;
    }
    if !thread.polled.swap(true, Relaxed) {
        return true;
    }
    // Another thread syncing takes what is pending now, ours included, and
    // wakes every waiter; one whose write came later wakes, finds it not yet
    // durable, and this thread comes here again. A thread that stays busy
    // leaves the others' writes to the writer thread after a millisecond.
    let Some(mut g) = state.file.try_lock() else {
        return false;
    };
    thread.polled.store(false, Relaxed);
    if let Some(f) = g.as_mut() {
        // A failure is recorded in `state`, and the writer thread retries
        // it. It must be told: it may have gone to sleep for good (nothing
        // was pending when it last looked), and no new record comes to wake
        // it while writes are refused; the failed write's client waited
        // forever (seen in CI; 3 runs in 36 of the full-disk test here).
        if !f.round(effects, state, false) {
            effects.wake_log_writer();
        }
    }
    false
}

/// Whether the oldest pending record has waited `limit`; waits out the
/// rest of `limit` first if it is younger.
fn behind_by(effects: &EffectStream, limit: Duration) -> bool {
    match effects.pending_age() {
        None => false,
        Some(age) if age >= limit => true,
        Some(age) => {
            std::thread::sleep(limit - age);
            effects.pending_age().is_some_and(|a| a >= limit)
        }
    }
}

/// Runs the writer until [`LogState::request_stop`]; returns after a final
/// write and sync.
pub fn run_writer(effects: &EffectStream, state: Arc<LogState>) {
    let quiet_until = |f: &LogFile| f.quiet_limit(&state).map(|d| Instant::now() + d);
    // Until when this thread may sleep once records stop coming, as its
    // last round left the file. Kept here rather than read under the
    // file's lock before each wait, which an I/O thread holds while it
    // syncs: the writer then blocked, and cost the syncing thread a wake-up
    // of it. Only this thread writes the file but for the I/O threads'
    // rounds under appendfsync always, which leave nothing unsynced unless
    // they fail (`failing`).
    let mut quiet = match state.file.lock().as_ref() {
        Some(f) => quiet_until(f),
        // No file: the first round finds it so and ends the thread.
        None => Some(Instant::now()),
    };
    loop {
        let stopping = state.stop.load(Relaxed);
        let policy = state.policy();
        if !stopping {
            let quiet_limit = if state.failing.load(Relaxed) {
                Some(Duration::ZERO)
            } else {
                quiet.map(|t| t.saturating_duration_since(Instant::now()))
            };
            // Wait without holding the file: a connection may sync meanwhile.
            let round = Duration::from_millis(if policy == FsyncPolicy::Always { 1 } else { 10 });
            effects.wait_for_log(round, quiet_limit);
            // With appendfsync always the I/O threads sync as they go idle
            // (`sync_before_park`): a fresh group is theirs. This thread
            // takes over what has waited a millisecond (a thread too busy
            // to go idle, a write from outside a connection), and retries
            // after a failure, which the I/O threads leave to it: what
            // failed is held in the file's buffer, no longer pending. It
            // also finishes what its own last round left (bytes written
            // under everysec before a switch to always) once that is due.
            let due = quiet.is_some_and(|t| t <= Instant::now());
            if policy == FsyncPolicy::Always
                && !state.failing.load(Relaxed)
                && !due
                && !state.wants_room.load(Relaxed)
                && !behind_by(effects, Duration::from_millis(1))
            {
                continue;
            }
        }
        let (ok, idle) = {
            let mut g = state.file.lock();
            let Some(f) = g.as_mut() else { break };
            // The policy read afresh: the one read before the wait may be
            // older than the record that asked for room.
            if !stopping
                && state.policy() == FsyncPolicy::Always
                && state.wants_room.swap(false, Relaxed)
            {
                f.make_room();
            }
            let ok = f.round(effects, &state, stopping && policy != FsyncPolicy::No);
            quiet = quiet_until(f);
            (ok, f.idle())
        };
        if !ok {
            if stopping {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        if stopping && idle {
            break;
        }
    }
    if let Some(f) = state.file.lock().as_mut() {
        // A log at rest ends at its last record. Should this fail, the
        // loader reads the zeros as room all the same.
        if let Err(e) = f.trim().and_then(|_| f.file.sync_data()) {
            tracing::debug!("Could not cut the room off the append only file: {e}");
        }
    }
    state.stopped.store(true, SeqCst);
    state.wake_all();
}
