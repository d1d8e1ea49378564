//! Lua scripting: EVAL, EVALSHA, their _RO forms and SCRIPT, as Redis 7
//! runs them (Lua 5.1, `redis.call`/`redis.pcall`, KEYS and ARGV, Redis's
//! conversions between Lua values and replies, its error texts).
//!
//! ```text
//!  EVAL ─▶ gate held exclusively (no other command interleaves; inside
//!          EXEC the transaction already holds it)
//!       ─▶ this thread's Lua state: the script compiled once per thread as
//!          a function of chunk `@user_script`, KEYS and ARGV set
//!       ─▶ each redis.call resolves the command in the table and runs it
//!          as a transaction's command runs: its effects recorded, wrapped
//!          with the script's others in MULTI … EXEC for the log and replicas
//!       ─▶ the script's value converted to the reply
//! ```
//!
//! Scripts are replicated by their effects (Redis 7's only mode), so what a
//! script reads or computes never needs replaying. Each I/O thread has its
//! own Lua state; the script cache (SCRIPT LOAD, EVAL) is the process's.
//! Globals are read-only and reading a missing one fails, as in Redis 7, so
//! a script leaves nothing behind for the next.
//!
//! Every other command waits for a running script. Once it has run past
//! `busy-reply-threshold` (5 s) they are answered BUSY instead, as in
//! Redis, and SCRIPT KILL (FUNCTION KILL) stops it if it has not written
//! (`server::busy`); the hook that checks the time every 100,000
//! instructions is the one that marks the run timed out and stops it
//! once killed. A killed script stays stopped: pcall cannot catch it.
//!
//! Libraries: Lua's table, string and math, `cjson` (with its settings)
//! as Redis bundles lua-cjson (`libs/cjson.rs`), `cmsgpack` as it bundles
//! lua-cmsgpack, `bit` as it bundles LuaBitOp, and `struct` (pack,
//! unpack, size) as it bundles Roberto's struct (`libs.rs`). Bytecode
//! never loads (`loadstring`, `load`): Redis's Lua parses every chunk as
//! text.
//!
//! A script runs in its caller's database, and a SELECT inside it holds
//! for the script only. A tracking caller remembers the script's declared
//! keys once the script reads anything, as Redis tracks scripts.
//!
//! A script may declare its flags on a first `#!lua flags=...` line, as in
//! Redis 7 (`ScriptFlags`): the command is then judged by them (a script
//! that may write is a write; one that may grow memory is refused over
//! maxmemory) rather than command by command as it calls them.
//!
//! Functions (`super::functions`) run here too: their libraries load into
//! each thread's state with only Redis's load API in sight, and a function
//! runs as a script does, its keys and arguments passed as parameters.
//!
//! A script may ask for its commands' replies in RESP3 (`redis.setresp(3)`):
//! maps, sets, doubles and the like reach it as tables naming their type,
//! as Redis converts them, and tables so named are replied as that type.
//!
//! Not here: SCRIPT DEBUG.

mod libs;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;
use redis_protocol::resp2::types::OwnedFrame as Frame;
use sha1::{Digest as _, Sha1};

use super::{flags::*, key_flags::*, keys_counted, spec, Ctx, Spec, NO_KEYS, TABLE};
use crate::error::{CmdResult, CommandError};
use crate::protocol::reply::format_double;
use crate::protocol::{Protocol, ReplyBuf};
use libs::{bit, cjson, cmsgpack, structlib};

/// The command group and ACL categories of scripts and functions alike.
pub(super) const G: &str = "scripting";
pub(super) const S: &[&str] = &["scripting"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec { flags_for: Some(eval_flags), ..spec("eval", -3, NOSCRIPT | STALE | SKIP_MONITOR | MAY_REPLICATE | NO_MANDATORY_KEYS | EXCLUSIVE | ON_PRIMARY, keys_counted(0, 0, 2).flags(RW | ACCESS | UPDATE), S, G, "Executes a server-side Lua script.", eval) },
    Spec { flags_for: Some(evalsha_flags), ..spec("evalsha", -3, NOSCRIPT | STALE | SKIP_MONITOR | MAY_REPLICATE | NO_MANDATORY_KEYS | EXCLUSIVE | ON_PRIMARY, keys_counted(0, 0, 2).flags(RW | ACCESS | UPDATE), S, G, "Executes a server-side Lua script by SHA1 digest.", evalsha) },
    Spec { flags_for: Some(eval_flags), ..spec("eval_ro", -3, READONLY | NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE, keys_counted(0, 0, 2).flags(RO | ACCESS), S, G, "Executes a read-only server-side Lua script.", eval_ro) },
    Spec { flags_for: Some(evalsha_flags), ..spec("evalsha_ro", -3, READONLY | NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE, keys_counted(0, 0, 2).flags(RO | ACCESS), S, G, "Executes a read-only server-side Lua script by SHA1 digest.", evalsha_ro) },
    Spec { subcommands: SCRIPT, ..spec("script", -2, 0, NO_KEYS, &[], G, "A container for Lua scripts management commands.", super::keys::help_only) },
];

#[rustfmt::skip]
static SCRIPT: &[Spec] = &[
    spec("script|load", 3, NOSCRIPT | STALE, NO_KEYS, S, G, "Loads a server-side Lua script to the script cache.", script_load),
    spec("script|exists", -3, NOSCRIPT, NO_KEYS, S, G, "Determines whether server-side Lua scripts exist in the script cache.", script_exists),
    spec("script|flush", -2, NOSCRIPT, NO_KEYS, S, G, "Removes all server-side Lua scripts from the script cache.", script_flush),
    spec("script|kill", 2, NOSCRIPT | ALLOW_BUSY, NO_KEYS, S, G, "Terminates a server-side Lua script during execution.", script_kill),
    spec("script|debug", 3, NOSCRIPT, NO_KEYS, S, G, "Sets the debug mode of server-side Lua scripts.", script_debug),
    spec("script|help", 2, LOADING | STALE, NO_KEYS, S, G, "Returns helpful text about the different subcommands.", script_help),
];

/// Flags a script declares: an EVAL body's `#!lua flags=...` line, a
/// function's `flags` (Redis's words and order). A script that declares
/// none of its own (no shebang) runs in Redis's compatibility mode:
/// judged command by command as it calls them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptFlags(u8);

impl ScriptFlags {
    pub const NO_WRITES: u8 = 1;
    pub const ALLOW_OOM: u8 = 2;
    pub const ALLOW_STALE: u8 = 4;
    pub const NO_CLUSTER: u8 = 8;
    pub const ALLOW_CROSS_SLOT: u8 = 16;
    const NAMES: &[(u8, &str)] = &[
        (Self::NO_WRITES, "no-writes"),
        (Self::ALLOW_OOM, "allow-oom"),
        (Self::ALLOW_STALE, "allow-stale"),
        (Self::NO_CLUSTER, "no-cluster"),
        (Self::ALLOW_CROSS_SLOT, "allow-cross-slot-keys"),
    ];

    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    /// Adds the flag named `name` (exactly, or ignoring case as functions
    /// take them); false if there is none.
    pub fn add(&mut self, name: &[u8], ignore_case: bool) -> bool {
        let found = Self::NAMES.iter().find(|(_, n)| {
            if ignore_case {
                n.as_bytes().eq_ignore_ascii_case(name)
            } else {
                n.as_bytes() == name
            }
        });
        if let Some((f, _)) = found {
            self.0 |= f;
        }
        found.is_some()
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .filter(move |(f, _)| self.has(*f))
            .map(|(_, n)| *n)
    }

    /// The flags a command row runs with for a script declaring these
    /// (Redis's scriptFlagsToCmdFlags): it writes unless `no-writes`, is
    /// refused over maxmemory unless it cannot grow memory or says
    /// `allow-oom`, and runs on a stale replica only with `allow-stale`.
    pub fn command_flags(self, row: u32) -> u32 {
        let mut f = row & !(STALE | DENYOOM | WRITE | MAY_REPLICATE);
        if !self.has(Self::ALLOW_OOM | Self::NO_WRITES) {
            f |= DENYOOM;
        }
        if !self.has(Self::NO_WRITES) {
            f |= WRITE;
        }
        if self.has(Self::ALLOW_STALE) {
            f |= STALE;
        }
        f
    }
}

/// An EVAL body's shebang line (`#!lua [flags=a,b]`): the flags it
/// declares and where the line ends (the code is compiled from its line
/// feed, so that line numbers stay the body's). `None` without one.
fn shebang(body: &[u8]) -> Result<Option<(ScriptFlags, usize)>, CommandError> {
    if !body.starts_with(b"#!") {
        return Ok(None);
    }
    let Some(end) = body.iter().position(|&c| c == b'\n') else {
        return Err(CommandError::err("Invalid script shebang"));
    };
    let parts = crate::protocol::request::split_args(&body[..end]).unwrap_or_default();
    let Some((engine, options)) = parts.split_first() else {
        return Err(CommandError::err("Invalid engine in script shebang"));
    };
    if engine != b"#!lua" {
        return Err(CommandError::err(format!(
            "Unexpected engine in script shebang: {}",
            String::from_utf8_lossy(engine)
        )));
    }
    let mut flags = ScriptFlags::default();
    for option in options {
        let Some(list) = option.strip_prefix(b"flags=") else {
            return Err(CommandError::err(format!(
                "Unknown lua shebang option: {}",
                String::from_utf8_lossy(option)
            )));
        };
        if list.is_empty() {
            continue;
        }
        for name in list.split(|&c| c == b',') {
            if !flags.add(name, false) {
                return Err(CommandError::err(format!(
                    "Unexpected flag in script shebang: {}",
                    String::from_utf8_lossy(name)
                )));
            }
        }
    }
    Ok(Some((flags, end)))
}

/// EVAL's and EVAL_RO's flags: a body that declares its own is judged by
/// them (a malformed shebang fails when the script runs).
fn eval_flags(row: u32, argv: &[Bytes]) -> u32 {
    match shebang(&argv[1]) {
        Ok(Some((declared, _))) => declared.command_flags(row),
        _ => row,
    }
}

/// A SHA1 as the cache keys it (lower-case hex), copied only when the
/// client sent capitals.
fn sha_key(arg: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(arg) {
        Ok(s) if !s.bytes().any(|c| c.is_ascii_uppercase()) => s.into(),
        _ => String::from_utf8_lossy(arg).to_ascii_lowercase().into(),
    }
}

