//! One client connection: read, parse every complete frame in the buffer, execute each, write
//! all replies at once (pipelining), repeat. Replies the socket does not take at once wait in the
//! connection's output buffer while it goes on reading and executing, and go out whenever the
//! socket takes more: a client that sends its whole pipeline before it reads is served (see
//! `outbuf` for the bounds on what waits). A protocol error is answered as Redis does and the
//! connection closes; nothing else is affected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::commands::{self, ClientState, Ctx};
use super::outbuf::{ClassLimit, Verdict};
use super::resp::{self, Parsed, Reply};
use super::scripting::{Blocked, ERR_BUSY};
use super::state::NodeState;
use super::tasks::{Task, TaskState};

/// Commands parsed ahead of execution within one read (their keys are prefetched together).
const PARSE_AHEAD: usize = 32;

/// Serves one connection until the client closes it, sends QUIT, or breaks the protocol.
pub async fn serve(node: Arc<NodeState>, mut stream: TcpStream, peer: SocketAddr) {
    let guard = node.tasks.register_connection(peer, stream.local_addr().ok());
    let task = guard.task.clone();
    node.total_connections.fetch_add(1, Ordering::Relaxed);
    // Small replies go out at once; Nagle would hold them back under pipelining.
    let _ = stream.set_nodelay(true);
    let mut client = ClientState::new(task.id, node.requirepass.read().is_none());
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut parser = resp::RequestParser::default();
    let mut output = BytesMut::with_capacity(16 * 1024);
    // Each parsed command with its command-table index, looked up once.
    let mut ahead: Vec<(Option<u16>, Vec<Bytes>)> = Vec::with_capacity(PARSE_AHEAD);
    // Complete commands left in `input` when the pending replies passed the pause threshold:
    // they run once the socket has taken replies back below it, before anything more is read.
    let mut unrun = false;
    // The client closed its side: what is pending is still written, then the connection ends.
    let mut eof = false;
    // When the pending replies reached the soft output limit (cleared once below it).
    let mut over_soft_since: Option<Instant> = None;
    let pause = node.config.max_pending_reply_bytes;
    loop {
        let limits = node.output_limits.normal();
        let below_pause = pause == 0 || output.len() < pause;
        if !(unrun && below_pause) {
            if eof && output.is_empty() {
                break;
            }
            // Read while the pending replies are below the pause threshold; write whenever the
            // socket takes more. CLIENT KILL ends either wait (a kill is checked first).
            let may_read = !unrun && !eof && below_pause;
            let soft_deadline = over_soft_since.map(|since| limits.soft_deadline(since));
            // Reading through `read_buf` (not `readable` + `try_read_buf`): a read that fills
            // less than the buffer tells tokio the socket is drained, which saves the read that
            // would only find nothing left (one syscall per pipelined batch).
            let woke = {
                let (mut reader, writer) = stream.split();
                tokio::select! {
                    biased;
                    () = task.killed() => break,
                    read = reader.read_buf(&mut input), if may_read => Woke::Read(read),
                    ready = writer.writable(), if !output.is_empty() => match ready {
                        Ok(()) => Woke::Writable,
                        Err(_) => break,
                    },
                    () = sleep_until(soft_deadline), if soft_deadline.is_some() => Woke::Deadline,
                }
            };
            match woke {
                Woke::Read(Ok(0)) => {
                    // Incomplete input is dropped; replies already made still go out.
                    eof = true;
                    continue;
                }
                Woke::Read(Ok(n)) => {
                    node.counters.net_input_bytes.add(n as u64);
                    node.counters.reads.inc();
                }
                Woke::Read(Err(_)) => break,
                Woke::Writable | Woke::Deadline => {
                    if !flush(&node, &mut stream, &mut output) {
                        break;
                    }
                    if (limits.hard != 0 || limits.soft != 0)
                        && over_output_limit(
                            &node,
                            &limits,
                            output.len(),
                            &mut over_soft_since,
                            peer,
                        )
                    {
                        break;
                    }
                    settle_output(&task, &mut output, &input, unrun);
                    continue;
                }
            }
        }
        let mut close = false;
        // The pending replies passed `client-output-buffer-limit`: closed without them.
        let mut over_limit = false;
        unrun = false;
        // Per-read bookkeeping is done once for the whole pipelined batch, not per command.
        let mut started = false;
        // Each command's duration runs from the end of the previous one (or the read, or the
        // parsing of the commands parsed ahead with it) to its reply encoded: one clock read per
        // command, one more per pipelined chunk. The TTL clock (wall time, in ms) is read once per batch and carried
        // forward by that same monotonic clock, so a command costs one clock read, not two.
        let batch_start = Instant::now();
        let batch_start_ms = node.store.now_ms();
        let mut mark = batch_start;
        'batch: loop {
            // Parse ahead up to PARSE_AHEAD complete commands, then ask for their keys' buckets
            // before running the first, so their cache misses overlap. Before AUTH, one command
            // at a time: the parser's limits depend on whether the client is authenticated.
            let mut ended = false;
            let mut error = None;
            while ahead.len() < PARSE_AHEAD {
                match parser.parse(&mut input, client.authenticated) {
                    Ok(Parsed::Incomplete) => {
                        ended = true;
                        break;
                    }
                    Ok(Parsed::Empty) => {}
                    Ok(Parsed::Command(args)) => {
                        ahead.push((commands::lookup(&args[0]), args));
                        if !client.authenticated {
                            break;
                        }
                    }
                    Err(err) => {
                        error = Some(err);
                        break;
                    }
                }
            }
            if ahead.len() > 1 {
                commands::prefetch_batch(&node, &ahead);
                // The first command's time does not include parsing the others.
                mark = Instant::now();
            }
            for (index, args) in ahead.drain(..) {
                if task.is_killed() {
                    // CLIENT KILL: nothing more runs, nothing more is answered.
                    break 'batch;
                }
                if !started {
                    task.set_state(TaskState::Executing);
                    node.tasks.touch_client_activity();
                    started = true;
                }
                let now_ms = batch_start_ms + (mark - batch_start).as_millis() as u64;
                // Shown by the task dump while it runs (waiting for a lock included), and by
                // CLIENT LIST's `cmd=` afterwards.
                task.set_command(index);
                // While a script waits for the shards or runs, a command waits for it (this
                // thread serves its other connections meanwhile), or is answered -BUSY once the
                // script has run past the busy threshold (see `scripting`).
                let runs_while_busy = commands::scripts::runs_while_busy(index, &args);
                let entered = loop {
                    match node.scripting.enter(runs_while_busy) {
                        Ok(entered) => break Some(entered),
                        Err(Blocked::Busy) => break None,
                        Err(Blocked::Wait) => node.scripting.wait().await,
                    }
                };
                let Some(entered) = entered else {
                    commands::multi::flag_failed(&mut client);
                    node.counters.record_error(ERR_BUSY.as_bytes());
                    if client.reply.sends() {
                        Reply::error(ERR_BUSY).encode(client.proto, &mut output);
                    }
                    client.reply.command_done();
                    continue;
                };
                let mut executed = {
                    let mut ctx = Ctx::new(&node, &mut client, &task, now_ms);
                    commands::execute(&mut ctx, index, &args)
                };
                drop(entered);
                // EVAL: the script runs on the script thread; its reply is the command's.
                if let Some(script) = client.deferred.take() {
                    executed.reply = script.submit(node.clone(), task.clone(), client.id).await;
                }
                match executed.index {
                    Some(i) => node.metrics.commands[i as usize].inc(),
                    None => node.metrics.unknown_commands.inc(),
                };
                // A failed AUTH: this connection waits before its reply and its next command
                // (its thread serves the others meanwhile), out of the in-flight count so drain
                // does not wait for it.
                if let Some(delay) = client.auth_delay.take() {
                    task.set_state(TaskState::Reading);
                    tokio::select! {
                        biased;
                        () = task.killed() => break 'batch,
                        () = tokio::time::sleep(delay) => {}
                    }
                    task.set_state(TaskState::Executing);
                }
                // `CLIENT REPLY OFF|SKIP`: the reply is made (and counted), not sent.
                if client.reply.sends() {
                    executed.reply.encode(client.proto, &mut output);
                }
                client.reply.command_done();
                let done = Instant::now();
                let took = done - mark;
                node.metrics.command_duration.observe(took.as_secs_f64());
                commands::account(&node, &task, &executed, &args, took);
                mark = done;
                if (limits.hard != 0 || limits.soft != 0)
                    && over_output_limit(&node, &limits, output.len(), &mut over_soft_since, peer)
                {
                    over_limit = true;
                    break 'batch;
                }
                if client.close_after_reply {
                    // QUIT: what the client sent after it is not run.
                    close = true;
                    break 'batch;
                }
            }
            if let Some(err) = error {
                tracing::debug!(%peer, error = %err, "protocol error, closing connection");
                let reply = err.reply();
                if let resp::Reply::Error(text) = &reply {
                    node.counters.record_error(text);
                }
                if client.reply.sends() {
                    reply.encode(client.proto, &mut output);
                }
                close = true;
                break;
            }
            if ended {
                break;
            }
            // Past the pause threshold the rest waits until the socket has taken replies back
            // below it: one connection's replies stay bounded.
            if pause != 0 && output.len() >= pause {
                unrun = true;
                break;
            }
        }
        ahead.clear();
        if task.is_killed() || over_limit {
            break;
        }
        // What is left in `input` is a request still arriving (all of it, the arguments already
        // parsed included: they stay in the buffer until the request is whole). Past the limit
        // the connection is closed, after the replies to the requests this read completed, and
        // without one for the unfinished request (Redis's `client-query-buffer-limit`).
        if !unrun && input.len() > node.config.query_buffer_limit {
            tracing::warn!(
                %peer,
                bytes = input.len(),
                limit = node.config.query_buffer_limit,
                "closing a connection that reached the query buffer limit"
            );
            node.metrics.query_buffer_limit_disconnections.inc();
            close = true;
        }
        // Give back memory after a large request.
        if input.is_empty() && input.capacity() > 1 << 20 {
            debug_assert_eq!(parser.pending_args(), 0);
            input = BytesMut::with_capacity(16 * 1024);
        }
        // The batch is done once its replies are encoded: the task leaves the in-flight states
        // before the replies go out, so a client that has read its reply never finds its
        // connection still counted in flight. Replies the socket cannot take at once (a slow
        // reader, a large reply, a client that reads only once it has sent everything) wait in
        // `output`, shown as Writing, while the connection goes on reading.
        task.set_query_buffer(input.len(), input.capacity() - input.len());
        task.clear_command();
        task.set_state(if unrun { TaskState::Writing } else { settled(&input) });
        if !flush(&node, &mut stream, &mut output) {
            break;
        }
        if close {
            // A protocol error or QUIT: the replies made go out, then the connection closes.
            if !output.is_empty() {
                task.set_state(TaskState::Writing);
                let wrote = tokio::select! {
                    biased;
                    () = task.killed() => break,
                    wrote = stream.write_all(&output) => wrote,
                };
                if wrote.is_err() {
                    break;
                }
                node.counters.net_output_bytes.add(output.len() as u64);
                node.counters.writes.inc();
            }
            let _ = stream.shutdown().await;
            break;
        }
        settle_output(&task, &mut output, &input, unrun);
    }
    // The shards forget the keys this client watched.
    commands::multi::unwatch_all(&mut Ctx::new(&node, &mut client, &task, 0));
    drop(guard);
}

