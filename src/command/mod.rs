//! The command table and dispatch.
//!
//! Each command is declared once, as a [`Spec`] row in its family's file
//! (`strings`, `keys`, `connection`, `server`, `cluster`): name, arity, flags,
//! key positions, ACL categories, a one-line summary and its handler. The
//! [`Table`] built from those rows is the only thing that resolves a name, and
//! [`prepare`] is the only place that enforces arity, authentication and ACL
//! permissions ([`acl_check`]; EXEC and scripts call it again for what they
//! run), so no handler repeats those checks. `COMMAND`, routing (key
//! positions), ACL categories and permissions, and replication all read the
//! same rows.
//!
//! A handler gets a [`Ctx`] and the arguments, parses them with an [`Args`]
//! cursor, locks the slots it touches through the keyspace, writes its reply
//! into `ctx.out` only once it knows it will succeed, and records its effects
//! (see `effects`) before dropping the locks. An `Err` is turned into a RESP
//! error by the dispatcher, never by the handler.

pub mod acl;
pub mod args;
pub mod bitmaps;
pub mod cluster;
pub mod connection;
pub mod element_scan;
pub mod functions;
pub mod geo;
pub mod hashes;
pub mod hyperloglog;
pub mod keys;
pub mod lists;
pub mod longdouble;
pub mod migrate;
pub mod pubsub;
pub mod replication;
pub mod scripting;
pub mod server;
pub mod sets;
pub mod sort;
pub mod streams;
pub mod strings;
pub mod transactions;
pub mod zsets;

use hashbrown::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;

pub use args::Args;

use crate::error::{truncated, CmdResult, CommandError};
use crate::keyspace::{key_hash_slot, Collection, Expiry, Lookup, Node, SlotId, SlotTable};
use crate::protocol::ReplyBuf;
use crate::server::client::Client;
use crate::server::Server;

/// Command flags, named as `COMMAND INFO` reports them.
pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const NOSCRIPT: u32 = 1 << 4;
    pub const LOADING: u32 = 1 << 5;
    pub const STALE: u32 = 1 << 6;
    pub const FAST: u32 = 1 << 7;
    pub const NO_AUTH: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const MAY_REPLICATE: u32 = 1 << 11;
    pub const ALLOW_BUSY: u32 = 1 << 12;
    pub const NO_MULTI: u32 = 1 << 13;
    pub const BLOCKING: u32 = 1 << 14;
    /// Shoal's own, not shown by COMMAND: runs at once even inside MULTI
    /// (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET).
    pub const NO_QUEUE: u32 = 1 << 15;
    /// Shoal's own: runs with the transaction gate held exclusively (EXEC).
    pub const EXCLUSIVE: u32 = 1 << 16;
    pub const PUBSUB: u32 = 1 << 17;
    /// Shoal's own: allowed to a RESP2 client in subscribed mode.
    pub const SUBSCRIBED_OK: u32 = 1 << 18;
    /// Shoal's own: on a sidecar, runs on the primary though it writes no
    /// key (MULTI, WATCH, WAIT and WAITAOF concern the connection's writes, which
    /// are there; a message PUBLISHed there reaches every subscriber).
    pub const ON_PRIMARY: u32 = 1 << 19;
    /// Refused while a replica loads a full sync in the background (Redis's
    /// repl-diskless-load swapdb); Shoal loads before serving, so it is
    /// only shown by COMMAND.
    pub const NO_ASYNC_LOADING: u32 = 1 << 20;
    /// Shoal's own: reads keys its arguments name by pattern (SORT_RO's
    /// BY and GET), which no key position tells; COMMAND shows it as
    /// `movablekeys`, as Redis does for such a command.
    pub const PATTERN_KEYS: u32 = 1 << 21;
    /// Runs only where `enable-debug-command` (DEBUG) or
    /// `enable-module-command` (MODULE LOAD/LOADEX/UNLOAD) allows.
    pub const PROTECTED: u32 = 1 << 22;
    /// May be called without keys though its row counts some (EVAL).
    pub const NO_MANDATORY_KEYS: u32 = 1 << 23;

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (NOSCRIPT, "noscript"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (SKIP_MONITOR, "skip_monitor"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (MAY_REPLICATE, "may_replicate"),
        (ALLOW_BUSY, "allow_busy"),
        (NO_MULTI, "no_multi"),
        (BLOCKING, "blocking"),
        (PUBSUB, "pubsub"),
        (NO_ASYNC_LOADING, "no_async_loading"),
        (NO_MANDATORY_KEYS, "no_mandatory_keys"),
    ];
}

/// Redis's key-specification flags: what a command does with a key.
/// COMMAND INFO and COMMAND GETKEYSANDFLAGS show them, and ACL reads
/// them: a key the command reads (`ACCESS`) needs a read pattern (`%R~`),
/// one it changes (`INSERT`, `DELETE`, `UPDATE`) a write pattern (`%W~`).
pub mod key_flags {
    /// Reads the key, or its metadata only when `ACCESS` is absent.
    pub const RO: u16 = 1 << 0;
    /// Reads and changes it.
    pub const RW: u16 = 1 << 1;
    /// Overwrites it whatever it held.
    pub const OW: u16 = 1 << 2;
    /// Removes it.
    pub const RM: u16 = 1 << 3;
    /// Returns what it holds (or part of it, or something derived).
    pub const ACCESS: u16 = 1 << 4;
    pub const UPDATE: u16 = 1 << 5;
    pub const INSERT: u16 = 1 << 6;
    pub const DELETE: u16 = 1 << 7;
    /// A name routed as a key but no key (a shard channel).
    pub const NOT_KEY: u16 = 1 << 8;
    /// Not every key is found by the positions (MIGRATE's KEYS).
    pub const INCOMPLETE: u16 = 1 << 9;
    /// The arguments decide ([`super::Spec::key_flags_for`]).
    pub const VARIABLE_FLAGS: u16 = 1 << 10;

    /// In the order and spelling Redis replies with.
    pub const NAMES: &[(u16, &str)] = &[
        (RO, "RO"),
        (RW, "RW"),
        (OW, "OW"),
        (RM, "RM"),
        (ACCESS, "access"),
        (UPDATE, "update"),
        (INSERT, "insert"),
        (DELETE, "delete"),
        (NOT_KEY, "not_key"),
        (INCOMPLETE, "incomplete"),
        (VARIABLE_FLAGS, "variable_flags"),
    ];
}

pub type Handler = fn(&mut Ctx, &[Bytes]) -> CmdResult;

/// Where keys named after an option word are, as COMMAND INFO describes
/// them (Redis's key specifications); finding them is the row's
/// `option_keys` or `keys_for`, which know the command's syntax.
#[derive(Debug, Clone, Copy)]
pub enum KeySearch {
    /// After the option `word`, looked for from argument `from` (negative:
    /// backwards from the end): keys up to `lastkey` (negative: counted
    /// from the end), every `step`-th, the first 1/`limit` of them when
    /// `limit` is above 1 (XREAD's keys, then as many IDs).
    Keyword {
        word: &'static str,
        from: i32,
        lastkey: i32,
        step: i32,
        limit: i32,
        flags: u16,
    },
    /// Only the command's own parsing finds them (SORT's BY and GET
    /// patterns, its STORE).
    Unknown { flags: u16 },
}

/// Finds the positions of keys named after option words (see
/// [`Spec::option_keys`]).
pub type OptionKeys = fn(&[&[u8]]) -> Vec<usize>;

/// Where a command's keys are: Redis's legacy (first, last, step) triple.
/// `last` is negative to count from the end; first == 0 means no keys.
/// `numkeys`, when not 0, is the position of a key count followed by that
/// many keys (LMPOP, ZUNIONSTORE's sources): Redis's "movablekeys".
///
/// `flags` is what the command does with its first key and `rest` with
/// every other (a STORE's sources, LMOVE's destination, SORT's STORE
/// key), as [`key_flags`]: Redis's key specifications, which split that
/// way for every command it has.
#[derive(Debug, Clone, Copy)]
pub struct KeyPos {
    pub first: i32,
    pub last: i32,
    pub step: i32,
    pub numkeys: i32,
    pub flags: u16,
    pub rest: u16,
}

pub const NO_KEYS: KeyPos = KeyPos {
    first: 0,
    last: 0,
    step: 0,
    numkeys: 0,
    flags: 0,
    rest: 0,
};

impl KeyPos {
    /// What the command does with each of its keys.
    pub const fn flags(self, flags: u16) -> KeyPos {
        KeyPos {
            flags,
            rest: flags,
            ..self
        }
    }

    /// What it does with every key but the first.
    pub const fn then(self, rest: u16) -> KeyPos {
        KeyPos { rest, ..self }
    }
}

/// One command's declaration.
pub struct Spec {
    /// Lower case; a subcommand's is `container|sub` (`config|get`).
    pub name: &'static str,
    /// Redis's convention: positive is exact, negative is a minimum (count
    /// includes the command name).
    pub arity: i32,
    pub flags: u32,
    pub keys: KeyPos,
    /// ACL categories beyond those the flags imply (without the `@`).
    pub acl: &'static [&'static str],
    pub group: &'static str,
    pub summary: &'static str,
    pub handler: Handler,
    pub subcommands: &'static [Spec],
    /// Keys named after an option word, which no fixed position says
    /// (SORT's and GEORADIUS's STORE): their positions, as Redis's
    /// per-command key extractors find them.
    pub option_keys: Option<OptionKeys>,
    /// The flags of one invocation, where they depend on its arguments
    /// (Redis's getCommandFlags): a script or function that declares its
    /// flags is judged by them (`scripting::ScriptFlags::command_flags`).
    pub flags_for: Option<fn(u32, &[Bytes]) -> u32>,
    /// Where the keys are, for a command whose arguments can move its
    /// fixed key elsewhere (MIGRATE's KEYS option replaces its key
    /// argument): replaces what `keys` and `option_keys` say, as Redis's
    /// per-command key extractor does; `keys` is still what COMMAND shows.
    pub keys_for: Option<OptionKeys>,
    /// The key flags of one invocation, for a row whose flags say
    /// `VARIABLE_FLAGS` (SET with or without GET).
    pub key_flags_for: Option<fn(&[Bytes]) -> u16>,
    /// How COMMAND INFO describes the keys `option_keys` or `keys_for`
    /// find.
    pub key_search: &'static [KeySearch],
}

impl Spec {
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    /// The flags this invocation runs with: the row's, or what the
    /// arguments make of them ([`Spec::flags_for`]).
    pub fn flags_of(&self, argv: &[Bytes]) -> u32 {
        match self.flags_for {
            Some(f) => f(self.flags, argv),
            None => self.flags,
        }
    }

    pub fn is_write(&self) -> bool {
        self.has(flags::WRITE)
    }