/// EVALSHA's and EVALSHA_RO's flags: those of the cached script's body.
fn evalsha_flags(row: u32, argv: &[Bytes]) -> u32 {
    match cached(&argv[1], |s| s.declared.clone()) {
        Some(Ok(Some((declared, _)))) => declared.command_flags(row),
        _ => row,
    }
}

/// A script, its shebang read.
#[derive(Clone)]
struct Cached {
    sha: [u8; 40],
    body: Bytes,
    declared: Result<Option<(ScriptFlags, usize)>, CommandError>,
    generation: u64,
    /// Compiled in this thread's Lua state, once it has run here.
    compiled: Option<Function>,
}

thread_local! {
    /// The scripts this thread ran last. EVALSHA looks its script up
    /// twice (for its flags, then to run it), and applications call a
    /// handful of scripts over and over: both lookups are then a
    /// comparison of 40 bytes, with no lock, hash or shebang to read.
    static RECENT: RefCell<[Option<Cached>; 4]> = const { RefCell::new([None, None, None, None]) };
}

/// What `read` makes of the cached script whose SHA1 `arg` is (in
/// either case).
fn cached<R>(arg: &[u8], read: impl FnOnce(&Cached) -> R) -> Option<R> {
    let generation = GENERATION.load(Relaxed);
    let mut read = Some(read);
    let hit = RECENT.with(|r| {
        let r = r.borrow();
        let c = r
            .iter()
            .flatten()
            .find(|c| c.generation == generation && c.sha.eq_ignore_ascii_case(arg))?;
        read.take().map(|read| read(c))
    });
    if hit.is_some() {
        return hit;
    }
    let read = read?;
    let sha = sha_key(arg);
    let body = CACHE.lock().get(&*sha).cloned()?;
    let found = Cached {
        sha: sha.as_bytes().try_into().ok()?,
        declared: shebang(&body),
        body,
        generation,
        compiled: None,
    };
    let read_it = read(&found);
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        // The oldest goes: entries move down, the newest is first.
        r.rotate_right(1);
        r[0] = Some(found);
    });
    Some(read_it)
}

/// Remembers the function a recent script compiled to in this thread.
fn remember_compiled(sha: &[u8; 40], f: &Function) {
    RECENT.with(|r| {
        let generation = GENERATION.load(Relaxed);
        let mut r = r.borrow_mut();
        let same = |c: &&mut Cached| c.sha == *sha && c.generation == generation;
        if let Some(c) = r.iter_mut().flatten().find(same) {
            c.compiled = Some(f.clone());
        }
    })
}

/// The process's scripts by SHA1 (lower-case hex), and a generation that
/// SCRIPT FLUSH moves on so that every thread drops what it compiled.
static CACHE: LazyLock<Mutex<HashMap<String, Bytes>>> = LazyLock::new(Default::default);
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// One thread's Lua state, the scripts it compiled and the functions it
/// loaded.
pub(super) struct Vm {
    lua: Lua,
    /// The names scripts and libraries are compiled under, kept alive:
    /// Lua 5.1's parser makes the chunk name a string it does not anchor
    /// while it starts parsing, so a collection then could free it under
    /// the parser (CVE-2025-49844, fixed in Redis's own Lua). Strings are
    /// interned, so the parser gets these ones, which nothing frees.
    _chunk_names: [mlua::String; 2],
    generation: u64,
    /// SHA1 to function, in a Lua table: a Rust handle per script would
    /// each hold one of mlua's few thousand reference slots.
    compiled: Table,
    xpcall: Function,
    handler: Function,
    /// The globals' values, behind the empty, read-only table scripts
    /// see as their globals; a script's KEYS and ARGV are set here for
    /// its run.
    run_globals: Table,
    /// A function's callback called with its keys and arguments under the
    /// error handler (Lua 5.1's xpcall passes nothing on).
    fcall: Function,
    /// The globals of libraries' code: an empty table whose metatable's
    /// `__index` is `load_globals` while a library loads and the globals
    /// afterwards, as Redis swaps them, so that a library's code sees
    /// only the load API and its functions see what scripts see.
    library_env: Table,
    library_meta: Table,
    load_globals: Table,
    /// What redis.register_function records while a library loads.
    registering: Rc<RefCell<Option<Vec<Registered>>>>,
    /// Each function's callback by its name as registered, as of the libraries'
    /// generation `functions_at`.
    functions: Table,
    functions_at: Option<u64>,
    /// The functions called last, by name as registered: applications
    /// call a few over and over, and a name looked up in `functions` is
    /// a protected call and a string interned each time.
    recent_functions: RefCell<Vec<(String, Function)>>,
    /// The last script's KEYS and ARGV are still set: left for the next
    /// script to replace, and unset before a function runs, which must
    /// not see them.
    keys_set: std::cell::Cell<bool>,
    /// The state's memory, as last added to [`VM_MEMORY`]: its scripts'
    /// share and its functions' (what loading the libraries took).
    reported: std::cell::Cell<(i64, i64)>,
    functions_memory: i64,
    /// Runs since the last garbage-collection step (see [`with_vm`]).
    since_gc: u32,
}

/// Every this many runs on a state, a step of its garbage collector of
/// this many kilobytes' worth (Redis's LUA_GC_CYCLE_PERIOD): a script's
/// garbage (its arguments, its replies as Lua values) is collected as it
/// comes, not left to grow until Lua's own cycle, and no run pays for a
/// full collection.
const GC_PERIOD: u32 = 50;

/// The Lua states' memory, summed over threads: scripts' and functions'
/// (INFO's used_memory_vm_eval and used_memory_vm_functions).
static VM_MEMORY: [std::sync::atomic::AtomicI64; 2] = [
    std::sync::atomic::AtomicI64::new(0),
    std::sync::atomic::AtomicI64::new(0),
];

thread_local! {
    /// Why the script running on this thread was stopped, once it was.
    static STOPPED: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The running script is past busy-reply-threshold (`server::busy`).
    static TIMED_OUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// It has called a write command (before it timed out; after, the
    /// node's `Busy` knows).
    static WROTE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The protocol the running script asked for (redis.setresp): how
    /// its commands' replies reach it and how its booleans are replied.
    static SCRIPT_RESP: std::cell::Cell<u8> = const { std::cell::Cell::new(2) };
}

/// What watches code that runs too long: a script or function, which
/// past busy-reply-threshold (ms) makes the node BUSY, or a library's
/// code as it loads, stopped then.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Script(u64),
    Load,
}

/// A killed script's error, as Redis words it for both kinds.
const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";

thread_local! {
    /// When the code running on this thread must stop, and why.
    static DEADLINE: std::cell::Cell<Option<(std::time::Instant, Stop)>> =
        const { std::cell::Cell::new(None) };
}

/// The hook every Lua state carries (set once; the state's global hook,
/// which the coroutines its code makes inherit): past the running code's
/// deadline a script is marked timed out, and stopped once killed; a
/// library's code is stopped. A stop then stays (see PRELUDE's pcall).
fn deadline_hook(_: &Lua, _: &mlua::Debug) -> mlua::Result<mlua::VmState> {
    if let Some((deadline, stop)) = DEADLINE.get() {
        if std::time::Instant::now() > deadline {
            let message = match stop {
                Stop::Script(ms) => {
                    if !TIMED_OUT.replace(true) {
                        Running::time_out(deadline - Duration::from_millis(ms));
                    }
                    if !Running::killed() {
                        return Ok(mlua::VmState::Continue);
                    }
                    tracing::warn!("Lua script killed by user with SCRIPT KILL.");
                    KILLED
                }
                Stop::Load => "ERR FUNCTION LOAD timeout",
            };
            return Err(stop_with(message));
        }
    }
    Ok(mlua::VmState::Continue)
}

/// Stops the running code for good (see PRELUDE's pcall).
fn stop(message: &str) {
    STOPPED.with(|s| *s.borrow_mut() = Some(message.to_string()));
}

/// [`stop`], and the error that raises it.
fn stop_with(message: &str) -> mlua::Error {
    stop(message);
    mlua::Error::external(CallError::new(message.to_string()))
}

/// Runs `call` (into Lua) watched by `stop` once it has run past `limit`.
fn time_limited<R>(limit: Duration, stop: Stop, call: impl FnOnce() -> R) -> R {
    STOPPED.with(|s| s.replace(None));
    DEADLINE.set(Some((std::time::Instant::now() + limit, stop)));
    let r = call();
    DEADLINE.set(None);
    STOPPED.with(|s| s.replace(None));
    r
}

