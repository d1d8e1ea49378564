use crate::support::{eventually, Frame, Raw, TestNode};
use crate::{bulk, err, int, ok};

#[test]
fn ping_echo_select_quit() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(bulk(&mut r, &["PING", "hi"]).as_deref(), Some("hi"));
    assert_eq!(
        err(&mut r, &["PING", "a", "b"]),
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(bulk(&mut r, &["ECHO", "x y"]).as_deref(), Some("x y"));
    ok(&mut r, &["SELECT", "15"]);
    assert_eq!(
        err(&mut r, &["SELECT", "16"]),
        "ERR DB index is out of range"
    );
    assert_eq!(
        err(&mut r, &["SELECT", "x"]),
        "ERR value is not an integer or out of range"
    );
    ok(&mut r, &["QUIT"]);
    assert!(r.is_closed());
}

#[test]
fn auth_with_requirepass() {
    let node = TestNode::start_with(&["--requirepass", "s3cret"]);
    let mut r = node.raw();
    assert_eq!(
        err(&mut r, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert_eq!(err(&mut r, &["PING"]), "NOAUTH Authentication required.");
    assert_eq!(
        err(&mut r, &["AUTH", "wrong"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        err(&mut r, &["AUTH", "bob", "s3cret"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert!(err(&mut r, &["HELLO", "3"])
        .starts_with("NOAUTH HELLO must be called with the client already authenticated"));
    ok(&mut r, &["AUTH", "s3cret"]);
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    ok(&mut r, &["AUTH", "default", "s3cret"]);

    // HELLO with AUTH authenticates and switches protocol at once.
    let mut r2 = node.raw();
    r2.cmd(&["HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "app"]);
    let Frame::Map(m) = r2.read3() else {
        panic!("HELLO 3 replies with a map")
    };
    assert!(m.contains(&(Frame::bulk("proto"), Frame::Int(3))));
    r2.cmd(&["CLIENT", "GETNAME"]);
    assert_eq!(r2.read3(), Frame::bulk("app"));

    // RESET deauthenticates when a password is required.
    r2.cmd(&["RESET"]);
    assert_eq!(r2.read2(), Frame::Simple("RESET".into()));
    assert_eq!(
        err(&mut r2, &["GET", "k"]),
        "NOAUTH Authentication required."
    );

    // The redis crate authenticates from the URL.
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", node.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn auth_without_password_configured() {
    let node = TestNode::start();
    let mut r = node.raw();
    assert!(err(&mut r, &["AUTH", "x"])
        .starts_with("ERR AUTH <password> called without any password configured"));
    ok(&mut r, &["AUTH", "default", "anything"]);
}

#[test]
fn hello_and_resp3_reply_types() {
    let node = TestNode::start();
    let mut r = node.raw();
    r.cmd(&["HELLO"]);
    let Frame::Array(a) = r.read2() else {
        panic!("HELLO without version keeps RESP2")
    };
    assert_eq!(a.len(), 14);
    assert_eq!(
        err(&mut r, &["HELLO", "4"]),
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        err(&mut r, &["HELLO", "x"]),
        "ERR Protocol version is not an integer or out of range"
    );
    r.cmd(&["HELLO", "3"]);
    let Frame::Map(m) = r.read3() else { panic!() };
    assert!(m.contains(&(Frame::bulk("server"), Frame::bulk("redis"))));
    r.cmd(&["GET", "missing"]);
    assert_eq!(r.read3(), Frame::Null);
    r.cmd(&["CONFIG", "GET", "maxclients"]);
    assert_eq!(
        r.read3(),
        Frame::Map(vec![(Frame::bulk("maxclients"), Frame::bulk("10000"))])
    );
    r.cmd(&["INFO", "server"]);
    let Frame::Verbatim(text) = r.read3() else {
        panic!("INFO is verbatim text in RESP3")
    };
    assert!(text.contains("redis_version:"));
    r.cmd(&["COMMAND", "INFO", "get"]);
    let Frame::Array(info) = r.read3() else {
        panic!()
    };
    let Frame::Array(get) = &info[0] else {
        panic!()
    };
    assert!(matches!(&get[2], Frame::Set(_)), "flags are a set in RESP3");
    // Back to RESP2.
    r.cmd(&["HELLO", "2"]);
    let Frame::Array(_) = r.read2() else { panic!() };
    assert_eq!(r.call(&["GET", "missing"]), Frame::Null);
}

#[test]
fn client_commands() {
    let node = TestNode::start();
    let mut r = node.raw();
    let id = int(&mut r, &["CLIENT", "ID"]);
    assert!(id > 0);
    assert_eq!(r.call(&["CLIENT", "GETNAME"]), Frame::Null);
    ok(&mut r, &["CLIENT", "SETNAME", "worker-1"]);
    assert_eq!(
        bulk(&mut r, &["CLIENT", "GETNAME"]).as_deref(),
        Some("worker-1")
    );
    assert_eq!(
        err(&mut r, &["CLIENT", "SETNAME", "has space"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    ok(&mut r, &["CLIENT", "SETINFO", "LIB-NAME", "mylib"]);
    ok(&mut r, &["CLIENT", "SETINFO", "LIB-VER", "1.2"]);
    ok(&mut r, &["CLIENT", "NO-EVICT", "on"]);
    let info = bulk(&mut r, &["CLIENT", "INFO"]).unwrap();
    assert!(
        info.contains(&format!("id={id} "))
            && info.contains("name=worker-1")
            && info.contains("lib-name=mylib"),
        "{info}"
    );
    assert!(info.contains("cmd=client|info"), "{info}");

    let mut other = node.raw();
    ok(&mut other, &["SELECT", "3"]);
    let other_id = int(&mut other, &["CLIENT", "ID"]);
    let list = bulk(&mut r, &["CLIENT", "LIST"]).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains(&format!("id={other_id} ")) && list.contains("db=3"),
        "{list}"
    );
    let only = bulk(&mut r, &["CLIENT", "LIST", "ID", &other_id.to_string()]).unwrap();
    assert_eq!(only.lines().count(), 1);

    assert_eq!(
        int(&mut r, &["CLIENT", "KILL", "ID", &other_id.to_string()]),
        1
    );
    assert!(other.is_closed());
    assert_eq!(
        int(&mut r, &["CLIENT", "KILL", "ID", &id.to_string()]),
        0,
        "SKIPME yes by default"
    );
    let mut third = node.raw();
    assert_eq!(third.call(&["PING"]), Frame::Simple("PONG".into()));
    let addr = third.stream.local_addr().unwrap().to_string();
    ok(&mut r, &["CLIENT", "KILL", &addr]);
    assert!(third.is_closed());
    assert_eq!(
        err(&mut r, &["CLIENT", "KILL", "1.2.3.4:5"]),
        "ERR No such client"
    );
    assert_eq!(
        err(&mut r, &["CLIENT", "BOGUS"]),
        "ERR unknown subcommand 'BOGUS'. Try CLIENT HELP."
    );
}

#[test]
fn client_reply_modes() {
    let node = TestNode::start();
    let mut r = node.raw();
    r.cmd(&["CLIENT", "REPLY", "OFF"]);
    r.cmd(&["SET", "a", "1"]);
    r.cmd(&["CLIENT", "REPLY", "ON"]);
    assert_eq!(
        r.read2(),
        Frame::Simple("OK".into()),
        "only CLIENT REPLY ON answers"
    );
    r.cmd(&["CLIENT", "REPLY", "SKIP"]);
    r.cmd(&["SET", "b", "2"]);
    r.cmd(&["GET", "b"]);
    assert_eq!(r.read2(), Frame::bulk("2"));
    assert_eq!(bulk(&mut r, &["GET", "a"]).as_deref(), Some("1"));

    // A blocking command's reply comes late but is still the one skipped
    // or silenced: a timeout, a pop served by a push, CLIENT UNBLOCK.
    let mut pusher = node.raw();
    let id = int(&mut r, &["CLIENT", "ID"]).to_string();
    r.cmd(&["CLIENT", "REPLY", "SKIP"]);
    r.cmd(&["BLPOP", "nolist", "0.01"]);
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    r.cmd(&["CLIENT", "REPLY", "SKIP"]);
    r.cmd(&["BLPOP", "list", "0"]);
    eventually("BLPOP blocked", || {
        bulk(&mut pusher, &["CLIENT", "LIST", "ID", &id]).is_some_and(|l| l.contains("flags=b"))
    });
    int(&mut pusher, &["RPUSH", "list", "x"]);
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    r.cmd(&["CLIENT", "REPLY", "OFF"]);
    r.cmd(&["BLPOP", "list", "0"]);
    eventually("BLPOP blocked", || {
        bulk(&mut pusher, &["CLIENT", "LIST", "ID", &id]).is_some_and(|l| l.contains("flags=b"))
    });
    assert_eq!(int(&mut pusher, &["CLIENT", "UNBLOCK", &id, "ERROR"]), 1);
    r.cmd(&["BLPOP", "nolist", "0.01"]);
    assert_eq!(
        r.call(&["CLIENT", "REPLY", "ON"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(int(&mut r, &["LLEN", "list"]), 0);
}

/// CLIENT PAUSE WRITE holds what may write or replicate (a write, a
/// transaction that queued one, PUBLISH, a script without flags) and
/// counts the held clients as blocked, as Redis does; reads, read-only
/// transactions and scripts declared `no-writes` run on. A read-only
/// script may not call what may replicate.
#[test]
fn client_pause_holds_writes_until_unpause() {
    let node = TestNode::start();
    let mut admin = node.raw();
    ok(&mut admin, &["SET", "k", "v"]);
    ok(&mut admin, &["CLIENT", "PAUSE", "100000", "WRITE"]);
    let port = node.port;
    let held: Vec<(Vec<&str>, Frame)> = vec![
        (vec!["SET", "paused", "done"], Frame::Simple("OK".into())),
        (vec!["PUBLISH", "ch", "m"], Frame::Int(0)),
        (vec!["EVAL", "return 1", "0"], Frame::Int(1)),
        (vec!["EVAL", "#!lua\nreturn 2", "0"], Frame::Int(2)),
    ];
    let mut waiting = Vec::new();
    for (i, (cmd, reply)) in held.into_iter().enumerate() {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        waiting.push((
            std::thread::spawn(move || {
                let mut w = Raw::connect(port);
                let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                w.call(&args)
            }),
            reply,
        ));
        eventually("the command held, its client blocked", || {
            crate::blocking::blocked_clients(&mut admin) == i + 1
        });
    }
    // Not held: reads, a read-only transaction, a no-writes script.
    let mut reader = node.raw();
    assert_eq!(reader.call(&["GET", "paused"]), Frame::Null);
    ok(&mut reader, &["MULTI"]);
    reader.call(&["GET", "k"]);
    assert_eq!(reader.call(&["EXEC"]), Frame::Array(vec![Frame::bulk("v")]));
    let no_writes = "#!lua flags=no-writes\nreturn redis.call('get', 'k')";
    assert_eq!(
        bulk(&mut reader, &["EVAL", no_writes, "0"]).as_deref(),
        Some("v")
    );
    for (cmd, script) in [
        ("EVAL_RO", "return redis.call('publish', 'ch', 'm')"),
        (
            "EVAL",
            "#!lua flags=no-writes\nreturn redis.call('publish', 'ch', 'm')",
        ),
    ] {
        assert!(
            err(&mut reader, &[cmd, script, "0"])
                .starts_with("ERR Write commands are not allowed from read-only scripts."),
            "{cmd} {script}"
        );
    }
    assert_eq!(crate::blocking::blocked_clients(&mut admin), 4);
    // A client that gives up while held (hangs up, then retries on a new
    // connection, as clients do after a timeout) leaves nothing to run:
    // its write would otherwise run twice.
    let mut quitter = node.raw();
    quitter.cmd(&["INCR", "retried"]);
    eventually("the INCR held", || {
        crate::blocking::blocked_clients(&mut admin) == 5
    });
    drop(quitter);
    eventually("the hang-up noticed", || {
        crate::blocking::blocked_clients(&mut admin) == 4
    });
    ok(&mut admin, &["CLIENT", "UNPAUSE"]);
    assert_eq!(reader.call(&["GET", "retried"]), Frame::Null);
    for (h, reply) in waiting {
        assert_eq!(h.join().unwrap(), reply);
    }
    assert_eq!(crate::blocking::blocked_clients(&mut admin), 0);
    assert_eq!(
        bulk(&mut reader, &["GET", "paused"]).as_deref(),
        Some("done")
    );
    assert_eq!(
        err(&mut admin, &["CLIENT", "PAUSE", "x"]),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(
        err(&mut admin, &["CLIENT", "PAUSE", "10", "SOME"]),
        "ERR syntax error"
    );
}

#[test]
fn idle_clients_time_out() {
    let node = TestNode::start_with(&["--timeout", "1"]);
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    eventually("idle client closed", || r.is_closed());
}

/// Protected mode, as Redis 7 has it: with no password, a client not on
/// 127.0.0.1 or ::1 (here 127.0.0.2, loopback to the kernel but not to
/// Redis) gets Redis's -DENIED and is disconnected; turning protected mode
/// off, or setting a password, lets it in.
#[test]
fn protected_mode_serves_only_localhost_without_a_password() {
    use std::io::{BufRead, Read, Write};
    let node = TestNode::start();
    let ping_from_elsewhere = || -> (String, bool) {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], node.port)).into())
            .unwrap();
        let mut s: std::net::TcpStream = s.into();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(b"PING\r\n").unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        // Closed after the refusal: nothing more to read.
        let closed = line.starts_with("-DENIED") && r.read(&mut [0; 1]).unwrap() == 0;
        (line, closed)
    };
    let (line, closed) = ping_from_elsewhere();
    assert!(
        line.starts_with("-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user."),
        "{line}"
    );
    assert!(closed);
    let mut r = node.raw();
    assert_eq!(
        r.call(&["PING"]),
        Frame::Simple("PONG".into()),
        "127.0.0.1 is served"
    );
    assert!(bulk(&mut r, &["INFO", "stats"])
        .unwrap()
        .contains("rejected_connections:1"));
    ok(&mut r, &["CONFIG", "SET", "protected-mode", "no"]);
    assert_eq!(ping_from_elsewhere().0, "+PONG\r\n");
    ok(&mut r, &["CONFIG", "SET", "protected-mode", "yes"]);
    ok(&mut r, &["CONFIG", "SET", "requirepass", "secret"]);
    assert_eq!(
        ping_from_elsewhere().0,
        "-NOAUTH Authentication required.\r\n"
    );
}

/// CLIENT LIST tells each connection's state as Redis does: subscriptions
/// (`P`, sub/psub/ssub, RESP3 too), a transaction being queued (`x`,
/// multi, multi-mem), a blocking command or WAIT (`b`).
#[test]
fn client_list_shows_subscriptions_transactions_and_blocking() {
    fn states<S: std::io::Read + std::io::Write>(open: impl Fn() -> Raw<S>) -> Vec<String> {
        let mut conns = Vec::new();
        for (name, setup) in [
            (
                "sub",
                &[&["SSUBSCRIBE", "s"][..], &["SUBSCRIBE", "c", "d"]][..],
            ),
            ("psub", &[&["HELLO", "3"][..], &["PSUBSCRIBE", "p*"]]),
            (
                "multi",
                &[&["MULTI"][..], &["SET", "a", "b"], &["GET", "a"]],
            ),
            ("blocked", &[&["BLPOP", "nosuch", "0"][..]]),
            ("waiting", &[&["WAIT", "1", "0"][..]]),
        ] {
            let mut c = open();
            c.call(&["CLIENT", "SETNAME", name]);
            for cmd in setup {
                c.cmd(cmd);
            }
            conns.push(c);
        }
        let mut r = open();
        let fields = [
            "name",
            "flags",
            "sub",
            "psub",
            "ssub",
            "multi",
            "multi-mem",
            "cmd",
        ];
        let mut got = Vec::new();
        crate::support::eventually("the five connections in their states", || {
            let Frame::Bulk(list) = r.call(&["CLIENT", "LIST"]) else {
                panic!()
            };
            got = String::from_utf8(list)
                .unwrap()
                .lines()
                .filter(|l| !l.contains(" name= "))
                .map(|l| {
                    let f: std::collections::HashMap<&str, &str> =
                        l.split(' ').filter_map(|kv| kv.split_once('=')).collect();
                    fields
                        .iter()
                        // A Unix socket connection (the reference's) is `U`.
                        .map(|k| format!("{k}={}", f[k].replace('U', "")))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            got.sort();
            // Every connection has run its last command and is waiting
            // where it should (the server reads each in its own time).
            let has = |name: &str, state: &str, last: &str| {
                got.iter().any(|l| {
                    l.starts_with(&format!("name={name} "))
                        && l.contains(state)
                        && l.ends_with(last)
                })
            };
            has("sub", "sub=2 psub=0 ssub=1", "cmd=subscribe")
                && has("psub", "psub=1", "cmd=psubscribe")
                && has("multi", "multi=2", "cmd=get")
                && has("blocked", "", "cmd=blpop")
                && has("waiting", "", "cmd=wait")
                && got
                    .iter()
                    .all(|l| l.contains("flags=b") || !l.contains("cmd=blpop"))
                && got
                    .iter()
                    .all(|l| l.contains("flags=b") || !l.contains("cmd=wait"))
        });
        r.call(&["CLIENT", "KILL", "SKIPME", "yes"]);
        got
    }
    let node = TestNode::start();
    let reference = crate::support::ReferenceRedis::start();
    let ours = states(|| node.raw());
    let theirs = states(|| reference.raw());
    assert_eq!(ours, theirs);
    assert!(
        ours.iter()
            .any(|l| l.contains("flags=x") && l.contains("multi=2")),
        "{ours:?}"
    );
    // A subscribed connection is of type pubsub, for CLIENT LIST and KILL.
    let mut sub = node.raw();
    sub.call(&["SUBSCRIBE", "c"]);
    let mut r = node.raw();
    // The subscribers killed above leave the list as they close.
    eventually("one pubsub connection listed", || {
        let Frame::Bulk(list) = r.call(&["CLIENT", "LIST", "TYPE", "pubsub"]) else {
            panic!()
        };
        String::from_utf8(list).unwrap().lines().count() == 1
    });
    assert_eq!(int(&mut r, &["CLIENT", "KILL", "TYPE", "pubsub"]), 1);
}

/// ACL of the default user: what redis-server answers about it, the
/// categories from the command table, DRYRUN's checks, GENPASS's sizes;
/// with a password, its SHA-256 and ACL LOG's entries for failed
/// authentications (other users: `acl.rs`).
#[test]
fn acl_tells_of_the_default_user_as_redis_does() {
    use crate::acl::{both, log_entries as entries};
    use crate::support::ReferenceRedis;
    fn sorted(f: Frame) -> Vec<Frame> {
        let Frame::Array(mut v) = f else {
            panic!("{f:?}")
        };
        v.sort_by_key(|f| format!("{f:?}"));
        v
    }
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let (mut ours, mut theirs) = (node.raw(), reference.raw());
    for cmd in [
        &["ACL", "WHOAMI"][..],
        &["ACL", "USERS"],
        &["ACL", "LIST"],
        &["ACL", "GETUSER", "default"],
        &["ACL", "GETUSER", "nobody"],
        &["ACL", "CAT"],
        &["ACL", "CAT", "nosuch"],
        &["ACL", "CAT", "a", "b"],
        &["ACL", "DRYRUN", "default", "GET", "k"],
        &["ACL", "DRYRUN", "default", "GET"],
        &["ACL", "DRYRUN", "default", "CONFIG", "GET"],
        &["ACL", "DRYRUN", "default", "NOSUCH", "x"],
        &["ACL", "DRYRUN", "nobody", "GET", "k"],
        &["ACL", "GENPASS", "0"],
        &["ACL", "LOG"],
        &["ACL", "LOG", "-1"],
        &["ACL", "LOG", "x"],
        &["ACL", "LOG", "RESET"],
    ] {
        both(&mut ours, &mut theirs, cmd);
    }
    // Each category holds the same commands (hyperloglog: Shoal has no
    // PFDEBUG or PFSELFTEST, Redis's test hooks).
    for cat in [
        "string",
        "list",
        "hash",
        "set",
        "sortedset",
        "bitmap",
        "geo",
        "pubsub",
    ] {
        assert_eq!(
            sorted(ours.call(&["ACL", "CAT", cat])),
            sorted(theirs.call(&["ACL", "CAT", cat])),
            "{cat}"
        );
    }
    for (bits, len) in [(None, 64), (Some("32"), 8), (Some("5"), 2)] {
        let mut cmd = vec!["ACL", "GENPASS"];
        cmd.extend(bits);
        let Frame::Bulk(p) = ours.call(&cmd) else {
            panic!()
        };
        assert_eq!(p.len(), len, "{bits:?}");
        assert!(p.iter().all(u8::is_ascii_hexdigit));
    }

    // With a password: its hash, and the failed attempts in the log.
    ok(&mut ours, &["CONFIG", "SET", "requirepass", "secret"]);
    assert_eq!(
        theirs.call(&["CONFIG", "SET", "requirepass", "secret"]),
        Frame::Simple("OK".into())
    );
    both(&mut ours, &mut theirs, &["ACL", "LIST"]);
    both(&mut ours, &mut theirs, &["ACL", "GETUSER", "default"]);
    for _ in 0..2 {
        both(&mut ours, &mut theirs, &["AUTH", "wrong"]);
    }
    both(&mut ours, &mut theirs, &["AUTH", "bob", "secret"]);
    assert_eq!(
        entries(ours.call(&["ACL", "LOG"])),
        entries(theirs.call(&["ACL", "LOG"]))
    );
    assert_eq!(entries(ours.call(&["ACL", "LOG", "1"])).len(), 1);
    both(&mut ours, &mut theirs, &["ACL", "LOG", "RESET"]);
    both(&mut ours, &mut theirs, &["ACL", "LOG"]);
}

/// A connection holds read and reply buffers only while it has something
/// to read or write: connection pools of thousands of idle connections
/// cost their state, not 32 KB each (they cost ~38 KB each before). The
/// asking connection's own buffers count while it runs, and a connection
/// that was sent a large reply keeps nothing of it.
#[test]
fn idle_connections_hold_no_buffers() {
    const IDLE: usize = 200;
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    let big = "x".repeat(200_000);
    ok(&mut r, &["SET", "big", &big]);
    let used = |r: &mut Raw| -> i64 {
        let info = bulk(r, &["INFO", "memory"]).unwrap();
        crate::info_field(&info, "used_memory").parse().unwrap()
    };
    let before = used(&mut r);
    let mut idle: Vec<Raw> = (0..IDLE).map(|_| node.raw()).collect();
    for (i, c) in idle.iter_mut().enumerate() {
        if i % 10 == 0 {
            assert_eq!(bulk(c, &["GET", "big"]).as_deref(), Some(&big[..]));
        } else {
            assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
        }
    }
    let per_connection = (used(&mut r) - before) / IDLE as i64;
    assert!(
        per_connection < 8 * 1024,
        "{per_connection} bytes per idle connection"
    );
    let list = bulk(&mut r, &["CLIENT", "LIST"]).unwrap();
    let mems: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("tot-mem=")))
        .collect();
    assert_eq!(mems.len(), IDLE + 1);
    assert_eq!(mems.iter().filter(|m| **m == "0").count(), IDLE, "{list}");
    let info = bulk(&mut r, &["INFO", "memory"]).unwrap();
    let clients: i64 = crate::info_field(&info, "mem_clients_normal")
        .parse()
        .unwrap();
    assert!((16 * 1024..=64 * 1024).contains(&clients), "{clients}");
    // Idle connections still answer, and a kill still reaches one.
    assert_eq!(idle[7].call(&["PING"]), Frame::Simple("PONG".into()));
    let id = int(&mut idle[8], &["CLIENT", "ID"]);
    assert_eq!(int(&mut r, &["CLIENT", "KILL", "ID", &id.to_string()]), 1);
    assert!(idle[8].is_closed());
}

/// Requests kept after their batch (a transaction's queue, published
/// messages waiting for a subscriber) hold the buffer they were read into:
/// a connection goes on reading into the rest of it rather than taking a
/// fresh buffer per batch, so 4,000 queued commands of 512 bytes cost a
/// few MB, not a 16 KB buffer each (64 MB).
#[test]
fn kept_requests_do_not_pin_a_buffer_each() {
    let node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    let used = |r: &mut Raw| -> i64 {
        let info = bulk(r, &["INFO", "memory"]).unwrap();
        crate::info_field(&info, "used_memory").parse().unwrap()
    };
    let mut tx = node.raw();
    ok(&mut tx, &["MULTI"]);
    let before = used(&mut r);
    let value = "v".repeat(512);
    for i in 0..4000 {
        assert_eq!(
            tx.call(&["SET", &format!("k{i}"), &value]),
            Frame::Simple("QUEUED".into())
        );
    }
    let grown = used(&mut r) - before;
    assert!(grown < 16 << 20, "{grown} bytes for 4000 queued commands");
    let Frame::Array(replies) = tx.call(&["EXEC"]) else {
        panic!("EXEC replies with an array")
    };
    assert_eq!(replies.len(), 4000);
    assert_eq!(int(&mut r, &["DBSIZE"]), 4000);
}

/// CLIENT INFO and CLIENT LIST show a connection's descriptor, and for
/// the caller its query buffer (the round's requests, 26 bytes for a lone
/// `CLIENT INFO`) and its command's arguments, as Redis shows them; an
/// idle connection holds neither.
#[test]
fn client_lines_show_descriptors_and_the_callers_buffers_as_redis() {
    let node = TestNode::start();
    let reference = crate::support::ReferenceRedis::start();
    client_line_fields(node.raw(), node.raw());
    client_line_fields(reference.raw(), reference.raw());
}

fn client_line_fields<S: std::io::Read + std::io::Write>(mut r: Raw<S>, mut idle: Raw<S>) {
    let field = |line: &str, name: &str| -> String {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_string()
    };
    let text = |f: Frame| match f {
        Frame::Bulk(b) => String::from_utf8(b).unwrap(),
        other => panic!("{other:?}"),
    };
    let Frame::Int(idle_id) = idle.call(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID")
    };
    let info = text(r.call(&["CLIENT", "INFO"]));
    assert_eq!(field(&info, "qbuf"), "26", "{info}");
    assert_eq!(field(&info, "argv-mem"), "10", "{info}");
    assert!(field(&info, "fd").parse::<i32>().unwrap() > 2, "{info}");
    let list = text(r.call(&["CLIENT", "LIST"]));
    let own = list
        .lines()
        .find(|l| l.contains("cmd=client|list"))
        .unwrap();
    assert_eq!(field(own, "qbuf"), "26", "{list}");
    assert_eq!(field(own, "argv-mem"), "10", "{list}");
    let other = list
        .lines()
        .find(|l| field(l, "id") == idle_id.to_string())
        .unwrap();
    assert_eq!(field(other, "qbuf"), "0", "{list}");
    assert_eq!(field(other, "argv-mem"), "0", "{list}");
    assert_ne!(field(other, "fd"), field(own, "fd"), "{list}");
    assert!(field(other, "fd").parse::<i32>().unwrap() > 2, "{list}");
}
