// Network: for a workspace with an egress gateway. Egress by name: the
// connections the gateway refused lately, newest first, each with the rule
// that refused it, so whoever sees `npm install` fail reads why here.
// Models: the month's tokens against the budget, per provider; the keys
// stay in the gateway, the workspace only sees these figures.
import { useEffect, useState } from "preact/hooks";
import { api, type EgressRefusal, type ModelUsage, type Whoami } from "../api";
import { shortTime } from "../state";
import { toast } from "../toast";

const count = (n: number | null | undefined) => (n ?? 0).toLocaleString("en-US");

function ModelsSection({ usage }: { usage: ModelUsage }) {
  const used = usage.used ?? 0;
  const budget = usage.budget ?? null;
  const share = budget ? Math.min(100, (used / budget) * 100) : 0;
  const providers = usage.providers ?? [];
  return (
    <section class="card" aria-label="Model usage">
      <h2>Model usage</h2>
      <p class="muted small">
        Model calls go through the egress gateway, which adds the provider's key: the key never enters this workspace.
        Programs use <code>ANTHROPIC_BASE_URL</code>, <code>OPENAI_BASE_URL</code> and{" "}
        <code>GOOGLE_GEMINI_BASE_URL</code>, already set.
      </p>
      <div class="progress usage">
        <span>
          {count(used)} tokens in {usage.month}
          {budget ? ` of ${count(budget)} (${count(usage.remaining)} left; renews ${usage.renews})` : " (no monthly budget)"}
        </span>
        {budget ? (
          <span class="bar">
            <span class={share >= 90 ? "hot" : ""} style={{ width: `${share}%` }} />
          </span>
        ) : null}
      </div>
      <table class="small usage-table">
        <thead>
          <tr>
            <th>provider</th>
            <th>input</th>
            <th>output</th>
            <th>requests</th>
          </tr>
        </thead>
        <tbody>
          {providers.map((p) => {
            const u = usage.by_provider?.[p.name];
            return (
              <tr key={p.name} class="provider">
                <td>
                  {p.name} {p.has_key ? null : <span class="badge">no key</span>}
                </td>
                <td>{count(u?.input_tokens)}</td>
                <td>{count(u?.output_tokens)}</td>
                <td>{count(u?.requests)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

export function NetworkView({ me }: { me: Whoami }) {
  const [refusals, setRefusals] = useState<EgressRefusal[] | null>(null);
  const [usage, setUsage] = useState<ModelUsage | null>(null);
  const [error, setError] = useState<string | null>(null);

  const fail = (e: unknown) => {
    setError(e instanceof Error ? e.message : String(e));
    toast(e);
  };
  const load = () => {
    setError(null);
    if (me.egress_gateway) {
      api
        .egressRefusals()
        .then((r) => setRefusals(r.refusals))
        .catch(fail);
    }
    api.usage().then(setUsage).catch(fail);
  };

  useEffect(() => {
    load();
  }, []);

  return (
    <div class="network">
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {usage?.models && <ModelsSection usage={usage} />}
      {me.egress_gateway && (
        <section class="card" aria-label="Refused connections">
          <div class="row wrap">
            <h2>Refused connections</h2>
            <button class="small" onClick={load}>
              Refresh
            </button>
          </div>
          <p class="muted small">
            This workspace reaches the internet through its egress gateway, by host name: only the names on its allow
            list (<code>network.egress.allowDomains</code>), at public addresses. Programs use it through{" "}
            <code>HTTPS_PROXY</code>; anything else is dropped.
          </p>
          {refusals === null ? (
            <p class="muted">Loading…</p>
          ) : refusals.length === 0 ? (
            <p class="muted">Nothing refused lately.</p>
          ) : (
            <ul class="plain">
              {refusals.map((r, i) => (
                <li class="refusal" key={`${r.at}-${i}`}>
                  <div class="row wrap">
                    <strong class="ellipsis">
                      {r.host}:{r.port}
                    </strong>
                    <span class="badge">{r.decision.replace(/^refused_/, "").replace(/_/g, " ")}</span>
                    <span class="muted small">{shortTime(r.at)}</span>
                  </div>
                  <p class="small">{r.message}</p>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
    </div>
  );
}
