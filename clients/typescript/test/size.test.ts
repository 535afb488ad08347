// The bundle a browser app pulls in, minified and gzipped as an app's
// bundler would make it (esbuild): `WscClient` alone stays within 8 KB;
// `WscAgent` adds at most 4 KB of its own on top of `@ag-ui/client` and
// `rxjs` (the app's own dependencies, left out of the count).

import { test } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const index = fileURLToPath(new URL("../../src/index.ts", import.meta.url));
const agUi = fileURLToPath(new URL("../../src/ag-ui.ts", import.meta.url));

async function gzippedBundle(entry: string, external: string[] = []): Promise<number> {
  const out = await build({
    stdin: { contents: entry, resolveDir: fileURLToPath(new URL(".", import.meta.url)), loader: "ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    write: false,
    external,
  });
  const code = out.outputFiles[0]?.contents ?? new Uint8Array();
  return gzipSync(code, { level: 9 }).length;
}

test("the client is at most 8 KB minified and gzipped", async () => {
  const gzipped = await gzippedBundle(
    `import * as all from ${JSON.stringify(index)}; globalThis.c = all;`,
  );
  console.log(`WscClient: ${gzipped} bytes gzipped`);
  assert.ok(gzipped <= 8 * 1024, `${gzipped} bytes gzipped`);
});

test("WscAgent adds at most 4 KB to the client beside @ag-ui/client", async () => {
  const external = ["@ag-ui/client", "rxjs"];
  const client = await gzippedBundle(
    `import { WscClient } from ${JSON.stringify(index)}; globalThis.c = WscClient;`,
    external,
  );
  const agent = await gzippedBundle(
    `import { WscAgent } from ${JSON.stringify(agUi)}; globalThis.a = WscAgent;`,
    external,
  );
  console.log(`WscAgent: ${agent} bytes gzipped (${agent - client} more than WscClient)`);
  assert.ok(agent - client <= 4 * 1024, `${agent - client} bytes gzipped`);
});
