//! Publish/subscribe: who listens to what, and delivery.
//!
//! ```text
//!  PUBLISH ch msg ──▶ PubSub::publish ──▶ each subscriber of ch, and of every
//!                                         pattern matching ch: its queue
//!                                         (unbounded channel + byte count)
//!  subscriber's connection ◀── drains its queue, writes message / pmessage
//!                              (a RESP3 push, or a RESP2 array)
//! ```
//!
//! A subscriber's queue is its output buffer as far as pub/sub goes: bytes
//! published to it and not yet taken by its connection. Redis's
//! `client-output-buffer-limit pubsub <hard> <soft> <seconds>` bounds it:
//! past the hard limit, or above the soft limit for longer than
//! `seconds`, the subscriber is disconnected at once and what was queued
//! for it is dropped, so a subscriber that stopped reading costs bounded
//! memory however fast others publish.
//!
//! Sharded channels (SSUBSCRIBE/SPUBLISH) are a separate namespace, as in
//! Redis; on a single node they behave like ordinary channels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use super::client::ClientHandle;
use crate::glob::glob_match;

/// What a subscriber receives.
#[derive(Debug)]
pub struct Message {
    /// `message`, `pmessage` or `smessage`.
    pub kind: &'static str,
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Message {
    /// Bytes it holds while queued (what the output buffer limit counts).
    pub fn size(&self) -> usize {
        self.channel.len() + self.payload.len() + self.pattern.as_ref().map_or(0, Bytes::len) + 32
    }
}

/// One subscribed connection's end of the delivery queue.
pub struct Subscriber {
    pub tx: mpsc::UnboundedSender<Arc<Message>>,
    /// Bytes queued and not yet taken by the connection.
    pub queued: AtomicUsize,
    /// Unix ms since when `queued` is above the soft limit (0: it is not).
    pub soft_since: AtomicI64,
    pub handle: Arc<ClientHandle>,
}

impl Subscriber {
    /// The connection took a message off the queue.
    pub fn taken(&self, m: &Message) {
        self.queued.fetch_sub(m.size(), Relaxed);
    }
}

/// `client-output-buffer-limit pubsub`: hard bytes, soft bytes, seconds
/// (0 disables a limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_seconds: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Space {
    Channel,
    Pattern,
    Shard,
}

type Subscribers = HashMap<Bytes, HashMap<u64, Arc<Subscriber>>>;

#[derive(Default)]
pub struct PubSub {
    channels: RwLock<Subscribers>,
    patterns: RwLock<Subscribers>,
    shard: RwLock<Subscribers>,
    limit: RwLock<Option<BufferLimit>>,
}

impl PubSub {
    fn space(&self, s: Space) -> &RwLock<Subscribers> {
        match s {
            Space::Channel => &self.channels,
            Space::Pattern => &self.patterns,
            Space::Shard => &self.shard,
        }
    }

    pub fn set_limit(&self, l: BufferLimit) {
        *self.limit.write() = Some(l);
    }

    /// Returns whether the subscription is new.
    pub fn subscribe(&self, s: Space, name: &Bytes, sub: &Arc<Subscriber>) -> bool {
        self.space(s)
            .write()
            .entry(name.clone())
            .or_default()
            .insert(sub.handle.id, sub.clone())
            .is_none()
    }

    pub fn unsubscribe(&self, s: Space, name: &[u8], client_id: u64) -> bool {
        let mut g = self.space(s).write();
        let Some(subs) = g.get_mut(name) else {
            return false;
        };
        let removed = subs.remove(&client_id).is_some();
        if subs.is_empty() {
            g.remove(name);
        }
        removed
    }

    /// Delivers to a channel's subscribers and to every matching pattern's
    /// (or, for `Space::Shard`, to the shard channel's); returns how many
    /// received it.
    pub fn publish(&self, s: Space, channel: &Bytes, payload: &Bytes, now_ms: i64) -> usize {
        let limit = *self.limit.read();
        let mut n = 0;
        let kind = if s == Space::Shard {
            "smessage"
        } else {
            "message"
        };
        if let Some(subs) = self.space(s).read().get(channel) {
            let m = Arc::new(Message {
                kind,
                pattern: None,
                channel: channel.clone(),
                payload: payload.clone(),
            });
            for sub in subs.values() {
                n += deliver(sub, &m, limit, now_ms) as usize;
            }
        }
        if s == Space::Channel {
            for (pattern, subs) in self.patterns.read().iter() {
                if !glob_match(pattern, channel, false) {
                    continue;
                }
                let m = Arc::new(Message {
                    kind: "pmessage",
                    pattern: Some(pattern.clone()),
                    channel: channel.clone(),
                    payload: payload.clone(),
                });
                for sub in subs.values() {
                    n += deliver(sub, &m, limit, now_ms) as usize;
                }
            }
        }
        n
    }

