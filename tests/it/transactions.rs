//! MULTI/EXEC/DISCARD/WATCH: Redis's replies and rules, WATCH races from a
//! second client, atomicity under concurrent readers, and transactions in
//! the log (whole, or not at all after a crash while recording one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::{eventually, same_as_redis, Frame, Raw, TestNode};
use crate::{bulk, err, int, ok};

#[test]
fn replies_and_errors_match_redis() {
    same_as_redis(&[
        &["EXEC"],
        &["EXEC", "extra"],
        &["DISCARD"],
        &["MULTI"],
        &["MULTI"],
        &["SET", "a", "1"],
        &["INCR", "a"],
        &["LPUSH", "a", "x"],
        &["GET", "a"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "b", "1"],
        &["NOSUCHCOMMAND"],
        &["GET"],
        &["EXEC"],
        &["EXISTS", "b"],
        &["MULTI"],
        &["WATCH", "a"],
        &["SET", "c", "3"],
        &["DISCARD"],
        &["EXISTS", "c"],
        &["WATCH", "a"],
        &["UNWATCH"],
        &["MULTI"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "d", "4"],
        &["EXEC", "extra"],
        &["EXISTS", "d"],
        &["MULTI"],
        &["SELECT", "2"],
        &["SET", "in2", "x"],
        &["SELECT", "0"],
        &["EXEC"],
        &["SELECT", "2"],
        &["GET", "in2"],
        &["SELECT", "0"],
    ]);
}

fn exec(r: &mut Raw) -> Frame {
    r.call(&["EXEC"])
}

