//! Test support: the real `shoal` binary on a free loopback port.
//!
//! [`TestNode::start`] runs the binary with `--port 0` in a fresh temporary
//! directory and learns the port it bound from its "Ready to accept
//! connections" log line, so tests never guess or share ports. Dropping the
//! node kills the process. [`Raw`] speaks raw RESP bytes for protocol tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shoal");

/// Waits until every thread of process `pid` is stopped (after SIGSTOP:
/// kill returns once the signal is sent, and a thread may run on for a
/// moment).
pub fn wait_stopped(pid: u32) {
    let task_dir = format!("/proc/{pid}/task");
    eventually("every thread stopped", || {
        std::fs::read_dir(&task_dir).unwrap().all(|t| {
            let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("T")
        })
    });
}

/// How long any condition may take on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct TestNode {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Every line the server logs after its ready line is sent here.
    pub log: mpsc::Receiver<String>,
    /// What it logged before it was ready (loading, warnings).
    pub startup_log: Vec<String>,
    args: Vec<String>,
}

impl TestNode {
    pub fn start() -> TestNode {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, port, log, startup_log) =
            spawn(&dir.path().join("data"), &args, DEADLINE).unwrap_or_else(|e| panic!("{e}"));
        TestNode {
            child,
            port,
            dir,
            log,
            startup_log,
            args,
        }
    }

    /// The data directory (`dir` directive) of this node.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the process without warning (SIGKILL), as a crash would.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same data directory (after a crash
    /// or an exit), with the same arguments plus `extra`.
    pub fn restart(&mut self, extra: &[&str]) -> Result<(), String> {
        self.restart_within(extra, DEADLINE)
    }

    /// [`TestNode::restart`] for data that takes long to load: ready
    /// within `deadline`.
    pub fn restart_within(&mut self, extra: &[&str], deadline: Duration) -> Result<(), String> {
        self.crash();
        let mut args = self.args.clone();
        args.extend(extra.iter().map(|a| a.to_string()));
        let (child, port, log, startup_log) = spawn(&self.data_dir(), &args, deadline)?;
        self.child = child;
        self.port = port;
        self.log = log;
        self.startup_log = startup_log;
        Ok(())
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap()
    }

    pub fn conn(&self) -> redis::Connection {
        self.client().get_connection().expect("connect")
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    /// Runs `redis-cli` against this node and returns its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the process to exit by itself and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "shoal did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failing test shows how its server ended and what it said.
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let log: Vec<String> = self.log.try_iter().collect();
            let tail = &log[log.len().saturating_sub(20)..];
            eprintln!(
                "shoal on port {}: {}\nlast log lines:\n{}\nstandard error:\n{err}",
                self.port,
                match exited {
                    Some(status) => format!("had exited ({status})"),
                    None => "was running".into(),
                },
                tail.join("\n"),
            );
        }
    }
}

/// Starts `shoal --port 0 --dir DIR ARGS...` and waits for its ready line.
/// On failure returns what the server wrote to standard error.
type Spawned = (Child, u16, mpsc::Receiver<String>, Vec<String>);

fn spawn(
    dir: &std::path::Path,
    args: &[String],
    ready_within: Duration,
) -> Result<Spawned, String> {
    let mut cmd = Command::new(BIN);
    // Two serving threads whatever the machine (the default leaves a core
    // spare, one thread on two cores), so that clients on different
    // threads meet in every test; a test's own arguments come later and win.
    // A configuration file the test gives goes first, where shoal reads one.
    let (config, args) = match args.split_first() {
        Some((file, rest)) if !file.starts_with("--") => (Some(file), rest),
        _ => (None, args),
    };
    cmd.args(config)
        .args(["--port", "0", "--io-threads", "2", "--dir"])
        .arg(dir)
        .args(args);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoal");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Keep draining even if nobody listens, so the server never
            // blocks on a full pipe.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + ready_within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.split("Ready to accept connections tcp on ").nth(1) {
                    let port = addr
                        .trim()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse::<u16>()
                        .unwrap();
                    return Ok((child, port, rx, seen));
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("shoal did not become ready: {err}"));
            }
        }
    }
}

/// CPU time (user + system) a process has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU ticks the process uses over the next `span` (the test waits).
pub fn cpu_ticks_over(pid: u32, span: Duration) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(span);
    cpu_ticks(pid) - before
}

