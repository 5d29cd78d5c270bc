//! Lua scripts: EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT (LOAD EXISTS FLUSH KILL HELP), on Lua 5.1
//! as Redis embeds it, with Redis 7.0's `redis` library, conversions and error replies
//! (`script_lua.c`, `eval.c`).
//!
//! A script runs holding every shard's lock (see [`crate::server::scripting`] for where it runs
//! and how other clients wait for it), so it is atomic and may touch any key, as in Redis. Each
//! `redis.call` goes through the command table's checks (arity, `noscript` commands, writes from
//! a read-only script, draining, maxmemory) and runs the command's handler with the script's
//! locks; its reply is encoded in the script's protocol and parsed into Lua values exactly as
//! Redis converts a reply buffer.
//!
//! Nothing leaks from one script to the next: scripts see the globals through a read-only proxy
//! (a write is `Attempt to modify a readonly table`, a read of an absent global
//! `Script attempted to access nonexistent global variable`), the libraries through read-only
//! proxies, the string metatable is protected, and `setfenv`, `getfenv`, `debug`, `dofile`,
//! `loadfile`, `print`, `require` and `module` are not reachable. `KEYS` and `ARGV` are set anew
//! for each run.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, RegistryKey, StdLib, Table, Value, VmState,
};
use sha1::{Digest, Sha1};

use super::{COMMANDS, ClientState, Ctx, HeldShards, Kind, is, lookup, parse_i64, value_growth};
use crate::server::resp::{Protocol, Reply};
use crate::server::scripting::Node;
use crate::server::tasks::Task;

