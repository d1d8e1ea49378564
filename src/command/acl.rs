//! ACL: Redis's access-control commands over `server::users`.
//!
//! SETUSER changes a user all or nothing (a bad rule leaves it as it was)
//! and its connections see the change from their next command; DELUSER
//! closes the connections of the users it deletes, and a SETUSER that
//! narrows a user's channels closes that user's subscribed connections
//! (Redis closes those whose subscriptions are no longer allowed; Shoal
//! does not look at which, so it may close more). Categories come from the
//! command table, the one place they are declared. ACL LOG tells failed
//! authentications and refused commands (see `server::acllog`). LOAD and
//! SAVE read and write `aclfile`; LOAD closes the connections of every user
//! but the default one, as Redis 7.0 does.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::args::text;
use super::keys::help;
use super::{flags::*, spec, Ctx, Spec, NO_KEYS, TABLE};
use crate::error::{CmdResult, CommandError};
use crate::persistence::digest::hex;
use crate::server::users::{merge_selectors, Denied, User};

const G: &str = "server";
const A: &[&str] = &["admin", "dangerous"];

/// Redis's categories, in the order ACL CAT lists them.
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec { subcommands: SUBCOMMANDS, ..spec("acl", -2, 0, NO_KEYS, &[], G, "A container for Access List Control commands.", super::keys::help_only) },
];