/// How many times the process's threads named `name` have gone to sleep
/// and been woken (their voluntary context switches).
pub fn thread_wakeups(pid: u32, name: &str) -> u64 {
    wakeups_where(pid, |comm| comm == name)
}

/// [`thread_wakeups`] of every thread of the process (those alive now).
pub fn process_wakeups(pid: u32) -> u64 {
    wakeups_where(pid, |_| true)
}

fn wakeups_where(pid: u32, keep: impl Fn(&str) -> bool) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| keep(c.trim())))
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Polls `f` until it returns true or the deadline passes.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw RESP connection, over TCP (to Shoal) or a unix socket (to the
/// reference redis-server).
pub struct Raw<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Double(f64),
    Verbatim(String),
    Push(Vec<Frame>),
    Bool(bool),
    BigNumber(String),
}

impl Frame {
    pub fn bulk(s: &str) -> Frame {
        Frame::Bulk(s.as_bytes().to_vec())
    }
}

fn from3(f: redis_protocol::resp3::types::OwnedFrame) -> Frame {
    use redis_protocol::resp3::types::OwnedFrame as F;
    match f {
        F::SimpleString { data, .. } => Frame::Simple(String::from_utf8_lossy(&data).into_owned()),
        F::SimpleError { data, .. } => Frame::Error(data),
        F::BlobError { data, .. } => Frame::Error(String::from_utf8_lossy(&data).into_owned()),
        F::Number { data, .. } => Frame::Int(data),
        F::BlobString { data, .. } => Frame::Bulk(data),
        F::Null => Frame::Null,
        F::Array { data, .. } => Frame::Array(data.into_iter().map(from3).collect()),
        F::Map { data, .. } => Frame::Map(
            data.into_iter()
                .map(|(k, v)| (from3(k), from3(v)))
                .collect(),
        ),
        F::Set { data, .. } => Frame::Set(data.into_iter().map(from3).collect()),
        F::Double { data, .. } => Frame::Double(data),
        F::VerbatimString { data, .. } => {
            Frame::Verbatim(String::from_utf8_lossy(&data).into_owned())
        }
        F::Push { data, .. } => Frame::Push(data.into_iter().map(from3).collect()),
        F::Boolean { data, .. } => Frame::Bool(data),
        F::BigNumber { data, .. } => Frame::BigNumber(String::from_utf8_lossy(&data).into_owned()),
        other => panic!("unexpected frame {other:?}"),
    }
}

