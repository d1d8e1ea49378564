//! Counters behind INFO stats, commandstats, errorstats and latencystats.
//!
//! All counters are relaxed atomics: they are observations, not
//! synchronisation, and INFO may read them mid-update.
//!
//! Counters bumped on every request are sharded: each thread adds to its own
//! cache line and readers sum the shards. One shared atomic would bounce
//! between cores on every command and cost more than the command itself.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

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
    /// Made at the first call; the shard's thread is almost always the
    /// only one to take the lock.
    latencies: Mutex<Option<Box<Latencies>>>,
}

/// A command's run times, in nanoseconds from 1 ns to 1 s with 2
/// significant digits: Redis's `latency-tracking` histogram, so LATENCY
/// HISTOGRAM's buckets and INFO's percentiles come out alike.
pub type Latencies = hdrhistogram::Histogram<u64>;

fn new_latencies() -> Latencies {
    Latencies::new_with_bounds(1, 1_000_000_000, 2).expect("valid bounds")
}

/// The value at percentile `p` (0 to 100), as Redis's HDR library finds
/// it: the count rounded to nearest (where this crate rounds up), then the
/// highest value equivalent to the one reached.
pub fn value_at_percentile(h: &Latencies, p: f64) -> u64 {
    let count = ((p.min(100.0) / 100.0 * h.len() as f64 + 0.5) as u64).max(1);
    let mut seen = 0;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= count {
            let at = v.value_iterated_to();
            return if p == 0.0 {
                h.lowest_equivalent(at)
            } else {
                h.highest_equivalent(at)
            };
        }
    }
    0
}

/// LATENCY HISTOGRAM's cumulative distribution: at each power of two from
/// 1024 ns, (that level's highest equivalent value in microseconds, runs
/// that took at most that long), where the count grew, as Redis's
/// logarithmic walk over its HDR histogram reports it.
pub fn cumulative(h: &Latencies) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut recorded = h
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .peekable();
    let (mut level, mut total) = (1024u64, 0);
    while total < h.len() {
        let top = h.highest_equivalent(level);
        let before = total;
        while let Some((_, n)) = recorded.next_if(|(v, _)| *v <= top) {
            total += n;
        }
        if total > before {
            out.push((top / 1000, total));
        }
        level = level.saturating_mul(2);
    }
    out
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

    /// Records runs: (microseconds, how many runs took that long). As in
    /// Redis, whole microseconds go in as nanoseconds, clamped to the
    /// histogram's range.
    pub fn record_latencies(&self, runs: impl Iterator<Item = (u64, u64)>) {
        let mut h = self.0[shard()].latencies.lock();
        let h = h.get_or_insert_with(|| Box::new(new_latencies()));
        for (usec, n) in runs {
            let ns = usec.saturating_mul(1000).clamp(1, 1_000_000_000);
            h.saturating_record_n(ns, n);
        }
    }

    /// All threads' histograms together, or `None` if never called.
    pub fn latencies(&self) -> Option<Latencies> {
        let mut all: Option<Latencies> = None;
        for s in &self.0 {
            if let Some(h) = s.latencies.lock().as_deref() {
                match all.as_mut() {
                    Some(a) => a.add(h).expect("same bounds"),
                    None => all = Some(h.clone()),
                }
            }
        }
        all.filter(|h| !h.is_empty())
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
            *s.latencies.lock() = None;
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
    rate_samples: Mutex<RateSampler>,
}

/// What INFO reports per second (`instantaneous_*`).
#[derive(Clone, Copy)]
pub enum Rate {
    Ops = 0,
    NetInput = 1,
    NetOutput = 2,
    ReplInput = 3,
    ReplOutput = 4,
}

/// As Redis samples its instantaneous metrics: at every cron tick the
/// rate since the last tick; the figure is the mean of the last 16.
#[derive(Default)]
struct RateSampler {
    last_ms: i64,
    last: [u64; 5],
    samples: [[u64; 16]; 5],
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
            rate_samples: Mutex::new(RateSampler::default()),
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

    /// Called by the server cron: records each rate since the last call.
    pub fn sample_rates(&self, now_ms: i64) {
        let now = [
            self.commands_processed.get(),
            self.net_input_bytes.get(),
            self.net_output_bytes.get(),
            self.net_repl_input_bytes.get(),
            self.net_repl_output_bytes.get(),
        ];
        let mut s = self.rate_samples.lock();
        if s.last_ms > 0 && now_ms > s.last_ms {
            let i = s.idx;
            for (m, count) in now.iter().enumerate() {
                // CONFIG RESETSTAT may have set a counter back.
                let delta = count.saturating_sub(s.last[m]);
                s.samples[m][i] = delta * 1000 / (now_ms - s.last_ms) as u64;
            }
            s.idx = (i + 1) % 16;
        }
        s.last_ms = now_ms;
        s.last = now;
    }

    /// The mean of the last 16 samples of `rate`, per second.
    pub fn instantaneous(&self, rate: Rate) -> u64 {
        let s = self.rate_samples.lock();
        s.samples[rate as usize].iter().sum::<u64>() / 16
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_as_redis_reads_its_hdr_histograms() {
        let s = CommandStat::default();
        assert!(s.latencies().is_none());
        s.record_latencies([(1, 3), (5, 1), (40, 1), (0, 1)].into_iter());
        let h = s.latencies().unwrap();
        assert_eq!(h.len(), 6);
        // 0 us is clamped to 1 ns; 1 us is counted at the 1024 ns level
        // (reported as its highest equivalent, 1031 ns), 5 us at 8192 (8255),
        // 40 us at 65536 (66047): Redis's labels 1, 8 and 66.
        assert_eq!(cumulative(&h), vec![(1, 4), (8, 5), (66, 6)]);
        assert_eq!(value_at_percentile(&h, 0.0), 1);
        assert_eq!(value_at_percentile(&h, 50.0), 1003);
        assert_eq!(value_at_percentile(&h, 80.0), 5023);
        assert_eq!(value_at_percentile(&h, 100.0), 40191);
        s.reset();
        assert!(s.latencies().is_none());
    }
}

/// Time spent over `maxmemory`, as Redis counts it: from the first
/// command that found memory over the limit to the first that found it
/// under again.
#[derive(Default)]
pub struct OverLimit {
    /// Unix ms memory was first found over the limit (0: it is not).
    since_ms: AtomicI64,
    /// Past spells over the limit, in ms.
    total_ms: AtomicU64,
}

impl OverLimit {
    pub fn over(&self, now_ms: i64) {
        let _ = self
            .since_ms
            .compare_exchange(0, now_ms.max(1), Relaxed, Relaxed);
    }

    pub fn under(&self, now_ms: i64) {
        let since = self.since_ms.load(Relaxed);
        if since != 0
            && self
                .since_ms
                .compare_exchange(since, 0, Relaxed, Relaxed)
                .is_ok()
        {
            self.total_ms
                .fetch_add((now_ms - since).max(0) as u64, Relaxed);
        }
    }

    /// The current spell, and all of them (the current one included), in ms.
    pub fn times(&self, now_ms: i64) -> (u64, u64) {
        let since = self.since_ms.load(Relaxed);
        let current = if since == 0 {
            0
        } else {
            (now_ms - since).max(0) as u64
        };
        (current, self.total_ms.load(Relaxed) + current)
    }
}
