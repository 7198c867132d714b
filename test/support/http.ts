// A small JSON client for integration tests. Every response it sees is checked against the
// gateway's /openapi.json (test/support/contract.ts) unless a call passes `contract: false`.
import { assertConforms } from "./contract";

export interface Res<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export function client(base: string) {
  async function request<T = any>(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string>; raw?: string; contract?: boolean } = {}): Promise<Res<T>> {
    const headers: Record<string, string> = { ...(opts.headers || {}) };
    let body: string | undefined;
    if (opts.raw !== undefined) body = opts.raw;
    else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["content-type"] ??= "application/json";
    }
    const res = await fetch(base + path, { method, headers, body });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    if (opts.contract !== false && process.env.VOKETAG_CONTRACT !== "0")
      await assertConforms(base, { method, url: res.url || base + path, status: res.status, contentType: res.headers.get("content-type"), body: parsed, text });
    return { status: res.status, headers: res.headers, body: parsed, text };
  }
  return {
    base,
    request,
    get: <T = any>(p: string, h?: Record<string, string>) => request<T>("GET", p, { headers: h }),
    post: <T = any>(p: string, b?: unknown, h?: Record<string, string>) => request<T>("POST", p, { body: b, headers: h }),
    del: <T = any>(p: string, h?: Record<string, string>) => request<T>("DELETE", p, { headers: h }),
  };
}

export async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T;
  for (;;) {
    last = await fn();
    if (ok(last)) return last;
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms; last value: ${JSON.stringify(last).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
