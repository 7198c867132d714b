// One webhook POST, SSRF-safe: the URL is checked, its host resolved once, every address checked,
// and the connection made to the address that passed (Host header and TLS SNI keep the name), so
// a DNS answer that changes between check and connect (rebinding) cannot redirect the request.
// Redirects are never followed: a 3xx is a failed attempt.
import http from "node:http";
import https from "node:https";
import dns from "node:dns";
import { checkWebhookUrl, checkResolved, UrlPolicy } from "./ssrf";
import { parseRetryAfter } from "./retry-schedule";

export type Resolver = (hostname: string) => Promise<string[]>;

export const systemResolver: Resolver = async (hostname) => {
  const all = await dns.promises.lookup(hostname, { all: true, verbatim: true });
  return all.map((a) => a.address);
};

export interface PostResult {
  /** 2xx */
  ok: boolean;
  status: number | null;
  latencyMs: number;
  error: string | null;
  /** Seconds the receiver asked us to wait (Retry-After), if it did. */
  retryAfter: number | null;
  /** The start of the response body, for the delivery log. */
  body: string | null;
  /** The address connected to (after checks). */
  address: string | null;
  /** The URL itself is refused by policy: retrying cannot help. */
  permanent: boolean;
}

const MAX_BODY_KEPT = 1024;
const REGISTRATION_DNS_TIMEOUT_MS = 5000;

/** Whether a URL passes the checks, resolving its host (registration time). Null when it does. */
export async function refuseUrl(raw: string, policy: UrlPolicy, resolve: Resolver = systemResolver): Promise<string | null> {
  const c = checkWebhookUrl(raw, policy);
  if (!c.ok) return c.reason;
  if (c.ip) return null;
  let addresses: string[];
  try {
    addresses = await withTimeout(resolve(c.hostname), REGISTRATION_DNS_TIMEOUT_MS, "DNS lookup");
  } catch (err: any) {
    return `url host ${c.hostname} does not resolve (${err?.code || err?.message || "DNS error"})`;
  }
  const r = checkResolved(c.hostname, addresses, policy);
  return r.ok ? null : r.reason;
}

export async function postWebhook(opts: {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  policy: UrlPolicy;
  resolve?: Resolver;
  userAgent?: string;
}): Promise<PostResult> {
  const started = process.hrtime.bigint();
  const elapsed = () => Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10;
  const fail = (error: string, permanent = false): PostResult => ({ ok: false, status: null, latencyMs: elapsed(), error, retryAfter: null, body: null, address: null, permanent });

  const c = checkWebhookUrl(opts.url, opts.policy);
  if (!c.ok) return fail(`refused: ${c.reason}`, true);
  let address: string;
  let family: 4 | 6;
  if (c.ip) {
    address = c.ip.address;
    family = c.ip.family;
  } else {
    let addresses: string[];
    try {
      addresses = await withTimeout((opts.resolve ?? systemResolver)(c.hostname), opts.timeoutMs / 2, "DNS lookup");
    } catch (err: any) {
      return fail(`DNS lookup of ${c.hostname} failed: ${err?.code || err?.message}`);
    }
    const r = checkResolved(c.hostname, addresses, opts.policy);
    if (!r.ok) return fail(`refused: ${r.reason}`);
    address = r.address;
    family = r.family;
  }

  return new Promise<PostResult>((resolvePromise) => {
    let settled = false;
    const done = (r: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolvePromise(r);
    };
    const lib = c.https ? https : http;
    const req = lib.request(
      {
        method: "POST",
        protocol: c.url.protocol,
        // The name goes in Host and SNI; the socket goes to the checked address only.
        hostname: c.ip ? address : c.hostname,
        port: c.port,
        path: `${c.url.pathname}${c.url.search}`,
        headers: {
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(opts.body)),
          "user-agent": opts.userAgent ?? "VokeTag-Webhooks/1",
          ...opts.headers,
        },
        agent: false,
        lookup: pinnedLookup(address, family) as any,
        ...(c.https && !c.ip ? { servername: c.hostname } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let kept = 0;
        const finish = () => {
          const status = res.statusCode ?? 0;
          const body = Buffer.concat(chunks).toString("utf8").slice(0, MAX_BODY_KEPT);
          res.destroy();
          const ok = status >= 200 && status < 300;
          let error: string | null = null;
          if (status >= 300 && status < 400) error = `redirect (${status}) not followed${res.headers.location ? ` to ${String(res.headers.location).slice(0, 200)}` : ""}`;
          else if (!ok) error = `HTTP ${status}`;
          done({ ok, status, latencyMs: elapsed(), error, retryAfter: parseRetryAfter(res.headers["retry-after"]), body: body || null, address, permanent: false });
        };
        res.on("data", (chunk: Buffer) => {
          if (kept < MAX_BODY_KEPT) {
            chunks.push(chunk);
            kept += chunk.length;
          }
          if (kept >= MAX_BODY_KEPT) finish();
        });
        res.on("end", finish);
        res.on("error", finish);
      },
    );
    // One budget for DNS and the request together: the worker's lease is sized on it.
    const timer = setTimeout(() => {
      req.destroy(new Error(`timed out after ${opts.timeoutMs / 1000} s`));
    }, Math.max(1, opts.timeoutMs - elapsed()));
    req.on("error", (err: any) => done({ ...fail(err?.code && err.code !== "ERR_STREAM_DESTROYED" ? `${err.code}: ${err.message}` : err?.message || String(err)), address }));
    req.end(opts.body);
  });
}

/** A dns.lookup stand-in that only ever answers the address we checked. */
function pinnedLookup(address: string, family: 4 | 6) {
  return (_hostname: string, options: any, callback?: any) => {
    const cb = typeof options === "function" ? options : callback;
    const all = typeof options === "object" && options?.all;
    if (all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`${what} timed out`)), ms); })]).finally(() => clearTimeout(t));
}
