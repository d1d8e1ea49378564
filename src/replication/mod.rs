//! Replication: a primary streams its effects to replicas, which keep an
//! exact copy and serve reads.
//!
//! A replica's copy changes only by its primary's stream. The stream is the
//! primary's effect stream (`effects`), byte for byte: a replica appends
//! what it receives to its own effect stream unchanged, so both count the
//! same replication offset, a replica's log and backlog hold the same bytes
//! as its primary's, and a replica can feed replicas of its own (chaining).
//!
//! ```text
//!  replica                                   primary
//!    │ PING, AUTH masterauth, REPLCONF listening-port P, REPLCONF capa psync2
//!    │ PSYNC <replid> <offset+1> ─────────────────▶ history known, and the
//!    │                                            │ backlog still holds
//!    │                                            │ offset+1 onwards?
//!    │ ◀──── +CONTINUE <replid>  + missing bytes ──┤ yes: partial resync
//!    │ ◀──── +FULLRESYNC <replid> <S> ─────────────┘ no: full sync
//!    │ ◀──── $EOF:<40-byte mark> records... mark     snapshot at instant S,
//!    │        (flush, load while -LOADING)           streamed from memory
//!    │ ◀════ effect stream from S (or offset+1) ═══  copied into this
//!    │ ════▶ REPLCONF ACK <offset>                   replica's tap
//!    │        (every second, and at once for a GETACK in the stream)
//! ```
//!
//! Invariants:
//! - A replica never changes its copy except by applying its primary's
//!   stream: client writes get `-READONLY`, expired keys are hidden from
//!   readers but left in place until the primary's `DEL` arrives, active
//!   expiry and eviction do not run.
//! - `(replid, offset)` names a point in one history. A full sync adopts the
//!   primary's; a promotion (`REPLICAOF NO ONE`) starts a new id and keeps
//!   the old one as replid2 up to the promotion's offset, so replicas that
//!   followed the old primary continue from the new one without a full
//!   sync. A node whose id changes (promoted, or its primary was) drops
//!   its own replicas in the same step, so that none follows the new
//!   history under the old id (`effects::Close::Superseded`). The log
//!   records the identity (`effects::STATE_RECORD`), so a restarted node
//!   knows where its data stands; a full sync first forgets the old
//!   identity, so a crash half-way through one is never mistaken for a
//!   valid copy.
//! - A replica's output buffer is its tap: bytes appended since it last
//!   wrote. A replica whose tap passes `client-output-buffer-limit replica`
//!   is dropped (and comes back with a partial or full sync) instead of
//!   growing the primary's memory.
//! - One full sync runs at a time (the keyspace captures one snapshot at a
//!   time; a rewrite or BGSAVE in progress delays it): many replicas
//!   starting together queue instead of flattening the primary.
//!
//! Layout: `primary.rs` serves PSYNC (the feeder of one replica);
//! `replica.rs` is the link to this node's primary (handshake, load, apply,
//! ack); `sidecar.rs` forwards a sidecar's writes to its primary.

pub mod failover;
pub mod primary;
pub mod replica;
pub mod sidecar;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::server::now_ms;

/// Where a replica's link to its primary stands (ROLE's state words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    Connect = 0,
    Connecting = 1,
    Sync = 2,
    Connected = 3,
}

impl LinkState {
    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connecting,
            2 => LinkState::Sync,
            3 => LinkState::Connected,
            _ => LinkState::Connect,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// A primary to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryAddr {
    pub host: String,
    pub port: u16,
}

impl PrimaryAddr {
    /// Parses the `replicaof` directive's canonical value ("" for none).
    pub fn parse(v: &str) -> Option<PrimaryAddr> {
        let mut w = v.split_whitespace();
        let host = w.next()?.to_string();
        let port = w.next()?.parse().ok()?;
        Some(PrimaryAddr { host, port })
    }
}

/// Where an attached replica stands (INFO's `state=`).
pub const WAIT_SYNC: u8 = 0;
pub const SENDING_SNAPSHOT: u8 = 1;
pub const ONLINE: u8 = 2;

