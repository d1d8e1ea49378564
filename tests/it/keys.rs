use crate::support::{same_as_redis, same_as_redis_owned, Frame, Raw, TestNode};
use crate::{bulk, err, int, ok, strings};

#[test]
fn del_exists_type_touch_unlink() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["MSET", "a", "1", "b", "2", "c", "3"]);
    assert_eq!(
        int(&mut r, &["EXISTS", "a", "a", "nope"]),
        2,
        "duplicates count twice"
    );
    assert_eq!(r.call(&["TYPE", "a"]), Frame::Simple("string".into()));
    assert_eq!(r.call(&["TYPE", "nope"]), Frame::Simple("none".into()));
    assert_eq!(int(&mut r, &["TOUCH", "a", "b", "nope"]), 2);
    assert_eq!(int(&mut r, &["DEL", "a", "b", "nope"]), 2);
    assert_eq!(int(&mut r, &["UNLINK", "c"]), 1);
    assert_eq!(int(&mut r, &["DBSIZE"]), 0);
}

#[test]
fn rename_renamenx_copy_move() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "src", "v", "EX", "100"]);
    ok(&mut r, &["RENAME", "src", "dst"]);
    assert_eq!(bulk(&mut r, &["GET", "dst"]).as_deref(), Some("v"));
    assert!(int(&mut r, &["TTL", "dst"]) > 0, "RENAME keeps the TTL");
    assert_eq!(err(&mut r, &["RENAME", "src", "x"]), "ERR no such key");
    ok(&mut r, &["RENAME", "dst", "dst"]);
    ok(&mut r, &["SET", "other", "o"]);
    assert_eq!(int(&mut r, &["RENAMENX", "dst", "other"]), 0);
    assert_eq!(int(&mut r, &["RENAMENX", "dst", "free"]), 1);

    assert_eq!(int(&mut r, &["COPY", "free", "copy"]), 1);
    assert_eq!(int(&mut r, &["COPY", "free", "copy"]), 0);
    assert_eq!(int(&mut r, &["COPY", "other", "copy", "REPLACE"]), 1);
    assert_eq!(bulk(&mut r, &["GET", "copy"]).as_deref(), Some("o"));
    assert_eq!(int(&mut r, &["COPY", "copy", "copy", "DB", "1"]), 1);
    assert_eq!(
        err(&mut r, &["COPY", "copy", "copy"]),
        "ERR source and destination objects are the same"
    );
    assert_eq!(
        err(&mut r, &["COPY", "copy", "x", "DB", "99"]),
        "ERR DB index is out of range"
    );
    assert_eq!(
        err(&mut r, &["COPY", "copy", "x", "BOGUS"]),
        "ERR syntax error"
    );

    assert_eq!(int(&mut r, &["MOVE", "other", "2"]), 1);
    assert_eq!(int(&mut r, &["EXISTS", "other"]), 0);
    assert_eq!(int(&mut r, &["MOVE", "other", "2"]), 0);
    assert_eq!(
        err(&mut r, &["MOVE", "copy", "0"]),
        "ERR source and destination objects are the same"
    );
    assert_eq!(
        err(&mut r, &["MOVE", "copy", "16"]),
        "ERR DB index is out of range"
    );
    ok(&mut r, &["SELECT", "2"]);
    assert_eq!(bulk(&mut r, &["GET", "other"]).as_deref(), Some("o"));
    ok(&mut r, &["SELECT", "1"]);
    assert_eq!(bulk(&mut r, &["GET", "copy"]).as_deref(), Some("o"));
}

