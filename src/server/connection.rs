//! One client connection.
//!
//! ```text
//!   read ─▶ parse every complete request in the buffer ─▶ run each in order
//!     ▲        (pipelining: replies accumulate in one buffer)        │
//!     └──────────────── write all replies at once ◀──────────────────┘
//! ```
//!
//! The loop also wakes for CLIENT KILL, server shutdown, the idle `timeout`
//! and, in MONITOR mode, for lines to forward. While a command waits
//! (blocked, WAIT, held by CLIENT PAUSE, forwarded by a sidecar) the
//! client's input is read on into the buffer, as Redis reads it: a hang-up
//! ends the wait (a held command then never runs). A protocol error is answered
//! and then the connection is closed, as in Redis; a command error is only
//! a reply. Bytes that do not yet form a request count against
//! `client-query-buffer-limit`; passing it closes the connection.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use crate::command::{self, flags, Action, Ctx, Spec};
use crate::error::CommandError;
use crate::persistence::log::ThreadWaiters;
use crate::protocol::{Parser, Protocol, ReplyBuf, RequestLimits};
use crate::replication::sidecar::{self, InRun};

use super::client::{Client, ReplyMode};
use super::{local_addr, now_ms, stopped, Server};

/// Replies written in rounds, as Redis writes them before it sleeps.
///
/// A connection that writes its replies as soon as its batch has run wakes
/// its client, which answers and goes back to sleep before the next
/// connection's replies arrive: under load each reply costs the client a
/// wake-up (an inter-processor interrupt on another core, the dearest part
/// of a pipelined request). So a connection whose thread is busy yields
/// before it writes: every connection already ready runs its batch first,
/// and the replies then leave back to back, while their clients are awake.
/// A thread that slept before this batch has nobody to wait for, and its
/// lone client is not made to wait for a needless turn of the event loop.
pub mod write_round {
    use std::cell::Cell;

    thread_local! {
        /// Batches this thread has run since it last slept.
        static SINCE_PARK: Cell<u32> = const { Cell::new(0) };
    }

    /// Counts a batch; whether its replies should wait for the round.
    pub fn join() -> bool {
        SINCE_PARK.with(|n| {
            let before = n.get();
            n.set(before.saturating_add(1));
            before > 0
        })
    }

    /// The thread is about to sleep (an I/O runtime's park hook): whether
    /// it ran a batch since the last time.
    pub fn parked() -> bool {
        SINCE_PARK.with(|n| n.replace(0)) > 0
    }
}

/// Read and reply buffers lent to connections while they have something to
/// read or to write, and taken back once both are empty.
///
/// An idle connection then holds no buffer (Redis frees an idle client's
/// query buffer too; the exception is one still shared with requests
/// kept, see `give`), so ten thousand pooled connections cost their
/// sockets and state, not 32 KB each, and `maxmemory` goes to data.
/// A busy connection takes a buffer from its thread's pool and gives it
/// back without the allocator: a pool entry is a pointer move.
pub mod buffers {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// What a connection reads into and writes from: a read of this size
    /// takes a whole pipelined batch.
    pub const SIZE: usize = 16 * 1024;
    /// Buffers a thread keeps for its next busy connections: enough for
    /// a round of pipelined clients to never reach the allocator, and at
    /// most 4 MB per I/O thread.
    const KEEP: usize = 128;

    thread_local! {
        static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer of at least `SIZE`.
    pub fn take() -> BytesMut {
        POOL.with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
    }

    /// Gives back an emptied buffer, leaving `buf` without one, when the
    /// buffer is the connection's alone. One still shared with requests
    /// that live on (a published message's payload in a subscriber's
    /// queue, a queued transaction) stays with the connection, which reads
    /// on into what is left of it: its memory is held anyway, and a fresh
    /// buffer per batch would pin one whole allocation per message kept.
    /// One grown for a large request or reply goes back to the allocator.
    pub fn give(buf: &mut BytesMut) {
        buf.clear();
        if !buf.try_reclaim(SIZE) {
            return;
        }
        let b = std::mem::take(buf);
        if b.capacity() < 2 * SIZE {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < KEEP {
                    p.push(b);
                }
            });
        }
    }

    /// Makes sure `buf` has room to fill.
    pub fn lend(buf: &mut BytesMut) {
        if buf.capacity() == 0 {
            *buf = take();
        } else if buf.capacity() - buf.len() < 1024 {
            // The end of a buffer kept (see `give`), or a request read in
            // part that fills it.
            buf.reserve(SIZE);
        }
    }
}

/// Why a connection ends after the current batch of replies.
enum Close {
    Now,
    AfterFlush,
}

