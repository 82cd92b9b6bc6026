// Token mode (the embedded default on a laptop): paste the API token once;
// the server answers with an HttpOnly, SameSite=Strict session cookie.
// Basic mode never shows this (the browser asks), oauth2 neither (the proxy does).
import { useState } from "preact/hooks";
import { api, ApiError } from "../api";
import { field } from "../form";

export function Login(props: { onIn: () => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await api.login(token.trim());
      props.onIn();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="center">
      <form class="card narrow login" onSubmit={submit}>
        <h1>kube-coder</h1>
        <p class="muted">
          Paste this workspace's API token. <code>kube-coder serve</code> printed it when it first started; it is also in
          the file named on its <code>api token:</code> line.
        </p>
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="current-password"
          value={token}
          onInput={field(setToken)}
          required
          autofocus
        />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy || !token.trim()}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}
