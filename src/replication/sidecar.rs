//! Sidecar mode: a replica beside an application, serving its reads from
//! the local copy and forwarding its writes to the primary.
//!
//! ```text
//!  application ──▶ sidecar (loopback)
//!                    │ read ── local copy applied past this connection's
//!                    │         last write? ── yes ─▶ answer locally
//!                    │               │ no: wait up to sidecar-read-wait-ms,
//!                    │               └──── still behind: ask the primary
//!                    │ write (or MULTI … EXEC/DISCARD, WATCH, WAIT,
//!                    │        PUBLISH) ──▶ primary,
//!                    │        on this connection's own upstream link,
//!                    │        pipelined with REPLCONF WRITE-OFFSET
//!                    ◀──────── the primary's reply, byte for byte
//! ```
//!
//! SCRIPT LOAD and SCRIPT FLUSH run here and are forwarded too, so that an
//! EVALSHA finds its script on either node, or on neither (scripts are not
//! replicated).
//!
//! Each application connection gets its own upstream connection, opened
//! at its first write, so what a connection means to Redis (its database,
//! its transaction, its WATCHes, blocking) carries over. The primary
//! answers `REPLCONF WRITE-OFFSET` with the stream offset just past that
//! connection's last write; reads on the sidecar wait until the local copy
//! is there, which gives each connection read-your-writes. A sidecar never
//! writes into its local copy: only the replication stream does.
//!
//! Writes and transactions an application pipelines go out as one run
//! ([`in_run`]): sent together with one REPLCONF WRITE-OFFSET after
//! them, their replies read in order, so a pipeline costs one round trip
//! to the primary, not one per command. Any other command (a read, a
//! SELECT, a blocking command) first waits for the run's replies: it sees
//! the run's writes, and its reply comes after theirs.
//!
//! The connection awaits a forward as it awaits a blocked command
//! (`server::connection`): if the application hangs up or is killed
//! meanwhile, the forward is dropped with its upstream link, and the
//! primary ends the command's wait (a BLPOP takes nothing for nobody). A
//! forwarded command that may wait counts as blocked here, and CLIENT
//! UNBLOCK of it is passed on to its client on the primary.
//! Until its first sync completes it answers `-LOADING`.
//!
//! A link the primary closed while idle (its `timeout`) is replaced
//! before anything is sent on it. A link lost while it held the
//! connection's transaction or WATCHes takes them along: the rest of the
//! transaction is answered QUEUED here and its EXEC EXECABORT, and an EXEC
//! after lost WATCHes answers null ([`link_lost`]); nothing of it runs
//! outside a transaction on a new link.
//!
//! A primary that handed its role over (FAILOVER) answers a forwarded
//! write with `-READONLY`, which means the write did not run: the sidecar
//! asks it (ROLE) whom it follows now, follows that node itself, and sends
//! the write there, once: a run from its first refused command, or from
//! the MULTI of the refused transaction that command is in. Not when the
//! link held the connection's WATCHes or a transaction begun before the
//! run: those stay with the old link, and the refusals are passed on.

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::command::{flags, Spec};
use crate::effects::encode_command;
use crate::protocol::ReplyBuf;
use crate::server::blocking::{Waiter, UNBLOCK_ERROR};
use crate::server::client::Client;
use crate::server::Server;

/// What a sidecar does, for INFO replication: how many commands it
/// forwards, in how many round trips (a pipelining application's runs
/// share one), how its reads fare waiting for their connection's own
/// writes (reads sent to the primary say `sidecar-read-wait-ms` is short
/// for how far the local copy lags), and how many links to the primary it
/// holds open (one per application connection that wrote).
#[derive(Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    pub round_trips: AtomicU64,
    pub reads_waited: AtomicU64,
    pub reads_to_primary: AtomicU64,
    links: Arc<AtomicU64>,
}

impl Counters {
    pub fn links(&self) -> u64 {
        self.links.load(Relaxed)
    }

