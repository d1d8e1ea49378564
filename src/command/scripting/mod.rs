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
//! A script is stopped with an error once it has run past
//! `busy-reply-threshold` (5 s): every other command waits for it, where
//! Redis answers them BUSY and waits for SCRIPT KILL.
//!
//! Libraries: Lua's table, string and math, `cjson` (encode, decode,
//! `cjson.null`) as Redis bundles lua-cjson, `cmsgpack` (pack, unpack) as
//! it bundles lua-cmsgpack, and `bit` as it bundles LuaBitOp.
//!
//! Not here: SCRIPT KILL of a running script, SCRIPT DEBUG, FUNCTION,
//! RESP3 replies inside scripts, and the struct library.

mod libs;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;
use redis_protocol::resp2::types::OwnedFrame as Frame;
use sha1::{Digest as _, Sha1};

use super::{flags::*, keys_counted, spec, Ctx, Spec, NO_KEYS, TABLE};
use crate::error::{CmdResult, CommandError};
use crate::protocol::reply::format_double;
use crate::protocol::{Protocol, ReplyBuf};
use libs::{bit, cjson, cmsgpack};

const G: &str = "scripting";
const S: &[&str] = &["scripting"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("eval", -3, NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE | ON_PRIMARY, keys_counted(0, 0, 2), S, G, "Executes a server-side Lua script.", eval),
    spec("evalsha", -3, NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE | ON_PRIMARY, keys_counted(0, 0, 2), S, G, "Executes a server-side Lua script by SHA1 digest.", evalsha),
    spec("eval_ro", -3, READONLY | NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE, keys_counted(0, 0, 2), S, G, "Executes a read-only server-side Lua script.", eval_ro),
    spec("evalsha_ro", -3, READONLY | NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | EXCLUSIVE, keys_counted(0, 0, 2), S, G, "Executes a read-only server-side Lua script by SHA1 digest.", evalsha_ro),
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

/// The process's scripts by SHA1 (lower-case hex), and a generation that
/// SCRIPT FLUSH moves on so that every thread drops what it compiled.
static CACHE: LazyLock<Mutex<HashMap<String, Bytes>>> = LazyLock::new(Default::default);
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// One thread's Lua state and the scripts it compiled.
struct Vm {
    lua: Lua,
    generation: u64,
    /// SHA1 to function, in a Lua table: a Rust handle per script would
    /// each hold one of mlua's few thousand reference slots.
    compiled: Table,
    xpcall: Function,
    handler: Function,
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Sets up `redis` and read-only globals; `redis.call` and `redis.pcall`
/// are bound to the running script's context for the length of each run.
const PRELUDE: &str = r#"
local raw_get, err = rawget, error
redis = {}
local function error_table(e)
  if string.sub(e, 1, 1) ~= '-' then e = '-' .. e end
  local space = string.find(e, ' ', 1, true)
  if space then
    return {err = string.sub(e, 2, space - 1) .. ' ' .. string.sub(e, space + 1)}
  end
  return {err = 'ERR ' .. string.sub(e, 2)}
end
local bad_args = {err = 'ERR wrong number or type of arguments'}
redis.error_reply = function(e)
  if type(e) ~= 'string' then return bad_args end
  e = string.gsub(e, '[\r\n]+$', '')
  return error_table(e)
end
redis.status_reply = function(s)
  if type(s) ~= 'string' then return bad_args end
  return {ok = s}
end
redis.sha1hex = function(s) return raw_get(_G, '__redis_sha1hex')(s) end
redis.log = function(level, ...) end
redis.setresp = function(v)
  if v ~= 2 then err('RESP3 replies in scripts are not supported', 2) end
end
redis.set_repl = function() end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
setmetatable(_G, {
  __index = function(t, k)
    err("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __newindex = function(t, k, v) err('Attempt to modify a readonly table', 2) end,
})
"#;

impl Vm {
    fn new() -> mlua::Result<Vm> {
        use mlua::StdLib;
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            mlua::LuaOptions::default(),
        )?;
        let g = lua.globals();
        g.raw_set(
            "__redis_sha1hex",
            lua.create_function(|_, s: mlua::String| Ok(sha1_hex(&s.as_bytes())))?,
        )?;
        // Error objects carry where in the script they arose, as Redis's
        // error handler records it.
        let handler = lua.create_function(|lua, e: Value| {
            let line = script_line(lua);
            let t = match e {
                Value::Table(t) => t,
                // A refused redis.call: its reply's text, as Redis raises it.
                Value::Error(e) if call_error(&e).is_some() => {
                    let t = lua.create_table()?;
                    t.raw_set("err", call_error(&e).unwrap_or_default())?;
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
                    t.raw_set("err", format!("ERR user_script:{line}: {}", innermost(&e)))?;
                    t
                }
                other => {
                    let t = lua.create_table()?;
                    t.raw_set("err", format!("ERR {}", other.to_string()?))?;
                    t
                }
            };
            t.raw_set("line", line)?;
            Ok(t)
        })?;
        g.raw_set("cjson", cjson::library(&lua)?)?;
        g.raw_set("cmsgpack", cmsgpack::library(&lua)?)?;
        g.raw_set("bit", bit::library(&lua)?)?;
        let xpcall: Function = g.raw_get("xpcall")?;
        lua.load(PRELUDE).set_name("@__redis_prelude").exec()?;
        let compiled = lua.create_table()?;
        Ok(Vm {
            lua,
            generation: GENERATION.load(Relaxed),
            compiled,
            xpcall,
            handler,
        })
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
        let f = compile(&self.lua, body)?;
        self.compiled.raw_set(sha, f.clone()).map_err(lua_err)?;
        Ok(f)
    }
}

fn compile(lua: &Lua, body: &[u8]) -> Result<Function, CommandError> {
    lua.load(body)
        .set_name("@user_script")
        .into_function()
        .map_err(|e| {
            let text = match &e {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            CommandError::err(format!("Error compiling script (new function): {text}"))
        })
}

/// The line of the innermost frame that belongs to the script.
fn script_line(lua: &Lua) -> i64 {
    (0..64)
        .find_map(|level| {
            lua.inspect_stack(level, |d| {
                let src = d.source();
                (src.source.as_deref() == Some("@user_script"))
                    .then(|| d.current_line().map_or(0, |n| n as i64))
            })?
        })
        .unwrap_or(0)
}

/// The Rust error by which redis.call raises a command's error reply.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CallError(String);

/// The command error a Lua error carries, if it is redis.call's.
fn call_error(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::CallbackError { cause, .. } => call_error(cause),
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<CallError>().map(|c| c.0.clone()),
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

/// Caches `body` under `sha`.
fn cache(sha: &str, body: &Bytes) {
    CACHE
        .lock()
        .entry(sha.to_string())
        .or_insert_with(|| body.clone());
}

fn with_vm<R>(f: impl FnOnce(&mut Vm) -> Result<R, CommandError>) -> Result<R, CommandError> {
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let vm = Vm::new().map_err(|e| CommandError::err(format!("Lua: {e}")))?;
            *slot = Some(vm);
        }
        f(slot.as_mut().expect("set above"))
    })
}

fn eval(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let sha = sha1_hex(&argv[1]);
    run_script(ctx, argv, &sha, argv[1].clone(), false)
}

fn eval_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let sha = sha1_hex(&argv[1]);
    run_script(ctx, argv, &sha, argv[1].clone(), true)
}

