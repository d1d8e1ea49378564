//! Stream commands: the log (XADD, XRANGE, XREAD, XDEL, XTRIM, XSETID) and
//! consumer groups (XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM,
//! XAUTOCLAIM, XINFO), with Redis's argument checks in Redis's order.
//!
//! Effects are concrete, as Redis propagates them:
//! - XADD is recorded with the ID it generated, and a trim it did as
//!   `MAXLEN <entries left>` in it (XTRIM's as `XTRIM key MAXLEN <entries
//!   left>`), so `~` and LIMIT replay exactly.
//! - A group read is recorded as what it changed: one
//!   `XCLAIM key group consumer 0 id TIME ms RETRYCOUNT n FORCE JUSTID
//!   LASTID id` per entry it delivered (or dropped from the pending list),
//!   then `XGROUP SETID key group id ENTRIESREAD n` for the group's
//!   position; XCLAIM and XAUTOCLAIM record the same XCLAIMs. These, XACK
//!   and a consumer's creation during a read are recorded without
//!   signalling WATCH or readers: Redis does not signal them either.
//! - XGROUP CREATE and SETID are recorded with `$` resolved and the read
//!   counter spelt out.
//!
//! A blocked XREAD waits with its `$` IDs resolved to the IDs they meant
//! when it was called, and with COUNT 1000 unless it gave one, as Redis
//! serves a blocked reader.

use bytes::Bytes;

use super::{flags::*, key_flags::*, keys, spec, wait_deadline, Ctx, KeySearch, Spec, NO_KEYS};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::stream::{
    parse_id, Entry, Group, IdForm, NextIdError, ParsedId, Stream, StreamId, Trim,
};
use crate::keyspace::SlotTable;
use crate::protocol::ReplyBuf;

const G: &str = "stream";
const S: &[&str] = &["stream"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("xadd", -5, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | UPDATE), S, G, "Appends a new message to a stream. Creates the key if it doesn't exist.", xadd),
    spec("xrange", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Returns the messages from a stream within a range of IDs.", xrange),
    spec("xrevrange", -4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Returns the messages from a stream within a range of IDs in reverse order.", xrevrange),
    spec("xlen", 2, READONLY | FAST, keys(1, 1, 1).flags(RO), S, G, "Return the number of messages in a stream.", xlen),
    spec("xdel", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | DELETE), S, G, "Returns the number of messages after removing them from a stream.", xdel),
    spec("xtrim", -4, WRITE, keys(1, 1, 1).flags(RW | DELETE), S, G, "Deletes messages from the beginning of a stream.", xtrim),
    Spec { key_search: &[KeySearch::Keyword { word: "STREAMS", from: 1, lastkey: -1, step: 1, limit: 2, flags: RO | ACCESS }], option_keys: Some(streams_keys), ..spec("xread", -4, READONLY | BLOCKING, NO_KEYS.flags(RO | ACCESS), S, G, "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise.", xread) },
    Spec { key_search: &[KeySearch::Keyword { word: "STREAMS", from: 4, lastkey: -1, step: 1, limit: 2, flags: RO | ACCESS }], option_keys: Some(streams_keys), ..spec("xreadgroup", -7, WRITE | BLOCKING, NO_KEYS.flags(RO | ACCESS), S, G, "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise.", xreadgroup) },
    spec("xsetid", -3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | UPDATE), S, G, "An internal command for replicating stream values.", xsetid),
    spec("xack", -4, WRITE | FAST, keys(1, 1, 1).flags(RW | UPDATE), S, G, "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream.", xack),
    spec("xpending", -3, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Returns the information and entries from a stream consumer group's pending entries list.", xpending),
    spec("xclaim", -6, WRITE | FAST, keys(1, 1, 1).flags(RW | UPDATE), S, G, "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member.", xclaim),
    spec("xautoclaim", -6, WRITE | FAST, keys(1, 1, 1).flags(RW | DELETE), S, G, "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member.", xautoclaim),
    Spec { subcommands: XGROUP, ..spec("xgroup", -2, 0, NO_KEYS, &[], G, "A container for consumer groups commands.", super::keys::help_only) },
    Spec { subcommands: XINFO, ..spec("xinfo", -2, 0, NO_KEYS, &[], G, "A container for stream introspection commands.", super::keys::help_only) },
];

#[rustfmt::skip]
static XGROUP: &[Spec] = &[
    spec("xgroup|create", -5, WRITE | DENYOOM, keys(2, 2, 1).flags(RW | INSERT), S, G, "Creates a consumer group.", xgroup_create),
    spec("xgroup|setid", -5, WRITE, keys(2, 2, 1).flags(RW | UPDATE), S, G, "Sets the last-delivered ID of a consumer group.", xgroup_setid),
    spec("xgroup|destroy", 4, WRITE, keys(2, 2, 1).flags(RW | DELETE), S, G, "Destroys a consumer group.", xgroup_destroy),
    spec("xgroup|createconsumer", 5, WRITE | DENYOOM, keys(2, 2, 1).flags(RW | INSERT), S, G, "Creates a consumer in a consumer group.", xgroup_createconsumer),
    spec("xgroup|delconsumer", 5, WRITE, keys(2, 2, 1).flags(RW | DELETE), S, G, "Deletes a consumer from a consumer group.", xgroup_delconsumer),
    spec("xgroup|help", 2, LOADING | STALE, NO_KEYS, S, G, "Returns helpful text about the different subcommands.", xgroup_help),
];

#[rustfmt::skip]
static XINFO: &[Spec] = &[
    spec("xinfo|stream", -3, READONLY, keys(2, 2, 1).flags(RO | ACCESS), S, G, "Returns information about a stream.", xinfo_stream),
    spec("xinfo|groups", 3, READONLY, keys(2, 2, 1).flags(RO | ACCESS), S, G, "Returns a list of the consumer groups of a stream.", xinfo_groups),
    spec("xinfo|consumers", 4, READONLY, keys(2, 2, 1).flags(RO | ACCESS), S, G, "Returns a list of the consumers in a consumer group.", xinfo_consumers),
    spec("xinfo|help", 2, LOADING | STALE, NO_KEYS, S, G, "Returns helpful text about the different subcommands.", xinfo_help),
];

/// XREAD's and XREADGROUP's keys: the first half of what follows STREAMS.
fn streams_keys(argv: &[&[u8]]) -> Vec<usize> {
    let Some(at) = argv.iter().position(|a| a.eq_ignore_ascii_case(b"streams")) else {
        return Vec::new();
    };
    let n = (argv.len() - at - 1) / 2;
    (at + 1..at + 1 + n).collect()
}

const INVALID_ID: &str = "Invalid stream ID specified as stream command argument";

