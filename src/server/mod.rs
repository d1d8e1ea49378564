//! The server: shared state, listeners, the cron, and graceful shutdown.
//!
//! ```text
//!  main ─▶ server::run(config)
//!            ├─ bind every `bind` address on `port`
//!            ├─ `io-threads` threads (one per core but one by default), each a
//!            │   single-threaded runtime accepting from every listener;
//!            │   one task per connection (connection.rs), never migrated
//!            ├─ cron, `hz` times a second: active expiry, stats sampling,
//!            │   idle-client timeout, memory peak
//!            └─ waits for SIGTERM / SIGINT / SHUTDOWN, then stops accepting,
//!               tells every connection to finish, and returns
//! ```
//!
//! [`Server`] is what connections share. Its parts are independent (keyspace,
//! effect stream, clients, statistics, configuration) and each guards
//! itself; nothing here is a global lock around "the server".

pub mod acllog;
pub mod blocking;
pub mod busy;
pub mod client;
pub mod connection;
pub mod expire;
pub mod info;
pub mod latency;
pub mod lazyfree;
pub mod listeners;
pub mod memory;
pub mod notify;
pub mod pubsub;
pub mod slowlog;
pub mod spin;
pub mod stats;
pub mod supervise;
pub mod tracking;
pub mod users;
pub mod watches;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Notify};

use crate::config::Config;
use crate::effects::EffectStream;
use crate::keyspace::Keyspace;

/// Settings read on every request, mirrored from [`Config`] into atomics so
/// the hot path never takes the configuration lock.
pub struct Tunables {
    pub max_bulk_len: AtomicI64,
    pub query_buffer_limit: AtomicI64,
    pub slowlog_slower_than: AtomicI64,
    pub slowlog_max_len: AtomicI64,
    pub timeout_secs: AtomicI64,
    pub maxclients: AtomicI64,
    pub tcp_keepalive: AtomicI64,
    pub hz: AtomicI64,
    pub maxmemory: AtomicI64,
    /// Index in `keyspace::evict::POLICY_NAMES`.
    pub maxmemory_policy: AtomicI64,
    pub maxmemory_samples: AtomicI64,
    pub lfu_log_factor: AtomicI64,
    pub acllog_max_len: AtomicI64,
    pub lfu_decay_time: AtomicI64,
    pub tracking_table_max_keys: AtomicI64,
    pub hll_sparse_max_bytes: AtomicI64,
    /// The compact encodings' limits, named by `ENCODING_DIRECTIVES`.
    pub encoding_limits: [AtomicI64; 10],
    /// DEBUG QUICKLIST-PACKED-THRESHOLD: list elements this long or
    /// longer are kept alone in a chunk (not a directive, as in Redis).
    pub list_packed_threshold: AtomicI64,
    pub min_replicas_to_write: AtomicI64,
    /// `repl-timeout`, read by the replication links on every batch.
    pub repl_timeout_secs: AtomicI64,
    /// busy-reply-threshold (lua-time-limit), read by every script run.
    pub busy_reply_ms: AtomicI64,
    /// `io-threads-poll-usec` (see `spin`).
    pub io_poll_usec: AtomicI64,
    pub replica_read_only: AtomicBool,
    pub replica_serve_stale: AtomicBool,
    pub latency_tracking: AtomicBool,
    /// lazyfree-lazy-user-del: DEL frees as UNLINK does.
    pub lazy_user_del: AtomicBool,
}

const ENCODING_DIRECTIVES: [&str; 10] = [
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "set-max-listpack-entries",
    "set-max-listpack-value",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "set-max-intset-entries",
    "list-max-listpack-size",
    "stream-node-max-entries",
    "stream-node-max-bytes",
];

impl Tunables {
    fn from(cfg: &Config) -> Tunables {
        let t = Tunables {
            max_bulk_len: AtomicI64::new(0),
            query_buffer_limit: AtomicI64::new(0),
            slowlog_slower_than: AtomicI64::new(0),
            slowlog_max_len: AtomicI64::new(0),
            timeout_secs: AtomicI64::new(0),
            maxclients: AtomicI64::new(0),
            tcp_keepalive: AtomicI64::new(0),
            hz: AtomicI64::new(0),
            encoding_limits: Default::default(),
            list_packed_threshold: AtomicI64::new(crate::keyspace::list::PLAIN_DEFAULT as i64),
            maxmemory: AtomicI64::new(0),
            maxmemory_policy: AtomicI64::new(0),
            maxmemory_samples: AtomicI64::new(5),
            lfu_log_factor: AtomicI64::new(10),
            acllog_max_len: AtomicI64::new(128),
            lfu_decay_time: AtomicI64::new(1),
            tracking_table_max_keys: AtomicI64::new(1_000_000),
            hll_sparse_max_bytes: AtomicI64::new(3000),
            min_replicas_to_write: AtomicI64::new(0),
            repl_timeout_secs: AtomicI64::new(60),
            busy_reply_ms: AtomicI64::new(5000),
            io_poll_usec: AtomicI64::new(20),
            replica_read_only: AtomicBool::new(true),
            replica_serve_stale: AtomicBool::new(true),
            latency_tracking: AtomicBool::new(true),
            lazy_user_del: AtomicBool::new(false),
        };
        for name in [
            "proto-max-bulk-len",
            "client-query-buffer-limit",
            "slowlog-log-slower-than",
            "slowlog-max-len",
            "timeout",
            "maxclients",
            "tcp-keepalive",
            "hz",
            "maxmemory",
            "maxmemory-samples",
            "lfu-log-factor",
            "lfu-decay-time",
            "acllog-max-len",
            "tracking-table-max-keys",
            "hll-sparse-max-bytes",
            "min-replicas-to-write",
            "repl-timeout",
            "busy-reply-threshold",
            "io-threads-poll-usec",
        ]
        .into_iter()
        .chain(ENCODING_DIRECTIVES)
        {
            t.update(name, cfg.int(name));
        }
        for name in [
            "replica-read-only",
            "replica-serve-stale-data",
            "latency-tracking",
            "lazyfree-lazy-user-del",
        ] {
            t.update_flag(name, cfg.get(name));
        }
        t.set_policy(cfg.get("maxmemory-policy"));
        t
    }

