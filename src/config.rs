//! Configuration: the directive table, the config file, `--directive value`
//! arguments, and the runtime view behind `CONFIG GET/SET`.
//!
//! Every directive is declared once in [`DIRECTIVES`] with its kind, bounds,
//! default and whether `CONFIG SET` may change it; parsing, validation, the
//! file reader, the command line and `CONFIG GET` all read that table. Names
//! are Redis's wherever Redis has the setting, so existing `redis.conf`
//! fragments and `--port 7000`-style invocations carry over.
//!
//! Start-up applies, in order: defaults, the config file (if one is named as
//! the first argument), then the command-line directives. Any unknown
//! directive or bad value stops start-up with a message naming it. Redis
//! settings with no meaning here are accepted and checked all the same
//! (inert directives), so a stock `redis.conf` starts a node; start-up
//! warns about those set to something Shoal does not do.
//!
//! CONFIG REWRITE ([`Config::rewrite`]) writes the running values back into
//! the file as Redis does, so either server can read what the other wrote.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::protocol::request::split_args;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    /// A byte count that accepts Redis's units (`1k`, `1kb`, `1mb`, `1gb`, ...).
    Memory {
        min: i64,
        max: i64,
    },
    Bool,
    Enum(&'static [&'static str]),
    Str,
    /// One or more words (`bind 127.0.0.1 ::1`).
    Words,
    /// One or more words that the function checks, returning the canonical
    /// form (`client-output-buffer-limit`, `notify-keyspace-events`).
    /// Validated (and written back canonically) by a function that gives
    /// Redis's message for a bad value.
    Checked(fn(&str) -> Result<String, &'static str>),
}

pub struct Directive {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    /// May `CONFIG SET` change it while running.
    pub mutable: bool,
    /// A Redis setting Shoal accepts (checked, kept, shown by CONFIG GET)
    /// so that an existing `redis.conf` starts it, but does not act on.
    pub inert: bool,
    /// A secret: CONFIG SET's value is shown as `(redacted)` in the slow
    /// log, as Redis's sensitive configs are.
    pub sensitive: bool,
}

impl Directive {
    const fn sensitive(self) -> Directive {
        Directive {
            sensitive: true,
            ..self
        }
    }
}

const fn d(name: &'static str, kind: Kind, default: &'static str, mutable: bool) -> Directive {
    Directive {
        name,
        kind,
        default,
        mutable,
        inert: false,
        sensitive: false,
    }
}

/// See [`Directive::inert`].
const fn inert(name: &'static str, kind: Kind, default: &'static str, mutable: bool) -> Directive {
    Directive {
        inert: true,
        ..d(name, kind, default, mutable)
    }
}

const INT: Kind = Kind::Int {
    min: 0,
    max: i32::MAX as i64,
};

const MB: i64 = 1024 * 1024;

