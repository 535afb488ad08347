/**
 * `@wsc/client`: a browser and Node client for the wsc gateway. It keeps
 * one WebSocket open, reconnects with full-jitter backoff, resumes its
 * session (`session_id`, `resume_token`, `last_seq`) and hands the
 * application every frame exactly once and in order, however often the
 * connection is cut. Agent runs are handles you iterate and cancel.
 *
 * ```ts
 * import { WscClient } from "@wsc/client";
 * const client = new WscClient({ url: "ws://127.0.0.1:8765/ws", userId: "alice" });
 * const run = client.startAgent({ input: "find flights to Lisbon" });
 * for await (const frame of run) console.log(frame.type, frame.payload);
 * client.close();
 * ```
 */

import { type BackoffOptions, backoffCeiling, backoffDelay } from "./backoff.js";
import {
  type ConnectionEstablished,
  type ErrorPayload,
  type Frame,
  TERMINAL_TYPES,
  agUiFrameOf,
  frameOf,
  parseJson,
  runIdOf,
} from "./frames.js";

export { type BackoffOptions, backoffCeiling, backoffDelay } from "./backoff.js";
export {
  type Ack,
  type ConnectionEstablished,
  type ErrorCode,
  type ErrorPayload,
  type Frame,
  type HandshakeRefusal,
  type MessageType,
  type StartAgent,
  type StopAgent,
  parseFrame,
} from "./frames.js";

/**
 * Why a run, or the client, ended without what it was asked for. Every
 * run ends exactly once: with its terminal frame, or with one of these
 * (a `for await` over the run throws it; `run.error` holds it).
 *
 * - `session_lost`: the gateway refused to resume the session while the
 *   run was in flight (its frames since the cut are gone).
 * - `closed`: `client.close()` was called.
 * - `gave_up`: the client was not connected for `giveUpAfterMs`, or the
 *   gateway refused the handshake in a way retrying cannot fix.
 * - `cancelled`: `run.cancel()` before the run started.
 * - `invalid_url`: the constructor's URL (thrown by the constructor).
 * - `unauthorized`, `not_found`, `forbidden`, `invalid_query`: the
 *   gateway refused the handshake (the client is `failed`).
 * - any code of the gateway's `error` frame that refused the start
 *   (`rate_limited` — `limit` says which —, `invalid_message`, …).
 *
 * Messages never carry the URL's query (its token, its user id).
 */
export class WscError extends Error {
  /** What went wrong (see above). */
  readonly code: string;
  /** For `rate_limited`: the server's hint, ms. */
  readonly retryAfterMs: number | undefined;
  /** For `rate_limited`: which limit (`runs_in_flight`, or a message window). */
  readonly limit: string | undefined;

  constructor(code: string, message: string, extra: { retryAfterMs?: number; limit?: string } = {}) {
    super(message);
    this.name = "WscError";
    this.code = code;
    this.retryAfterMs = extra.retryAfterMs;
    this.limit = extra.limit;
  }
}

/** The part of the WHATWG `WebSocket` the client uses. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A `WebSocket` constructor: the platform's in browsers, `ws`'s in Node. */
export type SocketConstructor = new (url: string) => SocketLike;

/** Somewhere to keep the session across page reloads (`sessionStorage`). */
export interface SessionStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Timers and a clock, injectable for tests. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Milliseconds on any monotonic scale. */
  now(): number;
}