#[test]
fn swapdb_flushdb_flushall() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "in0", "x"]);
    ok(&mut r, &["SELECT", "1"]);
    ok(&mut r, &["SET", "in1", "y"]);
    ok(&mut r, &["SWAPDB", "0", "1"]);
    assert_eq!(bulk(&mut r, &["GET", "in0"]).as_deref(), Some("x"));
    assert_eq!(int(&mut r, &["EXISTS", "in1"]), 0);
    // With a database never used (no slot tables yet), both ways; keys
    // spread over many slots, a watch on a slot neither had used.
    for i in 0..200 {
        ok(&mut r, &["SET", &format!("many{i}"), "m"]);
    }
    ok(&mut r, &["WATCH", "nowhere"]);
    ok(&mut r, &["SWAPDB", "1", "7"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 0);
    ok(&mut r, &["SELECT", "7"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 201);
    assert_eq!(bulk(&mut r, &["GET", "many199"]).as_deref(), Some("m"));
    ok(&mut r, &["SWAPDB", "7", "1"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 0);
    ok(&mut r, &["SELECT", "1"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 201);
    for i in 0..200 {
        assert_eq!(int(&mut r, &["DEL", &format!("many{i}")]), 1);
    }
    ok(&mut r, &["UNWATCH"]);
    assert_eq!(
        err(&mut r, &["SWAPDB", "0", "100"]),
        "ERR DB index is out of range"
    );
    assert_eq!(
        err(&mut r, &["SWAPDB", "a", "1"]),
        "ERR invalid first DB index"
    );
    assert_eq!(
        err(&mut r, &["SWAPDB", "1", "b"]),
        "ERR invalid second DB index"
    );
    ok(&mut r, &["FLUSHDB"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 0);
    ok(&mut r, &["SELECT", "0"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 1);
    for i in 0..1000 {
        ok(&mut r, &["SET", &format!("k{i}"), "v"]);
    }
    ok(&mut r, &["FLUSHALL", "ASYNC"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 0);
    ok(&mut r, &["SET", "k", "v"]);
    ok(&mut r, &["FLUSHALL", "SYNC"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 0);
    assert_eq!(err(&mut r, &["FLUSHALL", "LATER"]), "ERR syntax error");
}

#[test]
fn expire_family_with_flags() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    assert_eq!(int(&mut r, &["TTL", "k"]), -1);
    assert_eq!(int(&mut r, &["TTL", "nope"]), -2);
    assert_eq!(int(&mut r, &["EXPIRE", "nope", "10"]), 0);
    assert_eq!(int(&mut r, &["EXPIRE", "k", "100", "XX"]), 0);
    assert_eq!(
        int(&mut r, &["EXPIRE", "k", "100", "GT"]),
        0,
        "no TTL counts as infinite"
    );
    assert_eq!(int(&mut r, &["EXPIRE", "k", "100", "NX"]), 1);
    assert_eq!(int(&mut r, &["EXPIRE", "k", "200", "NX"]), 0);
    assert_eq!(int(&mut r, &["EXPIRE", "k", "50", "GT"]), 0);
    assert_eq!(int(&mut r, &["EXPIRE", "k", "200", "GT"]), 1);
    assert_eq!(int(&mut r, &["EXPIRE", "k", "300", "LT"]), 0);
    assert_eq!(int(&mut r, &["EXPIRE", "k", "150", "LT"]), 1);
    let ttl = int(&mut r, &["TTL", "k"]);
    assert!((140..=150).contains(&ttl), "{ttl}");
    assert!(int(&mut r, &["PTTL", "k"]) > 140_000);
    assert_eq!(int(&mut r, &["PEXPIRE", "k", "500000"]), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let at = now.as_secs() + 1000;
    assert_eq!(int(&mut r, &["EXPIREAT", "k", &at.to_string()]), 1);
    assert_eq!(int(&mut r, &["EXPIRETIME", "k"]), at as i64);
    assert_eq!(int(&mut r, &["PEXPIRETIME", "k"]), at as i64 * 1000);
    assert_eq!(
        int(&mut r, &["PEXPIREAT", "k", &(at * 1000 + 5).to_string()]),
        1
    );
    assert_eq!(int(&mut r, &["PEXPIRETIME", "k"]), at as i64 * 1000 + 5);
    assert_eq!(int(&mut r, &["PERSIST", "k"]), 1);
    assert_eq!(int(&mut r, &["PERSIST", "k"]), 0);
    assert_eq!(int(&mut r, &["EXPIRETIME", "k"]), -1);
    assert_eq!(int(&mut r, &["EXPIRETIME", "nope"]), -2);
    assert_eq!(
        int(&mut r, &["EXPIRE", "k", "-1"]),
        1,
        "a past expiry deletes"
    );
    assert_eq!(int(&mut r, &["EXISTS", "k"]), 0);
    ok(&mut r, &["SET", "k", "v"]);
    assert_eq!(
        err(&mut r, &["EXPIRE", "k", "10", "NX", "XX"]),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        err(&mut r, &["EXPIRE", "k", "10", "GT", "LT"]),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(
        err(&mut r, &["EXPIRE", "k", "10", "FOO"]),
        "ERR Unsupported option FOO"
    );
    assert_eq!(
        err(&mut r, &["EXPIRE", "k", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut r, &["EXPIRE", "k", "9223372036854775807"]),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        err(&mut r, &["PEXPIRE", "k", "9223372036854775807"]),
        "ERR invalid expire time in 'pexpire' command"
    );
}

#[test]
fn keys_scan_randomkey() {
    let node = TestNode::start();
    let mut r = node.raw();
    for i in 0..500 {
        ok(&mut r, &["SET", &format!("user:{i}"), "v"]);
    }
    ok(&mut r, &["SET", "other", "v"]);
    let mut keys = strings(&mut r, &["KEYS", "user:1?"]);
    keys.sort();
    assert_eq!(
        keys,
        (10..20).map(|i| format!("user:{i}")).collect::<Vec<_>>()
    );
    assert_eq!(strings(&mut r, &["KEYS", "*"]).len(), 501);
    assert_eq!(strings(&mut r, &["KEYS", "h[ae]llo"]).len(), 0);

    // A full SCAN returns every key exactly once here (nothing changes).
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    let mut calls = 0;
    loop {
        let Frame::Array(reply) = r.call(&["SCAN", &cursor, "MATCH", "user:*", "COUNT", "50"])
        else {
            panic!()
        };
        let Frame::Bulk(c) = &reply[0] else { panic!() };
        cursor = String::from_utf8(c.clone()).unwrap();
        let Frame::Array(ks) = &reply[1] else {
            panic!()
        };
        for k in ks {
            let Frame::Bulk(k) = k else { panic!() };
            assert!(seen.insert(k.clone()), "duplicate key in SCAN");
        }
        calls += 1;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 500);
    assert!(calls > 1, "COUNT bounds the work per call");
    let Frame::Array(reply) = r.call(&["SCAN", "0", "TYPE", "string", "COUNT", "100000"]) else {
        panic!()
    };
    let Frame::Array(ks) = &reply[1] else {
        panic!()
    };
    assert_eq!(ks.len(), 501);
    let Frame::Array(reply) = r.call(&["SCAN", "0", "TYPE", "list", "COUNT", "100000"]) else {
        panic!()
    };
    assert_eq!(reply[1], Frame::Array(vec![]));
    assert_eq!(err(&mut r, &["SCAN", "x"]), "ERR invalid cursor");
    assert_eq!(
        err(&mut r, &["SCAN", "0", "COUNT", "0"]),
        "ERR syntax error"
    );

    let k = bulk(&mut r, &["RANDOMKEY"]).unwrap();
    assert!(k.starts_with("user:") || k == "other");
    ok(&mut r, &["FLUSHDB"]);
    assert_eq!(bulk(&mut r, &["RANDOMKEY"]), None);
}

#[test]
fn object_and_memory_introspection() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "s", "hello"]);
    ok(&mut r, &["SET", "n", "42"]);
    ok(&mut r, &["SET", "big", &"x".repeat(100)]);
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "s"]).as_deref(),
        Some("embstr")
    );
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "n"]).as_deref(),
        Some("int")
    );
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "big"]).as_deref(),
        Some("raw")
    );
    assert_eq!(bulk(&mut r, &["OBJECT", "ENCODING", "nope"]), None);
    // Seconds since the last access: small, however loaded the machine.
    let idle = int(&mut r, &["OBJECT", "IDLETIME", "s"]);
    assert!((0..60).contains(&idle), "idle {idle}");
    assert_eq!(int(&mut r, &["OBJECT", "REFCOUNT", "s"]), 1);
    assert!(err(&mut r, &["OBJECT", "FREQ", "s"])
        .starts_with("ERR An LFU maxmemory policy is not selected"));
    assert_eq!(
        err(&mut r, &["OBJECT", "FOO", "s"]),
        "ERR unknown subcommand 'FOO'. Try OBJECT HELP."
    );
    let Frame::Array(help) = r.call(&["OBJECT", "HELP"]) else {
        panic!()
    };
    assert!(help.len() > 4);
    let usage = int(&mut r, &["MEMORY", "USAGE", "big"]);
    assert!(usage >= 100, "{usage}");
    assert_eq!(r.call(&["MEMORY", "USAGE", "nope"]), Frame::Null);
    // A large collection is estimated from 5 elements unless told, as in
    // Redis; SAMPLES 0 counts every element.
    for i in 0..2000 {
        let long = format!("{i:0>40}");
        r.call(&["HSET", "wide", &long, &long]);
    }
    let estimate = int(&mut r, &["MEMORY", "USAGE", "wide"]);
    let exact = int(&mut r, &["MEMORY", "USAGE", "wide", "SAMPLES", "0"]);
    assert!(exact > 2000 * 80, "{exact}");
    assert!(
        (estimate - exact).abs() * 10 < exact,
        "{estimate} vs {exact}"
    );
    assert_eq!(
        err(&mut r, &["MEMORY", "USAGE", "wide", "SAMPLES", "-1"]),
        "ERR syntax error"
    );
    let Frame::Simple(dbg) = r.call(&["DEBUG", "OBJECT", "s"]) else {
        panic!()
    };
    assert!(
        dbg.contains("encoding:embstr") && dbg.contains("serializedlength:"),
        "{dbg}"
    );
    assert_eq!(err(&mut r, &["DEBUG", "OBJECT", "nope"]), "ERR no such key");
    // A key past its expiry, not yet deleted, is still there for DEBUG
    // OBJECT (as in Redis), until a command meets it and deletes it.
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    ok(&mut r, &["SET", "brief", "v", "PX", "1"]);
    ok(&mut r, &["DEBUG", "SLEEP", "0.01"]);
    assert!(matches!(
        r.call(&["DEBUG", "OBJECT", "brief"]),
        Frame::Simple(_)
    ));
    assert_eq!(int(&mut r, &["EXISTS", "brief"]), 0);
    assert_eq!(
        err(&mut r, &["DEBUG", "OBJECT", "brief"]),
        "ERR no such key"
    );
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
}

