//! ACL LOG: the denials a node has made, newest first.
//!
//! A denial is a failed authentication (AUTH or HELLO AUTH with a wrong
//! password, an unknown or disabled user) or a command refused by the
//! user's permissions (`server::users`): the command itself, a key or a
//! channel, at top level, inside MULTI or in a script. Entries are grouped as Redis groups them:
//! a denial like one logged less than a minute ago (same reason, context,
//! object and user) raises that entry's count instead of adding one. The
//! log keeps `acllog-max-len` entries.

use parking_lot::Mutex;

/// One ACL LOG entry (Redis 7.2's fields).
#[derive(Clone, Debug)]
pub struct Entry {
    pub count: u64,
    pub reason: &'static str,
    pub context: &'static str,
    pub object: String,
    pub username: String,
    pub client_info: String,
    pub entry_id: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What was denied: ACL LOG's `reason` (auth, command, key, channel),
/// `context` (toplevel, multi, lua), `object` (the command, key or
/// channel) and `username`.
pub struct Denial {
    pub reason: &'static str,
    pub context: &'static str,
    pub object: String,
    pub username: String,
}

/// Redis groups a denial with an earlier one this recent.
const GROUPING_MS: i64 = 60_000;

#[derive(Default)]
pub struct AclLog {
    /// Newest first, and the next entry id.
    entries: Mutex<(Vec<Entry>, u64)>,
}

impl AclLog {
    /// Records a denial, or counts it on a like one of the last minute.
    pub fn add(&self, d: Denial, client_info: String, now_ms: i64, max_len: usize) {
        let mut g = self.entries.lock();
        let (entries, next_id) = &mut *g;
        let similar = entries.iter().position(|e| {
            e.reason == d.reason
                && e.context == d.context
                && e.object == d.object
                && e.username == d.username
                && now_ms - e.updated_ms < GROUPING_MS
        });
        match similar {
            Some(i) => {
                let mut e = entries.remove(i);
                e.count += 1;
                e.updated_ms = now_ms;
                e.client_info = client_info;
                entries.insert(0, e);
            }
            None => {
                entries.insert(
                    0,
                    Entry {
                        count: 1,
                        reason: d.reason,
                        context: d.context,
                        object: d.object,
                        username: d.username,
                        client_info,
                        entry_id: *next_id,
                        created_ms: now_ms,
                        updated_ms: now_ms,
                    },
                );
                *next_id += 1;
            }
        }
        entries.truncate(max_len);
    }

    /// The newest `count` entries.
    pub fn newest(&self, count: usize) -> Vec<Entry> {
        self.entries.lock().0.iter().take(count).cloned().collect()
    }

    pub fn reset(&self) {
        self.entries.lock().0.clear();
    }

    /// Drops the oldest entries past a lowered `acllog-max-len`.
    pub fn trim(&self, max_len: usize) {
        self.entries.lock().0.truncate(max_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed authentication as `username` by the client `info`.
    fn auth_failed(log: &AclLog, username: &str, info: String, now_ms: i64, max_len: usize) {
        let d = Denial {
            reason: "auth",
            context: "toplevel",
            object: "AUTH".to_string(),
            username: username.to_string(),
        };
        log.add(d, info, now_ms, max_len);
    }

    #[test]
    fn similar_denials_within_a_minute_are_one_entry() {
        let log = AclLog::default();
        auth_failed(&log, "default", "a".into(), 1_000, 128);
        auth_failed(&log, "default", "b".into(), 30_000, 128);
        auth_failed(&log, "bob", "c".into(), 31_000, 128);
        // More than a minute after the first entry's last update.
        auth_failed(&log, "default", "d".into(), 100_000, 128);
        let e = log.newest(10);
        let summary: Vec<(&str, u64, &str)> = e
            .iter()
            .map(|e| (e.username.as_str(), e.count, e.client_info.as_str()))
            .collect();
        assert_eq!(
            summary,
            [("default", 1, "d"), ("bob", 1, "c"), ("default", 2, "b")]
        );
        assert_eq!(e[2].created_ms, 1_000);
        assert_eq!(e[2].updated_ms, 30_000);
        auth_failed(&log, "x", "e".into(), 100_001, 2);
        assert_eq!(log.newest(10).len(), 2);
        log.reset();
        assert!(log.newest(10).is_empty());
    }
}