    /// CONFIG RESETSTAT: the counts start again (the links stay counted).
    pub fn reset(&self) {
        for c in [
            &self.forwarded,
            &self.round_trips,
            &self.reads_waited,
            &self.reads_to_primary,
        ] {
            c.store(0, Relaxed);
        }
    }
}

/// Counts an open link to the primary for as long as it lives.
struct LinkCounted(Arc<AtomicU64>);

impl LinkCounted {
    fn new(server: &Server) -> LinkCounted {
        let links = server.replication.sidecar_counters.links.clone();
        links.fetch_add(1, Relaxed);
        LinkCounted(links)
    }
}

impl Drop for LinkCounted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// One application connection's link to the primary.
pub struct Upstream {
    stream: TcpStream,
    _counted: LinkCounted,
    buf: BytesMut,
    /// Its client id on the primary (for CLIENT UNBLOCK; 0: not known yet).
    id: u64,
    /// The database selected upstream.
    db: usize,
    /// The protocol version the upstream link speaks (the client's).
    resp: u32,
    /// It holds the connection's transaction or WATCHes, which a new link
    /// would not have.
    holds: bool,
}

/// Where a connection's transaction on the primary stands.
#[derive(Debug, Default, Clone, Copy)]
pub struct Transaction {
    /// A MULTI was forwarded: everything goes to the primary until its
    /// EXEC or DISCARD.
    pub open: bool,
    /// The sidecar refused one of its commands itself: EXEC answers
    /// EXECABORT (see [`refused_in_multi`]).
    failed: bool,
    /// It queued a SELECT, which changes the connection's database when
    /// EXEC runs it: the sidecar then asks the primary which it is.
    selects: bool,
    /// The link holding it went (see [`link_lost`]): its commands are
    /// answered QUEUED here, none can run in it, and EXEC answers
    /// EXECABORT.
    lost: bool,
    /// A WATCH was forwarded and not ended yet (EXEC, DISCARD, UNWATCH).
    watching: bool,
    /// The link holding the WATCHes went: the next EXEC answers null, as
    /// for a watched key that changed, since none can be watched now.
    watch_lost: bool,
}

/// The connection's upstream link went (a forward failed): what it held,
/// the transaction open on it and its WATCHes, went with it. The
/// application is told as Redis would tell it of a transaction it cannot
/// run: the rest of the transaction is queued for nothing and its EXEC
/// answers EXECABORT; an EXEC after the WATCHes were lost answers null.
/// Sending the rest to a new link would run a transaction's commands one
/// by one, outside it.
pub fn link_lost(client: &mut Client) {
    client.upstream = None;
    let t = &mut client.sidecar_multi;
    t.lost |= t.open;
    t.watch_lost |= t.watching;
    t.watching = false;
    t.selects = false;
}

/// Where a command runs on a sidecar.
pub enum Route {
    Local,
    Primary,
    /// The connection's own QUIT or RESET: here, whatever the local copy
    /// holds yet.
    Connection,
    /// The EXEC of a transaction the sidecar refused a command of: answered
    /// here with EXECABORT, the transaction on the primary dropped.
    Aborted,
    /// Refused here with this error (its code first), failing the
    /// transaction it was sent in: HELLO, SUBSCRIBE, CLIENT REPLY and the
    /// like inside MULTI, which would change what the upstream link sends
    /// back halfway through EXEC's reply and leave this connection as it
    /// was; a script of a user with limited permissions.
    Refused(String),
    /// Answered here with this reply: the commands of a transaction whose
    /// link was lost, and an EXEC after lost WATCHes (see [`link_lost`]).
    Reply(fn(&mut ReplyBuf)),
    /// Here, then on the primary too: SCRIPT LOAD, so that the EVALSHA
    /// that follows finds its script wherever it runs (a write's on the
    /// primary, an EVALSHA_RO here), and SCRIPT FLUSH, so that it finds it
    /// nowhere. The reply is this node's.
    Both,
}

