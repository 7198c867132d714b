// 2. Restart Postgres during the registration of a 100,000-product batch: the batch ends registered
// (all 100,000 products) or cleanly failed (none) and retryable (the same file registered again
// succeeds), never partial. The scenario runs on its own Postgres cluster (pg_createcluster on
// another port), which it crashes (`pg_ctlcluster stop -m immediate`) while the factory is writing
// the batch's products, and starts again.
import crypto from "node:crypto";
import { startPostgres } from "../infra";
import { withDb } from "../checks";
import { startCluster, seedTenant, sleep, secs } from "../cluster";
import { client } from "../../test/support/http";
import type { Scenario } from "./types";

const FINAL = ["registered", "anchoring", "anchored", "failed"];

function csvOf(n: number, tag: string): string {
  const lines = ["sku,name,serial,gtin,lot"];
  for (let i = 0; i < n; i++) lines.push(`CH-${i % 50},Chaos product ${i % 50},${tag}-${String(i).padStart(7, "0")},,L${i % 20}`);
  return lines.join("\n") + "\n";
}

export const postgresRestart: Scenario = {
  id: 2,
  name: "Postgres restart mid-registration",
  fault: "the scenario's own Postgres crashed (immediate stop) and started again while a 100,000-product batch registers",
  budget: (quick) => (quick ? 270 : 600),
  async run({ quick, rec }) {
    const N = 100_000;
    const downMs = quick ? 3000 : 10_000;
    const pg = await startPostgres("chaos2");
    rec.log(`own postgres ${pg.name} on port ${pg.port}`);
    const h = await startCluster(rec, {
      name: "chaos2",
      infra: { postgresUrl: pg.url },
      groups: [
        { name: "factory", services: "factory", count: 1 },
        { name: "api", services: "api,admin", count: 1 },
      ],
    });
    const db = h.env.databaseUrl;
    const api = client(h.baseUrl);
    const t = await seedTenant(h.baseUrl);
    const tag = crypto.randomBytes(3).toString("hex");
    const csv = csvOf(N, tag);
    rec.figure("products", N);
    rec.figure("csv_mb", Math.round((csv.length / 1048576) * 10) / 10);

    const submit = async (label: string) => {
      const t0 = Date.now();
      const res = await fetch(`${h.baseUrl}/v1/batches?name=chaos-${label}`, {
        method: "POST",
        headers: { ...t.key, "content-type": "text/csv", "idempotency-key": `chaos2-${tag}-${label}` },
        body: csv,
        signal: AbortSignal.timeout(120_000),
      });
      const body: any = await res.json().catch(() => null);
      rec.log(`POST /v1/batches (text/csv, ${N} rows) → ${res.status} in ${secs(Date.now() - t0)} s ${res.status >= 300 ? JSON.stringify(body).slice(0, 300) : ""}`);
      return { status: res.status, body };
    };

    let first = await submit("a");
    rec.check("a 100,000-product CSV batch is accepted (202)", first.status === 202, `POST /v1/batches text/csv → ${first.status}${first.status !== 202 ? ` ${JSON.stringify(first.body).slice(0, 200)}` : ""}`);
    let products = N;
    if (first.status !== 202) {
      // Without bulk CSV registration the fault is still tried, on the largest JSON batch the API takes.
      products = 10_000;
      rec.log("falling back to a 10,000-product JSON batch to exercise the fault");
      const body = { name: "chaos-json", products: Array.from({ length: products }, (_, i) => ({ sku: "CH", name: "Chaos", serial: `${tag}-j${i}` })) };
      const r = await api.request("POST", "/v1/batches", { body, headers: { ...t.key, "idempotency-key": `chaos2-${tag}-json` } });
      first = { status: r.status, body: r.body };
      if (r.status !== 202) throw new Error(`JSON batch: ${r.status} ${r.text.slice(0, 200)}`);
    }
    rec.figure("batch_products", products);
    const batchId: string = first.body.id;

    // Wait for the products to be written, then crash Postgres under the writer.
    const countOf = (id: string) => withDb(db, async (c) => Number((await c.query("SELECT count(*)::int AS n FROM products WHERE batch_id = $1", [id])).rows[0].n));
    let atFault: any = null;
    const t0 = Date.now();
    let processingSince = 0;
    while (Date.now() - t0 < 120_000) {
      const s = await withDb(db, async (c) => {
        // Columns other than these come and go with the factory's schema: read the row whole.
        const row = (await c.query("SELECT * FROM batches WHERE id = $1", [batchId])).rows[0];
        const b = { status: row.status, done: row.done, total: row.total, phase: row.phase ?? null };
        const w = await c.query(
          "SELECT left(query, 60) AS q FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query ~* '(insert into|copy) *(products|product_staging|\\w*stag\\w*)' LIMIT 1",
        );
        return { ...b, writing: w.rows[0]?.q ?? null };
      });
      if (FINAL.includes(s.status)) {
        atFault = { ...s, missed: true };
        break;
      }
      if (s.status !== "received" && !processingSince) processingSince = Date.now();
      if (s.writing || (processingSince && Date.now() - processingSince > 1500)) {
        atFault = { ...s, processing_for_ms: processingSince ? Date.now() - processingSince : 0 };
        break;
      }
      await sleep(50);
    }
    if (!atFault) throw new Error("the batch never started processing in 120 s");
    const tFault = Date.now();
    await pg.stop("immediate");
    rec.log(`postgres crashed at batch status=${atFault.status} phase=${atFault.phase ?? "-"} done=${atFault.done}/${atFault.total}${atFault.writing ? ` while running "${atFault.writing}"` : ""}`);
    await sleep(downMs);
    await pg.start();
    rec.log(`postgres back after ${secs(Date.now() - tFault)} s`);
    rec.figure("fault", { ...atFault, down_s: downMs / 1000 });
    rec.check("the crash hit the registration mid-way", !atFault.missed, atFault.missed ? `the batch was already ${atFault.status} when the fault came` : `status ${atFault.status}, ${atFault.writing ? "products being written" : `processing for ${atFault.processing_for_ms} ms`}`);

    // The batch must reach a final state by itself (a node resuming it, or marking it failed).
    const deadline = Date.now() + (quick ? 180_000 : 420_000);
    const seen = new Set<number>();
    let batch: any = null;
    let apiErrors = 0;
    const gatewayStatuses: Record<string, number> = {};
    const crashed: { id: string; exit: unknown; why: string }[] = [];
    while (Date.now() < deadline) {
      // A node that died is started again, as its orchestrator would, and reported.
      for (const n of h.nodes.filter((x) => x.handle.proc.exitCode !== null || x.handle.proc.signalCode)) {
        // From the uncaught error on: what it was and where it came from.
        const plain = n.handle.logs.filter((l) => !l.startsWith("{"));
        const from = Math.max(0, plain.findIndex((l) => /^(\w*Error|Uncaught|node:internal|.*throw er)/.test(l.trim())));
        const why = plain.slice(from, from + 12).map((l) => l.trim()).join(" ⏎ ").slice(0, 1200);
        crashed.push({ id: n.id, exit: n.handle.proc.exitCode ?? n.handle.proc.signalCode, why });
        rec.log(`${n.id} died (${why.slice(0, 200)}…); restarting it`);
        await h.restart(n.id);
      }
      const r = await api.get(`/v1/batches/${batchId}`, t.key).catch(() => null);
      const k = r ? String(r.status) : "no answer";
      gatewayStatuses[k] = (gatewayStatuses[k] ?? 0) + 1;
      if (!r || r.status >= 500) {
        if (apiErrors++ === 0) rec.log(`GET /v1/batches/:id → ${k} ${r?.text.slice(0, 200) ?? ""}`);
      } else batch = r.body;
      seen.add(await countOf(batchId).catch(() => -1));
      if (batch && FINAL.includes(batch.status)) break;
      await sleep(1000);
    }
    const settleS = secs(Date.now() - tFault);
    const count = await countOf(batchId);
    const partialSeen = [...seen].filter((n) => n > 0 && n < products);
    rec.figure("after_fault", { status: batch?.status, settled_s: settleS, products: count, history: batch?.history?.map((x: any) => x.status), gateway_answers_while_waiting: gatewayStatuses, partial_counts_seen: partialSeen.slice(0, 5) });
    rec.check("no node crashed", crashed.length === 0, crashed.length ? crashed.map((c) => `${c.id} exited ${c.exit}: ${c.why}`).join("; ") : "every node stayed up");
    if (!batch || !FINAL.includes(batch.status)) {
      const f = h.node("factory-1").handle.logs.filter((l) => /"level":(40|50|60)/.test(l)).slice(-5);
      rec.figure("factory_last_warnings", f.map((l) => l.slice(0, 300)));
    }
    rec.check("the batch ends registered or failed by itself", !!batch && FINAL.includes(batch.status), `status ${batch?.status ?? "unknown"} ${settleS} s after the crash`);
    rec.check("never partial: the batch holds 0 or all of its products", count === 0 || count === products, `${count} of ${products} products${partialSeen.length ? `; partial counts seen on the way: ${partialSeen.slice(0, 3).join(", ")}` : ""}`);

    let stored = count;
    if (batch?.status === "failed") {
      rec.check("a failed batch left nothing behind", count === 0, `${count} products`);
      const again = await submit("retry");
      const retryId = again.body?.id;
      let rb: any = null;
      const end = Date.now() + 180_000;
      while (retryId && Date.now() < end) {
        rb = (await api.get(`/v1/batches/${retryId}`, t.key)).body;
        if (FINAL.includes(rb?.status)) break;
        await sleep(1000);
      }
      const rc = retryId ? await countOf(retryId) : 0;
      stored = rc;
      rec.check("the failed batch is retryable: the same file registers in full", again.status === 202 && rb?.status !== "failed" && rc === products, `retry → ${again.status}, status ${rb?.status}, ${rc} products`);
    } else if (batch && FINAL.includes(batch.status)) {
      const row = await withDb(db, async (c) => (await c.query("SELECT done, total, leaf_count, root FROM batches WHERE id = $1", [batchId])).rows[0]);
      rec.check("the registered batch is whole (progress, Merkle tree)", row.done === products && row.total === products && row.leaf_count === products && !!row.root, JSON.stringify(row).slice(0, 200));
    }
    const distinct = await withDb(db, async (c) => Number((await c.query("SELECT count(DISTINCT serial)::int AS n FROM products WHERE tenant_id = $1", [t.tenantId])).rows[0].n));
    rec.check("no serial registered twice", distinct === stored, `${distinct} distinct serials, ${stored} products registered`);
    rec.count({ unit: "products", sent: products, acknowledged: first.status === 202 ? products : 0, stored, lost: Math.max(0, products - stored) });
  },
};
