//! Log compaction (BGREWRITEAOF and the automatic rewrite).
//!
//! ```text
//!  1. new incremental file N+1 listed in the manifest (old files stay)
//!  2. instant S, all slots locked: the snapshot starts and the log writer
//!     is told to switch to file N+1 at S
//!  3. every slot is captured as it was at S (by the first client to touch
//!     it, or by the pass over all slots) into base.tmp, while clients go on
//!  4. base.tmp synced and renamed; manifest = { base, incr N+1 } (atomic)
//!  5. the files the manifest no longer names are removed
//! ```
//!
//! A crash at any point leaves a manifest naming a loadable set: before 4
//! it names the old files plus file N+1, which holds exactly what came after
//! S, on top of the old files' state at S; from 4 on, the new base plus
//! N+1. Memory stays flat: only captured bytes waiting for the disk exist
//! twice, never the dataset.

use std::fs::{self, File};
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::aof::{self, Manifest};
use crate::effects::encode_command;
use crate::keyspace::member::Member;
use crate::keyspace::stream::{Stream, StreamId};
use crate::keyspace::{Hash, Node, Set, SlotTable, SnapshotObserver, Value};
use crate::protocol::reply::format_double;
use crate::server::Server;

/// Turns captured slots into base records: per key, the commands that
/// rebuild it (`SET`, or `RPUSH`/`SADD`/`HSET`/`ZADD` of at most
/// [`ITEMS_PER_RECORD`] elements each, or a stream's XADDs, XSETID, XGROUP
/// and XCLAIMs), then `PEXPIREAT` if it expires, with
/// `SELECT` when the database changes.
#[derive(Default)]
struct BaseCapture {
    out: Mutex<(Vec<u8>, Option<usize>)>,
}

/// Elements per rebuilding command, as Redis's AOF rewrite batches them:
/// a big collection becomes several bounded records, not one huge one.
const ITEMS_PER_RECORD: usize = 64;

/// Hands `members` to `batches` a record's worth at a time: members kept
/// as integers (an intset's, a list's) are formatted as they come, so
/// they are held only that long.
fn in_records<'m>(
    batches: &mut impl FnMut(&[u8], &mut dyn Iterator<Item = Vec<&[u8]>>),
    cmd: &[u8],
    members: &mut dyn Iterator<Item = Member<'m>>,
) {
    loop {
        let chunk: Vec<Member> = members.take(ITEMS_PER_RECORD).collect();
        if chunk.is_empty() {
            break;
        }
        batches(cmd, &mut chunk.iter().map(|m| vec![&**m]));
    }
}

/// Encodes the commands that rebuild one key into `rec`.
fn rebuild_key(rec: &mut Vec<u8>, node: &Node) {
    let key = node.key.as_bytes();
    // Appends `cmd key items...` records, ITEMS_PER_RECORD items at a time.
    let mut batches = |cmd: &[u8], items: &mut dyn Iterator<Item = Vec<&[u8]>>| {
        let mut argv: Vec<&[u8]> = Vec::with_capacity(2 + 2 * ITEMS_PER_RECORD);
        let mut n = 0;
        for item in items {
            if n == 0 {
                argv.clear();
                argv.extend([cmd, key]);
            }
            argv.extend(item);
            n += 1;
            if n == ITEMS_PER_RECORD {
                encode_command(rec, &argv);
                n = 0;
            }
        }
        if n > 0 {
            encode_command(rec, &argv);
        }
    };
    match &node.value {
        Value::List(l) => in_records(&mut batches, b"RPUSH", &mut l.iter()),
        v @ (Value::SetInts(_) | Value::SetPacked(_) | Value::SetTable(_)) => {
            let s = Set::of(v).expect("a set value");
            in_records(&mut batches, b"SADD", &mut s.iter())
        }
        v @ (Value::HashPacked(_) | Value::HashTable(_)) => {
            let h = Hash::of(v).expect("a hash value");
            batches(b"HSET", &mut h.iter().map(|(f, v)| vec![f, v]))
        }
        Value::ZSet(z) => {
            let scores: Vec<String> = z.iter().map(|e| format_double(e.score)).collect();
            batches(
                b"ZADD",
                &mut z
                    .iter()
                    .zip(&scores)
                    .map(|(e, s)| vec![s.as_bytes(), e.member.as_bytes()]),
            )
        }
        Value::Stream(s) => rebuild_stream(rec, key, s),
        string => {
            let mut scratch = itoa::Buffer::new();
            let value = string.str_bytes(&mut scratch).unwrap_or_default();
            encode_command::<&[u8]>(rec, &[b"SET", key, value]);
        }
    }
    if node.expire_at != 0 {
        let mut at = itoa::Buffer::new();
        encode_command::<&[u8]>(
            rec,
            &[b"PEXPIREAT", key, at.format(node.expire_at).as_bytes()],
        );
    }
}

