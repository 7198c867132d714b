// Scheduled maintenance on the real Postgres, two brokers ("nodes") sharing one database: each job
// runs on one node at a time (a held lock makes the other skip), once per interval cluster-wide,
// and does what it says — expired Idempotency-Keys, abandoned uploads and their bytes, webhook
// deliveries past retention gone; live rows untouched; statistics refreshed; deletions audited.
import crypto from "node:crypto";
import { Client } from "pg";
import { ServiceBroker } from "moleculer";
import MaintenanceService from "../../services/maintenance.service";
import { loadConfig } from "../../lib/config";
import { needServices } from "../support/services";
import { createTestDatabase } from "../support/test-database";
import { until } from "../support/http";

let available = false;
let url: string;
let drop: () => Promise<void> = async () => undefined;
let nodes: ServiceBroker[] = [];
let pg: Client;

const svc = (b: ServiceBroker) => b.getLocalService("maintenance") as any;

beforeAll(async () => {
  available = await needServices("maintenance", ["postgres"]);
  if (!available) return;
  const db = await createTestDatabase("maint");
  url = db.url;
  drop = db.drop;
  const config = loadConfig({ DATABASE_URL: url, SERVICES: "maintenance", MAINTENANCE_INTERVAL: "3600", WEBHOOK_RETENTION: "86400", VOKETAG_DATA_DIR: "memory://" });
  nodes = ["maint-a", "maint-b"].map((nodeID) => new ServiceBroker({ nodeID, logger: false, voketag: config } as any));
  for (const b of nodes) b.createService(MaintenanceService);
  await Promise.all(nodes.map((b) => b.start()));
  pg = new Client({ connectionString: url });
  await pg.connect();
});

afterAll(async () => {
  await pg?.end();
  for (const b of nodes) await b.stop();
  await drop();
});

async function seed() {
  const tenant = crypto.randomUUID();
  await pg.query("INSERT INTO tenants (id, name) VALUES ($1, 'Acme')", [tenant]);
  // Idempotency keys: two expired (one still 'running' — its request died), one live.
  await pg.query(
    `INSERT INTO idempotency_keys (scope, key, request_hash, state, expires_at) VALUES
       ('s', 'old-done', 'h', 'done', now() - interval '1 hour'),
       ('s', 'old-running', 'h', 'running', now() - interval '2 hours'),
       ('s', 'live', 'h', 'done', now() + interval '1 hour')`,
  );
  // Uploads: one abandoned (receiving past expiry), one still receiving, one completed.
  const up = { abandoned: crypto.randomUUID(), live: crypto.randomUUID(), done: crypto.randomUUID() };
  await pg.query(
    `INSERT INTO uploads (id, tenant_id, kind, content_type, status, expires_at) VALUES
       ($1, $4, 'upload', 'text/csv', 'receiving', now() - interval '1 minute'),
       ($2, $4, 'upload', 'text/csv', 'receiving', now() + interval '1 day'),
       ($3, $4, 'upload', 'text/csv', 'completed', now() - interval '1 day')`,
    [up.abandoned, up.live, up.done, tenant],
  );
  for (const id of [up.abandoned, up.live])
    for (const offset of [0, 1024]) await pg.query(`INSERT INTO upload_chunks (upload_id, "offset", data) VALUES ($1, $2, $3)`, [id, offset, crypto.randomBytes(1024)]);
  // Webhook deliveries: old finished (goes), old pending (stays: not finished), recent finished (stays).
  const endpoint = (await pg.query(`INSERT INTO webhook_endpoints (tenant_id, url, events, secret) VALUES ($1, 'https://example.com/h', '{batch.registered}', 'whsec_x') RETURNING id`, [tenant])).rows[0].id;
  const delivery = async (status: string, age: string) =>
    (await pg.query(`INSERT INTO webhook_deliveries (endpoint_id, tenant_id, webhook_id, event_type, payload, status, created_at) VALUES ($1, $2, $3, 'batch.registered', '{}', $4, now() - $5::interval) RETURNING id`, [endpoint, tenant, `msg_${crypto.randomUUID()}`, status, age])).rows[0].id;
  const del = { old: await delivery("succeeded", "2 days"), oldDead: await delivery("dead", "3 days"), oldPending: await delivery("pending", "2 days"), recent: await delivery("succeeded", "1 hour") };
  await pg.query("INSERT INTO webhook_attempts (delivery_id, attempt) VALUES ($1, 1)", [del.old]);
  // Table statistics reach pg_stat_user_tables when a backend flushes them (at most once a second).
  await pg.query("SELECT pg_stat_force_next_flush()");
  await until(async () => (await pg.query("SELECT n_mod_since_analyze AS n FROM pg_stat_user_tables WHERE relname = 'uploads'")).rows[0].n, (n) => n > 0, 15_000);
  return { up, del };
}

