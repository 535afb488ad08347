// The official AG-UI verifier (`@ag-ui/client` 1.0's `verifyEvents`) on
// event sequences: reads a JSON array of sequences (each an array of AG-UI
// events) on stdin and prints, for each, the index of the first event the
// verifier refuses (or null when it accepts them all) with its message.
// With `--schemas`, each event must first parse with `@ag-ui/core`'s
// `EventSchemas` (the first that does not is the verdict).
// `tests/tests/ag_ui_conformance.rs` compares these verdicts with the
// gateway's own rules; `crates/server/tests/python_agents.rs` checks the
// Python example backend's events.
import { verifyEvents } from "@ag-ui/client";
import { EventSchemas } from "@ag-ui/core/schemas";
import { from, lastValueFrom, tap, toArray } from "rxjs";

const schemas = process.argv.includes("--schemas");

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const sequences = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const verdicts = [];
for (const events of sequences) {
  const invalid = schemas ? events.findIndex((e) => !EventSchemas.safeParse(e).success) : -1;
  if (invalid >= 0) {
    const issue = EventSchemas.safeParse(events[invalid]).error;
    verdicts.push({ at: invalid, message: `schema: ${String(issue)}` });
    continue;
  }
  let passed = 0;
  try {
    await lastValueFrom(
      from(events).pipe(
        verifyEvents(),
        tap(() => passed++),
        toArray(),
      ),
    );
    verdicts.push({ at: null });
  } catch (err) {
    verdicts.push({ at: passed, message: String(err && err.message ? err.message : err) });
  }
}
process.stdout.write(JSON.stringify(verdicts));
