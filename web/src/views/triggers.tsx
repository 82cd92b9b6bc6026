// Triggers and hooks: schedules (cron) and inbound webhooks — create, edit,
// pause/resume, run now (schedules), history, delete — and completion-hook
// deliveries with redeliver. A webhook's secret is shown once, at creation.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import {
  api,
  type Delivery,
  type Firing,
  type Schedule,
  type ScheduleFields,
  type Webhook,
  type WebhookFields,
  type WebhookReceipt,
  type Whoami,
} from "../api";
import { AssistantSelect } from "../components/assistant-select";
import { confirmAction } from "../components/confirm";
import { field } from "../form";
import { live } from "../live";
import { shortTime } from "../state";
import { notice, toast } from "../toast";
import { DeliveryList } from "./tasks";

export function TriggersView(props: { me: Whoami }) {
  const ro = props.me.read_only;
  const [schedules, setSchedules] = useState<Schedule[]>([]);
  const [webhooks, setWebhooks] = useState<Webhook[]>([]);
  const [deliveries, setDeliveries] = useState<Delivery[]>([]);

  const loadSchedules = () => api.schedules().then((s) => setSchedules(s.schedules)).catch(toast);
  const loadWebhooks = () => api.webhooks().then((w) => setWebhooks(w.webhooks)).catch(toast);
  const loadDeliveries = () => api.deliveries().then((d) => setDeliveries(d.deliveries)).catch(toast);

  useEffect(() => {
    void loadSchedules();
    void loadWebhooks();
    void loadDeliveries();
    const offs = [
      live.on("hook_delivery", () => void loadDeliveries()),
      // A firing or a webhook delivery creates a task: next runs moved,
      // histories grew.
      live.on("task_created", () => void loadSchedules()),
      live.on("resync", () => {
        void loadSchedules();
        void loadWebhooks();
        void loadDeliveries();
      }),
    ];
    return () => offs.forEach((f) => f());
  }, []);

  return (
    <div class="triggers">
      <section class="card" aria-label="Schedules">
        <h2>Schedules</h2>
        {schedules.length === 0 ? (
          <p class="muted">No schedules.</p>
        ) : (
          <ul class="plain">
            {schedules.map((s) => (
              <ScheduleRow key={s.id} s={s} readOnly={ro} reload={loadSchedules} />
            ))}
          </ul>
        )}
        {!ro && (
          <details>
            <summary>New schedule</summary>
            <ScheduleForm onSaved={() => void loadSchedules()} />
          </details>
        )}
      </section>

      <section class="card" aria-label="Webhooks">
        <h2>Webhooks</h2>
        <p class="muted small">
          A signed POST to a webhook's URL (on the api listener) starts a task from its prompt template; GitHub's
          signature (X-Hub-Signature-256) and kube-coder's are both accepted.
        </p>
        {webhooks.length === 0 ? (
          <p class="muted">No webhooks.</p>
        ) : (
          <ul class="plain">
            {webhooks.map((w) => (
              <WebhookRow key={w.id} w={w} readOnly={ro} reload={loadWebhooks} />
            ))}
          </ul>
        )}
        {!ro && <NewWebhook onDone={() => void loadWebhooks()} />}
      </section>

      <section class="card" aria-label="Hook deliveries">
        <h2>Hook deliveries</h2>
        {deliveries.length === 0 ? <p class="muted">No deliveries yet.</p> : <DeliveryList items={deliveries} readOnly={ro} />}
      </section>
    </div>
  );
}

/** Run an action; a success message clears earlier errors, a failure shows the server's reason. */
async function act(what: () => Promise<unknown>, done: string, then?: () => unknown): Promise<boolean> {
  try {
    await what();
    notice(done);
    await then?.();
    return true;
  } catch (err) {
    toast(err);
    return false;
  }
}

