//! Blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN,
//! BZPOPMAX, BZMPOP) across several clients: wake-up by another client's
//! write, first come first served, timeouts, CLIENT UNBLOCK, and no
//! blocking inside a transaction.

use std::thread::JoinHandle;

use crate::support::{eventually, Frame, Raw, TestNode};
use crate::{bulk, err, info_field, int, ok};

pub(crate) fn blocked_clients(r: &mut Raw) -> usize {
    let info = bulk(r, &["INFO", "clients"]).unwrap();
    info_field(&info, "blocked_clients").parse().unwrap()
}

/// Starts `args` on a new connection in a thread; returns once the server
/// counts `expect_blocked` blocked clients.
pub(crate) fn blocked(
    node: &TestNode,
    watcher: &mut Raw,
    args: &[&str],
    expect_blocked: usize,
) -> JoinHandle<Frame> {
    let mut c = node.raw();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let h = std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        c.call(&a)
    });
    eventually("client blocked", || {
        blocked_clients(watcher) == expect_blocked
    });
    h
}

fn arr(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| Frame::bulk(s)).collect())
}

#[test]
fn a_push_from_another_client_wakes_the_blocked_one() {
    let node = TestNode::start();
    let mut r = node.raw();
    let waiting = blocked(&node, &mut r, &["BLPOP", "q1", "q2", "0"], 1);
    assert_eq!(int(&mut r, &["RPUSH", "q2", "job"]), 1);
    assert_eq!(waiting.join().unwrap(), arr(&["q2", "job"]));
    assert_eq!(int(&mut r, &["EXISTS", "q2"]), 0, "the popped list is gone");
    assert_eq!(blocked_clients(&mut r), 0);

    // Data already there: no blocking at all.
    int(&mut r, &["RPUSH", "q1", "a", "b"]);
    assert_eq!(r.call(&["BRPOP", "q1", "0"]), arr(&["q1", "b"]));
}

#[test]
fn clients_blocked_on_a_key_are_served_first_come_first_served() {
    let node = TestNode::start();
    let mut r = node.raw();
    let first = blocked(&node, &mut r, &["BLPOP", "q", "0"], 1);
    let second = blocked(&node, &mut r, &["BLPOP", "q", "0"], 2);
    let third = blocked(&node, &mut r, &["BLPOP", "q", "0"], 3);
    int(&mut r, &["RPUSH", "q", "a", "b"]);
    assert_eq!(first.join().unwrap(), arr(&["q", "a"]));
    assert_eq!(second.join().unwrap(), arr(&["q", "b"]));
    assert_eq!(blocked_clients(&mut r), 1, "the third still waits");
    int(&mut r, &["LPUSH", "q", "c"]);
    assert_eq!(third.join().unwrap(), arr(&["q", "c"]));
}

#[test]
fn moves_and_sorted_set_pops_block_too() {
    let node = TestNode::start();
    let mut r = node.raw();
    let mover = blocked(
        &node,
        &mut r,
        &["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"],
        1,
    );
    int(&mut r, &["RPUSH", "src", "x"]);
    assert_eq!(mover.join().unwrap(), Frame::bulk("x"));
    assert_eq!(
        r.call(&["LRANGE", "dst", "0", "-1"]),
        arr(&["x"]),
        "moved as one step"
    );

    let z = blocked(&node, &mut r, &["BZPOPMIN", "z", "0"], 1);
    int(&mut r, &["ZADD", "z", "2", "b", "1", "a"]);
    assert_eq!(
        z.join().unwrap(),
        Frame::Array(vec![Frame::bulk("z"), Frame::bulk("a"), Frame::bulk("1")])
    );
    let zm = blocked(&node, &mut r, &["BZMPOP", "0", "1", "z2", "MAX"], 1);
    int(&mut r, &["ZADD", "z2", "5", "m"]);
    assert_eq!(
        zm.join().unwrap(),
        Frame::Array(vec![
            Frame::bulk("z2"),
            Frame::Array(vec![Frame::Array(vec![Frame::bulk("m"), Frame::bulk("5")])])
        ])
    );
    let lm = blocked(
        &node,
        &mut r,
        &["BLMPOP", "0", "2", "l1", "l2", "RIGHT", "COUNT", "2"],
        1,
    );
    int(&mut r, &["RPUSH", "l2", "a", "b", "c"]);
    assert_eq!(
        lm.join().unwrap(),
        Frame::Array(vec![Frame::bulk("l2"), arr(&["c", "b"])])
    );
    let old = blocked(&node, &mut r, &["BRPOPLPUSH", "s2", "d2", "0"], 1);
    int(&mut r, &["RPUSH", "s2", "y"]);
    assert_eq!(old.join().unwrap(), Frame::bulk("y"));
}

