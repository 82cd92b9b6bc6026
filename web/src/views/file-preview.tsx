// One file of the Files view opened: a preview (images shown, text shown
// up to a size, binary files offered for download) and, for text files in
// a writable workspace, an editor whose saves are conditional on the ETag
// it read, so a change made on disk meanwhile is never silently lost.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, type Entry } from "../api";
import { bytes, fileKind, joinPath } from "../state";
import { notice } from "../toast";

/** Larger text files are previewed in part and not edited in the browser. */
const PREVIEW_BYTES = 256 * 1024;
const EDIT_BYTES = 2 * 1024 * 1024;

type Loaded = { text: string; etag: string | null; truncated: boolean; binary: boolean };

export function FilePreview(props: { dir: string; entry: Entry; readOnly: boolean; onClose: () => void }) {
  const path = joinPath(props.dir, props.entry.name);
  const kind = fileKind(props.entry.name);
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [error, setError] = useState("");
  const [editing, setEditing] = useState(false);

  const load = (limit: number) => {
    setError("");
    return api
      .readText(path, limit, props.entry.size)
      .then(setLoaded)
      .catch((e: Error) => setError(e.message));
  };
  useEffect(() => {
    setEditing(false);
    setLoaded(null);
    if (kind !== "image") void load(PREVIEW_BYTES);
  }, [path]);

  const editable = !props.readOnly && kind !== "image" && props.entry.size <= EDIT_BYTES && loaded && !loaded.binary;
  return (
    <section class="card preview" aria-label={`File ${props.entry.name}`}>
      <div class="preview-head">
        <strong class="ellipsis">{props.entry.name}</strong>
        <span class="muted small">{bytes(props.entry.size)}</span>
        <div class="row">
          {editable && !editing && (
            <button
              class="small"
              onClick={() => {
                // The whole file, with the ETag the save will be checked against.
                void load(EDIT_BYTES).then(() => setEditing(true));
              }}
            >
              Edit
            </button>
          )}
          <a class="button small" href={api.downloadUrl(path)} download={props.entry.name}>
            Download
          </a>
          <button class="small" aria-label="Close the file" onClick={props.onClose}>
            Close
          </button>
        </div>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {kind === "image" && <img class="preview-image" src={api.downloadUrl(path)} alt={props.entry.name} />}
      {kind !== "image" && !loaded && !error && <p class="muted small">Loading…</p>}
      {loaded?.binary && <p class="muted">A binary file: download it to open it.</p>}
      {loaded && !loaded.binary && !editing && (
        <>
          <pre class="preview-text" tabIndex={0} aria-label="Contents">
            {loaded.text || " "}
          </pre>
          {loaded.truncated && <p class="muted small">The first {bytes(PREVIEW_BYTES)} are shown; download the file for the rest.</p>}
        </>
      )}
      {loaded && editing && (
        <Editor
          path={path}
          initial={loaded}
          onDone={(saved) => {
            setEditing(false);
            if (saved) setLoaded(saved);
          }}
        />
      )}
    </section>
  );
}

function Editor(props: { path: string; initial: Loaded; onDone: (saved: Loaded | null) => void }) {
  const [text, setText] = useState(props.initial.text);
  const [etag, setEtag] = useState(props.initial.etag);
  const [busy, setBusy] = useState(false);
  const [conflict, setConflict] = useState("");
  const [error, setError] = useState("");
  const area = useRef<HTMLTextAreaElement>(null);
  useEffect(() => area.current?.focus(), []);

  const save = async (overwrite: boolean) => {
    setBusy(true);
    setError("");
    try {
      const done = await api.saveText(props.path, text, overwrite ? null : etag);
      setEtag(done.etag);
      setConflict("");
      notice(`Saved ${props.path}`);
      props.onDone({ text, etag: done.etag, truncated: false, binary: false });
    } catch (e) {
      if (e instanceof ApiError && e.code === "precondition_failed")
        setConflict(`${props.path} changed on disk after you opened it (an agent, a shell or another tab wrote it). Your text is still here.`);
      else setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  const reload = async () => {
    try {
      const fresh = await api.readText(props.path, EDIT_BYTES, EDIT_BYTES);
      setText(fresh.text);
      setEtag(fresh.etag);
      setConflict("");
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  return (
    <form
      class="editor"
      aria-label={`Edit ${props.path}`}
      onSubmit={(e) => {
        e.preventDefault();
        void save(false);
      }}
    >
      <textarea
        ref={area}
        class="editor-text"
        spellcheck={false}
        aria-label="Text"
        value={text}
        onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if ((e.ctrlKey || e.metaKey) && e.key === "s") {
            e.preventDefault();
            void save(false);
          }
        }}
      />
      {conflict && (
        <div class="callout" role="alert">
          <p>{conflict}</p>
          <div class="row">
            <button type="button" onClick={() => void reload()}>
              Reload (drop my changes)
            </button>
            <button type="button" class="danger" onClick={() => void save(true)}>
              Overwrite
            </button>
          </div>
        </div>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="row">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Saving…" : "Save"}
        </button>
        <button type="button" onClick={() => props.onDone(null)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
