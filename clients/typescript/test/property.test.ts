// A property test of the client over random schedules (seeded, 300 of
// them): starts, events, cuts and resumes, gateway restarts (a refused
// resume), cancels, cap refusals and a final close, driven through a fake
// socket with a fake gateway behind it. Whatever the schedule, every run
// ends exactly once — after its terminal frame, or with a typed WscError —
// and a run's frames arrive once each, in order.

import { test } from "node:test";
import assert from "node:assert/strict";

import { FakeSocket, FakeTimers, settle } from "./fakes.js";
import { type Frame, type RunHandle, WscClient, WscError, runIdFor } from "../src/index.js";

/** A small seeded generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CODES = new Set(["closed", "session_lost", "cancelled", "rate_limited"]);
const EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed"];

interface Watched {
  run: RunHandle;
  frames: Frame[];
  /** How often the consumer's loop ended (must be once). */
  endings: number;
  result?: string;
}

/** The fake gateway's view of a run it started. */
interface ServerRun {
  runId: string;
  next: number;
  ended: boolean;
}

async function schedule(seed: number): Promise<void> {
  const random = rng(seed);
  const pick = <T>(items: T[]): T | undefined => items[Math.floor(random() * items.length)];
  FakeSocket.all = [];
  const timers = new FakeTimers();
  const client = new WscClient({
    url: "ws://gw/ws",
    userId: "p",
    WebSocket: FakeSocket,
    timers,
    random,
    giveUpAfterMs: 0,
    maxFailedOpens: 0,
  });
  let session = 1;
  let seq = 0;
  /** Runs the gateway started in the current session, by message id. */
  let started = new Map<string, ServerRun>();
  const watched: Watched[] = [];
  let socket: FakeSocket | undefined;
  const connect = async (resumed: boolean) => {
    await settle();
    socket = FakeSocket.last();
    if (!resumed) {
      session += 1;
      seq = 0;
      started = new Map();
    }
    socket.hello({ session_id: `s${session}`, resumed, reason: resumed ? undefined : "unknown_session" });
    await client.whenSent();
  };
  /** The gateway reads what the client sent since last time. */
  let read = 0;
  const serve = async () => {
    if (!socket) return;
    const sent = socket.sent.slice(read);
    read = socket.sent.length;
    for (const frame of sent) {
      if (frame.type === "start_agent" && frame.message_id && !started.has(frame.message_id)) {
        if (random() < 0.15) {
          socket.frame({
            type: "error",
            payload: { code: "rate_limited", message: "cap", limit: "runs_in_flight", retry_after_ms: 1000, ref_message_id: frame.message_id },
          });
          continue;
        }
        started.set(frame.message_id, { runId: await runIdFor(`s${session}`, frame.message_id), next: 0, ended: false });
      }
      if (frame.type === "stop_agent") {
        const run = [...started.values()].find((r) => r.runId === frame.payload.run_id);
        if (run && !run.ended) {
          run.ended = true;
          seq += 1;
          socket.frame({ type: "agent_error", payload: { run_id: run.runId, code: "cancelled" }, seq });
        }
      }
    }
  };
  await connect(false);
  for (let step = 0; step < 40; step++) {
    const r = random();
    if (r < 0.25) {
      const run = client.startAgent({ input: `step ${step}` });
      const w: Watched = { run, frames: [], endings: 0 };
      watched.push(w);
      void (async () => {
        try {
          for await (const frame of run) w.frames.push(frame);
          w.result = "done";
        } catch (e) {
          w.result = e instanceof WscError ? e.code : `untyped ${String(e)}`;
        }
        w.endings += 1;
      })();
      await client.whenSent();
    } else if (r < 0.6) {
      const run = pick([...started.values()].filter((x) => !x.ended));
      if (run && socket) {
        const terminal = run.next >= EVENTS.length;
        seq += 1;
        socket.frame({ type: terminal ? "agent_completed" : (EVENTS[run.next] ?? "agent_thinking"), payload: { run_id: run.runId }, seq });
        run.next += 1;
        run.ended = terminal;
      }
    } else if (r < 0.72) {
      socket?.drop();
      timers.advance(30_000);
      await connect(true);
    } else if (r < 0.78) {
      socket?.drop();
      timers.advance(30_000);
      await connect(false);
    } else if (r < 0.9) {
      pick(watched)?.run.cancel();
      await client.whenSent();
    } else {
      timers.advance(2_000);
      await client.whenSent();
    }
    await serve();
    await settle();
  }
  client.close();
  await settle();
  await settle();
  for (const w of watched) {
    assert.equal(w.endings, 1, `seed ${seed}: a run ended ${w.endings} times`);
    const last = w.frames.at(-1);
    if (w.result === "done") {
      assert.ok(last && ["agent_completed", "agent_error"].includes(last.type), `seed ${seed}: done without its terminal frame`);
    } else {
      assert.ok(CODES.has(w.result ?? ""), `seed ${seed}: ended with ${w.result}`);
    }
    const seqs = w.frames.map((f) => f.seq ?? 0);
    for (let i = 1; i < seqs.length; i++) {
      assert.ok((seqs[i] ?? 0) > (seqs[i - 1] ?? 0), `seed ${seed}: out of order: ${seqs.join(",")}`);
    }
    const types = w.frames.map((f) => f.type);
    assert.equal(new Set(types).size, types.length, `seed ${seed}: a frame twice: ${types.join(",")}`);
  }
}

test("over random schedules every run ends exactly once, its frames once and in order", async () => {
  for (let seed = 1; seed <= 300; seed++) await schedule(seed);
});
