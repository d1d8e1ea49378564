//! Counters behind INFO stats, commandstats and errorstats.
//!
//! All counters are relaxed atomics: they are observations, not
//! synchronisation, and INFO may read them mid-update.
//!
//! Counters bumped on every request are sharded: each thread adds to its own
//! cache line and readers sum the shards. One shared atomic would bounce
//! between cores on every command and cost more than the command itself.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

const SHARDS: usize = 4;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Relaxed) % SHARDS);
        }
        s.get()
    })
}

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

/// A counter sharded by thread.
#[derive(Default)]
pub struct Counter([Padded; SHARDS]);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0[shard()].0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Relaxed)).sum()
    }

    pub fn reset(&self) {
        for p in &self.0 {
            p.0.store(0, Relaxed);
        }
    }
}

#[derive(Default)]
#[repr(align(64))]
struct CommandShard {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// One command's statistics, sharded by thread like [`Counter`].
#[derive(Default)]
pub struct CommandStat([CommandShard; SHARDS]);

/// A snapshot of one command's statistics.
pub struct CommandTotals {
    pub calls: u64,
    pub usec: u64,
    pub rejected: u64,
    pub failed: u64,
}

impl CommandStat {
    pub fn record(&self, calls: u64, usec: u64, failed: u64) {
        let s = &self.0[shard()];
        s.calls.fetch_add(calls, Relaxed);
        s.usec.fetch_add(usec, Relaxed);
        if failed > 0 {
            s.failed.fetch_add(failed, Relaxed);
        }
    }

    pub fn rejected(&self) {
        self.0[shard()].rejected.fetch_add(1, Relaxed);
    }

    pub fn totals(&self) -> CommandTotals {
        let sum =
            |f: fn(&CommandShard) -> &AtomicU64| self.0.iter().map(|s| f(s).load(Relaxed)).sum();
        CommandTotals {
            calls: sum(|s| &s.calls),
            usec: sum(|s| &s.usec),
            rejected: sum(|s| &s.rejected),
            failed: sum(|s| &s.failed),
        }
    }

    fn reset(&self) {
        for s in &self.0 {
            for c in [&s.calls, &s.usec, &s.rejected, &s.failed] {
                c.store(0, Relaxed);
            }
        }
    }
}

pub struct Stats {
    pub connections_received: Counter,
    pub commands_processed: Counter,
    pub net_input_bytes: Counter,
    pub net_output_bytes: Counter,
    pub rejected_connections: Counter,
    pub expired_keys: Counter,
    pub evicted_keys: Counter,
    pub keyspace_hits: Counter,
    pub keyspace_misses: Counter,
    pub error_replies: Counter,
    pub reads_processed: Counter,
    pub writes_processed: Counter,
    pub expire_cycle_usec: Counter,
    pub net_repl_input_bytes: Counter,
    pub net_repl_output_bytes: Counter,
    /// Per command, indexed like `command::TABLE.all`.
    pub commands: Vec<CommandStat>,
    /// Error replies by code (`ERR`, `WRONGTYPE`, ...).
    pub errors: Mutex<HashMap<String, u64>>,
    /// Samples of commands_processed for `instantaneous_ops_per_sec`.
    ops_samples: Mutex<OpsSampler>,
}

#[derive(Default)]
struct OpsSampler {
    last_ms: i64,
    last_count: u64,
    samples: [u64; 16],
    idx: usize,
}

impl Stats {
    pub fn new(commands: usize) -> Stats {
        Stats {
            connections_received: Counter::default(),
            commands_processed: Counter::default(),
            net_input_bytes: Counter::default(),
            net_output_bytes: Counter::default(),
            rejected_connections: Counter::default(),
            expired_keys: Counter::default(),
            evicted_keys: Counter::default(),
            net_repl_input_bytes: Counter::default(),
            net_repl_output_bytes: Counter::default(),
            keyspace_hits: Counter::default(),
            keyspace_misses: Counter::default(),
            error_replies: Counter::default(),
            reads_processed: Counter::default(),
            writes_processed: Counter::default(),
            expire_cycle_usec: Counter::default(),
            commands: (0..commands).map(|_| CommandStat::default()).collect(),
            errors: Mutex::new(HashMap::new()),
            ops_samples: Mutex::new(OpsSampler::default()),
        }
    }

    pub fn hit_or_miss(&self, hit: bool) {
        if hit {
            self.keyspace_hits.add(1);
        } else {
            self.keyspace_misses.add(1);
        }
    }

    pub fn error(&self, code: &str) {
        self.error_replies.add(1);
        *self.errors.lock().entry(code.to_string()).or_insert(0) += 1;
    }

    /// Called by the server cron: records the ops rate since the last call.
    pub fn sample_ops(&self, now_ms: i64) {
        let mut s = self.ops_samples.lock();
        let count = self.commands_processed.get();
        if s.last_ms > 0 && now_ms > s.last_ms {
            let rate = (count - s.last_count) * 1000 / (now_ms - s.last_ms) as u64;
            let i = s.idx;
            s.samples[i] = rate;
            s.idx = (i + 1) % s.samples.len();
        }
        s.last_ms = now_ms;
        s.last_count = count;
    }

    pub fn instantaneous_ops(&self) -> u64 {
        let s = self.ops_samples.lock();
        s.samples.iter().sum::<u64>() / s.samples.len() as u64
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for c in [
            &self.connections_received,
            &self.commands_processed,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.rejected_connections,
            &self.expired_keys,
            &self.evicted_keys,
            &self.keyspace_hits,
            &self.keyspace_misses,
            &self.error_replies,
            &self.reads_processed,
            &self.writes_processed,
            &self.expire_cycle_usec,
        ] {
            c.reset();
        }
        for c in &self.commands {
            c.reset();
        }
        self.errors.lock().clear();
    }
}