    /// All ACL categories: the declared ones plus those Redis derives from flags.
    pub fn acl_categories(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self.acl.to_vec();
        let derived = [
            (flags::WRITE, "write"),
            (flags::READONLY, "read"),
            (flags::ADMIN, "admin"),
            (flags::ADMIN, "dangerous"),
            (flags::BLOCKING, "blocking"),
        ];
        for (f, cat) in derived {
            // A read-only script may still be refused as a write by what
            // it calls: Redis files no scripting command under @read.
            let scripting = cat == "read" && self.acl.contains(&"scripting");
            if self.has(f) && !out.contains(&cat) && !scripting {
                out.push(cat);
            }
        }
        out.push(if self.has(flags::FAST) {
            "fast"
        } else {
            "slow"
        });
        out
    }

    /// What this invocation does with its `ordinal`-th key (in
    /// [`Spec::key_indexes`]' order). Keys a [`Spec::keys_for`] finds in
    /// place of the declared one are all like it (MIGRATE's KEYS).
    pub fn key_flags_of(&self, argv: &[Bytes], ordinal: usize) -> u16 {
        match self.key_flags_for {
            Some(f) => f(argv),
            None if ordinal == 0 || self.keys_for.is_some() => self.keys.flags,
            None => self.keys.rest,
        }
    }

    /// The keys of an invocation, by the declared positions.
    pub fn key_indexes<A: AsRef<[u8]>>(&self, argv: &[A]) -> Vec<usize> {
        if let Some(find) = self.keys_for {
            let words: Vec<&[u8]> = argv.iter().map(|a| a.as_ref()).collect();
            return find(&words);
        }
        let argc = argv.len();
        let k = self.keys;
        let mut out = Vec::new();
        if k.first > 0 && argc > k.first as usize {
            let last = if k.last < 0 {
                argc as i32 + k.last
            } else {
                k.last.min(argc as i32 - 1)
            };
            out.extend(
                (k.first..=last)
                    .step_by(k.step.max(1) as usize)
                    .map(|i| i as usize),
            );
        }
        if k.numkeys > 0 {
            let at = k.numkeys as usize;
            let n = argv
                .get(at)
                .and_then(|a| crate::protocol::request::parse_i64(a.as_ref()))
                .unwrap_or(0)
                .max(0) as usize;
            out.extend((at + 1..argc).take(n));
        }
        if let Some(find) = self.option_keys {
            let words: Vec<&[u8]> = argv.iter().map(|a| a.as_ref()).collect();
            out.extend(find(&words));
        }
        out
    }
}

/// Builds a spec row; `const` so families can declare `static` tables.
#[allow(clippy::too_many_arguments)]
pub const fn spec(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: KeyPos,
    acl: &'static [&'static str],
    group: &'static str,
    summary: &'static str,
    handler: Handler,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        acl,
        group,
        summary,
        handler,
        subcommands: &[],
        option_keys: None,
        keys_for: None,
        flags_for: None,
        key_flags_for: None,
        key_search: &[],
    }
}

pub const fn keys(first: i32, last: i32, step: i32) -> KeyPos {
    KeyPos {
        first,
        last,
        step,
        numkeys: 0,
        flags: 0,
        rest: 0,
    }
}

/// Keys counted by the argument at `numkeys` and following it, after the
/// fixed keys `first..=last` (none when `first` is 0).
pub const fn keys_counted(first: i32, last: i32, numkeys: i32) -> KeyPos {
    KeyPos {
        first,
        last,
        step: 1,
        numkeys,
        flags: 0,
        rest: 0,
    }
}

/// Every command, by lower-case name, and per-command statistics slots.
pub struct Table {
    /// Top-level names and `container|sub` names, to indexes in `all`.
    by_name: HashMap<&'static [u8], usize>,
    /// Top-level specs, then every subcommand, in one flat list: an index
    /// here is a command's identity for statistics and `CLIENT LIST cmd=`.
    pub all: Vec<&'static Spec>,
    /// How many of `all` are top-level (the subcommands follow).
    top: usize,
}

pub static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let families: [&'static [Spec]; 21] = [
        bitmaps::COMMANDS,
        hyperloglog::COMMANDS,
        sort::COMMANDS,
        transactions::COMMANDS,
        pubsub::COMMANDS,
        strings::COMMANDS,
        hashes::COMMANDS,
        lists::COMMANDS,
        sets::COMMANDS,
        zsets::COMMANDS,
        streams::COMMANDS,
        scripting::COMMANDS,
        functions::COMMANDS,
        geo::COMMANDS,
        keys::COMMANDS,
        migrate::COMMANDS,
        connection::COMMANDS,
        server::COMMANDS,
        replication::COMMANDS,
        cluster::COMMANDS,
        acl::COMMANDS,
    ];
    let mut all: Vec<&'static Spec> = families.iter().flat_map(|f| f.iter()).collect();
    let subs: Vec<&'static Spec> = all.iter().flat_map(|s| s.subcommands.iter()).collect();
    let top = all.len();
    all.extend(subs);
    let by_name = all
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_bytes(), i))
        .collect();
    Table { by_name, all, top }
});

impl Table {
    pub fn top_level(&self) -> impl Iterator<Item = &'static Spec> + '_ {
        self.all[..self.top].iter().copied()
    }

    /// The index in `all` of a command or subcommand, any case.
    pub fn index(&self, name: &[u8]) -> Option<usize> {
        let mut buf = [0u8; 64];
        if name.len() > buf.len() {
            return None;
        }
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        self.by_name.get(&*lower).copied()
    }

    /// A command or subcommand by name (`get`, `config|get`), any case.
    pub fn get(&self, name: &[u8]) -> Option<&'static Spec> {
        self.index(name).map(|i| self.all[i])
    }

    /// Resolves argv to a command or subcommand, checking arity. Returns the
    /// spec and its index in `all`.
    pub fn resolve(&self, argv: &[Bytes]) -> Result<(usize, &'static Spec), CommandError> {
        let Some(idx) = self.index(&argv[0]).filter(|&i| i < self.top) else {
            return Err(unknown_command(argv));
        };
        let spec = self.all[idx];
        check_arity(spec, argv.len())?;
        if spec.subcommands.is_empty() || argv.len() < 2 {
            return Ok((idx, spec));
        }
        let mut full = spec.name.as_bytes().to_vec();
        full.push(b'|');
        full.extend_from_slice(&argv[1]);
        // Redis's DEBUG is one command parsing its own words: an unknown
        // one or a wrong count gets the same answer.
        let debug_syntax = || CommandError::subcommand_syntax(argv, "DEBUG");
        match self.index(&full) {
            Some(i) if spec.name == "debug" => match check_arity(self.all[i], argv.len()) {
                Ok(()) => Ok((i, self.all[i])),
                Err(_) => Err(debug_syntax()),
            },
            Some(i) => {
                check_arity(self.all[i], argv.len())?;
                Ok((i, self.all[i]))
            }
            None if spec.name == "debug" => Err(debug_syntax()),
            None => Err(CommandError::UnknownSubcommand {
                sub: truncated(&argv[1], 128),
                container: spec.name.to_ascii_uppercase(),
            }),
        }
    }
}

fn check_arity(spec: &Spec, argc: usize) -> Result<(), CommandError> {
    let a = spec.arity;
    if (a > 0 && argc as i32 != a) || (a < 0 && (argc as i32) < -a) {
        return Err(CommandError::Arity(spec.name.to_string()));
    }
    Ok(())
}

fn unknown_command(argv: &[Bytes]) -> CommandError {
    // Redis's `'%.*s' ` loop: the quoted arguments together stop near 128
    // bytes, the last one cut to fit.
    let mut args = String::new();
    for a in argv.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        args.push_str(&format!("'{}' ", truncated(a, 128 - args.len())));
    }
    CommandError::UnknownCommand {
        name: truncated(&argv[0], 128),
        args,
    }
}

/// What a command asks the connection to do after its reply is written:
/// everything that must await lives here, so handlers stay synchronous.
#[derive(Debug)]
pub enum Action {
    /// Flush the reply, then close (QUIT, CLIENT KILL of oneself).
    Close,
    /// Turn this connection into a MONITOR stream.
    Monitor,
    /// Wait for one of these keys to be written, then run the command
    /// again (BLPOP and friends found nothing yet).
    Block(Block),
    /// Flush, then stop the server (SHUTDOWN).
    Shutdown,
    /// Become the feed of a replica (PSYNC, SYNC): the connection is the
    /// replication link from now on.
    Feed(crate::replication::primary::Psync),
    /// The client hung up or was killed while its command waited to run
    /// (CLIENT PAUSE): nothing ran, as Redis frees such a client.
    Gone,
    /// A sidecar's command for its primary (`replication::sidecar`):
    /// forwarded on the connection's upstream link. `blocks`: it may wait
    /// there (BLPOP), so the replies before it go out first. `echo`: it
    /// ran here already (SCRIPT LOAD), and the primary's reply is dropped.
    /// `run`: whether it may go out with other forwards, sent together
    /// (`sidecar::in_run`).
    Forward {
        blocks: bool,
        echo: bool,
        run: crate::replication::sidecar::InRun,
    },
    /// WAIT or WAITAOF: reply how far `offset` has got, once it is as far
    /// as `want` asks or at `deadline` (`None`: no time limit).
    Wait {
        offset: u64,
        want: WaitFor,
        deadline: Option<std::time::Instant>,
    },
}

/// What a WAIT or WAITAOF waits for, and how it is answered.
#[derive(Debug, Clone, Copy)]
pub enum WaitFor {
    /// WAIT: this many replicas received the writes (an integer reply).
    Received { replicas: usize },
    /// WAITAOF: this node's log (if `local`) and this many replicas' logs
    /// synced them (a reply of two integers).
    Synced { local: bool, replicas: usize },
}

impl WaitFor {
    /// Where `offset` has got: whether that is as far as wanted, and the
    /// counts (this node's log synced, replicas) to reply with.
    pub fn progress(self, server: &Server, offset: u64) -> (bool, bool, usize) {
        let r = &server.replication;
        match self {
            WaitFor::Received { replicas } => {
                let n = r.acked_at_least(offset);
                (n >= replicas, false, n)
            }
            WaitFor::Synced { local, replicas } => {
                let synced = server.log.fsynced_to(offset);
                let n = r.synced_at_least(offset);
                ((synced || !local) && n >= replicas, synced, n)
            }
        }
    }

    /// Writes the reply for these counts.
    pub fn reply(self, out: &mut ReplyBuf, local: bool, replicas: usize) {
        match self {
            WaitFor::Received { .. } => out.int(replicas as i64),
            WaitFor::Synced { .. } => {
                out.array(2);
                out.int(local as i64);
                out.int(replicas as i64);
            }
        }
    }
}

#[derive(Debug)]
pub struct Block {
    pub keys: Vec<Bytes>,
    /// When to give up; `None` waits for ever.
    pub deadline: Option<std::time::Instant>,
    /// The reply on timeout: a null array (BLPOP...) or a null bulk (BLMOVE).
    pub null_array: bool,
    /// The request to retry with, when not the one that blocked (a blocked
    /// XREAD's `$` stands for the IDs it meant when called).
    pub retry: Option<Vec<Bytes>>,
    /// A reader that takes nothing from the others (XREAD, XREADGROUP):
    /// woken for nothing, it hands the wake-up to the next waiter, since
    /// what it could not use may serve another. A pop that found nothing
    /// means the next in line would not find anything either.
    pub reader: bool,
}