/// A pattern nesting a million stars (`*?` repeated) matched against a
/// key as long recursed once per star and overflowed the I/O thread's
/// stack, which aborts the process: one KEYS (or SCAN MATCH, or a
/// PSUBSCRIBE pattern meeting a PUBLISH) stopped the node. Past 1,000
/// nested stars the match now fails, as Redis's does (its regression
/// test: 50,000 of them find nothing).
#[test]
fn a_pattern_of_a_million_stars_finds_nothing_and_the_node_lives() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    let long = "a".repeat(1_000_000);
    ok(&mut r, &["SET", &long, "1"]);
    assert_eq!(
        r.call(&["KEYS", &"*?".repeat(1_000_000)]),
        Frame::Array(vec![])
    );
    assert_eq!(
        r.call(&["KEYS", &"*?".repeat(50_000)]),
        Frame::Array(vec![])
    );
    let Frame::Array(scan) = r.call(&["SCAN", "0", "MATCH", &"*?".repeat(1_000_000)]) else {
        panic!()
    };
    assert_eq!(scan[1], Frame::Array(vec![]));
    assert_eq!(int(&mut r, &["DBSIZE"]), 1);
}

/// A payload whose collection decodes to nothing (a quicklist of one empty
/// ziplist, with a right checksum: Redis's own corrupt-payload test) is
/// refused as bad data, as Redis refuses it; it was stored as an empty
/// list, and LPOP on it panicked. DEBUG SET-SKIP-CHECKSUM-VALIDATION lets
/// hand-made payloads in past a wrong checksum, as in Redis's tests.
#[test]
fn restore_refuses_a_payload_that_decodes_to_an_empty_collection() {
    let node = TestNode::start();
    let mut con = node.conn();
    let mut r = node.raw();
    let empty_quicklist: &[u8] =
        b"\x0E\x01\x0B\x0B\x00\x00\x00\x0A\x00\x00\x00\x00\x00\xFF\x09\x00\xC2\x69\x37\x83\x3C\x7F\xFE\x6F";
    let restore = |con: &mut redis::Connection, payload: &[u8]| {
        redis::cmd("RESTORE")
            .arg("k")
            .arg(0)
            .arg(payload)
            .query::<()>(con)
            .unwrap_err()
            .to_string()
    };
    assert!(restore(&mut con, empty_quicklist).contains("Bad data format"));
    assert_eq!(r.call(&["LPOP", "k"]), Frame::Null);
    assert_eq!(r.call(&["EXISTS", "k"]), Frame::Int(0));
    // The same with its checksum broken: refused for that, unless told.
    let mut broken = empty_quicklist.to_vec();
    *broken.last_mut().unwrap() ^= 1;
    assert!(restore(&mut con, &broken).contains("DUMP payload version or checksum are wrong"));
    ok(&mut r, &["DEBUG", "SET-SKIP-CHECKSUM-VALIDATION", "1"]);
    assert!(restore(&mut con, &broken).contains("Bad data format"));
    ok(&mut r, &["DEBUG", "SET-SKIP-CHECKSUM-VALIDATION", "0"]);
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
}

