//! The active expiry cycle.
//!
//! Lazy expiry (a key is removed when a command finds it expired) is not
//! enough: keys nobody reads again would stay in memory for ever. So, `hz`
//! times a second, the cron walks the slot tables that hold keys with an
//! expiry and removes the expired ones, resuming where the last cycle
//! stopped. Each cycle has a time budget (25% of a tick, as Redis's slow cycle),
//! so the CPU it takes is bounded whatever the keyspace holds; when a cycle
//! runs out of time it counts `expired_time_cap_reached_count`. A full pass
//! over all slots therefore takes a bounded number of ticks, which keeps
//! expired-but-unread keys a small fraction of the keyspace.
//!
//! Each removal records a `DEL` effect while the slot is locked, like a lazy
//! expiry does. The walk also shrinks tables that deletions left mostly
//! empty (Redis's cron resizes its dicts the same way).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::keyspace::SLOTS;

use super::{now_ms, Server};

pub fn active_cycle(server: &Server, budget: Duration) {
    let start = Instant::now();
    let dbs: Vec<usize> = server.keyspace.used_dbs().map(|(i, _)| i).collect();
    if dbs.is_empty() {
        return;
    }
    let total = server.keyspace.databases() * SLOTS;
    let mut pos = server.expire_cursor.load(Relaxed) % total;
    let mut expired = Vec::new();
    let mut visited = 0;
    let (mut checked, mut found) = (0usize, 0usize);
    while visited < total {
        let (db, slot) = (pos / SLOTS, pos % SLOTS);
        if let Some(dbref) = dbs.contains(&db).then(|| server.keyspace.db(db)) {
            let mut t = dbref.lock_slot(crate::keyspace::SlotId(slot as u16));
            // Every table passes here once a cycle round, however its keys
            // went (expiry, DEL, eviction): the place to give memory back.
            t.shrink();
            if t.volatile() > 0 {
                expired.clear();
                checked += t.volatile();
                t.remove_expired(now_ms(), &mut expired);
                found += expired.len();
                for k in &expired {
                    server.effects.append(db, &[b"DEL", k]);
                    server.watches.touch(db, k);
                    server.tracking.invalidate(&server.clients, k, 0);
                    server.notifier.notify(
                        &server.pubsub,
                        crate::server::notify::EXPIRED,
                        "expired",
                        db,
                        k,
                        now_ms(),
                    );
                }
                server.stats.expired_keys.add(expired.len() as u64);
                if !expired.is_empty() {
                    // BCAST clients hear of the expiry before anyone can
                    // see the key gone, as Redis tells them before it
                    // serves another command.
                    server.tracking.broadcast(&server.clients);
                }
            }
        } else {
            // Skip the rest of an unused database at once.
            pos = (db + 1) * SLOTS - 1;
            visited += SLOTS - slot - 1;
        }
        pos = (pos + 1) % total;
        visited += 1;
        if visited % 64 == 0 && start.elapsed() > budget {
            server.expire_cycles_capped.fetch_add(1, Relaxed);
            break;
        }
    }
    server.expire_cursor.store(pos, Relaxed);
    if checked > 0 {
        // Redis's moving average: 5% this cycle, 95% the past.
        let now = found as f64 / checked as f64;
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
