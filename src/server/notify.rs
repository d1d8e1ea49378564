//! Keyspace notifications (`notify-keyspace-events`).
//!
//! Every change to the keyspace is an effect, and every effect names a
//! command whose table row says its keys and its family, so notifications
//! are derived from effects in one place (`command::Ctx`): the family gives
//! the event class (`g` generic, `$` string, `l` list, `s` set, `h` hash,
//! `z` sorted set), the effect's name the event (`set`, `lpush`, `hset`,
//! ... with Redis's names where they differ, such as `incrby` for INCR and
//! `expire` for the recorded `PEXPIREAT`). A command whose effect is
//! another command names its own event (`Ctx::emit_as`: INCRBYFLOAT,
//! HINCRBYFLOAT, SPOP). A write that empties a collection sends `del`
//! after its own event. Expiry deletions send `expired` (class `x`) and
//! evictions `evicted` instead of `del`.
//!
//! ```text
//!  K: PUBLISH __keyspace@<db>__:<key>   <event>
//!  E: PUBLISH __keyevent@<db>__:<event> <key>
//! ```

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use bytes::Bytes;

use super::pubsub::{PubSub, Space};

pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const MODULE: u32 = 1 << 12;
pub const NEW: u32 = 1 << 13;

/// The classes `A` stands for, and the letters in canonical order.
const ALL: u32 = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
const LETTERS: [(char, u32); 14] = [
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
    ('K', KEYSPACE),
    ('E', KEYEVENT),
    ('m', KEY_MISS),
    ('n', NEW),
];

pub fn parse_flags(s: &str) -> Option<u32> {
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'A' => ALL,
            c => LETTERS.iter().find(|(l, _)| *l == c)?.1,
        };
    }
    Some(f)
}

pub fn flags_to_string(f: u32) -> String {
    let mut s = String::new();
    if f & ALL == ALL {
        s.push('A');
    }
    for (c, bit) in LETTERS {
        if (f & ALL != ALL || bit & ALL == 0) && f & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The config table's check for `notify-keyspace-events`.
pub fn canonical_flags(v: &str) -> Result<String, &'static str> {
    parse_flags(v)
        .map(flags_to_string)
        .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
}

#[derive(Default)]
pub struct Notifier {
    flags: AtomicU32,
}

impl Notifier {
    pub fn set(&self, v: &str) {
        self.flags.store(parse_flags(v).unwrap_or(0), Relaxed);
    }

    /// Whether any event of `class` would be published.
    pub fn wants(&self, class: u32) -> bool {
        let f = self.flags.load(Relaxed);
        f & class != 0 && f & (KEYSPACE | KEYEVENT) != 0
    }

    pub fn notify(
        &self,
        pubsub: &PubSub,
        class: u32,
        event: &str,
        db: usize,
        key: &[u8],
        now_ms: i64,
    ) {
        if !self.wants(class) {
            return;
        }
        let f = self.flags.load(Relaxed);
        if f & KEYSPACE != 0 {
            let mut ch = format!("__keyspace@{db}__:").into_bytes();
            ch.extend_from_slice(key);
            pubsub.publish(
                Space::Channel,
                &Bytes::from(ch),
                &Bytes::copy_from_slice(event.as_bytes()),
                now_ms,
            );
        }
        if f & KEYEVENT != 0 {
            let ch = Bytes::from(format!("__keyevent@{db}__:{event}"));
            pubsub.publish(Space::Channel, &ch, &Bytes::copy_from_slice(key), now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_in_redis_order() {
        assert_eq!(canonical_flags("KEA").as_deref(), Ok("AKE"));
        assert_eq!(canonical_flags("Elg").as_deref(), Ok("glE"));
        assert_eq!(canonical_flags("").as_deref(), Ok(""));
        assert!(canonical_flags("Kq").is_err());
    }
}
