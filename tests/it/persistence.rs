//! The append-only log: restarts, crashes (SIGKILL), torn tails, corruption
//! and the check-aof tool, all on the real binary and real files.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{cpu_ticks_over, eventually, thread_wakeups, Frame, Raw, TestNode, BIN};
use crate::{bulk, digest, err, info_field, int, ok, wait_synced};

fn log_file(node: &TestNode) -> std::path::PathBuf {
    node.data_dir()
        .join("appendonlydir")
        .join("appendonly.aof.1.incr.aof")
}

#[test]
fn restart_restores_every_key_type_and_expiry() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "plain", "hello"]);
    ok(&mut r, &["SET", "ttl", "v", "EX", "1000"]);
    ok(&mut r, &["SET", "gone", "v", "PX", "1"]);
    assert_eq!(int(&mut r, &["INCRBY", "n", "41"]), 41);
    assert_eq!(int(&mut r, &["APPEND", "grown", "abc"]), 3);
    bulk(&mut r, &["INCRBYFLOAT", "f", "2.5"]);
    ok(&mut r, &["SELECT", "4"]);
    ok(&mut r, &["MSET", "{x}a", "1", "{x}b", "2"]);
    ok(&mut r, &["RENAME", "{x}a", "{x}c"]);
    ok(&mut r, &["SELECT", "0"]);
    ok(&mut r, &["SWAPDB", "0", "5"]);
    ok(&mut r, &["SWAPDB", "0", "5"]);
    let before = digest(&mut r);
    let ttl_before = int(&mut r, &["PTTL", "ttl"]);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before);
    let ttl_after = int(&mut r, &["PTTL", "ttl"]);
    assert!(
        ttl_after > 0 && ttl_after <= ttl_before,
        "the expiry is absolute: {ttl_before} then {ttl_after}"
    );
    assert_eq!(int(&mut r, &["EXISTS", "gone"]), 0);
    let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
    assert_eq!(info_field(&info, "aof_enabled"), "1");
    assert_eq!(info_field(&info, "loading"), "0");
}

/// A replay sees keys as they were when each effect was recorded, even
/// keys whose expiry has passed since: an expiry made permanent by
/// PERSIST (the key was lost on restart), and a STORE command's sources.
#[test]
fn a_replay_keeps_keys_whose_expiry_passed_since_until_their_recorded_end() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    for (cmd, key) in [("ZADD", "{k}z"), ("ZADD", "{k}other")] {
        assert_eq!(int(&mut r, &[cmd, key, "1", "a"]), 1);
    }
    assert_eq!(int(&mut r, &["SADD", "{k}s", "a"]), 1);
    ok(&mut r, &["SET", "kept", "v"]);
    ok(&mut r, &["SET", "kept2", "v", "PX", "1500"]);
    for key in ["{k}z", "{k}s", "kept"] {
        assert_eq!(int(&mut r, &["PEXPIRE", key, "1500"]), 1);
    }
    let stored = [
        int(
            &mut r,
            &["ZINTERSTORE", "{k}inter", "2", "{k}z", "{k}other"],
        ),
        int(
            &mut r,
            &["ZUNIONSTORE", "{k}union", "2", "{k}s", "{k}other"],
        ),
    ];
    assert_eq!(int(&mut r, &["PERSIST", "kept"]), 1);
    assert_eq!(int(&mut r, &["PERSIST", "kept2"]), 1);
    eventually("the sources expire", || {
        int(&mut r, &["EXISTS", "{k}z", "{k}s"]) == 0
    });
    let before = digest(&mut r);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before);
    let after = [
        int(&mut r, &["ZCARD", "{k}inter"]),
        int(&mut r, &["ZCARD", "{k}union"]),
    ];
    assert_eq!(after, stored);
    for key in ["kept", "kept2"] {
        assert_eq!(bulk(&mut r, &["GET", key]).as_deref(), Some("v"));
        assert_eq!(int(&mut r, &["PTTL", key]), -1);
    }
}

#[test]
fn sigkill_under_load_with_appendfsync_always_loses_no_acknowledged_write() {
    let mut node = TestNode::start_with(&["--appendfsync", "always"]);
    let port = node.port;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                let key = format!("counter:{w}");
                while !stop.load(Ordering::Relaxed) {
                    r.cmd(&["INCR", &key]);
                    match r.try_read2() {
                        Some(Frame::Int(n)) => acked.lock().unwrap().push((key.clone(), n)),
                        _ => break, // the server died under us
                    }
                }
            })
        })
        .collect();
    eventually("some writes acknowledged", || {
        acked.lock().unwrap().len() > 2000
    });
    node.crash();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    let acked = acked.lock().unwrap();
    for w in 0..4 {
        let key = format!("counter:{w}");
        let last_acked = acked
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        let now: i64 = bulk(&mut r, &["GET", &key])
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        // Every acknowledged increment is there; at most the one in flight
        // when the process died may be too (written, not yet acknowledged).
        assert!(
            now >= last_acked && now <= last_acked + 1,
            "{key}: acknowledged {last_acked}, found {now}"
        );
    }
    assert_eq!(
        int(&mut r, &["DBSIZE"]),
        4,
        "nothing that was never written appears"
    );
}

/// How many bytes of a log file are records: what follows is room the
/// node wrote ahead (zeros).
fn records_len(data: &[u8]) -> usize {
    let mut at = 0;
    while at + 8 <= data.len() && data[at..at + 8].iter().any(|&b| b != 0) {
        at += 8 + u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    }
    at
}

/// With appendfsync always the node writes zeros ahead of its records, so
/// that a sync flushes data alone; a crash leaves them in the file, start-up
/// cuts them, and a node that stops cuts them itself.
#[test]
fn with_appendfsync_always_room_is_written_ahead_and_cut_at_rest() {
    let mut node = TestNode::start_with(&["--appendfsync", "always"]);
    let mut r = node.raw();
    for i in 0..200 {
        ok(&mut r, &["SET", &format!("k{i}"), "v"]);
    }
    let before = digest(&mut r);
    let path = log_file(&node);
    let room = |path: &std::path::Path| {
        let data = std::fs::read(path).unwrap();
        let records = records_len(&data);
        assert!(data[records..].iter().all(|&b| b == 0), "only zeros follow");
        (records, data.len() - records)
    };
    eventually("room written ahead", || room(&path).1 > 0);
    node.crash();
    let (records, _) = room(&path);
    // Under everysec no room is made: the file stays as start-up left it.
    node.restart(&["--appendfsync", "everysec"]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before, "every record loaded");
    // (Start-up may add a record of where the stream stands.)
    let (now, left) = room(&path);
    assert!(now >= records && left == 0, "start-up cut the room");
    assert!(
        !node.startup_log.iter().any(|l| l.contains("torn")),
        "room is no torn tail"
    );
    ok(&mut r, &["CONFIG", "SET", "appendfsync", "always"]);
    ok(&mut r, &["SET", "after", "1"]);
    eventually("room written ahead again", || room(&path).1 > 0);
    let before = digest(&mut r);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    assert_eq!(room(&path).1, 0, "a log at rest ends at its last record");
    node.restart(&[]).unwrap();
    assert_eq!(digest(&mut node.raw()), before);
}

#[test]
fn sigkill_with_everysec_keeps_what_was_synced() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    for i in 0..1000 {
        ok(&mut r, &["SET", &format!("k{i}"), &i.to_string()]);
    }
    let before = digest(&mut r);
    wait_synced(&mut r);
    node.crash();
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before);
}

