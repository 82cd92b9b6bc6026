// Terminal: xterm.js on a WebSocket to a PTY attached to a task's tmux
// session (see crates/workspace/src/terminal.rs for the wire format).
// Without a task: pick a live one or start a fresh shell (a `shell` task,
// so it survives reconnects and shows in the task list).
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type Whoami } from "../api";
import { backoff, isFinal, withCtrl } from "../state";
import { go } from "../nav";
import { notice, toast } from "../toast";
import { StateBadge, useTasks } from "./tasks";

type Conn = "connecting" | "open" | "retrying" | "ended";

export function TerminalView(props: { me: Whoami; taskId: string }) {
  if (!props.taskId) return <Picker me={props.me} />;
  return <Term key={props.taskId} id={props.taskId} readOnly={props.me.read_only} />;
}

function Picker(props: { me: Whoami }) {
  const tasks = useTasks();
  const liveTasks = tasks.filter((t) => !isFinal(t.state));
  const shell = async () => {
    try {
      const t = await api.createTask({ assistant: "shell", name: "shell" });
      go({ view: "terminal", arg: t.id });
    } catch (e) {
      toast(e);
    }
  };
  return (
    <div class="card picker">
      <h2>Terminal</h2>
      {!props.me.read_only && (
        <button class="primary" onClick={() => void shell()}>
          New shell
        </button>
      )}
      <h3>Attach to a running task</h3>
      {liveTasks.length === 0 ? (
        <p class="muted">No running tasks.</p>
      ) : (
        <ul class="plain">
          {liveTasks.map((t) => (
            <li key={t.id}>
              <a class="task-row" href={`#/terminal/${t.id}`}>
                <StateBadge state={t.state} exit={t.exit_code} />
                <span class="task-title">{t.name || t.prompt || t.id}</span>
                <span class="muted small">{t.assistant}</span>
              </a>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** The phone row: keys a touch keyboard lacks. Ctrl applies to the next key typed. */
const EXTRA_KEYS: { label: string; name: string; send?: string; app?: string }[] = [
  { label: "Esc", name: "Escape", send: "\x1b" },
  { label: "Ctrl", name: "Control" },
  { label: "Tab", name: "Tab", send: "\t" },
  { label: "←", name: "Left", send: "\x1b[D", app: "\x1bOD" },
  { label: "↑", name: "Up", send: "\x1b[A", app: "\x1bOA" },
  { label: "↓", name: "Down", send: "\x1b[B", app: "\x1bOB" },
  { label: "→", name: "Right", send: "\x1b[C", app: "\x1bOC" },
  { label: "|", name: "Pipe", send: "|" },
  { label: "~", name: "Tilde", send: "~" },
];

function Term(props: { id: string; readOnly: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const [conn, setConn] = useState<Conn>("connecting");
  const [why, setWhy] = useState("");
  const [ctrl, setCtrlState] = useState(false);
  // The ref changes at once, not at the next render: a key typed right after
  // the Ctrl tap must already see it armed.
  const ctrlRef = useRef(false);
  const setCtrl = (armed: boolean) => {
    ctrlRef.current = armed;
    setCtrlState(armed);
  };
  // Set once the terminal exists: send bytes as if typed, and whether the
  // application asked for application cursor keys (vim, less).
  const send = useRef<((data: string) => void) | null>(null);
  const appCursor = useRef<() => boolean>(() => false);
  const task = useTasks().find((t) => t.id === props.id);

  useEffect(() => {
    let disposed = false;
    let socket: WebSocket | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let attempt = 0;
    const cleanups: (() => void)[] = [];

    void (async () => {
      // xterm.js is loaded only when a terminal is opened: the task list
      // does not pay for it.
      const [{ Terminal }, { FitAddon }] = await Promise.all([import("@xterm/xterm"), import("@xterm/addon-fit")]);
      await import("@xterm/xterm/css/xterm.css");
      if (disposed || !box.current) return;
      const term = new Terminal({
        cursorBlink: !props.readOnly,
        disableStdin: props.readOnly,
        // With the line height at 1.2, underscores stay inside their row (at
        // 1.0 DejaVu Sans Mono draws them below it, where they are cut off).
        fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, \"DejaVu Sans Mono\", \"Liberation Mono\", monospace",
        fontSize: 14,
        lineHeight: 1.2,
        scrollback: 5000,
        theme: { background: cssVar("--term-bg"), foreground: cssVar("--term-fg"), cursor: cssVar("--accent") },
      });
      const fit = new FitAddon();
      term.loadAddon(fit);
      term.open(box.current);
      fit.fit();
      term.focus();
      cleanups.push(() => term.dispose());

      const enc = new TextEncoder();
      const sendInput = (data: string) => {
        if (!props.readOnly && socket?.readyState === WebSocket.OPEN) socket.send(enc.encode(data));
      };
      send.current = (data: string) => {
        sendInput(data);
        term.focus();
      };
      appCursor.current = () => term.modes.applicationCursorKeysMode;
      const sub = term.onData((data) => {
        // The phone row's Ctrl turns the next key typed into its control code.
        if (ctrlRef.current) {
          setCtrl(false);
          const c = withCtrl(data);
          if (c) return sendInput(c);
        }
        sendInput(data);
      });
      cleanups.push(() => sub.dispose());
      const resizeSub = term.onResize(({ cols, rows }) => {
        if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "resize", cols, rows }));
      });
      cleanups.push(() => resizeSub.dispose());
      const ro = new ResizeObserver(() => fit.fit());
      ro.observe(box.current);
      cleanups.push(() => ro.disconnect());

      // Copy: selecting copies (Ctrl+Shift+C also); paste: the browser's paste
      // event goes through xterm to onData.
      term.attachCustomKeyEventHandler((e) => {
        if (e.type === "keydown" && e.ctrlKey && e.shiftKey && e.code === "KeyC") {
          void navigator.clipboard?.writeText(term.getSelection());
          return false;
        }
        return true;
      });

      const connect = () => {
        if (disposed) return;
        setConn(attempt === 0 ? "connecting" : "retrying");
        const scheme = location.protocol === "https:" ? "wss" : "ws";
        const url = `${scheme}://${location.host}/api/tasks/${encodeURIComponent(props.id)}/terminal?cols=${term.cols}&rows=${term.rows}`;
        const ws = new WebSocket(url);
        ws.binaryType = "arraybuffer";
        socket = ws;
        ws.onopen = () => {
          attempt = 0;
          setConn("open");
          setWhy("");
        };
        ws.onmessage = (e) => {
          if (e.data instanceof ArrayBuffer) term.write(new Uint8Array(e.data));
        };
        ws.onclose = async (e) => {
          if (disposed) return;
          if (e.code === 1000) {
            setConn("ended");
            setWhy(e.reason || "the session ended");
            return;
          }
          // Refused before the upgrade (task ended, not allowed) or a network
          // blip: ask the API which, then retry only the blip.
          try {
            const t = await api.task(props.id);
            if (isFinal(t.state)) {
              setConn("ended");
              setWhy(`the task ended (${t.state})`);
              return;
            }
          } catch (err) {
            const status = (err as { status?: number }).status;
            if (status && status !== 0 && status < 500) {
              setConn("ended");
              setWhy((err as Error).message);
              return;
            }
          }
          setConn("retrying");
          retry = setTimeout(connect, backoff(attempt++));
        };
      };
      connect();
    })();

    return () => {
      disposed = true;
      clearTimeout(retry);
      socket?.close();
      cleanups.reverse().forEach((f) => f());
    };
  }, [props.id, props.readOnly]);

  const closeShell = async () => {
    try {
      await api.kill(props.id);
      notice("Shell closed");
      go({ view: "terminal", arg: "" });
    } catch (e) {
      toast(e);
    }
  };
  const title = task ? task.name && task.name !== "shell" ? task.name : task.prompt || task.name || props.id : props.id;
  return (
    <div class="terminal-view">
      <div class="toolbar">
        <a class="back" href="#/terminal" aria-label="Back to the terminal list">
          ←
        </a>
        <span class="task-title">
          <a href={`#/tasks/${props.id}`} title={`task ${props.id}`}>
            {title}
          </a>
        </span>
        <span class={`badge conn-${conn}`} role="status">
          {conn === "open" ? (props.readOnly ? "view only" : "connected") : conn === "retrying" ? "reconnecting…" : conn}
        </span>
        {why && <span class="muted small">{why}</span>}
        {!props.readOnly && task?.assistant === "shell" && !isFinal(task.state) && (
          <button class="small" onClick={() => void closeShell()}>
            Close shell
          </button>
        )}
      </div>
      <div class="term" ref={box} data-conn={conn} />
      {!props.readOnly && conn === "open" && (
        <div class="extra-keys" role="toolbar" aria-label="Extra keys">
          {EXTRA_KEYS.map((k) =>
            k.name === "Control" ? (
              <button
                key={k.name}
                class={ctrl ? "small armed" : "small"}
                aria-pressed={ctrl}
                onMouseDown={(e) => e.preventDefault()}
                onClick={() => setCtrl(!ctrlRef.current)}
              >
                {k.label}
              </button>
            ) : (
              <button
                key={k.name}
                class="small"
                aria-label={k.name}
                // Keep the focus (and the phone's keyboard) in the terminal.
                onMouseDown={(e) => e.preventDefault()}
                onClick={() => send.current?.((appCursor.current() && k.app) || k.send!)}
              >
                {k.label}
              </button>
            ),
          )}
        </div>
      )}
    </div>
  );
}
