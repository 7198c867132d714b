// JSON-RPC over HTTP with nothing but fetch, so the same code runs in Node (chain client, CLI) and
// in the browser verifier. The caller chooses the endpoint; nothing here talks to VokeTag.
import { jsonRpcChainReader, type ChainReader } from "./proof";

export type JsonRpcSend = (method: string, params: unknown[]) => Promise<any>;

export interface JsonRpcOptions {
  timeoutMs?: number;
  /** Injected in tests; defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** An RPC error answered by the node (as opposed to the node being unreachable). */
export class JsonRpcError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly rpcCode?: number,
    readonly status?: number,
  ) {
    super(message);
    this.name = "JsonRpcError";
  }
}

export function httpJsonRpc(url: string, opts: JsonRpcOptions = {}): JsonRpcSend {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let id = 0;
  return async (method, params) => {
    const doFetch = opts.fetch ?? fetch;
    let res: Response;
    try {
      res = await doFetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
      const timeout = e?.name === "TimeoutError" || e?.name === "AbortError";
      const why = timeout ? `no answer within ${timeoutMs} ms` : e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
      throw Object.assign(new JsonRpcError(`RPC ${method}: cannot reach ${originOf(url)} (${why})`, timeout ? "TIMEOUT" : "NETWORK_ERROR"), { cause: err });
    }
    const text = await res.text();
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      // 5xx from a proxy in front of the node: the node is as good as unreachable.
      throw new JsonRpcError(`RPC ${method}: HTTP ${res.status}, not JSON`, res.status >= 500 ? "SERVER_ERROR" : "BAD_RESPONSE", undefined, res.status);
    }
    if (body && body.error) throw new JsonRpcError(`RPC ${method}: ${body.error.message ?? "error"}`, "RPC_ERROR", body.error.code, res.status);
    if (!res.ok) throw new JsonRpcError(`RPC ${method}: HTTP ${res.status}`, "SERVER_ERROR", undefined, res.status);
    return body?.result;
  };
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "the RPC endpoint";
  }
}

/** A proof ChainReader over an RPC URL (CLI, browser verifier). */
export function rpcChainReader(url: string, opts: JsonRpcOptions = {}): ChainReader {
  return jsonRpcChainReader(httpJsonRpc(url, opts));
}