    /// Names with at least one subscriber, optionally matching a pattern.
    pub fn names(&self, s: Space, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.space(s)
            .read()
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    pub fn count(&self, s: Space, name: &[u8]) -> usize {
        self.space(s).read().get(name).map_or(0, HashMap::len)
    }

    /// PUBSUB NUMPAT and INFO's pubsub_patterns: distinct patterns that
    /// any client subscribes to (Redis 7 counts patterns, not
    /// subscriptions).
    pub fn distinct_patterns(&self) -> usize {
        self.patterns.read().len()
    }
}

/// Queues a message for one subscriber, or disconnects it if that would
/// break its output buffer limit. Returns whether it was queued.
fn deliver(sub: &Subscriber, m: &Arc<Message>, limit: Option<BufferLimit>, now_ms: i64) -> bool {
    if sub.handle.killed.load(Relaxed) {
        return false;
    }
    let size = m.size();
    let after = sub.queued.fetch_add(size, Relaxed) + size;
    if let Some(l) = limit {
        let over_hard = l.hard > 0 && after as u64 > l.hard;
        let over_soft = l.soft > 0 && after as u64 > l.soft;
        let soft_expired = if over_soft {
            let since = sub.soft_since.load(Relaxed);
            if since == 0 {
                sub.soft_since.store(now_ms, Relaxed);
                false
            } else {
                now_ms - since > l.soft_seconds * 1000
            }
        } else {
            sub.soft_since.store(0, Relaxed);
            false
        };
        if over_hard || soft_expired {
            sub.queued.fetch_sub(size, Relaxed);
            tracing::warn!(
                "Client id={} addr={} scheduled to be closed ASAP for overcoming of output buffer limits.",
                sub.handle.id,
                sub.handle.addr
            );
            sub.handle.kill();
            return false;
        }
    }
    if sub.tx.send(m.clone()).is_err() {
        sub.queued.fetch_sub(size, Relaxed);
        return false;
    }
    true
}

/// Parses `client-output-buffer-limit`'s value ("normal 0 0 0 replica ...
/// pubsub 32mb 8mb 60") and returns the pubsub class's limit.
pub fn parse_buffer_limits(v: &str) -> Option<BufferLimit> {
    Some(
        buffer_limit(v, "pubsub")
            .ok()?
            .unwrap_or(DEFAULT_PUBSUB_LIMIT),
    )
}

/// The limit `client-output-buffer-limit` sets for one class of clients
/// (`pubsub` or `replica`, alias `slave`): `Ok(None)` if it names no limit
/// for that class, or Redis's message for a bad value, checked in Redis's
/// order (the count of words, then each group's class, then its numbers).
pub fn buffer_limit(v: &str, class: &str) -> Result<Option<BufferLimit>, &'static str> {
    let words: Vec<&str> = v.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.");
    }
    let mut out = None;
    for c in words.chunks(4) {
        let name = match c[0].to_ascii_lowercase().as_str() {
            "slave" => "replica".to_string(),
            n @ ("pubsub" | "normal" | "replica") => n.to_string(),
            _ => return Err("Invalid client class specified in buffer limit configuration."),
        };
        let bad = "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let memory = |w: &str| crate::config::parse_memory(w).filter(|n| *n >= 0);
        let (Some(hard), Some(soft), Some(secs)) = (
            memory(c[1]),
            memory(c[2]),
            c[3].parse::<i64>().ok().filter(|s| *s >= 0),
        ) else {
            return Err(bad);
        };
        if name == class {
            out = Some(BufferLimit {
                hard: hard as u64,
                soft: soft as u64,
                soft_seconds: secs,
            });
        }
    }
    Ok(out)
}

/// `client-output-buffer-limit` as Redis keeps it: a value names some
/// classes of clients and the others keep their limits, so what is kept
/// (and shown by CONFIG GET) always names all three, in Redis's order and
/// words: `normal ... slave ... pubsub ...`. Both values are canonical.
pub fn merge_buffer_limits(current: &str, new: &str) -> String {
    const CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];
    let mut limits: [Vec<&str>; 3] = Default::default();
    for v in [current, new] {
        let words: Vec<&str> = v.split_whitespace().collect();
        for group in words.chunks_exact(4) {
            let class = if group[0] == "replica" {
                "slave"
            } else {
                group[0]
            };
            if let Some(i) = CLASSES.iter().position(|c| *c == class) {
                limits[i] = group[1..].to_vec();
            }
        }
    }
    CLASSES
        .iter()
        .zip(&limits)
        .filter(|(_, l)| !l.is_empty())
        .map(|(c, l)| format!("{c} {}", l.join(" ")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn canonical_buffer_limits(v: &str) -> Result<String, &'static str> {
    buffer_limit(v, "pubsub")?;
    let words: Vec<String> = v
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| match i % 4 {
            1 | 2 => crate::config::parse_memory(w).unwrap_or(0).to_string(),
            _ => w.to_ascii_lowercase(),
        })
        .collect();
    Ok(words.join(" "))
}

/// Redis's default for replicas: `replica 256mb 64mb 60`.
pub const DEFAULT_REPLICA_LIMIT: BufferLimit = BufferLimit {
    hard: 256 * 1024 * 1024,
    soft: 64 * 1024 * 1024,
    soft_seconds: 60,
};

/// Redis's default: `pubsub 32mb 8mb 60`.
pub const DEFAULT_PUBSUB_LIMIT: BufferLimit = BufferLimit {
    hard: 32 * 1024 * 1024,
    soft: 8 * 1024 * 1024,
    soft_seconds: 60,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_limits_parse_like_redis() {
        assert_eq!(
            parse_buffer_limits("normal 0 0 0 replica 256mb 64mb 60 pubsub 32mb 8mb 60"),
            Some(DEFAULT_PUBSUB_LIMIT)
        );
        assert_eq!(
            parse_buffer_limits("pubsub 1mb 0 0"),
            Some(BufferLimit {
                hard: 1024 * 1024,
                soft: 0,
                soft_seconds: 0
            })
        );
        assert_eq!(parse_buffer_limits("pubsub 1mb 0"), None);
        assert_eq!(parse_buffer_limits("other 1 1 1"), None);
    }
}
