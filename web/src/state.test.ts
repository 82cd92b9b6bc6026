import { describe, expect, it } from "vitest";
import {
  span,
  buildLogLine,
  age,
  appendOutput,
  backoff,
  bytes,
  crumbs,
  duration,
  fileKind,
  filterTasks,
  newerTask,
  parentPath,
  parseRoute,
  percent,
  progressPercent,
  routeHash,
  upsertTask,
  validName,
  visibleEntries,
  withCtrl,
  type Task,
} from "./state";

function task(id: string, created: string, state: Task["state"] = "running", updated = created): Task {
  return {
    id,
    name: null,
    assistant: "fake",
    prompt: null,
    workdir: "",
    state,
    exit_code: null,
    error: null,
    tmux_session: `kc-${id}`,
    created_at: created,
    started_at: null,
    finished_at: null,
    updated_at: updated,
  };
}

describe("task list", () => {
  it("inserts newest first and replaces by id", () => {
    let l = upsertTask([], task("a", "2026-01-01T00:00:01Z"));
    l = upsertTask(l, task("b", "2026-01-01T00:00:03Z"));
    l = upsertTask(l, task("c", "2026-01-01T00:00:02Z"));
    expect(l.map((t) => t.id)).toEqual(["b", "c", "a"]);
    l = upsertTask(l, task("c", "2026-01-01T00:00:02Z", "succeeded", "2026-01-01T00:00:09Z"));
    expect(l.map((t) => t.id)).toEqual(["b", "c", "a"]);
    expect(l[1]!.state).toBe("succeeded");
  });

  it("ignores stale copies and never undoes a final state", () => {
    const done = task("a", "2026-01-01T00:00:01Z", "killed", "2026-01-01T00:00:05Z");
    let l = upsertTask([], done);
    l = upsertTask(l, task("a", "2026-01-01T00:00:01Z", "running", "2026-01-01T00:00:02Z"));
    expect(l[0]!.state).toBe("killed");
    l = upsertTask(l, task("a", "2026-01-01T00:00:01Z", "running", "2026-01-01T00:00:09Z"));
    expect(l[0]!.state).toBe("killed");
  });

  it("filters live and finished tasks", () => {
    const l = [task("a", "1", "running"), task("b", "2", "failed"), task("c", "3", "waiting_for_input")];
    expect(filterTasks(l, "live").map((t) => t.id)).toEqual(["a", "c"]);
    expect(filterTasks(l, "done").map((t) => t.id)).toEqual(["b"]);
    expect(filterTasks(l, "all")).toHaveLength(3);
  });
});