/// Parses a blocking command's timeout (seconds, fractions allowed, 0 for
/// ever) into a deadline, with Redis's messages.
pub fn block_deadline(arg: &[u8]) -> Result<Option<std::time::Instant>, CommandError> {
    // Redis reads the seconds as a long double (hexadecimal included),
    // rounds the milliseconds up, and only then looks at the sign:
    // -0.0001 is 0, which blocks for ever.
    let secs = longdouble::LongDouble::parse(arg)
        .ok_or_else(|| CommandError::err("timeout is not a float or out of range"))?
        .to_f64();
    let ms = secs * 1000.0;
    if ms > i64::MAX as f64 {
        return Err(CommandError::err("timeout is out of range"));
    }
    let ms = ms.ceil();
    if ms < 0.0 {
        return Err(CommandError::err("timeout is negative"));
    }
    if ms == 0.0 {
        return Ok(None);
    }
    // Past what the clock can add, a deadline is as good as none.
    Ok(std::time::Instant::now().checked_add(Duration::from_millis(ms as u64)))
}

/// Parses WAIT's and WAITAOF's timeout (milliseconds, 0 for ever) into a
/// deadline, with Redis's messages.
pub fn wait_deadline(arg: &[u8]) -> Result<Option<std::time::Instant>, CommandError> {
    let ms = crate::protocol::request::parse_i64(arg)
        .ok_or_else(|| CommandError::err("timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(CommandError::err("timeout is negative"));
    }
    if ms == 0 {
        return Ok(None);
    }
    // Redis 7.2 refuses a deadline past what its clock can add.
    if ms > i64::MAX - crate::server::now_ms() {
        return Err(CommandError::err("timeout is out of range"));
    }
    Ok(std::time::Instant::now().checked_add(Duration::from_millis(ms as u64)))
}

/// Everything a handler can reach.
pub struct Ctx<'a> {
    pub server: &'a Server,
    pub client: &'a mut Client,
    pub out: &'a mut ReplyBuf,
    /// The command's clock, read once: every expiry decision of one command
    /// sees the same instant.
    pub now_ms: i64,
    pub action: Option<Action>,
    /// The keyspace notification of the next effect, when it is not the
    /// one its name implies (see [`Ctx::emit_as`]); `Some("")` sends none
    /// (an expiry's or eviction's `DEL`, notified as `expired`/`evicted`).
    pub event: std::cell::Cell<Option<&'static str>>,
    /// Keys deleted because their collection became empty: notified as
    /// `del` after the effect of the command that emptied them, as Redis
    /// orders them.
    pub emptied: std::cell::RefCell<Vec<Vec<u8>>>,
}

/// What a lookup does besides finding the key (Redis's lookup flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Counts as a use of the key: its access time, and its LFU counter
    /// under an LFU policy (not so Redis's LOOKUP_NOTOUCH).
    pub touch: bool,
    /// Counts a keyspace hit or miss.
    pub read: bool,
    /// A miss publishes a `keymiss` notification (not so LOOKUP_NONOTIFY).
    pub notify_miss: bool,
    /// Touches even for a CLIENT NO-TOUCH client (the TOUCH command).
    pub touch_always: bool,
}

impl Access {
    pub const WRITE: Access = Access {
        touch: true,
        read: false,
        notify_miss: false,
        touch_always: false,
    };
    pub const READ: Access = Access {
        touch: true,
        read: true,
        notify_miss: true,
        touch_always: false,
    };
    /// TOUCH: a read that is a use of the key whatever the client's mode.
    pub const TOUCH: Access = Access {
        touch: true,
        read: true,
        notify_miss: true,
        touch_always: true,
    };
    /// TYPE, EXISTS, TTL: a read that leaves the key as unused as it was.
    pub const PEEK: Access = Access {
        touch: false,
        read: true,
        notify_miss: true,
        touch_always: false,
    };
    /// OBJECT: a look at the key itself, never notified.
    pub const INSPECT: Access = Access {
        touch: false,
        read: true,
        notify_miss: false,
        touch_always: false,
    };
    /// Whether a destination is there before it is stored or deleted
    /// (the store itself counts as the use).
    pub const PROBE: Access = Access {
        touch: false,
        read: false,
        notify_miss: false,
        touch_always: false,
    };
}

impl<'a> Ctx<'a> {
    pub fn db(&self) -> usize {
        self.client.db
    }

