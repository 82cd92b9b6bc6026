// Network: for a workspace behind an egress gateway (egress by name), the
// connections the gateway refused lately, newest first, each with the rule
// that refused it, so whoever sees `npm install` fail reads why here.
import { useEffect, useState } from "preact/hooks";
import { api, type EgressRefusal, type Whoami } from "../api";
import { shortTime } from "../state";
import { toast } from "../toast";

export function NetworkView(_props: { me: Whoami }) {
  const [refusals, setRefusals] = useState<EgressRefusal[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = () =>
    api
      .egressRefusals()
      .then((r) => {
        setRefusals(r.refusals);
        setError(null);
      })
      .catch((e: unknown) => {
        setError(e instanceof Error ? e.message : String(e));
        toast(e);
      });

  useEffect(() => {
    void load();
  }, []);

  return (
    <div class="network">
      <section class="card" aria-label="Refused connections">
        <div class="row wrap">
          <h2>Refused connections</h2>
          <button class="small" onClick={() => void load()}>
            Refresh
          </button>
        </div>
        <p class="muted small">
          This workspace reaches the internet through its egress gateway, by host name: only the names on its allow
          list (<code>network.egress.allowDomains</code>), at public addresses. Programs use it through{" "}
          <code>HTTPS_PROXY</code>; anything else is dropped.
        </p>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
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
    </div>
  );
}
