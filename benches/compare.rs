//! Shoal vs Redis, side by side in one run.
//!
//! Starts the Shoal binary of this build and Debian's `redis-server` with
//! the same settings, then runs
//! `redis-benchmark` against each in turn, interleaved, for several rounds,
//! and prints each test's median requests/s, the median of the rounds'
//! Shoal/Redis ratios and their range, with
//! each server's CPU time per request (from /proc: the work it did, however
//! fast the client on the same machine could drive it). Then it
//! loads 1,000,000 small keys into a fresh instance of each, the same way, and
//! compares memory per key (allocator-reported `used_memory` and RSS); the
//! same for 1,000,000 hashes of 10 fields, a sorted set of 1,000,000
//! members, a list of 1,000,000 elements, a stream of 1,000,000 entries,
//! lists of ids and sets of integers. Data structure commands (LPUSH, LPOP,
//! SADD, HSET, ZADD, a 100-member ZRANGE, PFADD, XADD) have their own
//! throughput table. Replication: SET
//! on a primary with one replica attached, how long the replica takes to
//! catch up once the load stops, GET served by the replica, and the time a
//! new replica takes to fully sync 1,000,000 keys.
//!
//! Run: `cargo bench --bench compare`. Knobs (environment):
//! `BENCH_ROUNDS` (3), `BENCH_REQUESTS` (200000 for -P 1; x8 for -P 16),
//! `BENCH_KEYS` (1000000), `BENCH_SHOAL_ARGS` (extra directives for Shoal,
//! e.g. `--io-threads 1`), `BENCH_ONLY` (sections to run, comma-separated,
//! of `strings,structures,collections-memory,log,memory,replay,replication`; all by
//! default). Ratios, not absolute numbers, are what compare
//! across runs: the machines are shared and noisy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    name: &'static str,
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"PING\r\n");
            let mut b = [0u8; 7];
            if s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n" {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server on {port} did not become ready");
}

fn start_shoal(args: &[&str]) -> Server {
    start_shoal_in(tempfile::tempdir().unwrap(), args)
}

