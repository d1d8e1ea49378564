//! Connection commands: PING, ECHO, QUIT, RESET, AUTH, HELLO, SELECT and CLIENT.
//!
//! These change only the calling connection's state (database, protocol,
//! name, reply mode, authentication), except CLIENT KILL and CLIENT PAUSE,
//! which act on other connections through the shared client registry.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;

use super::args::{int, text, Args};
use super::keys::{db_index, help};
use super::{flags::*, spec, Action, Ctx, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::protocol::Protocol;
use crate::server::client::ReplyMode;
use crate::server::tracking::{Mode, Options};

const G: &str = "connection";
const C: &[&str] = &["connection"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("ping", -1, FAST | SUBSCRIBED_OK, NO_KEYS, C, G, "Returns the server's liveliness response.", ping),
    spec("echo", 2, LOADING | STALE | FAST, NO_KEYS, C, G, "Returns the given string.", echo),
    spec("quit", -1, ALLOW_BUSY | NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | NO_QUEUE | SUBSCRIBED_OK, NO_KEYS, C, G, "Closes the connection.", quit),
    spec("reset", 1, NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY | NO_QUEUE | SUBSCRIBED_OK, NO_KEYS, C, G, "Resets the connection.", reset),
    spec("auth", -2, NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY, NO_KEYS, C, G, "Authenticates the connection.", auth),
    spec("hello", -1, NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY, NO_KEYS, C, G, "Handshakes with the Redis server.", hello),
    spec("select", 2, LOADING | STALE | FAST, NO_KEYS, C, G, "Changes the selected database.", select),
    Spec { subcommands: CLIENT_SUBCOMMANDS, ..spec("client", -2, 0, NO_KEYS, &[], G, "A container for client connection commands.", super::keys::help_only) },
];

const CA: &[&str] = &["connection", "admin", "dangerous"];

#[rustfmt::skip]
static CLIENT_SUBCOMMANDS: &[Spec] = &[
    spec("client|id", 2, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Returns the unique client ID of the connection.", client_id),
    spec("client|setname", 3, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Sets the connection name.", client_setname),
    spec("client|getname", 2, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Returns the name of the connection.", client_getname),
    spec("client|list", -2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, CA, G, "Lists open connections.", client_list),
    spec("client|info", 2, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Returns information about the connection.", client_info),
    spec("client|kill", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, CA, G, "Terminates open connections.", client_kill),
    spec("client|reply", 3, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Instructs the server whether to reply to commands.", client_reply),
    spec("client|setinfo", 4, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Sets information specific to the client or connection.", client_setinfo),
    spec("client|no-evict", 3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, CA, G, "Sets the client eviction mode of the connection.", client_no_evict),
    spec("client|no-touch", 3, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Controls whether commands sent by the client affect the LRU/LFU of accessed keys.", client_no_touch),
    spec("client|pause", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, CA, G, "Suspends commands processing.", client_pause),
    spec("client|unblock", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, CA, G, "Unblocks a client blocked by a blocking command from a different connection.", client_unblock),
    spec("client|unpause", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, CA, G, "Resumes processing commands from paused clients.", client_unpause),
    spec("client|help", 2, LOADING | STALE, NO_KEYS, C, G, "Returns helpful text about the different subcommands.", client_help),
    spec("client|tracking", -3, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Controls server-assisted client-side caching for the connection.", client_tracking),
    spec("client|caching", 3, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Instructs the server whether to track the keys in the next request.", client_caching),
    spec("client|getredir", 2, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Returns the client ID to which the connection's tracking notifications are redirected.", client_getredir),
    spec("client|trackinginfo", 2, NOSCRIPT | LOADING | STALE, NO_KEYS, C, G, "Returns information about server-assisted client-side caching for the connection.", client_trackinginfo),
];

fn ping(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if ctx.client.subscribed() && !ctx.out.resp3() {
        // Subscribed RESP2 clients expect every reply to be an array.
        ctx.out.array(2);
        ctx.out.bulk(b"pong");
        ctx.out.bulk(argv.get(1).map_or(&b""[..], |a| &a[..]));
        return Ok(());
    }
    match argv.len() {
        1 => ctx.out.simple("PONG"),
        2 => ctx.out.bulk(&argv[1]),
        _ => return Err(CommandError::Arity("ping".into())),
    }
    Ok(())
}

fn echo(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.out.bulk(&argv[1]);
    Ok(())
}

fn quit(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.ok();
    ctx.action = Some(Action::Close);
    Ok(())
}

fn reset(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    super::transactions::reset(ctx.server, ctx.client);
    super::pubsub::unsubscribe_all(ctx.server, ctx.client);
    tracking_off(ctx);
    ctx.client.db = 0;
    ctx.client.reply_mode = ReplyMode::On;
    ctx.out.proto = Protocol::Resp2;
    ctx.client.handle.resp.store(2, Relaxed);
    ctx.client.handle.monitor.store(false, Relaxed);
    ctx.client.handle.no_evict.store(false, Relaxed);
    ctx.client.handle.no_touch.store(false, Relaxed);
    // Back to the default user, authenticated only if it needs no
    // password, as a new connection.
    let default_user = ctx.server.users.default_user();
    ctx.client.authenticated = default_user.nopass && default_user.enabled;
    ctx.client.set_user(&ctx.server.users, default_user);
    ctx.out.simple("RESET");
    Ok(())
}

/// Authenticates the connection as `user` if `pass` opens it (an
/// enabled user with that password, or `nopass`); a failure is told to ACL
/// LOG, and the connection keeps the user it had.
fn authenticate(ctx: &mut Ctx, user: &[u8], pass: &[u8]) -> Result<(), CommandError> {
    let found = std::str::from_utf8(user)
        .ok()
        .and_then(|name| ctx.server.users.get(name))
        .filter(|u| u.accepts(pass));
    let Some(u) = found else {
        super::acl::auth_failed(ctx, user);
        return Err(CommandError::WrongPass);
    };
    ctx.client.set_user(&ctx.server.users, u);
    ctx.client.authenticated = true;
    Ok(())
}

fn auth(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (user, pass): (&[u8], &[u8]) = match argv.len() {
        2 => {
            if ctx.server.users.default_user().nopass {
                return Err(CommandError::err(
                    "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            (b"default", &argv[1])
        }
        3 => (&argv[1], &argv[2]),
        _ => return Err(CommandError::Syntax),
    };
    authenticate(ctx, user, pass)?;
    ctx.out.ok();
    Ok(())
}

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn hello(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut proto = None;
    let mut a = Args::new(argv, 0);
    if let Some(v) = a.next() {
        let v = int(v)
            .map_err(|_| CommandError::err("Protocol version is not an integer or out of range"))?;
        if v != 2 && v != 3 {
            return Err(CommandError::NoProto);
        }
        proto = Some(v);
    }
    let mut creds = None;
    let mut name = None;
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"auth") && a.remaining() >= 2 {
            creds = Some((a.value()?.clone(), a.value()?.clone()));
        } else if w.eq_ignore_ascii_case(b"setname") && a.remaining() >= 1 {
            name = Some(a.value()?.clone());
        } else {
            return Err(CommandError::err(format!(
                "Syntax error in HELLO option '{}'",
                text(w)
            )));
        }
    }
    if let Some((u, p)) = &creds {
        authenticate(ctx, u, p)?;
    }
    if !ctx.client.authenticated {
        return Err(CommandError::err_code(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(n) = name {
        if !valid_name(&n) {
            return Err(CommandError::err(
                "Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        *ctx.client.handle.name.lock() = text(&n);
    }
    if let Some(p) = proto {
        ctx.out.proto = if p == 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        ctx.client.handle.resp.store(p as u32, Relaxed);
    }
    // As Redis: a replica says so (a sidecar too, as its ROLE and INFO do).
    let role: &[u8] = if ctx.server.replication.is_replica() {
        b"replica"
    } else {
        b"master"
    };
    let out = &mut *ctx.out;
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(b"7.2.0");
    out.bulk(b"proto");
    out.int(if out.resp3() { 3 } else { 2 });
    out.bulk(b"id");
    out.int(ctx.client.id as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(role);
    out.bulk(b"modules");
    out.array(0);
    Ok(())
}

fn select(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.client.db = db_index(ctx, &argv[1])?;
    ctx.client.handle.db.store(ctx.client.db, Relaxed);
    ctx.out.ok();
    Ok(())
}

fn client_id(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.int(ctx.client.id as i64);
    Ok(())
}

fn client_setname(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if !valid_name(&argv[2]) {
        return Err(CommandError::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    *ctx.client.handle.name.lock() = text(&argv[2]);
    ctx.out.ok();
    Ok(())
}

fn client_getname(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let name = ctx.client.handle.name();
    if name.is_empty() {
        ctx.out.null();
    } else {
        ctx.out.bulk(name.as_bytes());
    }
    Ok(())
}

/// CLIENT LIST/KILL's TYPE names, `slave` being `replica`'s old name.
/// Pub/sub clients are listed as normal ones.
fn type_word(t: &[u8]) -> &'static str {
    match t {
        b"master" => "master",
        b"replica" | b"slave" => "replica",
        b"pubsub" => "pubsub",
        _ => "normal",
    }
}

fn client_list(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut a = Args::new(argv, 1);
    let mut ids: Option<Vec<u64>> = None;
    let mut want_type: Option<&'static str> = None;
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"type") {
            let t = a.value()?.to_ascii_lowercase();
            if !matches!(
                t.as_slice(),
                b"normal" | b"master" | b"replica" | b"slave" | b"pubsub"
            ) {
                return Err(CommandError::err(format!(
                    "Unknown client type '{}'",
                    text(&t)
                )));
            }
            want_type = Some(type_word(&t));
        } else if w.eq_ignore_ascii_case(b"id") && a.remaining() > 0 {
            let mut v = Vec::new();
            for x in a.by_ref() {
                match int(x) {
                    Ok(n) if n > 0 => v.push(n as u64),
                    _ => return Err(CommandError::err("Invalid client ID")),
                }
            }
            ids = Some(v);
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let mut s = String::new();
    for c in ctx.server.clients.all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id))
            || want_type.is_some_and(|t| t != c.type_name())
        {
            continue;
        }
        let own = if c.id == ctx.client.id {
            argv_mem(argv)
        } else {
            0
        };
        s.push_str(&c.describe(ctx.now_ms, own));
        s.push('\n');
    }
    ctx.out.verbatim(&s);
    Ok(())
}

/// What a command's arguments take (CLIENT LIST's `argv-mem`).
pub fn argv_mem(argv: &[Bytes]) -> usize {
    argv.iter().map(|a| a.len()).sum()
}

fn client_info(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut s = ctx.client.handle.describe(ctx.now_ms, argv_mem(argv));
    s.push('\n');
    ctx.out.verbatim(&s);
    Ok(())
}

fn client_unblock(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let id = super::args::int(&argv[2])?;
    let how = match argv.get(3) {
        None => crate::server::blocking::UNBLOCK_TIMEOUT,
        Some(w) if w.eq_ignore_ascii_case(b"timeout") => crate::server::blocking::UNBLOCK_TIMEOUT,
        Some(w) if w.eq_ignore_ascii_case(b"error") => crate::server::blocking::UNBLOCK_ERROR,
        Some(_) if argv.len() == 4 => {
            return Err(CommandError::err(
                "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ))
        }
        Some(_) => return Err(CommandError::Syntax),
    };
    if argv.len() > 4 {
        return Err(CommandError::Syntax);
    }
    let done = u64::try_from(id).is_ok_and(|id| ctx.server.blocked.unblock(id, how));
    ctx.out.int(done as i64);
    Ok(())
}

fn client_kill(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let me = ctx.client.id;
    let all = ctx.server.clients.all();
    if argv.len() == 3 {
        // Old form: CLIENT KILL addr:port.
        let addr = text(&argv[2]);
        let Some(c) = all.iter().find(|c| c.addr.to_string() == addr) else {
            return Err(CommandError::err("No such client"));
        };
        c.kill();
        if c.id == me {
            ctx.action = Some(Action::Close);
        }
        ctx.out.ok();
        return Ok(());
    }
    let mut a = Args::new(argv, 1);
    let (mut id, mut addr, mut laddr, mut skipme, mut maxage) = (None, None, None, true, None);
    let mut want_type: Option<&'static str> = None;
    let mut user: Option<String> = None;
    while let Some(w) = a.next() {
        let v = a.value()?;
        match w.to_ascii_lowercase().as_slice() {
            b"id" => match int(v) {
                Ok(n) if n > 0 => id = Some(n as u64),
                _ => return Err(CommandError::err("client-id should be greater than 0")),
            },
            b"addr" => addr = Some(text(v)),
            b"laddr" => laddr = Some(text(v)),
            b"skipme" => {
                skipme = match v.to_ascii_lowercase().as_slice() {
                    b"yes" => true,
                    b"no" => false,
                    _ => return Err(CommandError::Syntax),
                }
            }
            b"maxage" => maxage = Some(int(v)?),
            b"user" => {
                if ctx.server.users.get(&text(v)).is_none() {
                    return Err(CommandError::err(format!("No such user '{}'", text(v))));
                }
                user = Some(text(v));
            }
            b"type" => {
                let t = v.to_ascii_lowercase();
                if !matches!(
                    t.as_slice(),
                    b"normal" | b"master" | b"replica" | b"slave" | b"pubsub"
                ) {
                    return Err(CommandError::err(format!(
                        "Unknown client type '{}'",
                        text(v)
                    )));
                }
                want_type = Some(type_word(&t));
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    let mut killed = 0;
    for c in &all {
        if want_type.is_some_and(|t| t != c.type_name())
            || id.is_some_and(|i| i != c.id)
            || addr.as_ref().is_some_and(|a| *a != c.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != c.laddr.to_string())
            || maxage.is_some_and(|m| (c.created.elapsed().as_secs() as i64) < m)
            || user
                .as_ref()
                .is_some_and(|u| c.user.lock().as_ref().is_none_or(|x| x.name != *u))
            || (skipme && c.id == me)
        {
            continue;
        }
        c.kill();
        if c.id == me {
            ctx.action = Some(Action::Close);
        }
        killed += 1;
    }
    ctx.out.int(killed);
    Ok(())
}

fn client_reply(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    match argv[2].to_ascii_lowercase().as_slice() {
        b"on" => {
            ctx.client.reply_mode = ReplyMode::On;
            ctx.out.ok();
        }
        b"off" => ctx.client.reply_mode = ReplyMode::Off,
        b"skip" => {
            if ctx.client.reply_mode == ReplyMode::On {
                ctx.client.reply_mode = ReplyMode::Skip;
            }
        }
        _ => return Err(CommandError::Syntax),
    }
    Ok(())
}

fn client_setinfo(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let v = &argv[3];
    if !valid_name(v) {
        return Err(CommandError::err(format!(
            "{} cannot contain spaces, newlines or special characters.",
            text(&argv[2]).to_ascii_lowercase()
        )));
    }
    let slot = match argv[2].to_ascii_lowercase().as_slice() {
        b"lib-name" => &ctx.client.handle.lib_name,
        b"lib-ver" => &ctx.client.handle.lib_ver,
        _ => {
            return Err(CommandError::err(format!(
                "Unrecognized option '{}'",
                text(&argv[2])
            )))
        }
    };
    *slot.lock() = text(v);
    ctx.out.ok();
    Ok(())
}

fn client_no_evict(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    client_switch(ctx, argv, |h| &h.no_evict)
}

fn client_no_touch(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    client_switch(ctx, argv, |h| &h.no_touch)
}

/// CLIENT NO-EVICT / NO-TOUCH: `ON` or `OFF` sets one of the connection's
/// modes.
fn client_switch(
    ctx: &mut Ctx,
    argv: &[Bytes],
    mode: impl Fn(&crate::server::client::ClientHandle) -> &std::sync::atomic::AtomicBool,
) -> CmdResult {
    let on = match argv[2].to_ascii_lowercase().as_slice() {
        b"on" => true,
        b"off" => false,
        _ => return Err(CommandError::Syntax),
    };
    mode(&ctx.client.handle).store(on, Relaxed);
    ctx.out.ok();
    Ok(())
}

fn client_pause(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let ms = match int(&argv[2]) {
        Ok(n) if n >= 0 => n,
        _ => {
            return Err(CommandError::err(
                "timeout is not an integer or out of range",
            ))
        }
    };
    let all = match argv.get(3) {
        None => true,
        Some(m) if argv.len() == 4 && m.eq_ignore_ascii_case(b"all") => true,
        Some(m) if argv.len() == 4 && m.eq_ignore_ascii_case(b"write") => false,
        _ => return Err(CommandError::Syntax),
    };
    let until = ctx.now_ms.saturating_add(ms);
    let p = &ctx.server.pause;
    // A second pause extends, never shortens, and ALL wins over WRITE.
    p.until_ms.fetch_max(until, Relaxed);
    if all {
        p.all.store(true, Relaxed);
    } else if p.until_ms.load(Relaxed) == until {
        p.all.store(false, Relaxed);
    }
    ctx.out.ok();
    Ok(())
}

fn client_unpause(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.server.pause.until_ms.store(0, Relaxed);
    ctx.server.pause.all.store(false, Relaxed);
    ctx.server.pause.resumed.notify_waiters();
    ctx.out.ok();
    Ok(())
}

/// CLIENT TRACKING (ON|OFF) [REDIRECT id] [BCAST] [PREFIX p]... [OPTIN]
/// [OPTOUT] [NOLOOP]: the options are read whole first (so OFF with bad
/// options is a syntax error too), then ON checks them against each other
/// and the current mode (`Tracking::enable`).
fn client_tracking(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut o = Options::default();
    let mut j = 3;
    while j < argv.len() {
        let more = j + 1 < argv.len();
        let opt = argv[j].to_ascii_lowercase();
        match opt.as_slice() {
            b"redirect" if more => {
                j += 1;
                if o.redirect != 0 {
                    return Err(CommandError::err(
                        "A client can only redirect to a single other client",
                    ));
                }
                let id = int(&argv[j])?;
                // Checked now, though the target may still leave later.
                if id <= 0 || ctx.server.clients.get(id as u64).is_none() {
                    return Err(CommandError::err(
                        "The client ID you want redirect to does not exist",
                    ));
                }
                o.redirect = id as u64;
            }
            b"bcast" => o.bcast = true,
            b"optin" => o.optin = true,
            b"optout" => o.optout = true,
            b"noloop" => o.noloop = true,
            b"prefix" if more => {
                j += 1;
                o.prefixes.push(argv[j].clone());
            }
            _ => return Err(CommandError::Syntax),
        }
        j += 1;
    }
    match argv[2].to_ascii_lowercase().as_slice() {
        b"on" => {
            ctx.server.tracking.enable(&ctx.client.handle, &o)?;
            ctx.client.tracking = Some(Mode {
                bcast: o.bcast,
                optin: o.optin,
                optout: o.optout,
            });
        }
        b"off" => tracking_off(ctx),
        _ => return Err(CommandError::Syntax),
    }
    ctx.out.ok();
    Ok(())
}

fn tracking_off(ctx: &mut Ctx) {
    ctx.server.tracking.disable(ctx.client.id);
    ctx.client.tracking = None;
    ctx.client.caching = false;
}

fn client_caching(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let Some(mode) = ctx.client.tracking else {
        return Err(CommandError::err(
            "CLIENT CACHING can be called only when the client is in tracking mode with OPTIN \
             or OPTOUT mode enabled",
        ));
    };
    match argv[2].to_ascii_lowercase().as_slice() {
        b"yes" if mode.optin => {}
        b"yes" => {
            return Err(CommandError::err(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ))
        }
        b"no" if mode.optout => {}
        b"no" => {
            return Err(CommandError::err(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ))
        }
        _ => return Err(CommandError::Syntax),
    }
    ctx.client.caching = true;
    ctx.out.ok();
    Ok(())
}

fn client_getredir(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let redirect = ctx.server.tracking.redirect(ctx.client.id);
    ctx.out.int(redirect);
    Ok(())
}

fn client_trackinginfo(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let (flags, redirect, prefixes) = ctx.server.tracking.info(ctx.client.id, ctx.client.caching);
    let out = &mut *ctx.out;
    out.map(3);
    out.bulk(b"flags");
    out.set(flags.len());
    for f in flags {
        out.bulk(f.as_bytes());
    }
    out.bulk(b"redirect");
    out.int(redirect);
    out.bulk(b"prefixes");
    out.strings(prefixes.iter().map(|p| &p[..]));
    Ok(())
}

fn client_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "CLIENT",
        &[
            "CACHING (YES|NO)",
            "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
            "GETREDIR",
            "    Return the client ID we are redirecting to when tracking is enabled.",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are: ID, ADDR, LADDR, SKIPME, MAXAGE, USER, TYPE.",
            "LIST [options ...]",
            "    Return information about client connections. Options: TYPE, ID.",
            "NO-EVICT (ON|OFF)",
            "    Protect the current client connection from eviction.",
            "NO-TOUCH (ON|OFF)",
            "    Will not touch LRU/LFU stats when this mode is on.",
            "PAUSE <timeout> [WRITE|ALL]",
            "    Suspend all, or just write, clients for <timeout> milliseconds.",
            "REPLY (ON|OFF|SKIP)",
            "    Control the replies sent to the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
            "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
            "         [OPTIN] [OPTOUT] [NOLOOP]",
            "    Control server assisted client side caching.",
            "TRACKINGINFO",
            "    Report tracking status for the current connection.",
            "UNPAUSE",
            "    Stop the current client pause, resuming traffic.",
        ],
    );
    Ok(())
}

/// How long DEBUG SLEEP `secs` sleeps: an infinite or huge number as long
/// as a Duration can.
pub fn sleep_duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}