/// Lowercase hex SHA1 of `data`, as `redis.sha1hex` and the script cache name scripts.
pub fn sha1_hex(data: &[u8]) -> String {
    let digest = Sha1::digest(data);
    let mut hex = String::with_capacity(40);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Commands a script may not call (Redis's `noscript` flag).
fn refused_in_scripts(name: &str) -> bool {
    matches!(
        name,
        "multi"
            | "exec"
            | "discard"
            | "watch"
            | "unwatch"
            | "quit"
            | "hello"
            | "auth"
            | "eval"
            | "evalsha"
            | "eval_ro"
            | "evalsha_ro"
            | "script"
            | "config"
            | "client"
    )
}

/// Commands a connection runs while a script is busy (they take no shard lock).
pub fn runs_while_busy(index: Option<u16>, args: &[Bytes]) -> bool {
    let Some(index) = index else {
        return false;
    };
    match COMMANDS[index as usize].name {
        "quit" | "hello" | "auth" => true,
        "script" => args.get(1).is_some_and(|sub| is(sub, "KILL")),
        _ => false,
    }
}

// ---- the commands ----

/// What EVAL and friends were asked to run.
struct Call {
    sha: String,
    body: Bytes,
    keys: Vec<Bytes>,
    argv: Vec<Bytes>,
    read_only: bool,
    /// EVAL: the script goes into the cache once it compiled (Redis caches only what compiled).
    cache: bool,
}

/// Parses `numkeys key... arg...` after the script or SHA.
fn keys_and_args(args: &[Bytes]) -> Result<(Vec<Bytes>, Vec<Bytes>), Reply> {
    let numkeys = parse_i64(&args[2]).ok_or_else(|| Reply::error(super::ERR_NOT_INTEGER))?;
    if numkeys < 0 {
        return Err(Reply::error("ERR Number of keys can't be negative"));
    }
    let rest = &args[3..];
    if numkeys as u64 > rest.len() as u64 {
        return Err(Reply::error("ERR Number of keys can't be greater than number of args"));
    }
    let (keys, argv) = rest.split_at(numkeys as usize);
    Ok((keys.to_vec(), argv.to_vec()))
}

fn eval_generic(ctx: &mut Ctx<'_, '_>, args: &[Bytes], by_sha: bool, read_only: bool) -> Reply {
    let (keys, argv) = match keys_and_args(args) {
        Ok(split) => split,
        Err(e) => return e,
    };
    let scripting = &ctx.node.scripting;
    let (sha, body) = if by_sha {
        let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match scripting.body(&sha) {
            Some(body) if args[1].len() == 40 => (sha, body),
            _ => return Reply::error("NOSCRIPT No matching script. Please use EVAL."),
        }
    } else {
        let sha = sha1_hex(&args[1]);
        (sha, args[1].clone())
    };
    // Compiled where it runs (the script thread, or inside EXEC this thread), and cached there.
    let call = Call { sha, body, keys, argv, read_only, cache: !by_sha };
    if ctx.in_transaction() {
        // Inside EXEC, which holds every shard already (a queued EVAL makes it lock them all):
        // run here, on the connection's thread.
        return run(ctx, &call);
    }
    ctx.client.deferred = Some(Deferred { call, proto: ctx.client.proto });
    // The connection replaces this with the script's reply (see `Deferred::submit`).
    Reply::Nil
}

pub fn eval(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    eval_generic(ctx, args, false, false)
}

pub fn evalsha(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    eval_generic(ctx, args, true, false)
}

pub fn eval_ro(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    eval_generic(ctx, args, false, true)
}

pub fn evalsha_ro(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    eval_generic(ctx, args, true, true)
}

/// `SCRIPT HELP`'s lines for the subcommands this node has (Redis 7's text).
const SCRIPT_HELP: &[&str] = &[
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
];

pub fn script(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let scripting = &ctx.node.scripting;
    if is(sub, "HELP") {
        super::help("script", args, SCRIPT_HELP)
    } else if is(sub, "LOAD") {
        if args.len() != 3 {
            return super::wrong_sub_arity("script", sub);
        }
        let sha = sha1_hex(&args[2]);
        if let Err(reply) = with_vm(|vm| vm.function(&sha, &args[2]).map(drop)) {
            return reply;
        }
        scripting.store(sha.clone(), args[2].clone());
        Reply::Bulk(Bytes::from(sha))
    } else if is(sub, "EXISTS") {
        if args.len() < 3 {
            return super::wrong_sub_arity("script", sub);
        }
        let found = args[2..]
            .iter()
            .map(|sha| {
                let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
                Reply::Integer(i64::from(scripting.exists(&sha)))
            })
            .collect();
        Reply::Array(found)
    } else if is(sub, "FLUSH") {
        match args.len() {
            2 => {}
            3 if is(&args[2], "ASYNC") || is(&args[2], "SYNC") => {}
            3 => {
                return Reply::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            _ => return super::wrong_sub_arity("script", sub),
        }
        scripting.flush();
        Reply::ok()
    } else if is(sub, "KILL") {
        if args.len() != 2 {
            return super::wrong_sub_arity("script", sub);
        }
        scripting.kill()
    } else {
        super::unknown_subcommand(sub, "script")
    }
}

// ---- running a script ----

/// A script the connection runs once the command is done: on the node's script thread, which
/// takes every shard's lock for it.
#[derive(Debug)]
pub struct Deferred {
    call: Call,
    /// The caller's protocol: it shapes how the script's result is converted.
    proto: Protocol,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("sha", &self.sha).finish_non_exhaustive()
    }
}

impl Deferred {
    /// Runs the script on the script thread for the client `client_id` (its connection task
    /// `task`) and waits for its reply without blocking the connection's thread.
    pub async fn submit(self, node: Node, task: Arc<Task>, client_id: u64) -> Reply {
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let job_node = Arc::clone(&node);
        node.scripting.submit(Box::new(move || {
            let node = job_node;
            node.scripting.begin_script();
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let all = (0..node.store.shard_count()).collect();
                let held = HeldShards::lock(&node, &task, all);
                let mut client = ClientState::new(client_id, true);
                client.proto = self.proto;
                let mut ctx = Ctx::new(&node, &mut client, &task, node.store.now_ms());
                ctx.held = Some(&held);
                run(&mut ctx, &self.call)
            }));
            node.scripting.end_script();
            let reply = ran.unwrap_or_else(|_| {
                tracing::error!("a script job panicked");
                Reply::error("ERR the script failed unexpectedly (see the node's log)")
            });
            let _ = reply_tx.send(reply);
        }));
        reply_rx.await.unwrap_or_else(|_| Reply::error("ERR the script thread stopped"))
    }
}

/// Runs `call` with `ctx`, which holds every shard's lock. The reply is shaped for the caller's
/// protocol (`ctx.client.proto`).
fn run(ctx: &mut Ctx<'_, '_>, call: &Call) -> Reply {
    with_vm(|vm| Ok(vm.run(ctx, call))).unwrap_or_else(|reply| reply)
}

