// The fuzzer: at least 10,000 malformed requests across every route of /openapi.json against one
// real node (all services in one process, on its own Postgres database, the shared Redis under its
// own namespace and a JSON-RPC dev chain). It passes with zero 5xx answers, zero hangs or dropped
// connections, the node alive at the end, and its RSS after a full GC within 10% of where it stood
// after a warm-up pass. RSS is read from /proc/<pid>/status after a GC requested over the node's
// inspector (chaos/memory.ts), so no debug route exists in the product.
//   npm run fuzz -- --requests=10000 --seed=1 --out=/tmp/fuzz.json
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startNode, freePort, NodeHandle } from "../test/support/node-process";
import { createClusterEnv, ClusterEnv } from "../test/support/cluster";
import { startReceiver, Receiver } from "../test/support/webhook-receiver";
import { client, until } from "../test/support/http";
import { inspectableNodeOptions, measureAfterGc, growthPct, MemorySample } from "../chaos/memory";
import { prng } from "./values";
import { routesOf, casesFor, hugeBodyCases, FuzzRequest, Fixtures, Route } from "./cases";

export const FUZZ_ADMIN = { email: "admin@fuzz.test", password: "fuzz admin password 2026" };

export interface FuzzTarget {
  base: string;
  node: NodeHandle;
  env: ClusterEnv;
  receiver: Receiver;
  dataDir: string;
  stop(): Promise<void>;
}