#[test]
fn timeouts_unblock_and_transactions() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(r.call(&["BLPOP", "none", "0.05"]), Frame::Null);
    assert_eq!(
        r.call(&["BLMOVE", "none", "d", "LEFT", "LEFT", "0.01"]),
        Frame::Null
    );
    assert_eq!(
        err(&mut r, &["BLPOP", "k", "-1"]),
        "ERR timeout is negative"
    );
    assert_eq!(
        err(&mut r, &["BLPOP", "k", "abc"]),
        "ERR timeout is not a float or out of range"
    );

    // Inside MULTI a blocking command does not block.
    ok(&mut r, &["MULTI"]);
    r.call(&["BLPOP", "none", "0"]);
    assert_eq!(r.call(&["EXEC"]), Frame::Array(vec![Frame::Null]));

    let mut ids = node.raw();
    let waiting = blocked(&node, &mut r, &["BLPOP", "none", "0"], 1);
    let id = client_id_of_blocked(&mut ids);
    assert_eq!(int(&mut r, &["CLIENT", "UNBLOCK", &id.to_string()]), 1);
    assert_eq!(waiting.join().unwrap(), Frame::Null);
    let waiting = blocked(&node, &mut r, &["BZPOPMAX", "none", "0"], 1);
    let id = client_id_of_blocked(&mut ids);
    assert_eq!(
        int(&mut r, &["CLIENT", "UNBLOCK", &id.to_string(), "ERROR"]),
        1
    );
    assert_eq!(
        waiting.join().unwrap(),
        Frame::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
    );
    assert_eq!(int(&mut r, &["CLIENT", "UNBLOCK", "999999"]), 0);
}

/// A client that hangs up while blocked is gone at once, as in Redis: the
/// next push stays in the list instead of being popped for nobody. What a
/// blocked client sends meanwhile is kept and run after its wait, a
/// request cut in two by the wait included.
#[test]
fn a_client_that_hangs_up_while_blocked_takes_nothing() {
    let node = TestNode::start();
    let mut r = node.raw();
    let mut gone = node.raw();
    gone.cmd(&["BLPOP", "jobs", "0"]);
    eventually("client blocked", || blocked_clients(&mut r) == 1);
    drop(gone);
    eventually("hang-up noticed", || blocked_clients(&mut r) == 0);
    assert_eq!(int(&mut r, &["RPUSH", "jobs", "j1"]), 1);
    assert_eq!(int(&mut r, &["LLEN", "jobs"]), 1, "nobody took the job");

    let mut c = node.raw();
    c.send(b"*3\r\n$5\r\nBLPOP\r\n$4\r\nnone\r\n$1\r\n0\r\n*2\r\n$4\r\nLLEN\r\n$4\r\njo");
    eventually("client blocked", || blocked_clients(&mut r) == 1);
    let held = |r: &mut Raw| -> usize {
        let list = bulk(r, &["CLIENT", "LIST"]).unwrap();
        let line = list.lines().find(|l| l.contains("cmd=blpop")).unwrap();
        let q = line.split(' ').find_map(|f| f.strip_prefix("qbuf="));
        q.unwrap().parse().unwrap()
    };
    let before = held(&mut r);
    let rest = b"bs\r\n*1\r\n$4\r\nPING\r\n";
    c.send(rest);
    // Read while blocked (CLIENT LIST's qbuf), run once the wait ends.
    eventually("request read while blocked", || {
        held(&mut r) == before + rest.len()
    });
    assert_eq!(int(&mut r, &["RPUSH", "none", "x"]), 1);
    assert_eq!(c.read2(), arr(&["none", "x"]));
    assert_eq!(c.read2(), Frame::Int(1));
    assert_eq!(c.read2(), Frame::Simple("PONG".into()));
}

/// DEBUG SLEEP stops the whole node, as in Redis, inside a transaction
/// too (Redis's "MULTI + LPUSH + EXPIRE + DEBUG SLEEP on blocked client"):
/// the key the transaction pushed, given 100 ms to live, has expired when
/// the transaction ends 200 ms later, and its waiter is not served.
#[test]
fn debug_sleep_in_a_transaction_stops_the_node() {
    let node = TestNode::start();
    let mut r = node.raw();
    let waiting = blocked(&node, &mut r, &["BLPOP", "q", "1"], 1);
    ok(&mut r, &["MULTI"]);
    for c in [
        &["LPUSH", "q", "v"][..],
        &["PEXPIRE", "q", "100"],
        &["DEBUG", "SLEEP", "0.2"],
    ] {
        assert_eq!(r.call(c), Frame::Simple("QUEUED".into()));
    }
    assert_eq!(
        r.call(&["EXEC"]),
        Frame::Array(vec![
            Frame::Int(1),
            Frame::Int(1),
            Frame::Simple("OK".into())
        ])
    );
    assert_eq!(
        waiting.join().unwrap(),
        Frame::Null,
        "expired before served"
    );
    assert_eq!(int(&mut r, &["EXISTS", "q"]), 0);
}

