// Times the wasm factorizer (web/pkg, as the page loads it) under node on a
// file of numbers, one per line. Prints {"ns_per_number": ..., "factors": ...}.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = await import(join(root, 'web/pkg/crowdfactor_wasm.js'));
await pkg.default({ module_or_path: readFileSync(join(root, 'web/pkg/crowdfactor_wasm_bg.wasm')) });
const text = readFileSync(process.argv[2], 'utf8');
const count = text.split(/\s+/).filter((t) => t.length > 0).length;
pkg.factor_all(text.split(/\s+/).slice(0, 16).join(' ')); // warm-up
let best = Infinity;
let factors = 0;
const runs = Number(process.argv[3] || 1);
for (let i = 0; i < runs; i++) {
  const t0 = process.hrtime.bigint();
  factors = pkg.factor_all(text);
  const dt = Number(process.hrtime.bigint() - t0);
  best = Math.min(best, dt);
}
console.log(JSON.stringify({ ns_per_number: best / count, factors }));
