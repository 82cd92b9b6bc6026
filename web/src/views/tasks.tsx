// Tasks: the live list, the "new task" form, and one task's detail with its
// live output, follow-up box, keys, kill and hook deliveries.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { parseAnsi, segmentProps } from "../ansi";
import { api, type Delivery, type Whoami } from "../api";
import { AssistantSelect, useAssistants } from "../components/assistant-select";
import { confirmAction } from "../components/confirm";
import { live, taskStream } from "../live";
import {
  age,
  appendOutput,
  filterTasks,
  isFinal,
  stateLabel,
  duration,
  newerTask,
  upsertTask,
  withoutTask,
  type Task,
  type TaskFilter,
  type TaskState,
} from "../state";
import { go } from "../nav";
import { notice, toast } from "../toast";
import { field } from "../form";

function useNow(every = 5000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), every);
    return () => clearInterval(t);
  }, [every]);
  return now;
}

export function StateBadge(props: { state: TaskState; exit: number | null }) {
  return (
    <span class={`badge st-${props.state}`}>
      {stateLabel(props.state)}
      {props.exit != null && props.state !== "running" ? ` (${props.exit})` : ""}
    </span>
  );
}

/** Every task, kept current by the workspace's event stream. */
export function useTasks(): Task[] {
  const [tasks, setTasks] = useState<Task[]>([]);
  useEffect(() => {
    const load = () =>
      api
        .tasks()
        .then((p) => setTasks((cur) => p.tasks.reduce((l, t) => upsertTask(l, t), cur)))
        .catch(toast);
    void load();
    const onTask = (d: unknown) => setTasks((cur) => upsertTask(cur, (d as { task: Task }).task));
    const offs = [
      live.on("task_created", onTask),
      live.on("task_state", onTask),
      live.on("task_removed", (d) => setTasks((cur) => withoutTask(cur, (d as { id: string }).id))),
      live.on("resync", () => void load()),
    ];
    return () => offs.forEach((f) => f());
  }, []);
  return tasks;
}

export function TasksView(props: { me: Whoami; selected: string }) {
  const tasks = useTasks();
  const [filter, setFilter] = useState<TaskFilter>("all");
  const [creating, setCreating] = useState(false);
  const now = useNow();
  const shown = filterTasks(tasks, filter);
  const selected = props.selected;

  return (
    <div class={selected || creating ? "split has-detail" : "split"}>
      <section class="list-pane" aria-label="Tasks">
        <div class="toolbar">
          <div class="seg" role="group" aria-label="Show">
            {(["all", "live", "done"] as TaskFilter[]).map((f) => (
              <button class={filter === f ? "on" : ""} aria-pressed={filter === f} onClick={() => setFilter(f)}>
                {f}
              </button>
            ))}
          </div>
          {!props.me.read_only && (
            <button
              class="primary"
              onClick={() => {
                setCreating(true);
                go({ view: "tasks", arg: "" });
              }}
            >
              New task
            </button>
          )}
        </div>
        {shown.length === 0 ? (
          <p class="muted empty">{tasks.length ? "No tasks match." : "No tasks yet."}</p>
        ) : (
          <ul class="tasks">
            {shown.map((t) => (
              <li key={t.id}>
                <a
                  class={t.id === selected ? "task-row selected" : "task-row"}
                  href={`#/tasks/${t.id}`}
                  onClick={() => setCreating(false)}
                  data-task={t.id}
                >
                  <StateBadge state={t.state} exit={t.exit_code} />
                  <span class="task-title">{t.name || t.prompt || t.id}</span>
                  <span class="muted small">{t.assistant}</span>
                  <span class="muted small" title={`created ${t.created_at}; ran ${duration(t, now)}`}>
                    {age(t.created_at, now)}
                  </span>
                </a>
              </li>
            ))}
          </ul>
        )}
      </section>
      <section class="detail-pane">
        {creating && !selected ? (
          <NewTask
            onDone={(t) => {
              setCreating(false);
              if (t) go({ view: "tasks", arg: t.id });
            }}
          />
        ) : selected ? (
          <TaskDetail key={selected} id={selected} me={props.me} known={tasks.find((t) => t.id === selected)} />
        ) : (
          <p class="muted empty">Select a task{props.me.read_only ? "" : ", or start a new one"}.</p>
        )}
      </section>
    </div>
  );
}

