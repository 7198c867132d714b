// Injected into the browser verifier bundle (lib/verifier-bundle.ts) as the global `Buffer` that
// lib/merkle, lib/proof and lib/canonical use: the npm `buffer` package, Node's Buffer API in plain JS.
export { Buffer } from "buffer";
