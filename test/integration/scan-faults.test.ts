// The scan path when its dependencies fail, on servers of this suite's own (never the machine's
// shared Redis or Postgres): Redis down or hung → scans still answered, the breaker recovers, and a
// recall made meanwhile is never hidden by a stale cache entry; Postgres down → 503 with Retry-After,
// never a verdict, and service again when it returns.
import crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices, reachable } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client, until } from "../support/http";
import { ADMIN } from "../support/journey";

const PG_VERSION = "15";

async function waitFor(what: string, ok: () => Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what}: not ready in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("scan path under Redis and Postgres failures", () => {
  let available = false;
  let cluster: ClusterEnv;
  let node: NodeHandle;
  let base: string;
  let key: Record<string, string>;
  let products: any[];
  const redisPort = { n: 0 };
  const pgPort = { n: 0 };
  const pgName = `vkscan_${crypto.randomBytes(3).toString("hex")}`;
  let pgCreated = false;
  const redisPidFile = () => `/tmp/voketag-scan-faults-${redisPort.n}.pid`;

  const redis = (...args: string[]) => execFileSync("redis-cli", ["-p", String(redisPort.n), ...args], { encoding: "utf8" }).trim();
  async function startRedis() {
    execFileSync("redis-server", ["--port", String(redisPort.n), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes", "--pidfile", redisPidFile(), "--dir", "/tmp"]);
    await waitFor("redis", () => reachable("127.0.0.1", redisPort.n));
  }
  const redisPid = () => Number(fs.readFileSync(redisPidFile(), "utf8").trim());
  const cacheKeys = (pattern: string) => redis("--scan", "--pattern", `*${pattern}*`).split("\n").filter(Boolean);
  const pgctl = (action: string, ...extra: string[]) => execFileSync("pg_ctlcluster", [PG_VERSION, pgName, action, ...extra], { stdio: "pipe" });

  beforeAll(async () => {
    available = await needServices("scan-faults", ["postgres", "redis"]);
    if (!available) return;
    redisPort.n = await freePort();
    pgPort.n = await freePort();
    await startRedis();
    // initdb refuses root: pg_createcluster runs it as postgres. Trust on loopback, like the shared server.
    execFileSync("pg_createcluster", [PG_VERSION, pgName, "-p", String(pgPort.n), "--", "--auth=trust"], { stdio: "pipe" });
    pgCreated = true;
    pgctl("start");
    await waitFor("postgres", () => reachable("127.0.0.1", pgPort.n));
    cluster = await createClusterEnv("scanfaults", { postgresUrl: `postgres://postgres@127.0.0.1:${pgPort.n}/postgres`, redisUrl: `redis://127.0.0.1:${redisPort.n}` });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({
      ...cluster.env,
      TRANSPORTER: "",
      SERVICES: "api,scan,factory,admin",
      PORT: String(port),
      VERIFICATION_URL_BASE: base,
      VOKETAG_ADMIN_EMAIL: ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: ADMIN.password,
      RATE_LIMIT_NETWORK: "100000",
      RATE_LIMIT_DEVICE: "100000",
    });
    const api = client(base);
    const jwt = { authorization: `Bearer ${(await api.post("/v1/auth/login", ADMIN)).body.access_token}` };
    const t = await api.post("/v1/admin/tenants", { name: "Faulty Co" }, jwt);
    key = { "x-api-key": (await api.post(`/v1/admin/tenants/${t.body.id}/api-keys`, { name: "k" }, jwt)).body.key };
    const b = await api.post("/v1/batches", { name: "F", products: Array.from({ length: 6 }, (_, i) => ({ sku: "F", name: `Fan ${i}`, serial: `F-${i}` })) }, key);
    await until(() => api.get(`/v1/batches/${b.body.id}`, key), (r) => r.body.status === "registered", 30_000);
    products = (await api.get(`/v1/batches/${b.body.id}/products`, key)).body.items;
  });

  afterAll(async () => {
    try {
      process.kill(redisPid(), "SIGCONT");
    } catch {
      /* not stopped */
    }
    await node?.stop();
    try {
      if (pgCreated) pgctl("start");
    } catch {
      /* already running */
    }
    await cluster?.close().catch(() => undefined);
    if (pgCreated) execFileSync("pg_dropcluster", [PG_VERSION, pgName, "--stop"], { stdio: "pipe" });
    try {
      redis("shutdown", "nosave");
    } catch {
      /* already gone */
    }
  });

  const scan = async (token: string) => {
    const t0 = Date.now();
    const r = await client(base).post("/v1/scan", { token });
    return { ...r, ms: Date.now() - t0 };
  };

  it("answers scans with Redis down (no cache, local rate limits) and uses Redis again when it returns", async () => {
    if (!available) return;
    const [p0, p1] = products;
    const first = await scan(p0.token);
    expect(first.status).toBe(200);
    expect(cacheKeys(`scan.lookup:${p0.id}`)).toHaveLength(1);

    redis("shutdown", "nosave");
    await waitFor("redis gone", async () => !(await reachable("127.0.0.1", redisPort.n)));
    for (let i = 0; i < 10; i++) {
      const r = await scan(i % 2 ? p0.token : p1.token);
      expect(r.status).toBe(200);
      expect(r.body.verdict).toBe("authentic");
      expect(r.headers.get("ratelimit")).toMatch(/r=\d+/);
      expect(r.ms).toBeLessThan(1000);
    }

    await startRedis();
    // The breaker lets Redis be tried again after a couple of seconds; then lookups are cached again.
    await until(async () => {
      await scan(p1.token);
      return cacheKeys(`scan.lookup:${p1.id}`).length;
    }, (n) => n === 1, 15_000, 250);
  });

  it("never serves a product recalled while Redis hung from the stale entry Redis still holds", async () => {
    if (!available) return;
    const p = products[2];
    expect((await scan(p.token)).body.verdict).toBe("authentic");
    expect(cacheKeys(`scan.lookup:${p.id}`)).toHaveLength(1);

    process.kill(redisPid(), "SIGSTOP");
    try {
      const during = await scan(p.token);
      expect(during.status).toBe(200);
      expect(during.ms).toBeLessThan(1500);
      const recall = await client(base).post(`/v1/products/${p.id}/recall`, { reason: "cord may overheat" }, key);
      expect(recall.status).toBe(201);
      expect((await scan(p.token)).body.verdict).toBe("recalled");
    } finally {
      process.kill(redisPid(), "SIGCONT");
    }
    // Redis is back with the old "active" entry in it: it must be flushed before it is read.
    expect(cacheKeys(`scan.lookup:${p.id}`)).toHaveLength(1);
    const end = Date.now() + 6000;
    while (Date.now() < end) {
      const r = await scan(p.token);
      expect(r.status).toBe(200);
      expect(r.body.verdict).toBe("recalled");
      await new Promise((res) => setTimeout(res, 200));
    }
    // And the cache is in use again, with the new status.
    await until(async () => {
      await scan(p.token);
      const k = cacheKeys(`scan.lookup:${p.id}`);
      return k.length ? redis("get", k[0]) : "";
    }, (v) => v.includes("recalled"), 10_000, 250);
  });

  it("answers 503 with Retry-After while Postgres is down, never a verdict, and recovers when it returns", async () => {
    if (!available) return;
    const p = products[4];
    expect((await scan(p.token)).status).toBe(200);
    const before = (await scan(p.token)).body.scan.count;
    pgctl("stop", "-m", "fast");
    try {
      for (const token of [p.token, "forged.token.value"]) {
        const r = await scan(token);
        expect(r.status).toBe(503);
        expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
        expect(r.body.error).toMatchObject({ code: "SERVICE_UNAVAILABLE", request_id: expect.any(String) });
        expect(r.body.verdict).toBeUndefined();
        expect(r.ms).toBeLessThan(6000);
      }
      const page = await fetch(`${base}/r/${encodeURIComponent(p.token)}`, { headers: { "accept-language": "pt-PT" } });
      expect(page.status).toBe(503);
      expect(page.headers.get("retry-after")).toBeTruthy();
      expect(page.headers.get("content-type")).toContain("text/html");
      expect(await page.text()).toContain("temporariamente indisponível");
    } finally {
      pgctl("start");
    }
    await waitFor("postgres back", () => reachable("127.0.0.1", pgPort.n));
    const back = await until(() => scan(p.token), (r) => r.status === 200, 20_000, 250);
    expect(back.body.verdict).toBe("authentic");
    // Nothing was recorded for the refused scans.
    expect(back.body.scan.count).toBe(before + 1);
  });
});