fn start_shoal_in(dir: tempfile::TempDir, args: &[&str]) -> Server {
    let extra = std::env::var("BENCH_SHOAL_ARGS").unwrap_or_default();
    let mut child = Command::new(SHOAL)
        .args(["--port", "0", "--dir"])
        .arg(dir.path())
        .args(args)
        .args(extra.split_whitespace())
        .stdout(Stdio::piped())
        .spawn()
        .expect("shoal binary");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let port = loop {
        let line = lines.next().expect("shoal exited").unwrap();
        if let Some(a) = line.split("Ready to accept connections tcp on ").nth(1) {
            break a.trim().rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    wait_ready(port);
    Server {
        name: "shoal",
        child,
        port,
        _dir: dir,
    }
}

fn start_redis(args: &[&str]) -> Server {
    start_redis_in(tempfile::tempdir().unwrap(), args)
}

fn start_redis_in(dir: tempfile::TempDir, args: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)");
    wait_ready(port);
    Server {
        name: "redis",
        child,
        port,
        _dir: dir,
    }
}

/// Runs one redis-benchmark test and returns requests per second. A
/// `test` with spaces is a command line to run (`ZRANGE k 0 99`), any
/// other a built-in `-t` test.
fn bench(port: u16, test: &str, pipeline: usize, requests: usize) -> f64 {
    let custom: Vec<&str> = test.split_whitespace().collect();
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-p", &port.to_string(), "-n", &requests.to_string()]);
    if custom.len() == 1 {
        cmd.args(["-t", test]);
    }
    let out = cmd
        .args([
            "-c",
            "50",
            "-r",
            "100000",
            "-P",
            &pipeline.to_string(),
            "--csv",
        ])
        .args(if custom.len() > 1 { &custom[..] } else { &[] })
        .stderr(Stdio::null())
        .output()
        .expect("redis-benchmark is installed (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps",... header, then one line per test.
    let line = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no result for {test}: {text}"));
    line.split(',')
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

/// CPU time (user + system) the process has used, in microseconds, from
/// /proc: how much work the server did, independent of how fast the
/// client could drive it.
fn cpu_micros(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe_sysconf_clk_tck();
    ticks * 1e6 / hz
}

fn unsafe_sysconf_clk_tck() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Runs one test and returns (requests/s, server CPU microseconds per request).
fn measured(server: &Server, test: &str, pipeline: usize, requests: usize) -> (f64, f64) {
    let pid = server.child.id();
    let before = cpu_micros(pid);
    let rps = bench(server.port, test, pipeline, requests);
    let used = cpu_micros(pid) - before;
    (rps, used / requests as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn info_field(port: u16, section: &str, field: &str) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", section])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field}"))
        .trim()
        .parse()
        .unwrap()
}

/// Sends `n` commands (`command(i)` gives the i-th one's arguments) over
/// one pipelined connection and waits for every reply. Each reply must be
/// one line (`+OK`, `:1`), as SET, HSET and ZADD's are, or a bulk string
/// that starts no line with `-` (XADD's ID).
fn load(port: u16, n: usize, command: impl Fn(usize) -> Vec<String>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = s.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let (mut replies, mut line_start, mut in_bulk) = (0, true, false);
        while replies < n {
            let got = reader.read(&mut buf).unwrap();
            assert!(got > 0, "server closed during load");
            for &b in &buf[..got] {
                if line_start {
                    assert!(in_bulk || b != b'-', "error while loading");
                    // A bulk header's line is followed by its payload's.
                    in_bulk = !in_bulk && b == b'$';
                }
                line_start = b == b'\n';
                if line_start && !in_bulk {
                    replies += 1;
                }
            }
        }
    });
    let mut batch = Vec::with_capacity(1 << 20);
    for i in 0..n {
        let args = command(i);
        batch.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in &args {
            batch.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        if batch.len() > (1 << 20) - 1024 {
            s.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    s.write_all(&batch).unwrap();
    counter.join().unwrap();
}

/// Loads `n` keys `key:%012d` → `xxx`.
fn load_keys(port: u16, n: usize) {
    load(port, n, |i| {
        vec!["SET".into(), format!("key:{i:012}"), "xxx".into()]
    });
}

/// `used_memory` growth per element while `fill` loads `elements` elements.
/// Writes and deletes one key, so that a database's one-time setup
/// (Shoal's table of 16,384 slot pointers, made on its first write;
/// Redis's dictionaries, made at start) is not counted as the data's. A
/// slot's own table, made by its first key, is.
fn touch_db(port: u16) {
    for cmd in [&["SET", "bench:first", "x"][..], &["DEL", "bench:first"]] {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(cmd)
            .output()
            .unwrap();
    }
}

/// Measured once the loading connection is gone on the server's side too,
/// so that its buffers (a megabyte of pipelined commands) are not counted
/// as data.
fn memory_per_element(server: &Server, elements: usize, fill: impl FnOnce(u16)) -> f64 {
    touch_db(server.port);
    let used0 = info_field(server.port, "memory", "used_memory");
    fill(server.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    // The INFO connection itself is the one client left.
    while info_field(server.port, "clients", "connected_clients") > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let used1 = info_field(server.port, "memory", "used_memory");
    (used1 - used0) as f64 / elements as f64
}

fn memory_per_key(server: &Server, n: usize) -> (f64, f64) {
    touch_db(server.port);
    let used0 = info_field(server.port, "memory", "used_memory");
    let rss0 = info_field(server.port, "memory", "used_memory_rss");
    load_keys(server.port, n);
    let out = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "DBSIZE"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        n.to_string(),
        "{} holds every key",
        server.name
    );
    let used1 = info_field(server.port, "memory", "used_memory");
    let rss1 = info_field(server.port, "memory", "used_memory_rss");
    (
        (used1 - used0) as f64 / n as f64,
        (rss1.saturating_sub(rss0)) as f64 / n as f64,
    )
}

/// One table of interleaved redis-benchmark runs against a pair of servers.
fn throughput_table(
    shoal: &Server,
    redis: &Server,
    tests: &[&str],
    pipelines: &[usize],
    rounds: usize,
    requests: usize,
) {
    println!("| test | pipeline | shoal rps | redis rps | rps shoal/redis | rounds' ratios | shoal CPU µs/req | redis CPU µs/req |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for &p in pipelines {
        for &t in tests {
            let n = if p == 1 { requests } else { requests * 8 };
            let (mut a, mut b, mut ca, mut cb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                // Alternate who goes first, so neither always runs on a
                // machine warmed (or tired) by the other.
                let order: [&Server; 2] = if round % 2 == 0 {
                    [shoal, redis]
                } else {
                    [redis, shoal]
                };
                for s in order {
                    let (rps, cpu) = measured(s, t, p, n);
                    if std::ptr::eq(s, shoal) {
                        a.push(rps);
                        ca.push(cpu);
                    } else {
                        b.push(rps);
                        cb.push(cpu);
                    }
                }
            }
            // Each round's pair ran back to back, so its ratio is less
            // exposed to the machine's drifting load than the medians are;
            // their spread says how far one run can be trusted.
            let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
            let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().cloned().fold(0.0, f64::max);
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2}–{:.2} | {:.2} | {:.2} |",
                t.to_uppercase(),
                p,
                median(a),
                median(b),
                median(ratios),
                lo,
                hi,
                median(ca),
                median(cb)
            );
        }
    }
}

/// Seconds from start until a server that must load `dir`'s log answers.
fn load_seconds(start: impl FnOnce() -> Server) -> (f64, Server) {
    let t = Instant::now();
    let s = start();
    // start_* return once PING is answered, which -LOADING is not.
    (t.elapsed().as_secs_f64(), s)
}

fn shutdown(s: Server) -> tempfile::TempDir {
    let _ = Command::new("redis-cli")
        .args(["-p", &s.port.to_string(), "SHUTDOWN"])
        .output();
    let mut s = s;
    let _ = s.child.wait();
    // Keep the data directory for the restart; the process is gone.
    let dir = tempfile::tempdir().unwrap();
    std::mem::replace(&mut s._dir, dir)
}

/// Whether `BENCH_ONLY` (if set) names this section.
fn section(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |v| v.split(',').any(|s| s.trim() == name))
}