/// The id of the (one) client whose last command is a blocking one.
pub(crate) fn client_id_of_blocked(r: &mut Raw) -> u64 {
    let list = bulk(r, &["CLIENT", "LIST"]).unwrap();
    list.lines()
        .find(|l| l.contains("cmd=blpop") || l.contains("cmd=bzpopmax"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .unwrap_or_else(|| panic!("no blocked client in {list}"))
        .parse()
        .unwrap()
}

#[test]
fn a_blocked_pop_is_logged_as_a_pop() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    let waiting = blocked(&node, &mut r, &["BLPOP", "q", "0"], 1);
    int(&mut r, &["RPUSH", "q", "one", "two"]);
    assert_eq!(waiting.join().unwrap(), arr(&["q", "one"]));
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(r.call(&["LRANGE", "q", "0", "-1"]), arr(&["two"]));
}

/// A key that holds another type when its waiters are woken leaves them
/// waiting, as in Redis (a waiter is served only from a key of the type
/// it waits for), where a wrong type on the first attempt is an error; a
/// group reader whose stream is gone is told so. The retries are one call
/// in INFO commandstats.
#[test]
fn a_key_of_another_type_keeps_its_waiters_waiting() {
    let node = TestNode::start();
    let mut r = node.raw();
    let replace = |r: &mut Raw, key: &str, fill: &[&str]| {
        ok(r, &["MULTI"]);
        r.call(fill);
        r.call(&["DEL", key]);
        r.call(&["SET", key, "foo"]);
        r.call(&["EXEC"]);
    };

    let waiting = blocked(&node, &mut r, &["BLPOP", "l", "0"], 1);
    replace(&mut r, "l", &["LPUSH", "l", "a"]);
    assert_eq!(blocked_clients(&mut r), 1);
    int(&mut r, &["DEL", "l"]);
    int(&mut r, &["LPUSH", "l", "b"]);
    assert_eq!(waiting.join().unwrap(), arr(&["l", "b"]));

    let waiting = blocked(&node, &mut r, &["BZPOPMIN", "z", "0"], 1);
    replace(&mut r, "z", &["ZADD", "z", "1", "a"]);
    assert_eq!(blocked_clients(&mut r), 1);
    int(&mut r, &["DEL", "z"]);
    int(&mut r, &["ZADD", "z", "2", "b"]);
    assert_eq!(waiting.join().unwrap(), arr(&["z", "b", "2"]));

    let waiting = blocked(
        &node,
        &mut r,
        &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
        1,
    );
    replace(&mut r, "s", &["XADD", "s", "5-1", "f", "v"]);
    assert_eq!(blocked_clients(&mut r), 1);
    int(&mut r, &["DEL", "s"]);
    r.call(&["XADD", "s", "7-1", "g", "w"]);
    let entry = Frame::Array(vec![Frame::bulk("7-1"), arr(&["g", "w"])]);
    let stream = Frame::Array(vec![Frame::bulk("s"), Frame::Array(vec![entry])]);
    assert_eq!(waiting.join().unwrap(), Frame::Array(vec![stream]));

    // The first attempt still fails on a key of another type, a missing
    // one before it or not.
    for keys in [&["s"][..], &["missing", "s"]] {
        let mut args = vec!["BLPOP"];
        args.extend(keys);
        args.push("0");
        assert_eq!(
            err(&mut r, &args),
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        );
    }

    for gone in [&["SET", "g", "x"][..], &["DEL", "g"]] {
        r.call(&["DEL", "g"]);
        ok(&mut r, &["XGROUP", "CREATE", "g", "grp", "$", "MKSTREAM"]);
        let args = [
            "XREADGROUP",
            "GROUP",
            "grp",
            "c",
            "BLOCK",
            "0",
            "STREAMS",
            "g",
            ">",
        ];
        let waiting = blocked(&node, &mut r, &args, 1);
        r.call(gone);
        assert_eq!(
            waiting.join().unwrap(),
            Frame::Error("UNBLOCKED the stream key no longer exists".into())
        );
    }

    let stats = bulk(&mut r, &["INFO", "commandstats"]).unwrap();
    for (cmd, calls) in [
        ("blpop", 3),
        ("bzpopmin", 1),
        ("xread", 1),
        ("xreadgroup", 2),
    ] {
        let line = stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .unwrap_or_else(|| panic!("no {cmd} in {stats}"));
        assert!(line.contains(&format!(":calls={calls},")), "{line}");
    }
}