#[test]
fn watch_aborts_when_another_client_writes() {
    let node = TestNode::start();
    let (mut a, mut b) = (node.raw(), node.raw());
    ok(&mut a, &["SET", "k", "1"]);
    ok(&mut a, &["WATCH", "k"]);
    ok(&mut b, &["SET", "k", "2"]);
    ok(&mut a, &["MULTI"]);
    assert_eq!(
        a.call(&["SET", "k", "mine"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(exec(&mut a), Frame::Null, "the transaction is aborted");
    assert_eq!(bulk(&mut a, &["GET", "k"]).as_deref(), Some("2"));

    // The watch is gone after EXEC: the next transaction runs.
    ok(&mut a, &["MULTI"]);
    a.call(&["SET", "k", "mine"]);
    assert_eq!(exec(&mut a), Frame::Array(vec![Frame::Simple("OK".into())]));

    // An untouched watch lets the transaction run; a write to another key
    // in the same slot does not count.
    ok(&mut a, &["WATCH", "{t}k"]);
    ok(&mut b, &["SET", "{t}other", "x"]);
    ok(&mut a, &["MULTI"]);
    a.call(&["INCR", "{t}k"]);
    assert_eq!(exec(&mut a), Frame::Array(vec![Frame::Int(1)]));

    // UNWATCH forgets.
    ok(&mut a, &["WATCH", "k"]);
    ok(&mut a, &["UNWATCH"]);
    ok(&mut b, &["SET", "k", "3"]);
    ok(&mut a, &["MULTI"]);
    a.call(&["GET", "k"]);
    assert_eq!(exec(&mut a), Frame::Array(vec![Frame::bulk("3")]));
}

#[test]
fn watch_sees_flushes_swaps_deletes_and_expiry() {
    let node = TestNode::start();
    let (mut a, mut b) = (node.raw(), node.raw());
    let aborted_by = |a: &mut Raw, b: &mut Raw, setup: &[&str], change: &[&str]| {
        a.call(&["DEL", "w"]);
        a.call(setup);
        ok(a, &["WATCH", "w"]);
        b.call(change);
        ok(a, &["MULTI"]);
        a.call(&["PING"]);
        exec(a) == Frame::Null
    };
    assert!(aborted_by(
        &mut a,
        &mut b,
        &["SET", "w", "1"],
        &["FLUSHALL"]
    ));
    assert!(aborted_by(&mut a, &mut b, &["SET", "w", "1"], &["FLUSHDB"]));
    assert!(aborted_by(
        &mut a,
        &mut b,
        &["SET", "w", "1"],
        &["SWAPDB", "0", "1"]
    ));
    assert!(aborted_by(
        &mut a,
        &mut b,
        &["SET", "w", "1"],
        &["DEL", "w"]
    ));
    assert!(aborted_by(
        &mut a,
        &mut b,
        &["SET", "w", "1"],
        &["EXPIRE", "w", "100"]
    ));
    assert!(aborted_by(
        &mut a,
        &mut b,
        &["HSET", "w", "f", "v"],
        &["HSET", "w", "g", "v"]
    ));
    assert!(!aborted_by(
        &mut a,
        &mut b,
        &["SET", "w", "1"],
        &["GET", "w"]
    ));
    assert!(!aborted_by(
        &mut a,
        &mut b,
        &["SET", "w", "1"],
        &["DEL", "nothing"]
    ));

    // A key live at WATCH that has expired by EXEC aborts it.
    ok(&mut a, &["SET", "w", "1", "PX", "50"]);
    ok(&mut a, &["WATCH", "w"]);
    ok(&mut a, &["MULTI"]);
    a.call(&["PING"]);
    // The key expires while the transaction is queued; only the clock moves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if int(&mut b, &["PTTL", "w"]) == -2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(exec(&mut a), Frame::Null);
}

#[test]
fn queue_time_errors_abort_exec_and_no_multi_commands_are_refused() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["MULTI"]);
    r.call(&["SET", "x", "1"]);
    assert_eq!(
        err(&mut r, &["WATCH", "x"]),
        "ERR WATCH inside MULTI is not allowed"
    );
    assert_eq!(err(&mut r, &["MULTI"]), "ERR MULTI calls can not be nested");
    // Neither of those fails the transaction.
    assert_eq!(exec(&mut r), Frame::Array(vec![Frame::Simple("OK".into())]));
    ok(&mut r, &["MULTI"]);
    r.call(&["SET", "y", "1"]);
    assert_eq!(
        err(&mut r, &["SET", "y"]),
        "ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        err(&mut r, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(int(&mut r, &["EXISTS", "y"]), 0);
}

/// Two keys in different slots change together inside transactions while
/// other clients read them: no reader ever sees one changed without the
/// other.
#[test]
fn exec_is_atomic_across_slots() {
    let node = TestNode::start();
    let mut w = node.raw();
    ok(&mut w, &["MSET", "a", "0", "b", "0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut r = node.raw();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    // MGET sees both keys at one instant; EXEC's two
                    // INCRs are separate commands, so only the
                    // transaction's atomicity keeps the values equal.
                    let Frame::Array(v) = r.call(&["MGET", "a", "b"]) else {
                        panic!()
                    };
                    assert_eq!(v[0], v[1], "a transaction was seen half done");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for _ in 0..500 {
        ok(&mut w, &["MULTI"]);
        w.call(&["INCR", "a"]);
        w.call(&["INCR", "b"]);
        let Frame::Array(replies) = exec(&mut w) else {
            panic!()
        };
        assert_eq!(replies.len(), 2);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(bulk(&mut w, &["GET", "a"]).as_deref(), Some("500"));
}

/// The records of the log, as (offset, length) pairs.
fn records(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 8 <= data.len() {
        let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        out.push((off, 8 + len));
        off += 8 + len;
    }
    out
}

#[test]
fn a_transaction_is_in_the_log_whole_or_not_at_all() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "before", "1"]);
    ok(&mut r, &["MULTI"]);
    r.call(&["SET", "t1", "x"]);
    r.call(&["SET", "t2", "y"]);
    r.call(&["GET", "t1"]);
    assert_eq!(
        exec(&mut r),
        Frame::Array(vec![
            Frame::Simple("OK".into()),
            Frame::Simple("OK".into()),
            Frame::bulk("x"),
        ])
    );
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    let log = node
        .data_dir()
        .join("appendonlydir")
        .join("appendonly.aof.1.incr.aof");
    let data = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("MULTI") && text.contains("EXEC"), "{text}");

    // Restarted as is: the transaction is there.
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(bulk(&mut r, &["GET", "t2"]).as_deref(), Some("y"));
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());

    // Without its last record (EXEC), as if the node died while writing
    // the transaction: none of it is applied, what came before is.
    let recs = records(&data);
    let (last_off, _) = *recs.last().unwrap();
    assert!(String::from_utf8_lossy(&data[last_off..]).contains("EXEC"));
    std::fs::write(&log, &data[..last_off]).unwrap();
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    eventually("loaded", || int(&mut r, &["EXISTS", "before"]) == 1);
    assert_eq!(int(&mut r, &["EXISTS", "t1", "t2"]), 0);
}