/// What ended a connection's wait.
enum Woke {
    /// A read returned (0: the client closed its side).
    Read(std::io::Result<usize>),
    /// The socket takes more of the waiting replies.
    Writable,
    /// The soft output limit's seconds are up.
    Deadline,
}

/// Writes what the socket takes of `output` without waiting. False when the connection failed.
fn flush(node: &NodeState, stream: &mut TcpStream, output: &mut BytesMut) -> bool {
    while !output.is_empty() {
        match stream.try_write(output) {
            Ok(n) => {
                node.counters.net_output_bytes.add(n as u64);
                node.counters.writes.inc();
                if n == output.len() {
                    output.clear();
                } else {
                    output.advance(n);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    true
}

/// Records the connection's state and pending replies after a batch or a write, and gives back
/// the memory of a large reply once it has gone out.
fn settle_output(task: &Task, output: &mut BytesMut, input: &BytesMut, unrun: bool) {
    let state = if unrun || !output.is_empty() { TaskState::Writing } else { settled(input) };
    task.set_state(state);
    task.set_output_buffer(output.len());
    if output.is_empty() && output.capacity() > 1 << 20 {
        *output = BytesMut::with_capacity(16 * 1024);
    }
}

/// A connection's state with nothing to run or write: Reading while a request is still arriving.
fn settled(input: &BytesMut) -> TaskState {
    if input.is_empty() { TaskState::Idle } else { TaskState::Reading }
}

/// Whether `pending` reply bytes break the normal class's `client-output-buffer-limit`; if so
/// the closing is logged and counted, as Redis's "scheduled to be closed ASAP".
fn over_output_limit(
    node: &NodeState,
    limits: &ClassLimit,
    pending: usize,
    over_soft_since: &mut Option<Instant>,
    peer: SocketAddr,
) -> bool {
    let verdict = limits.check(pending, Instant::now(), over_soft_since);
    if verdict == Verdict::Within {
        return false;
    }
    tracing::warn!(
        %peer,
        pending_bytes = pending,
        limit = if verdict == Verdict::Hard { "hard" } else { "soft" },
        "closing a client that reached its client-output-buffer-limit"
    );
    node.metrics.output_buffer_limit_disconnections.inc();
    true
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