/// A replica attached to this node, as INFO, ROLE and WAIT see it.
pub struct ReplicaEntry {
    pub ip: String,
    /// The port it serves clients on (REPLCONF listening-port).
    pub port: u16,
    /// A sidecar (it said so with `REPLCONF capa sidecar`): it lives in an
    /// application's pod and never takes over in a FAILOVER.
    pub sidecar: bool,
    /// [`WAIT_SYNC`], [`SENDING_SNAPSHOT`] or [`ONLINE`].
    pub state: AtomicU8,
    pub ack_offset: AtomicU64,
    /// How far its own log is synced, as its ACKs say (0 without a log).
    pub fack_offset: AtomicU64,
    /// Unix ms of its last ACK.
    pub ack_ms: AtomicI64,
    /// Whether it acknowledges at all: not a reader attached with SYNC (a
    /// tool), which, as in Redis, is never dropped for its silence.
    pub acks: bool,
}

impl ReplicaEntry {
    pub fn state_word(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            WAIT_SYNC => "wait_bgsave",
            SENDING_SNAPSHOT => "send_bulk",
            _ => "online",
        }
    }
}

/// The node's replication state: its role, its link to its primary (as a
/// replica), the replicas it feeds (as a primary), and the counters INFO
/// shows. Each part guards itself.
pub struct Replication {
    /// The role, read on every write's check and every key lookup.
    is_replica: AtomicBool,
    /// The primary to follow (`None`: be a primary). The link task watches
    /// it; REPLICAOF changes it.
    pub target: watch::Sender<Option<PrimaryAddr>>,
    link_state: AtomicU8,
    /// Unix ms of the last byte from the primary.
    pub last_io_ms: AtomicI64,
    /// When the link went down (Unix ms), for `master_link_down_since_seconds`.
    pub link_down_since_ms: AtomicI64,
    /// Bytes of the full sync received so far and expected (0: unknown).
    pub sync_read_bytes: AtomicU64,
    pub replicas: Mutex<Vec<Arc<ReplicaEntry>>>,
    /// Woken whenever a replica acknowledges (WAIT waits on it).
    pub acked: Notify,
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Replicas whose last ACK is within `min-replicas-max-lag`, refreshed
    /// by the cron.
    pub good_replicas: AtomicUsize,
    /// One full sync at a time (see the module docs).
    pub full_sync: tokio::sync::Semaphore,
    /// Held shared by a replica's applier from running one command of its
    /// primary's stream until that command's bytes are in this node's own
    /// stream; held exclusively while a snapshot starts. So a snapshot's
    /// instant never falls between a change and its bytes, and a replica of
    /// this replica neither misses nor repeats a command.
    pub apply: parking_lot::RwLock<()>,
    /// Woken whenever the replica applied a batch of its primary's stream
    /// (a sidecar's reads wait on it for their connection's writes).
    pub applied: Notify,
    /// Unix ms of the last PING written into the stream for replicas.
    last_ping_ms: AtomicI64,
    /// Sidecar mode (`sidecar yes`): writes are forwarded to the primary.
    pub sidecar: bool,
    /// A first sync has completed since start-up; a sidecar answers
    /// `-LOADING` until then.
    pub ready: AtomicBool,
    pub sidecar_counters: sidecar::Counters,
    /// FAILOVER's state (`failover::NONE`, `WAITING`, `IN_PROGRESS`) and
    /// plan.
    pub failover_state: AtomicU8,
    pub failover: Mutex<failover::Plan>,
}

