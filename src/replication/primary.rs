//! The primary's side: one replica's connection after its PSYNC.
//!
//! ```text
//!  PSYNC id off ──▶ continue? ── yes ─▶ +CONTINUE id, the missing bytes ─┐
//!                      │ no                                               │
//!                      ▼                                                  │
//!        wait for the full-sync turn (one at a time, after any            │
//!        rewrite or BGSAVE); snapshot thread: at instant S the tap        │
//!        starts collecting, +FULLRESYNC id S, $EOF:mark, records, mark    │
//!        (SYNC: the records to a file first, then $length and them)       │
//!                      │                                                  │
//!                      ▼                                                  ▼
//!         feed: tap ──▶ socket, and REPLCONF ACK offsets back ◀───────────┘
//! ```
//!
//! The snapshot is written by a thread of its own (taking a snapshot locks
//! slots, which must not happen on an I/O thread) into a bounded channel,
//! so a slow replica slows only its own snapshot and memory stays flat.
//! Whatever the stream appends meanwhile collects in the replica's tap,
//! bounded by `client-output-buffer-limit replica`.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::ReplicaEntry;
use crate::effects::{Close, Identity, Tap};
use crate::protocol::{parse_request, RequestLimits};
use crate::server::client::Client;
use crate::server::pubsub::{buffer_limit, BufferLimit, DEFAULT_REPLICA_LIMIT};
use crate::server::{now_ms, Server};

/// What a replica asked for: history `replid` from byte `offset` (PSYNC's
/// second argument, one past what it holds); `None` for SYNC or `?`.
#[derive(Debug)]
pub struct Psync {
    pub from: Option<(String, u64)>,
    /// Asked with SYNC, the command older than PSYNC: its full sync has no
    /// `+FULLRESYNC` line and comes as a bulk of known length, as Redis
    /// serves replicas that cannot read an EOF-marked stream (and tools,
    /// Redis's test suite among them, that read the stream after it).
    pub legacy: bool,
}

/// Serves one replica until its link ends.
pub async fn serve(
    server: Arc<Server>,
    client: &mut Client,
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mut rbuf: BytesMut,
    req: Psync,
) {
    let limit = buffer_limit(
        server.config.read().get("client-output-buffer-limit"),
        "replica",
    )
    .ok()
    .flatten()
    .unwrap_or(DEFAULT_REPLICA_LIMIT);
    let tap = Tap::new(limit.hard as usize);
    let entry = Arc::new(ReplicaEntry {
        ip: client.handle.addr.ip().to_string(),
        port: client.replica_port,
        sidecar: client.replica_sidecar,
        state: super::WAIT_SYNC.into(),
        ack_offset: Default::default(),
        fack_offset: Default::default(),
        ack_ms: now_ms().into(),
        acks: !req.legacy,
    });
    client.handle.set_kind(crate::server::client::KIND_REPLICA);
    server.replication.add_replica(entry.clone());
    let fed = async {
        let continued = match &req.from {
            Some((id, off)) => {
                match server
                    .effects
                    .attach_continuing(id, off.saturating_sub(1), tap.clone())
                {
                    Ok((replid, missing)) => Some((replid, missing)),
                    Err(why) => {
                        tracing::info!(
                            "Partial resynchronization not accepted for replica {}: {why:?}",
                            entry.ip
                        );
                        server.replication.sync_partial_err.fetch_add(1, Relaxed);
                        None
                    }
                }
            }
            None => None,
        };
        match continued {
            Some((replid, missing)) => {
                let mut head = format!("+CONTINUE {replid}\r\n").into_bytes();
                head.extend_from_slice(&missing);
                wr.write_all(&head).await?;
                server.replication.sync_partial_ok.fetch_add(1, Relaxed);
                tracing::info!(
                    "Partial resynchronization request from {} accepted, sending {} bytes of backlog",
                    entry.ip,
                    missing.len()
                );
            }
            None => full_sync(&server, &mut wr, &tap, &entry, req.legacy).await?,
        }
        entry.state.store(super::ONLINE, Relaxed);
        // Its silence is counted from now, not from before a long sync.
        entry.ack_ms.store(now_ms(), Relaxed);
        let handle = client.handle.clone();
        feed(
            &server, &handle, &mut rd, &mut wr, &mut rbuf, &tap, &entry, limit,
        )
        .await
    };
    if let Err(e) = fed.await {
        tracing::info!(
            "Connection with replica {}:{} lost: {e}",
            entry.ip,
            entry.port
        );
    }
    server.effects.detach(&tap);
    server.replication.remove_replica(&entry);
    let _ = wr.shutdown().await;
}

