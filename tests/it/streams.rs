//! Streams and consumer groups: replies compared with redis-server's word
//! for word (entries, errors, groups, pending lists), blocked readers
//! woken by another client, and streams with their groups kept across a
//! restart, a log rewrite, a replica's sync and DUMP/RESTORE both ways
//! between Shoal and Redis.

use crate::blocking::blocked;
use crate::support::{
    eventually, run, same_as_redis, same_as_redis_owned, Frame, Raw, ReferenceRedis, TestNode,
};
use crate::{bulk, digest, err, info_field, int, ok};

#[test]
fn stream_commands_answer_as_redis() {
    same_as_redis(&[
        &["XADD", "s", "1-1", "a", "1", "b", "2"],
        &["XADD", "s", "1-*", "a", "1"],
        &["XADD", "s", "1", "a", "1"],
        &["XADD", "s", "0-0", "a", "1"],
        &["XADD", "s", "5", "c", "3", "d"],
        &["XADD", "s", "5", "c", "3"],
        &["XADD", "s", "MAXLEN", "x", "6", "c", "3"],
        &["XADD", "s", "LIMIT", "5", "6", "c", "3"],
        &["XADD", "s", "MAXLEN", "5", "LIMIT", "5", "6", "c", "3"],
        &["XADD", "s", "MAXLEN", "~", "5", "MINID", "1", "6", "c", "3"],
        &["XADD", "missing", "NOMKSTREAM", "1", "a", "b"],
        &["EXISTS", "missing"],
        &["XADD", "s", "bogus", "a", "b"],
        &["XADD", "s", "7-3", "f", "v"],
        &["XADD", "s", "9", "f", "v"],
        &["XADD", "s", "11", "f", "v"],
        &["XRANGE", "s", "-", "+"],
        &["XRANGE", "s", "(1-1", "(9", "COUNT", "2"],
        &["XRANGE", "s", "-", "+", "COUNT", "0"],
        &[
            "XRANGE",
            "s",
            "(18446744073709551615-18446744073709551615",
            "+",
        ],
        &["XRANGE", "s", "-", "(0-0"],
        &["XREVRANGE", "s", "+", "5", "COUNT", "3"],
        &["XRANGE", "s", "x", "+"],
        &["XRANGE", "nokey", "-", "+"],
        &["XLEN", "s"],
        &["XDEL", "s", "5", "404", "7-3"],
        &["XDEL", "s", "x"],
        &["XTRIM", "s", "MAXLEN", "3"],
        &["XTRIM", "s", "MINID", "~", "10"],
        &["XTRIM", "s", "LIMIT", "1"],
        &["XTRIM", "s", "MAXLEN", "=", "1", "LIMIT", "1"],
        &["XINFO", "STREAM", "s"],
        &["XREAD", "COUNT", "1", "STREAMS", "s", "nokey", "0", "0"],
        &["XREAD", "STREAMS", "s", "$"],
        &["XREAD", "STREAMS", "s"],
        &["XREAD", "STREAMS", "s", ">"],
        &["XGROUP", "CREATE", "s", "g", "0"],
        &["XGROUP", "CREATE", "s", "g", "0"],
        &["XGROUP", "CREATE", "nokey", "g", "$"],
        &[
            "XGROUP",
            "CREATE",
            "fresh",
            "g",
            "$",
            "MKSTREAM",
            "ENTRIESREAD",
            "-2",
        ],
        &["XGROUP", "CREATE", "fresh", "g", "$", "MKSTREAM"],
        &["XADD", "s", "12", "f", "v"],
        &["XADD", "s", "13", "f", "v"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "alice",
            "COUNT",
            "2",
            "STREAMS",
            "s",
            ">",
        ],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "bob",
            "NOACK",
            "COUNT",
            "1",
            "STREAMS",
            "s",
            ">",
        ],
        &["XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0"],
        &["XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "$"],
        &["XADD", "s", "13-5", "f", "v"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "bob",
            "STREAMS",
            "s",
            "18446744073709551615-18446744073709551615",
        ],
        &["XREADGROUP", "GROUP", "nog", "alice", "STREAMS", "s", ">"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "alice",
            "STREAMS",
            "s",
            "fresh",
            ">",
            ">",
        ],
        &["XPENDING", "s", "g"],
        &["XPENDING", "s", "nog"],
        &["XACK", "s", "g", "11", "404"],
        &["XACK", "s", "g", "x"],
        &["XGROUP", "CREATECONSUMER", "s", "g", "carol"],
        &["XGROUP", "CREATECONSUMER", "s", "g", "carol"],
        &["XCLAIM", "s", "g", "carol", "0", "12", "JUSTID"],
        &["XCLAIM", "s", "g", "carol", "x", "12"],
        &["XCLAIM", "s", "g", "carol", "0", "12", "BOGUS"],
        &[
            "XCLAIM",
            "s",
            "g",
            "dave",
            "0",
            "13",
            "FORCE",
            "RETRYCOUNT",
            "7",
            "JUSTID",
        ],
        &["XPENDING", "s", "g"],
        &["XDEL", "s", "12"],
        &[
            "XAUTOCLAIM",
            "s",
            "g",
            "erin",
            "0",
            "0",
            "COUNT",
            "1",
            "JUSTID",
        ],
        &["XAUTOCLAIM", "s", "g", "erin", "0", "0", "COUNT", "0"],
        &["XINFO", "GROUPS", "s"],
        &["XGROUP", "SETID", "s", "g", "$", "ENTRIESREAD", "4"],
        &["XGROUP", "SETID", "s", "nog", "0"],
        &["XINFO", "GROUPS", "s"],
        &["XGROUP", "DELCONSUMER", "s", "g", "erin"],
        &["XGROUP", "DESTROY", "s", "g"],
        &["XGROUP", "DESTROY", "s", "g"],
        &["XSETID", "s", "1"],
        &["XSETID", "s", "99", "ENTRIESADDED", "1"],
        &[
            "XSETID",
            "s",
            "99",
            "ENTRIESADDED",
            "50",
            "MAXDELETEDID",
            "100",
        ],
        &[
            "XSETID",
            "s",
            "99",
            "ENTRIESADDED",
            "50",
            "MAXDELETEDID",
            "98",
        ],
        &["XINFO", "STREAM", "s"],
        &["XINFO", "STREAM", "nokey"],
        &["SET", "str", "v"],
        &["XADD", "str", "1", "a", "b"],
        &["XRANGE", "str", "-", "+"],
        &["XINFO", "STREAM", "str"],
        &["TYPE", "s"],
        &["OBJECT", "ENCODING", "s"],
        &["DEBUG", "DIGEST-VALUE", "s"],
        &["SCAN", "0", "MATCH", "s", "TYPE", "stream"],
    ]);
}

