// Unit tests of the client against a fake socket and fake timers: dedupe by
// seq, resume after a cut, a gap, a refused resume, starts sent again with
// the same message id, rate limits honoured, backoff bounds, the state
// machine. No network, no real waiting.

import { test } from "node:test";
import assert from "node:assert/strict";

import { FakeSocket, fakeClient, settle } from "./fakes.js";
import {
  type Frame,
  backoffCeiling,
  backoffDelay,
  runIdFor,
} from "../src/index.js";

const client = fakeClient;

function event(type: string, runId: string, seq: number): Frame {
  return { type, payload: { run_id: runId }, seq, message_id: `${runId}-${seq}` };
}

test("every frame once, in order, across a cut and a resume", async () => {
  const { c, timers } = client();
  const got: number[] = [];
  c.on("frame", (f) => {
    if (f.seq !== undefined) got.push(f.seq);
  });
  await settle();
  const s1 = FakeSocket.last();
  assert.equal(s1.url.searchParams.get("user_id"), "alice");
  assert.equal(s1.url.searchParams.get("session_id"), null);
  s1.hello();
  assert.equal(c.state, "open");
  s1.frame(event("agent_started", "r", 1));
  s1.frame(event("agent_thinking", "r", 2));
  s1.frame(event("agent_thinking", "r", 2)); // a copy
  s1.drop();
  assert.equal(c.state, "reconnecting");
  timers.advance(1000);
  await settle();
  const s2 = FakeSocket.last();
  assert.notEqual(s2, s1);
  assert.equal(s2.url.searchParams.get("session_id"), "s1");
  assert.equal(s2.url.searchParams.get("resume_token"), "1.tok");
  assert.equal(s2.url.searchParams.get("last_seq"), "2");
  s2.hello({ resumed: true, replayed: 2 });
  // The replay overlaps what was delivered: only 3 and 4 are new.
  for (const seq of [2, 3, 4]) s2.frame(event("tool_executing", "r", seq));
  assert.deepEqual(got, [1, 2, 3, 4]);
  assert.equal(c.lastSeq, 4);
  c.close();
  assert.equal(c.state, "closed");
});

test("a gap reconnects to resume from the last frame delivered", async () => {
  const { c, timers } = client();
  const got: number[] = [];
  c.on("frame", (f) => f.seq !== undefined && got.push(f.seq));
  await settle();
  const s1 = FakeSocket.last();
  s1.hello();
  s1.frame(event("agent_started", "r", 1));
  s1.frame(event("agent_thinking", "r", 3)); // 2 is missing
  assert.deepEqual(got, [1]);
  assert.ok(s1.closed, "the gapped connection is dropped");
  timers.advance(1000);
  await settle();
  assert.equal(FakeSocket.last().url.searchParams.get("last_seq"), "1");
  c.close();
});

test("a refused resume is reported and the sequence starts again", async () => {
  const { c, timers } = client();
  const refused: string[] = [];
  c.on("resumeRefused", (r) => refused.push(r.reason));
  await settle();
  FakeSocket.last().hello();
  FakeSocket.last().frame(event("agent_started", "r", 1));
  FakeSocket.last().drop();
  timers.advance(1000);
  await settle();
  FakeSocket.last().hello({ session_id: "s2", resumed: false, reason: "expired" });
  assert.deepEqual(refused, ["expired"]);
  assert.equal(c.sessionId, "s2");
  assert.equal(c.lastSeq, 0);
  c.close();
});

test("a run yields its frames to its end; a start lost in a cut is sent again with the same id", async () => {
  const { c, timers } = client();
  await settle();
  FakeSocket.last().hello();
  const run = c.startAgent({ input: "go", agentName: "triage" });
  await c.whenSent();
  const first = FakeSocket.last().sent.find((f) => f.type === "start_agent");
  assert.ok(first?.message_id);
  assert.deepEqual(first.payload, { input: "go", agent_name: "triage" });
  // Cut before any of its frames arrived: sent again on the next connection.
  FakeSocket.last().drop();
  timers.advance(1000);
  await settle();
  FakeSocket.last().hello({ resumed: true });
  await c.whenSent();
  const again = FakeSocket.last().sent.find((f) => f.type === "start_agent");
  assert.equal(again?.message_id, first.message_id, "same idempotency key");
  const runId = await runIdFor("s1", first.message_id);
  for (const [i, type] of ["agent_started", "agent_thinking", "agent_completed"].entries()) {
    FakeSocket.last().frame(event(type, runId, i + 1));
  }
  const types: string[] = [];
  for await (const f of run) types.push(f.type);
  assert.deepEqual(types, ["agent_started", "agent_thinking", "agent_completed"]);
  c.close();
});

