/**
 * The wire frames of the wsc gateway (docs/protocol.md), as the client
 * reads and writes them. The payload types come from the Rust protocol
 * module (`wsc_core::protocol`, generated into `generated.ts`); every
 * server frame carries `type` and `payload`, agent events also `seq`,
 * `message_id` and `timestamp`.
 */

/** A frame as it travels: JSON with a `type` and an object `payload`. */
export interface Frame {
  type: string;
  payload: Record<string, unknown>;
  /** The session's sequence number (agent events and published frames). */
  seq?: number;
  message_id?: string;
  /** Unix seconds. */
  timestamp?: number;
  user_id?: string;
  thread_id?: string;
}

export type {
  Ack,
  ConnectionEstablished,
  ErrorCode,
  ErrorFrame as ErrorPayload,
  HandshakeRefusal,
  MessageType,
  StartAgent,
  StopAgent,
} from "./generated.js";

/** The frames that end a run: exactly one of them per run. */
export const TERMINAL_TYPES: ReadonlySet<string> = new Set(["agent_completed", "agent_error"]);

/** Parses a text frame; `undefined` for anything that is not a frame. */
export function parseFrame(text: string): Frame | undefined {
  return frameOf(parseJson(text));
}

/** JSON text as a value; `undefined` if it does not parse. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A parsed value as a frame; `undefined` for anything that is not one. */
export function frameOf(value: unknown): Frame | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.type !== "string") return undefined;
  const payload =
    typeof v.payload === "object" && v.payload !== null && !Array.isArray(v.payload)
      ? (v.payload as Record<string, unknown>)
      : {};
  const frame: Frame = { type: v.type, payload };
  if (typeof v.seq === "number") frame.seq = v.seq;
  if (typeof v.message_id === "string") frame.message_id = v.message_id;
  if (typeof v.timestamp === "number") frame.timestamp = v.timestamp;
  if (typeof v.user_id === "string") frame.user_id = v.user_id;
  if (typeof v.thread_id === "string") frame.thread_id = v.thread_id;
  return frame;
}

/** The run a frame belongs to (`payload.run_id`), if any. */
export function runIdOf(frame: Frame): string | undefined {
  const id = frame.payload.run_id;
  return typeof id === "string" ? id : undefined;
}

/**
 * A parsed value as a frame of the AG-UI dialect, `{"run_id", "event",
 * "seq"}`; `undefined` for anything else.
 */
export function agUiFrameOf(
  value: unknown,
): { runId: string; event: Record<string, unknown>; seq: number } | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const event = v.event;
  if (typeof v.run_id !== "string" || typeof v.seq !== "number") return undefined;
  if (typeof event !== "object" || event === null || Array.isArray(event)) return undefined;
  return { runId: v.run_id, event: event as Record<string, unknown>, seq: v.seq };
}