/// FLUSHDB, FLUSHALL and SWAPDB break a WATCH only on a key that was there
/// (in either database, for SWAPDB), as in Redis.
#[test]
fn flushes_break_watches_on_existing_keys_only() {
    let step = |cmds: &[&'static [&'static str]]| -> Vec<&'static [&'static str]> {
        let mut v: Vec<&'static [&'static str]> = cmds.to_vec();
        v.extend_from_slice(&[&["MULTI"], &["PING"], &["EXEC"]]);
        v
    };
    let mut script = Vec::new();
    script.extend(step(&[&["WATCH", "missing"], &["FLUSHDB"]]));
    script.extend(step(&[&["WATCH", "missing"], &["FLUSHALL"]]));
    script.extend(step(&[
        &["SET", "here", "1"],
        &["WATCH", "here"],
        &["FLUSHDB"],
    ]));
    script.extend(step(&[&["WATCH", "missing"], &["SWAPDB", "0", "1"]]));
    script.extend(step(&[
        &["SELECT", "1"],
        &["SET", "there", "1"],
        &["SELECT", "0"],
        &["WATCH", "there"],
        &["SWAPDB", "0", "1"],
    ]));
    same_as_redis(&script);
}

/// Only the keys a command changes break a WATCH, as in Redis: not the
/// sources of the STORE forms, COPY (whichever database it copies to),
/// BITOP and PFMERGE, nor a SETBIT or BITFIELD that changes nothing.
#[test]
fn reading_a_watched_key_leaves_the_watch() {
    let step = |cmds: &[&'static [&'static str]]| -> Vec<&'static [&'static str]> {
        let mut v: Vec<&'static [&'static str]> = cmds.to_vec();
        v.extend_from_slice(&[&["MULTI"], &["PING"], &["EXEC"]]);
        v
    };
    let mut script: Vec<&'static [&'static str]> = vec![
        &["SADD", "s", "1", "2"],
        &["SET", "str", "x"],
        &["PFADD", "p", "a"],
        &["ZADD", "z", "1", "m"],
        &["SETBIT", "bits", "3", "1"],
    ];
    for (watched, cmd) in [
        ("s", &["SINTERSTORE", "d", "s"][..]),
        ("s", &["SDIFFSTORE", "d", "s", "s"]),
        ("z", &["ZRANGESTORE", "d", "z", "0", "-1"]),
        ("z", &["ZUNIONSTORE", "d", "1", "z"]),
        ("str", &["COPY", "str", "d2"]),
        ("str", &["COPY", "str", "d3", "DB", "1"]),
        ("str", &["BITOP", "OR", "d4", "str"]),
        ("p", &["PFMERGE", "d5", "p"]),
        ("bits", &["SETBIT", "bits", "3", "1"]),
        (
            "bits",
            &[
                "BITFIELD", "bits", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "5",
            ],
        ),
        // The destinations do change.
        ("d", &["SINTERSTORE", "d", "s"]),
        ("d4", &["BITOP", "AND", "d4", "missing"]),
        ("d5", &["PFMERGE", "d5", "p"]),
    ] {
        let watch: &'static [&'static str] = Box::leak(Box::new(["WATCH", watched]));
        script.extend(step(&[watch, cmd]));
    }
    // COPY to another database changes the key there.
    script.extend(step(&[
        &["SELECT", "1"],
        &["WATCH", "d6"],
        &["SELECT", "0"],
        &["COPY", "str", "d6", "DB", "1"],
        &["SELECT", "1"],
    ]));
    same_as_redis(&script);
}