fn evalsha(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    by_sha(ctx, argv, false)
}

fn evalsha_ro(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    by_sha(ctx, argv, true)
}

fn by_sha(ctx: &mut Ctx, argv: &[Bytes], read_only: bool) -> CmdResult {
    let sha = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    let body = CACHE.lock().get(&sha).cloned();
    let Some(body) = body else {
        return Err(CommandError::err_code(
            "NOSCRIPT No matching script. Please use EVAL.",
        ));
    };
    run_script(ctx, argv, &sha, body, read_only)
}

fn run_script(ctx: &mut Ctx, argv: &[Bytes], sha: &str, body: Bytes, read_only: bool) -> CmdResult {
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
    // Inside EXEC the transaction holds the gate and wraps the effects.
    let nested = ctx.client.exec_effects.get().is_some();
    let _gate = (!nested).then(|| ctx.server.gate.exclusive());
    if !nested {
        ctx.client.exec_effects.set(Some(false));
    }
    let result = with_vm(|vm| {
        let f = vm.function(sha, &body)?;
        // Cached once it compiles, as Redis caches what EVAL ran.
        cache(sha, &body);
        execute(vm, ctx, f, keys, args, sha, read_only)
    });
    if !nested {
        if ctx.client.exec_effects.get() == Some(true) {
            ctx.emit_global(&[b"EXEC"]);
        }
        ctx.client.exec_effects.set(None);
    }
    result
}

