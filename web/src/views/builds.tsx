// Builds: the images this workspace built through the operator, newest
// first: what each pushed (its digest and size) or why it failed, and its
// log, followed as it comes while the build runs. A build runs in a pod
// the operator controls; the push credentials never enter this workspace.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type Build } from "../api";
import { buildLogLine, bytes, shortTime, span, type BuildLogLine } from "../state";
import { toast } from "../toast";

/** The build's log, read (and followed while it runs) once shown. */
function BuildLog({ id, onEnd }: { id: string; onEnd: () => void }) {
  const [lines, setLines] = useState<BuildLogLine[]>([]);
  const [error, setError] = useState<string | null>(null);
  const end = useRef(onEnd);
  end.current = onEnd;
  useEffect(() => {
    const abort = new AbortController();
    api
      .buildLog(
        id,
        (raw) => {
          const line = buildLogLine(raw);
          if (line) setLines((all) => [...all, line]);
        },
        abort.signal,
      )
      .then(() => end.current())
      .catch((e: unknown) => {
        if (!abort.signal.aborted) setError(e instanceof Error ? e.message : String(e));
      });
    return () => abort.abort();
  }, [id]);
  return (
    <pre class="build-log small" aria-label={`Log of build ${id}`}>
      {lines.map((l, i) => (
        <div key={i} class={l.kind}>
          {l.text}
        </div>
      ))}
      {error && <div class="error">{error}</div>}
    </pre>
  );
}

function BuildRow({ b, now, reload }: { b: Build; now: number; reload: () => void }) {
  const took = span(Date.parse(b.started_at), b.finished_at ? Date.parse(b.finished_at) : now);
  // A running build shows its log as it comes; an ended one on request.
  const [open, setOpen] = useState(b.state === "running");
  return (
    <li class="build" data-state={b.state}>
      <div class="row wrap">
        <strong class="ellipsis">{b.images.join(", ")}</strong>
        <span class={`badge ${b.state}`}>{b.state}</span>
        <span class="muted small">
          {shortTime(b.started_at)} · {took}
          {b.size != null && <> · {bytes(b.size)}</>}
        </span>
        <button class="small" aria-expanded={open} onClick={() => setOpen(!open)}>
          {open ? "Hide log" : "Log"}
        </button>
      </div>
      {b.digest && <code class="small ellipsis">{b.digest}</code>}
      {b.error && <p class="small error">{b.error}</p>}
      {open && <BuildLog id={b.id} onEnd={() => b.state === "running" && reload()} />}
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
              <BuildRow key={b.id} b={b} now={now} reload={load} />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
