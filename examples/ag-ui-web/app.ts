// An AG-UI app on `@ag-ui/client`, its agent a `WscAgent`: the run's
// events come through the wsc gateway's AG-UI dialect, so a cut connection
// resumes without losing or repeating an event, and a page reload joins
// the run again (`connectAgent`) from its first event. It shows the
// answer's text, the agent's reasoning and its tool calls as AG-UI's own
// pipeline builds them (`agent.messages`).
//
// Query parameters: `gw` (the gateway's WebSocket URL, default
// ws://HOST:8765/ws), `user` (default `web-user`), `demo` (run one
// question by itself, cut the connection twice and reload the page
// mid-run: what the browser test does).

import type { AgentSubscriber, Message } from "@ag-ui/client";
import { WscAgent } from "@wsc/client/ag-ui";

const params = new URLSearchParams(location.search);
const gateway = params.get("gw") ?? `ws://${location.hostname}:8765/ws`;
const user = params.get("user") ?? "web-user";
const demo = params.has("demo");
const RUN_KEY = "wsc-example-run";

const $ = (id: string) => document.getElementById(id) as HTMLElement;
const agent = new WscAgent({ url: gateway, userId: user, agentName: "assistant" });

/** What the page did, for the browser test (and the curious). */
const state = {
  phase: sessionStorage.getItem(RUN_KEY) ? "rejoined" : "started",
  events: [] as string[],
  cuts: 0,
  finished: false,
  error: null as string | null,
};
(window as unknown as { __example: typeof state }).__example = state;

agent.client.on("state", (s) => ($("status").textContent = `${s} · ${state.events.length} events`));

function render(messages: Message[]): void {
  const root = $("messages");
  root.replaceChildren();
  for (const m of messages) {
    const add = (cls: string, text: string) => {
      const div = document.createElement("div");
      div.className = `message ${cls}`;
      div.textContent = text;
      root.append(div);
    };
    const content = typeof m.content === "string" ? m.content : "";
    if (m.role === "reasoning") add("reasoning", `thinking: ${content}`);
    else if (m.role === "tool") add("tool", `result: ${content}`);
    else if (m.role === "user") add("user", content);
    else if (m.role === "assistant") {
      for (const call of m.toolCalls ?? []) add("tool", `${call.function.name}(${call.function.arguments})`);
      if (content) add("assistant", content);
    }
  }
}

function subscriber(): AgentSubscriber {
  return {
    onEvent({ event }) {
      state.events.push(event.type);
      $("status").textContent = `${agent.client.state} · ${state.events.length} events`;
      if (!demo) return;
      // The demo: a cut at the 5th event of each page, a reload at the 9th.
      if (state.events.length === 5) {
        state.cuts += 1;
        agent.client.dropConnection();
      }
      if (state.phase === "started" && state.events.length === 9) location.reload();
    },
    onMessagesChanged({ messages }) {
      render(messages);
    },
    onRunFailed({ error }) {
      state.error = String(error);
    },
  };
}

async function follow(run: Promise<unknown>): Promise<void> {
  try {
    await run;
  } catch (e) {
    state.error = String(e);
  }
  if (state.phase !== "started" || !demo || state.events.length >= 9) {
    state.finished = true;
    sessionStorage.removeItem(RUN_KEY);
  }
}

function ask(question: string): void {
  const runId = `web-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  sessionStorage.setItem(RUN_KEY, runId);
  state.phase = "started";
  state.events = [];
  agent.addMessage({ id: `q-${runId}`, role: "user", content: question });
  void follow(agent.runAgent({ runId, forwardedProps: { step_delay_ms: demo ? 60 : 150 } }, subscriber()));
}

$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  ask(($("question") as HTMLInputElement).value);
});
$("stop").addEventListener("click", () => agent.abortRun());
$("cut").addEventListener("click", () => agent.client.dropConnection());

// A reload in the middle of a run joins it again from its first event.
const pending = sessionStorage.getItem(RUN_KEY);
if (pending) void follow(agent.connectAgent({ runId: pending }, subscriber()));
else if (demo) ask("find flights to Lisbon");