/// A function a library's code registered.
pub(super) struct Registered {
    pub name: String,
    pub description: Option<Bytes>,
    pub flags: ScriptFlags,
    callback: Function,
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// The Redis version scripts are told (`redis.REDIS_VERSION`), as INFO
/// tells it, and as a number (0x00MMmmpp).
const REDIS_VERSION: (&str, i64) = ("7.2.0", 0x07_02_00);

/// Sets up `redis` and read-only globals; `redis.call` and `redis.pcall`
/// are bound to the running script's context for the length of each run.
/// Called with the SHA1 and log functions and the version; returns the
/// tables `Vm` keeps.
const PRELUDE: &str = r#"
local sha1hex, write_log, stopped, setresp, version, version_num, error_value = ...
-- What Redis leaves out of Lua's base library: reading files, printing to
-- the server's output, and changing a function's environment.
for _, name in ipairs({'dofile', 'loadfile', 'print', 'getfenv', 'setfenv', 'newproxy'}) do
  rawset(_G, name, nil)
end
local raw_get, raw_set, set_mt, get_mt, err = rawget, rawset, setmetatable, getmetatable, error
local select, type, tostring, ipairs = select, type, tostring, ipairs
local concat = table.concat
-- A script stopped for running too long stays stopped: what it catches of
-- the stop (with pcall, xpcall, a coroutine's resume) is raised again.
-- (About 30 ns more per pcall; only a failed one asks.)
local raw_pcall, raw_xpcall, resume = pcall, xpcall, coroutine.resume
local function unless_stopped(ok, ...)
  if not ok then
    local why = stopped()
    if why then err({err = why}, 0) end
  end
  return ok, ...
end
-- A refused redis.call raises an error table, as in Redis: a handler
-- given to xpcall and a coroutine's resume see it as one (and another
-- error raised from Rust as its message); pcall gives the text of any
-- error table caught, as Redis's pcall gives its `err`.
local function as_error_table(e)
  if type(e) == 'userdata' then return error_value(e) end
  return e
end
local function caught(ok, ...)
  if ok then return ok, ... end
  local e = as_error_table((...))
  if type(e) == 'table' and type(raw_get(e, 'err')) == 'string' then
    return unless_stopped(false, raw_get(e, 'err'))
  end
  return unless_stopped(false, e)
end
local function resumed(ok, ...)
  if ok then return ok, ... end
  return unless_stopped(false, as_error_table((...)))
end
pcall = function(...) return caught(raw_pcall(...)) end
xpcall = function(f, handler)
  return unless_stopped(raw_xpcall(f, function(e) return handler(as_error_table(e)) end))
end
coroutine.resume = function(...) return resumed(resume(...)) end
local function readonly() err('Attempt to modify a readonly table', 2) end
local function missing(_, k)
  err("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 3)
end
-- The tables scripts share (the globals, the libraries, redis) are
-- read-only, as Redis 7 makes them, so that no script changes what the
-- next one sees: each library is replaced by an empty view of it whose
-- writes fail, rawset and setmetatable refuse those views, and the
-- views' metatables are hidden. (table.insert on a view is let be: it
-- adds to the view's array, which no name reaches, and a check on every
-- insert would cost scripts a third of their table.insert time.)
local protected = set_mt({}, {__mode = 'k'})
local function refuse() err('Attempt to modify a readonly table', 0) end
local function view(t)
  local v = set_mt({}, {__index = t, __newindex = readonly, __metatable = false})
  protected[v] = true
  return v
end
rawset = function(t, k, v)
  if protected[t] then refuse() end
  return raw_set(t, k, v)
end
setmetatable = function(t, m)
  if protected[t] then refuse() end
  return set_mt(t, m)
end
getmetatable = function(t)
  local m = get_mt(t)
  if m == false then return nil end
  return m
end
for _, name in ipairs({'string', 'table', 'math', 'coroutine', 'cjson', 'cmsgpack', 'bit', 'struct'}) do
  raw_set(_G, name, view(raw_get(_G, name)))
end
-- String methods are found through the view too, and the strings'
-- metatable is seen only through one.
local string_meta = getmetatable('')
string_meta.__index = raw_get(_G, 'string')
string_meta.__metatable = view(string_meta)
local api = {}
redis = view(api)
local function error_table(e)
  if string.sub(e, 1, 1) ~= '-' then e = '-' .. e end
  local space = string.find(e, ' ', 1, true)
  if space then
    return {err = string.sub(e, 2, space - 1) .. ' ' .. string.sub(e, space + 1)}
  end
  return {err = 'ERR ' .. string.sub(e, 2)}
end
local bad_args = {err = 'ERR wrong number or type of arguments'}
api.error_reply = function(e)
  if type(e) ~= 'string' then return bad_args end
  e = string.gsub(e, '[\r\n]+$', '')
  return error_table(e)
end
api.status_reply = function(s)
  if type(s) ~= 'string' then return bad_args end
  return {ok = s}
end
api.sha1hex = sha1hex
api.log = function(...)
  local n = select('#', ...)
  if n < 2 then err({err = 'ERR redis.log() requires two arguments or more.'}) end
  local level = ...
  if type(level) ~= 'number' then err({err = 'ERR First argument must be a number (log level).'}) end
  if level < 0 or level > 3 then err({err = 'ERR Invalid debug level.'}) end
  local parts = {}
  for i = 2, n do
    local v = select(i, ...)
    if type(v) == 'string' or type(v) == 'number' then parts[#parts + 1] = tostring(v) end
  end
  write_log(level, concat(parts, ' '))
end
api.setresp = setresp
api.set_repl = function() end
api.replicate_commands = function() return true end
api.breakpoint = function() return false end
api.debug = function() end
api.LOG_DEBUG, api.LOG_VERBOSE, api.LOG_NOTICE, api.LOG_WARNING = 0, 1, 2, 3
api.REPL_NONE, api.REPL_AOF, api.REPL_SLAVE, api.REPL_REPLICA, api.REPL_ALL = 0, 1, 2, 2, 3
api.REDIS_VERSION, api.REDIS_VERSION_NUM = version, version_num
-- A read-only view of `t` that fails on what `t` lacks.
local function strict(t)
  local v = set_mt({}, {
    __index = function(v, k)
      local found = raw_get(t, k)
      if found == nil then missing(v, k) end
      return found
    end,
    __newindex = readonly,
    __metatable = false,
  })
  protected[v] = true
  return v
end
-- What a library's code sees while it loads (Redis's library API);
-- register_function is added by the host.
local load_api = {log = api.log, REDIS_VERSION = version, REDIS_VERSION_NUM = version_num}
load_api.LOG_DEBUG, load_api.LOG_VERBOSE, load_api.LOG_NOTICE, load_api.LOG_WARNING = 0, 1, 2, 3
local load_globals = strict({redis = strict(load_api)})
local library_meta = {__index = _G, __newindex = readonly, __metatable = false}
local library_env = set_mt({}, library_meta)
protected[library_env] = true
-- A function is called with its keys and arguments through one
-- trampoline (no closure made per call; functions never nest).
local call_f, call_keys, call_args
local function trampoline() return call_f(call_keys, call_args) end
local fcall = function(f, handler, keys, args)
  call_f, call_keys, call_args = f, keys, args
  local ok, value = raw_xpcall(trampoline, handler)
  call_f, call_keys, call_args = nil, nil, nil
  return ok, value
end
-- Lua 5.1 loads bytecode given to loadstring or load; Redis's Lua parses
-- every chunk as text, so bytecode fails to load there (a syntax error at
-- its first byte), as it does here: a leading space makes Lua's parser
-- read it as text, under the name it would have had.
local raw_loadstring = loadstring
loadstring = function(s, name)
  if type(s) == 'string' and string.byte(s, 1) == 27 then
    return raw_loadstring(' ' .. s, name or s)
  end
  return raw_loadstring(s, name)
end
local raw_load = load
load = function(f, name)
  if type(f) ~= 'function' then return raw_load(f, name) end
  local parts = {}
  while true do
    local piece = f()
    if piece == nil or piece == '' then break end
    if type(piece) ~= 'string' then return nil, 'reader function must return a string' end
    parts[#parts + 1] = piece
  end
  return loadstring(concat(parts), name or '=(load)')
end
-- The globals scripts see are an empty table in front of the real ones
-- (`run_globals`), so that assigning any global fails, an existing one
-- (redis, pcall, _G) included: Redis 7 makes the globals table itself
-- read-only. A script's KEYS and ARGV are set there for its run.
local G, run_globals = _G, {}
for k, v in next, G do raw_set(run_globals, k, v) end
for k in next, run_globals do raw_set(G, k, nil) end
set_mt(run_globals, {
  __index = function(t, k)
    err("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
})
local globals_meta = {__index = run_globals, __newindex = readonly}
raw_set(run_globals, 'rawget', function(t, k)
  local v = raw_get(t, k)
  if v == nil and t == G then return raw_get(run_globals, k) end
  return v
end)
globals_meta.__metatable = view(globals_meta)
set_mt(G, globals_meta)
protected[G] = true
return api, run_globals, load_api, load_globals, library_meta, library_env, fcall
"#;

impl Vm {
    fn new() -> mlua::Result<Vm> {
        use mlua::StdLib;
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            mlua::LuaOptions::default(),
        )?;
        let g = lua.globals();
        // Error objects carry where in the script they arose, as Redis's
        // error handler records it.
        let handler = lua.create_function(|lua, e: Value| {
            let (chunk, line) = script_frame(lua);
            let t = match e {
                Value::Table(t) => t,
                // A refused redis.call: its reply's text, as Redis raises it.
                Value::Error(e) if call_error(&e).is_some() => {
                    let c = call_error(&e).expect("checked");
                    let t = lua.create_table()?;
                    t.raw_set("err", c.text)?;
                    if c.counted {
                        t.raw_set("counted", true)?;
                    }
                    t
                }
                Value::String(s) => {
                    let t = lua.create_table()?;
                    t.raw_set("err", format!("ERR {}", s.to_string_lossy()))?;
                    t
                }
                // A library function's error, worded as Lua words one raised
                // from C: with the script's position.
                Value::Error(e) => {
                    let t = lua.create_table()?;
                    t.raw_set("err", format!("ERR {chunk}:{line}: {}", innermost(&e)))?;
                    t
                }
                other => {
                    let t = lua.create_table()?;
                    t.raw_set("err", format!("ERR {}", other.to_string()?))?;
                    t
                }
            };
            t.raw_set("line", line)?;
            t.raw_set("chunk", chunk)?;
            Ok(t)
        })?;
        g.raw_set("cjson", cjson::library(&lua)?)?;
        g.raw_set("cmsgpack", cmsgpack::library(&lua)?)?;
        g.raw_set("bit", bit::library(&lua)?)?;
        g.raw_set("struct", structlib::library(&lua)?)?;
        libs::guard_unpack(&lua, &g)?;
        let xpcall: Function = g.raw_get("xpcall")?;
        // As Redis's: exactly one argument, a string or a number (what
        // Lua cannot make a string of hashes as the empty string).
        let sha1hex = lua.create_function(|lua, args: MultiValue| {
            let [v] = <[Value; 1]>::try_from(args.into_vec()).map_err(|_| {
                mlua::Error::external(CallError::new("ERR wrong number of arguments".into()))
            })?;
            Ok(match lua.coerce_string(v).ok().flatten() {
                Some(s) => sha1_hex(&s.as_bytes()),
                None => sha1_hex(b""),
            })
        })?;
        let log = lua.create_function(|_, (level, text): (i64, mlua::String)| {
            let text = text.to_string_lossy();
            match level {
                0 => tracing::debug!("{text}"),
                1 | 2 => tracing::info!("{text}"),
                _ => tracing::warn!("{text}"),
            }
            Ok(())
        })?;
        let stopped = lua.create_function(|_, ()| Ok(STOPPED.with(|s| s.borrow().clone())))?;
        // What Lua code catches of an error raised from Rust: a refused
        // redis.call's error table (Redis raises those as tables), or the
        // message of another (a C library's error is a string in Redis).
        let error_value = lua.create_function(|lua, e: Value| {
            Ok(match e {
                Value::Error(e) => match call_error(&e) {
                    Some(c) => {
                        let t = lua.create_table()?;
                        t.raw_set("err", c.text)?;
                        Value::Table(t)
                    }
                    None => Value::String(lua.create_string(innermost(&e))?),
                },
                other => other,
            })
        })?;
        let setresp = lua.create_function(|lua, args: MultiValue| {
            let fail = |m: &str| mlua::Error::external(CallError::new(format!("ERR {m}")));
            let [v] = <[Value; 1]>::try_from(args.into_vec())
                .map_err(|_| fail("redis.setresp() requires one argument."))?;
            match lua.coerce_number(v).ok().flatten() {
                Some(n) if n == 2.0 || n == 3.0 => {
                    SCRIPT_RESP.set(n as u8);
                    Ok(())
                }
                _ => Err(fail("RESP version must be 2 or 3.")),
            }
        })?;
        let (api, run_globals, load_api, load_globals, library_meta, library_env, fcall): (
            Table,
            Table,
            Table,
            Table,
            Table,
            Table,
            Function,
        ) = lua.load(PRELUDE).set_name("@__redis_prelude").call((
            sha1hex,
            log,
            stopped,
            setresp,
            REDIS_VERSION.0,
            REDIS_VERSION.1,
            error_value,
        ))?;
        let registering: Rc<RefCell<Option<Vec<Registered>>>> = Rc::default();
        let record = registering.clone();
        let register = lua.create_function(move |lua, args: MultiValue| {
            let fail = |m: &str| mlua::Error::external(CallError::new(format!("ERR {m}")));
            let f = registration(lua, args).map_err(fail)?;
            let mut list = record.borrow_mut();
            let Some(list) = list.as_mut() else {
                return Err(fail(
                    "redis.register_function can only be called on FUNCTION LOAD command",
                ));
            };
            if !super::functions::valid_name(f.name.as_bytes()) {
                return Err(fail("Function names can only contain letters, numbers, or underscores(_) and must be at least one character long"));
            }
            // Exactly, as Redis: a library may register names that differ
            // only by case (FCALL finds the first registered; a log that
            // holds such a library must load).
            if list.iter().any(|r| r.name == f.name) {
                return Err(fail("Function already exists in the library"));
            }
            list.push(f);
            Ok(())
        })?;
        load_api.raw_set("register_function", register)?;
        // Functions, not Lua wrappers: a script's `return redis.call(...)`
        // is then no tail call, and an error knows the script's line.
        let (call, pcall) = call_functions(&lua)?;
        api.raw_set("call", call)?;
        api.raw_set("pcall", pcall)?;
        api.raw_set(
            "acl_check_cmd",
            lua.create_function(|_, call: MultiValue| {
                Running::with(|ctx, _, _| acl_check_cmd(ctx, call))
                    .unwrap_or_else(|| {
                        Err(CommandError::err(
                            "redis.acl_check_cmd can only be called while a script runs",
                        ))
                    })
                    .map_err(|e| mlua::Error::external(CallError::from(e)))
            })?,
        )?;
        lua.set_global_hook(
            mlua::HookTriggers::new().every_nth_instruction(100_000),
            deadline_hook,
        )?;
        let compiled = lua.create_table()?;
        let functions = lua.create_table()?;
        let chunk_names = [
            lua.create_string("@user_script")?,
            lua.create_string("@user_function")?,
        ];
        Ok(Vm {
            lua,
            _chunk_names: chunk_names,
            generation: GENERATION.load(Relaxed),
            compiled,
            xpcall,
            handler,
            run_globals,
            fcall,
            library_env,
            library_meta,
            load_globals,
            registering,
            functions,
            functions_at: None,
            recent_functions: Default::default(),
            keys_set: Default::default(),
            reported: Default::default(),
            functions_memory: 0,
            since_gc: 0,
        })
    }

    /// Brings this state's share of [`VM_MEMORY`] up to date.
    fn report(&self) {
        let total = self.lua.used_memory() as i64;
        let now = (
            (total - self.functions_memory).max(0),
            self.functions_memory,
        );
        let was = self.reported.replace(now);
        VM_MEMORY[0].fetch_add(now.0 - was.0, Relaxed);
        VM_MEMORY[1].fetch_add(now.1 - was.1, Relaxed);
    }

    /// The script's function, compiled on first use on this thread.
    fn function(&mut self, sha: &str, body: &[u8]) -> Result<Function, CommandError> {
        let lua_err = |e: mlua::Error| CommandError::err(format!("Lua: {e}"));
        let generation = GENERATION.load(Relaxed);
        if generation != self.generation {
            self.compiled = self.lua.create_table().map_err(lua_err)?;
            self.generation = generation;
        }
        if let Some(f) = self
            .compiled
            .raw_get::<Option<Function>>(sha)
            .map_err(lua_err)?
        {
            return Ok(f);
        }
        let f = self
            .lua
            .load(body)
            .set_name("@user_script")
            .into_function()
            .map_err(|e| {
                CommandError::err(format!(
                    "Error compiling script (new function): {}",
                    syntax_error(&e)
                ))
            })?;
        self.compiled.raw_set(sha, f.clone()).map_err(lua_err)?;
        Ok(f)
    }

    /// Runs a library's code (after its shebang line) as FUNCTION LOAD
    /// does: with only the load API in sight, stopped after 500 ms.
    /// Returns the functions it registered, or Redis's error text.
    pub(super) fn load_library(&self, code: &[u8]) -> Result<Vec<Registered>, String> {
        let chunk = self
            .lua
            .load(code)
            .set_name("@user_function")
            .set_environment(self.library_env.clone())
            .into_function()
            .map_err(|e| format!("Error compiling function: {}", syntax_error(&e)))?;
        *self.registering.borrow_mut() = Some(Vec::new());
        let swap = |to: Table| self.library_meta.raw_set("__index", to);
        let ran = swap(self.load_globals.clone()).and_then(|_| {
            time_limited(Duration::from_millis(500), Stop::Load, || {
                self.xpcall
                    .call::<(bool, Value)>((chunk, self.handler.clone()))
            })
        });
        let ran = ran.and_then(|r| swap(self.lua.globals()).map(|_| r));
        let registered = self.registering.borrow_mut().take().unwrap_or_default();
        let failed = |e: String| format!("Error registering functions: {e}");
        match ran {
            Ok((true, _)) => Ok(registered),
            Ok((false, Value::Table(t))) => Err(failed(
                t.raw_get::<Option<String>>("err")
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
            )),
            Ok((_, other)) => Err(failed(format!("{other:?}"))),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// The callback of the function registered as `name`.
    fn function_named(&self, name: &str) -> Result<Function, CommandError> {
        let mut recent = self.recent_functions.borrow_mut();
        if let Some((_, f)) = recent.iter().find(|(n, _)| n == name) {
            return Ok(f.clone());
        }
        let f = self
            .functions
            .raw_get::<Option<Function>>(name)
            .ok()
            .flatten()
            .ok_or_else(|| CommandError::err("Function not found"))?;
        if recent.len() == 4 {
            recent.remove(0);
        }
        recent.push((name.to_string(), f.clone()));
        Ok(f)
    }

    /// Loads the libraries anew on this thread if they changed since it
    /// last did.
    fn sync_functions(&mut self) -> Result<(), CommandError> {
        if self.functions_at == Some(super::functions::generation()) {
            return Ok(());
        }
        let (generation, libraries) = super::functions::libraries();
        let lua_err = |e: mlua::Error| CommandError::err(format!("Lua: {e}"));
        // What the old callbacks held goes first, so that what loading
        // takes is the libraries' alone.
        self.functions = self.lua.create_table().map_err(lua_err)?;
        self.lua.gc_collect().map_err(lua_err)?;
        let before = self.lua.used_memory() as i64;
        let table = self.lua.create_table().map_err(lua_err)?;
        for library in libraries {
            match self.load_library(library.body()) {
                Ok(registered) => {
                    for f in registered {
                        table.raw_set(f.name, f.callback).map_err(lua_err)?;
                    }
                }
                // It loaded once, where FUNCTION LOAD ran; only a load
                // that ran out of time on a busy thread fails here.
                Err(e) => tracing::warn!("Library '{}' did not load: {e}", library.name),
            }
        }
        self.functions = table;
        self.functions_at = Some(generation);
        self.recent_functions.borrow_mut().clear();
        self.functions_memory = (self.lua.used_memory() as i64 - before).max(0);
        Ok(())
    }
}

/// Reads redis.register_function's arguments: a name and a callback, or
/// one table of named arguments (function_name, callback, flags,
/// description). Errors are Redis's texts.
fn registration(lua: &Lua, args: MultiValue) -> Result<Registered, &'static str> {
    let text = |v: Value| -> Option<mlua::String> { lua.coerce_string(v).ok().flatten() };
    let mut args = args.into_iter();
    match (args.next(), args.next(), args.next()) {
        (Some(name), Some(callback), None) => {
            let name =
                text(name).ok_or("first argument to redis.register_function must be a string")?;
            let Value::Function(callback) = callback else {
                return Err("second argument to redis.register_function must be a function");
            };
            Ok(Registered {
                name: name.to_string_lossy(),
                description: None,
                flags: ScriptFlags::default(),
                callback,
            })
        }
        (Some(named), None, None) => {
            let Value::Table(t) = named else {
                return Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).");
            };
            let (mut name, mut description, mut callback) = (None, None, None);
            let mut flags = ScriptFlags::default();
            for pair in t.pairs::<Value, Value>() {
                let (k, v) =
                    pair.map_err(|_| "unknown argument given to redis.register_function")?;
                let key = text(k)
                    .ok_or("named argument key given to redis.register_function is not a string")?;
                let key = key.to_string_lossy().to_ascii_lowercase();
                match key.as_str() {
                    "function_name" => {
                        name = Some(text(v).ok_or("function_name argument given to redis.register_function must be a string")?);
                    }
                    "description" => {
                        description = Some(text(v).ok_or("description argument given to redis.register_function must be a string")?);
                    }
                    "callback" => {
                        let Value::Function(f) = v else {
                            return Err("callback argument given to redis.register_function must be a function");
                        };
                        callback = Some(f);
                    }
                    "flags" => {
                        let Value::Table(list) = v else {
                            return Err("flags argument to redis.register_function must be a table representing function flags");
                        };
                        for i in 1.. {
                            match list.raw_get::<Value>(i) {
                                Ok(Value::Nil) => break,
                                Ok(v) => {
                                    let known =
                                        text(v).is_some_and(|f| flags.add(&f.as_bytes(), true));
                                    if !known {
                                        return Err("unknown flag given");
                                    }
                                }
                                Err(_) => return Err("unknown flag given"),
                            }
                        }
                    }
                    _ => return Err("unknown argument given to redis.register_function"),
                }
            }
            let name = name.ok_or("redis.register_function must get a function name argument")?;
            let callback =
                callback.ok_or("redis.register_function must get a callback argument")?;
            Ok(Registered {
                name: name.to_string_lossy(),
                description: description.map(|d| Bytes::copy_from_slice(&d.as_bytes())),
                flags,
                callback,
            })
        }
        _ => Err("wrong number of arguments to redis.register_function"),
    }
}

/// A compile error's text, as Lua gives it (`user_script:1: ...`).
fn syntax_error(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The chunk (`user_script`, `user_function`) and line of the innermost
/// frame that belongs to a script or a library.
fn script_frame(lua: &Lua) -> (&'static str, i64) {
    (0..64)
        .find_map(|level| {
            lua.inspect_stack(level, |d| {
                let chunk = match d.source().source.as_deref() {
                    Some("@user_script") => "user_script",
                    Some("@user_function") => "user_function",
                    _ => return None,
                };
                Some((chunk, d.current_line().map_or(0, |n| n as i64)))
            })?
        })
        .unwrap_or(("user_script", 0))
}

/// The Rust error by which redis.call raises a command's error reply
/// (and the host its own stops). `counted`: a command's error, already in
/// the error statistics (Redis counts an error once, where it arose).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text}")]
struct CallError {
    text: String,
    counted: bool,
}

impl CallError {
    fn new(text: String) -> Self {
        CallError {
            text,
            counted: false,
        }
    }
}

impl From<CommandError> for CallError {
    fn from(e: CommandError) -> Self {
        CallError {
            counted: matches!(e, CommandError::Counted(_)),
            text: e.to_string(),
        }
    }
}

/// The command error a Lua error carries, if it is redis.call's.
fn call_error(e: &mlua::Error) -> Option<CallError> {
    match e {
        mlua::Error::CallbackError { cause, .. } => call_error(cause),
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<CallError>().cloned(),
        _ => None,
    }
}

/// The message at the root of a Lua error raised by Rust code.
fn innermost(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => innermost(cause),
        mlua::Error::RuntimeError(m) => m.clone(),
        other => other.to_string(),
    }
}

fn sha1_hex(b: &[u8]) -> String {
    crate::persistence::digest::hex(&Sha1::digest(b))
}

/// Caches `body` under `sha` (a copy of the key only the first time).
fn cache(sha: &str, body: &Bytes) {
    let mut cache = CACHE.lock();
    if !cache.contains_key(sha) {
        // A copy: the body may be a slice of the request's read buffer.
        cache.insert(sha.to_string(), Bytes::copy_from_slice(body));
    }
}

pub(super) fn with_vm<R>(
    f: impl FnOnce(&mut Vm) -> Result<R, CommandError>,
) -> Result<R, CommandError> {
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let vm = Vm::new().map_err(|e| CommandError::err(format!("Lua: {e}")))?;
            *slot = Some(vm);
        }
        let vm = slot.as_mut().expect("set above");
        let r = f(vm);
        vm.since_gc += 1;
        if vm.since_gc == GC_PERIOD {
            vm.since_gc = 0;
            let _ = vm.lua.gc_step_kbytes(GC_PERIOD as i32);
        }
        vm.report();
        r
    })
}