    /// Mirrors a yes/no directive read on the hot path.
    fn update_flag(&self, name: &str, value: &str) {
        let slot = match name {
            "replica-read-only" => &self.replica_read_only,
            "replica-serve-stale-data" => &self.replica_serve_stale,
            "latency-tracking" => &self.latency_tracking,
            "lazyfree-lazy-user-del" => &self.lazy_user_del,
            _ => return,
        };
        slot.store(value == "yes", Relaxed);
    }

    fn set_policy(&self, name: &str) {
        let p = crate::keyspace::evict::Policy::parse(name);
        self.maxmemory_policy.store(p.index() as i64, Relaxed);
    }

    pub fn lfu(&self) -> crate::keyspace::evict::Lfu {
        crate::keyspace::evict::Lfu {
            log_factor: self.lfu_log_factor.load(Relaxed) as u32,
            decay_minutes: self.lfu_decay_time.load(Relaxed) as u32,
        }
    }

    /// `tracking-table-max-keys` (0: unbounded).
    pub fn tracking_max_keys(&self) -> usize {
        self.tracking_table_max_keys.load(Relaxed).max(0) as usize
    }

    pub fn policy(&self) -> crate::keyspace::evict::Policy {
        crate::keyspace::evict::Policy::from_index(self.maxmemory_policy.load(Relaxed) as usize)
    }

    /// The compact-encoding limits now in force.
    pub fn encodings(&self) -> crate::keyspace::Encodings {
        let get = |i: usize| self.encoding_limits[i].load(Relaxed) as usize;
        let l = |i: usize| crate::keyspace::Limits {
            entries: get(i),
            value: get(i + 1),
        };
        crate::keyspace::Encodings {
            hash: l(0),
            set: crate::keyspace::SetLimits {
                listpack: l(2),
                // An intset counts its members in 32 bits; Redis caps it too.
                ints: get(6).min(1 << 30),
            },
            zset: l(4),
            list: crate::keyspace::list::ChunkLimit::from_fill(
                self.encoding_limits[7].load(Relaxed),
            )
            .with_plain(self.list_packed_threshold.load(Relaxed) as usize),
            stream: crate::keyspace::stream::NodeLimits {
                entries: get(8) as u64,
                bytes: get(9) as u64,
            },
        }
    }

    fn update(&self, name: &str, v: i64) {
        let slot = match name {
            "proto-max-bulk-len" => &self.max_bulk_len,
            "client-query-buffer-limit" => &self.query_buffer_limit,
            "slowlog-log-slower-than" => &self.slowlog_slower_than,
            "slowlog-max-len" => &self.slowlog_max_len,
            "timeout" => &self.timeout_secs,
            "maxclients" => &self.maxclients,
            "tcp-keepalive" => &self.tcp_keepalive,
            "hz" => &self.hz,
            "maxmemory" => &self.maxmemory,
            "maxmemory-samples" => &self.maxmemory_samples,
            "lfu-log-factor" => &self.lfu_log_factor,
            "acllog-max-len" => &self.acllog_max_len,
            "lfu-decay-time" => &self.lfu_decay_time,
            "tracking-table-max-keys" => &self.tracking_table_max_keys,
            "hll-sparse-max-bytes" => &self.hll_sparse_max_bytes,
            "min-replicas-to-write" => &self.min_replicas_to_write,
            "repl-timeout" => &self.repl_timeout_secs,
            "busy-reply-threshold" => &self.busy_reply_ms,
            "io-threads-poll-usec" => &self.io_poll_usec,
            other => match ENCODING_DIRECTIVES.iter().position(|d| *d == other) {
                Some(i) => &self.encoding_limits[i],
                None => return,
            },
        };
        slot.store(v, Relaxed);
    }
}

/// CLIENT PAUSE state.
#[derive(Default)]
pub struct Pause {
    /// Unix ms until which clients are paused; 0 when not paused.
    pub until_ms: AtomicI64,
    /// Pause every command, not only writes.
    pub all: AtomicBool,
    /// Writes wait for a FAILOVER (with no deadline; CLIENT UNPAUSE does
    /// not end it).
    pub failover: AtomicBool,
    /// Woken by CLIENT UNPAUSE and at a failover's end.
    pub resumed: Notify,
    /// Clients whose command waits for the pause to end: INFO counts them
    /// among `blocked_clients`, as Redis does its postponed clients.
    pub held: std::sync::atomic::AtomicUsize,
}

impl Pause {
    /// Whether any pause is set (cheap: the common case is none).
    pub fn active(&self) -> bool {
        self.until_ms.load(Relaxed) != 0 || self.failover.load(Relaxed)
    }

    /// Whether writes are held now (CLIENT PAUSE, either mode, or a
    /// failover): as in Redis, keys are then neither expired nor evicted,
    /// so the stream stands still.
    pub fn writes_paused(&self, now_ms: i64) -> bool {
        self.failover.load(Relaxed) || self.until_ms.load(Relaxed) > now_ms
    }
}

