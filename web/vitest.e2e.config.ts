import { defineConfig } from "vitest/config";

// Browser end-to-end tests: the real kube-coder binary, the real tmux,
// headless Debian Chromium driven by playwright-core. One file at a time:
// each starts its own server.
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    environment: "node",
    testTimeout: 120_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    pool: "forks",
  },
});