/// What scripts and functions hold, for INFO and MEMORY STATS.
pub struct ScriptMemory {
    /// The Lua states' memory: scripts' and functions' shares.
    pub vm_eval: u64,
    pub vm_functions: u64,
    /// The script cache: scripts and their bytes.
    pub cached_scripts: usize,
    pub scripts_bytes: usize,
    pub libraries: usize,
    pub functions: usize,
    /// Libraries' code and their functions' names and descriptions.
    pub functions_bytes: usize,
}

pub fn memory() -> ScriptMemory {
    let (cached_scripts, scripts_bytes) = {
        let c = CACHE.lock();
        (c.len(), c.iter().map(|(k, v)| k.len() + v.len()).sum())
    };
    let (libraries, functions, functions_bytes) = super::functions::counts();
    ScriptMemory {
        vm_eval: VM_MEMORY[0].load(Relaxed).max(0) as u64,
        vm_functions: VM_MEMORY[1].load(Relaxed).max(0) as u64,
        cached_scripts,
        scripts_bytes,
        libraries,
        functions,
        functions_bytes,
    }
}

/// Shows a script's command in MONITOR before the commands it calls (its
/// row says `skip_monitor`: the connection would show it after them).
pub(super) fn tell_monitors(ctx: &Ctx, argv: &[Bytes]) {
    let server = ctx.server;
    if server.monitor_count.load(Relaxed) > 0 {
        let addr = ctx.client.handle.addr.to_string();
        let line = crate::server::connection::monitor_line(ctx.now_ms, ctx.client.db, &addr, argv);
        let _ = server.monitors.send(line.into());
    }
}

