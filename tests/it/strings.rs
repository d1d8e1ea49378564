use crate::support::{same_as_redis, Frame, TestNode};
use crate::{bulk, err, int, ok, q};

#[test]
fn set_get_and_options() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    assert_eq!(bulk(&mut r, &["GET", "k"]).as_deref(), Some("v"));
    assert_eq!(bulk(&mut r, &["GET", "missing"]), None);
    assert_eq!(r.call(&["SET", "k", "w", "NX"]), Frame::Null);
    ok(&mut r, &["SET", "k", "w", "XX"]);
    assert_eq!(r.call(&["SET", "new", "w", "XX"]), Frame::Null);
    assert_eq!(
        bulk(&mut r, &["SET", "k", "x", "GET"]).as_deref(),
        Some("w")
    );
    assert_eq!(bulk(&mut r, &["SET", "fresh", "x", "NX", "GET"]), None);
    ok(&mut r, &["SET", "t", "v", "EX", "100"]);
    let ttl = int(&mut r, &["TTL", "t"]);
    assert!((99..=100).contains(&ttl), "{ttl}");
    ok(&mut r, &["SET", "t", "v2", "KEEPTTL"]);
    assert!(int(&mut r, &["TTL", "t"]) > 0);
    ok(&mut r, &["SET", "t", "v3"]);
    assert_eq!(int(&mut r, &["TTL", "t"]), -1);
    ok(&mut r, &["SET", "p", "v", "PX", "100000"]);
    assert!(int(&mut r, &["PTTL", "p"]) > 90_000);
    let future = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 500)
        .to_string();
    ok(&mut r, &["SET", "a", "v", "EXAT", &future]);
    assert!(int(&mut r, &["TTL", "a"]) > 400);
    ok(&mut r, &["SET", "past", "v", "PXAT", "1"]);
    assert_eq!(int(&mut r, &["EXISTS", "past"]), 0);

    assert_eq!(
        err(&mut r, &["SET", "k", "v", "NX", "XX"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut r, &["SET", "k", "v", "EX", "10", "PX", "10"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut r, &["SET", "k", "v", "EX", "10", "KEEPTTL"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut r, &["SET", "k", "v", "EX", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&mut r, &["SET", "k", "v", "EX", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err(&mut r, &["SET", "k", "v", "EX"]), "ERR syntax error");
    assert_eq!(
        err(&mut r, &["SET", "k", "v", "EX", "9223372036854775807"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&mut r, &["SET", "k"]),
        "ERR wrong number of arguments for 'set' command"
    );
}

#[test]
fn setnx_setex_psetex_getset_getdel_getex() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(int(&mut r, &["SETNX", "k", "1"]), 1);
    assert_eq!(int(&mut r, &["SETNX", "k", "2"]), 0);
    ok(&mut r, &["SETEX", "e", "100", "v"]);
    assert!(int(&mut r, &["TTL", "e"]) > 90);
    assert_eq!(
        err(&mut r, &["SETEX", "e", "-1", "v"]),
        "ERR invalid expire time in 'setex' command"
    );
    ok(&mut r, &["PSETEX", "pe", "100000", "v"]);
    assert!(int(&mut r, &["PTTL", "pe"]) > 90_000);
    assert_eq!(
        err(&mut r, &["PSETEX", "pe", "0", "v"]),
        "ERR invalid expire time in 'psetex' command"
    );
    assert_eq!(bulk(&mut r, &["GETSET", "e", "new"]).as_deref(), Some("v"));
    assert_eq!(int(&mut r, &["TTL", "e"]), -1, "GETSET clears the TTL");
    assert_eq!(bulk(&mut r, &["GETSET", "nothing", "x"]), None);
    assert_eq!(bulk(&mut r, &["GETDEL", "e"]).as_deref(), Some("new"));
    assert_eq!(int(&mut r, &["EXISTS", "e"]), 0);
    assert_eq!(bulk(&mut r, &["GETDEL", "e"]), None);
    ok(&mut r, &["SET", "g", "v"]);
    assert_eq!(
        bulk(&mut r, &["GETEX", "g", "EX", "100"]).as_deref(),
        Some("v")
    );
    assert!(int(&mut r, &["TTL", "g"]) > 90);
    assert_eq!(
        bulk(&mut r, &["GETEX", "g", "PERSIST"]).as_deref(),
        Some("v")
    );
    assert_eq!(int(&mut r, &["TTL", "g"]), -1);
    assert_eq!(
        bulk(&mut r, &["GETEX", "g", "PXAT", "1"]).as_deref(),
        Some("v")
    );
    assert_eq!(int(&mut r, &["EXISTS", "g"]), 0);
    assert_eq!(bulk(&mut r, &["GETEX", "g"]), None);
    assert_eq!(
        err(&mut r, &["GETEX", "g", "EX", "1", "PERSIST"]),
        "ERR syntax error"
    );
}

#[test]
fn mget_mset_msetnx() {
    let node = TestNode::start();
    let mut con = node.conn();
    let _: () = q(&mut con, &["MSET", "a", "1", "b", "2", "{x}c", "3"]);
    let got: Vec<Option<String>> = q(&mut con, &["MGET", "a", "b", "nope", "{x}c"]);
    assert_eq!(
        got,
        vec![Some("1".into()), Some("2".into()), None, Some("3".into())]
    );
    let n: i64 = q(&mut con, &["MSETNX", "a", "9", "z", "9"]);
    assert_eq!(n, 0);
    let z: Option<String> = q(&mut con, &["GET", "z"]);
    assert_eq!(z, None, "MSETNX is all or nothing");
    let n: i64 = q(&mut con, &["MSETNX", "y", "9", "z", "9"]);
    assert_eq!(n, 1);
    let mut r = node.raw();
    assert_eq!(
        err(&mut r, &["MSET", "a", "1", "b"]),
        "ERR wrong number of arguments for 'mset' command"
    );
}

#[test]
fn append_strlen_getrange_setrange() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(int(&mut r, &["APPEND", "s", "Hello"]), 5);
    assert_eq!(int(&mut r, &["APPEND", "s", " World"]), 11);
    assert_eq!(int(&mut r, &["STRLEN", "s"]), 11);
    assert_eq!(int(&mut r, &["STRLEN", "nope"]), 0);
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "s"]).as_deref(),
        Some("raw")
    );
    assert_eq!(
        bulk(&mut r, &["GETRANGE", "s", "0", "4"]).as_deref(),
        Some("Hello")
    );
    assert_eq!(
        bulk(&mut r, &["GETRANGE", "s", "-5", "-1"]).as_deref(),
        Some("World")
    );
    assert_eq!(
        bulk(&mut r, &["GETRANGE", "s", "0", "-1"]).as_deref(),
        Some("Hello World")
    );
    assert_eq!(
        bulk(&mut r, &["GETRANGE", "s", "5", "3"]).as_deref(),
        Some("")
    );
    assert_eq!(
        bulk(&mut r, &["SUBSTR", "s", "6", "100"]).as_deref(),
        Some("World")
    );
    assert_eq!(
        bulk(&mut r, &["GETRANGE", "nope", "0", "10"]).as_deref(),
        Some("")
    );
    assert_eq!(int(&mut r, &["SETRANGE", "s", "6", "Shoal"]), 11);
    assert_eq!(bulk(&mut r, &["GET", "s"]).as_deref(), Some("Hello Shoal"));
    assert_eq!(int(&mut r, &["SETRANGE", "pad", "3", "x"]), 4);
    assert_eq!(bulk(&mut r, &["GET", "pad"]).as_deref(), Some("\0\0\0x"));
    assert_eq!(int(&mut r, &["SETRANGE", "empty", "5", ""]), 0);
    assert_eq!(int(&mut r, &["EXISTS", "empty"]), 0);
    assert_eq!(
        err(&mut r, &["SETRANGE", "s", "-1", "x"]),
        "ERR offset is out of range"
    );
    // Offsets at the end of the integers are past the limit too, on a new
    // key and an existing one (they wrapped past it once).
    for (key, offset) in [
        ("s", "536870911"),
        ("s", "9223372036854775807"),
        ("new", "9223372036854775807"),
        ("new", "2147483647"),
    ] {
        assert_eq!(
            err(&mut r, &["SETRANGE", key, offset, "xx"]),
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        );
    }
    // Repeated appends grow one buffer in place.
    let chunk = "y".repeat(100);
    for _ in 0..10_000 {
        int(&mut r, &["APPEND", "log", &chunk]);
    }
    assert_eq!(int(&mut r, &["STRLEN", "log"]), 1_000_000);
    assert_eq!(
        bulk(&mut r, &["GETRANGE", "log", "-3", "-1"]).as_deref(),
        Some("yyy")
    );
    // Integers are strings too.
    ok(&mut r, &["SET", "n", "12345"]);
    assert_eq!(int(&mut r, &["STRLEN", "n"]), 5);
    assert_eq!(int(&mut r, &["APPEND", "n", "6"]), 6);
    assert_eq!(bulk(&mut r, &["GET", "n"]).as_deref(), Some("123456"));
    // A new key takes SET's encoding; an appended-to one is raw, as in Redis.
    assert_eq!(int(&mut r, &["APPEND", "fresh", "42"]), 2);
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "fresh"]).as_deref(),
        Some("int")
    );
    assert_eq!(int(&mut r, &["APPEND", "fresh", "3"]), 3);
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "fresh"]).as_deref(),
        Some("raw")
    );
}

