/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The server embeds dist/ and replaces __CSP_NONCE__ in index.html with a
// fresh nonce per response (see crates/workspace/src/web_assets.rs).
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  html: { cspNonce: "__CSP_NONCE__" },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    sourcemap: false,
    // One app chunk and one terminal chunk; no inline assets (CSP: img-src 'self' data: is fine, but keep files).
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:6080", ws: true },
      "/auth": "http://127.0.0.1:6080",
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
