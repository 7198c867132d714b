// Scan path benchmark (`npm run bench:scan`): autocannon against POST /v1/scan on a real node (real
// Postgres and Redis, 10,000 distinct tokens, public rate limits raised since all load comes from
// one loopback network), side by side with a bare node:http server answering the same JSON bytes
// (the ceiling), plus the ledger's group commit against one transaction per append. Prints JSON.
//
// Usage: node --import tsx bench/scan.ts [--tokens 10000] [--duration 10] [--connections 64] [--rate 1000] [--append-seconds 5] [--workers N] [--profile DIR]
// --workers N runs the node as N broker processes (WORKERS=N, over NATS) sharing the port.
import { spawn, ChildProcess, execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import os from "node:os";
import { createClusterEnv } from "../test/support/cluster";
import { freePort } from "../test/support/node-process";
import { reachable, SERVICES } from "../test/support/services";
import { acquireDatabase, releaseDatabase, migrate } from "../mixins/database";
import { LedgerAppender } from "../mixins/ledger-appender";
import { invalidScanRecord } from "../test/support/scan-record";
import { Client } from "pg";

// autocannon ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon: any = require("autocannon");

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return v;
}

const TOKENS = arg("--tokens", 10_000);
const DURATION = arg("--duration", 10);
const CONNECTIONS = arg("--connections", 64);
const RATE = arg("--rate", 1000);
const APPEND_SECONDS = arg("--append-seconds", 5);
const WORKERS = arg("--workers", 1);
const ROOT = path.resolve(__dirname, "..");
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const log = (msg: string) => process.stderr.write(`[bench:scan] ${msg}\n`);

