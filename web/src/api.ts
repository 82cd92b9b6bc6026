// Every call the dashboard makes. Same-origin only: the browser sends the
// session cookie (token mode), basic credentials or passes through the
// oauth2 proxy; writes are JSON (or a raw upload body) and carry the
// browser's own Origin / Sec-Fetch-Site, which the server checks.

import type { Task } from "./state";

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

async function fail(r: Response): Promise<never> {
  let code = "http_" + r.status;
  let message = `${r.status} ${r.statusText}`;
  try {
    const body = (await r.json()) as { code?: string; error?: string };
    if (body.code) code = body.code;
    if (body.error) message = body.error;
  } catch {
    // Not JSON (a proxy's page): keep the status line.
  }
  throw new ApiError(r.status, code, message);
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers = { ...init.headers, "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (!r.ok) return fail(r);
  if (r.status === 204 || r.status === 202) {
    const text = await r.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
  return (await r.json()) as T;
}

export interface Whoami {
  user: string;
  via: string;
  auth_mode: "basic" | "oauth2" | "token" | "none";
  read_only: boolean;
  /** The workspace goes out through an egress gateway (egress by name). */
  egress_gateway: boolean;
  /** The workspace has an egress gateway (egress by name, model keys, or both). */
  gateway: boolean;
  /** The workspace builds images through the operator. */
  builds: boolean;
}

/** An image build, as the workspace's history keeps it. */
export interface Build {
  id: string;
  images: string[];
  state: "running" | "succeeded" | "failed";
  digest: string | null;
  /** Bytes as pushed: manifest, config and compressed layers. */
  size: number | null;
  error: string | null;
  started_at: string;
  finished_at: string | null;
}

/** The month's model usage, as the egress gateway counts it. */
export interface ModelUsage {
  models: boolean;
  month?: string;
  renews?: string;
  budget?: number | null;
  used?: number;
  remaining?: number | null;
  input_tokens?: number;
  output_tokens?: number;
  requests?: number;
  by_provider?: Record<string, { input_tokens: number; output_tokens: number; requests: number }>;
  providers?: { name: string; api: string; has_key: boolean }[];
}

/** A connection the workspace's egress gateway refused. */
export interface EgressRefusal {
  at: string;
  host: string;
  port: number;
  decision: string;
  message: string;
}

export interface Stats {
  cpu_cores: number | null;
  cpu_limit_cores: number;
  memory_bytes: number | null;
  memory_limit_bytes: number | null;
  disk_used_bytes: number | null;
  disk_total_bytes: number | null;
}

export interface SystemInfo {
  name: string;
  version: string;
  read_only: boolean;
  stats: Stats | null;
}

export interface Assistant {
  name: string;
  description: string | null;
  prompt_delivery: string;
  /** The program its command runs, and whether it is installed here. */
  program: string;
  available: boolean;
  /** How to install it, when it is not. */
  install: string | null;
}

export interface NewTask {
  assistant?: string;
  workdir?: string;
  prompt?: string;
  name?: string;
  hook?: { url: string; secret?: string };
}

export interface Entry {
  name: string;
  kind: "file" | "dir" | "symlink" | "other";
  size: number;
  mtime: string;
  mode: string;
}

export interface Listing {
  path: string;
  entries: Entry[];
  truncated: boolean;
}

export interface Delivery {
  id: string;
  task_id: string;
  url: string;
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  created_at: string;
  finished_at: string | null;
  next_attempt_at: string | null;
}

/** The fields a schedule or webhook form sends; `null` clears a field in an edit. */
interface TargetFields {
  name?: string;
  assistant?: string | null;
  workdir?: string | null;
  hook?: { url: string; secret?: string } | null;
  paused?: boolean;
}

export interface ScheduleFields extends TargetFields {
  cron?: string;
  timezone?: string;
  prompt?: string | null;
  missed?: string;
}

export interface WebhookFields extends TargetFields {
  prompt_template?: string;
}

export interface Schedule {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  next_run: string | null;
  assistant: string | null;
  prompt: string | null;
  workdir: string | null;
  hook_url: string | null;
  missed: string;
  paused: boolean;
}

export interface Firing {
  due_at: string;
  fired_at: string;
  outcome: "fired" | "missed" | "failed";
  task_id: string | null;
  error: string | null;
}

export interface Webhook {
  id: string;
  name: string;
  path: string;
  /** The full address to give senders; null when the server cannot know it. */
  url: string | null;
  prompt_template: string;
  assistant: string | null;
  workdir: string | null;
  hook_url: string | null;
  paused: boolean;
  created_at: string;
  /** Only in the answer to create: shown once. */
  secret?: string;
}

export interface WebhookReceipt {
  delivery_id: string;
  received_at: string;
  outcome: "started" | "failed" | "paused" | "pending";
  task_id: string | null;
  error: string | null;
}

const q = encodeURIComponent;

export const api = {
  whoami: () => call<Whoami>("GET", "/api/whoami"),
  egressRefusals: () => call<{ gateway: boolean; refusals: EgressRefusal[] }>("GET", "/api/egress/refusals"),
  usage: () => call<ModelUsage>("GET", "/api/usage"),
  builds: () => call<{ enabled: boolean; builds: Build[] }>("GET", "/api/builds"),
  /** A build's log: each line as it comes (while the build runs), until it ends or `signal` aborts. */
  buildLog: (id: string, onLine: (line: string) => void, signal: AbortSignal) => followLines(`/api/builds/${encodeURIComponent(id)}/log`, onLine, signal),
  system: () => call<SystemInfo>("GET", "/api/system"),
  login: (token: string) => call<unknown>("POST", "/auth/login", { token }),
  logout: () => call<void>("POST", "/auth/logout"),

  assistants: () => call<{ default: string; assistants: Assistant[] }>("GET", "/api/assistants"),
  tasks: () => call<{ tasks: Task[]; next_cursor: number | null }>("GET", "/api/tasks?limit=200"),
  task: (id: string) => call<Task>("GET", `/api/tasks/${q(id)}`),
  createTask: (t: NewTask) => call<Task>("POST", "/api/tasks", t),
  message: (id: string, text: string) => call<void>("POST", `/api/tasks/${q(id)}/message`, { text }),
  keys: (id: string, keys: string[]) => call<void>("POST", `/api/tasks/${q(id)}/keys`, { keys }),
  kill: (id: string) => call<Task>("DELETE", `/api/tasks/${q(id)}`),
  /** Forget a finished task with its output log. */
  removeTask: (id: string) => call<void>("DELETE", `/api/tasks/${q(id)}?remove=true`),

  list: (path: string) => call<Listing>("GET", `/api/files?path=${q(path)}`),
  mkdir: (path: string) => call<unknown>("POST", "/api/files/mkdir", { path }),
  rename: (from: string, to: string) => call<unknown>("POST", "/api/files/rename", { from, to }),
  remove: (path: string, recursive: boolean) =>
    call<void>("DELETE", `/api/files?path=${q(path)}${recursive ? "&recursive=true" : ""}`),
  downloadUrl: (path: string) => `/api/files/content?path=${q(path)}`,
  readText,
  saveText,

  deliveries: (taskId?: string) =>
    call<{ deliveries: Delivery[] }>("GET", `/api/hooks/deliveries?limit=100${taskId ? `&task_id=${q(taskId)}` : ""}`),
  redeliver: (id: string) => call<unknown>("POST", `/api/hooks/deliveries/${q(id)}/redeliver`),
  schedules: () => call<{ schedules: Schedule[] }>("GET", "/api/schedules"),
  createSchedule: (s: ScheduleFields) => call<Schedule>("POST", "/api/schedules", s),
  updateSchedule: (id: string, s: ScheduleFields) => call<Schedule>("PATCH", `/api/schedules/${q(id)}`, s),
  runSchedule: (id: string) => call<{ task_id: string }>("POST", `/api/schedules/${q(id)}/run`),
  firings: (id: string) => call<{ firings: Firing[] }>("GET", `/api/schedules/${q(id)}/firings`),
  deleteSchedule: (id: string) => call<void>("DELETE", `/api/schedules/${q(id)}`),
  webhooks: () => call<{ webhooks: Webhook[] }>("GET", "/api/webhooks"),
  createWebhook: (w: WebhookFields) => call<Webhook>("POST", "/api/webhooks", w),
  updateWebhook: (id: string, w: WebhookFields) => call<Webhook>("PATCH", `/api/webhooks/${q(id)}`, w),
  webhookDeliveries: (id: string) => call<{ deliveries: WebhookReceipt[] }>("GET", `/api/webhooks/${q(id)}/deliveries`),
  deleteWebhook: (id: string) => call<void>("DELETE", `/api/webhooks/${q(id)}`),
};

/** Read a streamed body line by line (NDJSON), calling `onLine` for each. */
async function followLines(path: string, onLine: (line: string) => void, signal: AbortSignal): Promise<void> {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/x-ndjson" }, signal });
  if (!r.ok) return fail(r);
  if (!r.body) return;
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    let end;
    while ((end = pending.indexOf("\n")) >= 0) {
      onLine(pending.slice(0, end));
      pending = pending.slice(end + 1);
    }
  }
  if (pending) onLine(pending);
}

/**
 * Up to `limit` bytes of a file of `size` bytes, decoded as UTF-8, with
 * the ETag a conditional save sends back. `binary`: not text (a NUL byte,
 * or bytes that are not UTF-8).
 */
async function readText(
  path: string,
  limit: number,
  size: number,
): Promise<{ text: string; etag: string | null; truncated: boolean; binary: boolean }> {
  const partial = size > limit;
  const headers: Record<string, string> = partial ? { Range: `bytes=0-${limit - 1}` } : {};
  const r = await fetch(`/api/files/content?path=${q(path)}`, { credentials: "same-origin", headers });
  if (!r.ok) return fail(r);
  const buf = new Uint8Array(await r.arrayBuffer());
  const etag = r.headers.get("ETag");
  if (buf.subarray(0, 8000).includes(0)) return { text: "", etag, truncated: partial, binary: true };
  try {
    // A cut in the middle of a character is not an error when the file goes on.
    const text = new TextDecoder("utf-8", { fatal: true }).decode(buf, { stream: partial });
    return { text, etag, truncated: partial, binary: false };
  } catch {
    return { text: "", etag, truncated: partial, binary: true };
  }
}

/**
 * Save text over a file, atomically; with `etag`, only over the version
 * that was read (412 `precondition_failed` if it changed meanwhile).
 */
async function saveText(path: string, text: string, etag: string | null): Promise<{ etag: string | null }> {
  const headers: Record<string, string> = { "Content-Type": "text/plain; charset=utf-8", Accept: "application/json" };
  if (etag) headers["If-Match"] = etag;
  const r = await fetch(`/api/files/content?path=${q(path)}`, { method: "PUT", credentials: "same-origin", headers, body: text });
  if (!r.ok) return fail(r);
  const done = (await r.json()) as { etag?: string | null };
  return { etag: done.etag ?? r.headers.get("ETag") };
}

/**
 * Upload one file with progress (fetch cannot report upload progress).
 * The body is the raw file; the server writes it to a temp file and renames
 * it into place, so an aborted upload leaves nothing behind.
 */
export function upload(
  path: string,
  file: Blob,
  onProgress: (loaded: number, total: number) => void,
): { done: Promise<void>; abort: () => void } {
  const xhr = new XMLHttpRequest();
  const done = new Promise<void>((resolve, reject) => {
    xhr.open("PUT", `/api/files/content?path=${q(path)}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      let code = "http_" + xhr.status;
      let message = `${xhr.status} ${xhr.statusText}`;
      try {
        const b = JSON.parse(xhr.responseText) as { code?: string; error?: string };
        code = b.code ?? code;
        message = b.error ?? message;
      } catch {
        // keep the status line
      }
      reject(new ApiError(xhr.status, code, message));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the upload was interrupted (network error)"));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "upload cancelled"));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}
