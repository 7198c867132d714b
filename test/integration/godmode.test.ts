// God mode on a two-process cluster (api+scan+admin | factory+anchor+webhooks+maintenance): the
// system view, runtime settings and tenants' risk weights (validated, audited, in effect), a failed
// anchor retried from the dead-letter table, "anchor now", a delayed outbox event and a dead webhook
// delivery requeued, a failed batch retried.
import crypto from "node:crypto";
import { ethers } from "ethers";
import { startAdminCluster, AdminCluster, eventually } from "../support/admin-cluster";
import { until } from "../support/http";
import { startReceiver, Receiver } from "../support/webhook-receiver";
import { buildTree, serializeTree } from "../../lib/merkle";
import { batchLeafHash } from "../../lib/proof";

let c: AdminCluster | null = null;
let receiver: Receiver;
const it = (name: string, fn: (c: AdminCluster) => Promise<void>, t?: number) => global.it(name, async () => (c ? fn(c) : undefined), t);
let tenant: string;
let key: Record<string, string>;

beforeAll(async () => {
  c = await startAdminCluster("godmode", { split: true, env: { WEBHOOKS_ALLOW_PRIVATE: "1", WEBHOOK_POLL_MS: "200", OUTBOX_POLL_MS: "200" } });
  if (!c) return;
  receiver = await startReceiver();
  tenant = await c.tenant("God Co");
  key = await c.key(tenant);
});
afterAll(async () => {
  await receiver?.close();
  await c?.close();
});

async function registeredBatch(c: AdminCluster) {
  const b = await c.api.post("/v1/batches", { products: [{ sku: "G", name: "G", serial: `G-${crypto.randomUUID()}` }] }, key);
  expect(b.status).toBe(202);
  await until(() => c.api.get(`/v1/batches/${b.body.id}`, key), (r) => r.body.status === "registered", 30_000);
  return (await c.pg.query("SELECT id, root FROM batches WHERE id = $1", [b.body.id])).rows[0];
}

async function auditActions(c: AdminCluster, action: string) {
  return (await c.api.get(`/v1/admin/audit?action=${encodeURIComponent(action)}`, c.admin)).body.items;
}

describe("the system view", () => {
  it("lists broker nodes with their services, open breakers, outbox, anchor queue and settings", async (c) => {
    const r = await c.api.get("/v1/admin/god/system", c.admin);
    expect(r.status).toBe(200);
    const nodes = Object.fromEntries(r.body.nodes.map((n: any) => [n.id, n]));
    expect(nodes["godmode-front"]).toMatchObject({ available: true, local: true });
    expect(nodes["godmode-front"].services).toEqual(["admin", "api", "scan"]);
    expect(nodes["godmode-workers"]).toMatchObject({ available: true, local: false });
    expect(nodes["godmode-workers"].services).toEqual(expect.arrayContaining(["anchor", "factory", "maintenance", "webhooks"]));
    expect(r.body.circuit_breakers).toEqual({ open: [], nodes_not_reporting: [] });
    expect(r.body.outbox).toMatchObject({ unsent: expect.any(Number), lag_seconds: expect.any(Number) });
    expect(r.body.anchor).toMatchObject({ periods: expect.any(Object), batches_waiting: expect.any(Number), interval_seconds: 3600 });
    expect(r.body.settings.map((s: any) => s.key)).toContain("ANCHOR_INTERVAL");
    const auditor = await c.user("auditor");
    expect((await c.api.get("/v1/admin/god/system", auditor.headers)).status).toBe(200);
  });
});