/// The commands that rebuild a stream, as Redis rewrites one: its entries
/// (an empty stream by adding one entry and trimming it away), its IDs
/// and counters, then each group with its consumers and pending entries.
fn rebuild_stream(rec: &mut Vec<u8>, key: &[u8], s: &Stream) {
    let put = |rec: &mut Vec<u8>, argv: &[Vec<u8>]| encode_command(rec, argv);
    if s.is_empty() {
        encode_command::<&[u8]>(rec, &[b"XADD", key, b"MAXLEN", b"0", b"0-1", b"x", b"y"]);
    }
    // Entries are written from where they lie, without copies.
    for (id, e) in s.range(StreamId::MIN, StreamId::MAX, false) {
        let id = id.to_string();
        let mut argv: Vec<&[u8]> = Vec::with_capacity(3 + e.len());
        argv.extend([&b"XADD"[..], key, id.as_bytes()]);
        argv.extend(e.items());
        encode_command(rec, &argv);
    }
    let text = |s: &str| s.as_bytes().to_vec();
    put(
        rec,
        &[
            text("XSETID"),
            key.to_vec(),
            text(&s.last_id.to_string()),
            text("ENTRIESADDED"),
            text(&s.entries_added.to_string()),
            text("MAXDELETEDID"),
            text(&s.max_deleted.to_string()),
        ],
    );
    for (name, g) in &s.groups {
        let read = g.entries_read.map_or(-1, |n| n as i64);
        put(
            rec,
            &[
                text("XGROUP"),
                text("CREATE"),
                key.to_vec(),
                name.to_vec(),
                text(&g.last_id.to_string()),
                text("ENTRIESREAD"),
                text(&read.to_string()),
            ],
        );
        for (consumer, c) in &g.consumers {
            if c.pel.is_empty() {
                put(
                    rec,
                    &[
                        text("XGROUP"),
                        text("CREATECONSUMER"),
                        key.to_vec(),
                        name.to_vec(),
                        consumer.to_vec(),
                    ],
                );
            }
            for id in &c.pel {
                let p = &g.pel[id];
                put(
                    rec,
                    &[
                        text("XCLAIM"),
                        key.to_vec(),
                        name.to_vec(),
                        consumer.to_vec(),
                        text("0"),
                        text(&id.to_string()),
                        text("TIME"),
                        text(&p.delivery_time.to_string()),
                        text("RETRYCOUNT"),
                        text(&p.delivery_count.to_string()),
                        text("JUSTID"),
                        text("FORCE"),
                    ],
                );
            }
        }
    }
}

impl SnapshotObserver for BaseCapture {
    fn capture(&self, db: usize, table: &SlotTable) {
        if table.is_empty() {
            return;
        }
        let mut g = self.out.lock();
        let (buf, last_db) = &mut *g;
        let mut rec = Vec::with_capacity(128);
        for node in table.iter() {
            rec.clear();
            if *last_db != Some(db) {
                let mut b = itoa::Buffer::new();
                encode_command::<&[u8]>(&mut rec, &[b"SELECT", b.format(db).as_bytes()]);
                *last_db = Some(db);
            }
            // One record per key: a torn tail never leaves half a key.
            rebuild_key(&mut rec, node);
            aof::frame(buf, &rec);
        }
    }
}

impl BaseCapture {
    fn drain_into(&self, sink: &mut impl Write) -> std::io::Result<()> {
        let bytes = std::mem::take(&mut self.out.lock().0);
        if bytes.is_empty() {
            return Ok(());
        }
        sink.write_all(&bytes)
    }
}

