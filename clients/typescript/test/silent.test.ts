// Unit tests of the client's failure paths against a fake socket and fake
// timers: every run ends exactly once (its terminal frame or a typed
// WscError), bad URLs throw at once without their query, refusals that
// retrying cannot fix and a long disconnection fail the client, a capped
// start fails (or waits at the server's pace when asked to), and cancel
// works before the socket opens and while a run waits.

import { test } from "node:test";
import assert from "node:assert/strict";

import { FakeSocket, fakeClient, settle } from "./fakes.js";
import { type RunHandle, WscClient, WscError, runIdFor } from "../src/index.js";

let unhandled = 0;
process.on("unhandledRejection", () => {
  unhandled += 1;
});

const client = fakeClient;

/** How a run ended for a `for await` consumer: "done" or the error's code. */
async function outcome(run: RunHandle): Promise<string> {
  try {
    for await (const _ of run) {
      // frames
    }
    return "done";
  } catch (e) {
    assert.ok(e instanceof WscError, `a WscError: ${String(e)}`);
    return e.code;
  }
}

test("a bad URL throws a typed error at once, never its query", () => {
  for (const url of ["not a url?token=s3cret", "localhost:8765/ws?token=s3cret", "http://gw/ws?token=s3cret", ""]) {
    assert.throws(
      () => new WscClient({ url, userId: "alice", WebSocket: FakeSocket }),
      (e: unknown) => e instanceof WscError && e.code === "invalid_url" && !e.message.includes("s3cret"),
      url,
    );
  }
});

test("close() ends a run a consumer is waiting on with `closed`", async () => {
  const { c } = client();
  await settle();
  FakeSocket.last().hello();
  const run = c.startAgent();
  const ended = outcome(run);
  await settle();
  c.close();
  assert.equal(await ended, "closed");
  assert.equal(run.error?.code, "closed");
});

/** A connected client (session `s1`) with one run sent, and the run's id. */
async function sentRun() {
  const { c, timers } = client();
  await settle();
  const s1 = FakeSocket.last();
  s1.hello();
  const run = c.startAgent();
  await c.whenSent();
  const start = s1.sent.find((f) => f.type === "start_agent");
  assert.equal(start?.message_id, run.messageId);
  const runId = await runIdFor("s1", run.messageId);
  return { c, timers, s1, run, runId };
}

test("a resume refused while a run is in flight ends it with `session_lost`", async () => {
  const { c, timers, s1, run, runId } = await sentRun();
  const ended = outcome(run);
  s1.frame({ type: "agent_started", payload: { run_id: runId }, seq: 1 });
  s1.frame({ type: "agent_thinking", payload: { run_id: runId }, seq: 2 });
  s1.drop();
  timers.advance(1_000);
  await settle();
  FakeSocket.last().hello({ session_id: "s2", resumed: false, reason: "unknown_session" });
  assert.equal(await ended, "session_lost");
  // The next run goes on in the new session.
  const next = c.startAgent();
  await c.whenSent();
  assert.ok(FakeSocket.last().sent.some((f) => f.type === "start_agent" && f.message_id === next.messageId));
  c.close();
});

test("a handshake refused with 401, 403 or 404 fails the client at once", async () => {
  for (const [status, code] of [
    ["401", "unauthorized"],
    ["403", "forbidden"],
    ["404", "not_found"],
  ]) {
    const { c, timers } = client();
    const failed: string[] = [];
    c.on("failed", (e) => failed.push(e.code));
    const run = c.startAgent();
    const ended = outcome(run);
    await settle();
    const s = FakeSocket.last();
    s.onerror?.({ message: `Unexpected server response: ${status}` });
    s.drop();
    assert.equal(c.state, "failed");
    assert.deepEqual(failed, [code]);
    assert.equal(await ended, code);
    timers.advance(60_000);
    await settle();
    assert.equal(FakeSocket.all.length, 1, "no retry");
  }
});

