use crate::support::{eventually, Frame, TestNode};
use crate::{bulk, info_field, int, ok};

fn info_expired(r: &mut crate::support::Raw) -> u64 {
    info_field(&bulk(r, &["INFO", "stats"]).unwrap(), "expired_keys")
        .parse()
        .unwrap()
}

#[test]
fn lazy_expiry_on_access() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    ok(&mut r, &["SET", "k", "v", "PX", "50"]);
    eventually("key expired on access", || {
        r.call(&["GET", "k"]) == Frame::Null
    });
    assert_eq!(info_expired(&mut r), 1);
    assert_eq!(int(&mut r, &["TTL", "k"]), -2);
}

/// DEBUG PAUSE-CRON 1 stops the cron's work, active expiry included,
/// until PAUSE-CRON 0.
#[test]
fn a_paused_cron_leaves_expired_keys_alone() {
    let node = TestNode::start_with(&["--hz", "100"]);
    let mut r = node.raw();
    ok(&mut r, &["DEBUG", "PAUSE-CRON", "1"]);
    ok(&mut r, &["SET", "k", "v", "PX", "1"]);
    // Some thirty ticks go by; DBSIZE does not expire keys.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(int(&mut r, &["DBSIZE"]), 1);
    assert_eq!(info_expired(&mut r), 0);
    ok(&mut r, &["DEBUG", "PAUSE-CRON", "0"]);
    eventually("the cron expired k", || int(&mut r, &["DBSIZE"]) == 0);
    assert_eq!(info_expired(&mut r), 1);
}

#[test]
fn active_expiry_removes_unread_keys() {
    let node = TestNode::start();
    let mut con = node.conn();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET")
            .arg(format!("tmp:{i}"))
            .arg("v")
            .arg("PX")
            .arg(100)
            .ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("keep:{i}")).arg("v").ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    // Nobody reads the tmp keys; the cycle must remove them by itself.
    let mut r = node.raw();
    eventually("expired keys collected", || info_expired(&mut r) == 5000);
    assert_eq!(int(&mut r, &["DBSIZE"]), 100);
    let info = bulk(&mut r, &["INFO", "keyspace"]).unwrap();
    assert!(info.contains("db0:keys=100,expires=0"), "{info}");
}

/// The cycle samples, as Redis's: keys far from their expiry among keys
/// that expire are still all found in time (the rounds go on while they
/// find expired keys, and the cursor moves on every tick), spread over
/// the slots or all in one, and the sampled TTLs give INFO keyspace's
/// avg_ttl.
#[test]
fn active_expiry_finds_expired_keys_among_long_lived_ones() {
    let node = TestNode::start_with(&["--hz", "100", "--active-expire-effort", "3"]);
    let mut con = node.conn();
    let mut pipe = redis::pipe();
    // Spread over the slots, and the same under one hash tag: one slot
    // table, sampled in rounds too.
    for prefix in ["k:", "{tag}:"] {
        for i in 0..4000 {
            let ttl = if i % 2 == 0 {
                ("PX", 200)
            } else {
                ("EX", 1000)
            };
            pipe.cmd("SET")
                .arg(format!("{prefix}{i}"))
                .arg("v")
                .arg(ttl.0)
                .arg(ttl.1)
                .ignore();
        }
    }
    let _: () = pipe.query(&mut con).unwrap();
    let mut r = node.raw();
    eventually("short-lived keys collected", || {
        info_expired(&mut r) == 4000
    });
    assert_eq!(int(&mut r, &["DBSIZE"]), 4000);
    let avg_ttl = |r: &mut crate::support::Raw| -> i64 {
        let db0 = info_field(&bulk(r, &["INFO", "keyspace"]).unwrap(), "db0");
        let (_, ttl) = db0.split_once("avg_ttl=").unwrap();
        ttl.parse().unwrap()
    };
    eventually("avg_ttl sampled", || {
        (900_000..=1_000_000).contains(&avg_ttl(&mut r))
    });
    ok(&mut r, &["FLUSHALL"]);
    ok(&mut r, &["SET", "k", "v"]);
    eventually("avg_ttl without volatile keys", || avg_ttl(&mut r) == 0);
}

#[test]
fn expired_keys_are_invisible_everywhere() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    ok(&mut r, &["SET", "gone", "v", "PX", "1"]);
    ok(&mut r, &["SET", "here", "v"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(int(&mut r, &["EXISTS", "gone"]), 0);
    assert_eq!(
        r.call(&["KEYS", "*"]),
        Frame::Array(vec![Frame::bulk("here")])
    );
    assert_eq!(r.call(&["MGET", "gone"]), Frame::Array(vec![Frame::Null]));
    assert_eq!(
        r.call(&["SET", "gone", "new", "NX"]),
        Frame::Simple("OK".into())
    );
}

/// Keys set to expire at the end of time (PXAT takes up to i64::MAX) are
/// sampled like any other: their remaining times, in one table (one hash
/// tag), add up without overflowing, and INFO keyspace reports an average.
#[test]
fn expiry_times_at_the_end_of_time_are_sampled() {
    let node = TestNode::start_with(&["--hz", "100"]);
    let mut r = node.raw();
    for k in ["{t}a", "{t}b", "{t}c"] {
        ok(&mut r, &["SET", k, "v", "PXAT", "9223372036854775000"]);
    }
    eventually("avg_ttl sampled", || {
        let db0 = info_field(&bulk(&mut r, &["INFO", "keyspace"]).unwrap(), "db0");
        db0.split_once("avg_ttl=").is_some_and(|(_, t)| t != "0")
    });
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
}

/// A command, a transaction or a script that waited for a script (which
/// holds every other command off) reads the clock when it runs, not when
/// it arrived: a key that expired while the script ran is gone, as in
/// Redis. Two I/O threads, so the second connection's request is read
/// while the script runs.
#[test]
fn what_waited_behind_a_script_sees_the_time_after_it() {
    let node = TestNode::start_with(&["--io-threads", "2"]);
    let (mut a, mut b) = (node.raw(), node.raw());
    ok(&mut b, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    let script = "redis.call('set', KEYS[1], 'v', 'px', 100)
        local t = redis.call('time')
        local start = t[1] * 1000000 + t[2]
        repeat t = redis.call('time') until t[1] * 1000000 + t[2] - start > 600000
        return 1";
    let get = "return redis.call('get', KEYS[1])";
    let behind: [&[&[&str]]; 3] = [
        &[&["GET", "k"]],
        &[&["MULTI"], &["GET", "k"], &["EXEC"]],
        &[&["EVAL", get, "1", "k"]],
    ];
    for requests in behind {
        a.cmd(&["EVAL", script, "1", "k"]);
        for r in requests {
            b.cmd(r);
        }
        let replies: Vec<Frame> = requests.iter().map(|_| b.read2()).collect();
        // Before the script: no key yet; behind it: expired 500 ms ago.
        let last = replies.last().unwrap();
        assert!(
            matches!(last, Frame::Null) || *last == Frame::Array(vec![Frame::Null]),
            "{requests:?}: {replies:?}"
        );
        assert_eq!(a.read2(), Frame::Int(1));
    }
}