#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    // CONFIG SET rebinds (`server::listeners`).
    d("port", Kind::Int { min: 0, max: 65535 }, "6379", true),
    d("bind", Kind::Words, "127.0.0.1", true),
    d("dir", Kind::Str, "./data", false),
    d("pidfile", Kind::Str, "", false),
    d("requirepass", Kind::Str, "", true).sensitive(),
    // ACL users from a file (`server::users`); `user` lines in the
    // configuration file are the other way, never both.
    d("aclfile", Kind::Str, "", false),
    // Without a password, only clients on 127.0.0.1 or ::1 are served.
    d("protected-mode", Kind::Bool, "yes", true),
    d("databases", Kind::Int { min: 1, max: i32::MAX as i64 }, "16", false),
    d("maxclients", Kind::Int { min: 1, max: i32::MAX as i64 }, "10000", true),
    d("timeout", Kind::Int { min: 0, max: i32::MAX as i64 }, "0", true),
    d("tcp-keepalive", Kind::Int { min: 0, max: i32::MAX as i64 }, "300", true),
    // Handshaken connections the kernel holds until they are accepted.
    d("tcp-backlog", INT, "511", false),
    d("proto-max-bulk-len", Kind::Memory { min: MB, max: i64::MAX }, "536870912", true),
    d("client-query-buffer-limit", Kind::Memory { min: MB, max: i64::MAX }, "1073741824", true),
    d("loglevel", Kind::Enum(&["debug", "verbose", "notice", "warning", "nothing"]), "notice", true),
    d("logfile", Kind::Str, "", false),
    d("slowlog-log-slower-than", Kind::Int { min: -1, max: i64::MAX }, "10000", true),
    d("slowlog-max-len", Kind::Int { min: 0, max: i64::MAX }, "128", true),
    d("latency-monitor-threshold", Kind::Int { min: 0, max: i64::MAX }, "0", true),
    d("latency-tracking", Kind::Bool, "yes", true),
    d("latency-tracking-info-percentiles", Kind::Checked(canonical_percentiles), "50 99 99.9", true),
    d("repl-backlog-size", Kind::Memory { min: 1, max: i64::MAX }, "1048576", true),
    d("hz", Kind::Int { min: 1, max: 500 }, "10", true),
    // Threads that serve connections (I/O and commands alike); 0 means one
    // per core.
    d("io-threads", Kind::Int { min: 0, max: 1024 }, "0", false),
    // How long an I/O thread polls its sockets instead of sleeping while
    // requests come densely (`server::spin`); 0: it never polls.
    d("io-threads-poll-usec", Kind::Int { min: 0, max: 1000 }, "20", true),
    d("appendonly", Kind::Enum(&["yes", "no"]), "yes", true),
    d("appendfsync", Kind::Enum(&["always", "everysec", "no"]), "everysec", true),
    d("appenddirname", Kind::Checked(aof_dir_name), "appendonlydir", false),
    // A record torn by a crash at the log's end: cut it (yes) or refuse to start.
    d("aof-load-truncated", Kind::Bool, "yes", true),
    d("client-output-buffer-limit", Kind::Checked(crate::server::pubsub::canonical_buffer_limits), "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60", true),
    d("notify-keyspace-events", Kind::Checked(crate::server::notify::canonical_flags), "", true),
    d("maxmemory", Kind::Memory { min: 0, max: i64::MAX }, "0", true),
    d("maxmemory-policy", Kind::Enum(crate::keyspace::evict::POLICY_NAMES), "noeviction", true),
    d("maxmemory-samples", Kind::Int { min: 1, max: 64 }, "5", true),
    d("lfu-log-factor", Kind::Int { min: 0, max: i32::MAX as i64 }, "10", true),
    d("lfu-decay-time", Kind::Int { min: 0, max: i32::MAX as i64 }, "1", true),
    d("tracking-table-max-keys", Kind::Int { min: 0, max: i64::MAX }, "1000000", true),
    // Past this many bytes a sparse HyperLogLog becomes dense.
    d("hll-sparse-max-bytes", Kind::Memory { min: 0, max: i64::MAX }, "3000", true),
    d("hash-max-listpack-entries", Kind::Int { min: 0, max: i32::MAX as i64 }, "512", true),
    d("hash-max-listpack-value", Kind::Int { min: 0, max: i32::MAX as i64 }, "64", true),
    d("set-max-listpack-entries", Kind::Int { min: 0, max: i32::MAX as i64 }, "128", true),
    d("set-max-listpack-value", Kind::Int { min: 0, max: i32::MAX as i64 }, "64", true),
    d("set-max-intset-entries", Kind::Int { min: 0, max: i64::MAX }, "512", true),
    d("zset-max-listpack-entries", Kind::Int { min: 0, max: i32::MAX as i64 }, "128", true),
    d("zset-max-listpack-value", Kind::Int { min: 0, max: i32::MAX as i64 }, "64", true),
    // A list chunk's size: -1 to -5 for 4 to 64 KB, or a number of elements.
    d("list-max-listpack-size", Kind::Int { min: i32::MIN as i64, max: i32::MAX as i64 }, "-2", true),
    d("auto-aof-rewrite-percentage", Kind::Int { min: 0, max: i32::MAX as i64 }, "100", true),
    d("auto-aof-rewrite-min-size", Kind::Memory { min: 0, max: i64::MAX }, "67108864", true),
    // Automatic snapshots: "<seconds> <changes>" pairs, any of which
    // triggers a BGSAVE; "" for none (the log is on by default). Several
    // `save` lines in a file add up, as in redis.conf.
    d("save", Kind::Checked(canonical_save), "", true),
    // With save rules, a failed snapshot stops writes until one succeeds.
    d("stop-writes-on-bgsave-error", Kind::Bool, "yes", true),
    // SAVE/BGSAVE's file in `dir`: Shoal's own record format, not RDB.
    d("dbfilename", Kind::Str, "dump.shoal", false),
    // Replication. `replicaof` is changed at run time by REPLICAOF.
    d("replicaof", Kind::Checked(canonical_replicaof), "", false),
    d("masterauth", Kind::Str, "", true).sensitive(),
    d("masteruser", Kind::Str, "", true),
    d("replica-read-only", Kind::Bool, "yes", true),
    d("replica-serve-stale-data", Kind::Bool, "yes", true),
    // Reported as INFO's slave_priority, for whoever picks a replica to
    // promote (0: never this one).
    d("replica-priority", Kind::Int { min: 0, max: i32::MAX as i64 }, "100", true),
    d("min-replicas-to-write", Kind::Int { min: 0, max: i32::MAX as i64 }, "0", true),
    d("min-replicas-max-lag", Kind::Int { min: 0, max: i32::MAX as i64 }, "10", true),
    // Seconds without a byte (replica side) or an ACK (primary side) after
    // which a replication link is dropped; the primary writes a PING into
    // the stream every repl-ping-replica-period seconds so an idle link is
    // not mistaken for a dead one.
    d("repl-timeout", Kind::Int { min: 1, max: i32::MAX as i64 }, "60", true),
    d("repl-ping-replica-period", Kind::Int { min: 1, max: i32::MAX as i64 }, "10", true),
    // A replica in an application's pod that forwards writes to its primary.
    d("sidecar", Kind::Bool, "no", false),
    // How long a sidecar read waits for the connection's own last write to
    // arrive before it is sent to the primary instead.
    d("sidecar-read-wait-ms", Kind::Int { min: 0, max: i32::MAX as i64 }, "1000", true),
    // Redis settings with no counterpart here, with Redis's bounds and
    // defaults, so that Debian's stock redis.conf starts Shoal unchanged.
    // Where Shoal behaves one fixed way, it is the way the default says
    // (full syncs stream without a file: repl-diskless-sync yes); start-up
    // warns about any other value.
    inert("daemonize", Kind::Bool, "no", false),
    // Which service manager to tell of readiness and shutdown (see
    // `server::supervise`).
    d("supervised", Kind::Enum(&["upstart", "systemd", "auto", "no"]), "no", false),
    inert("always-show-logo", Kind::Bool, "no", false),
    inert("set-proc-title", Kind::Bool, "yes", false),
    inert("proc-title-template", Kind::Str, "{title} {listen-addr} {server-mode}", true),
    inert("rdbcompression", Kind::Bool, "yes", true),
    inert("rdbchecksum", Kind::Bool, "yes", false),
    inert("rdb-del-sync-files", Kind::Bool, "no", true),
    inert("rdb-save-incremental-fsync", Kind::Bool, "yes", true),
    d("appendfilename", Kind::Checked(aof_file_name), "appendonly.aof", false),
    inert("aof-use-rdb-preamble", Kind::Bool, "yes", true),
    inert("aof-timestamp-enabled", Kind::Bool, "no", true),
    inert("aof-rewrite-incremental-fsync", Kind::Bool, "yes", true),
    inert("no-appendfsync-on-rewrite", Kind::Bool, "no", true),
    inert("repl-diskless-sync", Kind::Bool, "yes", true),
    inert("repl-diskless-sync-delay", INT, "5", true),
    inert("repl-diskless-sync-max-replicas", INT, "0", true),
    inert("repl-diskless-load", Kind::Enum(&["disabled", "on-empty-db", "swapdb"]), "disabled", true),
    inert("repl-disable-tcp-nodelay", Kind::Bool, "no", true),
    inert("replica-lazy-flush", Kind::Bool, "no", true),
    inert("lazyfree-lazy-eviction", Kind::Bool, "no", true),
    inert("lazyfree-lazy-expire", Kind::Bool, "no", true),
    inert("lazyfree-lazy-server-del", Kind::Bool, "no", true),
    d("lazyfree-lazy-user-del", Kind::Bool, "no", true),
    d("lazyfree-lazy-user-flush", Kind::Bool, "no", true),
    inert("list-compress-depth", INT, "0", true),
    d("stream-node-max-bytes", Kind::Memory { min: 0, max: i64::MAX }, "4096", true),
    d("stream-node-max-entries", Kind::Int { min: 0, max: i64::MAX }, "100", true),
    inert("activerehashing", Kind::Bool, "yes", true),
    inert("dynamic-hz", Kind::Bool, "yes", true),
    inert("jemalloc-bg-thread", Kind::Bool, "yes", true),
    inert("disable-thp", Kind::Bool, "yes", false),
    inert("oom-score-adj", Kind::Enum(&["no", "yes", "relative", "absolute"]), "no", true),
    inert("oom-score-adj-values", Kind::Words, "0 200 800", true),
    // Failed authentications ACL LOG keeps.
    d("acllog-max-len", Kind::Int { min: 0, max: i64::MAX }, "128", true),
    // DEBUG from any connection (yes), none (no) or loopback ones (local).
    // Redis's default is no; Shoal's is yes, for DEBUG DIGEST is how two
    // nodes' data are compared.
    d("enable-debug-command", Kind::Enum(&["no", "yes", "local"]), "yes", false),
    d("enable-module-command", Kind::Enum(&["no", "yes", "local"]), "no", false),
    d("acl-pubsub-default", Kind::Enum(&["allchannels", "resetchannels"]), "resetchannels", true),
    inert("activedefrag", Kind::Bool, "no", true),
    inert("active-defrag-ignore-bytes", Kind::Memory { min: 1, max: i64::MAX }, "104857600", true),
    inert("active-defrag-threshold-lower", Kind::Int { min: 0, max: 1000 }, "10", true),
    inert("active-defrag-threshold-upper", Kind::Int { min: 0, max: 1000 }, "100", true),
    inert("active-defrag-cycle-min", Kind::Int { min: 1, max: 99 }, "1", true),
    inert("active-defrag-cycle-max", Kind::Int { min: 1, max: 99 }, "25", true),
    inert("active-defrag-max-scan-fields", Kind::Int { min: 1, max: i64::MAX }, "1000", true),
    d("active-expire-effort", Kind::Int { min: 1, max: 10 }, "1", true),
    inert("maxmemory-eviction-tenacity", Kind::Int { min: 0, max: 100 }, "10", true),
    inert("maxmemory-clients", Kind::Checked(memory_or_percent), "0", true),
    // Replicas never evict (Shoal's fixed behaviour, Redis's default).
    inert("replica-ignore-maxmemory", Kind::Bool, "yes", true),
    inert("replica-ignore-disk-write-errors", Kind::Bool, "no", true),
    inert("replica-announce-ip", Kind::Str, "", true),
    inert("replica-announce-port", Kind::Int { min: 0, max: 65535 }, "0", true),
    inert("replica-announced", Kind::Bool, "yes", true),
    inert("repl-backlog-ttl", Kind::Int { min: 0, max: i64::MAX }, "3600", true),
    inert("propagation-error-behavior", Kind::Enum(&["ignore", "panic", "panic-on-replicas"]), "ignore", true),
    inert("sanitize-dump-payload", Kind::Enum(&["no", "yes", "clients"]), "no", true),
    inert("aof-disable-auto-gc", Kind::Bool, "no", true),
    inert("io-threads-do-reads", Kind::Bool, "no", false),
    // A script running longer is stopped with an error (see `scripting`).
    d("busy-reply-threshold", Kind::Int { min: 0, max: i64::MAX }, "5000", true),
    inert("shutdown-timeout", Kind::Int { min: 0, max: i32::MAX as i64 }, "10", true),
    inert("shutdown-on-sigint", Kind::Words, "default", true),
    inert("shutdown-on-sigterm", Kind::Words, "default", true),
    inert("crash-log-enabled", Kind::Bool, "yes", true),
    inert("crash-memcheck-enabled", Kind::Bool, "yes", true),
    inert("ignore-warnings", Kind::Str, "", true),
    inert("bind-source-addr", Kind::Str, "", true),
    inert("socket-mark-id", Kind::Int { min: 0, max: u32::MAX as i64 }, "0", true),
    inert("server_cpulist", Kind::Str, "", false),
    inert("bio_cpulist", Kind::Str, "", false),
    inert("aof_rewrite_cpulist", Kind::Str, "", false),
    inert("bgsave_cpulist", Kind::Str, "", false),
    inert("syslog-enabled", Kind::Bool, "no", false),
    inert("syslog-ident", Kind::Str, "redis", false),
    inert("syslog-facility", Kind::Enum(&["user", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"]), "local0", false),
    // Shoal listens on TCP only, in plain text: a node configured for a
    // Unix socket or TLS starts (with a warning) and serves TCP.
    inert("unixsocket", Kind::Str, "", false),
    inert("unixsocketperm", Kind::Str, "0", false),
    inert("tls-port", Kind::Int { min: 0, max: 65535 }, "0", true),
    inert("tls-cert-file", Kind::Str, "", true),
    inert("tls-key-file", Kind::Str, "", true),
    inert("tls-key-file-pass", Kind::Str, "", true).sensitive(),
    inert("tls-client-cert-file", Kind::Str, "", true),
    inert("tls-client-key-file", Kind::Str, "", true),
    inert("tls-client-key-file-pass", Kind::Str, "", true).sensitive(),
    inert("tls-dh-params-file", Kind::Str, "", true),
    inert("tls-ca-cert-file", Kind::Str, "", true),
    inert("tls-ca-cert-dir", Kind::Str, "", true),
    inert("tls-protocols", Kind::Str, "", true),
    inert("tls-ciphers", Kind::Str, "", true),
    inert("tls-ciphersuites", Kind::Str, "", true),
    inert("tls-prefer-server-ciphers", Kind::Bool, "no", true),
    inert("tls-session-caching", Kind::Bool, "yes", true),
    inert("tls-session-cache-size", Kind::Int { min: 0, max: i32::MAX as i64 }, "20480", true),
    inert("tls-session-cache-timeout", Kind::Int { min: 0, max: i32::MAX as i64 }, "300", true),
    inert("tls-cluster", Kind::Bool, "no", true),
    inert("tls-replication", Kind::Bool, "no", true),
    inert("tls-auth-clients", Kind::Enum(&["no", "yes", "optional"]), "yes", true),
    // Redis Cluster's own settings: Shoal shards with its own slot map.
    inert("cluster-enabled", Kind::Bool, "no", false),
    inert("cluster-config-file", Kind::Str, "nodes.conf", false),
    inert("cluster-port", Kind::Int { min: 0, max: 65535 }, "0", false),
    inert("cluster-node-timeout", Kind::Int { min: 0, max: i64::MAX }, "15000", true),
    inert("cluster-replica-validity-factor", Kind::Int { min: 0, max: i32::MAX as i64 }, "10", true),
    inert("cluster-migration-barrier", Kind::Int { min: 0, max: i32::MAX as i64 }, "1", true),
    inert("cluster-allow-replica-migration", Kind::Bool, "yes", true),
    inert("cluster-require-full-coverage", Kind::Bool, "yes", true),
    inert("cluster-replica-no-failover", Kind::Bool, "no", true),
    inert("cluster-allow-reads-when-down", Kind::Bool, "no", true),
    inert("cluster-allow-pubsubshard-when-down", Kind::Bool, "yes", true),
    inert("cluster-link-sendbuf-limit", Kind::Memory { min: 0, max: i64::MAX }, "0", true),
    inert("cluster-announce-ip", Kind::Str, "", true),
    inert("cluster-announce-hostname", Kind::Str, "", true),
    inert("cluster-announce-port", Kind::Int { min: 0, max: 65535 }, "0", true),
    inert("cluster-announce-bus-port", Kind::Int { min: 0, max: 65535 }, "0", true),
    inert("cluster-announce-tls-port", Kind::Int { min: 0, max: 65535 }, "0", true),
    inert("cluster-preferred-endpoint-type", Kind::Enum(&["ip", "hostname", "unknown-endpoint"]), "ip", true),
];

/// Old names Redis still accepts, for the ones above.
const ALIASES: &[(&str, &str)] = &[
    ("slaveof", "replicaof"),
    ("slave-read-only", "replica-read-only"),
    ("slave-serve-stale-data", "replica-serve-stale-data"),
    ("slave-priority", "replica-priority"),
    ("slave-lazy-flush", "replica-lazy-flush"),
    ("min-slaves-to-write", "min-replicas-to-write"),
    ("min-slaves-max-lag", "min-replicas-max-lag"),
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
    ("repl-ping-slave-period", "repl-ping-replica-period"),
    ("slave-ignore-maxmemory", "replica-ignore-maxmemory"),
    ("slave-announce-ip", "replica-announce-ip"),
    ("slave-announce-port", "replica-announce-port"),
    (
        "cluster-slave-validity-factor",
        "cluster-replica-validity-factor",
    ),
    ("cluster-slave-no-failover", "cluster-replica-no-failover"),
    ("lua-time-limit", "busy-reply-threshold"),
];

/// `save`: pairs of positive seconds and changes, or "" for none.
fn canonical_save(v: &str) -> Result<String, &'static str> {
    const BAD: &str = "Invalid save parameters";
    let w: Vec<&str> = v.split_whitespace().collect();
    if w.len() == 1 && (w[0] == "\"\"" || w[0].is_empty()) {
        return Ok(String::new());
    }
    if !w.len().is_multiple_of(2) {
        return Err(BAD);
    }
    let nums: Option<Vec<i64>> = w
        .iter()
        .map(|x| x.parse().ok().filter(|n| *n > 0))
        .collect();
    let nums = nums.ok_or(BAD)?;
    Ok(nums
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" "))
}

