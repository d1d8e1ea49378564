//! Client-side caching (CLIENT TRACKING): the same script against Shoal
//! and redis-server must produce the same frames on every connection —
//! replies, errors and invalidation messages, in the same order — and a
//! client cache kept by the invalidations must end equal to the server's
//! data under concurrent writes.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::support::{eventually, Frame, Raw, ReferenceRedis, TestNode};

const MARK: &str = "end-of-step";

/// One server's connections and what they received.
struct Session<S, F: Fn() -> Raw<S>> {
    open: F,
    conns: HashMap<&'static str, Raw<S>>,
    /// Client ids by connection name: ids differ between servers, so the
    /// transcript shows names instead.
    ids: HashMap<i64, &'static str>,
    transcript: Vec<String>,
    /// Connections that switched to RESP3 (HELLO 3, until RESET).
    resp3: std::collections::HashSet<&'static str>,
}

impl<S: Read + Write, F: Fn() -> Raw<S>> Session<S, F> {
    fn new(open: F) -> Self {
        Session {
            open,
            conns: HashMap::new(),
            ids: HashMap::new(),
            transcript: Vec::new(),
            resp3: Default::default(),
        }
    }

    fn conn(&mut self, name: &'static str) -> &mut Raw<S> {
        if !self.conns.contains_key(name) {
            let mut c = (self.open)();
            c.cmd(&["CLIENT", "ID"]);
            let Frame::Int(id) = c.read2() else {
                panic!("CLIENT ID")
            };
            self.ids.insert(id, name);
            self.conns.insert(name, c);
        }
        self.conns.get_mut(name).unwrap()
    }

    fn id(&mut self, name: &'static str) -> String {
        self.conn(name);
        let id = self.ids.iter().find(|(_, n)| **n == name).unwrap().0;
        id.to_string()
    }

    /// Sends `bytes`, then a PING with a marker, and records every frame
    /// that arrives before the marker: the replies and whatever was pushed
    /// with them.
    fn exchange(&mut self, name: &'static str, what: String, bytes: &[u8]) {
        if what.starts_with(r#"["HELLO", "3""#) {
            self.resp3.insert(name);
        } else if what == r#"["RESET"]"# {
            self.resp3.remove(name);
        }
        let resp3 = self.resp3.contains(name);
        let c = self.conn(name);
        c.send(bytes);
        c.cmd(&["PING", MARK]);
        let mut got = Vec::new();
        loop {
            // A RESP2 null (`$-1`) is no RESP3 frame.
            let f = if resp3 { c.read3() } else { c.read2() };
            let pong = match &f {
                Frame::Bulk(b) => b == MARK.as_bytes(),
                Frame::Array(a) => a.get(1) == Some(&Frame::bulk(MARK)),
                _ => false,
            };
            if pong {
                break;
            }
            got.push(f);
        }
        if what.starts_with(r#"["HELLO""#) {
            // The server's name, version and id differ by design.
            return;
        }
        let got: Vec<String> = got.into_iter().map(|f| show(&self.named(f))).collect();
        self.transcript
            .push(format!("{name} {what} -> {}", got.join(" ")));
    }

    fn run(&mut self, name: &'static str, args: &[&str]) {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        // Ids (after REDIRECT or ID) are shown by connection name.
        let shown: Vec<String> = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let after = i.checked_sub(1).map(|p| args[p].to_ascii_uppercase());
                let id = a.parse::<i64>().ok().and_then(|id| self.ids.get(&id));
                match (after.as_deref(), id) {
                    (Some("REDIRECT" | "ID"), Some(n)) => format!("<id of {n}>"),
                    _ => a.to_string(),
                }
            })
            .collect();
        self.exchange(name, format!("{shown:?}"), &crate::support::encode(&bytes));
    }

    /// Several commands in one write.
    fn pipeline(&mut self, name: &'static str, cmds: &[&[&str]]) {
        let mut bytes = Vec::new();
        for args in cmds {
            let a: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            bytes.extend(crate::support::encode(&a));
        }
        self.exchange(name, format!("{cmds:?}"), &bytes);
    }

    /// Replaces client ids with connection names.
    fn named(&self, f: Frame) -> Frame {
        match f {
            Frame::Int(i) => match self.ids.get(&i) {
                Some(n) => Frame::Simple(format!("<id of {n}>")),
                None => Frame::Int(i),
            },
            Frame::Array(a) => Frame::Array(a.into_iter().map(|f| self.named(f)).collect()),
            Frame::Push(a) => Frame::Push(a.into_iter().map(|f| self.named(f)).collect()),
            Frame::Map(m) => Frame::Map(
                m.into_iter()
                    .map(|(k, v)| (self.named(k), self.named(v)))
                    .collect(),
            ),
            Frame::Bulk(b) if b.starts_with(b"id=") => {
                // A CLIENT LIST line: only the tracking fields compare.
                let line = String::from_utf8_lossy(&b).into_owned();
                let field = |k: &str| {
                    line.split(' ')
                        .find_map(|f| f.strip_prefix(k))
                        .unwrap_or("")
                        .to_string()
                };
                let redir: i64 = field("redir=").parse().unwrap();
                let redir = self
                    .ids
                    .get(&redir)
                    .map_or(redir.to_string(), |n| n.to_string());
                // `U`: the reference is reached over a unix socket.
                let flags = field("flags=").replace('U', "");
                Frame::Simple(format!("flags={flags} redir={redir}"))
            }
            other => other,
        }
    }

    fn drop_conn(&mut self, name: &'static str) {
        self.conns.remove(name);
    }
}

