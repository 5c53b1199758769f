/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Built into the Python package, which serves it at / on the admin listener
// (src/strangler/admin/dashboard.py). Hashed names under assets/ are cached for a year there.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/strangler/admin/static",
    emptyOutDir: true,
    assetsDir: "assets",
    // One script file and no inline module preload polyfill: the page's CSP has no 'unsafe-inline'.
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  test: {
    environment: "jsdom",
    setupFiles: ["src/test/setup.ts"],
    include: ["src/**/*.test.tsx"],
  },
});