#[test]
fn torn_tail_is_cut_with_a_warning_unless_told_not_to() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "kept", "yes"]);
    let before = digest(&mut r);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    // Half a record, as a crash in the middle of a write leaves it.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(log_file(&node))
        .unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'*', b'3']).unwrap();
    drop(f);
    // Told not to, the node refuses to cut it, as Redis does.
    let size = std::fs::metadata(log_file(&node)).unwrap().len();
    let err = node.restart(&["--aof-load-truncated", "no"]).unwrap_err();
    assert!(
        err.contains("Unexpected end of file") && err.contains("aof-load-truncated"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(log_file(&node)).unwrap().len(), size);
    node.restart(&[]).unwrap();
    let lines = &node.startup_log;
    assert!(
        lines.iter().any(|l| l.contains("10 bytes were cut")),
        "{lines:?}"
    );
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before);
    // The cut is permanent: new writes follow the last good record.
    ok(&mut r, &["SET", "after", "1"]);
    let after = digest(&mut r);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    node.restart(&[]).unwrap();
    assert_eq!(digest(&mut node.raw()), after);
}

#[test]
fn corruption_stops_start_up_until_check_aof_fixes_it() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "first", "1"]);
    ok(&mut r, &["SET", "second", "2"]);
    ok(&mut r, &["SET", "third", "3"]);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    let path = log_file(&node);
    let mut data = std::fs::read(&path).unwrap();
    // Records: where the stream stands (written at start-up), then one
    // per SET.
    let mut starts = vec![0usize];
    while *starts.last().unwrap() < data.len() {
        let at = *starts.last().unwrap();
        starts.push(at + 8 + u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize);
    }
    assert_eq!(starts.len(), 5, "a state record and three SETs");
    let second = starts[2];
    data[second + 8 + 20] ^= 0x20; // inside SET second's payload
    std::fs::write(&path, &data).unwrap();

    let err = node.restart(&[]).unwrap_err();
    assert!(
        err.contains("Bad file format") && err.contains(&format!("at offset {second}")),
        "{err}"
    );

    let check = std::process::Command::new(BIN)
        .args(["check-aof"])
        .arg(node.data_dir())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("corrupt record"));
    let fix = std::process::Command::new(BIN)
        .args(["check-aof", "--fix"])
        .arg(node.data_dir())
        .output()
        .unwrap();
    assert!(
        fix.status.success(),
        "{}",
        String::from_utf8_lossy(&fix.stdout)
    );

    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(bulk(&mut r, &["GET", "first"]).as_deref(), Some("1"));
    assert_eq!(
        int(&mut r, &["DBSIZE"]),
        1,
        "what followed the corruption is gone"
    );
}

#[test]
fn appendonly_no_writes_nothing() {
    let mut node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
    assert_eq!(info_field(&info, "aof_enabled"), "0");
    assert!(!node.data_dir().join("appendonlydir").exists());
    node.restart(&[]).unwrap();
    assert_eq!(int(&mut node.raw(), &["DBSIZE"]), 0);
}

#[test]
fn appendfsync_can_change_at_runtime() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["CONFIG", "SET", "appendfsync", "always"]);
    ok(&mut r, &["SET", "k", "v"]);
    let info = bulk(&mut r, &["INFO", "all"]).unwrap();
    assert_eq!(
        info_field(&info, "aof_fsync_offset"),
        info_field(&info, "master_repl_offset"),
        "always: synced before the reply"
    );
    ok(&mut r, &["CONFIG", "SET", "appendfsync", "no"]);
    ok(&mut r, &["SET", "k", "w"]);
}

#[test]
fn writes_left_unsynced_by_everysec_are_synced_after_a_switch_to_always() {
    // The second write comes within everysec's second, so it is written
    // and left for the next sync; with no write after the switch to
    // always, the writer must still sync it.
    let node = TestNode::start_with(&["--appendfsync", "everysec"]);
    let mut r = node.raw();
    let info = |r: &mut Raw, field: &str| {
        let all = bulk(r, &["INFO", "all"]).unwrap();
        info_field(&all, field).parse::<u64>().unwrap()
    };
    ok(&mut r, &["SET", "a", "1"]);
    let size = info(&mut r, "aof_current_size");
    ok(&mut r, &["SET", "b", "2"]);
    eventually("the write is in the file", || {
        info(&mut r, "aof_current_size") > size
    });
    ok(&mut r, &["CONFIG", "SET", "appendfsync", "always"]);
    eventually("the log is synced up to the last write", || {
        info(&mut r, "aof_fsync_offset") == info(&mut r, "master_repl_offset")
    });
}

#[test]
fn an_idle_node_with_appendfsync_always_stays_idle() {
    // A new log holds one record before any write; with appendfsync
    // always the writer once took it for nothing to wait for and spun a
    // whole core until the first write.
    let node = TestNode::start_with(&["--appendfsync", "always"]);
    let pid = node.child.id();
    let two_seconds = std::time::Duration::from_secs(2);
    let used = cpu_ticks_over(pid, two_seconds);
    // Idle, a node uses a few ticks in two seconds; spinning, about 200.
    assert!(used < 50, "an idle node used {used} ticks of CPU in 2 s");
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    let used = cpu_ticks_over(pid, two_seconds);
    assert!(
        used < 50,
        "a node idle after a write used {used} ticks in 2 s"
    );
}