/// Writes, commands the table marks `ON_PRIMARY`, SCRIPT KILL and
/// FUNCTION KILL when no script runs here, and everything between MULTI
/// and its EXEC or DISCARD go to the primary, but QUIT and RESET,
/// which end or reset this connection: they are answered here, and a
/// transaction open on the primary goes with the upstream link, closed.
pub fn route(server: &Server, client: &mut Client, spec: &Spec) -> Route {
    let in_multi = client.sidecar_multi.open;
    if in_multi && client.sidecar_multi.lost {
        return lost_transaction(client, spec);
    }
    match spec.name {
        // The script to kill is the one that runs: this node's (an
        // EVAL_RO) or else the primary's (an EVAL the sidecar forwarded,
        // holding up the application's writes with -BUSY).
        "script|kill" | "function|kill" if !in_multi && !server.busy.timed_out() => {
            return Route::Primary
        }
        "multi" => client.sidecar_multi.open = true,
        "exec" if client.sidecar_multi.failed => {
            end_transaction(client);
            return Route::Aborted;
        }
        "exec" if in_multi && client.sidecar_multi.watch_lost => {
            end_transaction(client);
            return Route::Reply(ReplyBuf::null_array);
        }
        // What it queued is done with once the primary answers, and so
        // are the WATCHes (not by an EXEC without MULTI, as in Redis).
        "exec" => {
            let t = &mut client.sidecar_multi;
            t.watching &= !in_multi;
            t.open = false;
        }
        "discard" => client.sidecar_multi = Transaction::default(),
        "watch" if !in_multi => client.sidecar_multi.watching = true,
        "unwatch" if !in_multi => {
            let t = &mut client.sidecar_multi;
            (t.watching, t.watch_lost) = (false, false);
        }
        "select" if in_multi => client.sidecar_multi.selects = true,
        // Run by EXEC on the primary, these would change what the link
        // sends back (its protocol, pushes, no replies at all) halfway
        // through EXEC's reply, with this connection unchanged.
        "hello" | "subscribe" | "psubscribe" | "client|reply" | "client|tracking" if in_multi => {
            let name = spec.name.replace('|', " ").to_uppercase();
            return Route::Refused(format!(
                "ERR {name} inside MULTI is not allowed on a sidecar"
            ));
        }
        "script|load" | "script|flush" if !in_multi => return Route::Both,
        "quit" | "reset" => {
            end_transaction(client);
            return Route::Connection;
        }
        _ => {}
    }
    if in_multi || spec.is_write() || spec.has(flags::ON_PRIMARY) {
        // The primary runs a script's calls as the upstream link's user:
        // a user with limited permissions here would run them with the
        // link's, so this node refuses such a user's scripts.
        let script = matches!(spec.name, "eval" | "evalsha" | "fcall");
        if script && client.user.as_ref().is_some_and(|u| !u.unrestricted) {
            return Route::Refused(format!(
                "NOPERM a script of a user with limited permissions cannot run through a sidecar: its primary would run its commands as the sidecar's link user; run it on the primary, or {}_RO where it only reads",
                spec.name.to_uppercase()
            ));
        }
        Route::Primary
    } else {
        Route::Local
    }
}

/// A command inside a transaction whose link was lost: answered as Redis
/// answers inside a transaction that will fail.
fn lost_transaction(client: &mut Client, spec: &Spec) -> Route {
    match spec.name {
        "exec" => {
            end_transaction(client);
            Route::Aborted
        }
        "discard" => {
            client.sidecar_multi = Transaction::default();
            Route::Reply(ReplyBuf::ok)
        }
        "quit" | "reset" => {
            end_transaction(client);
            Route::Connection
        }
        "multi" => Route::Refused("ERR MULTI calls can not be nested".into()),
        "watch" => Route::Refused("ERR WATCH inside MULTI is not allowed".into()),
        _ => Route::Reply(|out| out.simple("QUEUED")),
    }
}

/// Drops the connection's transaction on the primary, and its WATCHes, by
/// closing the upstream link they belong to (the next write opens another,
/// in the connection's database).
fn end_transaction(client: &mut Client) {
    client.sidecar_multi = Transaction::default();
    client.upstream = None;
}