    /// Locks the slot of one key in the current database.
    pub fn lock_key(&self, key: &[u8]) -> crate::keyspace::SlotGuard<'a> {
        let slot = match self.client.slot_hint {
            Some((ptr, len, slot)) if ptr == key.as_ptr() as usize && len == key.len() => slot,
            _ => key_hash_slot(key),
        };
        self.server.keyspace.db(self.client.db).lock_slot(slot)
    }

    /// Locks the slots of several keys of the current database, in order;
    /// [`KeyLocks::table_for`](crate::keyspace::KeyLocks::table_for) then
    /// finds each key's table.
    pub fn lock_keys<'k, K: AsRef<[u8]> + ?Sized + 'k>(
        &self,
        keys: impl Iterator<Item = &'k K>,
    ) -> crate::keyspace::KeyLocks<'a, 'k> {
        self.server
            .keyspace
            .lock_keys(self.client.db, keys.map(|k| k.as_ref()))
    }

    /// Records an effect in the current database. Call while holding the
    /// locks of the keys it touches.
    pub fn emit(&self, argv: &[&[u8]]) {
        self.emit_in(self.client.db, argv);
    }

    /// Records the command itself as its effect (for deterministic commands).
    pub fn emit_argv(&self, argv: &[Bytes]) {
        let db = self.client.db;
        let end = self.record(Some(db), argv);
        self.after_effect(Some(db), argv, end);
    }

    pub fn emit_in(&self, db: usize, argv: &[&[u8]]) {
        let end = self.record(Some(db), argv);
        self.after_effect(Some(db), argv, end);
    }

    /// Records an effect that belongs to no single database (FLUSHALL,
    /// SWAPDB, FUNCTION ...). The stream still puts it in the client's
    /// database, as Redis's does, so that a reader sees the same SELECTs.
    pub fn emit_global(&self, argv: &[&[u8]]) {
        let end = self.record(Some(self.client.db), argv);
        self.after_effect(None, argv, end);
    }

    /// Passes a command on to replicas that changes no key (PUBLISH, so
    /// that subscribers on replicas hear it, as in Redis). Only while some
    /// replica is fed: it would otherwise only fill the log. It goes in the
    /// client's database, as Redis sends it.
    pub fn propagate(&self, argv: &[&[u8]]) {
        if self.server.effects.feeds_replicas() {
            let end = self.record(Some(self.client.db), argv);
            if end > 0 {
                self.client.last_effect.set(end);
            }
        }
    }

    /// Appends an effect in database `db` (`None`: in none) if this context
    /// records (see [`Ctx::recording`]); returns the stream offset past it,
    /// or 0 when nothing was recorded yet. Inside EXEC or a script the
    /// first effect is held; a second one records `MULTI` (in the first's
    /// database, as Redis puts it: a SELECT comes before the MULTI, not
    /// inside), the held one and itself, so that the log and replicas apply
    /// the unit whole (see `transactions`); [`Ctx::end_unit`] closes it.
    fn record<A: AsRef<[u8]>>(&self, db: Option<usize>, argv: &[A]) -> u64 {
        if !self.recording() {
            return 0;
        }
        let effects = &self.server.effects;
        if self.client.exec_effects.get() != Some(false) {
            return effects.append_any(db, argv);
        }
        let mut held = self.client.held_effect.borrow_mut();
        match held.take() {
            None => {
                let copy = argv.iter().map(|a| Bytes::copy_from_slice(a.as_ref()));
                *held = Some((db, copy.collect()));
                0
            }
            Some((first_db, first)) => {
                self.client.exec_effects.set(Some(true));
                effects.append_any(first_db, &[b"MULTI"]);
                effects.append_any(first_db, &first);
                effects.append_any(db, argv)
            }
        }
    }

    /// Starts an EXEC's or a script's unit of effects (see [`Ctx::record`]).
    pub(super) fn start_unit(&self) {
        self.client.exec_effects.set(Some(false));
    }

    /// Ends the unit: `EXEC` closes a wrapped one (always: a MULTI in the
    /// stream must not stay open); a lone held effect is recorded as it
    /// is, unless the node turned replica meanwhile (REPLICAOF inside
    /// EXEC), as Redis's replicas hear nothing of such a transaction.
    pub(super) fn end_unit(&self) {
        let held = self.client.held_effect.take();
        let end = match self.client.exec_effects.take() {
            Some(true) => self.server.effects.append_global(&[b"EXEC"]),
            _ => match held {
                Some((db, argv)) if self.recording() => self.server.effects.append_any(db, &argv),
                _ => 0,
            },
        };
        if end > 0 {
            self.client.last_effect.set(end);
        }
    }

    /// Whether effects go to the stream: not when applying a primary's
    /// stream, whose own bytes are appended instead (`replication`). The
    /// hooks on effects (WATCH, blocked clients, notifications) run either
    /// way.
    fn recording(&self) -> bool {
        // On a replica only its primary's stream changes what the stream
        // carries; a writable replica's (`replica-read-only no`) own writes
        // stay local, as in Redis, and are not logged. Loading (the log at
        // start-up, a full sync's snapshot) records as a primary does.
        !self.client.from_primary
            && (!self.server.replication.is_replica() || self.server.loading.load(Relaxed))
    }

    /// Every effect (unless unsignalled) publishes its keyspace
    /// notifications, touches WATCHed keys, wakes clients blocked on its
    /// keys and invalidates tracking clients' copies; each costs one load
    /// when nobody listens, watches, waits or tracks.
    fn after_effect<A: AsRef<[u8]>>(&self, db: Option<usize>, argv: &[A], end: u64) {
        if end > 0 {
            self.client.last_effect.set(end);
        }
        if self.event.get() == Some(UNSIGNALLED) {
            return;
        }
        if let Some(db) = db {
            let n = &self.server.notifier;
            if n.wants(u32::MAX) {
                let mut created = Vec::new();
                if n.wants(crate::server::notify::NEW) {
                    created = crate::keyspace::table::take_created();
                }
                let event = self.event.get();
                // Redis tells of a key as it adds it: before the command's
                // own events, but amid those of MSET and SMOVE, which add
                // keys as they go (see `notify_effect`'s `fresh`).
                let name = argv[0].as_ref();
                let amid = event.is_none()
                    && (name.eq_ignore_ascii_case(b"mset") || name.eq_ignore_ascii_case(b"smove"));
                let mut fresh = Vec::new();
                if amid {
                    fresh = created;
                } else {
                    // A key MOVEd or COPYed to another database is new there.
                    let to = target_db(argv, db).unwrap_or(db);
                    notify_new(self.server, to, created, self.now_ms);
                }
                if event != Some("") {
                    let mut emptied = self.emptied.borrow_mut();
                    let now = self.now_ms;
                    notify_effect(self.server, db, argv, event, now, &mut emptied, &mut fresh);
                }
                notify_new(self.server, db, fresh, self.now_ms);
                for key in self.emptied.borrow_mut().drain(..) {
                    let generic = crate::server::notify::GENERIC;
                    n.notify(&self.server.pubsub, generic, "del", db, &key, self.now_ms);
                }
            }
        }
        let (w, b) = (&self.server.watches, &self.server.blocked);
        let tracking = self.server.tracking.active();
        if w.is_empty() && b.is_empty() && !tracking {
            return;
        }
        // A full sync's snapshot starts with FLUSHALL, which tells every
        // tracking client; its keys then arrive as writes, which must not
        // each be sent again (to BCAST clients, a million keys at once).
        let per_key = tracking && !self.server.loading.load(Relaxed);
        // A DEL effect (an expiry's included) leaves its keys gone.
        let deleted = argv[0].as_ref().eq_ignore_ascii_case(b"del");
        touched_by(db, argv, |t| match t {
            Touched::Key(db, key) => {
                w.touch(db, key, deleted);
                b.signal(db, key);
                if per_key {
                    self.invalidate(Some(key));
                }
            }
            // Watches were touched by the command itself, before the keys
            // went (`Watches::touch_existing`).
            Touched::Db(db, flushed) => {
                b.signal_db(db);
                if tracking && flushed {
                    self.invalidate(None);
                }
            }
        });
    }

    /// Tells tracking clients that `key` changed (`None`: a flush); this
    /// client itself is told after its reply.
    fn invalidate(&self, key: Option<&[u8]>) {
        let (t, clients, me) = (&self.server.tracking, &self.server.clients, self.client.id);
        let own = match key {
            Some(k) => {
                let mut staged = self.client.bcast_staged.borrow_mut();
                t.invalidate(clients, k, me, staged.as_mut())
            }
            None => t.flushed(clients, me),
        };
        if own {
            let key = key.map(Bytes::copy_from_slice);
            self.client.invalidated.borrow_mut().push(key);
        }
    }

    /// Finds a live key for a write, expiring it (and recording `DEL`) if due.
    pub fn lookup<'t>(&self, t: &'t mut SlotTable, key: &[u8]) -> Option<&'t mut Node> {
        self.lookup_in(self.client.db, t, key)
    }

    pub fn lookup_in<'t>(
        &self,
        db: usize,
        t: &'t mut SlotTable,
        key: &[u8],
    ) -> Option<&'t mut Node> {
        self.lookup_as(db, t, key, Access::WRITE)
    }

    /// A lookup as Redis's flags shape it: whether it counts as a use of
    /// the key (access time, LFU counter), as a read (keyspace hit or
    /// miss), and whether a miss is notified (`keymiss`).
    pub fn lookup_as<'t>(
        &self,
        db: usize,
        t: &'t mut SlotTable,
        key: &[u8],
        access: Access,
    ) -> Option<&'t mut Node> {
        let touch =
            access.touch && (access.touch_always || !self.client.handle.no_touch.load(Relaxed));
        let found = match t.lookup_with(key, self.now_ms, self.expiry(), touch) {
            Lookup::Found(n) => {
                if touch && self.server.tun.policy().is_lfu() {
                    n.lfu_touch(self.now_ms, self.server.tun.lfu());
                }
                Some(n)
            }
            Lookup::Missing => None,
            Lookup::Expired => {
                self.expired(db, key);
                None
            }
        };
        if access.read {
            self.server.stats.hit_or_miss(found.is_some());
            if found.is_none() && access.notify_miss {
                self.server.notifier.notify(
                    &self.server.pubsub,
                    crate::server::notify::KEY_MISS,
                    "keymiss",
                    db,
                    key,
                    self.now_ms,
                );
            }
        }
        found
    }

    /// Whether a live key is at `key` (expiring it if due), without using
    /// it: a destination about to be stored or deleted.
    pub fn probe(&self, t: &mut SlotTable, key: &[u8]) -> bool {
        self.lookup_as(self.client.db, t, key, Access::PROBE)
            .is_some()
    }

    /// Stores a value at `key`, replacing any (see [`SlotTable::set`]). A
    /// replaced key is used, as Redis's `setKey` looks it up: under an LFU
    /// policy its counter, kept, goes up.
    #[inline]
    pub fn store<'t>(
        &self,
        t: &'t mut SlotTable,
        key: &[u8],
        value: crate::keyspace::Value,
        keep_ttl: bool,
    ) -> &'t mut Node {
        let lfu = self.server.tun.policy().is_lfu()
            && !self.client.handle.no_touch.load(Relaxed)
            && t.peek(key).is_some_and(|n| !n.is_expired(self.now_ms));
        let n = t.set(key, value, self.now_ms, keep_ttl);
        if lfu {
            n.lfu_touch(self.now_ms, self.server.tun.lfu());
        }
        n
    }

    /// Whether this command replays recorded effects (the log at start-up,
    /// a primary's stream), which see keys as they were when recorded.
    pub fn replaying(&self) -> bool {
        self.expiry() == Expiry::Keep
    }

    /// Whether a lookup would see `n` (after it has expired what is due): a
    /// key past its time is hidden, except from a replay of recorded
    /// effects, which sees keys as they were when recorded.
    pub fn visible(&self, n: &crate::keyspace::Node) -> bool {
        self.replaying() || !n.is_expired(self.now_ms)
    }

    /// What lookups do with keys past their time: a primary deletes them;
    /// a replica hides them from readers and leaves them to its primary's
    /// `DEL`; the primary's stream and the log's replay see them as they
    /// were when the commands were recorded.
    fn expiry(&self) -> Expiry {
        if self.client.from_primary || self.server.loading.load(Relaxed) {
            Expiry::Keep
        } else if self.server.replication.is_replica()
            || self.server.pause.writes_paused(self.now_ms)
        {
            // While writes are paused (CLIENT PAUSE, FAILOVER) the stream
            // stands still: an expired key is hidden, deleted later.
            Expiry::Hide
        } else {
            Expiry::Remove
        }
    }

    /// Like [`Ctx::lookup`], and counts a keyspace hit or miss as a read.
    pub fn lookup_read<'t>(&self, t: &'t mut SlotTable, key: &[u8]) -> Option<&'t mut Node> {
        self.lookup_as(self.client.db, t, key, Access::READ)
    }

    /// Records a key that was found expired and removed.
    pub fn expired(&self, db: usize, key: &[u8]) {
        self.server.stats.expired_keys.add(1);
        // Its notification is `expired`, not the `del` its effect implies.
        self.event.set(Some(""));
        self.emit_in(db, &[b"DEL", key]);
        self.event.set(None);
        self.server.notifier.notify(
            &self.server.pubsub,
            crate::server::notify::EXPIRED,
            "expired",
            db,
            key,
            self.now_ms,
        );
    }

    /// A collection of type `C` at `key` for reading (counts a hit or
    /// miss): `None` if there is no such key, `WRONGTYPE` if it holds
    /// another type.
    pub fn read<'t, C: Collection>(
        &self,
        t: &'t mut SlotTable,
        key: &[u8],
    ) -> Result<Option<&'t mut C>, CommandError> {
        match self.lookup_read(t, key) {
            Some(n) => C::of(&mut n.value).map(Some).ok_or(CommandError::WrongType),
            None => Ok(None),
        }
    }

    /// Like [`Ctx::read`], for a write (no hit/miss counted).
    pub fn write<'t, C: Collection>(
        &self,
        t: &'t mut SlotTable,
        key: &[u8],
    ) -> Result<Option<&'t mut C>, CommandError> {
        match self.lookup(t, key) {
            Some(n) => C::of(&mut n.value).map(Some).ok_or(CommandError::WrongType),
            None => Ok(None),
        }
    }

    /// A blocking command's look-up of a key it waits on: while it is
    /// retried after a wake-up (`Client::block_retry`), a key of another
    /// type counts as absent, so its client keeps waiting.
    pub fn waited<T>(
        &self,
        found: Result<Option<T>, CommandError>,
    ) -> Result<Option<T>, CommandError> {
        match found {
            Err(CommandError::WrongType) if self.client.block_retry => Ok(None),
            r => r,
        }
    }

    /// The collection at `key`, created empty if the key does not exist.
    /// A caller that may leave it empty must call [`Ctx::remove_if_empty`].
    pub fn write_or_create<'t, C: Collection>(
        &self,
        t: &'t mut SlotTable,
        key: &[u8],
    ) -> Result<&'t mut C, CommandError> {
        let exists = match self.lookup(t, key) {
            Some(n) if n.value.kind() != C::KIND => return Err(CommandError::WrongType),
            Some(_) => true,
            None => false,
        };
        let node = if exists {
            t.get_mut(key)
                .expect("found just above, under the same lock")
        } else {
            t.set(key, C::default().into_value(), self.now_ms, false)
        };
        Ok(C::of(&mut node.value).expect("type checked above"))
    }

    /// Deletes a key whose collection is now empty: Redis never keeps an
    /// empty list, set, hash or sorted set.
    pub fn remove_if_empty<C: Collection>(&self, t: &mut SlotTable, key: &[u8]) {
        let empty = t
            .get_mut(key)
            .and_then(|n| C::of(&mut n.value).map(|c| c.count() == 0))
            .unwrap_or(false);
        if empty {
            t.remove(key);
            if self.server.notifier.wants(crate::server::notify::GENERIC) {
                self.emptied.borrow_mut().push(key.to_vec());
            }
        }
    }

    /// Replies how many elements the collection at `key` holds (0 if
    /// there is none): LLEN, HLEN, SCARD, ZCARD.
    pub fn reply_count<C: Collection>(&mut self, key: &[u8]) -> CmdResult {
        let mut t = self.lock_key(key);
        let n = self.read::<C>(&mut t, key)?.map_or(0, |c| c.count());
        self.out.int(n as i64);
        Ok(())
    }

    /// Removes `argv[2..]` from the collection at `argv[1]` with `remove`
    /// (which says how many were there), deletes the key once empty,
    /// records the command if anything went and replies how many did:
    /// HDEL, SREM, ZREM.
    pub fn remove_members<C: Collection>(
        &mut self,
        argv: &[Bytes],
        remove: impl Fn(&mut C, &[Bytes]) -> usize,
    ) -> CmdResult {
        let key = &argv[1];
        let mut t = self.lock_key(key);
        let removed = match self.write::<C>(&mut t, key)? {
            Some(c) => remove(c, &argv[2..]),
            None => 0,
        };
        if removed > 0 {
            self.remove_if_empty::<C>(&mut t, key);
            self.emit_argv(argv);
        }
        self.out.int(removed as i64);
        Ok(())
    }

    /// Pops from the first of `keys` that holds a `C` (LMPOP, BLPOP,
    /// ZMPOP, BZPOPMIN...). Every key is locked at once, so which one is
    /// first is decided atomically, as Redis's single thread decides it.
    /// `pop` takes the elements; the key goes if emptied; `op key [n]` is
    /// recorded (`n`, how many, when `counted`). Returns the key and what
    /// was popped, or `None` if no key holds anything.
    pub fn pop_first<'k, C: Collection, R>(
        &self,
        keys: &'k [Bytes],
        op: &[u8],
        counted: bool,
        pop: impl FnOnce(&mut C) -> Vec<R>,
    ) -> Result<Option<(&'k Bytes, Vec<R>)>, CommandError> {
        let mut locked = self.lock_keys(keys.iter());
        let db = self.db();
        for key in keys {
            let t = locked.table_for(db, key);
            let Some(c) = self.waited(self.write::<C>(t, key))? else {
                continue;
            };
            let popped = pop(c);
            self.remove_if_empty::<C>(t, key);
            let mut n = itoa::Buffer::new();
            let n = n.format(popped.len()).as_bytes();
            if counted {
                self.emit(&[op, key, n]);
            } else {
                self.emit(&[op, key]);
            }
            return Ok(Some((key, popped)));
        }
        Ok(None)
    }

    /// Records an effect that Redis makes without telling anyone: no
    /// notification, WATCH, wake-up or invalidation (a BITFIELD whose
    /// writes were all refused, which still created or grew its key).
    pub fn emit_unsignalled(&self, argv: &[Bytes]) {
        self.event.set(Some(UNSIGNALLED));
        self.emit_argv(argv);
        self.event.set(None);
    }

    /// [`Ctx::emit_unsignalled`] for an effect that is not the command
    /// itself (a stream group's read, recorded as the XCLAIMs it did).
    pub fn emit_as_unsignalled(&self, argv: &[&[u8]]) {
        self.event.set(Some(UNSIGNALLED));
        self.emit(argv);
        self.event.set(None);
    }

    /// Records effects that are one change (a group read's claims and
    /// position) in database `db`: at once, in MULTI ... EXEC when more
    /// than one (see `EffectStream::append_unit`), while the caller still
    /// holds the slot locks; inside EXEC or a script, as part of its unit.
    /// Their hooks are the caller's to run (`signal_as`); these are
    /// recorded as Redis propagates them, unsignalled.
    pub fn record_unit(&self, db: usize, unit: &[Vec<Vec<u8>>]) {
        if unit.is_empty() || !self.recording() {
            return;
        }
        let end = if self.client.exec_effects.get().is_some() {
            unit.iter()
                .map(|argv| self.record(Some(db), argv))
                .max()
                .unwrap_or(0)
        } else {
            self.server.effects.append_unit(Some(db), unit)
        };
        if end > 0 {
            self.client.last_effect.set(end);
        }
    }

    /// Tells of a change that changed nothing, as Redis tells of some
    /// (an LTRIM that kept every element still notifies `ltrim`, touches
    /// WATCH and invalidates tracking): the hooks of an effect, without
    /// recording one, since there is nothing to replay.
    pub fn signal_unrecorded(&self, argv: &[Bytes]) {
        self.after_effect(Some(self.client.db), argv, 0);
    }

    /// The hooks of an effect told as `event`, its record left to come
    /// later or not at all (a consumer XREADGROUP creates: its XCLAIMs
    /// create it on replicas).
    pub fn signal_as(&self, event: &'static str, argv: &[&[u8]]) {
        self.event.set(Some(event));
        self.after_effect(Some(self.client.db), argv, 0);
        self.event.set(None);
    }

    /// Records a STORE form: an empty result deleted the destination,
    /// which Redis tells as its `del` rather than as the STORE.
    pub fn emit_stored(&self, argv: &[Bytes], empty: bool) {
        if empty {
            self.event.set(Some("del"));
        }
        self.emit_argv(argv);
        self.event.set(None);
    }

    /// Records an effect whose keyspace notification is `event` rather
    /// than the one its name implies (INCRBYFLOAT recorded as SET, SPOP as
    /// SREM...); `""` for none.
    pub fn emit_as(&self, event: &'static str, argv: &[&[u8]]) {
        self.event.set(Some(event));
        self.emit(argv);
        self.event.set(None);
    }

    /// A blocking command found nothing: wait for its keys, or, where a
    /// client cannot block (inside EXEC), reply as if it timed out.
    pub fn block(
        &mut self,
        keys: &[Bytes],
        deadline: Option<std::time::Instant>,
        null_array: bool,
    ) {
        if self.client.exec_effects.get().is_some() {
            if null_array {
                self.out.null_array();
            } else {
                self.out.null();
            }
            return;
        }
        self.action = Some(Action::Block(Block {
            keys: keys.to_vec(),
            deadline,
            null_array,
            retry: None,
            reader: false,
        }));
    }

    /// Like [`Ctx::block`] for a reader (see [`Block::reader`]) that is
    /// retried as `retry` and replies a null array on timeout (XREAD,
    /// XREADGROUP).
    pub fn block_reader(
        &mut self,
        keys: &[Bytes],
        deadline: Option<std::time::Instant>,
        retry: Vec<Bytes>,
    ) {
        self.block(keys, deadline, true);
        if let Some(Action::Block(b)) = &mut self.action {
            b.retry = Some(retry);
            b.reader = true;
        }
    }

    /// Before a command: with `maxmemory` set and passed, evict keys by
    /// `maxmemory-policy` until back under it, or say `-OOM` (noeviction,
    /// or nothing left to evict), which refuses commands that may grow
    /// memory.
    pub fn make_room(&self) -> Result<(), CommandError> {
        let server = self.server;
        let max = server.tun.maxmemory.load(Relaxed) as u64;
        // A replica's memory follows its primary's data, as with Redis's
        // replica-ignore-maxmemory.
        if server.loading.load(Relaxed)
            || self.client.from_primary
            || server.replication.is_replica()
        {
            return Ok(());
        }
        // Over by this thread's count: confirmed by the allocator's own
        // figure before anything is evicted or refused.
        if server.counted_memory(server.used_memory(self.now_ms)) <= max
            || server.counted_memory(server.used_memory_fresh(self.now_ms)) <= max
        {
            server.eviction_time.under(self.now_ms);
            return Ok(());
        }
        server.eviction_time.over(self.now_ms);
        let started = std::time::Instant::now();
        let r = self.evict_to(max);
        let ms = started.elapsed().as_millis() as u64;
        server.latency.observe("eviction-cycle", ms);
        r
    }

    /// Evicts by `maxmemory-policy` until the memory `maxmemory` counts
    /// is back under `max`.
    fn evict_to(&self, max: u64) -> Result<(), CommandError> {
        let server = self.server;
        let oom =
            || CommandError::err_code("OOM command not allowed when used memory > 'maxmemory'.");
        let policy = server.tun.policy();
        let samples = server.tun.maxmemory_samples.load(Relaxed).max(1) as usize;
        // Bounded work per command, as Redis's eviction tenacity bounds it:
        // a command never stalls for long, and the next one continues.
        let mut evicted_any = false;
        for _ in 0..128 {
            let Some((db, slot, key)) = server.keyspace.eviction_candidate(
                &server.eviction_pool,
                policy,
                samples,
                self.now_ms,
                server.tun.lfu(),
            ) else {
                break;
            };
            let mut t = server.keyspace.db(db).lock_slot(slot);
            let Some(node) = t.remove(&key) else {
                continue;
            };
            server.stats.evicted_keys.add(1);
            evicted_any = true;
            self.event.set(Some(""));
            self.emit_in(db, &[b"DEL", &key]);
            self.event.set(None);
            drop(t);
            // Freed here, on this thread: `used_memory` counts it at once.
            drop(node);
            server.notifier.notify(
                &server.pubsub,
                crate::server::notify::EVICTED,
                "evicted",
                db,
                &key,
                self.now_ms,
            );
            if server.counted_memory(server.used_memory(self.now_ms)) <= max {
                return Ok(());
            }
        }
        // As in Redis, a command is refused only when nothing could be
        // evicted; while evictions make progress, writes go on (freed
        // memory can take a moment to show in the allocator's count).
        if evicted_any || server.counted_memory(server.used_memory(self.now_ms)) <= max {
            Ok(())
        } else {
            Err(oom())
        }
    }

    /// The compact-encoding limits now configured.
    pub fn encodings(&self) -> crate::keyspace::Encodings {
        self.server.tun.encodings()
    }

    pub fn slot(key: &[u8]) -> SlotId {
        key_hash_slot(key)
    }
}