#[test]
fn the_log_writer_sleeps_while_nothing_is_written() {
    // It collects records on a short timer while writes come (1 ms with
    // appendfsync always, 10 ms otherwise), and once woke on that timer
    // when nothing came too: 1,000 times a second on an idle node.
    for policy in ["always", "everysec", "no"] {
        let node = TestNode::start_with(&["--appendfsync", policy]);
        let pid = node.child.id();
        let mut r = node.raw();
        ok(&mut r, &["SET", "k", "v"]);
        // An everysec sync is due within a second of the write.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let before = thread_wakeups(pid, "shoal-aof");
        std::thread::sleep(std::time::Duration::from_secs(2));
        let woke = thread_wakeups(pid, "shoal-aof") - before;
        assert!(
            woke < 10,
            "{policy}: the idle log writer woke {woke} times in 2 s"
        );
        // And the next write wakes it.
        let mut log_size = || {
            let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
            info_field(&info, "aof_current_size")
                .parse::<u64>()
                .unwrap()
        };
        let size = log_size();
        ok(&mut node.raw(), &["SET", "k", "w"]);
        eventually("the write reaches the log file", || log_size() > size);
    }
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(SmallDisk { dir })
    }

    /// Mounting needs root; CI has it, and there a test that needs the
    /// disk must run. Elsewhere it is skipped.
    fn mount_or_skip(size: &str) -> Option<SmallDisk> {
        let disk = SmallDisk::mount(size);
        if disk.is_none() {
            assert!(
                std::env::var("CI").is_err(),
                "CI must be able to mount a tmpfs for this test"
            );
            eprintln!("skipping: cannot mount a tmpfs here (not root)");
        }
        disk
    }

    /// A 6 MB disk with 300 KB left, the rest taken by `filler`.
    fn nearly_full() -> Option<SmallDisk> {
        let disk = SmallDisk::mount_or_skip("6m")?;
        std::fs::write(disk.filler(), vec![0u8; (6 * 1024 - 300) * 1024]).unwrap();
        Some(disk)
    }

    fn filler(&self) -> std::path::PathBuf {
        self.dir.path().join("filler")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn full_disk_refuses_writes_keeps_reads_and_recovers() {
    // Writes are acknowledged before the log writer has them on disk
    // (everysec), so more may be pending than the 300 KB left when the
    // disk fills, all of them at worst: the disk freed must hold the 1,000
    // writes of 4 KB the test may make, or it could never catch up.
    let Some(disk) = SmallDisk::nearly_full() else {
        return;
    };
    let (data, filler) = (disk.dir.path().join("data"), disk.filler());
    let mut node = TestNode::start_with(&["--dir", data.to_str().unwrap()]);
    let mut r = node.raw();
    let value = "v".repeat(4096);
    let mut acked = 0;
    let mut refused = None;
    for i in 0..1000 {
        match r.call(&["SET", &format!("k{i}"), &value]) {
            Frame::Simple(s) if s == "OK" => acked += 1,
            Frame::Error(e) => {
                refused = Some(e);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let refused = refused.expect("the disk fills up");
    assert_eq!(
        refused,
        "MISCONF Errors writing to the AOF file: No space left on device"
    );
    assert!(acked > 10);
    // Reads still work while writes are refused.
    assert_eq!(
        bulk(&mut r, &["GET", "k0"]).as_deref(),
        Some(value.as_str())
    );
    assert_eq!(
        bulk(&mut r, &["INFO", "persistence"])
            .map(|i| info_field(&i, "aof_last_write_status"))
            .as_deref(),
        Some("err")
    );
    // Free the disk: the server notices by itself and accepts writes again.
    std::fs::remove_file(&filler).unwrap();
    eventually("writes accepted again", || {
        r.call(&["SET", "after", "1"]) == Frame::Simple("OK".into())
    });
    let before = digest(&mut r);
    assert_eq!(
        int(&mut r, &["DBSIZE"]),
        acked + 1,
        "every acknowledged write is there"
    );
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    node.restart(&["--dir", data.to_str().unwrap()]).unwrap();
    assert_eq!(digest(&mut node.raw()), before, "and survives a restart");
}

#[test]
fn with_appendfsync_always_a_full_disk_holds_the_write_until_it_is_on_disk() {
    // The write that fails is not acknowledged: its client waits until the
    // record is on disk, which it is once the disk has room again (the
    // writer retries every second; the I/O threads, which sync the other
    // writes, leave a failure to it). Meanwhile other writes are refused.
    let Some(disk) = SmallDisk::nearly_full() else {
        return;
    };
    let (data, filler) = (disk.dir.path().join("data"), disk.filler());
    let args = ["--dir", data.to_str().unwrap(), "--appendfsync", "always"];
    let mut node = TestNode::start_with(&args);
    let port = node.port;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut w = Raw::connect(port);
            let value = "v".repeat(4096);
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) && acked < 1000 {
                ok(&mut w, &["SET", &format!("k{acked}"), &value]);
                acked += 1;
            }
            acked
        })
    };
    let mut r = node.raw();
    eventually("the disk is full", || {
        let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
        info_field(&info, "aof_last_write_status") == "err"
    });
    assert_eq!(
        r.call(&["SET", "other", "1"]),
        Frame::Error("MISCONF Errors writing to the AOF file: No space left on device".into())
    );
    assert_eq!(bulk(&mut r, &["GET", "k0"]).map(|v| v.len()), Some(4096));
    std::fs::remove_file(&filler).unwrap();
    eventually("writes accepted again", || {
        r.call(&["SET", "after", "1"]) == Frame::Simple("OK".into())
    });
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert_eq!(
        int(&mut r, &["DBSIZE"]),
        acked as i64 + 1,
        "every acknowledged write is there"
    );
    let before = digest(&mut r);
    // Acknowledged means synced: a crash (SIGKILL) loses none of it.
    node.restart(&[]).unwrap();
    assert_eq!(digest(&mut node.raw()), before, "and survives a crash");
}

#[test]
fn a_copy_taken_while_writing_starts_as_a_backup() {
    let node = TestNode::start();
    let port = node.port;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut r = Raw::connect(port);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ok(
                    &mut r,
                    &["SET", &format!("k{i}"), &"x".repeat(i as usize % 300)],
                );
                i += 1;
            }
        })
    };
    let mut r = node.raw();
    eventually("writes under way", || int(&mut r, &["DBSIZE"]) > 500);
    // Copy the log byte by byte while it grows, as `cp -r` would.
    let backup = tempfile::tempdir().unwrap();
    let src = node.data_dir().join("appendonlydir");
    let dst = backup.path().join("appendonlydir");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let copy = TestNode::start_with(&["--dir", backup.path().to_str().unwrap()]);
    let mut c = copy.raw();
    let n = int(&mut c, &["DBSIZE"]);
    assert!(n > 0, "the backup holds what was logged when it was copied");
    // A prefix of the writes: every key up to the last one present.
    for i in (0..n).step_by(97) {
        assert_eq!(
            int(&mut c, &["EXISTS", &format!("k{i}")]),
            1,
            "k{i} missing from a backup of {n} keys"
        );
    }
}

fn wait_rewrite_done(r: &mut Raw, count: u64) {
    eventually("rewrite finished", || {
        let info = bulk(r, &["INFO", "persistence"]).unwrap();
        info_field(&info, "aof_rewrite_in_progress") == "0"
            && info_field(&info, "aof_rewrites").parse::<u64>().unwrap() >= count
    });
    let info = bulk(r, &["INFO", "persistence"]).unwrap();
    assert_eq!(info_field(&info, "aof_last_bgrewrite_status"), "ok");
}

fn log_files(node: &TestNode) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(node.data_dir().join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bgrewriteaof_compacts_the_log_and_restart_matches() {
    let mut node = TestNode::start();
    let mut r = node.raw();
    for _ in 0..2000 {
        int(&mut r, &["INCR", "counter"]);
    }
    for i in 0..300 {
        ok(&mut r, &["SET", &format!("k{i}"), "v", "EX", "1000"]);
    }
    ok(&mut r, &["SELECT", "2"]);
    ok(&mut r, &["SET", "other-db", "x"]);
    ok(&mut r, &["SELECT", "0"]);
    // Everything above written before the size is read: under always, a
    // reply waits for every record before it.
    ok(&mut r, &["CONFIG", "SET", "appendfsync", "always"]);
    ok(&mut r, &["SET", "written", "1"]);
    ok(&mut r, &["CONFIG", "SET", "appendfsync", "everysec"]);
    let size_before: u64 = info_field(
        &bulk(&mut r, &["INFO", "persistence"]).unwrap(),
        "aof_current_size",
    )
    .parse()
    .unwrap();
    assert_eq!(
        r.call(&["BGREWRITEAOF"]),
        Frame::Simple("Background append only file rewriting started".into())
    );
    wait_rewrite_done(&mut r, 1);
    let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
    let size_after: u64 = info_field(&info, "aof_current_size").parse().unwrap();
    assert!(
        size_after * 3 < size_before,
        "2000 INCRs became one SET: {size_before} -> {size_after}"
    );
    assert_eq!(
        log_files(&node),
        vec![
            "appendonly.aof.2.incr.aof",
            "appendonly.aof.3.base.aof",
            "appendonly.aof.manifest"
        ],
        "the old file is gone"
    );
    // Writes after the rewrite land in the new incremental file.
    int(&mut r, &["INCR", "counter"]);
    let before = digest(&mut r);
    // The restart is a kill: wait for the write to be in the file.
    wait_synced(&mut r);
    node.crash();
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before);
    assert_eq!(bulk(&mut r, &["GET", "counter"]).as_deref(), Some("2001"));
    assert!(
        int(&mut r, &["TTL", "k7"]) > 900,
        "expiries survive the rewrite"
    );
}

