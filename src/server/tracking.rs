//! Client-side caching (CLIENT TRACKING): which clients may hold which
//! keys in a local cache, and the invalidation messages that tell them a
//! key changed.
//!
//! ```text
//!  read-only command of a tracking client ─▶ remember: key ─▶ client id
//!  effect on a key ─▶ invalidate: each client remembered for it is sent
//!                     `invalidate [key]`, and the key is forgotten (its
//!                     next read remembers it again)
//!                  ─▶ BCAST: the key joins the pending keys of every
//!                     prefix it starts with; `broadcast` sends each
//!                     prefix's keys in one message
//!  FLUSHDB / FLUSHALL ─▶ `invalidate` with a null to every tracking client
//! ```
//!
//! As in Redis, the table is keyed by key name alone, across databases,
//! and names clients by id: a client that left or turned tracking off is
//! skipped when its keys change, not searched for when it goes. OPTIN and
//! OPTOUT decide per command whether a read is remembered (CLIENT CACHING);
//! NOLOOP leaves out the keys a client changed itself.
//!
//! A message goes to the tracking client's own connection as a RESP3 push,
//! or, with REDIRECT, to the connection with that id: a RESP3 push, or a
//! message on `__redis__:invalidate` if that connection is a RESP2
//! subscriber. Messages travel through the receiving connection's inbox
//! ([`Push`]), written out between its batches of requests; those a client
//! causes itself are written right after the command's reply instead, the
//! order Redis 7 gives them. BCAST messages go out when the connection that
//! caused them sends its replies, so a pipeline's keys travel together, as
//! they do in Redis's event loop. A command hands its keys over only as it
//! ends (an EXEC or a script with all it ran): any connection's broadcast
//! may run meanwhile, and must not split it.
//!
//! `tracking-table-max-keys` bounds the table: past it, keys are forgotten
//! and their clients told, as if the keys had changed: as a read adds one,
//! and when the limit was lowered, some before each command and from the
//! cron, as Redis does (a command's own reader is told before its reply).
//! While no client
//! tracks, every hook costs one relaxed load; while some do, a write to a
//! key nobody may cache costs a hash and a load (the [`Filter`]), and only
//! the others take the lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::client::{ClientHandle, Clients};
use crate::error::CommandError;
use crate::protocol::ReplyBuf;

/// What a connection is sent on behalf of tracking clients.
#[derive(Debug)]
pub enum Push {
    /// These keys changed (`None`: all of them, after a flush).
    /// `redirected`: sent for another client, which is what lets a RESP2
    /// subscriber receive it as a pub/sub message.
    Invalidate {
        keys: Option<Arc<[Bytes]>>,
        redirected: bool,
    },
    /// The connection this client's invalidations were redirected to is
    /// gone (carries its id).
    RedirectBroken(u64),
}

impl Push {
    /// Writes the message as the receiving connection can take it; a RESP2
    /// connection that is not a subscriber takes nothing, as in Redis.
    pub fn write(&self, out: &mut ReplyBuf, subscribed: bool) {
        match self {
            Push::Invalidate { keys, redirected } => {
                if out.resp3() {
                    out.push(2);
                    out.bulk(b"invalidate");
                } else if *redirected && subscribed {
                    out.push(3);
                    out.bulk(b"message");
                    out.bulk(CHANNEL);
                } else {
                    return;
                }
                match keys {
                    None => out.null(),
                    Some(keys) => out.strings(keys.iter().map(|k| &k[..])),
                }
            }
            Push::RedirectBroken(id) => {
                if out.resp3() {
                    out.push(2);
                    out.bulk(b"tracking-redir-broken");
                    out.int(*id as i64);
                }
            }
        }
    }
}

/// The channel RESP2 subscribers receive redirected invalidations on.
pub const CHANNEL: &[u8] = b"__redis__:invalidate";

/// CLIENT TRACKING ON's options.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Client id to send the messages to; 0: this client.
    pub redirect: u64,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    pub prefixes: Vec<Bytes>,
}

/// A tracking client's mode, as its own connection keeps it to decide, per
/// read, whether to remember the keys.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
}

