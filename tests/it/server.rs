use std::io::{BufRead, BufReader};

use crate::support::{
    cpu_ticks_over, eventually, process_wakeups, same_as_redis, same_as_redis_owned,
    thread_wakeups, Frame, Raw, TestNode,
};
use crate::{bulk, err, info_field, int, ok, strings};

#[test]
fn info_sections_and_fields() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    bulk(&mut r, &["GET", "k"]);
    bulk(&mut r, &["GET", "missing"]);
    let info = bulk(&mut r, &["INFO"]).unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "missing {section}");
    }
    assert!(
        !info.contains("# Commandstats"),
        "commandstats only with 'all'"
    );
    assert_eq!(info_field(&info, "tcp_port"), node.port.to_string());
    assert_eq!(info_field(&info, "role"), "master");
    assert_eq!(info_field(&info, "keyspace_hits"), "1");
    assert_eq!(info_field(&info, "keyspace_misses"), "1");
    assert_eq!(info_field(&info, "db0"), "keys=1,expires=0,avg_ttl=0");
    assert!(
        info_field(&info, "master_repl_offset")
            .parse::<u64>()
            .unwrap()
            > 0,
        "writes produce effects"
    );
    let all = bulk(&mut r, &["INFO", "all"]).unwrap();
    assert!(all.contains("cmdstat_set:calls=1,"), "{all}");
    let only = bulk(&mut r, &["INFO", "keyspace", "cpu"]).unwrap();
    assert!(only.starts_with("# CPU") && only.contains("# Keyspace") && !only.contains("# Server"));
    err(&mut r, &["GET"]);
    let stats = bulk(&mut r, &["INFO", "errorstats"]).unwrap();
    assert!(stats.contains("errorstat_ERR:count=1"), "{stats}");
}

fn used_memory(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
    info_field(&info, "used_memory").parse().unwrap()
}

#[test]
fn memory_figures_come_from_the_allocator() {
    let node = TestNode::start();
    let mut con = node.conn();
    let before = used_memory(&mut con);
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg("x".repeat(100))
            .ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    let after = used_memory(&mut con);
    // 20,000 values of 100 bytes are at least 2 MB of allocations.
    assert!(after > before + 2_000_000, "before {before} after {after}");
    let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
    let peak: u64 = info_field(&info, "used_memory_peak").parse().unwrap();
    assert!(peak >= after);
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    eventually("memory released after FLUSHALL", || {
        used_memory(&mut con) < after - 1_000_000
    });
}

/// Tables emptied by DEL (not FLUSHALL, which drops them whole) give their
/// buckets back within a few cron ticks, as Redis's dicts shrink.
#[test]
fn memory_goes_back_after_keys_are_deleted() {
    // Without the log, whose buffers keep the size of the last burst.
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut con = node.conn();
    let empty = used_memory(&mut con);
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(200_000)
        .query(&mut con)
        .unwrap();
    // On a connection of its own: its buffers go with it.
    {
        let mut deleter = node.conn();
        let mut pipe = redis::pipe();
        for i in 0..200_000 {
            pipe.cmd("DEL").arg(format!("key:{i}")).ignore();
        }
        let _: () = pipe.query(&mut deleter).unwrap();
    }
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 0);
    // About a dozen keys a slot left 16384 tables of 16 to 32 buckets
    // each, 3.7 MB that nothing gave back; what stays now is under 1 MB.
    eventually("the emptied tables let their buckets go", || {
        used_memory(&mut con) < empty + 2_000_000
    });
}

/// A database costs what its keys need: its 16384 slot tables are made
/// as keys land in them, so a database of one key costs about a tenth of
/// a megabyte (it cost 1.1 MB), and one big key freed by UNLINK leaves
/// used_memory well under twice what it was (Redis's lazyfree test).
#[test]
fn a_database_of_a_few_keys_costs_little() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut con = node.conn();
    let before = used_memory(&mut con);
    for db in 1..=5 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut con).unwrap();
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    }
    let after = used_memory(&mut con);
    assert!(
        after < before + 5 * 400_000,
        "five databases of one key: {before} -> {after}"
    );
    let _: () = redis::cmd("SELECT").arg(9).query(&mut con).unwrap();
    let orig = used_memory(&mut con);
    let members: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    let _: () = redis::cmd("SADD")
        .arg("myset")
        .arg(&members)
        .query(&mut con)
        .unwrap();
    let peak = used_memory(&mut con);
    assert!(peak > orig + 1_000_000, "{orig} -> {peak}");
    let n: i64 = redis::cmd("UNLINK").arg("myset").query(&mut con).unwrap();
    assert_eq!(n, 1);
    eventually("UNLINK gives the set's memory back", || {
        let now = used_memory(&mut con);
        now < peak && now < orig * 2
    });
}

/// Keys that only an option names (SORT's and GEORADIUS's STORE) are
/// found as Redis finds them, for COMMAND GETKEYS.
#[test]
fn command_getkeys_finds_store_keys_as_redis() {
    let lines = [
        "SORT k LIMIT 0 1 GET store BY store STORE d",
        "SORT k STORE d1 STORE d2",
        "SORT k",
        "GEORADIUS k 0 0 1 km STORE d STOREDIST d2",
        "GEORADIUS k 0 0 1 km storedist d2 store d",
        "GEORADIUS k 0 0 1 km STORE d STORE e",
        "GEORADIUS k 0 0 1 km STORE",
        "GEORADIUSBYMEMBER k m 1 km STOREDIST d",
        "GEORADIUSBYMEMBER k store 1 km COUNT 1",
    ];
    let script: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            ["COMMAND", "GETKEYS"]
                .iter()
                .map(|w| w.to_string())
                .chain(l.split(' ').map(str::to_string))
                .collect()
        })
        .collect();
    same_as_redis_owned(&script);
}

