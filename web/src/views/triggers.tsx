// Triggers and hooks: schedules (cron), inbound webhooks (the secret is
// shown once, at creation), and completion-hook deliveries with redeliver.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, type Delivery, type Schedule, type Webhook, type Whoami } from "../api";
import { live } from "../live";
import { notice, toast } from "../toast";
import { DeliveryList } from "./tasks";
import { field } from "../form";

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
      // A schedule firing creates a task: its next run moved.
      live.on("task_created", () => void loadSchedules()),
      live.on("resync", () => {
        void loadSchedules();
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
              <TriggerRow key={s.id} kind="schedule" name={s.name} readOnly={ro} onDelete={() => api.deleteSchedule(s.id).then(loadSchedules)}>
                <code>{s.cron}</code>
                <span class="muted small">
                  {s.timezone} · next {s.next_run ? s.next_run.replace("T", " ").slice(0, 16) : "never"}
                </span>
              </TriggerRow>
            ))}
          </ul>
        )}
        {!ro && <NewSchedule onDone={() => void loadSchedules()} />}
      </section>

      <section class="card" aria-label="Webhooks">
        <h2>Webhooks</h2>
        <p class="muted small">
          A signed POST to the api listener at the webhook's path starts a task from its prompt template.
        </p>
        {webhooks.length === 0 ? (
          <p class="muted">No webhooks.</p>
        ) : (
          <ul class="plain">
            {webhooks.map((w) => (
              <TriggerRow key={w.id} kind="webhook" name={w.name} readOnly={ro} onDelete={() => api.deleteWebhook(w.id).then(loadWebhooks)}>
                <code class="ellipsis">{w.path}</code>
              </TriggerRow>
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

/** One schedule or webhook: its name, what the caller shows, and Delete (asks first). */
function TriggerRow(props: {
  kind: string;
  name: string;
  readOnly: boolean;
  onDelete: () => Promise<unknown>;
  children: ComponentChildren;
}) {
  const remove = () => {
    if (confirm(`Delete ${props.kind} ${props.name}?`)) props.onDelete().catch(toast);
  };
  return (
    <li class="trigger">
      <strong>{props.name}</strong>
      {props.children}
      {!props.readOnly && (
        <button class="small danger" aria-label={`Delete ${props.kind} ${props.name}`} onClick={remove}>
          Delete
        </button>
      )}
    </li>
  );
}

function NewSchedule(props: { onDone: () => void }) {
  const [name, setName] = useState("");
  const [cron, setCron] = useState("0 9 * * 1-5");
  const [timezone, setTimezone] = useState(Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  const [prompt, setPrompt] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await api.createSchedule({ name, cron, timezone, prompt: prompt || undefined });
      notice(`Schedule ${name} created`);
      setName("");
      setPrompt("");
      props.onDone();
    } catch (err) {
      toast(err);
    }
  };
  return (
    <details>
      <summary>New schedule</summary>
      <form class="form" onSubmit={submit}>
        <label for="sc-name">Name</label>
        <input id="sc-name" required value={name} onInput={field(setName)} />
        <label for="sc-cron">Cron (5 fields, or 6 with seconds first)</label>
        <input id="sc-cron" required value={cron} onInput={field(setCron)} />
        <label for="sc-tz">Time zone</label>
        <input id="sc-tz" value={timezone} onInput={field(setTimezone)} />
        <label for="sc-prompt">Prompt</label>
        <textarea id="sc-prompt" rows={3} value={prompt} onInput={field(setPrompt)} />
        <button type="submit" class="primary">
          Create schedule
        </button>
      </form>
    </details>
  );
}

function NewWebhook(props: { onDone: () => void }) {
  const [name, setName] = useState("");
  const [template, setTemplate] = useState("");
  const [secret, setSecret] = useState<{ name: string; secret: string; path: string } | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const w = await api.createWebhook({ name, prompt_template: template });
      setSecret({ name: w.name, secret: w.secret ?? "", path: w.path });
      setName("");
      setTemplate("");
      props.onDone();
    } catch (err) {
      toast(err);
    }
  };
  return (
    <>
      {secret && (
        <div class="callout" role="status">
          <p>
            Webhook <strong>{secret.name}</strong> created. Its signing secret is shown only now:
          </p>
          <code class="secret">{secret.secret}</code>
          <p class="muted small">Senders POST to {secret.path} on the api listener, signed with it.</p>
          <button class="small" onClick={() => setSecret(null)}>
            I have saved it
          </button>
        </div>
      )}
      <details>
        <summary>New webhook</summary>
        <form class="form" onSubmit={submit}>
          <label for="wh-name">Name</label>
          <input id="wh-name" required value={name} onInput={field(setName)} />
          <label for="wh-template">Prompt template</label>
          <textarea id="wh-template" rows={3} required value={template} onInput={field(setTemplate)} placeholder="Fix the issue: {{issue.title}}" />
          <button type="submit" class="primary">
            Create webhook
          </button>
        </form>
      </details>
    </>
  );
}