impl Mode {
    /// Whether a read is remembered, given whether CLIENT CACHING was
    /// called for it: BCAST clients are sent every matching key anyway.
    pub fn remembers(&self, caching: bool) -> bool {
        // OPTIN: only with CACHING yes; OPTOUT: unless CACHING no.
        !self.bcast && (!self.optin || caching) && (!self.optout || !caching)
    }
}

/// CLIENT LIST flags, mirrored in the client's handle.
pub const FLAG_ON: u8 = 1;
pub const FLAG_BROKEN_REDIRECT: u8 = 2;
pub const FLAG_BCAST: u8 = 4;

struct Tracker {
    handle: Arc<ClientHandle>,
    redirect: u64,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    broken: bool,
    prefixes: BTreeSet<Bytes>,
}

impl Tracker {
    fn publish_flags(&self) {
        let mut f = FLAG_ON;
        if self.broken {
            f |= FLAG_BROKEN_REDIRECT;
        }
        if self.bcast {
            f |= FLAG_BCAST;
        }
        self.handle.tracking.store(f, Relaxed);
        self.handle.redirect.store(self.redirect, Relaxed);
    }

    /// Sends one message for this client: to itself, or to the client it
    /// redirects to, or, if that one is gone, the news of that to itself.
    fn send(&mut self, clients: &Clients, keys: Option<Arc<[Bytes]>>) {
        if self.redirect == 0 {
            self.handle.push(Push::Invalidate {
                keys,
                redirected: false,
            });
            return;
        }
        match clients.get(self.redirect) {
            Some(target) => target.push(Push::Invalidate {
                keys,
                redirected: true,
            }),
            None => {
                self.broken = true;
                self.publish_flags();
                self.handle.push(Push::RedirectBroken(self.redirect));
            }
        }
    }
}

/// A BCAST prefix: its clients, and the keys changed since the last
/// broadcast, each with the first client that changed it (0: the server),
/// in key order.
#[derive(Default)]
struct Prefix {
    clients: BTreeSet<u64>,
    keys: BTreeMap<Bytes, u64>,
}

#[derive(Default)]
struct State {
    /// Key name ─▶ ids of the clients that read it since it last changed.
    table: HashMap<Bytes, Vec<u64>>,
    /// Ids over all entries of `table`.
    items: usize,
    trackers: HashMap<u64, Tracker>,
    prefixes: BTreeMap<Bytes, Prefix>,
}

/// How many of the table's keys fall in each bucket of a hash of their
/// names, readable without the lock, so that a write to a key no bucket
/// counts skips the lock. Changed only under the lock, with the table.
/// A reader's keys are counted before its read takes the key's slot lock,
/// and a write checks after taking it, so a write that follows a read
/// always sees the read's count.
struct Filter {
    hasher: hashbrown::DefaultHashBuilder,
    counts: Box<[AtomicU32]>,
}