/// `stream-node-max-entries` and `stream-node-max-bytes` decide where a
/// node ends, and so what `~` trimming and its LIMIT (whose default is
/// 100 nodes' worth) remove, as in Redis.
#[test]
fn node_sizes_decide_what_approximate_trims_remove() {
    let mut script: Vec<Vec<String>> = Vec::new();
    let cmd = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let xadds = |script: &mut Vec<Vec<String>>, key: &str, n: usize, value: &str| {
        for i in 1..=n {
            script.push(cmd(&["XADD", key, &format!("{i}-1"), "f", value]));
        }
    };
    script.push(cmd(&["CONFIG", "SET", "stream-node-max-entries", "10"]));
    xadds(&mut script, "a", 100, "v");
    for _ in 0..2 {
        script.push(cmd(&[
            "XADD", "a", "*", "f", "v", "MAXLEN", "~", "55", "LIMIT", "30",
        ]));
        script.push(cmd(&["XLEN", "a"]));
    }
    // The default LIMIT: 100 nodes of 10.
    xadds(&mut script, "b", 1500, "v");
    script.push(cmd(&["XTRIM", "b", "MAXLEN", "~", "0"]));
    script.push(cmd(&["CONFIG", "SET", "stream-node-max-entries", "2"]));
    xadds(&mut script, "c", 3, "v");
    script.push(cmd(&["XTRIM", "c", "MAXLEN", "~", "0", "LIMIT", "1"]));
    script.push(cmd(&["XTRIM", "c", "MAXLEN", "~", "0", "LIMIT", "2"]));
    script.push(cmd(&["CONFIG", "SET", "stream-node-max-entries", "0"]));
    script.push(cmd(&["CONFIG", "SET", "stream-node-max-bytes", "1kb"]));
    // One by one: a pattern's matches come in redis-server's hash order.
    script.push(cmd(&["CONFIG", "GET", "stream-node-max-entries"]));
    script.push(cmd(&["CONFIG", "GET", "stream-node-max-bytes"]));
    let (node, _redis) = same_as_redis_owned(&script);
    // No entry limit: 100-byte entries fill nodes of 1 KB, some 9 or 10
    // of them (Redis counts its listpack's bytes, Shoal its own, a few
    // bytes apart), and whole nodes go.
    let mut r = node.raw();
    for i in 1..=50 {
        r.call(&["XADD", "d", &format!("{i}-1"), "f", &"x".repeat(100)]);
    }
    let removed = int(&mut r, &["XTRIM", "d", "MAXLEN", "~", "20"]);
    assert!((24..=30).contains(&removed), "{removed}");
}