/** One schedule or webhook: its name and state, what the caller shows, its buttons, edit form and history. */
function TriggerRow(props: {
  kind: "schedule" | "webhook";
  name: string;
  paused: boolean;
  readOnly: boolean;
  summary: ComponentChildren;
  actions?: ComponentChildren;
  onPause: (paused: boolean) => Promise<unknown>;
  onDelete: () => Promise<unknown>;
  edit: (close: () => void) => ComponentChildren;
  history: () => ComponentChildren;
}) {
  const [open, setOpen] = useState<"" | "edit" | "history">("");
  const label = `${props.kind} ${props.name}`;
  const toggle = (what: "edit" | "history") => setOpen((o) => (o === what ? "" : what));
  const remove = async () => {
    const ok = await confirmAction({
      title: `Delete ${label}?`,
      body: props.kind === "webhook" ? "Senders still using its URL will get 401 answers." : "Its firing history goes too.",
      action: "Delete",
      danger: true,
    });
    if (ok) await act(props.onDelete, `Deleted ${label}`);
  };
  return (
    <li class={props.paused ? "trigger paused" : "trigger"} aria-label={label}>
      <div class="trigger-head">
        <strong>{props.name}</strong>
        {props.paused && <span class="badge">paused</span>}
      </div>
      <div class="trigger-summary">{props.summary}</div>
      <div class="row wrap">
        {!props.readOnly && props.actions}
        {!props.readOnly && (
          <button class="small" aria-label={`${props.paused ? "Resume" : "Pause"} ${label}`} onClick={() => void props.onPause(!props.paused)}>
            {props.paused ? "Resume" : "Pause"}
          </button>
        )}
        {!props.readOnly && (
          <button class="small" aria-expanded={open === "edit"} aria-label={`Edit ${label}`} onClick={() => toggle("edit")}>
            Edit
          </button>
        )}
        <button class="small" aria-expanded={open === "history"} aria-label={`History of ${label}`} onClick={() => toggle("history")}>
          History
        </button>
        {!props.readOnly && (
          <button class="small danger" aria-label={`Delete ${label}`} onClick={() => void remove()}>
            Delete
          </button>
        )}
      </div>
      {open === "edit" && props.edit(() => setOpen(""))}
      {open === "history" && props.history()}
    </li>
  );
}

function ScheduleRow(props: { s: Schedule; readOnly: boolean; reload: () => unknown }) {
  const s = props.s;
  return (
    <TriggerRow
      kind="schedule"
      name={s.name}
      paused={s.paused}
      readOnly={props.readOnly}
      summary={
        <>
          <code>{s.cron}</code>{" "}
          <span class="muted small">
            {s.timezone} · {s.paused ? "paused" : `next ${s.next_run ? shortTime(s.next_run) : "never"}`} · {s.assistant ?? "default assistant"}
            {s.workdir ? ` · in ${s.workdir}` : ""}
            {s.hook_url ? " · hook" : ""}
          </span>
          {s.prompt && <p class="small prompt-line">{s.prompt}</p>}
        </>
      }
      actions={
        <button
          class="small"
          aria-label={`Run schedule ${s.name} now`}
          onClick={() => void act(() => api.runSchedule(s.id), `Schedule ${s.name} started a task`, props.reload)}
        >
          Run now
        </button>
      }
      onPause={(paused) => act(() => api.updateSchedule(s.id, { paused }), `Schedule ${s.name} ${paused ? "paused" : "resumed"}`, props.reload)}
      onDelete={() => api.deleteSchedule(s.id).then(props.reload)}
      edit={(close) => (
        <ScheduleForm
          existing={s}
          onSaved={() => {
            close();
            void props.reload();
          }}
        />
      )}
      history={() => <FiringList id={s.id} />}
    />
  );
}

function WebhookRow(props: { w: Webhook; readOnly: boolean; reload: () => unknown }) {
  const w = props.w;
  return (
    <TriggerRow
      kind="webhook"
      name={w.name}
      paused={w.paused}
      readOnly={props.readOnly}
      summary={
        <>
          <CopyField label={`Delivery URL of webhook ${w.name}`} value={w.url ?? w.path} />
          {!w.url && <p class="muted small">Start the server with --api-url to show the full address senders use.</p>}
          <span class="muted small">
            {w.assistant ?? "default assistant"}
            {w.workdir ? ` · in ${w.workdir}` : ""}
            {w.hook_url ? " · hook" : ""}
          </span>
          <p class="small prompt-line">{w.prompt_template}</p>
        </>
      }
      onPause={(paused) => act(() => api.updateWebhook(w.id, { paused }), `Webhook ${w.name} ${paused ? "paused" : "resumed"}`, props.reload)}
      onDelete={() => api.deleteWebhook(w.id).then(props.reload)}
      edit={(close) => (
        <WebhookForm
          existing={w}
          onSaved={() => {
            close();
            void props.reload();
          }}
        />
      )}
      history={() => <ReceiptList id={w.id} />}
    />
  );
}

/** A read-only value with a Copy button (webhook URLs, secrets). */
function CopyField(props: { label: string; value: string; secret?: boolean }) {
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.value);
      notice("Copied");
    } catch {
      toast("Copying needs a secure page (https or localhost); select the text instead");
    }
  };
  return (
    <div class="copy-field">
      <input readOnly aria-label={props.label} class={props.secret ? "secret" : ""} value={props.value} onFocus={(e) => e.currentTarget.select()} />
      <button type="button" class="small" aria-label={`Copy ${props.label}`} onClick={() => void copy()}>
        Copy
      </button>
    </div>
  );
}

