//! MIGRATE: keys moved (or copied) to another Redis or Shoal node, as
//! Redis's migrateCommand moves them.
//!
//! ```text
//!  MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw] [KEYS k...]
//!   keys locked ─▶ DUMP of each live key and its remaining TTL
//!   ─▶ one connection: [AUTH], SELECT db, RESTORE key ttl payload [REPLACE]...
//!   ─▶ one reply line each; the keys the target took are deleted here (no
//!      COPY), recorded as one DEL; the first error the target gave is the reply
//! ```
//!
//! Like Redis's, the command waits for the target (up to `timeout` ms for
//! each step) and nothing else touches the keys meanwhile: they stay
//! locked, and the connection's I/O thread waits with them, as Redis's one
//! thread does. Unlike Redis, the connection is not kept for the next
//! MIGRATE (so SELECT is always sent).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;

use super::args::int;
use super::{flags::*, key_flags::*, keys, spec, Ctx, KeySearch, Spec};
use crate::error::{CmdResult, CommandError};
use crate::persistence::rdb;

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec { key_search: &[KeySearch::Keyword { word: "KEYS", from: -2, lastkey: -1, step: 1, limit: 0, flags: RW | ACCESS | DELETE | INCOMPLETE }], keys_for: Some(migrate_keys), ..spec("migrate", -6, WRITE, keys(3, 3, 1).flags(RW | ACCESS | DELETE).then(RW | ACCESS | DELETE | INCOMPLETE), &["keyspace", "dangerous"], "generic", "Atomically transfers a key from one Redis instance to another.", migrate) },
];

/// The keys, as Redis's migrateGetKeys finds them: the key argument, or
/// with KEYS (after any COPY, REPLACE, AUTH pw, AUTH2 user pw) every
/// argument after it.
fn migrate_keys(argv: &[&[u8]]) -> Vec<usize> {
    let mut i = 6;
    while i < argv.len() {
        let w = argv[i];
        if w.eq_ignore_ascii_case(b"keys") {
            if !argv[3].is_empty() {
                return Vec::new();
            }
            return (i + 1..argv.len()).collect();
        }
        if w.eq_ignore_ascii_case(b"auth") {
            i += 1;
        } else if w.eq_ignore_ascii_case(b"auth2") {
            i += 2;
        }
        i += 1;
    }
    vec![3]
}

struct Options<'a> {
    copy: bool,
    replace: bool,
    /// (username, password).
    auth: Option<(Option<&'a [u8]>, &'a [u8])>,
    keys: &'a [Bytes],
}

fn parse(argv: &[Bytes]) -> Result<Options<'_>, CommandError> {
    let mut o = Options {
        copy: false,
        replace: false,
        auth: None,
        keys: &argv[3..4],
    };
    let mut j = 6;
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        let w = &argv[j];
        if w.eq_ignore_ascii_case(b"copy") {
            o.copy = true;
        } else if w.eq_ignore_ascii_case(b"replace") {
            o.replace = true;
        } else if w.eq_ignore_ascii_case(b"auth") && more >= 1 {
            o.auth = Some((None, &argv[j + 1]));
            j += 1;
        } else if w.eq_ignore_ascii_case(b"auth2") && more >= 2 {
            o.auth = Some((Some(&argv[j + 1]), &argv[j + 2]));
            j += 2;
        } else if w.eq_ignore_ascii_case(b"keys") {
            if !argv[3].is_empty() {
                return Err(CommandError::err(
                    "When using MIGRATE KEYS option, the key argument must be set to the empty string",
                ));
            }
            o.keys = &argv[j + 1..];
            break;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

/// RESP for one command.
fn request(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn migrate(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let o = parse(argv)?;
    let timeout = int(&argv[5])?;
    let db = int(&argv[4])?;
    let timeout = Duration::from_millis(if timeout <= 0 { 1000 } else { timeout as u64 });
    let mut locked = ctx.lock_keys(o.keys.iter());
    let now = ctx.now_ms;
    let dbi = ctx.db();
    // Each live key: its name, its payload and its remaining TTL (0: none).
    let mut found: Vec<(&Bytes, Vec<u8>, i64)> = Vec::new();
    for key in o.keys {
        let t = locked.table_for(dbi, key);
        if let Some(n) = ctx.lookup_read(t, key) {
            let ttl = match n.expire_at {
                0 => 0,
                at => (at - now).max(1),
            };
            found.push((key, rdb::dump(&n.value), ttl));
        }
    }
    if found.is_empty() {
        ctx.out.simple("NOKEY");
        return Ok(());
    }
    let mut req = Vec::new();
    if let Some((user, password)) = o.auth {
        match user {
            Some(u) => request(&mut req, &[b"AUTH", u, password]),
            None => request(&mut req, &[b"AUTH", password]),
        }
    }
    let db_text = db.to_string();
    request(&mut req, &[b"SELECT", db_text.as_bytes()]);
    for (key, payload, ttl) in &found {
        let ttl = ttl.to_string();
        let mut args: Vec<&[u8]> = vec![b"RESTORE", key, ttl.as_bytes(), payload];
        if o.replace {
            args.push(b"REPLACE");
        }
        request(&mut req, &args);
    }
    let host = String::from_utf8_lossy(&argv[1]).into_owned();
    let port = String::from_utf8_lossy(&argv[2]).into_owned();
    let connect_failed =
        || CommandError::err_code("IOERR error or timeout connecting to the client");
    let addr = (
        host.as_str(),
        port.parse::<u16>().map_err(|_| connect_failed())?,
    )
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(connect_failed)?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|_| connect_failed())?;
    let _ = stream.set_nodelay(true);
    let io = |what: &str| {
        CommandError::err_code(format!("IOERR error or timeout {what} to target instance"))
    };
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|_| stream.set_read_timeout(Some(timeout)))
        .and_then(|_| stream.write_all(&req))
        .map_err(|_| io("writing"))?;
    let mut replies = BufReader::new(stream);
    let mut line = Vec::new();
    let mut read_line = |line: &mut Vec<u8>| -> Result<(), CommandError> {
        line.clear();
        match replies.read_until(b'\n', line) {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(io("reading")),
        }
    };
    // AUTH's and SELECT's replies first: an error there fails every key.
    // Then one reply per RESTORE: a key the target took moves even if
    // another failed; the first error is the answer, as in Redis.
    let mut target_error: Option<String> = None;
    let mut error_of = |line: &[u8]| {
        if line.first() == Some(&b'-') {
            target_error
                .get_or_insert_with(|| String::from_utf8_lossy(&line[1..]).trim_end().to_string());
            true
        } else {
            false
        }
    };
    let mut preamble_failed = false;
    for _ in 0..usize::from(o.auth.is_some()) + 1 {
        read_line(&mut line)?;
        preamble_failed |= error_of(&line);
    }
    let mut moved = Vec::new();
    for (key, _, _) in &found {
        read_line(&mut line)?;
        let failed = error_of(&line);
        if !preamble_failed && !failed && !o.copy {
            moved.push(*key);
        }
    }
    // The keys the target took go from here, recorded as one DEL of them
    // all (one effect: replicas and the log never hold half of a move),
    // as Redis rewrites MIGRATE for its replicas.
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    for key in moved {
        let t = locked.table_for(dbi, key);
        if t.remove(key).is_some() {
            del.push(key);
        }
    }
    if del.len() > 1 {
        ctx.emit(&del);
    }
    match target_error {
        Some(e) => Err(CommandError::err(format!(
            "Target instance replied with error: {e}"
        ))),
        None => {
            ctx.out.ok();
            Ok(())
        }
    }
}