/** One node with every service, its memory measurable, limits out of the fuzzer's way. */
export async function startFuzzTarget(extraEnv: Record<string, string> = {}): Promise<FuzzTarget> {
  const env = await createClusterEnv("fuzz");
  const receiver = await startReceiver();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-fuzz-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let node: NodeHandle;
  try {
    node = await startNode({
      ...env.env,
      TRANSPORTER: "",
      PORT: String(port),
      VERIFICATION_URL_BASE: base,
      VOKETAG_DATA_DIR: dataDir,
      VOKETAG_ADMIN_EMAIL: FUZZ_ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: FUZZ_ADMIN.password,
      RATE_LIMIT_KEY: "100000000",
      RATE_LIMIT_USER: "100000000",
      RATE_LIMIT_NETWORK: "100000000",
      RATE_LIMIT_DEVICE: "100000000",
      LOGIN_NETWORK_MAX_FAILURES: "100000000",
      LOGIN_MAX_FAILURES: "100000000",
      LOGIN_SLOWDOWN_MS: "0",
      WEBHOOKS_ALLOW_PRIVATE: "1",
      ANCHOR_INTERVAL: "3600",
      LOG_LEVEL: "info",
      NODE_OPTIONS: inspectableNodeOptions(),
      ...extraEnv,
    });
  } catch (err) {
    await receiver.close();
    await env.close();
    throw err;
  }
  return {
    base,
    node,
    env,
    receiver,
    dataDir,
    async stop() {
      await node.stop("SIGTERM").catch(() => undefined);
      await receiver.close();
      await env.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The fuzzing tenant's resources, so that mutations of valid requests reach deep. */
export async function seedFixtures(base: string, receiverUrl: string): Promise<Fixtures & { login: () => Promise<string> }> {
  const api = client(base);
  const login = async () => (await until(() => api.post("/v1/auth/login", FUZZ_ADMIN), (r) => r.status === 200, 30_000, 500)).body.access_token as string;
  const bearer = await login();
  const jwt = { authorization: `Bearer ${bearer}` };
  const tenant = (await api.post("/v1/admin/tenants", { name: "Fuzz tenant" }, jwt)).body;
  const key = (await api.post(`/v1/admin/tenants/${tenant.id}/api-keys`, { name: "fuzz" }, jwt)).body.key;
  const K = { "x-api-key": key };
  const spare = (await api.post("/v1/admin/tenants", { name: "Fuzz spare tenant" }, jwt)).body;
  const spareTenantKey = (await api.post(`/v1/admin/tenants/${spare.id}/api-keys`, { name: "spare" }, jwt)).body.id;
  const spareKey = (await api.post("/v1/api-keys", { name: "spare" }, K)).body.id;
  const spareUser = (await api.post("/v1/admin/users", { email: "spare@fuzz.test", name: "Spare", role: "tenant_viewer", tenant_id: spare.id, password: "spare user password 1" }, jwt)).body?.id;
  const b = await api.post("/v1/batches", { name: "fuzz", products: Array.from({ length: 20 }, (_, i) => ({ sku: "FZ", name: "Fuzz product", serial: `FZ-${i}`, gtin: "09506000134352", lot: "L1" })) }, K);
  await until(() => api.get(`/v1/batches/${b.body.id}`, K), (r) => ["registered", "anchoring", "anchored"].includes(r.body?.status), 60_000, 250);
  const products = (await api.get(`/v1/batches/${b.body.id}/products`, K)).body.items;
  const hook = await api.post("/v1/webhooks", { url: receiverUrl, events: ["*"] }, K);
  let delivery: string | undefined;
  if (hook.status === 201) {
    await api.post(`/v1/webhooks/${hook.body.id}/test`, {}, K);
    const d = await until(() => api.get(`/v1/webhooks/${hook.body.id}/deliveries`, K), (r) => r.body?.items?.length > 0, 15_000, 250).catch(() => null);
    delivery = d?.body.items[0]?.id;
  }
  const upload = await api.post("/v1/uploads", { size: 100, sha256: "a".repeat(64), content_type: "text/csv" }, K);
  const recall = await api.post(`/v1/products/${products[19].id}/recall`, { reason: "fuzz" }, K);
  return {
    login,
    key,
    bearer,
    token: products[0].token,
    receiverUrl,
    ids: {
      batch: b.body.id,
      product: products[0].id,
      webhook: hook.body?.id,
      delivery,
      upload: upload.status < 300 ? upload.body?.id : undefined,
      recall: recall.status < 300 ? recall.body?.recall_id ?? recall.body?.id : undefined,
      spareTenant: spare.id,
      spareTenantKey,
      spareKey,
      spareUser,
    },
  };
}

export interface Outcome {
  req: FuzzRequest;
  status: number | string;
  ms: number;
  jsonError: boolean | null;
  body: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Sends one request byte for byte (raw path, raw body): fetch would normalise what we attack. */
export function send(base: string, r: FuzzRequest, timeoutMs = 30_000): Promise<Outcome> {
  const u = new URL(base);
  // Header values go out as their UTF-8 bytes (Node takes latin1 strings); control characters,
  // which Node's client refuses to send, are dropped.
  const wire = (v: string) => Buffer.from(v, "utf8").toString("latin1").replace(/[\x00-\x08\x0a-\x1f\x7f]/g, "");
  const headers = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, Array.isArray(v) ? v.map(wire) : wire(v)]));
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (status: number | string, body = "", jsonError: boolean | null = null) => {
      if (done) return;
      done = true;
      resolve({ req: r, status, ms: performance.now() - t0, jsonError, body });
    };
    let request: http.ClientRequest;
    try {
      request = http.request(
        { host: u.hostname, port: u.port, method: r.method, path: r.path, headers: { ...headers, ...(r.body !== undefined ? { "content-length": String(Buffer.byteLength(r.body)) } : {}) }, agent, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            if (size < 4 * 1048576) chunks.push(c);
            size += c.length;
          });
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let jsonError: boolean | null = null;
            if ((res.statusCode ?? 0) >= 400) {
              try {
                const b = JSON.parse(text);
                jsonError = typeof b?.error?.code === "string" && typeof b?.error?.message === "string" && typeof b?.error?.request_id === "string";
              } catch {
                jsonError = false;
              }
            }
            finish(res.statusCode ?? 0, text.slice(0, 300), jsonError);
          });
          res.on("error", () => finish("reset"));
        },
      );
    } catch (err) {
      // The client refused to send it (e.g. a character Node will not put in a request line).
      return finish("unsendable", (err as Error).message);
    }
    request.on("timeout", () => {
      request.destroy();
      finish("timeout");
    });
    request.on("error", (err: any) => finish(err?.code === "ECONNRESET" || err?.code === "EPIPE" || /socket hang up/.test(err?.message) ? "reset" : `error:${err?.code ?? err?.message}`));
    if (r.body !== undefined) request.end(r.body);
    else request.end();
  });
}

export interface FuzzReport {
  seed: number;
  requests: number;
  routes: number;
  per_route_min: number;
  duration_s: number;
  statuses: Record<string, number>;
  kinds: Record<string, number>;
  server_errors: number;
  hangs: number;
  resets: number;
  unsendable: number;
  non_json_errors: number;
  failures: { route: string; kind: string; method: string; path: string; status: number | string; body: string; sent: string | null; cause?: string }[];
  non_json_examples: { route: string; kind: string; status: number | string; body: string }[];
  node_alive: boolean;
  health_after: number | string;
  rss: { warm: MemorySample; after: MemorySample; growth_pct: number; heap_growth_pct: number } | null;
  routes_not_covered: string[];
  unsendable_examples: string[];
  rss_series_mb: number[];
}