thread_local! {
    /// The Lua VM of this thread (the script thread's, or a connection thread's for scripts
    /// inside EXEC), made on first use.
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's VM.
fn with_vm<R>(f: impl FnOnce(&mut Vm) -> Result<R, Reply>) -> Result<R, Reply> {
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Vm::new().map_err(|e| {
                tracing::error!(error = %e, "cannot set up the Lua VM");
                Reply::error("ERR the Lua VM could not be set up")
            })?);
        }
        f(slot.as_mut().expect("set above"))
    })
}

/// Compiled scripts kept per VM before the cache starts over (a client sending ever new scripts
/// to EVAL must not grow it without bound; recompiling is cheap).
const MAX_COMPILED: usize = 4096;

/// The Lua side, set up by [`SETUP`].
struct Vm {
    lua: Lua,
    /// What scripts see as their globals: a read-only proxy of `real`.
    env: Table,
    /// The globals behind the proxy, where `KEYS` and `ARGV` are set.
    real: Table,
    /// The script's protocol (`resp`, set by `redis.setresp`) and the error `redis.call` raised
    /// last (`call_error`), for the error handler.
    hidden: Table,
    /// The `redis` library, where each run sets its `call` and `pcall`.
    redis: Table,
    /// `function(f) return xpcall(f, handler) end`.
    protected_call: Function,
    compiled: HashMap<String, RegistryKey>,
}

/// Builds the environment scripts run in (see the module's doc), and returns the proxy, the
/// real globals, the hidden table and the protected-call function.
const SETUP: &str = r#"
local getinfo = debug.getinfo
local xpcall, type, tostring, error, setmetatable, pairs, rawget, rawset, string =
      xpcall, type, tostring, error, setmetatable, pairs, rawget, rawset, string
local hidden = { resp = 2 }
local proxies = setmetatable({}, { __mode = "k" })
local function readonly(t, globals)
  local proxy = {}
  proxies[proxy] = true
  setmetatable(proxy, {
    __index = function(_, key)
      local value = t[key]
      if value == nil and globals then
        error("Script attempted to access nonexistent global variable '" .. tostring(key) .. "'", 2)
      end
      return value
    end,
    __newindex = function() error("Attempt to modify a readonly table", 2) end,
    __metatable = false,
  })
  return proxy
end
local real = {}
for name, value in pairs(_G) do real[name] = value end
for _, name in pairs({ "debug", "setfenv", "getfenv", "dofile", "loadfile", "print", "require",
                       "module", "package", "io", "os", "newproxy", "gcinfo" }) do
  real[name] = nil
end
local redis = {
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REPL_NONE = 0, REPL_AOF = 1, REPL_SLAVE = 2, REPL_REPLICA = 2, REPL_ALL = 3,
}
function redis.error_reply(text)
  if type(text) ~= "string" then error("wrong number or type of arguments", 0) end
  return { err = text }
end
function redis.status_reply(text)
  if type(text) ~= "string" then error("wrong number or type of arguments", 0) end
  return { ok = text }
end
function redis.sha1hex(text) return hidden.sha1hex(text) end
function redis.log(level, ...) return hidden.log(level, ...) end
function redis.setresp(version)
  if version ~= 2 and version ~= 3 then error("RESP version must be 2 or 3.", 0) end
  hidden.resp = version
end
function redis.set_repl() end
function redis.replicate_commands() return true end
function redis.breakpoint() return false end
function redis.debug() end
real.redis = readonly(redis)
for _, name in pairs({ "string", "table", "math" }) do real[name] = readonly(_G[name]) end
local strings = getmetatable("")
strings.__index = real.string
strings.__metatable = readonly({ __index = real.string })
local function refuse_readonly(t)
  if proxies[t] then error("Attempt to modify a readonly table", 0) end
