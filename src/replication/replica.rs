//! The replica's side: the link to this node's primary.
//!
//! [`run`] lives as long as the node and follows `Replication::target`:
//! whenever REPLICAOF (or the `replicaof` directive) names a primary, it
//! connects, shakes hands, asks to continue from this node's own
//! `(replid, offset)`, and then applies the stream. A broken link is retried
//! every second with the same request, so a short outage costs only the
//! missing bytes. Changing the target drops the link at once (the link is
//! only ever interrupted between two applied batches, never inside one).
//!
//! Applying: each command of the stream runs through the command table as
//! the primary's own client (`Client::from_primary`: effects are not
//! re-recorded, expired keys are acted on as they are, nothing is evicted);
//! then the bytes, exactly as received, are appended to this node's effect
//! stream, which carries them on to its log, its backlog and its own
//! replicas. An acknowledgement goes back every second, and right after
//! the batch holding a `REPLCONF GETACK` (which the primary puts in the
//! stream for WAIT), so WAIT returns as soon as the writes are applied.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::{failover, LinkState, PrimaryAddr};
use crate::effects::{encode_command, Identity, StreamState};
use crate::persistence::aof;
use crate::protocol::{parse_request, Protocol, ReplyBuf, RequestLimits};
use crate::server::client::Client;
use crate::server::{now_ms, stopped, Server};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out connecting to the primary")]
    ConnectTimeout,
    #[error("nothing from the primary for repl-timeout seconds")]
    Timeout,
    #[error("the primary replied {0:?} to {1}")]
    Refused(String, &'static str),
    #[error("the primary's stream is malformed: {0}")]
    Protocol(String),
}

/// Follows the configured primary for the life of the node.
pub async fn run(server: Arc<Server>) {
    let mut target = server.replication.target.subscribe();
    let mut stop = server.shutdown.subscribe();
    loop {
        let want = target.borrow_and_update().clone();
        let Some(addr) = want else {
            tokio::select! {
                r = target.changed() => if r.is_err() { return },
                _ = stopped(&mut stop) => return,
            }
            continue;
        };
        let failed = tokio::select! {
            r = link(&server, &addr) => r.err(),
            _ = target.changed() => None,
            _ = stopped(&mut stop) => return,
        };
        server.replication.set_link(LinkState::Connect);
        if let Some(e) = &failed {
            if server.replication.failover_state.load(Relaxed) == failover::IN_PROGRESS {
                // The target could not be reached to take over: this node
                // stays the primary.
                failover::abort(&server, &format!("the link to the target failed: {e}"));
                continue;
            }
        }
        if let Some(e) = failed {
            tracing::warn!(
                "Link with the primary {}:{} lost: {e}; retrying in a second",
                addr.host,
                addr.port
            );
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = target.changed() => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }
}

/// Replies and stream bytes from the primary.
struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

impl Reader {
    async fn fill(&mut self, server: &Server) -> Result<(), LinkError> {
        let n = self.rd.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        server.stats.net_repl_input_bytes.add(n as u64);
        server.replication.last_io_ms.store(now_ms(), Relaxed);
        Ok(())
    }

    /// One `\r\n`-terminated line, without the terminator. A primary
    /// silent for `repl-timeout` seconds meanwhile (a handshake reply that
    /// never comes) ends the link, as in Redis: a FAILOVER waiting on its
    /// target's answer is then given up rather than held for ever.
    async fn line(&mut self, server: &Server) -> Result<String, LinkError> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(i + 2);
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(LinkError::Protocol("an overlong reply line".into()));
            }
            let quiet = server.tun.repl_timeout_secs.load(Relaxed).max(1) as u64;
            tokio::time::timeout(Duration::from_secs(quiet), self.fill(server))
                .await
                .map_err(|_| LinkError::Timeout)??;
        }
    }
}

async fn send(wr: &mut OwnedWriteHalf, argv: &[&[u8]]) -> Result<(), LinkError> {
    let mut out = Vec::new();
    encode_command(&mut out, argv);
    wr.write_all(&out).await?;
    Ok(())
}

/// Sends a handshake command and checks its reply is not an error.
async fn ask(
    server: &Server,
    rd: &mut Reader,
    wr: &mut OwnedWriteHalf,
    argv: &[&[u8]],
    what: &'static str,
) -> Result<(), LinkError> {
    send(wr, argv).await?;
    let reply = rd.line(server).await?;
    if reply.starts_with('-') {
        return Err(LinkError::Refused(reply, what));
    }
    Ok(())
}