#[test]
fn rewrites_under_concurrent_writes_double_nothing() {
    let mut node = TestNode::start_with(&["--appendfsync", "always"]);
    let port = node.port;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<i64>>> = Arc::new(Mutex::new(vec![0; 4]));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // A counter (not idempotent: a double replay would show)
                    // and keys spread over every slot.
                    let n = match r.call(&["INCR", &format!("counter:{w}")]) {
                        Frame::Int(n) => n,
                        other => panic!("{other:?}"),
                    };
                    acked.lock().unwrap()[w] = n;
                    ok(&mut r, &["SET", &format!("w{w}:{i}"), &i.to_string()]);
                    i += 1;
                }
            })
        })
        .collect();
    let mut r = node.raw();
    for round in 1..=3u64 {
        eventually("writes under way", || {
            acked
                .lock()
                .unwrap()
                .iter()
                .all(|&n| n as u64 > round * 200)
        });
        r.call(&["BGREWRITEAOF"]);
        wait_rewrite_done(&mut r, round);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let before = digest(&mut r);
    let keys_before = crate::strings(&mut r, &["KEYS", "*"]);
    let mut values_before = std::collections::BTreeMap::new();
    for k in &keys_before {
        values_before.insert(k.clone(), bulk(&mut r, &["GET", k]));
    }
    node.crash();
    node.restart(&[]).unwrap();
    let mut r = node.raw();
    if digest(&mut r) != before {
        let keys_after = crate::strings(&mut r, &["KEYS", "*"]);
        let mut diffs = Vec::new();
        for k in keys_after.iter().chain(keys_before.iter()) {
            let after = bulk(&mut r, &["GET", k]);
            let b = values_before.get(k).cloned().flatten();
            if after != b {
                diffs.push(format!("{k}: before {b:?} after {after:?}"));
            }
        }
        diffs.sort();
        diffs.dedup();
        panic!(
            "{} keys before, {} after; differences: {:?}",
            keys_before.len(),
            keys_after.len(),
            &diffs[..diffs.len().min(20)]
        );
    }
    for (w, n) in acked.lock().unwrap().iter().enumerate() {
        assert_eq!(
            bulk(&mut r, &["GET", &format!("counter:{w}")]).map(|v| v.parse::<i64>().unwrap()),
            Some(*n)
        );
    }
}

#[test]
fn a_crash_at_any_moment_of_a_rewrite_leaves_a_loadable_log() {
    let mut node = TestNode::start_with(&["--appendfsync", "always"]);
    for round in 0..4 {
        let mut r = node.raw();
        for i in 0..3000 {
            ok(
                &mut r,
                &["SET", &format!("r{round}:{i}"), &"x".repeat(i % 50)],
            );
        }
        let before = digest(&mut r);
        r.call(&["BGREWRITEAOF"]);
        // Crash sooner or later into the rewrite on each round.
        std::thread::sleep(std::time::Duration::from_millis(round * 7));
        node.crash();
        node.restart(&[]).unwrap();
        assert_eq!(digest(&mut node.raw()), before, "round {round}");
    }
}

#[test]
fn the_log_is_rewritten_by_itself_when_it_grows() {
    let node = TestNode::start_with(&[
        "--auto-aof-rewrite-min-size",
        "64kb",
        "--auto-aof-rewrite-percentage",
        "100",
    ]);
    let mut r = node.raw();
    for i in 0..5000 {
        ok(&mut r, &["SET", "same-key", &i.to_string()]);
    }
    eventually("automatic rewrite", || {
        let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
        info_field(&info, "aof_rewrites").parse::<u64>().unwrap() >= 1
            && info_field(&info, "aof_rewrite_in_progress") == "0"
    });
    assert_eq!(bulk(&mut r, &["GET", "same-key"]).as_deref(), Some("4999"));
}

/// With the log off, BGREWRITEAOF still writes the data as a base and a
/// manifest naming it alone, as Redis's does; DEBUG LOADAOF and a restart
/// with the log on read it back.
#[test]
fn bgrewriteaof_with_the_log_off_writes_a_base_alone() {
    let mut node = TestNode::start_with(&["--appendonly", "no"]);
    let mut r = node.raw();
    ok(&mut r, &["SET", "a", "1"]);
    ok(&mut r, &["SET", "b", "2", "EX", "1000"]);
    int(&mut r, &["RPUSH", "l", "x", "y"]);
    let before = digest(&mut r);
    assert_eq!(
        r.call(&["BGREWRITEAOF"]),
        Frame::Simple("Background append only file rewriting started".into())
    );
    wait_rewrite_done(&mut r, 1);
    assert_eq!(
        log_files(&node),
        [
            "appendonly.aof.1.incr.aof",
            "appendonly.aof.2.base.aof",
            "appendonly.aof.manifest"
        ]
    );
    ok(&mut r, &["SET", "later", "x"]);
    ok(&mut r, &["DEBUG", "LOADAOF"]);
    assert_eq!(digest(&mut r), before);
    // A second one replaces the first.
    ok(&mut r, &["SET", "later", "x"]);
    r.call(&["BGREWRITEAOF"]);
    wait_rewrite_done(&mut r, 2);
    assert_eq!(
        log_files(&node),
        [
            "appendonly.aof.3.incr.aof",
            "appendonly.aof.4.base.aof",
            "appendonly.aof.manifest"
        ]
    );
    let with_later = digest(&mut r);
    // Turning the log on counts as a rewrite in progress from the reply
    // on (Redis's test harness waits on it before its first BGREWRITEAOF).
    ok(&mut r, &["CONFIG", "SET", "appendonly", "yes"]);
    let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
    assert!(
        info_field(&info, "aof_rewrite_in_progress") == "1"
            || info_field(&info, "aof_rewrites") == "3",
        "{info}"
    );
    wait_rewrite_done(&mut r, 3);
    node.restart(&["--appendonly", "yes"]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), with_later);
}

#[test]
fn save_and_bgsave_make_a_backup_a_new_node_starts_from() {
    let node = TestNode::start();
    let mut r = node.raw();
    for i in 0..500 {
        ok(&mut r, &["SET", &format!("k{i}"), &i.to_string()]);
    }
    ok(&mut r, &["SET", "ttl", "v", "EX", "1000"]);
    let lastsave = int(&mut r, &["LASTSAVE"]);
    ok(&mut r, &["SAVE"]);
    assert!(int(&mut r, &["LASTSAVE"]) >= lastsave);
    let snapshot = node.data_dir().join("dump.shoal");
    assert!(snapshot.exists());
    ok(&mut r, &["SET", "later", "x"]);
    assert_eq!(
        r.call(&["BGSAVE"]),
        Frame::Simple("Background saving started".into())
    );
    eventually("bgsave done", || {
        info_field(
            &bulk(&mut r, &["INFO", "persistence"]).unwrap(),
            "rdb_bgsave_in_progress",
        ) == "0"
    });
    assert_eq!(
        info_field(
            &bulk(&mut r, &["INFO", "persistence"]).unwrap(),
            "rdb_last_bgsave_status"
        ),
        "ok"
    );
    let before = digest(&mut r);

    // Copy the snapshot off, and start fresh nodes from the copy: with a log
    // (the snapshot seeds it) and without one.
    for args in [vec![], vec!["--appendonly", "no"]] {
        let backup = tempfile::tempdir().unwrap();
        std::fs::copy(&snapshot, backup.path().join("dump.shoal")).unwrap();
        let mut all = vec!["--dir", backup.path().to_str().unwrap()];
        all.extend(args.iter().copied());
        let mut restored = TestNode::start_with(&all);
        let mut c = restored.raw();
        assert_eq!(digest(&mut c), before, "{args:?}");
        assert!(int(&mut c, &["TTL", "ttl"]) > 900);
        if args.is_empty() {
            // The snapshot became the log's base: writes go on from it and
            // survive a restart.
            ok(&mut c, &["SET", "after-restore", "1"]);
            let d = digest(&mut c);
            // The restart is a kill: everysec writes within 10 ms, which a
            // loaded machine can stretch, so wait for the write first.
            wait_synced(&mut c);
            restored.restart(&[]).unwrap();
            assert_eq!(digest(&mut restored.raw()), d);
        }
    }
}