pub struct Server {
    pub config: RwLock<Config>,
    pub tun: Tunables,
    pub keyspace: Keyspace,
    pub effects: EffectStream,
    pub clients: client::Clients,
    pub stats: stats::Stats,
    pub slowlog: slowlog::SlowLog,
    pub acl_log: acllog::AclLog,
    pub users: users::Users,
    /// Shared with the log writer, which records its slow writes and syncs.
    pub latency: Arc<latency::Monitor>,
    pub peak_memory: memory::Peak,
    /// `used_memory` once the server was set up, before any data loaded
    /// (Redis's `used_memory_startup`).
    pub startup_memory: AtomicU64,
    pub watches: watches::Watches,
    /// Large values freed off the command path (UNLINK, FLUSHALL ASYNC).
    pub lazyfree: lazyfree::LazyFree,
    pub blocked: blocking::Blocked,
    pub tracking: tracking::Tracking,
    pub pubsub: pubsub::PubSub,
    pub eviction_pool: crate::keyspace::evict::EvictionPool,
    /// `StreamMemory::not_counted_for_evict`, read with `used_memory`:
    /// over the limit every command asks, and reading it locks the
    /// effect stream and each replica's buffer.
    not_counted: AtomicU64,
    /// The allocator's full figures and RSS for INFO, and when (Unix ms)
    /// they were read: refreshing merges every arena's statistics, which
    /// made INFO 4 times slower than Redis's (which refreshes in its cron).
    memory_figures: parking_lot::Mutex<(i64, memory::MemoryFigures)>,
    pub notifier: notify::Notifier,
    pub gate: watches::Gate,
    /// A script running past busy-reply-threshold, if one is.
    pub busy: busy::Busy,
    pub pause: Pause,
    /// MONITOR lines; the receiver count says whether anyone listens.
    pub monitors: broadcast::Sender<Arc<str>>,
    /// Connections in MONITOR mode; read on every command, so an atomic
    /// rather than the channel's own (locked) receiver count.
    pub monitor_count: std::sync::atomic::AtomicUsize,
    pub shutdown: watch::Sender<bool>,
    /// A [`ShutdownSave`], set by SHUTDOWN before it asks to stop.
    shutdown_save: std::sync::atomic::AtomicU8,
    pub active_expire: AtomicBool,
    /// DEBUG PAUSE-CRON: the cron skips its work (tests of what happens
    /// without it, as Redis's `pause_cron`).
    pub cron_paused: AtomicBool,
    /// DEBUG SET-DISABLE-DENY-SCRIPTS: scripts may call commands whose row
    /// says `noscript` (Redis's tests let a script read CLIENT LIST or
    /// DEBUG PROTOCOL so); SCRIPT FLUSH turns it off again, as in Redis.
    pub scripts_run_anything: AtomicBool,
    /// DEBUG SET-SKIP-CHECKSUM-VALIDATION: RESTORE takes payloads whatever
    /// their CRC-64 (Redis's tests hand-make corrupt ones).
    pub skip_checksum: AtomicBool,
    /// `enable-debug-command`: 0 no, 1 yes, 2 local (fixed at start-up).
    pub enable_debug: u8,
    /// `enable-module-command`, the same way.
    pub enable_module: u8,
    pub started: Instant,
    pub run_id: String,
    pub replication: crate::replication::Replication,
    pub last_save: AtomicI64,
    /// `EffectStream::changes` at the instant of the last good save.
    pub saved_changes: AtomicU64,
    /// Unix ms of the last save attempt, good or not.
    pub last_save_try: AtomicI64,
    /// The port actually bound (differs from `port` when that is 0).
    pub tcp_port: std::sync::atomic::AtomicU16,
    /// The listening sockets (CONFIG SET port/bind replace them).
    pub listeners: listeners::Listeners,
    pub expire_cycles_capped: AtomicU64,
    /// How long memory has been over `maxmemory` (INFO's
    /// `*_eviction_exceeded_time`).
    pub eviction_time: stats::OverLimit,
    /// INFO's `process_supervised`, once start-up has looked.
    pub supervised: std::sync::OnceLock<&'static str>,
    /// The share of keys with an expiry found expired by the active
    /// expiry cycle, smoothed as Redis smooths it (`expired_stale_perc`;
    /// an f64's bits).
    pub expired_stale_perc: AtomicU64,
    /// How many I/O threads serve connections.
    pub io_threads: std::sync::atomic::AtomicUsize,
    /// Where the cron's walk shrinking tables resumes: `n * SLOTS + slot`
    /// for the n-th database in use (`server::expire`).
    pub shrink_cursor: std::sync::atomic::AtomicUsize,
    pub executable: PathBuf,
    /// The append-only log's state (enabled or not).
    pub log: Arc<crate::persistence::log::LogState>,
    /// True while the log is being replayed at start-up: commands without
    /// the `loading` flag get `-LOADING`.
    pub loading: AtomicBool,
    /// The server itself, for work that outlives a command (a rewrite).
    pub this: std::sync::OnceLock<std::sync::Weak<Server>>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Server {
    pub fn new(config: Config) -> Server {
        let databases = config.int("databases") as usize;
        let protection = |name| match config.get(name) {
            "no" => 0,
            "local" => 2,
            _ => 1,
        };
        let enable_debug = protection("enable-debug-command");
        let enable_module = protection("enable-module-command");
        let backlog = config.int("repl-backlog-size") as usize;
        let (monitors, _) = broadcast::channel(4096);
        let latency = Arc::new(latency::Monitor::default());
        latency.set_threshold(config.int("latency-monitor-threshold"));
        let log = Arc::new(crate::persistence::log::LogState::new(
            config.get("appendonly") == "yes",
            crate::persistence::log::FsyncPolicy::parse(config.get("appendfsync")),
            latency.clone(),
        ));
        let pubsub = pubsub::PubSub::default();
        pubsub.set_limit(
            pubsub::parse_buffer_limits(config.get("client-output-buffer-limit"))
                .unwrap_or(pubsub::DEFAULT_PUBSUB_LIMIT),
        );
        let notifier = notify::Notifier::default();
        notifier.set(config.get("notify-keyspace-events"));
        let replicaof = config.get("replicaof").to_string();
        let sidecar = config.get("sidecar") == "yes";
        Server {
            tun: Tunables::from(&config),
            config: RwLock::new(config),
            keyspace: Keyspace::new(databases),
            effects: EffectStream::new(backlog),
            clients: client::Clients::default(),
            stats: stats::Stats::new(crate::command::TABLE.all.len()),
            slowlog: slowlog::SlowLog::default(),
            acl_log: acllog::AclLog::default(),
            users: users::Users::default(),
            latency,
            peak_memory: memory::Peak::default(),
            startup_memory: AtomicU64::new(0),
            watches: watches::Watches::default(),
            lazyfree: lazyfree::LazyFree::default(),
            tracking: tracking::Tracking::default(),
            blocked: blocking::Blocked::default(),
            pubsub,
            notifier,
            eviction_pool: Default::default(),
            not_counted: AtomicU64::new(0),
            memory_figures: Default::default(),
            gate: watches::Gate::default(),
            busy: busy::Busy::default(),
            pause: Pause::default(),
            monitors,
            monitor_count: std::sync::atomic::AtomicUsize::new(0),
            shutdown: watch::channel(false).0,
            shutdown_save: std::sync::atomic::AtomicU8::new(ShutdownSave::IfRules as u8),
            active_expire: AtomicBool::new(true),
            cron_paused: AtomicBool::new(false),
            scripts_run_anything: AtomicBool::new(false),
            skip_checksum: AtomicBool::new(false),
            enable_debug,
            enable_module,
            started: Instant::now(),
            run_id: crate::effects::random_replid(),
            replication: crate::replication::Replication::new(
                crate::replication::PrimaryAddr::parse(&replicaof),
                sidecar,
            ),
            last_save: AtomicI64::new(now_ms() / 1000),
            saved_changes: AtomicU64::new(0),
            last_save_try: AtomicI64::new(0),
            tcp_port: std::sync::atomic::AtomicU16::new(0),
            listeners: Default::default(),
            expire_cycles_capped: AtomicU64::new(0),
            supervised: std::sync::OnceLock::new(),
            eviction_time: stats::OverLimit::default(),
            expired_stale_perc: AtomicU64::new(0),
            io_threads: std::sync::atomic::AtomicUsize::new(1),
            shrink_cursor: std::sync::atomic::AtomicUsize::new(0),
            executable: std::env::current_exe().unwrap_or_default(),
            log,
            loading: AtomicBool::new(false),
            this: std::sync::OnceLock::new(),
        }
    }

    /// Applies a directive changed by CONFIG SET to the running server.
    pub fn config_changed(&self, name: &str, value: &str) {
        if let Ok(v) = value.parse::<i64>() {
            self.tun.update(name, v);
        }
        self.tun.update_flag(name, value);
        match name {
            "latency-monitor-threshold" => {
                self.latency.set_threshold(value.parse().unwrap_or(0));
            }
            "repl-backlog-size" => self
                .effects
                .resize_backlog(value.parse().unwrap_or(1 << 20)),
            "slowlog-max-len" => self.slowlog.trim(value.parse().unwrap_or(128)),
            "tracking-table-max-keys" => self.tracking.limit_changed(),
            "loglevel" => crate::logging::set_level(value),
            "notify-keyspace-events" => self.notifier.set(value),
            "maxmemory-policy" => {
                self.tun.set_policy(value);
                self.eviction_pool.clear();
            }
            "acllog-max-len" => self.acl_log.trim(value.parse().unwrap_or(128)),
            "requirepass" => self.users.set_requirepass(value),
            "acl-pubsub-default" => self.users.set_pubsub_default(value),
            "client-output-buffer-limit" => {
                if let Some(l) = pubsub::parse_buffer_limits(value) {
                    self.pubsub.set_limit(l);
                }
            }
            "appendfsync" => self
                .log
                .set_policy(crate::persistence::log::FsyncPolicy::parse(value)),
            "appendonly" => {
                if let Some(server) = self.this.get().and_then(|w| w.upgrade()) {
                    match value {
                        "yes" => crate::persistence::toggle::turn_on(&server),
                        _ => crate::persistence::toggle::turn_off(&server),
                    }
                }
            }
            _ => {}
        }
    }

    /// `used_memory` now, as this thread sees it (`memory::used`): the
    /// allocator's figure re-read when older than 5 ms, plus what this
    /// thread allocated less what it freed since.
    pub fn used_memory(&self, now_ms: i64) -> u64 {
        self.read_used_memory(now_ms, false)
    }

    /// [`Server::used_memory`], read from the allocator anew (unless this
    /// thread did this millisecond): what an over-the-limit decision
    /// rests on, so that threads agree on it.
    pub fn used_memory_fresh(&self, now_ms: i64) -> u64 {
        self.read_used_memory(now_ms, true)
    }

    fn read_used_memory(&self, now_ms: i64, fresh: bool) -> u64 {
        memory::used(now_ms, fresh, || {
            // The buffers left out are read on both sides of the
            // allocator's figure and the larger taken: one freed just after
            // that figure (a log batch written, tens of megabytes under a
            // slow disk) would otherwise count as data and evict keys.
            let before = self.effects.memory().not_counted_for_evict();
            let used = memory::read_used();
            let after = self.effects.memory().not_counted_for_evict();
            self.not_counted.store(before.max(after), Relaxed);
            used
        })
    }

    /// What `maxmemory` counts of `used`: all but replicas' buffers and
    /// log records not yet written (`StreamMemory::not_counted_for_evict`,
    /// as of the last read of `used_memory`).
    pub fn counted_memory(&self, used: u64) -> u64 {
        used.saturating_sub(self.not_counted.load(Relaxed))
    }

    /// The allocator's figures and RSS, re-read when older than 5 ms.
    pub fn memory_figures(&self, now_ms: i64) -> memory::MemoryFigures {
        let mut g = self.memory_figures.lock();
        if now_ms - g.0 >= 5 || now_ms < g.0 {
            *g = (now_ms, memory::read());
        }
        g.1
    }

    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// What SHUTDOWN asked of the snapshot (signals: [`ShutdownSave::IfRules`]).
    pub fn set_shutdown_save(&self, how: ShutdownSave) {
        self.shutdown_save.store(how as u8, Relaxed);
    }
}

/// Whether stopping writes a snapshot (dbfilename), as Redis's SHUTDOWN
/// [NOSAVE|SAVE] decides: by default when `save` rules are set (so a node
/// kept by snapshots alone loses nothing on a clean stop), always with
/// SAVE, never with NOSAVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ShutdownSave {
    IfRules = 0,
    Always = 1,
    Never = 2,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Can't create or open the data directory '{0}': {1}")]
    Dir(String, std::io::Error),
    #[error("Could not create server TCP listening socket {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("Can't open the append only file directory: {0}")]
    Log(std::io::Error),
    #[error("{0}")]
    Load(String),
}

