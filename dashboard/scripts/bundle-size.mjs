// Prints the gzipped size of the built JS and CSS, and fails the build over the budget: the
// dashboard must stay lighter than a UI kit (issue 19: at most 300 kB gzipped).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET_BYTES = 300 * 1024;
const assets = new URL("../../src/strangler/admin/static/assets/", import.meta.url).pathname;
let total = 0;
for (const name of readdirSync(assets)) {
  if (!/\.(js|css)$/.test(name)) continue;
  total += gzipSync(readFileSync(join(assets, name)), { level: 9 }).length;
}
const kb = (total / 1024).toFixed(1);
console.log(`dashboard bundle: ${kb} kB gzipped JS+CSS (budget ${BUDGET_BYTES / 1024} kB)`);
if (total > BUDGET_BYTES) {
  console.error(`dashboard bundle is over its budget: ${kb} kB`);
  process.exit(1);
}