/// What each command does with each key (Redis's key specifications) is
/// declared with the command: COMMAND INFO shows the same key
/// specifications as redis-server for every command both have (keys
/// after option words included: XREAD's STREAMS, SORT's unknowns); COMMAND
/// GETKEYSANDFLAGS answers as Redis does, the flags that depend on the
/// arguments (SET's GET, BITFIELD's writes) included.
#[test]
fn key_specs_and_flags_match_redis() {
    let lines = [
        "SET k v",
        "SET k v GET",
        "SET k v EX 10 get",
        "MSET a 1 b 2",
        "LMOVE a b LEFT RIGHT",
        "SORT a STORE d",
        "SORT a BY x GET y",
        "ZUNIONSTORE d 2 a b WEIGHTS 1 2",
        "ZINTERCARD 2 a b",
        "SDIFFSTORE d a b c",
        "BITOP AND d a b",
        "BITFIELD k GET u8 0",
        "BITFIELD k GET u8 0 OVERFLOW SAT INCRBY u8 0 1",
        "BITFIELD k GET u8",
        "BITFIELD_RO k GET u8 0",
        "EVAL return 2 a b x",
        "EVAL_RO return 1 a",
        "FCALL f 1 a",
        "XREAD COUNT 1 STREAMS a b 0 0",
        "XREADGROUP GROUP g c STREAMS a 0",
        "EXISTS a b",
        "DEL a b",
        "RENAME a b",
        "RENAMENX a b",
        "COPY a b",
        "PFMERGE d a b",
        "PFCOUNT a b",
        "SPUBLISH ch m",
        "GEORADIUS k 0 0 1 km STORE d",
        "MIGRATE h 1 \"\" 0 1 KEYS a b",
        "OBJECT ENCODING k",
        "XGROUP CREATE s g $",
        "GET",
        "PING",
    ];
    let script: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let words = l.split(' ').map(|w| w.replace("\"\"", ""));
            ["COMMAND", "GETKEYSANDFLAGS"]
                .iter()
                .map(|w| w.to_string())
                .chain(words)
                .collect()
        })
        .collect();
    let (node, reference) = same_as_redis_owned(&script);

    // Name -> key specifications, subcommands included.
    fn specs(con: &mut redis::Connection) -> std::collections::HashMap<String, redis::Value> {
        fn walk(e: &redis::Value, out: &mut std::collections::HashMap<String, redis::Value>) {
            let redis::Value::Array(fields) = e else {
                panic!("{e:?}")
            };
            let name: String = redis::from_redis_value(&fields[0]).unwrap();
            out.insert(name, fields[8].clone());
            if let redis::Value::Array(subs) = &fields[9] {
                subs.iter().for_each(|s| walk(s, out));
            }
        }
        let mut out = std::collections::HashMap::new();
        let all: redis::Value = redis::cmd("COMMAND").query(con).unwrap();
        let redis::Value::Array(all) = all else {
            panic!("{all:?}")
        };
        all.iter().for_each(|e| walk(e, &mut out));
        out
    }
    /// Redis's specifications, without the notes some carry.
    fn without_notes(specs: &redis::Value) -> redis::Value {
        let redis::Value::Array(specs) = specs else {
            panic!("{specs:?}")
        };
        let specs = specs.iter().map(|s| {
            let redis::Value::Array(kv) = s else {
                panic!("{s:?}")
            };
            let kv = kv.chunks(2).filter(
                |p| !matches!(&p[0], redis::Value::BulkString(k) if k.as_slice() == b"notes"),
            );
            redis::Value::Array(kv.flatten().cloned().collect())
        });
        redis::Value::Array(specs.collect())
    }
    let ours = specs(&mut node.conn());
    let theirs = specs(&mut reference.client().get_connection().unwrap());
    let mut compared = 0;
    for (name, spec) in &ours {
        let Some(want) = theirs.get(name) else {
            continue;
        };
        assert_eq!(spec, &without_notes(want), "{name}'s key specifications");
        compared += 1;
    }
    assert!(compared > 230, "compared {compared}");
}

/// Shoal loads no modules and answers MODULE as a Redis without any:
/// LIST is empty, LOAD and UNLOAD are refused while
/// `enable-module-command` is `no` (the default) and fail when allowed.
#[test]
fn module_answers_as_a_redis_without_modules() {
    same_as_redis(&[
        &["MODULE", "LIST"],
        &["MODULE", "HELP"],
        &["MODULE", "LOAD", "/nonexistent/module.so"],
        &["MODULE", "UNLOAD", "nosuch"],
        &["MODULE", "LIST", "extra"],
        &["MODULE"],
    ]);
    let node = TestNode::start_with(&["--enable-module-command", "yes"]);
    let mut r = node.raw();
    assert_eq!(
        crate::err(&mut r, &["MODULE", "LOAD", "/nonexistent/module.so"]),
        "ERR Error loading the extension. Please check the server logs."
    );
    assert_eq!(
        crate::err(&mut r, &["MODULE", "UNLOAD", "nosuch"]),
        "ERR Error unloading module: no such module with that name"
    );
}

/// A client's words in an error are cut as Redis's `%.128s` cuts them, so
/// a long request gets a short error, the same as from redis-server.
#[test]
fn long_words_in_errors_are_cut_as_in_redis() {
    let long = |c: char, n: usize| c.to_string().repeat(n);
    let (a, b, c) = (long('a', 100), long('b', 100), long('c', 300));
    same_as_redis_owned(&[
        vec!["NOSUCH".into(), a.clone(), b.clone(), "x".into()],
        vec![c.clone(), a.clone()],
        vec!["NOSUCH".into(), "x".into(), c.clone()],
        vec!["OBJECT".into(), c.clone()],
        vec!["CONFIG".into(), c.clone(), a],
        vec!["XINFO".into(), c],
    ]);
}

/// MEMORY PURGE hands freed pages back to the system (as Redis's does
/// with jemalloc), and MALLOC-STATS is jemalloc's own report.
#[test]
fn memory_purge_returns_freed_pages() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    let resident = |r: &mut Raw| -> u64 {
        info_field(&bulk(r, &["INFO", "memory"]).unwrap(), "allocator_resident")
            .parse()
            .unwrap()
    };
    ok(&mut r, &["DEBUG", "POPULATE", "300000", "k", "200"]);
    let full = resident(&mut r);
    ok(&mut r, &["FLUSHALL"]);
    ok(&mut r, &["MEMORY", "PURGE"]);
    let purged = resident(&mut r);
    // About 90 MB held the keys; a purge leaves well under half of it.
    assert!(full > 60_000_000 && purged < full / 2, "{full} -> {purged}");
    let stats = bulk(&mut r, &["MEMORY", "MALLOC-STATS"]).unwrap();
    assert!(
        stats.starts_with("___ Begin jemalloc statistics ___")
            && stats.contains("--- End jemalloc statistics ---"),
        "{stats}"
    );
}

#[test]
fn config_get_set_resetstat() {
    let node = TestNode::start();
    let mut r = node.raw();
    let Frame::Array(kv) = r.call(&["CONFIG", "GET", "port", "time*"]) else {
        panic!()
    };
    assert_eq!(
        kv,
        vec![
            Frame::bulk("port"),
            Frame::bulk(&node.port.to_string()),
            Frame::bulk("timeout"),
            Frame::bulk("0")
        ]
    );
    ok(
        &mut r,
        &["CONFIG", "SET", "maxclients", "50", "slowlog-max-len", "5"],
    );
    assert_eq!(
        strings(&mut r, &["CONFIG", "GET", "maxclients"]),
        vec!["maxclients", "50"]
    );
    ok(&mut r, &["CONFIG", "SET", "proto-max-bulk-len", "2mb"]);
    assert_eq!(
        strings(&mut r, &["CONFIG", "GET", "proto-max-bulk-len"]),
        vec!["proto-max-bulk-len", "2097152"]
    );
    assert_eq!(
        err(&mut r, &["CONFIG", "SET", "databases", "1"]),
        "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config"
    );
    assert_eq!(
        err(&mut r, &["CONFIG", "SET", "maxclients", "abc"]),
        "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"
    );
    assert_eq!(
        err(&mut r, &["CONFIG", "SET", "nosuch", "1"]),
        "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    );
    // All or nothing.
    err(&mut r, &["CONFIG", "SET", "maxclients", "60", "hz", "0"]);
    assert_eq!(
        strings(&mut r, &["CONFIG", "GET", "maxclients"]),
        vec!["maxclients", "50"]
    );
    assert_eq!(
        err(&mut r, &["CONFIG", "SET", "maxclients"]),
        "ERR wrong number of arguments for 'config|set' command"
    );
    assert_eq!(
        err(&mut r, &["CONFIG"]),
        "ERR wrong number of arguments for 'config' command"
    );
    ok(&mut r, &["CONFIG", "RESETSTAT"]);
    let info = bulk(&mut r, &["INFO", "stats"]).unwrap();
    assert_eq!(
        info_field(&info, "total_commands_processed"),
        "1",
        "only CONFIG RESETSTAT itself"
    );
}

#[test]
fn proto_max_bulk_len_applies_at_runtime() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["CONFIG", "SET", "proto-max-bulk-len", "1mb"]);
    r.send(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 2 * 1024 * 1024).as_bytes());
    assert_eq!(
        r.read2(),
        Frame::Error("ERR Protocol error: invalid bulk length".into())
    );
    assert!(r.is_closed());
}