/// Whether a FAILOVER made this node a replica while a write that takes
/// the gate in its handler (EXEC, FUNCTION LOAD...) waited for it, past
/// the role checks made before: such a write is refused with -READONLY
/// as it would have been had it waited for the failover's pause. Never
/// for a replay (a primary's stream, the log loading at start-up).
pub(super) fn handed_over(ctx: &Ctx) -> bool {
    !ctx.replaying() && replica_refuses_writes(ctx.server)
}

/// Whether this node is a replica that refuses its clients' writes
/// (`replica-read-only`; a sidecar forwards them to its primary instead).
fn replica_refuses_writes(server: &Server) -> bool {
    let repl = &server.replication;
    repl.is_replica() && !repl.sidecar && server.tun.replica_read_only.load(Relaxed)
}

/// Before a command, a tracking table over a lowered
/// `tracking-table-max-keys` forgets some keys (Redis's 100 a command),
/// telling their readers; this client's own go with [`tell_first`].
fn keep_tracking_table_within(ctx: &mut Ctx) {
    let server = ctx.server;
    let max = server.tun.tracking_max_keys();
    let own = server
        .tracking
        .limit(&server.clients, max, 100, ctx.client.id);
    if !own.is_empty() {
        let mut pending = ctx.client.invalidated.borrow_mut();
        pending.extend(own.into_iter().map(Some));
    }
}

/// Keys forgotten or evicted before a command runs were not its doing: a
/// client tracking them hears of them before the command's reply, as from
/// Redis (its own writes' invalidations follow the reply). `from`: how
/// many invalidations were pending before.
fn tell_first(ctx: &mut Ctx, from: usize) {
    let before = ctx.client.invalidated.borrow_mut().split_off(from);
    if !before.is_empty() {
        let subscribed = ctx.client.subscribed();
        let (tracking, clients) = (&ctx.server.tracking, &ctx.server.clients);
        tracking.deliver_own(clients, ctx.client.id, before, ctx.out, subscribed);
    }
}

/// `Ctx::event` for an effect that is recorded and nothing else.
const UNSIGNALLED: &str = "\0unsignalled";

/// What an effect changed: one key, or a whole database (`None`: all),
/// emptied (`true`, a flush) or swapped with another.
enum Touched<'a> {
    Key(usize, &'a [u8]),
    Db(Option<usize>, bool),
}

