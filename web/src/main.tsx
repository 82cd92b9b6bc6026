// Entry point. Before anything renders: give <style> elements the page's
// CSP nonce. The server's policy allows styles from this origin or with the
// nonce of this response; xterm.js writes its theme into <style> elements,
// which would otherwise be refused.
import "./csp-compat";
import { render } from "preact";
import { App } from "./app";
import "./styles.css";

const root = document.getElementById("app");
if (root) render(<App />, root);