describe("runtime settings", () => {
  it("validates, stores and audits a change; the stored value overrides the environment until reset", async (c) => {
    for (const bad of [{ value: 0 }, { value: "60" }, { value: 1.5 }, {}]) expect((await c.api.request("PUT", "/v1/admin/god/settings/ANCHOR_INTERVAL", { body: bad, headers: c.admin })).status).toBe(400);
    expect((await c.api.request("PUT", "/v1/admin/god/settings/NOT_A_SETTING", { body: { value: 5 }, headers: c.admin })).status).toBe(400);
    const put = await c.api.request("PUT", "/v1/admin/god/settings/ANCHOR_INTERVAL", { body: { value: 120 }, headers: c.admin });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ key: "ANCHOR_INTERVAL", default: 3600, value: 120, effective: 120 });
    const stored = await c.pg.query("SELECT value, updated_by FROM settings WHERE key = 'ANCHOR_INTERVAL'");
    expect(stored.rows[0].value).toBe(120);
    expect(stored.rows[0].updated_by).toMatch(/^user:/);
    await eventually(async () => (await c.api.get("/v1/admin/god/system", c.admin)).body.anchor.interval_seconds === 120, 8000, 500);
    const [entry] = await auditActions(c, "setting.update");
    expect(entry).toMatchObject({ target_id: "ANCHOR_INTERVAL", before: { value: null }, after: { value: 120 } });
    const reset = await c.api.del("/v1/admin/god/settings/ANCHOR_INTERVAL", c.admin);
    expect(reset.body).toMatchObject({ value: null, effective: 3600 });
    expect((await auditActions(c, "setting.reset"))[0]).toMatchObject({ before: { value: 120 } });
  });

  it("checks a tenant's risk weights before storing them, and the next scan uses them", async (c) => {
    const bad = await c.api.request("PUT", `/v1/admin/god/tenants/${tenant}/risk`, { body: { risk: { weights: { grey_market: 500 } } }, headers: c.admin });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details).toEqual({ field: "weights.grey_market" });
    expect((await c.api.request("PUT", `/v1/admin/god/tenants/${tenant}/risk`, { body: { risk: { wieghts: {} } }, headers: c.admin })).status).toBe(400);
    expect((await c.pg.query("SELECT settings FROM tenants WHERE id = $1", [tenant])).rows[0].settings.risk).toBeUndefined();
    const b = await registeredBatch(c);
    const token = (await c.api.get(`/v1/batches/${b.id}/products`, key)).body.items[0].token;
    const weightOf = async () => (await c.api.post("/v1/scan", { token })).body.risk.factors.find((x: any) => x.name === "distinct_devices").weight;
    expect(await weightOf()).toBe(45);
    const ok = await c.api.request("PUT", `/v1/admin/god/tenants/${tenant}/risk`, { body: { risk: { weights: { distinct_devices: 90 } } }, headers: c.admin });
    expect(ok.status).toBe(200);
    expect(ok.body.effective.weights.distinct_devices).toBe(90);
    expect(await weightOf()).toBe(90);
    const [entry] = await auditActions(c, "tenant.risk_update");
    expect(entry).toMatchObject({ tenant_id: tenant, before: { risk: null }, after: { risk: { weights: { distinct_devices: 90 } } } });
    const get = await c.api.get(`/v1/admin/god/tenants/${tenant}/risk`, c.admin);
    expect(get.body.override).toEqual({ weights: { distinct_devices: 90 } });
    const op = await c.user("operator");
    expect((await c.api.request("PUT", `/v1/admin/god/tenants/${tenant}/risk`, { body: { risk: null }, headers: op.headers })).status).toBe(403);
    expect((await c.api.request("PUT", `/v1/admin/god/tenants/${tenant}/risk`, { body: { risk: null }, headers: c.admin })).body.override).toBeNull();
  });
});