fn entry(id: &str, fields: &[&str]) -> Frame {
    Frame::Array(vec![
        Frame::bulk(id),
        Frame::Array(fields.iter().map(|f| Frame::bulk(f)).collect()),
    ])
}

fn read_reply(key: &str, entries: Vec<Frame>) -> Frame {
    Frame::Array(vec![Frame::Array(vec![
        Frame::bulk(key),
        Frame::Array(entries),
    ])])
}

#[test]
fn blocked_readers_wake_on_new_entries() {
    let node = TestNode::start();
    let mut w = node.raw();
    ok(
        &mut w,
        &["XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"],
    );
    assert_eq!(
        bulk(&mut w, &["XADD", "events", "1-1", "old", "x"]).as_deref(),
        Some("1-1")
    );
    // `$` means what was last when the reader asked, not when it is woken.
    let reader = blocked(
        &node,
        &mut w,
        &["XREAD", "BLOCK", "0", "STREAMS", "events", "$"],
        1,
    );
    let worker = blocked(
        &node,
        &mut w,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w1",
            "BLOCK",
            "0",
            "STREAMS",
            "jobs",
            ">",
        ],
        2,
    );
    // Adds an entry; the blocked reader `h` gets just it.
    let serves =
        |w: &mut Raw, h: std::thread::JoinHandle<Frame>, key: &str, id: &str, fields: &[&str]| {
            let mut add = vec!["XADD", key, id];
            add.extend_from_slice(fields);
            assert_eq!(bulk(w, &add).as_deref(), Some(id));
            assert_eq!(h.join().unwrap(), read_reply(key, vec![entry(id, fields)]));
        };
    serves(&mut w, reader, "events", "2-1", &["new", "y"]);
    serves(&mut w, worker, "jobs", "5-0", &["task", "t1"]);
    // Delivered to the worker: pending until acknowledged.
    match w.call(&["XPENDING", "jobs", "workers"]) {
        Frame::Array(a) => assert_eq!(a[0], Frame::Int(1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(int(&mut w, &["XACK", "jobs", "workers", "5-0"]), 1);

    // A reader the new entry does not serve hands its wake-up to the next.
    let far = blocked(
        &node,
        &mut w,
        &["XREAD", "BLOCK", "0", "STREAMS", "events", "9000-0"],
        1,
    );
    let near = blocked(
        &node,
        &mut w,
        &["XREAD", "BLOCK", "0", "STREAMS", "events", "$"],
        2,
    );
    serves(&mut w, near, "events", "3-1", &["n", "1"]);
    serves(&mut w, far, "events", "9000-1", &["n", "2"]);

    // A timeout answers nil; a destroyed group fails its blocked reader.
    assert_eq!(
        w.call(&["XREAD", "BLOCK", "50", "STREAMS", "events", "$"]),
        Frame::Null
    );
    let orphan = blocked(
        &node,
        &mut w,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w2",
            "BLOCK",
            "0",
            "STREAMS",
            "jobs",
            ">",
        ],
        1,
    );
    assert_eq!(int(&mut w, &["XGROUP", "DESTROY", "jobs", "workers"]), 1);
    match orphan.join().unwrap() {
        Frame::Error(e) => assert!(e.starts_with("NOGROUP"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Inside a transaction nothing blocks.
    ok(&mut w, &["MULTI"]);
    w.call(&["XREAD", "BLOCK", "0", "STREAMS", "events", "$"]);
    assert_eq!(w.call(&["EXEC"]), Frame::Array(vec![Frame::Null]));
}

/// XINFO STREAM FULL without the consumers' seen-times, which are each
/// node's own clock.
fn full_info(r: &mut Raw, key: &str) -> Frame {
    fn scrub(f: Frame) -> Frame {
        match f {
            Frame::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut skip = false;
                for i in items {
                    if skip {
                        out.push(Frame::Int(0));
                        skip = false;
                        continue;
                    }
                    skip = i == Frame::bulk("seen-time");
                    out.push(scrub(i));
                }
                Frame::Array(out)
            }
            other => other,
        }
    }
    scrub(r.call(&["XINFO", "STREAM", key, "FULL"]))
}

/// Two streams with groups, consumers, pending entries and deletions.
fn fill(r: &mut Raw) {
    for i in 1..=30 {
        let id = format!("{i}-1");
        bulk(
            r,
            &["XADD", "orders", &id, "n", &i.to_string(), "item", "book"],
        );
    }
    int(r, &["XDEL", "orders", "4-1", "5-1"]);
    ok(r, &["XGROUP", "CREATE", "orders", "billing", "0"]);
    ok(
        r,
        &[
            "XGROUP",
            "CREATE",
            "orders",
            "shipping",
            "10-1",
            "ENTRIESREAD",
            "9",
        ],
    );
    r.call(&[
        "XREADGROUP",
        "GROUP",
        "billing",
        "ann",
        "COUNT",
        "6",
        "STREAMS",
        "orders",
        ">",
    ]);
    r.call(&[
        "XREADGROUP",
        "GROUP",
        "billing",
        "bo",
        "COUNT",
        "3",
        "STREAMS",
        "orders",
        ">",
    ]);
    r.call(&[
        "XREADGROUP",
        "GROUP",
        "shipping",
        "cy",
        "NOACK",
        "COUNT",
        "2",
        "STREAMS",
        "orders",
        ">",
    ]);
    int(r, &["XACK", "orders", "billing", "2-1"]);
    r.call(&[
        "XCLAIM",
        "orders",
        "billing",
        "bo",
        "0",
        "3-1",
        "RETRYCOUNT",
        "5",
    ]);
    int(
        r,
        &["XGROUP", "CREATECONSUMER", "orders", "billing", "idle"],
    );
    ok(r, &["XGROUP", "CREATE", "empty", "g", "$", "MKSTREAM"]);
    ok(
        r,
        &[
            "XSETID",
            "empty",
            "7-7",
            "ENTRIESADDED",
            "3",
            "MAXDELETEDID",
            "6-0",
        ],
    );
}

#[test]
fn streams_and_groups_survive_restarts_rewrites_and_replication() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    fill(&mut r);
    let want = (
        full_info(&mut r, "orders"),
        full_info(&mut r, "empty"),
        digest(&mut r),
    );
    let state = |r: &mut Raw| (full_info(r, "orders"), full_info(r, "empty"), digest(r));

    // A replica's full sync carries the groups too, and later reads too.
    let port = node.port.to_string();
    let replica = TestNode::start_with(&["--replicaof", "127.0.0.1", &port]);
    let mut rr = replica.raw();
    eventually("replica synced", || {
        run_ok(&mut rr, "orders") && state(&mut rr) == want
    });
    r.call(&[
        "XREADGROUP",
        "GROUP",
        "billing",
        "ann",
        "COUNT",
        "1",
        "STREAMS",
        "orders",
        ">",
    ]);
    r.call(&[
        "XAUTOCLAIM",
        "orders",
        "billing",
        "dee",
        "0",
        "0",
        "COUNT",
        "2",
    ]);
    let want = state(&mut r);
    eventually("replica applied the reads", || state(&mut rr) == want);

    // From the log alone, then from a rewritten base.
    crate::wait_synced(&mut r);
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(state(&mut r), want);
    r.call(&["BGREWRITEAOF"]);
    eventually("rewrite done", || {
        let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
        info_field(&info, "aof_rewrite_in_progress") == "0"
            && info_field(&info, "aof_rewrites") != "0"
    });
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(state(&mut r), want);
}

/// XINFO STREAM FULL as a flat list of words, the radix tree's counts
/// blanked.
fn tokens(con: &mut redis::Connection, key: &str) -> Vec<String> {
    fn walk(v: &redis::Value, out: &mut Vec<String>) {
        match v {
            redis::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            other => out.push(format!("{other:?}")),
        }
    }
    let mut out = Vec::new();
    walk(
        &run(con, &["XINFO", "STREAM", key, "FULL", "COUNT", "0"]).unwrap(),
        &mut out,
    );
    for i in 1..out.len() {
        if out[i - 1].starts_with("radix-tree-") {
            out[i] = "-".into();
        }
    }
    out
}

fn run_ok(r: &mut Raw, key: &str) -> bool {
    matches!(r.call(&["TYPE", key]), Frame::Simple(t) if t == "stream")
}

#[test]
fn dump_and_restore_carry_streams_between_shoal_and_redis() {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let mut ours = node.conn();
    let mut theirs = reference.client().get_connection().unwrap();
    let mut r = node.raw();
    fill(&mut r);
    // Larger than one listpack node, with field names that differ.
    for i in 0..250 {
        let id = format!("100-{i}");
        let field = if i % 7 == 0 { "other" } else { "n" };
        bulk(&mut r, &["XADD", "orders", &id, field, &"x".repeat(i % 90)]);
    }
    for key in ["orders", "empty"] {
        let payload: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut ours).unwrap();
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(&payload)
            .query(&mut theirs)
            .unwrap();
        let back: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut theirs).unwrap();
        let copy = format!("{key}-copy");
        let _: () = redis::cmd("RESTORE")
            .arg(&copy)
            .arg(0)
            .arg(&back)
            .query(&mut ours)
            .unwrap();
        // The same entries, IDs, counters, groups and pending lists (the
        // radix tree's own shape aside).
        let (a, b) = (tokens(&mut ours, key), tokens(&mut theirs, key));
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            panic!(
                "{key} differs at {i}: {:?} vs {:?}",
                &a[i.saturating_sub(8)..(i + 4).min(a.len())],
                &b[i.saturating_sub(8)..(i + 4).min(b.len())]
            );
        }
        assert_eq!(
            run(&mut ours, &["DEBUG", "DIGEST-VALUE", key]),
            run(&mut theirs, &["DEBUG", "DIGEST-VALUE", key])
        );
        assert_eq!(
            run(&mut ours, &["DEBUG", "DIGEST-VALUE", &copy]),
            run(&mut ours, &["DEBUG", "DIGEST-VALUE", key])
        );
        assert_eq!(
            run(&mut ours, &["XINFO", "GROUPS", &copy]),
            run(&mut ours, &["XINFO", "GROUPS", key])
        );
    }
    assert_eq!(
        err(&mut r, &["RESTORE", "bad", "0", "\u{13}\u{1}garbage"]),
        "ERR DUMP payload version or checksum are wrong"
    );
}