/// Descriptors kept for the server's own files, sockets and threads, as
/// Redis keeps (its `CONFIG_MIN_RESERVED_FDS`).
const RESERVED_FDS: u64 = 32;

/// How many clients the open files limit allows, raising the limit first
/// if `maxclients` needs more (as far as the system lets it rise), as
/// redis-server does; says what it did in Redis's words. `Err` when not
/// even the server's own descriptors fit.
pub fn fit_open_files(maxclients: u64) -> Result<u64, String> {
    let want = maxclients + RESERVED_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(
            "Unable to obtain the current NOFILE limit ({}), assuming 1024 and setting the max clients configuration accordingly.",
            crate::persistence::log::describe(&e)
        );
        return Ok(maxclients.min(1024 - RESERVED_FDS));
    }
    let old = lim.rlim_cur;
    if old >= want {
        return Ok(maxclients);
    }
    // The highest limit the system grants, 16 descriptors at a time.
    let mut best = want;
    let mut why = String::new();
    while best > old {
        let ask = libc::rlimit {
            rlim_cur: best,
            rlim_max: lim.rlim_max.max(best),
        };
        // SAFETY: setrlimit reads the rlimit it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &ask) } == 0 {
            break;
        }
        why = crate::persistence::log::describe(&std::io::Error::last_os_error());
        if best < 16 {
            best = old;
            break;
        }
        best -= 16;
    }
    let best = best.max(old);
    if best >= want {
        tracing::info!(
            "Increased maximum number of open files to {want} (it was originally set to {old})."
        );
        return Ok(maxclients);
    }
    if best <= RESERVED_FDS {
        return Err(format!(
            "Your current 'ulimit -n' of {old} is not enough for the server to start. Please increase your open file limit to at least {want}. Exiting."
        ));
    }
    let fits = best - RESERVED_FDS;
    tracing::warn!(
        "You requested maxclients of {maxclients} requiring at least {want} max file descriptors."
    );
    tracing::warn!("Server can't set maximum open files to {want} because of OS error: {why}.");
    tracing::warn!(
        "Current maximum open files is {best}. maxclients has been reduced to {fits} to compensate for low ulimit. If you need higher maxclients increase 'ulimit -n'."
    );
    Ok(fits)
}

