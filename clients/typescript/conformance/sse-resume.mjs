// A Last-Event-ID client in Node (fetch, an SSE parser of its own, no
// library): USERS users each run RUNS runs one after another against
// BASE (the gateway's HTTP address, a cutting proxy in the test) with
// `POST /ag-ui`; whenever a stream is cut it resumes with
// `GET /ag-ui/runs/{runId}/events` and `Last-Event-ID: <the last id it
// got>` until the run's terminal event. Prints one JSON line: each run's
// event texts as received (`data:`), the reconnects, and every id that was
// not the one after the last (a gap or a duplicate).
// Usage: node conformance/sse-resume.mjs BASE USERS RUNS STEP_DELAY_MS

const [base, users = "5", runsEach = "4", delay = "5"] = process.argv.slice(2);

/** Reads one response's SSE messages into `run`; true once the run ended. */
async function read(response, run) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("id: ")) id = Number(line.slice(4));
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (id === undefined) continue; // a comment (keep-alive)
      if (id !== run.last + 1) run.badIds.push(id);
      run.last = id;
      const text = data.join("\n");
      run.events.push(text);
      const type = JSON.parse(text).type;
      if (type === "RUN_FINISHED" || type === "RUN_ERROR") return true;
    }
  }
  return false;
}

async function oneRun(user, runId) {
  const headers = { "X-Wsc-User-Id": user, "Content-Type": "application/json", Accept: "text/event-stream" };
  const input = {
    threadId: `${user}-thread`,
    runId,
    messages: [{ id: `${runId}-q`, role: "user", content: `question of ${runId}` }],
    tools: [],
    context: [],
    state: {},
    forwardedProps: { step_delay_ms: Number(delay) },
  };
  const run = { user, runId, events: [], last: 0, badIds: [], reconnects: 0, causes: [] };
  let started = false;
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      const response = started
        ? await fetch(`${base}/ag-ui/runs/${runId}/events`, { headers: { ...headers, "Last-Event-ID": String(run.last) } })
        : await fetch(`${base}/ag-ui`, { method: "POST", headers, body: JSON.stringify(input) });
      if (response.status === 204) return run; // it had the end already
      if (response.status === 404 && started && run.last === 0) {
        started = false; // the start died before the gateway read it: again
        continue;
      }
      if (response.status !== 200) throw new Error(`status ${response.status}`);
      started = true;
      if (await read(response, run)) return run;
    } catch (e) {
      // A cut: resume after the last event received.
      if (run.causes.length < 3) run.causes.push(String(e?.cause?.code ?? e?.message ?? e));
    }
    run.reconnects += 1;
    await new Promise((r) => setTimeout(r, 20));
  }
  run.error = "gave up after 200 attempts";
  return run;
}

async function oneUser(u) {
  const user = `sse-${u}`;
  const out = [];
  for (let r = 0; r < Number(runsEach); r++) out.push(await oneRun(user, `${user}-run-${r}`));
  return out;
}

const runs = (await Promise.all(Array.from({ length: Number(users) }, (_, u) => oneUser(u)))).flat();
process.stdout.write(`${JSON.stringify({ runs })}\n`);
