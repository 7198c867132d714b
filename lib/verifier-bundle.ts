// Bundles the browser verifier (lib/verifier-app.ts → lib/proof, lib/merkle, lib/json-rpc, …) with
// esbuild when the anchor service first serves /assets/verify.js: the browser runs the same code as
// the API and the CLI, never a second copy. In the bundle, SHA-256 is lib/sha256's pure code (no
// node:crypto in a browser) and Buffer is the npm `buffer` package (lib/browser-buffer.ts).
import path from "node:path";
import { createHash } from "node:crypto";

export interface VerifierBundle {
  code: string;
  sha256: string;
  bytes: number;
}

export async function buildVerifierBundle(): Promise<VerifierBundle> {
  // esbuild ships with tsx (a runtime dependency); loaded only when the page is first asked for.
  const esbuild = require("esbuild") as typeof import("esbuild");
  const result = await esbuild.build({
    entryPoints: [path.join(__dirname, "verifier-app.ts")],
    bundle: true,
    write: false,
    platform: "browser",
    format: "iife",
    target: ["es2020"],
    minify: true,
    legalComments: "none",
    logLevel: "silent",
    inject: [path.join(__dirname, "browser-buffer.ts")],
    define: { global: "globalThis" },
  });
  const code = result.outputFiles[0].text;
  return { code, sha256: createHash("sha256").update(code).digest("hex"), bytes: Buffer.byteLength(code) };
}