end
-- `redis.call` is a C function (so a failing call in `return redis.call(...)`, a tail call,
-- keeps the script's line for the error, as in Redis) and cannot raise a table: it raises a
-- marker and leaves the command's error in `call_error`. A script's xpcall handler gets the
-- `{err=...}` table Redis 7 raises; its pcall gets the error's text, as Redis 7's own `pcall`
-- (`luaRedisPcall`) replaces an error table with its `err` field.
local find, raw_pcall, raw_xpcall = string.find, pcall, xpcall
local function call_error(err)
  local pending = hidden.call_error
  if pending and find(tostring(err), "@redis.call@", 1, true) then
    hidden.call_error = nil
    return { err = pending }
  end
  return err
end
local function caught(ok, ...)
  if ok then return ok, ... end
  local err = call_error((...))
  if type(err) == "table" and type(rawget(err, "err")) == "string" then err = err.err end
  return false, err
end
real.pcall = function(f, ...) return caught(raw_pcall(f, ...)) end
real.xpcall = function(f, handler)
  return raw_xpcall(f, function(err) return handler(call_error(err)) end)
end
real.setmetatable = function(t, mt) refuse_readonly(t) return setmetatable(t, mt) end
-- The libraries Redis loads beside Lua's own (`cjson`, `bit`), installed read-only by the VM.
function hidden.install(name, lib) real[name] = readonly(lib) end
real.rawset = function(t, k, v) refuse_readonly(t) return rawset(t, k, v) end
local env = readonly(real, true)
real._G = env
local function handler(err)
  local source, line
  for level = 2, 40 do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.source == "@user_script" then
      source, line = info.source, info.currentline
      break
    end
  end
  if type(err) ~= "table" or type(rawget(err, "err")) ~= "string" then
    local pending = hidden.call_error
    hidden.call_error = nil
    if pending and string.find(tostring(err), "@redis.call@", 1, true) then
      err = { err = pending }
    else
      err = { err = "ERR " .. tostring(err) }
    end
  end
  return { err = err.err, source = source, line = line }
end
local function protected_call(f) return xpcall(f, handler) end
return env, real, hidden, redis, protected_call
"#;

/// Redis's `cjson` library, in Lua ([`cjson.lua`](cjson.lua)).
const CJSON: &str = include_str!("cjson.lua");

/// LuaBitOp's conversion of a number to a 32-bit integer (`barg`): the low word of the number
/// plus 2^52 + 2^51, so that fractions round to nearest (even) and large values wrap mod 2^32.
fn tobit(x: f64) -> i32 {
    (x + 6_755_399_441_055_744.0).to_bits() as u32 as i32
}

/// The work of Redis's `bit` library (LuaBitOp 1.0.2): 32-bit operations on numbers the Lua
/// side ([`cjson.lua`](cjson.lua)) has checked. `band`, `bor` and `bxor` take two operands (the
/// Lua side folds more); called with a third (`true`) they only normalise the first.
fn bit_operations(lua: &Lua) -> mlua::Result<Table> {
    let ops = lua.create_table()?;
    let binary = |op: fn(i32, i32) -> i32| {
        move |_: &Lua, (a, b, only_first): (f64, f64, Option<bool>)| {
            let a = tobit(a);
            Ok(f64::from(if only_first == Some(true) { a } else { op(a, tobit(b)) }))
        }
    };
    ops.raw_set("tobit", lua.create_function(|_, x: f64| Ok(f64::from(tobit(x))))?)?;
    ops.raw_set("bnot", lua.create_function(|_, x: f64| Ok(f64::from(!tobit(x))))?)?;
    ops.raw_set("band", lua.create_function(binary(|a, b| a & b))?)?;
    ops.raw_set("bor", lua.create_function(binary(|a, b| a | b))?)?;
    ops.raw_set("bxor", lua.create_function(binary(|a, b| a ^ b))?)?;
    let shift = |op: fn(i32, u32) -> i32| {
        move |_: &Lua, (x, n): (f64, f64)| Ok(f64::from(op(tobit(x), (tobit(n) & 31) as u32)))
    };
    ops.raw_set("lshift", lua.create_function(shift(|x, n| ((x as u32) << n) as i32))?)?;
    ops.raw_set("rshift", lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?)?;
    ops.raw_set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    ops.raw_set("rol", lua.create_function(shift(|x, n| (x as u32).rotate_left(n) as i32))?)?;
    ops.raw_set("ror", lua.create_function(shift(|x, n| (x as u32).rotate_right(n) as i32))?)?;
    ops.raw_set(
        "bswap",
        lua.create_function(|_, x: f64| Ok(f64::from((tobit(x) as u32).swap_bytes() as i32)))?,
    )?;
    ops.raw_set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, f64)| {
            let n = tobit(n);
            let (upper, digits) = (n < 0, n.unsigned_abs().min(8) as usize);
            let value = (tobit(x) as u32) as u64 & ((1u64 << (4 * digits)) - 1);
            Ok(if upper { format!("{value:0digits$X}") } else { format!("{value:0digits$x}") })
        })?,
    )?;
    Ok(ops)
}