/// A command the sidecar refuses itself (its arity, an unknown command,
/// its ACL) while a transaction is open on the primary fails that
/// transaction, as Redis fails one whose command it refused: its EXEC
/// answers EXECABORT. A refused EXEC ends the transaction at once.
pub fn refused_in_multi(client: &mut Client, exec: bool) {
    if exec {
        end_transaction(client);
    } else {
        client.sidecar_multi.failed = true;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the primary is not known")]
    NoPrimary,
    #[error("the primary sent a malformed reply")]
    BadReply,
    #[error(
        "the link to the primary was closed, and this connection's transaction or WATCH with it"
    )]
    LinkLost,
}

impl ForwardError {
    /// The reply the application gets when its command could not reach the
    /// primary (Redis's wording for a replica without its primary).
    pub fn reply(&self) -> String {
        format!("MASTERDOWN Link with MASTER is down: the sidecar could not forward the command ({self})")
    }
}

/// Opens a link to the primary, named for whom it serves, as the
/// primary's CLIENT LIST shows: `sidecar-client-<id>` for the connection
/// with that id here (`client`), `sidecar-unblock` for a CLIENT UNBLOCK
/// passed on.
async fn connect(
    server: &Server,
    resp: u32,
    client: Option<u64>,
) -> Result<Upstream, ForwardError> {
    let p = server
        .replication
        .primary()
        .ok_or(ForwardError::NoPrimary)?;
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect((p.host.as_str(), p.port)),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _ = stream.set_nodelay(true);
    let mut up = Upstream {
        stream,
        _counted: LinkCounted::new(server),
        buf: BytesMut::with_capacity(16 * 1024),
        id: 0,
        db: 0,
        resp: 2,
        holds: false,
    };
    let (auth, user) = {
        let cfg = server.config.read();
        (
            cfg.get("masterauth").to_string(),
            cfg.get("masteruser").to_string(),
        )
    };
    let user = if user.is_empty() { "default" } else { &user };
    let mut hello: Vec<&[u8]> = vec![b"HELLO", if resp == 3 { b"3" } else { b"2" }];
    if !auth.is_empty() {
        hello.extend([&b"AUTH"[..], user.as_bytes(), auth.as_bytes()]);
    }
    let name = match client {
        Some(id) => format!("sidecar-client-{id}"),
        None => "sidecar-unblock".to_string(),
    };
    hello.extend([&b"SETNAME"[..], name.as_bytes()]);
    // HELLO's own reply comes in the protocol it asks for.
    up.resp = resp;
    let mut req = Vec::new();
    encode_command(&mut req, &hello);
    encode_command::<&[u8]>(&mut req, &[b"CLIENT", b"ID"]);
    up.stream.write_all(&req).await?;
    let reply = up.reply().await?;
    let id = up.reply().await?;
    refused(&reply)?;
    // A primary running a script past busy-reply-threshold answers CLIENT
    // ID -BUSY (HELLO it answers): the link works, the id is asked again
    // when a command that may wait needs it.
    up.id = parse_int_reply(&id).unwrap_or(0);
    Ok(up)
}

impl Upstream {
    /// Sends one command and returns its reply, as bytes.
    async fn call<A: AsRef<[u8]>>(&mut self, argv: &[A]) -> Result<Vec<u8>, ForwardError> {
        let mut req = Vec::new();
        encode_command(&mut req, argv);
        self.stream.write_all(&req).await?;
        self.reply().await
    }

    async fn reply(&mut self) -> Result<Vec<u8>, ForwardError> {
        read_reply(&mut self.stream, &mut self.buf, self.resp).await
    }