/// Protected mode's idea of a local client, Redis's: exactly 127.0.0.1 or
/// ::1 (127.0.0.2 is not).
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(v6) => {
            v6 == std::net::Ipv6Addr::LOCALHOST
                || v6.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

/// What a stand-in runs for a connection at rest while a script holds
/// its thread: the commands Redis lets through then (`allow_busy`) that
/// need nothing of the connection's own state but its transaction. MULTI
/// and DISCARD run on the stand-in's own client, which starts in the
/// connection's transaction, if any (its queue stays with the owner:
/// nothing is queued while a script is timed out); what became of the
/// transaction is handed over in `ClientHandle::stood_in`. A sidecar's
/// REPLCONF WRITE-OFFSET, which it sends after each run of forwarded
/// commands, is answered too (see [`stand_in_client`]). The others let
/// through (WATCH, UNWATCH, AUTH, HELLO, RESET, QUIT, other REPLCONFs)
/// change more of it: they and all after them wait for the owner.
const STANDS_IN_FOR: &[&str] = &[
    "script|kill",
    "function|kill",
    "function|stats",
    "shutdown",
    "multi",
    "discard",
];

/// `ClientHandle::stood_in`: the connection's transaction was discarded
/// (DISCARD, an EXEC refused BUSY), its keys no longer watched ...
const STOOD_ENDED: u8 = 1;
/// ... it is (then) in a transaction ...
const STOOD_MULTI: u8 = 2;
/// ... which a command refused BUSY failed.
const STOOD_FAILED: u8 = 4;

/// Takes on what a stand-in did to this connection's transaction.
fn take_stood_in(server: &Server, client: &mut Client, stood: u8) {
    if stood & STOOD_ENDED != 0 {
        command::transactions::reset(server, client);
    }
    if stood & STOOD_MULTI != 0 {
        let multi = client.multi.get_or_insert_with(Default::default);
        multi.failed |= stood & STOOD_FAILED != 0;
    }
}

/// Answers, from the busy thread, a connection of `server::busy`'s
/// script thread that was at rest when the script timed out, until the
/// script ends or a request needs the owner (see `server::busy`).
/// Requests are peeked, and taken from the socket only once answered, so
/// that the owner finds the rest where they were.
pub async fn stand_in(server: Arc<Server>, handle: Arc<super::client::ClientHandle>, episode: u64) {
    use std::os::fd::BorrowedFd;
    // The owner keeps its socket open while the script holds its thread,
    // which `standing_in` makes sure of; the copy outlives that.
    let socket = server.busy.standing_in(episode, || {
        let fd = handle.fd.load(Relaxed);
        // SAFETY: `fd` is the owner's open socket (see above).
        unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
    });
    let Some(Ok(socket)) = socket else { return };
    let Ok(stream) = TcpStream::from_std(std::net::TcpStream::from(socket)) else {
        return;
    };
    let proto = if handle.resp.load(Relaxed) == 3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    // Made at the first request: most connections stood in for send none.
    let mut client = None;
    let mut ended = false;
    let mut busy = server.busy.subscribe();
    // Grown while a request does not fit.
    let mut peeked = vec![0u8; 512];
    loop {
        let n = tokio::select! {
            r = stream.peek(&mut peeked) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = busy.wait_for(|b| !*b) => return,
        };
        let limits = RequestLimits {
            max_bulk_len: server.tun.max_bulk_len.load(Relaxed),
        };
        let answered = server.busy.standing_in(episode, || {
            let client = client.get_or_insert_with(|| {
                let (client, was_ended) = stand_in_client(&server, &handle);
                ended = was_ended;
                client
            });
            let mut buf = BytesMut::from(&peeked[..n]);
            let mut out = ReplyBuf::new(proto);
            let (mut taken, mut shutdown) = (0, false);
            let owners = loop {
                let before = buf.len();
                let argv = match crate::protocol::parse_request(&mut buf, limits) {
                    Ok(Some(argv)) => argv,
                    Ok(None) => break false,
                    Err(_) => break true,
                };
                let ours = argv.is_empty()
                    || match command::TABLE.resolve(&argv) {
                        Ok((_, spec)) => {
                            !spec.has(flags::ALLOW_BUSY)
                                || STANDS_IN_FOR.contains(&spec.name)
                                || command::replication::is_write_offset(&argv)
                        }
                        // Answered as the owner would answer it.
                        Err(_) => true,
                    };
                if !ours {
                    break true;
                }
                taken += before - buf.len();
                if !argv.is_empty() {
                    let in_multi = client.multi.is_some();
                    shutdown |= stand_in_request(&server, client, &mut out, &argv);
                    ended |= in_multi && client.multi.is_none();
                }
            };
            // Before the script can end: the owner takes this on first.
            let stood = client
                .multi
                .as_ref()
                .map_or(0, |m| STOOD_MULTI | if m.failed { STOOD_FAILED } else { 0 })
                | if ended { STOOD_ENDED } else { 0 };
            handle.stood_in.store(stood, Relaxed);
            // Taken and answered while the script still holds the owner:
            // the bytes are there (peeked), and the replies are small.
            let mut cut = false;
            if taken > 0 {
                let mut sink = vec![0u8; taken];
                let read = stream.try_read(&mut sink);
                let written = stream.try_write(&out.buf);
                if read.ok() != Some(taken) || written.ok() != Some(out.buf.len()) {
                    // A client that does not read its replies: the owner
                    // finds the connection closed rather than a reply cut
                    // short.
                    let _ = socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Both);
                    cut = true;
                }
            }
            (taken, shutdown, owners || cut)
        });
        let Some((taken, shutdown, owners)) = answered else {
            return;
        };
        if shutdown {
            server.request_shutdown();
            return;
        }
        if owners {
            return;
        }
        if taken == 0 && n == peeked.len() && n < 64 * 1024 {
            peeked.resize(n * 4, 0);
        } else if taken == 0 {
            // Part of a request: wait for the rest to come.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A stand-in's client: in the connection's transaction as the owner left
/// it, or as an earlier stand-in did if the owner has not taken that on
/// yet (then also whether that one ended a transaction).
fn stand_in_client(server: &Server, handle: &super::client::ClientHandle) -> (Client, bool) {
    let mut client = Client::new(
        server.clients.detached(handle.addr, handle.laddr, now_ms()),
        true,
    );
    client.db = handle.db.load(Relaxed);
    // The connection's user: a stand-in refuses what its owner would.
    client.user = handle.user.lock().clone();
    // A sidecar's REPLCONF WRITE-OFFSET asks how far the connection's
    // writes reach. Not knowing the owner's last write, the stand-in says
    // the stream's offset, which is past it: a sidecar whose commands were
    // refused BUSY must not wait for the script's end to hear it (its
    // application would wait with it).
    client.last_effect.set(server.effects.offset());
    let pending = handle.stood_in.load(Relaxed);
    let ended = pending & STOOD_ENDED != 0;
    if pending & STOOD_MULTI != 0 || (!ended && handle.multi.load(Relaxed) >= 0) {
        client.multi = Some(super::client::Multi {
            failed: pending & STOOD_FAILED != 0,
            ..Default::default()
        });
    }
    (client, ended)
}

/// One request on a stand-in: checked as the dispatcher checks it, then
/// refused BUSY or run (one of `STANDS_IN_FOR`). True if it shuts the
/// node down.
fn stand_in_request(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    argv: &[Bytes],
) -> bool {
    let (idx, spec) = match command::prepare(server, client, argv) {
        Ok(x) => x,
        Err(e) => {
            refused(server, argv, out, e);
            return false;
        }
    };
    if !spec.has(flags::ALLOW_BUSY) {
        // Inside MULTI, EXEC then fails; a refused EXEC discards.
        let e = command::refuse(server, client, argv, server.busy.error());
        refused(server, argv, out, e);
        return false;
    }
    let started = Instant::now();
    let mut ctx = Ctx {
        server,
        client,
        out,
        now_ms: now_ms(),
        action: None,
        event: std::cell::Cell::new(None),
        emptied: Default::default(),
    };
    // Its error, if any, is in `out` already.
    let result = command::run(&mut ctx, spec, argv);
    let shutdown = matches!(ctx.action, Some(Action::Shutdown));
    if let Err(e) = &result {
        server.stats.error(&e.code());
    }
    server.stats.commands_processed.add(1);
    server.stats.commands[idx].record(
        1,
        started.elapsed().as_micros() as u64,
        result.is_err() as u64,
    );
    shutdown
}

/// `synced` is where this I/O thread's connections wait for the log
/// (`persistence::log::ThreadWaiters`).
pub async fn serve(
    server: Arc<Server>,
    stream: TcpStream,
    addr: std::net::SocketAddr,
    synced: Arc<ThreadWaiters>,
) {
    let _ = stream.set_nodelay(true);
    let keepalive = server.tun.tcp_keepalive.load(Relaxed);
    if keepalive > 0 {
        let ka = socket2::TcpKeepalive::new().with_time(Duration::from_secs(keepalive as u64));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
    }
    let laddr = local_addr(&stream);
    let handle = server.clients.register(addr, laddr, now_ms());
    {
        use std::os::fd::AsRawFd;
        handle.fd.store(stream.as_raw_fd(), Relaxed);
    }
    handle.thread.store(super::this_io_thread(), Relaxed);
    let (mut rd, mut wr) = stream.into_split();

    if server.clients.count() as i64 > server.tun.maxclients.load(Relaxed) {
        server.stats.rejected_connections.add(1);
        let _ = wr
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        server.clients.unregister(handle.id);
        return;
    }

    // As Redis: a default user without a password lets a connection in
    // at once, and protected mode then serves loopback clients only.
    let default_user = server.users.default_user();
    let authenticated = default_user.nopass && default_user.enabled;
    let protected = default_user.nopass && server.config.read().get("protected-mode") == "yes";
    if protected && !is_loopback(addr.ip()) {
        server.stats.rejected_connections.add(1);
        let mut out = ReplyBuf::new(Protocol::Resp2);
        out.error(&CommandError::ProtectedMode.to_string());
        let _ = wr.write_all(&out.buf).await;
        server.clients.unregister(handle.id);
        return;
    }
    let mut client = Client::new(handle.clone(), authenticated);
    client.set_user(&server.users, default_user);
    // Both buffers are lent only while there is something to read or write.
    let mut out = ReplyBuf::scratch(Protocol::Resp2);
    let mut rbuf = BytesMut::new();
    // Remembers a request read in part; `rbuf` only grows at its end
    // between its calls.
    let mut parser = Parser::default();
    let mut stop = server.shutdown.subscribe();
    let mut monitor: Option<broadcast::Receiver<Arc<str>>> = None;
    // One wait for the connection's life, which the loop and the waits
    // inside it (blocking commands, WAIT, slow writes) share.
    let killed = handle.until_killed();
    tokio::pin!(killed);
    let shutdown = stopped(&mut stop);
    tokio::pin!(shutdown);
    let mut stats = BatchStats::default();
    // The end of the connection while one of its commands waits (see
    // `ended`), made afresh for each wait: it borrows the read side.
    macro_rules! gone {
        () => {
            ended(
                &server,
                &handle,
                &mut rd,
                &mut rbuf,
                killed.as_mut(),
                shutdown.as_mut(),
            )
        };
    }
    // Set by PSYNC/SYNC: once the replies so far are out, this connection
    // becomes the feed of a replica.
    let mut feed = None;
    // A sidecar's run of forwards not sent yet (`sidecar::in_run`),
    // and where in `out` their replies go.
    let mut run = sidecar::Run::default();
    let mut run_at = 0;

    'conn: loop {
        // Whatever wakes it, it is no longer at rest (see `stand_in`).
        let at_rest = rbuf.is_empty() && out.buf.is_empty() && monitor.is_none() && client.plain();
        handle.at_rest.store(at_rest, Relaxed);
        let timeout = server.tun.timeout_secs.load(Relaxed);
        let idle = async {
            if timeout > 0 {
                tokio::time::sleep(Duration::from_secs(timeout as u64)).await
            } else {
                std::future::pending().await
            }
        };
        let subs = client.subs.as_mut();
        let published = async move {
            match subs {
                Some(s) => s.rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let monitored = async {
            match monitor.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Requests first; the other wake-ups are rare.
            biased;
            // Readiness first, so that an idle connection holds no buffer
            // (polled as a read polls it: `readable()` queues a waiter).
            r = std::future::poll_fn(|cx| rd.as_ref().poll_read_ready(cx)) => {
                handle.at_rest.store(false, Relaxed);
                if handle.stood_in.load(Relaxed) != 0 {
                    take_stood_in(&server, &mut client, handle.stood_in.swap(0, Relaxed));
                }
                if r.is_err() {
                    break 'conn;
                }
                buffers::lend(&mut rbuf);
                match read_now(&mut rd, &mut rbuf).await {
                    Some(Ok(0)) | Some(Err(_)) => break 'conn,
                    Some(Ok(n)) => {
                        server.stats.net_input_bytes.add(n as u64);
                        server.stats.reads_processed.add(1);
                    }
                    None => {
                        if rbuf.is_empty() {
                            buffers::give(&mut rbuf);
                        }
                        continue;
                    }
                }
            },
            msg = published => {
                handle.at_rest.store(false, Relaxed);
                buffers::lend(&mut out.buf);
                if let (Some(m), Some(s)) = (msg, client.subs.as_mut()) {
                    write_message(&mut out, &m);
                    s.sub.taken(&m);
                    // Drain whatever else is queued before writing.
                    while let Ok(m) = s.rx.try_recv() {
                        write_message(&mut out, &m);
                        s.sub.taken(&m);
                    }
                }
                // A subscriber that stopped reading blocks this write; its
                // output buffer limit kills it, and the kill must end the
                // write too.
                tokio::select! {
                    r = flush(&server, &mut wr, &mut out) => if r.is_err() {
                        break 'conn;
                    },
                    _ = &mut killed => break 'conn,
                }
                continue;
            }
            _ = handle.inbox.ready() => {
                handle.at_rest.store(false, Relaxed);
                buffers::lend(&mut out.buf);
                write_pushes(&client, &mut out);
                // A client that stopped reading blocks this write; CLIENT
                // KILL must still end it.
                tokio::select! {
                    r = flush(&server, &mut wr, &mut out) => if r.is_err() {
                        break 'conn;
                    },
                    _ = &mut killed => break 'conn,
                }
                continue;
            }
            line = monitored => {
                handle.at_rest.store(false, Relaxed);
                buffers::lend(&mut out.buf);
                match line {
                    Ok(l) => out.simple(&l),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break 'conn,
                }
                // Drain whatever else is queued before writing.
                if let Some(rx) = monitor.as_mut() {
                    while let Ok(l) = rx.try_recv() {
                        out.simple(&l);
                    }
                }
                if flush(&server, &mut wr, &mut out).await.is_err() {
                    break 'conn;
                }
                continue;
            }
            _ = &mut killed => {
                handle.at_rest.store(false, Relaxed);
                break 'conn;
            }
            _ = &mut shutdown => {
                handle.at_rest.store(false, Relaxed);
                break 'conn;
            }
            _ = idle => {
                handle.at_rest.store(false, Relaxed);
                if !handle.monitor.load(Relaxed) {
                    break 'conn;
                }
                continue;
            }
        }
        if handle.killed.load(Relaxed) {
            break;
        }

        buffers::lend(&mut out.buf);
        // What the batch holds counts while it runs (MEMORY STATS).
        held(&handle, &rbuf, &out);
        // Invalidations queued before these requests arrived go out before
        // their replies, as in Redis: a client that saw another's write
        // acknowledged never gets a reply ahead of that write's message.
        write_pushes(&client, &mut out);
        let mut close = None;
        // One clock read per batch of pipelined requests: every command in the
        // batch sees the same instant, as if they had arrived together.
        let mut clock = BatchClock::new();
        let limits = RequestLimits {
            max_bulk_len: server.tun.max_bulk_len.load(Relaxed),
        };
        // Requests are parsed one ahead of execution: while one runs, the slot
        // table of the next one's key is already on its way into the cache.
        // Pipelined batches are bound by memory latency, and this hides one
        // of the misses each command would otherwise wait for.
        let mut ahead = parser.next(&mut rbuf, limits);
        // Even a lone request gains from starting its slot's load now,
        // while the command is being resolved.
        client.slot_hint = command::prefetch(&server, &client, &ahead);
        loop {
            // A run of forwards goes out once the next request does not
            // join it.
            if !run.is_empty() && !next_joins_run(&server, &client, &ahead, run.len()) {
                let unread = rbuf.len();
                let gone = gone!();
                if !forward(&server, &mut client, &mut out, &mut run, false, false, gone).await {
                    break 'conn;
                }
                clock = BatchClock::new();
                if matches!(ahead, Ok(None)) && rbuf.len() != unread {
                    ahead = parser.next(&mut rbuf, limits);
                }
            }
            let mut argv = match ahead {
                Ok(Some(argv)) => argv,
                Ok(None) => break,
                Err(e) => {
                    server.stats.error("ERR");
                    out.error(&format!("ERR {e}"));
                    close = Some(Close::AfterFlush);
                    break;
                }
            };
            ahead = parser.next(&mut rbuf, limits);
            // Only a wait reads more into the buffer before the next turn.
            let unread = rbuf.len();
            let next_hint = command::prefetch(&server, &client, &ahead);
            if argv.is_empty() {
                client.slot_hint = next_hint;
                continue;
            }
            let in_multi = client.sidecar_multi.open;
            // Scoped to the command: the waits below borrow the same.
            let action = {
                let gone = gone!();
                tokio::pin!(gone);
                execute(
                    &server,
                    &mut client,
                    &mut out,
                    &argv,
                    &mut clock,
                    &mut stats,
                    gone,
                )
                .await
            };
            // The hint described this request's key; the next request's is ready.
            client.slot_hint = next_hint;
            let action = match action {
                Some(Action::Forward { run: r, .. })
                    if r == InRun::Joins || r == InRun::Starts && run.is_empty() =>
                {
                    if run.is_empty() {
                        run_at = out.len();
                    }
                    run.push(std::mem::take(&mut argv), in_multi);
                    None
                }
                // Expected to join the run, but answered here (refused):
                // the run's replies go before its own.
                action if !run.is_empty() => {
                    let own = out.buf.split_off(run_at);
                    let gone = gone!();
                    if !forward(&server, &mut client, &mut out, &mut run, false, false, gone).await
                    {
                        break 'conn;
                    }
                    out.buf.extend_from_slice(&own);
                    clock = BatchClock::new();
                    action
                }
                action => action,
            };
            match action {
                None => {}
                Some(Action::Close) => {
                    close = Some(Close::AfterFlush);
                    break;
                }
                Some(Action::Gone) => break 'conn,
                Some(Action::Shutdown) => {
                    server.request_shutdown();
                    close = Some(Close::Now);
                    break;
                }
                Some(Action::Block(b)) => {
                    // Replies so far go out first; then only this client waits.
                    if flush(&server, &mut wr, &mut out).await.is_err() {
                        break 'conn;
                    }
                    let gone = gone!();
                    let waited =
                        wait_blocked(&server, &mut client, &mut out, &argv, b, &mut stats, gone);
                    match Box::pin(waited).await {
                        Waited::Done => {}
                        Waited::Unblocked => {
                            late_reply(&mut client, &mut out, |out| out.error(UNBLOCKED_BY_CLIENT))
                        }
                        Waited::Demoted => {
                            demoted(&mut out);
                            close = Some(Close::AfterFlush);
                            break;
                        }
                        Waited::Gone => break 'conn,
                    }
                    clock = BatchClock::new();
                }
                Some(Action::Feed(req)) => {
                    feed = Some(req);
                    close = Some(Close::AfterFlush);
                    break;
                }
                Some(Action::Wait {
                    offset,
                    want,
                    deadline,
                }) => {
                    if flush(&server, &mut wr, &mut out).await.is_err() {
                        break 'conn;
                    }
                    handle.blocked.store(true, Relaxed);
                    let gone = gone!();
                    let waited = wait_acks(&server, client.id, offset, want, deadline, gone);
                    let waited = Box::pin(waited).await;
                    handle.blocked.store(false, Relaxed);
                    match waited {
                        (Waited::Done, Some((local, replicas))) => {
                            late_reply(&mut client, &mut out, |out| {
                                want.reply(out, local, replicas)
                            })
                        }
                        (Waited::Unblocked, _) => {
                            late_reply(&mut client, &mut out, |out| out.error(UNBLOCKED_BY_CLIENT))
                        }
                        (Waited::Demoted, _) => {
                            demoted(&mut out);
                            close = Some(Close::AfterFlush);
                            break;
                        }
                        _ => break 'conn,
                    }
                    clock = BatchClock::new();
                }
                Some(Action::Forward { blocks, echo, .. }) => {
                    // Like a blocked command, one that may wait on the
                    // primary lets the replies before it go first.
                    if blocks && flush(&server, &mut wr, &mut out).await.is_err() {
                        break 'conn;
                    }
                    run.push(std::mem::take(&mut argv), in_multi);
                    let gone = gone!();
                    if !forward(&server, &mut client, &mut out, &mut run, blocks, echo, gone).await
                    {
                        break 'conn;
                    }
                    clock = BatchClock::new();
                }
                Some(Action::Monitor) => {
                    monitor = Some(server.monitors.subscribe());
                    server.monitor_count.fetch_add(1, Relaxed);
                    handle.monitor.store(true, Relaxed);
                }
            }
            // A wait read on into the buffer (see `hung_up`): a request
            // that was not whole before may be now.
            if matches!(ahead, Ok(None)) && rbuf.len() != unread {
                ahead = parser.next(&mut rbuf, limits);
            }
            if monitor.is_some() && !handle.monitor.load(Relaxed) {
                // RESET ended MONITOR mode.
                monitor = None;
                server.monitor_count.fetch_sub(1, Relaxed);
            }
            if handle.killed.load(Relaxed) {
                close = Some(Close::Now);
                break;
            }
        }

        client.slot_hint = None;
        stats.flush(&server);
        // appendfsync always: nothing that acknowledges a write goes out
        // before the write is on disk.
        let target = client.last_effect.get();
        if server.log.must_wait(target) {
            // The writer thread syncs everything pending at once and wakes
            // every connection whose writes it covered (group commit).
            // Syncing here instead would serialise one fsync per connection
            // on this thread: tried, ten times slower.
            wait_durable(&server, &synced, target).await;
        }
        let pending = rbuf.len();
        held(&handle, &rbuf, &out);
        if pending as i64 > server.tun.query_buffer_limit.load(Relaxed) {
            tracing::warn!(
                "Closing client that reached max query buffer length: id={} addr={}",
                handle.id,
                handle.addr
            );
            break;
        }
        // A replica's tap that reached `TAP_HOLD_BYTES` goes out now, not
        // after the write round's yield: every connection in the round runs
        // its commands before any gets past it, so the bytes held doubled.
        crate::effects::flush_filled_taps_due();
        if close.is_none() && !out.buf.is_empty() && write_round::join() {
            tokio::task::yield_now().await;
            // Under a steady load the thread may not sleep for a long
            // while: what it appended to replicas goes out once held
            // `TAP_HOLD`.
            crate::effects::flush_filled_taps_held();
        }
        if flush(&server, &mut wr, &mut out).await.is_err() {
            break;
        }
        match close {
            Some(Close::Now) | Some(Close::AfterFlush) => break,
            None => {}
        }
        if rbuf.is_empty() {
            buffers::give(&mut rbuf);
        }
        held(&handle, &rbuf, &out);
    }
    stats.flush(&server);
    if monitor.is_some() {
        server.monitor_count.fetch_sub(1, Relaxed);
    }
    match feed {
        Some(req) if !handle.killed.load(Relaxed) => {
            buffers::lend(&mut rbuf);
            Box::pin(crate::replication::primary::serve(
                server.clone(),
                &mut client,
                rd,
                wr,
                rbuf,
                req,
            ))
            .await
        }
        _ => {
            let _ = wr.shutdown().await;
        }
    }
    command::transactions::unwatch_all(&server, &mut client);
    command::pubsub::unsubscribe_all(&server, &mut client);
    server.tracking.disable(handle.id);
    server.clients.unregister(handle.id);
}

/// What the read buffer holds and has room for (CLIENT LIST's `qbuf`,
/// `qbuf-free`).
fn held_query(handle: &super::client::ClientHandle, rbuf: &BytesMut) {
    handle.query_buf.store(rbuf.len(), Relaxed);
    handle
        .query_free
        .store(rbuf.capacity() - rbuf.len(), Relaxed);
}

/// Publishes what the connection's buffers take (`mem_clients_normal`)
/// and hold.
fn held(handle: &super::client::ClientHandle, rbuf: &BytesMut, out: &ReplyBuf) {
    held_query(handle, rbuf);
    handle
        .buffers
        .store(rbuf.capacity() + out.buf.capacity(), Relaxed);
}

/// Reads what the socket holds, without waiting for more: `None` when it
/// holds nothing after all. A read through `AsyncRead` (not `try_read`):
/// one that fills less than the buffer marks the socket drained, which
/// spares the next turn a read that would only find nothing.
async fn read_now(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Option<std::io::Result<usize>> {
    use std::future::Future;
    use std::task::Poll;
    let mut read = std::pin::pin!(rd.read_buf(buf));
    std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

async fn wait_durable(server: &Server, thread: &ThreadWaiters, target: u64) {
    // Counted out however the wait ends (the connection may be dropped),
    // and counted before the check below (see `ThreadWaiters`).
    let _counted = crate::persistence::log::Waiting::start(&server.log, thread);
    loop {
        let synced = thread.local.notified();
        tokio::pin!(synced);
        synced.as_mut().enable();
        if !server.log.must_wait(target) {
            return;
        }
        synced.await;
    }
}

/// Whether a sidecar's next request joins the run of forwards before it
/// (`sidecar::in_run`), judged before it runs by what command it is.
/// One refused after all (its ACL) is answered after the run's replies. A
/// pause sends the run at once: the run's writes were read before it.
fn next_joins_run(
    server: &Server,
    client: &Client,
    next: &Result<Option<Vec<Bytes>>, crate::protocol::ProtocolError>,
    len: usize,
) -> bool {
    let Ok(Some(argv)) = next else {
        return false;
    };
    len < sidecar::RUN_MAX
        && !argv.is_empty()
        && server.replication.is_replica()
        && !server.pause.active()
        && command::TABLE
            .resolve(argv)
            .is_ok_and(|(_, spec)| sidecar::in_run(client, spec) == InRun::Joins)
}

/// Forwards a sidecar's commands (`run`, emptied) to its primary and
/// writes the primary's replies, each under CLIENT REPLY as the command
/// was sent; an `echo`ed command's reply is dropped (it ran here). False
/// if the client went meanwhile: its upstream link goes with the forward,
/// which ends the command's wait there too.
async fn forward(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    run: &mut sidecar::Run,
    blocks: bool,
    echo: bool,
    gone: impl std::future::Future<Output = ()>,
) -> bool {
    let waiter = blocks.then(|| server.blocked.register(0, &[], client.id));
    let _registered = waiter.as_ref().map(|w| Unregister(&server.blocked, w));
    client.handle.blocked.store(blocks, Relaxed);
    let mut replies = Vec::with_capacity(run.len());
    let forwarded = sidecar::forward(server, client, run, &mut replies, waiter.as_deref());
    let forwarded = tokio::select! {
        r = Box::pin(forwarded) => r,
        _ = gone => return false,
    };
    client.handle.blocked.store(false, Relaxed);
    if forwarded.is_err() {
        sidecar::link_lost(client);
    }
    match forwarded {
        // The command's reply stands; the primary is told again when the
        // client retries.
        Err(e) if echo => {
            tracing::warn!("The sidecar could not pass a command on to the primary: {e}")
        }
        _ if echo => {}
        _ => {
            let unanswered = run.len() - replies.len();
            for reply in replies {
                let start = out.len();
                out.buf.extend_from_slice(&reply);
                suppress_reply(client, out, start, false, false, false);
            }
            if let Err(e) = forwarded {
                for _ in 0..unanswered {
                    server.stats.error("MASTERDOWN");
                    let start = out.len();
                    out.error(&e.reply());
                    suppress_reply(client, out, start, false, false, false);
                }
            }
        }
    }
    run.clear();
    true
}

async fn flush(
    server: &Server,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    out: &mut ReplyBuf,
) -> std::io::Result<()> {
    // BCAST invalidations of the keys these replies changed go out with
    // them (Redis sends them as its event loop goes idle).
    server.tracking.broadcast(&server.clients);
    if out.buf.is_empty() {
        return Ok(());
    }
    let n = out.buf.len();
    wr.write_all(&out.buf).await?;
    server.stats.net_output_bytes.add(n as u64);
    server.stats.writes_processed.add(1);
    buffers::give(&mut out.buf);
    Ok(())
}

/// Ends when the connection is over while one of its commands waits
/// (blocked, WAIT, held by a pause, forwarded by a sidecar): killed, the
/// server stopping, or the client gone (see [`hung_up`]).
async fn ended(
    server: &Server,
    handle: &super::client::ClientHandle,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    rbuf: &mut BytesMut,
    killed: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) {
    tokio::select! {
        _ = killed => {}
        _ = shutdown => {}
        _ = hung_up(server, handle, rd, rbuf) => {}
    }
}

/// Reads a waiting client's input on into its query buffer, as Redis reads
/// a blocked client's, and ends when the client hangs up (or has sent more
/// than `client-query-buffer-limit` meanwhile). A client that went away is
/// then noticed at once, not when its wait ends: a BLPOP whose client hung
/// up must not take the next pushed element for nobody.
async fn hung_up(
    server: &Server,
    handle: &super::client::ClientHandle,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    rbuf: &mut BytesMut,
) {
    loop {
        // CLIENT LIST's qbuf: what waits to be run, as in Redis.
        held_query(handle, rbuf);
        buffers::lend(rbuf);
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                server.stats.net_input_bytes.add(n as u64);
                server.stats.reads_processed.add(1);
            }
        }
        if rbuf.len() as i64 > server.tun.query_buffer_limit.load(Relaxed) {
            tracing::warn!(
                "Closing client that reached max query buffer length: id={} addr={}",
                handle.id,
                handle.addr
            );
            return;
        }
    }
}

/// A blocked command's wait (see `server::blocking`): retries the command
/// whenever one of its keys is signalled, until it is served, times out,
/// or is unblocked, or this node becomes a replica, or the connection is
/// over (`gone`, see [`ended`]).
async fn wait_blocked(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    argv: &[Bytes],
    b: command::Block,
    stats: &mut BatchStats,
    gone: impl std::future::Future<Output = ()>,
) -> Waited {
    tokio::pin!(gone);
    let db = client.db;
    let argv = b.retry.as_deref().unwrap_or(argv);
    let waiter = server.blocked.register(db, &b.keys, client.id);
    client.handle.blocked.store(true, Relaxed);
    let mut role = server.replication.target.subscribe();
    let deadline = async {
        match b.deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut served = false;
    let mut woken = false;
    let keep = loop {
        if role.borrow_and_update().is_some() {
            break Waited::Demoted;
        }
        // Registered before this first retry: a write racing with the
        // command's first attempt has left a wake-up permit.
        let mut clock = BatchClock::new();
        client.block_retry = true;
        let done = execute(server, client, out, argv, &mut clock, stats, gone.as_mut()).await;
        client.block_retry = false;
        match done {
            Some(Action::Gone) => break Waited::Gone,
            Some(Action::Block(_)) if woken && b.reader => {
                server.blocked.pass_on(db, &b.keys, &waiter)
            }
            Some(Action::Block(_)) => {}
            _ => {
                served = true;
                break Waited::Done;
            }
        }
        woken = false;
        tokio::select! {
            _ = waiter.wake.notified() => {
                woken = true;
                match waiter.unblock.load(Relaxed) {
                    crate::server::blocking::UNBLOCK_TIMEOUT => {
                        timeout_reply(client, out, &b);
                        break Waited::Done;
                    }
                    crate::server::blocking::UNBLOCK_ERROR => break Waited::Unblocked,
                    _ => {}
                }
            }
            _ = role.changed() => {}
            _ = &mut deadline => {
                timeout_reply(client, out, &b);
                break Waited::Done;
            }
            _ = gone.as_mut() => break Waited::Gone,
        }
    };
    server.blocked.unregister(db, &b.keys, &waiter);
    client.handle.blocked.store(false, Relaxed);
    if served {
        // The key may hold more: the next client in line gets its turn.
        for k in &b.keys {
            server.blocked.signal(db, k);
        }
    }
    keep
}

/// Waits until `offset` is as far as `want` asks (WAIT, WAITAOF), or the
/// deadline; returns the counts to reply with.
async fn wait_acks(
    server: &Server,
    client_id: u64,
    offset: u64,
    want: command::WaitFor,
    deadline: Option<Instant>,
    gone: impl std::future::Future<Output = ()>,
) -> (Waited, Option<(bool, usize)>) {
    tokio::pin!(gone);
    let r = &server.replication;
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let mut role = r.target.subscribe();
    // A blocked client as Redis counts one (INFO blocked_clients), which
    // CLIENT UNBLOCK can end; it waits on no key.
    let waiter = server.blocked.register(0, &[], client_id);
    let _registered = Unregister(&server.blocked, &waiter);
    loop {
        if role.borrow_and_update().is_some() {
            return (Waited::Demoted, None);
        }
        let acked = r.acked.notified();
        let synced = server.log.synced.notified();
        tokio::pin!(acked, synced);
        // Registered before counting: an ACK or a sync racing with the
        // count wakes us.
        acked.as_mut().enable();
        synced.as_mut().enable();
        let (done, local, n) = want.progress(server, offset);
        if done {
            return (Waited::Done, Some((local, n)));
        }
        tokio::select! {
            _ = acked => {}
            _ = synced => {}
            _ = role.changed() => {}
            _ = waiter.wake.notified() => match waiter.unblock.load(Relaxed) {
                crate::server::blocking::UNBLOCK_TIMEOUT => {
                    let (_, local, n) = want.progress(server, offset);
                    return (Waited::Done, Some((local, n)));
                }
                crate::server::blocking::UNBLOCK_ERROR => return (Waited::Unblocked, None),
                _ => {}
            },
            _ = &mut timeout => {
                let (_, local, n) = want.progress(server, offset);
                return (Waited::Done, Some((local, n)));
            }
            _ = gone.as_mut() => return (Waited::Gone, None),
        }
    }
}

const UNBLOCKED_BY_CLIENT: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// Leaves `server::blocking`'s registry however a key-less wait ends.
struct Unregister<'a>(
    &'a crate::server::blocking::Blocked,
    &'a Arc<crate::server::blocking::Waiter>,
);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.unregister(0, &[], self.1);
    }
}

/// How a client's wait (blocked on keys, WAIT, WAITAOF) ended.
enum Waited {
    /// Its reply is written (or, for WAIT and WAITAOF, its counts are
    /// returned).
    Done,
    /// CLIENT UNBLOCK ... ERROR ended it.
    Unblocked,
    /// This node became a replica: what the client waited for will not
    /// come from here (see [`demoted`]).
    Demoted,
    /// The connection is going (killed, shutdown).
    Gone,
}

/// A node turning replica releases its waiting clients with Redis's error
/// and closes their connections after it, as Redis does.
fn demoted(out: &mut ReplyBuf) {
    out.error(
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
    );
}

/// Writes whatever waits in the connection's inbox.
fn write_pushes(client: &Client, out: &mut ReplyBuf) {
    client
        .handle
        .inbox
        .drain(|p| p.write(out, client.subscribed()));
}

/// A published message: a RESP3 push, or a RESP2 array.
fn write_message(out: &mut ReplyBuf, m: &crate::server::pubsub::Message) {
    out.push(if m.pattern.is_some() { 4 } else { 3 });
    out.bulk(m.kind.as_bytes());
    if let Some(p) = &m.pattern {
        out.bulk(p);
    }
    out.bulk(&m.channel);
    out.bulk(&m.payload);
}

fn timeout_reply(client: &mut Client, out: &mut ReplyBuf, b: &command::Block) {
    late_reply(client, out, |out| {
        if b.null_array {
            out.null_array();
        } else {
            out.null();
        }
    })
}

/// The reply a blocked command ends with outside a run of it (a timeout,
/// CLIENT UNBLOCK, WAIT's count), under the reply mode it was sent with.
fn late_reply(client: &mut Client, out: &mut ReplyBuf, write: impl FnOnce(&mut ReplyBuf)) {
    let start = out.buf.len();
    write(out);
    suppress_reply(client, out, start, false, false, false);
}

/// The clocks one pipelined batch reads. Every command of the batch sees the
/// same wall-clock millisecond (`ms`); its run time is measured on the
/// monotonic clock, and each command starts where the one before it ended,
/// so a batch of n commands reads that clock n + 1 times instead of 2n (a
/// read costs about as much as a whole GET's keyspace work). What lies
/// between two commands (parsing the next one, the last one's slow-log and
/// MONITOR lines) is server time and is counted to the later command.
/// Anything that awaits starts a new clock: a wait is nobody's run time.
struct BatchClock {
    ms: i64,
    last_end: Option<Instant>,
}

impl BatchClock {
    fn new() -> BatchClock {
        BatchClock {
            ms: now_ms(),
            last_end: None,
        }
    }

    fn start(&mut self) -> Instant {
        self.last_end.take().unwrap_or_else(Instant::now)
    }

    fn end(&mut self, started: Instant) -> Duration {
        let now = Instant::now();
        self.last_end = Some(now);
        now.saturating_duration_since(started)
    }
}

/// A request refused before it ran: counted (its command's rejected
/// calls, the error's code) and its error replied.
fn refused(server: &Server, argv: &[Bytes], out: &mut ReplyBuf, e: CommandError) {
    if let Ok((i, _)) = command::TABLE.resolve(argv) {
        server.stats.commands[i].rejected();
    }
    server.stats.error(&e.code());
    out.error(&e.to_string());
}

/// Runs one request: checks, pause, the handler, statistics, slowlog, MONITOR.
/// `gone` (see [`ended`]) ends a wait for a pause to lift: the command
/// then does not run.
async fn execute(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    argv: &[Bytes],
    clock: &mut BatchClock,
    stats: &mut BatchStats,
    mut gone: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<Action> {
    let reply_start = out.len();
    let reject = |client: &mut Client, out: &mut ReplyBuf, e: crate::error::CommandError| {
        refused(server, argv, out, e);
        suppress_reply(client, out, reply_start, false, false, false);
        if client.multi.is_none() {
            client.caching = false;
        }
    };
    let (mut idx, mut spec) = match command::prepare(server, client, argv) {
        Ok(x) => x,
        Err(e) => {
            reject(client, out, e);
            return None;
        }
    };
    if server.pause.active() {
        // Judged by what this invocation may do: a script by its flags.
        let writes = command::may_replicate(spec, argv, client);
        // A client that gave up meanwhile (a timeout, then a retry on
        // another connection) must not have its write run when the pause
        // lifts: it would run twice.
        let paused = tokio::select! {
            waited = Box::pin(wait_while_paused(server, &client.handle, writes)) => waited,
            _ = gone.as_mut() => return Some(Action::Gone),
        };
        if paused {
            *clock = BatchClock::new();
            // What the command was checked against may have changed while
            // it waited (a FAILOVER makes this node a replica): it is
            // checked again, as Redis processes a postponed command anew.
            match command::prepare(server, client, argv) {
                Ok(x) => (idx, spec) = x,
                Err(e) => {
                    reject(client, out, e);
                    return None;
                }
            }
        }
    }
    // A sidecar promoted (REPLICAOF NO ONE) is a primary like any other.
    let mut echo = false;
    if server.replication.sidecar && server.replication.is_replica() {
        use crate::replication::sidecar::Route;
        let run = sidecar::in_run(client, spec);
        let route = sidecar::route(server, client, spec);
        echo = matches!(route, Route::Both);
        let to_primary = match route {
            Route::Primary => true,
            // A read the local copy cannot answer yet with this
            // connection's own writes in it goes to the primary. Only a
            // read of the data: INFO, CONFIG, CLIENT, SHUTDOWN and the
            // like are this node's, however far its copy lags.
            Route::Local => {
                spec.has(flags::READONLY)
                    && !Box::pin(sidecar::caught_up(server, client.written_offset)).await
            }
            Route::Connection | Route::Both => false,
            Route::Aborted => {
                reject(
                    client,
                    out,
                    CommandError::err_code(crate::command::transactions::EXECABORT),
                );
                return None;
            }
            Route::Refused(why) => {
                let e = command::refuse(server, client, argv, CommandError::err_code(why));
                reject(client, out, e);
                return None;
            }
            Route::Reply(reply) => {
                stats.record(idx, 0, false, true);
                reply(out);
                suppress_reply(client, out, reply_start, false, false, false);
                return None;
            }
        };
        if to_primary {
            // The connection forwards it, watching its client meanwhile.
            stats.record(idx, 0, false, true);
            client.handle.last_cmd.store(idx, Relaxed);
            return Some(Action::Forward {
                blocks: sidecar::may_wait(client, spec),
                echo: false,
                run,
            });
        }
    }
    // Every command but EXEC, scripts and the like (whose handlers hold it
    // exclusively) holds the transaction gate shared while it runs.
    let gate = loop {
        let busy = match gate_for(server, spec, argv, client) {
            Gated::Run(gate, waited) => {
                // Behind an EXEC or a script: time went on meanwhile (keys
                // expired), so the command reads the clock as it starts.
                if waited {
                    *clock = BatchClock::new();
                }
                break gate;
            }
            Gated::Paused => false,
            Gated::Busy => true,
        };
        if !busy {
            tokio::select! {
                _ = Box::pin(wait_while_paused(server, &client.handle, true)) => {}
                _ = gone.as_mut() => return Some(Action::Gone),
            }
        } else if client.block_retry {
            // A blocked command's retry waits for the script, as Redis
            // serves no blocked client meanwhile, without holding up the
            // thread's other connections.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        } else {
            let e = command::refuse(server, client, argv, server.busy.error());
            reject(client, out, e);
            return None;
        }
        *clock = BatchClock::new();
        match command::prepare(server, client, argv) {
            Ok(x) => (idx, spec) = x,
            Err(e) => {
                reject(client, out, e);
                return None;
            }
        }
    };
    let now = clock.ms;
    client.handle.last_cmd.store(idx, Relaxed);
    let started = clock.start();
    let mut ctx = Ctx {
        server,
        client,
        out,
        now_ms: now,
        action: None,
        event: std::cell::Cell::new(None),
        emptied: Default::default(),
    };
    let result = command::run(&mut ctx, spec, argv);
    drop(gate);
    let action = ctx.action.take();
    let elapsed = clock.end(started).as_micros() as u64;
    client.publish_state();

    // A blocked command's retries are one call, as Redis counts a served
    // waiter (its time and failure still count).
    stats.record(idx, elapsed, result.is_err(), !client.block_retry);
    if server.tun.latency_tracking.load(Relaxed) {
        stats.latencies.push((idx, elapsed));
    }
    if server.latency.threshold() > 0 {
        let event = if spec.has(flags::FAST) {
            "fast-command"
        } else {
            "command"
        };
        server.latency.observe(event, elapsed / 1000);
    }
    if let Err(e) = &result {
        if !matches!(e, crate::error::CommandError::Counted(_)) {
            server.stats.error(&e.code());
        }
    }
    let h = &client.handle;
    h.last_interaction.store(now, Relaxed);
    h.db.store(client.db, Relaxed);

    log_if_slow(server, spec, argv, elapsed, h);
    if server.monitor_count.load(Relaxed) > 0
        && !client.block_retry
        && !spec.has(flags::SKIP_MONITOR)
        && !spec.has(flags::ADMIN)
    {
        // Passwords never reach MONITOR.
        let argv = &*redacted(spec, argv);
        let _ = server
            .monitors
            .send(monitor_line(now, client.db, &h.addr.to_string(), argv).into());
    }
    let is_reply_cmd = spec.name == "client|reply";
    let pushed = spec.has(flags::PUBSUB) && spec.has(flags::SUBSCRIBED_OK);
    let blocks = matches!(action, Some(Action::Block(_) | Action::Wait { .. }));
    suppress_reply(client, out, reply_start, is_reply_cmd, pushed, blocks);
    // Pushes are not replies: CLIENT REPLY OFF does not silence them.
    if !client.invalidated.get_mut().is_empty() {
        let keys = std::mem::take(client.invalidated.get_mut());
        let subscribed = client.subscribed();
        server
            .tracking
            .deliver_own(&server.clients, client.id, keys, out, subscribed);
    }
    // CLIENT CACHING holds for the next command, or the whole next
    // transaction; any CLIENT subcommand in between keeps it, as in Redis.
    if client.caching && client.multi.is_none() && !spec.name.starts_with("client|") {
        client.caching = false;
    }
    if echo && result.is_ok() {
        return Some(Action::Forward {
            blocks: false,
            echo: true,
            run: InRun::Alone,
        });
    }
    action
}

/// Command statistics of one batch, added to the shared counters once per
/// batch rather than once per command, so pipelined clients on different
/// cores do not fight over the counters' cache lines.
#[derive(Default)]
struct BatchStats {
    /// (command index, calls, microseconds, failed); a batch uses few commands.
    per_command: Vec<(usize, u64, u64, u64)>,
    /// (command index, microseconds) of each run, for `latency-tracking`.
    latencies: Vec<(usize, u64)>,
    total: u64,
}

impl BatchStats {
    fn record(&mut self, idx: usize, usec: u64, failed: bool, call: bool) {
        self.total += call as u64;
        match self.per_command.iter_mut().find(|e| e.0 == idx) {
            Some(e) => {
                e.1 += call as u64;
                e.2 += usec;
                e.3 += failed as u64;
            }
            None => self
                .per_command
                .push((idx, call as u64, usec, failed as u64)),
        }
    }

    fn flush(&mut self, server: &Server) {
        if self.total == 0 {
            return;
        }
        server.stats.commands_processed.add(self.total);
        for (idx, calls, usec, failed) in self.per_command.drain(..) {
            server.stats.commands[idx].record(calls, usec, failed);
        }
        // One lock per command of the batch, and one record per distinct
        // time: a pipeline's runs mostly take the same few microseconds.
        self.latencies.sort_unstable();
        for runs in self.latencies.chunk_by(|a, b| a.0 == b.0) {
            let times = runs
                .chunk_by(|a, b| a.1 == b.1)
                .map(|same| (same[0].1, same.len() as u64));
            server.stats.commands[runs[0].0].record_latencies(times);
        }
        self.latencies.clear();
        self.total = 0;
    }
}

/// Applies CLIENT REPLY OFF/SKIP by dropping what the command wrote,
/// unless it wrote pushes (`pushed`: subscription confirmations, which
/// Redis sends as pushes in RESP2's shape too), which Redis delivers
/// whatever the reply mode. A command that blocks (`blocks`) keeps a SKIP
/// for its eventual reply, which comes through here again (the retry that
/// serves it, or [`late_reply`]), as Redis resets a blocked client only
/// when it is unblocked.
fn suppress_reply(
    client: &mut Client,
    out: &mut ReplyBuf,
    start: usize,
    is_reply_cmd: bool,
    pushed: bool,
    blocks: bool,
) {
    let silenced = match client.reply_mode {
        ReplyMode::On => false,
        ReplyMode::Off => true,
        ReplyMode::Skip => {
            // CLIENT REPLY SKIP itself is silent; the next command is skipped.
            if !is_reply_cmd && !blocks {
                client.reply_mode = ReplyMode::On;
            }
            true
        }
    };
    if silenced && !pushed {
        out.buf.truncate(start);
    }
}

/// Whether a command may run now, and holding what.
enum Gated<'s> {
    /// The transaction gate held shared (`None` inside: EXEC, scripts and
    /// the like hold it exclusively in their handlers; and while a script
    /// runs past busy-reply-threshold, for the commands let through then),
    /// and whether the command waited for it.
    Run(Option<parking_lot::RwLockReadGuard<'s, ()>>, bool),
    /// A FAILOVER paused writes after this command's pause check: it waits
    /// as if it had come after. The failover takes the gate exclusively to
    /// see the stream stand still, so no write lands after the target
    /// acknowledged the stream (EXEC and scripts check again under the
    /// gate: `transactions::exec`, scripts' calls).
    Paused,
    /// A script runs past busy-reply-threshold (`server::busy`): refused
    /// BUSY unless its row says `allow_busy`.
    Busy,
}

fn gate_for<'s>(
    server: &'s Server,
    spec: &command::Spec,
    argv: &[Bytes],
    client: &Client,
) -> Gated<'s> {
    // A command that takes the gate exclusively waits here too, so that a
    // script past the threshold refuses it rather than holds it.
    let (gate, waited) = match server.gate.shared_while(|| !server.busy.timed_out()) {
        Ok((gate, waited)) if spec.has(flags::EXCLUSIVE) => {
            drop(gate);
            (None, waited)
        }
        Ok(x) => x,
        Err(_) if spec.has(flags::ALLOW_BUSY) => return Gated::Run(None, true),
        Err(_) => return Gated::Busy,
    };
    if gate.is_some()
        && server.pause.failover.load(Relaxed)
        && command::may_replicate(spec, argv, client)
    {
        return Gated::Paused;
    }
    Gated::Run(gate, waited)
}

/// Waits while CLIENT PAUSE, or a FAILOVER's pause of writes, holds this
/// command (`writes`: it may write or replicate); returns whether it waited.
/// Meanwhile the client counts as blocked (INFO, CLIENT LIST), as Redis
/// counts a postponed client.
async fn wait_while_paused(
    server: &Server,
    handle: &super::client::ClientHandle,
    writes: bool,
) -> bool {
    let p = &server.pause;
    struct Held<'a>(&'a Server, &'a super::client::ClientHandle);
    impl Drop for Held<'_> {
        fn drop(&mut self) {
            self.0.pause.held.fetch_sub(1, Relaxed);
            self.1.blocked.store(false, Relaxed);
        }
    }
    let mut held_since: Option<Held> = None;
    let mut waited = false;
    loop {
        // Registered before the check: an end of the pause in between
        // still wakes it.
        let resumed = p.resumed.notified();
        let until = p.until_ms.load(Relaxed);
        let failover = p.failover.load(Relaxed);
        if until == 0 && !failover {
            return waited;
        }
        let now = now_ms();
        let timed = now < until && (writes || p.all.load(Relaxed));
        let held = timed || (failover && writes);
        if !held {
            return waited;
        }
        waited = true;
        if held_since.is_none() {
            p.held.fetch_add(1, Relaxed);
            handle.blocked.store(true, Relaxed);
            held_since = Some(Held(server, handle));
        }
        let wait = if timed { (until - now) as u64 } else { 100 };
        tokio::select! {
            _ = resumed => {}
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}

/// Puts a command that ran `elapsed` µs in the slow log if that is past
/// `slowlog-log-slower-than`, its secrets redacted (a transaction's
/// commands each, EXEC itself never, as in Redis).
pub fn log_if_slow(
    server: &Server,
    spec: &Spec,
    argv: &[Bytes],
    elapsed: u64,
    h: &super::client::ClientHandle,
) {
    let threshold = server.tun.slowlog_slower_than.load(Relaxed);
    if threshold >= 0 && elapsed >= threshold as u64 && !spec.has(flags::SKIP_SLOWLOG) {
        let max = server.tun.slowlog_max_len.load(Relaxed).max(0) as usize;
        server.slowlog.push(
            &redacted(spec, argv),
            elapsed,
            h.addr.to_string(),
            h.name(),
            max,
        );
    }
}

/// The arguments as the slow log and MONITOR may show them: secrets
/// replaced by `(redacted)`, as Redis does.
fn redacted<'a>(spec: &Spec, argv: &'a [Bytes]) -> std::borrow::Cow<'a, [Bytes]> {
    const HIDDEN: Bytes = Bytes::from_static(b"(redacted)");
    match spec.name {
        "auth" => {
            let mut v = argv.to_vec();
            v[1..].fill(HIDDEN);
            v.into()
        }
        // The user's name and every rule (passwords among them).
        "acl|setuser" => {
            let mut v = argv.to_vec();
            v[2..].fill(HIDDEN);
            v.into()
        }
        "hello" => {
            let mut v = argv.to_vec();
            let mut i = 2;
            while i < v.len() {
                if v[i].eq_ignore_ascii_case(b"auth") {
                    for j in i + 1..(i + 3).min(v.len()) {
                        v[j] = HIDDEN;
                    }
                    i += 3;
                } else {
                    i += 1;
                }
            }
            v.into()
        }
        // The values of secrets (masterauth, requirepass).
        "config|set" => {
            let mut v = argv.to_vec();
            for i in (2..v.len().saturating_sub(1)).step_by(2) {
                let name = String::from_utf8_lossy(&v[i]);
                if crate::config::directive(&name).is_some_and(|d| d.sensitive) {
                    v[i + 1] = HIDDEN;
                }
            }
            v.into()
        }
        // MIGRATE host port key db timeout [COPY] [REPLACE] [AUTH pw |
        // AUTH2 user pw] [KEYS key ...]: AUTH2's user name too, as Redis.
        "migrate" => {
            let mut v = argv.to_vec();
            let mut i = 6;
            while i < v.len() {
                let hide = if v[i].eq_ignore_ascii_case(b"auth") {
                    1
                } else if v[i].eq_ignore_ascii_case(b"auth2") {
                    2
                } else if v[i].eq_ignore_ascii_case(b"keys") {
                    break;
                } else {
                    0
                };
                for j in i + 1..(i + 1 + hide).min(v.len()) {
                    v[j] = HIDDEN;
                }
                i += 1 + hide;
            }
            v.into()
        }
        _ => argv.into(),
    }
}

/// A MONITOR line: `1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`.
pub fn monitor_line(now_ms: i64, db: usize, addr: &str, argv: &[Bytes]) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    let mut s = format!("{}.{:06} [{} {}]", now_ms / 1000, micros, db, addr);
    for a in argv {
        s.push(' ');
        s.push_str(&repr(a));
    }
    s
}

/// Quotes bytes as Redis's `sdscatrepr` does.
pub fn repr(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            7 => s.push_str("\\a"),
            8 => s.push_str("\\b"),
            c if c.is_ascii_graphic() || c == b' ' => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}
