// Server-sent events: one EventSource for the workspace (/api/events) shared
// by every view, and one per open task output. The browser reconnects an
// EventSource by itself after a network error (resuming a task stream at
// Last-Event-ID), but gives up for good when a reconnect gets an HTTP error
// (a restarting server, the stream cap): then we open a new one, with
// backoff. Whenever the stream opens, the first time included, views reload
// what they show (`resync`): events before that moment were not seen.

import { backoff } from "./state";

type Handler = (data: unknown) => void;

const WORKSPACE_EVENTS = ["task_created", "task_state", "task_removed", "hook_delivery", "system", "files_changed", "resync"];

function parse(e: Event): unknown {
  try {
    return JSON.parse((e as MessageEvent<string>).data);
  } catch {
    return {};
  }
}

export class LiveEvents {
  private source: EventSource | null = null;
  private handlers = new Map<string, Set<Handler>>();
  private statusHandlers = new Set<(up: boolean) => void>();
  private retry: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private running = false;
  up = false;

  start(): void {
    if (this.running) return;
    this.running = true;
    this.open();
  }

  private open(): void {
    const es = new EventSource("/api/events");
    this.source = es;
    es.onopen = () => {
      this.attempt = 0;
      this.setUp(true);
      // Events may have been missed — after a drop, and on the first open
      // too, between the views' first loads and this moment: views reload.
      this.emit("resync", {});
    };
    es.onerror = () => {
      this.setUp(false);
      if (es.readyState === EventSource.CLOSED && this.running) {
        this.retry = setTimeout(() => this.running && this.open(), backoff(this.attempt++));
      }
    };
    for (const name of WORKSPACE_EVENTS) es.addEventListener(name, (e) => this.emit(name, parse(e)));
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.retry);
    this.source?.close();
    this.source = null;
    this.setUp(false);
  }

  on(name: string, h: Handler): () => void {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(h);
    return () => set.delete(h);
  }

  onStatus(h: (up: boolean) => void): () => void {
    this.statusHandlers.add(h);
    return () => this.statusHandlers.delete(h);
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    for (const h of this.statusHandlers) h(up);
  }

  private emit(name: string, data: unknown): void {
    for (const h of this.handlers.get(name) ?? []) h(data);
  }
}

export const live = new LiveEvents();

/**
 * An EventSource that is opened again, with backoff, whenever the browser
 * gives up on it. `wire` adds the listeners to each new one and gets the
 * function that ends it for good, which is also what this returns.
 */
function reopening(url: () => string, wire: (es: EventSource, end: () => void) => void): () => void {
  let source: EventSource | null = null;
  let closed = false;
  let attempt = 0;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const end = () => {
    closed = true;
    clearTimeout(retry);
    source?.close();
  };
  const open = () => {
    const es = new EventSource(url());
    source = es;
    es.addEventListener("open", () => {
      attempt = 0;
    });
    wire(es, end);
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED && !closed) {
        retry = setTimeout(() => !closed && open(), backoff(attempt++));
      }
    };
  };
  open();
  return end;
}

/**
 * A task's output stream. `onOutput` gets text in order, exactly once: a new
 * stream after a failure resumes at the last offset seen.
 */
export function taskStream(
  id: string,
  cb: { onOutput: (text: string) => void; onEnd: () => void },
): () => void {
  let offset: string | null = null;
  const url = () => {
    const from = offset ? `?from=${encodeURIComponent(offset)}` : "";
    return `/api/tasks/${encodeURIComponent(id)}/stream${from}`;
  };
  return reopening(url, (es, end) => {
    es.addEventListener("output", (e) => {
      const m = e as MessageEvent<string>;
      if (m.lastEventId) offset = m.lastEventId;
      const d = parse(e) as { data?: string };
      if (typeof d.data === "string") cb.onOutput(d.data);
    });
    es.addEventListener("end", () => {
      end();
      cb.onEnd();
    });
  });
}

/**
 * Changes inside one directory of the home, whoever makes them (an agent's
 * shell included). `onChange` runs after each burst of changes, after a
 * reconnect (changes may have been missed), and once when the directory is
 * deleted or moved, after which the stream ends.
 */
export function dirWatch(path: string, onChange: () => void): () => void {
  let readies = 0;
  return reopening(
    () => `/api/files/watch?path=${encodeURIComponent(path)}`,
    (es, end) => {
      // The view loaded the directory itself; later `ready`s follow a drop.
      es.addEventListener("ready", () => {
        if (readies++ > 0) onChange();
      });
      es.addEventListener("changed", () => onChange());
      es.addEventListener("gone", () => {
        end();
        onChange();
      });
    },
  );
}