/// A transaction that queued writes on a primary and reaches EXEC once
/// the node is a replica is discarded, as Redis discards it (EXECABORT
/// with the reason), instead of writing into the replica's copy; one that
/// only reads still runs. Compared with redis-server made a replica the
/// same way.
#[test]
fn exec_of_queued_writes_on_a_node_turned_replica_is_refused_as_redis() {
    fn script<S: std::io::Read + std::io::Write>(
        c: &mut Raw<S>,
        admin: &mut Raw<S>,
        port: &str,
    ) -> Vec<Frame> {
        let mut got = vec![
            c.call(&["SET", "a", "0"]),
            c.call(&["MULTI"]),
            c.call(&["SET", "a", "1"]),
            c.call(&["GET", "a"]),
        ];
        got.push(admin.call(&["REPLICAOF", "127.0.0.1", port]));
        got.push(c.call(&["EXEC"]));
        got.push(c.call(&["GET", "a"]));
        got.push(c.call(&["EXEC"]));
        got.push(c.call(&["MULTI"]));
        got.push(c.call(&["GET", "a"]));
        got.push(c.call(&["EXEC"]));
        got
    }
    // Nothing listens there: both stay replicas with their link down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let reference = crate::support::ReferenceRedis::start();
    let theirs = script(&mut reference.raw(), &mut reference.raw(), &port);
    let node = TestNode::start();
    let ours = script(&mut node.raw(), &mut node.raw(), &port);
    assert_eq!(ours, theirs);
    assert_eq!(
        ours[5],
        Frame::Error(
            "EXECABORT Transaction discarded because of: READONLY You can't write against a read only replica."
                .into()
        )
    );
}

/// An LTRIM that keeps every element still counts as a change to its
/// list for WATCH, as in Redis (which signals it, without recording
/// anything); one on a missing key does not.
#[test]
fn an_ltrim_that_keeps_everything_still_touches_watch_as_redis() {
    fn script<S: std::io::Read + std::io::Write>(c: &mut Raw<S>, other: &mut Raw<S>) -> Vec<Frame> {
        let mut got = vec![c.call(&["RPUSH", "l", "a", "b"])];
        for key in ["l", "missing"] {
            got.push(c.call(&["WATCH", key]));
            got.push(other.call(&["LTRIM", key, "0", "-1"]));
            got.push(c.call(&["MULTI"]));
            got.push(c.call(&["SET", "x", "1"]));
            got.push(c.call(&["EXEC"]));
        }
        got
    }
    let reference = crate::support::ReferenceRedis::start();
    let theirs = script(&mut reference.raw(), &mut reference.raw());
    let node = TestNode::start();
    let ours = script(&mut node.raw(), &mut node.raw());
    assert_eq!(ours, theirs);
    assert_eq!(ours[5], Frame::Null, "the no-op LTRIM broke the WATCH");
}