fn id_arg(arg: &[u8], missing_seq: u64, form: IdForm) -> Result<ParsedId, CommandError> {
    parse_id(arg, missing_seq, form).ok_or_else(|| CommandError::err(INVALID_ID))
}

fn strict_id(arg: &[u8]) -> Result<StreamId, CommandError> {
    Ok(id_arg(arg, 0, IdForm::Strict)?.id)
}

/// A range's start: `(id` excludes it.
fn range_start(arg: &[u8]) -> Result<StreamId, CommandError> {
    match arg.strip_prefix(b"(").filter(|_| arg.len() > 1) {
        Some(rest) => id_arg(rest, 0, IdForm::Strict)?
            .id
            .next()
            .ok_or_else(|| CommandError::err("invalid start ID for the interval")),
        None => Ok(id_arg(arg, 0, IdForm::Range)?.id),
    }
}

/// A range's end: a missing sequence is the last one; `(id` excludes it.
fn range_end(arg: &[u8]) -> Result<StreamId, CommandError> {
    match arg.strip_prefix(b"(").filter(|_| arg.len() > 1) {
        Some(rest) => id_arg(rest, u64::MAX, IdForm::Strict)?
            .id
            .prev()
            .ok_or_else(|| CommandError::err("invalid end ID for the interval")),
        None => Ok(id_arg(arg, u64::MAX, IdForm::Range)?.id),
    }
}

fn id_bytes(id: StreamId) -> Vec<u8> {
    id.to_string().into_bytes()
}

fn reply_id(out: &mut ReplyBuf, id: StreamId) {
    out.bulk(id.to_string().as_bytes());
}

/// `[id, [field, value, ...]]`.
fn reply_entry(out: &mut ReplyBuf, id: StreamId, e: Entry) {
    out.array(2);
    reply_id(out, id);
    out.array(e.len());
    e.items().for_each(|i| out.bulk(i));
}

/// An entry by ID, or `[id, nil]`-less null when it was deleted.
fn reply_entry_or_null(out: &mut ReplyBuf, s: &Stream, id: StreamId) {
    match s.get(id) {
        Some(e) => reply_entry(out, id, e),
        None => out.null(),
    }
}