fn from2(f: redis_protocol::resp2::types::OwnedFrame) -> Frame {
    use redis_protocol::resp2::types::OwnedFrame as F;
    match f {
        F::SimpleString(s) => Frame::Simple(String::from_utf8_lossy(&s).into_owned()),
        F::Error(e) => Frame::Error(e),
        F::Integer(i) => Frame::Int(i),
        F::BulkString(b) => Frame::Bulk(b),
        F::Array(a) => Frame::Array(a.into_iter().map(from2).collect()),
        F::Null => Frame::Null,
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// True once the server has closed the connection (after any pending bytes).
    pub fn is_closed(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

impl Raw<UnixStream> {
    pub fn unix(path: &std::path::Path) -> Raw<UnixStream> {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }
}

impl<S: Read + Write> Raw<S> {
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn cmd(&mut self, args: &[&str]) {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&encode(&args));
    }

    fn fill(&mut self) -> bool {
        self.try_fill().is_ok()
    }

    /// Reads more; `Err` says why nothing came (closed, reset, timed out).
    /// A read a signal interrupted is tried again (`read` does not, and a
    /// long test once failed so).
    fn try_fill(&mut self) -> Result<(), String> {
        let mut tmp = [0u8; 65536];
        loop {
            return match self.stream.read(&mut tmp) {
                Ok(0) => Err("connection closed".into()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(format!("read failed: {e}")),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    Ok(())
                }
            };
        }
    }

    /// Reads more, or panics saying why a reply never came.
    fn fill_or_panic(&mut self) {
        if let Err(why) = self.try_fill() {
            panic!("{why} while waiting for a reply");
        }
    }

    /// Reads one RESP2 reply.
    pub fn read2(&mut self) -> Frame {
        loop {
            let decoded = redis_protocol::resp2::decode::decode(&self.buf);
            let decoded = decoded.unwrap_or_else(|e| {
                panic!(
                    "invalid RESP2 ({e:?}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            });
            if let Some((f, n)) = decoded {
                self.buf.drain(..n);
                return from2(f);
            }
            self.fill_or_panic();
        }
    }

    /// Reads one RESP2 reply, or `None` if the connection broke first.
    pub fn try_read2(&mut self) -> Option<Frame> {
        loop {
            if let Ok(Some((f, n))) = redis_protocol::resp2::decode::decode(&self.buf) {
                self.buf.drain(..n);
                return Some(from2(f));
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads one RESP3 reply.
    pub fn read3(&mut self) -> Frame {
        loop {
            // The decoder reports a frame cut short (an aggregate whose
            // elements have not all arrived) as an error: read on, and
            // only a frame still bad once the connection ends is one.
            match redis_protocol::resp3::decode::complete::decode(&self.buf) {
                Ok(Some((f, n))) => {
                    self.buf.drain(..n);
                    return from3(f);
                }
                Ok(None) => {}
                Err(e) if self.buf.is_empty() => panic!("invalid RESP3: {e:?}"),
                Err(_) => {}
            }
            self.fill_or_panic();
        }
    }

    /// Sends a command and reads its RESP2 reply.
    pub fn call(&mut self, args: &[&str]) -> Frame {
        self.cmd(args);
        self.read2()
    }

    /// Reads raw bytes until `n` bytes are buffered, and takes them.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill(), "connection closed early");
        }
        self.buf.drain(..n).collect()
    }
}

/// Debian's `redis-server`, as a reference to compare Shoal with. It listens
/// on a unix socket in its own temporary directory only, so it never takes
/// a TCP port.
pub struct ReferenceRedis {
    child: Child,
    pub socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ReferenceRedis {
    pub fn start() -> ReferenceRedis {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let r = ReferenceRedis {
            child,
            socket,
            _dir: dir,
        };
        eventually("redis-server ready", || {
            r.client()
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
        r
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis+unix://{}", self.socket.display())).unwrap()
    }

    pub fn raw(&self) -> Raw<UnixStream> {
        Raw::unix(&self.socket)
    }

    /// Its data directory (where SAVE writes dump.rdb).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl Drop for ReferenceRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one command; an error becomes its text so both sides compare.
pub fn run(con: &mut redis::Connection, args: &[&str]) -> Result<redis::Value, String> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<redis::Value>(con).map_err(|e| e.to_string())
}

/// An array reply in a fixed order, for replies that are sets.
pub fn sorted(v: Result<redis::Value, String>) -> Result<redis::Value, String> {
    v.map(|v| match v {
        redis::Value::Array(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            redis::Value::Array(items)
        }
        other => other,
    })
}

/// Commands whose reply is a set: compared sorted.
const UNORDERED: &[&str] = &[
    "SMEMBERS",
    "KEYS",
    "SINTER",
    "SUNION",
    "SDIFF",
    "SPOP",
    "SRANDMEMBER",
    "HRANDFIELD",
];

/// Runs `script` on both servers (Shoal and redis-server), in order, and
/// asserts every reply is equal, errors word for word; replies whose order
/// Redis leaves undefined (set members) are compared sorted. Then the
/// datasets' digests must be equal too.
/// [`same_as_redis`] for a script built at run time.
pub fn same_as_redis_owned(script: &[Vec<String>]) -> (TestNode, ReferenceRedis) {
    let refs: Vec<Vec<&str>> = script
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    let cmds: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
    same_as_redis(&cmds)
}

pub fn same_as_redis(script: &[&[&str]]) -> (TestNode, ReferenceRedis) {
    let node = TestNode::start();
    let reference = ReferenceRedis::start();
    let mut ours = node.conn();
    let mut theirs = reference.client().get_connection().unwrap();
    for cmd in script {
        let (mut a, mut b) = (run(&mut ours, cmd), run(&mut theirs, cmd));
        if UNORDERED.contains(&cmd[0]) {
            (a, b) = (sorted(a), sorted(b));
        }
        assert_eq!(a, b, "{cmd:?}");
    }
    let digest = |con: &mut redis::Connection| run(con, &["DEBUG", "DIGEST"]);
    assert_eq!(digest(&mut ours), digest(&mut theirs), "dataset digest");
    (node, reference)
}
