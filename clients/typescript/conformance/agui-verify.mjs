// The official AG-UI verifier (`@ag-ui/client` 1.0's `verifyEvents`) on
// event sequences: reads a JSON array of sequences (each an array of AG-UI
// events) on stdin and prints, for each, the index of the first event the
// verifier refuses (or null when it accepts them all) with its message.
// `crates/server/tests/ag_ui_conformance.rs` compares these verdicts with
// the gateway's own rules.
import { verifyEvents } from "@ag-ui/client";
import { from, lastValueFrom, tap, toArray } from "rxjs";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const sequences = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const verdicts = [];
for (const events of sequences) {
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