/// One life of the link: connect, handshake, sync, then apply until it
/// breaks.
async fn link(server: &Arc<Server>, addr: &PrimaryAddr) -> Result<(), LinkError> {
    let r = &server.replication;
    r.set_link(LinkState::Connecting);
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect((addr.host.as_str(), addr.port)),
    )
    .await
    .map_err(|_| LinkError::ConnectTimeout)??;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = Reader {
        rd,
        buf: BytesMut::with_capacity(64 * 1024),
    };
    let (auth, user) = {
        let cfg = server.config.read();
        (
            cfg.get("masterauth").to_string(),
            cfg.get("masteruser").to_string(),
        )
    };
    if !auth.is_empty() {
        if user.is_empty() {
            ask(
                server,
                &mut rd,
                &mut wr,
                &[b"AUTH", auth.as_bytes()],
                "AUTH",
            )
            .await?;
        } else {
            let argv: [&[u8]; 3] = [b"AUTH", user.as_bytes(), auth.as_bytes()];
            ask(server, &mut rd, &mut wr, &argv, "AUTH").await?;
        }
    }
    ask(server, &mut rd, &mut wr, &[b"PING"], "PING").await?;
    let port = server.tcp_port.load(Relaxed).to_string();
    let argv: [&[u8]; 3] = [b"REPLCONF", b"listening-port", port.as_bytes()];
    ask(server, &mut rd, &mut wr, &argv, "REPLCONF listening-port").await?;
    let mut argv: Vec<&[u8]> = vec![b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"];
    if r.sidecar {
        // So that a FAILOVER never picks this node to take over.
        argv.extend([&b"capa"[..], b"sidecar"]);
    }
    ask(server, &mut rd, &mut wr, &argv, "REPLCONF capa").await?;

    let me = server.effects.identity();
    let failing_over = r.failover_state.load(Relaxed) == failover::IN_PROGRESS;
    let next = (me.offset + 1).to_string();
    if failing_over {
        // This node was the primary: the target takes over if it follows
        // this very history (see `failover`).
        let argv: [&[u8]; 4] = [b"PSYNC", me.replid.as_bytes(), next.as_bytes(), b"FAILOVER"];
        send(&mut wr, &argv).await?;
    } else if me.offset == 0 {
        // Nothing here to continue (Redis's "PSYNC ? -1").
        send(&mut wr, &[b"PSYNC", b"?", b"-1"]).await?;
    } else {
        send(&mut wr, &[b"PSYNC", me.replid.as_bytes(), next.as_bytes()]).await?;
    }
    let reply = loop {
        // A primary busy preparing a full sync may send newlines to keep
        // the link alive.
        let l = rd.line(server).await?;
        if !l.is_empty() {
            break l;
        }
    };
    let words: Vec<&str> = reply.split_whitespace().collect();
    if failing_over {
        if reply.starts_with('-') {
            failover::abort(server, "Failover target rejected psync request");
            return Err(LinkError::Refused(reply, "PSYNC FAILOVER"));
        }
        // The target is the primary now: writes resume here (as a
        // replica's, refused).
        failover::clear(server);
    }
    match words.as_slice() {
        ["+FULLRESYNC", id, off] => {
            let at = Identity {
                replid: id.to_string(),
                offset: off
                    .parse()
                    .map_err(|_| LinkError::Protocol(reply.clone()))?,
            };
            tracing::info!(
                "Full resync from the primary {}:{}: {}:{}",
                addr.host,
                addr.port,
                at.replid,
                at.offset
            );
            r.set_link(LinkState::Sync);
            let loading = Loading::start(server);
            let db = load_snapshot(server, &mut rd).await?;
            server.effects.adopt(at, db);
            server.log.new_history();
            drop(loading);
        }
        ["+CONTINUE"] => {}
        ["+CONTINUE", id] => {
            if *id != me.replid {
                // The primary's history goes on under a new id (it was
                // promoted); ours does too. Our own replicas are dropped,
                // and continue under the new id once they reconnect.
                server.effects.fork_history(Some(id.to_string()));
            }
            tracing::info!(
                "Successful partial resynchronization with the primary {}:{}",
                addr.host,
                addr.port
            );
        }
        _ => return Err(LinkError::Refused(reply, "PSYNC")),
    }
    r.set_link(LinkState::Connected);
    r.ready.store(true, Relaxed);
    r.last_io_ms.store(now_ms(), Relaxed);
    tracing::info!(
        "MASTER <-> REPLICA sync: the link with {}:{} is up",
        addr.host,
        addr.port
    );
    follow(server, &mut rd, &mut wr).await
}

/// Marks the node loading while a full sync replaces its data, and clears
/// that however the sync ends.
struct Loading<'a>(&'a Server);