fn eval(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    tell_monitors(ctx, argv);
    run_script(ctx, argv, sent(&argv[1]), true, false)
}

fn eval_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    tell_monitors(ctx, argv);
    run_script(ctx, argv, sent(&argv[1]), true, true)
}

/// A script EVAL sent.
fn sent(body: &Bytes) -> Cached {
    Cached {
        sha: sha1_hex(body)
            .as_bytes()
            .try_into()
            .expect("a SHA1 in hex is 40 bytes"),
        body: body.clone(),
        declared: shebang(body),
        generation: GENERATION.load(Relaxed),
        compiled: None,
    }
}

fn evalsha(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    by_sha(ctx, argv, false)
}

fn evalsha_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    by_sha(ctx, argv, true)
}

fn by_sha(ctx: &mut Ctx, argv: &[Bytes], read_only: bool) -> CmdResult {
    tell_monitors(ctx, argv);
    let Some(script) = cached(&argv[1], Cached::clone) else {
        return Err(CommandError::err_code(
            "NOSCRIPT No matching script. Please use EVAL.",
        ));
    };
    run_script(ctx, argv, script, false, read_only)
}

/// Runs `script` with the keys and arguments that follow its key count;
/// one sent by EVAL (`eval`) is cached once it compiles.
fn run_script(ctx: &mut Ctx, argv: &[Bytes], script: Cached, eval: bool, ro: bool) -> CmdResult {
    let sha = std::str::from_utf8(&script.sha).expect("a SHA1 in hex");
    let body = &script.body;
    let numkeys = super::args::int(&argv[2])?;
    if numkeys < 0 {
        return Err(CommandError::err("Number of keys can't be negative"));
    }
    if numkeys as usize > argv.len() - 3 {
        return Err(CommandError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let split = 3 + numkeys as usize;
    let (keys, args) = (&argv[3..split], &argv[split..]);
    let declared = script.declared?;
    let code = &body[declared.map_or(0, |(_, at)| at)..];
    let how = match declared {
        Some((flags, _)) => Invocation::declared(sha, "user_script", flags, ro, argv)?,
        None => {
            // Redis's compatibility mode: a stale replica refuses the
            // script itself (its row says `stale` for those that declare
            // `allow-stale`).
            let (repl, tun) = (&ctx.server.replication, &ctx.server.tun);
            if repl.is_replica() && !repl.link_up() && !tun.replica_serve_stale.load(Relaxed) {
                return Err(CommandError::MasterDown);
            }
            Invocation {
                name: sha,
                chunk: "user_script",
                read_only: ro,
                oom_per_call: true,
                argv,
            }
        }
    };
    invoke(ctx, |ctx| {
        with_vm(|vm| {
            let f = match script.compiled {
                Some(f) => f,
                None => {
                    let f = vm.function(sha, code)?;
                    if eval {
                        // Cached once it compiles, as Redis caches what
                        // EVAL ran.
                        cache(sha, body);
                    } else {
                        remember_compiled(&script.sha, &f);
                    }
                    f
                }
            };
            execute(vm, ctx, f, keys, args, &how)
        })
    })
}

/// FCALL's and FCALL_RO's run (`argv`, its keys from 3 to `split`) of the
/// function `name` (as registered), which the registry holds with `flags`
/// (checked there: it exists, and the key count).
pub(super) fn call_function(
    ctx: &mut Ctx,
    name: &str,
    flags: ScriptFlags,
    argv: &[Bytes],
    split: usize,
    ro: bool,
) -> CmdResult {
    let (keys, args) = (&argv[3..split], &argv[split..]);
    let how = Invocation::declared(name, "user_function", flags, ro, argv)?;
    invoke(ctx, |ctx| {
        with_vm(|vm| {
            vm.sync_functions()?;
            if vm.keys_set.take() {
                clear_keys_and_args(vm).map_err(|e| CommandError::err(format!("Lua: {e}")))?;
            }
            let f = vm.function_named(name)?;
            execute(vm, ctx, f, keys, args, &how)
        })
    })
}

/// How a script or function runs.
struct Invocation<'a> {
    /// What its errors name: a script's SHA1, a function's name.
    name: &'a str,
    /// The chunk its code is (`user_script`, `user_function`); a function
    /// takes its keys and arguments as parameters, a script as KEYS and
    /// ARGV.
    chunk: &'static str,
    /// No command it calls may write (the _RO commands, `no-writes`).
    read_only: bool,
    /// Each command it calls meets `maxmemory` (Redis's compatibility
    /// mode); one that declares its flags met it once, before it started.
    oom_per_call: bool,
    /// The command that runs it (FUNCTION STATS shows it).
    argv: &'a [Bytes],
}

impl<'a> Invocation<'a> {
    /// A script or function that declares `flags`, run by a _RO command
    /// if `ro`: refused if it may write (Redis's scriptPrepareForRun; the
    /// rest of its checks were made on the command's flags).
    fn declared(
        name: &'a str,
        chunk: &'static str,
        flags: ScriptFlags,
        ro: bool,
        argv: &'a [Bytes],
    ) -> Result<Self, CommandError> {
        let writes = !flags.has(ScriptFlags::NO_WRITES);
        if writes && ro {
            return Err(CommandError::err(
                "Can not execute a script with write flag using *_ro command.",
            ));
        }
        Ok(Invocation {
            name,
            chunk,
            read_only: !writes,
            oom_per_call: false,
            argv,
        })
    }
}

/// Runs `run` as one script: alone (the gate held exclusively; inside
/// EXEC the transaction holds it), its effects one unit (`Ctx::record`).
fn invoke(ctx: &mut Ctx, run: impl FnOnce(&mut Ctx) -> CmdResult) -> CmdResult {
    let nested = ctx.client.exec_effects.get().is_some();
    let gate = alone(ctx.server, ctx.client);
    // Held up by another script or EXEC: the script's time is when it
    // starts.
    if gate.as_ref().is_some_and(|g| g.waited) {
        ctx.now_ms = crate::server::now_ms();
    }
    if !nested {
        ctx.start_unit();
    }
    let in_script = std::mem::replace(&mut ctx.client.in_script, true);
    let result = run(ctx);
    ctx.client.in_script = in_script;
    if !nested {
        ctx.end_unit();
    }
    result
}

/// The transaction gate held exclusively while a script runs or the
/// libraries change, so that no other command interleaves (nor a
/// snapshot's instant); `None` inside EXEC, which holds it already.
pub(super) fn alone<'s>(
    server: &'s crate::server::Server,
    client: &crate::server::client::Client,
) -> Option<crate::server::watches::Exclusive<'s>> {
    client
        .exec_effects
        .get()
        .is_none()
        .then(|| server.gate.exclusive())
}