impl Vm {
    fn new() -> mlua::Result<Self> {
        // SAFETY: the debug library is loaded for the error handler only; SETUP keeps its one
        // use (`debug.getinfo`) in a local and takes `debug` out of what scripts can reach.
        let lua = unsafe {
            Lua::unsafe_new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG,
                LuaOptions::default(),
            )
        };
        let (env, real, hidden, redis, protected_call): (Table, Table, Table, Table, Function) =
            lua.load(SETUP).set_name("=setup").call(())?;
        hidden.raw_set(
            "sha1hex",
            lua.create_function(|lua, text: mlua::LuaString| {
                lua.create_string(sha1_hex(&text.as_bytes()))
            })?,
        )?;
        hidden.raw_set(
            "log",
            lua.create_function(|_, (level, message): (i64, MultiValue)| {
                let text: Vec<String> =
                    message.iter().map(|v| v.to_string().unwrap_or_default()).collect();
                let text = text.join(" ");
                match level {
                    0 => tracing::debug!(target: "mapcache::script", "{text}"),
                    1 | 2 => tracing::info!(target: "mapcache::script", "{text}"),
                    _ => tracing::warn!(target: "mapcache::script", "{text}"),
                }
                Ok(())
            })?,
        )?;
        let (cjson, bit): (Table, Table) =
            lua.load(CJSON).set_name("=cjson").call((Value::NULL, bit_operations(&lua)?))?;
        let install: Function = hidden.raw_get("install")?;
        install.call::<()>(("cjson", cjson))?;
        install.call::<()>(("bit", bit))?;
        Ok(Self { lua, env, real, hidden, redis, protected_call, compiled: HashMap::new() })
    }

    /// The compiled function of a script, compiling it on first use.
    fn function(&mut self, sha: &str, body: &[u8]) -> Result<Function, Reply> {
        if let Some(key) = self.compiled.get(sha)
            && let Ok(function) = self.lua.registry_value::<Function>(key)
        {
            return Ok(function);
        }
        let function = self
            .lua
            .load(body)
            .set_name("@user_script")
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| {
                let text = match &e {
                    mlua::Error::SyntaxError { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                Reply::error(format!("ERR Error compiling script (new function): {text}"))
            })?;
        if self.compiled.len() >= MAX_COMPILED {
            self.compiled.clear();
            self.lua.expire_registry_values();
        }
        if let Ok(key) = self.lua.create_registry_value(function.clone()) {
            self.compiled.insert(sha.to_owned(), key);
        }
        Ok(function)
    }

    fn run(&mut self, ctx: &mut Ctx<'_, '_>, call: &Call) -> Reply {
        let function = match self.function(&call.sha, &call.body) {
            Ok(function) => function,
            Err(reply) => return reply,
        };
        if call.cache {
            ctx.node.scripting.store(call.sha.clone(), call.body.clone());
        }
        let lua = self.lua.clone();
        let set = |name: &str, values: &[Bytes]| -> mlua::Result<()> {
            let table = lua.create_table_with_capacity(values.len(), 0)?;
            for (i, value) in values.iter().enumerate() {
                table.raw_set(i + 1, lua.create_string(value)?)?;
            }
            self.real.raw_set(name, table)
        };
        if let Err(e) = set("KEYS", &call.keys).and_then(|()| set("ARGV", &call.argv)) {
            return Reply::error(format!("ERR {e}"));
        }
        let _ = self.hidden.raw_set("resp", 2);
        // SCRIPT KILL is checked every 100,000 instructions, as Redis's hook does.
        let node = ctx.node;
        let kill = node.scripting.kill_flag();
        let _ = lua.set_hook(HookTriggers::new().every_nth_instruction(100_000), move |_, _| {
            if kill.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(mlua::Error::RuntimeError(
                    "Script killed by user with SCRIPT KILL...".into(),
                ));
            }
            Ok(VmState::Continue)
        });
        let read_only = call.read_only;
        let ctx = RefCell::new(&mut *ctx);
        let hidden = &self.hidden;
        let command = |lua: &Lua, args: MultiValue| -> Result<Value, Vec<u8>> {
            let mut ctx = ctx.borrow_mut();
            let resp: i64 = hidden.raw_get("resp").unwrap_or(2);
            redis_call(lua, &mut ctx, &args, read_only, resp == 3)
        };
        let result = lua.scope(|scope| {
            // `redis.call` raises a command's error: Lua sees a C function fail (so the error
            // handler finds the script's line, as Redis's does), and the handler takes the
            // error's text from `call_error`.
            let raising =
                scope.create_function(|lua, args: MultiValue| match command(lua, args) {
                    Ok(value) => Ok(value),
                    Err(text) => {
                        self.hidden.raw_set("call_error", lua.create_string(&text)?)?;
                        Err(mlua::Error::RuntimeError("@redis.call@".into()))
                    }
                })?;
            // `redis.pcall` returns it as an `{err=...}` table.
            let returning =
                scope.create_function(|lua, args: MultiValue| match command(lua, args) {
                    Ok(value) => Ok(value),
                    Err(text) => error_table(lua, &text),
                })?;
            self.redis.raw_set("call", raising)?;
            self.redis.raw_set("pcall", returning)?;
            let outcome: MultiValue = self.protected_call.call(function.clone())?;
            self.redis.raw_set("call", Value::Nil)?;
            self.redis.raw_set("pcall", Value::Nil)?;
            let resp3 = hidden.raw_get::<i64>("resp").unwrap_or(2) == 3;
            Ok(to_reply(&outcome, resp3, &call.sha, node.scripting.kill_requested()))
        });
        lua.remove_hook();
        let _ = self.real.raw_set("KEYS", Value::Nil);
        let _ = self.real.raw_set("ARGV", Value::Nil);
        result.unwrap_or_else(|e| Reply::error(format!("ERR {e}")))
    }
}

