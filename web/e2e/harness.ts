// What the browser tests run against: the real `kube-coder serve` binary
// (built by `cargo build -p kube-coder`, or KUBE_CODER_BIN), real tmux, a
// fake assistant script, and headless Debian Chromium through
// playwright-core. Each server gets its own temp dirs and tmux sockets.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../..");
export const BIN = process.env.KUBE_CODER_BIN ?? join(ROOT, "target/debug/kube-coder");
const FAKE_AGENT = join(ROOT, "crates/kube-coder/tests/fixtures/fake-agent.sh");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const SHOTS = process.env.KUBE_CODER_SCREENSHOTS ?? join(ROOT, "test-artifacts/screenshots");

export interface Server {
  url: string;
  api: string;
  token: string;
  dir: string;
  home: string;
  stop: () => Promise<void>;
  log: () => string;
}

export interface ServerOptions {
  args?: string[];
  /** Reuse the directories of an earlier server (tmux sessions survive). */
  dir?: string;
  /** host:port for the listeners (default: ephemeral ports). */
  listen?: string;
  apiListen?: string;
  env?: Record<string, string>;
}

/** Start `kube-coder serve` on ephemeral ports and wait for its banner. */
export async function startServer(opts: ServerOptions = {}): Promise<Server> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "kc-e2e-"));
  const home = join(dir, "home");
  mkdirSync(home, { recursive: true });
  const assistants = join(dir, "assistants.toml");
  writeFileSync(
    assistants,
    `default = "fake"
[[assistant]]
name = "fake"
command = "sh ${FAKE_AGENT} {prompt}"
interactive_command = "sh ${FAKE_AGENT}"
`,
  );
  const args = [
    "serve",
    "--name",
    "e2e-workspace",
    "--data-dir",
    join(dir, "data"),
    "--home",
    home,
    "--listen",
    opts.listen ?? "127.0.0.1:0",
    "--api-listen",
    opts.apiListen ?? "127.0.0.1:0",
    "--assistants-config",
    assistants,
    ...(opts.args ?? []),
  ];
  const logFile = join(dir, "server.log");
  const child: ChildProcess = spawn(BIN, args, {
    env: { ...process.env, KUBE_CODER_LOG: "info", SHELL: "/bin/sh", HOME: home, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logChunks: string[] = [];
  child.stderr?.on("data", (d: Buffer) => logChunks.push(d.toString()));
  const lines = createInterface({ input: child.stdout! });
  let url = "";
  let api = "";
  const banner = new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${logChunks.join("")}`)), 20_000);
    child.on("exit", (code) => fail(new Error(`server exited (${code}):\n${logChunks.join("")}`)));
    lines.on("line", (line) => {
      const d = /^dashboard: (http:\/\/\S+)/.exec(line);
      if (d) url = d[1]!;
      const a = /^api: +(http:\/\/\S+)/.exec(line);
      if (a) api = a[1]!;
      if (line.startsWith("api token:") && url && api) {
        clearTimeout(timer);
        ok();
      }
    });
  });
  await banner;
  const token = readFileSync(join(dir, "data/api-token"), "utf8").trim();
  return {
    url,
    api,
    token,
    dir,
    home,
    log: () => {
      writeFileSync(logFile, logChunks.join(""));
      return logChunks.join("");
    },
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once("exit", () => done());
        child.kill("SIGTERM");
      }),
  };
}

/** Stop a server and start it again on the same ports and directories. */
export async function restart(s: Server, args: string[] = [], env?: Record<string, string>): Promise<Server> {
  await s.stop();
  return startServer({ dir: s.dir, listen: new URL(s.url).host, apiListen: new URL(s.api).host, args, env });
}

/** The sockets of a workspace's tmux servers (`tmux.sock`, `tmux-1.sock`, …). */
function tmuxSockets(s: Server): string[] {
  const data = join(s.dir, "data");
  try {
    return readdirSync(data)
      .filter((f) => /^tmux(-\d+)?\.sock$/.test(f))
      .map((f) => join(data, f));
  } catch {
    return [];
  }
}

/** Kill the tmux servers of a workspace and remove its directories. */
export function cleanup(s: Server): void {
  for (const socket of tmuxSockets(s)) spawnSync("tmux", ["-S", socket, "kill-server"], { stdio: "ignore" });
  // The killed panes' log writers may still be finishing their files.
  try {
    rmSync(s.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  } catch (e) {
    console.warn(`could not remove ${s.dir}: ${e}`);
  }
}

/** The screen of a task's session, from whichever tmux server holds it. */
export function tmuxCapture(s: Server, session: string): string {
  for (const socket of tmuxSockets(s)) {
    const r = spawnSync("tmux", ["-S", socket, "capture-pane", "-p", "-t", `=${session}`], { encoding: "utf8" });
    if (r.status === 0) return r.stdout;
  }
  return "";
}

export async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 360, height: 740 };

/**
 * A page that records what would make the app misbehave silently:
 * CSP refusals, script errors and failed requests.
 */
export async function newPage(ctx: BrowserContext): Promise<{ page: Page; problems: string[] }> {
  const page = await ctx.newPage();
  const problems: string[] = [];
  page.on("console", (m) => {
    const t = m.text();
    if (/Content Security Policy|Refused to/i.test(t)) problems.push(`csp: ${t}`);
  });
  page.on("pageerror", (e) => problems.push(`script error: ${e.message}`));
  return { page, problems };
}

export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  // Toasts fade by themselves; dismissed here so they do not hide the view.
  await page.evaluate(() => document.querySelectorAll<HTMLButtonElement>(".toasts button").forEach((b) => b.click()));
  await page.locator(".toast").first().waitFor({ state: "detached", timeout: 2000 }).catch(() => undefined);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}