/// `appendfilename` names files inside the append-only directory: a name,
/// not a path (Redis's check and words).
fn aof_file_name(v: &str) -> Result<String, &'static str> {
    if v.contains(['/', '\\']) {
        return Err("appendfilename can't be a path, just a filename");
    }
    Ok(v.to_string())
}

/// `appenddirname` is a directory inside `dir`, not a path.
fn aof_dir_name(v: &str) -> Result<String, &'static str> {
    if v.contains(['/', '\\']) {
        return Err("appenddirname can't be a path, just a dirname");
    }
    Ok(v.to_string())
}

/// A memory value or a percentage of maxmemory (`maxmemory-clients`),
/// read and written back as Redis does.
fn memory_or_percent(v: &str) -> Result<String, &'static str> {
    if let Some(n) = parse_memory(v).filter(|&n| n >= 0) {
        return Ok(n.to_string());
    }
    match v.strip_suffix('%').map(|p| p.parse::<i64>()) {
        Some(Ok(p)) if p > 100 => Err("percentage argument must be less or equal to 100"),
        Some(Ok(p)) if p >= 0 => Ok(format!("{p}%")),
        _ => Err("argument must be a memory or percent value"),
    }
}

/// `latency-tracking-info-percentiles`: numbers from 0 to 100, written
/// back as Redis writes them (`50 99 99.9`).
fn canonical_percentiles(v: &str) -> Result<String, &'static str> {
    let mut out = Vec::new();
    for w in v.split_whitespace() {
        let p: f64 = w
            .parse()
            .map_err(|_| "Invalid latency-tracking-info-percentiles parameters")?;
        if !(0.0..=100.0).contains(&p) {
            return Err(
                "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]",
            );
        }
        out.push(p.to_string());
    }
    Ok(out.join(" "))
}