/// A key already expired (but not yet deleted) when watched: its deletion
/// by a read, a flush or a SWAPDB is no change, nor is SWAPDB putting an
/// expired key where there was none, or one expired key in place of
/// another, as in Redis 7; a live key in its place is.
#[test]
fn deleting_a_watched_key_that_had_expired_is_no_change() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    // Sets `key` (in the current database) to expire in 1 ms and waits,
    // on the server's clock, until it has.
    let stale = |r: &mut Raw, key: &str| {
        ok(r, &["SET", key, "v", "PX", "1"]);
        let now = |r: &mut Raw| -> i64 {
            let Frame::Array(t) = r.call(&["TIME"]) else {
                panic!("TIME")
            };
            let field = |f: &Frame| match f {
                Frame::Bulk(b) => String::from_utf8_lossy(b).parse::<i64>().unwrap(),
                other => panic!("{other:?}"),
            };
            field(&t[0]) * 1000 + field(&t[1]) / 1000
        };
        let set_at = now(r);
        eventually("the key expired", || now(r) >= set_at + 2);
    };
    let watched_then = |r: &mut Raw, change: &[&[&str]]| -> Frame {
        ok(r, &["WATCH", "x"]);
        for c in change {
            r.call(c);
        }
        ok(r, &["MULTI"]);
        r.call(&["PING"]);
        exec(r)
    };
    let pong = Frame::Array(vec![Frame::Simple("PONG".into())]);
    stale(&mut r, "x");
    assert_eq!(watched_then(&mut r, &[&["EXISTS", "x"]]), pong);
    stale(&mut r, "x");
    assert_eq!(watched_then(&mut r, &[&["FLUSHDB"]]), pong);
    // An expired key swapped for no key; no key for an expired one; an
    // expired key for another.
    ok(&mut r, &["SELECT", "1"]);
    stale(&mut r, "x");
    assert_eq!(watched_then(&mut r, &[&["SWAPDB", "0", "1"]]), pong);
    ok(&mut r, &["FLUSHALL"]);
    stale(&mut r, "x");
    ok(&mut r, &["SELECT", "0"]);
    assert_eq!(watched_then(&mut r, &[&["SWAPDB", "0", "1"]]), pong);
    ok(&mut r, &["FLUSHALL"]);
    stale(&mut r, "x");
    ok(&mut r, &["SELECT", "1"]);
    stale(&mut r, "x");
    assert_eq!(watched_then(&mut r, &[&["SWAPDB", "0", "1"]]), pong);
    // A live key in its place, or a write to it, is a change.
    ok(&mut r, &["FLUSHALL"]);
    stale(&mut r, "x");
    ok(&mut r, &["SELECT", "0"]);
    ok(&mut r, &["SET", "x", "live"]);
    ok(&mut r, &["SELECT", "1"]);
    assert_eq!(watched_then(&mut r, &[&["SWAPDB", "0", "1"]]), Frame::Null);
    stale(&mut r, "x");
    assert_eq!(watched_then(&mut r, &[&["SET", "x", "new"]]), Frame::Null);
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
}

/// SMOVE of a member the destination already holds changes only the
/// source: a transaction watching the destination goes through, one
/// watching the source does not, as in Redis.
#[test]
fn smove_onto_a_member_already_there_touches_only_its_source() {
    let node = TestNode::start();
    let (mut r, mut other) = (node.raw(), node.raw());
    for (watched, passes) in [("dst", true), ("src", false)] {
        r.call(&["DEL", "src", "dst"]);
        int(&mut r, &["SADD", "src", "a", "b"]);
        int(&mut r, &["SADD", "dst", "a"]);
        ok(&mut r, &["WATCH", watched]);
        ok(&mut r, &["MULTI"]);
        r.call(&["SADD", "dst", "c"]);
        assert_eq!(int(&mut other, &["SMOVE", "src", "dst", "a"]), 1);
        let want = if passes {
            Frame::Array(vec![Frame::Int(1)])
        } else {
            Frame::Null
        };
        assert_eq!(exec(&mut r), want, "watching {watched}");
        assert_eq!(strings_sorted(&mut r, "src"), ["b"]);
    }
}

fn strings_sorted(r: &mut Raw, key: &str) -> Vec<String> {
    let mut v = crate::strings(r, &["SMEMBERS", key]);
    v.sort();
    v
}
