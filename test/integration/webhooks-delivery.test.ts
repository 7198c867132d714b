// Delivery behaviour against a real receiver on loopback: retries through failures and an outage,
// Retry-After, 410, redirects, dead letters and replay, secret rotation, callbacks, SSRF at
// delivery time, metrics. Events go through the real outbox relay; signatures are checked with
// the standardwebhooks library. One in-process broker on a throwaway Postgres database.
import crypto from "node:crypto";
import { ServiceBroker, Context } from "moleculer";
import { Webhook } from "standardwebhooks";
import WebhooksService from "../../services/webhooks.service";
import { loadConfig, Config } from "../../lib/config";
import { startReceiver, Receiver, Received } from "../support/webhook-receiver";
import { needServices } from "../support/services";
import { createTestDatabase } from "../support/test-database";
import { until } from "../support/http";

let config: Config;
let broker: ServiceBroker;
let receiver: Receiver;
let available = false;
let dropDb: () => Promise<void> = async () => undefined;
const TENANT = crypto.randomUUID();
const db = () => (broker.getLocalService("webhooks") as any).db;
const it = ((name: string, fn: () => Promise<void>, t?: number) => global.it(name, async () => (available ? fn() : undefined), t)) as any;

async function call(action: string, params: any, tenant = TENANT) {
  const ctx = Context.create(broker, null as any, {}, { meta: { principal: { type: "key", id: "k", tenant_id: tenant, role: null, scopes: ["*"] }, http: { method: "POST", path: action } } });
  return (await ctx.call(action, params)) as any;
}

/** Writes an outbox row as a producer would; the relay hands it to webhooks.onEvent. */
async function emit(type: string, data: Record<string, unknown>): Promise<number> {
  const r = await db().query("INSERT INTO outbox (topic, payload, pending) VALUES ($1, $2::jsonb, '{webhooks.onEvent}') RETURNING id", [type, JSON.stringify(data)]);
  return Number(r.rows[0].id);
}

async function endpoint(path: string, events: string[] = ["*"]) {
  return call("webhooks.create", { url: receiver.url(path), events });
}

const deliveriesOf = (id: string) => call("webhooks.deliveries", { id });
const verify = (secret: string, r: Received) => new Webhook(secret).verify(r.body, r.headers) as any;
const onPath = (p: string) => (all: Received[]) => all.filter((r) => r.path === p);

beforeAll(async () => {
  available = await needServices("webhooks-delivery", ["postgres"]);
  if (!available) return;
  const tdb = await createTestDatabase("wh_delivery");
  dropDb = tdb.drop;
  config = loadConfig({
    VOKETAG_DATA_DIR: "memory://",
    DATABASE_URL: tdb.url,
    WEBHOOKS_ALLOW_PRIVATE: "1",
    WEBHOOK_RETRY_SCHEDULE: "0,1,1,1,1,1,1,1,1,1",
    WEBHOOK_POLL_MS: "100",
    OUTBOX_POLL_MS: "100",
  });
  broker = new ServiceBroker({ logger: false, metrics: { enabled: true, reporter: [] }, voketag: config } as any);
  broker.createService(WebhooksService);
  receiver = await startReceiver();
  await broker.start();
  await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'Acme')", [TENANT]);
});

afterAll(async () => {
  await receiver?.close();
  await broker?.stop();
  await dropDb();
});