describe("formatting", () => {
  it("shows ages in the largest whole unit", () => {
    const now = Date.parse("2026-01-02T00:00:00Z");
    expect(age("2026-01-01T23:59:50Z", now)).toBe("10s");
    expect(age("2026-01-01T23:55:00Z", now)).toBe("5m");
    expect(age("2026-01-01T21:00:00Z", now)).toBe("3h");
    expect(age("2025-12-30T00:00:00Z", now)).toBe("3d");
    expect(age("2026-01-03T00:00:00Z", now)).toBe("0s");
    expect(age("garbage", now)).toBe("?");
  });

  it("shows sizes and shares", () => {
    expect(bytes(0)).toBe("0 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(300 * 1024 * 1024)).toBe("300 MiB");
    expect(bytes(null)).toBe("–");
    expect(percent(1, 4)).toBe(25);
    expect(percent(5, 0)).toBeNull();
    expect(percent(9, 4)).toBe(100);
    expect(progressPercent({ name: "x", loaded: 50, total: 200 })).toBe(25);
    expect(progressPercent({ name: "x", loaded: 0, total: 0 })).toBe(100);
  });
});

describe("output", () => {
  it("keeps the tail of long output, cut at a line start", () => {
    const long = "x".repeat(50) + "\n" + "y".repeat(60);
    const out = appendOutput("", long, 100);
    expect(out).toBe("y".repeat(60));
    expect(appendOutput("ab", "cd", 10)).toBe("abcd");
  });
});

describe("paths", () => {
  it("builds breadcrumbs and parents", () => {
    expect(crumbs("a/b")).toEqual([
      { name: "home", path: "" },
      { name: "a", path: "a" },
      { name: "b", path: "a/b" },
    ]);
    expect(parentPath("a/b/c")).toBe("a/b");
    expect(parentPath("a")).toBe("");
  });

  it("says what is wrong with a name", () => {
    expect(validName("notes.md")).toBeNull();
    expect(validName(" ")).toMatch(/needed/);
    expect(validName("..")).toMatch(/not names/);
    expect(validName("a/b")).toMatch(/without/);
    expect(validName(".env")).toMatch(/hidden/);
  });

  it("hides dot-files unless asked, and knows images by name", () => {
    const entries = [{ name: ".git" }, { name: "src" }, { name: ".env" }, { name: "a.txt" }];
    expect(visibleEntries(entries, false).map((e) => e.name)).toEqual(["src", "a.txt"]);
    expect(visibleEntries(entries, true)).toHaveLength(4);
    expect(fileKind("logo.PNG")).toBe("image");
    expect(fileKind("photo.jpeg")).toBe("image");
    expect(fileKind("diagram.svg")).toBe("image");
    expect(fileKind("notes.md")).toBe("other");
    expect(fileKind("png")).toBe("other");
  });
});

describe("routes", () => {
  it("round-trips views and arguments", () => {
    expect(parseRoute("")).toEqual({ view: "tasks", arg: "" });
    expect(parseRoute("#/terminal/t-1")).toEqual({ view: "terminal", arg: "t-1" });
    expect(parseRoute("#/files/src/a%20b")).toEqual({ view: "files", arg: "src/a b" });
    expect(parseRoute("#/nope/x")).toEqual({ view: "tasks", arg: "" });
    expect(parseRoute("#/network")).toEqual({ view: "network", arg: "" });
    expect(parseRoute("#/files/%E0%A4%A")).toEqual({ view: "files", arg: "" });
    expect(routeHash({ view: "files", arg: "src/a b" })).toBe("#/files/src/a%20b");
    expect(parseRoute(routeHash({ view: "files", arg: "x/y z" }))).toEqual({ view: "files", arg: "x/y z" });
  });

  it("backs off exponentially up to a cap", () => {
    expect([0, 1, 2, 10].map((a) => backoff(a))).toEqual([500, 1000, 2000, 10000]);
  });
});

describe("keys", () => {
  it("turns a key typed after the phone row's Ctrl into its control code", () => {
    expect(withCtrl("c")).toBe("\x03");
    expect(withCtrl("C")).toBe("\x03");
    expect(withCtrl("d")).toBe("\x04");
    expect(withCtrl("[")).toBe("\x1b");
    expect(withCtrl("1")).toBeNull();
    expect(withCtrl("ab")).toBeNull();
  });
});

describe("durations", () => {
  it("says how long a task ran, or has been running", () => {
    const t = { created_at: "2026-11-29T10:00:00Z", started_at: "2026-11-29T10:00:01Z", finished_at: "2026-11-29T10:00:05Z" };
    expect(duration(t, 0)).toBe("4s");
    expect(duration({ ...t, finished_at: "2026-11-29T10:02:06Z" }, 0)).toBe("2m 05s");
    expect(duration({ ...t, finished_at: "2026-11-29T11:03:01Z" }, 0)).toBe("1h 03m");
    expect(duration({ ...t, finished_at: null }, Date.parse("2026-11-29T10:00:31Z"))).toBe("30s");
  });

  it("says how long any span took (a build's), never below zero", () => {
    expect(span(1000, 3400)).toBe("2s");
    expect(span(0, 3_725_000)).toBe("1h 02m");
    expect(span(5000, 1000)).toBe("0s");
  });
});

describe("one task seen twice", () => {
  it("keeps the newer view, and a final state against a late running one", () => {
    const running = task("a", "2026-11-29T10:00:00Z", "running", "2026-11-29T10:00:01Z");
    const done = task("a", "2026-11-29T10:00:00Z", "succeeded", "2026-11-29T10:00:02Z");
    expect(newerTask(done, running)).toBe(done);
    expect(newerTask(running, done)).toBe(done);
    expect(newerTask(null, running)).toBe(running);
    const lateRunning = { ...running, updated_at: "2026-11-29T10:00:03Z" };
    expect(newerTask(done, lateRunning)).toBe(done);
  });
});

describe("build logs", () => {
  it("shows each kind of line of a build's log, and skips what is none", () => {
    expect(buildLogLine('{"log":"#5 [2/2] RUN make"}')).toEqual({ kind: "log", text: "#5 [2/2] RUN make" });
    expect(buildLogLine('{"status":"sending the context"}')).toEqual({ kind: "status", text: "sending the context" });
    expect(buildLogLine('{"error":"stopped after its time limit of 1800 s","id":"b1"}')).toEqual({
      kind: "error",
      text: "stopped after its time limit of 1800 s",
    });
    expect(
      buildLogLine('{"done":{"images":["r.io/team/app:1"],"digest":"sha256:aa","size":3145728,"seconds":12.34}}'),
    ).toEqual({ kind: "done", text: "pushed r.io/team/app:1 (3.0 MiB) in 12.3 s" });
    expect(buildLogLine("not json")).toBeNull();
    expect(buildLogLine('{"other":1}')).toBeNull();
    expect(buildLogLine("null")).toBeNull();
  });
});
