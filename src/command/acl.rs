//! ACL: Redis's access-control commands, for the one user Shoal has.
//!
//! Shoal has Redis's `default` user and no other: it may run every command
//! on every key and channel (`~* &* +@all`), and must authenticate when
//! `requirepass` is set. ACL answers about that user from the state AUTH
//! checks (the password is shown as its SHA-256, as Redis shows it) and
//! about categories from the command table, the one place they are
//! declared. Creating, changing or deleting users (SETUSER, DELUSER, LOAD,
//! SAVE) is refused with an error that says so; a client never gets an OK
//! for a user that does not exist. ACL LOG tells the failed
//! authentications (see `server::acllog`).

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::args::text;
use super::keys::help;
use super::{flags::*, spec, Ctx, Spec, NO_KEYS, TABLE};
use crate::error::{CmdResult, CommandError};
use crate::persistence::digest::hex;

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
    spec("acl|setuser", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Creates and modifies an ACL user and its rules.", single_user),
    spec("acl|deluser", -3, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Deletes ACL users, and terminates their connections.", single_user),
    spec("acl|load", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Reloads the rules from the configured ACL file.", single_user),
    spec("acl|save", 2, ADMIN | NOSCRIPT | LOADING | STALE, NO_KEYS, A, G, "Saves the effective ACL rules in the configured ACL file.", single_user),
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
    let names: Vec<&str> = TABLE
        .all
        .iter()
        .filter(|s| s.acl_categories().contains(&category))
        .map(|s| s.name)
        .collect();
    ctx.out.array(names.len());
    names.iter().for_each(|n| ctx.out.bulk(n.as_bytes()));
    Ok(())
}

fn whoami(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.bulk(b"default");
    Ok(())
}

fn users(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.out.array(1);
    ctx.out.bulk(b"default");
    Ok(())
}

/// The default user's password as Redis shows it: none, or its SHA-256.
fn password_hash(ctx: &Ctx) -> Option<String> {
    let cfg = ctx.server.config.read();
    let pass = cfg.get("requirepass");
    (!pass.is_empty()).then(|| hex(&Sha256::digest(pass.as_bytes())))
}

fn list(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    let pass = match password_hash(ctx) {
        Some(h) => format!("#{h}"),
        None => "nopass".to_string(),
    };
    ctx.out.array(1);
    ctx.out
        .bulk(format!("user default on {pass} ~* &* +@all").as_bytes());
    Ok(())
}

fn getuser(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if &argv[2][..] != b"default" {
        ctx.out.null();
        return Ok(());
    }
    let hash = password_hash(ctx);
    ctx.out.map(6);
    ctx.out.bulk(b"flags");
    ctx.out.array(if hash.is_none() { 2 } else { 1 });
    ctx.out.bulk(b"on");
    if hash.is_none() {
        ctx.out.bulk(b"nopass");
    }
    ctx.out.bulk(b"passwords");
    match &hash {
        Some(h) => {
            ctx.out.array(1);
            ctx.out.bulk(h.as_bytes());
        }
        None => ctx.out.array(0),
    }
    for (field, value) in [("commands", "+@all"), ("keys", "~*"), ("channels", "&*")] {
        ctx.out.bulk(field.as_bytes());
        ctx.out.bulk(value.as_bytes());
    }
    ctx.out.bulk(b"selectors");
    ctx.out.array(0);
    Ok(())
}

fn dryrun(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if &argv[2][..] != b"default" {
        return Err(CommandError::err(format!(
            "User '{}' not found",
            text(&argv[2])
        )));
    }
    // The default user may run anything that exists with its arity.
    let cmd = &argv[3..];
    match TABLE.resolve(cmd) {
        Ok(_) => {
            ctx.out.ok();
            Ok(())
        }
        Err(CommandError::Arity(name)) => Err(CommandError::err(format!(
            "wrong number of arguments for '{name}' command"
        ))),
        Err(_) => Err(CommandError::err(format!(
            "Command '{}' not found",
            text(&cmd[0])
        ))),
    }
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

/// SETUSER, DELUSER, LOAD, SAVE: Shoal has the default user only.
fn single_user(_ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    Err(CommandError::err(format!(
        "ACL {} is not supported: Shoal has the default user only (set its password with requirepass)",
        text(&argv[1]).to_ascii_uppercase()
    )))
}

/// Records a failed authentication (AUTH, HELLO AUTH) for ACL LOG.
pub fn auth_failed(ctx: &Ctx, username: &[u8]) {
    let max = ctx.server.tun.acllog_max_len.load(Relaxed).max(0) as usize;
    ctx.server.acl_log.auth_failed(
        &String::from_utf8_lossy(username),
        ctx.client.handle.describe(ctx.now_ms, 0),
        ctx.now_ms,
        max,
    );
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