#[test]
fn dump_restore_round_trip_and_redis_payloads() {
    let node = TestNode::start();
    let mut con = node.conn();
    let mut r = node.raw();
    ok(&mut r, &["SET", "s", "hello world"]);
    ok(&mut r, &["SET", "n", "-123456"]);
    for key in ["s", "n"] {
        let payload: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut con).unwrap();
        let _: () = redis::cmd("RESTORE")
            .arg(format!("{key}2"))
            .arg(0)
            .arg(&payload)
            .query(&mut con)
            .unwrap();
        let a: String = redis::cmd("GET").arg(key).query(&mut con).unwrap();
        let b: String = redis::cmd("GET")
            .arg(format!("{key}2"))
            .query(&mut con)
            .unwrap();
        assert_eq!(a, b);
        let e = redis::cmd("RESTORE")
            .arg(format!("{key}2"))
            .arg(0)
            .arg(&payload)
            .query::<()>(&mut con)
            .unwrap_err();
        assert!(e.to_string().contains("BUSYKEY"), "{e}");
        let _: () = redis::cmd("RESTORE")
            .arg(format!("{key}2"))
            .arg(5000)
            .arg(&payload)
            .arg("REPLACE")
            .query(&mut con)
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{key}2"))
            .query(&mut con)
            .unwrap();
        assert!(ttl > 0 && ttl <= 5000, "{ttl}");
    }
    // A payload produced by Redis 7.0 (LZF-compressed string).
    let from_redis = b"\x00\xc3\x0b@l\x03abca\xe0]\x02\x01bc\n\x00:]Q\x06\xe7\xc6\x96\x84";
    let _: () = redis::cmd("RESTORE")
        .arg("fromredis")
        .arg(0)
        .arg(&from_redis[..])
        .query(&mut con)
        .unwrap();
    let v: String = redis::cmd("GET").arg("fromredis").query(&mut con).unwrap();
    assert_eq!(v, "abc".repeat(36));
    let e = redis::cmd("RESTORE")
        .arg("bad")
        .arg(0)
        .arg("garbage-payload")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("DUMP payload version or checksum are wrong"),
        "{e}"
    );
    assert_eq!(
        err(&mut r, &["RESTORE", "x", "-1", "abc"]),
        "ERR Invalid TTL value, must be >= 0"
    );
    assert_eq!(r.call(&["DUMP", "nope"]), Frame::Null);
    // FREQ sets the LFU counter under an LFU policy, IDLETIME the LRU
    // clock under any other, as in Redis.
    let payload: Vec<u8> = redis::cmd("DUMP").arg("fromredis").query(&mut con).unwrap();
    let restore = |key: &str, option: &str, value: i64| {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(&payload[..])
            .arg(option)
            .arg(value)
            .query(&mut node.conn())
            .unwrap();
    };
    restore("idle", "IDLETIME", 1000);
    let idle = int(&mut r, &["OBJECT", "IDLETIME", "idle"]);
    assert!((1000..1010).contains(&idle), "{idle}");
    ok(
        &mut r,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"],
    );
    restore("freq", "FREQ", 100);
    assert_eq!(int(&mut r, &["OBJECT", "FREQ", "freq"]), 100);
    ok(&mut r, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
}

