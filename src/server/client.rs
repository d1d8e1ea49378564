//! Clients: the per-connection state a command sees ([`Client`]) and the
//! shared registry ([`Clients`]) behind CLIENT LIST/INFO/KILL.
//!
//! A connection owns its `Client`; what other connections may need to read
//! (for CLIENT LIST) or change (CLIENT KILL) lives in a shared
//! [`ClientHandle`] of atomics and small mutexes, so listing clients never
//! waits for a busy connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Skip the reply of the next command only.
    Skip,
}

/// Connection-local state.
pub struct Client {
    pub id: u64,
    pub db: usize,
    pub authenticated: bool,
    /// The ACL user this connection runs as (`server::users`), as of
    /// `user_gen`; `None` for internal clients, which are never checked.
    pub user: Option<Arc<super::users::User>>,
    pub user_gen: u64,
    pub reply_mode: ReplyMode,
    pub handle: Arc<ClientHandle>,
    /// The slot of the current request's first argument, computed when the
    /// request was prefetched: `(address, length, slot)` of that argument's
    /// bytes. Set just before the request runs and cleared after it, so it
    /// can only ever describe bytes that are alive and unchanged.
    pub slot_hint: Option<(usize, usize, crate::keyspace::SlotId)>,
    /// The last command name this client sent, exactly as sent, and its
    /// table index: clients repeat themselves, and a byte comparison is
    /// cheaper than a case-folding lookup.
    pub last_command: Option<(bytes::Bytes, usize)>,
    /// Stream offset just past this client's latest effect: with
    /// `appendfsync always` its replies wait until the log is synced there.
    pub last_effect: std::cell::Cell<u64>,
    /// Commands queued since MULTI.
    pub multi: Option<Multi>,
    /// Keys under WATCH: (db, key, whether it is counted as expired: it
    /// was there but expired when watched; see `watches::Watches::touch`).
    pub watching: Vec<(usize, Vec<u8>, Arc<AtomicBool>)>,
    /// Set by the watch registry when a watched key changes.
    pub watch_dirty: Arc<AtomicBool>,
    /// Channels, patterns and shard channels subscribed to, and the queue
    /// messages arrive on; `None` until the first subscription.
    pub subs: Option<Box<Subscriptions>>,
    /// This is the primary's stream being applied on a replica: effects
    /// are not recorded again (the stream's own bytes are), keys are
    /// acted on even past their expiry, nothing is evicted.
    pub from_primary: bool,
    /// The port a replica said it serves on (REPLCONF listening-port).
    pub replica_port: u16,
    /// A replica that said it is a sidecar (`REPLCONF capa sidecar`): it
    /// never takes over in a FAILOVER.
    pub replica_sidecar: bool,
    /// Sidecar mode: this connection's link to the primary, opened at its
    /// first write, and the primary's stream offset just past its last
    /// write (reads wait for the local copy to get there).
    pub upstream: Option<Box<crate::replication::sidecar::Upstream>>,
    pub written_offset: u64,
    /// Sidecar mode: where the connection's transaction on the primary
    /// stands.
    pub sidecar_multi: crate::replication::sidecar::Transaction,
    /// Inside EXEC or a script: whether the unit's MULTI effect is
    /// recorded yet (it is, lazily, when its second effect comes). `None`
    /// outside.
    pub exec_effects: std::cell::Cell<Option<bool>>,
    /// Inside EXEC or a script, the unit's first effect (its database and
    /// arguments) until a second one comes or the unit ends: as in Redis, a
    /// unit with one effect is recorded unwrapped, one command being atomic.
    pub held_effect: std::cell::RefCell<Option<(Option<usize>, Vec<bytes::Bytes>)>>,
    /// A script or function is running this client's commands (some
    /// refuse options there, as XREAD's BLOCK).
    pub in_script: bool,
    /// A blocked command is being retried after a wake-up (see
    /// `server::blocking`): a key it waits on that now holds another type
    /// leaves it waiting, as Redis serves a waiter only from a key of the
    /// type it waits for.
    pub block_retry: bool,
    /// CLIENT TRACKING's mode while it is on (`server::tracking`).
    pub tracking: Option<super::tracking::Mode>,
    /// CLIENT CACHING was called for the next command (or transaction).
    pub caching: bool,
    /// Invalidations this client caused itself in the current command
    /// (`None`: a flush); it is told after the command's reply.
    pub invalidated: std::cell::RefCell<Vec<Option<bytes::Bytes>>>,
    /// While a command runs with BCAST clients about: the keys it changed,
    /// handed to them as it ends ([`super::tracking::Tracking::command_changed`]).
    pub bcast_staged: std::cell::RefCell<Option<Vec<bytes::Bytes>>>,
    /// What CLIENT LIST was last told (see [`Client::publish_state`]).
    shown: Shown,
}