/** A firing or a received delivery: how it went, when, and its task. */
interface HistoryItem {
  outcome: string;
  task_id: string | null;
  error: string | null;
}

function HistoryList<T extends HistoryItem>(props: {
  label: string;
  empty: string;
  load: () => Promise<T[]>;
  when: (x: T) => string;
  extra?: (x: T) => ComponentChildren;
}) {
  const [items, setItems] = useState<T[] | null>(null);
  useEffect(() => {
    const refresh = () => void props.load().then(setItems).catch(toast);
    refresh();
    return live.on("task_created", refresh);
  }, []);
  if (!items) return <p class="muted small">Loading…</p>;
  if (items.length === 0) return <p class="muted small history">{props.empty}</p>;
  return (
    <ul class="plain history" aria-label={props.label}>
      {items.slice(0, 50).map((x, i) => (
        <li key={i}>
          <span class={`badge ${x.outcome}`}>{x.outcome}</span> <span class="small">{shortTime(props.when(x))}</span> {props.extra?.(x)}{" "}
          {x.task_id && <a href={`#/tasks/${x.task_id}`}>task {x.task_id}</a>}
          {x.error && <span class="error small"> {x.error}</span>}
        </li>
      ))}
    </ul>
  );
}

function FiringList(props: { id: string }) {
  return (
    <HistoryList<Firing> label="Firings" empty="Not fired yet." load={() => api.firings(props.id).then((f) => f.firings)} when={(f) => f.due_at} />
  );
}

function ReceiptList(props: { id: string }) {
  return (
    <HistoryList<WebhookReceipt>
      label="Received deliveries"
      empty="Nothing received yet."
      load={() => api.webhookDeliveries(props.id).then((d) => d.deliveries)}
      when={(r) => r.received_at}
      extra={(r) => <code class="small">{r.delivery_id}</code>}
    />
  );
}

/** The state of what schedules and webhooks share: assistant, working directory and completion hook. */
function useTarget(e?: { assistant: string | null; workdir: string | null; hook_url: string | null }) {
  const [assistant, setAssistant] = useState(e?.assistant ?? "");
  const [workdir, setWorkdir] = useState(e?.workdir ?? "");
  const [hook, setHook] = useState(e?.hook_url ?? "");
  const [hookSecret, setHookSecret] = useState("");
  const editing = !!e;
  /** The shared part of the body: in an edit, a cleared field is sent as null. */
  const body = () => {
    const orNull = (v: string) => (v.trim() ? v.trim() : editing ? null : undefined);
    const h = hook.trim()
      ? { url: hook.trim(), ...(hookSecret ? { secret: hookSecret } : {}) }
      : editing && e?.hook_url
        ? null
        : undefined;
    return { assistant: orNull(assistant), workdir: orNull(workdir), hook: h };
  };
  return { assistant, setAssistant, workdir, setWorkdir, hook, setHook, hookSecret, setHookSecret, hasSecret: !!e?.hook_url, body };
}

function TargetFields(props: { prefix: string; t: ReturnType<typeof useTarget> }) {
  const { prefix: p, t } = props;
  return (
    <>
      <label for={`${p}-assistant`}>Assistant</label>
      <AssistantSelect id={`${p}-assistant`} value={t.assistant} onChange={t.setAssistant} allowDefault />
      <label for={`${p}-workdir`}>Working directory</label>
      <input id={`${p}-workdir`} placeholder="home (or a path inside it)" value={t.workdir} onInput={field(t.setWorkdir)} />
      <label for={`${p}-hook`}>Completion hook URL (optional)</label>
      <input id={`${p}-hook`} type="url" placeholder="https://…" value={t.hook} onInput={field(t.setHook)} />
      {t.hook.trim() && (
        <>
          <label for={`${p}-hook-secret`}>Hook secret (signs each delivery){t.hasSecret ? "; empty keeps the current one" : ""}</label>
          <input id={`${p}-hook-secret`} type="password" autocomplete="off" value={t.hookSecret} onInput={field(t.setHookSecret)} />
        </>
      )}
    </>
  );
}

