// Per-key rate limits over HTTP: a low RATE_LIMIT_KEY, the IETF draft-8 (RateLimit-Policy, RateLimit)
// and X-RateLimit-* headers on every response (errors included), 429 with Retry-After beyond the
// limit, and one budget shared by two gateway processes through Redis.
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client } from "../support/http";
import { ADMIN, Tenant, newTenant } from "./factory-support";

const LIMIT = 5;

describe("per-key rate limits over HTTP", () => {
  let available = false;
  let cluster: ClusterEnv;
  const nodes: NodeHandle[] = [];
  let one: string;
  let two: string;

  beforeAll(async () => {
    available = await needServices("ratelimit-http", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("ratelimit");
    const [p1, p2] = [await freePort(), await freePort()];
    one = `http://127.0.0.1:${p1}`;
    two = `http://127.0.0.1:${p2}`;
    const common = { ...cluster.env, VERIFICATION_URL_BASE: one, ANCHOR_INTERVAL: "3600", RATE_LIMIT_KEY: String(LIMIT), VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    nodes.push(await startNode({ ...common, SERVICES: "factory,admin", NODE_ID: "workers" }));
    nodes.push(...(await Promise.all([
      startNode({ ...common, SERVICES: "api,scan", NODE_ID: "gateway-1", PORT: String(p1) }),
      startNode({ ...common, SERVICES: "api,scan", NODE_ID: "gateway-2", PORT: String(p2) }),
    ])));
  });

  afterAll(async () => {
    for (const n of nodes.reverse()) await n.stop();
    await cluster?.close();
  });

  const it = ((name: string, fn: () => Promise<void>, timeout?: number) => global.it(name, async () => (available ? fn() : undefined), timeout)) as any;

  function expectHeaders(h: Headers, remaining: number) {
    expect(h.get("ratelimit-policy")).toBe(`"key";q=${LIMIT};w=60`);
    expect(h.get("ratelimit")).toMatch(new RegExp(`^"key";r=${remaining};t=\\d+$`));
    expect(h.get("x-ratelimit-limit")).toBe(String(LIMIT));
    expect(h.get("x-ratelimit-remaining")).toBe(String(remaining));
    expect(Number(h.get("x-ratelimit-reset"))).toBeGreaterThanOrEqual(0);
  }

  it("puts the headers on every response, errors included, and answers 429 with Retry-After beyond the limit", async () => {
    const t: Tenant = await newTenant(one, "Limited");
    const api = client(one);
    const responses = [
      await api.get("/v1/batches", t.h),
      await api.get("/v1/batches/00000000-0000-4000-8000-000000000000", t.h), // 404
      await api.post("/v1/batches", { products: [] }, t.h), // 400
      await api.get("/v1/api-keys", t.h),
      await api.get("/v1/uploads", t.h),
    ];
    expect(responses.map((r) => r.status)).toEqual([200, 404, 400, 200, 200]);
    responses.forEach((r, i) => expectHeaders(r.headers, LIMIT - 1 - i));
    const over = await api.get("/v1/batches", t.h);
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe("RATE_LIMITED");
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expectHeaders(over.headers, 0);
    // Another key has its own budget.
    const u = await newTenant(one, "Fresh");
    expect((await api.get("/v1/batches", u.h)).status).toBe(200);
  });

  it("shares one budget between two gateway processes through Redis", async () => {
    const t: Tenant = await newTenant(one, "Shared");
    const statuses: number[] = [];
    for (let i = 0; i < LIMIT + 2; i++) statuses.push((await client(i % 2 ? two : one).get("/v1/batches", t.h)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
    const last = await client(two).get("/v1/batches", t.h);
    expect(last.status).toBe(429);
    expect(last.headers.get("retry-after")).toBeTruthy();
  });
});
