//! `maxmemory` and every `maxmemory-policy`: memory stays under the limit
//! while writes go on, the policy decides what goes, and `noeviction`
//! refuses writes with Redis's `-OOM`.

use crate::support::{encode, eventually, Frame, Raw, TestNode};
use crate::{bulk, err, info_field, int, ok};

fn used_memory(r: &mut Raw) -> u64 {
    let info = bulk(r, &["INFO", "memory"]).unwrap();
    info_field(&info, "used_memory").parse().unwrap()
}

fn evicted(r: &mut Raw) -> u64 {
    let info = bulk(r, &["INFO", "stats"]).unwrap();
    info_field(&info, "evicted_keys").parse().unwrap()
}

/// Writes `prefix:<i>` for `i` in `range` with 100-byte values (and
/// `extra` options, e.g. an expiry), pipelined over raw RESP; returns how
/// many were refused (OOM).
fn fill(r: &mut Raw, prefix: &str, range: std::ops::Range<usize>, extra: &[&str]) -> usize {
    let value = "v".repeat(100);
    let keys: Vec<usize> = range.collect();
    let mut failed = 0;
    for chunk in keys.chunks(1000) {
        let mut bytes = Vec::new();
        for i in chunk {
            let key = format!("{prefix}:{i}");
            let mut args: Vec<&[u8]> = vec![b"SET", key.as_bytes(), value.as_bytes()];
            args.extend(extra.iter().map(|e| e.as_bytes()));
            bytes.extend(encode(&args));
        }
        r.send(&bytes);
        for _ in chunk {
            if let Frame::Error(_) = r.read2() {
                failed += 1;
            }
        }
    }
    failed
}

/// How many of `prefix:0..n` still exist.
fn surviving(r: &mut Raw, prefix: &str, n: usize) -> usize {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(encode(&[b"EXISTS", format!("{prefix}:{i}").as_bytes()]));
    }
    r.send(&bytes);
    (0..n).filter(|_| r.read2() == Frame::Int(1)).count()
}

