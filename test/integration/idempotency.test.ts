// Idempotency-Key on the factory's creating POSTs (real Postgres, two processes over NATS): a repeat
// replays the stored response, the same key with another body is 422, concurrent requests with one
// key make one batch — for JSON bodies and for streamed CSV bodies alike (whose spooled copies of
// the losing requests are deleted).
import crypto from "node:crypto";
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client } from "../support/http";
import { ADMIN, Tenant, newTenant, productCsv, postCsv, settled } from "./factory-support";

describe("Idempotency-Key on creating POSTs", () => {
  let available = false;
  let cluster: ClusterEnv;
  let gateway: NodeHandle;
  let workers: NodeHandle;
  let base: string;
  let db: Client;
  let t: Tenant;

  beforeAll(async () => {
    available = await needServices("idempotency", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("idempotency");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const common = { ...cluster.env, VERIFICATION_URL_BASE: base, ANCHOR_INTERVAL: "3600", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    workers = await startNode({ ...common, SERVICES: "factory,admin", NODE_ID: "workers" });
    gateway = await startNode({ ...common, SERVICES: "api,scan", NODE_ID: "gateway", PORT: String(port) });
    db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    t = await newTenant(base, "Idem");
  });

  afterAll(async () => {
    await db?.end();
    await gateway?.stop();
    await workers?.stop();
    await cluster?.close();
  });

  const it = ((name: string, fn: () => Promise<void>, timeout?: number) => global.it(name, async () => (available ? fn() : undefined), timeout)) as any;
  const batchCount = async () => (await db.query("SELECT count(*)::int AS n FROM batches WHERE tenant_id = $1", [t.id])).rows[0].n;
  const body = (serial: string) => ({ name: "idem", products: [{ sku: "A", name: "n", serial }] });

  it("replays a JSON batch's 202 for a repeated key, and refuses the key with another body (422)", async () => {
    const api = client(base);
    const h = { ...t.h, "idempotency-key": crypto.randomUUID() };
    const first = await api.post("/v1/batches", body("I1"), h);
    expect(first.status).toBe(202);
    const again = await api.post("/v1/batches", body("I1"), h);
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const other = await api.post("/v1/batches", body("I2"), h);
    expect(other.status).toBe(422);
    expect(await batchCount()).toBe(1);
    // The key is scoped by credential: another tenant's request with the same key is its own.
    const u = await newTenant(base, "Other");
    expect((await api.post("/v1/batches", body("I1"), { ...u.h, "idempotency-key": h["idempotency-key"] })).body.id).not.toBe(first.body.id);
  });

  it("makes one batch of many concurrent requests with one key", async () => {
    const before = await batchCount();
    const h = { ...t.h, "idempotency-key": crypto.randomUUID() };
    const results = await Promise.all(Array.from({ length: 8 }, () => client(base).post("/v1/batches", body("C1"), h)));
    const ids = new Set(results.filter((r) => r.status === 202).map((r) => r.body.id));
    expect(ids.size).toBe(1);
    for (const r of results) expect([202, 409]).toContain(r.status);
    expect(await batchCount()).toBe(before + 1);
    await settled(base, t, [...ids][0]);
  });

  it("fingerprints a streamed CSV body: same file replays, another file is 422, concurrent uploads make one batch", async () => {
    const before = await batchCount();
    const h = { "idempotency-key": crypto.randomUUID() };
    const csv = productCsv(500, "CSV");
    const first = await postCsv(base, t, csv, "?name=once", h);
    expect(first.status).toBe(202);
    const again = await postCsv(base, t, csv, "?name=once", h);
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect((await postCsv(base, t, productCsv(501, "CSV"), "?name=once", h)).status).toBe(422);
    expect((await postCsv(base, t, csv, "?name=twice", h)).status).toBe(422);
    const k2 = { "idempotency-key": crypto.randomUUID() };
    const csv2 = productCsv(500, "CONC");
    const results = await Promise.all(Array.from({ length: 4 }, () => postCsv(base, t, csv2, "", k2)));
    expect(new Set(results.filter((r) => r.status === 202).map((r) => r.body.id)).size).toBe(1);
    expect(await batchCount()).toBe(before + 2);
    // The losing requests' spooled copies are gone: one upload per batch, none left over.
    const spools = await db.query("SELECT count(*)::int AS n FROM uploads WHERE tenant_id = $1 AND kind = 'stream' AND batch_id IS NULL", [t.id]);
    expect(spools.rows[0].n).toBe(0);
    expect((await settled(base, t, first.body.id)).status).toBe("registered");
  });

  it("replays a created API key and a single product registration", async () => {
    const api = client(base);
    const h = { ...t.h, "idempotency-key": crypto.randomUUID() };
    const k1 = await api.post("/v1/api-keys", { name: "retry-safe", scopes: ["batches:read"] }, h);
    const k2 = await api.post("/v1/api-keys", { name: "retry-safe", scopes: ["batches:read"] }, h);
    expect(k1.status).toBe(201);
    expect(k2.body.id).toBe(k1.body.id);
    const keys = (await api.get("/v1/api-keys", t.h)).body.items.filter((k: any) => k.name === "retry-safe");
    expect(keys).toHaveLength(1);
    const hp = { ...t.h, "idempotency-key": crypto.randomUUID() };
    const p1 = await api.post("/v1/products", { sku: "S", name: "single", serial: "ONE" }, hp);
    const p2 = await api.post("/v1/products", { sku: "S", name: "single", serial: "ONE" }, hp);
    expect(p1.status).toBe(202);
    expect(p2.body.id).toBe(p1.body.id);
  });
});
