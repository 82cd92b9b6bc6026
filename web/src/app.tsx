// The shell of the dashboard: who is logged in, the header, the navigation
// and the current view. Views get what they need as props.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, type Whoami } from "./api";
import { live } from "./live";
import { parseRoute, routeHash, type Route, type View } from "./state";
import { Header } from "./header";
import { Login } from "./views/login";
import { TasksView } from "./views/tasks";
import { TerminalView } from "./views/terminal";
import { FilesView } from "./views/files";
import { TriggersView } from "./views/triggers";
import { BuildsView } from "./views/builds";
import { NetworkView } from "./views/network";
import { Toasts, toast } from "./toast";
import { go } from "./nav";

const NAV: { view: View; label: string; key: string }[] = [
  { view: "tasks", label: "Tasks", key: "1" },
  { view: "terminal", label: "Terminal", key: "2" },
  { view: "files", label: "Files", key: "3" },
  { view: "triggers", label: "Triggers", key: "4" },
  // Only for a workspace behind an egress gateway (see `views`).
  { view: "network", label: "Network", key: "5" },
  // Only for a workspace that builds images through the operator.
  { view: "builds", label: "Builds", key: "6" },
];

/** The views this workspace has. */
function views(me: Whoami | null) {
  return NAV.filter(
    (n) => (n.view !== "network" || me?.gateway === true) && (n.view !== "builds" || me?.builds === true),
  );
}


function useRoute(): Route {
  const [route, setRoute] = useState(parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

type Session = { state: "loading" } | { state: "login"; why?: string } | { state: "in"; me: Whoami } | { state: "error"; message: string };

export function App() {
  const [session, setSession] = useState<Session>({ state: "loading" });
  // The key handler below is registered once; it reads who is in here.
  const meRef = useRef<Whoami | null>(null);
  meRef.current = session.state === "in" ? session.me : null;
  const route = useRoute();

  const check = async () => {
    try {
      const me = await api.whoami();
      setSession({ state: "in", me });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setSession({ state: "login" });
      else if (e instanceof ApiError && e.status === 403) setSession({ state: "error", message: e.message });
      else setSession({ state: "error", message: e instanceof Error ? e.message : String(e) });
    }
  };

  useEffect(() => {
    void check();
  }, []);

  useEffect(() => {
    if (session.state !== "in") return;
    live.start();
    return () => live.stop();
  }, [session.state]);

  // Alt+1..5 switch views from anywhere (plain digits are for typing).
  useEffect(() => {
    const on = (e: KeyboardEvent) => {
      if (!e.altKey || e.ctrlKey || e.metaKey) return;
      const n = views(meRef.current).find((x) => x.key === e.key);
      if (n) {
        e.preventDefault();
        go({ view: n.view, arg: "" });
      }
    };
    addEventListener("keydown", on);
    return () => removeEventListener("keydown", on);
  }, []);

  if (session.state === "loading") return <main class="center muted">Loading…</main>;
  if (session.state === "error")
    return (
      <main class="center">
        <div class="card narrow" role="alert">
          <h1>Cannot open this workspace</h1>
          <p>{session.message}</p>
          <button onClick={() => void check()}>Try again</button>
        </div>
      </main>
    );
  if (session.state === "login") return <Login onIn={() => void check()} />;

  const me = session.me;
  const logout = async () => {
    if (me.auth_mode === "oauth2") {
      location.href = "/oauth2/sign_out";
      return;
    }
    try {
      await api.logout();
    } catch (e) {
      toast(e);
    }
    live.stop();
    setSession({ state: "login" });
  };

  return (
    <div class="app">
      <Header me={me} onLogout={me.auth_mode === "token" || me.auth_mode === "oauth2" ? logout : null} />
      <nav class="tabs" aria-label="Views">
        {views(me).map((n) => (
          <a
            href={routeHash({ view: n.view, arg: "" })}
            class={route.view === n.view ? "tab active" : "tab"}
            aria-current={route.view === n.view ? "page" : undefined}
            title={`${n.label} (Alt+${n.key})`}
          >
            {n.label}
          </a>
        ))}
      </nav>
      <main class="view" id="main">
        {route.view === "tasks" && <TasksView me={me} selected={route.arg} />}
        {route.view === "terminal" && <TerminalView me={me} taskId={route.arg} />}
        {route.view === "files" && <FilesView me={me} dir={route.arg} />}
        {route.view === "triggers" && <TriggersView me={me} />}
        {route.view === "network" && <NetworkView me={me} />}
        {route.view === "builds" && <BuildsView />}
      </main>
      <Toasts />
    </div>
  );
}