fn nogroup(key: &[u8], group: &[u8]) -> CommandError {
    CommandError::err_code(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

fn nogroup_for_key(key: &[u8], group: &[u8]) -> CommandError {
    CommandError::err_code(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ))
}

/// XADD's and XTRIM's trimming options.
struct TrimArgs {
    how: Option<Trim>,
    approx: bool,
    limit: u64,
}

/// Parses the options from `argv[2]` on (Redis's
/// streamParseAddOrTrimArgsOrReply). For XADD, also NOMKSTREAM and the ID,
/// whose position it returns. `node_entries` (stream-node-max-entries)
/// sets the default LIMIT of `~`.
fn parse_trim_args(
    argv: &[Bytes],
    xadd: bool,
    node_entries: u64,
) -> Result<(TrimArgs, usize, bool, Option<ParsedId>), CommandError> {
    let mut how = None;
    let mut approx = false;
    let mut limit: Option<i64> = None;
    let mut nomkstream = false;
    let mut id = None;
    let mut i = 2;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = &argv[i][..];
        if xadd && opt == b"*" {
            break;
        } else if (opt.eq_ignore_ascii_case(b"maxlen") || opt.eq_ignore_ascii_case(b"minid"))
            && more > 0
        {
            if how.is_some() {
                return Err(CommandError::err(
                    "syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            approx = false;
            let next = &argv[i + 1][..];
            if more >= 2 && next == b"~" {
                approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let arg = &argv[i + 1];
            if opt.eq_ignore_ascii_case(b"maxlen") {
                let n = super::args::int(arg)?;
                if n < 0 {
                    return Err(CommandError::err("The MAXLEN argument must be >= 0."));
                }
                how = Some(Trim::MaxLen(n as u64));
            } else {
                how = Some(Trim::MinId(strict_id(arg)?));
            }
            i += 1;
        } else if opt.eq_ignore_ascii_case(b"limit") && more > 0 {
            let n = super::args::int(&argv[i + 1])?;
            if n < 0 {
                return Err(CommandError::err("The LIMIT argument must be >= 0."));
            }
            limit = Some(n);
            i += 1;
        } else if xadd && opt.eq_ignore_ascii_case(b"nomkstream") {
            nomkstream = true;
        } else if xadd {
            id = Some(id_arg(opt, 0, IdForm::Add)?);
            break;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    if limit.is_some_and(|l| l != 0) && how.is_none() {
        return Err(CommandError::err(
            "syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && how.is_none() {
        return Err(CommandError::err(
            "syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    let limit = match limit {
        Some(_) if !approx => {
            return Err(CommandError::err(
                "syntax error, LIMIT cannot be used without the special ~ option",
            ))
        }
        Some(l) => l as u64,
        // Redis's default: 100 nodes' worth, within 10,000 (nodes of
        // any size) and 1,000,000.
        None if approx => match 100u64.saturating_mul(node_entries) {
            0 => 10_000,
            n => n.min(1_000_000),
        },
        None => 0,
    };
    Ok((TrimArgs { how, approx, limit }, i, nomkstream, id))
}

/// Trims and records the trim as the exact length it left.
fn trim_and_record(ctx: &Ctx, s: &mut Stream, key: &[u8], t: &TrimArgs) -> u64 {
    let Some(how) = t.how else {
        return 0;
    };
    let removed = s.trim(how, t.approx, t.limit);
    if removed > 0 {
        let mut n = itoa::Buffer::new();
        ctx.emit(&[b"XTRIM", key, b"MAXLEN", n.format(s.len()).as_bytes()]);
    }
    removed
}

fn xadd(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (trim, idpos, nomkstream, wanted) =
        parse_trim_args(argv, true, ctx.encodings().stream.entries)?;
    let fields = idpos + 1;
    if argv.len() < fields + 2 || !(argv.len() - fields).is_multiple_of(2) {
        return Err(CommandError::Arity("xadd".into()));
    }
    if let Some(ParsedId {
        id,
        seq_given: true,
    }) = wanted
    {
        if id.is_zero() {
            return Err(CommandError::err(
                "The ID specified in XADD must be greater than 0-0",
            ));
        }
    }
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    if nomkstream && ctx.write::<Stream>(&mut t, key)?.is_none() {
        ctx.out.null();
        return Ok(());
    }
    let s: &mut Stream = ctx.write_or_create(&mut t, key)?;
    if s.last_id == StreamId::MAX {
        return Err(CommandError::err(
            "The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    let id = match s.next_id(wanted, ctx.now_ms) {
        Ok(id) => id,
        Err(NextIdError::NotGreater) => {
            return Err(CommandError::err(
                "The ID specified in XADD is equal or smaller than the target stream top item",
            ))
        }
        // Redis 7.0's words for it.
        Err(NextIdError::SequenceExhausted) => {
            return Err(CommandError::err("Elements are too large to be stored"))
        }
    };
    s.append(id, &argv[fields..], ctx.encodings().stream);
    // A trim is recorded in the XADD itself, as the exact length it
    // left: one effect, so that replicas and the log never hold the
    // stream grown but not yet trimmed.
    let removed = match trim.how {
        Some(how) => s.trim(how, trim.approx, trim.limit),
        None => 0,
    };
    let idb = id_bytes(id);
    let mut left = itoa::Buffer::new();
    let mut rec: Vec<&[u8]> = Vec::with_capacity(5 + argv.len() - fields);
    rec.extend([&b"XADD"[..], key]);
    if removed > 0 {
        rec.extend([&b"MAXLEN"[..], left.format(s.len()).as_bytes()]);
    }
    rec.push(&idb);
    rec.extend(argv[fields..].iter().map(|a| &a[..]));
    ctx.emit(&rec);
    reply_id(ctx.out, id);
    Ok(())
}

fn xrange_generic(ctx: &mut Ctx, argv: &[Bytes], rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev {
        (&argv[3], &argv[2])
    } else {
        (&argv[2], &argv[3])
    };
    let start = range_start(start_arg)?;
    let end = range_end(end_arg)?;
    let mut count: Option<usize> = None;
    let mut j = 4;
    while j < argv.len() {
        if argv[j].eq_ignore_ascii_case(b"count") && j + 1 < argv.len() {
            count = Some(super::args::int(&argv[j + 1])?.max(0) as usize);
            j += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(s) = ctx.read::<Stream>(&mut t, key)? else {
        ctx.out.array(0);
        return Ok(());
    };
    if count == Some(0) {
        ctx.out.null_array();
        return Ok(());
    }
    let items: Vec<_> = s
        .range(start, end, rev)
        .take(count.unwrap_or(usize::MAX))
        .collect();
    ctx.out.array(items.len());
    for (id, e) in items {
        reply_entry(ctx.out, id, e);
    }
    Ok(())
}

fn xrange(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    xrange_generic(ctx, argv, false)
}

fn xrevrange(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    xrange_generic(ctx, argv, true)
}

fn xlen(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.reply_count::<Stream>(&argv[1])
}

fn xdel(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(s) = ctx.write::<Stream>(&mut t, key)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let ids = argv[2..]
        .iter()
        .map(|a| strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let deleted = ids.into_iter().filter(|&id| s.delete(id)).count();
    if deleted > 0 {
        ctx.emit_argv(argv);
    }
    ctx.out.int(deleted as i64);
    Ok(())
}

fn xtrim(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (trim, ..) = parse_trim_args(argv, false, ctx.encodings().stream.entries)?;
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(s) = ctx.write::<Stream>(&mut t, key)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let removed = trim_and_record(ctx, s, key, &trim);
    ctx.out.int(removed as i64);
    Ok(())
}

fn xsetid(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let id = strict_id(&argv[2])?;
    let mut entries_added: Option<u64> = None;
    let mut max_deleted = StreamId::MIN;
    let mut i = 3;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        if argv[i].eq_ignore_ascii_case(b"entriesadded") && more > 0 {
            let n = super::args::int(&argv[i + 1])?;
            if n < 0 {
                return Err(CommandError::err("entries_added must be positive"));
            }
            entries_added = Some(n as u64);
        } else if argv[i].eq_ignore_ascii_case(b"maxdeletedid") && more > 0 {
            max_deleted = strict_id(&argv[i + 1])?;
            if id < max_deleted {
                return Err(CommandError::err(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(s) = ctx.write::<Stream>(&mut t, key)? else {
        return Err(CommandError::NoSuchKey);
    };
    if let Some(top) = s.last_entry_id() {
        if id < top {
            return Err(CommandError::err(
                "The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if entries_added.is_some_and(|n| (s.len() as u64) > n) {
            return Err(CommandError::err(
                "The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    s.last_id = id;
    if let Some(n) = entries_added {
        s.entries_added = n;
    }
    if !max_deleted.is_zero() {
        s.max_deleted = max_deleted;
    }
    ctx.emit_argv(argv);
    ctx.out.ok();
    Ok(())
}

/// XREAD and XREADGROUP's parsed arguments.
struct ReadArgs {
    block: Option<Option<std::time::Instant>>,
    count: Option<usize>,
    group: Option<(Bytes, Bytes)>,
    noack: bool,
    /// Index of the first key.
    streams: usize,
    n: usize,
}

fn parse_read_args(
    argv: &[Bytes],
    grouped: bool,
    in_script: bool,
) -> Result<ReadArgs, CommandError> {
    let mut a = ReadArgs {
        block: None,
        count: None,
        group: None,
        noack: false,
        streams: 0,
        n: 0,
    };
    let mut i = 1;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let o = &argv[i][..];
        if o.eq_ignore_ascii_case(b"block") && more > 0 {
            // A script cannot wait; Redis refuses the option there outright.
            if in_script {
                let name = if grouped { "xreadgroup" } else { "xread" };
                return Err(CommandError::err(format!(
                    "{name} command is not allowed with BLOCK option from scripts"
                )));
            }
            i += 1;
            a.block = Some(wait_deadline(&argv[i])?);
        } else if o.eq_ignore_ascii_case(b"count") && more > 0 {
            i += 1;
            a.count = Some(super::args::int(&argv[i])?.max(0) as usize);
        } else if o.eq_ignore_ascii_case(b"streams") && more > 0 {
            a.streams = i + 1;
            let rest = argv.len() - a.streams;
            if !rest.is_multiple_of(2) {
                let (name, symbol) = if grouped {
                    ("xreadgroup", '>')
                } else {
                    ("xread", '$')
                };
                return Err(CommandError::err(format!(
                    "Unbalanced '{name}' list of streams: for each stream key an ID or '{symbol}' must be specified."
                )));
            }
            a.n = rest / 2;
            break;
        } else if o.eq_ignore_ascii_case(b"group") && more >= 2 {
            if !grouped {
                return Err(CommandError::err(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            a.group = Some((argv[i + 1].clone(), argv[i + 2].clone()));
            i += 2;
        } else if o.eq_ignore_ascii_case(b"noack") {
            if !grouped {
                return Err(CommandError::err(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            a.noack = true;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    if a.streams == 0 {
        return Err(CommandError::Syntax);
    }
    if grouped && a.group.is_none() {
        return Err(CommandError::err("Missing GROUP option for XREADGROUP"));
    }
    Ok(a)
}

/// Where a read of one stream starts: after `id`, or a group's new
/// entries (`>`).
#[derive(Clone, Copy)]
enum From {
    After(StreamId),
    New,
}

fn xread(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    read_generic(ctx, argv, false)
}

fn xreadgroup(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    read_generic(ctx, argv, true)
}

fn read_generic(ctx: &mut Ctx, argv: &[Bytes], grouped: bool) -> CmdResult {
    let a = parse_read_args(argv, grouped, ctx.client.in_script)?;
    let keys = &argv[a.streams..a.streams + a.n];
    let id_args = &argv[a.streams + a.n..];
    let db = ctx.db();
    let mut locked = ctx.lock_keys(keys.iter());
    // Every key is checked, and every ID parsed, before anything is served.
    let mut froms = Vec::with_capacity(a.n);
    for (key, arg) in keys.iter().zip(id_args) {
        let t = locked.table_for(db, key);
        let found = ctx.read::<Stream>(t, key);
        // A group reader woken to find its stream gone (deleted, or now
        // another type) is told so, as Redis tells it.
        if a.group.is_some()
            && ctx.client.block_retry
            && matches!(found, Ok(None) | Err(CommandError::WrongType))
        {
            return Err(CommandError::err_code(
                "UNBLOCKED the stream key no longer exists",
            ));
        }
        let s = ctx.waited(found)?.map(|s| &*s);
        if let Some((group, _)) = &a.group {
            if !s.is_some_and(|s| s.groups.contains_key(&group[..])) {
                return Err(CommandError::err_code(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(group)
                )));
            }
        }
        let from = match &arg[..] {
            b"$" if grouped => {
                return Err(CommandError::err(
                    "The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ))
            }
            b"$" => From::After(s.map_or(StreamId::MIN, |s| s.last_id)),
            b">" if !grouped => {
                return Err(CommandError::err(
                    "The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ))
            }
            b">" => From::New,
            // Redis stands `>` for the last possible ID: given outright,
            // that ID reads new entries too.
            _ => match strict_id(arg)? {
                StreamId::MAX if grouped => From::New,
                id => From::After(id),
            },
        };
        froms.push(from);
    }
    let mut served: Vec<(usize, Vec<u8>)> = Vec::new();
    // A group read's effects, every stream's, recorded as one change
    // while the streams are still locked (what was served before an
    // error too).
    let mut unit = Unit::new();
    let mut failed = None;
    for (i, key) in keys.iter().enumerate() {
        let t = locked.table_for(db, key);
        let reply = match &a.group {
            Some((group, consumer)) => {
                read_group(ctx, t, key, group, consumer, froms[i], &a, &mut unit)
            }
            None => read_after(ctx, t, key, froms[i], a.count),
        };
        match reply {
            Ok(Some(r)) => served.push((i, r)),
            Ok(None) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    ctx.record_unit(db, &unit);
    if let Some(e) = failed {
        return Err(e);
    }
    if !served.is_empty() {
        if ctx.out.resp3() {
            ctx.out.map(served.len());
        } else {
            ctx.out.array(served.len());
        }
        for (i, body) in served {
            if !ctx.out.resp3() {
                ctx.out.array(2);
            }
            ctx.out.bulk(&keys[i]);
            ctx.out.buf.extend_from_slice(&body);
        }
        return Ok(());
    }
    drop(locked);
    match a.block {
        Some(deadline) => {
            // Retried as it was meant when called: `$` as the IDs it meant.
            let mut retry = argv.to_vec();
            for (i, from) in froms.iter().enumerate() {
                if let From::After(id) = from {
                    retry[a.streams + a.n + i] = Bytes::from(id_bytes(*id));
                }
            }
            if a.count.is_none() {
                retry.insert(1, Bytes::from_static(b"1000"));
                retry.insert(1, Bytes::from_static(b"COUNT"));
            }
            ctx.block_reader(keys, deadline, retry);
        }
        None => ctx.out.null_array(),
    }
    Ok(())
}

/// A reply body written apart, to be framed by its key once known non-empty.
fn body(ctx: &Ctx, f: impl FnOnce(&mut ReplyBuf)) -> Vec<u8> {
    let mut out = ReplyBuf::scratch(ctx.out.proto);
    f(&mut out);
    out.buf.to_vec()
}

/// XREAD of one stream: its entries after `from`, if any.
fn read_after(
    ctx: &Ctx,
    t: &mut SlotTable,
    key: &[u8],
    from: From,
    count: Option<usize>,
) -> Result<Option<Vec<u8>>, CommandError> {
    let From::After(after) = from else {
        return Ok(None);
    };
    let Some(s) = ctx.waited(ctx.read::<Stream>(t, key))? else {
        return Ok(None);
    };
    let Some(start) = after.next() else {
        return Ok(None);
    };
    let items: Vec<_> = s
        .range(start, StreamId::MAX, false)
        .take(count.filter(|&c| c > 0).unwrap_or(usize::MAX))
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    Ok(Some(body(ctx, |out| {
        out.array(items.len());
        for (id, e) in items {
            reply_entry(out, id, e);
        }
    })))
}

/// XREADGROUP of one stream: new entries (`>`), delivered to `consumer`,
/// or its own pending entries after an ID (served even when empty); its
/// effects go to `unit`.
#[allow(clippy::too_many_arguments)]
fn read_group(
    ctx: &Ctx,
    t: &mut SlotTable,
    key: &[u8],
    group: &[u8],
    consumer: &[u8],
    from: From,
    a: &ReadArgs,
    unit: &mut Unit,
) -> Result<Option<Vec<u8>>, CommandError> {
    let now = ctx.now_ms;
    let s = ctx
        .write::<Stream>(t, key)?
        .expect("checked before serving");
    let count = a.count.filter(|&c| c > 0).unwrap_or(usize::MAX);
    let last = s.groups[group].last_id;
    if matches!(from, From::New) && s.last_entry_id().is_none_or(|top| top <= last) {
        return Ok(None);
    }
    let created = s
        .groups
        .get_mut(group)
        .map(|g| g.consumer(consumer, now).1)
        .unwrap_or(false);
    if let Some(c) = s
        .groups
        .get_mut(group)
        .and_then(|g| g.consumers.get_mut(consumer))
    {
        c.seen_time = now;
    }
    let create: [&[u8]; 5] = [b"XGROUP", b"CREATECONSUMER", key, group, consumer];
    if created {
        ctx.signal_as("xgroup-createconsumer", &create);
    }
    let mut records: Vec<(StreamId, i64, u64)> = Vec::new();
    let body = match from {
        From::After(after) => {
            // History: this consumer's pending entries after `after`, each
            // delivered once more.
            let Some(start) = after.next() else {
                return Ok(Some(body(ctx, |out| out.array(0))));
            };
            let ids: Vec<StreamId> = s.groups[group].consumers[consumer]
                .pel
                .range(start..)
                .take(count)
                .copied()
                .collect();
            let reply = body(ctx, |out| {
                out.array(ids.len());
                for &id in &ids {
                    match s.get(id) {
                        Some(e) => reply_entry(out, id, e),
                        None => {
                            out.array(2);
                            reply_id(out, id);
                            out.null_array();
                        }
                    }
                }
            });
            let present: Vec<bool> = ids.iter().map(|&id| s.get(id).is_some()).collect();
            let g = s.groups.get_mut(group).expect("checked");
            for (id, there) in ids.into_iter().zip(present) {
                if let (true, Some(p)) = (there, g.pel.get_mut(&id)) {
                    p.delivery_time = now;
                    p.delivery_count += 1;
                    records.push((id, now, p.delivery_count));
                }
            }
            reply
        }
        From::New => {
            let start = last.next().unwrap_or(StreamId::MAX);
            let reply = body(ctx, |out| {
                let items: Vec<_> = s.range(start, StreamId::MAX, false).take(count).collect();
                out.array(items.len());
                for (id, e) in items {
                    reply_entry(out, id, e);
                }
            });
            let ids: Vec<StreamId> = s
                .range(start, StreamId::MAX, false)
                .take(count)
                .map(|(id, _)| id)
                .collect();
            for id in ids {
                s.advance_group(group, id);
                if !a.noack {
                    let g = s.groups.get_mut(group).expect("checked");
                    g.assign(id, consumer, now, 1);
                    records.push((id, now, 1));
                }
            }
            reply
        }
    };
    let g = &s.groups[group];
    let lastid = id_bytes(g.last_id);
    // A new consumer is recorded only where no XCLAIM will create it on
    // replicas (NOACK, or nothing delivered): as Redis does, which once
    // recorded it for NOACK only, losing a consumer that read nothing.
    if created && records.is_empty() {
        push_effect(unit, &create);
    }
    for (id, time, count) in records {
        claim_effect(unit, key, group, consumer, id, time, count, &lastid);
    }
    if matches!(from, From::New) {
        setid_effect(unit, key, group, g);
    }
    Ok(Some(body))
}

/// One change of a group, as its command's unit records it (see
/// `Ctx::record_unit`).
type Unit = Vec<Vec<Vec<u8>>>;

/// Adds to `unit` an effect made of `argv`.
fn push_effect(unit: &mut Unit, argv: &[&[u8]]) {
    unit.push(argv.iter().map(|a| a.to_vec()).collect());
}

/// One pending entry's state as Redis propagates it: an XCLAIM that
/// creates or moves it (or drops it, where the entry is gone).
#[allow(clippy::too_many_arguments)]
fn claim_effect(
    unit: &mut Unit,
    key: &[u8],
    group: &[u8],
    consumer: &[u8],
    id: StreamId,
    time: i64,
    count: u64,
    lastid: &[u8],
) {
    let id = id_bytes(id);
    let mut t = itoa::Buffer::new();
    let mut n = itoa::Buffer::new();
    push_effect(
        unit,
        &[
            b"XCLAIM",
            key,
            group,
            consumer,
            b"0",
            &id,
            b"TIME",
            t.format(time).as_bytes(),
            b"RETRYCOUNT",
            n.format(count).as_bytes(),
            b"FORCE",
            b"JUSTID",
            b"LASTID",
            lastid,
        ],
    );
}

/// A group's position and read counter.
fn setid_effect(unit: &mut Unit, key: &[u8], group: &[u8], g: &Group) {
    let id = id_bytes(g.last_id);
    let read = g.entries_read.map_or(-1, |n| n as i64);
    let mut n = itoa::Buffer::new();
    push_effect(
        unit,
        &[
            b"XGROUP",
            b"SETID",
            key,
            group,
            &id,
            b"ENTRIESREAD",
            n.format(read).as_bytes(),
        ],
    );
}

fn xack(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(g) = ctx
        .read::<Stream>(&mut t, key)?
        .and_then(|s| s.groups.get_mut(&argv[2][..]))
    else {
        ctx.out.int(0);
        return Ok(());
    };
    let ids = argv[3..]
        .iter()
        .map(|a| strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let acked = ids.into_iter().filter(|&id| g.ack(id)).count();
    if acked > 0 {
        ctx.emit_as_unsignalled(&argv.iter().map(|a| &a[..]).collect::<Vec<_>>());
    }
    ctx.out.int(acked as i64);
    Ok(())
}

fn xpending(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let argc = argv.len();
    if argc != 3 && !(6..=9).contains(&argc) {
        return Err(CommandError::Syntax);
    }
    let mut range = None;
    let mut min_idle = 0i64;
    let mut consumer: Option<&[u8]> = None;
    if argc >= 6 {
        let mut at = 3;
        if argv[3].eq_ignore_ascii_case(b"idle") {
            min_idle = super::args::int(&argv[4])?;
            if argc < 8 {
                return Err(CommandError::Syntax);
            }
            at += 2;
        }
        let count = super::args::int(&argv[at + 2])?.max(0) as usize;
        let start = range_start(&argv[at])?;
        let end = range_end(&argv[at + 1])?;
        if at + 3 < argc {
            consumer = Some(&argv[at + 3]);
        }
        range = Some((start, end, count));
    }
    let key = &argv[1];
    let now = ctx.now_ms;
    let mut t = ctx.lock_key(key);
    let Some(g) = ctx
        .read::<Stream>(&mut t, key)?
        .and_then(|s| s.groups.get(&argv[2][..]))
    else {
        return Err(nogroup(key, &argv[2]));
    };
    let out = &mut *ctx.out;
    let Some((start, end, count)) = range else {
        out.array(4);
        out.int(g.pel.len() as i64);
        match (g.pel.keys().next(), g.pel.keys().next_back()) {
            (Some(&first), Some(&last)) => {
                reply_id(out, first);
                reply_id(out, last);
                let holders: Vec<_> = g
                    .consumers
                    .iter()
                    .filter(|(_, c)| !c.pel.is_empty())
                    .collect();
                out.array(holders.len());
                for (name, c) in holders {
                    out.array(2);
                    out.bulk(name);
                    out.bulk(itoa::Buffer::new().format(c.pel.len()).as_bytes());
                }
            }
            _ => {
                out.null();
                out.null();
                out.null_array();
            }
        }
        return Ok(());
    };
    let ids: Vec<StreamId> = match consumer {
        Some(name) => match g.consumers.get(name) {
            Some(c) if start <= end => c.pel.range(start..=end).copied().collect(),
            Some(_) => Vec::new(),
            None => {
                out.array(0);
                return Ok(());
            }
        },
        None if start <= end => g.pel.range(start..=end).map(|(id, _)| *id).collect(),
        None => Vec::new(),
    };
    let rows: Vec<_> = ids
        .into_iter()
        .filter_map(|id| g.pel.get(&id).map(|p| (id, p)))
        .filter(|(_, p)| min_idle == 0 || now - p.delivery_time >= min_idle)
        .take(count)
        .collect();
    out.array(rows.len());
    for (id, p) in rows {
        out.array(4);
        reply_id(out, id);
        out.bulk(&p.consumer);
        out.int((now - p.delivery_time).max(0));
        out.int(p.delivery_count as i64);
    }
    Ok(())
}

/// XCLAIM's options, after its IDs.
struct ClaimOptions {
    time: Option<i64>,
    retrycount: Option<u64>,
    force: bool,
    justid: bool,
    lastid: StreamId,
}

fn xclaim(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let group = &argv[2][..];
    let consumer = &argv[3][..];
    let now = ctx.now_ms;
    let mut t = ctx.lock_key(key);
    let exists = ctx
        .read::<Stream>(&mut t, key)?
        .is_some_and(|s| s.groups.contains_key(group));
    if !exists {
        return Err(nogroup(key, group));
    }
    let min_idle = super::args::int(&argv[4])
        .map_err(|_| CommandError::err("Invalid min-idle-time argument for XCLAIM"))?
        .max(0);
    let mut j = 5;
    let mut ids = Vec::new();
    while j < argv.len() {
        match parse_id(&argv[j], 0, IdForm::Strict) {
            Some(p) => ids.push(p.id),
            None => break,
        }
        j += 1;
    }
    let mut o = ClaimOptions {
        time: None,
        retrycount: None,
        force: false,
        justid: false,
        lastid: StreamId::MIN,
    };
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        let opt = &argv[j][..];
        let number = |what: &str, arg: &[u8]| {
            super::args::int(arg).map_err(|_| {
                CommandError::err(format!("Invalid {what} option argument for XCLAIM"))
            })
        };
        if opt.eq_ignore_ascii_case(b"force") {
            o.force = true;
        } else if opt.eq_ignore_ascii_case(b"justid") {
            o.justid = true;
        } else if opt.eq_ignore_ascii_case(b"idle") && more > 0 {
            j += 1;
            o.time = Some(now - number("IDLE", &argv[j])?);
        } else if opt.eq_ignore_ascii_case(b"time") && more > 0 {
            j += 1;
            o.time = Some(number("TIME", &argv[j])?);
        } else if opt.eq_ignore_ascii_case(b"retrycount") && more > 0 {
            j += 1;
            let n = number("RETRYCOUNT", &argv[j])?;
            o.retrycount = (n >= 0).then_some(n as u64);
        } else if opt.eq_ignore_ascii_case(b"lastid") && more > 0 {
            j += 1;
            o.lastid = strict_id(&argv[j])?;
        } else {
            return Err(CommandError::err(format!(
                "Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
        j += 1;
    }
    let time = match o.time {
        Some(t) if (0..=now).contains(&t) => t,
        _ => now,
    };
    let s = ctx.write::<Stream>(&mut t, key)?.expect("checked above");
    let mut moved_lastid = false;
    {
        let g = s.groups.get_mut(group).expect("checked above");
        if o.lastid > g.last_id {
            g.last_id = o.lastid;
            moved_lastid = true;
        }
    }
    let mut claimed: Vec<StreamId> = Vec::new();
    let mut records: Vec<(StreamId, Vec<u8>, i64, u64)> = Vec::new();
    let mut created = false;
    for id in ids {
        let present = s.get(id).is_some();
        let g = s.groups.get_mut(group).expect("checked above");
        if !present {
            // The entry is gone: so is its pending state.
            if let Some(p) = g.pel.get(&id) {
                records.push((id, p.consumer.to_vec(), p.delivery_time, p.delivery_count));
                g.ack(id);
            }
            continue;
        }
        let fresh = !g.pel.contains_key(&id);
        if fresh && !o.force {
            continue;
        }
        if !fresh && min_idle > 0 && now - g.pel[&id].delivery_time < min_idle {
            continue;
        }
        let (c, new) = g.consumer(consumer, now);
        c.seen_time = now;
        created |= new;
        let before = if fresh { 1 } else { g.pel[&id].delivery_count };
        let count = match o.retrycount {
            Some(n) => n,
            None if o.justid => before,
            None => before + 1,
        };
        g.assign(id, consumer, time, count);
        records.push((id, consumer.to_vec(), time, count));
        claimed.push(id);
    }
    let g = &s.groups[group];
    let mut unit = Unit::new();
    if created {
        let create: [&[u8]; 5] = [b"XGROUP", b"CREATECONSUMER", key, group, consumer];
        ctx.signal_as("xgroup-createconsumer", &create);
        push_effect(&mut unit, &create);
    }
    let lastid = id_bytes(g.last_id);
    let claims = !records.is_empty();
    for (id, holder, time, count) in records {
        claim_effect(&mut unit, key, group, &holder, id, time, count, &lastid);
    }
    if moved_lastid && !claims {
        setid_effect(&mut unit, key, group, g);
    }
    ctx.record_unit(ctx.db(), &unit);
    let out = &mut *ctx.out;
    out.array(claimed.len());
    for id in claimed {
        if o.justid {
            reply_id(out, id);
        } else {
            reply_entry_or_null(out, s, id);
        }
    }
    Ok(())
}

fn xautoclaim(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let group = &argv[2][..];
    let consumer = &argv[3][..];
    let min_idle = super::args::int(&argv[4])
        .map_err(|_| CommandError::err("Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0);
    let start = range_start(&argv[5])?;
    let mut count: u64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        if argv[j].eq_ignore_ascii_case(b"count") && more > 0 {
            let max = (i64::MAX / 16) as u64;
            count = super::args::int(&argv[j + 1])
                .ok()
                .filter(|&n| n >= 1 && n as u64 <= max)
                .ok_or_else(|| CommandError::err("COUNT must be > 0"))? as u64;
            j += 1;
        } else if argv[j].eq_ignore_ascii_case(b"justid") {
            justid = true;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    let now = ctx.now_ms;
    let mut t = ctx.lock_key(key);
    let Some(s) = ctx
        .write::<Stream>(&mut t, key)?
        .filter(|s| s.groups.contains_key(group))
    else {
        return Err(nogroup(key, group));
    };
    let mut attempts = count * 10;
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut records: Vec<(StreamId, Vec<u8>, i64, u64)> = Vec::new();
    let mut created = false;
    let mut cursor = StreamId::MIN;
    let pending: Vec<StreamId> = s.groups[group]
        .pel
        .range(start..)
        .map(|(id, _)| *id)
        .collect();
    let mut it = pending.into_iter();
    loop {
        if attempts == 0 || count == 0 {
            // The next pending entry is where the next call starts.
            cursor = it.next().unwrap_or(StreamId::MIN);
            break;
        }
        attempts -= 1;
        let Some(id) = it.next() else {
            break;
        };
        let present = s.get(id).is_some();
        let g = s.groups.get_mut(group).expect("checked above");
        if !present {
            let p = &g.pel[&id];
            records.push((id, p.consumer.to_vec(), p.delivery_time, p.delivery_count));
            g.ack(id);
            deleted.push(id);
            count -= 1;
            continue;
        }
        if min_idle > 0 && now - g.pel[&id].delivery_time < min_idle {
            continue;
        }
        let (c, new) = g.consumer(consumer, now);
        c.seen_time = now;
        created |= new;
        let n = g.pel[&id].delivery_count + u64::from(!justid);
        g.assign(id, consumer, now, n);
        records.push((id, consumer.to_vec(), now, n));
        claimed.push(id);
        count -= 1;
    }
    let mut unit = Unit::new();
    if created {
        let create: [&[u8]; 5] = [b"XGROUP", b"CREATECONSUMER", key, group, consumer];
        ctx.signal_as("xgroup-createconsumer", &create);
        push_effect(&mut unit, &create);
    }
    let lastid = id_bytes(s.groups[group].last_id);
    for (id, holder, time, n) in records {
        claim_effect(&mut unit, key, group, &holder, id, time, n, &lastid);
    }
    ctx.record_unit(ctx.db(), &unit);
    let out = &mut *ctx.out;
    out.array(3);
    reply_id(out, cursor);
    out.array(claimed.len());
    for id in claimed {
        if justid {
            reply_id(out, id);
        } else {
            reply_entry_or_null(out, s, id);
        }
    }
    out.array(deleted.len());
    for id in deleted {
        reply_id(out, id);
    }
    Ok(())
}

/// XGROUP CREATE's and SETID's options after the ID: MKSTREAM (CREATE
/// only) and ENTRIESREAD.
fn group_options(argv: &[Bytes], create: bool) -> Result<(bool, Option<u64>), CommandError> {
    let sub = || CommandError::subcommand_syntax(argv, "XGROUP");
    let mut mkstream = false;
    let mut read = None;
    let mut i = 5;
    if !create && argv.len() != 5 && argv.len() != 7 {
        return Err(sub());
    }
    while i < argv.len() {
        if create && argv[i].eq_ignore_ascii_case(b"mkstream") {
            mkstream = true;
            i += 1;
        } else if argv[i].eq_ignore_ascii_case(b"entriesread") && i + 1 < argv.len() {
            let n = super::args::int(&argv[i + 1])?;
            if n < -1 {
                return Err(CommandError::err(
                    "value for ENTRIESREAD must be positive or -1",
                ));
            }
            read = u64::try_from(n).ok();
            i += 2;
        } else {
            return Err(sub());
        }
    }
    if create && argv.len() > 8 {
        return Err(sub());
    }
    Ok((mkstream, read))
}

const NO_KEY_FOR_XGROUP: &str = "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.";

fn xgroup_create(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (mkstream, read) = group_options(argv, true)?;
    let key = &argv[2];
    let name = &argv[3][..];
    let mut t = ctx.lock_key(key);
    let existing = ctx.write::<Stream>(&mut t, key)?.map(|s| s.last_id);
    if existing.is_none() && !mkstream {
        return Err(CommandError::err(NO_KEY_FOR_XGROUP));
    }
    let id = match &argv[4][..] {
        b"$" => existing.unwrap_or(StreamId::MIN),
        arg => strict_id(arg)?,
    };
    let s: &mut Stream = ctx.write_or_create(&mut t, key)?;
    if s.groups.contains_key(name) {
        return Err(CommandError::err_code(
            "BUSYGROUP Consumer Group name already exists",
        ));
    }
    s.groups.insert(name.into(), Group::new(id, read));
    let idb = id_bytes(id);
    let mut n = itoa::Buffer::new();
    let read = read.map_or(-1, |n| n as i64);
    ctx.emit_as(
        "xgroup-create",
        &[
            b"XGROUP",
            b"CREATE",
            key,
            name,
            &idb,
            b"MKSTREAM",
            b"ENTRIESREAD",
            n.format(read).as_bytes(),
        ],
    );
    ctx.out.ok();
    Ok(())
}

/// The stream and group XGROUP SETID, CREATECONSUMER and DELCONSUMER name,
/// with Redis's errors for either missing.
fn existing_group<'t>(
    ctx: &Ctx,
    t: &'t mut SlotTable,
    key: &[u8],
    name: &[u8],
) -> Result<(StreamId, &'t mut Group), CommandError> {
    let Some(s) = ctx.write::<Stream>(t, key)? else {
        return Err(CommandError::err(NO_KEY_FOR_XGROUP));
    };
    let last = s.last_id;
    match s.groups.get_mut(name) {
        Some(g) => Ok((last, g)),
        None => Err(nogroup_for_key(key, name)),
    }
}

fn xgroup_setid(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (_, read) = group_options(argv, false)?;
    let key = &argv[2];
    let name = &argv[3][..];
    let mut t = ctx.lock_key(key);
    let (last, g) = existing_group(ctx, &mut t, key, name)?;
    let id = match &argv[4][..] {
        b"$" => last,
        arg => id_arg(arg, 0, IdForm::Range)?.id,
    };
    g.last_id = id;
    g.entries_read = read;
    let idb = id_bytes(id);
    let mut n = itoa::Buffer::new();
    let read = read.map_or(-1, |n| n as i64);
    ctx.emit_as(
        "xgroup-setid",
        &[
            b"XGROUP",
            b"SETID",
            key,
            name,
            &idb,
            b"ENTRIESREAD",
            n.format(read).as_bytes(),
        ],
    );
    ctx.out.ok();
    Ok(())
}

fn xgroup_destroy(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[2];
    let mut t = ctx.lock_key(key);
    let Some(s) = ctx.write::<Stream>(&mut t, key)? else {
        return Err(CommandError::err(NO_KEY_FOR_XGROUP));
    };
    let gone = s.groups.remove(&argv[3][..]).is_some();
    if gone {
        // Also wakes the group's blocked readers, who then fail.
        record_as(ctx, "xgroup-destroy", argv);
    }
    ctx.out.int(gone as i64);
    Ok(())
}

fn xgroup_createconsumer(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[2];
    let now = ctx.now_ms;
    let mut t = ctx.lock_key(key);
    let (_, g) = existing_group(ctx, &mut t, key, &argv[3])?;
    let created = g.consumer(&argv[4], now).1;
    if created {
        record_as(ctx, "xgroup-createconsumer", argv);
    }
    ctx.out.int(created as i64);
    Ok(())
}

fn xgroup_delconsumer(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[2];
    let mut t = ctx.lock_key(key);
    let (_, g) = existing_group(ctx, &mut t, key, &argv[3])?;
    let pending = g.remove_consumer(&argv[4]);
    if pending.is_some() {
        record_as(ctx, "xgroup-delconsumer", argv);
    }
    ctx.out.int(pending.unwrap_or(0) as i64);
    Ok(())
}

/// Records an XGROUP subcommand as itself, told as `event`.
fn record_as(ctx: &Ctx, event: &'static str, argv: &[Bytes]) {
    ctx.emit_as(event, &argv.iter().map(|a| &a[..]).collect::<Vec<_>>());
}

fn xgroup_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    super::keys::help(
        ctx,
        "XGROUP",
        &[
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
        ],
    );
    Ok(())
}

fn xinfo_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    super::keys::help(
        ctx,
        "XINFO",
        &[
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
        ],
    );
    Ok(())
}

/// The stream XINFO names: `-ERR no such key` if there is none.
fn info_stream<'t>(
    ctx: &Ctx,
    t: &'t mut SlotTable,
    key: &[u8],
) -> Result<&'t mut Stream, CommandError> {
    ctx.read::<Stream>(t, key)?.ok_or(CommandError::NoSuchKey)
}

fn reply_lag(out: &mut ReplyBuf, s: &Stream, g: &Group) {
    match s.lag(g) {
        Some(n) => out.int(n),
        None => out.null(),
    }
}

fn reply_entries_read(out: &mut ReplyBuf, g: &Group) {
    match g.entries_read {
        Some(n) => out.int(n as i64),
        None => out.null(),
    }
}

fn xinfo_stream(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[2];
    let mut t = ctx.lock_key(key);
    // Redis looks the key up before it reads the options.
    let s = info_stream(ctx, &mut t, key)?;
    let opts = &argv[3..];
    let sub = || CommandError::subcommand_syntax(argv, "XINFO");
    let full = !opts.is_empty();
    let mut count: usize = 10;
    if full {
        if (opts.len() != 1 && opts.len() != 3) || !opts[0].eq_ignore_ascii_case(b"full") {
            return Err(sub());
        }
        if opts.len() == 3 {
            if !opts[1].eq_ignore_ascii_case(b"count") {
                return Err(sub());
            }
            let n = super::args::int(&opts[2])?;
            count = if n < 0 { 10 } else { n as usize };
        }
    }
    let out = &mut *ctx.out;
    out.map(if full { 9 } else { 10 });
    out.bulk(b"length");
    out.int(s.len() as i64);
    out.bulk(b"radix-tree-keys");
    out.int(s.nodes() as i64);
    out.bulk(b"radix-tree-nodes");
    out.int(s.nodes() as i64 + 1);
    out.bulk(b"last-generated-id");
    reply_id(out, s.last_id);
    out.bulk(b"max-deleted-entry-id");
    reply_id(out, s.max_deleted);
    out.bulk(b"entries-added");
    out.int(s.entries_added as i64);
    out.bulk(b"recorded-first-entry-id");
    reply_id(out, s.recorded_first_id());
    let limit = if count == 0 { usize::MAX } else { count };
    if !full {
        out.bulk(b"groups");
        out.int(s.groups.len() as i64);
        for (label, rev) in [(&b"first-entry"[..], false), (b"last-entry", true)] {
            out.bulk(label);
            match s.range(StreamId::MIN, StreamId::MAX, rev).next() {
                Some((id, e)) => reply_entry(out, id, e),
                None => out.null(),
            }
        }
        return Ok(());
    }
    out.bulk(b"entries");
    let items: Vec<_> = s
        .range(StreamId::MIN, StreamId::MAX, false)
        .take(limit)
        .collect();
    out.array(items.len());
    for (id, e) in items {
        reply_entry(out, id, e);
    }
    out.bulk(b"groups");
    out.array(s.groups.len());
    for (name, g) in &s.groups {
        out.map(7);
        out.bulk(b"name");
        out.bulk(name);
        out.bulk(b"last-delivered-id");
        reply_id(out, g.last_id);
        out.bulk(b"entries-read");
        reply_entries_read(out, g);
        out.bulk(b"lag");
        reply_lag(out, s, g);
        out.bulk(b"pel-count");
        out.int(g.pel.len() as i64);
        out.bulk(b"pending");
        let pel: Vec<_> = g.pel.iter().take(limit).collect();
        out.array(pel.len());
        for (id, p) in pel {
            out.array(4);
            reply_id(out, *id);
            out.bulk(&p.consumer);
            out.int(p.delivery_time);
            out.int(p.delivery_count as i64);
        }
        out.bulk(b"consumers");
        out.array(g.consumers.len());
        for (cname, c) in &g.consumers {
            out.map(4);
            out.bulk(b"name");
            out.bulk(cname);
            out.bulk(b"seen-time");
            out.int(c.seen_time);
            out.bulk(b"pel-count");
            out.int(c.pel.len() as i64);
            out.bulk(b"pending");
            let ids: Vec<_> = c.pel.iter().take(limit).collect();
            out.array(ids.len());
            for id in ids {
                let p = &g.pel[id];
                out.array(3);
                reply_id(out, *id);
                out.int(p.delivery_time);
                out.int(p.delivery_count as i64);
            }
        }
    }
    Ok(())
}

fn xinfo_groups(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[2];
    let mut t = ctx.lock_key(key);
    let s = info_stream(ctx, &mut t, key)?;
    let out = &mut *ctx.out;
    out.array(s.groups.len());
    for (name, g) in &s.groups {
        out.map(6);
        out.bulk(b"name");
        out.bulk(name);
        out.bulk(b"consumers");
        out.int(g.consumers.len() as i64);
        out.bulk(b"pending");
        out.int(g.pel.len() as i64);
        out.bulk(b"last-delivered-id");
        reply_id(out, g.last_id);
        out.bulk(b"entries-read");
        reply_entries_read(out, g);
        out.bulk(b"lag");
        reply_lag(out, s, g);
    }
    Ok(())
}

fn xinfo_consumers(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[2];
    let now = ctx.now_ms;
    let mut t = ctx.lock_key(key);
    let s = info_stream(ctx, &mut t, key)?;
    let Some(g) = s.groups.get(&argv[3][..]) else {
        return Err(nogroup_for_key(key, &argv[3]));
    };
    let out = &mut *ctx.out;
    out.array(g.consumers.len());
    for (name, c) in &g.consumers {
        out.map(3);
        out.bulk(b"name");
        out.bulk(name);
        out.bulk(b"pending");
        out.int(c.pel.len() as i64);
        out.bulk(b"idle");
        out.int((now - c.seen_time).max(0));
    }
    Ok(())
}
