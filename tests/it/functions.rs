//! Functions (FUNCTION, FCALL) and scripts that declare their flags
//! (`#!lua flags=...`): replies and error texts compared with
//! redis-server's, libraries kept by the log and its rewrite, carried to
//! replicas, moved by FUNCTION DUMP/RESTORE both ways and read from a Redis
//! RDB file.

use crate::replication::{caught_up, replica_of};
use crate::support::{encode, eventually, same_as_redis, Frame, Raw, ReferenceRedis, TestNode};
use crate::{bulk, err, ok};

/// A library with a function of each kind: one that writes, one that
/// only reads (`no-writes`), one that may write over maxmemory.
const COUNTERS: &str = r#"#!lua name=counters
redis.register_function('bump', function(keys, args) return redis.call('incrby', keys[1], args[1] or 1) end)
redis.register_function{function_name = 'peek', callback = function(keys) return redis.call('get', keys[1]) end, flags = {'no-writes'}, description = 'reads a counter'}
redis.register_function{function_name = 'force', callback = function(keys, args) return redis.call('set', keys[1], args[1]) end, flags = {'allow-oom'}}
"#;

#[test]
fn functions_answer_as_redis() {
    same_as_redis(&[
        &["FUNCTION", "LOAD", COUNTERS],
        &["FCALL", "bump", "1", "c"],
        &["FCALL", "BUMP", "1", "c", "5"],
        &["FCALL_RO", "peek", "1", "c"],
        &["FCALL_RO", "bump", "1", "c"],
        &["FCALL", "nosuch", "0"],
        &["FCALL", "bump", "x"],
        &["FCALL", "bump", "-1"],
        &["FCALL", "bump", "3", "a"],
        &["FUNCTION", "LOAD", COUNTERS],
        &["FUNCTION", "LOAD", "REPLACE", COUNTERS],
        &["FUNCTION", "LIST", "LIBRARYNAME", "nomatch"],
        &["FUNCTION", "LIST", "libraryname"],
        &["FUNCTION", "LIST", "bogus"],
        &["FUNCTION", "STATS"],
        &["FUNCTION", "KILL"],
        &["FUNCTION", "HELP"],
        // Load-time errors: the shebang, the load API, registration.
        &["FUNCTION", "LOAD", "return 1"],
        &["FUNCTION", "LOAD", "#!lua name=x"],
        &["FUNCTION", "LOAD", "#!lua\nreturn 1"],
        &["FUNCTION", "LOAD", "#!js name=x\nreturn 1"],
        &["FUNCTION", "LOAD", "#!lua name=x-y\nreturn 1"],
        &["FUNCTION", "LOAD", "#!lua name=x foo=bar\nreturn 1"],
        &["FUNCTION", "LOAD", "#!lua name=x name=y\nreturn 1"],
        &["FUNCTION", "LOAD", "#!lua name=x\nlocal a = 1"],
        &["FUNCTION", "LOAD", "#!lua name=x\nlocal a = (("],
        &["FUNCTION", "LOAD", "#!lua name=x\nlocal s = string.rep('a', 2)"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.call('set', 'a', 'b')"],
        &["FUNCTION", "LOAD", "#!lua name=x\ny = 1"],
        &["FUNCTION", "LOAD", "#!lua name=x\nlocal r = redis\nr.f = 1"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.log(redis.LOG_NOTICE)"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f')"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function(5)"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function({}, function() end)"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function{function_name = 'f'}"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function{callback = function() end}"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function{function_name = 'f', callback = 5}"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function{function_name = 'f', callback = function() end, flags = 'no-writes'}"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function{function_name = 'f', callback = function() end, flags = {'bad'}}"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function{function_name = 'f', callback = function() end, other = 1}"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', function() end)\nredis.register_function('f', function() end)"],
        &["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('PEEK', function() end)"],
        &["FUNCTION", "LOAD", "#!lua name=x\nwhile true do end"],
        &["FUNCTION", "LOAD", "bogus", "#!lua name=x\nreturn 1"],
        // What a function sees when it runs.
        &["FUNCTION", "LOAD", "#!LUA name=probe\nredis.register_function('globals', function(k, a) return {type(KEYS), #k, #a} end)\nredis.register_function('assign', function() z = 1 end)\nredis.register_function('api', function() return {type(redis.register_function), redis.LOG_WARNING, type(cjson.encode), type(string.rep)} end)\nredis.register_function('fails', function() error('boom') end)\nredis.register_function('pfails', function(k) return redis.pcall('incr', k[1]) end)"],
        &["FCALL", "globals", "0"],
        &["FCALL", "assign", "0"],
        &["FCALL", "api", "0"],
        &["FCALL", "fails", "0"],
        &["SET", "text", "abc"],
        &["FCALL", "pfails", "1", "text"],
        &["FUNCTION", "DELETE", "PROBE"],
        &["FUNCTION", "DELETE", "probe"],
        &["FCALL", "globals", "0"],
        &["FUNCTION", "FLUSH", "LATER"],
        &["FUNCTION", "RESTORE", "garbage"],
        &["FUNCTION", "RESTORE", "garbage", "MAYBE"],
        // Functions in a transaction: flags judged when queued, the
        // library looked up when EXEC runs it.
        &["MULTI"],
        &["FCALL", "bump", "1", "t"],
        &["FUNCTION", "DELETE", "counters"],
        &["FCALL", "bump", "1", "t"],
        &["EXEC"],
        &["FUNCTION", "LOAD", COUNTERS],
        // Over maxmemory: only what cannot grow memory or says allow-oom.
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["FCALL", "bump", "1", "c"],
        &["FCALL", "force", "1", "f", "v"],
        &["FCALL", "peek", "1", "f"],
        &["FUNCTION", "LOAD", "REPLACE", COUNTERS],
        &["EVAL", "#!lua\nreturn redis.call('set', 'e', 1)", "0"],
        &["EVAL", "#!lua flags=allow-oom\nreturn redis.call('set', 'e', 2)", "0"],
        &["EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'e')", "0"],
        &["EVAL", "return redis.call('set', 'e', 3)", "0"],
        // Inside MULTI nothing more gets in, not even MULTI or WATCH.
        &["MULTI"],
        &["MULTI"],
        &["WATCH", "c"],
        &["DISCARD"],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["FUNCTION", "FLUSH", "SYNC"],
        &["FUNCTION", "LIST"],
    ]);
}

/// A function past busy-reply-threshold makes the node BUSY as a script
/// does, shows in FUNCTION STATS, and only FUNCTION KILL stops it (SCRIPT
/// KILL is for scripts), even one that catches errors in a loop.
#[test]
fn a_function_past_the_threshold_is_busy_until_function_kill() {
    let node = TestNode::start_with(&["--busy-reply-threshold", "100"]);
    let mut r = node.raw();
    load(
        &mut r,
        "#!lua name=loops\nredis.register_function('spin', function() while true do end end)\nredis.register_function('catching', function() while true do pcall(function() while true do end end) end end)",
    );
    let busy =
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
    for f in ["spin", "catching"] {
        let mut a = node.raw();
        a.cmd(&["FCALL", f, "0"]);
        let mut b = crate::scripting::busy_conn(&node);
        assert_eq!(err(&mut b, &["PING"]), busy);
        assert_eq!(err(&mut b, &["SCRIPT", "KILL"]), busy);
        let Frame::Array(stats) = b.call(&["FUNCTION", "STATS"]) else {
            panic!("FUNCTION STATS")
        };
        let Frame::Array(running) = &stats[1] else {
            panic!("{stats:?}")
        };
        assert_eq!(
            running[..4],
            [
                Frame::bulk("name"),
                Frame::bulk(f),
                Frame::bulk("command"),
                Frame::Array(vec![Frame::bulk("FCALL"), Frame::bulk(f), Frame::bulk("0")]),
            ]
        );
        assert_eq!(running[4], Frame::bulk("duration_ms"));
        assert!(
            matches!(running[5], Frame::Int(ms) if ms >= 100),
            "{running:?}"
        );
        ok(&mut b, &["FUNCTION", "KILL"]);
        match a.read2() {
            Frame::Error(e) => assert!(
                e.starts_with("ERR Script killed by user with SCRIPT KILL... script: ")
                    && e.contains(", on @user_function:"),
                "{f}: {e}"
            ),
            other => panic!("{f}: {other:?}"),
        }
        assert_eq!(b.call(&["PING"]), Frame::Simple("PONG".into()));
        let Frame::Array(stats) = b.call(&["FUNCTION", "STATS"]) else {
            panic!("FUNCTION STATS")
        };
        assert_eq!(stats[1], Frame::Null);
    }
}

#[test]
fn scripts_declare_their_flags_as_redis_reads_them() {
    same_as_redis(&[
        &["EVAL", "#!lua", "0"],
        &["EVAL", "#!js\nreturn 1", "0"],
        &["EVAL", "#!LUA\nreturn 1", "0"],
        &["EVAL", "#!lua name=x\nreturn 1", "0"],
        &["EVAL", "#!lua flags=bad\nreturn 1", "0"],
        &["EVAL", "#!lua flags=NO-WRITES\nreturn 1", "0"],
        &["EVAL", "#!lua flags=,\nreturn 1", "0"],
        &[
            "EVAL",
            "#!lua flags=\nreturn redis.call('set', 'a', 1)",
            "0",
        ],
        &["EVAL", "#!lua flags=no-writes,allow-oom\nreturn 2", "0"],
        &[
            "EVAL",
            "#!lua flags=no-writes\nreturn redis.call('set', 'a', 1)",
            "0",
        ],
        // Line numbers count the shebang's line.
        &["EVAL", "#!lua\n\nerror('here')", "0"],
        &["EVAL_RO", "#!lua\nreturn 1", "0"],
        &[
            "EVAL_RO",
            "#!lua flags=no-writes\nreturn redis.call('get', 'a')",
            "0",
        ],
        &["SCRIPT", "LOAD", "#!lua flags=bad\nreturn 1"],
        &["SCRIPT", "LOAD", "#!lua flags=no-writes\nreturn 1"],
        &[
            "EVALSHA_RO",
            "6a0d5b7b1d1d7d0d5dc7d8f5e1b1b0b8cc8d63c1",
            "0",
        ],
        &["SCRIPT", "LOAD", "#!lua\nreturn 1"],
        &["EVAL", "redis.log(1)", "0"],
        &["EVAL", "redis.log('a', 'b')", "0"],
        &["EVAL", "redis.log(9, 'b')", "0"],
        &["EVAL", "redis.log(redis.LOG_WARNING, 'from a script')", "0"],
        &["EVAL", "return redis.nosuch", "0"],
        &["EVAL", "redis.call = nil", "0"],
        &["EVAL", "return {type(setfenv), type(getfenv)}", "0"],
        &[
            "EVAL",
            "return {type(dofile), type(loadfile), type(print), type(newproxy)}",
            "0",
        ],
    ]);
    // EVALSHA_RO goes by the cached body's flags.
    let node = TestNode::start();
    let mut r = node.raw();
    let sha = bulk(&mut r, &["SCRIPT", "LOAD", "#!lua\nreturn 1"]).unwrap();
    assert_eq!(
        err(&mut r, &["EVALSHA_RO", &sha, "0"]),
        "ERR Can not execute a script with write flag using *_ro command."
    );
    let sha = bulk(
        &mut r,
        &["SCRIPT", "LOAD", "#!lua flags=no-writes\nreturn 7"],
    )
    .unwrap();
    assert_eq!(r.call(&["EVALSHA_RO", &sha, "0"]), Frame::Int(7));
}

fn load<S: std::io::Read + std::io::Write>(r: &mut Raw<S>, code: &str) {
    let name = code
        .lines()
        .next()
        .and_then(|l| l.split("name=").nth(1))
        .unwrap();
    assert_eq!(r.call(&["FUNCTION", "LOAD", code]), Frame::bulk(name));
}

/// FUNCTION LIST WITHCODE with each library's functions in name order
/// (their order within a library is Redis's hash order).
fn libraries(r: &mut Raw<impl std::io::Read + std::io::Write>) -> Vec<String> {
    let Frame::Array(list) = r.call(&["FUNCTION", "LIST", "WITHCODE"]) else {
        panic!()
    };
    let mut out: Vec<String> = list
        .into_iter()
        .map(|lib| {
            let Frame::Array(mut fields) = lib else {
                panic!("{lib:?}")
            };
            if let Some(Frame::Array(fs)) = fields.get_mut(5) {
                fs.sort_by_key(|f| format!("{f:?}"));
            }
            format!("{fields:?}")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn libraries_are_kept_by_the_log_and_reach_replicas() {
    let mut primary = TestNode::start();
    let mut p = primary.raw();
    // A replica that had libraries of its own holds its primary's after
    // the full sync, and only those.
    let replica = TestNode::start();
    let mut r = replica.raw();
    load(
        &mut r,
        "#!lua name=own\nredis.register_function('own', function() return 1 end)",
    );
    load(&mut p, COUNTERS);
    assert_eq!(p.call(&["FCALL", "bump", "1", "c", "2"]), Frame::Int(2));
    ok(
        &mut r,
        &["REPLICAOF", "127.0.0.1", &primary.port.to_string()],
    );
    caught_up(&primary, &replica);
    assert_eq!(libraries(&mut r), libraries(&mut p));
    // Functions run on a replica when they only read.
    assert_eq!(r.call(&["FCALL_RO", "peek", "1", "c"]), Frame::bulk("2"));
    assert_eq!(r.call(&["FCALL", "peek", "1", "c"]), Frame::bulk("2"));
    assert_eq!(
        err(&mut r, &["FCALL", "bump", "1", "c"]),
        "READONLY You can't write against a read only replica."
    );
    assert_eq!(
        err(&mut r, &["FUNCTION", "FLUSH"]),
        "READONLY You can't write against a read only replica."
    );
    // Changes stream to the replica; a rewrite's base holds the libraries.
    let chained = replica_of(&replica, &[]);
    load(
        &mut p,
        "#!lua name=later\nredis.register_function('later', function() return 'l' end)",
    );
    p.call(&["BGREWRITEAOF"]);
    eventually("the rewrite is done", || {
        let info = bulk(&mut p, &["INFO", "persistence"]).unwrap();
        crate::info_field(&info, "aof_rewrite_in_progress") == "0"
            && crate::info_field(&info, "aof_rewrite_scheduled") == "0"
    });
    ok(&mut p, &["FUNCTION", "DELETE", "counters"]);
    load(
        &mut p,
        "#!lua name=last\nredis.register_function('last', function() return 'z' end)",
    );
    caught_up(&primary, &replica);
    caught_up(&replica, &chained);
    let want = libraries(&mut p);
    assert_eq!(want.len(), 2);
    assert_eq!(libraries(&mut r), want);
    assert_eq!(libraries(&mut chained.raw()), want);
    crate::wait_synced(&mut p);
    primary.restart(&[]).unwrap();
    let mut p = primary.raw();
    assert_eq!(libraries(&mut p), want);
    assert_eq!(p.call(&["FCALL", "later", "0"]), Frame::bulk("l"));
    assert_eq!(
        err(&mut p, &["FCALL", "bump", "1", "c"]),
        "ERR Function not found"
    );
    // A snapshot (SAVE) starts a node with the libraries too.
    ok(&mut p, &["SAVE"]);
    let dir = tempfile::tempdir().unwrap();
    let snapshot = primary.data_dir().join(dbfilename(&mut p));
    std::fs::copy(&snapshot, dir.path().join("snapshot")).unwrap();
    let d = dir.path().to_str().unwrap();
    let from_snapshot =
        TestNode::start_with(&["--dir", d, "--dbfilename", "snapshot", "--appendonly", "no"]);
    assert_eq!(libraries(&mut from_snapshot.raw()), want);
}

fn dbfilename(r: &mut Raw) -> String {
    match r.call(&["CONFIG", "GET", "dbfilename"]) {
        Frame::Array(v) => match &v[1] {
            Frame::Bulk(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// FUNCTION RESTORE of `payload`, with `policy` if given.
fn restore<S: std::io::Read + std::io::Write>(
    r: &mut Raw<S>,
    payload: &[u8],
    policy: Option<&str>,
) -> Frame {
    let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"RESTORE", payload];
    args.extend(policy.map(str::as_bytes));
    r.send(&encode(&args));
    r.read2()
}

#[test]
fn function_dump_and_restore_move_libraries_to_and_from_redis() {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let (mut s, mut r) = (node.raw(), reference.raw());
    load(&mut s, COUNTERS);
    // Long enough that Redis compresses it in its own dump.
    let long = format!(
        "#!lua name=long\nredis.register_function('long', function() return 'long' end)\n-- {}\n",
        "abc".repeat(200)
    );
    load(&mut s, &long);
    let Frame::Bulk(payload) = s.call(&["FUNCTION", "DUMP"]) else {
        panic!()
    };
    assert_eq!(restore(&mut r, &payload, None), Frame::Simple("OK".into()));
    assert_eq!(libraries(&mut r), libraries(&mut s));
    // Which library is named first is Redis's hash order.
    for named in [
        restore(&mut r, &payload, None),
        restore(&mut s, &payload, None),
    ] {
        let Frame::Error(e) = named else {
            panic!("{named:?}")
        };
        assert!(
            e == "ERR Library counters already exists" || e == "ERR Library long already exists",
            "{e}"
        );
    }
    assert_eq!(
        restore(&mut s, &payload, Some("REPLACE")),
        restore(&mut r, &payload, Some("REPLACE"))
    );
    let mut damaged = payload.clone();
    damaged[3] ^= 1;
    assert_eq!(
        restore(&mut s, &damaged, None),
        restore(&mut r, &damaged, None)
    );
    // Redis's own payload (compressed strings) restores here.
    load(
        &mut r,
        "#!lua name=theirs\nredis.register_function('theirs', function() return 't' end)",
    );
    let Frame::Bulk(theirs) = r.call(&["FUNCTION", "DUMP"]) else {
        panic!()
    };
    assert_eq!(
        restore(&mut s, &theirs, Some("FLUSH")),
        Frame::Simple("OK".into())
    );
    assert_eq!(libraries(&mut s), libraries(&mut r));
    assert_eq!(s.call(&["FCALL", "long", "0"]), Frame::bulk("long"));
    // A clash of function names between libraries refuses the whole
    // payload, as in Redis.
    ok(&mut s, &["FUNCTION", "DELETE", "theirs"]);
    assert_eq!(
        r.call(&["FUNCTION", "DELETE", "theirs"]),
        Frame::Simple("OK".into())
    );
    load(
        &mut s,
        "#!lua name=other\nredis.register_function('theirs', function() return 'o' end)",
    );
    load(
        &mut r,
        "#!lua name=other\nredis.register_function('theirs', function() return 'o' end)",
    );
    assert_eq!(
        restore(&mut s, &theirs, Some("REPLACE")),
        restore(&mut r, &theirs, Some("REPLACE"))
    );
    assert_eq!(libraries(&mut s), libraries(&mut r));
    // Redis's RDB file carries its libraries to a node started from it.
    assert_eq!(r.call(&["SAVE"]), Frame::Simple("OK".into()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        reference.dir().join("dump.rdb"),
        dir.path().join("dump.rdb"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let imported =
        TestNode::start_with(&["--dir", d, "--dbfilename", "dump.rdb", "--appendonly", "no"]);
    assert_eq!(libraries(&mut imported.raw()), libraries(&mut r));
}