#[test]
fn a_million_keys_come_back_exactly() {
    let mut node = TestNode::start();
    let mut con = node.conn();
    for batch in 0..100 {
        let mut pipe = redis::pipe();
        for i in batch * 10_000..(batch + 1) * 10_000 {
            let key = format!("key:{i}");
            match i % 8 {
                0 => pipe.cmd("SET").arg(&key).arg(i).ignore(),
                1 => pipe
                    .cmd("SET")
                    .arg(&key)
                    .arg(format!("value-{i}"))
                    .arg("EX")
                    .arg(100_000)
                    .ignore(),
                2 => pipe
                    .cmd("APPEND")
                    .arg(&key)
                    .arg("x".repeat(i % 100))
                    .ignore(),
                3 => pipe.cmd("INCRBYFLOAT").arg(&key).arg("1.5").ignore(),
                4 => pipe
                    .cmd("RPUSH")
                    .arg(&key)
                    .arg(i)
                    .arg("b")
                    .arg("c")
                    .ignore(),
                5 => pipe.cmd("SADD").arg(&key).arg(i).arg("member").ignore(),
                6 => pipe
                    .cmd("HSET")
                    .arg(&key)
                    .arg("f")
                    .arg(i)
                    .arg("g")
                    .arg("x".repeat(i % 80))
                    .ignore(),
                _ => pipe
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(i as f64 / 7.0)
                    .arg("a")
                    .arg("-inf")
                    .arg("b")
                    .ignore(),
            };
            if i % 1000 == 4 {
                pipe.cmd("PEXPIRE").arg(&key).arg(100_000_000).ignore();
            }
        }
        let _: () = pipe.query(&mut con).unwrap();
    }
    // A few collections past every compact-encoding limit, split over many
    // records by the rewrite.
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("ZADD")
            .arg("big:z")
            .arg(i % 97)
            .arg(format!("m{i}"))
            .ignore();
        pipe.cmd("HSET")
            .arg("big:h")
            .arg(format!("f{i}"))
            .arg(i)
            .ignore();
        pipe.cmd("SADD").arg("big:s").arg(format!("m{i}")).ignore();
        pipe.cmd("LPUSH").arg("big:l").arg(i).ignore();
        if i < 400 {
            // An intset, rewritten over several records.
            pipe.cmd("SADD")
                .arg("big:si")
                .arg(i as i64 * 100_003 - 15_000_000)
                .ignore();
        }
    }
    let _: () = pipe.query(&mut con).unwrap();
    let mut r = node.raw();
    assert_eq!(int(&mut r, &["DBSIZE"]), 1_000_005);
    assert_eq!(
        bulk(&mut r, &["OBJECT", "ENCODING", "big:si"]).as_deref(),
        Some("intset")
    );
    // Half of the history in a base, half in the incremental file.
    ok(&mut r, &["CONFIG", "SET", "appendfsync", "everysec"]);
    r.call(&["BGREWRITEAOF"]);
    wait_rewrite_done(&mut r, 1);
    // A digest of a million keys takes ~25 s in a debug build on a 2-core
    // machine, and loading them as long (past 30 s with other tests
    // running), close to the usual deadlines.
    let long = std::time::Duration::from_secs(300);
    r.stream.set_read_timeout(Some(long)).unwrap();
    let before = digest(&mut r);
    r.cmd(&["SHUTDOWN"]);
    assert!(node.wait_exit().success());
    node.restart_within(&[], long).unwrap();
    let mut r = node.raw();
    r.stream.set_read_timeout(Some(long)).unwrap();
    assert_eq!(digest(&mut r), before);
}

#[test]
fn save_rules_snapshot_by_themselves() {
    // redis.conf's shape: several `save` lines add up (the command line's
    // directives are read as lines after the file's).
    let node = TestNode::start_with(&["--save", "3600 1", "--save", "1 3"]);
    let mut r = node.raw();
    assert_eq!(
        r.call(&["CONFIG", "GET", "save"]),
        Frame::Array(vec![Frame::bulk("save"), Frame::bulk("3600 1 1 3")])
    );
    let persistence = |r: &mut Raw| bulk(r, &["INFO", "persistence"]).unwrap();
    ok(&mut r, &["SET", "a", "1"]);
    ok(&mut r, &["SET", "b", "2"]);
    assert_eq!(
        info_field(&persistence(&mut r), "rdb_changes_since_last_save"),
        "2"
    );
    let snapshot = node.data_dir().join("dump.shoal");
    assert!(!snapshot.exists(), "two changes are not three");
    ok(&mut r, &["SET", "c", "3"]);
    eventually("the rule saved", || {
        let p = persistence(&mut r);
        info_field(&p, "rdb_changes_since_last_save") == "0"
            && info_field(&p, "rdb_bgsave_in_progress") == "0"
    });
    assert!(snapshot.exists());
    assert_eq!(
        info_field(&persistence(&mut r), "rdb_last_bgsave_status"),
        "ok"
    );

    // CONFIG SET replaces the rules; "" removes them.
    ok(&mut r, &["CONFIG", "SET", "save", ""]);
    assert_eq!(
        err(&mut r, &["CONFIG", "SET", "save", "10"]),
        "ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters"
    );
}

