// Unit tests of WscAgent (an @ag-ui/client AbstractAgent) against a fake
// socket and fake timers: each run's events once through AG-UI's own
// pipeline, a start lost with its connection sent again, a resume (refused
// or not) joining the run again after the last event received, refusals and
// close() ending runs with RUN_ERROR (never an unhandled rejection),
// abortRun() sending stop_agent.

import { test } from "node:test";
import assert from "node:assert/strict";

import type { BaseEvent } from "@ag-ui/client";

import { FakeSocket, FakeTimers, settle } from "./fakes.js";
import { WscAgent } from "../src/ag-ui.js";

let unhandled = 0;
process.on("unhandledRejection", () => {
  unhandled += 1;
});

function agent() {
  FakeSocket.all = [];
  const timers = new FakeTimers();
  const a = new WscAgent({
    url: "ws://gw/ws",
    userId: "alice",
    threadId: "t1",
    WebSocket: FakeSocket,
    client: { timers, random: () => 0.5 },
  });
  return { a, timers };
}

/** The event frames of run `runId`, numbered from `seq`. */
function events(runId: string, types: string[], seq: number): unknown[] {
  return types.map((type, i) => {
    const event: Record<string, unknown> = { type };
    if (type === "RUN_STARTED" || type === "RUN_FINISHED") Object.assign(event, { threadId: "t1", runId });
    if (type.startsWith("TEXT_MESSAGE")) event.messageId = "m";
    if (type === "TEXT_MESSAGE_START") event.role = "assistant";
    if (type === "TEXT_MESSAGE_CONTENT") event.delta = `w${i} `;
    return { run_id: runId, event, seq: seq + i };
  });
}

const RUN = ["RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_FINISHED"];

/** Runs `runAgent` and collects the event types AG-UI's pipeline hands its subscriber. */
function run(a: WscAgent, runId: string) {
  const seen: string[] = [];
  const done = a.runAgent({ runId }, { onEvent: ({ event }: { event: BaseEvent }) => void seen.push(event.type) });
  return { seen, done };
}

test("a run's events once, in order, through a cut: a start that had no event yet goes again", async () => {
  const { a, timers } = agent();
  await settle();
  const s1 = FakeSocket.last();
  s1.hello();
  const { seen, done } = run(a, "r1");
  await settle();
  const start = s1.sent.find((f) => f.type === "run_agent");
  assert.ok(start, "run_agent sent");
  assert.equal((start.payload.input as { runId: string }).runId, "r1");
  assert.equal(s1.url.searchParams.get("protocol"), "ag-ui");
  // Cut before any event: the start may have been lost.
  s1.drop();
  timers.advance(1_000);
  await settle();
  const s2 = FakeSocket.last();
  assert.notEqual(s2, s1);
  s2.hello({ resumed: true });
  assert.ok(s2.sent.some((f) => f.type === "run_agent"), "sent again on resume");
  const frames = events("r1", RUN, 1);
  for (const f of frames.slice(0, 3)) s2.raw(f);
  // A copy of one already delivered (replay overlapping live) is dropped.
  s2.raw(frames[2]);
  for (const f of frames.slice(3)) s2.raw(f);
  await done;
  assert.deepEqual(seen, RUN);
  assert.equal(unhandled, 0);
  a.close();
});

test("a refused resume joins the run again after the last event received", async () => {
  const { a, timers } = agent();
  await settle();
  const s1 = FakeSocket.last();
  s1.hello();
  const { seen, done } = run(a, "r2");
  await settle();
  const frames = events("r2", RUN, 1);
  s1.raw(frames[0]);
  s1.raw(frames[1]);
  s1.drop();
  timers.advance(1_000);
  await settle();
  const s2 = FakeSocket.last();
  s2.hello({ session_id: "s2", resumed: false, reason: "expired" });
  const join = s2.sent.find((f) => f.type === "join_run");
  assert.deepEqual(join?.payload, { run_id: "r2", after: 2 });
  // The new session numbers from 1: events 3 … of the run.
  for (const f of events("r2", RUN.slice(2), 1)) s2.raw(f);
  await done;
  assert.deepEqual(seen, RUN);
  a.close();
});

test("an accepted resume asks again for runs that had events, after the last received", async () => {
  // The gateway that copied the run into the session may be gone (the
  // session resumed on another): the run is asked for again; the gateway
  // skips what the session holds.
  const { a, timers } = agent();
  await settle();
  const s1 = FakeSocket.last();
  s1.hello();
  const { seen, done } = run(a, "r5");
  await settle();
  const frames = events("r5", RUN, 1);
  s1.raw(frames[0]);
  s1.raw(frames[1]);
  s1.drop();
  timers.advance(1_000);
  await settle();
  const s2 = FakeSocket.last();
  s2.hello({ resumed: true });
  const join = s2.sent.find((f) => f.type === "join_run");
  assert.deepEqual(join?.payload, { run_id: "r5", after: 2 });
  for (const f of frames.slice(2)) s2.raw(f);
  await done;
  assert.deepEqual(seen, RUN);
  a.close();
});

test("a refusal and close() end runs with RUN_ERROR, never an unhandled rejection", async () => {
  const { a } = agent();
  await settle();
  const s = FakeSocket.last();
  s.hello();
  const errors: string[] = [];
  const refused = a.runAgent({ runId: "r3" }, { onRunErrorEvent: ({ event }) => void errors.push(String(event.code)) });
  await settle();
  const start = s.sent.find((f) => f.type === "run_agent");
  s.frame({ type: "error", payload: { code: "rate_limited", message: "at most 4 runs", ref_message_id: start?.message_id } });
  await refused.catch(() => undefined);
  assert.deepEqual(errors, ["rate_limited"]);

  const closed = a.connectAgent({ runId: "r4" }, { onRunErrorEvent: ({ event }) => void errors.push(String(event.code)) });
  await settle();
  assert.ok(s.sent.some((f) => f.type === "join_run" && f.payload.run_id === "r4"), "connect() joins");
  a.close();
  await closed.catch(() => undefined);
  assert.deepEqual(errors, ["rate_limited", "closed"]);
  await settle();
  assert.equal(unhandled, 0);
});

test("abortRun() stops the runs in flight", async () => {
  const { a } = agent();
  await settle();
  const s = FakeSocket.last();
  s.hello();
  const { done } = run(a, "r5");
  await settle();
  s.raw(events("r5", ["RUN_STARTED"], 1)[0]);
  a.abortRun();
  assert.ok(s.sent.some((f) => f.type === "stop_agent" && f.payload.run_id === "r5"));
  // The gateway's answer: what was open closed, the cancelled end.
  s.raw({ run_id: "r5", event: { type: "RUN_FINISHED", threadId: "t1", runId: "r5", outcome: { type: "cancelled" } }, seq: 2 });
  await done.catch(() => undefined);
  a.close();
});