/// Calls `f` for what an effect changes, found from the effect's own
/// command row (its key positions), so no write command lists its keys
/// twice; the few commands that also read keys name their destination.
fn touched_by<A: AsRef<[u8]>>(db: Option<usize>, argv: &[A], mut f: impl FnMut(Touched)) {
    let name = argv[0].as_ref().to_ascii_lowercase();
    let db_arg = |i: usize| {
        argv.get(i)
            .and_then(|a| crate::protocol::request::parse_i64(a.as_ref()))
            .map(|d| d as usize)
    };
    match name.as_slice() {
        b"flushall" => f(Touched::Db(None, true)),
        b"flushdb" => f(Touched::Db(db, true)),
        b"swapdb" => {
            f(Touched::Db(db_arg(1), false));
            f(Touched::Db(db_arg(2), false));
        }
        // In the database its DB option names.
        b"copy" => {
            if let (Some(db), Some(dst)) = (db, argv.get(2)) {
                f(Touched::Key(copy_db(argv, db), dst.as_ref()));
            }
        }
        _ => {
            let (Some(db), Some(spec)) = (db, effect_spec(&name, argv)) else {
                return;
            };
            for i in written_keys(&name, spec, argv) {
                f(Touched::Key(db, argv[i].as_ref()));
            }
            if let (b"move", Some(to)) = (name.as_slice(), db_arg(2)) {
                f(Touched::Key(to, argv[1].as_ref()));
            }
        }
    }
}

/// The row of an effect's command (`name`, lower case): its subcommand's
/// for a container (`XGROUP CREATE` is `xgroup|create`).
fn effect_spec<A: AsRef<[u8]>>(name: &[u8], argv: &[A]) -> Option<&'static Spec> {
    let spec = TABLE.get(name)?;
    if spec.subcommands.is_empty() {
        return Some(spec);
    }
    let sub = argv.get(1)?.as_ref();
    let mut full = name.to_vec();
    full.push(b'|');
    full.extend_from_slice(sub);
    TABLE.get(&full)
}

/// Positions of the keys an effect changes: its row's key positions, but
/// where a command also reads keys, only its destination, as Redis
/// signals it (COPY, BITOP, PFMERGE, the STORE forms).
fn written_keys<A: AsRef<[u8]>>(name: &[u8], spec: &Spec, argv: &[A]) -> Vec<usize> {
    let dst = match name {
        b"copy" | b"bitop" => 2,
        b"pfmerge" => 1,
        _ if name.ends_with(b"store") => 1,
        _ => return spec.key_indexes(argv),
    };
    (dst < argv.len()).then_some(dst).into_iter().collect()
}

/// Tells of keys added to `db` (class `n`, Redis's dbAdd event).
fn notify_new(server: &Server, db: usize, keys: Vec<Vec<u8>>, now_ms: i64) {
    for key in keys {
        let new = crate::server::notify::NEW;
        server
            .notifier
            .notify(&server.pubsub, new, "new", db, &key, now_ms);
    }
}

/// The database a MOVE or COPY puts its key in (see [`copy_db`]); `None`
/// for any other command.
fn target_db<A: AsRef<[u8]>>(argv: &[A], db: usize) -> Option<usize> {
    let name = argv[0].as_ref();
    if name.eq_ignore_ascii_case(b"move") {
        argv.get(2)
            .and_then(|a| crate::protocol::request::parse_i64(a.as_ref()))
            .map(|d| d as usize)
    } else if name.eq_ignore_ascii_case(b"copy") {
        Some(copy_db(argv, db))
    } else {
        None
    }
}

/// The database a COPY writes to: its `DB` option's, or the current one.
fn copy_db<A: AsRef<[u8]>>(argv: &[A], db: usize) -> usize {
    (3..argv.len())
        .find(|&i| argv[i].as_ref().eq_ignore_ascii_case(b"db"))
        .and_then(|i| argv.get(i + 1))
        .and_then(|a| crate::protocol::request::parse_i64(a.as_ref()))
        .map_or(db, |d| d as usize)
}

/// Publishes the keyspace notifications of one effect (see
/// `server::notify`): the class from the effect command's family, the
/// event from its name, with Redis's names where they differ. Keys in
/// `fresh` are told `new` right before their first event, and taken out.
fn notify_effect<A: AsRef<[u8]>>(
    server: &Server,
    db: usize,
    argv: &[A],
    event: Option<&str>,
    now_ms: i64,
    emptied: &mut Vec<Vec<u8>>,
    fresh: &mut Vec<Vec<u8>>,
) {
    use crate::server::notify::*;
    let name = argv[0].as_ref().to_ascii_lowercase();
    let Some(spec) = effect_spec(&name, argv) else {
        return;
    };
    let class = match spec.group {
        // Redis files bitmaps and HyperLogLogs under strings.
        "string" | "bitmap" | "hyperloglog" => STRING,
        "list" => LIST,
        "set" => SET,
        "hash" => HASH,
        "sorted-set" => ZSET,
        "stream" => STREAM,
        "generic" => GENERIC,
        _ => return,
    };
    let n = &server.notifier;
    // A key in `fresh` is told new right before its first event here.
    let mut send = |class: u32, event: &str, key: &[u8]| {
        if let Some(i) = fresh.iter().position(|k| k == key) {
            fresh.swap_remove(i);
            n.notify(&server.pubsub, NEW, "new", db, key, now_ms);
        }
        n.notify(&server.pubsub, class, event, db, key, now_ms)
    };
    let arg = |i: usize| argv.get(i).map_or(&b""[..], |a| a.as_ref());
    let end_word = |i: usize, pop: bool| match (arg(i).eq_ignore_ascii_case(b"left"), pop) {
        (true, true) => "lpop",
        (false, true) => "rpop",
        (true, false) => "lpush",
        (false, false) => "rpush",
    };
    if let Some(event) = event {
        // A deletion is a generic event whatever the type.
        let class = if event == "del" { GENERIC } else { class };
        for i in written_keys(&name, spec, argv) {
            send(class, event, argv[i].as_ref());
        }
        return;
    }
    match name.as_slice() {
        b"rename" => {
            send(GENERIC, "rename_from", arg(1));
            send(GENERIC, "rename_to", arg(2));
        }
        b"copy" => n.notify(
            &server.pubsub,
            GENERIC,
            "copy_to",
            copy_db(argv, db),
            arg(2),
            now_ms,
        ),
        b"move" => {
            send(GENERIC, "move_from", arg(1));
            if let Some(to) = target_db(argv, db) {
                n.notify(&server.pubsub, GENERIC, "move_to", to, arg(1), now_ms);
            }
        }
        // The push is told first, as Redis does.
        b"lmove" => {
            send(LIST, end_word(4, false), arg(2));
            send(LIST, end_word(3, true), arg(1));
        }
        // A refreshed cached count: no event.
        b"pfcount" => {}
        b"pfmerge" => send(STRING, "pfadd", arg(1)),
        // ZADD ... INCR is told as an increment, a new member's too.
        b"zadd" => {
            let incr = argv[2..]
                .iter()
                .map(AsRef::as_ref)
                .take_while(|a: &&[u8]| {
                    [&b"nx"[..], b"xx", b"gt", b"lt", b"ch", b"incr"]
                        .iter()
                        .any(|o| a.eq_ignore_ascii_case(o))
                })
                .any(|a| a.eq_ignore_ascii_case(b"incr"));
            send(class, if incr { "zincr" } else { "zadd" }, arg(1));
        }
        b"bitfield" => send(STRING, "setbit", arg(1)),
        // A trim recorded in the XADD is told after it, as Redis does.
        b"xadd" => {
            send(STREAM, "xadd", arg(1));
            if arg(2).eq_ignore_ascii_case(b"maxlen") {
                send(STREAM, "xtrim", arg(1));
            }
        }
        // The STORE forms tell of their destination only.
        _ if name.ends_with(b"store") => {
            send(class, std::str::from_utf8(&name).unwrap_or("store"), arg(1))
        }
        b"set" => {
            send(STRING, "set", arg(1));
            if arg(3).eq_ignore_ascii_case(b"pxat") {
                send(GENERIC, "expire", arg(1));
            }
        }
        // A source it emptied is told gone between the two, as Redis
        // deletes it before adding to the destination.
        b"smove" => {
            send(SET, "srem", arg(1));
            if let Some(i) = emptied.iter().position(|k| k == arg(1)) {
                emptied.remove(i);
                send(GENERIC, "del", arg(1));
            }
            send(SET, "sadd", arg(2));
        }
        _ => {
            let event = match name.as_slice() {
                b"incr" | b"decr" | b"decrby" => "incrby",
                b"lpushx" => "lpush",
                b"rpushx" => "rpush",
                b"pexpireat" => "expire",
                b"zincrby" => "zincr",
                b"mset" | b"msetnx" => "set",
                _ => std::str::from_utf8(&name).unwrap_or("unknown"),
            };
            for i in written_keys(&name, spec, argv) {
                send(class, event, argv[i].as_ref());
            }
        }
    }
}

/// Resolves a request and applies the checks every command shares. Returns
/// the spec to run, or the error to reply with. Inside MULTI, a refused
/// command makes EXEC fail (EXECABORT), as in Redis; a refused EXEC
/// discards the transaction, saying why (Redis's execCommandAbort).
pub fn prepare(
    server: &Server,
    client: &mut Client,
    argv: &[Bytes],
) -> Result<(usize, &'static Spec), CommandError> {
    check(server, client, argv).map_err(|e| refuse(server, client, argv, e))
}

/// The reply to a command refused with `e` before it ran: inside MULTI,
/// EXEC then fails, and a refused EXEC discards the transaction. Redis
/// answers a refused EXEC with EXECABORT (and forgets WATCHed keys) even
/// outside MULTI, so Shoal does too.
pub fn refuse(
    server: &Server,
    client: &mut Client,
    argv: &[Bytes],
    e: CommandError,
) -> CommandError {
    let exec = argv[0].eq_ignore_ascii_case(b"exec");
    if client.sidecar_multi.open {
        crate::replication::sidecar::refused_in_multi(client, exec);
    }
    if exec {
        return transactions::abort_exec(server, client, &e);
    }
    if let Some(m) = &mut client.multi {
        m.failed = true;
    }
    e
}

/// Whether running `spec` with `argv` now writes: a write command (a
/// script declaring it may write), or an EXEC whose queue holds one. As in
/// Redis, such an EXEC is refused where a write would be (a replica, a
/// failing disk) and waits while writes are paused.
pub fn writes(spec: &Spec, argv: &[Bytes], client: &Client) -> bool {
    spec.flags_of(argv) & flags::WRITE != 0 || exec_queues(spec, client, flags::WRITE)
}

/// Whether this invocation may write or replicate (PUBLISH, a script
/// without flags), an EXEC by what it queued: what CLIENT PAUSE WRITE
/// holds.
pub fn may_replicate(spec: &Spec, argv: &[Bytes], client: &Client) -> bool {
    let f = flags::WRITE | flags::MAY_REPLICATE;
    spec.flags_of(argv) & f != 0 || exec_queues(spec, client, f)
}

/// Whether `spec` is an EXEC whose transaction queued a command with
/// `flag`: Redis judges an EXEC by what it will run.
fn exec_queues(spec: &Spec, client: &Client, flag: u32) -> bool {
    exec_queues_any(spec, client, |f| f & flag != 0)
}

