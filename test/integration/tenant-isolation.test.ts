// Tenant isolation, walked from the contract itself: every route in /openapi.json that takes an id in
// its path and accepts an API key is called, on every method, with ANOTHER tenant's valid key (all
// scopes) and real ids of the first tenant's batch, product, key, upload, recall, webhook, delivery
// and anchor job. Each must answer 404 — not 403, not 200 — and change nothing.
import crypto from "node:crypto";
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client, until } from "../support/http";
import { ADMIN, GTIN, Tenant, newTenant, settled, allProducts, raw } from "./factory-support";

/** A minimal valid example of a JSON schema (required members only), so validation never answers first. */
function example(schema: any): any {
  if (!schema || typeof schema !== "object") return {};
  if (schema.enum) return schema.enum[0];
  if (schema.const !== undefined) return schema.const;
  const alt = schema.oneOf ?? schema.anyOf;
  if (alt) return example(alt[0]);
  const type = Array.isArray(schema.type) ? schema.type.find((x: string) => x !== "null") : schema.type;
  switch (type) {
    case "object": {
      const out: Record<string, unknown> = {};
      for (const k of schema.required ?? []) out[k] = example(schema.properties?.[k]);
      return out;
    }
    case "array":
      return schema.minItems ? [example(schema.items)] : [];
    case "integer":
    case "number":
      return Math.max(1, schema.minimum ?? 1);
    case "boolean":
      return false;
    default:
      if (schema.format === "uuid") return crypto.randomUUID();
      if (schema.format === "uri") return "https://example.com/hook";
      return "x".repeat(Math.max(1, schema.minLength ?? 1));
  }
}

