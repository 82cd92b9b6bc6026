// The dashboard in a real browser against the real server, token mode (the
// embedded default): log in, tasks with live output, follow-up, terminal,
// files round trip, triggers, kill; screenshots of every view at desktop
// and phone width in web/test-results/screenshots.
import { createHmac, randomBytes } from "node:crypto";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { DESKTOP, PHONE, cleanup, launch, newPage, restart, shot, startServer, type Server } from "./harness";

let server: Server;
let browser: Browser;
let ctx: BrowserContext;
let page: Page;
let problems: string[];

async function text(sel: string): Promise<string> {
  return (await page.locator(sel).first().innerText()).trim();
}

/**
 * How many pixels of ink each of the first `n` characters of an xterm row
 * has inside the row's own box (a glyph drawn below its line, as an
 * underscore can be with the wrong font metrics, counts for nothing): the
 * row's screenshot, read back through a canvas in the page.
 */
async function inkPerGlyph(row: ReturnType<Page["locator"]>, n: number): Promise<number[]> {
  const box = (await row.boundingBox())!;
  const png = (await page.screenshot({ clip: box })).toString("base64");
  return row.evaluate(
    async (el, { png, n }) => {
      const rowBox = el.getBoundingClientRect();
      // Each character's horizontal extent, from the DOM renderer's text.
      const cells: [number, number][] = [];
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      const range = document.createRange();
      for (let node = walker.nextNode(); node && cells.length < n; node = walker.nextNode()) {
        for (let i = 0; i < node.textContent!.length && cells.length < n; i++) {
          range.setStart(node, i);
          range.setEnd(node, i + 1);
          const r = range.getBoundingClientRect();
          cells.push([r.left - rowBox.left, r.right - rowBox.left]);
        }
      }
      const img = new Image();
      img.src = `data:image/png;base64,${png}`;
      await img.decode();
      const canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      const g = canvas.getContext("2d")!;
      g.drawImage(img, 0, 0);
      const px = g.getImageData(0, 0, img.width, img.height).data;
      const scale = img.width / rowBox.width;
      const bg = [px[0]!, px[1]!, px[2]!];
      return cells.map(([from, to]) => {
        let ink = 0;
        for (let y = 0; y < img.height; y++) {
          for (let x = Math.floor(from * scale); x < Math.ceil(to * scale) && x < img.width; x++) {
            const o = (y * img.width + x) * 4;
            if (Math.abs(px[o]! - bg[0]!) + Math.abs(px[o + 1]! - bg[1]!) + Math.abs(px[o + 2]! - bg[2]!) > 96) ink++;
          }
        }
        return ink;
      });
    },
    { png, n },
  );
}

async function nav(view: string): Promise<void> {
  await page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: view, exact: true }).click();
}