async function waitHttp(url: string, ms = 90_000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`${url} did not answer in time`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** --profile DIR: the scanned node writes a V8 CPU profile there when it stops. */
function profileArgs(): string[] {
  const i = process.argv.indexOf("--profile");
  return i < 0 ? [] : ["--cpu-prof", `--cpu-prof-dir=${path.resolve(process.argv[i + 1] || "bench-profile")}`];
}

function spawnNode(env: Record<string, string>): ChildProcess {
  // Logs go nowhere but are still produced at the level given, as in production.
  return spawn(process.execPath, [...profileArgs(), "--import", "tsx", path.join(ROOT, "bin", "node.ts")], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
}

async function json(base: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(base + p, { method, headers: { "content-type": "application/json", ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** Latency percentiles from every response seen (ms), besides autocannon's own summary. */
function percentiles(samples: number[]) {
  const s = Float64Array.from(samples).sort();
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN);
  return { p50: round(at(0.5)), p95: round(at(0.95)), p99: round(at(0.99)), max: round(s[s.length - 1] ?? NaN) };
}

// CPU seconds (user + system) of processes, from /proc: where each scan's cost goes. A process's
// `reaped` time adds its exited children (cutime, cstime): Postgres backends come and go.
const TICK = 100; // USER_HZ on Linux
function cpuSeconds(pids: number[], reaped: number[] = []): number {
  let ticks = 0;
  for (const pid of [...pids, ...reaped]) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
      if (reaped.includes(pid)) ticks += Number(f[13]) + Number(f[14]); // cutime, cstime
    } catch {
      /* exited */
    }
  }
  return ticks / TICK;
}
function pgrep(args: string[]): number[] {
  try {
    return execFileSync("pgrep", args, { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
/** Transactions Postgres has committed (all databases): statements per scan, as autocommit counts each. */
async function pgCommits(databaseUrl: string): Promise<number> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    // Stats are sent to the collector at most every 500 ms (PG 15: on commit, flushed lazily).
    const r = await c.query("SELECT pg_stat_force_next_flush(), (SELECT sum(xact_commit)::float8 FROM pg_stat_database) AS n");
    return Number(r.rows[0].n);
  } finally {
    await c.end();
  }
}

type Group = () => { pids: number[]; reaped?: number[] };
/** CPU per process group over a phase, and Postgres commits; divided per response at the end. */
async function cpuMeter(groups: Record<string, Group>, databaseUrl?: string) {
  const sample = (g: Group) => {
    const { pids, reaped } = g();
    return cpuSeconds(pids, reaped);
  };
  const start = Object.fromEntries(Object.entries(groups).map(([k, g]) => [k, sample(g)]));
  const commits0 = databaseUrl ? await pgCommits(databaseUrl) : 0;
  const self0 = process.cpuUsage();
  return async (responses: number) => {
    const out: Record<string, number> = {};
    const n = Math.max(1, responses);
    for (const [k, g] of Object.entries(groups)) out[k] = round(((sample(g) - start[k]) * 1000) / n, 3);
    const u = process.cpuUsage(self0);
    out.load_generator = round((u.user + u.system) / 1000 / n, 3);
    // Minus the two transactions of the meter's own reads.
    if (databaseUrl) out.postgres_commits_per_response = round((await pgCommits(databaseUrl) - commits0 - 2) / n, 2);
    return out;
  };
}

async function cannon(opts: Record<string, unknown>, meter?: Awaited<ReturnType<typeof cpuMeter>>): Promise<any> {
  const samples: number[] = [];
  const statuses: Record<string, number> = {};
  const result: any = await new Promise((resolve, reject) => {
    const inst = autocannon(opts, (err: unknown, res: unknown) => (err ? reject(err) : resolve(res)));
    inst.on("response", (_c: unknown, status: number, _bytes: number, ms: number) => {
      samples.push(ms);
      statuses[status] = (statuses[status] ?? 0) + 1;
    });
  });
  const pc = percentiles(samples);
  const cpu = await meter?.(samples.length);
  return {
    ...(cpu && { cpu_ms_per_response: cpu }),
    requests_per_s: round(result.requests.average, 1),
    // Percentiles of every response's time, one source for all three; autocannon's own summary beside.
    latency_ms: { p50: pc.p50, p95: pc.p95, p99: pc.p99, max: pc.max, mean: round(result.latency.average) },
    autocannon_latency_ms: { p50: result.latency.p50, p97_5: result.latency.p97_5, p99: result.latency.p99 },
    responses: samples.length,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

/**
 * An open-loop load at a steady rate: request i is due at start + i/rate whatever the server does,
 * on a pool of keep-alive connections, and its latency counts from when it was due (so a stalled
 * server is not hidden by requests the generator failed to send: no coordinated omission).
 * autocannon's own rate option is not this: each connection sends its per-second quota back to
 * back and then waits for the next second, so the server sees every connection busy at once for
 * most of each second, a saturating burst rather than a rate.
 */
async function paced(base: string, rate: number, seconds: number, body: (i: number) => string, meter: Awaited<ReturnType<typeof cpuMeter>>) {
  const url = new URL(`${base}/v1/scan`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });
  const total = Math.round(rate * seconds);
  const samples: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  const t0 = performance.now() + 20;
  await new Promise<void>((resolve) => {
    let sent = 0;
    let done = 0;
    const finish = () => ++done === total && resolve();
    const pump = () => {
      const now = performance.now();
      for (; sent < total && t0 + (sent * 1000) / rate <= now; sent++) {
        const due = t0 + (sent * 1000) / rate;
        const payload = body(sent);
        const req = http.request(
          { agent, host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload), "user-agent": "Mozilla/5.0 (bench phone)" } },
          (res) => {
            res.resume();
            res.on("end", () => {
              samples.push(performance.now() - due);
              statuses[res.statusCode!] = (statuses[res.statusCode!] ?? 0) + 1;
              finish();
            });
          },
        );
        req.on("error", () => {
          errors++;
          finish();
        });
        req.end(payload);
      }
      if (sent < total) setTimeout(pump, 1);
    };
    pump();
  });
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  const cpu = await meter(samples.length);
  return { cpu_ms_per_response: cpu, requests_per_s: round(samples.length / elapsed, 1), latency_ms: percentiles(samples), responses: samples.length, statuses, errors };
}

async function ledgerAppends(databaseUrl: string) {
  const db = acquireDatabase({ databaseUrl, dataDir: "memory://" });
  await migrate(db);
  const out: Record<string, any> = {};
  for (const [label, maxGroup, partitions] of [
    ["one_tx_per_append_1_chain", 1, 1],
    ["one_tx_per_append_16_chains", 1, 16],
    ["grouped_1_chain", 200, 1],
    ["grouped_16_chains", 200, 16],
  ] as const) {
    // The reference commits each append alone (per partition); grouped commits share across partitions.
    const appender = new LedgerAppender(db, { maxGroup, crossPartition: maxGroup > 1 });
    const base = 1000 + Object.keys(out).length * 100; // fresh partitions per run
    let done = 0;
    const end = Date.now() + APPEND_SECONDS * 1000;
    const lat: number[] = [];
    // 256 clients appending back to back, as scans do under load.
    await Promise.all(
      Array.from({ length: 256 }, async (_, c) => {
        while (Date.now() < end) {
          const t0 = performance.now();
          await appender.append(base + (c % partitions), invalidScanRecord());
          lat.push(performance.now() - t0);
          done++;
        }
      }),
    );
    out[label] = { appends_per_s: round(done / APPEND_SECONDS, 0), transactions: appender.stats.commits, mean_group: round(appender.stats.entries / appender.stats.commits, 1), latency_ms: percentiles(lat) };
    log(`${label}: ${out[label].appends_per_s}/s`);
  }
  out.group_vs_single = {
    one_chain: round(out.grouped_1_chain.appends_per_s / out.one_tx_per_append_1_chain.appends_per_s, 1),
    sixteen_chains: round(out.grouped_16_chains.appends_per_s / out.one_tx_per_append_16_chains.appends_per_s, 1),
  };
  out.reference_pgbench = { one_chain: 1100, sixteen_chains: 3100, note: "one hash-chained append per transaction, measured with pgbench (issue 4)" };
  await releaseDatabase(db);
  return out;
}

async function main() {
  for (const s of ["postgres", "redis"] as const) {
    if (!(await reachable(SERVICES[s].host, SERVICES[s].port))) throw new Error(`${s} is not reachable at ${SERVICES[s].host}:${SERVICES[s].port}`);
  }
  const loadStart = round(os.loadavg()[0]);
  const cluster = await createClusterEnv("bench_scan");
  const children: ChildProcess[] = [];
  try {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const admin = { email: "bench@voketag.test", password: "bench password long enough" };
    const node = spawnNode({
      ...cluster.env,
      // Several workers are a cluster: they hear each other's events over NATS.
      TRANSPORTER: WORKERS > 1 ? SERVICES.nats.url : "",
      WORKERS: String(WORKERS),
      SERVICES: "api,scan,factory,admin",
      PORT: String(port),
      VERIFICATION_URL_BASE: base,
      VOKETAG_ADMIN_EMAIL: admin.email,
      VOKETAG_ADMIN_PASSWORD: admin.password,
      RATE_LIMIT_NETWORK: "100000000",
      RATE_LIMIT_DEVICE: "100000000",
      LOG_LEVEL: process.env.LOG_LEVEL || "info",
      DATABASE_POOL_MAX: process.env.DATABASE_POOL_MAX || "20",
    });
    children.push(node);
    await waitHttp(`${base}/v1/health`);
    log("node up; registering tokens");

    const jwt = { authorization: `Bearer ${(await json(base, "POST", "/v1/auth/login", admin)).access_token}` };
    const tenant = await json(base, "POST", "/v1/admin/tenants", { name: "Bench Brand" }, jwt);
    const key = { "x-api-key": (await json(base, "POST", `/v1/admin/tenants/${tenant.id}/api-keys`, { name: "bench" }, jwt)).key };
    const tokens: string[] = [];
    for (let start = 0; start < TOKENS; start += 10_000) {
      const n = Math.min(10_000, TOKENS - start);
      const b = await json(base, "POST", "/v1/batches", { name: `bench ${start}`, market_regions: ["BR"], products: Array.from({ length: n }, (_, i) => ({ sku: "B", name: "Bench item", serial: `B-${start + i}` })) }, key);
      for (let t = 0; ; t++) {
        const s = await json(base, "GET", `/v1/batches/${b.id}`, undefined, key);
        if (s.status === "registered" || s.status === "anchored") break;
        if (s.status === "failed" || t > 600) throw new Error(`batch ${b.id}: ${s.status}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      for (let cursor: string | null = null; ; ) {
        const page: any = await json(base, "GET", `/v1/batches/${b.id}/products?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, undefined, key);
        for (const p of page.items) tokens.push(p.token);
        cursor = page.next_cursor;
        if (!cursor) break;
      }
    }
    log(`${tokens.length} tokens`);

    // Each request a different token (and the matching device field a phone would send).
    let next = 0;
    const scanRequest = {
      method: "POST" as const,
      path: "/v1/scan",
      headers: { "content-type": "application/json", "user-agent": "Mozilla/5.0 (bench phone)" },
      setupRequest(req: any) {
        const i = next++ % tokens.length;
        req.body = JSON.stringify({ token: tokens[i], fingerprint: `phone-${i}` });
        return req;
      },
    };
    const sample = await fetch(`${base}/v1/scan`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: tokens[0] }) });
    const sampleBody = await sample.text();

    // The ceiling: a bare node:http server in its own process answering the same bytes.
    const cport = await freePort();
    const ceilingSrc = `const body = Buffer.from(${JSON.stringify(sampleBody)});
      require("node:http").createServer((req, res) => { req.resume(); req.on("end", () => { res.writeHead(200, { "content-type": "application/json", "content-length": body.length }); res.end(body); }); }).listen(${cport}, "127.0.0.1");`;
    const ceiling = spawn(process.execPath, ["-e", ceilingSrc], { stdio: "ignore" });
    children.push(ceiling);
    await new Promise((r) => setTimeout(r, 500));

    log("warm-up (one pass over the tokens fills the lookup cache)");
    await cannon({ url: base, connections: CONNECTIONS, amount: tokens.length, requests: [scanRequest] } as any);

    log(`ceiling: ${DURATION} s`);
    const ceil = await cannon(
      { url: `http://127.0.0.1:${cport}/v1/scan`, method: "POST", body: JSON.stringify({ token: tokens[0] }), headers: { "content-type": "application/json" }, connections: CONNECTIONS, duration: DURATION },
      await cpuMeter({ server: () => ({ pids: [ceiling.pid!] }) }),
    );
    // Postgres and Redis processes are counted whole: anything else using them adds to these figures.
    const postmaster = pgrep(["-o", "-x", "postgres"]);
    const meter = () =>
      cpuMeter(
        {
          node: () => ({ pids: [node.pid!, ...pgrep(["-P", String(node.pid)])] }),
          postgres: () => ({ pids: pgrep(["-P", String(postmaster[0])]), reaped: postmaster }),
          redis: () => ({ pids: pgrep(["-x", "redis-server"]) }),
        },
        cluster.databaseUrl,
      );
    log(`scan peak: ${DURATION} s`);
    const peak = await cannon({ url: base, connections: CONNECTIONS, duration: DURATION, requests: [scanRequest] } as any, await meter());
    log(`scan at ${RATE} req/s with autocannon --overallRate: ${DURATION} s`);
    const bursty = await cannon({ url: base, connections: CONNECTIONS, duration: DURATION, overallRate: RATE, requests: [scanRequest] } as any, await meter());
    log(`scan paced at ${RATE} req/s (open loop): ${DURATION} s`);
    const steady = await paced(base, RATE, DURATION, (i) => JSON.stringify({ token: tokens[(next + i) % tokens.length], fingerprint: `phone-${(next + i) % tokens.length}` }), await meter());

    log("ledger appends");
    const ledger = await ledgerAppends(cluster.databaseUrl);

    const ratio = round(peak.requests_per_s / ceil.requests_per_s, 3);
    const result = {
      bench: "scan",
      // Load average at the end of the run: other work on the machine competes for the same cores.
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, loadavg_1m_start: loadStart, loadavg_1m_end: round(os.loadavg()[0]) },
      setup: {
        tokens: tokens.length,
        connections: CONNECTIONS,
        duration_s: DURATION,
        response_bytes: Buffer.byteLength(sampleBody),
        log_level: process.env.LOG_LEVEL || "info",
        database_pool_max: Number(process.env.DATABASE_POOL_MAX || 20),
        workers: WORKERS,
        node:
          WORKERS > 1
            ? `${WORKERS} broker processes (WORKERS), each api, scan, factory, admin, over NATS; Postgres and Redis on this machine`
            : "one process: api, scan, factory, admin (no transporter); Postgres and Redis on this machine",
      },
      ceiling_node_http: ceil,
      scan_peak: peak,
      // The target's measurement: a steady, evenly spaced 1,000 req/s (see paced()).
      scan_at_rate: { target_rate: RATE, generator: "paced open loop (node:http, keep-alive pool)", ...steady },
      // autocannon --overallRate, for comparison: per-connection quotas sent in bursts each second.
      scan_at_rate_autocannon_bursts: { target_rate: RATE, ...bursty },
      ratio_to_ceiling: ratio,
      targets: {
        p99_under_25ms_at_rate: { value_ms: steady.latency_ms.p99, met: steady.latency_ms.p99 < 25 && steady.requests_per_s >= RATE * 0.95 },
        peak_at_least_30pct_of_ceiling: { value: ratio, met: ratio >= 0.3 },
      },
      ledger_appends: ledger,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  } finally {
    for (const c of children) c.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 1500));
    await cluster.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
