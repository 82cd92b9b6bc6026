// Pure state logic of the dashboard: no DOM, no network. Everything here is
// unit-tested (state.test.ts); the views only call it.

export type TaskState =
  | "starting"
  | "running"
  | "waiting_for_input"
  | "succeeded"
  | "failed"
  | "killed"
  | "lost";

export interface Task {
  id: string;
  name: string | null;
  assistant: string;
  prompt: string | null;
  workdir: string;
  state: TaskState;
  exit_code: number | null;
  error: string | null;
  tmux_session: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
}

const FINAL: ReadonlySet<TaskState> = new Set(["succeeded", "failed", "killed", "lost"]);

export function isFinal(s: TaskState): boolean {
  return FINAL.has(s);
}

/** Newest first, as the server lists them. */
function byNewest(a: Task, b: Task): number {
  return b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id);
}

/**
 * Fold one task into the list: a task the list has is replaced unless the
 * list's copy is newer (events and a list reload can cross); a new one is
 * inserted in order.
 */
/**
 * The later of two views of one task: an answer that left the server
 * before an event can arrive after it, and must not undo it.
 */
export function newerTask(old: Task | null | undefined, t: Task): Task {
  if (!old) return t;
  if (old.updated_at > t.updated_at) return old;
  // A final state is final: a late "running" never undoes it.
  if (isFinal(old.state) && !isFinal(t.state)) return old;
  return t;
}

export function upsertTask(tasks: readonly Task[], t: Task): Task[] {
  const i = tasks.findIndex((x) => x.id === t.id);
  if (i >= 0) {
    const kept = newerTask(tasks[i], t);
    if (kept === tasks[i]) return tasks as Task[];
    const next = tasks.slice();
    next[i] = kept;
    return next;
  }
  return [...tasks, t].sort(byNewest);
}

export type TaskFilter = "all" | "live" | "done";

export function filterTasks(tasks: readonly Task[], f: TaskFilter): Task[] {
  if (f === "live") return tasks.filter((t) => !isFinal(t.state));
  if (f === "done") return tasks.filter((t) => isFinal(t.state));
  return tasks.slice();
}

export function stateLabel(s: TaskState): string {
  return s === "waiting_for_input" ? "waiting" : s;
}

/** "12s", "5m", "3h", "2d": how long ago `iso` was, seen at `now`. */
export function age(iso: string, now: number): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "?";
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** An RFC 3339 time as "2026-11-29 14:05" (UTC, as the server sends it). */
export function shortTime(iso: string): string {
  return `${iso.replace("T", " ").slice(0, 16)} UTC`;
}

/** How long a task ran (or has been running, at `now`): "4s", "2m 05s", "1h 02m". */
export function duration(t: Pick<Task, "started_at" | "created_at" | "finished_at">, now: number): string {
  return span(Date.parse(t.started_at ?? t.created_at), t.finished_at ? Date.parse(t.finished_at) : now);
}

/** A span of milliseconds in words: "4s", "2m 05s", "1h 02m". */
export function span(from: number, to: number): string {
  const s = Math.max(0, Math.round((to - from) / 1000));
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
}

/** Drop a removed task from the list. */
export function withoutTask(tasks: readonly Task[], id: string): Task[] {
  return tasks.filter((t) => t.id !== id);
}

