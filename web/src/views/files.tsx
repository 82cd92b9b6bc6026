// Files: browse the home (dot-files behind "Show hidden"), open a file
// (preview, editor: file-preview.tsx), upload (button or drag and drop,
// with progress), download, new folder, rename, delete. Every error is the
// server's own message (it names the path and the problem).
import { useEffect, useRef, useState } from "preact/hooks";
import { api, upload, type Entry, type Listing, type Whoami } from "../api";
import { confirmAction } from "../components/confirm";
import { dirWatch } from "../live";
import { bytes, crumbs, joinPath, parentPath, progressPercent, routeHash, validName, visibleEntries, type Progress } from "../state";
import { FilePreview } from "./file-preview";
import { notice, toast } from "../toast";

/** The link to a folder of the home (names encoded: `#`, `%` and spaces are fine). */
function folder(path: string): string {
  return routeHash({ view: "files", arg: path });
}

export function FilesView(props: { me: Whoami; dir: string }) {
  const dir = props.dir;
  const [listing, setListing] = useState<Listing | null>(null);
  const [error, setError] = useState("");
  const [uploads, setUploads] = useState<(Progress & { key: string })[]>([]);
  const [dragging, setDragging] = useState(false);
  const picker = useRef<HTMLInputElement>(null);
  const ro = props.me.read_only;
  const [showHidden, setShowHidden] = useState(() => localStorage.getItem("kc.showHidden") === "1");
  const [opened, setOpened] = useState<Entry | null>(null);
  const toggleHidden = (on: boolean) => {
    setShowHidden(on);
    localStorage.setItem("kc.showHidden", on ? "1" : "0");
  };

  const load = () =>
    api
      .list(dir)
      .then((l) => {
        setListing(l);
        setError("");
      })
      .catch((e: Error) => {
        setListing(null);
        setError(e.message);
      });

  useEffect(() => {
    setOpened(null);
    void load();
    // Whoever changes this folder (an agent's shell, another tab, the file
    // API), the server's watch on it says so.
    return dirWatch(dir, () => void load());
  }, [dir]);

  const sendFiles = async (files: FileList | File[]) => {
    for (const f of Array.from(files)) {
      const key = `${Date.now()}-${Math.random()}`;
      const track = (loaded: number, total: number) =>
        setUploads((u) => u.map((x) => (x.key === key ? { ...x, loaded, total } : x)));
      setUploads((u) => [...u, { key, name: f.name, loaded: 0, total: f.size }]);
      try {
        await upload(joinPath(dir, f.name), f, track).done;
        notice(`Uploaded ${f.name}`);
      } catch (e) {
        toast(e);
      } finally {
        setUploads((u) => u.filter((x) => x.key !== key));
      }
    }
    void load();
  };

  const mkdir = async () => {
    const name = prompt("New folder name");
    if (name == null) return;
    const bad = validName(name);
    if (bad) return toast(bad);
    try {
      await api.mkdir(joinPath(dir, name.trim()));
      void load();
    } catch (e) {
      toast(e);
    }
  };

  const rename = async (e: Entry) => {
    const name = prompt(`Rename ${e.name} to`, e.name);
    if (name == null || name.trim() === e.name) return;
    const bad = validName(name);
    if (bad) return toast(bad);
    try {
      await api.rename(joinPath(dir, e.name), joinPath(dir, name.trim()));
      void load();
    } catch (err) {
      toast(err);
    }
  };

  const remove = async (e: Entry) => {
    const isDir = e.kind === "dir";
    const ok = await confirmAction({
      title: `Delete ${e.name}${isDir ? " and everything in it" : ""}?`,
      body: "Deleted files cannot be restored from here.",
      action: "Delete",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.remove(joinPath(dir, e.name), isDir);
      notice(`Deleted ${e.name}`);
      void load();
    } catch (err) {
      toast(err);
    }
  };

  return (
    <section
      class={dragging ? "files dropping" : "files"}
      aria-label="Files"
      onDragOver={(e) => {
        if (ro) return;
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        if (ro) return;
        e.preventDefault();
        setDragging(false);
        if (e.dataTransfer?.files.length) void sendFiles(e.dataTransfer.files);
      }}
    >
      <div class="toolbar">
        <nav class="crumbs" aria-label="Folder">
          {crumbs(dir).map((c, i, all) =>
            i === all.length - 1 ? (
              <span aria-current="location">{c.name}</span>
            ) : (
              <>
                <a href={folder(c.path)}>{c.name}</a>
                <span class="muted">/</span>
              </>
            ),
          )}
        </nav>
        <label class="toggle small">
          <input type="checkbox" checked={showHidden} onChange={(e) => toggleHidden((e.target as HTMLInputElement).checked)} />
          Show hidden
        </label>
        {!ro && (
          <div class="row">
            <button onClick={() => void mkdir()}>New folder</button>
            <button class="primary" onClick={() => picker.current?.click()}>
              Upload
            </button>
            <input
              ref={picker}
              type="file"
              multiple
              hidden
              aria-label="Files to upload"
              onChange={(e) => {
                const el = e.target as HTMLInputElement;
                if (el.files?.length) void sendFiles(el.files);
                el.value = "";
              }}
            />
          </div>
        )}
      </div>
      {uploads.map((u) => (
        <div key={u.key} class="progress" role="progressbar" aria-label={`Uploading ${u.name}`} aria-valuenow={progressPercent(u)} aria-valuemin={0} aria-valuemax={100}>
          <span>
            {u.name} — {progressPercent(u)}% of {bytes(u.total)}
          </span>
          <span class="bar">
            <span style={{ width: `${progressPercent(u)}%` }} />
          </span>
        </div>
      ))}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {opened && <FilePreview dir={dir} entry={opened} readOnly={ro} onClose={() => setOpened(null)} />}
      {listing && (
        <table class="entries">
          <thead>
            <tr>
              <th>Name</th>
              <th class="num">Size</th>
              <th class="hide-narrow">Modified</th>
              <th>
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {dir && (
              <tr>
                <td colSpan={4}>
                  <a href={folder(parentPath(dir))}>.. (up)</a>
                </td>
              </tr>
            )}
            {visibleEntries(listing.entries, showHidden).length === 0 && (
              <tr>
                <td colSpan={4} class="muted">
                  {listing.entries.length === 0 ? "Empty folder." : "Only hidden entries here."}
                  {ro ? "" : " Drop files here to upload."}
                </td>
              </tr>
            )}
            {visibleEntries(listing.entries, showHidden).map((e) => (
              <tr key={e.name} data-entry={e.name}>
                <td class="name">
                  {e.kind === "dir" ? (
                    <a href={folder(joinPath(dir, e.name))}>
                      {e.name}/
                    </a>
                  ) : (
                    // A click opens it here; the link itself still downloads
                    // (middle click, "save link as").
                    <a
                      href={api.downloadUrl(joinPath(dir, e.name))}
                      download={e.name}
                      aria-current={opened?.name === e.name ? "true" : undefined}
                      onClick={(ev) => {
                        if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
                        ev.preventDefault();
                        setOpened(e);
                      }}
                    >
                      {e.name}
                      {e.kind === "symlink" ? " →" : ""}
                    </a>
                  )}
                </td>
                <td class="num">{e.kind === "dir" ? "" : bytes(e.size)}</td>
                <td class="hide-narrow muted small">{e.mtime.replace("T", " ").slice(0, 16)}</td>
                <td class="actions-cell">
                  {!ro && (
                    <>
                      <button class="small" onClick={() => void rename(e)} aria-label={`Rename ${e.name}`}>
                        Rename
                      </button>
                      <button class="small danger" onClick={() => void remove(e)} aria-label={`Delete ${e.name}`}>
                        Delete
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {listing?.truncated && <p class="muted small">Only the first entries are shown.</p>}
    </section>
  );
}