function NewTask(props: { onDone: (t: Task | null) => void }) {
  const known = useAssistants();
  const [assistant, setAssistant] = useState("");
  const [workdir, setWorkdir] = useState("");
  const [prompt, setPrompt] = useState("");
  const [name, setName] = useState("");
  const [hook, setHook] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  useEffect(() => {
    if (known && !assistant) setAssistant(known.default);
  }, [known]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const t = await api.createTask({
        assistant: assistant || undefined,
        workdir: workdir.trim() || undefined,
        prompt: prompt.trim() ? prompt : undefined,
        name: name.trim() || undefined,
        hook: hook.trim() ? { url: hook.trim() } : undefined,
      });
      notice(`Task ${t.id} started`);
      props.onDone(t);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card form" onSubmit={submit} aria-label="New task">
      <h2>New task</h2>
      <label for="nt-assistant">Assistant</label>
      <AssistantSelect id="nt-assistant" value={assistant} onChange={setAssistant} />
      <label for="nt-workdir">Working directory</label>
      <input id="nt-workdir" placeholder="home (or a path inside it)" value={workdir} onInput={field(setWorkdir)} />
      <label for="nt-prompt">Prompt (optional)</label>
      <textarea id="nt-prompt" rows={5} value={prompt} onInput={field(setPrompt)} />
      <label for="nt-name">Name (optional)</label>
      <input id="nt-name" value={name} onInput={field(setName)} />
      <label for="nt-hook">Completion hook URL (optional)</label>
      <input id="nt-hook" type="url" placeholder="https://…" value={hook} onInput={field(setHook)} />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="row">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Starting…" : "Start"}
        </button>
        <button type="button" onClick={() => props.onDone(null)}>
          Cancel
        </button>
      </div>
    </form>
  );
}

const KEYS: { key: string; label: string }[] = [
  { key: "Enter", label: "Enter" },
  { key: "Escape", label: "Esc" },
  { key: "Tab", label: "Tab" },
  { key: "Up", label: "↑" },
  { key: "Down", label: "↓" },
  { key: "y", label: "y" },
  { key: "n", label: "n" },
  { key: "C-c", label: "Ctrl-C" },
];

