//! Choosing keys to evict under `maxmemory`.
//!
//! Like Redis, Shoal does not keep keys in LRU or LFU order (that would
//! cost memory and a lock on every read); it *samples*: each eviction looks
//! at `maxmemory-samples` keys, adds them to a pool of the 16 best
//! candidates seen so far (Redis's eviction pool) and evicts the pool's
//! best key that still exists.
//! Samples are one random key from each of consecutive non-empty slot
//! tables starting at a random slot, so the cost does not depend on the
//! dataset's size and a sparse keyspace is still found.
//!
//! Access metadata lives in every node: the LRU clock (`access`, Unix
//! seconds) and the LFU counter (`freq`, Redis's logarithmic 8-bit
//! counter, with `ldt` the minute it last decayed).

use rand::Rng;

use super::value::Node;
use super::{Keyspace, SlotId, SLOTS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

pub const POLICY_NAMES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

impl Policy {
    pub fn parse(s: &str) -> Policy {
        match s {
            "allkeys-lru" => Policy::AllKeysLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-lru" => Policy::VolatileLru,
            "volatile-lfu" => Policy::VolatileLfu,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => Policy::NoEviction,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The inverse of [`Policy::index`]: read on every key lookup, so a
    /// table, not a name comparison.
    pub fn from_index(i: usize) -> Policy {
        const ALL: [Policy; 8] = [
            Policy::NoEviction,
            Policy::AllKeysLru,
            Policy::AllKeysLfu,
            Policy::AllKeysRandom,
            Policy::VolatileLru,
            Policy::VolatileLfu,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ];
        ALL.get(i).copied().unwrap_or(Policy::NoEviction)
    }

    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }
}

/// A new key's LFU counter, as in Redis: it must not be evicted before it
/// had a chance to be read.
pub const LFU_INIT_VAL: u8 = 5;

/// Redis's LFU parameters, `lfu-log-factor` (how many accesses it takes
/// to raise the counter: the higher, the more) and `lfu-decay-time`
/// (minutes per point the counter loses while the key is not read; 0:
/// never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lfu {
    pub log_factor: u32,
    pub decay_minutes: u32,
}

impl Default for Lfu {
    fn default() -> Lfu {
        Lfu {
            log_factor: 10,
            decay_minutes: 1,
        }
    }
}

pub fn minutes(now_ms: i64) -> u16 {
    ((now_ms / 60_000) & 0xFFFF) as u16
}

impl Node {
    /// The LFU counter after the decay due since it was last touched.
    pub fn lfu_decayed(&self, now_ms: i64, lfu: Lfu) -> u8 {
        if lfu.decay_minutes == 0 {
            return self.freq;
        }
        let now = minutes(now_ms);
        let elapsed = now.wrapping_sub(self.ldt) as u64;
        let periods = elapsed / lfu.decay_minutes as u64;
        self.freq.saturating_sub(periods.min(255) as u8)
    }

    /// An access under an LFU policy: decay, then a logarithmic increment
    /// (the more accesses counted, the less likely the next one counts).
    pub fn lfu_touch(&mut self, now_ms: i64, lfu: Lfu) {
        let mut c = self.lfu_decayed(now_ms, lfu);
        if c < 255 {
            let base = c.saturating_sub(LFU_INIT_VAL) as f64;
            let p = 1.0 / (base * lfu.log_factor as f64 + 1.0);
            if rand::thread_rng().gen::<f64>() < p {
                c += 1;
            }
        }
        self.freq = c;
        self.ldt = minutes(now_ms);
    }
}

/// How good an eviction candidate a key is under `policy`: higher is better.
fn score(policy: Policy, n: &Node, now_ms: i64, lfu: Lfu) -> u64 {
    match policy {
        Policy::AllKeysLru | Policy::VolatileLru => {
            ((now_ms / 1000) as u64).saturating_sub(n.access as u64)
        }
        Policy::AllKeysLfu | Policy::VolatileLfu => 255 - n.lfu_decayed(now_ms, lfu) as u64,
        Policy::VolatileTtl => u64::MAX - n.expire_at as u64,
        _ => 0,
    }
}

/// A sampled key: its eviction score (higher goes first) and where it is.
type Candidate = (u64, usize, SlotId, Vec<u8>);

/// Redis's eviction pool: the best candidates seen over the last samplings,
/// kept between evictions. Each eviction adds its fresh samples and takes
/// the best of the pool, so the choice approximates true LRU/LFU far better
/// than the best of one small sample.
#[derive(Default)]
pub struct EvictionPool(parking_lot::Mutex<Vec<Candidate>>);

const POOL_SIZE: usize = 16;

impl EvictionPool {
    /// Forgets the candidates (their scores mean nothing under another policy).
    pub fn clear(&self) {
        self.0.lock().clear();
    }
}

impl Keyspace {
    /// The key to evict under `policy`: `samples` fresh samples join the
    /// pool, and the best pooled key that still exists is taken out of it.
    /// `None` if there is nothing to evict.
    pub fn eviction_candidate(
        &self,
        pool: &EvictionPool,
        policy: Policy,
        samples: usize,
        now_ms: i64,
        lfu: Lfu,
    ) -> Option<(usize, SlotId, Vec<u8>)> {
        let fresh = self.sample(policy, samples, now_ms, lfu);
        let mut p = pool.0.lock();
        for c in fresh {
            if !p.iter().any(|x| x.1 == c.1 && x.3 == c.3) {
                p.push(c);
            }
        }
        p.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        p.truncate(POOL_SIZE);
        while !p.is_empty() {
            let (_, db, slot, key) = p.remove(0);
            let t = self.db(db).lock_slot(slot);
            let live = t
                .peek(&key)
                .is_some_and(|n| !policy.volatile_only() || n.expire_at != 0);
            if live {
                return Some((db, slot, key));
            }
        }
        None
    }

    /// Up to `samples` keys, one random key from each of consecutive
    /// non-empty (for volatile policies: volatile) slot tables.
    fn sample(&self, policy: Policy, samples: usize, now_ms: i64, lfu: Lfu) -> Vec<Candidate> {
        let dbs: Vec<usize> = self.used_dbs().map(|(i, _)| i).collect();
        if dbs.is_empty() || policy == Policy::NoEviction {
            return Vec::new();
        }
        let mut rng = rand::thread_rng();
        let total = dbs.len() * SLOTS;
        let start = rng.gen_range(0..total);
        let mut out = Vec::with_capacity(samples);
        for step in 0..total {
            let pos = (start + step) % total;
            let (db, slot) = (dbs[pos / SLOTS], SlotId((pos % SLOTS) as u16));
            let (keys, volatile) = self.db(db).slot_counts(slot);
            if (if policy.volatile_only() {
                volatile
            } else {
                keys
            }) == 0
            {
                // Nothing to sample, known without taking the lock.
                continue;
            }
            let t = self.db(db).lock_slot(slot);
            let eligible = if policy.volatile_only() {
                t.volatile()
            } else {
                t.len()
            };
            if eligible == 0 {
                continue;
            }
            let pick = rng.gen_range(0..eligible);
            let node = if policy.volatile_only() {
                t.iter().filter(|n| n.expire_at != 0).nth(pick)
            } else {
                t.iter().nth(pick)
            };
            if let Some(n) = node {
                out.push((
                    score(policy, n, now_ms, lfu),
                    db,
                    slot,
                    n.key.as_bytes().to_vec(),
                ));
            }
            if out.len() >= samples {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_indexes_follow_the_names() {
        for (i, name) in POLICY_NAMES.iter().enumerate() {
            let p = Policy::parse(name);
            assert_eq!(p.index(), i);
            assert_eq!(Policy::from_index(i), p);
        }
    }
}
