//! ACL users: rules, checks and their errors compared with redis-server;
//! users from the configuration file and an aclfile; what changing or
//! deleting a user does to its connections.

use crate::support::{eventually, Frame, Raw, ReferenceRedis, TestNode};
use crate::{bulk, err, int, ok};

/// Runs `cmd` on both and asserts the same reply.
pub fn both<S, T>(a: &mut Raw<S>, b: &mut Raw<T>, cmd: &[&str]) -> Frame
where
    S: std::io::Read + std::io::Write,
    T: std::io::Read + std::io::Write,
{
    let (x, y) = (rules_sorted(a.call(cmd)), rules_sorted(b.call(cmd)));
    assert_eq!(x, y, "{cmd:?}");
    x
}

/// ACL LOG's entries, each cut to the fields Redis 7.0 and Shoal share
/// that depend on neither time nor client: count, reason, context,
/// object, username.
pub fn log_entries(r: Frame) -> Vec<Vec<Frame>> {
    let Frame::Array(es) = r else { panic!("{r:?}") };
    es.into_iter()
        .map(|e| {
            let Frame::Array(kv) = e else { panic!("{e:?}") };
            kv[..10].to_vec()
        })
        .collect()
}

/// Redis lists single-command rules (`+get -lpush`) in its hash table's
/// order, which differs between two runs of redis-server: rule lists are
/// compared with their words after `+@all`/`-@all` and the categories
/// sorted.
fn rules_sorted(f: Frame) -> Frame {
    match f {
        Frame::Array(v) => Frame::Array(v.into_iter().map(rules_sorted).collect()),
        Frame::Bulk(b) => {
            let text = String::from_utf8(b).unwrap();
            let Some(at) = text.find("@all") else {
                return Frame::Bulk(text.into_bytes());
            };
            let (head, rest) = text.split_at(at + 4);
            let mut words: Vec<&str> = rest.split_whitespace().collect();
            let cats = words.iter().take_while(|w| w[1..].starts_with('@')).count();
            words[cats..].sort_unstable();
            let mut out = head.to_string();
            for w in words {
                out.push(' ');
                out.push_str(w);
            }
            Frame::Bulk(out.into_bytes())
        }
        other => other,
    }
}

