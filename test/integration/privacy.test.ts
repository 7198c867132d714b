// Privacy and retention: coarse scan locations, a tenant's full export as a stream, retention as
// scheduled maintenance on one node at a time (audited, settings from god mode), erasure of a
// tenant's personal data on request, and the consumer page's privacy notice.
import crypto from "node:crypto";
import { startAdminCluster, AdminCluster, PASSWORD, eventually } from "../support/admin-cluster";
import { until } from "../support/http";

let c: AdminCluster | null = null;
const it = (name: string, fn: (c: AdminCluster) => Promise<void>, t?: number) => global.it(name, async () => (c ? fn(c) : undefined), t);

const f: any = {};

async function tenantWithData(c: AdminCluster, name: string) {
  const id = await c.tenant(name);
  const key = await c.key(id);
  const b = await c.api.post("/v1/batches", { products: [1, 2].map((i) => ({ sku: "P", name: "P", serial: `${name}-${i}-${crypto.randomUUID().slice(0, 6)}` })) }, key);
  await until(() => c.api.get(`/v1/batches/${b.body.id}`, key), (r) => r.body.status === "registered", 30_000);
  const products = (await c.api.get(`/v1/batches/${b.body.id}/products`, key)).body.items;
  for (const p of products) {
    const s = await c.api.post("/v1/scan", { token: p.token, location: { lat: -23.551234, lng: -46.633309, accuracy_m: 20 } });
    expect(s.status).toBe(200);
    const r = await c.api.post("/v1/report", { token: p.token, reason: "counterfeit", details: "bought at a street market", contact: `buyer-${name}@mail.test` });
    expect(r.status).toBe(201);
  }
  const admin = await c.user("tenant_admin", id);
  return { id, key, batch: b.body.id, products, admin };
}

beforeAll(async () => {
  c = await startAdminCluster("privacy", { env: { MAINTENANCE_INTERVAL: "2" } });
  if (!c) return;
  f.a = await tenantWithData(c, "Alpha");
  f.b = await tenantWithData(c, "Beta");
});
afterAll(async () => c?.close());

describe("collection", () => {
  it("keeps scan locations at two decimals (about 1 km)", async (c) => {
    const { rows } = await c.pg.query("SELECT lat, lng, country FROM scans WHERE tenant_id = $1", [f.a.id]);
    expect(rows.length).toBe(2);
    for (const r of rows) expect(r).toEqual({ lat: -23.55, lng: -46.63, country: "BR" });
  });

  it("links the consumer page to a privacy notice", async (c) => {
    const page = await (await fetch(`${c.base}/r/${f.a.products[0].token}`)).text();
    expect(page).toContain('href="/privacy"');
    const notice = await fetch(`${c.base}/privacy`);
    expect(notice.status).toBe(200);
    expect(notice.headers.get("content-type")).toMatch(/text\/html/);
  });
});

describe("export", () => {
  it("streams everything a tenant owns as JSON lines, without secrets and without other tenants' data", async (c) => {
    const res = await fetch(`${c.base}/v1/admin/tenants/${f.a.id}/export`, { headers: f.a.admin.headers });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/x-ndjson/);
    expect(res.headers.get("content-disposition")).toMatch(/attachment/);
    const text = await res.text();
    const lines = text.trim().split("\n").map((l) => JSON.parse(l));
    const count = (t: string) => lines.filter((l) => l.type === t).length;
    expect(count("tenant")).toBe(1);
    expect(count("user")).toBe(1);
    expect(count("api_key")).toBe(1);
    expect(count("batch")).toBe(1);
    expect(count("product")).toBe(2);
    expect(count("scan")).toBe((await c.pg.query("SELECT count(*)::int AS n FROM scans WHERE tenant_id = $1", [f.a.id])).rows[0].n);
    expect(count("scan")).toBeGreaterThanOrEqual(2);
    expect(count("report")).toBe(2);
    expect(count("audit")).toBeGreaterThanOrEqual(3);
    expect(lines.find((l) => l.type === "report").contact).toBe("buyer-Alpha@mail.test");
    expect(text).not.toMatch(/key_hash|password_hash|"salt"|whsec_|\$argon2/);
    expect(text).not.toContain(f.b.id);
    expect(text).not.toContain("buyer-Beta");
    // Another tenant's admin gets a 404; the export itself is audited.
    expect((await fetch(`${c.base}/v1/admin/tenants/${f.a.id}/export`, { headers: f.b.admin.headers })).status).toBe(404);
    const audit = await c.api.get(`/v1/admin/audit?action=tenant.export&tenant_id=${f.a.id}`, c.admin);
    expect(audit.body.items[0]).toMatchObject({ actor_id: f.a.admin.id, target_id: f.a.id });
  });
});

