// 4. NATS restarted: the nodes reconnect, the outbox drains and no event is lost. The cluster runs on
// its own nats-server (a child on another port). Its gateways also run scan and factory, so tenants
// keep reporting fraud and registering batches while NATS is down: those events are written to the
// outbox but cannot reach the webhooks service (on another node) until NATS is back. After the
// restart every outbox row must be sent, every event recorded by its consumer (processed_events),
// and every one delivered to the tenant's webhook receiver.
import { startNats } from "../infra";
import { ScanLoad, stats, ackIds } from "../load";
import { scanStorage, withDb } from "../checks";
import { startCluster, seedTenant, registerBatch, sleep, secs } from "../cluster";
import { client, until } from "../../test/support/http";
import { startReceiver } from "../../test/support/webhook-receiver";
import { onCleanup } from "../infra";
import { EVENT_CONSUMERS } from "../../lib/events";
import type { Scenario } from "./types";

export const natsRestart: Scenario = {
  id: 4,
  name: "NATS restarted",
  fault: "the cluster's own NATS server stopped for 10 s (full: 30 s) while events are produced, then started again",
  budget: (quick) => (quick ? 180 : 360),
  async run({ quick, rec }) {
    const downMs = quick ? 10_000 : 30_000;
    const nats = await startNats();
    const receiver = await startReceiver();
    onCleanup("webhook receiver", () => receiver.close());
    rec.log(`own nats on port ${nats.port}; webhook receiver on ${receiver.port}`);
    const h = await startCluster(rec, {
      name: "chaos4",
      infra: { natsUrl: nats.url },
      env: { WEBHOOKS_ALLOW_PRIVATE: "1", WEBHOOK_RETRY_SCHEDULE: "0,1,2,4,8,15,30,60", WEBHOOK_POLL_MS: "200" },
      groups: [
        { name: "api", services: "api,scan,factory", count: 2 },
        { name: "admin", services: "admin,webhooks", count: 1 },
        { name: "anchor", services: "anchor", count: 1 },
      ],
    });
    const api = client(h.baseUrl);
    const t = await seedTenant(h.baseUrl);
    const hook = await api.post("/v1/webhooks", { url: receiver.url("/chaos4"), events: ["batch.registered", "fraud.reported"] }, t.key);
    if (hook.status !== 201) throw new Error(`webhook: ${hook.status} ${hook.text}`);
    const batch = await registerBatch(h.baseUrl, t.key, 100, "chaos4");
    const expected = new Map<string, string>([[`batch.registered:${batch.id}`, "before"]]);
    let sent = 1;
    let refused = 0;
    const produce = async (phase: string, reports: number, batches: number) => {
      for (let i = 0; i < reports; i++) {
        sent++;
        const r = await api.post("/v1/report", { token: batch.tokens[(sent * 7) % batch.tokens.length], reason: "counterfeit", details: `chaos4 ${phase} ${i}` }).catch(() => null);
        if (r?.status === 201) expected.set(`fraud.reported:${r.body.id}`, phase);
        else refused++;
      }
      for (let i = 0; i < batches; i++) {
        sent++;
        const stamp = `${phase}-${i}-${Date.now().toString(36)}`;
        const r = await api.post("/v1/batches", { name: `chaos4 ${phase}`, products: Array.from({ length: 5 }, (_, j) => ({ sku: "CH", name: "Chaos", serial: `${stamp}-${j}` })) }, t.key).catch(() => null);
        if (r?.status === 202) expected.set(`batch.registered:${r.body.id}`, phase);
        else refused++;
      }
    };

    const load = new ScanLoad({ baseUrl: h.baseUrl, tokens: batch.tokens, ratePerSecond: 15, concurrency: 32 });
    await produce("before", 5, 2);
    await sleep(2000);
    const tDown = load.now();
    await nats.stop("SIGTERM");
    rec.log("nats stopped");
    const downStart = Date.now();
    // Events produced while NATS is down, spread over the outage.
    while (Date.now() - downStart < downMs - 1500) {
      await produce("nats-down", 3, 1);
      await sleep(1000);
    }
    await sleep(Math.max(0, downMs - (Date.now() - downStart)));
    const tUp = load.now();
    await nats.start();
    const upAt = Date.now();
    rec.log(`nats started again after ${secs(upAt - downStart)} s`);

    // Reconnection: each gateway's readiness (NATS connected, every service reachable again).
    const gateways = h.nodes.filter((n) => n.group === "api");
    const reconnect: Record<string, number | null> = {};
    await Promise.all(
      gateways.map(async (n) => {
        const c = client(`http://127.0.0.1:${n.env.PORT}`);
        try {
          await until(() => c.get("/v1/ready"), (r) => r.status === 200, 60_000, 250);
          reconnect[n.id] = secs(Date.now() - upAt);
        } catch {
          reconnect[n.id] = null;
        }
      }),
    );
    rec.figure("ready_after_restart_s", reconnect);
    rec.check("every gateway is ready again after the restart", Object.values(reconnect).every((v) => v !== null), JSON.stringify(reconnect));
    await produce("after", 5, 2);
    await sleep(3000);
    const samples = await load.stop();

    // Drain: no unsent outbox row left, and the receiver has every expected event.
    const keyOf = (body: string) => {
      try {
        const m = JSON.parse(body);
        return `${m.type}:${m.type === "fraud.reported" ? m.data.report_id : m.data.batch_id}`;
      } catch {
        return "unparsable";
      }
    };
    const drainStart = Date.now();
    let unsent = -1;
    let got = new Set<string>();
    while (Date.now() - drainStart < (quick ? 90_000 : 180_000)) {
      unsent = await withDb(h.env.databaseUrl, async (c) => Number((await c.query("SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL")).rows[0].n));
      got = new Set(receiver.received.map((r) => keyOf(r.body)));
      if (unsent === 0 && [...expected.keys()].every((k) => got.has(k))) break;
      await sleep(500);
    }
    const drainS = secs(Date.now() - upAt);
    const db = await withDb(h.env.databaseUrl, async (c) => {
      const o = await c.query("SELECT count(*)::int AS total, count(*) FILTER (WHERE sent_at IS NOT NULL)::int AS sent, count(*) FILTER (WHERE attempts > 1)::int AS retried, max(attempts)::int AS max_attempts FROM outbox");
      // Every consumer an event's topic lists (lib/events) has recorded handling it.
      const rows = (await c.query("SELECT id, topic FROM outbox")).rows;
      const done = new Set((await c.query("SELECT consumer, event_id FROM processed_events")).rows.map((r: any) => `${r.consumer}:${r.event_id}`));
      const missing = {
        rows: rows.flatMap((o: any) => (EVENT_CONSUMERS[o.topic] ?? []).map((a) => a.split(".")[0]).filter((svc) => !done.has(`${svc}:${o.id}`)).map((svc) => ({ id: o.id, topic: o.topic, consumer: svc }))),
      };
      const processed = { rows: [{ n: done.size }] };
      const deliveries = await c.query("SELECT status, count(*)::int AS n FROM webhook_deliveries GROUP BY status");
      return { outbox: o.rows[0], unprocessed: missing.rows, processed: processed.rows[0].n, deliveries: Object.fromEntries(deliveries.rows.map((r: any) => [r.status, r.n])) };
    });
    const missingEvents = [...expected.entries()].filter(([k]) => !got.has(k));
    const perId = new Map<string, number>();
    for (const r of receiver.received) perId.set(r.headers["webhook-id"], (perId.get(r.headers["webhook-id"]) ?? 0) + 1);
    const duplicates = [...perId.values()].filter((n) => n > 1).length;
    const downEvents = [...expected.values()].filter((p) => p === "nats-down").length;

    rec.figure("outbox", db.outbox);
    rec.figure("processed_events", db.processed);
    rec.figure("webhook_deliveries", db.deliveries);
    rec.figure("events", { produced: expected.size, while_nats_down: downEvents, refused_by_api: refused, delivered: expected.size - missingEvents.length, redelivered_webhook_ids: duplicates, drained_s_after_restart: drainS });
    rec.check("events were produced while NATS was down", downEvents > 0, `${downEvents} events accepted during the outage (${refused} requests refused)`);
    rec.check("the outbox drains", unsent === 0, `${unsent} unsent rows ${drainS} s after the restart; ${db.outbox.total} rows, ${db.outbox.retried} needed retries (max ${db.outbox.max_attempts} attempts)`);
    rec.check("every outbox event is recorded by each of its consumers", db.unprocessed.length === 0, db.unprocessed.length ? `not processed: ${JSON.stringify(db.unprocessed.slice(0, 5))}` : `${db.processed} processed_events rows`);
    rec.check("every event reaches the webhook receiver", missingEvents.length === 0, missingEvents.length ? `${missingEvents.length} missing, e.g. ${missingEvents.slice(0, 3).map(([k, p]) => `${k} (${p})`).join(", ")}` : `${expected.size} events delivered (${duplicates} webhook ids delivered more than once)`);

    const sc = stats(samples);
    const scanDown = stats(samples, tDown, tUp);
    rec.figure("scans", { all: sc, while_nats_down: scanDown });
    const stored = await scanStorage(h.env.databaseUrl, ackIds(samples));
    rec.check("every acknowledged scan is stored", stored.lost === 0, `${stored.acknowledged} acknowledged scans, ${stored.lost} lost; ${scanDown.failed} of ${scanDown.sent} scans failed while NATS was down`);
    // The counts are events; a lost scan fails the check above.
    rec.count({ unit: "events", sent, acknowledged: expected.size, stored: expected.size - missingEvents.length, lost: missingEvents.length });
  },
};
