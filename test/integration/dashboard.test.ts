// Dashboard and analytics over known data: two tenants' batches, real scans through the API, and
// scans written straight into the table at chosen times, places and verdicts so every figure can
// be checked exactly. Tenant users see their tenant only.
import crypto from "node:crypto";
import { startAdminCluster, AdminCluster } from "../support/admin-cluster";
import { until } from "../support/http";

let c: AdminCluster | null = null;
const it = (name: string, fn: (c: AdminCluster) => Promise<void>, t?: number) => global.it(name, async () => (c ? fn(c) : undefined), t);

interface Fixture {
  a: string;
  b: string;
  aBatch: string;
  bBatch: string;
  aProducts: any[];
  bProducts: any[];
  aViewer: Record<string, string>;
}
let f: Fixture;
let seq = 0;

const SAO_PAULO = { lat: -23.55, lng: -46.63 };
const LISBON = { lat: 38.72, lng: -9.14 };
const DAY = 86_400_000;

async function batch(c: AdminCluster, key: Record<string, string>, skus: string[]) {
  const r = await c.api.post("/v1/batches", { name: `batch ${skus.join("")}`, products: skus.map((sku, i) => ({ sku, name: `Product ${sku}`, serial: `${sku}-${i}-${crypto.randomUUID().slice(0, 8)}` })) }, key);
  expect(r.status).toBe(202);
  await until(() => c.api.get(`/v1/batches/${r.body.id}`, key), (x) => x.body.status === "registered", 30_000);
  return { id: r.body.id, products: (await c.api.get(`/v1/batches/${r.body.id}/products`, key)).body.items };
}

/** A scan row as the scan service stores it, at a chosen time and place. */
async function scan(c: AdminCluster, p: { tenant: string | null; product: any | null; at: Date; verdict: string; score: number; where?: { lat: number; lng: number }; country?: string; device?: string }) {
  await c.pg.query(
    `INSERT INTO scans (id, tenant_id, product_id, batch_id, at, device, network, lat, lng, country, verdict, score, factors, partition, seq)
     VALUES ($1, $2, $3, $4, $5, $6, 'n', $7, $8, $9, $10, $11, '[]', 999, $12)`,
    [crypto.randomUUID(), p.tenant, p.product?.id ?? null, p.product?.batch_id ?? null, p.at, p.device ?? `dev-${++seq}`, p.where?.lat ?? null, p.where?.lng ?? null, p.country ?? null, p.verdict, p.score, ++seq],
  );
}

beforeAll(async () => {
  c = await startAdminCluster("dashboard");
  if (!c) return;
  const a = await c.tenant("Alpha Watches");
  const b = await c.tenant("Beta Bags");
  const ka = await c.key(a);
  const kb = await c.key(b);
  const ab = await batch(c, ka, ["W1", "W1", "W2"]);
  const bb = await batch(c, kb, ["B1", "B2"]);
  f = { a, b, aBatch: ab.id, bBatch: bb.id, aProducts: ab.products, bProducts: bb.products, aViewer: (await c.user("tenant_viewer", a)).headers };
  // Real scans through the API: two authentic scans of Alpha's first tag, one forged token.
  for (let i = 0; i < 2; i++) expect((await c.api.post("/v1/scan", { token: f.aProducts[0].token, location: SAO_PAULO })).body.verdict).toBe("authentic");
  const t = f.aProducts[1].token;
  expect((await c.api.post("/v1/scan", { token: t.slice(0, -4) + (t.endsWith("AAAA") ? "BBBB" : "AAAA") })).body.verdict).toBe("invalid");
  const now = Date.now();
  // Written scans: Alpha's second tag scanned suspiciously in Lisbon, twice today and once 3 days ago;
  // Alpha's third tag authentic 2 days ago in São Paulo; Beta's first tag suspicious once today.
  await scan(c, { tenant: a, product: f.aProducts[1], at: new Date(now - 60_000), verdict: "suspicious", score: 85, where: LISBON, country: "PT" });
  await scan(c, { tenant: a, product: f.aProducts[1], at: new Date(now - 120_000), verdict: "suspicious", score: 70, where: LISBON, country: "PT" });
  await scan(c, { tenant: a, product: f.aProducts[1], at: new Date(now - 3 * DAY), verdict: "suspicious", score: 65, where: LISBON, country: "PT" });
  await scan(c, { tenant: a, product: f.aProducts[2], at: new Date(now - 2 * DAY), verdict: "authentic", score: 5, where: SAO_PAULO, country: "BR" });
  await scan(c, { tenant: b, product: f.bProducts[0], at: new Date(now - 30_000), verdict: "suspicious", score: 90, where: { lat: 40.71, lng: -74.0 }, country: "US" });
  // Old enough to fall outside a 7-day view.
  await scan(c, { tenant: a, product: f.aProducts[2], at: new Date(now - 20 * DAY), verdict: "authentic", score: 0, where: SAO_PAULO, country: "BR" });
});
afterAll(async () => c?.close());