    /// Whether the primary closed the link while it was idle (its
    /// `timeout`, a restart): a look at the socket without waiting, before
    /// anything is sent on it.
    fn closed(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        match socket2::SockRef::from(&self.stream).peek(&mut byte) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Reads one whole reply from the primary, in the protocol the link
/// speaks: RESP2's null bulk and null array (`$-1`, `*-1`, what GETDEL or
/// LPOP of a missing key answer) are not RESP3.
async fn read_reply<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    resp: u32,
) -> Result<Vec<u8>, ForwardError> {
    use redis_protocol::{resp2, resp3};
    loop {
        let whole = if resp == 3 {
            resp3::decode::complete::decode_range(buf).map(|r| r.map(|(_, n)| n))
        } else {
            resp2::decode::decode_range(buf).map(|r| r.map(|(_, n)| n))
        };
        match whole {
            Ok(Some(n)) => return Ok(buf.split_to(n).to_vec()),
            Ok(None) => {}
            Err(_) => return Err(ForwardError::BadReply),
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Whether a forwarded command may wait on the primary: the connection
/// then counts as blocked here, where CLIENT UNBLOCK finds it.
pub fn may_wait(client: &Client, spec: &Spec) -> bool {
    // Inside MULTI it is only queued.
    !client.sidecar_multi.open
        && (spec.has(flags::BLOCKING) || matches!(spec.name, "wait" | "waitaof"))
}

/// Forwards held to go out together (see [`in_run`]).
#[derive(Default)]
pub struct Run {
    commands: Vec<Vec<Bytes>>,
    /// Whether the first of them came inside a transaction.
    in_multi: bool,
}

impl Run {
    /// Adds a command; `in_multi`: a transaction was open before it.
    pub fn push(&mut self, argv: Vec<Bytes>, in_multi: bool) {
        if self.commands.is_empty() {
            self.in_multi = in_multi;
        }
        self.commands.push(argv);
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    pub fn clear(&mut self) {
        self.commands.clear();
    }

    /// Where a run a primary that handed over refused may be sent again
    /// from: its first refused command, or the MULTI of the transaction
    /// that command is in, provided nothing from there on left anything
    /// behind on that node (see [`left_nothing`]). None if a command did,
    /// or the transaction began before the run (its MULTI is not in it).
    fn resend_from(&self, replies: &[Vec<u8>], sent: usize) -> Option<usize> {
        let refused = replies[sent..]
            .iter()
            .position(|r| r.starts_with(b"-READONLY"))?
            + sent;
        let (mut open, mut opened_at) = (self.in_multi, None);
        for (i, argv) in self.commands[..refused].iter().enumerate() {
            let name = &argv[0];
            if !open && name.eq_ignore_ascii_case(b"multi") {
                (open, opened_at) = (true, Some(i));
            } else if open
                && (name.eq_ignore_ascii_case(b"exec") || name.eq_ignore_ascii_case(b"discard"))
            {
                (open, opened_at) = (false, None);
            }
        }
        let from = if open { opened_at? } else { refused };
        let untouched = self.commands[from..]
            .iter()
            .zip(&replies[from..])
            .all(|(argv, reply)| left_nothing(argv, reply));
        (from >= sent && untouched).then_some(from)
    }
}

/// Whether a command, answered so by a primary that handed over, left
/// nothing behind there: a write it refused, a transaction it refused
/// whole (MULTI, the commands queued, the EXECABORT or DISCARD that ended
/// it), a WATCH or UNWATCH (the link they were on is left behind).
fn left_nothing(argv: &[Bytes], reply: &[u8]) -> bool {
    let ok = reply == b"+OK\r\n"
        && ["multi", "discard", "watch", "unwatch"]
            .iter()
            .any(|n| argv[0].eq_ignore_ascii_case(n.as_bytes()));
    ok || reply.starts_with(b"-READONLY")
        || reply.starts_with(b"-EXECABORT")
        || reply == b"+QUEUED\r\n"
}

/// The most commands one run of forwards holds (see [`in_run`]): what
/// it holds while it waits, the requests and their replies, stays small.
pub const RUN_MAX: usize = 256;

/// How a forwarded command goes to the primary: alone, or in a run of
/// forwards sent together, their replies read after (see [`in_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InRun {
    Alone,
    /// It joins the run before it, or starts one.
    Joins,
    /// It starts a run (a transaction's MULTI): the run before it goes
    /// first, so that the primary is asked how far that run's writes reach
    /// before the transaction opens, when the question could only be
    /// queued. A run that ends with a transaction open then holds no write
    /// that ran.
    Starts,
}

/// How a command forwarded now goes: a write, a script, PUBLISH, WATCH, or
/// a transaction's MULTI, queued commands and EXEC or DISCARD, in a run
/// (WAIT and blocking commands alone). None of them waits on the primary
/// or changes what the link is (its protocol; the database a transaction
/// selects is asked for after its EXEC), and the sidecar needs nothing
/// from their replies before the next command. An application that
/// pipelines its writes or transactions then pays one round trip to the
/// primary for the pipeline, not one per command. Under CLIENT REPLY OFF
/// or SKIP, where which reply is silenced depends on the order commands
/// are answered in, each goes alone. Judged before [`route`] sees the
/// command.
pub fn in_run(client: &Client, spec: &Spec) -> InRun {
    let t = client.sidecar_multi;
    // A lost transaction's commands are answered here.
    if !matches!(client.reply_mode, crate::server::client::ReplyMode::On) || t.lost {
        return InRun::Alone;
    }
    let joins = match spec.name {
        // After the EXEC of a transaction that selected a database, the
        // sidecar asks which the link is in before anything else goes.
        _ if t.selects && !t.open => false,
        // The connection's own, or the link's protocol.
        "quit" | "reset" | "hello" => false,
        // A failed one, or one after lost WATCHes, is answered here, its
        // transaction dropped with the link (which must not happen while a
        // run for that link waits to be sent).
        "exec" => t.open && !t.failed && !t.watch_lost,
        _ if t.open => true,
        "multi" => return InRun::Starts,
        // Writes, scripts, PUBLISH, WATCH: whatever goes to the primary
        // but the commands that may wait there.
        _ => (spec.is_write() || spec.has(flags::ON_PRIMARY)) && !may_wait(client, spec),
    };
    if joins {
        InRun::Joins
    } else {
        InRun::Alone
    }
}

/// Runs commands on the primary over this connection's upstream link, all
/// sent at once, and pushes the primary's replies, in order, onto
/// `replies` (on an error, those that came). Records the offset the local
/// copy must reach before this connection reads again. `unblocked`: the
/// connection's registration as blocked (a run of one command that may
/// wait), whose CLIENT UNBLOCK is passed on to the command's client on the
/// primary, which then answers as it does (a timeout's reply, or the
/// UNBLOCKED error).
pub async fn forward(
    server: &Server,
    client: &mut Client,
    run: &Run,
    replies: &mut Vec<Vec<u8>>,
    unblocked: Option<&Waiter>,
) -> Result<(), ForwardError> {
    let resp = client.handle.resp.load(Relaxed);
    let counters = &server.replication.sidecar_counters;
    counters.forwarded.fetch_add(run.len() as u64, Relaxed);
    let mut may_follow = true;
    loop {
        let mut up = match client.upstream.take() {
            // Closed while idle: a new link will do, unless this one held
            // what a new one would not.
            Some(u) if u.closed() => match u.holds {
                true => return Err(ForwardError::LinkLost),
                false => Box::new(connect(server, resp, Some(client.id)).await?),
            },
            Some(u) => u,
            None => Box::new(connect(server, resp, Some(client.id)).await?),
        };
        // What the link held before this run (WATCHes, a transaction)
        // stays with it: the run is not sent again elsewhere.
        let held = up.holds;
        if up.resp != resp {
            // The client switched protocols (HELLO): its link does too,
            // keeping its WATCHes, where a new link would drop them.
            up.resp = resp;
            let r = up
                .call(&[b"HELLO".as_slice(), resp.to_string().as_bytes()])
                .await?;
            refused(&r)?;
        }
        if up.db != client.db {
            let db = client.db.to_string();
            let r = up.call(&[b"SELECT".as_slice(), db.as_bytes()]).await?;
            if r.first() == Some(&b'-') {
                // Each command is answered with why it could not run.
                replies.resize(run.len(), r);
                client.upstream = Some(up);
                return Ok(());
            }
            up.db = client.db;
        }
        if unblocked.is_some() && up.id == 0 {
            up.id = parse_int_reply(&up.call(&[b"CLIENT".as_slice(), b"ID"]).await?).unwrap_or(0);
        }
        // The commands and the question "how far is my last write" go out
        // together: one round trip. Inside a transaction the question
        // would be queued; it is asked after EXEC.
        let ask = !client.sidecar_multi.open;
        let sent = replies.len();
        let mut req = Vec::new();
        for argv in &run.commands[sent..] {
            encode_command(&mut req, argv);
        }
        if ask {
            encode_command::<&[u8]>(&mut req, &[b"REPLCONF", b"WRITE-OFFSET"]);
        }
        // Replies are read while the requests are written: a run whose
        // replies fill both sockets' buffers before its last request is
        // out would otherwise wait on the primary, which waits on it.
        let (id, resp) = (up.id, up.resp);
        let Upstream { stream, buf, .. } = &mut *up;
        let (mut rd, mut wr) = stream.split();
        let send = async { wr.write_all(&req).await.map_err(ForwardError::from) };
        let receive = async {
            for _ in sent..run.len() {
                let reply = read_reply(&mut rd, buf, resp);
                replies.push(match unblocked {
                    Some(w) => passing_unblock(server, id, w, reply).await?,
                    None => reply.await?,
                });
            }
            match ask {
                true => read_reply(&mut rd, buf, resp).await.map(Some),
                false => Ok(None),
            }
        };
        counters.round_trips.fetch_add(1, Relaxed);
        let ((), offset) = tokio::try_join!(send, receive)?;
        // A primary that handed over refuses, from some command on, every
        // write: from there (a refused transaction from its MULTI) the
        // run is sent again where it says, once.
        let follow = match run.resend_from(replies, sent) {
            Some(from) if ask && may_follow && !held => {
                handed_over_to(&mut up).await.map(|n| (from, n))
            }
            _ => None,
        };
        if let Some((from, next)) = follow {
            tracing::info!(
                "The primary handed over to {}:{}: the sidecar follows it",
                next.host,
                next.port
            );
            if server.replication.primary().as_ref() != Some(&next) {
                super::become_replica(server, next);
            }
            // Once: a node that refuses too is answered as it answers.
            may_follow = false;
            // A WATCH that ran there stays behind with the old link.
            if (run.commands[..from].iter()).any(|a| a[0].eq_ignore_ascii_case(b"watch")) {
                let t = &mut client.sidecar_multi;
                t.watch_lost |= std::mem::take(&mut t.watching);
            }
            replies.truncate(from);
            continue;
        }
        if let Some(off) = offset.as_deref().and_then(parse_int_reply) {
            client.written_offset = client.written_offset.max(off);
        }
        if ask && std::mem::take(&mut client.sidecar_multi.selects) {
            // The EXEC of a transaction that selected a database.
            match link_db(&mut up).await {
                Some(db) => {
                    up.db = db;
                    client.db = db;
                    client.handle.db.store(db, Relaxed);
                }
                // The reply is in: the link, in a database not known now,
                // goes instead of the command failing.
                None => return Ok(()),
            }
        }
        let t = client.sidecar_multi;
        up.holds = t.open || t.watching;
        client.upstream = Some(up);
        return Ok(());
    }
}

/// Awaits a forwarded command's reply while passing CLIENT UNBLOCK of the
/// connection on to the command's client on the primary (`id`).
async fn passing_unblock(
    server: &Server,
    id: u64,
    w: &Waiter,
    reply: impl std::future::Future<Output = Result<Vec<u8>, ForwardError>>,
) -> Result<Vec<u8>, ForwardError> {
    tokio::pin!(reply);
    let mut unblocking = None;
    loop {
        let passing = async {
            match unblocking.as_mut() {
                Some(f) => Pin::as_mut(f).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut reply => return r,
            _ = w.wake.notified() => {
                let how = w.unblock.swap(0, Relaxed);
                if how != 0 {
                    unblocking = Some(Box::pin(unblock_upstream(server, id, how)));
                }
            }
            _ = passing => unblocking = None,
        }
    }
}

/// CLIENT UNBLOCK, passed on to a forwarded command's client on the
/// primary, over a link of its own (the command's is waiting). The
/// command may not have reached the primary yet (the primary answers 0):
/// asked again until it is unblocked there, or, as the caller drops this
/// once the command's reply comes, until it was served meanwhile. Best
/// effort: a primary out of reach answers the command anyway, in time.
async fn unblock_upstream(server: &Server, id: u64, how: u8) {
    let reason: &[u8] = if how == UNBLOCK_ERROR {
        b"ERROR"
    } else {
        b"TIMEOUT"
    };
    let id = id.to_string();
    let sent = async {
        let mut up = connect(server, 2, None).await?;
        let ask = [b"CLIENT".as_slice(), b"UNBLOCK", id.as_bytes(), reason];
        while up.call(&ask).await? == b":0\r\n" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, ForwardError>(())
    };
    if let Err(e) = sent.await {
        tracing::warn!("The sidecar could not pass CLIENT UNBLOCK on to the primary: {e}");
    }
}

/// Whom a former primary follows now, from its ROLE.
async fn handed_over_to(up: &mut Upstream) -> Option<super::PrimaryAddr> {
    use redis_protocol::resp3::types::OwnedFrame as F;
    let reply = up.call(&[b"ROLE"]).await.ok()?;
    let (frame, _) = redis_protocol::resp3::decode::complete::decode(&reply).ok()??;
    let F::Array { data, .. } = frame else {
        return None;
    };
    match data.as_slice() {
        [F::BlobString { data: role, .. }, F::BlobString { data: host, .. }, F::Number { data: port, .. }, ..]
            if role.as_slice() == b"slave" =>
        {
            Some(super::PrimaryAddr {
                host: String::from_utf8_lossy(host).into_owned(),
                port: u16::try_from(*port).ok()?,
            })
        }
        _ => None,
    }
}

/// The database the primary says the link is in (CLIENT INFO's `db=`).
async fn link_db(up: &mut Upstream) -> Option<usize> {
    let info = up.call(&[b"CLIENT".as_slice(), b"INFO"]).await.ok()?;
    let at = info.windows(4).position(|w| w == b" db=")? + 4;
    let digits = info[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&info[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The link's own set-up command (HELLO) refused: the error, as the
/// reason the command could not be forwarded.
fn refused(reply: &[u8]) -> Result<(), ForwardError> {
    if reply.first() != Some(&b'-') {
        return Ok(());
    }
    let why = String::from_utf8_lossy(reply).trim().to_string();
    Err(std::io::Error::other(why).into())
}

/// An integer reply's value (`:123\r\n`).
fn parse_int_reply(r: &[u8]) -> Option<u64> {
    let n = crate::protocol::request::parse_i64(r.strip_prefix(b":")?.strip_suffix(b"\r\n")?)?;
    u64::try_from(n).ok()
}

/// Before a local read: waits, up to `sidecar-read-wait-ms`, until the
/// local copy holds this connection's last write. Returns false if it is
/// still behind (the read must go to the primary).
pub async fn caught_up(server: &Server, want: u64) -> bool {
    if want == 0 || server.effects.offset() >= want {
        return true;
    }
    let counters = &server.replication.sidecar_counters;
    counters.reads_waited.fetch_add(1, Relaxed);
    let wait = server.config.read().int("sidecar-read-wait-ms");
    let deadline = Instant::now() + Duration::from_millis(wait.max(0) as u64);
    loop {
        let applied = server.replication.applied.notified();
        tokio::pin!(applied);
        applied.as_mut().enable();
        if server.effects.offset() >= want {
            return true;
        }
        tokio::select! {
            _ = applied => {}
            _ = tokio::time::sleep_until(deadline.into()) => {
                let caught_up = server.effects.offset() >= want;
                if !caught_up {
                    counters.reads_to_primary.fetch_add(1, Relaxed);
                }
                return caught_up;
            }
        }
    }
}
