/* global __filename */
// Jest transform: TypeScript to CommonJS with esbuild (already installed with tsx). Chosen over
// @swc/jest because the registry here lacks some of swc's platform packages, which breaks `npm ci`.
const { transformSync } = require("esbuild");
const crypto = require("node:crypto");
const fs = require("node:fs");

// The cache key covers this file too, so changing the options below re-transforms everything.
const SELF = crypto.createHash("sha256").update(fs.readFileSync(__filename)).digest("hex");

module.exports = {
  process(source, filename) {
    const r = transformSync(source, { loader: filename.endsWith(".tsx") ? "tsx" : "ts", format: "cjs", target: "node22", supported: { "dynamic-import": false }, sourcemap: "inline", sourcefile: filename });
    return { code: r.code };
  },
  getCacheKey(source, filename) {
    return crypto.createHash("sha256").update(SELF).update(filename).update("\0").update(source).digest("hex");
  },
};