/// Runs the compiled script with KEYS and ARGV, its redis.call bound to
/// `ctx`, and writes its value as the reply.
fn execute(
    vm: &Vm,
    ctx: &mut Ctx,
    f: Function,
    keys: &[Bytes],
    args: &[Bytes],
    sha: &str,
    read_only: bool,
) -> CmdResult {
    let lua = &vm.lua;
    let lua_err = |e: mlua::Error| CommandError::err(format!("Lua: {e}"));
    let strings = |items: &[Bytes]| -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(items.len(), 0)?;
        for (i, a) in items.iter().enumerate() {
            t.raw_set(i + 1, lua.create_string(&a[..])?)?;
        }
        Ok(t)
    };
    let g = lua.globals();
    g.raw_set("KEYS", strings(keys).map_err(lua_err)?)
        .map_err(lua_err)?;
    g.raw_set("ARGV", strings(args).map_err(lua_err)?)
        .map_err(lua_err)?;
    let limit = ctx.server.config.read().int("busy-reply-threshold").max(0) as u64;
    // The script's value is written in the client's protocol (a nil is
    // RESP3's null to a RESP3 client).
    let protocol = ctx.out.proto;
    let cell = RefCell::new(&mut *ctx);
    let redis: Table = g.raw_get("redis").map_err(lua_err)?;
    let outcome = lua.scope(|scope| {
        // Functions, not Lua wrappers: a script's `return redis.call(...)`
        // is then no tail call, and an error knows the script's line.
        let call = scope.create_function(|lua, call: MultiValue| {
            let mut ctx = cell.borrow_mut();
            redis_call(lua, &mut ctx, call, read_only)
                .map_err(|e| mlua::Error::external(CallError(e.to_string())))
        })?;
        let pcall = scope.create_function(|lua, call: MultiValue| {
            let mut ctx = cell.borrow_mut();
            match redis_call(lua, &mut ctx, call, read_only) {
                Ok(v) => Ok(v),
                Err(e) => Ok(Value::Table(error_table(lua, &e)?)),
            }
        })?;
        redis.raw_set("call", call)?;
        redis.raw_set("pcall", pcall)?;
        // Every other command waits for a script: one that runs past
        // busy-reply-threshold is stopped rather than left to hold the
        // node for ever (Redis answers BUSY meanwhile and waits for
        // SCRIPT KILL).
        let started = std::time::Instant::now();
        lua.set_hook(
            mlua::HookTriggers::new().every_nth_instruction(100_000),
            move |_, _| {
                if limit > 0 && started.elapsed() > std::time::Duration::from_millis(limit) {
                    return Err(mlua::Error::external(CallError(format!(
                        "ERR Script stopped: it ran past busy-reply-threshold ({limit} ms)"
                    ))));
                }
                Ok(mlua::VmState::Continue)
            },
        )?;
        let r = vm.xpcall.call::<(bool, Value)>((f, vm.handler.clone()));
        lua.remove_hook();
        let r = r?;
        redis.raw_set("call", Value::Nil)?;
        redis.raw_set("pcall", Value::Nil)?;
        // The reply is written while the values still live.
        let mut out = ReplyBuf::scratch(protocol);
        let failed = match &r {
            (true, v) => {
                to_reply(&mut out, v);
                None
            }
            (false, Value::Table(t)) => {
                let e: String = t.raw_get::<Option<String>>("err")?.unwrap_or_default();
                let line: i64 = t.raw_get::<Option<i64>>("line")?.unwrap_or(0);
                Some(format!("{e} script: {sha}, on @user_script:{line}."))
            }
            (false, other) => Some(format!("ERR {other:?} script: {sha}")),
        };
        Ok((out.buf.to_vec(), failed))
    });
    let (reply, failed) = outcome.map_err(lua_err)?;
    let _ = g.raw_set("KEYS", Value::Nil);
    let _ = g.raw_set("ARGV", Value::Nil);
    if let Some(e) = failed {
        return Err(CommandError::err_code(
            e.trim_start_matches('-').to_string(),
        ));
    }
    ctx.out.buf.extend_from_slice(&reply);
    Ok(())
}

