// The bundle a browser app pulls in: the client minified and gzipped must
// stay within 8 KB (esbuild bundles it as an app's bundler would).

import { test } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

test("the client is at most 8 KB minified and gzipped", async () => {
  const entry = fileURLToPath(new URL("../../src/index.ts", import.meta.url));
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    write: false,
  });
  const code = out.outputFiles[0]?.contents ?? new Uint8Array();
  const gzipped = gzipSync(code, { level: 9 }).length;
  console.log(`bundle: ${code.length} bytes minified, ${gzipped} bytes gzipped`);
  assert.ok(gzipped <= 8 * 1024, `${gzipped} bytes gzipped`);
});
