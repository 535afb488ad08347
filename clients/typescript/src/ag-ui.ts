/**
 * `@wsc/client/ag-ui`: `WscAgent`, an AG-UI agent (`@ag-ui/client`'s `AbstractAgent`) whose runs
 * go through the wsc gateway's AG-UI dialect (`/ws?protocol=ag-ui`). Each
 * run's events arrive once and in order through cuts and gateway restarts
 * that keep the session; `connectAgent()` joins a run already under way
 * (another tab's, or this page's before a reload); `abortRun()` cancels it.
 * No failure ever surfaces as an unhandled rejection: it becomes a
 * `RUN_ERROR` event in AG-UI's own pipeline. A module of its own, so the
 * main entry (`WscClient`) keeps no dependency: this one needs
 * `@ag-ui/client` and `rxjs` (peer dependencies).
 *
 * ```ts
 * import { WscAgent } from "@wsc/client/ag-ui";
 * const agent = new WscAgent({ url: "ws://127.0.0.1:8765/ws", userId: "alice" });
 * agent.messages = [{ id: "q1", role: "user", content: "hello" }];
 * await agent.runAgent({ runId: "run-1" });
 * agent.close();
 * ```
 */

import { AbstractAgent, type AgentConfig, type BaseEvent, type RunAgentInput } from "@ag-ui/client";
import { Observable, type Subscriber } from "rxjs";

import type { AgUiEventFrame, ClientOptions, SocketConstructor, WscClient } from "./index.js";
import { WscClient as Client } from "./index.js";

/** How to create a `WscAgent`. */
export interface WscAgentOptions extends AgentConfig {
  /** The gateway's WebSocket URL, e.g. `ws://127.0.0.1:8765/ws`. */
  url: string;
  /** The user, for a gateway in `--auth dev`. */
  userId?: string;
  /** A JWT, or a function returning one (called again before every reconnect). */
  token?: ClientOptions["token"];
  /** The agent's name (sent as `forwardedProps.agent_name`). */
  agentName?: string;
  /** The `WebSocket` constructor (default: `globalThis.WebSocket`; pass `ws`'s in Node). */
  WebSocket?: SocketConstructor;
  /**
   * Everything else `WscClient` takes (backoff, timers …) but `storage`: a
   * page that reloads has lost its runs' state, so it joins each run again
   * from its first event (`connectAgent`) in a new session rather than
   * resuming the old one from where the last page left it.
   */
  client?: Omit<ClientOptions, "url" | "userId" | "token" | "WebSocket" | "protocol" | "storage" | "storageKey">;
}

/** What a terminal event of a run is. */
const TERMINAL = new Set(["RUN_FINISHED", "RUN_ERROR"]);

/** A run this agent streams: where its events go and how far it got. */
interface Following {
  runId: string;
  subscriber: Subscriber<BaseEvent>;
  /** Events received (the number of the last one: events are numbered 1, 2, 3 … in a run). */
  received: number;
  /** The request that asks for it, sent again when a new session must. */
  request: () => Record<string, unknown>;
  /** The request's message id (an error frame names it). */
  messageId: string;
  ended: boolean;
}

let requests = 0;

/** An AG-UI agent over the wsc gateway's WebSocket. */
export class WscAgent extends AbstractAgent {
  /** The connection (one per agent; it resumes by itself). */
  readonly client: WscClient;
  private readonly agentName: string | undefined;
  private readonly following = new Map<string, Following>();
  private readonly active = new Set<string>();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(options: WscAgentOptions) {
    const { url, userId, token, agentName, WebSocket, client, ...config } = options;
    super(config);
    this.agentName = agentName;
    const clientOptions: ClientOptions = { ...client, url, protocol: "ag-ui" };
    if (userId !== undefined) clientOptions.userId = userId;
    if (token !== undefined) clientOptions.token = token;
    if (WebSocket !== undefined) clientOptions.WebSocket = WebSocket;
    this.client = new Client(clientOptions);
    this.unsubscribe.push(
      this.client.on("agUiEvent", (frame) => this.event(frame)),
      this.client.on("frame", (frame) => {
        if (frame.type !== "error") return;
        const ref = frame.payload.ref_message_id;
        for (const run of this.following.values()) {
          if (run.messageId === ref) {
            const code = String(frame.payload.code ?? "error");
            this.fail(run, code, String(frame.payload.message ?? code));
          }
        }
      }),
      this.client.on("connected", () => {
        // Every run is asked for again, each from the event after the last
        // one received. A new session (the first, or a resume refused) has
        // none of them; a resumed one may have lost a request that died
        // with the last connection, or the gateway that copied a run into
        // it (the session resumed on another one). The gateway adds
        // nothing twice to a session: it skips what the session holds.
        for (const run of this.following.values()) this.request(run);
      }),
    );
  }

