// `WscAgent` (an `@ag-ui/client` `AbstractAgent`) against the real gateway:
// CLIENTS users, each with one agent running RUNS runs one after another
// through URL (a cutting proxy in the test) and a second agent of the same
// user that joins every other run (`connectAgent`) once its first event
// has arrived. Prints one JSON line: for each run, the events each reader
// got (after AG-UI's own verification), and whether anything was ever an
// unhandled rejection. Run by crates/server/tests/typescript.rs.

import WebSocket from "ws";
import type { BaseEvent } from "@ag-ui/client";

import type { SocketConstructor } from "../src/index.js";
import { WscAgent } from "../src/ag-ui.js";

const url = process.argv[2];
const clients = Number(process.argv[3] ?? 10);
const runsEach = Number(process.argv[4] ?? 4);
const stepDelayMs = Number(process.argv[5] ?? 5);
if (!url) {
  console.error("usage: node dist/integration/agent.js WS_URL [CLIENTS] [RUNS] [STEP_DELAY_MS]");
  process.exit(2);
}

let unhandled = 0;
process.on("unhandledRejection", (e) => {
  unhandled += 1;
  console.error("unhandled rejection:", e);
});

interface RunOutcome {
  user: string;
  runId: string;
  got: BaseEvent[];
  joined: BaseEvent[] | null;
  error: string | null;
}

function agent(user: string): WscAgent {
  return new WscAgent({
    url,
    userId: user,
    WebSocket: WebSocket as unknown as SocketConstructor,
    client: { backoff: { initialMs: 20, maxMs: 200 } },
  });
}

async function oneClient(i: number): Promise<RunOutcome[]> {
  const user = `agent-${i}`;
  const runner = agent(user);
  const joiner = agent(user);
  const out: RunOutcome[] = [];
  for (let r = 0; r < runsEach; r++) {
    const runId = `${user}-run-${r}`;
    const outcome: RunOutcome = { user, runId, got: [], joined: null, error: null };
    let joining: Promise<unknown> | undefined;
    pending.set(runId, outcome);
    runner.messages = [{ id: `q-${r}`, role: "user", content: `question ${r}` }];
    try {
      await runner.runAgent(
        { runId, forwardedProps: { step_delay_ms: stepDelayMs } },
        {
          onEvent({ event }) {
            outcome.got.push(event);
            if (r % 2 === 1 && joining === undefined) {
              const joined: BaseEvent[] = [];
              outcome.joined = joined;
              joining = joiner.connectAgent({ runId }, {
                onEvent({ event: e }) {
                  joined.push(e);
                },
              });
            }
          },
        },
      );
      await joining;
    } catch (e) {
      outcome.error = String(e);
    }
    pending.delete(runId);
    out.push(outcome);
  }
  runner.close();
  joiner.close();
  return out;
}

// Never a silent hang: a run that has not ended in time is reported.
const pending = new Map<string, RunOutcome>();
const watchdog = setTimeout(() => {
  const stuck = [...pending.values()].map((r) => ({ runId: r.runId, got: r.got.map((e) => e.type), joined: r.joined?.map((e) => e.type) ?? null }));
  console.error(`runs still pending after 90 s: ${JSON.stringify(stuck)}`);
  process.exit(1);
}, 90_000);

const runs = (await Promise.all(Array.from({ length: clients }, (_, i) => oneClient(i)))).flat();
clearTimeout(watchdog);
process.stdout.write(`${JSON.stringify({ runs, unhandled })}\n`);
