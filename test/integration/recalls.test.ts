// Recalls and tags on a two-process cluster (real Postgres, Redis cache, NATS): product and batch
// recalls that scans see at once (the factory broadcasts product.status_changed and the cached views
// go), their withdrawal, a voided tag, and a replacement tag with a new token for the same product.
import crypto from "node:crypto";
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client } from "../support/http";
import { ADMIN, GTIN, Tenant, newTenant, settled, allProducts } from "./factory-support";

describe("recalls, voided and replaced tags", () => {
  let available = false;
  let cluster: ClusterEnv;
  let gateway: NodeHandle;
  let workers: NodeHandle;
  let base: string;
  let db: Client;
  let t: Tenant;
  let batchId: string;
  let products: any[];

  beforeAll(async () => {
    available = await needServices("recalls", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("recalls");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const common = { ...cluster.env, VERIFICATION_URL_BASE: base, ANCHOR_INTERVAL: "3600", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    workers = await startNode({ ...common, SERVICES: "factory,anchor,admin,webhooks", NODE_ID: "workers" });
    gateway = await startNode({ ...common, SERVICES: "api,scan", NODE_ID: "gateway", PORT: String(port) });
    db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    t = await newTenant(base, "Recaller");
    const res = await client(base).post(
      "/v1/batches",
      { products: Array.from({ length: 5 }, (_, i) => ({ sku: "W", name: "Diver", serial: `R${i}`, gtin: GTIN, lot: "L1" })) },
      t.h,
    );
    batchId = res.body.id;
    await settled(base, t, batchId);
    products = await allProducts(base, t, batchId);
  });

  afterAll(async () => {
    await db?.end();
    await gateway?.stop();
    await workers?.stop();
    await cluster?.close();
  });

  const it = ((name: string, fn: () => Promise<void>, timeout?: number) => global.it(name, async () => (available ? fn() : undefined), timeout)) as any;
  const scan = async (token: string) => (await client(base).post("/v1/scan", { token })).body;
  const outbox = async (topic: string) => (await db.query("SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", [topic])).rows.map((r) => r.payload);

  it("recalls one product: 201, the very next scan answers recalled, product.recalled goes out; withdrawn, it is authentic again", async () => {
    const api = client(base);
    const p = products[0];
    expect((await scan(p.token)).verdict).toBe("authentic"); // now cached
    const r = await api.post(`/v1/products/${p.id}/recall`, { reason: "defective clasp" }, t.h);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ scope: "product", product_id: p.id, batch_id: batchId, reason: "defective clasp", products: 1, status: "active" });
    expect(r.headers.get("location")).toBe(`/v1/recalls/${r.body.id}`);
    const s = await scan(p.token);
    expect(s.verdict).toBe("recalled");
    expect(s.product.status).toBe("recalled");
    expect((await api.get(`/v1/products/${p.id}`, t.h)).body).toMatchObject({ status: "recalled", recall_id: r.body.id, status_reason: "defective clasp" });
    expect(await outbox("product.recalled")).toContainEqual(
      expect.objectContaining({ tenant_id: t.id, recall_id: r.body.id, scope: "product", batch_id: batchId, tag_ids: [p.id], reason: "defective clasp" }),
    );
    expect((await api.post(`/v1/products/${p.id}/recall`, { reason: "again" }, t.h)).status).toBe(409);
    expect((await api.post(`/v1/products/${p.id}/recall`, {}, t.h)).status).toBe(400);
    expect((await scan(products[1].token)).verdict).toBe("authentic");

    const w = await api.post(`/v1/recalls/${r.body.id}/withdraw`, { reason: "false alarm" }, t.h);
    expect(w.status).toBe(200);
    expect(w.body).toMatchObject({ status: "withdrawn", withdraw_reason: "false alarm" });
    expect((await scan(p.token)).verdict).toBe("authentic");
    expect((await api.post(`/v1/recalls/${r.body.id}/withdraw`, {}, t.h)).status).toBe(409);
    expect(await outbox("product.recall_withdrawn")).toContainEqual(expect.objectContaining({ recall_id: r.body.id, products: 1 }));
    // The audit trail has both, with the key that did them.
    const audit = await db.query("SELECT action, target_id, actor_type FROM audit_log WHERE action IN ('product.recall', 'recall.withdraw') ORDER BY seq");
    expect(audit.rows.map((a) => a.action)).toEqual(["product.recall", "recall.withdraw"]);
    expect(audit.rows[0]).toMatchObject({ target_id: p.id, actor_type: "key" });
  });

  it("recalls a whole batch at once and withdraws it; an Idempotency-Key makes a retried recall one recall", async () => {
    const api = client(base);
    for (const p of products) await scan(p.token);
    const h = { ...t.h, "idempotency-key": crypto.randomUUID() };
    const r = await api.post(`/v1/batches/${batchId}/recall`, { reason: "contaminated lot" }, h);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ scope: "batch", batch_id: batchId, products: 5 });
    const again = await api.post(`/v1/batches/${batchId}/recall`, { reason: "contaminated lot" }, h);
    expect(again.body.id).toBe(r.body.id);
    expect((await api.get("/v1/recalls", t.h)).body.items.filter((x: any) => x.scope === "batch")).toHaveLength(1);
    for (const p of products) expect((await scan(p.token)).verdict).toBe("recalled");
    expect((await api.get(`/v1/batches/${batchId}/products?status=recalled`, t.h)).body.items).toHaveLength(5);
    expect((await api.post(`/v1/batches/${batchId}/recall`, { reason: "twice" }, t.h)).status).toBe(409);
    expect(await outbox("product.recalled")).toContainEqual(expect.objectContaining({ scope: "batch", batch_id: batchId, products: 5 }));
    expect((await api.post(`/v1/recalls/${r.body.id}/withdraw`, {}, t.h)).status).toBe(200);
    for (const p of products) expect((await scan(p.token)).verdict).toBe("authentic");
    expect((await api.get(`/v1/recalls/${r.body.id}`, t.h)).body.status).toBe("withdrawn");
  });

  it("voids a lost tag: its token stops being authentic", async () => {
    const api = client(base);
    const p = products[2];
    expect((await scan(p.token)).verdict).toBe("authentic");
    const v = await api.post(`/v1/products/${p.id}/void`, { reason: "lost" }, t.h);
    expect(v.status).toBe(200);
    expect(v.body).toMatchObject({ id: p.id, status: "void" });
    const s = await scan(p.token);
    expect(s.verdict).not.toBe("authentic");
    expect((await api.post(`/v1/products/${p.id}/void`, { reason: "lost" }, t.h)).status).toBe(409);
    expect((await api.post(`/v1/products/${p.id}/void`, { reason: "eaten" }, t.h)).status).toBe(400);
    // Void tags are not printed.
    const csv = await fetch(`${base}/v1/batches/${batchId}/labels?format=csv`, { headers: t.h });
    expect(await csv.text()).not.toContain(p.token);
  });

  it("issues a replacement tag: a new token for the same product record, the old one void", async () => {
    const api = client(base);
    const p = products[3];
    const r = await api.post(`/v1/products/${p.id}/replace-tag`, { reason: "damaged" }, t.h);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ id: p.id, status: "active", serial: p.serial, batch_id: batchId, replaced_tag_id: p.id });
    expect(r.body.token).not.toBe(p.token);
    expect(r.body.tag_id).not.toBe(p.id);
    expect(r.body.verification_url).toBe(`${base}/r/${r.body.token}`);
    expect(r.body.digital_link).toBe(`${base}/01/${GTIN}/10/L1/21/${p.serial}?vt=${r.body.token}`);
    const view = await api.get(`/v1/products/${p.id}`, t.h);
    expect(view.body.tags).toEqual([
      expect.objectContaining({ id: p.id, status: "void", void_reason: "damaged", replaced_by: r.body.tag_id, token: p.token }),
      expect.objectContaining({ id: r.body.tag_id, status: "active", token: r.body.token }),
    ]);
    // The product list and the labels carry the new token.
    const listed = (await allProducts(base, t, batchId)).find((x) => x.id === p.id);
    expect(listed.token).toBe(r.body.token);
    // Scans: the old token is void, the new one is the same product, authentic.
    expect((await scan(p.token)).verdict).not.toBe("authentic");
    const fresh = await scan(r.body.token);
    expect(fresh.verdict).toBe("authentic");
    expect(fresh.product.id).toBe(p.id);
    // A voided product gets a replacement too, and is active again.
    const q = products[2];
    const r2 = await api.post(`/v1/products/${q.id}/replace-tag`, { reason: "lost" }, t.h);
    expect(r2.body).toMatchObject({ status: "active" });
    expect((await scan(r2.body.token)).verdict).toBe("authentic");
  });
});