#[test]
fn counters() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(int(&mut r, &["INCR", "c"]), 1);
    assert_eq!(int(&mut r, &["INCRBY", "c", "10"]), 11);
    assert_eq!(int(&mut r, &["DECR", "c"]), 10);
    assert_eq!(int(&mut r, &["DECRBY", "c", "20"]), -10);
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "c"]).as_deref(),
        Some("int")
    );
    ok(&mut r, &["SET", "c", "9223372036854775807"]);
    assert_eq!(
        err(&mut r, &["INCR", "c"]),
        "ERR increment or decrement would overflow"
    );
    ok(&mut r, &["SET", "c", "abc"]);
    assert_eq!(
        err(&mut r, &["INCR", "c"]),
        "ERR value is not an integer or out of range"
    );
    ok(&mut r, &["SET", "c", " 1"]);
    assert_eq!(
        err(&mut r, &["INCR", "c"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut r, &["INCRBY", "c", "1.5"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut r, &["DECRBY", "d", "-9223372036854775808"]),
        "ERR decrement would overflow"
    );
    ok(&mut r, &["SET", "c", "5"]);
    ok(&mut r, &["SET", "keep", "1", "EX", "100"]);
    assert_eq!(int(&mut r, &["INCR", "keep"]), 2);
    assert!(int(&mut r, &["TTL", "keep"]) > 0, "INCR keeps the TTL");

    assert_eq!(
        bulk(&mut r, &["INCRBYFLOAT", "f", "10.5"]).as_deref(),
        Some("10.5")
    );
    assert_eq!(
        bulk(&mut r, &["INCRBYFLOAT", "f", "0.1"]).as_deref(),
        Some("10.6")
    );
    assert_eq!(
        bulk(&mut r, &["INCRBYFLOAT", "f", "-5"]).as_deref(),
        Some("5.6")
    );
    ok(&mut r, &["SET", "f", "5.0e3"]);
    assert_eq!(
        bulk(&mut r, &["INCRBYFLOAT", "f", "2.0e2"]).as_deref(),
        Some("5200")
    );
    // A whole result stays text, as Redis keeps it; INCR makes it a number.
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "f"]).as_deref(),
        Some("embstr")
    );
    assert_eq!(int(&mut r, &["INCR", "f"]), 5201);
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "f"]).as_deref(),
        Some("int")
    );
    assert_eq!(
        err(&mut r, &["INCRBYFLOAT", "f", "x"]),
        "ERR value is not a valid float"
    );
    ok(&mut r, &["SET", "f", "x"]);
    assert_eq!(
        err(&mut r, &["INCRBYFLOAT", "f", "1"]),
        "ERR value is not a valid float"
    );
    ok(&mut r, &["SET", "f", "1"]);
    assert_eq!(
        err(&mut r, &["INCRBYFLOAT", "f", "inf"]),
        "ERR increment would produce NaN or Infinity"
    );
}

