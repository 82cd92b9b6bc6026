// Dashboard figures in a real browser (headless Debian Chromium) against a
// release server: first load until the task list shows, bytes transferred,
// output-to-browser latency (a line printed in a task until it is in the
// page), and terminal keystroke round trips (key press until its echo is on
// the screen). Prints figures; asserts nothing.
//
//   bench/dashboard.sh            (builds the release binary and the app first)
import { performance } from "node:perf_hooks";
import { DESKTOP, cleanup, launch, startServer } from "../web/e2e/harness.ts";

const SAMPLES = Number(process.env.SAMPLES ?? 30);

function summary(name: string, xs: number[]): void {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(1);
  console.log(`${name.padEnd(44)} p50 ${q(0.5)} ms  p95 ${q(0.95)} ms  max ${s[s.length - 1]!.toFixed(1)} ms  (n=${s.length})`);
}

const server = await startServer();
const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await ctx.newPage();
  let bytes = 0;
  // Bytes that crossed the network (responses served from the browser's
  // cache count 0); event streams never finish and are not counted.
  page.on("requestfinished", async (req) => {
    const sz = await req.sizes();
    bytes += sz.responseBodySize + sz.responseHeadersSize;
  });
  // Cold: a fresh browser profile (empty cache) until the login form, then
  // until the task list after logging in.
  let t0 = performance.now();
  await page.goto(server.url);
  await page.getByLabel("API token").waitFor();
  const toLogin = performance.now() - t0;
  const coldBytes = bytes;
  t0 = performance.now();
  await page.getByLabel("API token").fill(server.token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator(".list-pane").waitFor();
  console.log(`${"cold load: login form".padEnd(44)} ${toLogin.toFixed(0)} ms, ${(coldBytes / 1024).toFixed(1)} KiB on the wire`);
  console.log(`${"log in → task list".padEnd(44)} ${(performance.now() - t0).toFixed(0)} ms`);
  // Warm: assets come from the cache (immutable); only index.html and API calls travel.
  const warm: number[] = [];
  for (let i = 0; i < 10; i++) {
    bytes = 0;
    t0 = performance.now();
    await page.reload();
    await page.locator(".list-pane").waitFor();
    warm.push(performance.now() - t0);
  }
  summary("reload (logged in, assets cached) → task list", warm);
  console.log(`${"".padEnd(44)} ${(bytes / 1024).toFixed(1)} KiB on the wire per reload`);

  // Output to browser: the fake agent echoes each line typed into it.
  const created = await page.evaluate(async () => {
    const r = await fetch("/api/tasks", { method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"bench"}' });
    return ((await r.json()) as { id: string }).id;
  });
  await page.goto(`${server.url}/#/tasks/${created}`);
  await page.locator(".output").getByText("fake-agent ready").waitFor();
  const out: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const marker = `m${i}x${Math.random().toString(36).slice(2, 8)}`;
    const t0 = performance.now();
    await fetch(`${server.api}/api/tasks/${created}/message`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
      body: JSON.stringify({ text: marker }),
    });
    await page.locator(".output").getByText(`you said: ${marker}`).waitFor();
    out.push(performance.now() - t0);
  }
  summary("message → answer in the output pane", out);

  // Terminal round trip: a key press until its echo is drawn.
  await page.goto(`${server.url}/#/terminal/${created}`);
  await page.locator(".terminal-view [role=status]").getByText("connected").waitFor();
  await page.locator(".term").click();
  const keys: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const ch = String.fromCharCode(97 + (i % 26));
    const before = await page.locator(".term .xterm-rows").innerText();
    const t0 = performance.now();
    await page.keyboard.type(ch);
    await page.waitForFunction(
      (prev) => (document.querySelector(".term .xterm-rows") as HTMLElement).innerText !== prev,
      before,
      { polling: "raf" },
    );
    keys.push(performance.now() - t0);
  }
  summary("terminal key press → echo on screen", keys);
} finally {
  await browser.close();
  await server.stop();
  cleanup(server);
}