/// The percentiles INFO latencystats reports (the value was checked by
/// [`canonical_percentiles`]).
pub fn percentiles(v: &str) -> impl Iterator<Item = f64> + '_ {
    v.split_whitespace().filter_map(|w| w.parse().ok())
}

/// The `save` rules: (seconds, changes) pairs.
pub fn save_rules(v: &str) -> Vec<(i64, u64)> {
    let n: Vec<i64> = v
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    n.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0], c[1] as u64))
        .collect()
}

/// `replicaof host port`, or `no one` (and "") for none.
fn canonical_replicaof(v: &str) -> Result<String, &'static str> {
    let w: Vec<&str> = v.split_whitespace().collect();
    match w.as_slice() {
        [] => Ok(String::new()),
        [no, one] if no.eq_ignore_ascii_case("no") && one.eq_ignore_ascii_case("one") => {
            Ok(String::new())
        }
        [host, port] => {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("Invalid master port")?;
            Ok(format!("{host} {port}"))
        }
        _ => Err("replicaof takes a host and a port, or NO ONE"),
    }
}

/// A directive by its name or one of Redis's old names for it.
pub fn directive(name: &str) -> Option<&'static Directive> {
    let name = ALIASES
        .iter()
        .find(|(old, _)| old.eq_ignore_ascii_case(name))
        .map_or(name, |(_, new)| new);
    DIRECTIVES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Bad directive or wrong number of arguments")]
    BadDirective,
    #[error("argument couldn't be parsed into an integer")]
    NotInteger,
    #[error("argument must be a memory value")]
    NotMemory,
    #[error("argument must be between {0} and {1} inclusive")]
    OutOfRange(i64, i64),
    #[error("argument must be 'yes' or 'no'")]
    NotBool,
    #[error("argument(s) must be one of the following: {0}")]
    NotInEnum(String),
    #[error("can't set immutable config")]
    Immutable,
    #[error("{0}")]
    Invalid(&'static str),
}