/// Sends a snapshot taken at instant S, attaching the tap at S.
async fn full_sync(
    server: &Arc<Server>,
    wr: &mut OwnedWriteHalf,
    tap: &Arc<Tap>,
    entry: &ReplicaEntry,
    legacy: bool,
) -> std::io::Result<()> {
    // While it waits its turn, the replica hears a newline a second, as
    // Redis's replicas do: its handshake gives up on a primary silent for
    // repl-timeout.
    let mut alive = tokio::time::interval(Duration::from_secs(1));
    alive.tick().await;
    let _turn = loop {
        tokio::select! {
            turn = server.replication.full_sync.acquire() => {
                break turn.map_err(std::io::Error::other)?;
            }
            _ = alive.tick() => wr.write_all(b"\n").await?,
        }
    };
    // The keyspace captures one snapshot at a time; a rewrite or BGSAVE in
    // progress goes first.
    while server.log.snapshot_busy.swap(true, Relaxed) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = alive.tick() => wr.write_all(b"\n").await?,
        }
    }
    entry.state.store(super::SENDING_SNAPSHOT, Relaxed);
    let started = Instant::now();
    let sent = if legacy {
        send_from_file(server, wr, tap, entry, &mut alive).await?
    } else {
        send_streaming(server, wr, tap, entry).await?
    };
    server.replication.sync_full.fetch_add(1, Relaxed);
    tracing::info!(
        "Synchronization with replica {}:{} succeeded: {sent} bytes in {:.3} seconds",
        entry.ip,
        entry.port,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The snapshot's last record: where the stream stands at S, database
/// included (the replica's first stream bytes may rely on it).
fn stream_state(at: Identity, db: Option<usize>) -> Vec<u8> {
    let mut tail = Vec::new();
    let state = crate::effects::StreamState {
        id: at,
        db,
        past: None,
    };
    crate::persistence::aof::frame(&mut tail, &state.record());
    tail
}

fn log_start(entry: &ReplicaEntry, at: &Identity, how: &str) {
    tracing::info!(
        "Starting full sync with replica {}:{} ({how}): snapshot at offset {}",
        entry.ip,
        entry.port,
        at.offset
    );
}

/// PSYNC's full sync: `+FULLRESYNC id S`, then the snapshot streamed as
/// it is taken between two EOF marks (its length is not known up front).
async fn send_streaming(
    server: &Arc<Server>,
    wr: &mut OwnedWriteHalf,
    tap: &Arc<Tap>,
    entry: &ReplicaEntry,
) -> std::io::Result<u64> {
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let (at_tx, at_rx) = tokio::sync::oneshot::channel::<(Identity, Option<usize>)>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
    let (s, t) = (server.clone(), tap.clone());
    std::thread::Builder::new()
        .name("shoal-fullsync".into())
        .spawn(move || {
            let mut sink = ChunkSink {
                buf: Vec::with_capacity(CHUNK),
                tx: chunks_tx,
            };
            let mut at_tx = Some(at_tx);
            let r = crate::persistence::rewrite::stream_snapshot(&s, &mut sink, || {
                let at = s.effects.attach_at_now(t);
                if let Some(tx) = at_tx.take() {
                    let _ = tx.send(at);
                }
            })
            .and_then(|_| sink.flush());
            s.log.snapshot_busy.store(false, Relaxed);
            drop(sink);
            let _ = done_tx.send(r);
        })
        .map_err(std::io::Error::other)?;
    let (at, db) = at_rx.await.map_err(std::io::Error::other)?;
    let mark = crate::effects::random_replid();
    log_start(entry, &at, "streamed");
    wr.write_all(format!("+FULLRESYNC {} {}\r\n$EOF:{mark}\r\n", at.replid, at.offset).as_bytes())
        .await?;
    let mut sent = 0u64;
    while let Some(chunk) = chunks.recv().await {
        sent += chunk.len() as u64;
        wr.write_all(&chunk).await?;
    }
    done_rx.await.map_err(std::io::Error::other)??;
    let mut tail = stream_state(at, db);
    tail.extend_from_slice(mark.as_bytes());
    wr.write_all(&tail).await?;
    Ok(sent)
}

/// SYNC's full sync: the snapshot is written to a file in `dir` first,
/// since the bulk's length comes before it (Redis writes an RDB to disk
/// for such replicas too), then sent as `$<length>` and the bytes, with no
/// line before it. The replica hears a newline a second meanwhile.
async fn send_from_file(
    server: &Arc<Server>,
    wr: &mut OwnedWriteHalf,
    tap: &Arc<Tap>,
    entry: &ReplicaEntry,
    alive: &mut tokio::time::Interval,
) -> std::io::Result<u64> {
    /// The file goes however the sync ends.
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let dir = std::path::PathBuf::from(server.config.read().get("dir"));
    let name = format!(
        "{SYNC_FILE_PREFIX}{}-{}.shoal",
        std::process::id(),
        &crate::effects::random_replid()[..8]
    );
    let file = Removed(dir.join(name));
    let (at_tx, at_rx) = tokio::sync::oneshot::channel::<(Identity, Option<usize>)>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<std::io::Result<u64>>();
    let (s, t, path) = (server.clone(), tap.clone(), file.0.clone());
    std::thread::Builder::new()
        .name("shoal-fullsync".into())
        .spawn(move || {
            let mut at_tx = Some(at_tx);
            let r = crate::persistence::rewrite::write_snapshot(&s, &path, || {
                let at = s.effects.attach_at_now(t);
                if let Some(tx) = at_tx.take() {
                    let _ = tx.send(at);
                }
            });
            s.log.snapshot_busy.store(false, Relaxed);
            let _ = done_tx.send(r);
        })
        .map_err(std::io::Error::other)?;
    let size = loop {
        tokio::select! {
            r = &mut done_rx => break r.map_err(std::io::Error::other)??,
            _ = alive.tick() => wr.write_all(b"\n").await?,
        }
    };
    let (at, db) = at_rx.await.map_err(std::io::Error::other)?;
    log_start(entry, &at, "from a file");
    let tail = stream_state(at, db);
    let total = size + tail.len() as u64;
    wr.write_all(format!("${total}\r\n").as_bytes()).await?;
    let mut f = tokio::fs::File::open(&file.0).await?;
    let copied = tokio::io::copy(&mut f, wr).await?;
    if copied != size {
        return Err(std::io::Error::other(
            "the sync file changed while it was sent",
        ));
    }
    wr.write_all(&tail).await?;
    Ok(total)
}

/// What SYNC's temporary files are named from (`temp-sync-<pid>-<random>.shoal`).
const SYNC_FILE_PREFIX: &str = "temp-sync-";

/// Removes the SYNC files a node killed while writing one left in `dir`
/// (at start-up: no sync is under way yet).
pub fn sweep_sync_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SYNC_FILE_PREFIX) && name.ends_with(".shoal") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::info!("Removed {name}, left by a sync that did not end"),
                Err(err) => tracing::warn!("Could not remove {name}: {err}"),
            }
        }
    }
}