/// Redis adds in `long double` and prints `%.17Lf`: a counter of tenths
/// reads 0.3, not 0.30000000000000004; values past a double's range work.
#[test]
fn float_increments_match_redis() {
    same_as_redis(&[
        &["INCRBYFLOAT", "f", "0.1"],
        &["INCRBYFLOAT", "f", "0.1"],
        &["INCRBYFLOAT", "f", "0.1"],
        &["SET", "g", "2.51"],
        &["INCRBYFLOAT", "g", "-1"],
        &["SET", "big", "9223372036854775807"],
        &["INCRBYFLOAT", "big", "3"],
        &["INCRBYFLOAT", "huge", "1e400"],
        &["INCRBYFLOAT", "huge", "1e400"],
        &["INCRBYFLOAT", "tiny", "1e-20"],
        &["INCRBYFLOAT", "tiny", "5e-18"],
        &["INCRBYFLOAT", "neg", "-0"],
        &["INCRBYFLOAT", "hex", "0x10"],
        &["INCRBYFLOAT", "f", "1e5000"],
        &["INCRBYFLOAT", "f", " 1"],
        &["INCRBYFLOAT", "f", "1e"],
        &["INCRBYFLOAT", "f", ".5"],
        &["INCRBYFLOAT", "f", "5."],
        &["RPUSH", "list", "a"],
        &["INCRBYFLOAT", "list", "x"],
        &["HINCRBYFLOAT", "h", "f", "0.1"],
        &["HINCRBYFLOAT", "h", "f", "0.2"],
        &["HINCRBYFLOAT", "h", "f", "1e400"],
        &["HINCRBYFLOAT", "h", "f", "inf"],
        &["HINCRBYFLOAT", "list", "f", "inf"],
        &["HINCRBYFLOAT", "list", "f", "1"],
        &["HSET", "h", "s", "abc"],
        &["HINCRBYFLOAT", "h", "s", "1"],
        &["GET", "f"],
        &["HGET", "h", "f"],
    ]);
}

