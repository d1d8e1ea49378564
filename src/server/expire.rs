//! The active expiry cycle, Redis's slow cycle (expire.c).
//!
//! Lazy expiry (a key is removed when a command finds it expired) is not
//! enough: keys nobody reads again would stay in memory for ever. So, `hz`
//! times a second, the cron samples each database's volatile keys from
//! where it stopped last time and removes the expired ones it finds.
//!
//! The cycle adapts, as Redis's does. It looks at a database's volatile
//! keys from where its cursor stands (a slot table and a bucket in it)
//! until it has seen a round of them (20, more with
//! `active-expire-effort`), and goes on with another round only while
//! more than 10% of the last one had expired (less with more effort). A
//! keyspace of keys far from their expiry costs one round per database per
//! tick, not a walk over every key: such a walk kept a core 17% busy on a
//! node of 860k keys with a TTL that nobody used. A round stops inside a
//! table as well, so a million keys under one hash tag (one table) cost a
//! round no more than keys spread over every slot. When many keys expire at
//! once the rounds go on, within a time budget of 25% of a tick (plus 2%
//! per effort step); a cycle that uses it all counts
//! `expired_time_cap_reached_count`. Expired keys nobody reads therefore
//! stay around 10% of the volatile ones at most, Redis's own bound.
//!
//! Tables with no volatile key are passed over by their published counts,
//! without locking them. Each removal records a `DEL` effect while the
//! slot is locked, like a lazy expiry does. The rounds also sample the
//! keys' remaining TTLs for INFO keyspace's `avg_ttl`.
//!
//! Apart from sampling, the cycle visits a fixed number of tables per tick
//! in turn to shrink those deletions left mostly empty (Redis's cron
//! resizes its dicts the same way).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::keyspace::{Db, SlotId, SLOTS};

use super::{now_ms, Server};

/// Tables a cycle checks for shrinking: every table of a database once
/// in 16 ticks (1.6 s at the default `hz`).
const SHRINK_PER_CYCLE: usize = SLOTS / 16;

/// expire.c's settings, scaled by `active-expire-effort` (1-10).
struct Effort {
    /// Volatile keys a round looks at.
    keys_per_round: usize,
    /// The percentage of a round's keys found expired at or under which
    /// the database is left until the next cycle.
    acceptable_stale: usize,
    budget: Duration,
}

impl Effort {
    fn new(effort: i64, hz: u64) -> Effort {
        let e = (effort.clamp(1, 10) - 1) as usize;
        let time_perc = 25 + 2 * e as u64;
        Effort {
            keys_per_round: 20 + 20 / 4 * e,
            acceptable_stale: 10 - e,
            budget: Duration::from_micros(time_perc * 1_000_000 / hz.max(1) / 100),
        }
    }
}

/// What the cycle saw: volatile keys looked at and found expired.
#[derive(Default)]
struct Seen {
    sampled: usize,
    expired: usize,
}

pub fn active_cycle(server: &Server, hz: u64, effort: i64) {
    let start = Instant::now();
    let effort = Effort::new(effort, hz);
    shrink_some(server);
    let mut seen = Seen::default();
    let mut capped = false;
    for (index, db) in server.keyspace.used_dbs() {
        if expire_db(server, index, db, &effort, start, &mut seen) {
            capped = true;
            break;
        }
    }
    if capped {
        server.expire_cycles_capped.fetch_add(1, Relaxed);
    }
    if seen.sampled > 0 {
        // Redis's moving average: 5% this cycle, 95% the past.
        let now = seen.expired as f64 / seen.sampled as f64;
        let old = f64::from_bits(server.expired_stale_perc.load(Relaxed));
        server
            .expired_stale_perc
            .store((now * 0.05 + old * 0.95).to_bits(), Relaxed);
    }
    let took = start.elapsed();
    server.stats.expire_cycle_usec.add(took.as_micros() as u64);
    server
        .latency
        .observe("expire-cycle", took.as_millis() as u64);
}