#[test]
fn command_introspection() {
    let node = TestNode::start();
    let mut r = node.raw();
    let count = int(&mut r, &["COMMAND", "COUNT"]);
    assert!(count >= 60, "{count}");
    let Frame::Array(all) = r.call(&["COMMAND"]) else {
        panic!()
    };
    assert_eq!(all.len() as i64, count);
    let Frame::Array(info) = r.call(&["COMMAND", "INFO", "mset", "nosuch"]) else {
        panic!()
    };
    let Frame::Array(mset) = &info[0] else {
        panic!()
    };
    assert_eq!(&mset[..2], &[Frame::bulk("mset"), Frame::Int(-3)]);
    assert_eq!(&mset[3..6], &[Frame::Int(1), Frame::Int(-1), Frame::Int(2)]);
    assert_eq!(info[1], Frame::Null);
    let Frame::Array(cfg) = r.call(&["COMMAND", "INFO", "config"]) else {
        panic!()
    };
    let Frame::Array(cfg) = &cfg[0] else { panic!() };
    let Frame::Array(subs) = &cfg[9] else {
        panic!()
    };
    assert!(subs.len() >= 3, "subcommands are listed");
    assert_eq!(
        strings(&mut r, &["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]),
        vec!["a", "b"]
    );
    assert_eq!(
        strings(&mut r, &["COMMAND", "GETKEYS", "RENAME", "x", "y"]),
        vec!["x", "y"]
    );
    assert_eq!(
        err(&mut r, &["COMMAND", "GETKEYS", "PING"]),
        "ERR The command has no key arguments"
    );
    assert_eq!(
        err(&mut r, &["COMMAND", "GETKEYS", "NOSUCH", "x"]),
        "ERR Invalid command specified"
    );
    assert_eq!(
        err(&mut r, &["COMMAND", "GETKEYS", "GET"]),
        "ERR Invalid number of arguments specified for command"
    );
    // Redis's order: whether the command has keys comes before its arity;
    // a command whose keys are optional may name none.
    assert_eq!(
        err(&mut r, &["COMMAND", "GETKEYS", "PING", "a", "b"]),
        "ERR The command has no key arguments"
    );
    assert_eq!(
        r.call(&["COMMAND", "GETKEYS", "EVAL", "return 1", "0"]),
        Frame::Array(vec![])
    );
    assert_eq!(
        strings(
            &mut r,
            &["COMMAND", "GETKEYS", "EVAL", "return 1", "1", "k"]
        ),
        vec!["k"]
    );
    let names = strings(&mut r, &["COMMAND", "LIST"]);
    assert!(names.contains(&"get".to_string()) && names.contains(&"config|get".to_string()));
    let pat = strings(&mut r, &["COMMAND", "LIST", "FILTERBY", "PATTERN", "incr*"]);
    assert_eq!(pat.len(), 3, "{pat:?}");
    let cat = strings(&mut r, &["COMMAND", "LIST", "FILTERBY", "ACLCAT", "string"]);
    assert!(cat.contains(&"append".to_string()) && !cat.contains(&"del".to_string()));
    let Frame::Array(docs) = r.call(&["COMMAND", "DOCS", "get"]) else {
        panic!()
    };
    assert_eq!(docs[0], Frame::bulk("get"));
    assert_eq!(
        err(&mut r, &["NOSUCH", "a", "b"]),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err(&mut r, &["GET", "a", "b"]),
        "ERR wrong number of arguments for 'get' command"
    );
}

#[test]
fn slowlog_records_slow_commands() {
    let node = TestNode::start_with(&["--slowlog-log-slower-than", "0"]);
    let mut r = node.raw();
    ok(&mut r, &["SLOWLOG", "RESET"]);
    ok(&mut r, &["SET", "k", &"x".repeat(300)]);
    assert!(int(&mut r, &["SLOWLOG", "LEN"]) >= 1);
    // Newest first: SLOWLOG LEN itself, then the SET.
    let Frame::Array(entries) = r.call(&["SLOWLOG", "GET", "2"]) else {
        panic!()
    };
    let Frame::Array(e) = &entries[1] else {
        panic!()
    };
    assert_eq!(e.len(), 6);
    let Frame::Array(args) = &e[3] else { panic!() };
    assert_eq!(args[0], Frame::bulk("SET"));
    let Frame::Bulk(v) = &args[2] else { panic!() };
    assert!(String::from_utf8_lossy(v).ends_with("... (172 more bytes)"));
    ok(&mut r, &["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    ok(&mut r, &["SLOWLOG", "RESET"]);
    ok(&mut r, &["SET", "k", "v"]);
    assert_eq!(int(&mut r, &["SLOWLOG", "LEN"]), 0);
    // DEBUG SLEEP's sleep is its run time, as in Redis: over the limit,
    // it is logged; the commands around it are not.
    ok(
        &mut r,
        &["CONFIG", "SET", "slowlog-log-slower-than", "100000"],
    );
    ok(&mut r, &["DEBUG", "SLEEP", "0.2"]);
    ok(&mut r, &["SET", "k", "v"]);
    let Frame::Array(entries) = r.call(&["SLOWLOG", "GET"]) else {
        panic!()
    };
    assert_eq!(entries.len(), 1, "{entries:?}");
    let Frame::Array(e) = &entries[0] else {
        panic!()
    };
    assert!(matches!(e[2], Frame::Int(us) if us >= 200_000), "{e:?}");
    assert_eq!(
        e[3],
        Frame::Array(vec![
            Frame::bulk("DEBUG"),
            Frame::bulk("SLEEP"),
            Frame::bulk("0.2")
        ])
    );
    // In a transaction, the commands it ran are logged, EXEC never, and
    // two sleeps sleep both.
    ok(&mut r, &["SLOWLOG", "RESET"]);
    ok(&mut r, &["MULTI"]);
    r.call(&["DEBUG", "SLEEP", "0.1"]);
    r.call(&["SET", "k", "v"]);
    r.call(&["DEBUG", "SLEEP", "0.15"]);
    let started = std::time::Instant::now();
    r.call(&["EXEC"]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    let Frame::Array(entries) = r.call(&["SLOWLOG", "GET"]) else {
        panic!()
    };
    let logged: Vec<Frame> = entries
        .iter()
        .map(|e| match e {
            Frame::Array(e) => e[3].clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let sleep = |s: &str| {
        Frame::Array(vec![
            Frame::bulk("DEBUG"),
            Frame::bulk("SLEEP"),
            Frame::bulk(s),
        ])
    };
    assert_eq!(logged, vec![sleep("0.15"), sleep("0.1")]);
}

#[test]
fn monitor_streams_commands() {
    let node = TestNode::start();
    let mut m = node.raw();
    ok(&mut m, &["MONITOR"]);
    let mut r = node.raw();
    ok(&mut r, &["SET", "watched", "a b"]);
    let Frame::Simple(line) = m.read2() else {
        panic!()
    };
    assert!(
        line.contains(r#"[0 127.0.0.1:"#) && line.ends_with(r#""SET" "watched" "a b""#),
        "{line}"
    );

    // Inside a transaction, where one reply per command is expected, it
    // is refused, as in Redis, and the connection stays as it was.
    let mut tx = node.raw();
    ok(&mut tx, &["MULTI"]);
    assert_eq!(tx.call(&["MONITOR"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        tx.call(&["EXEC"]),
        Frame::Array(vec![Frame::Error(
            "ERR MONITOR isn't allowed for DENY BLOCKING client".into()
        )])
    );
    ok(&mut tx, &["SET", "after", "1"]);
    assert_eq!(tx.call(&["PING"]), Frame::Simple("PONG".into()));
}

/// Secrets in MIGRATE (AUTH, AUTH2), AUTH and HELLO are `(redacted)` in
/// MONITOR's lines and the slow log, the same arguments as Redis hides.
#[test]
fn monitor_and_slowlog_hide_secrets_as_redis() {
    let node = TestNode::start();
    let reference = crate::support::ReferenceRedis::start();
    fn hidden<S: std::io::Read + std::io::Write>(
        mut m: Raw<S>,
        mut r: Raw<S>,
    ) -> (Vec<String>, Vec<Frame>) {
        m.call(&["MONITOR"]);
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        r.call(&["SLOWLOG", "RESET"]);
        let sent: [&[&str]; 6] = [
            &["MIGRATE", "127.0.0.1", "1", "key", "9", "5000"],
            &[
                "MIGRATE",
                "127.0.0.1",
                "1",
                "key",
                "9",
                "5000",
                "AUTH",
                "pw",
            ],
            &[
                "MIGRATE",
                "127.0.0.1",
                "1",
                "",
                "9",
                "5000",
                "COPY",
                "AUTH2",
                "user",
                "pw",
                "KEYS",
                "auth",
                "k",
            ],
            &["AUTH", "not-real"],
            &["AUTH", "not-real", "not-a-password"],
            &["HELLO", "2", "AUTH", "not-real", "not-a-password"],
        ];
        for cmd in sent {
            r.call(cmd);
        }
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
        // Each line without its time and client address.
        let lines = (0..sent.len())
            .map(|_| match m.read2() {
                Frame::Simple(l) => l.split_once("] ").unwrap().1.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        let Frame::Array(entries) = r.call(&["SLOWLOG", "GET", "-1"]) else {
            panic!()
        };
        let args = entries
            .into_iter()
            .map(|e| match e {
                Frame::Array(e) => e[3].clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        (lines, args)
    }
    let shoal = hidden(node.raw(), node.raw());
    let redis = hidden(reference.raw(), reference.raw());
    assert_eq!(shoal, redis);
    assert!(
        shoal.0[2].contains(r#""AUTH2" "(redacted)" "(redacted)" "KEYS" "auth" "k""#),
        "{shoal:?}"
    );
    // ACL SETUSER: the user's name and every rule, passwords among them
    // (an admin command: never in MONITOR).
    fn setuser_logged<S: std::io::Read + std::io::Write>(mut r: Raw<S>) -> Frame {
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        r.call(&["SLOWLOG", "RESET"]);
        r.call(&["ACL", "SETUSER", "someone", "on", ">secret", "~*", "+get"]);
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
        let Frame::Array(entries) = r.call(&["SLOWLOG", "GET", "-1"]) else {
            panic!()
        };
        let is_setuser = |args: &Frame| matches!(args, Frame::Array(a) if a.get(1) == Some(&Frame::bulk("SETUSER")));
        let setuser = entries.iter().find_map(|e| match e {
            Frame::Array(e) if is_setuser(&e[3]) => Some(e[3].clone()),
            _ => None,
        });
        setuser.expect("ACL SETUSER is in the slow log")
    }
    let ours = setuser_logged(node.raw());
    assert_eq!(ours, setuser_logged(reference.raw()));
    let Frame::Array(args) = &ours else { panic!() };
    assert!(
        args[2..].iter().all(|a| *a == Frame::bulk("(redacted)")),
        "{ours:?}"
    );
    // CONFIG SET: the values of secrets only (an empty one too).
    fn config_sets_logged<S: std::io::Read + std::io::Write>(mut r: Raw<S>) -> Frame {
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        r.call(&["SLOWLOG", "RESET"]);
        r.call(&["CONFIG", "SET", "masterauth", ""]);
        r.call(&[
            "CONFIG",
            "SET",
            "maxmemory-samples",
            "5",
            "requirepass",
            "",
            "masterauth",
            "pw",
        ]);
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
        let Frame::Array(entries) = r.call(&["SLOWLOG", "GET", "3"]) else {
            panic!()
        };
        Frame::Array(
            entries
                .into_iter()
                .map(|e| match e {
                    Frame::Array(e) => e[3].clone(),
                    other => panic!("{other:?}"),
                })
                .collect(),
        )
    }
    let ours = config_sets_logged(node.raw());
    assert_eq!(ours, config_sets_logged(reference.raw()));
    let Frame::Array(entries) = &ours else {
        panic!()
    };
    let Frame::Array(last) = &entries[0] else {
        panic!()
    };
    assert_eq!(last[7], Frame::bulk("(redacted)"), "{ours:?}");
    assert_eq!(last[3], Frame::bulk("5"), "{ours:?}");
}

#[test]
fn time_lastsave_debug() {
    let node = TestNode::start();
    let mut r = node.raw();
    let t = strings(&mut r, &["TIME"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((t[0].parse::<i64>().unwrap() - now).abs() < 60);
    assert!(int(&mut r, &["LASTSAVE"]) > 0);
    ok(&mut r, &["DEBUG", "SLEEP", "0"]);
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    ok(&mut r, &["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
}

#[test]
fn cluster_slot_commands() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(int(&mut r, &["CLUSTER", "KEYSLOT", "foo"]), 12182);
    assert_eq!(
        int(&mut r, &["CLUSTER", "KEYSLOT", "{user1000}.following"]),
        int(&mut r, &["CLUSTER", "KEYSLOT", "user1000"])
    );
    for k in ["{t}a", "{t}b", "{t}c"] {
        ok(&mut r, &["SET", k, "v"]);
    }
    let slot = int(&mut r, &["CLUSTER", "KEYSLOT", "t"]).to_string();
    assert_eq!(int(&mut r, &["CLUSTER", "COUNTKEYSINSLOT", &slot]), 3);
    let mut keys = strings(&mut r, &["CLUSTER", "GETKEYSINSLOT", &slot, "10"]);
    keys.sort();
    assert_eq!(keys, vec!["{t}a", "{t}b", "{t}c"]);
    assert_eq!(
        strings(&mut r, &["CLUSTER", "GETKEYSINSLOT", &slot, "2"]).len(),
        2
    );
    assert_eq!(
        err(&mut r, &["CLUSTER", "COUNTKEYSINSLOT", "16384"]),
        "ERR Invalid slot"
    );
    assert_eq!(
        err(&mut r, &["CLUSTER", "GETKEYSINSLOT", "1", "-1"]),
        "ERR Invalid number of keys"
    );
    // The rest of Redis Cluster's commands answer as a Redis without
    // cluster support, so cluster-aware clients say what is wrong.
    for cmd in [
        &["CLUSTER", "SLOTS"][..],
        &["CLUSTER", "SHARDS"],
        &["CLUSTER", "NODES"],
        &["CLUSTER", "INFO"],
        &["CLUSTER", "MYID"],
        &["READONLY"],
        &["READWRITE"],
        &["ASKING"],
    ] {
        assert_eq!(
            err(&mut r, cmd),
            "ERR This instance has cluster support disabled",
            "{cmd:?}"
        );
    }
    assert_eq!(
        err(&mut r, &["CLUSTER", "SLOTS", "extra"]),
        "ERR wrong number of arguments for 'cluster|slots' command"
    );
}

#[test]
fn shutdown_command_stops_the_server() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
}

/// With the log off, SHUTDOWN writes the snapshot as Redis saves its RDB:
/// when `save` rules are set, always with SAVE, never with NOSAVE; the
/// node comes back with what it acknowledged. Illegal combinations are
/// refused and stop nothing.
#[test]
fn shutdown_saves_a_snapshot_as_redis_does() {
    let mut node = TestNode::start_with(&["--appendonly", "no", "--save", "3600 1"]);
    let mut r = node.raw();
    for bad in [
        &["SHUTDOWN", "NOSAVE", "SAVE"][..],
        &["SHUTDOWN", "ABORT", "NOW"],
        &["SHUTDOWN", "x"],
    ] {
        assert_eq!(err(&mut r, bad), "ERR syntax error", "{bad:?}");
    }
    assert_eq!(
        err(&mut r, &["SHUTDOWN", "ABORT"]),
        "ERR No shutdown in progress."
    );
    drop(r);
    // (save rules of the run, how it is stopped, what the next run reads)
    let runs: [(&str, &[&str], &str); 4] = [
        ("3600 1", &["SHUTDOWN"], "1"),
        // No rules: a plain SHUTDOWN saves nothing, SAVE does.
        ("", &["SHUTDOWN"], "1"),
        ("", &["SHUTDOWN", "SAVE"], "3"),
        ("3600 1", &["SHUTDOWN", "NOSAVE"], "3"),
    ];
    for (i, (rules, stop, then)) in runs.into_iter().enumerate() {
        if i > 0 {
            node.restart(&["--appendonly", "no", "--save", rules])
                .unwrap();
        }
        let mut r = node.raw();
        ok(&mut r, &["SET", "kept", &(i + 1).to_string()]);
        r.cmd(stop);
        assert!(node.wait_exit().success());
        node.restart(&["--appendonly", "no"]).unwrap();
        let mut r = node.raw();
        assert_eq!(
            bulk(&mut r, &["GET", "kept"]).as_deref(),
            Some(then),
            "after {stop:?} with save rules {rules:?}"
        );
        r.cmd(&["SHUTDOWN", "NOSAVE"]);
        assert!(node.wait_exit().success());
    }
}

#[test]
fn sigterm_stops_gracefully() {
    let mut node = TestNode::start();
    let pid = node.child.id() as i32;
    unsafe { libc_kill(pid, 15) };
    assert!(node.wait_exit().success());
    let lines: Vec<String> = node.log.try_iter().collect();
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:?}");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn redis_cli_works_unchanged() {
    let node = TestNode::start();
    assert_eq!(node.cli(&["SET", "cli", "hello"]).trim(), "OK");
    assert_eq!(node.cli(&["GET", "cli"]).trim(), "hello");
    assert_eq!(node.cli(&["--no-raw", "INCR", "n"]).trim(), "(integer) 1");
    let info = node.cli(&["INFO", "server"]);
    assert!(info.contains("redis_version"));
    // redis-cli's --scan uses SCAN with a cursor until it returns 0.
    for i in 0..50 {
        node.cli(&["SET", &format!("scan:{i}"), "v"]);
    }
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &node.port.to_string(),
            "--scan",
            "--pattern",
            "scan:*",
        ])
        .output()
        .unwrap();
    let n = BufReader::new(&out.stdout[..]).lines().count();
    assert_eq!(n, 50);
}

#[test]
fn redis_benchmark_runs_clean() {
    let node = TestNode::start();
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &node.port.to_string(),
            "-t",
            "set,get,incr,mset",
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "4",
            "-q",
        ])
        .output()
        .expect("redis-benchmark is installed (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for t in ["SET", "GET", "INCR", "MSET"] {
        assert!(
            text.contains(&format!("{t}: ")) || text.contains(&format!("{t} (10 keys): ")),
            "{text}"
        );
    }
    let mut r = node.raw();
    assert_eq!(
        bulk(&mut r, &["GET", "counter:__rand_int__"]).map(|v| v.parse::<i64>().unwrap()),
        Some(2000)
    );
}

#[test]
fn a_node_goes_idle_once_a_dense_load_ends() {
    // Under a dense load an I/O thread polls its sockets instead of
    // sleeping between requests; it must sleep again once they stop. With
    // io-threads-poll-usec 0 it never polls, and serves the same.
    let node = TestNode::start();
    let mut r = node.raw();
    for window in ["20", "0"] {
        ok(&mut r, &["CONFIG", "SET", "io-threads-poll-usec", window]);
        let out = std::process::Command::new("redis-benchmark")
            .args(["-p", &node.port.to_string(), "-t", "set,get", "-n", "20000"])
            .args(["-c", "4", "-P", "1", "--csv"])
            .output()
            .expect("redis-benchmark is installed (apt-get install redis-tools)");
        assert!(out.status.success());
        let csv = String::from_utf8_lossy(&out.stdout);
        assert!(
            csv.contains("\"SET\"") && csv.contains("\"GET\""),
            "window {window}: {csv}"
        );
        let used = cpu_ticks_over(node.child.id(), std::time::Duration::from_secs(2));
        // Idle, a node uses a few ticks in two seconds; polling, about 200.
        assert!(
            used < 50,
            "a node used {used} ticks of CPU in the 2 s after a load (window {window})"
        );
    }
    assert_eq!(
        r.call(&["CONFIG", "SET", "io-threads-poll-usec", "1001"]),
        Frame::Error(
            "ERR CONFIG SET failed (possibly related to argument 'io-threads-poll-usec') - \
             argument must be between 0 and 1000 inclusive"
                .into()
        )
    );
}

/// An idle node wakes for its cron, `hz` times a second, as Redis does,
/// and for nothing else: its expiry cycle runs on the cron's own thread.
/// It used to hand the cycle to a pool thread and back, waking four or
/// five threads a tick (about 90 wake-ups in two seconds).
#[test]
fn an_idle_node_wakes_only_for_its_cron() {
    let node = TestNode::start();
    let mut r = node.raw();
    // Keys with a TTL, so the expiry cycle has a table to sample.
    for i in 0..100 {
        ok(&mut r, &["SET", &format!("ttl:{i}"), "v", "EX", "1000"]);
    }
    assert_eq!(int(&mut r, &["DBSIZE"]), 100);
    let pid = node.child.id();
    // The log's everysec sync of those writes falls due within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (all, cron) = (process_wakeups(pid), thread_wakeups(pid, "shoal-cron"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (all, cron) = (
        process_wakeups(pid) - all,
        thread_wakeups(pid, "shoal-cron") - cron,
    );
    // 20 ticks at hz 10; a loaded machine may stretch a sleep, never add one.
    assert!(cron <= 22, "the cron woke {cron} times in 2 s");
    assert!(
        all <= cron + 4,
        "{all} wake-ups in 2 s, {cron} of them the cron's"
    );
}

#[test]
fn digests_match_redis_for_the_same_data() {
    use crate::support::ReferenceRedis;
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let script: &[&[&str]] = &[
        &["SET", "plain", "hello"],
        &["SET", "number", "12345"],
        &["SET", "negative", "-7"],
        &["SET", "long", &"z".repeat(100)],
        &["APPEND", "grown", "abc"],
        &["APPEND", "grown", "def"],
        &["SET", "volatile", "v", "EX", "1000"],
        &["INCRBYFLOAT", "float", "1.5"],
        &["SELECT", "3"],
        &["SET", "in3", "x"],
        &["MSET", "{t}a", "1", "{t}b", "2"],
        &["SELECT", "0"],
    ];
    let digest = |con: &mut redis::Connection| -> (String, Vec<String>) {
        for cmd in script {
            let mut c = redis::cmd(cmd[0]);
            for a in &cmd[1..] {
                c.arg(*a);
            }
            let _: redis::Value = c.query(con).unwrap();
        }
        let all: String = redis::cmd("DEBUG").arg("DIGEST").query(con).unwrap();
        let values: Vec<String> = redis::cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg(&[
                "plain", "number", "long", "grown", "volatile", "float", "nope",
            ])
            .query(con)
            .unwrap();
        (all, values)
    };
    let ours = digest(&mut node.conn());
    let theirs = digest(&mut reference.client().get_connection().unwrap());
    assert_eq!(ours, theirs);
    assert_ne!(ours.0, "0".repeat(40));
    // An empty dataset digests to zeros on both.
    let mut r = node.raw();
    ok(&mut r, &["FLUSHALL"]);
    assert_eq!(r.call(&["DEBUG", "DIGEST"]), Frame::Simple("0".repeat(40)));
}

/// CONFIG SET looks every name up before any value; the element scans
/// check the cursor, then the key, then their options; as redis-server.
/// DEBUG POPULATE creates what Redis creates (keys that exist are kept,
/// values cut or zero-padded to the size), refuses what Redis refuses, and,
/// recorded as SETs, comes back after a restart.
#[test]
fn debug_populate_matches_redis_and_is_logged() {
    let (mut node, _reference) = same_as_redis(&[
        &["SET", "key:3", "mine"],
        &["DEBUG", "POPULATE", "5"],
        &["DEBUG", "POPULATE", "3", "pre", "12"],
        &["DEBUG", "POPULATE", "4", "pre", "3"],
        &["DEBUG", "POPULATE", "2", "short", "3"],
        &["DEBUG", "POPULATE", "0"],
        &["DEBUG", "POPULATE", "-1"],
        &["DEBUG", "POPULATE", "x"],
        &["DEBUG", "POPULATE", "2", "p", "-1"],
        &["DEBUG", "POPULATE", "1", "a", "2", "3"],
        &["DBSIZE"],
        &[
            "MGET", "key:0", "key:3", "key:4", "key:5", "pre:2", "pre:3", "short:1",
        ],
    ]);
    let mut r = node.raw();
    let before = crate::digest(&mut r);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(crate::digest(&mut r), before);
    assert_eq!(int(&mut r, &["DBSIZE"]), 11);
}

#[test]
fn config_set_and_scan_checks_match_redis() {
    same_as_redis(&[
        &["CONFIG", "SET", "maxmemory", "0", "maxmemory", "1"],
        &["CONFIG", "SET", "maxmemory", "0", "nosuch", "1"],
        &["CONFIG", "SET", "maxmemory", "x", "maxmemory", "1"],
        &["CONFIG", "SET", "maxmemory", "x"],
        // maxmemory-clients takes memory or a percentage of maxmemory, and
        // a failed CONFIG SET leaves every value as it was.
        &[
            "CONFIG",
            "SET",
            "maxmemory",
            "10000001",
            "maxmemory-clients",
            "200%",
            "client-query-buffer-limit",
            "x",
        ],
        &["CONFIG", "GET", "maxmemory"],
        &["CONFIG", "SET", "maxmemory-clients", "10%"],
        &["CONFIG", "GET", "maxmemory-clients"],
        &["CONFIG", "SET", "maxmemory-clients", "1mb"],
        &["CONFIG", "GET", "maxmemory-clients"],
        &["CONFIG", "SET", "maxmemory-clients", "-5"],
        &["CONFIG", "SET", "maxmemory-clients", "101%"],
        &["CONFIG", "SET", "maxmemory-clients", "0"],
        &["SSCAN", "nokey", "0", "COUNT", "0"],
        &["ZSCAN", "nokey", "0", "NOVALUES"],
        &["HSCAN", "nokey", "x"],
        &["SADD", "s", "a"],
        &["SSCAN", "s", "0", "COUNT", "0"],
        &["SET", "str", "v"],
        &["SSCAN", "str", "0", "COUNT", "0"],
        &["ZSCAN", "str", "x"],
    ]);
}

/// The latency monitor: spikes of `latency-monitor-threshold` or more are
/// kept per event (`command` here, from DEBUG SLEEP, which replies once it
/// has slept), and LATENCY's replies and errors are Redis's.
#[test]
fn latency_monitor() {
    let (node, _reference) = same_as_redis(&[
        &["LATENCY"],
        &["LATENCY", "HISTORY"],
        &["LATENCY", "FOO"],
        &["LATENCY", "LATEST"],
        &["LATENCY", "HISTORY", "command"],
        &["LATENCY", "GRAPH", "command"],
        &["LATENCY", "RESET"],
        &["CONFIG", "SET", "latency-monitor-threshold", "-1"],
        &["CONFIG", "SET", "latency-monitor-threshold", "20"],
        &["CONFIG", "GET", "latency-monitor-threshold"],
        &["PING"],
        &["LATENCY", "LATEST"],
    ]);
    let mut r = node.raw();
    ok(
        &mut r,
        &["CONFIG", "SET", "latency-monitor-threshold", "20"],
    );
    let started = std::time::Instant::now();
    ok(&mut r, &["DEBUG", "SLEEP", "0.05"]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    let Frame::Array(latest) = r.call(&["LATENCY", "LATEST"]) else {
        panic!("LATENCY LATEST")
    };
    let [Frame::Array(e)] = &latest[..] else {
        panic!("{latest:?}")
    };
    assert_eq!(e[0], Frame::bulk("command"));
    let (Frame::Int(last), Frame::Int(max)) = (&e[2], &e[3]) else {
        panic!("{e:?}")
    };
    assert!(*last >= 50 && max == last, "{e:?}");
    let Frame::Array(history) = r.call(&["LATENCY", "HISTORY", "command"]) else {
        panic!("LATENCY HISTORY")
    };
    assert_eq!(history.len(), 1);
    let graph = bulk(&mut r, &["LATENCY", "GRAPH", "command"]).unwrap();
    assert!(
        graph.starts_with(&format!("command - high {last} ms")),
        "{graph}"
    );
    let doctor = bulk(&mut r, &["LATENCY", "DOCTOR"]).unwrap();
    assert!(doctor.contains("1. command: 1 spikes"), "{doctor}");
    assert_eq!(int(&mut r, &["LATENCY", "RESET", "command", "other"]), 1);
    assert_eq!(r.call(&["LATENCY", "LATEST"]), Frame::Array(vec![]));
}

/// Per-command latency histograms (`latency-tracking`), read as Redis
/// reads its own: LATENCY HISTOGRAM's cumulative buckets at Redis's labels
/// and INFO latencystats' configured percentiles; nothing recorded while
/// tracking is off; CONFIG RESETSTAT clears them. Both servers run the
/// same commands and must report the same calls in the same shape.
#[test]
fn latency_histograms_and_percentiles() {
    let (node, reference) = same_as_redis(&[
        &["CONFIG", "GET", "latency-tracking"],
        &["CONFIG", "GET", "latency-tracking-info-percentiles"],
        &["CONFIG", "SET", "latency-tracking", "maybe"],
        &["CONFIG", "SET", "latency-tracking-info-percentiles", "abc"],
        &["CONFIG", "SET", "latency-tracking-info-percentiles", "101"],
        &["CONFIG", "SET", "save", "abc"],
        &["CONFIG", "SET", "notify-keyspace-events", "Z"],
        &["CONFIG", "SET", "client-output-buffer-limit", "normal 1 2"],
        &["CONFIG", "SET", "client-output-buffer-limit", "foo 1 2 3"],
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal x 2 3",
        ],
        &["LATENCY", "HISTOGRAM", "nosuchcommand"],
        // One class set keeps the others; `replica` is shown as `slave`.
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 1mb 0 replica 2mb 1mb 5",
        ],
        &["CONFIG", "GET", "client-output-buffer-limit"],
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        ],
    ]);
    const LABELS: [i64; 20] = [
        1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227, 8454, 16908, 33816, 67633, 135266,
        270532, 541065,
    ];
    fn run<S: std::io::Read + std::io::Write>(r: &mut Raw<S>) -> Vec<String> {
        let mut seen = Vec::new();
        assert_eq!(r.call(&["CONFIG", "RESETSTAT"]), Frame::Simple("OK".into()));
        for _ in 0..20 {
            r.call(&["SET", "k", "v"]);
        }
        for _ in 0..10 {
            r.call(&["GET", "k"]);
        }
        r.call(&["CONFIG", "SET", "latency-tracking", "no"]);
        r.call(&["SET", "k", "v"]);
        r.call(&["CONFIG", "SET", "latency-tracking", "yes"]);
        let Frame::Array(h) = r.call(&["LATENCY", "HISTOGRAM", "get", "set", "nosuch"]) else {
            panic!("LATENCY HISTOGRAM")
        };
        for pair in h.chunks(2) {
            let (Frame::Bulk(name), Frame::Array(body)) = (&pair[0], &pair[1]) else {
                panic!("{pair:?}")
            };
            let (Frame::Int(calls), Frame::Array(points)) = (&body[1], &body[3]) else {
                panic!("{body:?}")
            };
            let mut last = 0;
            for p in points.chunks(2) {
                let (Frame::Int(label), Frame::Int(n)) = (&p[0], &p[1]) else {
                    panic!("{p:?}")
                };
                assert!(LABELS.contains(label), "bucket {label}");
                assert!(*n > last, "cumulative counts grow");
                last = *n;
            }
            assert_eq!(last, *calls);
            seen.push(format!("{} {calls}", String::from_utf8_lossy(name)));
        }
        r.call(&[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "50 100",
        ]);
        let Frame::Bulk(info) = r.call(&["INFO", "latencystats"]) else {
            panic!("INFO")
        };
        let info = String::from_utf8(info).unwrap();
        let line = info
            .lines()
            .find(|l| l.starts_with("latency_percentiles_usec_set:"))
            .unwrap();
        let fields: Vec<&str> = line.split(':').nth(1).unwrap().split(',').collect();
        assert_eq!(fields.len(), 2, "{line}");
        for (f, p) in fields.iter().zip(["p50=", "p100="]) {
            let v = f.strip_prefix(p).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(v.split('.').nth(1).map(str::len), Some(3), "{line}");
        }
        r.call(&[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "50 99 99.9",
        ]);
        r.call(&["CONFIG", "RESETSTAT"]);
        seen.push(format!("{:?}", r.call(&["LATENCY", "HISTOGRAM", "set"])));
        seen.sort();
        seen
    }
    assert_eq!(run(&mut node.raw()), run(&mut reference.raw()));
}

/// MEMORY STATS has Redis's fields in Redis's order (a map in RESP3, with
/// doubles), and its figures add up: the overhead is its parts, the data
/// set is the rest, keys and bytes per key follow the keys. INFO memory
/// has Redis's lines (but the scripting ones: Shoal runs no scripts) and
/// agrees with MEMORY STATS. MEMORY DOCTOR waits for data, then reports.
#[test]
fn memory_stats_doctor_and_info_memory_read_as_redis() {
    let reference = crate::support::ReferenceRedis::start();
    let mut rr = reference.raw();
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    let doctor = |r: &mut Raw| bulk(r, &["MEMORY", "DOCTOR"]).unwrap();
    assert!(doctor(&mut r).contains("empty"), "{}", doctor(&mut r));
    ok(&mut r, &["DEBUG", "POPULATE", "100000"]);
    assert_eq!(
        rr.call(&["DEBUG", "POPULATE", "100000"]),
        Frame::Simple("OK".into())
    );
    let fields = |f: Frame| -> Vec<(String, Frame)> {
        let Frame::Array(items) = f else {
            panic!("{f:?}")
        };
        items
            .chunks(2)
            .map(|p| match &p[0] {
                Frame::Bulk(name) => (String::from_utf8(name.clone()).unwrap(), p[1].clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let ours = fields(r.call(&["MEMORY", "STATS"]));
    let theirs = fields(rr.call(&["MEMORY", "STATS"]));
    let names = |f: &[(String, Frame)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs));
    let get = |name: &str| -> i64 {
        match &ours.iter().find(|(n, _)| n == name).unwrap().1 {
            Frame::Int(i) => *i,
            other => panic!("{name}: {other:?}"),
        }
    };
    let db0 = match &ours.iter().find(|(n, _)| n == "db.0").unwrap().1 {
        Frame::Array(a) => match a.as_slice() {
            [Frame::Bulk(n), Frame::Int(main), ..] if n == b"overhead.hashtable.main" => *main,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert!(db0 > 100_000 * 8, "{db0}");
    let parts = [
        "startup.allocated",
        "replication.backlog",
        "clients.slaves",
        "clients.normal",
        "aof.buffer",
    ];
    assert_eq!(
        get("overhead.total"),
        parts.iter().map(|p| get(p)).sum::<i64>() + db0
    );
    assert_eq!(
        get("dataset.bytes"),
        get("total.allocated") - get("overhead.total")
    );
    assert_eq!(get("keys.count"), 100_000);
    assert_eq!(
        get("keys.bytes-per-key"),
        (get("total.allocated") - get("startup.allocated")) / 100_000
    );
    assert!(get("clients.normal") >= 16 * 1024, "a connection's buffers");
    match &ours
        .iter()
        .find(|(n, _)| n == "dataset.percentage")
        .unwrap()
        .1
    {
        Frame::Bulk(b) => {
            let p: f64 = std::str::from_utf8(b).unwrap().parse().unwrap();
            assert!(p > 10.0 && p <= 100.0, "{p}");
        }
        other => panic!("{other:?}"),
    }
    let mut r3 = node.raw();
    r3.cmd(&["HELLO", "3"]);
    r3.read3();
    r3.cmd(&["MEMORY", "STATS"]);
    match r3.read3() {
        Frame::Map(m) => {
            assert_eq!(m.len(), ours.len());
            assert!(m.iter().any(
                |(k, v)| *k == Frame::bulk("peak.percentage") && matches!(v, Frame::Double(_))
            ));
        }
        other => panic!("{other:?}"),
    }

    let info_names = |info: String| -> Vec<String> {
        info.lines()
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string()))
            .collect()
    };
    let redis_info = match rr.call(&["INFO", "memory"]) {
        Frame::Bulk(b) => String::from_utf8(b).unwrap(),
        other => panic!("{other:?}"),
    };
    let info = bulk(&mut r, &["INFO", "memory"]).unwrap();
    assert_eq!(info_names(info.clone()), info_names(redis_info));
    assert_eq!(info_field(&info, "mem_clients_slaves"), "0");
    let overhead: i64 = info_field(&info, "used_memory_overhead").parse().unwrap();
    assert!(overhead > db0, "{overhead}");
    let report = doctor(&mut r);
    assert!(report.starts_with("The memory doctor found"), "{report}");
}

/// INFO's sections and lines are redis-server's, in its order, so
/// exporters and dashboards built for Redis find what they read. Left out
/// on purpose: Redis's own buffer and fork bookkeeping that has no Shoal
/// counterpart to report honestly, and the main thread's CPU (Shoal has
/// no main thread). Shoal adds its own lines (shoal_version, the log's
/// sizes and fsync offset) where they belong.
#[test]
fn info_has_redis_sections_and_lines_in_redis_order() {
    let reference = crate::support::ReferenceRedis::start();
    let mut rr = reference.raw();
    assert_eq!(
        rr.call(&["CONFIG", "SET", "appendonly", "yes"]),
        Frame::Simple("OK".into())
    );
    let node = TestNode::start();
    let mut r = node.raw();
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| {
                if l.starts_with('#') {
                    Some(l.trim().to_string())
                } else {
                    l.split_once(':').map(|(n, _)| n.to_string())
                }
            })
            .collect()
    };
    let theirs = match rr.call(&["INFO"]) {
        Frame::Bulk(b) => lines(&String::from_utf8(b).unwrap()),
        other => panic!("{other:?}"),
    };
    let ours = lines(&bulk(&mut r, &["INFO"]).unwrap());
    let left_out = [
        "reply_buffer_shrinks",
        "reply_buffer_expands",
        "aof_pending_rewrite",
        "aof_buffer_length",
        "aof_pending_bio_fsync",
        "aof_delayed_fsync",
    ];
    let expected: Vec<&String> = theirs
        .iter()
        .filter(|n| !left_out.contains(&n.as_str()))
        .filter(|n| !n.starts_with("db") && !n.starts_with("errorstat_"))
        .collect();
    let shared: Vec<&String> = ours.iter().filter(|n| theirs.contains(n)).collect();
    assert_eq!(shared, expected);
    let info = bulk(&mut r, &["INFO", "server"]).unwrap();
    assert_eq!(info_field(&info, "process_supervised"), "no");
    assert!(info_field(&info, "os").starts_with("Linux "), "{info}");

    // The save and rewrite timings follow what ran.
    let persistence = |r: &mut Raw, f: &str| -> i64 {
        info_field(&bulk(r, &["INFO", "persistence"]).unwrap(), f)
            .parse()
            .unwrap()
    };
    assert_eq!(persistence(&mut r, "rdb_last_bgsave_time_sec"), -1);
    assert_eq!(persistence(&mut r, "aof_last_rewrite_time_sec"), -1);
    r.call(&["BGSAVE"]);
    eventually("the save counted", || persistence(&mut r, "rdb_saves") == 1);
    assert!(persistence(&mut r, "rdb_last_bgsave_time_sec") >= 0);
    assert_eq!(persistence(&mut r, "rdb_current_bgsave_time_sec"), -1);
    r.call(&["BGREWRITEAOF"]);
    eventually("the rewrite timed", || {
        persistence(&mut r, "aof_last_rewrite_time_sec") >= 0
    });
    assert_eq!(persistence(&mut r, "aof_rewrites_consecutive_failures"), 0);
}

/// What cluster-aware clients read from COMMAND (arity, flags, the legacy
/// key triple, ACL categories) is Redis's for every command both have.
/// Sets are compared as sets: Redis's order follows its own tables.
#[test]
fn command_info_matches_redis() {
    use crate::support::ReferenceRedis;
    use redis::Value;
    // Where Redis 7.2, which Shoal follows, differs from the 7.0 server
    // the tests run against: ZRANK/ZREVRANK take WITHSCORE, COMMAND GETKEYS
    // takes a command without arguments, and PFCOUNT/PUBLISH/SPUBLISH and
    // EVAL/EVALSHA/FCALL show may_replicate. REPLICAOF refuses to run in
    // MULTI (no_multi).
    const NEWER: &[&str] = &[
        "zrank",
        "zrevrank",
        "command|getkeys",
        "pfcount",
        "publish",
        "spublish",
        "eval",
        "evalsha",
        "fcall",
        "replicaof",
        "slaveof",
    ];
    fn words(v: &Value) -> Vec<String> {
        let (Value::Array(items) | Value::Set(items)) = v else {
            panic!("{v:?}")
        };
        let mut out: Vec<String> = items
            .iter()
            .map(|i| redis::from_redis_value::<String>(i).unwrap())
            .collect();
        out.sort();
        out
    }
    fn legacy(con: &mut redis::Connection, name: &str) -> Option<String> {
        let v: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(name)
            .query(con)
            .unwrap();
        let Value::Array(mut list) = v else { panic!() };
        let Value::Array(e) = list.remove(0) else {
            return None;
        };
        Some(format!(
            "arity {:?} flags {:?} keys {:?} {:?} {:?} categories {:?}",
            e[1],
            words(&e[2]),
            e[3],
            e[4],
            e[5],
            words(&e[6])
        ))
    }
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let mut ours = node.conn();
    let mut theirs = reference.client().get_connection().unwrap();
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut ours).unwrap();
    let mut compared = 0;
    for name in names.iter().filter(|n| !NEWER.contains(&n.as_str())) {
        let Some(want) = legacy(&mut theirs, name) else {
            continue;
        };
        assert_eq!(legacy(&mut ours, name), Some(want), "COMMAND INFO {name}");
        compared += 1;
    }
    assert!(compared > 200, "{compared} commands compared");
}

/// Every setting redis-server knows is known here, with Redis's default
/// (so a redis.conf naming any of them starts a node, and CONFIG GET shows
/// what Redis would), but for the few where Shoal's default is its own.
#[test]
fn config_get_knows_every_redis_setting() {
    use crate::support::ReferenceRedis;
    // Shoal's own defaults: loopback only, its own snapshot file, one I/O
    // thread per core but one, 512 hash fields kept compact.
    const OWN: &[&str] = &[
        "bind",
        "dbfilename",
        "dir",
        "port",
        "io-threads",
        "hash-max-listpack-entries",
        "hash-max-ziplist-entries",
        "enable-debug-command",
        "unixsocket",
        "unixsocketperm",
        "logfile",
        "pidfile",
        "daemonize",
        "save",
        "appendonly",
        "appenddirname",
    ];
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let mut ours = node.conn();
    let mut theirs = reference.client().get_connection().unwrap();
    let all: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut theirs)
        .unwrap();
    let mut compared = 0;
    for pair in all.chunks(2) {
        let (name, want) = (&pair[0], &pair[1]);
        if name == "enable-protected-configs" {
            continue; // Shoal's dir and dbfilename cannot be changed at all
        }
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query(&mut ours)
            .unwrap();
        assert_eq!(got.len(), 2, "{name} is unknown");
        if !OWN.contains(&name.as_str()) {
            assert_eq!(&got[1], want, "{name}");
            compared += 1;
        }
    }
    assert!(compared > 150, "{compared}");
}

/// Errors of containers that parse their own words (DEBUG, PUBSUB's
/// arguments), word for word.
#[test]
fn subcommand_errors_as_redis() {
    same_as_redis(&[
        &["PUBSUB", "CHANNELS", "a", "b"],
        &["PUBSUB", "SHARDCHANNELS", "a", "b"],
        &["DEBUG", "nosuch"],
        &["DEBUG", "SLEEP"],
        &["DEBUG", "SLEEP", "0", "extra"],
        &["DEBUG", "SLEEP", "0"],
    ]);
}

/// CONFIG SET port moves the listening socket at run time, as Redis's
/// does: new connections go to the new port, the old one refuses them,
/// connections already made go on. A port that cannot be listened on
/// fails the whole command with nothing changed (Redis's rollback on an
/// apply error); port 0 takes a free one, which CONFIG GET then says.
#[test]
fn config_set_port_moves_the_listener() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    // A port held by someone else, then released for Shoal to take.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_eq!(
        err(&mut r, &["CONFIG", "SET", "maxmemory", "12345", "port", &port]),
        "ERR CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port: Address already in use"
    );
    assert_eq!(strings(&mut r, &["CONFIG", "GET", "maxmemory"])[1], "0");
    assert_eq!(
        strings(&mut r, &["CONFIG", "GET", "port"])[1],
        node.port.to_string()
    );
    drop(taken);
    ok(&mut r, &["CONFIG", "SET", "port", &port]);
    assert_eq!(strings(&mut r, &["CONFIG", "GET", "port"])[1], port);
    assert_eq!(bulk(&mut r, &["GET", "k"]).as_deref(), Some("v"));
    let moved: u16 = port.parse().unwrap();
    let mut there = Raw::connect(moved);
    assert_eq!(bulk(&mut there, &["GET", "k"]).as_deref(), Some("v"));
    eventually("the old port refuses connections", || {
        std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err()
    });
    // The same value again changes nothing; 0 takes a free port.
    ok(&mut there, &["CONFIG", "SET", "port", &port]);
    ok(&mut there, &["CONFIG", "SET", "port", "0"]);
    let free: u16 = strings(&mut there, &["CONFIG", "GET", "port"])[1]
        .parse()
        .unwrap();
    assert_ne!(free, moved);
    let info = bulk(&mut there, &["INFO", "server"]).unwrap();
    assert_eq!(info_field(&info, "tcp_port"), free.to_string());
    assert_eq!(
        Raw::connect(free).call(&["PING"]),
        Frame::Simple("PONG".into())
    );
}
