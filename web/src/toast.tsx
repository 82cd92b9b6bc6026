// Short messages at the bottom of the screen: errors from the server (its
// JSON message, which names the problem) and confirmations.
import { useEffect, useState } from "preact/hooks";
import { ApiError } from "./api";

interface Toast {
  id: number;
  text: string;
  error: boolean;
}

let next = 1;
const listeners = new Set<(t: Toast) => void>();

export function toast(what: unknown, error = true): void {
  const text =
    what instanceof ApiError ? what.message : what instanceof Error ? what.message : String(what);
  const t = { id: next++, text, error: error && !(typeof what === "string" && !error) };
  for (const l of listeners) l(t);
}

/** A confirmation; it also clears the error messages shown before it (they are about what just worked). */
export function notice(text: string): void {
  toast(text, false);
}

export function Toasts() {
  const [items, setItems] = useState<Toast[]>([]);
  useEffect(() => {
    const add = (t: Toast) => {
      setItems((xs) => [...(t.error ? xs : xs.filter((x) => !x.error)).slice(-3), t]);
      setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== t.id)), t.error ? 8000 : 3000);
    };
    listeners.add(add);
    return () => listeners.delete(add);
  }, []);
  return (
    <div class="toasts" aria-live="polite">
      {items.map((t) => (
        <div class={t.error ? "toast error" : "toast"} role={t.error ? "alert" : "status"} key={t.id}>
          {t.text}
          <button class="link" aria-label="Dismiss" onClick={() => setItems((xs) => xs.filter((x) => x.id !== t.id))}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