/// The connection state CLIENT LIST shows (Redis's sub, psub, ssub,
/// multi, multi-mem).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shown {
    sub: usize,
    psub: usize,
    ssub: usize,
    multi: i64,
    multi_mem: usize,
}

impl Default for Shown {
    fn default() -> Shown {
        Shown {
            sub: 0,
            psub: 0,
            ssub: 0,
            multi: -1,
            multi_mem: 0,
        }
    }
}

/// A transaction being queued.
#[derive(Default)]
pub struct Multi {
    /// Each queued command and its arguments.
    pub queue: Vec<(&'static crate::command::Spec, Vec<bytes::Bytes>)>,
    /// A command was refused while queueing: EXEC will answer EXECABORT.
    pub failed: bool,
    /// The queued arguments' bytes, with a pointer's worth for each, as
    /// Redis counts CLIENT LIST's `multi-mem`.
    pub bytes: usize,
}

impl Client {
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> Client {
        Client {
            id: handle.id,
            db: 0,
            authenticated,
            user: None,
            user_gen: 0,
            reply_mode: ReplyMode::On,
            handle,
            slot_hint: None,
            last_command: None,
            last_effect: std::cell::Cell::new(0),
            multi: None,
            watching: Vec::new(),
            watch_dirty: Arc::new(AtomicBool::new(false)),
            exec_effects: std::cell::Cell::new(None),
            held_effect: Default::default(),
            in_script: false,
            block_retry: false,
            subs: None,
            from_primary: false,
            replica_port: 0,
            replica_sidecar: false,
            upstream: None,
            written_offset: 0,
            sidecar_multi: Default::default(),
            tracking: None,
            caching: false,
            invalidated: Default::default(),
            bcast_staged: Default::default(),
            shown: Shown::default(),
        }
    }

    /// Runs this connection as `user` from now on (AUTH, HELLO AUTH, RESET,
    /// a new connection), telling CLIENT LIST and stand-ins.
    pub fn set_user(&mut self, users: &super::users::Users, user: Arc<super::users::User>) {
        *self.handle.user.lock() = Some(user.clone());
        self.user = Some(user);
        self.user_gen = users.generation();
    }

    /// The user as it is now: looked up again by name when any user
    /// changed since (a deleted one allows nothing; its connections are
    /// being closed).
    #[inline]
    pub fn current_user(
        &mut self,
        users: &super::users::Users,
    ) -> Option<&Arc<super::users::User>> {
        let gen = users.generation();
        if gen != self.user_gen {
            if let Some(u) = &self.user {
                let fresh = users
                    .get(&u.name)
                    .unwrap_or_else(|| Arc::new(super::users::User::removed(&u.name)));
                *self.handle.user.lock() = Some(fresh.clone());
                self.user = Some(fresh);
            }
            self.user_gen = gen;
        }
        self.user.as_ref()
    }

    /// Publishes what CLIENT LIST shows of this connection's state, when it
    /// has changed (called after each command: a comparison, no stores
    /// while nothing changes).
    #[inline]
    pub fn publish_state(&mut self) {
        // Most connections never subscribe nor queue: nothing to compare.
        if self.subs.is_none() && self.multi.is_none() && self.shown == Shown::default() {
            return;
        }
        self.publish_changed();
    }

    #[inline(never)]
    fn publish_changed(&mut self) {
        let (sub, psub, ssub) = self.subs.as_ref().map_or((0, 0, 0), |s| {
            (s.channels.len(), s.patterns.len(), s.shard.len())
        });
        let (multi, multi_mem) = self
            .multi
            .as_ref()
            .map_or((-1, 0), |m| (m.queue.len() as i64, m.bytes));
        let now = Shown {
            sub,
            psub,
            ssub,
            multi,
            multi_mem,
        };
        if now != self.shown {
            let h = &self.handle;
            h.subs.store(sub, Relaxed);
            h.psubs.store(psub, Relaxed);
            h.ssubs.store(ssub, Relaxed);
            h.multi.store(multi, Relaxed);
            h.multi_mem.store(multi_mem, Relaxed);
            self.shown = now;
        }
    }