describe("webhook delivery", () => {
  it("retries through failures and an outage, with the same webhook-id, every attempt signed", async () => {
    const ep = await endpoint("/flaky", ["batch.registered"]);
    let served = 0;
    receiver.setHandler((r) => (r.path !== "/flaky" ? { status: 200 } : ++served <= 2 ? { status: 500, body: "boom" } : { status: 200 }));
    const batch = crypto.randomUUID();
    // Two failures, then the receiver goes away for a while and comes back.
    const away = receiver.waitFor((all) => onPath("/flaky")(all).length >= 2).then(() => receiver.goAway());
    await emit("batch.registered", { tenant_id: TENANT, batch_id: batch, products: 3, root: "ab" });
    await away;
    await new Promise((r) => setTimeout(r, 2500));
    await receiver.comeBack();
    const got = onPath("/flaky")(await receiver.waitFor((all) => onPath("/flaky")(all).length >= 3, 20_000));
    const ids = new Set(got.map((r) => r.headers["webhook-id"]));
    expect(ids.size).toBe(1);
    for (const r of got) expect(verify(ep.secret, r)).toEqual({ type: "batch.registered", timestamp: expect.any(String), data: { tenant_id: TENANT, batch_id: batch, products: 3, root: "ab" } });
    const [d] = (await until(() => deliveriesOf(ep.id), (l) => l.items[0]?.status === "succeeded")).items;
    expect(d).toMatchObject({ status: "succeeded", response_status: 200, webhook_id: [...ids][0], event_type: "batch.registered" });
    expect(d.attempts).toBeGreaterThanOrEqual(4); // 500, 500, at least one refused connection, 200
    expect(typeof d.latency_ms).toBe("number");
    const detail = await call("webhooks.delivery", { id: ep.id, delivery_id: d.id });
    const statuses = detail.history.map((h: any) => h.response_status ?? h.error.split(":")[0]);
    expect(statuses.slice(0, 2)).toEqual([500, 500]);
    expect(statuses).toContain("ECONNREFUSED");
    expect(statuses[statuses.length - 1]).toBe(200);
    expect(detail.history[0].response_body).toBe("boom");
    // Attempts were spaced by the schedule (1 s, stretched by at most 20 % jitter), not hammered.
    const times = detail.history.map((h: any) => new Date(h.at).getTime());
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(900);
  }, 60_000);

  it("honours Retry-After", async () => {
    const ep = await endpoint("/busy", ["batch.failed"]);
    receiver.setHandler((r) => (r.path === "/busy" && onPath("/busy")(receiver.received).length === 1 ? { status: 429, headers: { "retry-after": "3" } } : { status: 200 }));
    await emit("batch.failed", { tenant_id: TENANT, batch_id: crypto.randomUUID(), errors: [] });
    const got = onPath("/busy")(await receiver.waitFor((all) => onPath("/busy")(all).length >= 2, 15_000));
    expect(got[1].at - got[0].at).toBeGreaterThanOrEqual(2900);
    expect(got[1].headers["webhook-id"]).toBe(got[0].headers["webhook-id"]);
    await until(() => deliveriesOf(ep.id), (l) => l.items[0]?.status === "succeeded");
  }, 30_000);

  it("treats a redirect as a failure and never follows it", async () => {
    const target = await startReceiver();
    try {
      const ep = await endpoint("/moved", ["fraud.reported"]);
      receiver.setHandler((r) => (r.path === "/moved" ? { status: 307, headers: { location: target.url("/elsewhere") } } : { status: 200 }));
      await emit("fraud.reported", { tenant_id: TENANT, report_id: crypto.randomUUID(), reason: "counterfeit" });
      const l = await until(() => deliveriesOf(ep.id), (x) => x.items[0]?.attempts >= 2 && x.items[0]?.response_status === 307, 15_000);
      expect(l.items[0]).toMatchObject({ status: "pending", response_status: 307 });
      expect(l.items[0].error).toMatch(/redirect \(307\) not followed/);
      expect(target.received).toHaveLength(0);
      await call("webhooks.remove", { id: ep.id });
    } finally {
      await target.close();
    }
  }, 30_000);

  it("disables the endpoint on 410 Gone and resumes after it is re-enabled", async () => {
    const ep = await endpoint("/gone", ["scan.suspicious"]);
    receiver.setHandler((r) => (r.path === "/gone" ? { status: 410 } : { status: 200 }));
    await emit("scan.suspicious", { tenant_id: TENANT, scan_id: crypto.randomUUID(), score: 80 });
    const disabled = await until(() => call("webhooks.get", { id: ep.id }), (e) => e.status === "disabled", 10_000);
    expect(disabled.disabled_reason).toMatch(/410/);
    const [dead] = (await deliveriesOf(ep.id)).items;
    expect(dead).toMatchObject({ status: "dead", response_status: 410, attempts: 1 });
    // While disabled, nothing is queued for it.
    const quiet = await emit("scan.suspicious", { tenant_id: TENANT, scan_id: crypto.randomUUID(), score: 81 });
    await until(() => db().query("SELECT sent_at FROM outbox WHERE id = $1", [quiet]), (r: any) => !!r.rows[0].sent_at);
    expect((await deliveriesOf(ep.id)).items).toHaveLength(1);
    receiver.setHandler(() => ({ status: 200 }));
    expect((await call("webhooks.enable", { id: ep.id })).status).toBe("enabled");
    await emit("scan.suspicious", { tenant_id: TENANT, scan_id: crypto.randomUUID(), score: 82 });
    await until(() => deliveriesOf(ep.id), (l) => l.items.some((d: any) => d.status === "succeeded"));
    // The dead one comes back with a replay, same webhook-id.
    const replayed = await call("webhooks.replay", { id: ep.id, delivery_id: dead.id });
    expect(replayed).toMatchObject({ id: dead.id, status: "pending", webhook_id: dead.webhook_id });
    await until(() => call("webhooks.delivery", { id: ep.id, delivery_id: dead.id }), (d) => d.status === "succeeded");
    const ids = onPath("/gone")(receiver.received).map((r) => r.headers["webhook-id"]);
    expect(ids.filter((x) => x === dead.webhook_id)).toHaveLength(2);
  }, 30_000);

  it("dead-letters after the last scheduled attempt; a replay delivers it with the same webhook-id", async () => {
    config.webhooks.retrySchedule = [0, 1, 1];
    try {
      const ep = await endpoint("/down", ["product.recalled"]);
      receiver.setHandler((r) => (r.path === "/down" ? { status: 503 } : { status: 200 }));
      await emit("product.recalled", { tenant_id: TENANT, batch_id: crypto.randomUUID(), tag_ids: [] });
      const [d] = (await until(() => deliveriesOf(ep.id), (l) => l.items[0]?.status === "dead", 15_000)).items;
      expect(d).toMatchObject({ attempts: 3, response_status: 503, next_attempt_at: null });
      expect(onPath("/down")(receiver.received)).toHaveLength(3);
      expect((await call("webhooks.deliveries", { id: ep.id, status: "dead" })).items.map((x: any) => x.id)).toEqual([d.id]);
      receiver.setHandler(() => ({ status: 200 }));
      await call("webhooks.replay", { id: ep.id, delivery_id: d.id });
      const done = await until(() => call("webhooks.delivery", { id: ep.id, delivery_id: d.id }), (x) => x.status === "succeeded");
      expect(done.attempts).toBe(4);
      const got = onPath("/down")(receiver.received);
      expect(got).toHaveLength(4);
      expect(new Set(got.map((r) => r.headers["webhook-id"])).size).toBe(1);
      expect(verify(ep.secret, got[3]).type).toBe("product.recalled");
    } finally {
      config.webhooks.retrySchedule = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    }
  }, 30_000);

  it("signs with the old and the new secret during a rotation", async () => {
    receiver.setHandler(() => ({ status: 200 }));
    const ep = await endpoint("/rot", ["batch.registered"]);
    const rotated = await call("webhooks.rotateSecret", { id: ep.id });
    await emit("batch.registered", { tenant_id: TENANT, batch_id: crypto.randomUUID() });
    const [r] = onPath("/rot")(await receiver.waitFor((all) => onPath("/rot")(all).length >= 1));
    expect(r.headers["webhook-signature"].split(" ")).toHaveLength(2);
    expect(verify(rotated.secret, r).type).toBe("batch.registered");
    expect(verify(ep.secret, r).type).toBe("batch.registered");
    expect(() => verify(`whsec_${crypto.randomBytes(32).toString("base64")}`, r)).toThrow();
    // Once the overlap is over, only the new secret signs.
    await db().query("UPDATE webhook_endpoints SET previous_expires_at = now() - interval '1 second' WHERE id = $1", [ep.id]);
    await emit("batch.registered", { tenant_id: TENANT, batch_id: crypto.randomUUID() });
    const second = onPath("/rot")(await receiver.waitFor((all) => onPath("/rot")(all).length >= 2))[1];
    expect(second.headers["webhook-signature"].split(" ")).toHaveLength(1);
    expect(verify(rotated.secret, second).type).toBe("batch.registered");
    expect(() => verify(ep.secret, second)).toThrow();
  }, 30_000);

  it("sends test deliveries", async () => {
    receiver.setHandler(() => ({ status: 202 }));
    const ep = await endpoint("/test", ["batch.failed"]);
    const t = await call("webhooks.test", { id: ep.id });
    const [r] = onPath("/test")(await receiver.waitFor((all) => onPath("/test")(all).length >= 1));
    expect(verify(ep.secret, r)).toMatchObject({ type: "webhook.test", data: { endpoint_id: ep.id } });
    expect(r.headers["webhook-id"]).toBe(t.webhook_id);
    await until(() => call("webhooks.delivery", { id: ep.id, delivery_id: t.id }), (d) => d.status === "succeeded" && d.response_status === 202);
  });

  it("checks the address again at delivery: a URL admitted earlier is refused once the policy forbids it", async () => {
    const ep = await endpoint("/policy", ["batch.failed"]);
    config.webhooks.allowPrivate = false;
    try {
      await emit("batch.failed", { tenant_id: TENANT, batch_id: crypto.randomUUID(), errors: [] });
      const [d] = (await until(() => deliveriesOf(ep.id), (l) => l.items[0]?.status === "dead", 10_000)).items;
      expect(d.error).toMatch(/refused: .*loopback/);
      expect(d.attempts).toBe(1);
      expect(onPath("/policy")(receiver.received)).toHaveLength(0);
    } finally {
      config.webhooks.allowPrivate = true;
    }
  });

  it("gives up on a receiver that does not answer within the timeout", async () => {
    config.webhooks.timeoutSeconds = 1;
    try {
      receiver.setHandler((r) => (r.path === "/slow" ? "hang" : { status: 200 }));
      const ep = await endpoint("/slow", ["batch.failed"]);
      await emit("batch.failed", { tenant_id: TENANT, batch_id: crypto.randomUUID(), errors: [] });
      const [d] = (await until(() => deliveriesOf(ep.id), (l) => l.items[0]?.error, 10_000)).items;
      expect(d.error).toMatch(/timed out after 1 s/);
      expect(d.status).toBe("pending");
      await call("webhooks.remove", { id: ep.id });
      expect((await call("webhooks.delivery", { id: ep.id, delivery_id: d.id }).catch((e: any) => e.code))).toBe(404);
      const row = await db().query("SELECT status FROM webhook_deliveries WHERE id = $1", [d.id]);
      expect(row.rows[0].status).toBe("cancelled");
    } finally {
      config.webhooks.timeoutSeconds = 15;
      receiver.setHandler(() => ({ status: 200 }));
    }
  });

  it("delivers batch.anchored to the anchor job's callback_url, signed with the callback secret; refuses a metadata callback", async () => {
    receiver.setHandler(() => ({ status: 200 }));
    const ch = await call("webhooks.callbacks", {});
    const batch = crypto.randomUUID();
    await db().query("INSERT INTO anchor_jobs (tenant_id, batch_id, callback_url) VALUES ($1, $2, $3)", [TENANT, batch, receiver.url("/callback?job=1")]);
    await emit("batch.anchored", { tenant_id: TENANT, batch_id: batch, tx_hash: "0xfeed", block_number: 9, chain_id: 1337 });
    const [r] = onPath("/callback?job=1")(await receiver.waitFor((all) => onPath("/callback?job=1")(all).length >= 1));
    expect(verify(ch.secret, r)).toEqual({ type: "batch.anchored", timestamp: expect.any(String), data: { tenant_id: TENANT, batch_id: batch, tx_hash: "0xfeed", block_number: 9, chain_id: 1337 } });
    const evil = crypto.randomUUID();
    await db().query("INSERT INTO anchor_jobs (tenant_id, batch_id, callback_url) VALUES ($1, $2, 'http://169.254.169.254/latest/meta-data/iam')", [TENANT, evil]);
    await emit("batch.anchored", { tenant_id: TENANT, batch_id: evil });
    const l = await until(() => deliveriesOf(ch.id), (x) => x.items.some((d: any) => d.url.includes("169.254") && d.status === "dead"));
    expect(l.items.find((d: any) => d.url.includes("169.254")).error).toMatch(/metadata/);
  });

  it("counts outcomes, latency and queue lag in the metrics registry", async () => {
    const m = broker.metrics as any;
    const counter = m.getMetric("voketag_webhook_deliveries_total");
    const values = counter.snapshot().reduce((acc: any, x: any) => ({ ...acc, [x.labels.outcome]: (acc[x.labels.outcome] ?? 0) + x.value }), {});
    expect(values.succeeded).toBeGreaterThanOrEqual(8);
    expect(values.retry).toBeGreaterThanOrEqual(4);
    expect(values.dead).toBeGreaterThanOrEqual(2);
    expect(values.gone).toBe(1);
    const hist = m.getMetric("voketag_webhook_delivery_duration_seconds").snapshot()[0];
    expect(hist.count).toBeGreaterThanOrEqual(10);
    expect(hist.sum).toBeGreaterThan(0);
    expect(m.hasMetric("voketag_webhook_queue_lag_seconds")).toBe(true);
    const lag = m.getMetric("voketag_webhook_queue_lag_seconds").snapshot()[0];
    expect(lag.value).toBeGreaterThanOrEqual(0);
  });
});