/** How to create a client. */
export interface ClientOptions {
  /** The gateway's WebSocket URL, e.g. `ws://127.0.0.1:8765/ws`. */
  url: string;
  /** The user, for a gateway in `--auth dev`. */
  userId?: string;
  /** A JWT, or a function returning one (called again before every reconnect). */
  token?: string | (() => string | Promise<string>);
  /** The `WebSocket` constructor (default: `globalThis.WebSocket`; pass `ws`'s in Node). */
  WebSocket?: SocketConstructor;
  /** Reconnection waits (full jitter; default 250 ms doubling to 30 s). */
  backoff?: BackoffOptions;
  /** Keep the session here so a page reload resumes it (e.g. `sessionStorage`). */
  storage?: SessionStorageLike;
  /** The storage key (default `"wsc-session"`). */
  storageKey?: string;
  /** Uniform random numbers in [0, 1) (default `Math.random`). */
  random?: () => number;
  /** Timers (default the global ones). */
  timers?: Timers;
  /**
   * The protocol to speak: `"wsc"` (default: the gateway's own frames) or
   * `"ag-ui"` (runs' events are AG-UI events, one `{run_id, event, seq}`
   * frame each, reported as `agUiEvent`; `WscAgent` uses it).
   */
  protocol?: "wsc" | "ag-ui";
  /**
   * Give up after this long without a connection (ms; default 300 000):
   * the client ends in state `failed` (event `failed`), every run in
   * flight with `gave_up`. 0: never.
   */
  giveUpAfterMs?: number;
  /**
   * In browsers (where a refused handshake looks like any failed open):
   * give up after this many opens in a row that never connected (default
   * 20; 0: never). In Node, a handshake refused with 401, 403 or 404 fails
   * the client at once.
   */
  maxFailedOpens?: number;
  /**
   * A start refused because the user has as many runs in flight as the
   * gateway allows: by default its run fails with `rate_limited` (`limit:
   * "runs_in_flight"`); with this, it waits and is sent again at the
   * server's pace (its `retry_after_ms`, never sooner).
   */
  queueWhenCapped?: boolean;
}

/** One AG-UI event of a run (the AG-UI dialect). */
export interface AgUiEventFrame {
  /** The run's `runId`. */
  runId: string;
  /** The event, as the agent sent it. */
  event: Record<string, unknown>;
  /** The session's sequence number. */
  seq: number;
}

/** Where the connection stands. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed" | "failed";

/** What the client reports besides frames. */
export interface ClientEvents {
  /** The connection state changed. */
  state: ConnectionState;
  /** Every frame, once, in order (agent events of every run, published frames, errors). */
  frame: Frame;
  /** A resume was refused (`reason`): frames since the last one seen are lost; reload the app's state. */
  resumeRefused: { reason: string };
  /** Connected (first time or resumed). */
  connected: ConnectionEstablished;
  /** An AG-UI event of a run, once, in order (the `"ag-ui"` protocol). */
  agUiEvent: AgUiEventFrame;
  /** The client gave up (state `failed`): why. Runs in flight ended with it. */
  failed: WscError;
}

/** What a run was asked to do. */
export interface StartAgentOptions {
  /** What the user asked. */
  input?: string;
  /** The agent's name. */
  agentName?: string;
  /** The conversation thread. */
  threadId?: string;
  /** Tools (the simulated agent calls them). */
  tools?: string[];
  /** The simulated agent's pause between events, ms (demos and tests). */
  stepDelayMs?: number;
}

/** The session the client resumes. */
interface Session {
  sessionId: string;
  resumeToken: string;
  lastSeq: number;
}

/** Frames acknowledged every this many (the gateway trims its buffer). */
const ACK_EVERY = 64;
/** At most this many frames wait for a run id being worked out. */
const EARLY_FRAMES = 10_000;

let nextId = 0;
/** A message id unique enough within a session. */
function newMessageId(random: () => number): string {
  nextId += 1;
  return `c-${Date.now().toString(36)}-${nextId.toString(36)}-${Math.floor(random() * 2 ** 32).toString(36)}`;
}

/**
 * The id the gateway gives a run started with `messageId` in `sessionId`:
 * `run-` and 24 hex digits of SHA-256 over both (the same on every node).
 */
export async function runIdFor(sessionId: string, messageId: string): Promise<string> {
  const bytes = new TextEncoder().encode(`${sessionId}\u0000${messageId}`);
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
  let hex = "";
  for (const b of digest.subarray(0, 12)) hex += b.toString(16).padStart(2, "0");
  return `run-${hex}`;
}

/** A run in flight: iterate its frames (ending after its terminal one); `cancel()` stops it. */
export class RunHandle implements AsyncIterable<Frame> {
  /** The start's message id (its idempotency key). */
  readonly messageId: string;
  /** Whether the run has ended (terminal frame seen, or failed). */
  ended = false;
  /** Set once any frame of the run arrived: a start is not sent again after that. */
  seen = false;
  runId: string | undefined;
  /** Whether its start went to a socket (it may run on the gateway). */
  sent = false;
  /** Rate-limit refusals of its start in a row. */
  refusals = 0;
  private readonly queue: Frame[] = [];
  private waiting: { resolve: (r: IteratorResult<Frame>) => void; reject: (e: Error) => void } | undefined;
  private failure: WscError | undefined;
  private readonly client: WscClient;
  /** The frame to send (again, after a cut, until the run is seen). */
  readonly start: Frame;