const FILTER_BUCKETS: usize = 1 << 16;

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            hasher: Default::default(),
            counts: (0..FILTER_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl Filter {
    fn bucket(&self, key: &[u8]) -> &AtomicU32 {
        let h = self.hasher.hash_one(key) as usize;
        &self.counts[h % FILTER_BUCKETS]
    }

    fn may_hold(&self, key: &[u8]) -> bool {
        self.bucket(key).load(Relaxed) > 0
    }

    fn clear(&self) {
        self.counts.iter().for_each(|c| c.store(0, Relaxed));
    }
}

#[derive(Default)]
pub struct Tracking {
    /// Clients with tracking on; 0 lets every read and write skip the rest.
    on: AtomicUsize,
    /// Some prefix has keys waiting for [`Tracking::broadcast`].
    pending: AtomicBool,
    /// BCAST prefixes registered (`State::prefixes.len()`): while 0, a
    /// write the filter rules out needs nothing else.
    prefixes: AtomicUsize,
    /// `tracking-table-max-keys` was set since the table was last within
    /// it (a read keeps it within; only a lowered limit leaves it over).
    over_limit: AtomicBool,
    /// Made when first used: 256 KiB that servers nobody tracks on need not hold.
    filter: std::sync::OnceLock<Filter>,
    state: Mutex<State>,
}

impl Tracking {
    fn filter(&self) -> &Filter {
        self.filter.get_or_init(Filter::default)
    }

    pub fn active(&self) -> bool {
        self.on.load(Relaxed) > 0
    }

    /// CLIENT TRACKING ON, with Redis's checks in Redis's order (the
    /// options were parsed and the redirect target found by the caller).
    pub fn enable(&self, handle: &Arc<ClientHandle>, o: &Options) -> Result<(), CommandError> {
        let mut s = self.state.lock();
        let State {
            trackers, prefixes, ..
        } = &mut *s;
        let old = trackers.get(&handle.id);
        if !o.bcast && !o.prefixes.is_empty() {
            return Err(CommandError::err(
                "PREFIX option requires BCAST mode to be enabled",
            ));
        }
        if old.is_some_and(|t| t.bcast != o.bcast) {
            return Err(CommandError::err(
                "You can't switch BCAST mode on/off before disabling tracking for this client, \
                 and then re-enabling it with a different mode.",
            ));
        }
        if o.bcast && (o.optin || o.optout) {
            return Err(CommandError::err(
                "OPTIN and OPTOUT are not compatible with BCAST",
            ));
        }
        if o.optin && o.optout {
            return Err(CommandError::err(
                "You can't specify both OPTIN mode and OPTOUT mode",
            ));
        }
        if old.is_some_and(|t| (o.optin && t.optout) || (o.optout && t.optin)) {
            return Err(CommandError::err(
                "You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, \
                 and then re-enabling it with a different mode.",
            ));
        }
        if o.bcast {
            check_prefixes(old.map(|t| &t.prefixes), &o.prefixes)?;
        }
        let t = trackers.entry(handle.id).or_insert_with(|| {
            self.on.fetch_add(1, Relaxed);
            Tracker {
                handle: handle.clone(),
                redirect: 0,
                bcast: false,
                optin: false,
                optout: false,
                noloop: false,
                broken: false,
                prefixes: BTreeSet::new(),
            }
        });
        t.redirect = o.redirect;
        t.bcast = o.bcast;
        t.optin = o.optin;
        t.optout = o.optout;
        t.noloop = o.noloop;
        t.broken = false;
        if o.bcast {
            // No PREFIX: every key (the empty prefix).
            let wanted = if o.prefixes.is_empty() {
                vec![Bytes::new()]
            } else {
                o.prefixes.clone()
            };
            for p in wanted {
                prefixes
                    .entry(p.clone())
                    .or_default()
                    .clients
                    .insert(handle.id);
                t.prefixes.insert(p);
            }
        }
        t.publish_flags();
        self.prefixes.store(prefixes.len(), Relaxed);
        Ok(())
    }

    /// CLIENT TRACKING OFF, RESET, or the connection closing.
    pub fn disable(&self, id: u64) {
        if !self.active() {
            return;
        }
        let mut s = self.state.lock();
        let Some(t) = s.trackers.remove(&id) else {
            return;
        };
        for p in &t.prefixes {
            if let Some(entry) = s.prefixes.get_mut(p) {
                entry.clients.remove(&id);
                if entry.clients.is_empty() {
                    s.prefixes.remove(p);
                }
            }
        }
        t.handle.tracking.store(0, Relaxed);
        if self.on.fetch_sub(1, Relaxed) == 1 {
            // Nobody left to tell: what the table holds can only go stale.
            s.table.clear();
            self.filter().clear();
            s.items = 0;
            s.prefixes.clear();
        }
        self.prefixes.store(s.prefixes.len(), Relaxed);
    }

    /// For a read-only command of a tracking client (not BCAST): it may
    /// cache these keys. Returns those it was not already remembered for.
    pub fn remember<'k>(
        &self,
        clients: &Clients,
        id: u64,
        keys: impl Iterator<Item = &'k [u8]>,
        max_keys: usize,
    ) -> Vec<&'k [u8]> {
        let mut s = self.state.lock();
        let s = &mut *s;
        let mut new = Vec::new();
        for key in keys {
            match s.table.get_mut(key) {
                Some(ids) if ids.contains(&id) => continue,
                Some(ids) => {
                    ids.push(id);
                    s.items += 1;
                }
                None => {
                    s.table.insert(Bytes::copy_from_slice(key), vec![id]);
                    self.filter().bucket(key).fetch_add(1, Relaxed);
                    s.items += 1;
                }
            }
            new.push(key);
        }
        self.forget_over(s, clients, max_keys, usize::MAX, 0);
        new
    }

    /// `tracking-table-max-keys` was set: the table may now be over it.
    pub fn limit_changed(&self) {
        self.over_limit.store(true, Relaxed);
    }

    /// A table over a lowered `max_keys` forgets up to `budget` keys a
    /// call, telling their readers: before each command and from the cron,
    /// as Redis does. Returns the keys client `me` (0: none) read, for it
    /// to be told before its command's reply ([`Tracking::deliver_own`]).
    pub fn limit(&self, clients: &Clients, max_keys: usize, budget: usize, me: u64) -> Vec<Bytes> {
        if !self.active() || !self.over_limit.load(Relaxed) {
            return Vec::new();
        }
        let mut s = self.state.lock();
        let own = self.forget_over(&mut s, clients, max_keys, budget, me);
        if max_keys == 0 || s.table.len() <= max_keys {
            self.over_limit.store(false, Relaxed);
        }
        own
    }

    /// Over the limit: forgets keys (at most `budget`) as if they had
    /// changed, so that no client keeps a copy the table no longer covers.
    /// Client `me`'s are returned rather than sent.
    fn forget_over(
        &self,
        s: &mut State,
        clients: &Clients,
        max_keys: usize,
        budget: usize,
        me: u64,
    ) -> Vec<Bytes> {
        let mut own = Vec::new();
        let mut forgotten = 0;
        while max_keys > 0 && s.table.len() > max_keys && forgotten < budget {
            let Some(key) = s.table.keys().next().cloned() else {
                break;
            };
            forgotten += 1;
            let ids = s.table.remove(&key).unwrap_or_default();
            self.filter().bucket(&key).fetch_sub(1, Relaxed);
            s.items -= ids.len();
            let keys: Arc<[Bytes]> = Arc::from([key]);
            for id in ids {
                if let Some(t) = s.trackers.get_mut(&id).filter(|t| !t.bcast) {
                    if id == me {
                        own.push(keys[0].clone());
                    } else {
                        t.send(clients, Some(keys.clone()));
                    }
                }
            }
        }
        own
    }

    /// `key` changed, by client `by` (0: by the server, expiring or
    /// evicting it). Returns whether `by` itself must be told: the caller
    /// does that after the command's reply ([`Tracking::deliver_own`]).
    ///
    /// `staged`: where a command keeps the keys it changed for BCAST
    /// clients until it ends ([`Tracking::command_changed`]); `None` (the
    /// expiry cycle, idle eviction) queues them for the next broadcast.
    pub fn invalidate(
        &self,
        clients: &Clients,
        key: &[u8],
        by: u64,
        staged: Option<&mut Vec<Bytes>>,
    ) -> bool {
        if !self.active() || (self.prefixes.load(Relaxed) == 0 && !self.filter().may_hold(key)) {
            return false;
        }
        let mut s = self.state.lock();
        let s = &mut *s;
        match staged {
            Some(staged) if self.broadcasting() => staged.push(Bytes::copy_from_slice(key)),
            _ => self.queue_for_broadcast(s, key, by, || Bytes::copy_from_slice(key)),
        }
        let Some(ids) = s.table.remove(key) else {
            return false;
        };
        self.filter().bucket(key).fetch_sub(1, Relaxed);
        s.items -= ids.len();
        let keys: Arc<[Bytes]> = Arc::from([Bytes::copy_from_slice(key)]);
        let mut own = false;
        for id in ids {
            // Gone, off, or switched to BCAST since it read the key.
            let Some(t) = s.trackers.get_mut(&id).filter(|t| !t.bcast) else {
                continue;
            };
            if id == by {
                own |= !t.noloop;
            } else {
                t.send(clients, Some(keys.clone()));
            }
        }
        own
    }

    /// Adds `key` to the pending keys of every prefix it starts with
    /// (`owned` makes the copy they keep, only for a prefix it matches).
    fn queue_for_broadcast(&self, s: &mut State, key: &[u8], by: u64, owned: impl Fn() -> Bytes) {
        for (prefix, p) in s.prefixes.iter_mut() {
            if key.starts_with(prefix) {
                p.keys.entry(owned()).or_insert(by);
                self.pending.store(true, Relaxed);
            }
        }
    }

    /// Some client tracks in BCAST mode: a command then stages the keys
    /// it changes and hands them over as it ends.
    pub fn broadcasting(&self) -> bool {
        self.prefixes.load(Relaxed) > 0
    }

    /// The keys client `by`'s command changed, staged by
    /// [`Tracking::invalidate`], join the next broadcast together. A
    /// broadcast by another thread (any connection's, before it writes
    /// its replies) could otherwise fall between two writes of the same
    /// command and send a key MSET sets twice in two messages: Redis,
    /// whose commands run whole between two of its broadcasts, sends one.
    pub fn command_changed(&self, keys: Vec<Bytes>, by: u64) {
        if keys.is_empty() {
            return;
        }
        let mut s = self.state.lock();
        for key in keys {
            self.queue_for_broadcast(&mut s, &key, by, || key.clone());
        }
    }

    /// FLUSHDB or FLUSHALL by client `by`: every tracking client is told
    /// that all keys changed. Returns whether `by` is one of them (told
    /// after its reply, as with [`Tracking::invalidate`]).
    pub fn flushed(&self, clients: &Clients, by: u64) -> bool {
        if !self.active() {
            return false;
        }
        let mut s = self.state.lock();
        let s = &mut *s;
        s.table.clear();
        self.filter().clear();
        s.items = 0;
        let mut own = false;
        for (id, t) in s.trackers.iter_mut() {
            if *id == by {
                own = true;
            } else {
                t.send(clients, None);
            }
        }
        own
    }

    /// The messages a client caused itself during its last command
    /// (`None`: a flush), written after that command's reply, or sent to
    /// the client it redirects to.
    pub fn deliver_own(
        &self,
        clients: &Clients,
        id: u64,
        keys: Vec<Option<Bytes>>,
        out: &mut ReplyBuf,
        subscribed: bool,
    ) {
        let mut s = self.state.lock();
        let Some(t) = s.trackers.get_mut(&id) else {
            return;
        };
        for key in keys {
            let keys = key.map(|k| Arc::from([k]));
            if t.redirect == 0 || t.redirect == id {
                Push::Invalidate {
                    keys,
                    redirected: t.redirect != 0,
                }
                .write(out, subscribed);
            } else {
                t.send(clients, keys);
            }
        }
    }

    /// Sends every BCAST prefix's pending keys to its clients, one message
    /// per prefix and client (a NOLOOP client's without its own keys).
    ///
    /// Called before a connection writes its replies: once it returns, the
    /// messages for every write those replies acknowledge are in their
    /// clients' inboxes, even when another thread (the expiry cycle, a
    /// connection of another thread) took the keys first. So `pending`
    /// is cleared only once the messages are sent, under the lock: a
    /// caller that still sees it set waits there for the one under way.
    pub fn broadcast(&self, clients: &Clients) {
        if !self.pending.load(Acquire) {
            return;
        }
        let mut s = self.state.lock();
        let State {
            trackers, prefixes, ..
        } = &mut *s;
        for p in prefixes.values_mut() {
            if p.keys.is_empty() {
                continue;
            }
            let changed = std::mem::take(&mut p.keys);
            let all: Arc<[Bytes]> = changed.keys().cloned().collect();
            for id in &p.clients {
                let Some(t) = trackers.get_mut(id) else {
                    continue;
                };
                let keys = if t.noloop {
                    let others: Arc<[Bytes]> = changed
                        .iter()
                        .filter(|(_, by)| **by != *id)
                        .map(|(k, _)| k.clone())
                        .collect();
                    if others.is_empty() {
                        continue;
                    }
                    others
                } else {
                    all.clone()
                };
                t.send(clients, Some(keys));
            }
        }
        self.pending.store(false, Release);
    }

    /// CLIENT GETREDIR: the redirect id (0: none), or -1 if not tracking.
    pub fn redirect(&self, id: u64) -> i64 {
        self.state
            .lock()
            .trackers
            .get(&id)
            .map_or(-1, |t| t.redirect as i64)
    }

    /// CLIENT TRACKINGINFO's flags (given whether CLIENT CACHING is in
    /// effect), redirect and prefixes.
    pub fn info(&self, id: u64, caching: bool) -> (Vec<&'static str>, i64, Vec<Bytes>) {
        let s = self.state.lock();
        let Some(t) = s.trackers.get(&id) else {
            return (vec!["off"], -1, Vec::new());
        };
        let mut flags = vec!["on"];
        if t.bcast {
            flags.push("bcast");
        }
        if t.optin {
            flags.push("optin");
            if caching {
                flags.push("caching-yes");
            }
        }
        if t.optout {
            flags.push("optout");
            if caching {
                flags.push("caching-no");
            }
        }
        if t.noloop {
            flags.push("noloop");
        }
        if t.broken {
            flags.push("broken_redirect");
        }
        (
            flags,
            t.redirect as i64,
            t.prefixes.iter().cloned().collect(),
        )
    }

    /// INFO: tracking clients, keys in the table, client ids over all
    /// keys, BCAST prefixes.
    pub fn totals(&self) -> (usize, usize, usize, usize) {
        if !self.active() {
            return (0, 0, 0, 0);
        }
        let s = self.state.lock();
        (s.trackers.len(), s.table.len(), s.items, s.prefixes.len())
    }
}