#[rustfmt::skip]
static SUBCOMMANDS: &[Spec] = &[
    spec("acl|cat", -2, NOSCRIPT | LOADING | STALE, NO_KEYS, &[], G, "Lists the ACL categories, or the commands inside a category.", cat),
    spec("acl|whoami", 2, NOSCRIPT | LOADING | STALE, NO_KEYS, &[], G, "Returns the authenticated username of the current connection.", whoami),
    spec("acl|users", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Lists all ACL users.", users),
    spec("acl|list", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Dumps the effective rules in ACL file format.", list),
    spec("acl|getuser", 3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Lists the ACL rules of a user.", getuser),
    spec("acl|dryrun", -4, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Simulates the execution of a command by a user, without executing the command.", dryrun),
    spec("acl|genpass", -2, NOSCRIPT | LOADING | STALE, NO_KEYS, &[], G, "Generates a pseudorandom, secure password that can be used to identify ACL users.", genpass),
    spec("acl|log", -2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Lists recent security events generated due to ACL rules.", log),
    spec("acl|setuser", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Creates and modifies an ACL user and its rules.", setuser),
    spec("acl|deluser", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Deletes ACL users, and terminates their connections.", deluser),
    spec("acl|load", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Reloads the rules from the configured ACL file.", load),
    spec("acl|save", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Saves the effective ACL rules in the configured ACL file.", save),
    spec("acl|help", 2, LOADING | STALE, NO_KEYS, &[], G, "Returns helpful text about the different subcommands.", acl_help),
];

fn cat(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let Some(name) = argv.get(2) else {
        ctx.out.array(CATEGORIES.len());
        CATEGORIES.iter().for_each(|c| ctx.out.bulk(c.as_bytes()));
        return Ok(());
    };
    if argv.len() > 3 {
        return Err(CommandError::subcommand_syntax(argv, "ACL"));
    }
    let name = text(name).to_ascii_lowercase();
    let Some(&category) = CATEGORIES.iter().find(|c| **c == name) else {
        return Err(CommandError::err(format!(
            "Unknown category '{}'",
            text(&argv[2])
        )));
    };
    // What can be run: commands without subcommands, subcommands, and
    // containers that run by themselves (COMMAND) if in the category.
    let names: Vec<&str> = crate::server::users::acl_rows()
        .filter(|(_, s)| s.acl_categories().contains(&category))
        .map(|(_, s)| s.name)
        .collect();
    ctx.out.array(names.len());
    names.iter().for_each(|n| ctx.out.bulk(n.as_bytes()));
    Ok(())
}

fn whoami(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let name = ctx.client.handle.user_name();
    ctx.out.bulk(name.as_bytes());
    Ok(())
}

fn users(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let all = ctx.server.users.all();
    ctx.out.array(all.len());
    all.iter().for_each(|u| ctx.out.bulk(u.name.as_bytes()));
    Ok(())
}

fn list(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let lines = ctx.server.users.describe();
    ctx.out.array(lines.len());
    lines.iter().for_each(|l| ctx.out.bulk(l.as_bytes()));
    Ok(())
}

fn getuser(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let Some(u) = ctx.server.users.get(&text(&argv[2])) else {
        ctx.out.null();
        return Ok(());
    };
    let out = &mut *ctx.out;
    out.map(6);
    out.bulk(b"flags");
    let flags = u.flags();
    out.set(flags.len());
    flags.iter().for_each(|f| out.bulk(f.as_bytes()));
    out.bulk(b"passwords");
    out.array(u.passwords.len());
    u.passwords.iter().for_each(|p| out.bulk(p.as_bytes()));
    for (field, value) in u.selectors[0].fields() {
        out.bulk(field.as_bytes());
        out.bulk(value.as_bytes());
    }
    out.bulk(b"selectors");
    out.array(u.selectors.len() - 1);
    for s in &u.selectors[1..] {
        out.map(3);
        for (field, value) in s.fields() {
            out.bulk(field.as_bytes());
            out.bulk(value.as_bytes());
        }
    }
    Ok(())
}

fn dryrun(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let Some(user) = ctx.server.users.get(&text(&argv[2])) else {
        return Err(CommandError::err(format!(
            "User '{}' not found",
            text(&argv[2])
        )));
    };
    let cmd = &argv[3..];
    let (idx, spec) = match TABLE.resolve(cmd) {
        Ok(found) => found,
        Err(CommandError::Arity(name)) => {
            return Err(CommandError::err(format!(
                "wrong number of arguments for '{name}' command"
            )))
        }
        Err(_) => {
            return Err(CommandError::err(format!(
                "Command '{}' not found",
                text(&cmd[0])
            )))
        }
    };
    match user.check(idx, spec, cmd) {
        Ok(()) => ctx.out.ok(),
        Err(d) => {
            let why = match d {
                Denied::Command => {
                    format!(
                        "This user has no permissions to run the '{}' command",
                        crate::server::users::acl_row(idx, spec).1.name
                    )
                }
                Denied::Key(p) => format!(
                    "This user has no permissions to access the '{}' key",
                    text(&cmd[p])
                ),
                Denied::Channel(p) => format!(
                    "This user has no permissions to access the '{}' channel",
                    text(&cmd[p])
                ),
            };
            ctx.out.bulk(why.as_bytes());
        }
    }
    Ok(())
}

/// A SETUSER rule as text: a password is hashed from its raw bytes first
/// (`>pw` becomes `#hash`), so a password need not be UTF-8.
fn rule_text(raw: &[u8]) -> String {
    match raw.first() {
        Some(b'>') => format!("#{}", hex(&Sha256::digest(&raw[1..]))),
        Some(b'<') => format!("!{}", hex(&Sha256::digest(&raw[1..]))),
        _ => String::from_utf8_lossy(raw).into_owned(),
    }
}

fn setuser(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let name = &argv[2];
    if name.contains(&b' ') || name.contains(&0) {
        return Err(CommandError::err(
            "Usernames can't contain spaces or null characters",
        ));
    }
    let raw: Vec<String> = argv[3..].iter().map(|a| text(a)).collect();
    let merged = merge_selectors(&raw).map_err(|i| {
        CommandError::err(format!(
            "Unmatched parenthesis in acl selector starting at '{}'.",
            raw[i]
        ))
    })?;
    // Selectors were joined from their words; other rules keep their
    // bytes (passwords), and an error shows a rule as the client wrote it.
    let (ops, shown) = if merged.len() == raw.len() {
        (argv[3..].iter().map(|a| rule_text(a)).collect(), raw)
    } else {
        (merged.clone(), merged)
    };
    let name = text(name);
    let (old, new) = ctx.server.users.set_user(&name, &ops).map_err(|(i, e)| {
        CommandError::err(format!("Error in ACL SETUSER modifier '{}': {e}", shown[i]))
    })?;
    if let Some(old) = old {
        close_lost_subscribers(ctx, &old, &new);
    }
    ctx.out.ok();
    Ok(())
}

/// Closes the subscribed connections of a user whose channels were
/// narrowed: a subscription made under the old rules must not go on
/// delivering what the new ones refuse.
fn close_lost_subscribers(ctx: &Ctx, old: &User, new: &User) {
    if !old.channels_narrowed_by(new) {
        return;
    }
    for c in ctx.server.clients.all() {
        let subscribed = c.subs.load(Relaxed) + c.psubs.load(Relaxed) + c.ssubs.load(Relaxed) > 0;
        if subscribed && c.user.lock().as_ref().is_some_and(|u| u.name == new.name) {
            c.kill();
        }
    }
}

fn deluser(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let names: Vec<String> = argv[2..].iter().map(|a| text(a)).collect();
    if names.iter().any(|n| n == "default") {
        return Err(CommandError::err("The 'default' user cannot be removed"));
    }
    let gone = ctx.server.users.delete(&names);
    close_connections_of(ctx, gone.iter().map(|u| u.name.as_str()));
    ctx.out.int(gone.len() as i64);
    Ok(())
}

/// Closes the connections running as any of `names` (the caller's own
/// after its reply).
fn close_connections_of<'a>(ctx: &mut Ctx, names: impl Iterator<Item = &'a str>) {
    let names: Vec<&str> = names.collect();
    for c in ctx.server.clients.all() {
        if c.user
            .lock()
            .as_ref()
            .is_some_and(|u| names.contains(&u.name.as_str()))
        {
            c.kill();
            if c.id == ctx.client.id {
                ctx.action = Some(super::Action::Close);
            }
        }
    }
}

fn aclfile(ctx: &Ctx) -> Result<String, CommandError> {
    let path = ctx.server.config.read().get("aclfile").to_string();
    if path.is_empty() {
        return Err(CommandError::err(
            "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.",
        ));
    }
    Ok(path)
}

fn load(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let path = aclfile(ctx)?;
    crate::server::users::load_file(ctx.server, &path).map_err(CommandError::err)?;
    // As in Redis 7.0, every user but the default one is new: the
    // connections of the others are closed (they log in again under the
    // file's rules).
    let gone: Vec<String> = ctx
        .server
        .clients
        .all()
        .iter()
        .filter_map(|c| c.user.lock().as_ref().map(|u| u.name.clone()))
        .filter(|n| n != "default")
        .collect();
    close_connections_of(ctx, gone.iter().map(String::as_str));
    ctx.out.ok();
    Ok(())
}

fn save(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let path = aclfile(ctx)?;
    if let Err(e) = crate::server::users::save_file(ctx.server, &path) {
        tracing::warn!("Saving the ACL file {path}: {e}");
        return Err(CommandError::err(
            "There was an error trying to save the ACLs. Please check the server logs for more information",
        ));
    }
    ctx.out.ok();
    Ok(())
}

fn genpass(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let bits = match argv.get(2) {
        None => 256,
        Some(b) => match super::args::int(b) {
            Ok(n) if (1..=4096).contains(&n) => n as usize,
            _ => {
                return Err(CommandError::err(
                    "ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
                ))
            }
        },
    };
    // One hex digit per 4 bits, rounded up, as Redis.
    let chars = bits.div_ceil(4);
    let mut bytes = vec![0u8; chars.div_ceil(2)];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut password = hex(&bytes);
    password.truncate(chars);
    ctx.out.bulk(password.as_bytes());
    Ok(())
}

fn log(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut count = 10;
    if let Some(w) = argv.get(2) {
        if argv.len() > 3 {
            return Err(CommandError::subcommand_syntax(argv, "ACL"));
        }
        if w.eq_ignore_ascii_case(b"reset") {
            ctx.server.acl_log.reset();
            ctx.out.ok();
            return Ok(());
        }
        // A negative count lists nothing, as in Redis.
        count = super::args::int(w)?.max(0) as usize;
    }
    let now = ctx.now_ms;
    let entries = ctx.server.acl_log.newest(count);
    ctx.out.array(entries.len());
    for e in entries {
        ctx.out.map(10);
        ctx.out.bulk(b"count");
        ctx.out.int(e.count as i64);
        for (k, v) in [
            ("reason", e.reason),
            ("context", e.context),
            ("object", &e.object),
            ("username", &e.username),
        ] {
            ctx.out.bulk(k.as_bytes());
            ctx.out.bulk(v.as_bytes());
        }
        ctx.out.bulk(b"age-seconds");
        ctx.out.double((now - e.created_ms).max(0) as f64 / 1000.0);
        ctx.out.bulk(b"client-info");
        ctx.out.bulk(e.client_info.as_bytes());
        ctx.out.bulk(b"entry-id");
        ctx.out.int(e.entry_id as i64);
        ctx.out.bulk(b"timestamp-created");
        ctx.out.int(e.created_ms);
        ctx.out.bulk(b"timestamp-last-updated");
        ctx.out.int(e.updated_ms);
    }
    Ok(())
}

/// Records a failed authentication (AUTH, HELLO AUTH) for ACL LOG: in
/// the context of a transaction when EXEC runs it, as Redis tells it.
pub fn auth_failed(ctx: &Ctx, username: &[u8]) {
    let context = if ctx.client.exec_effects.get().is_some() {
        "multi"
    } else {
        "toplevel"
    };
    let denial = crate::server::acllog::Denial {
        reason: "auth",
        context,
        object: "AUTH".to_string(),
        username: String::from_utf8_lossy(username).into_owned(),
    };
    log_denial(ctx.server, ctx.client, denial, ctx.now_ms);
}

/// Adds a denial by `client` to ACL LOG (`acllog-max-len` entries kept).
pub fn log_denial(
    server: &crate::server::Server,
    client: &crate::server::client::Client,
    denial: crate::server::acllog::Denial,
    now_ms: i64,
) {
    let max = server.tun.acllog_max_len.load(Relaxed).max(0) as usize;
    let info = client.handle.describe(now_ms, 0);
    server.acl_log.add(denial, info, now_ms, max);
}

fn acl_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    help(
        ctx,
        "ACL",
        &[
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the command.",
            "GETUSER <username>",
            "    Get the user's details.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "LIST",
            "    Show users details in config file format.",
            "LOAD",
            "    Reload users from the ACL file.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "SAVE",
            "    Save the current config to the ACL file.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
        ],
    );
    Ok(())
}