/// The tables of a run's keys and arguments, made KEYS and ARGV for a
/// script (`globals`). Built in one protected call: through mlua's API
/// each string and each table slot is a protected call of its own, some
/// 700 instructions apiece and a third of a short script's run.
fn key_and_arg_tables(
    vm: &Vm,
    keys: &[Bytes],
    args: &[Bytes],
    globals: bool,
) -> mlua::Result<(Table, Table)> {
    use mlua::ffi;
    // SAFETY: the closure runs in protected mode (a Lua error unwinds to
    // `exec_raw`) and owns nothing to drop. Its frame holds `run_globals`
    // at 1, the tables go to 2 and 3, and it pushes at most two values
    // more: within the LUA_MINSTACK slots a C function is given.
    unsafe {
        vm.lua.exec_raw(&vm.run_globals, |state| {
            for items in [keys, args] {
                ffi::lua_createtable(state, items.len().min(i32::MAX as usize) as i32, 0);
                for (i, a) in items.iter().enumerate() {
                    ffi::lua_pushlstring(state, a.as_ptr().cast(), a.len());
                    ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
                }
            }
            if globals {
                vm.keys_set.set(true);
                for (name, at) in [(c"KEYS", 2), (c"ARGV", 3)] {
                    ffi::lua_pushstring(state, name.as_ptr());
                    ffi::lua_pushvalue(state, at);
                    ffi::lua_rawset(state, 1);
                }
            }
            ffi::lua_remove(state, 1);
        })
    }
}

/// Unsets the last script's KEYS and ARGV (one protected call, as above).
fn clear_keys_and_args(vm: &Vm) -> mlua::Result<()> {
    use mlua::ffi;
    // SAFETY: as in `key_and_arg_tables`; the frame holds `run_globals`
    // at 1 and is left empty.
    unsafe {
        vm.lua.exec_raw(&vm.run_globals, |state| {
            for name in [c"KEYS", c"ARGV"] {
                ffi::lua_pushstring(state, name.as_ptr());
                ffi::lua_pushnil(state);
                ffi::lua_rawset(state, 1);
            }
            ffi::lua_settop(state, 0);
        })
    }
}

/// Runs the compiled script or function with its keys and arguments, its
/// redis.call bound to `ctx`, and writes its value as the reply.
fn execute(
    vm: &Vm,
    ctx: &mut Ctx,
    f: Function,
    keys: &[Bytes],
    args: &[Bytes],
    how: &Invocation,
) -> CmdResult {
    let lua_err = |e: mlua::Error| CommandError::err(format!("Lua: {e}"));
    let function = how.chunk == "user_function";
    let keys_given = keys;
    let (keys, args) = key_and_arg_tables(vm, keys, args, !function).map_err(lua_err)?;
    let limit = ctx.server.tun.busy_reply_ms.load(Relaxed).max(0) as u64;
    // The value is written in the client's protocol (a nil is RESP3's
    // null to a RESP3 client).
    let protocol = ctx.out.proto;
    SCRIPT_RESP.set(2);
    // A SELECT inside the script holds for the script only, as in Redis 7.
    let caller_db = ctx.client.db;
    let server = ctx.server;
    let ran = {
        let _running = Running::enter(ctx, keys_given, how);
        let _ends = EndsBusy(server);
        time_limited(Duration::from_millis(limit), Stop::Script(limit), || {
            if function {
                vm.fcall
                    .call::<(bool, Value)>((f, vm.handler.clone(), keys, args))
            } else {
                vm.xpcall.call::<(bool, Value)>((f, vm.handler.clone()))
            }
        })
    };
    if ctx.client.db != caller_db {
        ctx.client.db = caller_db;
        ctx.client.handle.db.store(caller_db, Relaxed);
    }
    let outcome = ran.and_then(|r| {
        let mut out = ReplyBuf::scratch(protocol);
        let counted = |t: &Table| {
            t.raw_get::<Option<bool>>("counted")
                .map(|c| c == Some(true))
        };
        let failed = match &r {
            // An error value is the command's error reply: counted in the
            // error statistics unless a command's error it passes on.
            // Only a string `err` makes one, as in Redis: `{err = 5}` is
            // an (empty) array.
            (true, Value::Table(t)) if matches!(t.raw_get::<Value>("err")?, Value::String(_)) => {
                let e = t.raw_get::<mlua::String>("err")?.to_string_lossy();
                Some((e, counted(t)?))
            }
            (true, v) => {
                to_reply(&mut out, v);
                None
            }
            (false, Value::Table(t)) => {
                let e: String = t.raw_get::<Option<String>>("err")?.unwrap_or_default();
                let line: i64 = t.raw_get::<Option<i64>>("line")?.unwrap_or(0);
                let chunk = t
                    .raw_get::<Option<String>>("chunk")?
                    .unwrap_or_else(|| how.chunk.to_string());
                let text = format!("{e} script: {}, on @{chunk}:{line}.", how.name);
                Some((text, counted(t)?))
            }
            (false, other) => Some((format!("ERR {other:?} script: {}", how.name), false)),
        };
        Ok((out.buf.to_vec(), failed))
    });
    let (reply, failed) = outcome.map_err(lua_err)?;
    if let Some((e, counted)) = failed {
        // An error table's text is replied as it is: a leading '-' stays
        // (redis.error_reply drops one; a table made by hand keeps it).
        return Err(if counted {
            CommandError::Counted(e)
        } else {
            CommandError::err_code(e)
        });
    }
    ctx.out.buf.extend_from_slice(&reply);
    Ok(())
}

/// The command context a running script's redis.call and redis.pcall
/// reach: set by [`Running::enter`] for the length of one run on this
/// thread, so that those two functions are made once per Lua state rather
/// than per run (mlua's scope made them afresh, a tenth of a short
/// function's cost).
#[derive(Clone, Copy)]
struct Running {
    ctx: std::ptr::NonNull<Ctx<'static>>,
    /// The keys the script or function declared.
    declared: std::ptr::NonNull<[Bytes]>,
    how: std::ptr::NonNull<Invocation<'static>>,
}

thread_local! {
    static RUNNING: std::cell::Cell<Option<Running>> = const { std::cell::Cell::new(None) };
    /// The running script's declared keys are remembered for its tracking
    /// caller already.
    static TRACKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, redis.call on this thread runs commands in `ctx`'s name.
struct RunningGuard(Option<Running>);

impl Running {
    /// The caller must not use `ctx` until the guard is dropped: the Lua
    /// code it runs meanwhile uses it through [`Running::with`].
    fn enter(ctx: &mut Ctx<'_>, declared: &[Bytes], how: &Invocation<'_>) -> RunningGuard {
        let ctx = std::ptr::NonNull::from(ctx).cast::<Ctx<'static>>();
        TRACKED.set(false);
        WROTE.set(false);
        RunningGuard(RUNNING.replace(Some(Running {
            ctx,
            declared: std::ptr::NonNull::from(declared),
            how: std::ptr::NonNull::from(how).cast::<Invocation<'static>>(),
        })))
    }

    /// Runs `f` with the running script's context, declared keys and
    /// invocation, if a script runs.
    fn with<R>(f: impl FnOnce(&mut Ctx<'_>, &[Bytes], &Invocation<'_>) -> R) -> Option<R> {
        let run = RUNNING.get()?;
        // SAFETY: `enter` took the pointers from a `&mut Ctx`, a slice and
        // an invocation whose owner (`execute`) leaves them alone until
        // the guard drops, which clears them; they are read only on this
        // thread, by redis.call and redis.pcall and the time hook while
        // the run's Lua code executes (the hook never while a call runs),
        // and they never nest (a command a script calls cannot run Lua:
        // NOSCRIPT). So this is the only live reference to the context,
        // and none outlives the run (nothing here keeps them, whatever
        // their lifetimes say).
        let (ctx, declared, how) = unsafe {
            (
                &mut *run.ctx.as_ptr(),
                run.declared.as_ref(),
                run.how.as_ref(),
            )
        };
        Some(f(ctx, declared, how))
    }

    /// The running script has just passed busy-reply-threshold, having
    /// started at `started`: the node answers BUSY from now on.
    fn time_out(started: std::time::Instant) {
        Running::with(|ctx, _, how| {
            let function = how.chunk == "user_function";
            tracing::warn!(
                "Slow script detected: still in execution after {} milliseconds. You can try killing the script using the {} command. Script name is: {}.",
                started.elapsed().as_millis(),
                if function { "FUNCTION KILL" } else { "SCRIPT KILL" },
                how.name
            );
            let run = crate::server::busy::Run {
                function: function.then(|| how.name.to_string()),
                argv: how.argv.to_vec(),
                started,
            };
            ctx.server.busy.time_out(run, WROTE.get());
            if let Some(server) = ctx.server.this.get().and_then(std::sync::Weak::upgrade) {
                crate::server::start_busy_thread(&server);
            }
        });
    }

    /// Whether SCRIPT KILL (FUNCTION KILL) stopped the timed-out script.
    fn killed() -> bool {
        Running::with(|ctx, _, _| ctx.server.busy.killed()).unwrap_or(false)
    }

    /// The running script is about to call a write command: false if it
    /// was killed first, when it must stop without writing.
    fn may_write(ctx: &Ctx) -> bool {
        if TIMED_OUT.get() {
            return ctx.server.busy.may_write();
        }
        WROTE.set(true);
        true
    }
}

/// Ends the node's BUSY state, if the script running on this thread
/// timed out, once it ends.
struct EndsBusy<'a>(&'a crate::server::Server);

