use std::process::Command;

use crate::support::{Frame, TestNode, BIN};

fn fails_with(args: &[&str], want: &str) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(want), "{args:?}: {err}");
}

#[test]
fn bad_configuration_stops_start_up() {
    fails_with(&["--port", "0", "--nosuch", "1"], ">>> 'nosuch 1'");
    fails_with(
        &["--port", "99999"],
        "argument must be between 0 and 65535 inclusive",
    );
    fails_with(
        &["--port", "0", "--loglevel", "loud"],
        "one of the following",
    );
    fails_with(
        &["--port", "0", "--maxclients", "x"],
        "couldn't be parsed into an integer",
    );
    fails_with(&["/nonexistent/shoal.conf"], "can't open config file");
}

#[test]
fn config_file_then_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("shoal.conf");
    std::fs::write(
        &conf,
        "# a comment\nport 0\nmaxclients 77\nrequirepass \"pass word\"\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    // The file is the first argument; flags after it win.
    let dir2 = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg(&conf)
        .args(["--maxclients", "88", "--dir"])
        .arg(dir2.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find(|l| l.contains("Ready to accept connections"))
        .unwrap();
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let mut r = crate::support::Raw::connect(port);
    assert_eq!(r.call(&["AUTH", "pass word"]), Frame::Simple("OK".into()));
    assert_eq!(
        r.call(&["CONFIG", "GET", "maxclients"]),
        Frame::Array(vec![Frame::bulk("maxclients"), Frame::bulk("88")])
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Shoal server v="));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: shoal"));
}

#[test]
fn maxclients_rejects_extra_connections() {
    let node = TestNode::start_with(&["--maxclients", "2"]);
    let mut a = node.raw();
    let mut b = node.raw();
    assert_eq!(a.call(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(b.call(&["PING"]), Frame::Simple("PONG".into()));
    let mut c = node.raw();
    assert_eq!(
        c.read2(),
        Frame::Error("ERR max number of clients reached".into())
    );
}

/// Starts a node from `args` (a config file first), returning it with the
/// log lines it printed up to readiness and the port it took.
/// Asserts what CONFIG GET answers for each setting.
fn config_is(r: &mut crate::support::Raw, settings: &[(&str, &str)]) {
    for (k, v) in settings {
        assert_eq!(
            r.call(&["CONFIG", "GET", k]),
            Frame::Array(vec![Frame::bulk(k), Frame::bulk(v)]),
            "{k}"
        );
    }
}

fn spawn_ready(args: &[&str]) -> (std::process::Child, Vec<String>, u16) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, port) = ready(&mut child);
    let port = port.unwrap_or_else(|| panic!("not ready: {lines:?}"));
    (child, lines, port)
}

