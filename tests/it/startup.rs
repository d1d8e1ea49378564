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