test("cancel sends stop_agent for the run", async () => {
  const { c } = client();
  await settle();
  FakeSocket.last().hello();
  const run = c.startAgent();
  await c.whenSent();
  const start = FakeSocket.last().sent.find((f) => f.type === "start_agent");
  const runId = await runIdFor("s1", start?.message_id ?? "");
  FakeSocket.last().frame(event("agent_started", runId, 1));
  run.cancel();
  await c.whenSent();
  const stop = FakeSocket.last().sent.find((f) => f.type === "stop_agent");
  assert.deepEqual(stop?.payload, { run_id: runId });
  c.close();
});

test("a rate-limited start waits retry_after_ms, then goes again", async () => {
  const { c, timers } = client();
  await settle();
  FakeSocket.last().hello();
  c.startAgent();
  await c.whenSent();
  const socket = FakeSocket.last();
  const start = socket.sent.find((f) => f.type === "start_agent");
  socket.frame({
    type: "error",
    payload: { code: "rate_limited", message: "4 runs", retry_after_ms: 2000, ref_message_id: start?.message_id },
  });
  const starts = () => socket.sent.filter((f) => f.type === "start_agent").length;
  timers.advance(1999);
  await c.whenSent();
  assert.equal(starts(), 1);
  timers.advance(1);
  await c.whenSent();
  assert.equal(starts(), 2);
  c.close();
});

test("silence for more than two heartbeats ends the connection; pings keep it alive", async () => {
  const { c, timers } = client();
  await settle();
  const s = FakeSocket.last();
  s.hello({ heartbeat_interval_ms: 1000 });
  timers.advance(1000);
  assert.equal(s.sent.filter((f) => f.type === "ping").length, 1);
  s.frame({ type: "pong", payload: {} });
  timers.advance(2000);
  assert.equal(c.state, "open", "two intervals since the last frame: still alive");
  timers.advance(1000);
  assert.equal(c.state, "reconnecting", "three: dropped and resuming");
  c.close();
});

test("acks every 64 frames", async () => {
  const { c } = client();
  await settle();
  const s = FakeSocket.last();
  s.hello();
  for (let seq = 1; seq <= 130; seq++) s.frame(event("agent_thinking", "r", seq));
  const acks = s.sent.filter((f) => f.type === "ack").map((f) => f.payload.seq);
  assert.deepEqual(acks, [64, 128]);
  c.close();
});

test("full-jitter backoff stays under a capped, growing ceiling", () => {
  const options = { initialMs: 100, maxMs: 5000, factor: 2 };
  assert.deepEqual(
    [0, 1, 2, 3, 6, 40].map((a) => backoffCeiling(a, options)),
    [100, 200, 400, 800, 5000, 5000],
  );
  for (let attempt = 0; attempt < 50; attempt++) {
    for (const r of [0, 0.3, 0.999999]) {
      const d = backoffDelay(attempt, options, () => r);
      assert.ok(d >= 0 && d <= backoffCeiling(attempt, options), `${attempt} ${r} ${d}`);
    }
  }
});

test("the run id is the gateway's: run- and 24 hex digits of SHA-256", async () => {
  const id = await runIdFor("session", "start-1");
  assert.match(id, /^run-[0-9a-f]{24}$/);
  assert.equal(id, await runIdFor("session", "start-1"));
  assert.notEqual(id, await runIdFor("session", "start-2"));
});

test("frames that arrive before the run id is worked out reach the run, in order", { timeout: 5000 }, async () => {
  const { createHash } = await import("node:crypto");
  const { c } = client();
  await settle();
  const s = FakeSocket.last();
  s.hello();
  const run = c.startAgent();
  // The start went out at once; its frames come back before the client's
  // own digest of the run id has finished.
  const start = s.sent.find((f) => f.type === "start_agent");
  assert.ok(start?.message_id, "sent without waiting");
  const id = `run-${createHash("sha256").update(`s1\u0000${start.message_id}`).digest("hex").slice(0, 24)}`;
  s.frame(event("agent_started", id, 1));
  s.frame(event("agent_thinking", id, 2));
  s.frame(event("agent_completed", id, 3));
  const types: string[] = [];
  for await (const f of run) types.push(f.type);
  assert.deepEqual(types, ["agent_started", "agent_thinking", "agent_completed"]);
  c.close();
});