/// Parses a byte count with Redis's units: k/m/g are powers of 1000, kb/mb/gb
/// powers of 1024, case-insensitive.
pub fn parse_memory(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let mul: i64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    num.parse::<i64>().ok()?.checked_mul(mul)
}

/// Checks a value against its directive and returns its canonical form.
fn normalise(d: &Directive, args: &[String]) -> Result<String, ConfigError> {
    if !matches!(d.kind, Kind::Words | Kind::Checked(_)) && args.len() != 1 {
        return Err(ConfigError::BadDirective);
    }
    match d.kind {
        Kind::Int { min, max } => {
            let v: i64 = args[0].parse().map_err(|_| ConfigError::NotInteger)?;
            if v < min || v > max {
                return Err(ConfigError::OutOfRange(min, max));
            }
            Ok(v.to_string())
        }
        Kind::Memory { min, max } => {
            let v = parse_memory(&args[0]).ok_or(ConfigError::NotMemory)?;
            if v < min || v > max {
                return Err(ConfigError::OutOfRange(min, max));
            }
            Ok(v.to_string())
        }
        Kind::Bool => match args[0].to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".into()),
            "no" => Ok("no".into()),
            _ => Err(ConfigError::NotBool),
        },
        Kind::Enum(opts) => {
            let v = args[0].to_ascii_lowercase();
            if opts.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(ConfigError::NotInEnum(opts.join(", ")))
            }
        }
        Kind::Str => Ok(args[0].clone()),
        Kind::Checked(check) => check(&args.join(" ")).map_err(ConfigError::Invalid),
        Kind::Words => {
            if args.is_empty() {
                return Err(ConfigError::BadDirective);
            }
            Ok(args.join(" "))
        }
    }
}

