// Generated from the Rust protocol module (wsc_core) by
// tests/tests/typescript_types.rs; do not edit. Update with
// `WSC_UPDATE_TS=1 cargo test -p wsc-tests --test typescript_types`.

/** Every frame `type` of the protocol (legacy names included). */
export type MessageType =
  | "connect"
  | "disconnect"
  | "connection_established"
  | "heartbeat"
  | "heartbeat_ack"
  | "ping"
  | "pong"
  | "user_message"
  | "chat"
  | "system_message"
  | "error_message"
  | "user_typing"
  | "agent_typing"
  | "typing_started"
  | "typing_stopped"
  | "start_agent"
  | "stop_agent"
  | "agent_started"
  | "agent_start"
  | "agent_complete"
  | "agent_completed"
  | "tool_execute"
  | "tool_executing"
  | "tool_complete"
  | "tool_completed"
  | "agent_request"
  | "agent_task"
  | "agent_task_ack"
  | "agent_response"
  | "agent_response_chunk"
  | "agent_response_complete"
  | "agent_status_request"
  | "agent_status_update"
  | "agent_progress"
  | "agent_thinking"
  | "agent_error"
  | "thread_update"
  | "thread_message"
  | "broadcast"
  | "broadcast_test"
  | "direct_message"
  | "room_message"
  | "jsonrpc_request"
  | "jsonrpc_response"
  | "jsonrpc_notification"
  | "resilience_test"
  | "recovery_test"
  | "quality_metrics"
  | "batch"
  | "connection"
  | "typing"
  | "error"
  | "ack";

/** The `code` of an `error` frame. */
export type ErrorCode =
  | "invalid_json"
  | "invalid_message"
  | "unknown_type"
  | "not_allowed"
  | "rate_limited"
  | "message_too_large"
  | "unauthorized"
  | "internal"
  | "not_found"
  | "gone";

export type ConnectionEstablished = { 
/**
 * The session (keep it to resume).
 */
session_id: string, 
/**
 * This connection.
 */
connection_id: string, 
/**
 * The token that proves the session is yours on resume.
 */
resume_token: string, 
/**
 * The session's epoch.
 */
epoch: number, 
/**
 * This connection resumed the session asked for.
 */
resumed: boolean, 
/**
 * Frames replayed after this one (those after the client's `last_seq`).
 */
replayed: number, 
/**
 * How often the server pings; a client silent for two intervals is
 * dropped (its session stays resumable).
 */
heartbeat_interval_ms: number, 
/**
 * Why a resume asked for was refused (a fresh session was started).
 */
reason?: string | null, };

export type ErrorFrame = { 
/**
 * What kind of error.
 */
code: string, 
/**
 * What happened and what to do.
 */
message: string, 
/**
 * For `rate_limited`: when the window admits again, ms.
 */
retry_after_ms?: number, 
/**
 * The `message_id` of the refused frame, when it had one.
 */
ref_message_id?: string | null, 
/**
 * For `rate_limited`: which limit refused. [`LIMIT_RUNS_IN_FLIGHT`]
 * for a start over the user's runs in flight (waiting for a run to
 * end admits it; retrying sooner does not).
 */
limit?: string | null, };

export type Ack = { 
/**
 * The acknowledged client message (server to client).
 */
message_id?: string | null, 
/**
 * The last seq received (client to server).
 */
seq?: number, };

export type StartAgent = { 
/**
 * What the user asked: the run's input (an upstream agent gets it as
 * the run's one user message).
 */
input?: string | null, 
/**
 * The agent to run (server default `"assistant"`).
 */
agent_name?: string | null, 
/**
 * Tools it should call (server default `["search"]` for the
 * simulated agent).
 */
tools?: Array<string> | null, 
/**
 * The simulated agent's delay between events, ms.
 */
step_delay_ms?: number, 
/**
 * The conversation thread (else the message's `thread_id`).
 */
thread_id?: string | null, };

export type StopAgent = { 
/**
 * The run to stop.
 */
run_id: string, };

export type HandshakeRefusal = { 
/**
 * `unauthorized`, `invalid_query`, `query_too_long`, `rate_limited`,
 * `shutting_down`, `unavailable` or `session_elsewhere`.
 */
error: string, 
/**
 * What happened and what to do.
 */
message: string, };