/** Generates the requests of one pass: every route of the document gets at least its share. */
export function planRequests(doc: any, fx: Fixtures, total: number, seed: number, huge = 4): { routes: Route[]; requests: FuzzRequest[] } {
  const rng = prng(seed);
  const routes = routesOf(doc);
  const per = Math.ceil((total - huge) / routes.length);
  const requests = routes.flatMap((r) => casesFor(r, fx, rng, per, routes));
  requests.push(...hugeBodyCases(routes, fx, huge));
  // Interleave routes, so that no route's burst hides another's effect.
  for (let i = requests.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [requests[i], requests[j]] = [requests[j], requests[i]];
  }
  return { routes, requests };
}

async function drive(base: string, requests: FuzzRequest[], concurrency: number, onEach: (o: Outcome, i: number) => void | Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= requests.length) return;
        await onEach(await send(base, requests[i]), i);
      }
    }),
  );
}

export async function runFuzz(opts: { target: FuzzTarget; requests?: number; seed?: number; concurrency?: number; warmup?: number; log?: (m: string) => void }): Promise<FuzzReport> {
  const log = opts.log ?? (() => undefined);
  const total = opts.requests ?? 10_000;
  const seed = opts.seed ?? 1;
  const { target } = opts;
  const fx = await seedFixtures(target.base, target.receiver.url("/fuzz"));
  const doc = (await client(target.base).get("/openapi.json")).body;
  const pid = target.node.proc.pid!;

  // Warm-up pass (another seed, not counted): JIT, pools, caches, lazily loaded modules.
  const warm = planRequests(doc, fx, opts.warmup ?? 2000, seed + 1000).requests;
  await drive(target.base, warm, opts.concurrency ?? 16, () => undefined);
  fx.bearer = await fx.login();
  const warmMem = await measureAfterGc(pid, target.node.logs).catch(() => null);
  log(`warm-up: ${warm.length} requests; RSS after GC ${warmMem?.rssMb} MB (heap ${warmMem?.heapUsedMb} MB)`);

  const { routes, requests } = planRequests(doc, fx, total, seed);
  const t0 = Date.now();
  const statuses: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  const perRoute = new Map<string, number>(routes.map((r) => [`${r.method} ${r.template}`, 0]));
  const failures: FuzzReport["failures"] = [];
  const nonJson: FuzzReport["non_json_examples"] = [];
  let serverErrors = 0;
  let hangs = 0;
  let resets = 0;
  let unsendable = 0;
  let nonJsonErrors = 0;
  const unsendableExamples: string[] = [];
  const rssSeries: number[] = [];
  await drive(target.base, requests, opts.concurrency ?? 16, async (o, i) => {
    const r = o.req;
    statuses[o.status] = (statuses[o.status] ?? 0) + 1;
    kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
    perRoute.set(r.route, (perRoute.get(r.route) ?? 0) + 1);
    const fail = (what: string) => {
      if (failures.length < 100)
        failures.push({ route: r.route, kind: `${r.kind}${what}`, method: r.method, path: r.path.slice(0, 200), status: o.status, body: o.body.slice(0, 200), sent: r.body === undefined ? null : JSON.stringify(String(r.body).slice(0, 300)) });
    };
    if (typeof o.status === "number" && o.status >= 500) {
      serverErrors++;
      fail("");
    } else if (o.status === "timeout") {
      hangs++;
      fail("");
    } else if (o.status === "reset" || String(o.status).startsWith("error:")) {
      if (!r.mayReset) {
        resets++;
        fail("");
      }
    } else if (o.status === "unsendable") {
      unsendable++;
      if (unsendableExamples.length < 5) unsendableExamples.push(`${r.route} ${r.kind}: ${o.body}`);
    }
    // The contract: a 4xx from the API carries {error:{code,message,request_id}} (431 comes from
    // Node's HTTP parser before any application code, and HEAD answers have no body).
    if (typeof o.status === "number" && o.status >= 400 && o.status !== 431 && r.method !== "HEAD" && o.jsonError === false && r.path.startsWith("/v1/")) {
      nonJsonErrors++;
      if (nonJson.length < 20) nonJson.push({ route: r.route, kind: r.kind, status: o.status, body: o.body.slice(0, 160) });
    }
    // Tokens may be rotated by god mode or expire: log in again now and then.
    if (i % 2000 === 1999) fx.bearer = await fx.login().catch(() => fx.bearer);
    if (i % 2500 === 2499) {
      // The trend tells a leak (growing every quarter) from warm-up (a step, then flat).
      const m = await measureAfterGc(pid, target.node.logs, 200).catch(() => null);
      if (m) rssSeries.push(m.rssMb);
      log(`${i + 1}/${requests.length} requests; RSS after GC ${m?.rssMb} MB, heap ${m?.heapUsedMb} MB`);
    }
  });
  const duration = (Date.now() - t0) / 1000;
  const alive = target.node.proc.exitCode === null && !target.node.proc.signalCode;
  const health = alive ? await client(target.base).get("/v1/health").then((r) => r.status).catch((e) => String(e)) : "dead";
  const afterMem = alive ? await measureAfterGc(pid, target.node.logs).catch(() => null) : null;
  const counts = [...perRoute.values()];
  // Why each 5xx happened, from the node's own "request failed" log line for its request id.
  for (const f of failures) {
    const rid = /"request_id":"([^"]+)"/.exec(f.body)?.[1];
    const line = rid ? target.node.logs.find((l) => l.includes(rid) && l.includes("request failed")) : undefined;
    if (line) f.cause = (/"err":"((?:[^"\\]|\\.)*)"/.exec(line)?.[1] ?? "").slice(0, 200);
  }
  return {
    seed,
    requests: requests.length,
    routes: routes.length,
    per_route_min: Math.min(...counts),
    duration_s: Math.round(duration * 10) / 10,
    statuses,
    kinds,
    server_errors: serverErrors,
    hangs,
    resets,
    unsendable,
    non_json_errors: nonJsonErrors,
    failures,
    non_json_examples: nonJson,
    node_alive: alive,
    health_after: health,
    rss: warmMem && afterMem ? { warm: warmMem, after: afterMem, growth_pct: growthPct(warmMem.rssMb, afterMem.rssMb), heap_growth_pct: growthPct(warmMem.heapUsedMb, afterMem.heapUsedMb) } : null,
    unsendable_examples: unsendableExamples,
    rss_series_mb: rssSeries,
    routes_not_covered: [...perRoute.entries()].filter(([, n]) => n === 0).map(([k]) => k),
  };
}