describe("dashboard", () => {
  it("shows platform staff every tenant's figures", async (c) => {
    const d = await c.api.get("/v1/admin/dashboard", c.admin);
    expect(d.status).toBe(200);
    expect(d.body.tenant_id).toBeNull();
    expect(d.body.tenants).toEqual({ total: 2, active: 2, suspended: 0 });
    expect(d.body.batches.by_status.registered).toBe(2);
    expect(d.body.products).toEqual({ total: 5, estimated: false });
    // The anchor cycle may already have opened a period for the batches (it ticks on wall-clock slots
    // from start): every state is counted, and a batch stops awaiting only once its period is final
    // (a pending or submitted period still leaves both awaiting).
    expect(Object.keys(d.body.anchors.by_status).sort()).toEqual(["confirmed", "failed", "final", "pending", "submitted"]);
    const periods = Object.values<number>(d.body.anchors.by_status).reduce((a, b) => a + b, 0);
    expect(periods).toBeLessThanOrEqual(1);
    if (d.body.anchors.by_status.final === 0) expect(d.body.anchors.batches_awaiting).toBe(2);
    else expect(d.body.anchors.batches_awaiting).toBeLessThan(2);
    // 7 days: 2 real authentic + 1 invalid + 3 suspicious today/3 days ago for Alpha + 1 authentic + 1 Beta suspicious.
    expect(d.body.scans.last_7_days).toBe(8);
    expect(d.body.scans.by_verdict_7_days).toEqual({ authentic: 3, suspicious: 4, recalled: 0, invalid: 1 });
    expect(d.body.scans.today).toBeGreaterThanOrEqual(6);
    expect(d.body.suspicious_rate_7_days).toBe(0.5);
    expect(d.body.scans.daily).toHaveLength(7);
    expect(d.body.scans.daily.reduce((s: number, x: any) => s + x.total, 0)).toBe(8);
    expect(d.body.outbox).toMatchObject({ unsent: expect.any(Number), lag_seconds: expect.any(Number) });
    expect(d.body.webhooks).toMatchObject({ failed_deliveries: 0 });
  });

  it("shows a tenant user their own tenant only, whatever tenant_id they ask for", async (c) => {
    const d = await c.api.get(`/v1/admin/dashboard?tenant_id=${f.b}`, f.aViewer);
    expect(d.status).toBe(200);
    expect(d.body.tenant_id).toBe(f.a);
    expect(d.body.tenants).toMatchObject({ id: f.a, name: "Alpha Watches" });
    expect(d.body.products.total).toBe(3);
    expect(d.body.scans.by_verdict_7_days).toEqual({ authentic: 3, suspicious: 3, recalled: 0, invalid: 0 });
    expect(d.body.outbox).toBeNull();
  });
});

describe("fraud analytics", () => {
  it("gives suspicious and invalid rates by tenant, product and batch, and the riskiest tags", async (c) => {
    const r = await c.api.get("/v1/admin/analytics/fraud?days=7", c.admin);
    expect(r.status).toBe(200);
    expect(r.body.totals).toMatchObject({ scans: 8, suspicious: 4, invalid: 1, suspicious_rate: 0.5, invalid_rate: 0.125 });
    const alpha = r.body.by_tenant.find((t: any) => t.tenant_id === f.a);
    expect(alpha).toMatchObject({ name: "Alpha Watches", scans: 6, suspicious: 3, suspicious_rate: 0.5 });
    const forged = r.body.by_tenant.find((t: any) => t.tenant_id === null);
    expect(forged).toMatchObject({ scans: 1, invalid: 1, invalid_rate: 1 });
    const w1 = r.body.by_product.find((p: any) => p.sku === "W1");
    expect(w1).toMatchObject({ tenant_id: f.a, scans: 5, suspicious: 3, suspicious_rate: 0.6 });
    expect(r.body.by_batch.find((b: any) => b.batch_id === f.aBatch)).toMatchObject({ scans: 6, suspicious: 3 });
    expect(r.body.riskiest_tags[0]).toMatchObject({ tag_id: f.bProducts[0].id, max_score: 90, tenant_id: f.b, serial: f.bProducts[0].serial });
    expect(r.body.riskiest_tags[1]).toMatchObject({ tag_id: f.aProducts[1].id, max_score: 85, suspicious: 3, countries: 1 });
  });

  it("confines a tenant user to their tenant", async (c) => {
    const r = await c.api.get(`/v1/admin/analytics/fraud?tenant_id=${f.b}`, f.aViewer);
    expect(r.body.tenant_id).toBe(f.a);
    expect(r.body.by_tenant.map((t: any) => t.tenant_id)).toEqual([f.a]);
    expect(r.body.riskiest_tags.every((t: any) => t.tenant_id === f.a)).toBe(true);
  });

  it("answers 400 to a bad range", async (c) => {
    expect((await c.api.get("/v1/admin/analytics/fraud?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", c.admin)).status).toBe(400);
    expect((await c.api.get("/v1/admin/analytics/fraud?days=1000", c.admin)).status).toBe(400);
  });
});