#[test]
fn bgsave_schedule_waits_for_a_rewrite() {
    let node = TestNode::start();
    let mut r = node.raw();
    let mut con = node.conn();
    let mut pipe = redis::pipe();
    for i in 0..200_000 {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    assert_eq!(
        r.call(&["BGREWRITEAOF"]),
        Frame::Simple("Background append only file rewriting started".into())
    );
    // Usually still rewriting; either way the save happens.
    match r.call(&["BGSAVE", "SCHEDULE"]) {
        Frame::Simple(s) => assert!(
            s == "Background saving scheduled" || s == "Background saving started",
            "{s}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(err(&mut r, &["BGSAVE", "LATER"]), "ERR syntax error");
    let snapshot = node.data_dir().join("dump.shoal");
    eventually("the scheduled save ran", || {
        let p = bulk(&mut r, &["INFO", "persistence"]).unwrap();
        snapshot.exists()
            && info_field(&p, "rdb_bgsave_in_progress") == "0"
            && info_field(&p, "aof_rewrite_in_progress") == "0"
    });
    assert_eq!(
        info_field(
            &bulk(&mut r, &["INFO", "persistence"]).unwrap(),
            "rdb_changes_since_last_save"
        ),
        "0"
    );
}

/// stop-writes-on-bgsave-error, as in Redis: with save rules, a snapshot
/// that fails (its file's name taken by a directory) stops writes with
/// Redis's MISCONF while reads go on; turning the directive off, or a
/// snapshot that succeeds, lets writes through again.
#[test]
fn a_failed_snapshot_stops_writes_until_one_succeeds() {
    let node = TestNode::start_with(&["--save", "3600 1000"]);
    let mut r = node.raw();
    ok(&mut r, &["SET", "k", "v"]);
    let snapshot = node.data_dir().join("dump.shoal");
    std::fs::create_dir(&snapshot).unwrap();
    let status = |r: &mut Raw| {
        info_field(
            &bulk(r, &["INFO", "persistence"]).unwrap(),
            "rdb_last_bgsave_status",
        )
    };
    r.call(&["BGSAVE"]);
    eventually("the snapshot failed", || status(&mut r) == "err");
    let misconf = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.";
    assert!(err(&mut r, &["SET", "k", "w"]).starts_with(misconf));
    assert_eq!(bulk(&mut r, &["GET", "k"]).as_deref(), Some("v"));
    ok(
        &mut r,
        &["CONFIG", "SET", "stop-writes-on-bgsave-error", "no"],
    );
    ok(&mut r, &["SET", "k", "w"]);
    ok(
        &mut r,
        &["CONFIG", "SET", "stop-writes-on-bgsave-error", "yes"],
    );
    assert!(err(&mut r, &["DEL", "k"]).starts_with(misconf));
    std::fs::remove_dir(&snapshot).unwrap();
    r.call(&["BGSAVE"]);
    eventually("the snapshot succeeded", || status(&mut r) == "ok");
    ok(&mut r, &["SET", "k", "x"]);
}

/// Starts a node that must refuse to start; returns what it said.
fn refusal(args: &[&str]) -> String {
    use std::process::Stdio;
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A node that starts after all would serve for ever: it is given a
    // generous while to stop, then stopped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} started");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A node taking over from redis-server starts from its dump.rdb: every
/// type in each of Redis's encodings, LZF-compressed strings, expiries and
/// several databases come back with Redis's own digest, with or without
/// the log (the RDB then becomes the log's base until the next rewrite).
/// Streams come back with their groups.
#[test]
fn a_redis_dump_rdb_starts_a_node_with_its_data() {
    let reference = crate::support::ReferenceRedis::start();
    let mut r = reference.raw();
    let big = "a".repeat(3000);
    let mut script: Vec<Vec<String>> = vec![
        vec!["SET".into(), "s".into(), "hello".into()],
        vec!["SET".into(), "n".into(), "-12345".into()],
        vec!["SET".into(), "big".into(), big],
        vec![
            "SET".into(),
            "ttl".into(),
            "v".into(),
            "EX".into(),
            "1000".into(),
        ],
        vec![
            "RPUSH".into(),
            "l".into(),
            "a".into(),
            "1".into(),
            "b".into(),
        ],
        vec![
            "SADD".into(),
            "si".into(),
            "1".into(),
            "2".into(),
            "-3".into(),
        ],
        vec!["SADD".into(), "ss".into(), "x".into(), "y".into()],
        vec![
            "HSET".into(),
            "h".into(),
            "f".into(),
            "v".into(),
            "g".into(),
            "7".into(),
        ],
        vec![
            "ZADD".into(),
            "z".into(),
            "1".into(),
            "a".into(),
            "-2.5".into(),
            "b".into(),
            "inf".into(),
            "c".into(),
        ],
        vec!["SELECT".into(), "3".into()],
        vec!["SET".into(), "elsewhere".into(), "x".into()],
        vec!["SELECT".into(), "0".into()],
    ];
    for i in 0..300 {
        script.push(vec![
            "RPUSH".into(),
            "biglist".into(),
            format!("element:{i}"),
        ]);
        script.push(vec!["SADD".into(), "bigset".into(), format!("m{i}")]);
        script.push(vec![
            "SADD".into(),
            "bigints".into(),
            format!("{}", i * 1000),
        ]);
        script.push(vec![
            "HSET".into(),
            "bighash".into(),
            format!("f{i}"),
            format!("v{i}"),
        ]);
        script.push(vec![
            "ZADD".into(),
            "bigz".into(),
            format!("{i}.5"),
            format!("m{i}"),
        ]);
    }
    for c in &script {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        assert!(!matches!(r.call(&args), Frame::Error(_)), "{args:?}");
    }
    assert_eq!(r.call(&["SAVE"]), Frame::Simple("OK".into()));
    let digest = r.call(&["DEBUG", "DIGEST"]);
    let rdb = reference.dir().join("dump.rdb");
    for appendonly in ["no", "yes"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&rdb, dir.path().join("dump.rdb")).unwrap();
        let d = dir.path().to_str().unwrap();
        let node = TestNode::start_with(&[
            "--dir",
            d,
            "--dbfilename",
            "dump.rdb",
            "--appendonly",
            appendonly,
        ]);
        let mut s = node.raw();
        assert_eq!(
            s.call(&["DEBUG", "DIGEST"]),
            digest,
            "appendonly {appendonly}"
        );
        let ttl = int(&mut s, &["TTL", "ttl"]);
        assert!((990..=1000).contains(&ttl), "{ttl}");
        ok(&mut s, &["SELECT", "3"]);
        assert_eq!(bulk(&mut s, &["GET", "elsewhere"]).as_deref(), Some("x"));
        if appendonly == "yes" {
            // The log goes on from the RDB base across a crash (once the
            // write is on disk).
            ok(&mut s, &["SET", "after", "1"]);
            assert_eq!(
                s.call(&["WAITAOF", "1", "0", "0"]),
                Frame::Array(vec![Frame::Int(1), Frame::Int(0)])
            );
            let mut node = node;
            node.restart(&[]).unwrap();
            let mut s = node.raw();
            ok(&mut s, &["SELECT", "3"]);
            assert_eq!(bulk(&mut s, &["GET", "after"]).as_deref(), Some("1"));
            // check-aof checks the RDB base as RDB and never cuts it.
            let base = dir.path().join("appendonlydir/appendonly.aof.1.base.aof");
            let before = std::fs::read(&base).unwrap();
            let out = std::process::Command::new(BIN)
                .args(["check-aof", "--fix", d])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("OK, a Redis RDB file of"), "{text}");
            assert_eq!(std::fs::read(&base).unwrap(), before);
        }
    }

    // A stream with a consumer group: the same entries, IDs, counters and
    // pending entries.
    for i in 1..=150 {
        let id = format!("{i}-1");
        assert!(!matches!(
            r.call(&["XADD", "events", &id, "a", &i.to_string()]),
            Frame::Error(_)
        ));
    }
    assert!(!matches!(
        r.call(&["XDEL", "events", "3-1"]),
        Frame::Error(_)
    ));
    assert_eq!(
        r.call(&["XGROUP", "CREATE", "events", "g", "0"]),
        Frame::Simple("OK".into())
    );
    r.call(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "5",
        "STREAMS",
        "events",
        ">",
    ]);
    assert_eq!(r.call(&["SAVE"]), Frame::Simple("OK".into()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&rdb, dir.path().join("dump.rdb")).unwrap();
    let d = dir.path().to_str().unwrap();
    let node =
        TestNode::start_with(&["--dir", d, "--dbfilename", "dump.rdb", "--appendonly", "no"]);
    let mut s = node.raw();
    for cmd in [
        &["DEBUG", "DIGEST-VALUE", "events"][..],
        &["XINFO", "GROUPS", "events"],
        &["XPENDING", "events", "g"],
        &["XRANGE", "events", "-", "5"],
    ] {
        assert_eq!(s.call(cmd), r.call(cmd), "{cmd:?}");
    }
}

/// A node started where redis-server kept its append-only log imports it:
/// Redis 7's directory (an RDB base written when the log was turned on,
/// then plain commands with timestamp annotations, a transaction, other
/// databases, and a command torn by a crash at the end) comes back with
/// Redis's own digest, and is then this node's log (Redis's files gone,
/// the data there across a restart). Redis 6's single file (an RDB
/// preamble, then commands) is imported and left where it was. As in
/// Redis's loader, a command that fails as it is replayed is loaded past,
/// and an unknown one stops the load; so does a Redis file damaged in the
/// middle, named, nothing touched.
#[test]
fn redis_own_append_only_log_is_imported() {
    let reference = crate::support::ReferenceRedis::start();
    let mut r = reference.raw();
    let mut call = |args: &[&str]| {
        let reply = r.call(args);
        assert!(!matches!(reply, Frame::Error(_)), "{args:?}: {reply:?}");
        reply
    };
    call(&["SET", "s", "hello"]);
    call(&["SET", "n", "10"]);
    call(&["RPUSH", "l", "a", "b", "c"]);
    call(&["SADD", "ss", "x", "y", "z"]);
    call(&["HSET", "h", "f", "v", "g", "7"]);
    call(&["ZADD", "z", "1", "a", "-2.5", "b"]);
    for i in 0..200 {
        call(&["HSET", "bighash", &format!("f{i}"), &format!("v{i}")]);
        call(&["ZADD", "bigz", &format!("{i}.5"), &format!("m{i}")]);
    }
    // Turning the log on writes its RDB base; what follows are commands.
    call(&["CONFIG", "SET", "appendonly", "yes"]);
    let aof = reference.dir().join("appendonlydir");
    eventually("Redis's log rewritten", || {
        let info = match r.call(&["INFO", "persistence"]) {
            Frame::Bulk(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        };
        info_field(&info, "aof_rewrite_in_progress") == "0"
            && info_field(&info, "aof_rewrite_scheduled") == "0"
            && std::fs::read_dir(&aof).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".base.rdb"))
            })
    });
    let mut call = |args: &[&str]| {
        let reply = r.call(args);
        assert!(!matches!(reply, Frame::Error(_)), "{args:?}: {reply:?}");
        reply
    };
    call(&["CONFIG", "SET", "aof-timestamp-enabled", "yes"]);
    call(&["MULTI"]);
    call(&["INCR", "n"]);
    call(&["LPUSH", "l", "first"]);
    call(&["EXEC"]);
    call(&["SET", "ttl", "v", "EX", "1000"]);
    call(&["INCRBYFLOAT", "f", "1.5"]);
    call(&["SPOP", "ss"]);
    call(&["DEL", "s"]);
    call(&["ZINCRBY", "z", "2", "a"]);
    call(&["HDEL", "bighash", "f7"]);
    call(&["SELECT", "3"]);
    call(&["SET", "elsewhere", "x"]);
    call(&["SELECT", "0"]);
    let digest = r.call(&["DEBUG", "DIGEST"]);
    // With appendfsync everysec, redis-server may hold back its write while
    // a background fsync runs (a busy disk): copy once the last command is
    // in the file.
    eventually("redis-server's log holds the last command", || {
        std::fs::read_dir(&aof).is_ok_and(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().ends_with(".incr.aof")
                    && std::fs::read(e.path())
                        .is_ok_and(|b| b.windows(b"elsewhere".len()).any(|w| w == b"elsewhere"))
            })
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let copied = dir.path().join("appendonlydir");
    std::fs::create_dir(&copied).unwrap();
    let mut incr = None;
    for e in std::fs::read_dir(&aof).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".incr.aof") {
            incr = Some(copied.join(&name));
        }
        std::fs::copy(e.path(), copied.join(name)).unwrap();
    }
    // A command that fails when replayed, which Redis loads past (its
    // logs can hold such), then a crash while Redis appended a command.
    std::fs::OpenOptions::new()
        .append(true)
        .open(incr.unwrap())
        .unwrap()
        .write_all(
            b"*3\r\n$8\r\nRENAMENX\r\n$5\r\nnokey\r\n$1\r\nx\r\n*3\r\n$3\r\nSET\r\n$4\r\ntorn",
        )
        .unwrap();
    let mut node = TestNode::start_with(&["--dir", d]);
    let mut s = node.raw();
    assert_eq!(s.call(&["DEBUG", "DIGEST"]), digest);
    let ttl = int(&mut s, &["TTL", "ttl"]);
    assert!((990..=1000).contains(&ttl), "{ttl}");
    assert_eq!(
        bulk(&mut s, &["LINDEX", "l", "0"]).as_deref(),
        Some("first")
    );
    let names = |p: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // Redis's files are gone once the import is this node's log.
    eventually("Redis's files removed", || {
        !names(&copied).iter().any(|n| n.ends_with(".rdb"))
    });
    ok(&mut s, &["SET", "after", "1"]);
    assert_eq!(
        s.call(&["WAITAOF", "1", "0", "0"]),
        Frame::Array(vec![Frame::Int(1), Frame::Int(0)])
    );
    node.restart(&[]).unwrap();
    let mut s = node.raw();
    assert_eq!(bulk(&mut s, &["GET", "after"]).as_deref(), Some("1"));
    assert_eq!(int(&mut s, &["DEL", "after"]), 1);
    assert_eq!(s.call(&["DEBUG", "DIGEST"]), digest);
    drop(node);

    // Redis 6's single file: a SAVEd RDB as its preamble, then commands.
    let mut r = reference.raw();
    assert_eq!(r.call(&["SAVE"]), Frame::Simple("OK".into()));
    let mut single = std::fs::read(reference.dir().join("dump.rdb")).unwrap();
    single.extend_from_slice(
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$5\r\nlater\r\n$1\r\n9\r\n",
    );
    assert_eq!(r.call(&["SET", "later", "9"]), Frame::Simple("OK".into()));
    let digest = r.call(&["DEBUG", "DIGEST"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("appendonly.aof"), &single).unwrap();
    let node = TestNode::start_with(&["--dir", d]);
    let mut s = node.raw();
    assert_eq!(s.call(&["DEBUG", "DIGEST"]), digest);
    assert_eq!(
        std::fs::read(dir.path().join("appendonly.aof")).unwrap(),
        single
    );
    drop(node);

    // Damage in the middle of Redis's commands: refused, nothing touched.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let bad = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n+what\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n";
    std::fs::write(dir.path().join("appendonly.aof"), bad).unwrap();
    let text = refusal(&["--port", "0", "--dir", d]);
    assert!(
        text.contains("Bad file format reading the append only file"),
        "{text}"
    );
    assert!(text.contains("at offset 27"), "{text}");
    assert!(text.contains("redis-check-aof --fix"), "{text}");
    assert_eq!(
        std::fs::read(dir.path().join("appendonly.aof")).unwrap(),
        bad
    );
    assert!(!dir.path().join("appendonlydir").exists());
    // A command Shoal does not know (a module's, from a Redis that loaded
    // one) stops the import, as in Redis.
    std::fs::write(
        dir.path().join("appendonly.aof"),
        b"*3\r\n$8\r\njson.del\r\n$1\r\nk\r\n$1\r\n$\r\n",
    )
    .unwrap();
    let text = refusal(&["--port", "0", "--dir", d]);
    assert!(
        text.contains("Unknown command 'json.del' reading the append only file"),
        "{text}"
    );
    assert!(!dir.path().join("appendonlydir").exists());
}

