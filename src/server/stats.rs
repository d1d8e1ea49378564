//! Counters behind INFO stats, commandstats and errorstats.
//!
//! All counters are relaxed atomics: they are observations, not
//! synchronisation, and INFO may read them mid-update.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

#[derive(Default)]
pub struct CommandStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Stats {
    pub connections_received: AtomicU64,
    pub commands_processed: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub expired_keys: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    pub error_replies: AtomicU64,
    pub reads_processed: AtomicU64,
    pub writes_processed: AtomicU64,
    pub expire_cycle_usec: AtomicU64,
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
            connections_received: AtomicU64::new(0),
            commands_processed: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            expired_keys: AtomicU64::new(0),
            keyspace_hits: AtomicU64::new(0),
            keyspace_misses: AtomicU64::new(0),
            error_replies: AtomicU64::new(0),
            reads_processed: AtomicU64::new(0),
            writes_processed: AtomicU64::new(0),
            expire_cycle_usec: AtomicU64::new(0),
            commands: (0..commands).map(|_| CommandStat::default()).collect(),
            errors: Mutex::new(HashMap::new()),
            ops_samples: Mutex::new(OpsSampler::default()),
        }
    }

    pub fn hit_or_miss(&self, hit: bool) {
        if hit {
            self.keyspace_hits.fetch_add(1, Relaxed);
        } else {
            self.keyspace_misses.fetch_add(1, Relaxed);
        }
    }

    pub fn error(&self, code: &str) {
        self.error_replies.fetch_add(1, Relaxed);
        *self.errors.lock().entry(code.to_string()).or_insert(0) += 1;
    }

    /// Called by the server cron: records the ops rate since the last call.
    pub fn sample_ops(&self, now_ms: i64) {
        let mut s = self.ops_samples.lock();
        let count = self.commands_processed.load(Relaxed);
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
            &self.keyspace_hits,
            &self.keyspace_misses,
            &self.error_replies,
            &self.reads_processed,
            &self.writes_processed,
            &self.expire_cycle_usec,
        ] {
            c.store(0, Relaxed);
        }
        for c in &self.commands {
            c.calls.store(0, Relaxed);
            c.usec.store(0, Relaxed);
            c.rejected.store(0, Relaxed);
            c.failed.store(0, Relaxed);
        }
        self.errors.lock().clear();
    }
}
