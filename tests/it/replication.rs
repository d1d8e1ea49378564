//! Replication between real processes on loopback: full and partial
//! syncs, chained replicas, promotion, WAIT and WAITAOF, the replica rules, and the
//! output buffer limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::{eventually, Frame, Raw, TestNode};
use crate::tracking::{pushes_then, tracking_conn};
use crate::{bulk, digest, err, info_field, int, ok, strings, wait_synced};

fn info(r: &mut Raw, section: &str) -> String {
    bulk(r, &["INFO", section]).unwrap()
}

/// The keys whose values differ between two nodes (databases 0 and 3),
/// with both nodes' replies, to say what went wrong.
fn differences(a: &mut Raw, b: &mut Raw) -> Vec<String> {
    let mut out = Vec::new();
    for db in ["0", "3"] {
        ok(a, &["SELECT", db]);
        ok(b, &["SELECT", db]);
        let mut keys = crate::strings(a, &["KEYS", "*"]);
        keys.extend(crate::strings(b, &["KEYS", "*"]));
        keys.sort();
        keys.dedup();
        for k in keys {
            let (x, y) = (
                a.call(&["DEBUG", "DIGEST-VALUE", &k]),
                b.call(&["DEBUG", "DIGEST-VALUE", &k]),
            );
            if x != y {
                let dump = |r: &mut Raw| {
                    format!("{:?} {:?}", r.call(&["TYPE", &k]), r.call(&["PTTL", &k]))
                };
                out.push(format!("db{db} {k}: {} vs {}", dump(a), dump(b)));
            }
        }
    }
    out
}

pub fn replica_of(primary: &TestNode, extra: &[&str]) -> TestNode {
    let port = primary.port.to_string();
    let mut args = vec!["--replicaof", "127.0.0.1", &port];
    args.extend_from_slice(extra);
    TestNode::start_with(&args)
}

/// A sidecar of `primary` (with `extra` settings), once it serves reads
/// (it answers -LOADING until its first sync), and a connection to it.
fn ready_sidecar(primary: &TestNode, extra: &[&str]) -> (TestNode, Raw) {
    let mut args = vec!["--sidecar", "yes"];
    args.extend_from_slice(extra);
    let sidecar = replica_of(primary, &args);
    let mut s = sidecar.raw();
    eventually("the sidecar is ready", || {
        s.call(&["EXISTS", "nothing"]) == Frame::Int(0)
    });
    (sidecar, s)
}

fn stat(r: &mut Raw, name: &str) -> u64 {
    info_field(&info(r, "all"), name).parse().unwrap()
}