const CHUNK: usize = 256 * 1024;

/// The snapshot thread's `Write`: fills chunks and hands them to the
/// connection, waiting while the channel is full (the replica is slow).
struct ChunkSink {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the replica's connection closed"))
    }
}

/// Streams the tap to the replica and takes its acknowledgements, until
/// the link breaks, the replica passes its output buffer limit, or the
/// node shuts down.
#[allow(clippy::too_many_arguments)]
async fn feed(
    server: &Server,
    handle: &crate::server::client::ClientHandle,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    rbuf: &mut BytesMut,
    tap: &Arc<Tap>,
    entry: &ReplicaEntry,
    limit: BufferLimit,
) -> std::io::Result<()> {
    let mut stop = server.shutdown.subscribe();
    let mut spare = Vec::new();
    let mut over_soft_since: Option<Instant> = None;
    // I/O threads write the tap to the socket themselves while this runs
    // (see `effects::Tap`); never once it has ended.
    struct Streaming<'t>(&'t Tap);
    impl Drop for Streaming<'_> {
        fn drop(&mut self) {
            self.0.set_socket(None);
        }
    }
    tap.set_socket(
        wr.as_ref()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::net::TcpStream::from),
    );
    let _streaming = Streaming(tap);
    // The tap wakes us only when it goes from empty to non-empty and no
    // I/O thread will write it, so after a write it is looked at again
    // before waiting.
    let mut wait = true;
    loop {
        if wait {
            tokio::select! {
                _ = tap.ready.notified() => {
                    // Let the connections on this thread that are ready
                    // run first: their writes go out in the same send.
                    tokio::task::yield_now().await;
                }
                r = rd.read_buf(rbuf) => take_acks(server, r, rbuf, entry)?,
                _ = handle.until_killed() => return Err(std::io::Error::other("killed")),
                _ = crate::server::stopped(&mut stop) => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if handle.killed.load(Relaxed) {
            return Err(std::io::Error::other("killed"));
        }
        // A replica dropped because the history moved on first gets what
        // it was owed of the old one (nothing is added after the drop), and
        // continues from its end when it reconnects.
        let closing = tap.closing();
        if closing == Some(Close::Overflow) {
            return Err(dropped(entry, Close::Overflow));
        }
        // Replicas acknowledge every second; one silent for repl-timeout
        // is gone.
        let quiet = server.tun.repl_timeout_secs.load(Relaxed) * 1000;
        if entry.acks && now_ms() - entry.ack_ms.load(Relaxed) > quiet {
            return Err(std::io::Error::other(
                "timeout: no ACK for repl-timeout seconds",
            ));
        }
        server
            .stats
            .net_repl_output_bytes
            .add(tap.direct_bytes.swap(0, Relaxed));
        let bytes = tap.take(std::mem::take(&mut spare));
        let pending = bytes.len() as u64;
        if limit.soft > 0 && pending > limit.soft {
            let since = *over_soft_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(limit.soft_seconds as u64) {
                return Err(dropped(entry, Close::Overflow));
            }
        } else {
            over_soft_since = None;
        }
        handle.output_mem.store(bytes.len(), Relaxed);
        wait = bytes.is_empty();
        if !bytes.is_empty() {
            // A replica that stopped reading blocks this write; its tap
            // passing the hard limit must still end the link.
            let write = wr.write_all(&bytes);
            tokio::pin!(write);
            loop {
                tokio::select! {
                    r = &mut write => {
                        r?;
                        tap.written();
                        break;
                    }
                    _ = tap.ready.notified() => {
                        if tap.closing() == Some(Close::Overflow) {
                            return Err(dropped(entry, Close::Overflow));
                        }
                    }
                    r = rd.read_buf(rbuf) => take_acks(server, r, rbuf, entry)?,
                    _ = handle.until_killed() => return Err(std::io::Error::other("killed")),
                    _ = crate::server::stopped(&mut stop) => return Ok(()),
                }
            }
            server.stats.net_repl_output_bytes.add(pending);
        }
        if let Some(why) = closing {
            return Err(dropped(entry, why));
        }
        spare = bytes;
    }
}

/// The error that ends a replica's feeder for `why` (the overflow said
/// in the log as Redis says it).
fn dropped(entry: &ReplicaEntry, why: Close) -> std::io::Error {
    match why {
        Close::Overflow => {
            tracing::warn!(
                "Client replica {}:{} scheduled to be closed ASAP for overcoming of output buffer limits.",
                entry.ip,
                entry.port
            );
            std::io::Error::other("output buffer limit reached")
        }
        Close::Superseded => {
            std::io::Error::other("the replication history changed; it reconnects to resync")
        }
    }
}

/// Takes `REPLCONF ACK <offset>` from what a read from the replica
/// brought (`read`: its result; 0 bytes is the replica gone).
fn take_acks(
    server: &Server,
    read: std::io::Result<usize>,
    rbuf: &mut BytesMut,
    entry: &ReplicaEntry,
) -> std::io::Result<()> {
    if read? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let limits = RequestLimits {
        max_bulk_len: 1 << 20,
    };
    let mut acked = false;
    while let Some(argv) =
        parse_request(rbuf, limits).map_err(|e| std::io::Error::other(e.to_string()))?
    {
        let is_ack = argv.len() >= 3
            && argv[0].eq_ignore_ascii_case(b"replconf")
            && argv[1].eq_ignore_ascii_case(b"ack");
        if let Some(off) = is_ack
            .then(|| crate::protocol::request::parse_i64(&argv[2]))
            .flatten()
        {
            entry.ack_offset.fetch_max(off.max(0) as u64, Relaxed);
            entry.ack_ms.store(now_ms(), Relaxed);
            // A replica with a log says how far it is synced (Redis 7.2's
            // `REPLCONF ACK <offset> FACK <offset>`).
            if argv.len() >= 5 && argv[3].eq_ignore_ascii_case(b"fack") {
                if let Some(f) = crate::protocol::request::parse_i64(&argv[4]) {
                    entry.fack_offset.fetch_max(f.max(0) as u64, Relaxed);
                }
            }
            acked = true;
        }
    }
    if acked {
        server.replication.acked.notify_waiters();
    }
    Ok(())
}