    /// In no state of its own that a command could depend on or change
    /// but the database, protocol and transaction: authenticated, replies
    /// on, not subscribed nor forwarding to a sidecar's primary, an
    /// ordinary client (what a stand-in may answer for: `connection::
    /// stand_in`, which takes care of the transaction).
    pub fn plain(&self) -> bool {
        self.authenticated
            && matches!(self.reply_mode, ReplyMode::On)
            && self.subs.is_none()
            && self.upstream.is_none()
            && self.handle.kind.load(Relaxed) == KIND_NORMAL
    }

    /// Subscribed to anything: RESP2 connections then accept only the
    /// pub/sub commands, PING, QUIT and RESET.
    pub fn subscribed(&self) -> bool {
        self.subs
            .as_ref()
            .is_some_and(|s| s.total() + s.shard.len() > 0)
    }
}

pub struct Subscriptions {
    pub sub: Arc<super::pubsub::Subscriber>,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Arc<super::pubsub::Message>>,
    /// Ordered, so that UNSUBSCRIBE with no argument answers in the same
    /// order on every node (Redis's is its dict's, seeded per process).
    pub channels: std::collections::BTreeSet<bytes::Bytes>,
    pub patterns: std::collections::BTreeSet<bytes::Bytes>,
    pub shard: std::collections::BTreeSet<bytes::Bytes>,
}

impl Subscriptions {
    /// The count SUBSCRIBE and PSUBSCRIBE replies carry.
    pub fn total(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// What the rest of the server may see or change of a connection.
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<String>,
    pub lib_name: Mutex<String>,
    /// The ACL user the connection runs as (CLIENT LIST's `user=`, CLIENT
    /// KILL USER, ACL DELUSER, and what a stand-in runs as).
    pub user: Mutex<Option<Arc<super::users::User>>>,
    pub lib_ver: Mutex<String>,
    pub db: AtomicUsize,
    pub resp: AtomicU32,
    /// Unix ms of the last command, for `idle=` and `timeout`.
    pub last_interaction: AtomicI64,
    /// Index of the last command in `command::TABLE.all`.
    pub last_cmd: AtomicUsize,
    /// Bytes in the read buffer: all of a batch while it runs (as Redis's
    /// `qbuf` holds a round's commands until the round ends), what is left
    /// of a request once it ends.
    pub query_buf: AtomicUsize,
    /// Room left in the read buffer (0 while it is back in the pool).
    pub query_free: AtomicUsize,
    /// The socket's descriptor (-1 for clients without one).
    pub fd: std::sync::atomic::AtomicI32,
    /// What the connection's read and reply buffers hold (their capacity),
    /// as of its last batch: its share of `mem_clients_normal`.
    pub buffers: AtomicUsize,
    pub output_mem: AtomicUsize,
    pub monitor: AtomicBool,
    pub no_evict: AtomicBool,
    /// CLIENT NO-TOUCH: this client's commands leave keys' LRU/LFU alone.
    pub no_touch: AtomicBool,
    /// Waiting in a blocking command or WAIT (CLIENT LIST's `b`).
    pub blocked: AtomicBool,
    /// Published by [`Client::publish_state`].
    pub subs: AtomicUsize,
    pub psubs: AtomicUsize,
    pub ssubs: AtomicUsize,
    pub multi: std::sync::atomic::AtomicI64,
    pub multi_mem: AtomicUsize,
    pub killed: AtomicBool,
    /// Wakes the connection's task when it is killed (see `until_killed`).
    kill_waker: atomic_waker::AtomicWaker,
    pub commands: AtomicU64,
    /// [`KIND_NORMAL`], [`KIND_REPLICA`] or [`KIND_PRIMARY`], for CLIENT
    /// LIST's flags and CLIENT KILL TYPE.
    pub kind: std::sync::atomic::AtomicU8,
    /// CLIENT TRACKING's `tracking::FLAG_*` and redirect id, for CLIENT LIST.
    pub tracking: std::sync::atomic::AtomicU8,
    pub redirect: AtomicU64,
    /// What other connections send this one.
    pub inbox: Inbox,
    /// The I/O thread serving it (`server::this_io_thread`; 0: none).
    pub thread: AtomicU64,
    /// Waiting for its next request with nothing read or to write, in no
    /// mode of its own: a stand-in may answer it while a script holds its
    /// thread (`connection::stand_in`).
    pub at_rest: AtomicBool,
    /// What a stand-in did to its transaction, for the connection to take
    /// on before its next request (`connection::STOOD_*`).
    pub stood_in: std::sync::atomic::AtomicU8,
}

/// Ready once `flag` is set; whoever sets it wakes `waker` afterwards.
/// Only one task waits on a waker, and waiting takes no lock (tokio's
/// `Notify` takes one each time its wait is polled), which matters to
/// waits set up again for every batch a connection reads.
async fn until(waker: &atomic_waker::AtomicWaker, flag: &AtomicBool) {
    std::future::poll_fn(|cx| {
        waker.register(cx.waker());
        if flag.load(Relaxed) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// Messages from other connections (invalidations, a broken redirect),
/// written between the connection's batches. A queue and a wake-up rather
/// than a channel, whose first block an idle connection would carry.
#[derive(Default)]
pub struct Inbox {
    queue: Mutex<std::collections::VecDeque<super::tracking::Push>>,
    /// Set with the queue's lock held once it has something: every batch
    /// checks it, and an empty inbox costs that check only.
    queued: AtomicBool,
    waker: atomic_waker::AtomicWaker,
}

impl Inbox {
    pub fn send(&self, p: super::tracking::Push) {
        {
            let mut q = self.queue.lock();
            q.push_back(p);
            self.queued.store(true, Relaxed);
        }
        self.waker.wake();
    }

    /// Hands over everything queued, oldest first.
    pub fn drain(&self, each: impl FnMut(super::tracking::Push)) {
        if !self.queued.load(Relaxed) {
            return;
        }
        let queued = {
            let mut q = self.queue.lock();
            self.queued.store(false, Relaxed);
            std::mem::take(&mut *q)
        };
        queued.into_iter().for_each(each);
    }

    /// Ready once something is queued; for the connection's own task.
    pub async fn ready(&self) {
        until(&self.waker, &self.queued).await
    }
}

pub const KIND_NORMAL: u8 = 0;
/// A replica's connection on its primary (flag `S`).
pub const KIND_REPLICA: u8 = 1;
/// The primary's stream on a replica (flag `M`).
pub const KIND_PRIMARY: u8 = 2;

impl ClientHandle {
    pub fn set_kind(&self, kind: u8) {
        self.kind.store(kind, Relaxed);
    }

    /// CLIENT KILL/LIST TYPE's name for this client.
    pub fn type_name(&self) -> &'static str {
        match self.kind.load(Relaxed) {
            KIND_REPLICA => "replica",
            KIND_PRIMARY => "master",
            _ if self.subs.load(Relaxed) + self.psubs.load(Relaxed) + self.ssubs.load(Relaxed)
                > 0 =>
            {
                "pubsub"
            }
            _ => "normal",
        }
    }

    pub fn name(&self) -> String {
        self.name.lock().clone()
    }

    /// Queues a message for the connection to write between its batches.
    pub fn push(&self, p: super::tracking::Push) {
        self.inbox.send(p);
    }

    /// The name of the ACL user the connection runs as.
    pub fn user_name(&self) -> String {
        match &*self.user.lock() {
            Some(u) => u.name.clone(),
            None => "default".to_string(),
        }
    }

    /// Asks the connection to close as soon as it can.
    pub fn kill(&self) {
        self.killed.store(true, Relaxed);
        self.kill_waker.wake();
    }

    /// Ready once the connection is killed; for its own task.
    pub async fn until_killed(&self) {
        until(&self.kill_waker, &self.killed).await
    }

    /// One line of CLIENT LIST, with Redis's field names and order.
    /// `argv_mem`: the arguments of the command this client is running
    /// (the caller's own line; 0 for the others, which are between
    /// commands).
    pub fn describe(&self, now_ms: i64, argv_mem: usize) -> String {
        let age = self.created.elapsed().as_secs();
        let idle = ((now_ms - self.last_interaction.load(Relaxed)).max(0) / 1000) as u64;
        use super::tracking::{FLAG_BCAST, FLAG_BROKEN_REDIRECT, FLAG_ON};
        let mut flags = String::from(match self.kind.load(Relaxed) {
            KIND_REPLICA => "S",
            KIND_PRIMARY => "M",
            _ if self.monitor.load(Relaxed) => "O",
            _ => "",
        });
        let (sub, psub, ssub) = (
            self.subs.load(Relaxed),
            self.psubs.load(Relaxed),
            self.ssubs.load(Relaxed),
        );
        let multi = self.multi.load(Relaxed);
        if sub + psub + ssub > 0 {
            flags.push('P');
        }
        if multi >= 0 {
            flags.push('x');
        }
        if self.blocked.load(Relaxed) {
            flags.push('b');
        }
        let tracking = self.tracking.load(Relaxed);
        for (bit, c) in [
            (FLAG_ON, 't'),
            (FLAG_BROKEN_REDIRECT, 'R'),
            (FLAG_BCAST, 'B'),
        ] {
            if tracking & bit != 0 {
                flags.push(c);
            }
        }
        if self.no_evict.load(Relaxed) {
            flags.push('e');
        }
        if self.no_touch.load(Relaxed) {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let redir = if tracking & FLAG_ON != 0 {
            self.redirect.load(Relaxed) as i64
        } else {
            -1
        };
        let cmd = crate::command::TABLE
            .all
            .get(self.last_cmd.load(Relaxed))
            .map(|s| s.name)
            .unwrap_or("NULL");
        let qbuf = self.query_buf.load(Relaxed);
        let omem = self.output_mem.load(Relaxed);
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} \
             qbuf={} qbuf-free={} argv-mem={} multi-mem={} rbs=16384 rbp=0 obl=0 oll=0 omem={} tot-mem={} \
             events=r cmd={} user={} redir={} resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd.load(Relaxed),
            self.name(),
            age,
            idle,
            flags,
            self.db.load(Relaxed),
            sub,
            psub,
            ssub,
            multi,
            qbuf,
            self.query_free.load(Relaxed),
            argv_mem,
            self.multi_mem.load(Relaxed),
            omem,
            self.buffers.load(Relaxed) + omem + self.multi_mem.load(Relaxed) + argv_mem,
            cmd,
            self.user_name(),
            redir,
            self.resp.load(Relaxed),
            self.lib_name.lock(),
            self.lib_ver.lock(),
        )
    }
}

#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
}

impl Clients {
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr, now_ms: i64) -> Arc<ClientHandle> {
        let h = self.detached(addr, laddr, now_ms);
        self.map.lock().insert(h.id, h.clone());
        h
    }