/** Submit a create or edit form: the server's refusal is shown beside it (where the fix goes). */
function useSubmit(save: () => Promise<unknown>) {
  const [error, setError] = useState("");
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError("");
    try {
      await save();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  const shown = error && (
    <p class="error" role="alert">
      {error}
    </p>
  );
  return { submit, shown };
}

function ScheduleForm(props: { existing?: Schedule; onSaved: () => void }) {
  const e = props.existing;
  const p = e ? `sc-${e.id}` : "sc";
  const [name, setName] = useState(e?.name ?? "");
  const [cron, setCron] = useState(e?.cron ?? "0 9 * * 1-5");
  const [timezone, setTimezone] = useState(e?.timezone ?? (Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"));
  const [prompt, setPrompt] = useState(e?.prompt ?? "");
  const [missed, setMissed] = useState(e?.missed ?? "run_once");
  const t = useTarget(e);
  const { submit, shown } = useSubmit(async () => {
    const body: ScheduleFields = { name, cron, timezone, missed, prompt: prompt.trim() ? prompt : e ? null : undefined, ...t.body() };
    if (e) await api.updateSchedule(e.id, body);
    else await api.createSchedule(body);
    notice(`Schedule ${name} ${e ? "saved" : "created"}`);
    if (!e) {
      setName("");
      setPrompt("");
    }
    props.onSaved();
  });
  return (
    <form class="form" onSubmit={submit} aria-label={e ? `Edit schedule ${e.name}` : "New schedule"}>
      <label for={`${p}-name`}>Name</label>
      <input id={`${p}-name`} required value={name} onInput={field(setName)} />
      <label for={`${p}-cron`}>Cron (5 fields, or 6 with seconds first)</label>
      <input id={`${p}-cron`} required value={cron} onInput={field(setCron)} placeholder="0 3 * * *" />
      <label for={`${p}-tz`}>Time zone</label>
      <input id={`${p}-tz`} value={timezone} onInput={field(setTimezone)} placeholder="Europe/Berlin" />
      <label for={`${p}-prompt`}>Prompt</label>
      <textarea id={`${p}-prompt`} rows={3} value={prompt} onInput={field(setPrompt)} />
      <TargetFields prefix={p} t={t} />
      <label for={`${p}-missed`}>Firings missed while the server was down</label>
      <select id={`${p}-missed`} value={missed} onChange={field(setMissed)}>
        <option value="run_once">run once when it starts again</option>
        <option value="skip">skip them</option>
      </select>
      {shown}
      <button type="submit" class="primary">
        {e ? "Save schedule" : "Create schedule"}
      </button>
    </form>
  );
}

function WebhookForm(props: { existing?: Webhook; onSaved: (w: Webhook) => void }) {
  const e = props.existing;
  const p = e ? `wh-${e.id}` : "wh";
  const [name, setName] = useState(e?.name ?? "");
  const [template, setTemplate] = useState(e?.prompt_template ?? "");
  const t = useTarget(e);
  const { submit, shown } = useSubmit(async () => {
    const body: WebhookFields = { name, prompt_template: template, ...t.body() };
    const w = e ? await api.updateWebhook(e.id, body) : await api.createWebhook(body);
    notice(`Webhook ${name} ${e ? "saved" : "created"}`);
    if (!e) {
      setName("");
      setTemplate("");
    }
    props.onSaved(w);
  });
  return (
    <form class="form" onSubmit={submit} aria-label={e ? `Edit webhook ${e.name}` : "New webhook"}>
      <label for={`${p}-name`}>Name</label>
      <input id={`${p}-name`} required value={name} onInput={field(setName)} />
      <label for={`${p}-template`}>Prompt template</label>
      <textarea
        id={`${p}-template`}
        rows={3}
        required
        value={template}
        onInput={field(setTemplate)}
        placeholder="Review {{pull_request.html_url}} ({{body}} is the whole delivery)"
      />
      <TargetFields prefix={p} t={t} />
      {shown}
      <button type="submit" class="primary">
        {e ? "Save webhook" : "Create webhook"}
      </button>
    </form>
  );
}

function NewWebhook(props: { onDone: () => void }) {
  const [created, setCreated] = useState<Webhook | null>(null);
  return (
    <>
      {created && (
        <div class="callout" role="status">
          <p>
            Webhook <strong>{created.name}</strong> created. Its signing secret is shown only now:
          </p>
          <CopyField label={`Secret of webhook ${created.name}`} value={created.secret ?? ""} secret />
          <p class="small">Give the sender this URL and the secret (GitHub: Settings → Webhooks, content type application/json):</p>
          <CopyField label={`Delivery URL of webhook ${created.name}`} value={created.url ?? created.path} />
          <button class="small" onClick={() => setCreated(null)}>
            I have saved it
          </button>
        </div>
      )}
      <details>
        <summary>New webhook</summary>
        <WebhookForm
          onSaved={(w) => {
            setCreated(w);
            props.onDone();
          }}
        />
      </details>
    </>
  );
}
