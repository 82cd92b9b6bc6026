// The header: workspace name, CPU / memory / disk (pushed as `system`
// events every few seconds), the read-only badge, theme and logout.
import { useEffect, useState } from "preact/hooks";
import { api, type Stats, type Whoami } from "./api";
import { live } from "./live";
import { bytes, percent } from "./state";
import { toast } from "./toast";

type Theme = "auto" | "light" | "dark";

const systemDark = matchMedia("(prefers-color-scheme: dark)");

function applyTheme(t: Theme): void {
  document.documentElement.dataset.theme = t === "auto" ? (systemDark.matches ? "dark" : "light") : t;
}

function Meter(props: { label: string; value: string; pct: number | null; title: string }) {
  return (
    <div class="meter" title={props.title}>
      <span class="meter-label">{props.label}</span>
      <span class="meter-value">{props.value}</span>
      <span class="meter-bar" aria-hidden="true">
        <span style={{ width: `${props.pct ?? 0}%` }} class={props.pct != null && props.pct > 85 ? "hot" : ""} />
      </span>
    </div>
  );
}

export function Header(props: { me: Whoami; onLogout: (() => void) | null }) {
  const [name, setName] = useState("");
  const [stats, setStats] = useState<Stats | null>(null);
  const [up, setUp] = useState(live.up);
  const [theme, setTheme] = useState<Theme>((localStorage.getItem("kc-theme") as Theme | null) ?? "auto");

  useEffect(() => {
    api
      .system()
      .then((s) => {
        setName(s.name);
        setStats(s.stats);
        document.title = `${s.name} · kube-coder`;
      })
      .catch(toast);
    const offStats = live.on("system", (d) => setStats((d as { stats: Stats }).stats));
    const offUp = live.onStatus(setUp);
    return () => {
      offStats();
      offUp();
    };
  }, []);

  useEffect(() => {
    applyTheme(theme);
    localStorage.setItem("kc-theme", theme);
    // "auto" follows the system when it switches (e.g. at night).
    const follow = () => applyTheme(theme);
    systemDark.addEventListener("change", follow);
    return () => systemDark.removeEventListener("change", follow);
  }, [theme]);

  const s = stats;
  const cpuPct = s?.cpu_cores != null ? percent(s.cpu_cores, s.cpu_limit_cores) : null;
  const memPct = percent(s?.memory_bytes, s?.memory_limit_bytes);
  const diskPct = percent(s?.disk_used_bytes, s?.disk_total_bytes);
  const nextTheme: Record<Theme, Theme> = { auto: "dark", dark: "light", light: "auto" };

  return (
    <header class="top">
      <div class="brand">
        <span class={up ? "dot up" : "dot"} title={up ? "live" : "reconnecting…"} aria-label={up ? "live" : "reconnecting"} />
        <strong class="ws-name">{name || "workspace"}</strong>
        {props.me.read_only && (
          <span class="badge ro" title="Nothing can be changed here">
            read-only
          </span>
        )}
      </div>
      <div class="meters" aria-label="Workspace resources">
        <Meter
          label="CPU"
          value={s?.cpu_cores != null ? `${s.cpu_cores.toFixed(2)}/${s.cpu_limit_cores.toFixed(1)}` : "–"}
          pct={cpuPct}
          title="CPU cores in use / limit"
        />
        <Meter label="Mem" value={bytes(s?.memory_bytes)} pct={memPct} title={`Memory in use of ${bytes(s?.memory_limit_bytes)}`} />
        <Meter label="Disk" value={bytes(s?.disk_used_bytes)} pct={diskPct} title={`Home volume used of ${bytes(s?.disk_total_bytes)}`} />
      </div>
      <div class="actions">
        <span class="muted user" title={`signed in via ${props.me.via}`}>
          {props.me.user}
        </span>
        <button class="ghost" onClick={() => setTheme(nextTheme[theme])} title="Theme: auto, dark, light" aria-label={`Theme: ${theme}`}>
          {theme === "dark" ? "☾" : theme === "light" ? "☀" : "◐"}
        </button>
        {props.onLogout && (
          <button class="ghost" onClick={props.onLogout}>
            Log out
          </button>
        )}
      </div>
    </header>
  );
}