/// CONFIG REWRITE brings the config file up to the running configuration
/// as redis-server 7.0 does (checked by hand): comments stay, lines are
/// rewritten in place (an old name under its new one; a repeated
/// directive's extra line blanked), what the file lacked and differs from
/// its default is appended after Redis's signature line; the node starts
/// again from the file with the same settings.
#[test]
fn config_rewrite_keeps_the_file_and_persists_changes() {
    let node = TestNode::start();
    assert_eq!(
        crate::err(&mut node.raw(), &["CONFIG", "REWRITE"]),
        "ERR The server is running without a config file"
    );

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("shoal.conf");
    std::fs::write(
        &conf,
        "# my settings\nport 0\nhash-max-ziplist-entries 64\n\nmaxclients 77\nmaxclients 78\nsave 900 1\nsave 300 10\n# the end\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (conf_s, data_s) = (conf.to_str().unwrap(), data.to_str().unwrap());
    let (mut child, _, port) = spawn_ready(&[conf_s, "--dir", data_s]);
    let mut r = crate::support::Raw::connect(port);
    for (k, v) in [
        ("maxmemory", "100mb"),
        ("appendfsync", "always"),
        ("hash-max-listpack-entries", "100"),
    ] {
        crate::ok(&mut r, &["CONFIG", "SET", k, v]);
    }
    crate::ok(&mut r, &["CONFIG", "REWRITE"]);
    let text = std::fs::read_to_string(&conf).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let abs = std::fs::canonicalize(&data).unwrap();
    assert_eq!(
        lines,
        [
            "# my settings",
            &format!("port {port}"),
            "hash-max-listpack-entries 100",
            "",
            "maxclients 78",
            "",
            "save 900 1",
            "save 300 10",
            "# the end",
            "",
            "# Generated by CONFIG REWRITE",
            &format!("dir \"{}\"", abs.display()),
            "appendfsync always",
            "maxmemory 100mb",
        ][..],
        "{text}"
    );
    // Once more changes nothing.
    crate::ok(&mut r, &["CONFIG", "REWRITE"]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), text);
    let _ = child.kill();
    let _ = child.wait();

    let (mut child, _, port) = spawn_ready(&[conf_s, "--port", "0"]);
    let mut r = crate::support::Raw::connect(port);
    config_is(
        &mut r,
        &[
            ("maxmemory", "104857600"),
            ("appendfsync", "always"),
            ("hash-max-listpack-entries", "100"),
            ("maxclients", "78"),
            ("save", "900 1 300 10"),
        ],
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts a node under `sh -c "ulimit ...; exec shoal ..."`.
fn spawn_with_ulimit(ulimit: &str, args: &[&str]) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{ulimit}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lines up to readiness (or the end, if it exits), and its port.
fn ready(child: &mut std::process::Child) -> (Vec<String>, Option<u16>) {
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for l in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        let port = l
            .split("Ready to accept connections tcp on ")
            .nth(1)
            .and_then(|a| a.trim().rsplit(':').next()?.parse().ok());
        lines.push(l);
        if port.is_some() {
            return (lines, port);
        }
    }
    (lines, None)
}

/// The open files limit fits maxclients as in Redis: raised when the hard
/// limit allows, else maxclients is lowered (with Redis's warnings) and
/// CONFIG SET cannot raise it past the limit; too low a limit for the
/// server itself stops start-up.
#[test]
fn the_open_files_limit_fits_maxclients_as_redis_fits_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = ["--port", "0", "--dir", d, "--appendonly", "no"];

    // Soft and hard limit 100: 68 clients fit (unless this process may
    // raise a hard limit, as a root with CAP_SYS_RESOURCE may: then Shoal
    // raises it too).
    let can_raise_hard = Command::new("sh")
        .args(["-c", "ulimit -n 100 && ulimit -n 200"])
        .status()
        .unwrap()
        .success();
    let mut args = base.to_vec();
    args.extend(["--maxclients", "1000"]);
    if !can_raise_hard {
        let mut child = spawn_with_ulimit("ulimit -n 100", &args);
        let (lines, port) = ready(&mut child);
        let mut r = crate::support::Raw::connect(port.expect("ready"));
        assert!(
            lines.iter().any(|l| l.contains(
                "Current maximum open files is 100. maxclients has been reduced to 68 to compensate for low ulimit."
            )),
            "{lines:?}"
        );
        assert_eq!(
            r.call(&["CONFIG", "GET", "maxclients"]),
            Frame::Array(vec![Frame::bulk("maxclients"), Frame::bulk("68")])
        );
        assert_eq!(
            crate::err(&mut r, &["CONFIG", "SET", "maxclients", "5000"]),
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - The operating system is not able to handle the specified number of clients, try with 68"
        );
        crate::ok(&mut r, &["CONFIG", "SET", "maxclients", "50"]);
        let _ = child.kill();
        let _ = child.wait();
    }

    // Only the soft limit low: raised to what maxclients needs.
    let hard: u64 = String::from_utf8(
        Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap_or(u64::MAX);
    if hard >= 3032 {
        let mut child = spawn_with_ulimit("ulimit -Sn 100", &args);
        let (lines, port) = ready(&mut child);
        let limits = || std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        assert!(
            lines.iter().any(|l| l.contains(
                "Increased maximum number of open files to 1032 (it was originally set to 100)."
            )),
            "{lines:?}"
        );
        assert!(limits()
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1032 ")));
        let mut r = crate::support::Raw::connect(port.expect("ready"));
        crate::ok(&mut r, &["CONFIG", "SET", "maxclients", "3000"]);
        assert!(limits()
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 3032 ")));
        let _ = child.kill();
        let _ = child.wait();
    }

    // Not even the server's own descriptors fit.
    if can_raise_hard {
        return;
    }
    let mut args = base.to_vec();
    args.extend(["--maxclients", "10"]);
    let mut child = spawn_with_ulimit("ulimit -n 20", &args);
    let (lines, port) = ready(&mut child);
    assert_eq!(port, None, "{lines:?}");
    let status = child.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let all = format!("{lines:?}{err}");
    assert!(
        all.contains("Your current 'ulimit -n' of 20 is not enough for the server to start. Please increase your open file limit to at least 42. Exiting."),
        "{all}"
    );
}

/// Debian's stock redis.conf starts a node: Redis settings Shoal does not
/// act on are accepted and checked, old names (ziplist, slave) are
/// understood, and start-up warns about what is set to something Shoal
/// does not do. A pidfile that cannot be written is a warning, as in Redis.
#[test]
fn a_stock_redis_conf_starts_a_node() {
    let stock = "/etc/redis/redis.conf";
    assert!(
        std::path::Path::new(stock).exists(),
        "{stock}: the redis-server package installs it (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut child, lines, port) = spawn_ready(&[
        stock,
        "--port",
        "0",
        "--dir",
        d,
        "--logfile",
        "",
        "--bind",
        "127.0.0.1",
    ]);
    let log = lines.join("\n");
    assert!(
        log.contains("daemonize yes: accepted for redis.conf compatibility"),
        "{log}"
    );
    assert!(log.contains("Failed to write PID file"), "{log}");
    assert!(
        !log.contains("protected-mode"),
        "defaults are not warned about: {log}"
    );
    let mut r = crate::support::Raw::connect(port);
    assert_eq!(
        r.call(&["CONFIG", "GET", "tcp-backlog"]),
        Frame::Array(vec![Frame::bulk("tcp-backlog"), Frame::bulk("511")])
    );
    assert_eq!(r.call(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    let _ = child.kill();
    let _ = child.wait();

    // Old names reach the settings they were renamed to.
    let conf = dir.path().join("old.conf");
    std::fs::write(
        &conf,
        "hash-max-ziplist-entries 3\nslave-read-only no\nlist-compress-depth 1\n",
    )
    .unwrap();
    let (mut child, lines, port) =
        spawn_ready(&[conf.to_str().unwrap(), "--port", "0", "--dir", d]);
    assert!(lines.join("\n").contains("list-compress-depth 1: accepted"));
    let mut r = crate::support::Raw::connect(port);
    assert_eq!(
        r.call(&["CONFIG", "GET", "hash-max-listpack-entries"]),
        Frame::Array(vec![
            Frame::bulk("hash-max-listpack-entries"),
            Frame::bulk("3")
        ])
    );
    assert_eq!(
        r.call(&["CONFIG", "GET", "replica-read-only"]),
        Frame::Array(vec![Frame::bulk("replica-read-only"), Frame::bulk("no")])
    );
    r.call(&["HSET", "h", "a", "1", "b", "2", "c", "3", "d", "4"]);
    assert_eq!(
        r.call(&["OBJECT", "ENCODING", "h"]),
        Frame::bulk("hashtable")
    );
    assert_eq!(
        r.call(&["CONFIG", "SET", "hash-max-ziplist-entries", "9"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["CONFIG", "GET", "hash-max-ziplist-entries"]),
        Frame::Array(vec![
            Frame::bulk("hash-max-ziplist-entries"),
            Frame::bulk("9")
        ])
    );
    assert!(matches!(
        r.call(&["CONFIG", "SET", "daemonize", "yes"]),
        Frame::Error(e) if e.contains("can't set immutable config")
    ));
    let _ = child.kill();
    let _ = child.wait();
}

/// `tcp-backlog` is the listen backlog: while the node accepts nothing
/// (stopped), the kernel completes that many handshakes (and one more)
/// and leaves the rest waiting; with Redis's 511 all get through.
#[test]
fn tcp_backlog_bounds_the_connections_waiting_to_be_accepted() {
    let connects_while_stopped = |node: &TestNode| {
        let pid = node.child.id().to_string();
        let signal = |s: &str| {
            assert!(Command::new("kill")
                .args([s, &pid])
                .status()
                .unwrap()
                .success());
        };
        signal("-STOP");
        // A thread still accepting for a moment after kill returned let
        // two connections more through on a loaded machine.
        crate::support::wait_stopped(node.child.id());
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.port));
        let timeout = std::time::Duration::from_millis(300);
        let conns: Vec<_> = (0..6)
            .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, timeout).ok())
            .collect();
        signal("-CONT");
        conns.len()
    };
    let small = TestNode::start_with(&["--tcp-backlog", "2"]);
    let n = connects_while_stopped(&small);
    assert!((1..=3).contains(&n), "{n} connections past a backlog of 2");
    let default = TestNode::start();
    assert_eq!(connects_while_stopped(&default), 6);
    let mut r = default.raw();
    assert_eq!(
        r.call(&["CONFIG", "GET", "tcp-backlog"]),
        Frame::Array(vec![Frame::bulk("tcp-backlog"), Frame::bulk("511")])
    );
}

/// Debian's redis-server.service (Type=notify, `--supervised systemd`)
/// runs a node as it runs Redis: READY=1 once it serves, STOPPING=1 at
/// shutdown, on $NOTIFY_SOCKET; `auto` finds systemd from it; upstart's
/// node stops itself once ready and serves after SIGCONT.
#[test]
fn a_supervised_node_tells_its_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(crate::support::DEADLINE))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let supervised = |mode: &str, var: &str, value: &std::ffi::OsStr| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--port",
            "0",
            "--dir",
            d,
            "--appendonly",
            "no",
            "--supervised",
            mode,
        ])
        .env_remove("UPSTART_JOB")
        .env_remove("NOTIFY_SOCKET")
        .env(var, value)
        .stdout(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    for mode in ["systemd", "auto"] {
        let mut child = supervised(mode, "NOTIFY_SOCKET", sock_path.as_os_str());
        let (_, port) = ready(&mut child);
        assert_eq!(recv(), "STATUS=Ready to accept connections\n");
        assert_eq!(recv(), "READY=1\n");
        let mut r = crate::support::Raw::connect(port.unwrap());
        r.cmd(&["SHUTDOWN", "NOSAVE"]);
        assert_eq!(recv(), "STOPPING=1\n");
        assert!(child.wait().unwrap().success());
    }

    let mut child = supervised("upstart", "UPSTART_JOB", std::ffi::OsStr::new("shoal"));
    let (_, port) = ready(&mut child);
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    crate::support::eventually("the node stopped itself", || state() == "T");
    assert!(Command::new("kill")
        .args(["-CONT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut r = crate::support::Raw::connect(port.unwrap());
    assert_eq!(r.call(&["PING"]), Frame::Simple("PONG".into()));
    let _ = child.kill();
    let _ = child.wait();
}

/// `client-output-buffer-limit` lines each set one class of clients, as in
/// redis.conf, and CONFIG SET of one class keeps the others: the kept value
/// names all three, as Redis shows it.
#[test]
fn buffer_limit_lines_each_set_their_class() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("shoal.conf");
    std::fs::write(
        &conf,
        "port 0\nclient-output-buffer-limit normal 0 0 0\nclient-output-buffer-limit replica 512mb 128mb 60\nclient-output-buffer-limit pubsub 32mb 8mb 60\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (mut child, _, port) =
        spawn_ready(&[conf.to_str().unwrap(), "--dir", data.to_str().unwrap()]);
    let mut r = crate::support::Raw::connect(port);
    let limit = "client-output-buffer-limit";
    config_is(
        &mut r,
        &[(
            limit,
            "normal 0 0 0 slave 536870912 134217728 60 pubsub 33554432 8388608 60",
        )],
    );
    crate::ok(&mut r, &["CONFIG", "SET", limit, "pubsub 1mb 1mb 0"]);
    config_is(
        &mut r,
        &[(
            limit,
            "normal 0 0 0 slave 536870912 134217728 60 pubsub 1048576 1048576 0",
        )],
    );
    // CONFIG REWRITE writes one line per class away from its default.
    crate::ok(&mut r, &["CONFIG", "REWRITE"]);
    let text = std::fs::read_to_string(&conf).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[1..3],
        [
            "client-output-buffer-limit replica 512mb 128mb 60",
            "client-output-buffer-limit pubsub 1mb 1mb 0",
        ],
        "{text}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `include` reads another file where it stands, as redis.conf allows: a
/// path, or a pattern read in name order (matching nothing is fine);
/// directives after it win. A missing file stops start-up.
#[test]
fn include_reads_other_files_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let confd = dir.path().join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    std::fs::write(confd.join("10-a.conf"), "maxclients 50\nsave 60 5\n").unwrap();
    std::fs::write(confd.join("20-b.conf"), "maxclients 60\n").unwrap();
    std::fs::write(confd.join(".hidden.conf"), "maxclients 1\n").unwrap();
    std::fs::write(dir.path().join("base.conf"), "slowlog-max-len 7\n").unwrap();
    let conf = dir.path().join("shoal.conf");
    let text = format!(
        "port 0\nsave 900 1\ninclude {}\ninclude {}/*.conf\ninclude {}/*.none\nslowlog-max-len 9\n",
        dir.path().join("base.conf").display(),
        confd.display(),
        confd.display(),
    );
    std::fs::write(&conf, text).unwrap();
    let data = dir.path().join("data");
    let (mut child, _, port) =
        spawn_ready(&[conf.to_str().unwrap(), "--dir", data.to_str().unwrap()]);
    let mut r = crate::support::Raw::connect(port);
    config_is(
        &mut r,
        &[
            ("maxclients", "60"),
            ("slowlog-max-len", "9"),
            ("save", "900 1 60 5"),
        ],
    );
    let _ = child.kill();
    let _ = child.wait();

    std::fs::write(&conf, "port 0\ninclude /nonexistent/extra.conf\n").unwrap();
    fails_with(
        &[conf.to_str().unwrap()],
        "can't open config file '/nonexistent/extra.conf'",
    );
}

/// Settings Redis has and Shoal does not act on (Unix sockets, TLS, Redis
/// Cluster's own), and scripting's time limit by its old name, start a
/// node and read back; `enable-debug-command no` refuses DEBUG with Redis's
/// words.
#[test]
fn redis_only_settings_start_and_debug_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, _, port) = spawn_ready(&[
        "--port",
        "0",
        "--dir",
        data.to_str().unwrap(),
        "--unixsocket",
        "/tmp/shoal-unused.sock",
        "--cluster-enabled",
        "yes",
        "--tls-port",
        "0",
        "--lua-time-limit",
        "100",
        "--enable-debug-command",
        "no",
    ]);
    let mut r = crate::support::Raw::connect(port);
    config_is(&mut r, &[("busy-reply-threshold", "100")]);
    assert_eq!(
        crate::err(&mut r, &["DEBUG", "DIGEST"]),
        "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server."
    );
    let _ = child.kill();
    let _ = child.wait();

    // `local`: this test's loopback connection may.
    let (mut child, _, port) = spawn_ready(&[
        "--port",
        "0",
        "--dir",
        data.to_str().unwrap(),
        "--enable-debug-command",
        "local",
    ]);
    let mut r = crate::support::Raw::connect(port);
    assert!(matches!(r.call(&["DEBUG", "DIGEST"]), Frame::Simple(_)));
    let _ = child.kill();
    let _ = child.wait();
}