describe("retries", () => {
  it("retries a failed anchor from the dead-letter table, then the batch is anchored", async (c) => {
    const b = await registeredBatch(c);
    // A period the chain refused for good, as the anchor service records it.
    const tree = buildTree([batchLeafHash(b.id, b.root)]);
    const address = new ethers.Wallet(c.cluster.env.ANCHOR_PRIVATE_KEY).address;
    const period = (await c.pg.query(
      `INSERT INTO periods (root, tree, leaf_count, status, chain_id, address, attempts, last_error) VALUES ($1, $2, 1, 'failed', 31337, $3, 3, 'replacement transaction underpriced') RETURNING id`,
      [tree.root.toString("hex"), serializeTree(tree), address],
    )).rows[0].id;
    await c.pg.query("INSERT INTO period_leaves (period_id, leaf_index, kind, ref, leaf_hash, data) VALUES ($1, 0, 'batch', $2, $3, $4)", [period, b.id, batchLeafHash(b.id, b.root).toString("hex"), JSON.stringify({ batch_id: b.id, root: b.root })]);
    const dead = (await c.pg.query("INSERT INTO anchor_dead_letters (period_id, reason, attempts) VALUES ($1, 'underpriced', '[]') RETURNING id", [period])).rows[0].id;
    const failures = await c.api.get("/v1/admin/god/failures", c.admin);
    expect(failures.body.anchors.map((p: any) => p.id)).toContain(period);
    expect(failures.body.anchor_dead_letters.map((d: any) => d.id)).toContain(dead);
    expect((await c.api.get(`/v1/anchor/${b.id}`, key)).body.status).toBe("failed");
    const op = await c.user("operator");
    const retry = await c.api.post(`/v1/admin/god/anchors/${period}/retry`, {}, op.headers);
    expect(retry.status).toBe(202);
    expect(retry.body).toMatchObject({ kind: "anchor", period_id: period });
    // Again: nothing left to retry.
    expect((await c.api.post(`/v1/admin/god/anchors/${period}/retry`, {}, op.headers)).status).toBe(409);
    await until(
      async () => {
        await c.api.post("/v1/admin/god/anchor/cycle", {}, op.headers);
        return c.api.get(`/v1/anchor/${b.id}`, key);
      },
      (r) => r.body.status === "final",
      60_000,
      500,
    );
    await until(() => c.api.get(`/v1/batches/${b.id}`, key), (r) => r.body.status === "anchored", 30_000);
    const entries = await auditActions(c, "anchor.retry");
    expect(entries[0]).toMatchObject({ actor_id: op.id, role: "operator", after: { status: "pending", period_id: period } });
    expect((await auditActions(c, "god.anchor_cycle")).length).toBeGreaterThan(0);
  }, 90_000);

  it("requeues a delayed outbox event so it is delivered now", async (c) => {
    const id = Number((await c.pg.query(
      `INSERT INTO outbox (topic, payload, pending, attempts, last_error, next_at)
       VALUES ('batch.registered', $1::jsonb, '{webhooks.onEvent}', 6, 'webhooks down', now() + interval '1 day') RETURNING id`,
      [JSON.stringify({ tenant_id: tenant, batch_id: crypto.randomUUID(), products: 1, root: "ab" })],
    )).rows[0].id);
    const failures = await c.api.get("/v1/admin/god/failures", c.admin);
    expect(failures.body.outbox.map((o: any) => Number(o.id))).toContain(id);
    const r = await c.api.post("/v1/admin/god/retry/" + id, {}, c.admin);
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ kind: "outbox", requeued: 1, ids: [id] });
    await eventually(async () => (await c.pg.query("SELECT sent_at FROM outbox WHERE id = $1", [id])).rows[0].sent_at, 15_000, 200);
    expect((await auditActions(c, "god.outbox_requeue"))[0]).toMatchObject({ target_id: String(id), after: { requeued: 1 } });
    expect((await c.api.post("/v1/admin/god/retry/999999999", {}, c.admin)).status).toBe(404);
  });

  it("replays dead webhook deliveries through the webhooks service", async (c) => {
    const ep = await c.api.post("/v1/webhooks", { url: receiver.url("/god"), events: ["batch.registered"] }, key);
    expect(ep.status).toBe(201);
    const d = (await c.pg.query(
      `INSERT INTO webhook_deliveries (endpoint_id, tenant_id, webhook_id, event_type, payload, status, attempts, cycle_attempts, last_status, next_at)
       VALUES ($1, $2, 'msg_god_1', 'batch.registered', $3, 'dead', 10, 10, 500, now()) RETURNING id`,
      [ep.body.id, tenant, JSON.stringify({ type: "batch.registered", timestamp: new Date().toISOString(), data: { tenant_id: tenant } })],
    )).rows[0].id;
    const failures = await c.api.get("/v1/admin/god/failures", c.admin);
    expect(failures.body.webhook_deliveries.map((x: any) => x.id)).toContain(d);
    const r = await c.api.post("/v1/admin/god/webhooks/requeue", { tenant_id: tenant }, c.admin);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ replayed: 1, skipped: [] });
    await receiver.waitFor((all) => all.some((x) => x.path === "/god" && x.headers["webhook-id"] === "msg_god_1"), 15_000);
    await eventually(async () => (await c.pg.query("SELECT status FROM webhook_deliveries WHERE id = $1", [d])).rows[0].status === "succeeded", 15_000, 200);
    expect((await auditActions(c, "god.webhooks_requeue"))[0]).toMatchObject({ after: { replayed: 1, skipped: 0 } });
  });

  it("retries a failed batch through the factory (or says which action is missing)", async (c) => {
    const id = (await c.pg.query(
      `INSERT INTO batches (tenant_id, name, status, total, errors, source) VALUES ($1, 'broken', 'failed', 1, '[{"row":0,"message":"database went away"}]', $2::jsonb) RETURNING id`,
      [tenant, JSON.stringify({ kind: "inline", products: [{ sku: "R", name: "R", serial: `R-${crypto.randomUUID()}`, gtin: null, lot: null, attributes: {} }] })],
    )).rows[0].id;
    const failures = await c.api.get("/v1/admin/god/failures", c.admin);
    expect(failures.body.batches.map((b: any) => b.id)).toContain(id);
    const r = await c.api.post(`/v1/admin/god/batches/${id}/retry`, {}, c.admin);
    if (r.status === 503) {
      expect(r.body.error.message).toMatch(/factory's retryBatch action/);
    } else {
      expect(r.status).toBe(202);
      await until(() => c.api.get(`/v1/batches/${id}`, key), (x) => x.body.status === "registered", 30_000);
    }
    const registered = await registeredBatch(c);
    expect((await c.api.post(`/v1/admin/god/batches/${registered.id}/retry`, {}, c.admin)).status).toBe(409);
  });
});