/// Option checks before numbers, an existing key before a bad payload, and
/// the empty key matched only by a lone `*` (Redis's matcher never starts
/// on an empty string), as redis-server has them.
#[test]
fn key_command_checks_match_redis() {
    let (node, _redis) = same_as_redis(&[
        &["SET", "", "empty"],
        &["SET", "a*b", "1"],
        &["KEYS", "*"],
        &["KEYS", "**"],
        &["KEYS", "*b"],
        &["KEYS", ""],
        &["HSET", "h", "", "v", "f", "w"],
        &["HSCAN", "h", "0", "MATCH", "*"],
        &["HSCAN", "h", "0", "MATCH", "**"],
        &["EXPIRE", "a*b", "x", "FOO"],
        &["EXPIRE", "a*b", "x", "NX", "XX"],
        &["PEXPIRE", "a*b", "x", "GT", "LT"],
        &["EXPIRE", "a*b", "x", "NX"],
        &["RESTORE", "a*b", "0", "garbage"],
        &["RESTORE", "a*b", "x", "garbage"],
        &["RESTORE", "new", "x", "garbage"],
        &["RESTORE", "new", "-1", "garbage"],
        &["RESTORE", "a*b", "0", "garbage", "REPLACE"],
        &["SELECT", "4294967296"],
        &["SELECT", "-1"],
        &["SELECT", "x"],
        &["MOVE", "a*b", "2147483648"],
        &["COPY", "a*b", "c", "DB", "-2147483649"],
    ]);
    // SCAN's order is its own; what it finds is Redis's.
    let mut c = node.conn();
    let mut scan = |pattern: &str| -> Vec<String> {
        let (_, mut keys): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut c)
            .unwrap();
        keys.sort();
        keys
    };
    assert_eq!(scan("*"), ["", "a*b", "h"]);
    assert_eq!(scan("**"), ["a*b", "h"]);
}