#[test]
fn lcs_matches_redis_examples() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["MSET", "key1", "ohmytext", "key2", "mynewtext"]);
    assert_eq!(
        bulk(&mut r, &["LCS", "key1", "key2"]).as_deref(),
        Some("mytext")
    );
    assert_eq!(int(&mut r, &["LCS", "key1", "key2", "LEN"]), 6);
    let idx = r.call(&[
        "LCS",
        "key1",
        "key2",
        "IDX",
        "MINMATCHLEN",
        "4",
        "WITHMATCHLEN",
    ]);
    let want = Frame::Array(vec![
        Frame::bulk("matches"),
        Frame::Array(vec![Frame::Array(vec![
            Frame::Array(vec![Frame::Int(4), Frame::Int(7)]),
            Frame::Array(vec![Frame::Int(5), Frame::Int(8)]),
            Frame::Int(4),
        ])]),
        Frame::bulk("len"),
        Frame::Int(6),
    ]);
    assert_eq!(idx, want);
    let all = r.call(&["LCS", "key1", "key2", "IDX"]);
    let Frame::Array(parts) = all else { panic!() };
    let Frame::Array(matches) = &parts[1] else {
        panic!()
    };
    assert_eq!(matches.len(), 2);
    assert_eq!(
        err(&mut r, &["LCS", "key1", "key2", "LEN", "IDX"]),
        "ERR If you want both the length and indexes, please just use IDX."
    );
    assert_eq!(bulk(&mut r, &["LCS", "key1", "nope"]).as_deref(), Some(""));
}

#[test]
fn binary_safe_keys_and_values() {
    let node = TestNode::start();
    let mut con = node.conn();
    let key: Vec<u8> = (0..=255u8).collect();
    let val: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&val)
        .query(&mut con)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
    assert_eq!(got, val);
    let big = vec![b'x'; 5 * 1024 * 1024];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut con)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert_eq!(got.len(), big.len());
}
