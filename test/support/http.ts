// A small JSON client for integration tests.
export interface Res<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export function client(base: string) {
  async function request<T = any>(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string>; raw?: string } = {}): Promise<Res<T>> {
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