/// A damaged snapshot stops start-up saying so, without pointing
/// check-aof (the log's tool) at it.
#[test]
fn a_damaged_snapshot_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dump.shoal"), b"not a snapshot at all").unwrap();
    let d = dir.path().to_str().unwrap();
    let text = refusal(&["--port", "0", "--appendonly", "no", "--dir", d]);
    assert!(
        text.contains("Bad file format reading the snapshot"),
        "{text}"
    );
    assert!(text.contains("The snapshot is damaged"), "{text}");
    assert!(!text.contains("check-aof"), "{text}");
}

/// `appendfilename` names the log's files, as in Redis: a node keeps its
/// log under that name across a crash, `check-aof` finds it by its
/// manifest, and Redis's own log kept under such a name is imported. A
/// path is refused with Redis's words.
#[test]
fn appendfilename_names_the_log_files() {
    let mut node = TestNode::start_with(&["--appendfilename", "my.aof"]);
    let mut s = node.raw();
    ok(&mut s, &["SET", "a", "1"]);
    assert_eq!(
        s.call(&["WAITAOF", "1", "0", "0"]),
        Frame::Array(vec![Frame::Int(1), Frame::Int(0)])
    );
    let aof = node.data_dir().join("appendonlydir");
    let mut names: Vec<String> = std::fs::read_dir(&aof)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["my.aof.1.incr.aof", "my.aof.manifest"]);
    node.restart(&[]).unwrap();
    let mut s = node.raw();
    assert_eq!(bulk(&mut s, &["GET", "a"]).as_deref(), Some("1"));
    s.call(&["BGREWRITEAOF"]);
    eventually("the rewrite's files in place", || {
        let listed = std::fs::read_to_string(aof.join("my.aof.manifest")).unwrap();
        listed.contains("my.aof.3.base.aof") && !aof.join("my.aof.1.incr.aof").exists()
    });
    let out = std::process::Command::new(BIN)
        .args(["check-aof", node.data_dir().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("my.aof.3.base.aof: OK"), "{text}");
    drop(node);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let sock = dir.path().join("r.sock");
    let mut redis = std::process::Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "yes"])
        .args(["--appendfilename", "their.aof", "--dir", d])
        .arg("--unixsocket")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("redis-server ready", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let mut r = Raw::unix(&sock);
    assert_eq!(r.call(&["SET", "b", "2"]), Frame::Simple("OK".into()));
    r.cmd(&["SHUTDOWN"]);
    let _ = redis.wait();
    assert!(dir.path().join("appendonlydir/their.aof.manifest").exists());
    let node = TestNode::start_with(&["--dir", d, "--appendfilename", "their.aof"]);
    assert_eq!(bulk(&mut node.raw(), &["GET", "b"]).as_deref(), Some("2"));
    drop(node);

    let text = refusal(&["--port", "0", "--appendfilename", "a/b"]);
    assert!(
        text.contains("appendfilename can't be a path, just a filename"),
        "{text}"
    );
}