export function fuzzSummary(r: FuzzReport): string {
  return [
    `fuzz: ${r.requests} requests over ${r.routes} routes (≥ ${r.per_route_min} each) in ${r.duration_s} s, seed ${r.seed}`,
    `  statuses: ${JSON.stringify(r.statuses)}`,
    `  kinds: ${JSON.stringify(r.kinds)}`,
    `  5xx: ${r.server_errors}  hangs: ${r.hangs}  dropped connections: ${r.resets}  unsendable: ${r.unsendable}  4xx without the JSON error shape: ${r.non_json_errors}`,
    `  node alive: ${r.node_alive} (health ${r.health_after})`,
    r.rss ? `  RSS after GC: ${r.rss.warm.rssMb} MB after warm-up → ${r.rss.after.rssMb} MB after the run (${r.rss.growth_pct}%); V8 heap ${r.rss.warm.heapUsedMb} → ${r.rss.after.heapUsedMb} MB` : "  RSS: not measured",
    r.rss_series_mb.length ? `  RSS after GC during the run: ${r.rss_series_mb.join(" → ")} MB` : "",
    ...r.failures.slice(0, 20).map((f) => `  FAIL ${f.status} ${f.method} ${f.path} [${f.route} / ${f.kind}] sent ${f.sent?.slice(0, 160)} → ${f.cause ?? f.body.slice(0, 120)}`),
    ...r.non_json_examples.slice(0, 10).map((f) => `  non-JSON ${f.status} [${f.route} / ${f.kind}] ${f.body}`),
  ].join("\n");
}

async function main() {
  const args = process.argv.slice(2);
  const arg = (n: string) => args.find((a) => a.startsWith(`--${n}=`))?.split("=")[1];
  const target = await startFuzzTarget();
  try {
    const report = await runFuzz({ target, requests: Number(arg("requests") ?? 10_000), seed: Number(arg("seed") ?? 1), concurrency: Number(arg("concurrency") ?? 16), log: (m) => console.log(m) });
    console.log(fuzzSummary(report));
    const out = arg("out") ?? path.join(os.tmpdir(), `voketag-fuzz-${Date.now()}.json`);
    fs.writeFileSync(out, JSON.stringify(report, null, 2));
    console.log(`JSON: ${out}`);
    const ok = report.server_errors === 0 && report.hangs === 0 && report.resets === 0 && report.node_alive && !!report.rss && report.rss.growth_pct < 10;
    process.exitCode = ok ? 0 : 1;
  } finally {
    await target.stop();
  }
}

if (require.main === module)
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