function TaskDetail(props: { id: string; me: Whoami; known: Task | undefined }) {
  const [task, setTask] = useState<Task | null>(props.known ?? null);
  const [output, setOutput] = useState("");
  const [ended, setEnded] = useState(false);
  const [text, setText] = useState("");
  const [deliveries, setDeliveries] = useState<Delivery[]>([]);
  const pre = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  const id = props.id;

  useEffect(() => {
    const known = props.known;
    if (known) setTask((cur) => newerTask(cur, known));
  }, [props.known]);

  useEffect(() => {
    // Whichever arrives last, the list's event or this answer, the newer wins.
    api
      .task(id)
      .then((t) => setTask((cur) => newerTask(cur, t)))
      .catch(toast);
    const loadDeliveries = () => api.deliveries(id).then((d) => setDeliveries(d.deliveries)).catch(() => undefined);
    void loadDeliveries();
    const off = live.on("hook_delivery", (d) => {
      if ((d as { task_id: string }).task_id === id) void loadDeliveries();
    });
    const close = taskStream(id, {
      // Kept with its colour escapes; the pane renders them (ansi.ts).
      onOutput: (t) => setOutput((o) => appendOutput(o, t)),
      onEnd: () => {
        setEnded(true);
        void loadDeliveries();
      },
    });
    return () => {
      close();
      off();
    };
  }, [id]);

  // Follow the output while the reader is at the bottom.
  useEffect(() => {
    const el = pre.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [output]);

  const act = async (f: () => Promise<unknown>, done?: string) => {
    try {
      await f();
      if (done) notice(done);
    } catch (e) {
      toast(e);
    }
  };

  const canWrite = !props.me.read_only && task != null && !isFinal(task.state);
  const now = useNow();
  // A new task from this one's assistant, prompt, folder and name (its
  // environment values and hook secret are the server's alone: not copied).
  const rerun = async (t: Task) => {
    try {
      const again = await api.createTask({
        assistant: t.assistant,
        prompt: t.prompt ?? undefined,
        workdir: t.workdir,
        name: t.name ?? undefined,
      });
      notice("Started again");
      go({ view: "tasks", arg: again.id });
    } catch (e) {
      toast(e);
    }
  };
  const remove = async () => {
    const ok = await confirmAction({
      title: `Delete task ${task?.name || id}?`,
      body: "Its output log and history are deleted too.",
      action: "Delete",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.removeTask(id);
      notice("Task deleted");
      go({ view: "tasks", arg: "" });
    } catch (e) {
      toast(e);
    }
  };
  const send = async (e: Event) => {
    e.preventDefault();
    if (!text.trim()) return;
    await act(() => api.message(id, text));
    setText("");
  };

  return (
    <article class="task-detail" aria-label={`Task ${id}`}>
      <div class="detail-head">
        <a class="back" href="#/tasks" aria-label="Back to the list">
          ←
        </a>
        <h2 class="task-title">{task?.name || task?.prompt || id}</h2>
        {task && <StateBadge state={task.state} exit={task.exit_code} />}
      </div>
      {task && (
        <p class="muted small meta">
          {task.assistant} · {task.workdir || "~"} · {isFinal(task.state) ? "ran" : "running for"} {duration(task, now)} · <code>{id}</code>
          {task.error ? ` · ${task.error}` : ""}
        </p>
      )}
      {task?.prompt && task.name && <p class="prompt-line small">{task.prompt}</p>}
      <div class="row wrap">
        {task && !isFinal(task.state) && (
          <a class="button" href={`#/terminal/${id}`}>
            Open in terminal
          </a>
        )}
        {task && isFinal(task.state) && !props.me.read_only && (
          <>
            <button onClick={() => void rerun(task)}>Run again</button>
            <button class="danger" onClick={() => void remove()}>
              Delete
            </button>
          </>
        )}
        {canWrite && (
          <button
            class="danger"
            onClick={() =>
              void confirmAction({ title: `Kill task ${task?.name || id}?`, body: "Its session ends; the output so far is kept.", action: "Kill", danger: true }).then(
                (ok) => {
                  if (ok) void act(() => api.kill(id), "Task killed");
                },
              )
            }
          >
            Kill
          </button>
        )}
      </div>
      <pre
        class="output"
        ref={pre}
        tabIndex={0}
        aria-label="Output"
        aria-live="off"
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        }}
      >
        {output ? <Colored text={output} /> : ended ? "(no output)" : "waiting for output…"}
      </pre>
      {canWrite && (
        <>
          <form class="row message" onSubmit={send}>
            <input
              aria-label="Message to the task"
              placeholder="Type a follow-up and press Enter"
              value={text}
              onInput={field(setText)}
            />
            <button type="submit" class="primary" disabled={!text.trim()}>
              Send
            </button>
          </form>
          <div class="row wrap keys" role="group" aria-label="Keys">
            {KEYS.map((k) => (
              <button class="small" onClick={() => void act(() => api.keys(id, [k.key]))} title={`Send ${k.key}`}>
                {k.label}
              </button>
            ))}
          </div>
        </>
      )}
      {deliveries.length > 0 && (
        <section class="deliveries">
          <h3>Hook deliveries</h3>
          <DeliveryList items={deliveries} readOnly={props.me.read_only} />
        </section>
      )}
    </article>
  );
}

/** Output with its colours (segments from ansi.ts, as spans). */
function Colored(props: { text: string }) {
  const segments = useMemo(() => parseAnsi(props.text), [props.text]);
  return (
    <>
      {segments.map((seg, i) => {
        if (!seg.style.fg && !seg.style.bg && Object.keys(seg.style).length === 0) return seg.text;
        const p = segmentProps(seg.style);
        return (
          <span key={i} class={p.class} style={p.style}>
            {seg.text}
          </span>
        );
      })}
    </>
  );
}

export function DeliveryList(props: { items: Delivery[]; readOnly: boolean }) {
  return (
    <ul class="plain">
      {props.items.map((d) => (
        <li class="delivery" key={d.id}>
          <span class={`badge dl-${d.state}`}>{d.state}</span>
          <span class="ellipsis" title={d.url}>
            {d.url}
          </span>
          <span class="muted small">
            {d.attempts} attempt{d.attempts === 1 ? "" : "s"}
            {d.last_status ? ` · HTTP ${d.last_status}` : ""}
            {d.last_error ? ` · ${d.last_error}` : ""}
          </span>
          {!props.readOnly && d.state !== "pending" && (
            <button
              class="small"
              onClick={() =>
                api
                  .redeliver(d.id)
                  .then(() => notice("Queued again"))
                  .catch(toast)
              }
            >
              Redeliver
            </button>
          )}
        </li>
      ))}
    </ul>
  );
}