/// The current value of every directive, in canonical string form.
#[derive(Debug, Clone)]
pub struct Config {
    values: HashMap<&'static str, String>,
    /// The config file this node was started with, for INFO's `config_file`.
    pub file: Option<PathBuf>,
    /// `user <name> <rule> ...` lines, with their line numbers, for
    /// `server::users` to apply at start-up.
    pub users: Vec<(usize, Vec<String>)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            values: DIRECTIVES
                .iter()
                .map(|d| (d.name, d.default.to_string()))
                .collect(),
            file: None,
            users: Vec::new(),
        }
    }
}

/// A start-up configuration failure, formatted the way `redis-server` reports one.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("\n*** FATAL CONFIG FILE ERROR (Shoal {version}) ***\nReading the configuration file, at line {line}\n>>> '{text}'\n{reason}")]
    Directive {
        version: &'static str,
        line: usize,
        text: String,
        reason: ConfigError,
    },
    #[error("Fatal error, can't open config file '{path}': {err}")]
    File { path: String, err: std::io::Error },
}

impl Config {
    /// Builds the configuration from `shoal [config-file] [--directive value ...]`.
    pub fn from_args(args: &[String]) -> Result<Config, StartupError> {
        let mut cfg = Config::default();
        let mut rest = args;
        let mut text = String::new();
        if let Some(first) = rest.first() {
            if !first.starts_with("--") {
                text = std::fs::read_to_string(first).map_err(|err| StartupError::File {
                    path: first.clone(),
                    err,
                })?;
                cfg.file = Some(std::fs::canonicalize(first).unwrap_or_else(|_| first.into()));
                rest = &rest[1..];
            }
        }
        // Command-line directives are appended to the file, one per line, as
        // redis-server does, so they win and share the same error reporting.
        for a in rest {
            if let Some(name) = a.strip_prefix("--") {
                text.push('\n');
                text.push_str(name);
            } else {
                text.push(' ');
                text.push_str(&quote(a));
            }
        }
        cfg.load_text(&text)?;
        Ok(cfg)
    }

    fn load_text(&mut self, text: &str) -> Result<(), StartupError> {
        // The first `save` line replaces the default, later ones add rules.
        let mut save_seen = false;
        self.load_lines(text, &mut save_seen, 0)
    }

    /// One file's lines (the main file with the command line after it, or
    /// an included file, read where its `include` line stands).
    fn load_lines(
        &mut self,
        text: &str,
        save_seen: &mut bool,
        depth: usize,
    ) -> Result<(), StartupError> {
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fail = |reason| StartupError::Directive {
                version: env!("CARGO_PKG_VERSION"),
                line: i + 1,
                text: trimmed.to_string(),
                reason,
            };
            let words =
                split_args(trimmed.as_bytes()).ok_or_else(|| fail(ConfigError::BadDirective))?;
            let words: Vec<String> = words
                .into_iter()
                .map(|w| String::from_utf8_lossy(&w).into_owned())
                .collect();
            if words[0].eq_ignore_ascii_case("include") {
                // Files including each other would never end.
                if words.len() != 2 || depth >= MAX_INCLUDE_DEPTH {
                    return Err(fail(ConfigError::BadDirective));
                }
                for path in included_files(&words[1]) {
                    let text =
                        std::fs::read_to_string(&path).map_err(|err| StartupError::File {
                            path: path.display().to_string(),
                            err,
                        })?;
                    self.load_lines(&text, save_seen, depth + 1)?;
                }
                continue;
            }
            if words[0].eq_ignore_ascii_case("user") {
                if words.len() < 2 {
                    return Err(fail(ConfigError::BadDirective));
                }
                self.users.push((i + 1, words));
                continue;
            }
            let d = directive(&words[0]).ok_or_else(|| fail(ConfigError::BadDirective))?;
            let v = normalise(d, &words[1..]).map_err(fail)?;
            if d.name == "save" && *save_seen && !v.is_empty() {
                let both = format!("{} {v}", self.get("save"));
                self.values.insert(d.name, both.trim().to_string());
                continue;
            }
            *save_seen |= d.name == "save";
            let v = self.merged(d.name, v);
            self.values.insert(d.name, v);
        }
        Ok(())
    }

    /// Settings Shoal does not act on that are set to something other than
    /// what it does (see [`Directive::inert`]), for a warning at start-up.
    pub fn inert_changes(&self) -> Vec<(&'static str, &str)> {
        DIRECTIVES
            .iter()
            .filter(|d| d.inert && self.get(d.name) != d.default)
            .map(|d| (d.name, self.get(d.name)))
            .collect()
    }

    /// `CONFIG SET` of one directive; checks mutability and the value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(&'static str, String), ConfigError> {
        let d = directive(name).ok_or(ConfigError::BadDirective)?;
        if !d.mutable {
            return Err(ConfigError::Immutable);
        }
        let args = if matches!(d.kind, Kind::Words | Kind::Checked(_)) {
            value.split_whitespace().map(str::to_string).collect()
        } else {
            vec![value.to_string()]
        };
        let v = normalise(d, &args)?;
        let v = self.merged(d.name, v);
        self.values.insert(d.name, v.clone());
        Ok((d.name, v))
    }

    /// A new value as it is kept: `client-output-buffer-limit` changes only
    /// the classes it names (in a file, one line per class is usual).
    fn merged(&self, name: &str, v: String) -> String {
        if name == "client-output-buffer-limit" {
            crate::server::pubsub::merge_buffer_limits(self.get(name), &v)
        } else {
            v
        }
    }

    /// Records what the server really bound (`port 0` picks a free port), so
    /// CONFIG GET and INFO tell clients the truth.
    /// Records a directive that a command, not CONFIG SET, changes
    /// (REPLICAOF), so CONFIG GET reports it.
    pub fn set_internal(&mut self, name: &'static str, value: String) {
        self.values.insert(name, value);
    }

    pub fn set_bound_port(&mut self, port: u16) {
        self.values.insert("port", port.to_string());
    }

    pub fn get(&self, name: &str) -> &str {
        self.values
            .get(name)
            .map(String::as_str)
            .expect("undeclared directive")
    }

    pub fn int(&self, name: &str) -> i64 {
        self.get(name)
            .parse()
            .expect("integer directive holds an integer")
    }

    pub fn words(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Name/value pairs whose name matches a glob, in table order.
    /// Old names match too, as in Redis (`CONFIG GET *ziplist*`).
    pub fn matching(&self, pattern: &[u8]) -> Vec<(&'static str, String)> {
        let names = DIRECTIVES
            .iter()
            .map(|d| (d.name, d.name))
            .chain(ALIASES.iter().copied());
        names
            .filter(|(shown, _)| crate::glob::glob_match(pattern, shown.as_bytes(), true))
            .map(|(shown, name)| (shown, self.get(name).to_string()))
            .collect()
    }
}