/// DBSIZE and INFO keyspace read counts each slot publishes when it is
/// unlocked: they must follow every way keys come and go, as Redis counts.
#[test]
fn key_counts_follow_every_change_as_redis_counts() {
    let mut script: Vec<Vec<String>> = Vec::new();
    let mut step = |c: &[&str]| {
        script.push(c.iter().map(|s| s.to_string()).collect());
        script.push(vec!["DBSIZE".into()]);
    };
    step(&[
        "MSET", "a", "1", "b", "2", "c", "3", "{t}1", "x", "{t}2", "y",
    ]);
    step(&["SET", "e", "v", "EX", "1000"]);
    step(&["EXPIRE", "a", "1000"]);
    step(&["PERSIST", "a"]);
    step(&["DEL", "a", "missing", "b"]);
    step(&["RENAME", "c", "renamed"]);
    step(&["COPY", "renamed", "copied"]);
    step(&["COPY", "renamed", "elsewhere", "DB", "1"]);
    step(&["MOVE", "copied", "1"]);
    step(&["SELECT", "1"]);
    step(&["SADD", "s", "m"]);
    step(&["SREM", "s", "m"]);
    step(&["SWAPDB", "0", "1"]);
    step(&["SELECT", "0"]);
    step(&["RPUSH", "l", "a", "b"]);
    step(&["LPOP", "l", "2"]);
    step(&["GETDEL", "e"]);
    step(&["FLUSHDB"]);
    step(&["SELECT", "1"]);
    step(&["SET", "k", "v", "PX", "100000"]);
    step(&["FLUSHALL"]);
    same_as_redis_owned(&script);

    // INFO keyspace's keys= and expires=, and lazy and active expiry.
    let node = TestNode::start();
    let mut r = node.raw();
    for i in 0..300 {
        ok(&mut r, &["SET", &format!("k{i}"), "v"]);
    }
    for i in 0..100 {
        ok(&mut r, &["SET", &format!("gone{i}"), "v", "PX", "1"]);
    }
    ok(&mut r, &["SET", "stays", "v", "EX", "1000"]);
    crate::support::eventually("expired keys leave the counts", || {
        int(&mut r, &["DBSIZE"]) == 301
    });
    let info = bulk(&mut r, &["INFO", "keyspace"]).unwrap();
    assert!(info.contains("db0:keys=301,expires=1,"), "{info}");
}

