// The official AG-UI client against the gateway: `@ag-ui/client` 1.0's
// `HttpAgent` pointed at `POST /ag-ui`, unchanged but for its URL and a
// user header. Runs one run and prints the event types it saw (after its
// own verification) and the messages it ended with, as JSON.
// Usage: node conformance/http-agent.mjs URL USER RUN_ID
import { HttpAgent } from "@ag-ui/client";

const [url, user, runId] = process.argv.slice(2);
const agent = new HttpAgent({ url, headers: { "X-Wsc-User-Id": user } });
agent.messages = [{ id: "question", role: "user", content: "hello gateway" }];
const events = [];
await agent.runAgent(
  { runId },
  {
    onEvent({ event }) {
      events.push(event.type);
    },
  },
);
const messages = agent.messages.map((m) => ({ role: m.role, content: m.content ?? null }));
process.stdout.write(JSON.stringify({ events, messages }));