/// Writes a point-in-time snapshot of the whole keyspace and the function
/// libraries, as framed records, to `sink`; `at_instant` runs at the
/// instant the snapshot represents, with every slot locked. The caller holds
/// `LogState::snapshot_busy` (the keyspace captures for one observer).
pub fn stream_snapshot(
    server: &Server,
    sink: &mut impl Write,
    at_instant: impl FnOnce(),
) -> std::io::Result<()> {
    let capture = Arc::new(BaseCapture::default());
    {
        // The instant S falls between commands, never inside one: not
        // inside a transaction (EXEC holds the gate exclusively), nor
        // between a replica applying its primary's command and recording it.
        // A snapshot taken under the gate held exclusively (DEBUG RELOAD's,
        // which holds the applier's lock too) is between commands already.
        let held = server.gate.held_here();
        let _applying = (!held).then(|| server.replication.apply.write());
        let _gate = server.gate.shared();
        // The function libraries come first. Changing them takes the gate
        // exclusively: they are as of the instant S too.
        {
            let mut g = capture.out.lock();
            for rec in crate::command::functions::snapshot_records() {
                aof::frame(&mut g.0, &rec);
            }
        }
        server.keyspace.start_snapshot(capture.clone(), at_instant);
    }
    let mut failed = None;
    // The pass goes on after a failure (it must end the snapshot), but
    // writes nothing more.
    server.keyspace.complete_snapshot(|| {
        if failed.is_none() {
            if let Err(e) = capture.drain_into(sink) {
                failed = Some(e);
            }
        } else {
            capture.out.lock().0.clear();
        }
    });
    match failed {
        Some(e) => Err(e),
        None => capture.drain_into(sink),
    }
}

/// [`stream_snapshot`] into the file `tmp`, synced. Returns the file's
/// size. On error the file is removed.
pub fn write_snapshot(
    server: &Server,
    tmp: &std::path::Path,
    at_instant: impl FnOnce(),
) -> std::io::Result<u64> {
    let mut file = File::create(tmp)?;
    let result = stream_snapshot(server, &mut file, at_instant)
        .and_then(|_| file.sync_all())
        .and_then(|_| file.metadata())
        .map(|m| m.len());
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("Background append only file rewriting already in progress")]
    InProgress,
    #[error("Background save in progress: the rewrite can start once it is done")]
    SaveInProgress,
}

/// Starts a rewrite on its own thread. With the log off, as Redis's
/// BGREWRITEAOF does, it still writes a base of the data and a manifest
/// naming it (with an empty incremental file), which DEBUG LOADAOF or a
/// restart with appendonly yes reads back.
pub fn start(server: &Arc<Server>) -> Result<(), RewriteError> {
    let log = &server.log;
    if log.rewrite_in_progress() {
        return Err(RewriteError::InProgress);
    }
    let with_log = log.enabled();
    if with_log && log.files.lock().is_none() {
        // On, and its first base not written yet (CONFIG SET appendonly).
        return Err(RewriteError::InProgress);
    }
    // One snapshot at a time: the keyspace captures for one observer.
    if log.snapshot_busy.swap(true, Relaxed) {
        return Err(RewriteError::SaveInProgress);
    }
    log.rewriting.store(true, Relaxed);
    log.rewrite_started_ms
        .store(crate::server::now_ms(), Relaxed);
    let server = server.clone();
    std::thread::Builder::new()
        .name("shoal-rewrite".into())
        .spawn(move || {
            let started = Instant::now();
            let done = if with_log {
                rewrite(&server)
            } else {
                write_base_alone(&server)
            };
            let ok = match done {
                Ok(size) => {
                    tracing::info!("Background AOF rewrite finished successfully: base of {size} bytes in {:.3} seconds", started.elapsed().as_secs_f64());
                    true
                }
                Err(e) => {
                    tracing::warn!("Background AOF rewrite failed: {e}");
                    false
                }
            };
            server.log.last_rewrite_ok.store(ok, Relaxed);
            server.log.rewrites.fetch_add(1, Relaxed);
            server
                .log
                .last_rewrite_secs
                .store(started.elapsed().as_secs() as i64, Relaxed);
            server.log.rewrite_started_ms.store(0, Relaxed);
            if ok {
                server.log.rewrite_failures.store(0, Relaxed);
            } else {
                server.log.rewrite_failures.fetch_add(1, Relaxed);
            }
            server.log.rewriting.store(false, Relaxed);
            server.log.snapshot_busy.store(false, Relaxed);
        })
        .expect("spawn rewrite thread");
    Ok(())
}