/// Runs a node until it is shut down.
pub async fn run(mut config: Config) -> Result<(), StartError> {
    for (name, value) in config.inert_changes() {
        tracing::warn!(
            "{name} {value}: accepted for redis.conf compatibility; Shoal does not act on it"
        );
    }
    let dir = config.get("dir").to_string();
    std::fs::create_dir_all(&dir).map_err(|e| StartError::Dir(dir.clone(), e))?;
    crate::replication::primary::sweep_sync_files(std::path::Path::new(&dir));
    let pidfile = config.get("pidfile").to_string();
    if !pidfile.is_empty() {
        // As redis-server: a pidfile that cannot be written is worth a
        // warning, not a refusal to start.
        if let Err(e) = std::fs::write(&pidfile, format!("{}\n", std::process::id())) {
            tracing::warn!("Failed to write PID file {pidfile}: {e}");
        }
    }
    let asked = config.int("maxclients") as u64;
    let fits = fit_open_files(asked).map_err(StartError::Load)?;
    if fits < asked {
        config.set_internal("maxclients", fits.to_string());
    }
    if config.get("sidecar") == "yes" && config.get("replicaof").is_empty() {
        return Err(StartError::Load(
            "sidecar yes needs replicaof <primary host> <port>: a sidecar serves a copy of a primary".into(),
        ));
    }
    let port = config.int("port") as u16;
    let binds = config.words("bind");
    // Handlers go in before anything announces readiness, so a SIGTERM sent
    // the moment we are up still stops us gracefully.
    let mut sigterm = signal(libc::SIGTERM);
    let mut sigint = signal(libc::SIGINT);
    let log_dir = crate::persistence::aof::AofDir::new(
        std::path::Path::new(&dir),
        config.get("appenddirname"),
        config.get("appendfilename"),
    );
    let server = Arc::new(Server::new(config));
    users::load_at_startup(&server).map_err(StartError::Load)?;
    server.startup_memory.store(memory::read_used(), Relaxed);
    let _ = server.this.set(Arc::downgrade(&server));
    // The log is read before anyone can write, and clients that connect
    // meanwhile are told -LOADING.
    let log_start = if server.log.enabled() {
        server.loading.store(true, Relaxed);
        match log_dir.redis_log(std::path::Path::new(&dir)) {
            Some(redis) => Some(LogStart::Import(redis)),
            None => {
                let snapshot = crate::persistence::save::snapshot_path(&server);
                Some(LogStart::Open(
                    log_dir
                        .open_or_create(Some(&snapshot))
                        .map_err(StartError::Log)?,
                ))
            }
        }
    } else {
        // Without a log, a snapshot in `dir` is the data to start from:
        // clients are told -LOADING from their first command, not served
        // an empty dataset until its loading begins.
        if crate::persistence::save::snapshot_path(&server).exists() {
            server.loading.store(true, Relaxed);
        }
        None
    };

    let threads = match server.config.read().int("io-threads") {
        0 => default_io_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        ),
        n => n as usize,
    };
    let backlog = server.config.read().int("tcp-backlog") as i32;
    // As redis-server warns: the kernel caps the backlog.
    if let Some(max) = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&max| max < backlog)
    {
        tracing::warn!(
            "The TCP backlog setting of {backlog} cannot be enforced because /proc/sys/net/core/somaxconn is set to the lower value of {max}."
        );
    }
    let (bound, bound_port) = listeners::bind_all(&binds, port, backlog, &[])
        .map_err(|e| StartError::Bind(e.addr, e.source))?;
    server.listeners.replace(bound);
    server.tcp_port.store(bound_port, Relaxed);
    server.config.write().set_bound_port(bound_port);
    server.io_threads.store(threads, Relaxed);

    // One single-threaded runtime per core, each accepting from the same
    // listening sockets: a connection lives on the thread that accepted it,
    // so serving it never hands work between threads (no work stealing, no
    // cross-thread wake-ups); the least busy thread tends to accept first.
    let mut workers = Vec::new();
    for t in 0..threads {
        let server = server.clone();
        let handle = std::thread::Builder::new()
            .name(format!("shoal-io-{t}"))
            // Scripts recurse (cjson nests 1000 deep, as lua-cjson does):
            // room for it, in address space only until used.
            .stack_size(IO_THREAD_STACK)
            .spawn(move || io_thread(server, Accepting::Always))
            .expect("spawn I/O thread");
        workers.push(handle);
    }
    if log_start.is_none() {
        // No log: a SAVE snapshot in `dir`, if any, is the data to start from.
        let snapshot = crate::persistence::save::snapshot_path(&server);
        if snapshot.exists() {
            let s = server.clone();
            let report = tokio::task::spawn_blocking(move || {
                crate::persistence::load::load_snapshot(&s, &snapshot)
            })
            .await
            .map_err(|e| StartError::Load(e.to_string()))?
            .map_err(StartError::Load)?;
            tracing::info!(
                "DB loaded from the snapshot: {} keys' records",
                report.records
            );
            server.loading.store(false, Relaxed);
        }
    }
    if let Some(start) = log_start {
        let started = Instant::now();
        let (s, dir2) = (server.clone(), log_dir);
        let (loaded, dir2) = tokio::task::spawn_blocking(move || {
            let r = match start {
                LogStart::Open(m) => crate::persistence::load::load(&s, &dir2, &m).map(|r| (r, m)),
                LogStart::Import(redis) => {
                    crate::persistence::load::import_redis(&s, &dir2, &redis)
                }
            };
            (r, dir2)
        })
        .await
        .map_err(|e| StartError::Load(e.to_string()))?;
        let (report, m) = match loaded {
            Ok(r) => r,
            Err(e) => {
                server.request_shutdown();
                return Err(StartError::Load(e));
            }
        };
        // The log says which history the data belongs to and how far: a
        // replica continues from there instead of syncing in full.
        if let Some(state) = report.stream {
            tracing::info!(
                "The data continues replication history {} at offset {}",
                state.id.replid,
                state.id.offset
            );
            server.effects.restore_identity(state);
            // Replicas of this history may come back: keep what follows
            // from now on, as Redis does after loading its replication id.
            server.effects.activate_backlog();
        }
        tracing::info!(
            "DB loaded from append only file: {:.3} seconds, {} records, {} bytes",
            started.elapsed().as_secs_f64(),
            report.records,
            report.bytes
        );
        // Written at positions, never opened to append (see `LogFile`).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir2.current(&m))
            .map_err(StartError::Log)?;
        if let Some(end) = report.records_end {
            // The room a node under appendfsync always wrote ahead: the
            // log carries on from its last record.
            file.set_len(end).map_err(StartError::Log)?;
        }
        // Leftovers of a rewrite that a crash interrupted are not in the
        // manifest; they go now.
        dir2.remove_unlisted(&m);
        let size_of = |n: &str| {
            std::fs::metadata(dir2.file(n))
                .map(|md| md.len())
                .unwrap_or(0)
        };
        let base = m.base.as_ref().map(|(n, _)| size_of(n)).unwrap_or(0);
        let incr: u64 = m.incr.iter().map(|(n, _)| size_of(n)).sum();
        server.log.base_size.store(base, Relaxed);
        server.log.size_after_rewrite.store(base + incr, Relaxed);
        *server.log.files.lock() = Some((dir2, m));
        server.effects.attach_log();
        *server.log.file.lock() = Some(crate::persistence::log::LogFile::new(
            file,
            server.effects.offset(),
            &server.log,
        ));
        crate::persistence::toggle::start_writer(&server);
        server.loading.store(false, Relaxed);
    }
    // What was loaded counts as saved: `save` rules count changes from here.
    server
        .saved_changes
        .store(server.effects.changes(), Relaxed);
    // As Redis does, "ready" is said once the data is loaded; clients that
    // connected earlier were told -LOADING.
    for b in server.listeners.current().iter() {
        if let Ok(local) = b.socket.local_addr() {
            tracing::info!("Ready to accept connections tcp on {local}");
        }
    }
    let supervisor = supervise::Supervisor::detect(server.config.read().get("supervised"));
    let _ = server.supervised.set(supervisor.word());
    supervisor.ready(server.replication.is_replica());
    start_cron(&server);
    tokio::spawn(crate::replication::replica::run(server.clone()));

    let mut stop = server.shutdown.subscribe();
    tokio::select! {
        _ = stopped(&mut stop) => tracing::info!("User requested shutdown..."),
        _ = recv(&mut sigterm) => tracing::info!("Received SIGTERM scheduling shutdown..."),
        _ = recv(&mut sigint) => tracing::info!("Received SIGINT scheduling shutdown..."),
    }
    supervisor.stopping();
    server.request_shutdown();
    workers.extend(server.busy.thread.lock().take());
    for w in workers {
        let s = server.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // A script past busy-reply-threshold never lets its thread go:
            // the node stops under it (SHUTDOWN NOSAVE, a signal), as
            // Redis's does.
            while !w.is_finished() {
                if s.busy.timed_out() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = w.join();
        })
        .await;
    }
    // Connections are closed: nothing more can be appended. Write and sync
    // what is pending before exiting.
    let s = server.clone();
    let _ = tokio::task::spawn_blocking(move || s.log.stop_writer(&s.effects)).await;
    let how = server.shutdown_save.load(Relaxed);
    let save = if how == ShutdownSave::Always as u8 {
        true
    } else if how == ShutdownSave::Never as u8 {
        false
    } else {
        !server.config.read().get("save").is_empty()
    };
    if save && server.busy.timed_out() {
        // A snapshot would wait for the script's end: the log holds what
        // the node acknowledged.
        tracing::warn!("A script is still running: no final snapshot.");
    } else if save {
        tracing::info!("Saving the final snapshot before exiting.");
        let s = server.clone();
        // A snapshot still being taken (BGSAVE, a rewrite) ends first:
        // the keyspace captures one at a time.
        let save = move || {
            use crate::persistence::save::{save, SaveError};
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match save(&s) {
                    Err(SaveError::InProgress | SaveError::RewriteInProgress)
                        if Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    r => return r,
                }
            }
        };
        match tokio::task::spawn_blocking(save).await {
            Ok(Ok(size)) => tracing::info!("DB saved on disk: {size} bytes"),
            // Redis would refuse to stop; with the clients gone, Shoal
            // stops and says what was not saved.
            Ok(Err(e)) => tracing::error!("Error trying to save the DB, exiting anyway: {e}"),
            Err(e) => tracing::error!("Error trying to save the DB, exiting anyway: {e}"),
        }
    }
    if !pidfile.is_empty() {
        let _ = std::fs::remove_file(&pidfile);
    }
    tracing::info!("Shoal is now ready to exit, bye bye...");
    Ok(())
}