impl<'a> Loading<'a> {
    fn start(server: &'a Server) -> Loading<'a> {
        server.loading.store(true, Relaxed);
        Loading(server)
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.0.loading.store(false, Relaxed);
    }
}

/// The primary's own client on this node.
fn primary_client(server: &Server) -> Client {
    let addr = ([127, 0, 0, 1], 0).into();
    let handle = server.clients.register(addr, addr, now_ms());
    handle.set_kind(crate::server::client::KIND_PRIMARY);
    let mut c = Client::new(handle, true);
    c.from_primary = true;
    c
}

/// Receives a full sync's snapshot and loads it in place of this node's
/// data. Its records are written like a client's writes, so this node's
/// own log holds the new data set; a crash half-way leaves a log whose
/// identity was forgotten first (a fresh full sync follows). Returns the
/// database the primary's stream is in at the snapshot's instant (its
/// closing state record says).
async fn load_snapshot(server: &Arc<Server>, rd: &mut Reader) -> Result<Option<usize>, LinkError> {
    // Our own replicas' copies are about to be of nothing we hold.
    server.effects.detach_all();
    server.effects.forget_history();
    server.log.new_history();
    let header = rd.line(server).await?;
    let Some(mark) = header.strip_prefix("$EOF:") else {
        return Err(LinkError::Protocol(format!(
            "a snapshot header {header:?}, expected $EOF:<mark>"
        )));
    };
    let mark = mark.as_bytes().to_vec();
    let handle = server.clients.register(
        ([127, 0, 0, 1], 0).into(),
        ([127, 0, 0, 1], 0).into(),
        now_ms(),
    );
    let _registered = Registered(server, handle.id);
    let mut loader = Client::new(handle, true);
    let mut out = ReplyBuf::new(Protocol::Resp2);
    async {
        replay(
            server,
            &mut loader,
            &mut out,
            &[Bytes::from_static(b"FLUSHALL")],
            now_ms(),
        );
        // The primary's libraries replace ours too (FLUSHALL leaves them).
        replay(
            server,
            &mut loader,
            &mut out,
            &[
                Bytes::from_static(b"FUNCTION"),
                Bytes::from_static(b"FLUSH"),
            ],
            now_ms(),
        );
        let r = &server.replication;
        r.sync_read_bytes.store(0, Relaxed);
        let mut stream_db = None;
        loop {
            if rd.buf.len() >= mark.len() && rd.buf[..mark.len()] == mark[..] {
                let _ = rd.buf.split_to(mark.len());
                return Ok(stream_db);
            }
            match aof::first_record(&rd.buf).map_err(LinkError::Protocol)? {
                Some(n) => {
                    let rec = rd.buf.split_to(n);
                    r.sync_read_bytes.fetch_add(n as u64, Relaxed);
                    let mut payload = BytesMut::from(&rec[aof::HEADER..]);
                    while let Some(argv) = parse_request(&mut payload, LIMITS)
                        .map_err(|e| LinkError::Protocol(e.to_string()))?
                    {
                        if let Some(state) = StreamState::parse(&argv) {
                            stream_db = state.map_err(LinkError::Protocol)?.db;
                        } else if !argv.is_empty() {
                            replay(server, &mut loader, &mut out, &argv, now_ms());
                        }
                    }
                }
                None => rd.fill(server).await?,
            }
        }
    }
    .await
}

/// Keeps an internal client in the registry (CLIENT LIST shows it) for as
/// long as it works, however its work ends.
struct Registered<'a>(&'a Server, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.clients.unregister(self.1);
    }
}

const LIMITS: RequestLimits = RequestLimits {
    max_bulk_len: i64::MAX,
};

/// Runs one command of the primary's. Its failing here means the copies
/// differ: said loudly, as Redis does, and the stream goes on.
fn replay(server: &Server, client: &mut Client, out: &mut ReplyBuf, argv: &[Bytes], now: i64) {
    if let Err(e) = crate::command::replay_at(server, client, out, argv, now) {
        tracing::warn!(
            "== CRITICAL == a command from the primary failed on this replica: {} ({e})",
            String::from_utf8_lossy(&argv[0])
        );
    }
}