  /** Starts the run `input.runId` (a repeat of a runId follows that run) and streams its events. */
  run(input: RunAgentInput): Observable<BaseEvent> {
    const body: Record<string, unknown> = { ...input };
    if (this.agentName !== undefined) {
      body.forwardedProps = { agent_name: this.agentName, ...(input.forwardedProps ?? {}) };
    }
    return this.stream(input.runId, (run) =>
      run.received === 0
        ? { type: "run_agent", message_id: run.messageId, payload: { input: body } }
        : { type: "join_run", message_id: run.messageId, payload: { run_id: run.runId, after: run.received } },
    );
  }

  /** Joins the run `input.runId` (one of this user's, in flight or recently ended) from its first event. */
  protected connect(input: RunAgentInput): Observable<BaseEvent> {
    return this.stream(input.runId, (run) => ({
      type: "join_run",
      message_id: run.messageId,
      payload: { run_id: run.runId, after: run.received },
    }));
  }

  /** Cancels the runs this agent streams: each ends with `RUN_FINISHED {outcome: {type: "cancelled"}}`. */
  abortRun(): void {
    for (const runId of this.active) {
      this.client.sendFrame({ type: "stop_agent", payload: { run_id: runId } });
    }
    super.abortRun();
  }

  /** Closes the connection; runs still streaming end with `RUN_ERROR {code: "closed"}`. */
  close(): void {
    for (const run of [...this.following.values()]) this.fail(run, "closed", "the agent's connection was closed");
    for (const off of this.unsubscribe.splice(0)) off();
    this.client.close();
  }

  private stream(runId: string, request: (run: Following) => Record<string, unknown>): Observable<BaseEvent> {
    return new Observable<BaseEvent>((subscriber) => {
      if (this.following.has(runId)) {
        subscriber.next(runError("already_following", `this agent already streams run ${runId}`));
        subscriber.complete();
        return undefined;
      }
      requests += 1;
      const run: Following = {
        runId,
        subscriber,
        received: 0,
        request: () => request(run),
        messageId: `ag-ui-${requests.toString(36)}-${Date.now().toString(36)}`,
        ended: false,
      };
      this.following.set(runId, run);
      this.active.add(runId);
      this.request(run);
      return () => {
        this.following.delete(runId);
        this.active.delete(runId);
      };
    });
  }

  /** Sends a run's request now, or when the connection opens. */
  private request(run: Following): void {
    if (run.ended) return;
    // Not open yet: the `connected` listener sends it.
    this.client.sendFrame(run.request());
  }

  private event(frame: AgUiEventFrame): void {
    const run = this.following.get(frame.runId);
    if (!run || run.ended) return;
    run.received += 1;
    run.subscriber.next(frame.event as unknown as BaseEvent);
    if (TERMINAL.has(String(frame.event.type))) this.end(run);
  }

  /** Ends a run with a `RUN_ERROR` saying why (never an error thrown at the caller). */
  private fail(run: Following, code: string, message: string): void {
    if (run.ended) return;
    run.subscriber.next(runError(code, message));
    this.end(run);
  }

  private end(run: Following): void {
    run.ended = true;
    this.following.delete(run.runId);
    this.active.delete(run.runId);
    run.subscriber.complete();
  }
}

function runError(code: string, message: string): BaseEvent {
  return { type: "RUN_ERROR", code, message } as unknown as BaseEvent;
}