/// Evicts as a command would before running (`Ctx::make_room`), for at
/// most `budget`, through a client no one sees.
fn evict_while_idle(server: &Server, budget: Duration) {
    let started = Instant::now();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut client = client::Client::new(server.clients.detached(addr, addr, now_ms()), true);
    let mut out = crate::protocol::ReplyBuf::new(crate::protocol::Protocol::Resp2);
    while started.elapsed() < budget {
        let now = now_ms();
        let max = server.tun.maxmemory.load(Relaxed) as u64;
        if max == 0 || server.counted_memory(server.used_memory(now)) <= max {
            break;
        }
        let ctx = crate::command::Ctx {
            server,
            client: &mut client,
            out: &mut out,
            now_ms: now,
            action: None,
            event: std::cell::Cell::new(None),
            emptied: Default::default(),
        };
        // As a command holds it: evictions never land inside an EXEC.
        let _gate = server.gate.shared();
        if ctx.make_room().is_err() {
            break; // nothing left that the policy may evict
        }
    }
}

/// Resolves once shutdown has been requested.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn signal(sig: i32) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(sig)).ok()
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Serving threads for `io-threads 0`: one per core but one, as Redis
/// advises for its I/O threads ("leaving at least one spare core"). The
/// spare core runs the kernel's network work for the sockets, the log
/// writer, replicas' feeders and snapshots, and often the clients (a
/// sidecar's application, a benchmark). Measured on 2 cores with the
/// client beside the server, one thread served SET/GET/LPUSH/ZADD 2-5%
/// faster than two without pipelining and up to 9% with it, at less CPU
/// per request: the second thread mostly added sleeps and wake-ups.
fn default_io_threads(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// How the append-only log starts: Shoal's own (found or just created), or
/// Redis's, to be imported.
enum LogStart {
    Open(crate::persistence::aof::Manifest),
    Import(crate::persistence::aof::RedisLog),
}

/// Stack of an I/O thread, which runs commands and scripts.
const IO_THREAD_STACK: usize = 32 << 20;

thread_local! {
    /// This I/O thread's number (from 1; 0 on other threads).
    static IO_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The number of the I/O thread this runs on (0 on other threads).
pub fn this_io_thread() -> u64 {
    IO_THREAD.get()
}

/// When an I/O thread accepts connections.
#[derive(Clone, Copy)]
enum Accepting {
    Always,
    /// While a script runs past busy-reply-threshold (see `busy`).
    WhileBusy,
}

/// Starts, once, the I/O thread that accepts connections while a script
/// runs past busy-reply-threshold, so that a new client can reach the node
/// whatever thread the script holds (see `busy`).
pub fn start_busy_thread(server: &Arc<Server>) {
    let mut thread = server.busy.thread.lock();
    if thread.is_some() || *server.shutdown.borrow() {
        return;
    }
    let s = server.clone();
    match std::thread::Builder::new()
        .name("shoal-io-busy".into())
        .stack_size(IO_THREAD_STACK)
        .spawn(move || io_thread(s, Accepting::WhileBusy))
    {
        Ok(t) => *thread = Some(t),
        Err(e) => tracing::warn!("Cannot start a thread to serve clients while a script runs: {e}"),
    }
}

/// One I/O thread: a single-threaded runtime serving the connections it
/// accepts until shutdown, then giving them a moment to finish.
fn io_thread(server: Arc<Server>, accepting: Accepting) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    IO_THREAD.set(NEXT.fetch_add(1, Relaxed));
    let s = server.clone();
    let u = server.clone();
    let synced = server.log.register_thread();
    let parking = synced.clone();
    let awake = Arc::new(tokio::sync::Notify::new());
    let poke = awake.clone();
    crate::persistence::log::io_thread_running(&server.log);
    crate::effects::write_filled_taps_on_this_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Once every ready connection has run (Redis's beforeSleep): with
        // appendfsync always, sync their writes, then write what they
        // appended to replicas' taps, in one go each (Redis's order). A
        // task left woken here makes tokio poll the sockets without
        // sleeping and run what became ready (see `spin`); a thread that
        // polls writes the taps once they have waited `TAP_HOLD`.
        .on_thread_park(move || {
            let worked = connection::write_round::parked();
            let sync_later =
                crate::persistence::log::sync_before_park(&s.effects, &s.log, &parking);
            let window = Duration::from_micros(s.tun.io_poll_usec.load(Relaxed).max(0) as u64);
            if spin::parked(worked, sync_later, window) {
                crate::effects::flush_filled_taps_held();
                poke.notify_one();
            } else {
                crate::effects::flush_filled_taps();
            }
        })
        .on_thread_unpark(move || {
            spin::unparked();
            crate::persistence::log::io_thread_running(&u.log)
        })
        .build()
        .expect("tokio runtime");
    let exiting = server.clone();
    rt.block_on(async move {
        // The task the park hook wakes to keep the thread from sleeping.
        tokio::spawn(async move {
            loop {
                awake.notified().await;
            }
        });
        {
            let synced = synced.clone();
            tokio::spawn(async move { crate::persistence::log::relay_synced(&synced).await });
        }
        match accepting {
            Accepting::Always => tokio::spawn(acceptors(server.clone(), synced.clone())),
            Accepting::WhileBusy => tokio::spawn(accept_while_busy(server.clone(), synced.clone())),
        };
        let mut stop = server.shutdown.subscribe();
        stopped(&mut stop).await;
        // Connections see the same signal and close; let them flush.
        let deadline = Instant::now() + Duration::from_secs(2);
        while server.clients.count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    drop(rt);
    crate::persistence::log::io_thread_exits(&exiting.log);
}

/// This thread's accept loops, one per listening socket, started anew on
/// the new set whenever CONFIG SET port or bind replaces the sockets
/// (`listeners`), and stopped with this future.
async fn acceptors(server: Arc<Server>, synced: Arc<crate::persistence::log::ThreadWaiters>) {
    /// The loops, aborted when dropped (the connections they accepted
    /// run on).
    struct Loops(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for Loops {
        fn drop(&mut self) {
            for l in &self.0 {
                l.abort();
            }
        }
    }
    let mut changed = server.listeners.subscribe();
    let mut stop = server.shutdown.subscribe();
    loop {
        // Seen before the set is read: a replacement in between still
        // wakes this.
        changed.borrow_and_update();
        let mut loops = Loops(Vec::new());
        for b in server.listeners.current().iter() {
            match b.socket.try_clone().and_then(TcpListener::from_std) {
                Ok(l) => loops
                    .0
                    .push(tokio::spawn(accept_loop(server.clone(), l, synced.clone()))),
                Err(e) => tracing::warn!("cannot register listener {}: {e}", b.addr),
            }
        }
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = stopped(&mut stop) => return,
        }
    }
}

/// The busy thread's work (see `busy`): while a script is timed out,
/// standing in for the script thread's connections at rest, and
/// accepting; idle otherwise.
async fn accept_while_busy(
    server: Arc<Server>,
    synced: Arc<crate::persistence::log::ThreadWaiters>,
) {
    let mut busy = server.busy.subscribe();
    loop {
        if busy.wait_for(|b| *b).await.is_err() {
            return;
        }
        let (script_thread, episode) = server.busy.script_thread();
        for c in server.clients.all() {
            if script_thread != 0
                && c.thread.load(Relaxed) == script_thread
                && c.at_rest.load(Relaxed)
            {
                tokio::spawn(connection::stand_in(server.clone(), c, episode));
            }
        }
        tokio::select! {
            _ = acceptors(server.clone(), synced.clone()) => return,
            _ = busy.wait_for(|b| !*b) => {}
        }
    }
}

async fn accept_loop(
    server: Arc<Server>,
    listener: TcpListener,
    synced: Arc<crate::persistence::log::ThreadWaiters>,
) {
    let mut stop = server.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Running out of descriptors must not kill the listener.
                tracing::warn!("Accepting client connection: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        server.stats.connections_received.add(1);
        let (server, synced) = (server.clone(), synced.clone());
        tokio::spawn(async move {
            connection::serve(server, stream, addr, synced).await;
        });
    }
}

/// Starts the cron on a thread of its own, inside the runtime's context
/// (what it starts, a rewrite or a save, spawns tasks). A tokio task
/// sleeping on the runtime's timer and handing the expiry cycle to the
/// blocking pool woke four or five threads a tick: 45 times a second on
/// an idle node at hz 10, against Redis's 10. The thread wakes once a
/// tick and runs the cycle itself (it locks one slot at a time and never
/// awaits, so nothing waits on it).
fn start_cron(server: &Arc<Server>) {
    let s = server.clone();
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("shoal-cron".into())
        .spawn(move || {
            let _in_runtime = rt.enter();
            cron(&s)
        })
        .expect("cron thread");
}

fn cron(server: &Arc<Server>) {
    loop {
        let hz = server.tun.hz.load(Relaxed).clamp(1, 500) as u64;
        std::thread::sleep(Duration::from_millis(1000 / hz));
        if *server.shutdown.borrow() {
            return;
        }
        if server.cron_paused.load(Relaxed) {
            continue;
        }
        let now = now_ms();
        server.stats.sample_rates(now);
        server.peak_memory.observe(memory::read().used);
        // A replica's keys expire by its primary's DELs only; a paused
        // primary's wait (see `Pause::writes_paused`).
        if server.active_expire.load(Relaxed)
            && !server.replication.is_replica()
            && !server.pause.writes_paused(now)
        {
            let effort = server.config.read().int("active-expire-effort");
            expire::active_cycle(server, hz, effort);
        }
        // Over maxmemory with no command coming to evict (a limit lowered
        // on an idle node), the cron evicts, as Redis's eviction timer does.
        let max = server.tun.maxmemory.load(Relaxed);
        if max > 0
            && !server.replication.is_replica()
            && !server.loading.load(Relaxed)
            && server.counted_memory(server.used_memory(now)) > max as u64
        {
            let budget = Duration::from_micros(250_000 / hz);
            evict_while_idle(server, budget);
        }
        close_idle_clients(server, now);
        // A tracking table over a lowered tracking-table-max-keys shrinks
        // a bounded number of keys a tick.
        let tracked = server.tun.tracking_max_keys();
        server
            .tracking
            .limit(&server.clients, tracked, 100_000 / hz as usize, 0);
        let (max_lag, ping_every) = {
            let cfg = server.config.read();
            (
                cfg.int("min-replicas-max-lag"),
                cfg.int("repl-ping-replica-period"),
            )
        };
        server.replication.refresh_good(max_lag, now);
        // Nor during a failover, whose target must catch up with a stream
        // that stands still.
        if !server.pause.failover.load(Relaxed) && server.replication.ping_due(now, ping_every) {
            // In the stream, as Redis does: it takes offset, and keeps an
            // idle link from looking dead to the replicas' repl-timeout.
            server.effects.append_global(&[b"PING"]);
        }
        let (perc, min) = {
            let cfg = server.config.read();
            (
                cfg.int("auto-aof-rewrite-percentage"),
                cfg.int("auto-aof-rewrite-min-size"),
            )
        };
        crate::persistence::rewrite::maybe_auto(server, perc, min);
        let rules = crate::config::save_rules(server.config.read().get("save"));
        crate::persistence::save::cron(server, &rules, now);
    }
}

fn close_idle_clients(server: &Server, now: i64) {
    let timeout = server.tun.timeout_secs.load(Relaxed);
    if timeout <= 0 {
        return;
    }
    for c in server.clients.all() {
        if c.monitor.load(Relaxed) {
            continue;
        }
        if now - c.last_interaction.load(Relaxed) > timeout * 1000 {
            c.kill();
        }
    }
}

/// The address a client connected to (for `laddr=`), falling back to the
/// unspecified address if the socket cannot say.
pub fn local_addr(s: &tokio::net::TcpStream) -> SocketAddr {
    s.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_io_threads_leave_a_core_spare() {
        let d = super::default_io_threads;
        assert_eq!([d(0), d(1), d(2), d(4), d(16)], [1, 1, 1, 3, 15]);
    }
}
