// 6. A tenant's webhook receiver down for the whole retry window but the last try: every event is
// delivered exactly once. The receiver's port is closed (connections refused) while events are
// produced and every attempt but the last fails; it comes back just before the last attempt of the
// schedule (WEBHOOK_RETRY_SCHEDULE, shortened), which must deliver each event once, signed, with
// the webhook id it had from the start. Two webhooks nodes share the deliveries.
import { Webhook } from "standardwebhooks";
import { withDb } from "../checks";
import { onCleanup } from "../infra";
import { startCluster, seedTenant, registerBatch, sleep, secs } from "../cluster";
import { client } from "../../test/support/http";
import { startReceiver } from "../../test/support/webhook-receiver";
import type { Scenario } from "./types";

export const webhookReceiverDown: Scenario = {
  id: 6,
  name: "Webhook receiver down",
  fault: "the tenant's webhook receiver refusing connections for every attempt of the retry schedule but the last",
  budget: (quick) => (quick ? 150 : 300),
  async run({ quick, rec }) {
    const schedule = quick ? [0, 1, 2, 3, 12] : [0, 2, 4, 8, 16, 30];
    const events = quick ? 20 : 60;
    const receiver = await startReceiver(() => ({ status: 204 }));
    onCleanup("webhook receiver", () => receiver.close());
    const h = await startCluster(rec, {
      name: "chaos6",
      env: { WEBHOOKS_ALLOW_PRIVATE: "1", WEBHOOK_RETRY_SCHEDULE: schedule.join(","), WEBHOOK_TIMEOUT: "2", WEBHOOK_LEASE: "5", WEBHOOK_POLL_MS: "200" },
      groups: [
        { name: "webhooks", services: "webhooks", count: 2 },
        { name: "api", services: "api,admin,factory,scan", count: 1 },
      ],
    });
    rec.figure("retry_schedule_s", schedule);
    const api = client(h.baseUrl);
    const t = await seedTenant(h.baseUrl);
    const hook = await api.post("/v1/webhooks", { url: receiver.url("/chaos6"), events: ["batch.registered", "fraud.reported"] }, t.key);
    if (hook.status !== 201) throw new Error(`webhook: ${hook.status} ${hook.text}`);
    await receiver.goAway();
    rec.log(`receiver down (port ${receiver.port} refusing); producing ${events} events`);

    const batch = await registerBatch(h.baseUrl, t.key, 20, "chaos6");
    let sent = 1;
    let accepted = 1;
    for (let i = 1; i < events; i++) {
      sent++;
      const r = await api.post("/v1/report", { token: batch.tokens[i % batch.tokens.length], reason: "tampered_tag", details: `chaos6 ${i}` });
      if (r.status === 201) accepted++;
    }
    const deliveries = () =>
      withDb(h.env.databaseUrl, async (c) =>
        (await c.query("SELECT webhook_id, status, attempts, cycle_attempts, extract(epoch FROM next_at - now()) AS due_in FROM webhook_deliveries WHERE endpoint_id = $1", [hook.body.id])).rows,
      );

    // Wait until every delivery has failed all but its last attempt, then bring the receiver back.
    const last = schedule.length;
    const t0 = Date.now();
    let rows: any[] = [];
    while (Date.now() - t0 < 120_000) {
      rows = await deliveries();
      if (rows.length >= accepted && rows.every((r) => r.cycle_attempts >= last - 1 || r.status !== "pending")) break;
      await sleep(100);
    }
    const early = rows.filter((r) => r.status !== "pending" || r.cycle_attempts >= last);
    const margin = rows.length ? Math.min(...rows.map((r) => Number(r.due_in))) : 0;
    await receiver.comeBack();
    rec.log(`receiver back ${secs(Date.now() - t0)} s later; ${rows.length} deliveries waiting for their last try, the first due in ${margin.toFixed(1)} s`);
    rec.figure("receiver_back", { deliveries: rows.length, attempts_failed_each: last - 1, first_last_try_due_in_s: Math.round(margin * 10) / 10 });
    rec.check("the receiver was down for every attempt but the last", rows.length >= accepted && early.length === 0 && margin > 0, `${rows.length} deliveries, each with ${last - 1} failed attempts; ${early.length} already past their last try`);

    // The last try delivers everything.
    const end = Date.now() + (schedule[last - 1] * 1.3 + 30) * 1000;
    while (Date.now() < end) {
      rows = await deliveries();
      if (rows.every((r) => r.status !== "pending")) break;
      await sleep(250);
    }
    await sleep(2000); // anything delivered twice would show up now
    const byStatus: Record<string, number> = {};
    for (const r of rows) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
    const perId = new Map<string, number>();
    for (const r of receiver.received) perId.set(r.headers["webhook-id"], (perId.get(r.headers["webhook-id"]) ?? 0) + 1);
    const expectedIds = new Set(rows.map((r) => r.webhook_id));
    const deliveredOnce = [...expectedIds].filter((id) => perId.get(id) === 1).length;
    const twice = [...perId.entries()].filter(([, n]) => n > 1);
    const wh = new Webhook(hook.body.secret);
    let badSignatures = 0;
    for (const r of receiver.received) {
      try {
        wh.verify(r.body, r.headers);
      } catch {
        badSignatures++;
      }
    }
    const attempts = await withDb(h.env.databaseUrl, async (c) =>
      (await c.query("SELECT d.attempts, count(a.*)::int AS n FROM webhook_deliveries d LEFT JOIN webhook_attempts a ON a.delivery_id = d.id WHERE d.endpoint_id = $1 GROUP BY d.id", [hook.body.id])).rows,
    );
    rec.figure("deliveries", { by_status: byStatus, received: receiver.received.length, distinct_webhook_ids: perId.size, attempts_per_delivery: [...new Set(attempts.map((a: any) => a.n))] });
    rec.check("every event is delivered", byStatus.succeeded === accepted && deliveredOnce === accepted, `${accepted} events accepted, ${byStatus.succeeded ?? 0} deliveries succeeded, ${deliveredOnce} webhook ids received; ${JSON.stringify(byStatus)}`);
    rec.check("each exactly once (no webhook id twice)", twice.length === 0 && receiver.received.length === expectedIds.size, `${receiver.received.length} requests for ${expectedIds.size} webhook ids${twice.length ? `; twice: ${twice.slice(0, 3).map(([id, n]) => `${id}×${n}`).join(", ")}` : ""}`);
    rec.check("on the last try of the schedule", attempts.every((a: any) => a.n === last), `attempts per delivery: ${[...new Set(attempts.map((a: any) => a.n))].join(", ")} (schedule has ${last})`);
    rec.check("every delivery is signed with the endpoint's secret", badSignatures === 0, `${badSignatures} of ${receiver.received.length} failed Standard Webhooks verification`);
    rec.count({ unit: "deliveries", sent, acknowledged: accepted, stored: deliveredOnce, lost: Math.max(0, accepted - deliveredOnce) });
  },
};