/// Starts a node whose limit is its idle memory plus `headroom` bytes.
fn limited(policy: &str, headroom: u64) -> (TestNode, u64) {
    let node = TestNode::start();
    let mut r = node.raw();
    let limit = used_memory(&mut r) + headroom;
    ok(&mut r, &["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    ok(&mut r, &["CONFIG", "SET", "maxmemory-policy", policy]);
    (node, limit)
}

const MB: u64 = 1024 * 1024;

#[test]
fn every_evicting_policy_keeps_memory_under_the_limit() {
    for policy in [
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let (node, limit) = limited(policy, 6 * MB);
        let mut w = node.raw();
        let mut r = node.raw();
        // Keys without expiry first: volatile policies must never take them.
        assert_eq!(fill(&mut w, "keep", 0..5000, &[]), 0, "{policy}");
        let failed = fill(&mut w, "vol", 0..60_000, &["EX", "100000"]);
        assert_eq!(failed, 0, "{policy}: writes go on by evicting");
        // What maxmemory counts: as in Redis, not the log records waiting
        // for the disk (nor replicas' buffers).
        let info = bulk(&mut r, &["INFO", "memory"]).unwrap();
        let field = |name: &str| -> u64 { info_field(&info, name).parse().unwrap() };
        let used = field("used_memory") - field("mem_not_counted_for_evict");
        assert!(used <= limit + MB / 2, "{policy}: {used} > {limit}");
        assert!(evicted(&mut r) > 0, "{policy}");
        assert!(int(&mut r, &["DBSIZE"]) < 65_000, "{policy}");
        if policy.starts_with("volatile") {
            assert_eq!(surviving(&mut w, "keep", 5000), 5000, "{policy}");
        }
        let info = bulk(&mut r, &["INFO", "memory"]).unwrap();
        assert_eq!(info_field(&info, "maxmemory_policy"), policy);
    }
}

#[test]
fn noeviction_refuses_writes_with_oom_but_serves_reads_and_deletes() {
    let (node, limit) = limited("noeviction", 4 * MB);
    let mut w = node.raw();
    // Filled up to the limit, memory can sink under it again by what the
    // connections and the log hand back: well over a lower limit, every
    // write is refused for sure.
    let limit_to = |r: &mut Raw, to: u64| ok(r, &["CONFIG", "SET", "maxmemory", &to.to_string()]);
    let failed = fill(&mut w, "k", 0..30_000, &[]);
    assert!(failed > 0);
    let mut r = node.raw();
    assert_eq!(
        err(&mut r, &["SET", "one-more", "x"]),
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert_eq!(
        err(&mut r, &["LPUSH", "list", "x"]),
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert!(bulk(&mut r, &["GET", "k:1"]).is_some());
    assert_eq!(evicted(&mut r), 0);
    // Deleting is always allowed and makes room again.
    ok(&mut r, &["FLUSHALL"]);
    eventually("room again", || {
        matches!(
            r.call(&["SET", "after", "x"]),
            crate::support::Frame::Simple(_)
        )
    });
    // Inside MULTI nothing more is queued, and EXEC aborts (Redis's rule);
    // a transaction queued with room left is refused whole at its EXEC.
    let oom = "OOM command not allowed when used memory > 'maxmemory'.";
    fill(&mut w, "k", 0..30_000, &[]);
    limit_to(&mut w, limit - 2 * MB);
    ok(&mut r, &["MULTI"]);
    assert_eq!(err(&mut r, &["GET", "k:1"]), oom);
    assert_eq!(
        err(&mut r, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    ok(&mut r, &["FLUSHALL"]);
    limit_to(&mut w, limit);
    eventually("room again", || {
        matches!(
            r.call(&["SET", "after", "x"]),
            crate::support::Frame::Simple(_)
        )
    });
    ok(&mut r, &["MULTI"]);
    assert_eq!(
        r.call(&["SET", "t", "1"]),
        crate::support::Frame::Simple("QUEUED".into())
    );
    assert!(fill(&mut w, "k", 0..30_000, &[]) > 0);
    limit_to(&mut w, limit - 2 * MB);
    assert_eq!(
        err(&mut r, &["EXEC"]),
        format!("EXECABORT Transaction discarded because of: {oom}")
    );
    assert!(bulk(&mut r, &["GET", "t"]).is_none());
    ok(&mut r, &["FLUSHALL"]);
    limit_to(&mut w, limit);
    // A volatile policy with nothing volatile cannot evict either.
    ok(
        &mut r,
        &["CONFIG", "SET", "maxmemory-policy", "volatile-lru"],
    );
    let failed = fill(&mut w, "k", 0..30_000, &[]);
    assert!(failed > 0);
    assert_eq!(evicted(&mut r), 0);
}

/// Waits until the server's clock is in a later second than now.
fn next_second(r: &mut Raw) {
    let now = || -> i64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        t.as_secs() as i64
    };
    let start = now();
    eventually("a second passed", || {
        r.call(&["PING"]);
        now() >= start + 2
    });
}

#[test]
fn lru_and_lfu_keep_what_is_used() {
    for policy in ["allkeys-lru", "allkeys-lfu"] {
        let (node, _) = limited(policy, 8 * MB);
        let mut w = node.raw();
        let mut r = node.raw();
        assert_eq!(fill(&mut w, "hot", 0..2000, &[]), 0);
        assert_eq!(fill(&mut w, "cold", 0..20_000, &[]), 0);
        assert_eq!(evicted(&mut r), 0, "{policy}: all fits so far");
        next_second(&mut r);
        // Use the hot keys (many times: LFU counts accesses), then write
        // enough new data to push half the dataset out.
        for _ in 0..if policy == "allkeys-lfu" { 30 } else { 1 } {
            let mut bytes = Vec::new();
            for i in 0..2000 {
                bytes.extend(encode(&[b"GET", format!("hot:{i}").as_bytes()]));
            }
            w.send(&bytes);
            for _ in 0..2000 {
                w.read2();
            }
        }
        assert_eq!(fill(&mut w, "new", 0..25_000, &[]), 0);
        assert!(evicted(&mut r) > 5000, "{policy}");
        let hot = surviving(&mut w, "hot", 2000) as f64 / 2000.0;
        let cold = surviving(&mut w, "cold", 20_000) as f64 / 20_000.0;
        // Sampling with a pool approximates LRU/LFU (as in Redis): what is
        // used survives far better than what is not, if not perfectly.
        assert!(
            hot > 0.85 && hot > cold + 0.3,
            "{policy}: hot {hot:.2} cold {cold:.2}"
        );
        if policy == "allkeys-lfu" {
            // The counter is logarithmic and random (as in Redis): 30
            // accesses leave one key at 6 a time in 16, and a minute
            // turning over takes one off. The mean over the hot keys is
            // about 7 either way, and 5 (the new key's value) if
            // accesses went uncounted.
            let mut bytes = Vec::new();
            for i in 0..2000 {
                bytes.extend(encode(&[b"OBJECT", b"FREQ", format!("hot:{i}").as_bytes()]));
            }
            w.send(&bytes);
            let counts: Vec<i64> = (0..2000)
                .filter_map(|_| match w.read2() {
                    Frame::Int(f) => Some(f),
                    _ => None,
                })
                .collect();
            let mean = counts.iter().sum::<i64>() as f64 / counts.len() as f64;
            assert!(mean > 5.8, "counted accesses: mean {mean:.2}");
        }
    }
}

#[test]
fn volatile_ttl_evicts_the_soonest_to_expire_first() {
    let (node, _) = limited("volatile-ttl", 6 * MB);
    let mut w = node.raw();
    assert_eq!(fill(&mut w, "short", 0..10_000, &["EX", "1000"]), 0);
    assert_eq!(fill(&mut w, "long", 0..10_000, &["EX", "1000000"]), 0);
    assert_eq!(fill(&mut w, "more", 0..40_000, &["EX", "1000000"]), 0);
    let short = surviving(&mut w, "short", 10_000);
    let long = surviving(&mut w, "long", 10_000);
    assert!(short * 2 < long, "short {short} long {long}");
}

/// A node without a log holding 40,000 keys `k:N`, evicting at random
/// once a limit is set.
fn filled_with_random_eviction() -> (TestNode, Raw) {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    ok(
        &mut r,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-random"],
    );
    assert_eq!(fill(&mut r, "k", 0..40_000, &[]), 0);
    (node, r)
}

/// Over `maxmemory`, reads evict too, as in Redis: a limit lowered below
/// the data is reached again by a read-only load, and INFO says how long
/// memory was over it.
#[test]
fn reads_evict_once_the_limit_is_lowered() {
    let (_node, mut r) = filled_with_random_eviction();
    let limit = used_memory(&mut r) - 2 * MB;
    ok(&mut r, &["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    eventually("reads brought memory under the limit", || {
        bulk(&mut r, &["GET", "k:1"]);
        used_memory(&mut r) <= limit
    });
    assert!(evicted(&mut r) > 0);
    // The spell over the limit ends with the first command that finds
    // memory under it (INFO is one).
    eventually("the spell over the limit ended", || {
        let info = bulk(&mut r, &["INFO", "stats"]).unwrap();
        info_field(&info, "current_eviction_exceeded_time") == "0"
    });
    let info = bulk(&mut r, &["INFO", "stats"]).unwrap();
    let total: u64 = info_field(&info, "total_eviction_exceeded_time")
        .parse()
        .unwrap();
    assert!(total < 60_000, "{total}");
}

/// A limit lowered on an idle node is reached without any command: the
/// cron evicts, as Redis's eviction timer does. Only a subscriber listens
/// after the CONFIG SET, and hears the `evicted` events.
#[test]
fn an_idle_node_evicts_down_to_a_lowered_limit() {
    let (node, mut r) = filled_with_random_eviction();
    ok(&mut r, &["CONFIG", "SET", "notify-keyspace-events", "Ee"]);
    let mut sub = node.raw();
    sub.call(&["SUBSCRIBE", "__keyevent@0__:evicted"]);
    let limit = used_memory(&mut r) - 2 * MB;
    ok(&mut r, &["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    // No command from here on until the events are in.
    let mut heard = 0;
    while heard < 100 {
        match sub.read2() {
            Frame::Array(v) if v[0] == Frame::bulk("message") => heard += 1,
            other => panic!("{other:?}"),
        }
    }
    eventually("memory under the limit", || used_memory(&mut r) <= limit);
    assert!(evicted(&mut r) >= 100);
}

/// `lfu-log-factor` and `lfu-decay-time` act as in Redis: with a factor
/// of 0 every access counts (so the counters are exact and comparable
/// with redis-server's), and a decay time of 0 never lowers them.
#[test]
fn lfu_parameters_shape_the_counter_as_in_redis() {
    let mut script: Vec<Vec<String>> = Vec::new();
    let owned = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for cmd in [
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"][..],
        &["CONFIG", "SET", "lfu-log-factor", "0"],
        &["CONFIG", "SET", "lfu-decay-time", "0"],
        &["CONFIG", "GET", "lfu-log-factor"],
        &["CONFIG", "GET", "lfu-decay-time"],
        &["CONFIG", "SET", "lfu-log-factor", "-1"],
        &["SET", "k", "v"],
        &["OBJECT", "FREQ", "k"],
    ] {
        script.push(owned(cmd));
    }
    for _ in 0..12 {
        script.push(owned(&["GET", "k"]));
    }
    script.push(owned(&["OBJECT", "FREQ", "k"]));
    // Overwrites count as a use (Redis's setKey looks the key up); TYPE,
    // EXISTS, TTL and OBJECT do not.
    for cmd in [
        &["SET", "k", "v2"][..],
        &["OBJECT", "FREQ", "k"],
        &["EXISTS", "k"],
        &["TYPE", "k"],
        &["TTL", "k"],
        &["OBJECT", "ENCODING", "k"],
        &["OBJECT", "FREQ", "k"],
        &["MSET", "k", "v3"],
        &["SET", "k", "v4", "EX", "100"],
        &["SETRANGE", "k", "0", "x"],
        &["OBJECT", "FREQ", "k"],
        &["SADD", "s", "a"],
        &["SINTERSTORE", "k", "s"],
        &["OBJECT", "FREQ", "k"],
        &["SET", "k", "v", "GET"],
        &["OBJECT", "FREQ", "k"],
        &["SET", "k", "v", "NX"],
        &["SET", "k", "v", "XX"],
        &["OBJECT", "FREQ", "k"],
        &["GETSET", "k", "v"],
        &["SET", "k", "v", "KEEPTTL"],
        &["SETEX", "k", "100", "v"],
        &["OBJECT", "FREQ", "k"],
    ] {
        script.push(owned(cmd));
    }
    script.push(owned(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]));
    crate::support::same_as_redis_owned(&script);
}

/// CLIENT NO-TOUCH (Redis 7.2): the client's reads and writes leave keys'
/// LFU counters (and access times) alone, except TOUCH; CLIENT INFO shows
/// the mode as `T`, NO-EVICT as `e`.
#[test]
fn client_no_touch_leaves_counters_alone() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(
        &mut r,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"],
    );
    ok(&mut r, &["CONFIG", "SET", "lfu-log-factor", "0"]);
    ok(&mut r, &["SET", "k", "v"]);
    assert_eq!(int(&mut r, &["OBJECT", "FREQ", "k"]), 5);
    ok(&mut r, &["CLIENT", "NO-TOUCH", "ON"]);
    ok(&mut r, &["CLIENT", "NO-EVICT", "ON"]);
    let info = bulk(&mut r, &["CLIENT", "INFO"]).unwrap();
    assert!(info.contains(" flags=eT "), "{info}");
    for cmd in [
        &["GET", "k"][..],
        &["SET", "k", "v2"],
        &["APPEND", "k", "x"],
        &["GETRANGE", "k", "0", "-1"],
    ] {
        r.call(cmd);
    }
    assert_eq!(int(&mut r, &["OBJECT", "FREQ", "k"]), 5);
    assert_eq!(int(&mut r, &["TOUCH", "k"]), 1);
    assert_eq!(int(&mut r, &["OBJECT", "FREQ", "k"]), 6);
    assert_eq!(
        err(&mut r, &["CLIENT", "NO-TOUCH", "maybe"]),
        "ERR syntax error"
    );
    ok(&mut r, &["CLIENT", "NO-TOUCH", "OFF"]);
    r.call(&["GET", "k"]);
    assert_eq!(int(&mut r, &["OBJECT", "FREQ", "k"]), 7);
    ok(&mut r, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
}

/// A key evicted to make room for a command is not that command's doing:
/// a client tracking it is told before the command's reply (its own
/// writes' invalidations come after), as Redis tells it. Also needs
/// `used_memory` to count the command before's 200 KB at once.
#[test]
fn a_tracked_key_evicted_for_a_command_is_told_before_its_reply() {
    let node = TestNode::start();
    let reference = crate::support::ReferenceRedis::start();
    evicted_key_told_first(node.raw());
    evicted_key_told_first(reference.raw());
}

fn evicted_key_told_first<S: std::io::Read + std::io::Write>(mut c: Raw<S>) {
    let call = |c: &mut Raw<S>, args: &[&str]| {
        let reply = c.call(args);
        assert!(!matches!(reply, Frame::Error(_)), "{args:?}: {reply:?}");
        reply
    };
    // Every command once first: a database's first key sets up its
    // tables, a command's first call its latency histogram (~25 KB, in
    // Redis too), and so on; the limit leaves only 100 KB of room.
    for args in [
        &["SET", "warm", "x"][..],
        &["SETEX", "w", "10000", "x"],
        &["GET", "w"],
        &["SETBIT", "wb", "8", "0"],
        &["GETBIT", "wb", "0"],
        &["DEL", "w", "wb"],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["HELLO", "3"],
        &["CLIENT", "TRACKING", "on"],
        &["CLIENT", "TRACKING", "off"],
        &["HELLO", "2"],
    ] {
        c.cmd(args);
        c.read3();
    }
    let Frame::Bulk(info) = call(&mut c, &["INFO", "memory"]) else {
        panic!("INFO")
    };
    let info = String::from_utf8(info).unwrap();
    let field = |name: &str| info_field(&info, name).parse::<u64>().unwrap();
    let used = field("used_memory") - field("mem_not_counted_for_evict");
    let limit = (used + 100 * 1024).to_string();
    call(&mut c, &["CONFIG", "SET", "maxmemory", &limit]);
    call(
        &mut c,
        &["CONFIG", "SET", "maxmemory-policy", "volatile-random"],
    );
    c.cmd(&["HELLO", "3"]);
    c.read3();
    for args in [
        &["CLIENT", "TRACKING", "on"][..],
        &["SETEX", "volatile-key", "10000", "x"],
    ] {
        c.cmd(args);
        assert_eq!(c.read3(), Frame::Simple("OK".into()), "{args:?}");
    }
    c.cmd(&["GET", "volatile-key"]);
    assert_eq!(c.read3(), Frame::bulk("x"));
    // Some 200 KB over the limit: the next command evicts the only
    // volatile key, which this client has read.
    c.cmd(&["SETBIT", "big-key", "1600000", "0"]);
    assert_eq!(c.read3(), Frame::Int(0));
    c.cmd(&["GETBIT", "big-key", "0"]);
    let invalidated = Frame::Array(vec![Frame::bulk("volatile-key")]);
    assert_eq!(
        c.read3(),
        Frame::Push(vec![Frame::bulk("invalidate"), invalidated])
    );
    assert_eq!(c.read3(), Frame::Int(0));
}