  constructor(client: WscClient, start: Frame, messageId: string) {
    this.client = client;
    this.start = start;
    this.messageId = messageId;
  }

  /** Why the run failed, once it did (it ended without its terminal frame). */
  get error(): WscError | undefined {
    return this.failure;
  }

  /**
   * Stops the run: one that started ends with `agent_error {code:
   * "cancelled"}`; one not started yet (still connecting, or queued
   * behind the run cap) never starts and fails with `cancelled`.
   */
  cancel(): void {
    if (this.ended) return;
    this.client.stopRun(this);
  }

  /** @internal */
  push(frame: Frame): void {
    this.seen = true;
    if (this.ended) return;
    if (TERMINAL_TYPES.has(frame.type)) this.ended = true;
    this.deliver({ value: frame, done: false });
    if (this.ended) this.deliver({ value: undefined, done: true });
  }

  /** @internal Ends the run with `error` (a consumer waiting gets it thrown). */
  fail(error: WscError): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = error;
    if (this.waiting && this.queue.length === 0) {
      const w = this.waiting;
      this.waiting = undefined;
      w.reject(error);
    }
  }

  private deliver(r: IteratorResult<Frame>): void {
    if (this.waiting && this.queue.length === 0) {
      const w = this.waiting;
      this.waiting = undefined;
      w.resolve(r);
    } else if (!r.done) {
      this.queue.push(r.value);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Frame> {
    return {
      next: (): Promise<IteratorResult<Frame>> => {
        const frame = this.queue.shift();
        if (frame) return Promise.resolve({ value: frame, done: false });
        if (this.failure) return Promise.reject(this.failure);
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = { resolve, reject };
        });
      },
    };
  }
}

type Listener<K extends keyof ClientEvents> = (event: ClientEvents[K]) => void;

/** The client: one resumable connection to the gateway. */
export class WscClient {
  private readonly options: ClientOptions;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly Socket: SocketConstructor;
  private socket: SocketLike | undefined;
  private session: Session | undefined;
  private currentState: ConnectionState = "connecting";
  private attempt = 0;
  private sinceAck = 0;
  private heartbeatMs = 15_000;
  private heartbeat: unknown;
  private reconnectTimer: unknown;
  /** When the last frame arrived (`timers.now()`). */
  private lastFrameAt = 0;
  private readonly listeners = new Map<string, Set<(e: never) => void>>();
  /** Runs by message id (until ended). */
  private readonly runs = new Map<string, RunHandle>();
  /** Runs by run id, once known. */
  private readonly runsById = new Map<string, RunHandle>();
  /** Sends waiting on a run id digest. */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Run id digests under way. */
  private digests = 0;
  /** Frames of runs whose id is still being worked out, by run id. */
  private readonly early = new Map<string, Frame[]>();
  private earlyCount = 0;
  /** Runs to stop once the connection is open. */
  private readonly pendingStops = new Set<RunHandle>();
  /** Opens in a row that never got `connection_established`. */
  private failedOpens = 0;
  /** Whether the current socket got `connection_established`. */
  private connected = false;
  private giveUpTimer: unknown;

  /**
   * Connects at once (and reconnects by itself).
   *
   * @throws {WscError} `invalid_url` for a URL that is not `ws://` or
   * `wss://` (the message never repeats the URL's query).
   */
  constructor(options: ClientOptions) {
    checkUrl(options.url);
    this.options = options;
    this.timers = options.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
      now: () => performance.now(),
    };
    this.random = options.random ?? Math.random;
    const Socket =
      options.WebSocket ??
      (globalThis as unknown as { WebSocket?: SocketConstructor }).WebSocket;
    if (!Socket) {
      throw new Error("no WebSocket: pass options.WebSocket (in Node: the `ws` package's WebSocket)");
    }
    this.Socket = Socket;
    this.session = this.loadSession();
    this.armGiveUp();
    void this.open();
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** The session id, once connected. */
  get sessionId(): string | undefined {
    return this.session?.sessionId;
  }