impl Replication {
    pub fn new(target: Option<PrimaryAddr>, sidecar: bool) -> Replication {
        Replication {
            is_replica: AtomicBool::new(target.is_some()),
            target: watch::channel(target).0,
            link_state: AtomicU8::new(LinkState::Connect as u8),
            last_io_ms: AtomicI64::new(0),
            link_down_since_ms: AtomicI64::new(now_ms()),
            sync_read_bytes: AtomicU64::new(0),
            replicas: Mutex::new(Vec::new()),
            acked: Notify::new(),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            good_replicas: AtomicUsize::new(0),
            full_sync: tokio::sync::Semaphore::new(1),
            apply: parking_lot::RwLock::new(()),
            applied: Notify::new(),
            last_ping_ms: AtomicI64::new(0),
            sidecar,
            ready: AtomicBool::new(false),
            sidecar_counters: Default::default(),
            failover_state: AtomicU8::new(failover::NONE),
            failover: Mutex::new(failover::Plan::default()),
        }
    }

    pub fn is_replica(&self) -> bool {
        self.is_replica.load(Ordering::Relaxed)
    }

    pub fn primary(&self) -> Option<PrimaryAddr> {
        self.target.borrow().clone()
    }

    /// Follows `target` from now on (`None`: become a primary).
    pub fn set_target(&self, target: Option<PrimaryAddr>) {
        self.is_replica.store(target.is_some(), Ordering::Relaxed);
        if target.is_some() {
            self.set_link(LinkState::Connect);
        }
        self.target.send_replace(target);
    }

    pub fn link(&self) -> LinkState {
        LinkState::from_u8(self.link_state.load(Ordering::Relaxed))
    }