/// Rounds over one database until one finds few enough keys expired;
/// returns whether the cycle's time ran out first.
fn expire_db(
    server: &Server,
    index: usize,
    db: &Db,
    effort: &Effort,
    start: Instant,
    seen: &mut Seen,
) -> bool {
    if db.counts().1 == 0 {
        db.avg_ttl.store(0, Relaxed);
        return false;
    }
    // Where the last round stopped: a slot table, and a bucket in it.
    let at = db.expire_cursor.load(Relaxed);
    let (mut slot, mut bucket) = ((at >> 32) % SLOTS, at & 0xffff_ffff);
    let mut names = Vec::new();
    let capped = loop {
        // A round at a time under the transaction gate, as a command runs,
        // checked anew: writes paused meanwhile (a FAILOVER waits for the
        // stream to stand still) or the node turned replica end the cycle.
        let _gate = server.gate.shared();
        if server.pause.writes_paused(now_ms()) || server.replication.is_replica() {
            break false;
        }
        let (mut sampled, mut expired) = (0, 0);
        let (mut ttl_sum, mut ttl_keys) = (0i64, 0usize);
        // A whole turn of the tables with nothing volatile in them (the
        // counts said otherwise a moment ago) ends the round too.
        let mut tables = 0;
        while sampled < effort.keys_per_round && tables < SLOTS {
            let id = SlotId(slot as u16);
            if db.slot_counts(id).1 == 0 {
                (slot, bucket, tables) = ((slot + 1) % SLOTS, 0, tables + 1);
                continue;
            }
            let mut t = db.lock_slot(id);
            let now = now_ms();
            names.clear();
            let (next, seen_here, ttl) =
                t.expire_some(bucket, effort.keys_per_round - sampled, now, &mut names);
            match next {
                Some(b) => bucket = b,
                None => (slot, bucket, tables) = ((slot + 1) % SLOTS, 0, tables + 1),
            }
            ttl_sum = ttl_sum.saturating_add(ttl);
            ttl_keys += seen_here - names.len();
            sampled += seen_here;
            expired += names.len();
            for k in &names {
                record_expiry(server, index, k, now);
            }
            server.stats.expired_keys.add(names.len() as u64);
            if !names.is_empty() {
                // BCAST clients hear of the expiry before anyone can see
                // the key gone, as Redis tells them before it serves
                // another command.
                server.tracking.broadcast(&server.clients);
            }
        }
        seen.sampled += sampled;
        seen.expired += expired;
        if ttl_keys > 0 {
            let round = ttl_sum / ttl_keys as i64;
            let old = db.avg_ttl.load(Relaxed);
            let old = if old == 0 { round } else { old };
            db.avg_ttl.store(old / 50 * 49 + round / 50, Relaxed);
        }
        if start.elapsed() > effort.budget {
            break true;
        }
        if sampled == 0 || expired * 100 / sampled <= effort.acceptable_stale {
            break false;
        }
    };
    db.expire_cursor
        .store(slot << 32 | bucket.min(0xffff_ffff), Relaxed);
    capped
}

/// What an active expiry tells the rest of the node, the slot still
/// locked: the log and replicas (a DEL), WATCH, tracking, notifications.
fn record_expiry(server: &Server, db: usize, key: &[u8], now: i64) {
    server.effects.append(db, &[b"DEL", key]);
    server.watches.touch(db, key, true);
    server.tracking.invalidate(&server.clients, key, 0, None);
    server.notifier.notify(
        &server.pubsub,
        crate::server::notify::EXPIRED,
        "expired",
        db,
        key,
        now,
    );
}

/// Shrinks the next [`SHRINK_PER_CYCLE`] tables that need it, wherever
/// their keys went (expiry, DEL, eviction).
fn shrink_some(server: &Server) {
    let dbs: Vec<&Db> = server.keyspace.used_dbs().map(|(_, db)| db).collect();
    if dbs.is_empty() {
        return;
    }
    let total = dbs.len() * SLOTS;
    let mut pos = server.shrink_cursor.load(Relaxed) % total;
    for _ in 0..SHRINK_PER_CYCLE.min(total) {
        if let Some(mut t) = dbs[pos / SLOTS].lock_used_slot(SlotId((pos % SLOTS) as u16)) {
            t.shrink();
        }
        pos = (pos + 1) % total;
    }
    server.shrink_cursor.store(pos, Relaxed);
}