  /** The last seq delivered to the application. */
  get lastSeq(): number {
    return this.session?.lastSeq ?? 0;
  }

  /**
   * Resolves once every start, start sent again and cancel under way has
   * been handed to the socket (each waits for its run id's digest).
   */
  async whenSent(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Tracks an asynchronous send for `whenSent`. */
  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as (e: never) => void);
    return () => set?.delete(listener as (e: never) => void);
  }

  /** Starts an agent run; its frames arrive through the returned handle. */
  startAgent(options: StartAgentOptions = {}): RunHandle {
    const payload: Record<string, unknown> = {};
    if (options.input !== undefined) payload.input = options.input;
    if (options.agentName !== undefined) payload.agent_name = options.agentName;
    if (options.threadId !== undefined) payload.thread_id = options.threadId;
    if (options.tools !== undefined) payload.tools = options.tools;
    if (options.stepDelayMs !== undefined) payload.step_delay_ms = options.stepDelayMs;
    return this.begin("start_agent", payload);
  }

  /**
   * Sends a chat message. With an agent backend behind the gateway it
   * starts a run (the handle yields its frames); with the simulated agent
   * only an `ack` comes back.
   */
  sendMessage(content: string): RunHandle {
    return this.begin("user_message", { content });
  }

  /** Closes the connection for good: runs in flight fail with `closed`. */
  close(): void {
    this.end("closed", new WscError("closed", "the client was closed"));
  }

  /** Ends the client in `state`, every run in flight with `error`. */
  private end(state: "closed" | "failed", error: WscError): void {
    if (this.currentState === "closed" || this.currentState === "failed") return;
    this.setState(state);
    this.clearTimers();
    if (this.giveUpTimer !== undefined) this.timers.clearTimeout(this.giveUpTimer);
    this.giveUpTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.onerror = null;
      socket.close(1000, "client closed");
    }
    const runs = [...this.runs.values()];
    this.runs.clear();
    this.runsById.clear();
    this.pendingStops.clear();
    for (const run of runs) run.fail(error);
    if (state === "failed") this.emit("failed", error);
  }

  /** Gives up for good: state `failed`, runs in flight fail with `error`. */
  private giveUp(error: WscError): void {
    this.end("failed", error);
  }

  /** While not connected: gives up once `giveUpAfterMs` has passed. */
  private armGiveUp(): void {
    const after = this.options.giveUpAfterMs ?? 300_000;
    if (after <= 0 || this.giveUpTimer !== undefined) return;
    this.giveUpTimer = this.timers.setTimeout(() => {
      this.giveUpTimer = undefined;
      this.giveUp(new WscError("gave_up", `not connected to the gateway for ${after} ms: gave up`));
    }, after);
  }

  /**
   * Drops the connection abruptly, as a network cut would (tests and
   * demos); the client reconnects and resumes.
   */
  dropConnection(): void {
    const socket = this.socket;
    if (!socket) return;
    socket.onclose = null;
    socket.onmessage = null;
    socket.close(4000, "dropped by the client");
    this.socket = undefined;
    this.connectionLost();
  }

  /** @internal `RunHandle.cancel`. */
  stopRun(run: RunHandle): void {
    if (!run.seen) {
      // Not started as far as this client knows: it never will be (a
      // start not sent stays unsent; one sent is stopped once its id is
      // known), and the handle ends now.
      this.runs.delete(run.messageId);
      run.fail(new WscError("cancelled", "the run was cancelled before it started"));
      if (!run.sent) return;
    }
    this.pendingStops.add(run);
    this.sendStops();
  }

  /** Sends `stop_agent` for each run waiting for one, if connected. */
  private sendStops(): void {
    if (this.currentState !== "open") return;
    for (const run of this.pendingStops) {
      this.pendingStops.delete(run);
      const send = () => {
        if (run.runId) this.send({ type: "stop_agent", payload: { run_id: run.runId } });
      };
      if (run.runId) send();
      else this.track(this.idFor(run).then(send));
    }
  }

  private begin(type: string, payload: Record<string, unknown>): RunHandle {
    const messageId = newMessageId(this.random);
    const run = new RunHandle(this, { type, payload, message_id: messageId }, messageId);
    this.runs.set(messageId, run);
    if (this.currentState === "open") this.track(this.sendStart(run));
    return run;
  }

  /** Sends (or sends again) a start, once its run id in this session is known. */
  /**
   * Sends (or sends again) a start at once; its run id (a digest) is
   * worked out meanwhile, and frames that arrive first wait for it.
   */
  private async sendStart(run: RunHandle): Promise<void> {
    if (run.ended || run.seen || this.currentState !== "open") return;
    run.sent = true;
    this.send(run.start);
    await this.idFor(run);
  }

  private async idFor(run: RunHandle): Promise<string | undefined> {
    const session = this.session;
    if (!session) return undefined;
    this.digests += 1;
    let id: string;
    try {
      id = await runIdFor(session.sessionId, run.messageId);
    } finally {
      this.digests -= 1;
    }
    if (this.session?.sessionId === session.sessionId) {
      if (run.runId && run.runId !== id) this.runsById.delete(run.runId);
      run.runId = id;
      this.runsById.set(id, run);
      // Frames of this run that came before its id was known, in order.
      const early = this.early.get(id);
      if (early) {
        this.early.delete(id);
        this.earlyCount -= early.length;
        for (const frame of early) this.toRun(run, frame);
      }
    }
    if (this.digests === 0) {
      this.early.clear();
      this.earlyCount = 0;
    }
    return id;
  }

  /** Hands a frame to its run; forgets the run once it ended. */
  private toRun(run: RunHandle, frame: Frame): void {
    run.push(frame);
    if (run.ended) {
      this.runs.delete(run.messageId);
      if (run.runId) this.runsById.delete(run.runId);
    }
  }

  private emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      (listener as Listener<K>)(value);
    }
  }

  private setState(state: ConnectionState): void {
    if (this.currentState === state) return;
    this.currentState = state;
    this.emit("state", state);
  }

  private async url(): Promise<string> {
    const params = new URLSearchParams();
    if (this.options.userId !== undefined) params.set("user_id", this.options.userId);
    const token = this.options.token;
    if (token !== undefined) {
      params.set("token", typeof token === "function" ? await token() : token);
    }
    if (this.options.protocol === "ag-ui") params.set("protocol", "ag-ui");
    if (this.session) {
      params.set("session_id", this.session.sessionId);
      params.set("resume_token", this.session.resumeToken);
      params.set("last_seq", String(this.session.lastSeq));
    }
    const sep = this.options.url.includes("?") ? "&" : "?";
    return `${this.options.url}${sep}${params.toString()}`;
  }

  private async open(): Promise<void> {
    let url: string;
    try {
      url = await this.url();
    } catch {
      this.connectionLost();
      return;
    }
    if (this.currentState === "closed" || this.currentState === "failed") return;
    let socket: SocketLike;
    try {
      socket = new this.Socket(url);
    } catch {
      // The URL was checked: a platform that refuses it anyway is a
      // failed open (never the URL in a message: it holds the token).
      this.openFailed();
      return;
    }
    this.socket = socket;
    this.connected = false;
    socket.onmessage = (event) => {
      const text = typeof event.data === "string" ? event.data : decode(event.data);
      if (text === undefined) return;
      // Parsed once: a wsc frame, or in the AG-UI dialect an event frame.
      const value = parseJson(text);
      const frame = frameOf(value);
      if (frame) this.receive(frame);
      else if (this.options.protocol === "ag-ui") {
        const agUi = agUiFrameOf(value);
        if (agUi) this.receiveAgUi(agUi);
      }
    };
    socket.onclose = () => {
      if (this.socket === socket) {
        this.socket = undefined;
        if (this.connected) this.connectionLost();
        else this.openFailed();
      }
    };
    socket.onerror = (event) => {
      // onclose follows; a refusal retrying cannot fix ends the client
      // (Node's `ws` says the handshake's status; a browser does not).
      const refusal = refusalOf(event);
      if (refusal && this.socket === socket) {
        this.socket = undefined;
        socket.onclose = null;
        this.giveUp(refusal);
      }
    };
  }

  /** A socket closed before `connection_established`. */
  private openFailed(): void {
    this.failedOpens += 1;
    const max = this.options.maxFailedOpens ?? 20;
    if (max > 0 && this.failedOpens >= max) {
      this.giveUp(
        new WscError(
          "gave_up",
          `${this.failedOpens} connection attempts in a row failed before the gateway answered: gave up`,
        ),
      );
      return;
    }
    this.connectionLost();
  }

  private connectionLost(): void {
    this.clearTimers();
    if (this.currentState === "closed" || this.currentState === "failed") return;
    this.armGiveUp();
    this.setState("reconnecting");
    const delay = backoffDelay(this.attempt, this.options.backoff, this.random);
    this.attempt += 1;
    this.reconnectTimer = this.timers.setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.open();
    }, delay);
  }

  private clearTimers(): void {
    for (const t of [this.heartbeat, this.reconnectTimer]) {
      if (t !== undefined) this.timers.clearTimeout(t);
    }
    this.heartbeat = undefined;
    this.reconnectTimer = undefined;
  }

  /**
   * Each interval: a connection silent (no frame at all) for more than two
   * intervals is dropped and resumed; else a `ping` keeps a frame coming
   * even when no agent talks.
   */
  private armHeartbeat(): void {
    if (this.heartbeat !== undefined) this.timers.clearTimeout(this.heartbeat);
    this.heartbeat = this.timers.setTimeout(() => {
      this.heartbeat = undefined;
      if (this.timers.now() - this.lastFrameAt > this.heartbeatMs * 2) {
        this.dropConnection();
        return;
      }
      this.send({ type: "ping", payload: {} });
      this.armHeartbeat();
    }, this.heartbeatMs);
  }

  /**
   * Whether the frame numbered `seq` is the next one (then it counts as
   * delivered); a copy of one delivered before is not, and a gap drops the
   * connection to resume from the last one delivered.
   */
  private next(seq: number): boolean {
    if (!this.session) return true;
    const last = this.session.lastSeq;
    if (seq <= last) return false; // a copy of one delivered before
    if (seq > last + 1) {
      this.dropConnection();
      return false;
    }
    this.session.lastSeq = seq;
    this.saveSession();
    this.sinceAck += 1;
    if (this.sinceAck >= ACK_EVERY) {
      this.sinceAck = 0;
      this.send({ type: "ack", payload: { seq } });
    }
    return true;
  }

  private receiveAgUi(frame: AgUiEventFrame): void {
    this.lastFrameAt = this.timers.now();
    if (this.next(frame.seq)) this.emit("agUiEvent", frame);
  }

  /**
   * @internal Sends a frame as it is, if the connection is open (the
   * AG-UI dialect's requests, from `WscAgent`); false if it is not.
   */
  sendFrame(frame: Record<string, unknown>): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1 || this.currentState !== "open") return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  private receive(frame: Frame): void {
    this.lastFrameAt = this.timers.now();
    if (frame.type === "connection_established") {
      this.established(frame.payload as unknown as ConnectionEstablished);
      return;
    }
    if (frame.seq !== undefined && !this.next(frame.seq)) return;
    this.emit("frame", frame);
    if (frame.type === "error") {
      this.errorFrame(frame.payload as unknown as ErrorPayload);
      return;
    }
    const runId = runIdOf(frame);
    if (runId === undefined) return;
    const run = this.runsById.get(runId);
    if (run) {
      this.toRun(run, frame);
    } else if (this.digests > 0 && this.earlyCount < EARLY_FRAMES) {
      // Perhaps a run whose start just went out: kept until its id is known.
      const list = this.early.get(runId) ?? [];
      list.push(frame);
      this.early.set(runId, list);
      this.earlyCount += 1;
    }
  }

  private established(hello: ConnectionEstablished): void {
    this.connected = true;
    this.failedOpens = 0;
    if (this.giveUpTimer !== undefined) this.timers.clearTimeout(this.giveUpTimer);
    this.giveUpTimer = undefined;
    const asked = this.session;
    if (asked && !hello.resumed) {
      // The frames after last_seq are gone, and with them the runs in
      // flight; runs never seen are started again in the new session.
      const reason = hello.reason ?? "unknown";
      for (const run of this.runs.values()) {
        if (run.seen) {
          run.fail(new WscError("session_lost", `the gateway could not resume the session (${reason}): the run's frames since the cut are lost`));
        }
      }
      for (const [id, run] of this.runs) if (run.ended) this.runs.delete(id);
      this.runsById.clear();
      this.emit("resumeRefused", { reason: hello.reason ?? "unknown" });
    }
    this.session = {
      sessionId: hello.session_id,
      resumeToken: hello.resume_token,
      lastSeq: hello.resumed && asked ? asked.lastSeq : 0,
    };
    this.saveSession();
    this.attempt = 0;
    this.sinceAck = 0;
    if (hello.heartbeat_interval_ms > 0) this.heartbeatMs = hello.heartbeat_interval_ms;
    this.armHeartbeat();
    this.setState("open");
    this.emit("connected", hello);
    // Starts that may have been lost with the last connection go again
    // with the same message id: the gateway runs each once.
    for (const run of this.runs.values()) {
      if (!run.seen && !run.ended) this.track(this.sendStart(run));
      else if (!run.ended) this.track(this.idFor(run));
    }
    this.sendStops();
  }

  private errorFrame(error: ErrorPayload): void {
    const run = error.ref_message_id == null ? undefined : this.runs.get(error.ref_message_id);
    if (!run || run.seen) return;
    const limit = typeof error.limit === "string" ? error.limit : undefined;
    const capped = limit === "runs_in_flight";
    if (error.code === "rate_limited" && (!capped || this.options.queueWhenCapped)) {
      // Again at the server's pace: never sooner than its hint, later
      // with each refusal in a row.
      run.refusals += 1;
      const hint = error.retry_after_ms ?? backoffCeiling(0, this.options.backoff);
      const wait = Math.max(hint, backoffDelay(run.refusals, this.options.backoff, this.random), 1);
      this.timers.setTimeout(() => this.track(this.sendStart(run)), wait);
      return;
    }
    this.runs.delete(run.messageId);
    run.fail(
      new WscError(String(error.code), String(error.message), {
        retryAfterMs: error.retry_after_ms ?? undefined,
        limit,
      }),
    );
  }

  private send(frame: Frame): void {
    const socket = this.socket;
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(frame));
  }

  private loadSession(): Session | undefined {
    const storage = this.options.storage;
    if (!storage) return undefined;
    try {
      const raw = storage.getItem(this.options.storageKey ?? "wsc-session");
      if (!raw) return undefined;
      const s = JSON.parse(raw) as Partial<Session>;
      if (typeof s.sessionId === "string" && typeof s.resumeToken === "string" && typeof s.lastSeq === "number") {
        return { sessionId: s.sessionId, resumeToken: s.resumeToken, lastSeq: s.lastSeq };
      }
    } catch {
      // A damaged entry: start afresh.
    }
    return undefined;
  }

  private saveSession(): void {
    const storage = this.options.storage;
    if (!storage || !this.session) return;
    storage.setItem(this.options.storageKey ?? "wsc-session", JSON.stringify(this.session));
  }
}