    pub fn set_link(&self, s: LinkState) {
        let before = self.link_state.swap(s as u8, Ordering::Relaxed);
        if s != LinkState::Connected && before == LinkState::Connected as u8 {
            self.link_down_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    pub fn link_up(&self) -> bool {
        self.link() == LinkState::Connected
    }

    pub fn add_replica(&self, r: Arc<ReplicaEntry>) {
        let mut replicas = self.replicas.lock();
        // The ping period runs from the first replica's arrival: a PING the
        // moment one attaches would only stand first in its stream (Redis
        // pings on its own clock, not on a replica's arrival).
        if replicas.is_empty() {
            self.last_ping_ms
                .store(crate::server::now_ms(), Ordering::Relaxed);
        }
        replicas.push(r);
    }

    pub fn remove_replica(&self, r: &Arc<ReplicaEntry>) {
        self.replicas.lock().retain(|x| !Arc::ptr_eq(x, r));
    }

    /// Replicas whose acknowledged offset is at least `offset`.
    pub fn acked_at_least(&self, offset: u64) -> usize {
        self.online_at_least(offset, |r| &r.ack_offset)
    }

    /// Replicas whose log is synced to at least `offset` (WAITAOF).
    pub fn synced_at_least(&self, offset: u64) -> usize {
        self.online_at_least(offset, |r| &r.fack_offset)
    }

    fn online_at_least(&self, offset: u64, field: impl Fn(&ReplicaEntry) -> &AtomicU64) -> usize {
        self.replicas
            .lock()
            .iter()
            .filter(|r| r.state.load(Ordering::Relaxed) == ONLINE)
            .filter(|r| field(r).load(Ordering::Relaxed) >= offset)
            .count()
    }

    /// Whether a primary with replicas should ping them now (every
    /// `period_secs`).
    pub fn ping_due(&self, now: i64, period_secs: i64) -> bool {
        if self.is_replica() || self.replicas.lock().is_empty() {
            return false;
        }
        let last = self.last_ping_ms.load(Ordering::Relaxed);
        if now - last < period_secs * 1000 {
            return false;
        }
        self.last_ping_ms.store(now, Ordering::Relaxed);
        true
    }

    /// The cron's refresh of `good_replicas`: online replicas heard from
    /// within `max_lag_secs`.
    pub fn refresh_good(&self, max_lag_secs: i64, now: i64) {
        let n = self
            .replicas
            .lock()
            .iter()
            .filter(|r| r.state.load(Ordering::Relaxed) == ONLINE)
            .filter(|r| now - r.ack_ms.load(Ordering::Relaxed) <= max_lag_secs * 1000)
            .count();
        self.good_replicas.store(n, Ordering::Relaxed);
    }
}

/// Makes this node a primary (REPLICAOF NO ONE): a new history starts
/// here, and the old one stays valid up to now, so replicas that followed
/// it continue from this node.
pub fn become_primary(server: &crate::server::Server) {
    if server.replication.is_replica() {
        server.effects.fork_history(None);
        server.replication.set_target(None);
        server
            .config
            .write()
            .set_internal("replicaof", String::new());
    }
}

/// Makes this node a replica of `target` (REPLICAOF host port). Its own
/// replicas follow it, and through it the new primary.
pub fn become_replica(server: &crate::server::Server, target: PrimaryAddr) {
    server
        .config
        .write()
        .set_internal("replicaof", format!("{} {}", target.host, target.port));
    server.replication.set_target(Some(target));
}

/// INFO's `# Replication` section, with Redis's field names.
pub fn info(server: &crate::server::Server, o: &mut String) {
    use std::fmt::Write;
    let r = &server.replication;
    let st = server.effects.info();
    let (replid, replid2, second) = server.effects.ids();
    o.push_str("# Replication\r\n");
    if let Some(p) = r.primary() {
        let now = now_ms();
        let up = r.link_up();
        let _ = write!(
            o,
            "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\n\
             master_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\n\
             slave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\n",
            p.host,
            p.port,
            if up { "up" } else { "down" },
            if up {
                (now - r.last_io_ms.load(Ordering::Relaxed)).max(0) / 1000
            } else {
                -1
            },
            (r.link() == LinkState::Sync) as u8,
            st.offset,
            st.offset,
        );
        if r.link() == LinkState::Sync {
            let _ = write!(
                o,
                "master_sync_total_bytes:-1\r\nmaster_sync_read_bytes:{}\r\n",
                r.sync_read_bytes.load(Ordering::Relaxed)
            );
        }
        if !up {
            let _ = write!(
                o,
                "master_link_down_since_seconds:{}\r\n",
                (now - r.link_down_since_ms.load(Ordering::Relaxed)).max(0) / 1000
            );
        }
        if r.sidecar {
            let c = &r.sidecar_counters;
            let _ = write!(
                o,
                "sidecar:1\r\nsidecar_ready:{}\r\nsidecar_forwarded_commands:{}\r\n\
                 sidecar_forward_round_trips:{}\r\nsidecar_reads_waited:{}\r\n\
                 sidecar_reads_sent_to_primary:{}\r\nsidecar_primary_links:{}\r\n",
                r.ready.load(Ordering::Relaxed) as u8,
                c.forwarded.load(Ordering::Relaxed),
                c.round_trips.load(Ordering::Relaxed),
                c.reads_waited.load(Ordering::Relaxed),
                c.reads_to_primary.load(Ordering::Relaxed),
                c.links(),
            );
        }
        let (priority, read_only) = {
            let cfg = server.config.read();
            (
                cfg.int("replica-priority"),
                cfg.get("replica-read-only") == "yes",
            )
        };
        let _ = write!(
            o,
            "slave_priority:{priority}\r\nslave_read_only:{}\r\nreplica_announced:1\r\n",
            read_only as u8
        );
    } else {
        o.push_str("role:master\r\n");
    }
    let replicas = r.replicas.lock().clone();
    let now = now_ms();
    let _ = write!(o, "connected_slaves:{}\r\n", replicas.len());
    for (i, e) in replicas.iter().enumerate() {
        let _ = write!(
            o,
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            e.ip,
            e.port,
            e.state_word(),
            e.ack_offset.load(Ordering::Relaxed),
            (now - e.ack_ms.load(Ordering::Relaxed)).max(0) / 1000
        );
    }
    let _ = write!(
        o,
        "master_failover_state:{}\r\nmaster_replid:{replid}\r\nmaster_replid2:{replid2}\r\n\
         master_repl_offset:{}\r\nsecond_repl_offset:{second}\r\nrepl_backlog_active:{}\r\n\
         repl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n",
        failover::state_word(r.failover_state.load(Ordering::Relaxed)),
        st.offset,
        st.backlog_active as u8,
        st.backlog_size,
        st.backlog_first_byte_offset,
        st.backlog_histlen,
    );
}