describe("geo analytics", () => {
  it("counts scans per grid cell named by its south-west corner, at any accepted size", async (c) => {
    const r = await c.api.get("/v1/admin/analytics/geo?days=30", c.admin);
    expect(r.status).toBe(200);
    const cells = Object.fromEntries(r.body.cells.map((x: any) => [x.cell, x]));
    expect(cells["-24,-47"]).toMatchObject({ scans: 4, south: -24, west: -47, north: -23, east: -46 });
    expect(cells["38,-10"]).toMatchObject({ scans: 3, suspicious: 3, suspicious_rate: 1 });
    expect(cells["40,-74"]).toMatchObject({ scans: 1 });
    const coarse = await c.api.get("/v1/admin/analytics/geo?days=30&cell=10", c.admin);
    expect(coarse.body.cells.map((x: any) => x.cell).sort()).toEqual(["-30,-50", "30,-10", "40,-80"]);
    expect((await c.api.get("/v1/admin/analytics/geo?cell=3", c.admin)).status).toBe(400);
    const susp = await c.api.get("/v1/admin/analytics/geo?days=30&verdict=suspicious", c.admin);
    expect(susp.body.cells.map((x: any) => x.cell).sort()).toEqual(["38,-10", "40,-74"]);
  });

  it("counts per country, and tenant users see their own scans only", async (c) => {
    const r = await c.api.get("/v1/admin/analytics/geo?by=country&days=30", c.admin);
    const by = Object.fromEntries(r.body.countries.map((x: any) => [x.country, x.scans]));
    expect(by).toMatchObject({ BR: 4, PT: 3, US: 1 });
    const mine = await c.api.get("/v1/admin/analytics/geo?days=30", f.aViewer);
    expect(mine.body.cells.map((x: any) => x.cell).sort()).toEqual(["-24,-47", "38,-10"]);
  });
});

describe("trends", () => {
  it("gives daily scans by verdict and the batches registered per day", async (c) => {
    const r = await c.api.get("/v1/admin/analytics/trends?days=7", c.admin);
    expect(r.status).toBe(200);
    const days = r.body.days;
    expect(days.length).toBeGreaterThanOrEqual(7);
    const today = days[days.length - 1];
    expect(today.date).toBe(new Date().toISOString().slice(0, 10));
    expect(today.batches_registered).toBe(2);
    expect(today.products_registered).toBe(5);
    const threeAgo = days.find((d: any) => d.date === new Date(Date.now() - 3 * DAY).toISOString().slice(0, 10));
    expect(threeAgo).toMatchObject({ suspicious: 1, total: 1 });
    expect(days.reduce((s: number, d: any) => s + d.total, 0)).toBe(8);
    const mine = await c.api.get("/v1/admin/analytics/trends?days=30", f.aViewer);
    expect(mine.body.days.reduce((s: number, d: any) => s + d.total, 0)).toBe(7);
  });
});

describe("scans list", () => {
  it("lists scans newest first with their product, filtered and confined", async (c) => {
    const all = await c.api.get("/v1/admin/scans?limit=3", c.admin);
    expect(all.body.items).toHaveLength(3);
    const times = all.body.items.map((s: any) => new Date(s.at).getTime());
    expect([...times].sort((x, y) => y - x)).toEqual(times);
    const next = await c.api.get(`/v1/admin/scans?limit=100&cursor=${all.body.next_cursor}`, c.admin);
    expect(all.body.items.length + next.body.items.length).toBe(9);
    const mine = await c.api.get("/v1/admin/scans?verdict=suspicious", f.aViewer);
    expect(mine.body.items).toHaveLength(3);
    expect(mine.body.items[0]).toMatchObject({ tenant_id: f.a, serial: f.aProducts[1].serial, sku: "W1", verdict: "suspicious" });
    expect(mine.body.items[0].device.length).toBeLessThanOrEqual(12);
  });
});
