// The client's failure paths against a real gateway (or nothing at all):
// each mode prints one JSON line saying how each run ended and what the
// client reported. Run by crates/server/tests/typescript.rs, each mode in
// a process of its own (an unhandled rejection would end it non-zero).
//
//   node dist/integration/failures.js MODE URL
//
// MODE: `refused` (a handshake the gateway refuses), `nothing` (nothing
// listens), `invalid` (URL is not a ws:// URL), `cap` (five slow runs of
// one user: the fifth over the cap), `queued` (the same with
// queueWhenCapped: the fifth waits, and a sixth is cancelled while it
// waits), `close` (a run cancelled before the socket opens, then close()
// with two runs in flight), `restart` (a slow run, then the gateway is restarted without
// its sessions: reads "restarted" on stdin before a second run).

import WebSocket from "ws";

import { type RunHandle, type SocketConstructor, WscClient, WscError } from "../src/index.js";

const [mode, url] = process.argv.slice(2);
let unhandled = 0;
process.on("unhandledRejection", () => {
  unhandled += 1;
});

const Socket = WebSocket as unknown as SocketConstructor;

/** How a run ended: "done:<last frame type>" or the error's code. */
async function outcome(run: RunHandle): Promise<string> {
  let last = "";
  try {
    for await (const frame of run) last = frame.type;
    return `done:${last}`;
  } catch (e) {
    return e instanceof WscError ? e.code : `untyped:${String(e)}`;
  }
}

/** Every message the client produced, to check none leaks the query. */
const messages: string[] = [];

async function main(): Promise<Record<string, unknown>> {
  switch (mode) {
    case "invalid": {
      try {
        new WscClient({ url: url ?? "", userId: "u", WebSocket: Socket });
        return { threw: false };
      } catch (e) {
        if (e instanceof WscError) messages.push(e.message);
        return { threw: true, code: e instanceof WscError ? e.code : String(e) };
      }
    }
    case "refused":
    case "nothing": {
      const started = Date.now();
      const client = new WscClient({
        url: url ?? "",
        token: "s3cret-token",
        WebSocket: Socket,
        backoff: { initialMs: 20, maxMs: 200 },
        giveUpAfterMs: 3_000,
      });
      const failed: string[] = [];
      client.on("failed", (e) => {
        failed.push(e.code);
        messages.push(e.message);
      });
      const run = client.startAgent({ input: "x" });
      const ended = await outcome(run);
      if (run.error) messages.push(run.error.message);
      return { run: ended, failed, state: client.state, ms: Date.now() - started };
    }
    case "cap":
    case "queued": {
      const queued = mode === "queued";
      const client = new WscClient({ url: url ?? "", userId: `cap-${mode}`, WebSocket: Socket, queueWhenCapped: queued });
      let starts = 0;
      const socketSend = WebSocket.prototype.send;
      WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]) {
        if (typeof data === "string" && data.includes('"start_agent"')) starts += 1;
        return (socketSend as (...a: unknown[]) => void).call(this, data, ...rest);
      } as typeof WebSocket.prototype.send;
      const runs = [0, 1, 2, 3, 4].map((i) => client.startAgent({ input: `r${i}`, tools: ["a"], stepDelayMs: i < 4 ? 400 : 0 }));
      let cancelled: Promise<string> | undefined;
      if (queued) {
        // A sixth, cancelled while it waits behind the cap: it never starts.
        const sixth = client.startAgent({ input: "r5", tools: ["a"] });
        cancelled = outcome(sixth);
        setTimeout(() => sixth.cancel(), 300);
      }
      const started = Date.now();
      const ended = await Promise.all(runs.map(outcome));
      const limit = runs[4]?.error?.limit;
      const result = { runs: ended, limit, cancelled: cancelled ? await cancelled : undefined, starts, ms: Date.now() - started };
      client.close();
      return result;
    }
    case "close": {
      const client = new WscClient({ url: url ?? "", userId: "closer", WebSocket: Socket });
      const inFlight = new Promise<void>((resolve) => {
        client.on("frame", (frame) => {
          if (frame.type === "agent_started") resolve();
        });
      });
      // Cancelled before the socket opens: never sent.
      const early = client.startAgent({ input: "never" });
      early.cancel();
      const runs = [0, 1].map(() => outcome(client.startAgent({ input: "slow", tools: ["a", "b"], stepDelayMs: 500 })));
      await inFlight;
      client.close();
      return { runs: await Promise.all(runs), early: await outcome(early), state: client.state };
    }
    case "restart": {
      const client = new WscClient({ url: url ?? "", userId: "phoenix", WebSocket: Socket, backoff: { initialMs: 20, maxMs: 200 } });
      const refused: string[] = [];
      client.on("resumeRefused", ({ reason }) => refused.push(reason));
      const inFlight = new Promise<void>((resolve) => {
        const off = client.on("frame", (frame) => {
          if (frame.type === "agent_started") {
            off();
            resolve();
          }
        });
      });
      const first = client.startAgent({ input: "slow", tools: ["a", "b", "c", "d"], stepDelayMs: 500 });
      const firstEnded = outcome(first);
      await inFlight;
      // The run is in flight: the test restarts the gateway now.
      console.log("in-flight");
      const ended = await firstEnded;
      const second = await outcome(client.startAgent({ input: "after", tools: ["a"] }));
      client.close();
      return { first: ended, second, refused };
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

const result = await main();
await new Promise((resolve) => setTimeout(resolve, 50));
const leaked = messages.some((m) => m.includes("s3cret") || m.includes("token="));
console.log(JSON.stringify({ ...result, unhandled, leaked }));