/// Whether `spec` is an EXEC whose transaction queued a command without
/// `flag` (one that may not run stale, say).
fn exec_queues_without(spec: &Spec, client: &Client, flag: u32) -> bool {
    exec_queues_any(spec, client, |f| f & flag == 0)
}

fn exec_queues_any(spec: &Spec, client: &Client, pred: impl Fn(u32) -> bool) -> bool {
    spec.name == "exec"
        && client
            .multi
            .as_ref()
            .is_some_and(|m| m.queue.iter().any(|(s, a)| pred(s.flags_of(a))))
}

/// [`Table::resolve`] through the client's last command: a client (a
/// replica's link to its primary most of all) mostly repeats the name it
/// sent last, and comparing it costs a fraction of a lookup.
fn resolve_cached(
    client: &mut Client,
    argv: &[Bytes],
) -> Result<(usize, &'static Spec), CommandError> {
    if let Some((name, i)) = &client.last_command {
        if *name == argv[0] {
            let spec = TABLE.all[*i];
            check_arity(spec, argv.len())?;
            return Ok((*i, spec));
        }
    }
    let (idx, spec) = TABLE.resolve(argv)?;
    // Containers resolve by their second argument: never cached.
    if idx < TABLE.top && spec.subcommands.is_empty() {
        // A copy: a slice would pin the whole request buffer.
        client.last_command = Some((Bytes::copy_from_slice(&argv[0]), idx));
    }
    Ok((idx, spec))
}

/// Starts loading the slot table of a parsed request's first key into the
/// cache and returns the slot hint for it (see `Client::slot_hint`).
/// Requests are parsed one ahead of execution (a client's pipeline, a
/// primary's stream): while one runs, the next one's table is on its way,
/// which hides one of the cache misses each command would otherwise wait
/// for.
pub fn prefetch(
    server: &Server,
    client: &Client,
    parsed: &Result<Option<Vec<Bytes>>, crate::protocol::ProtocolError>,
) -> Option<(usize, usize, crate::keyspace::SlotId)> {
    let argv = parsed.as_ref().ok()?.as_deref()?;
    let key = first_key(client, argv)?;
    let slot = crate::keyspace::key_hash_slot(key);
    server.keyspace.prefetch(client.db, slot);
    Some((key.as_ptr() as usize, key.len(), slot))
}

/// A request's first key, where the command repeats the client's last
/// (whose row says where its keys are: a script's come after its SHA1 and
/// their count); otherwise a guess, the first argument.
fn first_key<'a>(client: &Client, argv: &'a [Bytes]) -> Option<&'a Bytes> {
    let spec = match &client.last_command {
        Some((name, i)) if argv.first() == Some(name) => TABLE.all[*i],
        _ => return argv.get(1),
    };
    let k = spec.keys;
    if k.first > 0 {
        return argv.get(k.first as usize);
    }
    if k.numkeys > 0 {
        let at = k.numkeys as usize;
        let count = crate::protocol::request::parse_i64(argv.get(at)?)?;
        return (count > 0).then(|| argv.get(at + 1)).flatten();
    }
    None
}

fn check(
    server: &Server,
    client: &mut Client,
    argv: &[Bytes],
) -> Result<(usize, &'static Spec), CommandError> {
    // Redis 7 order: unknown command and arity first, then authentication.
    let (idx, spec) = resolve_cached(client, argv).map_err(|e| {
        // DEBUG is one command to ACL: a user without it is told so
        // before an unknown DEBUG word is.
        match TABLE.index(b"debug") {
            Some(i) if argv[0].eq_ignore_ascii_case(b"debug") && client.authenticated => {
                acl_check(server, client, Some(i), TABLE.all[i], argv, None)
                    .err()
                    .unwrap_or(e)
            }
            _ => e,
        }
    })?;
    if !client.authenticated && !spec.has(flags::NO_AUTH) {
        return Err(CommandError::NoAuth);
    }
    if spec.has(flags::PROTECTED) {
        let module = spec.name.starts_with("module");
        let setting = if module {
            server.enable_module
        } else {
            server.enable_debug
        };
        let allowed = match setting {
            0 => false,
            2 => client.handle.addr.ip().is_loopback(),
            _ => true,
        };
        if !allowed {
            let (name, option) = if module {
                ("MODULE", "enable-module-command")
            } else {
                ("DEBUG", "enable-debug-command")
            };
            return Err(CommandError::err(format!(
                "{name} command not allowed. If the {option} option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server."
            )));
        }
    }
    acl_check(server, client, Some(idx), spec, argv, None)?;
    if client.subscribed()
        && !spec.has(flags::SUBSCRIBED_OK)
        && client
            .handle
            .resp
            .load(std::sync::atomic::Ordering::Relaxed)
            == 2
    {
        return Err(CommandError::err(format!(
            "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        )));
    }
    if server.loading.load(std::sync::atomic::Ordering::Relaxed) && !spec.has(flags::LOADING) {
        return Err(CommandError::Loading);
    }
    let (repl, tun) = (&server.replication, &server.tun);
    let writes = writes(spec, argv, client);
    if repl.is_replica() {
        if repl.sidecar && !repl.ready.load(Relaxed) && !spec.has(flags::LOADING) {
            return Err(CommandError::Loading);
        }
        // EXEC is judged by what it will run: one queued command that may
        // not run stale refuses it all (a link that went down after it was
        // queued included).
        let stale_ok = spec.flags_of(argv) & flags::STALE != 0
            && !exec_queues_without(spec, client, flags::STALE);
        if !repl.link_up() && !stale_ok && !tun.replica_serve_stale.load(Relaxed) {
            return Err(CommandError::MasterDown);
        }
        if writes && replica_refuses_writes(server) {
            return Err(CommandError::ReadOnly);
        }
    }
    if writes {
        write_refused(server)?;
    }
    Ok((idx, spec))
}

/// Whether the connection's ACL user may run `argv` as `spec` (row `idx`,
/// looked up by name when the caller does not have it; `server::users`);
/// a refusal is told to ACL LOG, in the context of a transaction or
/// script (`context`: `None` is top level, or "multi" while one is
/// queued). An unrestricted user costs the one look at its generation.
#[inline]
pub fn acl_check(
    server: &Server,
    client: &mut Client,
    idx: Option<usize>,
    spec: &'static Spec,
    argv: &[Bytes],
    context: Option<&'static str>,
) -> Result<(), CommandError> {
    match client.current_user(&server.users) {
        Some(user) if !user.unrestricted => {
            let user = user.clone();
            acl_judge(server, client, &user, idx, spec, argv, context)
        }
        _ => Ok(()),
    }
}

/// [`acl_check`] for a user with restrictions.
#[inline(never)]
fn acl_judge(
    server: &Server,
    client: &Client,
    user: &crate::server::users::User,
    idx: Option<usize>,
    spec: &'static Spec,
    argv: &[Bytes],
    context: Option<&'static str>,
) -> Result<(), CommandError> {
    use crate::server::users::{acl_row, Denied};
    let idx = idx
        .or_else(|| TABLE.index(spec.name.as_bytes()))
        .expect("a spec's name is in the table");
    let Err(denied) = user.check(idx, spec, argv) else {
        return Ok(());
    };
    let name = acl_row(idx, spec).1.name;
    let object = match denied {
        Denied::Command => name.to_string(),
        Denied::Key(p) | Denied::Channel(p) => String::from_utf8_lossy(&argv[p]).into_owned(),
    };
    let queued = client.multi.is_some();
    let entry = crate::server::acllog::Denial {
        reason: denied.reason(),
        context: context.unwrap_or(if queued { "multi" } else { "toplevel" }),
        object,
        username: user.name.clone(),
    };
    acl::log_denial(server, client, entry, crate::server::now_ms());
    Err(match denied {
        Denied::Command => CommandError::NoPermCommand(name.to_string()),
        Denied::Key(_) => CommandError::NoPermKey,
        Denied::Channel(_) => CommandError::NoPermChannel,
    })
}

/// Why this node refuses writes now, if it does: too few good replicas
/// (`min-replicas-to-write`, on a primary), a failing log (MISCONF), a
/// failed snapshot (`stop-writes-on-bgsave-error`). Checked before a
/// write command, and for each write a script makes.
pub fn write_refused(server: &Server) -> Result<(), CommandError> {
    let repl = &server.replication;
    if !repl.is_replica() {
        let min = server.tun.min_replicas_to_write.load(Relaxed);
        if min > 0 && (repl.good_replicas.load(Relaxed) as i64) < min {
            return Err(CommandError::NoReplicas);
        }
    }
    if let Some(e) = server.log.failure() {
        return Err(CommandError::err_code(format!(
            "MISCONF Errors writing to the AOF file: {e}"
        )));
    }
    // Redis's stop-writes-on-bgsave-error: a primary with save rules whose
    // last snapshot failed refuses writes until one succeeds.
    if !server.log.last_save_ok.load(Relaxed) && !repl.is_replica() {
        let cfg = server.config.read();
        if cfg.get("stop-writes-on-bgsave-error") == "yes" && !cfg.get("save").is_empty() {
            return Err(CommandError::SnapshotFailed);
        }
    }
    Ok(())
}

/// Runs a command that was recorded as an effect (the log at start-up, a
/// primary's stream on a replica): no client checks apply, the reply is
/// dropped, and the transaction gate is held as a client's command holds
/// it. Returns the command's error, if any.
pub fn replay(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    argv: &[Bytes],
) -> Result<(), CommandError> {
    replay_at(server, client, out, argv, crate::server::now_ms())
}

/// [`replay`] at a time the caller read once for a batch of commands.
pub fn replay_at(
    server: &Server,
    client: &mut Client,
    out: &mut ReplyBuf,
    argv: &[Bytes],
    now_ms: i64,
) -> Result<(), CommandError> {
    let (_, spec) = resolve_cached(client, argv)?;
    let mut ctx = Ctx {
        server,
        client,
        out,
        now_ms,
        action: None,
        event: std::cell::Cell::new(None),
        emptied: Default::default(),
    };
    let r = {
        let _gate = (!spec.has(flags::EXCLUSIVE)).then(|| server.gate.shared());
        run(&mut ctx, spec, argv)
    };
    ctx.out.buf.clear();
    r
}

/// Runs a resolved command: its reply or error goes to `ctx.out`.
/// Returns whether it failed, for the error statistics. Inside MULTI the
/// command is queued instead (see `transactions`).
pub fn run(ctx: &mut Ctx, spec: &'static Spec, argv: &[Bytes]) -> Result<(), CommandError> {
    // With BCAST clients about, the outermost command (an EXEC or a
    // script with all it runs) hands the keys it changed over as a whole.
    let tracking = &ctx.server.tracking;
    if !tracking.broadcasting() || ctx.client.bcast_staged.borrow().is_some() {
        return run_staged(ctx, spec, argv);
    }
    *ctx.client.bcast_staged.borrow_mut() = Some(Vec::new());
    let r = run_staged(ctx, spec, argv);
    if let Some(keys) = ctx.client.bcast_staged.take() {
        tracking.command_changed(keys, ctx.client.id);
    }
    r
}

/// [`run`], inside the command's staging of BCAST keys.
fn run_staged(ctx: &mut Ctx, spec: &'static Spec, argv: &[Bytes]) -> Result<(), CommandError> {
    // Commands a transaction runs were looked at as they were queued.
    if ctx.client.exec_effects.get().is_none() && ctx.server.tracking.active() {
        let told = ctx.client.invalidated.borrow().len();
        keep_tracking_table_within(ctx);
        tell_first(ctx, told);
    }
    // Queueing takes memory too: over `maxmemory` with nothing left to
    // evict, a client inside MULTI gets nothing more in (a nested MULTI or
    // a WATCH neither; only EXEC, judged by its queue, DISCARD, QUIT and
    // RESET), and EXEC will abort: Redis's rule inside MULTI.
    let in_multi = ctx.client.multi.is_some();
    let refused = (in_multi
        && !matches!(spec.name, "exec" | "discard" | "quit" | "reset")
        && ctx.server.tun.maxmemory.load(Relaxed) > 0)
        .then(|| ctx.make_room().err())
        .flatten();
    let r = if let Some(e) = refused {
        if let Some(m) = &mut ctx.client.multi {
            m.failed = true;
        }
        Err(e)
    } else if in_multi && !spec.has(flags::NO_QUEUE) {
        transactions::queue(ctx, spec, argv)
    } else {
        // A tracking client may cache what it reads (as in Redis, even a
        // read that fails, WRONGTYPE...). The keys are remembered before
        // the read: a write racing with it on another thread then
        // invalidates what was read, where remembering after could miss it.
        // A script's reads remember its declared keys instead (see
        // `scripting`), so neither a read-only script nor a command inside
        // one remembers keys here.
        let remembers = spec.has(flags::READONLY)
            && !ctx.client.in_script
            && !matches!(spec.name, "eval_ro" | "evalsha_ro" | "fcall_ro")
            && ctx
                .client
                .tracking
                .is_some_and(|m| m.remembers(ctx.client.caching));
        let (new, own_before) = if remembers {
            (
                remember_keys(ctx, spec, argv),
                ctx.client.invalidated.borrow().len(),
            )
        } else {
            (Vec::new(), 0)
        };
        // As in Redis, a transaction's room is made (or refused) once, at
        // its EXEC, for all it queued: inside it nothing is evicted nor
        // refused half-way.
        let in_exec = ctx.client.exec_effects.get().is_some();
        let denyoom = spec.flags_of(argv) & flags::DENYOOM != 0
            || exec_queues(spec, ctx.client, flags::DENYOOM);
        // Keys the command adds are told (`new`) before its own events.
        let tells_new = ctx.server.notifier.wants(crate::server::notify::NEW);
        if tells_new {
            crate::keyspace::table::record_created(true);
        }
        // Over `maxmemory`, every command evicts first, as in Redis (a
        // read-only load still brings memory back under a lowered limit);
        // only those that may grow memory are refused when nothing can go.
        let r = if !in_exec && ctx.server.tun.maxmemory.load(Relaxed) > 0 {
            let told = ctx.client.invalidated.borrow().len();
            let room = ctx.make_room();
            tell_first(ctx, told);
            match room {
                Err(e) if denyoom && spec.name == "exec" => {
                    Err(transactions::abort_exec(ctx.server, ctx.client, &e))
                }
                Err(e) if denyoom => Err(e),
                _ => (spec.handler)(ctx, argv),
            }
        } else {
            (spec.handler)(ctx, argv)
        };
        if tells_new {
            // A key created by a command that changed nothing else (a
            // BITFIELD whose every operation failed) is still new.
            let left = crate::keyspace::table::record_created(false);
            notify_new(ctx.server, ctx.client.db, left, ctx.now_ms);
        }
        if remembers && ctx.client.invalidated.borrow().len() > own_before {
            // The read expired one of its keys. Redis remembers after the
            // read, so: a key remembered only by this read is not
            // invalidated to its reader (the reply says it is gone); one
            // remembered before is, as by any change; either way the key
            // is remembered again.
            let mut i = 0;
            ctx.client.invalidated.borrow_mut().retain(|k| {
                i += 1;
                i <= own_before || k.as_deref().is_none_or(|k| !new.contains(&k))
            });
            remember_keys(ctx, spec, argv);
        }
        r
    };
    if let Err(e) = &r {
        ctx.out.error(&e.to_string());
    }
    r
}

/// Remembers the keys a tracking client's read names; returns those that
/// were new for it.
fn remember_keys<'a>(ctx: &Ctx, spec: &Spec, argv: &'a [Bytes]) -> Vec<&'a [u8]> {
    remember(
        ctx,
        spec.key_indexes(argv).into_iter().map(|i| &argv[i][..]),
    )
}

/// Remembers `keys` as read by this client (it tracks them); returns
/// those that were new for it.
fn remember<'a>(ctx: &Ctx, keys: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let s = ctx.server;
    s.tracking
        .remember(&s.clients, ctx.client.id, keys, s.tun.tracking_max_keys())
}