/// `redis.call`/`redis.pcall`'s work: checks, then the command. A check that fails, or the
/// command's error reply, is the error's text.
fn redis_call(
    lua: &Lua,
    ctx: &mut Ctx<'_, '_>,
    args: &MultiValue,
    read_only: bool,
    resp3: bool,
) -> Result<Value, Vec<u8>> {
    let fail = |text: &str| Err(text.as_bytes().to_vec());
    if args.is_empty() {
        return fail("ERR Please specify at least one argument for this redis lib call");
    }
    let mut argv = Vec::with_capacity(args.len());
    for arg in args.iter() {
        match arg {
            Value::String(s) => argv.push(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(n) => argv.push(Bytes::from(n.to_string())),
            Value::Number(n) => argv.push(Bytes::from(lua_number_text(*n))),
            _ => return fail("ERR Lua redis lib command arguments must be strings or integers"),
        }
    }
    let Some(index) = lookup(&argv[0]) else {
        return fail("ERR Unknown Redis command called from script");
    };
    let spec = &COMMANDS[index as usize];
    let argc = argv.len() as i32;
    if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
        return fail("ERR Wrong number of args calling Redis command from script");
    }
    if refused_in_scripts(spec.name) {
        return fail("ERR This Redis command is not allowed from script");
    }
    let writes = matches!(spec.kind, Kind::Write | Kind::WriteGrow(_));
    if writes && read_only {
        return fail("ERR Write commands are not allowed from read-only scripts.");
    }
    if writes && ctx.node.is_draining() {
        return fail(super::ERR_DRAINING);
    }
    ctx.reserved = usize::MAX;
    if let Kind::WriteGrow(grows) = spec.kind
        && ctx.node.store.maxmemory() != 0
    {
        let positions = super::key_positions(spec, argv.len());
        let growth = value_growth(ctx, grows, &argv, &positions);
        let keys: Vec<&[u8]> = positions.iter().map(|&i| &argv[i][..]).collect();
        if let Err(Reply::Error(oom)) = super::reserve(ctx, &keys, growth) {
            return Err(oom.to_vec());
        }
        ctx.reserved = growth;
    }
    if writes {
        ctx.node.scripting.note_write();
    }
    let reply = (spec.handler)(ctx, &argv);
    ctx.node.metrics.commands[index as usize].inc();
    let proto = if resp3 { Protocol::Resp3 } else { Protocol::Resp2 };
    let mut wire = BytesMut::new();
    reply.encode(proto, &mut wire);
    let mut at = 0;
    match parse_reply(lua, &wire, &mut at) {
        Ok(Parsed::Value(value)) => Ok(value),
        Ok(Parsed::Error(text)) => Err(text),
        Err(e) => fail(&format!("ERR {e}")),
    }
}