fn main() {
    // `cargo bench` passes --bench; nothing else is expected.
    let rounds = env_num("BENCH_ROUNDS", 3);
    let requests = env_num("BENCH_REQUESTS", 200_000);
    let keys = env_num("BENCH_KEYS", 1_000_000);
    let no_log = ["--appendonly", "no"];

    println!("Shoal {} vs {}", env!("CARGO_PKG_VERSION"), redis_version());
    println!("redis-benchmark -c 50 -r 100000, {rounds} interleaved rounds, median requests/s\n");
    if section("strings") {
        println!("Without persistence (appendonly no on both):\n");
        let (shoal, redis) = (start_shoal(&no_log), start_redis(&no_log));
        throughput_table(
            &shoal,
            &redis,
            &["set", "get", "incr", "mset"],
            &[1, 16],
            rounds,
            requests,
        );
    }
    if section("structures") {
        structures(rounds, requests);
    }
    if section("collections-memory") {
        collections_memory(keys);
    }
    if section("log") {
        log_tables(rounds, requests);
    }
    if section("memory") {
        string_memory(keys);
    }
    if section("replay") {
        replay(keys);
    }
    if section("replication") {
        replication(rounds, requests, keys);
    }
}

/// One INFO section over a plain connection (no process per poll, so the
/// lag measurement is not the poller's own start-up time).
fn info_section(port: u16, section: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("INFO {section}\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(s);
    let mut header = String::new();
    reader.read_line(&mut header).unwrap();
    let len: usize = header.trim_start_matches('$').trim().parse().unwrap();
    let mut body = vec![0u8; len + 2];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

fn field_of(info: &str, field: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Waits until `replica` has applied everything its primary has written;
/// returns how long that took.
fn catch_up(primary: &Server, replica: &Server) -> Duration {
    let t = Instant::now();
    let want = field_of(
        &info_section(primary.port, "replication"),
        "master_repl_offset",
    );
    let want: u64 = want.parse().unwrap();
    loop {
        let r = info_section(replica.port, "replication");
        let got: u64 = field_of(&r, "master_repl_offset").parse().unwrap_or(0);
        if field_of(&r, "master_link_status") == "up" && got >= want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "replica never caught up"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A replica of `primary`, of the same kind, set up the same way.
fn replica_for(primary: &Server, args: &[&str]) -> Server {
    let port = primary.port.to_string();
    let mut all = args.to_vec();
    all.extend(["--replicaof", "127.0.0.1", &port]);
    if primary.name == "shoal" {
        start_shoal(&all)
    } else {
        // Redis waits 5 s by default before a diskless full sync, to
        // gather replicas; Shoal starts at once. Compare the transfer.
        all.extend(["--repl-diskless-sync-delay", "0"]);
        start_redis(&all)
    }
}

fn replication(rounds: usize, requests: usize, keys: usize) {
    let no_log = ["--appendonly", "no"];
    println!("\nReplication, without persistence, one replica per primary:\n");
    let (shoal, redis) = (
        start_shoal(&no_log),
        start_redis(&["--appendonly", "no", "--repl-diskless-sync-delay", "0"]),
    );
    let (shoal_r, redis_r) = (replica_for(&shoal, &no_log), replica_for(&redis, &no_log));
    catch_up(&shoal, &shoal_r);
    catch_up(&redis, &redis_r);
    println!("SET on the primary:\n");
    throughput_table(&shoal, &redis, &["set"], &[1, 16], rounds, requests);
    // Lag: a last pipelined burst, then the time until the replica has it.
    println!("\nReplica lag once a burst of {requests} pipelined SETs stops, milliseconds:\n");
    println!("| shoal | redis |");
    println!("|---:|---:|");
    let mut lags = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, (p, r)) in [(&shoal, &shoal_r), (&redis, &redis_r)]
            .into_iter()
            .enumerate()
        {
            bench(p.port, "set", 16, requests);
            lags[i].push(catch_up(p, r).as_secs_f64() * 1000.0);
        }
    }
    let [a, b] = lags;
    println!("| {:.1} | {:.1} |", median(a), median(b));
    println!("\nGET served by the replica:\n");
    throughput_table(&shoal_r, &redis_r, &["get"], &[1, 16], rounds, requests);
    drop((shoal_r, redis_r));

    println!("\nFull sync of {keys} keys to a new replica, seconds from its start to caught up:\n");
    println!("| shoal | redis | shoal/redis (lower is faster) |");
    println!("|---:|---:|---:|");
    let mut secs = Vec::new();
    for p in [&shoal, &redis] {
        load_keys(p.port, keys);
        let t = Instant::now();
        let r = replica_for(p, &no_log);
        catch_up(p, &r);
        secs.push(t.elapsed().as_secs_f64());
        let dbsize = |port: u16| {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "DBSIZE"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(
            dbsize(r.port),
            dbsize(p.port),
            "{} replica holds every key",
            p.name
        );
    }
    println!(
        "| {:.2} | {:.2} | {:.2} |",
        secs[0],
        secs[1],
        secs[0] / secs[1]
    );
}

fn structures(rounds: usize, requests: usize) {
    let no_log = ["--appendonly", "no"];
    println!("\nData structures, without persistence (ZRANGE reads 100 members with scores):\n");
    let (shoal, redis) = (start_shoal(&no_log), start_redis(&no_log));
    for s in [&shoal, &redis] {
        load(s.port, 100, |i| {
            vec![
                "ZADD".into(),
                "bench:z".into(),
                i.to_string(),
                format!("member:{i}"),
            ]
        });
    }
    throughput_table(
        &shoal,
        &redis,
        &[
            "lpush",
            "lpop",
            "sadd",
            "hset",
            "zadd",
            "ZRANGE bench:z 0 99 WITHSCORES",
            "PFADD bench:hll __rand_int__",
            "XADD bench:x * name __rand_int__ amount 42",
        ],
        &[1, 16],
        rounds,
        requests,
    );
}

fn collections_memory(keys: usize) {
    let no_log = ["--appendonly", "no"];
    println!("\nMemory of collections, fresh servers, used_memory bytes per element:\n");
    println!("| data | shoal | redis | shoal/redis |");
    println!("|---|---:|---:|---:|");
    let hashes = keys;
    let per_hash = |s: &Server| {
        memory_per_element(s, hashes * 10, |port| {
            load(port, hashes, |i| {
                let mut a = vec!["HSET".to_string(), format!("hash:{i:09}")];
                for f in 0..10 {
                    a.push(format!("field{f}"));
                    a.push(format!("v{}", i + f));
                }
                a
            })
        })
    };
    let per_member = |s: &Server| {
        memory_per_element(s, keys, |port| {
            load(port, keys, |i| {
                vec![
                    "ZADD".into(),
                    "big:z".into(),
                    (i % 100_000).to_string(),
                    format!("member:{i:09}"),
                ]
            })
        })
    };
    let per_list_element = |s: &Server| {
        memory_per_element(s, keys, |port| {
            load(port, keys, |i| {
                vec!["RPUSH".into(), "big:l".into(), format!("element:{i}")]
            })
        })
    };
    // Lists of ids and sets of integers: what Redis keeps as integers.
    let (id_lists, int_sets) = (keys / 100, keys / 300);
    let per_id = |s: &Server| {
        memory_per_element(s, id_lists * 100, |port| {
            load(port, id_lists, |i| {
                let mut a = vec!["RPUSH".to_string(), format!("ids:{i:09}")];
                a.extend((0..100).map(|j| (1_000_000 + i * 100 + j).to_string()));
                a
            })
        })
    };
    let per_int_member = |s: &Server| {
        memory_per_element(s, int_sets * 300, |port| {
            load(port, int_sets, |i| {
                let mut a = vec!["SADD".to_string(), format!("ints:{i:09}")];
                a.extend((0..300).map(|j| (i * 1000 + j * 3).to_string()));
                a
            })
        })
    };
    let per_entry = |s: &Server| {
        memory_per_element(s, keys, |port| {
            load(port, keys, |i| {
                vec![
                    "XADD".into(),
                    "big:x".into(),
                    format!("{}-{}", 1_700_000_000_000 + i / 7, i % 7),
                    "user".into(),
                    format!("user:{}", i % 5000),
                    "amount".into(),
                    (i % 1000).to_string(),
                ]
            })
        })
    };
    for (what, f) in [
        (
            format!("one stream of {keys} entries of two fields (per entry)"),
            &per_entry as &dyn Fn(&Server) -> f64,
        ),
        (
            format!("{hashes} hashes of 10 fields (per field)"),
            &per_hash,
        ),
        (
            format!("one sorted set of {keys} members (per member)"),
            &per_member,
        ),
        (
            format!("one list of {keys} `element:N` (per element)"),
            &per_list_element,
        ),
        (
            format!("{id_lists} lists of 100 seven-digit ids (per element)"),
            &per_id,
        ),
        (
            format!("{int_sets} sets of 300 integers (per member)"),
            &per_int_member,
        ),
    ] {
        let (a, b) = (f(&start_shoal(&no_log)), f(&start_redis(&no_log)));
        println!("| {what} | {a:.1} | {b:.1} | {:.2} |", a / b);
    }
}

fn log_tables(rounds: usize, requests: usize) {
    for policy in ["everysec", "always"] {
        println!("\nAppend-only log, appendfsync {policy} on both:\n");
        let args = ["--appendonly", "yes", "--appendfsync", policy];
        let (shoal, redis) = (start_shoal(&args), start_redis(&args));
        throughput_table(&shoal, &redis, &["set"], &[1, 16], rounds, requests);
    }
}

fn string_memory(keys: usize) {
    let no_log = ["--appendonly", "no"];
    println!("\nMemory after loading {keys} keys (`key:%012d` -> `xxx`), fresh servers, bytes per key:\n");
    println!("| server | used_memory/key | RSS/key |");
    println!("|---|---:|---:|");
    let mut results = Vec::new();
    for s in [start_shoal(&no_log), start_redis(&no_log)] {
        let (used, rss) = memory_per_key(&s, keys);
        println!("| {} | {:.1} | {:.1} |", s.name, used, rss);
        results.push((used, rss));
    }
    println!(
        "| shoal/redis | {:.2} | {:.2} |",
        results[0].0 / results[1].0,
        results[0].1 / results[1].1
    );
}

fn replay(keys: usize) {
    println!(
        "\nStart-up replaying an append-only log of {keys} SETs (appendfsync everysec), seconds:\n"
    );
    let log = ["--appendonly", "yes"];
    let shoal = start_shoal(&log);
    load_keys(shoal.port, keys);
    let shoal_dir = shutdown(shoal);
    let (shoal_secs, _shoal) = load_seconds(|| start_shoal_in(shoal_dir, &log));
    let redis = start_redis(&log);
    load_keys(redis.port, keys);
    let redis_dir = shutdown(redis);
    let (redis_secs, _redis) = load_seconds(|| start_redis_in(redis_dir, &log));
    println!("| shoal | redis | shoal/redis (lower is faster) |");
    println!("|---:|---:|---:|");
    println!(
        "| {shoal_secs:.2} | {redis_secs:.2} | {:.2} |",
        shoal_secs / redis_secs
    );
}

fn redis_version() -> String {
    let out = Command::new("redis-server")
        .arg("--version")
        .output()
        .expect("redis-server (Debian's redis-server package) must be on PATH");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