/// Applies the stream until the link breaks.
async fn follow(
    server: &Arc<Server>,
    rd: &mut Reader,
    wr: &mut OwnedWriteHalf,
) -> Result<(), LinkError> {
    // History is kept from now on: our own replicas, and a promotion of
    // this node, continue from it.
    server.effects.activate_backlog();
    let mut client = primary_client(server);
    let _registered = Registered(server, client.id);
    client.db = server.effects.selected_db().unwrap_or(0);
    let mut out = ReplyBuf::new(Protocol::Resp2);
    async {
        let mut raw: Vec<u8> = Vec::new();
        // Acknowledged once a second, and at once when the primary asks
        // (REPLCONF GETACK, which it sends for WAIT): an ACK per write
        // would cost the primary a read per write.
        let mut ack_due = true;
        // The offset of the last GETACK (the primary runs WAIT or WAITAOF)
        // until an ACK says our log is synced past it: a WAITAOF waits for
        // that, so the ACK goes as soon as the sync is done.
        let mut fack_owed: Option<u64> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut need_more = false;
        loop {
            // Bytes already buffered (after the snapshot, or a CONTINUE)
            // are applied before waiting for more.
            if rd.buf.is_empty() || need_more {
                let quiet = server.tun.repl_timeout_secs.load(Relaxed) * 1000;
                let since = now_ms() - server.replication.last_io_ms.load(Relaxed);
                if since > quiet {
                    // The primary pings every repl-ping-replica-period.
                    return Err(LinkError::Timeout);
                }
                // Registered before the check, when an ACK is owed: a sync
                // in between wakes us.
                let synced = server.log.synced.notified();
                tokio::pin!(synced);
                if fack_owed.is_some() {
                    synced.as_mut().enable();
                }
                if fack_owed.is_some_and(|o| server.log.fsynced_to(o)) {
                    ack_due = true;
                } else {
                    tokio::select! {
                        r = rd.fill(server) => r?,
                        _ = tick.tick() => ack_due = true,
                        _ = client.handle.until_killed() => {}
                        _ = synced, if fack_owed.is_some() => {}
                    }
                }
            }
            if client.handle.killed.load(Relaxed) {
                // CLIENT KILL TYPE master: drop the link; it comes back
                // with a partial resync.
                return Err(std::io::Error::other("killed").into());
            }
            raw.clear();
            raw.extend_from_slice(&rd.buf);
            let mut used = 0;
            let mut offset = server.effects.offset();
            // One clock read per read from the primary, as a client's
            // pipelined batch has: the time only stamps the keys' access.
            let now = now_ms();
            // Parsed one ahead, as a client's pipeline is, so that the next
            // command's slot table loads while this one runs; a bad command
            // breaks the link only once those before it are applied.
            let parse = |buf: &mut BytesMut| {
                let before = buf.len();
                (parse_request(buf, LIMITS), before - buf.len())
            };
            let (mut ahead, mut ahead_len) = parse(&mut rd.buf);
            let mut hint = crate::command::prefetch(server, &client, &ahead);
            loop {
                let argv = match ahead {
                    Ok(Some(argv)) => argv,
                    Ok(None) => break,
                    Err(e) => return Err(LinkError::Protocol(e.to_string())),
                };
                let bytes = &raw[used..used + ahead_len];
                used += ahead_len;
                (ahead, ahead_len) = parse(&mut rd.buf);
                let next_hint = crate::command::prefetch(server, &client, &ahead);
                // The change and its bytes in our stream, as one step (see
                // `Replication::apply`).
                let _applying = server.replication.apply.read();
                if is_getack(&argv) {
                    ack_due = true;
                    fack_owed = server.log.fsynced_offset().map(|_| offset);
                } else if !argv.is_empty() {
                    // The hint describes this command's bytes only while it runs.
                    client.slot_hint = hint;
                    replay(server, &mut client, &mut out, &argv, now);
                    client.slot_hint = None;
                }
                hint = next_hint;
                offset = server.effects.append_raw(bytes, client.db);
            }
            need_more = used == 0;
            if used > 0 {
                server.replication.applied.notify_waiters();
                server.tracking.broadcast(&server.clients);
            }
            if ack_due {
                let off = offset.to_string();
                // With a log, how far it is synced too (FACK), as Redis 7.2's
                // replicas say it: the primary's WAITAOF counts it.
                match server.log.fsynced_offset() {
                    Some(synced) => {
                        let fack = synced.to_string();
                        let argv: [&[u8]; 5] = [
                            b"REPLCONF",
                            b"ACK",
                            off.as_bytes(),
                            b"FACK",
                            fack.as_bytes(),
                        ];
                        send(wr, &argv).await?;
                        if fack_owed.is_some_and(|o| synced >= o) {
                            fack_owed = None;
                        }
                    }
                    None => send(wr, &[b"REPLCONF", b"ACK", off.as_bytes()]).await?,
                }
                ack_due = false;
            }
        }
    }
    .await
}

fn is_getack(argv: &[Bytes]) -> bool {
    argv.len() >= 2
        && argv[0].eq_ignore_ascii_case(b"replconf")
        && argv[1].eq_ignore_ascii_case(b"getack")
}