/// CONFIG SET appendonly turns the log on and off on a running node, as
/// in Redis. On: it starts from a base snapshot of the data (the reply does
/// not wait for it), and a node killed afterwards comes back with every
/// write, those of a client writing all along included, across several
/// turns. Off: what is pending is written, then nothing more (BGREWRITEAOF
/// is refused), and a restart from the log finds the data as it was then.
#[test]
fn appendonly_turns_on_and_off_at_runtime() {
    let mut node = TestNode::start_with(&["--appendonly", "no", "--appendfsync", "always"]);
    let mut r = node.raw();
    for i in 0..2000 {
        r.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    for _ in 0..2000 {
        assert_eq!(r.read2(), Frame::Simple("OK".into()));
    }
    let port = node.port;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut w = Raw::connect(port);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                assert_eq!(w.call(&["INCR", "counter"]), Frame::Int(n));
            }
            n
        })
    };
    let enabled = |r: &mut Raw| {
        eventually("the log is on, its base written", || {
            let info = bulk(r, &["INFO", "persistence"]).unwrap();
            info_field(&info, "aof_enabled") == "1"
                && info_field(&info, "aof_rewrite_in_progress") == "0"
        });
    };
    for value in ["yes", "no", "yes", "no", "yes"] {
        ok(&mut r, &["CONFIG", "SET", "appendonly", value]);
    }
    enabled(&mut r);
    stop.store(true, Ordering::Relaxed);
    let increments = writer.join().unwrap();
    let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
    assert_eq!(info_field(&info, "aof_last_bgrewrite_status"), "ok");
    let before = digest(&mut r);
    // The restart is a kill: wait for the last writes to be in the file.
    wait_synced(&mut r);
    node.crash();
    node.restart(&["--appendonly", "yes"]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before);
    assert_eq!(
        bulk(&mut r, &["GET", "counter"]),
        Some(increments.to_string())
    );

    ok(&mut r, &["CONFIG", "SET", "appendonly", "no"]);
    let info = bulk(&mut r, &["INFO", "persistence"]).unwrap();
    assert_eq!(info_field(&info, "aof_enabled"), "0");
    ok(&mut r, &["SET", "after", "off"]);
    node.crash();
    node.restart(&["--appendonly", "yes"]).unwrap();
    let mut r = node.raw();
    assert_eq!(digest(&mut r), before);
    assert_eq!(bulk(&mut r, &["GET", "after"]), None);
}

/// DEBUG RELOAD (the snapshot saved and loaded back) and DEBUG LOADAOF
/// (the log loaded back) bring back the same data, libraries included, as
/// Redis's do, and record nothing (the log does not grow by a reload); a
/// transaction watching a key sees the reload as a change, as a flush.
#[test]
fn debug_reload_and_loadaof_bring_the_same_data_back() {
    let node = TestNode::start();
    let mut r = node.raw();
    ok(&mut r, &["SET", "s", "v"]);
    ok(&mut r, &["SET", "ttl", "v", "EX", "1000"]);
    int(&mut r, &["RPUSH", "l", "a", "b", "c"]);
    int(&mut r, &["HSET", "h", "f", "1", "g", "2"]);
    int(&mut r, &["SADD", "set", "1", "2", "x"]);
    int(&mut r, &["ZADD", "z", "1.5", "m", "2", "n"]);
    int(&mut r, &["PFADD", "hll", "a", "b"]);
    r.call(&["XADD", "st", "1-1", "f", "v"]);
    ok(&mut r, &["XGROUP", "CREATE", "st", "g", "0"]);
    r.call(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "st", ">"]);
    let lib = "#!lua name=lib\nredis.register_function('f', function() return 7 end)";
    r.call(&["FUNCTION", "LOAD", lib]);
    ok(&mut r, &["SELECT", "3"]);
    ok(&mut r, &["SET", "in3", "x"]);
    ok(&mut r, &["SELECT", "0"]);
    let before = digest(&mut r);
    let offset = |r: &mut Raw| {
        info_field(
            &bulk(r, &["INFO", "replication"]).unwrap(),
            "master_repl_offset",
        )
    };
    let stream_at = offset(&mut r);
    let mut watcher = node.raw();
    ok(&mut watcher, &["WATCH", "s"]);
    for reload in [
        &["DEBUG", "RELOAD"][..],
        &["DEBUG", "LOADAOF"],
        &["DEBUG", "RELOAD", "NOSAVE"],
    ] {
        ok(&mut r, reload);
        assert_eq!(digest(&mut r), before, "{reload:?}");
        assert_eq!(r.call(&["FCALL", "f", "0"]), Frame::Int(7), "{reload:?}");
        let ttl = int(&mut r, &["TTL", "ttl"]);
        assert!((990..=1000).contains(&ttl), "{ttl}");
    }
    assert_eq!(offset(&mut r), stream_at, "a reload records nothing");
    ok(&mut watcher, &["MULTI"]);
    watcher.call(&["PING"]);
    assert_eq!(watcher.call(&["EXEC"]), Frame::Null);
    // Over the data there (the libraries kept by FLUSHALL), the snapshot's
    // libraries replace those.
    ok(&mut r, &["FLUSHALL"]);
    ok(&mut r, &["DEBUG", "RELOAD", "NOSAVE", "NOFLUSH", "MERGE"]);
    assert_eq!(digest(&mut r), before);
    assert_eq!(r.call(&["FCALL", "f", "0"]), Frame::Int(7));
    assert_eq!(
        err(&mut r, &["DEBUG", "RELOAD", "SOMETIMES"]),
        "ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options."
    );
    // With the log off, what its files on disk hold, as Redis loads them
    // (the log has the FLUSHALL, not the reload that followed).
    ok(&mut r, &["SET", "logged", "x"]);
    ok(&mut r, &["CONFIG", "SET", "appendonly", "no"]);
    ok(&mut r, &["SET", "after", "off"]);
    ok(&mut r, &["DEBUG", "LOADAOF"]);
    assert_eq!(int(&mut r, &["DBSIZE"]), 1);
    assert_eq!(bulk(&mut r, &["GET", "logged"]).as_deref(), Some("x"));
}