/// Two prefixes of one client must not both match a key: neither may
/// start with the other.
fn check_prefixes(existing: Option<&BTreeSet<Bytes>>, new: &[Bytes]) -> Result<(), CommandError> {
    let overlap = |a: &[u8], b: &[u8]| {
        let n = a.len().min(b.len());
        a[..n] == b[..n]
    };
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for (i, p) in new.iter().enumerate() {
        if let Some(old) = existing.into_iter().flatten().find(|o| overlap(o, p)) {
            return Err(CommandError::err(format!(
                "Prefix '{}' overlaps with an existing prefix '{}'. \
                 Prefixes for a single client must not overlap.",
                show(p),
                show(old)
            )));
        }
        if let Some(other) = new[i + 1..].iter().find(|o| overlap(p, o)) {
            return Err(CommandError::err(format!(
                "Prefix '{}' overlaps with another provided prefix '{}'. \
                 Prefixes for a single client must not overlap.",
                show(p),
                show(other)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_not_overlap() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        assert!(check_prefixes(None, &[b("a"), b("b")]).is_ok());
        let e = check_prefixes(None, &[b("ab"), b("a")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERR Prefix 'ab' overlaps with another provided prefix 'a'. \
             Prefixes for a single client must not overlap."
        );
        let old: BTreeSet<Bytes> = [b("a")].into();
        let e = check_prefixes(Some(&old), &[b("c"), b("abc")]).unwrap_err();
        assert!(e
            .to_string()
            .contains("'abc' overlaps with an existing prefix 'a'"));
        assert!(check_prefixes(Some(&old), &[b("")]).is_err());
    }

    #[test]
    fn the_filter_counts_exactly_the_tables_keys() {
        let clients = Clients::default();
        let addr = "127.0.0.1:1".parse().unwrap();
        let reader = clients.register(addr, addr, 0);
        let t = Tracking::default();
        t.enable(&reader, &Options::default()).unwrap();
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        t.remember(&clients, reader.id, keys.iter().map(|k| k.as_bytes()), 0);
        t.remember(&clients, reader.id, keys.iter().map(|k| k.as_bytes()), 0);
        let total = |t: &Tracking| {
            t.filter()
                .counts
                .iter()
                .map(|c| c.load(Relaxed))
                .sum::<u32>()
        };
        assert_eq!(total(&t), 1000);
        assert!(keys.iter().all(|k| t.filter().may_hold(k.as_bytes())));
        // Another client's write: the reader is told, the key forgotten.
        assert!(!t.invalidate(&clients, b"k1", reader.id + 1, None));
        assert_eq!(total(&t), 999);
        assert_eq!(t.totals(), (1, 999, 999, 0));
        // Its own write: it is told after its reply.
        assert!(t.invalidate(&clients, b"k2", reader.id, None));
        assert!(!t.flushed(&clients, reader.id + 1));
        assert_eq!(total(&t), 0);
        t.disable(reader.id);
        assert!(!t.active());
    }

    #[test]
    fn modes_decide_which_reads_are_remembered() {
        let m = |bcast, optin, optout| Mode {
            bcast,
            optin,
            optout,
        };
        assert!(m(false, false, false).remembers(false));
        assert!(!m(true, false, false).remembers(true));
        assert!(!m(false, true, false).remembers(false));
        assert!(m(false, true, false).remembers(true));
        assert!(m(false, false, true).remembers(false));
        assert!(!m(false, false, true).remembers(true));
    }
}