impl Drop for EndsBusy<'_> {
    fn drop(&mut self) {
        if TIMED_OUT.replace(false) {
            self.0.busy.end();
        }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RUNNING.set(self.0.take());
    }
}

/// redis.call and redis.pcall, made once per state (see [`Running`]).
fn call_functions(lua: &Lua) -> mlua::Result<(Function, Function)> {
    let outside = || CommandError::err("redis.call can only be called while a script runs");
    let call = lua.create_function(move |lua, call: MultiValue| {
        Running::with(|ctx, declared, how| redis_call(lua, ctx, declared, call, how))
            .unwrap_or_else(|| Err(outside()))
            .map_err(|e| mlua::Error::external(CallError::from(e)))
    })?;
    let pcall = lua.create_function(move |lua, call: MultiValue| {
        match Running::with(|ctx, declared, how| redis_call(lua, ctx, declared, call, how))
            .unwrap_or_else(|| Err(outside()))
        {
            Ok(v) => Ok(v),
            // A killed script's stop is not the call's error to return.
            Err(e) if STOPPED.with(|s| s.borrow().is_some()) => {
                Err(mlua::Error::external(CallError::from(e)))
            }
            Err(e) => Ok(Value::Table(error_table(lua, &e)?)),
        }
    })?;
    Ok((call, pcall))
}

/// The `{err = ...}` table of a refused call.
fn error_table(lua: &Lua, e: &CommandError) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", e.to_string())?;
    if matches!(e, CommandError::Counted(_)) {
        t.raw_set("counted", true)?;
    }
    Ok(t)
}

/// A redis library call's arguments as a command's (strings as they are,
/// numbers as Redis passes them).
fn call_argv(call: MultiValue) -> Result<Vec<Bytes>, CommandError> {
    let mut argv: Vec<Bytes> = Vec::with_capacity(call.len());
    for v in call {
        match v {
            Value::String(s) => argv.push(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(n) => argv.push(Bytes::from(n.to_string())),
            // As Redis passes a Lua number to a command: `%.17g`.
            Value::Number(n) => argv.push(Bytes::from(format_double(n))),
            _ => {
                return Err(CommandError::err(
                    "Lua redis lib command arguments must be strings or integers",
                ))
            }
        }
    }
    if argv.is_empty() {
        return Err(CommandError::err(
            "Please specify at least one argument for this redis lib call",
        ));
    }
    Ok(argv)
}

/// redis.acl_check_cmd(command, args...): whether the script's caller may
/// run that command on those arguments (its ACL user, `server::users`);
/// nothing runs. An unknown command is an error, a wrong argument count
/// is not (Redis looks the command up by name only).
fn acl_check_cmd(ctx: &mut Ctx, call: MultiValue) -> Result<bool, CommandError> {
    let argv = call_argv(call)?;
    let invalid = || CommandError::err("Invalid command passed to redis.acl_check_cmd()");
    let top = TABLE
        .index(&argv[0])
        .filter(|&i| !TABLE.all[i].name.contains('|'))
        .ok_or_else(invalid)?;
    let idx = match argv.get(1) {
        Some(sub) if !TABLE.all[top].subcommands.is_empty() => {
            let mut name = TABLE.all[top].name.as_bytes().to_vec();
            name.push(b'|');
            name.extend_from_slice(sub);
            TABLE.index(&name).ok_or_else(invalid)?
        }
        _ => top,
    };
    let users = &ctx.server.users;
    Ok(ctx
        .client
        .current_user(users)
        .is_none_or(|u| u.check(idx, TABLE.all[idx], &argv).is_ok()))
}

/// redis.call's work: the command resolved and run as a script may run
/// it, its reply converted to a Lua value.
fn redis_call(
    lua: &Lua,
    ctx: &mut Ctx,
    declared: &[Bytes],
    call: MultiValue,
    how: &Invocation,
) -> Result<Value, CommandError> {
    let (read_only, oom_per_call) = (how.read_only, how.oom_per_call);
    let argv = call_argv(call)?;
    let (idx, spec) = TABLE.resolve(&argv).map_err(|e| match e {
        CommandError::Arity(_) => {
            CommandError::err("Wrong number of args calling Redis command from script")
        }
        // A container's unknown subcommand is an unknown command to Redis.
        CommandError::UnknownCommand { .. } | CommandError::UnknownSubcommand { .. } => {
            CommandError::err("Unknown Redis command called from script")
        }
        other => other,
    })?;
    // What refuses the command before it runs counts as a rejected call
    // of it (INFO commandstats), as in Redis.
    let admitted = (|| {
        if spec.has(NOSCRIPT) && !ctx.server.scripts_run_anything.load(Relaxed) {
            return Err(CommandError::err(
                "This Redis command is not allowed from script",
            ));
        }
        // The caller's ACL user runs the script's commands.
        if let Err(e) =
            super::acl_check(ctx.server, ctx.client, Some(idx), spec, &argv, Some("lua"))
        {
            let what = match e {
                CommandError::NoPermKey => {
                    "access at least one of the keys mentioned in the command arguments"
                }
                CommandError::NoPermChannel => "publish to the channel mentioned in the command",
                _ => "run this command or subcommand",
            };
            return Err(CommandError::err(format!(
                "The user executing the script can't {what}"
            )));
        }
        // A read-only script may not run what may replicate either
        // (PUBLISH, PFCOUNT), as in Redis: such a script runs during
        // CLIENT PAUSE WRITE.
        if read_only && (spec.is_write() || spec.has(MAY_REPLICATE)) {
            return Err(CommandError::err(
                "Write commands are not allowed from read-only scripts.",
            ));
        }
        if spec.is_write() && !ctx.client.from_primary {
            if ctx.server.replication.is_replica() {
                return Err(CommandError::err_code(
                    "READONLY You can't write against a read only replica.",
                ));
            }
            // A script without flags is let in as a read; each write it
            // makes meets what a write command meets
            // (min-replicas-to-write, a failing disk), as in Redis.
            super::write_refused(ctx.server)?;
        }
        // Over `maxmemory` with nothing left to evict, a command that may
        // grow memory is refused inside a script too.
        if oom_per_call && spec.has(DENYOOM) && ctx.server.tun.maxmemory.load(Relaxed) > 0 {
            ctx.make_room()?;
        }
        Ok(())
    })();
    if let Err(e) = admitted {
        // Its error is counted here (INFO errorstats), once: caught by
        // redis.pcall, or the script's own error, it is not again.
        ctx.server.stats.commands[idx].rejected();
        ctx.server.stats.error(&e.code());
        return Err(CommandError::Counted(e.to_string()));
    }
    if spec.is_write() && !Running::may_write(ctx) {
        stop(KILLED);
        return Err(CommandError::err_code(KILLED));
    }
    let server = ctx.server;
    if server.monitor_count.load(Relaxed) > 0 && !spec.has(SKIP_MONITOR) && !spec.has(ADMIN) {
        let line = crate::server::connection::monitor_line(ctx.now_ms, ctx.client.db, "lua", &argv);
        let _ = server.monitors.send(line.into());
    }
    let resp3 = SCRIPT_RESP.get() == 3;
    let scratch = ReplyBuf::scratch(if resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    });
    // A tracking caller remembers the script's declared keys once the
    // script reads anything, as in Redis (not the keys its commands read).
    if spec.has(READONLY)
        && !TRACKED.get()
        && ctx
            .client
            .tracking
            .is_some_and(|m| m.remembers(ctx.client.caching))
    {
        TRACKED.set(true);
        super::remember(ctx, declared.iter().map(|k| &k[..]));
    }
    let saved = std::mem::replace(&mut *ctx.out, scratch);
    let started = std::time::Instant::now();
    let ran = super::run(ctx, spec, &argv);
    // Counted as a client's command is: calls, time, failures, errors.
    server.stats.commands_processed.add(1);
    server.stats.commands[idx].record(1, started.elapsed().as_micros() as u64, ran.is_err() as u64);
    if let Err(e) = &ran {
        server.stats.error(&e.code());
    }
    let scratch = std::mem::replace(&mut *ctx.out, saved);
    // Blocking and connection actions have no meaning inside a script.
    ctx.action = None;
    let unexpected = || CommandError::err("Unexpected reply from a command in a script");
    let error = |e: String| match ran {
        Err(_) => CommandError::Counted(e),
        Ok(()) => CommandError::err_code(e),
    };
    let lua_err = |e: mlua::Error| CommandError::err(format!("Lua: {e}"));
    if resp3 {
        use redis_protocol::resp3::types::OwnedFrame as F3;
        return match redis_protocol::resp3::decode::complete::decode(&scratch.buf) {
            Ok(Some((F3::SimpleError { data, .. }, _))) => Err(error(data)),
            Ok(Some((F3::BlobError { data, .. }, _))) => {
                Err(error(String::from_utf8_lossy(&data).into_owned()))
            }
            Ok(Some((frame, _))) => to_lua3(lua, frame).map_err(lua_err),
            _ => Err(unexpected()),
        };
    }
    if let Some(v) = plain_reply(lua, &scratch.buf) {
        return v.map_err(lua_err);
    }
    match redis_protocol::resp2::decode::decode(&scratch.buf) {
        Ok(Some((Frame::Error(e), _))) => Err(error(e)),
        Ok(Some((r, _))) => to_lua(lua, r).map_err(lua_err),
        _ => Err(unexpected()),
    }
}