test("opens that never connect give up after maxFailedOpens; silence after giveUpAfterMs", async () => {
  {
    const { c, timers } = client({ maxFailedOpens: 3, giveUpAfterMs: 0 });
    const run = c.startAgent();
    const ended = outcome(run);
    for (let i = 0; i < 3; i++) {
      await settle();
      FakeSocket.last().drop();
      timers.advance(60_000);
    }
    assert.equal(c.state, "failed");
    assert.equal(await ended, "gave_up");
  }
  {
    const { c, timers } = client({ maxFailedOpens: 0, giveUpAfterMs: 10_000 });
    const failed: string[] = [];
    c.on("failed", (e) => failed.push(e.code));
    await settle();
    FakeSocket.last().hello();
    const run = c.startAgent();
    const ended = outcome(run);
    await c.whenSent();
    FakeSocket.last().drop();
    // Nothing answers any more.
    for (let t = 0; t < 9; t++) {
      timers.advance(1_000);
      await settle();
      FakeSocket.last().drop();
    }
    assert.equal(c.state, "reconnecting", "9 s: still trying");
    timers.advance(1_000);
    await settle();
    assert.equal(c.state, "failed");
    assert.deepEqual(failed, ["gave_up"]);
    assert.equal(await ended, "gave_up");
  }
});

test("a start over the run cap fails by default; queued, it waits the server's hint", async () => {
  const capped = (socket: FakeSocket, messageId: string | undefined) =>
    socket.frame({
      type: "error",
      payload: {
        code: "rate_limited",
        message: "at most 4 runs in flight per user",
        limit: "runs_in_flight",
        retry_after_ms: 1_000,
        ref_message_id: messageId,
      },
    });
  {
    const { c } = client();
    await settle();
    const s = FakeSocket.last();
    s.hello();
    const run = c.startAgent();
    const ended = outcome(run);
    await c.whenSent();
    capped(s, run.messageId);
    assert.equal(await ended, "rate_limited");
    assert.equal(run.error?.limit, "runs_in_flight");
    c.close();
  }
  {
    const { c, timers } = client({ queueWhenCapped: true });
    await settle();
    const s = FakeSocket.last();
    s.hello();
    const run = c.startAgent();
    await c.whenSent();
    const starts = () => s.sent.filter((f) => f.type === "start_agent").length;
    for (let refusal = 1; refusal <= 3; refusal++) {
      capped(s, run.messageId);
      timers.advance(999);
      await c.whenSent();
      assert.equal(starts(), refusal, "never sooner than the hint");
      timers.advance(2_000);
      await c.whenSent();
      assert.equal(starts(), refusal + 1);
    }
    // Cancelled while it waits: never sent again, ends `cancelled`.
    capped(s, run.messageId);
    const ended = outcome(run);
    run.cancel();
    timers.advance(5_000);
    await c.whenSent();
    assert.equal(starts(), 4);
    assert.equal(await ended, "cancelled");
    c.close();
  }
});

test("cancel() before the socket opens: the run is never sent", async () => {
  const { c } = client();
  const run = c.startAgent();
  const ended = outcome(run);
  run.cancel();
  await settle();
  const s = FakeSocket.last();
  s.hello();
  await c.whenSent();
  assert.equal(s.sent.filter((f) => f.type === "start_agent").length, 0);
  assert.equal(await ended, "cancelled");
  c.close();
});

test("cancel() of a started run while reconnecting is sent once connected", async () => {
  const { c, timers, s1, run, runId } = await sentRun();
  s1.frame({ type: "agent_started", payload: { run_id: runId }, seq: 1 });
  s1.drop();
  run.cancel();
  timers.advance(1_000);
  await settle();
  const s2 = FakeSocket.last();
  s2.hello({ resumed: true });
  await c.whenSent();
  assert.deepEqual(s2.sent.find((f) => f.type === "stop_agent")?.payload, { run_id: runId });
  c.close();
  await settle();
  assert.equal(unhandled, 0);
});