/// Users made by SETUSER (commands, categories, subcommands, first
/// arguments, key patterns with read/write access, channels, selectors),
/// described by GETUSER and LIST, refused rules, DRYRUN's verdicts, and
/// the checks on real commands at top level, in MULTI and in scripts: the
/// same replies as redis-server, and ACL LOG's entries for the refusals.
#[test]
fn users_and_their_permissions_behave_as_in_redis() {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let (mut ours, mut theirs) = (node.raw(), reference.raw());
    let setup: &[&[&str]] = &[
        &[
            "ACL",
            "SETUSER",
            "alice",
            "on",
            ">pw",
            "~app:*",
            "&chan*",
            "-@all",
            "+get",
            "+set",
            "+@list",
            "-lpush",
            "%R~ro:*",
            "+config|get",
        ],
        &[
            "ACL", "SETUSER", "carol", "on", "nopass", "~k*", "&ch*", "+@all", "-incr",
        ],
        &["ACL", "SETUSER", "w", "on", "nopass", "+@all", "%W~*"],
        &["ACL", "SETUSER", "r", "on", "nopass", "+@all", "%R~*"],
        &[
            "ACL", "SETUSER", "m", "on", "nopass", "+@all", "%R~src*", "%W~dst*",
        ],
        &[
            "ACL", "SETUSER", "y", "(~a*", "+get)", "%RW~b", "%W~c", "&x",
        ],
        &["ACL", "SETUSER", "z", "reset"],
        &["ACL", "GETUSER", "z"],
        &[
            "ACL",
            "SETUSER",
            "z",
            "+@all",
            "-get",
            "-@hash",
            "+hget",
            "~*",
            "allchannels",
            "on",
            "nopass",
        ],
        &["ACL", "SETUSER", "x", "+select|0"],
        // DEBUG is one command to ACL: its words are first arguments.
        &["ACL", "SETUSER", "x", "-debug|sleep"],
        &[
            "ACL",
            "SETUSER",
            "d",
            "on",
            "nopass",
            "-@all",
            "+debug|digest",
        ],
        &[
            "ACL",
            "SETUSER",
            "dd",
            "-@all",
            "+debug|digest",
            "+@admin",
            "-debug",
        ],
        &["ACL", "GETUSER", "d"],
        &["ACL", "GETUSER", "dd"],
        // Refused rules leave the user as it was.
        &["ACL", "SETUSER", "x", "foo"],
        &["ACL", "SETUSER", "x", "+nosuch"],
        &["ACL", "SETUSER", "x", "+@nosuch"],
        &["ACL", "SETUSER", "x", "~*", "~a"],
        &["ACL", "SETUSER", "x", "&*", "&a"],
        &["ACL", "SETUSER", "x", "<nopw"],
        &["ACL", "SETUSER", "x", "#abc"],
        &["ACL", "SETUSER", "x", "%X~c"],
        &["ACL", "SETUSER", "x", "+config|get|x"],
        &["ACL", "SETUSER", "x", "(~a*", "+get)", "(+set"],
        &["ACL", "SETUSER", "a b"],
        &["ACL", "GETUSER", "alice"],
        &["ACL", "GETUSER", "x"],
        &["ACL", "GETUSER", "y"],
        &["ACL", "GETUSER", "z"],
        &["ACL", "LIST"],
        &["ACL", "USERS"],
        &["ACL", "DELUSER", "default"],
        &["ACL", "DELUSER", "x", "nobody"],
        &["ACL", "USERS"],
        &["ACL", "SAVE"],
        &["ACL", "LOAD"],
        &["AUTH", "pw"],
    ];
    for cmd in setup {
        both(&mut ours, &mut theirs, cmd);
    }
    // ACL CAT lists DEBUG as one command, as Redis does.
    let Frame::Array(cat) = ours.call(&["ACL", "CAT", "dangerous"]) else {
        panic!()
    };
    assert!(cat.contains(&Frame::bulk("debug")), "{cat:?}");
    assert!(
        !cat.iter()
            .any(|f| matches!(f, Frame::Bulk(b) if b.starts_with(b"debug|"))),
        "{cat:?}"
    );
    let probes: &[&str] = &[
        "set dst1 v",
        "set dst1 v get",
        "get src1",
        "incr dst1",
        "lpush dst1 x",
        "lmove src1 dst1 left right",
        "sunionstore dst1 src1 src2",
        "zunionstore dst1 2 src1 src2",
        "copy src1 dst1",
        "rename src1 dst1",
        "del dst1",
        "expire dst1 10",
        "bitop and dst1 src1",
        "sort src1 store dst1",
        "pfmerge dst1 src1",
        "xreadgroup group g c streams src1 >",
        "getdel dst1",
        "bitfield dst1 get u8 0",
        "bitfield dst1 set u8 0 1",
        "bitfield src1 get u8",
        "pfdebug getreg src1",
        "pfcount src1 src2",
        "move src1 1",
        "xautoclaim src1 g c 0 0",
        "lcs src1 src2",
        "smove src1 dst1 m",
        "exists src1",
        "object encoding src1",
        "spublish zz m",
        "publish zz m",
        "psubscribe ch*",
        "psubscribe c*",
        "get a1",
        "get b",
        "config get x",
        "config set x y",
        "select 0",
        "select 1",
        "nosuch",
        "get",
        "debug digest",
        "debug sleep 0",
    ];
    for user in [
        "alice", "carol", "w", "r", "m", "y", "z", "x", "d", "nobody",
    ] {
        for p in probes {
            let mut cmd = vec!["ACL", "DRYRUN", user];
            cmd.extend(p.split(' '));
            both(&mut ours, &mut theirs, &cmd);
        }
    }

    // The same rules, met by real commands.
    let (mut a, mut b) = (node.raw(), reference.raw());
    let session: &[&[&str]] = &[
        &["AUTH", "nobody", "x"],
        &["AUTH", "alice", "bad"],
        &["AUTH", "alice", "pw"],
        &["GET", "app:1"],
        &["GET", "other"],
        &["LPUSH", "app:l", "x"],
        &["RPUSH", "app:l", "x"],
        &["SET", "ro:1", "x"],
        &["GET", "ro:1"],
        &["PUBLISH", "chanx", "m"],
        &["CONFIG", "GET", "maxmemory"],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["MULTI"],
        &["EXEC"],
        &["ACL", "WHOAMI"],
        &["AUTH", "carol", "x"],
        &["ACL", "WHOAMI"],
        &["EVAL", "return redis.call('incr','k')", "0"],
        &["EVAL", "return redis.pcall('get','other')", "0"],
        &["EVAL", "return redis.pcall('publish','zz','m')", "0"],
        &["EVAL", "return redis.pcall('get','k1')", "0"],
        &["EVAL", "return redis.acl_check_cmd('set','k1','v')", "0"],
        &["EVAL", "return redis.acl_check_cmd('incr','k1')", "0"],
        &["EVAL", "return redis.acl_check_cmd('get','other')", "0"],
        &[
            "EVAL",
            "return redis.acl_check_cmd('config','get','x')",
            "0",
        ],
        &["EVAL", "return redis.acl_check_cmd('nosuch')", "0"],
        &["EVAL", "return redis.acl_check_cmd()", "0"],
        &["PUBLISH", "other", "m"],
        &["PUBLISH", "chan", "m"],
        &["MULTI"],
        &["INCR", "k"],
        &["GET", "other"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "k1", "v"],
        &["EXEC"],
        // A failed AUTH run by EXEC is logged in the transaction's context.
        &["MULTI"],
        &["AUTH", "nobody", "x"],
        &["EXEC"],
    ];
    for cmd in session {
        both(&mut a, &mut b, cmd);
    }
    // What ACL LOG says of those refusals.
    assert_eq!(
        log_entries(ours.call(&["ACL", "LOG"])),
        log_entries(theirs.call(&["ACL", "LOG"]))
    );
    // Subscriptions: pattern names are matched literally, channels by
    // pattern; the subscribed connection is refused what Redis refuses.
    for cmd in [
        &["PSUBSCRIBE", "c*"][..],
        &["SUBSCRIBE", "ch1", "other"],
        &["SUBSCRIBE", "ch1"],
        &["PSUBSCRIBE", "ch*"],
        &["INCR", "k"],
    ] {
        both(&mut a, &mut b, cmd);
    }
}