/// Waits until `replica` is linked and has applied everything `primary`
/// has written.
pub fn caught_up(primary: &TestNode, replica: &TestNode) {
    let (mut p, mut r) = (primary.raw(), replica.raw());
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    loop {
        let ri = info(&mut r, "replication");
        let pi = info(&mut p, "replication");
        if info_field(&ri, "master_link_status") == "up"
            && info_field(&ri, "master_repl_offset") == info_field(&pi, "master_repl_offset")
        {
            return;
        }
        // What both said last, to tell a stuck link from a slow one.
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the replica on port {} to catch up with port {}\nreplica:\n{ri}\nprimary:\n{pi}",
            replica.port,
            primary.port
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A write load over every data type from one client, until `stop`.
fn write_load(node: &TestNode, seed: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let port = node.port;
    std::thread::spawn(move || {
        let mut r = Raw::connect(port);
        let mut n = seed * 1_000_000;
        while !stop.load(Ordering::Relaxed) || n % 1_000_000 < 2000 {
            let k = |p: &str| format!("{p}:{}", n % 37);
            let i = n.to_string();
            match n % 17 {
                0 => r.call(&["SET", &k("s"), &i, "EX", "1000"]),
                1 => r.call(&["INCRBY", &k("n"), "3"]),
                2 => r.call(&["APPEND", &k("s"), "x"]),
                3 => r.call(&["HSET", &k("h"), &i, "v", "f", &i]),
                4 => r.call(&["LPUSH", &k("l"), &i, "y"]),
                5 => r.call(&["RPOP", &k("l")]),
                6 => r.call(&["SADD", &k("set"), &i, "a", "b"]),
                7 => r.call(&["SPOP", &k("set")]),
                8 => r.call(&["ZADD", &k("z"), &(n % 100).to_string(), &i]),
                9 => r.call(&["ZPOPMIN", &k("z")]),
                10 => r.call(&["PFADD", &k("hll"), &i]),
                11 => r.call(&["SETBIT", &k("bits"), &(n % 500).to_string(), "1"]),
                12 => {
                    r.call(&["MULTI"]);
                    r.call(&["INCRBYFLOAT", &k("f"), "0.5"]);
                    r.call(&["HINCRBY", &k("h"), "count", "1"]);
                    r.call(&["EXEC"])
                }
                // Generated IDs and approximate trims, and group reads.
                14 => r.call(&["XADD", &k("x"), "MAXLEN", "~", "50", "*", "n", &i]),
                15 => {
                    r.call(&["XGROUP", "CREATE", &k("x"), "g", "0", "MKSTREAM"]);
                    r.call(&[
                        "XREADGROUP",
                        "GROUP",
                        "g",
                        "c",
                        "COUNT",
                        "2",
                        "STREAMS",
                        &k("x"),
                        ">",
                    ])
                }
                16 => r.call(&["XAUTOCLAIM", &k("x"), "g", "other", "0", "0", "COUNT", "1"]),
                _ => {
                    r.call(&["SELECT", "3"]);
                    r.call(&["SET", &k("other"), &i, "PX", "30"]);
                    r.call(&["SELECT", "0"])
                }
            };
            n += 1;
        }
        n
    })
}

#[test]
fn replicas_and_a_chained_replica_hold_the_same_data_under_a_mixed_load() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    ok(&mut p, &["SET", "before", "the replicas"]);
    let first = replica_of(&primary, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (1..=3)
        .map(|s| write_load(&primary, s, stop.clone()))
        .collect();
    // These full syncs happen while the load runs.
    let second = replica_of(&primary, &[]);
    let chained = replica_of(&first, &["--slave-priority", "7"]);
    // Under way while the load runs: every link up (the chained replica's
    // needs its primary's first).
    for r in [&second, &chained] {
        let mut c = r.raw();
        eventually("linked", || {
            info_field(&info(&mut c, "replication"), "master_link_status") == "up"
        });
    }
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = loads
        .into_iter()
        .map(|h| h.join().unwrap() % 1_000_000)
        .sum();
    assert!(writes >= 6000, "the load ran ({writes} commands)");
    for r in [&first, &second, &chained] {
        caught_up(&primary, r);
    }
    caught_up(&first, &chained);
    // Keys written with PX 30 may still be live for one digest and gone
    // for the next: compare once they have all lapsed.
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    for r in [&first, &second, &chained] {
        while digest(&mut r.raw()) != digest(&mut p) {
            if std::time::Instant::now() > deadline {
                let diff = differences(&mut p, &mut r.raw());
                panic!("replica on port {} differs: {diff:?}", r.port);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    let pi = info(&mut p, "replication");
    assert_eq!(info_field(&pi, "role"), "master");
    assert_eq!(info_field(&pi, "connected_slaves"), "2");
    assert!(info_field(&pi, "slave0").contains("state=online"), "{pi}");
    let mut c = chained.raw();
    let ci = info(&mut c, "replication");
    assert_eq!(info_field(&ci, "role"), "slave");
    assert_eq!(info_field(&ci, "master_port"), first.port.to_string());
    // Set by its old name, reported under Redis's field name.
    assert_eq!(info_field(&ci, "slave_priority"), "7");
    assert_eq!(
        info_field(&ci, "master_replid"),
        info_field(&pi, "master_replid")
    );
    match c.call(&["ROLE"]) {
        Frame::Array(a) => {
            assert_eq!(a[0], Frame::bulk("slave"));
            assert_eq!(a[2], Frame::Int(first.port as i64));
            assert_eq!(a[3], Frame::bulk("connected"));
        }
        other => panic!("{other:?}"),
    }
    match p.call(&["ROLE"]) {
        Frame::Array(a) => {
            assert_eq!(a[0], Frame::bulk("master"));
            assert!(matches!(&a[2], Frame::Array(r) if r.len() == 2), "{a:?}");
        }
        other => panic!("{other:?}"),
    }
    // HELLO says the role too, in Redis's words.
    let hello_role = |port: u16| match Raw::connect(port).call(&["HELLO", "2"]) {
        Frame::Array(a) => a[a.len() - 3].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(hello_role(chained.port), Frame::bulk("replica"));
    assert_eq!(hello_role(primary.port), Frame::bulk("master"));
    // Replicas serve reads and refuse writes.
    assert_eq!(
        bulk(&mut c, &["GET", "before"]).as_deref(),
        Some("the replicas")
    );
    assert_eq!(
        err(&mut c, &["SET", "k", "v"]),
        "READONLY You can't write against a read only replica."
    );
    assert_eq!(
        err(&mut c, &["LPUSH", "l", "v"]),
        "READONLY You can't write against a read only replica."
    );
}

#[test]
fn a_restarted_replica_continues_with_a_partial_resync() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    for i in 0..200 {
        ok(&mut p, &["SET", &format!("k{i}"), &i.to_string()]);
    }
    let mut replica = replica_of(&primary, &[]);
    caught_up(&primary, &replica);
    assert_eq!(stat(&mut p, "sync_full"), 1);
    // What the replica holds must be in its log before the crash; a copy
    // whose log does not yet say where it stands syncs in full again.
    wait_synced(&mut replica.raw());
    replica.crash();
    for i in 0..100 {
        int(&mut p, &["INCR", &format!("k{i}")]);
    }
    ok(&mut p, &["SET", "while", "it was down"]);
    replica.restart(&[]).unwrap();
    caught_up(&primary, &replica);
    assert_eq!(stat(&mut p, "sync_full"), 1, "no second full sync");
    assert_eq!(stat(&mut p, "sync_partial_ok"), 1);
    let mut r = replica.raw();
    assert_eq!(digest(&mut r), digest(&mut p));
    assert_eq!(bulk(&mut r, &["GET", "k5"]).as_deref(), Some("6"));

    // A dropped link (the primary's stream killed on the replica) also
    // continues where it stopped.
    assert_eq!(int(&mut r, &["CLIENT", "KILL", "TYPE", "master"]), 1);
    ok(&mut p, &["SET", "after", "the kill"]);
    caught_up(&primary, &replica);
    assert_eq!(bulk(&mut r, &["GET", "after"]).as_deref(), Some("the kill"));
    assert_eq!(stat(&mut p, "sync_full"), 1);
    assert_eq!(stat(&mut p, "sync_partial_ok"), 2);
}

#[test]
fn a_replica_behind_the_backlog_gets_a_full_sync() {
    let primary = TestNode::start_with(&["--repl-backlog-size", "16kb"]);
    let mut p = primary.raw();
    let mut replica = replica_of(&primary, &[]);
    ok(&mut p, &["SET", "a", "1"]);
    caught_up(&primary, &replica);
    wait_synced(&mut replica.raw());
    replica.crash();
    let value = "x".repeat(1000);
    for i in 0..100 {
        ok(&mut p, &["SET", &format!("big{i}"), &value]);
    }
    replica.restart(&[]).unwrap();
    caught_up(&primary, &replica);
    assert_eq!(stat(&mut p, "sync_full"), 2);
    assert_eq!(stat(&mut p, "sync_partial_err"), 1);
    assert_eq!(digest(&mut replica.raw()), digest(&mut p));
}

#[test]
fn a_promoted_replica_keeps_the_others_on_a_partial_resync() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    let first = replica_of(&primary, &[]);
    let second = replica_of(&primary, &[]);
    for i in 0..50 {
        int(&mut p, &["RPUSH", "list", &i.to_string()]);
    }
    caught_up(&primary, &first);
    caught_up(&primary, &second);
    let old_id = info_field(&info(&mut p, "replication"), "master_replid");
    drop(p);
    drop(primary);

    let mut f = first.raw();
    ok(&mut f, &["REPLICAOF", "NO", "ONE"]);
    let fi = info(&mut f, "replication");
    assert_eq!(info_field(&fi, "role"), "master");
    assert_eq!(info_field(&fi, "master_replid2"), old_id);
    assert_ne!(info_field(&fi, "master_replid"), old_id);
    // The second id survives a restart of the promoted node (its log says
    // so); with an empty backlog after the restart, the other replica
    // continues from exactly where the promotion happened.
    wait_synced(&mut first.raw());
    let mut first = first;
    first.restart(&["--replicaof", "no", "one"]).unwrap();
    let mut f = first.raw();
    assert_eq!(
        info_field(&info(&mut f, "replication"), "master_replid2"),
        old_id
    );
    int(&mut f, &["RPUSH", "list", "after the promotion"]);

    let mut s = second.raw();
    ok(&mut s, &["REPLICAOF", "127.0.0.1", &first.port.to_string()]);
    caught_up(&first, &second);
    assert_eq!(
        stat(&mut f, "sync_full"),
        0,
        "the second id let it continue"
    );
    assert_eq!(stat(&mut f, "sync_partial_ok"), 1);
    assert_eq!(int(&mut s, &["LLEN", "list"]), 51);
    assert_eq!(digest(&mut s), digest(&mut f));
    assert_eq!(
        info_field(&info(&mut s, "replication"), "master_replid"),
        info_field(&info(&mut f, "replication"), "master_replid")
    );
}

/// Waits until `replica` follows `primary`'s current replication id and
/// has everything it wrote.
fn follows(primary: &TestNode, replica: &TestNode) {
    let (mut p, mut r) = (primary.raw(), replica.raw());
    eventually("the replica follows its primary's id", || {
        info_field(&info(&mut r, "replication"), "master_replid")
            == info_field(&info(&mut p, "replication"), "master_replid")
    });
    caught_up(primary, replica);
}

#[test]
fn a_chained_replica_learns_each_new_id_and_keeps_resyncing_partially() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    let middle = replica_of(&primary, &[]);
    let chained = replica_of(&middle, &[]);
    let other = replica_of(&primary, &[]);
    for i in 0..20 {
        int(&mut p, &["RPUSH", "list", &i.to_string()]);
    }
    caught_up(&primary, &middle);
    caught_up(&middle, &chained);
    caught_up(&primary, &other);
    let mut m = middle.raw();
    assert_eq!(
        stat(&mut m, "sync_full"),
        1,
        "the chained replica's first sync"
    );

    // The middle node's primary changes id: another replica promoted,
    // and the middle node pointed at it continues under the new id.
    let mut o = other.raw();
    ok(&mut o, &["REPLICAOF", "NO", "ONE"]);
    int(&mut o, &["RPUSH", "list", "on the promoted one"]);
    ok(&mut m, &["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    follows(&other, &middle);
    follows(&middle, &chained);

    // The middle node promoted itself.
    ok(&mut m, &["REPLICAOF", "NO", "ONE"]);
    int(&mut m, &["RPUSH", "list", "on the middle one"]);
    follows(&middle, &chained);

    // Under the id it learned, the chained replica's next link continues
    // where it stopped; under the old one it would need a full sync.
    let mut c = chained.raw();
    assert_eq!(int(&mut c, &["CLIENT", "KILL", "TYPE", "master"]), 1);
    int(&mut m, &["RPUSH", "list", "after the link came back"]);
    caught_up(&middle, &chained);
    assert_eq!(stat(&mut m, "sync_full"), 1);
    assert_eq!(stat(&mut m, "sync_partial_err"), 0);
    assert_eq!(stat(&mut m, "sync_partial_ok"), 3);
    assert_eq!(int(&mut c, &["LLEN", "list"]), 23);
    assert_eq!(digest(&mut c), digest(&mut m));
}

#[test]
fn wait_counts_the_replicas_that_have_a_write() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    assert_eq!(int(&mut p, &["WAIT", "0", "0"]), 0);
    let a = replica_of(&primary, &[]);
    let b = replica_of(&primary, &[]);
    caught_up(&primary, &a);
    caught_up(&primary, &b);
    ok(&mut p, &["SET", "k", "v"]);
    assert_eq!(int(&mut p, &["WAIT", "2", "0"]), 2);
    // Asking for more than there are waits out the timeout.
    ok(&mut p, &["SET", "k", "w"]);
    assert_eq!(int(&mut p, &["WAIT", "3", "200"]), 2);
    assert_eq!(
        err(&mut a.raw(), &["WAIT", "1", "0"]),
        "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated."
    );

    ok(&mut p, &["CONFIG", "SET", "min-replicas-to-write", "3"]);
    eventually(
        "the cron counted the replicas",
        || matches!(p.call(&["SET", "k", "x"]), Frame::Error(e) if e == "NOREPLICAS Not enough good replicas to write."),
    );
    ok(&mut p, &["CONFIG", "SET", "min-replicas-to-write", "2"]);
    eventually("writes accepted again", || {
        p.call(&["SET", "k", "x"]) == Frame::Simple("OK".into())
    });
}

/// WAITAOF's two counts: this node's log, and replicas whose logs (said
/// in their ACKs' FACK) synced the connection's writes.
fn waitaof(r: &mut Raw, args: &[&str]) -> (i64, i64) {
    let mut argv = vec!["WAITAOF"];
    argv.extend_from_slice(args);
    match r.call(&argv) {
        Frame::Array(v) => match v.as_slice() {
            [Frame::Int(l), Frame::Int(n)] => (*l, *n),
            other => panic!("WAITAOF {args:?}: {other:?}"),
        },
        other => panic!("WAITAOF {args:?}: {other:?}"),
    }
}

#[test]
fn waitaof_counts_the_logs_that_synced_a_write() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    for (args, e) in [
        (
            &["2", "0", "0"][..],
            "value is out of range, value must between 0 and 1",
        ),
        (
            &["-1", "0", "0"],
            "value is out of range, value must between 0 and 1",
        ),
        (&["x", "0", "0"], "value is not an integer or out of range"),
        (&["0", "-1", "0"], "value is out of range, must be positive"),
        (&["0", "x", "0"], "value is out of range, must be positive"),
        (
            &["0", "0", "x"],
            "timeout is not an integer or out of range",
        ),
        (&["0", "0", "-1"], "timeout is negative"),
        (
            &["0", "0", "9223372036854775807"],
            "timeout is out of range",
        ),
    ] {
        let mut argv = vec!["WAITAOF"];
        argv.extend_from_slice(args);
        assert_eq!(err(&mut p, &argv), format!("ERR {e}"), "{args:?}");
    }
    assert_eq!(
        err(&mut p, &["WAIT", "0", "1.5"]),
        "ERR timeout is not an integer or out of range"
    );

    // This node's log: synced within a second under everysec; never under
    // `no`, so the wait runs out.
    ok(&mut p, &["SET", "k", "1"]);
    assert_eq!(waitaof(&mut p, &["1", "0", "0"]), (1, 0));
    ok(&mut p, &["CONFIG", "SET", "appendfsync", "no"]);
    ok(&mut p, &["SET", "k", "2"]);
    assert_eq!(waitaof(&mut p, &["1", "0", "100"]), (0, 0));
    ok(&mut p, &["CONFIG", "SET", "appendfsync", "always"]);
    ok(&mut p, &["SET", "k", "3"]);
    assert_eq!(waitaof(&mut p, &["1", "0", "0"]), (1, 0));
    ok(&mut p, &["CONFIG", "SET", "appendfsync", "everysec"]);

    // Replicas: one with a log counts once its log has the write; one
    // without never does.
    let logged = replica_of(&primary, &[]);
    let unlogged = replica_of(&primary, &["--appendonly", "no"]);
    caught_up(&primary, &logged);
    caught_up(&primary, &unlogged);
    assert_eq!(
        err(&mut logged.raw(), &["WAITAOF", "0", "0", "0"]),
        "ERR WAITAOF cannot be used with replica instances. Please also note that writes to replicas are just local and are not propagated."
    );
    ok(&mut p, &["SET", "k", "4"]);
    assert_eq!(waitaof(&mut p, &["1", "1", "0"]), (1, 1));
    assert_eq!(waitaof(&mut p, &["1", "2", "200"]), (1, 1));
    // WAIT counts both: both received it.
    assert_eq!(int(&mut p, &["WAIT", "2", "0"]), 2);
    // Inside a transaction nothing waits.
    ok(&mut p, &["MULTI"]);
    p.call(&["SET", "k", "5"]);
    p.call(&["WAITAOF", "0", "2", "0"]);
    match p.call(&["EXEC"]) {
        Frame::Array(v) => assert!(matches!(&v[1], Frame::Array(c) if c.len() == 2), "{v:?}"),
        other => panic!("EXEC: {other:?}"),
    }

    // A stopped replica syncs nothing; once it runs again it does.
    {
        let _stopped = Stopped::new(&logged);
        ok(&mut p, &["SET", "k", "6"]);
        assert_eq!(waitaof(&mut p, &["0", "1", "100"]).1, 0);
    }
    // Both counts asked for, so both are known when it answers.
    assert_eq!(waitaof(&mut p, &["1", "1", "0"]), (1, 1));

    // A wait nothing will satisfy is a blocked client, which CLIENT
    // UNBLOCK ends with the counts so far, or with an error.
    let id = int(&mut p, &["CLIENT", "ID"]).to_string();
    let mut admin = primary.raw();
    for (how, reply) in [
        ("TIMEOUT", None),
        (
            "ERROR",
            Some("UNBLOCKED client unblocked via CLIENT UNBLOCK"),
        ),
    ] {
        p.cmd(&["WAITAOF", "1", "5", "0"]);
        eventually("the WAITAOF blocks", || {
            info_field(&info(&mut admin, "clients"), "blocked_clients") == "1"
        });
        assert_eq!(int(&mut admin, &["CLIENT", "UNBLOCK", &id, how]), 1);
        match (p.read2(), reply) {
            (Frame::Array(v), None) => assert_eq!(v, [Frame::Int(1), Frame::Int(1)]),
            (Frame::Error(e), Some(r)) => assert_eq!(e, r),
            (other, _) => panic!("{how}: {other:?}"),
        }
    }
}

/// A node that becomes a replica releases the clients waiting on it
/// (BLPOP, WAIT, WAITAOF) with Redis's error and closes their
/// connections, as Redis does.
#[test]
fn waiting_clients_are_released_when_the_node_becomes_a_replica() {
    let node = TestNode::start();
    let other = TestNode::start();
    let mut admin = node.raw();
    let mut waiting = Vec::new();
    for cmd in [
        &["BLPOP", "nothing", "0"][..],
        &["WAIT", "5", "0"],
        &["WAITAOF", "0", "5", "0"],
    ] {
        let mut c = node.raw();
        ok(&mut c, &["SET", "k", "v"]);
        c.cmd(cmd);
        waiting.push(c);
    }
    eventually("all three wait", || {
        info_field(&info(&mut admin, "clients"), "blocked_clients") == "3"
    });
    ok(
        &mut admin,
        &["REPLICAOF", "127.0.0.1", &other.port.to_string()],
    );
    for mut c in waiting {
        assert_eq!(
            c.read2(),
            Frame::Error(
                "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"
                    .into()
            )
        );
        eventually("the connection is closed", || c.is_closed());
    }
}

#[test]
fn a_replica_hides_expired_keys_until_its_primary_deletes_them() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    ok(&mut p, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    let replica = replica_of(&primary, &[]);
    let mut r = replica.raw();
    ok(&mut p, &["SET", "short", "v", "PX", "50"]);
    ok(&mut p, &["SET", "long", "v"]);
    caught_up(&primary, &replica);
    eventually("the key is past its time on the replica", || {
        bulk(&mut r, &["GET", "short"]).is_none()
    });
    // Hidden, not deleted: the replica waits for its primary's DEL.
    assert_eq!(int(&mut r, &["DBSIZE"]), 2);
    assert_eq!(int(&mut r, &["EXISTS", "short"]), 0);
    assert_eq!(bulk(&mut p, &["GET", "short"]), None);
    caught_up(&primary, &replica);
    assert_eq!(int(&mut r, &["DBSIZE"]), 1);
}

/// Stops a process (SIGSTOP) until dropped (SIGCONT), however the test
/// ends.
struct Stopped(u32);

impl Stopped {
    fn new(node: &TestNode) -> Stopped {
        let pid = node.child.id();
        assert!(std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        crate::support::wait_stopped(pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A replica that falls behind applies its primary's stream as it was
/// recorded: a key whose recorded expiry has passed by the time the
/// replica applies it stays until the stream says otherwise (a PERSIST
/// saves it, a DEL removes it), so the copy ends equal to the primary.
#[test]
fn a_lagging_replica_applies_expiries_as_its_primary_recorded_them() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    let replica = replica_of(&primary, &[]);
    caught_up(&primary, &replica);
    let stopped = Stopped::new(&replica);
    ok(&mut p, &["SET", "saved", "v", "PX", "100"]);
    assert_eq!(int(&mut p, &["PERSIST", "saved"]), 1);
    assert_eq!(int(&mut p, &["HSET", "h", "f", "v"]), 1);
    assert_eq!(int(&mut p, &["PEXPIRE", "h", "100"]), 1);
    ok(&mut p, &["SET", "gone", "v", "PX", "100"]);
    ok(&mut p, &["SET", "extended", "v", "PX", "100"]);
    assert_eq!(int(&mut p, &["PEXPIRE", "extended", "600000"]), 1);
    // The replica wakes past every recorded expiry above.
    eventually("the primary expired its keys", || {
        int(&mut p, &["EXISTS", "h", "gone"]) == 0
    });
    drop(stopped);
    caught_up(&primary, &replica);
    let mut r = replica.raw();
    assert_eq!(bulk(&mut r, &["GET", "saved"]).as_deref(), Some("v"));
    assert_eq!(int(&mut r, &["PTTL", "saved"]), -1);
    assert_eq!(int(&mut r, &["EXISTS", "h", "gone"]), 0);
    assert_eq!(int(&mut r, &["DBSIZE"]), 2);
    assert!(int(&mut r, &["PTTL", "extended"]) > 500_000);
    assert_eq!(digest(&mut r), digest(&mut p));
}

/// Two clients write order-sensitive commands (APPEND, RPUSH) past what
/// the sockets between primary and replica hold while the replica is
/// stopped: the I/O threads' own writes to the replica's socket hit a
/// full socket and leave the rest to the feeder, which must send it in
/// order, all of it. The bytes written either way are counted.
#[test]
fn a_replica_behind_a_full_socket_gets_every_byte_in_order() {
    let primary = TestNode::start();
    let replica = replica_of(&primary, &[]);
    caught_up(&primary, &replica);
    let mut p = primary.raw();
    let sent_before = stat(&mut p, "total_net_repl_output_bytes");
    let offset_before = stat(&mut p, "master_repl_offset");
    let syncs = |p: &mut Raw| (stat(p, "sync_full"), stat(p, "sync_partial_ok"));
    let syncs_before = syncs(&mut p);
    let stopped = Stopped::new(&replica);
    let chunk = "x".repeat(1000);
    std::thread::scope(|s| {
        for w in 0..2 {
            let (mut con, chunk) = (primary.conn(), &chunk);
            s.spawn(move || {
                // Batches well under what wakes the feeder at once, so
                // that the I/O threads write until the socket is full.
                for batch in 0..240 {
                    let mut pipe = redis::pipe();
                    for i in 0..50 {
                        let key = format!("w{w}:{}", i % 50);
                        pipe.cmd("APPEND").arg(&key).arg(chunk).ignore();
                        pipe.cmd("RPUSH")
                            .arg(format!("order:{}", i % 7))
                            .arg(format!("{w}.{batch}.{i}"))
                            .ignore();
                    }
                    let _: () = pipe.query(&mut con).unwrap();
                }
            });
        }
    });
    let written = stat(&mut p, "master_repl_offset") - offset_before;
    assert!(
        written > 24_000_000,
        "{written} bytes: past the sockets' buffers"
    );
    drop(stopped);
    caught_up(&primary, &replica);
    assert_eq!(digest(&mut replica.raw()), digest(&mut p));
    // The same link all along: a garbled stream would have been resynced.
    assert_eq!(syncs(&mut p), syncs_before);
    eventually("every byte sent is counted", || {
        stat(&mut p, "total_net_repl_output_bytes") - sent_before >= written
    });
}

#[test]
fn a_replica_without_its_primary_serves_stale_data_unless_told_not_to() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    ok(&mut p, &["SET", "k", "v"]);
    let replica = replica_of(&primary, &[]);
    caught_up(&primary, &replica);
    drop(p);
    drop(primary);
    let mut r = replica.raw();
    eventually("the link is down", || {
        info_field(&info(&mut r, "replication"), "master_link_status") == "down"
    });
    assert_eq!(bulk(&mut r, &["GET", "k"]).as_deref(), Some("v"));
    ok(&mut r, &["CONFIG", "SET", "replica-serve-stale-data", "no"]);
    assert_eq!(
        err(&mut r, &["GET", "k"]),
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
    );
    assert!(info(&mut r, "replication").contains("master_link_down_since_seconds"));
    // A writable replica keeps its own writes local: its stream (and so
    // its offset) stays its primary's.
    ok(
        &mut r,
        &["CONFIG", "SET", "replica-serve-stale-data", "yes"],
    );
    ok(&mut r, &["CONFIG", "SET", "replica-read-only", "no"]);
    let offset = info_field(&info(&mut r, "replication"), "master_repl_offset");
    ok(&mut r, &["SET", "local", "only"]);
    assert_eq!(bulk(&mut r, &["GET", "local"]).as_deref(), Some("only"));
    assert_eq!(
        info_field(&info(&mut r, "replication"), "master_repl_offset"),
        offset
    );
    // Promotion makes it a writable primary with the data it had.
    ok(&mut r, &["REPLICAOF", "NO", "ONE"]);
    assert_eq!(bulk(&mut r, &["GET", "k"]).as_deref(), Some("v"));
    ok(&mut r, &["SET", "k", "mine"]);
}

#[test]
fn a_replica_that_stops_reading_is_dropped_at_its_output_buffer_limit() {
    let primary = TestNode::start_with(&[
        "--client-output-buffer-limit",
        "replica 1mb 0 0",
        "--repl-backlog-size",
        "64kb",
    ]);
    let mut p = primary.raw();
    let replica = replica_of(&primary, &[]);
    caught_up(&primary, &replica);
    let pid = replica.child.id() as i32;
    // SAFETY: plain signals to a child process this test owns.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let value = "v".repeat(64 * 1024);
    // More than the kernel's socket buffers hold, so the tap fills.
    for i in 0..256 {
        ok(&mut p, &["SET", &format!("k{i}"), &value]);
    }
    eventually("the primary dropped the replica", || {
        info_field(&info(&mut p, "replication"), "connected_slaves") == "0"
    });
    unsafe { libc::kill(pid, libc::SIGCONT) };
    caught_up(&primary, &replica);
    assert_eq!(digest(&mut replica.raw()), digest(&mut p));
    assert_eq!(
        stat(&mut p, "sync_full"),
        2,
        "too far behind for the backlog"
    );
}

#[test]
fn a_sidecar_reads_locally_forwards_writes_and_reads_its_own_writes() {
    let primary = TestNode::start();
    let (sidecar, mut s) = ready_sidecar(&primary, &["--sidecar-read-wait-ms", "30000"]);
    // Every read right after a write sees it, through the sidecar alone.
    for i in 0..300 {
        let k = format!("k{i}");
        ok(&mut s, &["SET", &k, &i.to_string()]);
        assert_eq!(bulk(&mut s, &["GET", &k]), Some(i.to_string()));
        assert_eq!(int(&mut s, &["INCR", "counter"]), i + 1);
        assert_eq!(bulk(&mut s, &["GET", "counter"]), Some((i + 1).to_string()));
    }
    assert_eq!(int(&mut s, &["HSET", "h", "f", "v"]), 1);
    assert_eq!(bulk(&mut s, &["HGET", "h", "f"]).as_deref(), Some("v"));
    // Errors are the primary's, word for word.
    assert_eq!(
        err(&mut s, &["LPUSH", "h", "x"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    // Null replies of forwarded writes (RESP2's `$-1` and `*-1`).
    assert_eq!(s.call(&["GETDEL", "nokey"]), Frame::Null);
    assert_eq!(s.call(&["LPOP", "nokey"]), Frame::Null);
    assert_eq!(s.call(&["SET", "nokey", "v", "XX"]), Frame::Null);
    assert_eq!(s.call(&["BLPOP", "nokey", "0.01"]), Frame::Null);
    // A transaction runs on the primary, whole.
    ok(&mut s, &["MULTI"]);
    assert_eq!(s.call(&["INCR", "counter"]), Frame::Simple("QUEUED".into()));
    assert_eq!(s.call(&["SET", "t", "x"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        s.call(&["EXEC"]),
        Frame::Array(vec![Frame::Int(301), Frame::Simple("OK".into())])
    );
    assert_eq!(bulk(&mut s, &["GET", "counter"]).as_deref(), Some("301"));
    // Databases follow the connection.
    ok(&mut s, &["SELECT", "5"]);
    ok(&mut s, &["SET", "in5", "yes"]);
    assert_eq!(bulk(&mut s, &["GET", "in5"]).as_deref(), Some("yes"));

    let mut p = primary.raw();
    // The reads were served by the sidecar, not the primary.
    let stats = info(&mut p, "commandstats");
    assert!(!stats.contains("cmdstat_get:"), "{stats}");
    assert!(stats.contains("cmdstat_set:calls=303,"), "{stats}");
    assert_eq!(bulk(&mut p, &["GET", "k299"]).as_deref(), Some("299"));
    ok(&mut p, &["SELECT", "5"]);
    assert_eq!(bulk(&mut p, &["GET", "in5"]).as_deref(), Some("yes"));
    caught_up(&primary, &sidecar);
    assert_eq!(digest(&mut s), digest(&mut p));

    // WAIT counts this connection's writes on the primary: the sidecar
    // itself is the replica that has them.
    assert_eq!(int(&mut s, &["WAIT", "1", "0"]), 1);
    // A message published through the sidecar reaches subscribers on the
    // primary and on the sidecar.
    let mut sub_here = sidecar.raw();
    let mut sub_there = primary.raw();
    for sub in [&mut sub_here, &mut sub_there] {
        sub.cmd(&["SUBSCRIBE", "news"]);
        sub.read2();
    }
    assert_eq!(
        int(&mut s, &["PUBLISH", "news", "hello"]),
        1,
        "one subscriber on the primary"
    );
    for sub in [&mut sub_here, &mut sub_there] {
        assert_eq!(
            sub.read2(),
            Frame::Array(vec![
                Frame::bulk("message"),
                Frame::bulk("news"),
                Frame::bulk("hello")
            ])
        );
    }

    // RESP3 replies pass through as the primary writes them.
    let mut s3 = sidecar.raw();
    s3.cmd(&["HELLO", "3"]);
    assert!(matches!(s3.read3(), Frame::Map(_)));
    s3.cmd(&["ZINCRBY", "z", "1.5", "m"]);
    assert_eq!(s3.read3(), Frame::Double(1.5));
    s3.cmd(&["GETDEL", "nokey"]);
    assert_eq!(s3.read3(), Frame::Null);

    // CLIENT REPLY is this connection's: it silences forwarded replies.
    s.cmd(&["CLIENT", "REPLY", "OFF"]);
    s.cmd(&["SET", "quiet", "1"]);
    s.cmd(&["CLIENT", "REPLY", "SKIP"]);
    s.cmd(&["CLIENT", "REPLY", "ON"]);
    assert_eq!(s.read2(), Frame::Simple("OK".into()));
    s.cmd(&["CLIENT", "REPLY", "SKIP"]);
    s.cmd(&["INCR", "quiet"]);
    assert_eq!(bulk(&mut s, &["GET", "quiet"]).as_deref(), Some("2"));
    // RESET and QUIT are the connection's too: a transaction open on the
    // primary is dropped, and QUIT closes the application's connection.
    ok(&mut s, &["MULTI"]);
    assert_eq!(
        s.call(&["SET", "dropped", "x"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(s.call(&["RESET"]), Frame::Simple("RESET".into()));
    assert_eq!(err(&mut s, &["EXEC"]), "ERR EXEC without MULTI");
    ok(&mut s, &["MULTI"]);
    assert_eq!(
        s.call(&["SET", "dropped", "y"]),
        Frame::Simple("QUEUED".into())
    );
    ok(&mut s, &["QUIT"]);
    assert!(s.is_closed());
    let mut again = sidecar.raw();
    assert_eq!(again.call(&["GET", "dropped"]), Frame::Null);
    // (`s` and `p` had selected database 5; RESET went back to 0.)
    assert_eq!(bulk(&mut p, &["GET", "quiet"]).as_deref(), Some("2"));
    ok(&mut p, &["SELECT", "0"]);
    assert_eq!(p.call(&["GET", "dropped"]), Frame::Null);
}

/// A command forwarded by a sidecar that waits on the primary (BLPOP) is
/// one the application can end as it would on the primary: hanging up,
/// CLIENT KILL and CLIENT UNBLOCK on the sidecar reach the command's wait
/// there, so no element is popped for a client that is gone. And a
/// transaction whose command the sidecar refused itself fails whole, as
/// Redis fails it, and WATCHes survive a HELLO.
#[test]
fn a_sidecar_ends_forwarded_waits_and_keeps_transactions_whole() {
    use crate::blocking::{blocked, blocked_clients, client_id_of_blocked};
    let primary = TestNode::start();
    let (sidecar, mut s) = ready_sidecar(&primary, &[]);
    let mut p = primary.raw();

    // CLIENT UNBLOCK on the sidecar, passed on: a timeout's reply, then
    // the UNBLOCKED error, both the primary's.
    let waiting = blocked(&sidecar, &mut s, &["BLPOP", "q", "0"], 1);
    // (The sidecar counts it blocked before the primary has it.)
    eventually("the wait is on the primary", || {
        blocked_clients(&mut p) == 1
    });
    let id = client_id_of_blocked(&mut s).to_string();
    assert_eq!(int(&mut s, &["CLIENT", "UNBLOCK", &id]), 1);
    assert_eq!(waiting.join().unwrap(), Frame::Null);
    let waiting = blocked(&sidecar, &mut s, &["BZPOPMAX", "z", "0"], 1);
    let id = client_id_of_blocked(&mut s).to_string();
    assert_eq!(int(&mut s, &["CLIENT", "UNBLOCK", &id, "ERROR"]), 1);
    assert_eq!(
        waiting.join().unwrap(),
        Frame::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
    );
    eventually("no wait left on the primary", || {
        blocked_clients(&mut p) == 0
    });

    // Replies before a forwarded wait go out first.
    let mut c = sidecar.raw();
    c.send(b"*1\r\n$4\r\nPING\r\n*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n");
    assert_eq!(c.read2(), Frame::Simple("PONG".into()));
    eventually("blocked on the primary", || blocked_clients(&mut p) == 1);
    // A client that hangs up, and one killed, leave no wait behind.
    drop(c);
    eventually("hang-up passed on", || blocked_clients(&mut p) == 0);
    let mut c = sidecar.raw();
    c.cmd(&["BLPOP", "q", "0"]);
    eventually("blocked on the primary", || blocked_clients(&mut p) == 1);
    let id = client_id_of_blocked(&mut s).to_string();
    assert_eq!(int(&mut s, &["CLIENT", "KILL", "ID", &id]), 1);
    assert!(c.is_closed());
    eventually("kill passed on", || blocked_clients(&mut p) == 0);
    assert_eq!(blocked_clients(&mut s), 0);
    assert_eq!(int(&mut s, &["RPUSH", "q", "job"]), 1);
    assert_eq!(int(&mut p, &["LLEN", "q"]), 1, "nobody took the job");

    // A command refused by the sidecar fails the transaction ...
    ok(&mut s, &["MULTI"]);
    assert_eq!(s.call(&["SET", "t", "1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        err(&mut s, &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&mut s, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    // ... and a refused EXEC ends it.
    ok(&mut s, &["MULTI"]);
    assert_eq!(s.call(&["SET", "t", "2"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        err(&mut s, &["EXEC", "now"]),
        "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"
    );
    ok(&mut s, &["SET", "u", "3"]);
    assert_eq!(err(&mut s, &["EXEC"]), "ERR EXEC without MULTI");
    // HELLO inside MULTI is refused, failing the transaction: run on the
    // primary, it would switch the link's protocol halfway through EXEC.
    ok(&mut s, &["MULTI"]);
    assert_eq!(s.call(&["SET", "t", "3"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        err(&mut s, &["HELLO", "3"]),
        "ERR HELLO inside MULTI is not allowed on a sidecar"
    );
    assert_eq!(
        err(&mut s, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    // So are those that would make the link push messages or stop
    // replying.
    for (cmd, name) in [
        (&["SUBSCRIBE", "ch"][..], "SUBSCRIBE"),
        (&["CLIENT", "REPLY", "OFF"], "CLIENT REPLY"),
        (&["CLIENT", "TRACKING", "ON"], "CLIENT TRACKING"),
    ] {
        ok(&mut s, &["MULTI"]);
        assert_eq!(
            err(&mut s, cmd),
            format!("ERR {name} inside MULTI is not allowed on a sidecar")
        );
        assert!(err(&mut s, &["EXEC"]).starts_with("EXECABORT"));
    }
    assert_eq!(s.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(p.call(&["GET", "t"]), Frame::Null);
    assert_eq!(bulk(&mut p, &["GET", "u"]).as_deref(), Some("3"));

    // A WATCH outlives a switch of protocol (HELLO 3).
    ok(&mut s, &["WATCH", "u"]);
    s.cmd(&["HELLO", "3"]);
    assert!(matches!(s.read3(), Frame::Map(_)));
    ok(&mut p, &["SET", "u", "changed"]);
    s.cmd(&["MULTI"]);
    assert_eq!(s.read3(), Frame::Simple("OK".into()));
    s.cmd(&["SET", "u", "mine"]);
    assert_eq!(s.read3(), Frame::Simple("QUEUED".into()));
    s.cmd(&["EXEC"]);
    assert_eq!(s.read3(), Frame::Null, "the watched key changed");
    assert_eq!(bulk(&mut p, &["GET", "u"]).as_deref(), Some("changed"));

    // A SELECT in a transaction moves the connection when EXEC runs it,
    // on the sidecar as on the primary.
    let mut s = sidecar.raw();
    ok(&mut s, &["MULTI"]);
    assert_eq!(s.call(&["SELECT", "3"]), Frame::Simple("QUEUED".into()));
    assert_eq!(s.call(&["SET", "in3", "a"]), Frame::Simple("QUEUED".into()));
    s.call(&["EXEC"]);
    ok(&mut s, &["SET", "in3too", "b"]);
    assert_eq!(bulk(&mut s, &["GET", "in3"]).as_deref(), Some("a"));
    ok(&mut p, &["SELECT", "3"]);
    assert_eq!(strings(&mut p, &["KEYS", "in3*"]).len(), 2);
}

/// Client libraries load a script once (SCRIPT LOAD) and run it by its
/// SHA1 (EVALSHA): through a sidecar the load reaches the primary too,
/// where a script that may write runs, and the sidecar, where EVALSHA_RO
/// runs.
#[test]
fn a_script_loaded_through_a_sidecar_runs_by_its_sha() {
    let primary = TestNode::start();
    let (_sidecar, mut s) = ready_sidecar(&primary, &[]);
    let incr = bulk(
        &mut s,
        &["SCRIPT", "LOAD", "return redis.call('incr', KEYS[1])"],
    )
    .unwrap();
    let get = bulk(
        &mut s,
        &["SCRIPT", "LOAD", "return redis.call('get', KEYS[1])"],
    )
    .unwrap();
    assert_eq!(int(&mut s, &["EVALSHA", &incr, "1", "n"]), 1);
    assert_eq!(
        bulk(&mut s, &["EVALSHA_RO", &get, "1", "n"]).as_deref(),
        Some("1")
    );
    let mut p = primary.raw();
    assert_eq!(
        p.call(&["SCRIPT", "EXISTS", &incr, &get]),
        Frame::Array(vec![Frame::Int(1), Frame::Int(1)])
    );
    // A script the primary lost (SCRIPT FLUSH, a restart) is NOSCRIPT, and
    // loading it again, as client libraries then do, mends it.
    ok(&mut p, &["SCRIPT", "FLUSH"]);
    assert!(err(&mut s, &["EVALSHA", &incr, "1", "n"]).starts_with("NOSCRIPT"));
    assert_eq!(
        bulk(
            &mut s,
            &["SCRIPT", "LOAD", "return redis.call('incr', KEYS[1])"]
        ),
        Some(incr.clone())
    );
    assert_eq!(int(&mut s, &["EVALSHA", &incr, "1", "n"]), 2);
    // SCRIPT FLUSH through the sidecar empties both caches, as it empties
    // the one of the node it is sent to.
    ok(&mut s, &["SCRIPT", "FLUSH"]);
    assert!(err(&mut s, &["EVALSHA", &incr, "1", "n"]).starts_with("NOSCRIPT"));
    assert!(err(&mut s, &["EVALSHA_RO", &get, "1", "n"]).starts_with("NOSCRIPT"));
    assert_eq!(
        p.call(&["SCRIPT", "EXISTS", &incr, &get]),
        Frame::Array(vec![Frame::Int(0), Frame::Int(0)])
    );
    // A script that does not compile is refused here, as on the primary.
    assert!(err(&mut s, &["SCRIPT", "LOAD", "return +"]).starts_with("ERR Error compiling script"));
}

/// An application that pipelines writes through its sidecar pays one round
/// trip to the primary for a run of them, not one each; what it reads is
/// what it would read sending them one by one: every reply in order, its
/// reads after its writes seeing them, errors where they belong, and when
/// the primary is gone, an error for each write.
#[test]
fn pipelined_writes_through_a_sidecar_go_to_the_primary_together() {
    let mut primary = TestNode::start();
    let (_sidecar, mut s) = ready_sidecar(&primary, &["--sidecar-read-wait-ms", "30000"]);
    let mut p = primary.raw();
    let replconf_calls = |p: &mut Raw| -> u64 {
        let stats = info(p, "commandstats");
        let at = stats
            .find("cmdstat_replconf:calls=")
            .expect("replconf calls")
            + 23;
        stats[at..].split(',').next().unwrap().parse().unwrap()
    };
    let before = replconf_calls(&mut p);

    let mut pipeline: Vec<Vec<String>> = Vec::new();
    let mut expected = Vec::new();
    let mut add = |cmd: &[&str], reply: Frame| {
        pipeline.push(cmd.iter().map(|a| a.to_string()).collect());
        expected.push(reply);
    };
    let okf = || Frame::Simple("OK".into());
    for i in 0..40 {
        add(&["SET", &format!("k{i}"), &i.to_string()], okf());
    }
    for i in 1..=10 {
        add(&["INCR", "n"], Frame::Int(i));
    }
    // Scripts and PUBLISH go to the primary too, in the run.
    add(
        &["EVAL", "return redis.call('incr', KEYS[1])", "1", "n"],
        Frame::Int(11),
    );
    add(&["PUBLISH", "nobody", "x"], Frame::Int(0));
    add(&["LPUSH", "l", "a"], Frame::Int(1));
    add(
        &["INCR", "l"],
        Frame::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into()),
    );
    add(&["GET", "k39"], Frame::bulk("39"));
    add(
        &["SET", "x"],
        Frame::Error("ERR wrong number of arguments for 'set' command".into()),
    );
    add(&["SELECT", "1"], okf());
    add(&["SET", "in1", "yes"], okf());
    add(&["GET", "in1"], Frame::bulk("yes"));
    add(&["SELECT", "0"], okf());
    add(&["GETDEL", "k0"], Frame::bulk("0"));
    add(&["GET", "k0"], Frame::Null);
    let bytes: Vec<u8> = pipeline
        .iter()
        .flat_map(|c| crate::support::encode(&c.iter().map(|a| a.as_bytes()).collect::<Vec<_>>()))
        .collect();
    s.send(&bytes);
    for (cmd, want) in pipeline.iter().zip(&expected) {
        assert_eq!(&s.read2(), want, "{cmd:?}");
    }
    // Each write asks the primary how far its writes reach (REPLCONF
    // WRITE-OFFSET), once per run: 56 commands, one at a time, ask 56 times.
    let asked = replconf_calls(&mut p) - before;
    assert!(asked < 20, "{asked} runs for 56 commands");
    // The sidecar counts them too, and its reads all waited here.
    assert_eq!(stat(&mut s, "sidecar_forwarded_commands"), 56);
    assert!(stat(&mut s, "sidecar_forward_round_trips") < 20);
    assert_eq!(stat(&mut s, "sidecar_reads_sent_to_primary"), 0);
    assert_eq!(stat(&mut s, "sidecar_primary_links"), 1);
    // On the primary, the link says whose it is.
    let id = int(&mut s, &["CLIENT", "ID"]);
    let links = bulk(&mut p, &["CLIENT", "LIST"]).unwrap();
    assert!(
        links.contains(&format!(" name=sidecar-client-{id} ")),
        "{links}"
    );
    assert_eq!(bulk(&mut p, &["GET", "n"]).as_deref(), Some("11"));
    assert_eq!(p.call(&["GET", "k0"]), Frame::Null);
    ok(&mut p, &["SELECT", "1"]);
    assert_eq!(bulk(&mut p, &["GET", "in1"]).as_deref(), Some("yes"));

    // A pipelined transaction (redis-py's pipelines are): one run too, and
    // the database it selected is the connection's after it.
    let reads_before = stat(&mut p, "total_reads_processed");
    let mut tx = crate::support::encode(&[b"MULTI"]);
    for _ in 0..30 {
        tx.extend(crate::support::encode(&[b"INCR", b"t"]));
    }
    for cmd in [
        &[&b"SELECT"[..], b"2"][..],
        &[b"SET", b"in2", b"x"],
        &[b"EXEC"],
        &[b"GET", b"in2"],
    ] {
        tx.extend(crate::support::encode(cmd));
    }
    s.send(&tx);
    assert_eq!(s.read2(), okf());
    for _ in 0..32 {
        assert_eq!(s.read2(), Frame::Simple("QUEUED".into()));
    }
    let mut results: Vec<Frame> = (1..=30).map(Frame::Int).collect();
    results.extend([okf(), okf()]);
    assert_eq!(s.read2(), Frame::Array(results));
    assert_eq!(s.read2(), Frame::bulk("x"));
    // One read on the primary for the run, and a few for the questions
    // after it and this INFO: 34 commands one at a time take 34.
    let reads = stat(&mut p, "total_reads_processed") - reads_before;
    assert!(reads < 15, "{reads} reads for a transaction of 34 commands");
    // The connection is in database 2 now, here and on the primary, and
    // stays there through the transactions after.
    let mut more = Vec::new();
    for cmd in [
        &[&b"MULTI"[..]][..],
        &[b"SELECT", b"3"],
        &[b"EXEC"],
        &[b"MULTI"],
        &[b"SET", b"dropped", b"1"],
        &[b"DISCARD"],
        &[b"SET", b"in3", b"y"],
        &[b"GET", b"in3"],
    ] {
        more.extend(crate::support::encode(cmd));
    }
    s.send(&more);
    let replies: Vec<Frame> = (0..8).map(|_| s.read2()).collect();
    assert_eq!(replies[2], Frame::Array(vec![okf()]));
    assert_eq!(replies[7], Frame::bulk("y"), "{replies:?}");
    ok(&mut p, &["SELECT", "3"]);
    assert_eq!(bulk(&mut p, &["GET", "in3"]).as_deref(), Some("y"));
    // A transaction's writes are read after it, though the transaction
    // after it fails here (an unknown command) and never reaches its EXEC
    // on the primary.
    let mut aborted = Vec::new();
    for cmd in [
        &[&b"MULTI"[..]][..],
        &[b"SET", b"ran", b"1"],
        &[b"EXEC"],
        &[b"MULTI"],
        &[b"NOSUCHCOMMAND"],
        &[b"EXEC"],
        &[b"GET", b"ran"],
    ] {
        aborted.extend(crate::support::encode(cmd));
    }
    s.send(&aborted);
    let replies: Vec<Frame> = (0..7).map(|_| s.read2()).collect();
    assert_eq!(
        replies[5],
        Frame::Error("EXECABORT Transaction discarded because of previous errors.".into())
    );
    assert_eq!(replies[6], Frame::bulk("1"), "{replies:?}");

    // A read that would wait longer than sidecar-read-wait-ms for its
    // connection's write goes to the primary, and reads that write there.
    // Whether the local copy lags a write is up to the machine: a round
    // finds it so now and then (1 in 20 here), so rounds go on until one
    // does.
    ok(&mut s, &["CONFIG", "SET", "sidecar-read-wait-ms", "0"]);
    let big = "v".repeat(1 << 20);
    let mut round = 0;
    eventually("a read went to the primary", || {
        round += 1;
        let key = format!("big{round}");
        ok(&mut s, &["SET", &key, &big]);
        // Not a read: this node's, though its copy lags (it lagged at
        // least as far as for the GET after it).
        let samples = (round % 64 + 1).to_string();
        ok(&mut s, &["CONFIG", "SET", "maxmemory-samples", &samples]);
        assert_eq!(bulk(&mut s, &["GET", &key]).as_deref(), Some(big.as_str()));
        stat(&mut s, "sidecar_reads_sent_to_primary") > 0
    });
    assert_eq!(
        p.call(&["CONFIG", "GET", "maxmemory-samples"]),
        Frame::Array(vec![Frame::bulk("maxmemory-samples"), Frame::bulk("5")])
    );
    ok(&mut s, &["CONFIG", "RESETSTAT"]);
    assert_eq!(stat(&mut s, "sidecar_forwarded_commands"), 0);
    assert_eq!(stat(&mut s, "sidecar_primary_links"), 1);

    // The primary gone: each write of a run is answered, with why.
    primary.crash();
    let mut writes = Vec::new();
    for i in 0..3 {
        writes.extend(crate::support::encode(&[
            b"SET",
            format!("gone{i}").as_bytes(),
            b"v",
        ]));
    }
    s.send(&writes);
    for _ in 0..3 {
        match s.read2() {
            Frame::Error(e) => assert!(e.starts_with("MASTERDOWN"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.call(&["PING"]), Frame::Simple("PONG".into()));
    // The link went with the error.
    assert_eq!(stat(&mut s, "sidecar_primary_links"), 0);
}
/// A script an application ran through its sidecar (EVAL goes to the
/// primary) that runs past busy-reply-threshold holds up every write with
/// -BUSY: SCRIPT KILL through the sidecar reaches it there, as it reaches
/// one running on the sidecar itself.
#[test]
fn a_script_busy_on_the_primary_is_killed_through_the_sidecar() {
    // One I/O thread: every link is the script's thread's, stood in for.
    let primary = TestNode::start_with(&["--io-threads", "1", "--busy-reply-threshold", "100"]);
    let mut p = primary.raw();
    let (sidecar, mut a) = ready_sidecar(&primary, &[]);
    let mut b = sidecar.raw();
    ok(&mut b, &["SET", "x", "0"]);
    a.cmd(&["EVAL", "while true do end", "0"]);
    // (A connection the script's thread is in the middle of serving, or
    // has just accepted, when the script starts waits for its end: the
    // primary is asked on new connections, each given 2 s, and `b`'s link
    // is idle by then.)
    eventually("the primary is busy", || {
        let mut q = primary.raw();
        q.stream
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        q.cmd(&["GET", "x"]);
        matches!(q.try_read2(), Some(Frame::Error(e)) if e.starts_with("BUSY"))
    });
    // Its link to the primary made before the script timed out, a
    // connection's writes are refused BUSY there (the question after
    // them answered too) ...
    assert!(err(&mut b, &["SET", "x", "1"]).starts_with("BUSY Redis is busy running a script"));
    // ... and so are those of a connection that opens its link now (the
    // primary answers the link's CLIENT ID -BUSY), which kills the script.
    let mut c = sidecar.raw();
    assert!(err(&mut c, &["SET", "x", "1"]).starts_with("BUSY"));
    ok(&mut c, &["SCRIPT", "KILL"]);
    match a.read2() {
        Frame::Error(e) => assert!(e.starts_with("ERR Script killed by user"), "{e}"),
        other => panic!("{other:?}"),
    }
    ok(&mut b, &["SET", "x", "2"]);
    assert_eq!(bulk(&mut p, &["GET", "x"]).as_deref(), Some("2"));
    // Nothing runs now, here or there.
    assert_eq!(
        err(&mut b, &["SCRIPT", "KILL"]),
        "NOTBUSY No scripts in execution right now."
    );
}

/// The primary's clients other than `me` and its replicas: a sidecar's
/// upstream links.
fn upstream_links(p: &mut Raw, me: &str) -> usize {
    let list = bulk(p, &["CLIENT", "LIST"]).unwrap();
    list.lines()
        .filter(|l| !l.contains(" flags=S ") && !l.starts_with(&format!("id={me} ")))
        .count()
}

/// A sidecar's link to the primary closed under it: while idle (the
/// primary's `timeout`), a new one is made and the write goes through;
/// while it held a transaction or WATCHes, the application is told as
/// Redis tells a client whose transaction cannot run, and nothing of the
/// transaction runs (sent to a new link, its commands would run one by
/// one, outside it).
#[test]
fn a_sidecar_link_closed_under_it() {
    let primary = TestNode::start();
    let (_sidecar, mut s) = ready_sidecar(&primary, &[]);
    let mut p = primary.raw();
    let me = int(&mut p, &["CLIENT", "ID"]).to_string();
    ok(&mut p, &["CONFIG", "SET", "timeout", "1"]);
    ok(&mut s, &["SET", "a", "1"]);
    eventually("the idle link timed out", || {
        upstream_links(&mut p, &me) == 0
    });
    ok(&mut s, &["SET", "a", "2"]);
    assert_eq!(bulk(&mut p, &["GET", "a"]).as_deref(), Some("2"));
    ok(&mut p, &["CONFIG", "SET", "timeout", "0"]);

    let cut_links = |p: &mut Raw| {
        assert!(int(p, &["CLIENT", "KILL", "TYPE", "normal"]) >= 1);
        eventually("the link is closed", || upstream_links(p, &me) == 0);
    };
    // A transaction.
    ok(&mut s, &["MULTI"]);
    assert_eq!(s.call(&["SET", "t1", "1"]), Frame::Simple("QUEUED".into()));
    cut_links(&mut p);
    assert!(err(&mut s, &["SET", "t2", "2"]).starts_with("MASTERDOWN"));
    assert_eq!(s.call(&["SET", "t3", "3"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        err(&mut s, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    for k in ["t1", "t2", "t3"] {
        assert_eq!(p.call(&["EXISTS", k]), Frame::Int(0), "{k}");
    }
    // DISCARD ends a lost transaction too.
    ok(&mut s, &["MULTI"]);
    cut_links(&mut p);
    assert!(err(&mut s, &["SET", "t4", "4"]).starts_with("MASTERDOWN"));
    ok(&mut s, &["DISCARD"]);
    ok(&mut s, &["SET", "t5", "5"]);
    assert_eq!(bulk(&mut p, &["GET", "t5"]).as_deref(), Some("5"));

    // WATCHes: the transaction after their loss runs nothing, as after a
    // change of a watched key.
    ok(&mut s, &["WATCH", "w"]);
    cut_links(&mut p);
    assert!(err(&mut s, &["SET", "z", "1"]).starts_with("MASTERDOWN"));
    ok(&mut s, &["MULTI"]);
    assert_eq!(
        s.call(&["SET", "w", "mine"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(s.call(&["EXEC"]), Frame::Null);
    assert_eq!(p.call(&["EXISTS", "w"]), Frame::Int(0));
    // And the next transaction runs.
    ok(&mut s, &["MULTI"]);
    assert_eq!(
        s.call(&["SET", "w", "mine"]),
        Frame::Simple("QUEUED".into())
    );
    assert_eq!(
        s.call(&["EXEC"]),
        Frame::Array(vec![Frame::Simple("OK".into())])
    );
    assert_eq!(bulk(&mut p, &["GET", "w"]).as_deref(), Some("mine"));
}

#[test]
fn a_sidecar_answers_loading_until_its_first_sync() {
    let primary = TestNode::start_with(&["--requirepass", "secret"]);
    let sidecar = replica_of(&primary, &["--sidecar", "yes"]);
    let mut s = sidecar.raw();
    assert_eq!(
        err(&mut s, &["GET", "k"]),
        "LOADING Redis is loading the dataset in memory"
    );
    assert_eq!(
        info_field(&info(&mut s, "replication"), "sidecar_ready"),
        "0"
    );
    ok(&mut s, &["CONFIG", "SET", "masterauth", "secret"]);
    eventually("the sidecar synced", || {
        s.call(&["GET", "k"]) == Frame::Null
    });
    ok(&mut s, &["SET", "k", "through the sidecar"]);
    let mut p = primary.raw();
    ok(&mut p, &["AUTH", "secret"]);
    assert_eq!(
        bulk(&mut p, &["GET", "k"]).as_deref(),
        Some("through the sidecar")
    );

    // A sidecar without a primary is refused at start-up.
    let alone = std::process::Command::new(crate::support::BIN)
        .args(["--port", "0", "--sidecar", "yes"])
        .output()
        .unwrap();
    assert!(!alone.status.success());
    assert!(String::from_utf8_lossy(&alone.stderr).contains("sidecar yes needs replicaof"));
}

#[test]
fn replicas_start_in_the_database_the_stream_is_in() {
    // The stream says SELECT only when the database changes: a replica
    // that starts in the middle of it (a full sync from a replica, a
    // restart after its log was rewritten) must know where it is.
    let primary = TestNode::start();
    let mut p = primary.raw();
    let mut first = replica_of(&primary, &[]);
    ok(&mut p, &["SELECT", "3"]);
    ok(&mut p, &["SET", "a", "1"]);
    caught_up(&primary, &first);
    let chained = replica_of(&first, &[]);
    caught_up(&first, &chained);
    ok(&mut p, &["SET", "b", "2"]);
    caught_up(&primary, &first);
    caught_up(&first, &chained);
    let mut c = chained.raw();
    ok(&mut c, &["SELECT", "3"]);
    assert_eq!(bulk(&mut c, &["GET", "b"]).as_deref(), Some("2"));

    let mut f = first.raw();
    assert_eq!(
        f.call(&["BGREWRITEAOF"]),
        Frame::Simple("Background append only file rewriting started".into())
    );
    eventually("the rewrite finished", || {
        info_field(&info(&mut f, "persistence"), "aof_rewrite_in_progress") == "0"
    });
    ok(&mut p, &["SET", "c", "3"]);
    caught_up(&primary, &first);
    wait_synced(&mut first.raw());
    first.crash();
    ok(&mut p, &["SET", "d", "4"]);
    first.restart(&[]).unwrap();
    caught_up(&primary, &first);
    let mut f = first.raw();
    assert_eq!(stat(&mut p, "sync_full"), 1, "the restart continued");
    ok(&mut f, &["SELECT", "3"]);
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        assert_eq!(bulk(&mut f, &["GET", k]).as_deref(), Some(v), "{k}");
    }
    assert_eq!(digest(&mut f), digest(&mut p));
}

/// Tracking clients on a replica hear of their primary's writes, and a
/// full sync tells them once that everything changed (a null), not key by
/// key: a BCAST client would otherwise be sent every key of the snapshot.
#[test]
fn tracking_clients_on_a_replica_hear_of_writes_and_of_a_full_sync() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    for i in 0..500 {
        ok(&mut p, &["SET", &format!("k{i}"), "v"]);
    }
    let replica = replica_of(&primary, &[]);
    caught_up(&primary, &replica);
    let mut a = tracking_conn(replica.port, &[]);
    let mut b = tracking_conn(replica.port, &["BCAST"]);
    a.cmd(&["GET", "k1"]);
    assert_eq!(a.read3(), Frame::bulk("v"));
    // Everything pushed before a PONG, as (what was invalidated).
    let pushed = |c: &mut Raw| {
        c.cmd(&["PING"]);
        pushes_then(c, Frame::Simple("PONG".into()))
    };
    ok(&mut p, &["SET", "k1", "w"]);
    caught_up(&primary, &replica);
    let k1 = Frame::Array(vec![Frame::bulk("k1")]);
    assert_eq!(pushed(&mut a), vec![k1.clone()]);
    assert_eq!(pushed(&mut b), vec![k1]);

    // Promoted and attached again, it is a stranger to the primary's
    // history: a full sync.
    let mut r = replica.raw();
    ok(&mut r, &["REPLICAOF", "NO", "ONE"]);
    ok(
        &mut r,
        &["REPLICAOF", "127.0.0.1", &primary.port.to_string()],
    );
    eventually("a second full sync", || stat(&mut p, "sync_full") == 2);
    caught_up(&primary, &replica);
    assert_eq!(pushed(&mut a), vec![Frame::Null]);
    assert_eq!(pushed(&mut b), vec![Frame::Null]);
    assert_eq!(digest(&mut r), digest(&mut p));
}

/// A replica that stops reading leaves its primary's stream in an output
/// buffer. As in Redis, `maxmemory` does not count that buffer (nor log
/// records not yet written): evicting the data for it would only add
/// DELs to the same buffer, and the replica would come back to an emptied
/// primary. INFO memory shows the buffer where Redis does.
#[test]
fn a_lagging_replicas_buffer_does_not_make_its_primary_evict() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    let replica = replica_of(&primary, &[]);
    for i in 0..100 {
        ok(&mut p, &["SET", &format!("key:{i}"), "v"]);
    }
    caught_up(&primary, &replica);
    let stopped = Stopped::new(&replica);
    let memory = |p: &mut Raw, field: &str| -> u64 {
        info_field(&info(p, "memory"), field).parse().unwrap()
    };
    // 96 MB through the stopped replica's buffer; the data set stays the
    // same size (one key rewritten).
    let big = "x".repeat(1024 * 1024);
    for _ in 0..96 {
        ok(&mut p, &["SET", "big", &big]);
    }
    let buffered = memory(&mut p, "mem_clients_slaves");
    assert!(buffered > 48 * 1024 * 1024, "{buffered}");
    assert!(memory(&mut p, "mem_not_counted_for_evict") >= buffered);
    // A limit well under used_memory, and 16 MB over what it holds less
    // the buffer. (Taken from the figures after the burst: a limit taken
    // before it, over a baseline the full sync may still have inflated,
    // once ended above used_memory under the full parallel suite.)
    let used = memory(&mut p, "used_memory");
    let limit = used - buffered + 16 * 1024 * 1024;
    ok(&mut p, &["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    ok(
        &mut p,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-random"],
    );
    // More writes, each checked against the limit, with the buffer still
    // there.
    for _ in 0..16 {
        ok(&mut p, &["SET", "big", &big]);
    }
    let used = memory(&mut p, "used_memory");
    assert!(used > limit, "used {used}, limit {limit}");
    assert_eq!(
        stat(&mut p, "evicted_keys"),
        0,
        "limit {limit}: {}",
        info(&mut p, "memory")
    );
    assert_eq!(int(&mut p, &["DBSIZE"]), 101);
    drop(stopped);
    caught_up(&primary, &replica);
    assert_eq!(digest(&mut replica.raw()), digest(&mut p));
    // Once it caught up, the replica's buffers no longer hold the burst.
    eventually("the replica's buffers shrink", || {
        memory(&mut p, "mem_clients_slaves") < 4 * 1024 * 1024
    });
}

/// Waits until a node that ran FAILOVER follows the one that took over
/// (`port`), linked and done.
fn handed_over(old: &TestNode, port: u16) {
    let mut p = old.raw();
    eventually("the old primary follows the new one", || {
        let i = info(&mut p, "replication");
        info_field(&i, "role") == "slave"
            && info_field(&i, "master_port") == port.to_string()
            && info_field(&i, "master_link_status") == "up"
            && info_field(&i, "master_failover_state") == "no-failover"
    });
}

/// FAILOVER hands the primary's role to a replica, as Redis's does: the
/// named replica takes over once it has the whole stream, the old primary
/// follows it with a partial resync (no data lost, no full sync), and the
/// other replica follows through the old primary. The arguments and
/// states are checked with Redis's words.
#[test]
fn failover_hands_the_primary_role_to_a_replica() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    let a = replica_of(&primary, &[]);
    let b = replica_of(&primary, &[]);
    for i in 0..200 {
        ok(&mut p, &["SET", &format!("key:{i}"), &i.to_string()]);
    }
    assert_eq!(int(&mut p, &["RPUSH", "list", "x", "y"]), 2);
    caught_up(&primary, &a);
    caught_up(&primary, &b);
    let mut ra = a.raw();
    for (args, want) in [
        (vec!["FAILOVER", "ABORT"], "ERR No failover in progress."),
        (
            vec!["FAILOVER", "FORCE"],
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        ),
        (
            vec!["FAILOVER", "TO", "127.0.0.1", "1"],
            "ERR FAILOVER target HOST and PORT is not a replica.",
        ),
        (
            vec!["FAILOVER", "TIMEOUT", "0"],
            "ERR FAILOVER timeout must be greater than 0",
        ),
        (
            vec!["FAILOVER", "TIMEOUT", "x"],
            "ERR value is not an integer or out of range",
        ),
        (
            vec!["FAILOVER", "ABORT", "TIMEOUT", "10"],
            "ERR syntax error",
        ),
        (vec!["FAILOVER", "TO", "127.0.0.1"], "ERR syntax error"),
    ] {
        assert_eq!(p.call(&args), Frame::Error(want.into()), "{args:?}");
    }
    assert_eq!(
        ra.call(&["FAILOVER"]),
        Frame::Error("ERR FAILOVER is not valid when server is a replica.".into())
    );
    let a_port = a.port.to_string();
    ok(&mut p, &["FAILOVER", "TO", "127.0.0.1", &a_port]);
    eventually("the replica took over", || {
        info_field(&info(&mut ra, "replication"), "role") == "master"
    });
    handed_over(&primary, a.port);
    assert_eq!(stat(&mut ra, "sync_full"), 0, "nobody needed a full sync");
    assert!(stat(&mut ra, "sync_partial_ok") >= 1);
    assert!(err(&mut p, &["SET", "k", "v"]).starts_with("READONLY"));
    ok(&mut ra, &["SET", "after", "1"]);
    caught_up(&a, &primary);
    caught_up(&primary, &b);
    let want = digest(&mut ra);
    assert_eq!(digest(&mut p), want);
    assert_eq!(digest(&mut b.raw()), want);
    assert_eq!(bulk(&mut b.raw(), &["GET", "after"]).as_deref(), Some("1"));
}

/// While a FAILOVER waits for a replica, writes wait too (and go on once
/// it ends); one that cannot catch up before TIMEOUT, or FAILOVER ABORT,
/// leaves the primary as it was.
#[test]
fn a_failover_that_cannot_complete_leaves_the_primary_as_it_was() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    let replica = replica_of(&primary, &[]);
    ok(&mut p, &["SET", "k", "0"]);
    caught_up(&primary, &replica);
    let stopped = Stopped::new(&replica);
    ok(&mut p, &["FAILOVER", "TIMEOUT", "4000"]);
    assert_eq!(
        info_field(&info(&mut p, "replication"), "master_failover_state"),
        "waiting-for-sync"
    );
    assert_eq!(
        p.call(&["FAILOVER"]),
        Frame::Error("ERR FAILOVER already in progress.".into())
    );
    // A write waits for the failover's end; reads go on meanwhile.
    let mut writer = Raw::connect(primary.port);
    writer.cmd(&["INCR", "k"]);
    let watch_until = std::time::Instant::now() + std::time::Duration::from_millis(300);
    while std::time::Instant::now() < watch_until {
        assert_eq!(bulk(&mut p, &["GET", "k"]).as_deref(), Some("0"));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eventually("the failover timed out", || {
        info_field(&info(&mut p, "replication"), "master_failover_state") == "no-failover"
    });
    assert_eq!(writer.read2(), Frame::Int(1));
    assert_eq!(info_field(&info(&mut p, "replication"), "role"), "master");

    ok(&mut p, &["FAILOVER"]);
    ok(&mut p, &["FAILOVER", "ABORT"]);
    assert_eq!(
        info_field(&info(&mut p, "replication"), "master_failover_state"),
        "no-failover"
    );
    assert_eq!(int(&mut p, &["INCR", "k"]), 2);
    drop(stopped);
    caught_up(&primary, &replica);
    assert_eq!(digest(&mut replica.raw()), digest(&mut p));
}

/// FAILOVER ... FORCE hands over when the TIMEOUT passes even though the
/// target never acknowledged the stream (it was stopped throughout): the
/// old primary then follows the target's data, as in Redis.
#[test]
fn a_forced_failover_hands_over_without_the_targets_ack() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    let replica = replica_of(&primary, &[]);
    ok(&mut p, &["SET", "kept", "1"]);
    caught_up(&primary, &replica);
    let stopped = Stopped::new(&replica);
    ok(&mut p, &["SET", "unacknowledged", "1"]);
    let port = replica.port.to_string();
    ok(
        &mut p,
        &[
            "FAILOVER",
            "TO",
            "127.0.0.1",
            &port,
            "TIMEOUT",
            "200",
            "FORCE",
        ],
    );
    eventually("the primary hands over", || {
        info_field(&info(&mut p, "replication"), "master_failover_state") == "failover-in-progress"
    });
    drop(stopped);
    let mut r = replica.raw();
    handed_over(&primary, replica.port);
    assert_eq!(info_field(&info(&mut r, "replication"), "role"), "master");
    caught_up(&replica, &primary);
    assert_eq!(bulk(&mut p, &["GET", "kept"]).as_deref(), Some("1"));
    assert_eq!(digest(&mut p), digest(&mut r));
}

/// A sidecar follows a FAILOVER of its primary: the old primary answers a
/// forwarded write `-READONLY` (it did not run it), so the sidecar asks it
/// whom it follows now, follows that node (its own copy too), and sends
/// the write there. The application only sees OK, and reads its write.
#[test]
fn a_sidecar_follows_its_primary_through_a_failover() {
    let primary = TestNode::start();
    let other = replica_of(&primary, &[]);
    let sidecar = replica_of(
        &primary,
        &["--sidecar", "yes", "--sidecar-read-wait-ms", "30000"],
    );
    caught_up(&primary, &other);
    caught_up(&primary, &sidecar);
    let mut app = sidecar.raw();
    ok(&mut app, &["SET", "before", "1"]);
    let mut p = primary.raw();
    // A sidecar lives in an application's pod: it never takes over.
    assert_eq!(
        p.call(&["FAILOVER", "TO", "127.0.0.1", &sidecar.port.to_string()]),
        Frame::Error(
            "ERR FAILOVER target HOST and PORT is a sidecar, which never takes over.".into()
        )
    );
    let new_port = other.port.to_string();
    ok(&mut p, &["FAILOVER", "TO", "127.0.0.1", &new_port]);
    handed_over(&primary, other.port);
    // A pipelined transaction and a write, refused by the old primary (the
    // transaction whole), are sent again to the new one.
    let mut run = Vec::new();
    for cmd in [
        &[&b"MULTI"[..]][..],
        &[b"SET", b"after", b"2"],
        &[b"INCR", b"n"],
        &[b"EXEC"],
        &[b"INCR", b"n"],
    ] {
        run.extend(crate::support::encode(cmd));
    }
    app.send(&run);
    assert_eq!(app.read2(), Frame::Simple("OK".into()));
    assert_eq!(app.read2(), Frame::Simple("QUEUED".into()));
    assert_eq!(app.read2(), Frame::Simple("QUEUED".into()));
    assert_eq!(
        app.read2(),
        Frame::Array(vec![Frame::Simple("OK".into()), Frame::Int(1)])
    );
    assert_eq!(app.read2(), Frame::Int(2));
    assert_eq!(bulk(&mut app, &["GET", "after"]).as_deref(), Some("2"));
    assert_eq!(
        bulk(&mut other.raw(), &["GET", "after"]).as_deref(),
        Some("2")
    );
    assert_eq!(bulk(&mut app, &["GET", "before"]).as_deref(), Some("1"));
    let mut s = sidecar.raw();
    eventually("the sidecar's copy follows the new primary", || {
        let i = info(&mut s, "replication");
        info_field(&i, "master_port") == new_port && info_field(&i, "master_link_status") == "up"
    });
    caught_up(&other, &sidecar);
    assert_eq!(digest(&mut s), digest(&mut other.raw()));

    // WATCHes made before a handover stay with the old primary's link:
    // the transaction after them is not sent elsewhere, and runs nothing.
    ok(&mut app, &["WATCH", "w"]);
    caught_up(&other, &primary);
    ok(
        &mut other.raw(),
        &["FAILOVER", "TO", "127.0.0.1", &primary.port.to_string()],
    );
    handed_over(&other, primary.port);
    let mut tx = crate::support::encode(&[b"MULTI"]);
    tx.extend(crate::support::encode(&[b"SET", b"w", b"x"]));
    tx.extend(crate::support::encode(&[b"EXEC"]));
    app.send(&tx);
    assert_eq!(app.read2(), Frame::Simple("OK".into()));
    assert!(matches!(app.read2(), Frame::Error(e) if e.starts_with("READONLY")));
    assert!(matches!(app.read2(), Frame::Error(e) if e.starts_with("EXECABORT")));
    assert_eq!(p.call(&["EXISTS", "w"]), Frame::Int(0));
    // The next write follows the handover back.
    ok(&mut app, &["SET", "w", "y"]);
    assert_eq!(bulk(&mut p, &["GET", "w"]).as_deref(), Some("y"));

    // With only sidecars attached there is no one to hand over to.
    let lone = TestNode::start();
    let only_sidecar = replica_of(&lone, &["--sidecar", "yes"]);
    caught_up(&lone, &only_sidecar);
    assert_eq!(
        lone.raw().call(&["FAILOVER"]),
        Frame::Error("ERR FAILOVER requires connected replicas.".into())
    );
}

/// A FAILOVER in the middle of a write load of every type: writes wait
/// while the target catches up, then are refused by the old primary; the
/// target took over with everything the old primary had (a partial
/// resync only, and equal digests on all three nodes, so nothing
/// acknowledged was lost nor applied twice).
#[test]
fn a_failover_under_a_write_load_loses_nothing() {
    let primary = TestNode::start();
    let a = replica_of(&primary, &[]);
    let b = replica_of(&primary, &[]);
    caught_up(&primary, &a);
    caught_up(&primary, &b);
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&primary, 7, stop.clone());
    let mut p = primary.raw();
    eventually("the load is under way", || {
        stat(&mut p, "total_commands_processed") > 3000
    });
    ok(
        &mut p,
        &["FAILOVER", "TO", "127.0.0.1", &a.port.to_string()],
    );
    let mut ra = a.raw();
    handed_over(&primary, a.port);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(stat(&mut ra, "sync_full"), 0);
    caught_up(&a, &primary);
    caught_up(&primary, &b);
    // Keys written with PX 30 may still be live for one digest and gone
    // for the next: compare once they have all lapsed.
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    for r in [&primary, &b] {
        while digest(&mut r.raw()) != digest(&mut ra) {
            if std::time::Instant::now() > deadline {
                let diff = differences(&mut ra, &mut r.raw());
                panic!("node on port {} differs: {diff:?}", r.port);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A replica waiting its turn for a full sync (one runs at a time) hears
/// a newline a second from its primary, as Redis's replicas do, so its
/// handshake's repl-timeout does not give up on a busy primary.
#[test]
fn a_replica_waiting_for_a_full_sync_hears_newlines() {
    let primary = TestNode::start_with(&["--appendonly", "no"]);
    let mut p = primary.raw();
    // More than the sockets hold, so a full sync to a replica that does
    // not read stays under way (and keeps the turn).
    ok(&mut p, &["DEBUG", "POPULATE", "300000", "key", "64"]);
    let mut first = Raw::connect(primary.port);
    first.cmd(&["PSYNC", "?", "-1"]);
    eventually("the first full sync is under way", || {
        info(&mut p, "replication")
            .lines()
            .any(|l| l.starts_with("slave0:") && l.contains("state=send_bulk"))
    });
    let mut second = Raw::connect(primary.port);
    second.cmd(&["PSYNC", "?", "-1"]);
    assert_eq!(second.read_exact_bytes(2), b"\n\n");
    drop(first);
}

/// A primary that accepts the connection and never answers the handshake
/// is given up after repl-timeout and tried again, instead of holding the
/// link (and a FAILOVER waiting on it) for ever.
#[test]
fn a_silent_primary_is_given_up_after_repl_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let replica = TestNode::start_with(&["--replicaof", "127.0.0.1", &port, "--repl-timeout", "1"]);
    silent.set_nonblocking(true).unwrap();
    let mut accepted = Vec::new();
    // The second attempt comes once the first timed out (the first is
    // held open, silent).
    eventually("a second attempt", || {
        if let Ok((c, _)) = silent.accept() {
            accepted.push(c);
        }
        accepted.len() >= 2
    });
    let mut r = replica.raw();
    assert_eq!(
        info_field(&info(&mut r, "replication"), "master_link_status"),
        "down"
    );
}

/// A replica keeps its primary's data whatever its own `maxmemory`
/// (Redis's replica-ignore-maxmemory): reads on it evict nothing.
#[test]
fn a_replica_ignores_its_maxmemory() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    ok(&mut p, &["DEBUG", "POPULATE", "20000", "key", "100"]);
    let replica = replica_of(
        &primary,
        &["--maxmemory", "1mb", "--maxmemory-policy", "allkeys-lru"],
    );
    caught_up(&primary, &replica);
    let mut r = replica.raw();
    for i in 0..200 {
        bulk(&mut r, &["GET", &format!("key:{i}")]);
    }
    assert_eq!(int(&mut r, &["DBSIZE"]), 20_000);
    assert_eq!(stat(&mut r, "evicted_keys"), 0);
}

/// PSYNC with an offset that is no integer is an error, as in Redis: the
/// connection stays a client (it was turned into a replica's feed).
#[test]
fn psync_with_a_bad_offset_is_an_error() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(
        crate::err(&mut r, &["PSYNC", "?", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
}

/// DEBUG RELOAD and DEBUG LOADAOF on a replica while its primary writes:
/// the replica comes back with the same data and goes on applying (a
/// reload holds the applier's lock, then the gate, so that it falls
/// between two of the primary's commands, and its snapshot does not wait
/// for the applier again).
#[test]
fn a_replica_reloads_while_its_primary_writes() {
    let primary = TestNode::start();
    let replica = replica_of(&primary, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&primary, 7, stop.clone());
    let mut r = replica.raw();
    // The replica answers -LOADING while it takes in its first snapshot.
    eventually(
        "some data replicated",
        || matches!(r.call(&["DBSIZE"]), Frame::Int(n) if n > 10),
    );
    for _ in 0..3 {
        ok(&mut r, &["DEBUG", "RELOAD"]);
        ok(&mut r, &["DEBUG", "LOADAOF"]);
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    caught_up(&primary, &replica);
    // Keys past their time that the primary has not deleted yet are
    // still in its data; the reloads dropped them here: equal once the
    // primary's expiry deletes them.
    let mut p = primary.raw();
    eventually("the same data", || digest(&mut r) == digest(&mut p));
    assert!(differences(&mut p, &mut r).is_empty());
}

/// Sends SYNC (the command older than PSYNC) and reads what Redis sends
/// such a replica: no `+FULLRESYNC` line, newlines while the snapshot is
/// made, the snapshot as a bulk of known length. Returns the connection,
/// at the start of the stream that follows.
fn attach_with_sync<S: std::io::Read + std::io::Write>(mut r: Raw<S>) -> Raw<S> {
    r.cmd(&["SYNC"]);
    let mut line = Vec::new();
    loop {
        let b = r.read_exact_bytes(1)[0];
        if b == b'\n' && line.is_empty() {
            continue; // a keepalive
        }
        line.push(b);
        if line.ends_with(b"\r\n") {
            break;
        }
    }
    let line = String::from_utf8(line).unwrap();
    let len: usize = line
        .strip_prefix('$')
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("SYNC answered {line:?}, not a bulk length"));
    r.read_exact_bytes(len);
    r
}

/// The stream's commands up to and including `SET end 1` (or until the
/// connection closes), names in lower case, PINGs left out (each server
/// pings on its own clock).
fn stream_until_end<S: std::io::Read + std::io::Write>(r: &mut Raw<S>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    loop {
        let Some(Frame::Array(args)) = r.try_read2() else {
            return out;
        };
        let mut args: Vec<String> = args
            .into_iter()
            .map(|a| match a {
                Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect();
        args[0] = args[0].to_lowercase();
        if args[0] == "ping" {
            continue;
        }
        let end = args == ["set", "end", "1"];
        out.push(args);
        if end {
            return out;
        }
    }
}

/// A tool attached with SYNC (Redis's own test suite reads the stream so)
/// sees what Redis would send it: a SELECT before the first command; a
/// transaction or script with one effect unwrapped, one with more in
/// MULTI … EXEC, its SELECT before the MULTI; nothing for one that only
/// read; PUBLISH, SWAPDB and FLUSHALL in the client's database. Compared
/// with redis-server.
#[test]
fn a_sync_stream_reads_as_redis_sends_it() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let reference = crate::support::ReferenceRedis::start();
    fn steps<S: std::io::Read + std::io::Write>(mut c: Raw<S>, feed: Raw<S>) -> Vec<Vec<String>> {
        c.call(&["SET", "before", "1"]);
        c.call(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
        let mut feed = attach_with_sync(feed);
        for step in [
            &["SET", "foo", "bar"][..],
            &["MULTI"],
            &["SET", "foo", "bar2"],
            &["EXEC"],
            &["SELECT", "1"],
            &["MULTI"],
            &["SET", "a", "1"],
            &["INCR", "b"],
            &["EXEC"],
            &["MULTI"],
            &["GET", "a"],
            &["EXEC"],
            &["PUBLISH", "ch", "hello"],
            &["EVAL", "redis.call('set', KEYS[1], 'v')", "1", "k"],
            &[
                "EVAL",
                "redis.call('set', KEYS[1], 'v'); redis.call('del', KEYS[1])",
                "1",
                "k2",
            ],
            &["SELECT", "2"],
            &["SWAPDB", "1", "9"],
            &["FLUSHALL"],
            &["SELECT", "0"],
            &["SET", "end", "1"],
        ] {
            c.call(step);
        }
        stream_until_end(&mut feed)
    }
    let shoal = steps(node.raw(), node.raw());
    let redis = steps(reference.raw(), reference.raw());
    assert_eq!(shoal, redis);
    assert_eq!(shoal[0], ["select", "0"]);
}

/// A change that Redis sends its replicas as one command is one effect
/// here too: an XADD that trims (the trim in it, as the length it left;
/// its notifications still `xadd` then `xtrim`), and a MIGRATE's
/// deletions (one DEL of every key moved). The stream never holds the
/// stream grown but not yet trimmed, nor half of a move.
#[test]
fn a_trimming_xadd_and_a_migrate_are_one_effect_each() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let target = TestNode::start_with(&["--appendonly", "no"]);
    let mut c = node.raw();
    c.call(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    c.call(&["CONFIG", "SET", "notify-keyspace-events", "Et"]);
    let mut events = node.raw();
    events.call(&["SUBSCRIBE", "__keyevent@0__:xadd", "__keyevent@0__:xtrim"]);
    events.read2();
    let mut feed = attach_with_sync(node.raw());
    let port = target.port.to_string();
    for step in [
        &["XADD", "s", "1-0", "f", "v"][..],
        &["XADD", "s", "2-0", "f", "v"],
        &["XADD", "s", "MAXLEN", "1", "3-0", "f", "v"],
        &["XADD", "s", "MAXLEN", "9", "4-0", "f", "v"],
        &["MSET", "a", "1", "b", "2", "c", "3"],
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "0",
            "5000",
            "KEYS",
            "a",
            "b",
            "nosuch",
        ],
        &["SET", "end", "1"],
    ] {
        let reply = c.call(step);
        assert!(!matches!(reply, Frame::Error(_)), "{step:?}: {reply:?}");
    }
    let stream = stream_until_end(&mut feed);
    let want: Vec<Vec<&str>> = vec![
        vec!["select", "0"],
        vec!["xadd", "s", "1-0", "f", "v"],
        vec!["xadd", "s", "2-0", "f", "v"],
        vec!["xadd", "s", "MAXLEN", "1", "3-0", "f", "v"],
        vec!["xadd", "s", "4-0", "f", "v"],
        vec!["mset", "a", "1", "b", "2", "c", "3"],
        vec!["del", "a", "b"],
        vec!["set", "end", "1"],
    ];
    assert_eq!(stream, want);
    let told: Vec<String> = (0..5)
        .map(|_| match events.read2() {
            Frame::Array(m) => match &m[1] {
                Frame::Bulk(ch) => String::from_utf8_lossy(ch).into_owned(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<String> = ["xadd", "xadd", "xadd", "xtrim", "xadd"]
        .iter()
        .map(|e| format!("__keyevent@0__:{e}"))
        .collect();
    assert_eq!(told, want);
    let mut t = target.raw();
    assert_eq!(t.call(&["EXISTS", "a", "b", "c"]), Frame::Int(2));
}

/// A group read's effects (its claims, the group's position, a consumer
/// it made) reach the stream as one unit, in MULTI ... EXEC when more
/// than one, as Redis wraps them: XREADGROUP over one or two streams,
/// XCLAIM, XAUTOCLAIM; one effect alone stays unwrapped, a read that
/// delivered nothing records nothing. Inside a transaction they are part
/// of its unit. A replica applying the stream holds the same data.
#[test]
fn a_group_read_reaches_the_stream_as_one_unit() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let replica = TestNode::start_with(&["--appendonly", "no"]);
    let mut c = node.raw();
    c.call(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
    let mut feed = attach_with_sync(node.raw());
    for step in [
        &["XADD", "s", "1-0", "f", "v"][..],
        &["XADD", "s", "2-0", "f", "v"],
        &["XADD", "s", "3-0", "f", "v"],
        &["XGROUP", "CREATE", "s", "g", "0"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "s",
            ">",
        ],
        &["XADD", "s", "MAXLEN", "3", "4-0", "f", "v"],
        &["XCLAIM", "s", "g", "c2", "0", "3-0", "2-0"],
        &["XAUTOCLAIM", "s", "g", "c3", "0", "0-0"],
        &["XADD", "t", "1-0", "f", "v"],
        &["XGROUP", "CREATE", "t", "g", "0"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "1",
            "STREAMS",
            "s",
            "t",
            ">",
            ">",
        ],
        &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s", ">"],
        &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s", ">"],
        &["XGROUP", "SETID", "s", "g", "0"],
        &["MULTI"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c4",
            "COUNT",
            "1",
            "STREAMS",
            "s",
            ">",
        ],
        &["EXEC"],
        &["SET", "end", "1"],
    ] {
        let reply = c.call(step);
        assert!(!matches!(reply, Frame::Error(_)), "{step:?}: {reply:?}");
    }
    let stream = stream_until_end(&mut feed);
    let shape: Vec<String> = stream
        .iter()
        .map(|a| match a[0].as_str() {
            "xgroup" => format!("xgroup {}", a[1].to_lowercase()),
            "xclaim" => format!("xclaim {} {}", a[1], a[5]),
            _ => a[0].clone(),
        })
        .collect();
    let want = [
        "select",
        "xadd",
        "xadd",
        "xadd",
        "xgroup create",
        // XREADGROUP COUNT 2: its claims and the group's position.
        "multi",
        "xclaim s 1-0",
        "xclaim s 2-0",
        "xgroup setid",
        "exec",
        "xadd",
        // XCLAIM: its consumer made, then the one pending entry claimed.
        "multi",
        "xgroup createconsumer",
        "xclaim s 2-0",
        "exec",
        // XAUTOCLAIM: its consumer, the trimmed entry dropped, a claim.
        "multi",
        "xgroup createconsumer",
        "xclaim s 1-0",
        "xclaim s 2-0",
        "exec",
        "xadd",
        "xgroup create",
        // XREADGROUP of two streams: one unit.
        "multi",
        "xclaim s 3-0",
        "xgroup setid",
        "xclaim t 1-0",
        "xgroup setid",
        "exec",
        // The entry the XADD brought, then a read that found nothing.
        "multi",
        "xclaim s 4-0",
        "xgroup setid",
        "exec",
        "xgroup setid",
        // Inside EXEC: the transaction's unit (a consumer made, a claim, a
        // position), wrapped once.
        "multi",
        "xclaim s 2-0",
        "xgroup setid",
        "exec",
        "set",
    ];
    assert_eq!(shape, want, "{stream:?}");

    // A replica of the same data, fed the same stream, digests the same.
    let mut r = replica.raw();
    r.call(&["REPLICAOF", "127.0.0.1", &node.port.to_string()]);
    crate::support::eventually("the replica holds the data", || {
        let mut r = replica.raw();
        let mut p = node.raw();
        r.call(&["DEBUG", "DIGEST"]) == p.call(&["DEBUG", "DIGEST"])
            && r.call(&["EXISTS", "end"]) == Frame::Int(1)
    });
}

/// SYNC's temporary file is gone once the snapshot is sent, and one a
/// killed node left behind is removed when it starts again.
#[test]
fn sync_files_do_not_stay() {
    let mut node = TestNode::start_with(&["--appendonly", "no"]);
    let sync_files = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("temp-sync-"))
            .collect()
    };
    let mut c = node.raw();
    ok(&mut c, &["SET", "k", "v"]);
    let _feed = attach_with_sync(node.raw());
    // Removed just after its last byte went out.
    eventually("the sync file removed", || {
        sync_files(&node.data_dir()).is_empty()
    });
    node.crash();
    let dir = node.data_dir();
    std::fs::write(dir.join("temp-sync-1-0123abcd.shoal"), b"half a snapshot").unwrap();
    std::fs::write(dir.join("temp-sync-notes.txt"), b"not ours").unwrap();
    node.restart(&[]).unwrap();
    assert_eq!(sync_files(&dir), ["temp-sync-notes.txt"]);
    assert_eq!(
        bulk(&mut node.raw(), &["PING", "up"]).as_deref(),
        Some("up")
    );
}

/// A reader attached with SYNC never acknowledges; as in Redis it is not
/// dropped for that after repl-timeout, and goes on hearing writes.
#[test]
fn a_sync_reader_is_not_dropped_for_its_silence() {
    let node = TestNode::start_with(&["--appendonly", "no", "--repl-timeout", "1"]);
    let mut c = node.raw();
    let mut feed = attach_with_sync(node.raw());
    // Three times repl-timeout: a replica silent that long is gone.
    std::thread::sleep(std::time::Duration::from_secs(3));
    ok(&mut c, &["SET", "end", "1"]);
    assert_eq!(
        stream_until_end(&mut feed),
        [vec!["select", "0"], vec!["set", "end", "1"]]
    );
}

/// SCAN deletes the expired keys it meets, recording their DELs one by
/// one (no MULTI), as Redis's does; compared with redis-server. On a
/// replica, RANDOMKEY and SCAN pass expired keys over and leave them for
/// the primary's DEL (they deleted them there).
#[test]
fn scan_deletes_expired_keys_as_redis_and_replicas_keep_them() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let reference = crate::support::ReferenceRedis::start();
    fn steps<S: std::io::Read + std::io::Write>(mut c: Raw<S>, feed: Raw<S>) -> Vec<Vec<String>> {
        c.call(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
        c.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
        c.call(&["SET", "foo1", "bar", "PX", "1"]);
        c.call(&["SET", "foo2", "bar", "PX", "1"]);
        // Past their time (nothing reads them, which would delete them).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut feed = attach_with_sync(feed);
        c.call(&["SCAN", "0"]);
        c.call(&["SET", "end", "1"]);
        c.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
        let mut stream = stream_until_end(&mut feed);
        stream[1..3].sort();
        stream
    }
    let shoal = steps(node.raw(), node.raw());
    let redis = steps(reference.raw(), reference.raw());
    assert_eq!(shoal, redis);
    assert_eq!(shoal[1], ["del", "foo1"]);

    let primary = TestNode::start_with(&["--appendonly", "no"]);
    let replica = replica_of(&primary, &[]);
    let mut p = primary.raw();
    ok(&mut p, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    ok(&mut p, &["SET", "gone1", "v", "PX", "1"]);
    ok(&mut p, &["SET", "gone2", "v", "PX", "1"]);
    caught_up(&primary, &replica);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut r = replica.raw();
    assert_eq!(r.call(&["RANDOMKEY"]), Frame::Null);
    assert_eq!(
        r.call(&["SCAN", "0", "COUNT", "1000"]),
        Frame::Array(vec![Frame::bulk("0"), Frame::Array(vec![])])
    );
    assert_eq!(int(&mut r, &["DBSIZE"]), 2);
}

/// RESTORE is recorded as Redis records it (as it came, a relative TTL
/// made absolute, no DEL of a replaced key) and announces `restore`
/// alone, or `del` when the restored key is already expired. Compared
/// with redis-server: stream (TTLs and payloads masked) and events.
#[test]
fn restore_is_recorded_and_announced_as_in_redis() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let reference = crate::support::ReferenceRedis::start();
    fn steps<S: std::io::Read + std::io::Write>(
        mut c: Raw<S>,
        feed: Raw<S>,
        mut sub: Raw<S>,
    ) -> (Vec<Vec<String>>, Vec<Frame>) {
        c.call(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
        c.call(&["SET", "k", "v"]);
        let Frame::Bulk(payload) = c.call(&["DUMP", "k"]) else {
            panic!("DUMP gives a bulk");
        };
        let later = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 100_000)
            .to_string();
        let mut feed = attach_with_sync(feed);
        sub.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
        let p = payload.as_slice();
        for step in [
            &[&b"RESTORE"[..], b"k", b"0", p, b"REPLACE"][..],
            &[b"RESTORE", b"k2", b"100000", p],
            &[
                b"RESTORE",
                b"k3",
                later.as_bytes(),
                p,
                b"absttl",
                b"IDLETIME",
                b"5",
            ],
            &[b"RESTORE", b"k4", b"0", p, b"REPLACE"],
            &[b"RESTORE", b"k", b"1", p, b"ABSTTL", b"REPLACE"],
            &[b"SET", b"end", b"1"],
        ] {
            c.send(&crate::support::encode(step));
            assert!(matches!(c.read2(), Frame::Simple(_)), "{step:?}");
        }
        let mut stream = stream_until_end(&mut feed);
        for cmd in &mut stream {
            if cmd[0] == "restore" {
                if cmd[2] != "0" {
                    cmd[2] = "*".into();
                }
                cmd[3] = "*".into();
            }
        }
        let mut events = Vec::new();
        loop {
            let Frame::Array(m) = sub.read2() else {
                panic!()
            };
            let end = m[3] == Frame::bulk("end");
            events.push(Frame::Array(m[2..].to_vec()));
            if end {
                return (stream, events);
            }
        }
    }
    let shoal = steps(node.raw(), node.raw(), node.raw());
    let redis = steps(reference.raw(), reference.raw(), reference.raw());
    assert_eq!(shoal, redis);
    assert_eq!(shoal.0[1], ["restore", "k", "0", "*", "REPLACE"]);
}

/// A consumer XREADGROUP creates is recorded as such only where no XCLAIM
/// creates it on replicas: a read that delivered entries records just
/// its XCLAIMs, as Redis does; a NOACK read records the consumer.
#[test]
fn a_new_consumer_is_recorded_once() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let replica = replica_of(&node, &[]);
    caught_up(&node, &replica);
    let mut c = node.raw();
    let mut feed = attach_with_sync(node.raw());
    for step in [
        &["XADD", "s", "1-1", "f", "v"][..],
        &["XADD", "s", "1-2", "f", "v"],
        &["XGROUP", "CREATE", "s", "g", "0"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "s",
            ">",
        ],
        &["XADD", "s", "1-3", "f", "v"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c2",
            "NOACK",
            "STREAMS",
            "s",
            ">",
        ],
        &["SET", "end", "1"],
    ] {
        c.call(step);
    }
    let stream = stream_until_end(&mut feed);
    let created: Vec<&String> = stream
        .iter()
        .filter(|c| c[0] == "xgroup" && c[1] == "CREATECONSUMER")
        .map(|c| &c[4])
        .collect();
    assert_eq!(created, ["c2"], "{stream:?}");
    let claims = stream.iter().filter(|c| c[0] == "xclaim" && c[3] == "c1");
    assert_eq!(claims.count(), 2, "{stream:?}");
    // A replica that applied the stream has both consumers.
    caught_up(&node, &replica);
    let mut r = replica.raw();
    let Frame::Array(consumers) = r.call(&["XINFO", "CONSUMERS", "s", "g"]) else {
        panic!()
    };
    assert_eq!(consumers.len(), 2);
}

/// REPLICAOF inside a transaction (allowed, as in Redis): the node turns
/// replica half-way, the commands after it still run, and the replicas
/// attached hear nothing of the transaction (one effect, held until the
/// end of the unit, is dropped once the node is a replica); a write after
/// EXEC is refused. Compared with redis-server, replies and stream.
#[test]
fn replicaof_inside_a_transaction_is_as_in_redis() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let reference = crate::support::ReferenceRedis::start();
    fn steps<S: std::io::Read + std::io::Write>(
        mut c: Raw<S>,
        feed: Raw<S>,
    ) -> (Vec<Frame>, Vec<Vec<String>>) {
        c.call(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
        let mut feed = attach_with_sync(feed);
        let mut replies = Vec::new();
        for step in [
            &["SET", "foo", "bar"][..],
            &["MULTI"],
            &["SET", "foo2", "bar"],
            &["REPLICAOF", "localhost", "0"],
            &["SET", "foo3", "bar"],
            &["EXEC"],
            &["SET", "foo4", "bar"],
            &["GET", "foo3"],
            &["REPLICAOF", "NO", "ONE"],
            &["SET", "end", "1"],
        ] {
            replies.push(c.call(step));
        }
        (replies, stream_until_end(&mut feed))
    }
    let (shoal, shoal_stream) = steps(node.raw(), node.raw());
    let (redis, redis_stream) = steps(reference.raw(), reference.raw());
    assert_eq!(shoal, redis);
    // Both drop their replicas at REPLICAOF NO ONE (a new replication
    // id), before the next write.
    assert_eq!(shoal_stream, redis_stream);
    assert_eq!(
        shoal_stream,
        [vec!["select", "0"], vec!["set", "foo", "bar"]]
    );
}

/// An EXEC on a replica whose link is down, with replica-serve-stale-data
/// no, is judged by what it queued: a GET queued before the link went
/// makes it fail whole, as Redis's. REPLICAOF takes port 0 as Redis does.
#[test]
fn exec_of_stale_reads_is_aborted_as_in_redis() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let reference = crate::support::ReferenceRedis::start();
    fn steps<S: std::io::Read + std::io::Write>(mut c: Raw<S>, mut other: Raw<S>) -> Vec<Frame> {
        let mut out = Vec::new();
        for step in [
            &["CONFIG", "SET", "replica-serve-stale-data", "no"][..],
            &["SET", "xx", "1"],
            &["MULTI"],
            &["GET", "xx"],
        ] {
            out.push(c.call(step));
        }
        out.push(other.call(&["REPLICAOF", "localhost", "0"]));
        out.push(c.call(&["EXEC"]));
        out.push(c.call(&["MULTI"]));
        out.push(other.call(&["REPLICAOF", "NO", "ONE"]));
        out.push(c.call(&["GET", "xx"]));
        out.push(c.call(&["EXEC"]));
        out
    }
    let shoal = steps(node.raw(), node.raw());
    let redis = steps(reference.raw(), reference.raw());
    assert_eq!(shoal, redis);
    assert!(
        matches!(&shoal[5], Frame::Error(e) if e.starts_with("EXECABORT") && e.contains("MASTERDOWN")),
        "{shoal:?}"
    );
}

/// A sidecar checks its own ACL users before it forwards, but its
/// primary runs a forwarded script's calls as the sidecar's link user: a
/// user limited to some keys could reach others there. So a limited
/// user's EVAL, EVALSHA and FCALL are refused on a sidecar (in MULTI too,
/// failing the transaction), EVAL_RO runs here under the user's rules,
/// and the default user's scripts are forwarded as before.
#[test]
fn a_sidecar_refuses_the_scripts_of_a_limited_user() {
    let primary = TestNode::start();
    let mut p = primary.raw();
    ok(&mut p, &["SET", "secret", "s"]);
    let (sidecar, mut s) = ready_sidecar(&primary, &[]);
    ok(
        &mut s,
        &["ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all"],
    );
    let mut app = sidecar.raw();
    ok(&mut app, &["AUTH", "app", "pw"]);
    let script = "return redis.call('get', 'secret')";
    let e = err(&mut app, &["EVAL", script, "0"]);
    assert!(
        e.starts_with("NOPERM a script of a user with limited permissions"),
        "{e}"
    );
    assert!(err(&mut app, &["FCALL", "f", "0"]).starts_with("NOPERM"));
    // Read-only scripts run here, under the user's rules.
    let e = err(&mut app, &["EVAL_RO", script, "0"]);
    assert!(e.contains("can't access at least one of the keys"), "{e}");
    // Inside MULTI the refusal fails the transaction.
    ok(&mut app, &["MULTI"]);
    assert!(err(&mut app, &["EVAL", script, "0"]).starts_with("NOPERM"));
    assert!(err(&mut app, &["EXEC"]).starts_with("EXECABORT"));
    // Writes the user may make are forwarded as before.
    ok(&mut app, &["SET", "app:1", "v"]);
    assert_eq!(bulk(&mut p, &["GET", "app:1"]).as_deref(), Some("v"));
    // The default user's scripts are forwarded.
    assert_eq!(bulk(&mut s, &["EVAL", script, "0"]).as_deref(), Some("s"));
}