fn rewrite(server: &Server) -> std::io::Result<u64> {
    let log = &server.log;
    let (dir, old) = {
        let files = log.files.lock();
        let (dir, m) = files.as_ref().expect("checked by start");
        (dir.clone(), m.clone())
    };
    let seq = old.next_seq();
    let incr_name = dir.incr_name(seq);
    let base_name = dir.base_name(seq + 1);
    File::create(dir.file(&incr_name))?.sync_all()?;
    let mut during = old.clone();
    during.incr.push((incr_name.clone(), seq));
    dir.write_manifest(&during)?;
    *log.files.lock() = Some((dir.clone(), during.clone()));

    let rotations_before = log.rotations.load(Relaxed);
    let next = dir.file(&incr_name);
    let tmp = dir.file(&format!("{base_name}.tmp"));
    let size = write_snapshot(server, &tmp, || server.effects.rotate_log(next))?;
    fs::rename(&tmp, dir.file(&base_name))?;
    let after = Manifest {
        base: Some((base_name, seq + 1)),
        incr: vec![(incr_name, seq)],
    };
    dir.write_manifest(&after)?;
    // The old files may go once the writer has left them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.rotations.load(Relaxed) == rotations_before
        && Instant::now() < deadline
        && !log.stopped.load(Relaxed)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    dir.remove_unlisted(&after);
    log.base_size.store(size, Relaxed);
    log.size_after_rewrite
        .store(size + log.size.load(Relaxed), Relaxed);
    *log.files.lock() = Some((dir, after));
    Ok(size)
}

/// BGREWRITEAOF with the log off: a base of the data and an empty
/// incremental file (where a restart with the log on goes on), numbered
/// past what an earlier log left, and a manifest naming them; older files
/// go.
fn write_base_alone(server: &Server) -> std::io::Result<u64> {
    let dir = super::aof::AofDir::configured(server);
    fs::create_dir_all(&dir.path)?;
    let seq = dir.existing_manifest().map_or(1, |m| m.next_seq());
    File::create(dir.file(&dir.incr_name(seq)))?.sync_all()?;
    let size = write_snapshot(server, &tmp_base(&dir, seq), || {})?;
    install_base(&dir, seq, size, &server.log)?;
    Ok(size)
}

/// Where base `seq + 1`, following incremental file `seq`, is written
/// before [`install_base`] renames it into place.
pub(super) fn tmp_base(dir: &aof::AofDir, seq: u64) -> std::path::PathBuf {
    dir.file(&format!("{}.tmp", dir.base_name(seq + 1)))
}

/// Base `seq + 1`, written to [`tmp_base`], after incremental file `seq`
/// (a log starting afresh from it): renamed into place and listed by a
/// new manifest, older files removed.
pub(super) fn install_base(
    dir: &aof::AofDir,
    seq: u64,
    size: u64,
    log: &super::log::LogState,
) -> std::io::Result<Manifest> {
    let base_name = dir.base_name(seq + 1);
    fs::rename(tmp_base(dir, seq), dir.file(&base_name))?;
    let manifest = Manifest {
        base: Some((base_name, seq + 1)),
        incr: vec![(dir.incr_name(seq), seq)],
    };
    dir.write_manifest(&manifest)?;
    dir.remove_unlisted(&manifest);
    log.base_size.store(size, Relaxed);
    Ok(manifest)
}

/// The cron's check: rewrite when the log has grown by
/// `auto-aof-rewrite-percentage` since the last rewrite (or start-up) and is
/// larger than `auto-aof-rewrite-min-size`.
pub fn maybe_auto(server: &Arc<Server>, percentage: i64, min_size: i64) {
    let log = &server.log;
    if !log.enabled()
        || percentage <= 0
        || log.rewrite_in_progress()
        || server.loading.load(Relaxed)
    {
        return;
    }
    let total = log.base_size.load(Relaxed) + log.size.load(Relaxed);
    let since = log.size_after_rewrite.load(Relaxed).max(1);
    if total as i64 > min_size && (total * 100 / since) as i64 - 100 >= percentage {
        tracing::info!(
            "Starting automatic rewriting of AOF on {}% growth",
            (total * 100 / since) - 100
        );
        let _ = start(server);
    }
}