/// A user changed or deleted while its connections are open: the next
/// command runs under the new rules (a queued transaction's commands
/// too, when EXEC runs them), DELUSER closes the user's connections, a
/// narrowed channel list closes its subscribers, CLIENT LIST and CLIENT
/// KILL USER know the user, RESET goes back to the default user, and
/// `requirepass` is the default user's password.
#[test]
fn changing_a_user_reaches_its_connections() {
    let node = TestNode::start();
    let mut admin = node.raw();
    ok(
        &mut admin,
        &[
            "ACL", "SETUSER", "app", "on", ">s3cret", "~*", "&news", "+@all",
        ],
    );
    let mut app = node.raw();
    ok(&mut app, &["AUTH", "app", "s3cret"]);
    ok(&mut app, &["SET", "k", "v"]);
    ok(&mut app, &["MULTI"]);
    assert_eq!(app.call(&["GET", "k"]), Frame::Simple("QUEUED".into()));
    ok(&mut admin, &["ACL", "SETUSER", "app", "-get"]);
    assert_eq!(
        app.call(&["EXEC"]),
        Frame::Array(vec![Frame::Error(
            "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: no permission to execute the command or subcommand".into()
        )])
    );
    assert_eq!(
        err(&mut app, &["GET", "k"]),
        "NOPERM this user has no permissions to run the 'get' command"
    );
    ok(&mut admin, &["ACL", "SETUSER", "app", "+get"]);
    assert_eq!(bulk(&mut app, &["GET", "k"]).as_deref(), Some("v"));
    let list = bulk(&mut admin, &["CLIENT", "LIST"]).unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains(" user=app ")).count(),
        1,
        "{list}"
    );

    // Narrowed channels close the user's subscribers, not its others.
    let mut sub = node.raw();
    ok(&mut sub, &["AUTH", "app", "s3cret"]);
    sub.call(&["SUBSCRIBE", "news"]);
    ok(&mut admin, &["ACL", "SETUSER", "app", "&sports"]);
    assert_eq!(int(&mut admin, &["PUBLISH", "news", "x"]), 1);
    ok(
        &mut admin,
        &["ACL", "SETUSER", "app", "resetchannels", "&sports"],
    );
    eventually("the subscriber closed", || sub.is_closed());
    assert_eq!(bulk(&mut app, &["GET", "k"]).as_deref(), Some("v"));

    // CLIENT KILL USER, then DELUSER: the user's connections close.
    let mut other = node.raw();
    ok(&mut other, &["AUTH", "app", "s3cret"]);
    assert_eq!(int(&mut admin, &["CLIENT", "KILL", "USER", "app"]), 2);
    eventually("killed", || other.is_closed() && app.is_closed());
    let mut app = node.raw();
    ok(&mut app, &["AUTH", "app", "s3cret"]);
    assert_eq!(int(&mut admin, &["ACL", "DELUSER", "app"]), 1);
    eventually("deleted user's connection closed", || app.is_closed());
    assert_eq!(
        err(&mut admin, &["CLIENT", "KILL", "USER", "app"]),
        "ERR No such user 'app'"
    );

    // requirepass is the default user's password; RESET returns to the
    // default user, unauthenticated once it has one.
    ok(
        &mut admin,
        &["ACL", "SETUSER", "ops", "on", ">pw", "+@all", "~*"],
    );
    ok(&mut admin, &["CONFIG", "SET", "requirepass", "hunter2"]);
    let mut c = node.raw();
    assert_eq!(
        err(&mut c, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    ok(&mut c, &["AUTH", "ops", "pw"]);
    assert_eq!(bulk(&mut c, &["ACL", "WHOAMI"]).as_deref(), Some("ops"));
    assert_eq!(c.call(&["RESET"]), Frame::Simple("RESET".into()));
    assert_eq!(
        err(&mut c, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    ok(&mut c, &["AUTH", "hunter2"]);
    assert_eq!(bulk(&mut c, &["ACL", "WHOAMI"]).as_deref(), Some("default"));
    ok(&mut c, &["CONFIG", "SET", "requirepass", ""]);
    let mut d = node.raw();
    assert_eq!(bulk(&mut d, &["GET", "k"]).as_deref(), Some("v"));
    // A disabled user cannot log in.
    ok(&mut admin, &["ACL", "SETUSER", "ops", "off"]);
    assert_eq!(
        err(&mut d, &["AUTH", "ops", "pw"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
}

/// Users from an aclfile: loaded at start, ACL SAVE writes them (and a
/// restart reads them back), ACL LOAD takes a changed file all or
/// nothing; a bad file stops the start. `user` lines in the
/// configuration file work the same, and CONFIG REWRITE keeps users there.
#[test]
fn users_come_from_an_aclfile_or_the_configuration_file() {
    let files = tempfile::tempdir().unwrap();
    let acl = files.path().join("users.acl");
    std::fs::write(
        &acl,
        "user default on nopass ~* &* +@all\nuser app on >secret ~app:* &* -@all +@read +@write\n",
    )
    .unwrap();
    let acl_path = acl.to_str().unwrap();
    let mut node = TestNode::start_with(&["--aclfile", acl_path]);
    let mut r = node.raw();
    ok(&mut r, &["AUTH", "app", "secret"]);
    ok(&mut r, &["SET", "app:1", "v"]);
    assert_eq!(
        err(&mut r, &["SET", "x", "v"]),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    let mut admin = node.raw();
    ok(&mut admin, &["ACL", "SETUSER", "app", "<secret", ">new"]);
    ok(&mut admin, &["ACL", "SAVE"]);
    let saved = std::fs::read_to_string(&acl).unwrap();
    assert!(saved.contains("user app on #"), "{saved}");
    // A bad line: nothing changes, and the reply says where.
    std::fs::write(&acl, format!("{saved}user bad on foo\n")).unwrap();
    let e = err(&mut admin, &["ACL", "LOAD"]);
    assert!(e.contains("users.acl:3: Syntax error."), "{e}");
    assert_ne!(admin.call(&["ACL", "GETUSER", "app"]), Frame::Null);
    // A good one: as in Redis 7.0, the connections of every user but the
    // default one are closed.
    std::fs::write(&acl, "user default on nopass ~* &* +@all\n").unwrap();
    ok(&mut admin, &["ACL", "LOAD"]);
    eventually("dropped user's connection closed", || r.is_closed());
    assert_eq!(admin.call(&["ACL", "GETUSER", "app"]), Frame::Null);
    // Saved users come back after a restart.
    ok(
        &mut admin,
        &["ACL", "SETUSER", "back", "on", ">pw", "+ping"],
    );
    ok(&mut admin, &["ACL", "SAVE"]);
    drop(admin);
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    ok(&mut r, &["AUTH", "back", "pw"]);
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    drop(node);

    // A bad aclfile stops the start.
    std::fs::write(&acl, "user bad on +nosuch\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["--port", "0", "--dir"])
        .arg(dir.path())
        .args(["--aclfile", acl_path])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Unknown command or category name in ACL"),
        "{text}"
    );

    // `user` lines in the configuration file; CONFIG REWRITE writes the
    // users there.
    let conf = files.path().join("shoal.conf");
    std::fs::write(&conf, "user cfg on >pw ~* +@all\n").unwrap();
    let node = TestNode::start_with(&[conf.to_str().unwrap()]);
    let mut r = node.raw();
    ok(&mut r, &["AUTH", "cfg", "pw"]);
    ok(
        &mut r,
        &["ACL", "SETUSER", "added", "on", ">x", "+get", "~k"],
    );
    ok(&mut r, &["CONFIG", "REWRITE"]);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("user added on #"), "{text}");
    assert!(text.contains("user cfg on #"), "{text}");
    assert_eq!(text.matches("user cfg").count(), 1, "{text}");
}