    /// A handle no client list shows: for the server's own work through
    /// commands' code (the cron's evictions).
    pub fn detached(&self, addr: SocketAddr, laddr: SocketAddr, now_ms: i64) -> Arc<ClientHandle> {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(String::new()),
            lib_name: Mutex::new(String::new()),
            user: Mutex::new(None),
            lib_ver: Mutex::new(String::new()),
            db: AtomicUsize::new(0),
            resp: AtomicU32::new(2),
            last_interaction: AtomicI64::new(now_ms),
            last_cmd: AtomicUsize::new(usize::MAX),
            query_buf: AtomicUsize::new(0),
            query_free: AtomicUsize::new(0),
            fd: std::sync::atomic::AtomicI32::new(-1),
            buffers: AtomicUsize::new(0),
            output_mem: AtomicUsize::new(0),
            monitor: AtomicBool::new(false),
            no_evict: AtomicBool::new(false),
            no_touch: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            subs: AtomicUsize::new(0),
            psubs: AtomicUsize::new(0),
            ssubs: AtomicUsize::new(0),
            multi: std::sync::atomic::AtomicI64::new(-1),
            multi_mem: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
            kill_waker: atomic_waker::AtomicWaker::new(),
            commands: AtomicU64::new(0),
            kind: std::sync::atomic::AtomicU8::new(KIND_NORMAL),
            tracking: std::sync::atomic::AtomicU8::new(0),
            redirect: AtomicU64::new(0),
            inbox: Inbox::default(),
            thread: AtomicU64::new(0),
            at_rest: AtomicBool::new(false),
            stood_in: std::sync::atomic::AtomicU8::new(0),
        })
    }

    pub fn unregister(&self, id: u64) {
        self.map.lock().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.map.lock().len()
    }

    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.map.lock().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.map.lock().get(&id).cloned()
    }
}