/// A frame as text, strings readable.
fn show(f: &Frame) -> String {
    let all = |v: &[Frame]| v.iter().map(show).collect::<Vec<_>>().join(", ");
    match f {
        Frame::Bulk(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Frame::Array(a) => format!("[{}]", all(a)),
        Frame::Set(a) => {
            // Unordered too.
            let mut v: Vec<String> = a.iter().map(show).collect();
            v.sort();
            format!("~[{}]", v.join(", "))
        }
        Frame::Push(a) => format!(">[{}]", all(a)),
        Frame::Map(m) => {
            // The decoder keeps a map's pairs unordered.
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect();
            pairs.sort();
            format!("{{{}}}", pairs.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// The script: every mode, option and error of CLIENT TRACKING, CACHING,
/// GETREDIR and TRACKINGINFO, and which changes send what to whom.
fn script<S: Read + Write, F: Fn() -> Raw<S>>(s: &mut Session<S, F>) -> Vec<String> {
    s.run("w", &["FLUSHALL"]);
    s.run("a", &["HELLO", "3"]);
    let bad: &[&[&str]] = &[
        &["CLIENT", "TRACKING"],
        &["CLIENT", "TRACKING", "maybe"],
        &["CLIENT", "TRACKING", "on", "bogus"],
        &["CLIENT", "TRACKING", "on", "PREFIX", "a"],
        &["CLIENT", "TRACKING", "on", "BCAST", "OPTIN"],
        &["CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"],
        &["CLIENT", "TRACKING", "on", "REDIRECT", "x"],
        &["CLIENT", "TRACKING", "on", "REDIRECT", "999999"],
        &["CLIENT", "TRACKING", "on", "REDIRECT", "0"],
        &["CLIENT", "TRACKING", "on", "REDIRECT"],
        &["CLIENT", "TRACKING", "off", "bogus"],
        &["CLIENT", "TRACKING", "off", "PREFIX", "a"],
        &["CLIENT", "CACHING", "yes"],
        &["CLIENT", "CACHING"],
        &["CLIENT", "GETREDIR"],
        &["CLIENT", "TRACKINGINFO"],
        &[
            "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "ab", "PREFIX", "a",
        ],
        &[
            "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a", "PREFIX", "b",
        ],
        &["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "abc"],
        &["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "c", "NOLOOP"],
        &["CLIENT", "TRACKINGINFO"],
        &["CLIENT", "TRACKING", "on"],
        &["CLIENT", "TRACKING", "off"],
        &["CLIENT", "TRACKING", "on", "OPTIN"],
        &["CLIENT", "TRACKING", "on", "OPTOUT"],
        &["CLIENT", "CACHING", "no"],
        &["CLIENT", "CACHING", "maybe"],
        &["CLIENT", "CACHING", "yes"],
        &["CLIENT", "TRACKING", "on", "OPTIN", "NOLOOP"],
        &["CLIENT", "TRACKINGINFO"],
        &["CLIENT", "TRACKING", "off"],
        &["CLIENT", "TRACKINGINFO"],
    ];
    for c in bad {
        s.run("a", c);
    }
    let w_id = s.id("w");
    s.run(
        "a",
        &[
            "CLIENT", "TRACKING", "on", "REDIRECT", &w_id, "REDIRECT", &w_id,
        ],
    );

    // Default mode: reads are remembered, writes tell the reader.
    s.run("a", &["CLIENT", "TRACKING", "on"]);
    s.run("a", &["GET", "k"]);
    s.run("a", &["SET", "k", "v"]);
    s.run("a", &["GET", "k"]);
    s.pipeline("a", &[&["GET", "k"], &["SET", "k", "v2"], &["GET", "k"]]);
    s.run("a", &["GET", "q"]);
    s.pipeline(
        "a",
        &[
            &["MULTI"],
            &["SET", "k", "1"],
            &["SET", "q", "1"],
            &["EXEC"],
        ],
    );
    s.run("a", &["GET", "k"]);
    s.run("w", &["SET", "k", "x"]);
    s.run("a", &["GET", "k"]);
    s.run("w", &["SWAPDB", "0", "1"]);
    s.run("w", &["SWAPDB", "0", "1"]);
    s.run("a", &["PING"]);
    s.run("w", &["SELECT", "5"]);
    s.run("w", &["FLUSHDB"]);
    s.run("w", &["SELECT", "0"]);
    s.run("a", &["FLUSHALL"]);
    s.run("a", &["GET", "k"]);
    s.run("w", &["DEL", "missing"]);
    s.run("w", &["SET", "k", "1"]);
    s.run("a", &["GET", "k"]);
    s.run("w", &["DEL", "k"]);
    s.run("a", &["GET", "wt"]);
    s.run("w", &["RPUSH", "wt", "1"]);
    s.run("a", &["GET", "wt"]);
    s.run("w", &["DEL", "wt"]);
    s.run("a", &["PING"]);
    // Every read-only command with keys is remembered; SORT is a write.
    for c in [
        &["MGET", "m1", "m2"][..],
        &["EXISTS", "m3"],
        &["TTL", "m4"],
        &["TYPE", "m5"],
        &["STRLEN", "m6"],
        &["OBJECT", "ENCODING", "m7"],
        &["DUMP", "m8"],
        &["LCS", "m9", "m10"],
        &["SORT_RO", "m11"],
        &["SORT", "m12"],
        &["SCAN", "0"],
        &["HGET", "m13", "f"],
        &["ZSCORE", "m14", "x"],
    ] {
        s.run("a", c);
    }
    let mut mset = vec!["MSET"];
    let names: Vec<String> = (1..=14).map(|i| format!("m{i}")).collect();
    for n in &names {
        mset.push(n);
        mset.push("1");
    }
    s.run("w", &mset);
    s.run("a", &["PING"]);
    // Commands that also read keys change only their destination.
    s.run("a", &["MGET", "src", "dst", "dst2", "dst3"]);
    s.run("w", &["SADD", "src", "1"]);
    s.run("a", &["SMEMBERS", "src"]);
    s.run("w", &["SINTERSTORE", "dst", "src"]);
    s.run("w", &["COPY", "src", "dst2"]);
    s.run("w", &["SET", "str", "x"]);
    s.run("a", &["GET", "str"]);
    s.run("w", &["BITOP", "NOT", "dst3", "str"]);
    s.run("w", &["SETBIT", "dst3", "0", "1"]);
    s.run("a", &["GET", "dst3"]);
    s.run("w", &["SETBIT", "dst3", "0", "1"]);
    s.run("a", &["PING"]);

    // NOLOOP: not about one's own writes.
    s.run("n", &["HELLO", "3"]);
    s.run("n", &["CLIENT", "TRACKING", "on", "NOLOOP"]);
    s.run("n", &["GET", "nl"]);
    s.run("n", &["SET", "nl", "1"]);
    s.run("n", &["GET", "nl"]);
    s.run("w", &["SET", "nl", "2"]);
    s.run("n", &["PING"]);

    // OPTIN: only reads after CACHING yes (CLIENT subcommands keep it,
    // a transaction uses it whole).
    s.run("o", &["HELLO", "3"]);
    s.run("o", &["CLIENT", "TRACKING", "on", "OPTIN"]);
    // (Each step ends with a PING, which uses up a CACHING: a CACHING and
    // the commands it is for go in one step.)
    s.run("o", &["GET", "a"]);
    s.pipeline(
        "o",
        &[
            &["CLIENT", "CACHING", "yes"],
            &["CLIENT", "ID"],
            &["GET", "b"],
        ],
    );
    s.run("o", &["GET", "c"]);
    s.pipeline(
        "o",
        &[&["CLIENT", "CACHING", "yes"], &["CLIENT", "TRACKINGINFO"]],
    );
    s.pipeline(
        "o",
        &[
            &["CLIENT", "CACHING", "yes"],
            &["MULTI"],
            &["GET", "d"],
            &["GET", "e"],
            &["EXEC"],
        ],
    );
    s.run("o", &["GET", "f"]);
    s.run(
        "w",
        &[
            "MSET", "a", "1", "b", "1", "c", "1", "d", "1", "e", "1", "f", "1",
        ],
    );
    s.run("o", &["PING"]);
    // OPTOUT: every read but those after CACHING no.
    s.run("p", &["HELLO", "3"]);
    s.run("p", &["CLIENT", "TRACKING", "on", "OPTOUT"]);
    s.run("p", &["GET", "a"]);
    s.pipeline("p", &[&["CLIENT", "CACHING", "no"], &["GET", "b"]]);
    s.run("p", &["GET", "c"]);
    s.run("w", &["MSET", "a", "2", "b", "2", "c", "2"]);
    s.run("p", &["PING"]);

    // BCAST: every key under the prefixes, one message per prefix.
    s.run("b", &["HELLO", "3"]);
    s.run(
        "b",
        &[
            "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "u:", "PREFIX", "v:",
        ],
    );
    s.run("w", &["MSET", "u:1", "a", "x", "1", "v:2", "b", "u:3", "c"]);
    s.run("w", &["SET", "u:1", "again"]);
    s.run("b", &["PING"]);
    s.run("b", &["CLIENT", "TRACKING", "off"]);
    s.run("b", &["CLIENT", "TRACKING", "on", "BCAST", "NOLOOP"]);
    s.run("b", &["CLIENT", "TRACKINGINFO"]);
    s.run("b", &["MSET", "q", "1", "r", "2"]);
    s.run("w", &["SET", "q", "3"]);
    s.run("b", &["PING"]);
    s.run("w", &["FLUSHALL"]);
    s.run("b", &["PING"]);
    s.run("a", &["PING"]);
    s.run("b", &["CLIENT", "TRACKING", "off"]);
    s.run("n", &["CLIENT", "TRACKING", "off"]);
    s.run("o", &["CLIENT", "TRACKING", "off"]);
    s.run("p", &["CLIENT", "TRACKING", "off"]);

    // REDIRECT to a RESP2 subscriber: messages on __redis__:invalidate.
    s.run("r", &["SUBSCRIBE", "__redis__:invalidate"]);
    let r_id = s.id("r");
    s.run("t", &["CLIENT", "TRACKING", "on", "REDIRECT", &r_id]);
    s.run("t", &["CLIENT", "GETREDIR"]);
    s.run("t", &["CLIENT", "TRACKINGINFO"]);
    s.run("t", &["GET", "k"]);
    s.run("t", &["GET", "k2"]);
    s.run("w", &["SET", "k", "1"]);
    s.run("r", &["PING"]);
    s.run("t", &["SET", "k2", "1"]);
    s.run("r", &["PING"]);
    s.run("w", &["FLUSHALL"]);
    s.run("r", &["PING"]);
    let t = s.id("t");
    s.run("w", &["CLIENT", "LIST", "ID", &t]);
    // To a RESP2 connection that subscribes to nothing: nothing.
    let plain = s.id("plain");
    s.run("t2", &["HELLO", "3"]);
    s.run("t2", &["CLIENT", "TRACKING", "on", "REDIRECT", &plain]);
    s.run("t2", &["GET", "z"]);
    s.run("w", &["SET", "z", "1"]);
    s.run("plain", &["PING"]);
    // The redirect target leaves: the tracking client hears of it.
    let gone = s.id("gone");
    s.run("t3", &["HELLO", "3"]);
    s.run("t3", &["CLIENT", "TRACKING", "on", "REDIRECT", &gone]);
    s.run("t3", &["GET", "y"]);
    s.drop_conn("gone");
    let w = s.conn("w");
    eventually("the redirect target is gone", || {
        w.cmd(&["CLIENT", "LIST", "ID", &gone]);
        w.read2() == Frame::Bulk(Vec::new())
    });
    s.run("w", &["SET", "y", "1"]);
    s.run("t3", &["PING"]);
    s.run("t3", &["CLIENT", "TRACKINGINFO"]);
    let t3 = s.id("t3");
    s.run("w", &["CLIENT", "LIST", "ID", &t3]);
    // RESET turns tracking off.
    s.run("t3", &["RESET"]);
    s.run("t3", &["CLIENT", "TRACKINGINFO"]);
    // Scripts: once a script reads anything, its declared keys are
    // remembered (not what it read); a script that only writes, and a
    // read-only script as such, remember nothing.
    s.run("sc", &["HELLO", "3"]);
    s.run("sc", &["CLIENT", "TRACKING", "on"]);
    s.run("w", &["MSET", "d1{t}", "1", "d2{t}", "1", "r{t}", "1"]);
    let reads = "return redis.call('get', 'r{t}')";
    for (cmd, body) in [
        ("EVAL", "return redis.call('set', 'r{t}', 'x')"),
        ("EVAL", reads),
        ("EVAL_RO", "return redis.call('ping')"),
        ("EVAL_RO", reads),
    ] {
        s.run("sc", &[cmd, body, "2", "d1{t}", "d2{t}"]);
        s.run("w", &["MSET", "d1{t}", "2", "d2{t}", "2", "r{t}", "2"]);
        s.run("sc", &["PING"]);
    }
    s.run("sc", &["CLIENT", "TRACKING", "off"]);
    // RESP2 without redirect: nothing can be sent.
    s.run("s2", &["CLIENT", "TRACKING", "on"]);
    s.run("s2", &["GET", "s2"]);
    s.run("w", &["SET", "s2", "1"]);
    s.run("s2", &["PING"]);
    s.run("w", &["CONFIG", "GET", "tracking-table-max-keys"]);
    for field in ["tracking_clients", "tracking_total_prefixes"] {
        let w = s.conn("w");
        w.cmd(&["INFO", "all"]);
        let Frame::Bulk(info) = w.read2() else {
            panic!("INFO")
        };
        let info = String::from_utf8(info).unwrap();
        let line = info
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap()
            .to_string();
        s.transcript.push(line);
    }
    std::mem::take(&mut s.transcript)
}

#[test]
fn tracking_matches_redis() {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let port = node.port;
    let ours = script(&mut Session::new(|| Raw::connect(port)));
    let theirs = script(&mut Session::new(|| reference.raw()));
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t);
    }
    assert_eq!(ours.len(), theirs.len());
    let pushes = ours.iter().filter(|l| l.contains(">[")).count();
    assert!(pushes > 20, "the script must see invalidations: {ours:#?}");
}

/// A client cache kept only by invalidations ends equal to the server's
/// data while another connection writes the same keys all along: every
/// read that could have seen an old value is followed by its
/// invalidation, however the read and the write interleave.
#[test]
fn a_cache_kept_by_invalidations_stays_true_under_concurrent_writes() {
    let node = TestNode::start();
    let keys: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut reader = tracking_conn(node.port, &[]);
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    // Applies pushes until a reply comes; returns the reply.
    let next_reply = |r: &mut Raw, cache: &mut HashMap<String, Vec<u8>>| loop {
        match r.read3() {
            Frame::Push(p) if p.first() == Some(&Frame::bulk("invalidate")) => match &p[1] {
                Frame::Array(ks) => {
                    for k in ks {
                        let Frame::Bulk(k) = k else { panic!("{k:?}") };
                        cache.remove(&*String::from_utf8_lossy(k));
                    }
                }
                _ => cache.clear(),
            },
            reply => return reply,
        }
    };
    let mut reads = 0;
    let port = node.port;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut w = Raw::connect(port);
            for i in 0..20_000 {
                let k = &keys[i % keys.len()];
                w.call(&["SET", k, &i.to_string()]);
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let mut i = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let k = &keys[i % keys.len()];
            i += 1;
            if cache.contains_key(k) {
                // A cache hit; the round trip only takes in what was pushed.
                reader.cmd(&["PING"]);
                let pong = next_reply(&mut reader, &mut cache);
                assert_eq!(pong, Frame::Simple("PONG".into()));
                continue;
            }
            reader.cmd(&["GET", k]);
            reads += 1;
            match next_reply(&mut reader, &mut cache) {
                Frame::Bulk(v) => {
                    cache.insert(k.clone(), v);
                }
                Frame::Null => {}
                other => panic!("{other:?}"),
            }
        }
    });
    // Whatever was sent before this PING's reply is applied.
    reader.cmd(&["PING"]);
    assert_eq!(
        next_reply(&mut reader, &mut cache),
        Frame::Simple("PONG".into())
    );
    assert!(
        reads > 100,
        "the reader must have read while writes went on: {reads}"
    );
    let mut w = node.raw();
    for (k, v) in &cache {
        assert_eq!(
            w.call(&["GET", k]),
            Frame::Bulk(v.clone()),
            "cached {k} is stale"
        );
    }
}

/// `tracking-table-max-keys`: past it, keys are forgotten and their
/// readers told, so that the table stays bounded.
#[test]
fn the_tracking_table_is_bounded() {
    let node = TestNode::start();
    let mut w = node.raw();
    crate::ok(&mut w, &["CONFIG", "SET", "tracking-table-max-keys", "3"]);
    let mut a = tracking_conn(node.port, &[]);
    let mut forgotten = Vec::new();
    for k in ["k1", "k2", "k3", "k4", "k5"] {
        a.cmd(&["GET", k]);
        forgotten.extend(pushes_then(&mut a, Frame::Null));
    }
    a.cmd(&["PING"]);
    forgotten.extend(pushes_then(&mut a, Frame::Simple("PONG".into())));
    assert_eq!(forgotten.len(), 2, "{forgotten:?}");
    let info = crate::bulk(&mut w, &["INFO", "stats"]).unwrap();
    assert_eq!(crate::info_field(&info, "tracking_total_keys"), "3");
    assert_eq!(crate::info_field(&info, "tracking_total_items"), "3");
    // A lowered limit is met without another read (by the cron, as in
    // Redis): the keys over it are forgotten and their reader told.
    crate::ok(&mut w, &["CONFIG", "SET", "tracking-table-max-keys", "1"]);
    let mut told = Vec::new();
    eventually("two more keys forgotten", || {
        a.cmd(&["PING"]);
        told.extend(pushes_then(&mut a, Frame::Simple("PONG".into())));
        told.len() >= 2
    });
    assert_eq!(told.len(), 2, "{told:?}");
    let info = crate::bulk(&mut w, &["INFO", "stats"]).unwrap();
    assert_eq!(crate::info_field(&info, "tracking_total_keys"), "1");
}

/// A lowered `tracking-table-max-keys` is met before the next command
/// (here queued in a transaction, with the cron paused), its own reader
/// told before the command's reply: Redis's regression test for #11715,
/// run on Shoal and redis-server alike.
#[test]
fn a_lowered_tracking_limit_is_met_before_the_next_command() {
    let node = TestNode::start();
    let reference = crate::support::ReferenceRedis::start();
    lowered_limit_met_first(node.raw(), node.raw());
    lowered_limit_met_first(reference.raw(), reference.raw());
}

fn lowered_limit_met_first<S: std::io::Read + std::io::Write>(mut w: Raw<S>, mut a: Raw<S>) {
    let ok = Frame::Simple("OK".into());
    assert_eq!(w.call(&["DEBUG", "PAUSE-CRON", "1"]), ok);
    assert_eq!(
        w.call(&["CONFIG", "SET", "tracking-table-max-keys", "2"]),
        ok
    );
    a.cmd(&["HELLO", "3"]);
    a.read3();
    for args in [&["CLIENT", "TRACKING", "on"][..], &["MULTI"]] {
        if args[0] == "MULTI" {
            a.cmd(&["MGET", "1{tag}", "2{tag}"]);
            assert_eq!(a.read3(), Frame::Array(vec![Frame::Null, Frame::Null]));
        }
        a.cmd(args);
        assert_eq!(a.read3(), ok);
    }
    assert_eq!(
        w.call(&["CONFIG", "SET", "tracking-table-max-keys", "1"]),
        ok
    );
    a.cmd(&["PING"]);
    let Frame::Push(push) = a.read3() else {
        panic!("expected an invalidation first")
    };
    assert_eq!(push[0], Frame::bulk("invalidate"));
    assert!(
        [Frame::bulk("1{tag}"), Frame::bulk("2{tag}")]
            .iter()
            .any(|k| push[1] == Frame::Array(vec![k.clone()])),
        "{push:?}"
    );
    assert_eq!(a.read3(), Frame::Simple("QUEUED".into()));
    a.cmd(&["EXEC"]);
    assert_eq!(a.read3(), Frame::Array(vec![Frame::Simple("PONG".into())]));
    assert_eq!(w.call(&["DEBUG", "PAUSE-CRON", "0"]), ok);
}

/// A RESP3 connection with CLIENT TRACKING ON and `options`.
pub fn tracking_conn(port: u16, options: &[&str]) -> Raw {
    let mut c = Raw::connect(port);
    c.cmd(&["HELLO", "3"]);
    c.read3();
    let mut on = vec!["CLIENT", "TRACKING", "on"];
    on.extend_from_slice(options);
    c.cmd(&on);
    assert_eq!(c.read3(), Frame::Simple("OK".into()));
    c
}

/// Reads pushes until `reply`; returns what each push invalidated.
pub fn pushes_then(r: &mut Raw, reply: Frame) -> Vec<Frame> {
    let mut pushed = Vec::new();
    loop {
        match r.read3() {
            Frame::Push(p) => pushed.push(p[1].clone()),
            f if f == reply => return pushed,
            other => panic!("expected pushes then {reply:?}, got {other:?}"),
        }
    }
}

/// A key that expires is a key that changed: a client that read it, and a
/// BCAST client of its prefix, are told.
#[test]
fn expiry_invalidates() {
    let node = TestNode::start();
    let mut w = node.raw();
    let mut a = tracking_conn(node.port, &[]);
    let mut b = tracking_conn(node.port, &["BCAST", "PREFIX", "e"]);
    let pong = || Frame::Simple("PONG".into());
    // The read must see the key before it expires; the time to live grows
    // until it does, whatever the machine's load.
    let mut ttl = 50;
    loop {
        crate::ok(&mut w, &["SET", "e", "1", "PX", &ttl.to_string()]);
        a.cmd(&["PING"]);
        pushes_then(&mut a, pong());
        b.cmd(&["PING"]);
        pushes_then(&mut b, pong());
        a.cmd(&["GET", "e"]);
        let read = pushes_then(&mut a, Frame::bulk("1")).is_empty();
        if read && crate::int(&mut w, &["EXISTS", "e"]) == 1 {
            break;
        }
        ttl *= 2;
    }
    eventually("e expired", || crate::int(&mut w, &["EXISTS", "e"]) == 0);
    let e = Frame::Array(vec![Frame::bulk("e")]);
    a.cmd(&["PING"]);
    assert_eq!(pushes_then(&mut a, pong()), vec![e.clone()]);
    b.cmd(&["PING"]);
    assert_eq!(pushes_then(&mut b, pong()), vec![e]);
}

/// A read that finds its key expired and deletes it: its reader is told
/// only if it was remembered for that key before the read, as in Redis
/// (which remembers a read's keys after running it). Active expiry is off,
/// so only the read can find the key expired; each key has a twin set just
/// after it with the same time to live, whose expiry is polled instead.
#[test]
fn a_read_that_expires_its_key_tells_its_reader_as_redis_does() {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    fn run<S: Read + Write>(mut w: Raw<S>, mut a: Raw<S>) -> Vec<Vec<Frame>> {
        let ok = Frame::Simple("OK".into());
        assert_eq!(w.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), ok);
        a.cmd(&["HELLO", "3"]);
        a.read3();
        a.cmd(&["CLIENT", "TRACKING", "on"]);
        assert_eq!(a.read3(), ok);
        // Frames until the marker PING's reply.
        let frames = |a: &mut Raw<S>| {
            a.cmd(&["PING", "mark"]);
            let mut got = Vec::new();
            loop {
                match a.read3() {
                    Frame::Bulk(b) if b == b"mark" => return got,
                    f => got.push(f),
                }
            }
        };
        let expire_pair = |w: &mut Raw<S>, key: &str, ttl: u64| {
            let twin = format!("{key}-twin");
            for k in [key, twin.as_str()] {
                assert_eq!(w.call(&["SET", k, "1", "PX", &ttl.to_string()]), ok);
            }
        };
        let expired = |w: &mut Raw<S>, key: &str| {
            let twin = format!("{key}-twin");
            eventually("the twin expired", || {
                w.call(&["EXISTS", &twin]) == Frame::Int(0)
            });
        };
        let mut out = Vec::new();
        // Remembered before: read while alive (the TTL grows until the
        // read sees the key), then read again once expired.
        let mut ttl = 50;
        loop {
            expire_pair(&mut w, "e", ttl);
            frames(&mut a);
            a.cmd(&["GET", "e"]);
            if a.read3() == Frame::bulk("1") {
                break;
            }
            ttl *= 2;
        }
        frames(&mut a);
        expired(&mut w, "e");
        a.cmd(&["GET", "e"]);
        out.push(frames(&mut a));
        // Never read before.
        expire_pair(&mut w, "f", 50);
        expired(&mut w, "f");
        a.cmd(&["GET", "f"]);
        out.push(frames(&mut a));
        out
    }
    let ours = run(node.raw(), node.raw());
    let theirs = run(reference.raw(), reference.raw());
    assert_eq!(ours, theirs);
    let e = Frame::Push(vec![
        Frame::bulk("invalidate"),
        Frame::Array(vec![Frame::bulk("e")]),
    ]);
    assert_eq!(ours, vec![vec![Frame::Null, e], vec![Frame::Null]]);
}

/// A command that writes a key twice (MSET k 1 k 2, a transaction, a
/// script) tells a BCAST client once, in one message, as Redis does: no
/// broadcast by another connection falls in the middle of it. Another
/// connection hears of each write by a keyspace notification, and two
/// more ping without pause: each of their replies starts a broadcast, on
/// whichever I/O thread serves them.
#[test]
fn a_command_writing_a_key_twice_is_broadcast_once() {
    let node = TestNode::start();
    let mut w = node.raw();
    let mut b = tracking_conn(node.port, &["BCAST"]);
    let ok = Frame::Simple("OK".into());
    assert_eq!(
        w.call(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
        ok
    );
    let mut notified = node.raw();
    notified.cmd(&["PSUBSCRIBE", "__key*__:*"]);
    notified.read2();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pingers: Vec<_> = (0..2)
        .map(|_| {
            let (mut p, stop) = (node.raw(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(p.call(&["PING"]), Frame::Simple("PONG".into()));
                }
            })
        })
        .collect();
    let mset: Vec<String> = (0..40)
        .flat_map(|i| ["k".to_string(), i.to_string()])
        .collect();
    let mset: Vec<&str> = ["MSET"]
        .into_iter()
        .chain(mset.iter().map(|s| s.as_str()))
        .collect();
    let once = vec![Frame::Array(vec![Frame::bulk("k")])];
    let pong = || Frame::Simple("PONG".into());
    for round in 0..300 {
        match round % 3 {
            0 => assert_eq!(w.call(&mset), Frame::Simple("OK".into())),
            1 => {
                w.call(&["MULTI"]);
                for i in 0..20 {
                    w.call(&["SET", "k", &i.to_string()]);
                }
                assert!(matches!(w.call(&["EXEC"]), Frame::Array(_)));
            }
            _ => {
                let script = "for i = 1, 20 do redis.call('SET', KEYS[1], i) end";
                assert_eq!(w.call(&["EVAL", script, "1", "k"]), Frame::Null);
            }
        }
        b.cmd(&["PING"]);
        assert_eq!(pushes_then(&mut b, pong()), once, "round {round}");
        // What the notified connection heard, up to this round's end.
        w.call(&["SET", "end", "x"]);
        loop {
            let Frame::Array(m) = notified.read2() else {
                panic!("a notification")
            };
            if m.last() == Some(&Frame::bulk("end")) {
                break;
            }
        }
        b.cmd(&["PING"]);
        assert_eq!(
            pushes_then(&mut b, pong()),
            vec![Frame::Array(vec![Frame::bulk("end")])]
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pingers {
        p.join().unwrap();
    }
}
