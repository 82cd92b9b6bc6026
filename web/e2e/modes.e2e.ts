// The other ways into the dashboard, in a real browser: read-only (every
// write hidden and refused; the terminal view-only), basic auth (the
// browser's own prompt), oauth2 (identity from the trusted proxy headers).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { BIN, DESKTOP, PHONE, cleanup, launch, newPage, restart, shot, startServer, tmuxCapture, type Server } from "./harness";

let browser: Browser;

beforeAll(async () => {
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

/**
 * A page as carol, signed in by oauth2-proxy: the browser talks to the
 * server from 127.0.0.1, a trusted proxy address by default, so these
 * headers stand in for the proxy's.
 */
async function asCarol() {
  const ctx = await browser.newContext({
    viewport: DESKTOP,
    extraHTTPHeaders: { "X-Forwarded-User": "carol", "X-Forwarded-Email": "carol@example.com" },
  });
  const { page, problems } = await newPage(ctx);
  page.setDefaultTimeout(15_000);
  return { ctx, page, problems };
}

async function text(page: Page, sel: string): Promise<string> {
  return (await page.locator(sel).first().innerText()).trim();
}

async function bearer(s: Server, method: string, path: string, body?: unknown, raw?: string): Promise<Response> {
  return fetch(s.api + path, {
    method,
    headers: {
      authorization: `Bearer ${s.token}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: raw ?? (body !== undefined ? JSON.stringify(body) : undefined),
  });
}

describe("read-only", () => {
  let server: Server;
  let taskId = "";

  beforeAll(async () => {
    // Some content first, then the same workspace read-only.
    server = await startServer();
    const t = (await (await bearer(server, "POST", "/api/tasks", { prompt: "shown, not steered", name: "demo" })).json()) as { id: string };
    taskId = t.id;
    expect((await bearer(server, "PUT", "/api/files/content?path=README.md", undefined, "# demo\n")).status).toBe(201);
    await new Promise((r) => setTimeout(r, 500));
    server = await restart(server, ["--read-only"]);
  });

  afterAll(async () => {
    await server?.stop();
    if (server) cleanup(server);
  });

  it("shows everything, offers no write, and the server refuses writes", async () => {
    const ctx = await browser.newContext({ viewport: DESKTOP });
    const { page, problems } = await newPage(ctx);
    page.setDefaultTimeout(15_000);
    await page.goto(server.url);
    await page.getByLabel("API token").fill(server.token);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByText("read-only", { exact: true }).waitFor();
    await page.getByRole("link", { name: /demo/ }).click();
    await expect.poll(() => text(page, ".output")).toContain("prompt: shown, not steered");
    expect(await page.getByRole("button", { name: "New task" }).count()).toBe(0);
    expect(await page.getByRole("button", { name: "Kill" }).count()).toBe(0);
    expect(await page.getByLabel("Message to the task").count()).toBe(0);
    await shot(page, "readonly-tasks-desktop");

    // Every write the app could make is refused by the server itself.
    const statuses = await page.evaluate(async (id) => {
      const json = { "content-type": "application/json" };
      const calls: [string, string, string?][] = [
        ["POST", "/api/tasks", "{}"],
        ["POST", `/api/tasks/${id}/message`, '{"text":"x"}'],
        ["POST", `/api/tasks/${id}/keys`, '{"keys":["Enter"]}'],
        ["DELETE", `/api/tasks/${id}`],
        ["PUT", "/api/files/content?path=x.txt", "x"],
        ["POST", "/api/files/mkdir", '{"path":"d"}'],
        ["POST", "/api/files/rename", '{"from":"README.md","to":"r.md"}'],
        ["DELETE", "/api/files?path=README.md"],
        ["POST", "/api/schedules", '{"name":"n","cron":"* * * * *"}'],
        ["POST", "/api/webhooks", '{"name":"n","prompt_template":"p"}'],
        ["POST", "/api/token"],
      ];
      const out: string[] = [];
      for (const [method, path, body] of calls) {
        const r = await fetch(path, { method, headers: json, body });
        const b = (await r.json().catch(() => ({}))) as { code?: string };
        out.push(`${method} ${path} ${r.status} ${b.code}`);
      }
      return out;
    }, taskId);
    for (const s of statuses) expect(s).toMatch(/ 403 read_only$/);

    await page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: "Files" }).click();
    await page.locator('[data-entry="README.md"]').waitFor();
    for (const name of ["Upload", "New folder", "Rename README.md", "Delete README.md"]) {
      expect(await page.getByRole("button", { name }).count()).toBe(0);
    }
    await shot(page, "readonly-files-desktop");

    await page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: "Triggers" }).click();
    await page.locator(".triggers").waitFor();
    expect(await page.getByText("New schedule").count()).toBe(0);
    expect(await page.getByText("New webhook").count()).toBe(0);

    // The terminal shows the task's screen and ignores the keyboard.
    await page.goto(`${server.url}/#/terminal/${taskId}`);
    await expect.poll(() => text(page, ".terminal-view [role=status]")).toBe("view only");
    await expect.poll(() => text(page, ".term .xterm-rows")).toContain("prompt: shown, not steered");
    expect(await page.getByRole("button", { name: "New shell" }).count()).toBe(0);
    await page.locator(".term").click();
    await page.keyboard.type("exit 9");
    await page.keyboard.press("Enter");
    await new Promise((r) => setTimeout(r, 1000));
    expect(tmuxCapture(server, `kc-${taskId}`)).not.toContain("exit 9");
    await shot(page, "readonly-terminal-desktop");
    await page.setViewportSize(PHONE);
    await page.goto(`${server.url}/#/tasks/${taskId}`);
    await expect.poll(() => text(page, ".output")).toContain("prompt: shown, not steered");
    await shot(page, "readonly-task-phone");
    expect(problems).toEqual([]);
    await ctx.close();
  });
});

describe("basic auth", () => {
  let server: Server;

  beforeAll(async () => {
    const dir = (await import("node:fs")).mkdtempSync(join((await import("node:os")).tmpdir(), "kc-e2e-basic-"));
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(htpasswd, `alice:${bcrypt.hashSync("alice-pw", 6)}\n`);
    server = await startServer({ args: ["--auth", "basic", "--htpasswd-file", htpasswd] });
  });

  afterAll(async () => {
    await server?.stop();
    if (server) cleanup(server);
  });

  it("asks the browser for credentials and works with them", async () => {
    // Without credentials the server asks for them: the browser's prompt.
    const r = await fetch(server.url);
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toMatch(/^Basic/);
    const wrong = await fetch(server.url, { headers: { authorization: `Basic ${btoa("alice:wrong")}` } });
    expect(wrong.status).toBe(401);
    // Outside token mode the app's files are behind the same gate.
    const good = { authorization: `Basic ${btoa("alice:alice-pw")}` };
    const html = await (await fetch(server.url, { headers: good })).text();
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    expect((await fetch(server.url + asset)).status).toBe(401);
    expect((await fetch(server.url + asset, { headers: good })).status).toBe(200);

    const ctx = await browser.newContext({ viewport: DESKTOP, httpCredentials: { username: "alice", password: "alice-pw" } });
    const { page, problems } = await newPage(ctx);
    page.setDefaultTimeout(15_000);
    await page.goto(server.url);
    await expect.poll(() => text(page, ".user")).toBe("alice");
    // No logout button: a browser forgets basic credentials only when closed.
    expect(await page.getByRole("button", { name: "Log out" }).count()).toBe(0);
    await page.getByRole("button", { name: "New task" }).click();
    await page.getByLabel("Prompt (optional)").fill("from basic auth");
    await page.getByRole("button", { name: "Start" }).click();
    await expect.poll(() => text(page, ".output")).toContain("prompt: from basic auth");
    expect(problems).toEqual([]);
    await ctx.close();
  });
});

describe("oauth2 (identity headers from the trusted proxy)", () => {
  let server: Server;

  beforeAll(async () => {
    server = await startServer({ args: ["--auth", "oauth2"] });
  });

  afterAll(async () => {
    await server?.stop();
    if (server) cleanup(server);
  });

  it("shows the proxy's user and writes pass the same-origin check", async () => {
    const { ctx, page, problems } = await asCarol();
    await page.goto(server.url);
    await expect.poll(() => text(page, ".user")).toBe("carol");
    await page.getByRole("button", { name: "New task" }).click();
    await page.getByLabel("Prompt (optional)").fill("from oauth2");
    await page.getByRole("button", { name: "Start" }).click();
    await expect.poll(() => text(page, ".output")).toContain("prompt: from oauth2");
    // Log out goes to the proxy's sign-out page.
    await page.getByRole("button", { name: "Log out" }).click();
    await expect.poll(() => page.url()).toContain("/oauth2/sign_out");
    expect(problems).toEqual([]);
    await ctx.close();
  });
});

describe("egress gateway (the Network view)", () => {
  let server: Server;
  let gateway: ChildProcess;

  beforeAll(async () => {
    // The real gateway, with a list; one refused CONNECT to show. With
    // models too: two providers (one without a key) and this month's usage
    // as a restarted gateway finds it in its store.
    const dir = mkdtempSync(join(tmpdir(), "kc-e2e-egress-"));
    const list = join(dir, "allow");
    writeFileSync(list, "*.example.com\n");
    const models = join(dir, "models.json");
    writeFileSync(
      models,
      JSON.stringify({
        providers: [
          { name: "anthropic", api: "anthropic", baseUrl: "https://api.anthropic.com" },
          { name: "openai", api: "openai", baseUrl: "https://api.openai.com/v1" },
        ],
        monthlyTokenBudget: 100000,
      }),
    );
    const keys = join(dir, "keys");
    mkdirSync(keys);
    writeFileSync(join(keys, "anthropic"), "sk-ant-not-used");
    const month = new Date().toISOString().slice(0, 7);
    const usage = join(dir, "usage.json");
    writeFileSync(
      usage,
      JSON.stringify({
        month,
        input_tokens: 61000,
        output_tokens: 34000,
        requests: 12,
        providers: { anthropic: { input_tokens: 61000, output_tokens: 34000, requests: 12 } },
      }),
    );
    gateway = spawn(
      BIN,
      [
        "egress-gateway",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--models-listen",
        "127.0.0.1:0",
        "--allow-file",
        list,
        "--models-file",
        models,
        "--model-keys-dir",
        keys,
        "--usage-file",
        usage,
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    const banner = await new Promise<string>((done, fail) => {
      createInterface({ input: gateway.stdout! }).once("line", done);
      gateway.once("exit", () => fail(new Error("the egress gateway exited")));
    });
    const proxy = /proxy on ([^,]+)/.exec(banner)![1]!;
    const admin = /admin on ([^,\s]+)/.exec(banner)![1]!;
    const [host, port] = [proxy.slice(0, proxy.lastIndexOf(":")), Number(proxy.slice(proxy.lastIndexOf(":") + 1))];
    await new Promise<void>((done) => {
      const s = connect(port, host, () => s.write("CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org:443\r\nConnection: close\r\n\r\n"));
      s.on("data", () => undefined);
      s.on("close", () => done());
    });
    server = await startServer({ args: ["--auth", "oauth2", "--egress-gateway-url", `http://${admin}`, "--egress-by-name"] });
  });

  afterAll(async () => {
    gateway?.kill();
    await server?.stop();
    if (server) cleanup(server);
  });

  it("lists what the gateway refused, with the rule", async () => {
    const { ctx, page, problems } = await asCarol();
    await page.goto(server.url);
    await page.getByRole("link", { name: "Network" }).click();
    const refusal = page.locator(".refusal").first();
    await expect.poll(() => refusal.innerText()).toContain("registry.npmjs.org:443");
    expect(await refusal.innerText()).toContain("is not on this workspace's egress allow list");
    expect(await refusal.locator(".badge").innerText()).toBe("not listed");
    await shot(page, "network-refusals-desktop");
    expect(problems).toEqual([]);
    await ctx.close();
  });

  it("shows the month's model tokens against the budget, and which provider has no key", async () => {
    const { ctx, page, problems } = await asCarol();
    await page.goto(server.url);
    await page.getByRole("link", { name: "Network" }).click();
    const section = page.getByRole("region", { name: "Model usage" });
    await expect.poll(() => section.innerText()).toContain("95,000 tokens");
    const text = await section.innerText();
    expect(text).toContain("of 100,000 (5,000 left");
    const rows = section.locator("tr.provider");
    expect(await rows.nth(0).innerText()).toMatch(/anthropic\s+61,000\s+34,000\s+12/);
    expect(await rows.nth(1).innerText()).toContain("no key");
    // Over 90 % used: the bar says so.
    expect(await section.locator(".bar > span.hot").count()).toBe(1);
    await shot(page, "network-models-desktop");
    expect(problems).toEqual([]);
    await ctx.close();
  });
});

describe("image builds (the Builds view)", () => {
  let server: Server;
  let plain: Server;

  beforeAll(async () => {
    // Wired to builds as the operator wires a workspace; no operator runs
    // here (the builds themselves are proved on the test cluster), so the
    // view shows its empty history and how to build.
    const dir = mkdtempSync(join(tmpdir(), "kc-e2e-builds-"));
    const token = join(dir, "build-token");
    writeFileSync(token, "not-a-real-token");
    server = await startServer({
      args: ["--auth", "oauth2", "--build-url", "http://127.0.0.1:9/builds", "--build-token-file", token],
    });
    plain = await startServer({ args: ["--auth", "oauth2"] });
  });

  afterAll(async () => {
    for (const s of [server, plain]) {
      await s?.stop();
      if (s) cleanup(s);
    }
  });

  it("is in the navigation only where the workspace builds, with how to build", async () => {
    const { ctx, page, problems } = await asCarol();
    await page.goto(plain.url);
    await page.getByRole("link", { name: "Tasks" }).waitFor();
    expect(await page.getByRole("link", { name: "Builds" }).count()).toBe(0);
    await page.goto(server.url);
    await page.getByRole("link", { name: "Builds" }).click();
    const section = page.getByRole("region", { name: "Builds" });
    await expect.poll(() => section.innerText()).toContain("No builds yet.");
    expect(await section.innerText()).toContain("kube-coder build -t REGISTRY/REPOSITORY:TAG DIR");
    // The operator is not there: the API says so, and records nothing.
    const r = await bearer(server, "POST", "/api/builds?tag=r.io/team/app:1", undefined, "not a tar");
    expect(r.status).toBe(502);
    expect(((await r.json()) as { code: string }).code).toBe("operator_unreachable");
    const history = (await (await bearer(server, "GET", "/api/builds")).json()) as { enabled: boolean; builds: unknown[] };
    expect(history).toEqual({ enabled: true, builds: [] });
    await shot(page, "builds-empty-desktop");
    expect(problems).toEqual([]);
    await ctx.close();
  });

  it("follows a running build's log as it comes, then shows how it ended", async () => {
    // A stand-in for the operator's builds endpoint (the real one needs the
    // test cluster, where builds_in_pod.rs follows a real build's log): it
    // takes the context, streams the start of a log, and ends when told.
    let release: () => void = () => {};
    const released = new Promise<void>((r) => (release = r));
    const operator = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        res.write('{"status":"build pod running after 0.8 s; sending the context"}\n');
        res.write('{"log":"#5 [2/2] RUN make all"}\n');
        void released.then(() => {
          res.write('{"log":"#5 DONE 1.2s"}\n');
          res.end('{"done":{"id":"build-1","images":["r.io/team/app:2"],"digest":"sha256:ab","size":5242880,"ready_seconds":0.8,"seconds":3.5}}\n');
        });
      });
    });
    await new Promise<void>((r) => operator.listen(0, "127.0.0.1", () => r()));
    const port = (operator.address() as AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), "kc-e2e-live-"));
    const token = join(dir, "build-token");
    writeFileSync(token, "not-a-real-token");
    const live = await startServer({
      args: ["--auth", "oauth2", "--build-url", `http://127.0.0.1:${port}/builds`, "--build-token-file", token],
    });
    try {
      const started = await bearer(live, "POST", "/api/builds?tag=r.io/team/app:2", undefined, "a tar");
      expect(started.status).toBe(200);
      const { ctx, page, problems } = await asCarol();
      await page.goto(live.url);
      await page.getByRole("link", { name: "Builds" }).click();
      const section = page.getByRole("region", { name: "Builds" });
      // Running: its log shown as it comes, before the build ends.
      const log = section.locator("pre.build-log");
      await expect.poll(() => log.innerText()).toContain("RUN make all");
      expect(await section.locator("li.build").getAttribute("data-state")).toBe("running");
      await shot(page, "builds-live-desktop");
      release();
      // Ended: the log's last line, and the row as the history has it.
      await expect.poll(() => log.innerText()).toContain("pushed r.io/team/app:2 (5.0 MiB) in 3.5 s");
      await expect.poll(() => section.locator("li.build").getAttribute("data-state")).toBe("succeeded");
      expect(await section.innerText()).toContain("5.0 MiB");
      await started.text();
      expect(problems).toEqual([]);
      await ctx.close();
    } finally {
      release();
      await live.stop();
      cleanup(live);
      operator.close();
    }
  });
});
