//! Black-box tests: the real `shoal` binary, real sockets, real clients
//! (the `redis` crate, raw RESP bytes, `redis-cli`).

mod support;

mod acl;
mod blocking;
mod collections;
mod concurrency;
mod connection;
mod differential;
mod eviction;
mod expiry;
mod functions;
mod geo;
mod keys;
mod persistence;
mod protocol;
mod pubsub;
mod replication;
mod scripting;
mod server;
mod startup;
mod streams;
mod strings;
mod tracking;
mod transactions;

use support::{Frame, Raw};

/// Runs a command through the `redis` crate and converts its reply.
pub fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// The exact error text a command gets, read over raw RESP.
pub fn err(raw: &mut Raw, args: &[&str]) -> String {
    match raw.call(args) {
        Frame::Error(e) => e,
        other => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

pub fn ok(raw: &mut Raw, args: &[&str]) {
    assert_eq!(raw.call(args), Frame::Simple("OK".into()), "{args:?}");
}

pub fn int(raw: &mut Raw, args: &[&str]) -> i64 {
    match raw.call(args) {
        Frame::Int(i) => i,
        other => panic!("{args:?}: expected an integer, got {other:?}"),
    }
}

pub fn bulk(raw: &mut Raw, args: &[&str]) -> Option<String> {
    match raw.call(args) {
        Frame::Bulk(b) => Some(String::from_utf8(b).unwrap()),
        Frame::Null => None,
        other => panic!("{args:?}: expected a bulk string, got {other:?}"),
    }
}

/// The dataset's DEBUG DIGEST.
pub fn digest(r: &mut Raw) -> String {
    match r.call(&["DEBUG", "DIGEST"]) {
        Frame::Simple(d) => d,
        other => panic!("{other:?}"),
    }
}

/// Waits until everything written so far is synced to the log.
pub fn wait_synced(r: &mut Raw) {
    support::eventually("log synced", || {
        let info = bulk(r, &["INFO", "all"]).unwrap();
        info_field(&info, "aof_fsync_offset") == info_field(&info, "master_repl_offset")
    });
}

/// One field of an INFO reply.
pub fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("INFO has no {name}"))
        .trim()
        .to_string()
}

pub fn strings(raw: &mut Raw, args: &[&str]) -> Vec<String> {
    match raw.call(args) {
        Frame::Array(a) => a
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(b) => String::from_utf8(b).unwrap(),
                other => panic!("{args:?}: unexpected element {other:?}"),
            })
            .collect(),
        other => panic!("{args:?}: expected an array, got {other:?}"),
    }
}