/// The Lua value of a RESP2 reply that is one integer, one bulk string or
/// a null bulk, the replies most commands a script calls give, read
/// without decoding frames (`to_lua` converts them alike); `None` for the
/// rest.
fn plain_reply(lua: &Lua, reply: &[u8]) -> Option<mlua::Result<Value>> {
    let header_end = reply.iter().position(|&c| c == b'\r')?;
    let header = reply.get(1..header_end)?;
    let body = reply.get(header_end + 2..)?;
    match reply.first()? {
        b':' if body.is_empty() => {
            let n = crate::protocol::request::parse_i64(header)?;
            Some(Ok(Value::Number(n as f64)))
        }
        b'$' if header == b"-1" && body.is_empty() => Some(Ok(Value::Boolean(false))),
        b'$' => {
            let len = usize::try_from(crate::protocol::request::parse_i64(header)?).ok()?;
            (body.len() == len + 2 && body.ends_with(b"\r\n"))
                .then(|| lua.create_string(&body[..len]).map(Value::String))
        }
        _ => None,
    }
}

/// Redis's conversion of a reply into a Lua value (RESP2).
fn to_lua(lua: &Lua, r: Frame) -> mlua::Result<Value> {
    Ok(match r {
        Frame::Integer(n) => Value::Number(n as f64),
        Frame::BulkString(b) => Value::String(lua.create_string(&b)?),
        Frame::Null => Value::Boolean(false),
        Frame::SimpleString(s) => {
            let t = lua.create_table()?;
            t.raw_set("ok", lua.create_string(&s)?)?;
            Value::Table(t)
        }
        Frame::Error(e) => {
            let t = lua.create_table()?;
            t.raw_set("err", e)?;
            Value::Table(t)
        }
        Frame::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Redis's conversion of a RESP3 reply into a Lua value (after
/// `redis.setresp(3)`): nulls are nil, booleans booleans, and maps, sets,
/// doubles, big numbers and verbatim strings tables naming what they are.
fn to_lua3(lua: &Lua, r: redis_protocol::resp3::types::OwnedFrame) -> mlua::Result<Value> {
    use redis_protocol::resp3::types::{OwnedFrame as F3, VerbatimStringFormat};
    let tagged = |tag: &str, v: Value| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set(tag, v)?;
        Ok(Value::Table(t))
    };
    Ok(match r {
        F3::Number { data, .. } => Value::Number(data as f64),
        F3::BlobString { data, .. } => Value::String(lua.create_string(&data)?),
        F3::SimpleString { data, .. } => tagged("ok", Value::String(lua.create_string(&data)?))?,
        F3::SimpleError { data, .. } => tagged("err", Value::String(lua.create_string(&data)?))?,
        F3::BlobError { data, .. } => tagged("err", Value::String(lua.create_string(&data)?))?,
        F3::Null => Value::Nil,
        F3::Boolean { data, .. } => Value::Boolean(data),
        F3::Double { data, .. } => tagged("double", Value::Number(data))?,
        F3::BigNumber { data, .. } => {
            tagged("big_number", Value::String(lua.create_string(&data)?))?
        }
        F3::VerbatimString { data, format, .. } => {
            let t = lua.create_table()?;
            let format = match format {
                VerbatimStringFormat::Text => "txt",
                VerbatimStringFormat::Markdown => "mkd",
            };
            t.raw_set("format", format)?;
            t.raw_set("string", lua.create_string(&data)?)?;
            tagged("verbatim_string", Value::Table(t))?
        }
        F3::Array { data, .. } | F3::Push { data, .. } => {
            let t = lua.create_table_with_capacity(data.len(), 0)?;
            for (i, item) in data.into_iter().enumerate() {
                t.raw_set(i + 1, to_lua3(lua, item)?)?;
            }
            Value::Table(t)
        }
        F3::Map { data, .. } => {
            let t = lua.create_table_with_capacity(0, data.len())?;
            for (k, v) in data {
                t.raw_set(to_lua3(lua, k)?, to_lua3(lua, v)?)?;
            }
            tagged("map", Value::Table(t))?
        }
        F3::Set { data, .. } => {
            let t = lua.create_table_with_capacity(0, data.len())?;
            for member in data {
                t.raw_set(to_lua3(lua, member)?, true)?;
            }
            tagged("set", Value::Table(t))?
        }
        _ => Value::Nil,
    })
}

/// How deep a script's value may nest: deeper ones are refused rather
/// than run the server's own stack out.
const MAX_DEPTH: usize = 1000;

/// Redis's conversion of a script's value into a reply; `out` holds only
/// this reply, which gives way to an error if the value nests too deep.
fn to_reply(out: &mut ReplyBuf, v: &Value) {
    if to_reply_at(out, v, 0).is_err() {
        out.buf.clear();
        out.error("ERR reached lua stack limit");
    }
}

/// A double as C's cast to `long long` gives it on x86, as Redis replies a
/// Lua number: truncated, and out of range (or NaN) the lowest value.
fn c_long_long(n: f64) -> i64 {
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// Writes `v` at nesting `depth`; `Err` past [`MAX_DEPTH`].
fn to_reply_at(out: &mut ReplyBuf, v: &Value, depth: usize) -> Result<(), ()> {
    match v {
        Value::String(s) => out.bulk(&s.as_bytes()),
        Value::Integer(n) => out.int(*n),
        Value::Number(n) => out.int(c_long_long(*n)),
        // A RESP2 script's true is 1 and false nil; after setresp(3) they
        // are booleans (1 and 0 to a RESP2 client).
        Value::Boolean(b) if SCRIPT_RESP.get() == 3 => out.boolean(*b),
        Value::Boolean(true) => out.int(1),
        Value::Table(t) => {
            let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
            if let Value::String(e) = field("err") {
                out.error(&e.to_string_lossy());
                return Ok(());
            }
            if let Value::String(s) = field("ok") {
                out.simple(&s.to_string_lossy());
                return Ok(());
            }
            let double = match field("double") {
                Value::Number(d) => Some(d),
                Value::Integer(n) => Some(n as f64),
                _ => None,
            };
            if let Some(d) = double {
                out.double(d);
                return Ok(());
            }
            if let Value::String(n) = field("big_number") {
                out.big_number(&n.as_bytes());
                return Ok(());
            }
            if let Value::Table(v) = field("verbatim_string") {
                // Strings only (a number is not converted), as in Redis.
                let text = |name| match v.raw_get::<Value>(name) {
                    Ok(Value::String(s)) => Some(s),
                    _ => None,
                };
                if let (Some(format), Some(text)) = (text("format"), text("string")) {
                    out.verbatim_as(&format.as_bytes(), &text.as_bytes());
                    return Ok(());
                }
            }
            if depth >= MAX_DEPTH {
                return Err(());
            }
            // Counted, then walked: a Lua value held from Rust takes one
            // of a few thousand reference slots, so a large map's pairs
            // are never all held at once.
            if let Value::Table(m) = field("map") {
                out.map(libs::pair_count(&m));
                let mut failed = false;
                let _ = m.for_each::<Value, Value>(|k, v| {
                    failed = failed
                        || to_reply_at(out, &k, depth + 1).is_err()
                        || to_reply_at(out, &v, depth + 1).is_err();
                    Ok(())
                });
                return if failed { Err(()) } else { Ok(()) };
            }
            if let Value::Table(set) = field("set") {
                out.set(libs::pair_count(&set));
                let mut failed = false;
                let _ = set.for_each::<Value, Value>(|k, _| {
                    failed = failed || to_reply_at(out, &k, depth + 1).is_err();
                    Ok(())
                });
                return if failed { Err(()) } else { Ok(()) };
            }
            // The array part, up to the first nil.
            let items: Vec<Value> = (1..)
                .map_while(|i| match t.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => None,
                    Ok(v) => Some(v),
                })
                .collect();
            out.array(items.len());
            for item in &items {
                to_reply_at(out, item, depth + 1)?;
            }
        }
        _ => out.null(),
    }
    Ok(())
}

fn script_load(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let sha = sha1_hex(&argv[2]);
    let code = &argv[2][shebang(&argv[2])?.map_or(0, |(_, at)| at)..];
    with_vm(|vm| vm.function(&sha, code).map(|_| ()))?;
    cache(&sha, &argv[2]);
    ctx.out.bulk(sha.as_bytes());
    Ok(())
}

fn script_exists(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cache = CACHE.lock();
    ctx.out.array(argv.len() - 2);
    for a in &argv[2..] {
        ctx.out.int(cache.contains_key(&*sha_key(a)) as i64);
    }
    Ok(())
}

fn script_flush(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    match argv.get(2) {
        None => {}
        Some(a)
            if argv.len() == 3
                && (a.eq_ignore_ascii_case(b"async") || a.eq_ignore_ascii_case(b"sync")) => {}
        Some(_) => {
            return Err(CommandError::err(
                "SCRIPT FLUSH only support SYNC|ASYNC option",
            ))
        }
    }
    CACHE.lock().clear();
    GENERATION.fetch_add(1, Relaxed);
    ctx.server.scripts_run_anything.store(false, Relaxed);
    ctx.out.ok();
    Ok(())
}

/// Runs while a script is timed out (`allow_busy`): see `server::busy`.
fn script_kill(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    ctx.server.busy.kill(false)?;
    ctx.out.ok();
    Ok(())
}

fn script_debug(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mode = &argv[2];
    if mode.eq_ignore_ascii_case(b"no") {
        ctx.out.ok();
        return Ok(());
    }
    if mode.eq_ignore_ascii_case(b"yes") || mode.eq_ignore_ascii_case(b"sync") {
        return Err(CommandError::err(
            "SCRIPT DEBUG is not supported by this server",
        ));
    }
    Err(CommandError::err("Use SCRIPT DEBUG YES/SYNC/NO"))
}

fn script_help(ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    super::keys::help(
        ctx,
        "SCRIPT",
        &[
            "DEBUG (YES|SYNC|NO)",
            "    Set the debug mode for subsequent scripts executed.",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
        ],
    );
    Ok(())
}