describe("tenant isolation on every route with an id", () => {
  let available = false;
  let cluster: ClusterEnv;
  let node: NodeHandle;
  let base: string;
  let db: Client;
  let a: Tenant;
  let b: Tenant;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    available = await needServices("tenant-isolation", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("isolation");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({
      ...cluster.env,
      PORT: String(port),
      VERIFICATION_URL_BASE: base,
      ANCHOR_INTERVAL: "3600",
      WEBHOOKS_ALLOW_PRIVATE: "1",
      VOKETAG_ADMIN_EMAIL: ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: ADMIN.password,
    });
    db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    a = await newTenant(base, "Alpha");
    b = await newTenant(base, "Bravo"); // every scope
    const api = client(base);
    // The first tenant's things, one of each kind.
    const batch = await api.post("/v1/batches", { products: [1, 2, 3].map((i) => ({ sku: "S", name: "N", serial: `A${i}`, gtin: GTIN })) }, a.h);
    await settled(base, a, batch.body.id);
    ids.batch = batch.body.id;
    const products = await allProducts(base, a, ids.batch);
    ids.product = products[0].id;
    ids.key = (await api.post("/v1/api-keys", { name: "second" }, a.h)).body.id;
    ids.upload = (await api.post("/v1/uploads", { size: 100, sha256: "a".repeat(64) }, a.h)).body.id;
    ids.recall = (await api.post(`/v1/products/${products[1].id}/recall`, { reason: "test" }, a.h)).body.id;
    const hook = await api.post("/v1/webhooks", { url: "http://127.0.0.1:9999/hook", events: ["*"] }, a.h);
    ids.webhook = hook.body.id;
    await api.post(`/v1/webhooks/${ids.webhook}/test`, {}, a.h);
    const deliveries = await until(() => api.get(`/v1/webhooks/${ids.webhook}/deliveries`, a.h), (r) => r.body.items?.length > 0, 10_000);
    ids.delivery = deliveries.body.items[0].id;
    ids.anchor = (await api.post("/v1/anchor", { batch_id: ids.batch }, a.h)).body.id ?? ids.batch;
  });

  afterAll(async () => {
    await db?.end();
    await node?.stop();
    await cluster?.close();
  });

  const it = ((name: string, fn: () => Promise<void>, timeout?: number) => global.it(name, async () => (available ? fn() : undefined), timeout)) as any;

  /** Which of the first tenant's ids a path parameter names, from the collection before it. */
  function idFor(path: string, param: string): string {
    const segs = path.split("/");
    const at = segs.indexOf(`{${param}}`);
    const collection = segs[at - 1];
    const kinds: Record<string, string> = {
      batches: "batch", products: "product", "api-keys": "key", uploads: "upload", recalls: "recall",
      webhooks: "webhook", deliveries: "delivery", scan: "product", anchor: param === "batch_id" ? "batch" : "anchor",
    };
    const kind = kinds[collection];
    if (!kind || !ids[kind]) throw new Error(`no id of the first tenant for {${param}} in ${path}: teach this test what it names`);
    return ids[kind];
  }

  it("answers 404 to another tenant's key on every method of every route that takes an id", async () => {
    const doc = (await client(base).get("/openapi.json")).body;
    const tried: string[] = [];
    const wrong: string[] = [];
    for (const [path, ops] of Object.entries<any>(doc.paths)) {
      const params = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      if (!params.length) continue;
      for (const [method, op] of Object.entries<any>(ops)) {
        const keyed = (op.security ?? []).some((s: any) => "ApiKey" in s);
        if (!keyed) continue; // public routes, and staff routes that take no API key
        let url = path;
        for (const p of params) url = url.replace(`{${p}}`, idFor(path, p));
        const content = op.requestBody?.content ?? {};
        const ct = Object.keys(content)[0];
        let body: string | Buffer | undefined;
        const headers: Record<string, string> = { ...b.h };
        if (ct) {
          headers["content-type"] = ct;
          body = ct === "application/json" ? JSON.stringify(example(content[ct].schema)) : ct === "text/csv" ? "sku,name,serial\n" : Buffer.from("x");
        }
        if (method === "put" && url.startsWith("/v1/uploads/")) url += "?offset=0";
        const res = await raw(base, method.toUpperCase(), url, body, headers);
        tried.push(`${method.toUpperCase()} ${path}`);
        if (res.status !== 404) wrong.push(`${method.toUpperCase()} ${path} → ${res.status} ${res.text.slice(0, 200)}`);
      }
    }
    expect(wrong).toEqual([]);
    // The walk covered the factory's routes (and the other services' keyed routes with ids).
    for (const r of [
      "GET /v1/batches/{id}", "GET /v1/batches/{id}/products", "GET /v1/batches/{id}/labels", "POST /v1/batches/{id}/recall",
      "GET /v1/products/{id}", "POST /v1/products/{id}/recall", "POST /v1/products/{id}/void", "POST /v1/products/{id}/replace-tag",
      "DELETE /v1/api-keys/{id}", "GET /v1/uploads/{id}", "PUT /v1/uploads/{id}", "DELETE /v1/uploads/{id}",
      "GET /v1/recalls/{id}", "POST /v1/recalls/{id}/withdraw",
    ])
      expect(tried).toContain(r);
    expect(tried.length).toBeGreaterThanOrEqual(20);
  });

  it("left the first tenant's things exactly as they were", async () => {
    const api = client(base);
    expect((await api.get(`/v1/products/${ids.product}`, a.h)).body).toMatchObject({ status: "active", tag_id: ids.product });
    expect((await api.get(`/v1/uploads/${ids.upload}`, a.h)).body.status).toBe("receiving");
    expect((await api.get(`/v1/recalls/${ids.recall}`, a.h)).body.status).toBe("active");
    const keys = (await api.get("/v1/api-keys", a.h)).body.items;
    expect(keys.find((k: any) => k.id === ids.key).revoked_at).toBeNull();
    expect((await api.get(`/v1/batches/${ids.batch}`, a.h)).body.status).not.toBe("failed");
    const recalls = await db.query("SELECT count(*)::int AS n FROM recalls WHERE tenant_id = $1", [a.id]);
    expect(recalls.rows[0].n).toBe(1);
  });
});