/// MIGRATE moves keys (their TTLs too) to another node, or copies them
/// with COPY, as Redis does: to another Shoal node here, and from
/// redis-server to Shoal (redis-server's MIGRATE speaking to Shoal's
/// RESTORE); the target's refusal, an unreachable target and bad options
/// answer as Redis answers them.
#[test]
fn migrate_moves_keys_between_nodes() {
    use crate::support::ReferenceRedis;
    let (source, target) = (TestNode::start(), TestNode::start());
    let (mut s, mut t) = (source.raw(), target.raw());
    let port = target.port.to_string();
    ok(&mut s, &["SET", "a", "1"]);
    int(&mut s, &["RPUSH", "l", "x", "y"]);
    ok(&mut s, &["SET", "ttl", "v", "PX", "100000"]);
    assert_eq!(
        s.call(&["MIGRATE", "127.0.0.1", &port, "a", "0", "5000"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(int(&mut s, &["EXISTS", "a"]), 0);
    assert_eq!(bulk(&mut t, &["GET", "a"]).as_deref(), Some("1"));
    let keys = [
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "3",
        "5000",
        "KEYS",
        "l",
        "ttl",
        "nope",
    ];
    assert_eq!(s.call(&keys), Frame::Simple("OK".into()));
    assert_eq!(int(&mut s, &["DBSIZE"]), 0);
    ok(&mut t, &["SELECT", "3"]);
    assert_eq!(strings(&mut t, &["LRANGE", "l", "0", "-1"]), ["x", "y"]);
    let ttl = int(&mut t, &["PTTL", "ttl"]);
    assert!((90_000..=100_000).contains(&ttl), "{ttl}");
    // The target refuses an existing key unless REPLACE; COPY keeps ours.
    ok(&mut s, &["SET", "a", "2"]);
    assert_eq!(
        err(&mut s, &["MIGRATE", "127.0.0.1", &port, "a", "0", "5000"]),
        "ERR Target instance replied with error: BUSYKEY Target key name already exists."
    );
    let copy = [
        "MIGRATE",
        "127.0.0.1",
        &port,
        "a",
        "0",
        "5000",
        "COPY",
        "REPLACE",
    ];
    assert_eq!(s.call(&copy), Frame::Simple("OK".into()));
    assert_eq!(bulk(&mut s, &["GET", "a"]).as_deref(), Some("2"));
    ok(&mut t, &["SELECT", "0"]);
    assert_eq!(bulk(&mut t, &["GET", "a"]).as_deref(), Some("2"));
    assert_eq!(
        s.call(&["MIGRATE", "127.0.0.1", &port, "nope", "0", "5000"]),
        Frame::Simple("NOKEY".into())
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    assert_eq!(
        err(
            &mut s,
            &["MIGRATE", "127.0.0.1", &closed_port, "a", "0", "1000"]
        ),
        "IOERR error or timeout connecting to the client"
    );
    assert_eq!(
        err(
            &mut s,
            &["MIGRATE", "127.0.0.1", &port, "a", "0", "1000", "KEYS", "b"]
        ),
        "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"
    );
    assert_eq!(
        err(
            &mut s,
            &["MIGRATE", "127.0.0.1", &port, "a", "0", "1000", "bogus"]
        ),
        "ERR syntax error"
    );
    assert_eq!(
        strings(
            &mut s,
            &[
                "COMMAND", "GETKEYS", "MIGRATE", "h", "1", "", "0", "1", "AUTH", "pw", "KEYS", "x",
                "y"
            ]
        ),
        ["x", "y"]
    );

    // From redis-server into Shoal.
    let redis = ReferenceRedis::start();
    let mut r = redis.raw();
    assert_eq!(
        r.call(&["SET", "from-redis", "v"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(r.call(&["ZADD", "z", "1", "m", "2.5", "n"]), Frame::Int(2));
    let from = [
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "0",
        "5000",
        "KEYS",
        "from-redis",
        "z",
    ];
    assert_eq!(r.call(&from), Frame::Simple("OK".into()));
    assert_eq!(bulk(&mut t, &["GET", "from-redis"]).as_deref(), Some("v"));
    assert_eq!(
        strings(&mut t, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        ["m", "1", "n", "2.5"]
    );
}

/// UNLINK frees a large value on the lazy free thread and counts it in
/// INFO's lazyfreed_objects (a small one is freed in place, uncounted),
/// FLUSHALL ASYNC counts its keys, lazyfree-lazy-user-del makes DEL free
/// as UNLINK does, CONFIG RESETSTAT starts the count over: as Redis.
#[test]
fn unlink_frees_large_values_lazily() {
    let node = TestNode::start();
    let mut r = node.raw();
    let lazy = |r: &mut Raw, field: &str| -> i64 {
        let info = bulk(r, &["INFO", "memory"]).unwrap();
        crate::info_field(&info, field).parse().unwrap()
    };
    let settled = |r: &mut Raw, freed: i64| {
        crate::support::eventually("lazy freeing done", || {
            lazy(r, "lazyfree_pending_objects") == 0 && lazy(r, "lazyfreed_objects") == freed
        });
    };
    // A set of 200 members is a hash table: 200 allocations to free.
    let big = |r: &mut Raw, key: &str| {
        let mut args = vec!["SADD".to_string(), key.to_string()];
        args.extend((0..200).map(|i| format!("member-{i}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        int(r, &args);
        int(r, &["HSET", &format!("{key}:h"), "f", "v"]);
    };
    big(&mut r, "l1");
    int(&mut r, &["SADD", "small", "a", "b"]);
    assert_eq!(int(&mut r, &["UNLINK", "l1", "small", "nope"]), 2);
    settled(&mut r, 1);
    big(&mut r, "l2");
    assert_eq!(int(&mut r, &["DEL", "l2"]), 1);
    settled(&mut r, 1);
    ok(&mut r, &["CONFIG", "SET", "lazyfree-lazy-user-del", "yes"]);
    big(&mut r, "l3");
    assert_eq!(int(&mut r, &["DEL", "l3"]), 1);
    settled(&mut r, 2);
    ok(&mut r, &["CONFIG", "RESETSTAT"]);
    settled(&mut r, 0);
    // Five keys left (the hashes and one more): a flush counts each.
    ok(&mut r, &["SET", "s", "v"]);
    ok(&mut r, &["SELECT", "2"]);
    ok(&mut r, &["SET", "t", "v"]);
    ok(&mut r, &["FLUSHALL", "ASYNC"]);
    settled(&mut r, 5);
    assert_eq!(int(&mut r, &["DBSIZE"]), 0);
}