#[cfg(test)]
mod tests {
    //! Effects are what the append-only log and replicas will replay, so
    //! their exact form is checked here, in process, on the real handlers.

    use super::*;
    use crate::protocol::Protocol;

    fn setup() -> (Server, Client) {
        let server = Server::new(crate::config::Config::default());
        server.effects.activate_backlog();
        let addr = "127.0.0.1:1".parse().unwrap();
        let handle = server.clients.register(addr, addr, 0);
        let client = Client::new(handle, true);
        (server, client)
    }

    /// Runs a command and returns the effects it appended.
    fn effects_of(server: &Server, client: &mut Client, args: &[&str]) -> String {
        let before = server.effects.offset();
        let argv: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let (_, spec) = prepare(server, client, &argv).expect("valid command");
        let mut out = ReplyBuf::new(Protocol::Resp2);
        let mut ctx = Ctx {
            server,
            client,
            out: &mut out,
            now_ms: 1_700_000_000_000,
            action: None,
            event: std::cell::Cell::new(None),
            emptied: Default::default(),
        };
        run(&mut ctx, spec, &argv).expect("command succeeds");
        let bytes = server.effects.read_from(before).unwrap();
        String::from_utf8(bytes).unwrap().replace("\r\n", " ")
    }

    #[test]
    fn the_table_lists_top_level_commands_first() {
        let (top, subs) = TABLE.all.split_at(TABLE.top);
        assert!(top.iter().all(|s| !s.name.contains('|')));
        assert!(subs.iter().all(|s| s.name.contains('|')));
        assert_eq!(
            TABLE
                .resolve(&[Bytes::from("SeT"), "k".into(), "v".into()])
                .unwrap()
                .1
                .name,
            "set"
        );
        // A subcommand's full name is not a command of its own.
        assert!(TABLE
            .resolve(&[Bytes::from("config|get"), "x".into()])
            .is_err());
    }

    #[test]
    fn relative_expiries_become_absolute() {
        let (s, mut c) = setup();
        let e = effects_of(&s, &mut c, &["SET", "k", "v", "EX", "10"]);
        assert_eq!(
            e,
            "*2 $6 SELECT $1 0 *5 $3 SET $1 k $1 v $4 PXAT $13 1700000010000 "
        );
        let e = effects_of(&s, &mut c, &["EXPIRE", "k", "100"]);
        assert_eq!(e, "*3 $9 PEXPIREAT $1 k $13 1700000100000 ");
        let e = effects_of(&s, &mut c, &["GETEX", "k", "PX", "5"]);
        assert_eq!(e, "*3 $9 PEXPIREAT $1 k $13 1700000000005 ");
        let e = effects_of(&s, &mut c, &["SETEX", "k2", "1", "v"]);
        assert!(e.contains("PXAT $13 1700000001000"), "{e}");
    }

    #[test]
    fn nondeterministic_results_are_recorded_as_values() {
        let (s, mut c) = setup();
        effects_of(&s, &mut c, &["SET", "f", "10.5"]);
        let e = effects_of(&s, &mut c, &["INCRBYFLOAT", "f", "0.1"]);
        assert_eq!(e, "*4 $3 SET $1 f $4 10.6 $7 KEEPTTL ");
        let e = effects_of(&s, &mut c, &["EXPIRE", "f", "-1"]);
        assert_eq!(e, "*2 $3 DEL $1 f ", "an expiry in the past deletes");
        let e = effects_of(&s, &mut c, &["DEL", "f", "nothing"]);
        assert_eq!(e, "", "deleting nothing records nothing");
    }

    #[test]
    fn loading_refuses_all_but_loading_commands() {
        let (s, mut c) = setup();
        s.loading.store(true, std::sync::atomic::Ordering::Relaxed);
        let argv = |a: &[&str]| {
            a.iter()
                .map(|x| Bytes::copy_from_slice(x.as_bytes()))
                .collect::<Vec<_>>()
        };
        let e = prepare(&s, &mut c, &argv(&["GET", "k"]))
            .err()
            .expect("GET is refused");
        assert_eq!(
            e.to_string(),
            "LOADING Redis is loading the dataset in memory"
        );
        assert!(prepare(&s, &mut c, &argv(&["INFO"])).is_ok());
        assert!(prepare(&s, &mut c, &argv(&["CONFIG", "GET", "port"])).is_ok());
        // As redis-server: a PING while loading is refused too, so a
        // readiness check built on it waits for the data.
        assert!(prepare(&s, &mut c, &argv(&["PING"])).is_err());
    }

    #[test]
    fn reads_record_nothing_and_databases_are_selected() {
        let (s, mut c) = setup();
        effects_of(&s, &mut c, &["SET", "k", "v"]);
        assert_eq!(effects_of(&s, &mut c, &["GET", "k"]), "");
        effects_of(&s, &mut c, &["SELECT", "5"]);
        let e = effects_of(&s, &mut c, &["INCR", "n"]);
        assert_eq!(e, "*2 $6 SELECT $1 5 *2 $4 INCR $1 n ");
        let e = effects_of(&s, &mut c, &["FLUSHALL"]);
        assert_eq!(e, "*1 $8 FLUSHALL ");
    }

    /// Every row that names keys says what it does with them: a row
    /// without would pass ACL's read and write patterns unchecked.
    #[test]
    fn every_key_is_declared_with_its_flags() {
        for s in &TABLE.all {
            let k = s.keys;
            let names_keys =
                k.first > 0 || k.numkeys > 0 || s.option_keys.is_some() || s.keys_for.is_some();
            if names_keys {
                // One of RO, RW, OW, RM (or no key at all) for each.
                use key_flags::{NOT_KEY, OW, RM, RO, RW};
                let kind = RO | RW | OW | RM | NOT_KEY;
                assert!(
                    k.flags & kind != 0 && k.rest & kind != 0,
                    "{} declares no key flags",
                    s.name
                );
                if s.option_keys.is_some() || s.keys_for.is_some() {
                    assert!(!s.key_search.is_empty(), "{} describes no search", s.name);
                }
            } else {
                assert_eq!(k.flags | k.rest, 0, "{} has no keys to flag", s.name);
            }
        }
    }
}
