// After `vite build`: write .br and .gz beside every text asset (the server
// sends them to browsers that accept them) and report the bundle's size.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const dir = new URL("../dist/assets/", import.meta.url).pathname;
const rows = [];
let total = { raw: 0, gz: 0, br: 0 };
for (const name of readdirSync(dir).sort()) {
  if (!/\.(js|css|svg|json)$/.test(name)) continue;
  const path = join(dir, name);
  const data = readFileSync(path);
  const gz = gzipSync(data, { level: 9 });
  const br = brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
  writeFileSync(path + ".gz", gz);
  writeFileSync(path + ".br", br);
  rows.push([name, data.length, gz.length, br.length]);
  total = { raw: total.raw + data.length, gz: total.gz + gz.length, br: total.br + br.length };
}
const kib = (n) => (n / 1024).toFixed(1).padStart(8) + " KiB";
console.log("\nbundle size (web/dist/assets):");
for (const [name, raw, gz, br] of rows) console.log(`  ${name.padEnd(36)} ${kib(raw)} raw ${kib(gz)} gzip ${kib(br)} brotli`);
console.log(`  ${"total".padEnd(36)} ${kib(total.raw)} raw ${kib(total.gz)} gzip ${kib(total.br)} brotli`);
const index = statSync(new URL("../dist/index.html", import.meta.url)).size;
console.log(`  index.html: ${index} bytes (not cached; the first view loads it, the app chunk and its CSS; xterm.js loads with the terminal)\n`);