/**
 * Throws `invalid_url` unless `url` is a `ws://` or `wss://` URL. The
 * message names what is wrong, never the URL (its query may hold a token).
 */
function checkUrl(url: unknown): void {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new WscError("invalid_url", "the gateway URL is not a URL (expected ws://host:port/ws or wss://…)");
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new WscError(
      "invalid_url",
      `the gateway URL's scheme is ${JSON.stringify(parsed.protocol)}: expected ws: or wss:`,
    );
  }
}

/**
 * A refused handshake retrying cannot fix, from a socket's error event:
 * Node's `ws` reports "Unexpected server response: STATUS" (a browser
 * reports nothing: its opens are counted instead).
 */
function refusalOf(event: unknown): WscError | undefined {
  const e = event as { message?: unknown; error?: { message?: unknown } } | null;
  const text = String(e?.message ?? e?.error?.message ?? "");
  const status = /Unexpected server response: (\d{3})/.exec(text)?.[1];
  const codes: Record<string, string> = {
    "400": "invalid_query",
    "401": "unauthorized",
    "403": "forbidden",
    "404": "not_found",
  };
  const code = status === undefined ? undefined : codes[status];
  if (code === undefined) return undefined;
  return new WscError(code, `the gateway refused the connection (HTTP ${status}): retrying cannot fix it`);
}

/** Text from a binary-typed message event (`ws` in Node hands Buffers). */
function decode(data: unknown): string | undefined {
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return undefined;
}