it("runs each job on one node at a time: a job whose lock another node holds is skipped there", async () => {
  if (!available) return;
  const holder = new Client({ connectionString: url });
  await holder.connect();
  try {
    await holder.query("SELECT pg_advisory_lock(7261008, hashtext('idempotency-keys'))");
    const out = await nodes[0].call("maintenance.run", { job: "idempotency-keys" });
    expect(out).toEqual([{ job: "idempotency-keys", ran: false, reason: "locked" }]);
  } finally {
    await holder.query("SELECT pg_advisory_unlock_all()");
    await holder.end();
  }
  const after = (await nodes[0].call("maintenance.run", { job: "idempotency-keys" })) as any[];
  expect(after[0]).toMatchObject({ job: "idempotency-keys", ran: true, ok: true });
});

it("cleans what is due and leaves everything live alone", async () => {
  if (!available) return;
  const { up, del } = await seed();
  const out = (await nodes[1].call("maintenance.run", {})) as any[];
  const by = Object.fromEntries(out.map((o) => [o.job, o]));
  expect(Object.keys(by).sort()).toEqual(["abandoned-uploads", "idempotency-keys", "statistics", "webhook-deliveries"]);
  for (const o of out) expect([o.job, o.ran, o.ok]).toEqual([o.job, true, true]);
  expect(by["idempotency-keys"].result).toEqual({ deleted: 2 });
  expect(by["abandoned-uploads"].result).toEqual({ expired: 1, chunks_deleted: 2 });
  expect(by["webhook-deliveries"].result).toEqual({ deleted: 2 });

  expect((await pg.query("SELECT key FROM idempotency_keys ORDER BY key")).rows.map((r) => r.key)).toEqual(["live"]);
  const uploads = Object.fromEntries((await pg.query("SELECT id, status FROM uploads")).rows.map((r) => [r.id, r.status]));
  expect(uploads).toEqual({ [up.abandoned]: "expired", [up.live]: "receiving", [up.done]: "completed" });
  const chunks = (await pg.query("SELECT upload_id, count(*)::int AS n FROM upload_chunks GROUP BY upload_id")).rows;
  expect(chunks).toEqual([{ upload_id: up.live, n: 2 }]);
  const left = (await pg.query("SELECT id FROM webhook_deliveries")).rows.map((r) => r.id).sort();
  expect(left).toEqual([del.oldPending, del.recent].sort());
  expect((await pg.query("SELECT count(*)::int AS n FROM webhook_attempts")).rows[0].n).toBe(0);

  // Statistics: tables that never had any were analyzed (the seed just filled them).
  expect(by.statistics.result.analyzed).toEqual(expect.arrayContaining(["uploads", "webhook_deliveries"]));
  const stats = await pg.query("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'uploads'");
  expect(stats.rows[0].last_analyze).not.toBeNull();

  // Every deleting run is in the audit trail, as the system.
  const audit = (await pg.query("SELECT action, actor_type, entry FROM audit_log WHERE action LIKE 'maintenance.%' ORDER BY seq")).rows;
  expect(audit.map((a) => a.action)).toEqual(expect.arrayContaining(["maintenance.idempotency-keys", "maintenance.abandoned-uploads", "maintenance.webhook-deliveries"]));
  for (const a of audit) expect(a.actor_type).toBe("system");

  // The run is recorded for operators.
  const status = (await nodes[0].call("maintenance.status")) as any[];
  const row = status.find((s) => s.job === "abandoned-uploads");
  expect(row).toMatchObject({ node: "maint-b", ok: true, result: { expired: 1, chunks_deleted: 2 } });
});

it("on schedule, two nodes ticking together run each job once per interval", async () => {
  if (!available) return;
  await pg.query("DELETE FROM maintenance_runs");
  await pg.query(`INSERT INTO idempotency_keys (scope, key, request_hash, state, expires_at) VALUES ('s', 'again', 'h', 'done', now() - interval '1 hour')`);
  const [a, b] = await Promise.all(nodes.map((n) => svc(n).runDueMaintenance()));
  const ran = [...a, ...b].filter((o: any) => o.ran);
  // Four jobs, each run exactly once between the two nodes; the other node found it locked or done.
  expect(ran.map((o: any) => o.job).sort()).toEqual(["abandoned-uploads", "idempotency-keys", "statistics", "webhook-deliveries"]);
  for (const o of [...a, ...b].filter((x: any) => !x.ran)) expect(["locked", "not_due"]).toContain(o.reason);
  // A further tick within the interval does nothing anywhere (the lock may still be held by the
  // other node's due check: "locked" is as good as "not_due").
  const again = (await Promise.all(nodes.map((n) => svc(n).runDueMaintenance()))).flat();
  expect(again.filter((o: any) => o.ran)).toEqual([]);
  expect(again.filter((o: any) => o.reason === "not_due").length).toBeGreaterThanOrEqual(4);
});

it("rejects an unknown job by name", async () => {
  if (!available) return;
  await expect(nodes[0].call("maintenance.run", { job: "vacuum-everything" })).rejects.toMatchObject({ code: 400 });
});
