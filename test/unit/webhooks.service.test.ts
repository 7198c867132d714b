// The webhooks service on Moleculer's unit-test template: a local broker, actions called the way
// the gateway calls them (principal, method and path, Idempotency-Key in meta). The database is a
// throwaway one on the local Postgres: PGlite cannot load inside jest (see test/support/test-database).
import crypto from "node:crypto";
import { ServiceBroker, Context } from "moleculer";
import WebhooksService from "../../services/webhooks.service";
import { loadConfig, Config } from "../../lib/config";
import { startReceiver, Receiver } from "../support/webhook-receiver";
import { needServices } from "../support/services";
import { createTestDatabase } from "../support/test-database";

let config: Config;
let broker: ServiceBroker;
let available = false;
let dropDb: () => Promise<void> = async () => undefined;

const A = crypto.randomUUID();
const B = crypto.randomUUID();
const key = (tenant: string, scopes = ["*"]) => ({ type: "key", id: `key-${tenant}`, tenant_id: tenant, role: null, scopes });

async function call(action: string, params: any, opts: { tenant?: string; method?: string; path?: string; idem?: string } = {}) {
  const meta: any = { principal: key(opts.tenant ?? A), http: { method: opts.method ?? "POST", path: opts.path ?? `/${action}` } };
  if (opts.idem) meta.idempotencyKey = opts.idem;
  const ctx = Context.create(broker, null as any, {}, { meta }) as Context<any, any>;
  const body = await ctx.call(action, params);
  return { body: body as any, status: ctx.meta.$statusCode ?? 200, meta: ctx.meta };
}
async function fails(p: Promise<unknown>): Promise<{ code: number; message: string; type: string }> {
  try {
    await p;
  } catch (err: any) {
    return { code: err.code, message: err.message, type: err.type };
  }
  throw new Error("expected the call to fail");
}
const db = () => (broker.getLocalService("webhooks") as any).db;
let receiver: Receiver;

beforeAll(async () => {
  available = await needServices("webhooks.service", ["postgres"]);
  if (!available) return;
  const tdb = await createTestDatabase("wh_unit");
  dropDb = tdb.drop;
  config = loadConfig({ VOKETAG_DATA_DIR: "memory://", DATABASE_URL: tdb.url, WEBHOOKS_ALLOW_PRIVATE: "1", WEBHOOK_RETRY_SCHEDULE: "0,60", WEBHOOK_POLL_MS: "50" });
  broker = new ServiceBroker({ logger: false, voketag: config } as any);
  broker.createService(WebhooksService);
  receiver = await startReceiver(() => ({ status: 200 }));
  await broker.start();
  await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'A'), ($2, 'B')", [A, B]);
});
afterAll(async () => {
  await receiver?.close();
  await broker?.stop();
  await dropDb();
});
afterEach(() => {
  if (config) config.webhooks.allowPrivate = true;
});
// Loud skip (needServices) when Postgres is unreachable; a failure under VOKETAG_REQUIRE_SERVICES=1.
const it = ((name: string, fn: () => Promise<void>) => global.it(name, async () => (available ? fn() : undefined))) as any;