/// The `{err = ...}` table of a refused call.
fn error_table(lua: &Lua, e: &CommandError) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", e.to_string())?;
    Ok(t)
}

/// redis.call's work: the command resolved and run as a script may run
/// it, its reply converted to a Lua value.
fn redis_call(
    lua: &Lua,
    ctx: &mut Ctx,
    call: MultiValue,
    read_only: bool,
) -> Result<Value, CommandError> {
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
    if TABLE.index(&argv[0]).is_none() {
        return Err(CommandError::err(
            "Unknown Redis command called from script",
        ));
    }
    let (_, spec) = TABLE.resolve(&argv).map_err(|e| match e {
        CommandError::Arity(_) => {
            CommandError::err("Wrong number of args calling Redis command from script")
        }
        // A container's unknown subcommand is an unknown command to Redis.
        CommandError::UnknownSubcommand { .. } => {
            CommandError::err("Unknown Redis command called from script")
        }
        other => other,
    })?;
    if spec.has(NOSCRIPT) {
        return Err(CommandError::err(
            "This Redis command is not allowed from script",
        ));
    }
    if spec.is_write() {
        if read_only {
            return Err(CommandError::err(
                "Write commands are not allowed from read-only scripts.",
            ));
        }
        if ctx.server.replication.is_replica() && !ctx.client.from_primary {
            return Err(CommandError::err_code(
                "READONLY You can't write against a read only replica.",
            ));
        }
    }
    // Over `maxmemory` with nothing left to evict, a command that may
    // grow memory is refused inside a script too.
    if spec.has(DENYOOM) && ctx.server.tun.maxmemory.load(Relaxed) > 0 {
        ctx.make_room()?;
    }
    let scratch = ReplyBuf::scratch(Protocol::Resp2);
    let saved = std::mem::replace(&mut *ctx.out, scratch);
    let _ = super::run(ctx, spec, &argv);
    let scratch = std::mem::replace(&mut *ctx.out, saved);
    // Blocking and connection actions have no meaning inside a script.
    ctx.action = None;
    let reply = match redis_protocol::resp2::decode::decode(&scratch.buf) {
        Ok(Some((frame, _))) => frame,
        _ => {
            return Err(CommandError::err(
                "Unexpected reply from a command in a script",
            ))
        }
    };
    match reply {
        Frame::Error(e) => Err(CommandError::err_code(e)),
        r => to_lua(lua, r).map_err(|e| CommandError::err(format!("Lua: {e}"))),
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
        Value::Boolean(true) => out.int(1),
        Value::Table(t) => {
            if let Ok(Some(e)) = t.raw_get::<Option<mlua::String>>("err") {
                out.error(&e.to_string_lossy());
                return Ok(());
            }
            if let Ok(Some(s)) = t.raw_get::<Option<mlua::String>>("ok") {
                out.simple(&s.to_string_lossy());
                return Ok(());
            }
            if depth >= MAX_DEPTH {
                return Err(());
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
    with_vm(|vm| compile(&vm.lua, &argv[2]).map(|_| ()))?;
    let sha = sha1_hex(&argv[2]);
    cache(&sha, &argv[2]);
    ctx.out.bulk(sha.as_bytes());
    Ok(())
}

fn script_exists(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cache = CACHE.lock();
    ctx.out.array(argv.len() - 2);
    for a in &argv[2..] {
        let sha = String::from_utf8_lossy(a).to_ascii_lowercase();
        ctx.out.int(cache.contains_key(&sha) as i64);
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
    ctx.out.ok();
    Ok(())
}

fn script_kill(_ctx: &mut Ctx, _argv: &[Bytes]) -> CmdResult {
    Err(CommandError::err_code(
        "NOTBUSY No scripts in execution right now.",
    ))
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
