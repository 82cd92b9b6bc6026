// Builds: the images this workspace built through the operator, newest
// first: what each pushed (its digest) or why it failed. A build runs in a
// pod the operator controls; the push credentials never enter this
// workspace.
import { useEffect, useState } from "preact/hooks";
import { api, type Build } from "../api";
import { bytes, shortTime, span } from "../state";
import { toast } from "../toast";

function BuildRow({ b, now }: { b: Build; now: number }) {
  const took = span(Date.parse(b.started_at), b.finished_at ? Date.parse(b.finished_at) : now);
  return (
    <li class="build" data-state={b.state}>
      <div class="row wrap">
        <strong class="ellipsis">{b.images.join(", ")}</strong>
        <span class={`badge ${b.state}`}>{b.state}</span>
        <span class="muted small">
          {shortTime(b.started_at)} · {took}
          {b.size != null && <> · {bytes(b.size)}</>}
        </span>
      </div>
      {b.digest && <code class="small ellipsis">{b.digest}</code>}
      {b.error && <p class="small error">{b.error}</p>}
    </li>
  );
}

export function BuildsView() {
  const [builds, setBuilds] = useState<Build[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => {
    setError(null);
    api
      .builds()
      .then((r) => setBuilds(r.builds))
      .catch((e: unknown) => {
        setError(e instanceof Error ? e.message : String(e));
        toast(e);
      });
  };
  useEffect(() => {
    load();
  }, []);
  const now = Date.now();
  return (
    <div class="builds">
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <section class="card" aria-label="Builds">
        <div class="row wrap">
          <h2>Builds</h2>
          <button class="small" onClick={load}>
            Refresh
          </button>
        </div>
        <p class="muted small">
          Build and push with <code>kube-coder build -t REGISTRY/REPOSITORY:TAG DIR</code> in the terminal, or{" "}
          <code>POST /api/builds</code>. The operator builds in a pod of its own and pushes with credentials this
          workspace never holds, to the registries the Workspace allows.
        </p>
        {builds === null ? (
          <p class="muted">Loading…</p>
        ) : builds.length === 0 ? (
          <p class="muted">No builds yet.</p>
        ) : (
          <ul class="plain">
            {builds.map((b) => (
              <BuildRow key={b.id} b={b} now={now} />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