describe("webhooks service", () => {
  it("registers an endpoint: 201, whsec_ secret shown once, never again", async () => {
    const r = await call("webhooks.create", { url: receiver.url("/a"), events: ["batch.registered", "batch.registered", "scan.suspicious"], description: "ops" });
    expect(r.status).toBe(201);
    expect(r.meta.$location).toBe(`/v1/webhooks/${r.body.id}`);
    expect(r.body).toMatchObject({ kind: "endpoint", url: receiver.url("/a"), events: ["batch.registered", "scan.suspicious"], status: "enabled", description: "ops" });
    expect(r.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const got = await call("webhooks.get", { id: r.body.id });
    expect(got.body.secret).toBeUndefined();
    expect(JSON.stringify(got.body)).not.toContain(r.body.secret);
    const list = await call("webhooks.list", {});
    expect(JSON.stringify(list.body)).not.toContain(r.body.secret.slice(6));
  });

  it("refuses loopback without WEBHOOKS_ALLOW_PRIVATE, and metadata and link-local even with it", async () => {
    config.webhooks.allowPrivate = false;
    const lo = await fails(call("webhooks.create", { url: receiver.url(), events: ["*"] }));
    expect(lo).toMatchObject({ code: 400, type: "BAD_REQUEST" });
    expect(lo.message).toMatch(/loopback address \(127\.0\.0\.1\)/);
    const name = await fails(call("webhooks.create", { url: `http://localhost:${receiver.port}/`, events: ["*"] }));
    expect(name.code).toBe(400);
    config.webhooks.allowPrivate = true;
    for (const url of ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:8080/", "http://0xa9fea9fe/", "http://[::ffff:169.254.169.254]/", "http://100.64.0.1:8080/"]) {
      const e = await fails(call("webhooks.create", { url, events: ["*"] }));
      expect(e.code).toBe(400);
    }
    expect((await fails(call("webhooks.create", { url: "ftp://example.com/", events: ["*"] }))).message).toMatch(/http or https/);
  });

  it("refuses unknown event types and accepts *", async () => {
    const e = await fails(call("webhooks.create", { url: receiver.url(), events: ["batch.registered", "batch.exploded"] }));
    expect(e).toMatchObject({ code: 400 });
    expect(e.message).toMatch(/batch\.exploded/);
    const all = await call("webhooks.create", { url: receiver.url("/all"), events: ["*"] });
    expect(all.body.events).toEqual(["*"]);
  });

  it("keeps tenants apart: another tenant's id is 404 on every route", async () => {
    const mine = await call("webhooks.create", { url: receiver.url("/iso"), events: ["*"] }, { tenant: A });
    const id = mine.body.id;
    const d = await call("webhooks.test", { id }, { tenant: A });
    for (const [action, params] of [
      ["webhooks.get", { id }],
      ["webhooks.remove", { id }],
      ["webhooks.rotateSecret", { id }],
      ["webhooks.test", { id }],
      ["webhooks.enable", { id }],
      ["webhooks.disable", { id }],
      ["webhooks.deliveries", { id }],
      ["webhooks.delivery", { id, delivery_id: d.body.id }],
      ["webhooks.replay", { id, delivery_id: d.body.id }],
    ] as const) {
      const e = await fails(call(action, params, { tenant: B }));
      expect([action, e.code]).toEqual([action, 404]);
    }
    expect((await call("webhooks.list", {}, { tenant: B })).body.items.map((x: any) => x.id)).not.toContain(id);
    // Still there and untouched for its owner.
    expect((await call("webhooks.get", { id }, { tenant: A })).body.status).toBe("enabled");
  });

  it("pages the list with {items, next_cursor}", async () => {
    const T = crypto.randomUUID();
    await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'Pager')", [T]);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await call("webhooks.create", { url: receiver.url(`/p${i}`), events: ["*"] }, { tenant: T })).body.id);
    const p1 = await call("webhooks.list", { limit: 2 }, { tenant: T });
    expect(p1.body.items.map((x: any) => x.id)).toEqual(ids.slice(0, 2));
    const p2 = await call("webhooks.list", { limit: 2, cursor: p1.body.next_cursor }, { tenant: T });
    expect(p2.body.items.map((x: any) => x.id)).toEqual(ids.slice(2, 4));
    const p3 = await call("webhooks.list", { limit: 2, cursor: p2.body.next_cursor }, { tenant: T });
    expect(p3.body).toEqual({ items: [expect.objectContaining({ id: ids[4] })], next_cursor: null });
    expect((await fails(call("webhooks.list", { cursor: "garbage" }, { tenant: T }))).code).toBe(400);
    await call("webhooks.remove", { id: ids[0] }, { tenant: T });
    expect((await call("webhooks.list", {}, { tenant: T })).body.items).toHaveLength(4);
    expect((await fails(call("webhooks.get", { id: ids[0] }, { tenant: T }))).code).toBe(404);
  });

  it("honours Idempotency-Key on creating POSTs", async () => {
    const path = "/v1/webhooks";
    const a = await call("webhooks.create", { url: receiver.url("/idem"), events: ["*"] }, { idem: "k-1", path });
    const b = await call("webhooks.create", { url: receiver.url("/idem"), events: ["*"] }, { idem: "k-1", path });
    expect(JSON.stringify(b.body)).toBe(JSON.stringify(a.body));
    expect(b.status).toBe(201);
    expect(b.meta.$responseHeaders["Idempotent-Replayed"]).toBe("true");
    const other = await fails(call("webhooks.create", { url: receiver.url("/other"), events: ["*"] }, { idem: "k-1", path }));
    expect(other.code).toBe(422);
    const n = await db().query("SELECT count(*)::int AS n FROM webhook_endpoints WHERE url = $1", [receiver.url("/idem")]);
    expect(n.rows[0].n).toBe(1);
    // A rotation retried with its key rotates once: the secret the client missed is the one it gets.
    const rp = `/v1/webhooks/${a.body.id}/rotate-secret`;
    const r1 = await call("webhooks.rotateSecret", { id: a.body.id }, { idem: "rot-1", path: rp });
    const r2 = await call("webhooks.rotateSecret", { id: a.body.id }, { idem: "rot-1", path: rp });
    expect(r2.body.secret).toBe(r1.body.secret);
    const stored = await db().query("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1", [a.body.id]);
    expect(stored.rows[0]).toEqual({ secret: r1.body.secret, previous_secret: a.body.secret });
  });

  it("rotates a secret, keeping the previous one for 24 h", async () => {
    const ep = await call("webhooks.create", { url: receiver.url("/rot"), events: ["*"] });
    const r = await call("webhooks.rotateSecret", { id: ep.body.id });
    expect(r.body.secret).toMatch(/^whsec_/);
    expect(r.body.secret).not.toBe(ep.body.secret);
    const hours = (new Date(r.body.previous_secret_expires_at).getTime() - Date.now()) / 3600_000;
    expect(hours).toBeGreaterThan(23.9);
    expect(hours).toBeLessThanOrEqual(24);
  });

  it("fans an event out to the tenant's enabled, subscribed endpoints only, once", async () => {
    const T = crypto.randomUUID();
    await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'Fan')", [T]);
    const sub = await call("webhooks.create", { url: receiver.url("/fan-sub"), events: ["batch.failed"] }, { tenant: T });
    const star = await call("webhooks.create", { url: receiver.url("/fan-star"), events: ["*"] }, { tenant: T });
    const other = await call("webhooks.create", { url: receiver.url("/fan-other"), events: ["scan.suspicious"] }, { tenant: T });
    const off = await call("webhooks.create", { url: receiver.url("/fan-off"), events: ["*"] }, { tenant: T });
    await call("webhooks.disable", { id: off.body.id }, { tenant: T });
    const elsewhere = await call("webhooks.create", { url: receiver.url("/fan-b"), events: ["*"] }, { tenant: B });
    const event = { id: 900001, type: "batch.failed", timestamp: new Date().toISOString(), data: { tenant_id: T, batch_id: crypto.randomUUID(), errors: [] } };
    const r = await broker.call("webhooks.onEvent", event);
    expect(r).toEqual({ ok: true, queued: 2 });
    expect(await broker.call("webhooks.onEvent", event)).toEqual({ ok: true, queued: 0 });
    const rows = await db().query("SELECT endpoint_id, webhook_id, payload FROM webhook_deliveries WHERE event_id = $1", [event.id]);
    expect(rows.rows.map((x: any) => x.endpoint_id).sort()).toEqual([sub.body.id, star.body.id].sort());
    expect(new Set(rows.rows.map((x: any) => x.webhook_id)).size).toBe(1);
    expect(JSON.parse(rows.rows[0].payload)).toEqual({ type: "batch.failed", timestamp: event.timestamp, data: event.data });
    for (const id of [other.body.id, off.body.id, elsewhere.body.id]) {
      const l = await call("webhooks.deliveries", { id }, { tenant: id === elsewhere.body.id ? B : T });
      expect(l.body.items.filter((d: any) => d.event_type === "batch.failed")).toHaveLength(0);
    }
    // And they arrive, with the delivery log saying so.
    await receiver.waitFor((all) => all.filter((x) => x.path === "/fan-star").length >= 1, 10_000);
    const dl = await call("webhooks.deliveries", { id: star.body.id }, { tenant: T });
    expect(dl.body.items[0]).toMatchObject({ event_type: "batch.failed", webhook_id: rows.rows[0].webhook_id });
  });

  it("splits a period-wide anchor.confirmed per tenant, each seeing only its own batches", async () => {
    const T1 = crypto.randomUUID();
    const T2 = crypto.randomUUID();
    await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'T1'), ($2, 'T2')", [T1, T2]);
    const b1 = crypto.randomUUID();
    const b2 = crypto.randomUUID();
    await db().query("INSERT INTO batches (id, tenant_id, status) VALUES ($1, $2, 'anchoring'), ($3, $4, 'anchoring')", [b1, T1, b2, T2]);
    await call("webhooks.create", { url: receiver.url("/t1"), events: ["anchor.confirmed"] }, { tenant: T1 });
    await call("webhooks.create", { url: receiver.url("/t2"), events: ["anchor.confirmed"] }, { tenant: T2 });
    const event = { id: 900002, type: "anchor.confirmed", timestamp: new Date().toISOString(), data: { period_id: crypto.randomUUID(), tx_hash: "0xabc", block_number: 7, chain_id: 1337, batch_ids: [b1, b2] } };
    expect(await broker.call("webhooks.onEvent", event)).toEqual({ ok: true, queued: 2 });
    const rows = await db().query("SELECT tenant_id, payload FROM webhook_deliveries WHERE event_id = $1", [event.id]);
    const byTenant = Object.fromEntries(rows.rows.map((r: any) => [r.tenant_id, JSON.parse(r.payload).data]));
    expect(byTenant[T1]).toMatchObject({ tenant_id: T1, batch_ids: [b1], tx_hash: "0xabc" });
    expect(byTenant[T2]).toMatchObject({ tenant_id: T2, batch_ids: [b2] });
  });

  it("queues a batch.anchored callback to the anchor job's callback_url on the tenant's callback channel", async () => {
    const T = crypto.randomUUID();
    const batch = crypto.randomUUID();
    await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'Cb')", [T]);
    await db().query("INSERT INTO anchor_jobs (tenant_id, batch_id, callback_url) VALUES ($1, $2, $3)", [T, batch, receiver.url("/cb")]);
    const event = { id: 900003, type: "batch.anchored", timestamp: new Date().toISOString(), data: { tenant_id: T, batch_id: batch, tx_hash: "0x1" } };
    expect(await broker.call("webhooks.onEvent", event)).toEqual({ ok: true, queued: 1 });
    const list = await call("webhooks.list", {}, { tenant: T });
    const ch = list.body.items.find((x: any) => x.kind === "callback");
    expect(ch).toMatchObject({ kind: "callback", url: null, events: ["batch.anchored"] });
    const dl = await call("webhooks.deliveries", { id: ch.id }, { tenant: T });
    expect(dl.body.items[0]).toMatchObject({ event_type: "batch.anchored", url: receiver.url("/cb") });
    // Asking for the callback secret rotates the one made on the fly (which nobody has seen).
    const s = await call("webhooks.callbacks", {}, { tenant: T });
    expect(s.status).toBe(201);
    expect(s.body).toMatchObject({ id: ch.id, kind: "callback" });
    expect(s.body.secret).toMatch(/^whsec_/);
    expect(s.body.previous_secret_expires_at).not.toBeNull();
    // A tenant asking first gets a fresh channel, no rotation.
    const T3 = crypto.randomUUID();
    await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'Cb3')", [T3]);
    const fresh = await call("webhooks.callbacks", {}, { tenant: T3 });
    expect(fresh.body.previous_secret_expires_at).toBeNull();
    expect((await fails(call("webhooks.test", { id: fresh.body.id }, { tenant: T3 }))).code).toBe(409);
  });

  it("will not replay a pending delivery nor test a disabled endpoint", async () => {
    const ep = await call("webhooks.create", { url: receiver.url("/rp"), events: ["*"] });
    await call("webhooks.disable", { id: ep.body.id });
    expect((await fails(call("webhooks.test", { id: ep.body.id }))).code).toBe(409);
    await call("webhooks.enable", { id: ep.body.id });
    receiver.setHandler((r) => (r.path === "/rp" ? "hang" : { status: 200 }));
    const t = await call("webhooks.test", { id: ep.body.id });
    expect(t.status).toBe(202);
    expect((await fails(call("webhooks.replay", { id: ep.body.id, delivery_id: t.body.id }))).code).toBe(409);
    receiver.setHandler(() => ({ status: 200 }));
  });

  it("lists the event types with examples", async () => {
    const r = await call("webhooks.eventTypes", {});
    expect(r.body.items.map((x: any) => x.type)).toEqual(expect.arrayContaining(["batch.registered", "batch.failed", "batch.anchored", "anchor.confirmed", "product.recalled", "scan.suspicious", "fraud.reported", "webhook.test"]));
    for (const x of r.body.items) expect(Object.keys(x.example)).toEqual(["type", "timestamp", "data"]);
  });
});
