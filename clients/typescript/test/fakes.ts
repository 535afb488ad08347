// A fake socket the tests drive from the server's side, and timers that run
// only when told: the client's unit tests need no network and no waiting.

import assert from "node:assert/strict";

import { type ClientOptions, type Frame, type SocketLike, type Timers, WscClient } from "../src/index.js";

/** A socket the test drives from the server's side. */
export class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: Frame[] = [];
  closed: { code?: number } | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly url: URL;

  constructor(url: string) {
    this.url = new URL(url);
    FakeSocket.all.push(this);
  }

  static last(): FakeSocket {
    const s = FakeSocket.all.at(-1);
    assert.ok(s, "a socket was opened");
    return s;
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Frame);
  }

  close(code?: number): void {
    this.closed = { code };
    this.readyState = 3;
  }

  /** The server accepts and says hello. */
  hello(payload: Partial<Record<string, unknown>> = {}): void {
    this.readyState = 1;
    this.onopen?.({});
    this.frame({
      type: "connection_established",
      payload: {
        session_id: "s1",
        connection_id: "c",
        resume_token: "1.tok",
        epoch: 1,
        resumed: false,
        replayed: 0,
        heartbeat_interval_ms: 15000,
        ...payload,
      },
    });
  }

  frame(frame: Frame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** Any text frame (the AG-UI dialect's event frames have no `type`). */
  raw(value: unknown): void {
    this.onmessage?.({ data: JSON.stringify(value) });
  }

  /** The server (or the network) ends the connection. */
  drop(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
}

/** Timers that run only when told. */
export class FakeTimers implements Timers {
  time = 0;
  private pending = new Map<number, { at: number; fn: () => void }>();
  private next = 1;

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { at: this.time + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  now(): number {
    return this.time;
  }

  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      const due = [...this.pending.entries()]
        .filter(([, t]) => t.at <= until)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
    }
    this.time = until;
  }
}

/** Lets promises (the URL, run id digests) settle. */
export const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A client of user `alice` on a fake socket and fake timers (the sockets of
 * earlier tests forgotten), with `options` over the defaults. */
export function fakeClient(options: Partial<ClientOptions> = {}): { c: WscClient; timers: FakeTimers } {
  FakeSocket.all = [];
  const timers = new FakeTimers();
  const c = new WscClient({
    url: "ws://gw/ws",
    userId: "alice",
    WebSocket: FakeSocket,
    timers,
    random: () => 0.5,
    ...options,
  });
  return { c, timers };
}