/// Marks where CONFIG REWRITE starts appending directives the file did
/// not have (Redis's own words, so either server's rewrite finds it).
const REWRITE_SIGNATURE: &str = "# Generated by CONFIG REWRITE";

impl Config {
    /// CONFIG REWRITE: `old` (the config file's text) with every directive
    /// set to its current value, as Redis rewrites a file. Comments and
    /// blank lines stay; a directive's line is rewritten in place (under
    /// its current name when the file used an old one); a directive the
    /// file has twice keeps one line; one the file lacks is appended after
    /// the signature line if it differs from its default.
    /// `users`: the ACL users' `user ...` lines, which replace the file's
    /// (none when users live in an `aclfile`, as Redis writes them).
    pub fn rewrite(&self, old: &str, users: &[String]) -> String {
        let mut lines: Vec<Option<String>> = Vec::new();
        let mut has_signature = false;
        let mut at: HashMap<&'static str, Vec<usize>> = HashMap::new();
        let mut user_lines = Vec::new();
        for line in old.lines() {
            let trimmed = line.trim();
            has_signature |= trimmed == REWRITE_SIGNATURE;
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                let first = split_args(trimmed.as_bytes())
                    .and_then(|w| w.into_iter().next())
                    .map(|w| String::from_utf8_lossy(&w).into_owned());
                if first
                    .as_deref()
                    .is_some_and(|w| w.eq_ignore_ascii_case("user"))
                {
                    user_lines.push(lines.len());
                } else if let Some(d) = first.as_deref().and_then(directive) {
                    at.entry(d.name).or_default().push(lines.len());
                }
            }
            lines.push(Some(line.to_string()));
        }
        let mut tail = Vec::new();
        for (i, &n) in user_lines.iter().enumerate() {
            lines[n] = Some(users.get(i).cloned().unwrap_or_default());
        }
        tail.extend(users.iter().skip(user_lines.len()).cloned());
        for d in DIRECTIVES {
            let value = self.get(d.name);
            let mine = at.remove(d.name).unwrap_or_default();
            if mine.is_empty() && value == d.default {
                continue;
            }
            let new = self.lines_for(d, value);
            // Lines left over are blanked, as Redis leaves them.
            for (i, &n) in mine.iter().enumerate() {
                lines[n] = Some(new.get(i).cloned().unwrap_or_default());
            }
            tail.extend(new.into_iter().skip(mine.len()));
        }
        if !tail.is_empty() && !has_signature {
            tail.splice(0..0, [String::new(), REWRITE_SIGNATURE.to_string()]);
        }
        let mut out = String::new();
        for l in lines.into_iter().flatten().chain(tail) {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    /// A directive's line(s) in a config file for `value`, as Redis writes
    /// them: byte counts in its units, strings quoted, the data directory
    /// as an absolute path, one `save` line per rule, no line for "not a
    /// replica".
    fn lines_for(&self, d: &Directive, value: &str) -> Vec<String> {
        let shown = match (d.kind, d.name) {
            (_, "replicaof") if value.is_empty() => return Vec::new(),
            (_, "save") if !value.is_empty() => {
                let w: Vec<&str> = value.split_whitespace().collect();
                return w
                    .chunks(2)
                    .map(|p| format!("save {}", p.join(" ")))
                    .collect();
            }
            // One line per class that differs from its default, in Redis's
            // words (a file's other lines for it are blanked).
            (_, "client-output-buffer-limit") => {
                let groups = |v: &'static str| v.split_whitespace().collect::<Vec<_>>();
                let default = groups(d.default);
                let w: Vec<&str> = value.split_whitespace().collect();
                return w
                    .chunks_exact(4)
                    .filter(|g| !default.chunks_exact(4).any(|dg| dg == *g))
                    .map(|g| {
                        let class = if g[0] == "slave" { "replica" } else { g[0] };
                        let mem = |s: &str| s.parse().map_or(s.to_string(), format_memory);
                        format!("{} {class} {} {} {}", d.name, mem(g[1]), mem(g[2]), g[3])
                    })
                    .collect();
            }
            (Kind::Memory { .. }, _) => value.parse().map_or(value.to_string(), format_memory),
            (_, "dir") => repr(
                &std::fs::canonicalize(value)
                    .map_or(value.to_string(), |p| p.display().to_string()),
            ),
            (Kind::Str, _) => repr(value),
            (Kind::Words | Kind::Checked(_), _) if !value.is_empty() => value.to_string(),
            _ => quote(value),
        };
        vec![format!("{} {shown}", d.name)]
    }
}

const MAX_INCLUDE_DEPTH: usize = 16;

/// The files an `include` line names, as Redis reads them: a path, or a
/// pattern whose last part has wildcards, for the matching files in name
/// order (none is fine: an empty conf.d is not an error).
fn included_files(pattern: &str) -> Vec<std::path::PathBuf> {
    let path = std::path::Path::new(pattern);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let wild = name.as_deref().is_some_and(|n| n.contains(['*', '?', '[']));
    let (Some(name), true) = (name, wild) else {
        return vec![path.to_path_buf()];
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter(|e| {
            let file = e.file_name();
            let file = file.as_encoded_bytes();
            // As glob(3): a wildcard does not match a leading dot.
            (!file.starts_with(b".") || name.starts_with('.'))
                && crate::glob::glob_match(name.as_bytes(), file, false)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// A byte count as Redis writes one in a config file.
fn format_memory(n: i64) -> String {
    const UNITS: [(i64, &str); 3] = [(1 << 30, "gb"), (1 << 20, "mb"), (1 << 10, "kb")];
    match UNITS.iter().find(|(u, _)| n != 0 && n % u == 0) {
        Some((u, name)) => format!("{}{name}", n / u),
        None => n.to_string(),
    }
}

/// A string in double quotes with Redis's escapes (its `sdscatrepr`),
/// which the config reader reads back exactly.
fn repr(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'\\' | b'"' => {
                out.push('\\');
                out.push(b as char);
            }
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

fn quote(s: &str) -> String {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// What CONFIG REWRITE writes reads back as the same configuration,
    /// awkward strings and byte counts included.
    #[test]
    fn a_rewritten_file_reads_back_the_same() {
        let mut c = Config::default();
        for (k, v) in [
            ("requirepass", "pa ss\"wo\\rd\t\u{e9}"),
            ("maxmemory", "1536kb"),
            ("repl-backlog-size", "1000"),
            ("save", "900 1 300 10"),
            ("bind", "127.0.0.1 ::1"),
        ] {
            let args: Vec<String> = if k == "save" || k == "bind" {
                v.split(' ').map(str::to_string).collect()
            } else {
                vec![v.to_string()]
            };
            let d = directive(k).unwrap();
            c.values.insert(d.name, normalise(d, &args).unwrap());
        }
        let text = c.rewrite("", &[]);
        assert!(text.contains("maxmemory 1536kb\n"), "{text}");
        assert!(text.contains("repl-backlog-size 1000\n"), "{text}");
        let mut back = Config::default();
        back.load_text(&text).unwrap();
        for d in DIRECTIVES {
            assert_eq!(back.get(d.name), c.get(d.name), "{}", d.name);
        }
    }

    #[test]
    fn command_line_overrides_defaults() {
        let c = Config::from_args(&args(&[
            "--port",
            "7001",
            "--bind",
            "127.0.0.1",
            "::1",
            "--requirepass",
            "",
        ]))
        .unwrap();
        assert_eq!(c.int("port"), 7001);
        assert_eq!(c.words("bind"), vec!["127.0.0.1", "::1"]);
        assert_eq!(c.get("requirepass"), "");
        assert_eq!(c.int("databases"), 16);
    }

    #[test]
    fn bad_directives_name_the_line() {
        let e = Config::from_args(&args(&["--port", "70000"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'port 70000'") && e.contains("between 0 and 65535"),
            "{e}"
        );
        let e = Config::from_args(&args(&["--nosuch", "1"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Bad directive"), "{e}");
        let e = Config::from_args(&args(&["--loglevel", "loud"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("one of the following"), "{e}");
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1kb"), Some(1024));
        assert_eq!(parse_memory("1K"), Some(1000));
        assert_eq!(parse_memory("2gb"), Some(2 << 30));
        assert_eq!(parse_memory("12"), Some(12));
        assert_eq!(parse_memory("1x"), None);
    }

    #[test]
    fn config_set_respects_mutability() {
        let mut c = Config::default();
        assert_eq!(c.set("databases", "1").unwrap_err(), ConfigError::Immutable);
        assert_eq!(
            c.set("maxclients", "x").unwrap_err(),
            ConfigError::NotInteger
        );
        c.set("MAXCLIENTS", "5").unwrap();
        assert_eq!(c.int("maxclients"), 5);
        assert_eq!(c.matching(b"maxc*").len(), 1);
        // maxmemory, -policy, -samples, -eviction-tenacity, -clients.
        assert_eq!(c.matching(b"maxmemory*").len(), 5);
    }
}