export function bytes(n: number | null | undefined): string {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function percent(used: number | null | undefined, total: number | null | undefined): number | null {
  if (used == null || total == null || total <= 0) return null;
  return Math.min(100, Math.round((used / total) * 100));
}

/**
 * The output pane keeps the last `cap` characters: long-running agents print
 * megabytes, and the browser should not hold them all.
 */
export function appendOutput(buf: string, chunk: string, cap = 200_000): string {
  const next = buf + chunk;
  if (next.length <= cap) return next;
  const cut = next.length - cap;
  const nl = next.indexOf("\n", cut);
  return next.slice(nl >= 0 && nl - cut < 1000 ? nl + 1 : cut);
}

// ---- paths in the file browser (always relative to the home, "" = home) ----

const IMAGE = /\.(png|jpe?g|gif|webp|avif|bmp|ico|svg)$/i;

/** How the Files view previews a file, by its name. */
export function fileKind(name: string): "image" | "other" {
  return IMAGE.test(name) ? "image" : "other";
}

/** The entries to show: dot-files only when asked for. */
export function visibleEntries<T extends { name: string }>(entries: readonly T[], showHidden: boolean): T[] {
  return showHidden ? [...entries] : entries.filter((e) => !e.name.startsWith("."));
}

export function joinPath(dir: string, name: string): string {
  return dir ? `${dir}/${name}` : name;
}

export function parentPath(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

export function crumbs(p: string): { name: string; path: string }[] {
  const out = [{ name: "home", path: "" }];
  let acc = "";
  for (const part of p.split("/").filter(Boolean)) {
    acc = joinPath(acc, part);
    out.push({ name: part, path: acc });
  }
  return out;
}

/** A file name the user typed: one path segment, nothing the server would refuse anyway. */
export function validName(name: string): string | null {
  const n = name.trim();
  if (!n) return "a name is needed";
  if (n === "." || n === "..") return "`.` and `..` are not names";
  if (n.includes("/")) return "one name, without `/`";
  if (n.startsWith(".")) return "names starting with `.` are hidden here";
  return null;
}

// ---- routing: the fragment says which view (#/tasks/ID, #/terminal/ID, #/files/dir) ----

export type View = "tasks" | "terminal" | "files" | "triggers" | "network" | "builds";

export interface Route {
  view: View;
  /** Task id (tasks, terminal) or directory (files). */
  arg: string;
}

const VIEWS: readonly View[] = ["tasks", "terminal", "files", "triggers", "network", "builds"];

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#\/?/, "");
  const slash = raw.indexOf("/");
  const head = slash < 0 ? raw : raw.slice(0, slash);
  const rest = slash < 0 ? "" : raw.slice(slash + 1);
  const view = (VIEWS as readonly string[]).includes(head) ? (head as View) : "tasks";
  let arg = "";
  try {
    arg = decodeURIComponent(rest);
  } catch {
    arg = "";
  }
  return { view, arg: view === (head as View) ? arg : "" };
}

export function routeHash(r: Route): string {
  return `#/${r.view}${r.arg ? "/" + r.arg.split("/").map(encodeURIComponent).join("/") : ""}`;
}

// ---- upload progress ----

export interface Progress {
  name: string;
  loaded: number;
  total: number;
}

export function progressPercent(p: Progress): number {
  return p.total > 0 ? Math.min(100, Math.floor((p.loaded / p.total) * 100)) : 100;
}

// ---- reconnecting: wait a little longer after each failure, up to a cap ----

export function backoff(attempt: number, base = 500, cap = 10_000): number {
  return Math.min(cap, base * 2 ** Math.max(0, attempt));
}

/** What Ctrl does to one typed character (Ctrl+C is \x03), or null when it does nothing. */
export function withCtrl(data: string): string | null {
  if (data.length !== 1) return null;
  const c = data.toUpperCase().charCodeAt(0);
  return c >= 0x40 && c <= 0x5f ? String.fromCharCode(c & 0x1f) : null;
}

/** One line of a build's log as the Builds view shows it. */
export interface BuildLogLine {
  kind: "log" | "status" | "error" | "done";
  text: string;
}

/** A line of a build's NDJSON log (`{"log"}`, `{"status"}`, `{"error"}`, `{"done"}`), for display; null if it is none of them. */
export function buildLogLine(raw: string): BuildLogLine | null {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.log === "string") return { kind: "log", text: o.log };
  if (typeof o.status === "string") return { kind: "status", text: o.status };
  if (typeof o.error === "string") return { kind: "error", text: o.error };
  if (typeof o.done === "object" && o.done !== null) {
    const d = o.done as Record<string, unknown>;
    const images = Array.isArray(d.images) ? d.images.join(", ") : "";
    const secs = typeof d.seconds === "number" ? ` in ${d.seconds.toFixed(1)} s` : "";
    const size = typeof d.size === "number" ? ` (${bytes(d.size)})` : "";
    return { kind: "done", text: `pushed ${images}${size}${secs}` };
  }
  return null;
}