/// `{err = text}`, as `redis.pcall` returns an error.
fn error_table(lua: &Lua, text: &[u8]) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set("err", lua.create_string(text)?)?;
    Ok(Value::Table(table))
}

/// How Lua 5.1 prints a number (`%.14g`), which is what `redis.call` sends for one.
fn lua_number_text(n: f64) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: the buffer is large enough for any `%.14g` output and NUL-terminated by snprintf.
    let len = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.14g".as_ptr(), n) };
    String::from_utf8_lossy(&buf[..len.clamp(0, 63) as usize]).into_owned()
}

enum Parsed {
    Value(Value),
    /// A top-level error reply.
    Error(Vec<u8>),
}

/// Parses one encoded reply at `*at` into Lua values the way Redis's `redisProtocolToLuaType`
/// does: integers to numbers, bulk strings to strings, a nil to `false` (RESP2) or `nil`
/// (RESP3), arrays to tables, status to `{ok=...}`, errors to `{err=...}` (nested) or an error
/// (top level); RESP3 maps, sets, doubles and booleans as Redis 7 converts them.
fn parse_reply(lua: &Lua, wire: &[u8], at: &mut usize) -> mlua::Result<Parsed> {
    let line = |at: &mut usize| -> mlua::Result<Vec<u8>> {
        let rest = &wire[*at..];
        let end = memchr::memmem::find(rest, b"\r\n")
            .ok_or_else(|| mlua::Error::RuntimeError("malformed reply".into()))?;
        *at += end + 2;
        Ok(rest[..end].to_vec())
    };
    let tag =
        wire.get(*at).copied().ok_or_else(|| mlua::Error::RuntimeError("empty reply".into()))?;
    *at += 1;
    let head = line(at)?;
    let number = |head: &[u8]| -> i64 {
        std::str::from_utf8(head).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let status_table = |key: &str, text: &[u8]| -> mlua::Result<Value> {
        let table = lua.create_table()?;
        table.raw_set(key, lua.create_string(text)?)?;
        Ok(Value::Table(table))
    };
    let value = match tag {
        b'+' => status_table("ok", &head)?,
        b'-' => return Ok(Parsed::Error(head)),
        b':' => Value::Number(number(&head) as f64),
        b'$' | b'=' => {
            let len = number(&head);
            if len < 0 {
                Value::Boolean(false)
            } else {
                let start = *at;
                *at += len as usize + 2;
                let data = &wire[start..start + len as usize];
                let data = if tag == b'=' { &data[4.min(data.len())..] } else { data };
                Value::String(lua.create_string(data)?)
            }
        }
        b'*' | b'~' | b'%' => {
            let count = number(&head);
            if count < 0 {
                return Ok(Parsed::Value(Value::Boolean(false)));
            }
            let items = lua.create_table()?;
            let nested = |at: &mut usize| -> mlua::Result<Value> {
                Ok(match parse_reply(lua, wire, at)? {
                    Parsed::Value(v) => v,
                    Parsed::Error(text) => status_table("err", &text)?,
                })
            };
            match tag {
                b'*' => {
                    for i in 0..count {
                        items.raw_set(i + 1, nested(at)?)?;
                    }
                    Value::Table(items)
                }
                b'~' => {
                    for _ in 0..count {
                        items.raw_set(nested(at)?, true)?;
                    }
                    let wrapper = lua.create_table()?;
                    wrapper.raw_set("set", items)?;
                    Value::Table(wrapper)
                }
                _ => {
                    for _ in 0..count {
                        let key = nested(at)?;
                        let value = nested(at)?;
                        items.raw_set(key, value)?;
                    }
                    let wrapper = lua.create_table()?;
                    wrapper.raw_set("map", items)?;
                    Value::Table(wrapper)
                }
            }
        }
        b'_' => Value::Nil,
        b'#' => Value::Boolean(head == b"t"),
        b',' => {
            let table = lua.create_table()?;
            let d: f64 =
                std::str::from_utf8(&head).ok().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            table.raw_set("double", d)?;
            Value::Table(table)
        }
        b'(' => status_table("big_number", &head)?,
        _ => return Err(mlua::Error::RuntimeError("unknown reply type".into())),
    };
    Ok(Parsed::Value(value))
}

/// The reply to send for what the protected call returned: `(true, value)` or `(false,
/// {err, source, line})`.
/// `resp3`: the script switched to RESP3 (`redis.setresp(3)`), which makes its booleans RESP
/// booleans; otherwise `true` is `:1` and `false` a nil, as Redis converts them.
fn to_reply(outcome: &MultiValue, resp3: bool, sha: &str, killed: bool) -> Reply {
    let mut values = outcome.iter();
    let ok = matches!(values.next(), Some(Value::Boolean(true)));
    let value = values.next().cloned().unwrap_or(Value::Nil);
    if ok {
        return lua_to_reply(&value, resp3, 0);
    }
    let Value::Table(err) = value else {
        return Reply::error("ERR the script failed");
    };
    let mut text: Vec<u8> = err
        .raw_get::<mlua::LuaString>("err")
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_else(|_| b"ERR unknown error".to_vec());
    if killed {
        text = b"ERR Script killed by user with SCRIPT KILL...".to_vec();
    }
    let source: Option<String> = err.raw_get("source").ok();
    let line: Option<i64> = err.raw_get("line").ok();
    if let (Some(source), Some(line)) = (source, line) {
        text.extend_from_slice(format!(" script: {sha}, on {source}:{line}.").as_bytes());
    }
    Reply::error(text)
}

/// A Lua number as Redis converts it, with C's `(long long)` cast on x86-64: truncated toward
/// zero, and a value out of range (or NaN) becomes i64::MIN (the `cvttsd2si` result), where
/// Rust's `as` would saturate.
fn lua_number_to_integer(n: f64) -> i64 {
    // NaN is outside every range.
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// Deepest table nesting converted to a reply (Redis's reply conversion stops at the Lua stack
/// limit; a table holding itself must not recurse forever).
const MAX_DEPTH: usize = 100;

/// A Lua value as a reply, as Redis's `luaReplyToRedisReply` converts it.
fn lua_to_reply(value: &Value, resp3: bool, depth: usize) -> Reply {
    if depth > MAX_DEPTH {
        return Reply::error("ERR reached lua stack limit");
    }
    match value {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Integer(n) => Reply::Integer(*n),
        Value::Number(n) => Reply::Integer(lua_number_to_integer(*n)),
        Value::Boolean(b) if resp3 => Reply::Bool(*b),
        Value::Boolean(true) => Reply::Integer(1),
        Value::Boolean(false) => Reply::Nil,
        Value::Table(table) => {
            // Redis reads these as C strings: up to a NUL.
            if let Ok(Value::String(err)) = table.raw_get::<Value>("err") {
                return Reply::Error(Bytes::copy_from_slice(super::c_string_prefix(
                    &err.as_bytes(),
                    usize::MAX,
                )));
            }
            if let Ok(Value::String(ok)) = table.raw_get::<Value>("ok") {
                return Reply::StatusBytes(Bytes::copy_from_slice(super::c_string_prefix(
                    &ok.as_bytes(),
                    usize::MAX,
                )));
            }
            if let Ok(Value::Number(d)) = table.raw_get::<Value>("double") {
                return Reply::Double(d);
            }
            if let Ok(Value::Table(map)) = table.raw_get::<Value>("map") {
                let pairs = map
                    .pairs::<Value, Value>()
                    .filter_map(Result::ok)
                    .map(|(k, v)| {
                        (lua_to_reply(&k, resp3, depth + 1), lua_to_reply(&v, resp3, depth + 1))
                    })
                    .collect();
                return Reply::Map(pairs);
            }
            if let Ok(Value::Table(set)) = table.raw_get::<Value>("set") {
                let members = set
                    .pairs::<Value, Value>()
                    .filter_map(Result::ok)
                    .map(|(k, _)| lua_to_reply(&k, resp3, depth + 1))
                    .collect();
                return Reply::Set(members);
            }
            let mut items = Vec::new();
            for i in 1.. {
                match table.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(item) => items.push(lua_to_reply(&item, resp3, depth + 1)),
                }
            }
            Reply::Array(items)
        }
        _ => Reply::Nil,
    }
}
