//! Pub/Sub in RESP2 and RESP3: channels, patterns and shard channels,
//! subscribed-mode restrictions, PUBSUB introspection, keyspace
//! notifications, and the output buffer limit that cuts off a subscriber
//! that stopped reading.

use crate::support::{eventually, Frame, Raw, ReferenceRedis, TestNode};
use crate::{bulk, err, int, ok};

fn b(s: &str) -> Frame {
    Frame::bulk(s)
}

fn arr(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

#[test]
fn resp2_channels_patterns_and_subscribed_mode() {
    let node = TestNode::start();
    let (mut sub, mut publ) = (node.raw(), node.raw());
    sub.cmd(&["SUBSCRIBE", "news", "sport"]);
    assert_eq!(
        sub.read2(),
        arr(vec![b("subscribe"), b("news"), Frame::Int(1)])
    );
    assert_eq!(
        sub.read2(),
        arr(vec![b("subscribe"), b("sport"), Frame::Int(2)])
    );
    assert_eq!(
        sub.call(&["PSUBSCRIBE", "n*"]),
        arr(vec![b("psubscribe"), b("n*"), Frame::Int(3)])
    );
    assert_eq!(int(&mut publ, &["PUBLISH", "news", "hello"]), 2);
    assert_eq!(int(&mut publ, &["PUBLISH", "nothing-here", "x"]), 1);
    assert_eq!(int(&mut publ, &["PUBLISH", "other", "x"]), 0);
    assert_eq!(sub.read2(), arr(vec![b("message"), b("news"), b("hello")]));
    assert_eq!(
        sub.read2(),
        arr(vec![b("pmessage"), b("n*"), b("news"), b("hello")])
    );
    assert_eq!(
        sub.read2(),
        arr(vec![b("pmessage"), b("n*"), b("nothing-here"), b("x")])
    );
    assert_eq!(
        err(&mut sub, &["GET", "k"]),
        "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    );
    assert_eq!(sub.call(&["PING"]), arr(vec![b("pong"), b("")]));

    let mut info = node.raw();
    assert_eq!(
        info.call(&["PUBSUB", "NUMSUB", "news", "none"]),
        arr(vec![b("news"), Frame::Int(1), b("none"), Frame::Int(0)])
    );
    assert_eq!(int(&mut info, &["PUBSUB", "NUMPAT"]), 1);
    // NUMPAT counts distinct patterns, as Redis 7 does: another client on
    // the same pattern adds none. With CLIENT REPLY OFF, a RESP2 client
    // still gets its subscription confirmations (Redis sends them as
    // pushes in any protocol).
    let mut quiet = node.raw();
    quiet.cmd(&["CLIENT", "REPLY", "OFF"]);
    quiet.cmd(&["PSUBSCRIBE", "n*", "q*"]);
    assert_eq!(
        quiet.read2(),
        arr(vec![b("psubscribe"), b("n*"), Frame::Int(1)])
    );
    assert_eq!(
        quiet.read2(),
        arr(vec![b("psubscribe"), b("q*"), Frame::Int(2)])
    );
    assert_eq!(int(&mut info, &["PUBSUB", "NUMPAT"]), 2);
    let stats = bulk(&mut info, &["INFO", "stats"]).unwrap();
    assert!(stats.contains("pubsub_patterns:2\r\n"), "{stats}");
    drop(quiet);
    eventually("the quiet client gone", || {
        int(&mut info, &["PUBSUB", "NUMPAT"]) == 1
    });
    let Frame::Array(mut chans) = info.call(&["PUBSUB", "CHANNELS"]) else {
        panic!()
    };
    chans.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(chans, vec![b("news"), b("sport")]);
    assert_eq!(
        info.call(&["PUBSUB", "CHANNELS", "s*"]),
        arr(vec![b("sport")])
    );

    sub.cmd(&["UNSUBSCRIBE"]);
    // One confirmation per channel, counting down (the pattern remains),
    // in the channels' order, the same on every node.
    assert_eq!(
        sub.read2(),
        arr(vec![b("unsubscribe"), b("news"), Frame::Int(2)])
    );
    assert_eq!(
        sub.read2(),
        arr(vec![b("unsubscribe"), b("sport"), Frame::Int(1)])
    );
    assert_eq!(
        sub.call(&["PUNSUBSCRIBE"]),
        arr(vec![b("punsubscribe"), b("n*"), Frame::Int(0)])
    );
    assert_eq!(
        sub.call(&["UNSUBSCRIBE"]),
        arr(vec![b("unsubscribe"), Frame::Null, Frame::Int(0)])
    );
    // Out of subscribed mode: ordinary commands again.
    assert_eq!(bulk(&mut sub, &["GET", "k"]), None);
    assert_eq!(int(&mut publ, &["PUBLISH", "news", "x"]), 0);
}

#[test]
fn resp3_pushes_and_shard_channels() {
    let node = TestNode::start();
    let (mut sub, mut publ) = (node.raw(), node.raw());
    sub.cmd(&["HELLO", "3"]);
    sub.read3();
    sub.cmd(&["SUBSCRIBE", "c"]);
    assert_eq!(
        sub.read3(),
        Frame::Push(vec![b("subscribe"), b("c"), Frame::Int(1)])
    );
    // RESP3 clients may run any command while subscribed.
    sub.cmd(&["SET", "k", "v"]);
    assert_eq!(sub.read3(), Frame::Simple("OK".into()));
    sub.cmd(&["SSUBSCRIBE", "{s}a"]);
    assert_eq!(
        sub.read3(),
        Frame::Push(vec![b("ssubscribe"), b("{s}a"), Frame::Int(1)])
    );
    assert_eq!(int(&mut publ, &["PUBLISH", "c", "m1"]), 1);
    assert_eq!(int(&mut publ, &["SPUBLISH", "{s}a", "m2"]), 1);
    assert_eq!(int(&mut publ, &["PUBLISH", "{s}a", "not shard"]), 0);
    assert_eq!(
        sub.read3(),
        Frame::Push(vec![b("message"), b("c"), b("m1")])
    );
    assert_eq!(
        sub.read3(),
        Frame::Push(vec![b("smessage"), b("{s}a"), b("m2")])
    );
    assert_eq!(
        publ.call(&["PUBSUB", "SHARDCHANNELS"]),
        arr(vec![b("{s}a")])
    );
    assert_eq!(
        publ.call(&["PUBSUB", "SHARDNUMSUB", "{s}a"]),
        arr(vec![b("{s}a"), Frame::Int(1)])
    );
    // A flat array in RESP3 too, as from Redis.
    sub.cmd(&["PUBSUB", "NUMSUB", "c", "none"]);
    assert_eq!(
        sub.read3(),
        arr(vec![b("c"), Frame::Int(1), b("none"), Frame::Int(0)])
    );
    // RESET leaves every subscription.
    sub.cmd(&["RESET"]);
    assert_eq!(sub.read2(), Frame::Simple("RESET".into()));
    assert_eq!(int(&mut publ, &["PUBLISH", "c", "m3"]), 0);

    // CLIENT REPLY OFF silences replies, not pushes: a RESP3 client still
    // hears its subscriptions confirmed (and its messages), as in Redis.
    sub.cmd(&["HELLO", "3"]);
    sub.read3();
    sub.cmd(&["CLIENT", "REPLY", "OFF"]);
    sub.cmd(&["SUBSCRIBE", "c"]);
    sub.cmd(&["PSUBSCRIBE", "c*"]);
    sub.cmd(&["SET", "k", "silenced"]);
    sub.cmd(&["UNSUBSCRIBE", "c"]);
    sub.cmd(&["CLIENT", "REPLY", "ON"]);
    let push = |kind: &str, name: &str, n: i64| Frame::Push(vec![b(kind), b(name), Frame::Int(n)]);
    assert_eq!(sub.read3(), push("subscribe", "c", 1));
    assert_eq!(sub.read3(), push("psubscribe", "c*", 2));
    assert_eq!(sub.read3(), push("unsubscribe", "c", 1));
    assert_eq!(sub.read3(), Frame::Simple("OK".into()));

    // Inside a transaction, as in Redis: SUBSCRIBE is let through (for
    // compatibility), SSUBSCRIBE is not.
    let mut tx = node.raw();
    for c in [&["MULTI"][..], &["SUBSCRIBE", "t"], &["SSUBSCRIBE", "{s}t"]] {
        tx.cmd(c);
        tx.read2();
    }
    assert_eq!(
        tx.call(&["EXEC"]),
        arr(vec![
            arr(vec![b("subscribe"), b("t"), Frame::Int(1)]),
            Frame::Error("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client".into()),
        ])
    );
}

#[test]
fn keyspace_notifications() {
    let node = TestNode::start();
    let (mut sub, mut w) = (node.raw(), node.raw());
    ok(&mut w, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    assert_eq!(
        w.call(&["CONFIG", "GET", "notify-keyspace-events"]),
        arr(vec![b("notify-keyspace-events"), b("AKE")])
    );
    assert_eq!(
        err(&mut w, &["CONFIG", "SET", "notify-keyspace-events", "Kq"]),
        "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
    );
    sub.call(&["PSUBSCRIBE", "__keyspace@0__:*"]);
    let mut events = |w: &mut Raw, cmd: &[&str], n: usize| -> Vec<(String, String)> {
        w.call(cmd);
        (0..n)
            .map(|_| match sub.read2() {
                Frame::Array(v) => {
                    let s = |f: &Frame| match f {
                        Frame::Bulk(b) => String::from_utf8(b.clone()).unwrap(),
                        other => panic!("{other:?}"),
                    };
                    (s(&v[2]), s(&v[3]))
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let ev = |k: &str, e: &str| vec![(format!("__keyspace@0__:{k}"), e.to_string())];
    assert_eq!(events(&mut w, &["SET", "k", "v"], 1), ev("k", "set"));
    assert_eq!(events(&mut w, &["INCR", "n"], 1), ev("n", "incrby"));
    assert_eq!(
        events(&mut w, &["EXPIRE", "k", "100"], 1),
        ev("k", "expire")
    );
    assert_eq!(events(&mut w, &["LPUSH", "l", "a"], 1), ev("l", "lpush"));
    assert_eq!(events(&mut w, &["HSET", "h", "f", "v"], 1), ev("h", "hset"));
    assert_eq!(
        events(&mut w, &["ZINCRBY", "z", "1", "m"], 1),
        ev("z", "zincr")
    );
    assert_eq!(events(&mut w, &["DEL", "h"], 1), ev("h", "del"));
    let renamed = events(&mut w, &["RENAME", "k", "k2"], 2);
    assert_eq!(
        renamed,
        vec![
            ("__keyspace@0__:k".into(), "rename_from".into()),
            ("__keyspace@0__:k2".into(), "rename_to".into())
        ]
    );
    // Redis's names where the recorded effect is another command, and a
    // `del` after the event of a write that empties a key.
    assert_eq!(
        events(&mut w, &["INCRBYFLOAT", "f", "1.5"], 1),
        ev("f", "incrbyfloat")
    );
    assert_eq!(
        events(&mut w, &["HINCRBYFLOAT", "h2", "x", "1"], 1),
        ev("h2", "hincrbyfloat")
    );
    assert_eq!(events(&mut w, &["SADD", "s", "only"], 1), ev("s", "sadd"));
    assert_eq!(
        events(&mut w, &["SPOP", "s"], 2),
        vec![
            ("__keyspace@0__:s".into(), "spop".into()),
            ("__keyspace@0__:s".into(), "del".into())
        ]
    );
    assert_eq!(
        events(&mut w, &["LPOP", "l"], 2),
        vec![
            ("__keyspace@0__:l".into(), "lpop".into()),
            ("__keyspace@0__:l".into(), "del".into())
        ]
    );
    // An expiry deletion is `expired`, not `del`.
    ok(&mut w, &["SET", "t", "v", "PX", "1"]);
    // `set`, then `expire` (a SET with a TTL tells both, as in Redis).
    sub.read2();
    sub.read2();
    eventually("t expired", || int(&mut w, &["EXISTS", "t"]) == 0);
    let Frame::Array(v) = sub.read2() else {
        panic!()
    };
    assert_eq!(v[2..], [b("__keyspace@0__:t"), b("expired")]);
}

#[test]
fn a_subscriber_that_stops_reading_is_cut_off() {
    let node = TestNode::start();
    let mut publ = node.raw();
    ok(
        &mut publ,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 0 0",
        ],
    );
    let mut idle = node.raw();
    idle.call(&["SUBSCRIBE", "firehose"]);
    // The subscriber never reads again; the publisher goes on.
    let payload = "x".repeat(64 * 1024);
    let mut sent = 0;
    loop {
        let Frame::Array(v) = publ.call(&["PUBSUB", "NUMSUB", "firehose"]) else {
            panic!()
        };
        if v[1] == Frame::Int(0) {
            break;
        }
        publ.call(&["PUBLISH", "firehose", &payload]);
        sent += 1;
        assert!(sent < 10_000, "never cut off");
    }
    // Far less than what was published stayed queued for it.
    assert!(sent * payload.len() > 1024 * 1024, "{sent}");
    eventually("the subscriber is gone", || idle.is_closed());
    assert_eq!(int(&mut publ, &["PUBLISH", "firehose", "x"]), 0);
}

/// Keyspace notifications, event for event and in order, as redis-server
/// sends them for the same commands: MOVE's move_to and COPY's copy_to in
/// the other database, SET with a TTL's expire, LMOVE's push before its
/// pop, the STORE forms on their destination only, bitmaps and
/// HyperLogLogs as strings, BITOP as `set` or `del` by its result, a STORE
/// form's empty result as the `del` of its destination, SORT's STORE as one
/// `sortstore`, nothing for a SETBIT or BITFIELD that changes nothing.
#[test]
fn keyspace_events_match_redis() {
    let script: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["INCR", "a"],
        &["EXPIRE", "a", "100"],
        &["PERSIST", "a"],
        &["SET", "b", "1"],
        &["RENAME", "b", "c"],
        &["COPY", "c", "d"],
        &["COPY", "c", "cc", "DB", "2"],
        &["MOVE", "d", "1"],
        &["SET", "f", "1", "EX", "100"],
        &["SETEX", "g", "100", "v"],
        &["SET", "h", "1", "KEEPTTL"],
        &["RPUSH", "m", "1", "2"],
        &["LMOVE", "m", "n", "LEFT", "RIGHT"],
        &["RPOPLPUSH", "m", "n"],
        &["SADD", "s", "1", "2"],
        &["SINTERSTORE", "t", "s"],
        &["ZADD", "z", "1", "a"],
        &["ZUNIONSTORE", "u", "1", "z"],
        &["ZRANGESTORE", "v", "z", "0", "-1"],
        &["SETBIT", "j", "1", "1"],
        &["SETBIT", "j", "1", "1"],
        &["BITOP", "OR", "bo", "j"],
        &["BITOP", "AND", "bo", "missing"],
        &["BITOP", "AND", "bo", "missing"],
        &[
            "BITFIELD", "bf0", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "5",
        ],
        &["BITFIELD", "bf0", "SET", "u8", "0", "0"],
        &["BITFIELD", "bf0", "SET", "u8", "0", "1"],
        &["SADD", "s2", "x"],
        &["SINTERSTORE", "s3", "s2"],
        &["SINTERSTORE", "s3", "s2", "missing"],
        &["ZINTERSTORE", "z3", "2", "z", "missing"],
        &["SORT", "m", "STORE", "so"],
        &["SORT", "missing", "STORE", "so"],
        &["BITFIELD", "k", "SET", "u8", "0", "1"],
        &["PFADD", "p", "x"],
        &["PFMERGE", "q", "p"],
        &["PFCOUNT", "q"],
        &["HMSET", "hm", "f", "1", "g", "2"],
        &["HSET", "hm", "f", "3"],
        &["SADD", "src", "a", "b"],
        &["SADD", "dst", "a"],
        &["SMOVE", "src", "dst", "a"],
        &["SMOVE", "src", "dst", "b"],
        &["SET", "done", "1"],
    ];
    let events = |client: redis::Client| -> Vec<(String, String)> {
        let mut w = client.get_connection().unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg("KEA")
            .query(&mut w)
            .unwrap();
        let mut sub = client.get_connection().unwrap();
        sub.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut ps = sub.as_pubsub();
        ps.psubscribe("__key*__:*").unwrap();
        for c in script {
            let _ = crate::support::run(&mut w, c);
        }
        let mut seen = Vec::new();
        loop {
            let m = ps.get_message().unwrap();
            let (channel, payload): (String, String) =
                (m.get_channel_name().to_string(), m.get_payload().unwrap());
            let last = channel == "__keyevent@0__:set" && payload == "done";
            seen.push((channel, payload));
            if last {
                return seen;
            }
        }
    };
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let ours = events(node.client());
    let theirs = events(reference.client());
    assert!(ours.len() > 40, "{ours:?}");
    assert_eq!(ours, theirs);
}

/// Runs `cmd` on `w`; returns its reply and the events `sub` heard of it
/// (`sub` is also subscribed to `end`, published after the command).
fn reply_and_events<S: std::io::Read + std::io::Write>(
    w: &mut Raw<S>,
    sub: &mut Raw<S>,
    cmd: &[&str],
) -> (Frame, Vec<Frame>) {
    let reply = w.call(cmd);
    w.call(&["PUBLISH", "end", "x"]);
    let mut events = Vec::new();
    loop {
        match sub.read2() {
            Frame::Array(v) if v[0] == Frame::bulk("message") => break,
            Frame::Array(v) => events.push(Frame::Array(v[2..].to_vec())),
            other => panic!("{other:?}"),
        }
    }
    (reply, events)
}

/// A writer and a subscriber to every keyspace channel (and `end`) on a
/// node and on redis-server, with notifications of `classes` on.
fn notified_pairs(
    node: &TestNode,
    reference: &ReferenceRedis,
    classes: &str,
) -> (
    (Raw, Raw),
    (
        Raw<std::os::unix::net::UnixStream>,
        Raw<std::os::unix::net::UnixStream>,
    ),
) {
    let (mut w1, mut s1) = (node.raw(), node.raw());
    let (mut w2, mut s2) = (reference.raw(), reference.raw());
    w1.call(&["CONFIG", "SET", "notify-keyspace-events", classes]);
    w2.call(&["CONFIG", "SET", "notify-keyspace-events", classes]);
    s1.call(&["PSUBSCRIBE", "__key*__:*"]);
    s2.call(&["PSUBSCRIBE", "__key*__:*"]);
    s1.call(&["SUBSCRIBE", "end"]);
    s2.call(&["SUBSCRIBE", "end"]);
    ((w1, s1), (w2, s2))
}

/// Which lookups are reads, as Redis's flags make them: a read of a
/// missing key publishes `keymiss` (class `m`) and counts a keyspace miss;
/// OBJECT counts without notifying, MEMORY USAGE does neither; the
/// destination of a store is no read. Each command's events and the hit/miss counters are
/// compared with redis-server's.
#[test]
fn key_misses_are_read_misses_as_in_redis() {
    let script: &[&[&str]] = &[
        &["SET", "str", "v"],
        &["PFADD", "hll", "a"],
        &["GET", "nosuch"],
        &["TYPE", "nosuch"],
        &["EXISTS", "nosuch", "str"],
        &["TTL", "nosuch"],
        &["OBJECT", "ENCODING", "nosuch"],
        &["MEMORY", "USAGE", "nosuch"],
        &["SET", "fresh", "v", "GET"],
        &["GETSET", "fresh2", "v"],
        &["LCS", "nosuch", "str"],
        &["PFCOUNT", "nosuch"],
        &["PFCOUNT", "hll", "nosuch"],
        &["PFMERGE", "dst", "hll", "nosuch"],
        &["TOUCH", "nosuch", "str"],
        &["SORT", "nosuch"],
        &["SORT", "nosuch", "STORE", "sorted"],
        &["COPY", "nosuch", "copy"],
        &["SINTERSTORE", "inter", "nosuch"],
        &["ZUNIONSTORE", "union", "1", "nosuch"],
        &["LRANGE", "nosuch", "0", "-1"],
        &["HGET", "nosuch", "f"],
        &["SETNX", "str", "v"],
    ];
    fn stats<S: std::io::Read + std::io::Write>(w: &mut Raw<S>) -> (String, String) {
        let Frame::Bulk(info) = w.call(&["INFO", "stats"]) else {
            panic!()
        };
        let info = String::from_utf8(info).unwrap();
        (
            crate::info_field(&info, "keyspace_hits"),
            crate::info_field(&info, "keyspace_misses"),
        )
    }
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let ((mut w1, mut s1), (mut w2, mut s2)) = notified_pairs(&node, &reference, "Km");
    w1.call(&["CONFIG", "RESETSTAT"]);
    w2.call(&["CONFIG", "RESETSTAT"]);
    for cmd in script {
        assert_eq!(
            reply_and_events(&mut w1, &mut s1, cmd),
            reply_and_events(&mut w2, &mut s2, cmd),
            "{cmd:?}"
        );
        assert_eq!(stats(&mut w1), stats(&mut w2), "after {cmd:?}");
    }
}

/// A key added to a database is told (`new`, class `n`) before the
/// command's own events, as Redis tells it from its dbAdd: a created key,
/// a RENAME's or COPY's destination even over an existing key, a key
/// MOVEd into another database, a BITFIELD that created its key and
/// changed nothing; an overwrite is not new.
#[test]
fn new_keys_are_told_as_in_redis() {
    let script: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["SET", "a", "2"],
        &["LPUSH", "l", "x"],
        &["LPUSH", "l", "y"],
        &["SET", "b", "1"],
        &["RENAME", "a", "b"],
        &["RENAME", "b", "c"],
        &["COPY", "c", "d"],
        &["COPY", "c", "d", "REPLACE"],
        &["COPY", "c", "d", "DB", "1"],
        &["MOVE", "l", "2"],
        &[
            "BITFIELD", "bf", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "5",
        ],
        &["SADD", "s", "m"],
        &["SINTERSTORE", "t", "s"],
        &["SINTERSTORE", "t", "s"],
        &["MSET", "m1", "1", "c", "2"],
        &["HINCRBY", "h", "f", "1"],
        &["INCR", "n"],
    ];
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let ((mut w1, mut s1), (mut w2, mut s2)) = notified_pairs(&node, &reference, "KEAn");
    for cmd in script {
        assert_eq!(
            reply_and_events(&mut w1, &mut s1, cmd),
            reply_and_events(&mut w2, &mut s2, cmd),
            "{cmd:?}"
        );
    }
}