/// A seeded random walk over the stream commands, sent to Shoal and to
/// redis-server side by side: every reply equal, errors word for word, but
/// for what is each server's own clock (idle and delivery times, seen
/// times) and the radix tree's shape. IDs near 0 and 2^64, malformed ones,
/// every option mix and a string key for WRONGTYPE.
#[test]
fn random_stream_commands_reply_as_redis_does() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(0x57ea3);
    let mut pick = |from: &[&str]| from[rng.gen_range(0..from.len())].to_string();
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let mut ours = node.conn();
    let mut theirs = reference.client().get_connection().unwrap();
    const IDS: &[&str] = &[
        "0",
        "0-1",
        "1",
        "1-1",
        "1-2",
        "2",
        "3-0",
        "5",
        "7-1",
        "9",
        "12",
        "x",
        "",
        "1-",
        "-1",
        " 2",
        "18446744073709551615-18446744073709551615",
        "1-18446744073709551615",
    ];
    const BOUNDS: &[&str] = &["-", "+", "(1", "(1-1", "(-", "(0-0", "0", "2", "5", "9-0"];
    const NUMS: &[&str] = &["0", "1", "2", "3", "5", "-1", "x", "100"];
    let mut data = 0;
    for i in 0..5000 {
        let key = pick(&["s0", "s1", "s2", "k0"]);
        let (group, consumer) = (pick(&["g1", "g2"]), pick(&["alice", "bob"]));
        let c: Vec<String> = match i % 23 {
            0..=3 => {
                let mut c = vec!["XADD".to_string(), key.clone()];
                if i % 5 == 0 {
                    c.push("NOMKSTREAM".into());
                }
                if i % 3 == 0 {
                    c.extend([
                        pick(&["MAXLEN", "MINID"]),
                        pick(&["=", "~", "="]),
                        pick(&["0", "2", "5", "3-0"]),
                    ]);
                }
                c.push(pick(&[IDS, &["5-*", "1-*", "20-*"]].concat()));
                c.extend([pick(&["f1", "f2"]), pick(&["v", "", "1"])]);
                c
            }
            4 | 5 => vec![
                pick(&["XRANGE", "XREVRANGE"]),
                key.clone(),
                pick(BOUNDS),
                pick(BOUNDS),
                "COUNT".into(),
                pick(NUMS),
            ],
            6 => vec!["XDEL".into(), key.clone(), pick(IDS), pick(IDS)],
            7 => vec![
                "XTRIM".into(),
                key.clone(),
                pick(&["MAXLEN", "MINID"]),
                pick(&["=", "~"]),
                pick(&["1", "3", "2-0"]),
            ],
            8 => vec![
                "XSETID".into(),
                key.clone(),
                pick(IDS),
                "ENTRIESADDED".into(),
                pick(NUMS),
            ],
            9 | 10 => vec![
                "XGROUP".into(),
                "CREATE".into(),
                key.clone(),
                group,
                pick(&["$", "0", "1-1"]),
                pick(&["MKSTREAM", "ENTRIESREAD"]),
                pick(NUMS),
            ],
            11 => vec![
                "XGROUP".into(),
                "SETID".into(),
                key.clone(),
                group,
                pick(&["$", "0", "-"]),
            ],
            12 => vec![
                "XGROUP".into(),
                pick(&["CREATECONSUMER", "DELCONSUMER"]),
                key.clone(),
                group,
                consumer,
            ],
            13 | 14 => vec![
                "XREADGROUP".into(),
                "GROUP".into(),
                group,
                consumer,
                "COUNT".into(),
                pick(NUMS),
                "STREAMS".into(),
                key.clone(),
                pick(&[">", ">", "0", "$"]),
            ],
            15 => vec![
                "XREAD".into(),
                "COUNT".into(),
                pick(NUMS),
                "STREAMS".into(),
                key.clone(),
                pick(&["0", "$", "2-0", ">"]),
            ],
            16 => vec!["XACK".into(), key.clone(), group, pick(IDS), pick(IDS)],
            17 => vec![
                "XPENDING".into(),
                key.clone(),
                group,
                pick(BOUNDS),
                pick(BOUNDS),
                pick(NUMS),
            ],
            18 => vec!["XPENDING".into(), key.clone(), group],
            19 => vec![
                "XCLAIM".into(),
                key.clone(),
                group,
                consumer,
                "0".into(),
                pick(IDS),
                pick(&["JUSTID", "FORCE", "RETRYCOUNT", "LASTID"]),
                pick(&["3", "2-0", "x"]),
            ],
            20 => vec![
                "XAUTOCLAIM".into(),
                key.clone(),
                group,
                consumer,
                "0".into(),
                pick(BOUNDS),
                "COUNT".into(),
                pick(NUMS),
            ],
            21 => vec!["XINFO".into(), pick(&["STREAM", "GROUPS"]), key.clone()],
            _ => vec![pick(&["DEL", "XLEN", "TYPE"]), key.clone()],
        };
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let (a, b) = (run(&mut ours, &args), run(&mut theirs, &args));
        let xpending_rows = args[0] == "XPENDING" && args.len() > 3;
        let (a, b) = (scrub(a, xpending_rows), scrub(b, xpending_rows));
        assert_eq!(a, b, "command {i}: {args:?}");
        if matches!(a, Ok(redis::Value::Array(ref v)) if !v.is_empty()) {
            data += 1;
        }
    }
    assert!(data > 500, "{data} non-empty arrays");
}

/// Blanks what is each server's own: clock readings and the radix tree's
/// shape (and XPENDING's idle column).
fn scrub(r: Result<redis::Value, String>, xpending_rows: bool) -> Result<redis::Value, String> {
    use redis::Value;
    fn walk(v: Value) -> Value {
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut blank = false;
                for item in items {
                    if blank {
                        out.push(Value::Int(0));
                        blank = false;
                        continue;
                    }
                    blank = matches!(&item, Value::BulkString(b) if [&b"idle"[..], b"seen-time", b"radix-tree-keys", b"radix-tree-nodes", b"active-time"].contains(&&b[..]));
                    out.push(walk(item));
                }
                Value::Array(out)
            }
            Value::Int(n) if n > 1_000_000_000_000 => Value::Int(0),
            other => other,
        }
    }
    r.map(|v| match (walk(v), xpending_rows) {
        (Value::Array(rows), true) => Value::Array(
            rows.into_iter()
                .map(|row| match row {
                    Value::Array(mut cols) if cols.len() == 4 => {
                        cols[2] = Value::Int(0);
                        Value::Array(cols)
                    }
                    other => other,
                })
                .collect(),
        ),
        (v, _) => v,
    })
}