describe("retention", () => {
  it("clears old scan locations and report contacts on schedule, with the periods set in god mode, audited", async (c) => {
    for (const k of ["RETENTION_SCAN_LOCATION", "RETENTION_REPORT_CONTACT"])
      expect((await c.api.request("PUT", `/v1/admin/god/settings/${k}`, { body: { value: 3600 }, headers: c.admin })).status).toBe(200);
    const [old, recent] = f.a.products;
    await c.pg.query("UPDATE scans SET at = now() - interval '2 hours' WHERE product_id = $1", [old.id]);
    await c.pg.query("UPDATE reports SET created_at = now() - interval '2 hours' WHERE product_id = $1", [old.id]);
    // No one asks: the schedule (MAINTENANCE_INTERVAL=2) does it.
    const located = async (id: string) => (await c.pg.query("SELECT count(*)::int AS n FROM scans WHERE product_id = $1 AND lat IS NOT NULL", [id])).rows[0].n;
    await eventually(async () => (await located(old.id)) === 0, 15_000, 250);
    await eventually(async () => (await c.pg.query("SELECT contact FROM reports WHERE product_id = $1", [old.id])).rows[0].contact === null, 15_000, 250);
    expect(await located(recent.id)).toBe(1);
    expect((await c.pg.query("SELECT contact FROM reports WHERE product_id = $1", [recent.id])).rows[0].contact).toBe("buyer-Alpha@mail.test");
    expect((await c.pg.query("SELECT count(*)::int AS n FROM scans WHERE product_id = $1 AND country = 'BR'", [old.id])).rows[0].n).toBe(1);
    const runs = await c.api.get("/v1/admin/audit?action=retention.run&limit=50", c.admin);
    const cleared = runs.body.items.find((e: any) => e.after.scan_locations_cleared > 0);
    expect(cleared).toMatchObject({ actor_type: "system", after: { scan_location_seconds: 3600, report_contact_seconds: 3600 } });
    const job = await c.pg.query("SELECT node, ok FROM maintenance_runs WHERE job = 'retention'");
    expect(job.rows[0]).toEqual({ node: "privacy-node", ok: true });
  });

  it("runs on one node at a time: while another holds the job's lock, nothing is cleared here", async (c) => {
    const victim = f.b.products[0];
    await c.pg.query("SELECT pg_advisory_lock(7261008, hashtext('retention'))");
    try {
      await c.pg.query("UPDATE scans SET at = now() - interval '3 hours' WHERE product_id = $1", [victim.id]);
      const r = await c.api.post("/v1/admin/god/maintenance/run", {}, c.admin);
      expect(r.status).toBe(200);
      expect(r.body.jobs.find((j: any) => j.job === "retention")).toMatchObject({ ran: false, reason: "locked" });
      await new Promise((res) => setTimeout(res, 3000));
      expect((await c.pg.query("SELECT lat FROM scans WHERE product_id = $1", [victim.id])).rows[0].lat).toBe(-23.55);
    } finally {
      await c.pg.query("SELECT pg_advisory_unlock(7261008, hashtext('retention'))");
    }
    const r = await c.api.post("/v1/admin/god/maintenance/run", {}, c.admin);
    expect(r.body.jobs.find((j: any) => j.job === "retention")).toMatchObject({ ran: true, ok: true });
    expect((await c.pg.query("SELECT lat FROM scans WHERE product_id = $1", [victim.id])).rows[0].lat).toBeNull();
  });
});

describe("erasure", () => {
  it("erases a tenant's personal data on request, and only that tenant's", async (c) => {
    expect((await c.api.post(`/v1/admin/tenants/${f.a.id}/erase-personal-data`, { confirm: "yes" }, c.admin)).status).toBe(400);
    expect((await c.api.post(`/v1/admin/tenants/${f.a.id}/erase-personal-data`, { confirm: f.a.id }, f.a.admin.headers)).status).toBe(403);
    const r = await c.api.post(`/v1/admin/tenants/${f.a.id}/erase-personal-data`, { confirm: f.a.id }, c.admin);
    expect(r.status).toBe(200);
    expect(r.body.erased).toMatchObject({ reports: 2, users: 1 });
    const reports = await c.pg.query("SELECT tenant_id, contact, details FROM reports ORDER BY tenant_id");
    for (const row of reports.rows) {
      if (row.tenant_id === f.a.id) expect(row).toMatchObject({ contact: null, details: null });
      else expect(row.details).toBe("bought at a street market");
    }
    expect((await c.pg.query("SELECT count(*)::int AS n FROM scans WHERE tenant_id = $1 AND lat IS NOT NULL", [f.a.id])).rows[0].n).toBe(0);
    const u = (await c.pg.query("SELECT email, name, status, password_hash FROM users WHERE id = $1", [f.a.admin.id])).rows[0];
    expect(u).toMatchObject({ name: "erased", status: "disabled", password_hash: null });
    expect(u.email).toMatch(/^erased\+.*@invalid$/);
    expect((await c.api.post("/v1/auth/login", { email: f.a.admin.email, password: PASSWORD })).status).toBe(401);
    await eventually(async () => (await c.api.get("/v1/auth/me", f.a.admin.headers)).status === 401, 7000, 250);
    expect((await c.api.get("/v1/auth/me", f.b.admin.headers)).status).toBe(200);
    const audit = await c.api.get(`/v1/admin/audit?action=tenant.erase_personal_data`, c.admin);
    expect(audit.body.items[0]).toMatchObject({ tenant_id: f.a.id, after: { reports: 2, users: 1 } });
    // The audit trail holds ids and roles, not the erased names or addresses.
    const trail = await (await fetch(`${c.base}/v1/admin/audit?format=csv&tenant_id=${f.a.id}`, { headers: c.admin })).text();
    expect(trail).not.toContain(f.a.admin.email);
    expect(trail).not.toContain("buyer-Alpha");
  });
});