// A completion-hook receiver on loopback (the server is told to allow
// internal hook addresses for this test only).
const hookBodies: string[] = [];
let receiver: HttpServer;
let hookUrl = "";
const INTERNAL_HOOKS = { ALLOW_INTERNAL_HOOKS: "true" };
// A 1×1 PNG.
const PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      hookBodies.push(body);
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((ok) => receiver.listen(0, "127.0.0.1", ok));
  hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/done`;
  server = await startServer({ env: INTERNAL_HOOKS });
  browser = await launch();
  ctx = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
  ({ page, problems } = await newPage(ctx));
  page.setDefaultTimeout(15_000);
  page.on("dialog", (d) => void d.accept());
});

afterAll(async () => {
  receiver?.close();
  await browser?.close();
  await server?.stop();
  if (server) cleanup(server);
});

describe("token mode", () => {
  it("serves the app with a strict policy and caching rules", async () => {
    const index = await fetch(server.url + "/");
    expect(index.status).toBe(200);
    expect(index.headers.get("cache-control")).toBe("no-store");
    const csp = index.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self';");
    expect(csp).not.toContain("unsafe");
    const html = await index.text();
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeTruthy();
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    expect(html).toContain(`nonce="${nonce}"`);
    expect(html).not.toContain("__CSP_NONCE__");
    const js = await fetch(server.url + asset, { headers: { "accept-encoding": "br" } });
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(js.headers.get("content-encoding")).toBe("br");
    const again = await fetch(server.url + asset, { headers: { "if-none-match": js.headers.get("etag")! } });
    expect(again.status).toBe(304);
    const missing = await fetch(server.url + "/assets/nope.js");
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe("not_found");
  });

  it("refuses a wrong token and logs in with the right one", async () => {
    await page.goto(server.url);
    await page.getByLabel("API token").fill("not-the-token");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect.poll(() => text("[role=alert]")).toContain("not this workspace's API token");
    await shot(page, "login-desktop");
    await page.getByLabel("API token").fill(server.token);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByText("e2e-workspace").waitFor();
    const cookies = await ctx.cookies();
    const session = cookies.find((c) => c.name.startsWith("kc"));
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe("Strict");
    // The header's figures arrive.
    await expect.poll(() => text(".meters")).toMatch(/Mem\s*[\d.]+ (KiB|MiB|GiB)/);
  });

  it("creates a task and shows its output live; a follow-up is answered", async () => {
    await page.getByRole("button", { name: "New task" }).click();
    await page.getByLabel("Assistant").selectOption("fake");
    await page.getByLabel("Prompt (optional)").fill("write the tests");
    await page.getByLabel("Name (optional)").fill("e2e task");
    await page.getByLabel("Completion hook URL (optional)").fill(hookUrl);
    await shot(page, "new-task-desktop");
    await page.getByRole("button", { name: "Start" }).click();
    await expect.poll(() => text(".output"), { timeout: 15_000 }).toContain("prompt: write the tests");
    await expect.poll(() => text(".tasks")).toContain("e2e task");
    await page.getByLabel("Message to the task").fill("hello there");
    await page.getByRole("button", { name: "Send" }).click();
    await expect.poll(() => text(".output"), { timeout: 15_000 }).toContain("you said: hello there");
    await shot(page, "tasks-desktop");
  });

  it("shows output in colour, the run's duration, and runs a finished task again or deletes it", async () => {
    const made = await fetch(`${server.api}/api/tasks`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
      body: JSON.stringify({ assistant: "shell", name: "colours", prompt: "printf '\\033[31mred\\033[0m plain \\033[1;32mbold green\\033[0m\\n'" }),
    });
    const { id } = (await made.json()) as { id: string };
    await page.goto(`${server.url}/#/tasks/${id}`);
    const red = page.locator(".output span.f-a1", { hasText: "red" });
    await red.waitFor({ timeout: 15_000 });
    expect(await red.evaluate((el) => getComputedStyle(el).color)).toBe("rgb(224, 108, 117)");
    expect(await page.locator(".output span.f-a2.a-bold", { hasText: "bold green" }).count()).toBe(1);
    expect(await text(".output")).not.toContain("[31m");
    await expect.poll(() => text(".task-detail .meta")).toMatch(/ran \d+s/);
    // Run again: a new task with the same prompt and name.
    await page.getByRole("button", { name: "Run again" }).click();
    await expect.poll(() => page.evaluate(() => location.hash)).not.toBe(`#/tasks/${id}`);
    await page.locator(".output span.f-a1", { hasText: "red" }).waitFor({ timeout: 15_000 });
    expect(await text(".task-detail .task-title")).toBe("colours");
    // Delete the first run: gone from the list, its log with it.
    await page.goto(`${server.url}/#/tasks/${id}`);
    await page.getByRole("button", { name: "Delete" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
    await expect.poll(() => page.locator(`[data-task="${id}"]`).count()).toBe(0);
    expect((await fetch(`${server.api}/api/tasks/${id}`, { headers: { authorization: `Bearer ${server.token}` } })).status).toBe(404);
  });

  it("types a command into the terminal and shows its output", async () => {
    await nav("Terminal");
    await page.getByRole("button", { name: "New shell" }).click();
    await page.locator(".term .xterm-screen").waitFor();
    await expect.poll(() => text(".terminal-view [role=status]")).toBe("connected");
    await page.locator(".term").click();
    await page.keyboard.type("echo $((6*7))xyz");
    await page.keyboard.press("Enter");
    await expect.poll(() => text(".term .xterm-rows"), { timeout: 15_000 }).toContain("42xyz");
    // Paste: what the browser hands xterm.js as a paste goes to the shell.
    await page.locator(".term textarea").evaluate((ta) => {
      const dt = new DataTransfer();
      dt.setData("text/plain", "echo pasted$((2+3))");
      ta.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    });
    // (bash treats a bracketed paste as text: Enter runs it.)
    await page.keyboard.press("Enter");
    await expect.poll(() => text(".term .xterm-rows"), { timeout: 15_000 }).toContain("pasted5");
    // Copy: double-click selects a word, Ctrl+Shift+C puts it on the clipboard.
    await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    const row = page.locator(".term .xterm-rows > div", { hasText: /^42xyz/ }).first();
    const box = (await row.boundingBox())!;
    await page.mouse.dblclick(box.x + 12, box.y + box.height / 2);
    await page.keyboard.press("Control+Shift+C");
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("42xyz");
    // Every glyph typed is drawn inside its own cell: underscores are not
    // cut off below the line, and nothing is left blank.
    const glyphs = "__a_b|gjpqy@#$%^&*()[]{}<>~=+-/\\`',.;:";
    await page.keyboard.type(`printf '%s\\n' "${glyphs.replace(/[\\`"$]/g, "\\$&")}"`);
    await page.keyboard.press("Enter");
    const drawn = page.locator(".term .xterm-rows > div", { hasText: glyphs }).last();
    await drawn.waitFor({ timeout: 15_000 });
    const ink = await inkPerGlyph(drawn, glyphs.length);
    const blank = [...glyphs].filter((_, i) => !(ink[i]! > 0));
    expect(blank, `glyphs drawn with no ink inside their row: ${JSON.stringify(ink)}`).toEqual([]);
    // The header names the task, not its id.
    expect(await text(".terminal-view .task-title")).toBe("shell");
    await shot(page, "terminal-desktop");
  });

  it("reconnects the terminal after the connection drops (server restart)", async () => {
    server = await restart(server, [], INTERNAL_HOOKS);
    await expect.poll(() => text(".terminal-view [role=status]"), { timeout: 20_000 }).toBe("connected");
    await page.locator(".term").click();
    await page.keyboard.type("echo again$((1+1))");
    await page.keyboard.press("Enter");
    await expect.poll(() => text(".term .xterm-rows"), { timeout: 15_000 }).toContain("again2");
    // Close shell ends the shell's task and goes back to the list.
    const id = (await page.evaluate(() => location.hash)).split("/").pop()!;
    await page.getByRole("button", { name: "Close shell" }).click();
    await expect.poll(() => page.evaluate(() => location.hash)).toBe("#/terminal");
    const t = await (await fetch(`${server.api}/api/tasks/${id}`, { headers: { authorization: `Bearer ${server.token}` } })).json();
    expect((t as { state: string }).state).toBe("killed");
  });

  it("uploads a file and downloads it back identical; mkdir, rename, delete, errors", async () => {
    await nav("Files");
    const data = randomBytes(3 * 1024 * 1024 + 17);
    await page.getByLabel("Files to upload").setInputFiles({ name: "blob.bin", mimeType: "application/octet-stream", buffer: data });
    await page.locator('[data-entry="blob.bin"]').waitFor({ timeout: 15_000 });
    expect(readFileSync(`${server.home}/blob.bin`).equals(data)).toBe(true);
    // A click opens the file: binary, so offered for download.
    await page.getByRole("link", { name: "blob.bin" }).click();
    const preview = page.getByRole("region", { name: "File blob.bin" });
    await expect.poll(() => preview.innerText()).toContain("A binary file");
    const [download] = await Promise.all([page.waitForEvent("download"), preview.getByRole("link", { name: "Download" }).click()]);
    const saved = readFileSync((await download.path())!);
    expect(saved.equals(data)).toBe(true);
    await preview.getByRole("button", { name: "Close the file" }).click();

    // Text is shown and edited in place; a save never overwrites a change
    // made on disk since the editor read the file unless asked to.
    writeFileSync(`${server.home}/notes.md`, "# Notes\nfirst line\n");
    await page.getByRole("link", { name: "notes.md" }).click();
    const notes = page.getByRole("region", { name: "File notes.md" });
    await expect.poll(() => notes.getByLabel("Contents").innerText()).toContain("first line");
    await notes.getByRole("button", { name: "Edit" }).click();
    await notes.getByLabel("Text").fill("# Notes\nedited in the browser\n");
    await notes.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => readFileSync(`${server.home}/notes.md`, "utf8")).toBe("# Notes\nedited in the browser\n");
    await expect.poll(() => notes.getByLabel("Contents").innerText()).toContain("edited in the browser");
    await notes.getByRole("button", { name: "Edit" }).click();
    await notes.getByLabel("Text").fill("mine\n");
    writeFileSync(`${server.home}/notes.md`, "an agent wrote this meanwhile\n");
    await notes.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => notes.getByRole("alert").innerText()).toContain("changed on disk after you opened it");
    expect(readFileSync(`${server.home}/notes.md`, "utf8")).toBe("an agent wrote this meanwhile\n");
    await shot(page, "files-editor-conflict-desktop");
    await notes.getByRole("button", { name: "Overwrite" }).click();
    await expect.poll(() => readFileSync(`${server.home}/notes.md`, "utf8")).toBe("mine\n");
    await notes.getByRole("button", { name: "Close the file" }).click();

    // Images are shown.
    writeFileSync(`${server.home}/dot.png`, Buffer.from(PNG_1PX, "base64"));
    await page.getByRole("link", { name: "dot.png" }).click();
    const img = page.getByRole("region", { name: "File dot.png" }).getByRole("img", { name: "dot.png" });
    await expect.poll(() => img.evaluate((i) => (i as HTMLImageElement).naturalWidth)).toBe(1);
    await page.getByRole("button", { name: "Close the file" }).click();

    // Dot-files hide behind "Show hidden" (off by default).
    mkdirSync(`${server.home}/.cache`, { recursive: true });
    await page.locator('[data-entry="dot.png"]').waitFor();
    expect(await page.locator('[data-entry=".cache"]').count()).toBe(0);
    await page.getByLabel("Show hidden").check();
    await page.locator('[data-entry=".cache"]').waitFor();
    await page.getByLabel("Show hidden").uncheck();
    await page.locator('[data-entry=".cache"]').waitFor({ state: "detached" });

    // New folder, through the prompt dialog.
    page.removeAllListeners("dialog");
    page.once("dialog", (d) => void d.accept("notes"));
    await page.getByRole("button", { name: "New folder" }).click();
    await page.locator('[data-entry="notes"]').waitFor();
    // The same name again: the server's message is shown.
    page.once("dialog", (d) => void d.accept("notes"));
    await page.getByRole("button", { name: "New folder" }).click();
    await expect.poll(() => text(".toast.error")).toMatch(/exists/);
    // Rename the upload, then delete it.
    page.once("dialog", (d) => void d.accept("renamed.bin"));
    await page.getByRole("button", { name: "Rename blob.bin" }).click();
    await page.locator('[data-entry="renamed.bin"]').waitFor();
    await page.getByRole("button", { name: "Delete renamed.bin" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
    await page.locator('[data-entry="renamed.bin"]').waitFor({ state: "detached" });
    // The success clears the earlier error message.
    expect(await page.locator(".toast.error").count()).toBe(0);
    // Into the folder and back via the breadcrumbs.
    await page.getByRole("link", { name: "notes/" }).click();
    await expect.poll(() => text(".files")).toContain("Empty folder");
    await page.locator(".crumbs").getByRole("link", { name: "home" }).click();
    await page.locator('[data-entry="notes"]').waitFor();
    // Folder names that mean something in a URL still open the right folder.
    const odd = "odd #1 %";
    const made = await fetch(`${server.api}/api/files/mkdir`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
      body: JSON.stringify({ path: `${odd}/inner` , parents: true }),
    });
    expect(made.status).toBe(201);
    await page.getByRole("link", { name: `${odd}/` }).click();
    await page.locator('[data-entry="inner"]').waitFor();
    await page.locator(".crumbs").getByRole("link", { name: "home" }).click();
    await page.locator('[data-entry="notes"]').waitFor();
    page.on("dialog", (d) => void d.accept());

    // Drag and drop, on a slow uplink so the progress bar shows.
    const cdp = await ctx.newCDPSession(page);
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: 2 * 1024 * 1024,
    });
    await page.locator(".files").evaluate((zone) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(3 * 1024 * 1024).fill(7)], "dropped.bin"));
      for (const type of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    });
    const bar = page.getByRole("progressbar", { name: "Uploading dropped.bin" });
    await bar.waitFor();
    await expect.poll(async () => Number(await bar.getAttribute("aria-valuenow"))).toBeGreaterThan(0);
    await shot(page, "files-uploading-desktop");
    await page.locator('[data-entry="dropped.bin"]').waitFor({ timeout: 30_000 });
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    expect(readFileSync(`${server.home}/dropped.bin`).length).toBe(3 * 1024 * 1024);

    // A file written through the API by someone else shows up without a reload.
    const put = await fetch(`${server.api}/api/files/content?path=from-agent.txt`, {
      method: "PUT",
      headers: { authorization: `Bearer ${server.token}` },
      body: "written by an agent\n",
    });
    expect(put.status).toBe(201);
    await page.locator('[data-entry="from-agent.txt"]').waitFor();
    // So does one an agent's shell writes straight to the disk, and one it
    // deletes disappears: the server watches the folder on view.
    writeFileSync(`${server.home}/from-shell.txt`, "written by a shell\n");
    await page.locator('[data-entry="from-shell.txt"]').waitFor();
    unlinkSync(`${server.home}/from-shell.txt`);
    await page.locator('[data-entry="from-shell.txt"]').waitFor({ state: "detached" });
    await shot(page, "files-desktop");
  });

  it("manages schedules and webhooks: create, refuse, edit, pause, run now, history, delete", async () => {
    await nav("Triggers");
    await page.getByText("New schedule").click();
    const form = page.getByRole("form", { name: "New schedule" });
    await form.getByLabel("Name").fill("nightly");
    await form.getByLabel("Cron (5 fields, or 6 with seconds first)").fill("0 3 * * *");
    await form.getByLabel("Time zone").fill("UTC");
    await form.getByLabel("Prompt").fill("nightly prompt");
    await form.getByLabel("Working directory").fill("");
    await form.getByRole("button", { name: "Create schedule" }).click();
    await expect.poll(() => text("[aria-label=Schedules]")).toContain("nightly prompt");
    // A bad cron is refused beside the form, in the docs' words; a name in use too.
    await form.getByLabel("Name").fill("broken");
    await form.getByLabel("Cron (5 fields, or 6 with seconds first)").fill("every day");
    await form.getByRole("button", { name: "Create schedule" }).click();
    await expect.poll(() => form.getByRole("alert").innerText()).toContain("5 fields");
    await expect.poll(() => form.getByRole("alert").innerText()).toContain("or 6 with seconds first");
    await form.getByLabel("Name").fill("nightly");
    await form.getByLabel("Cron (5 fields, or 6 with seconds first)").fill("0 4 * * *");
    await form.getByRole("button", { name: "Create schedule" }).click();
    await expect.poll(() => form.getByRole("alert").innerText()).toContain("taken");
    await page.getByText("New schedule").click();

    // Edit: a new prompt and cron; the list shows them.
    await page.getByRole("button", { name: "Edit schedule nightly" }).click();
    const edit = page.getByRole("form", { name: "Edit schedule nightly" });
    await edit.getByLabel("Prompt").fill("edited prompt");
    await edit.getByLabel("Cron (5 fields, or 6 with seconds first)").fill("30 2 * * 1-5");
    await edit.getByRole("button", { name: "Save schedule" }).click();
    await expect.poll(() => text("[aria-label=Schedules]")).toContain("edited prompt");
    await expect.poll(() => text("[aria-label=Schedules]")).toContain("30 2 * * 1-5");
    // Pause and resume.
    await page.getByRole("button", { name: "Pause schedule nightly" }).click();
    await expect.poll(() => text("[aria-label='schedule nightly']")).toMatch(/paused/);
    await page.getByRole("button", { name: "Resume schedule nightly" }).click();
    await expect.poll(() => text("[aria-label='schedule nightly']")).toMatch(/next 20/);
    // Run now: a task at once, in the firing history with a link to it.
    await page.getByRole("button", { name: "Run schedule nightly now" }).click();
    await page.locator(".toast", { hasText: "started a task" }).waitFor();
    await page.getByRole("button", { name: "History of schedule nightly" }).click();
    await expect.poll(() => text("[aria-label=Firings]")).toMatch(/fired[\s\S]*task [0-9a-f]{12}/);

    // A webhook: its secret and full URL shown once, with copy buttons.
    await page.getByText("New webhook").click();
    const wform = page.getByRole("form", { name: "New webhook" });
    await wform.getByLabel("Name").fill("on-push");
    await wform.getByLabel("Prompt template").fill("Review {{head_commit.id}}");
    await wform.getByRole("button", { name: "Create webhook" }).click();
    await expect.poll(() => text(".callout")).toContain("shown only now");
    const secret = await page.getByRole("textbox", { name: "Secret of webhook on-push" }).inputValue();
    const url = await page.locator(".callout").getByRole("textbox", { name: "Delivery URL of webhook on-push" }).inputValue();
    expect(url).toMatch(new RegExp(`^${server.api}/api/webhooks/[0-9a-f]{12}$`));
    await shot(page, "triggers-desktop");
    await page.getByRole("button", { name: "I have saved it" }).click();
    // A sender's delivery shows in the webhook's history with its task.
    const body = JSON.stringify({ head_commit: { id: "c0ffee" } });
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-delivery": "gh-1",
        "x-hub-signature-256": `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`,
      },
      body,
    });
    expect(res.status).toBe(202);
    await page.getByRole("button", { name: "History of webhook on-push" }).click();
    await expect.poll(() => text("[aria-label='Received deliveries']")).toMatch(/started[\s\S]*gh-1[\s\S]*task [0-9a-f]{12}/);
    await shot(page, "triggers-history-desktop");

    // Delete asks first, in the app's own dialog; Cancel keeps it.
    await page.getByRole("button", { name: "Delete schedule nightly" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();
    expect(await text("[aria-label=Schedules]")).toContain("nightly");
    await page.getByRole("button", { name: "Delete schedule nightly" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
    await expect.poll(() => text("[aria-label=Schedules]")).not.toContain("nightly");
  });

  it("kills a task", async () => {
    await nav("Tasks");
    await page.getByRole("link", { name: /e2e task/ }).click();
    await page.getByRole("button", { name: "Kill" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Kill" }).click();
    await expect.poll(() => text(".detail-head .badge"), { timeout: 15_000 }).toMatch(/killed/);
    await expect.poll(() => text(`.tasks`)).toMatch(/killed/);
    // The completion hook was delivered; the detail shows it, and Redeliver sends it again.
    await expect.poll(() => hookBodies.length, { timeout: 20_000 }).toBe(1);
    expect(JSON.parse(hookBodies[0]!)).toMatchObject({ status: "killed" });
    await expect.poll(() => text(".deliveries")).toMatch(/delivered/);
    await page.locator(".deliveries").getByRole("button", { name: "Redeliver" }).click();
    await expect.poll(() => hookBodies.length, { timeout: 20_000 }).toBe(2);
    // Live state: the header's dot says the event stream is connected.
    await expect.poll(() => page.locator(".dot").getAttribute("class")).toBe("dot up");
  });

  it("works at phone width, in both themes", async () => {
    await page.setViewportSize(PHONE);
    await page.goto(server.url + "/#/tasks");
    await page.locator(".tasks").waitFor();
    await shot(page, "tasks-list-phone");
    await page.getByRole("link", { name: /e2e task/ }).click();
    // The output of a task that ended before this view opened (and before a restart).
    await expect.poll(() => text(".output")).toContain("prompt: write the tests");
    await shot(page, "task-detail-phone");
    // Nothing wider than the screen.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.goto(server.url + "/#/files");
    await page.locator(".entries").waitFor();
    await shot(page, "files-phone");
    await page.goto(server.url + "/#/triggers");
    await page.locator(".triggers").waitFor();
    await shot(page, "triggers-phone");
    await page.goto(server.url + "/#/terminal");
    await page.getByRole("button", { name: "New shell" }).click();
    await expect.poll(() => text(".terminal-view [role=status]")).toBe("connected");
    // The PTY took the phone's size: far fewer columns than a desktop.
    await page.locator(".term").click();
    await page.keyboard.type("echo size=$(stty size)");
    await page.keyboard.press("Enter");
    await expect.poll(() => text(".term .xterm-rows")).toMatch(/size=\d+ \d+/);
    const [, rows, cols] = /size=(\d+) (\d+)/.exec(await text(".term .xterm-rows"))!;
    expect(Number(cols)).toBeLessThan(60);
    expect(Number(rows)).toBeGreaterThan(10);
    // The extra-keys row: Ctrl then "c" cancels the line typed so far.
    const keys = page.getByRole("toolbar", { name: "Extra keys" });
    await page.keyboard.type("echo cancelled");
    await keys.getByRole("button", { name: "Ctrl" }).click();
    // Typed at once, as a thumb would: the armed Ctrl must already apply.
    await page.keyboard.type("c");
    await expect.poll(() => keys.getByRole("button", { name: "Ctrl" }).getAttribute("aria-pressed")).toBe("false");
    await page.keyboard.type("echo kept");
    await page.keyboard.press("Enter");
    await page.locator(".term .xterm-rows > div", { hasText: /^kept$/ }).waitFor({ timeout: 15_000 });
    expect(await page.locator(".term .xterm-rows > div", { hasText: /^cancelled$/ }).count()).toBe(0);
    await shot(page, "terminal-phone");
    await page.emulateMedia({ colorScheme: "dark" });
    await page.goto(server.url + "/#/tasks");
    await page.locator(".tasks").waitFor();
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(bg).toBe("rgb(17, 20, 27)");
    await shot(page, "tasks-list-phone-dark");
    await page.setViewportSize(DESKTOP);
    await page.goto(server.url + "/#/tasks");
    await page.locator(".tasks").waitFor();
    await shot(page, "tasks-desktop-dark");
    await page.emulateMedia({ colorScheme: "light" });
  });

  it("is keyboard reachable: Alt+digit switches views, Tab reaches the controls", async () => {
    await page.goto(server.url + "/#/tasks");
    await page.locator(".tasks").waitFor();
    await page.keyboard.press("Alt+3");
    await expect.poll(() => page.evaluate(() => location.hash)).toBe("#/files");
    await page.keyboard.press("Alt+1");
    await expect.poll(() => page.evaluate(() => location.hash)).toBe("#/tasks");
    const seen = new Set<string>();
    for (let i = 0; i < 25; i++) {
      await page.keyboard.press("Tab");
      seen.add(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.innerText?.trim() ?? ""));
    }
    expect([...seen]).toEqual(expect.arrayContaining(["Tasks", "Terminal", "Files", "Triggers", "New task"]));
    // The theme button cycles auto → dark → light → auto, and is remembered.
    const theme = () => page.evaluate(() => document.documentElement.dataset.theme);
    await page.getByRole("button", { name: "Theme: auto" }).click();
    await expect.poll(theme).toBe("dark");
    await page.reload();
    await page.locator(".tasks").waitFor();
    await expect.poll(theme).toBe("dark");
    await page.getByRole("button", { name: "Theme: dark" }).click();
    await expect.poll(theme).toBe("light");
    await page.getByRole("button", { name: "Theme: light" }).click();
    await expect.poll(theme).toBe("light"); // auto, and the system says light
  });

  it("logs out: the session cookie stops working", async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("API token").waitFor();
    const r = await page.evaluate(async () => (await fetch("/api/tasks")).status);
    expect(r).toBe(401);
  });

  it("made no CSP violations and no script errors", () => {
    expect(problems, problems.join("\n")).toEqual([]);
  });
});
