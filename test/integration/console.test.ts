// The web console in headless Chromium (playwright-core, Debian's /usr/bin/chromium): an admin signs
// in, sees the charts and the fraud map, exports the audit trail and retries a failed anchor; a
// tenant admin uploads a CSV, watches it register on the progress bar and downloads the labels.
// Screenshots land in $TMPDIR/voketag-console/ (the suite prints where) for a human to look at.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { ethers } from "ethers";
import { chromium, BrowserContext, Page } from "playwright-core";
import { startAdminCluster, AdminCluster, ADMIN, PASSWORD } from "../support/admin-cluster";
import { until } from "../support/http";
import { buildTree, serializeTree } from "../../lib/merkle";
import { batchLeafHash } from "../../lib/proof";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SHOTS = path.join(os.tmpdir(), "voketag-console");
let c: AdminCluster | null = null;
let ctx: BrowserContext;
let profile: string;
const f: any = {};
const problems: string[] = [];

const it = (name: string, fn: (c: AdminCluster) => Promise<void>, t?: number) => global.it(name, async () => (c ? fn(c) : undefined), t);

async function registered(c: AdminCluster, key: Record<string, string>, n: number) {
  const b = await c.api.post("/v1/batches", { name: `Seed ${n}`, market_regions: ["BR", "PT"], products: Array.from({ length: n }, (_, i) => ({ sku: `SKU-${i % 3}`, name: `Watch ${i % 3}`, serial: `SEED-${crypto.randomUUID().slice(0, 8)}-${i}` })) }, key);
  await until(() => c.api.get(`/v1/batches/${b.body.id}`, key), (r) => r.body.status === "registered", 30_000);
  return { id: b.body.id, products: (await c.api.get(`/v1/batches/${b.body.id}/products`, key)).body.items };
}

async function newPage(): Promise<Page> {
  const page = await ctx.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  return page;
}

async function signIn(page: Page, base: string, email: string, password: string) {
  await page.goto(`${base}/admin`);
  await page.fill("#login-email", email);
  await page.fill("#login-password", password);
  await page.click("#login-submit");
  await page.waitForSelector("nav.side");
}

const shot = async (page: Page, name: string) => {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
};

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) {
    if (process.env.VOKETAG_REQUIRE_SERVICES === "1") throw new Error(`console: no Chromium at ${CHROMIUM}`);
    console.warn(`!! SKIPPED console: no Chromium at ${CHROMIUM}`);
    return;
  }
  c = await startAdminCluster("console");
  if (!c) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  f.tenant = await c.tenant("Acme Watches");
  const key = await c.key(f.tenant);
  f.tenantAdmin = await c.user("tenant_admin", f.tenant);
  const seed = await registered(c, key, 6);
  // Real scans through the API, and older ones written in place so the charts span several days.
  for (const p of seed.products.slice(0, 3)) await c.api.post("/v1/scan", { token: p.token, location: { lat: -23.55, lng: -46.63 } });
  await c.api.post("/v1/scan", { token: "not-a-real-token-at-all" });
  const places = [[-23.55, -46.63, "BR"], [38.72, -9.14, "PT"], [40.71, -74.0, "US"], [48.85, 2.35, "FR"]] as const;
  for (let d = 1; d <= 12; d++)
    for (let i = 0; i < (d * 7) % 9 + 2; i++) {
      const [lat, lng, country] = places[(d + i) % places.length];
      const verdict = i % 5 === 0 ? "suspicious" : i % 7 === 3 ? "invalid" : "authentic";
      const p = seed.products[(d + i) % seed.products.length];
      await c.pg.query(
        `INSERT INTO scans (id, tenant_id, product_id, batch_id, at, device, network, lat, lng, country, verdict, score, factors, partition, seq)
         VALUES ($1, $2, $3, $4, now() - make_interval(days => $5, hours => $6), $7, 'n', $8, $9, $10, $11, $12, '[]', 999, $13)`,
        [crypto.randomUUID(), verdict === "invalid" ? null : f.tenant, verdict === "invalid" ? null : p.id, verdict === "invalid" ? null : seed.id, d, i, `dev-${d}-${i}`, lat, lng, country, verdict, verdict === "suspicious" ? 72 : 5, d * 100 + i],
      );
    }
  // A failed anchor in the dead-letter table, for the admin to retry from god mode.
  const failing = await registered(c, key, 2);
  const b = (await c.pg.query("SELECT id, root FROM batches WHERE id = $1", [failing.id])).rows[0];
  const tree = buildTree([batchLeafHash(b.id, b.root)]);
  f.failedBatch = b.id;
  f.period = (await c.pg.query(
    "INSERT INTO periods (root, tree, leaf_count, status, chain_id, address, attempts, last_error) VALUES ($1, $2, 1, 'failed', 31337, $3, 3, 'transaction underpriced') RETURNING id",
    [tree.root.toString("hex"), serializeTree(tree), new ethers.Wallet(c.cluster.env.ANCHOR_PRIVATE_KEY).address],
  )).rows[0].id;
  await c.pg.query("INSERT INTO period_leaves (period_id, leaf_index, kind, ref, leaf_hash, data) VALUES ($1, 0, 'batch', $2, $3, $4)", [f.period, b.id, batchLeafHash(b.id, b.root).toString("hex"), JSON.stringify({ batch_id: b.id, root: b.root })]);
  await c.pg.query("INSERT INTO anchor_dead_letters (period_id, reason, attempts) VALUES ($1, 'underpriced', '[]')", [f.period]);
  f.key = key;

  profile = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-chromium-"));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 120_000);

afterAll(async () => {
  await ctx?.close().catch(() => undefined);
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  await c?.close();
  if (c) console.log(`console screenshots: ${SHOTS}`);
});

describe("platform admin", () => {
  it("signs in and sees the overview charts", async (c) => {
    for (const p of ["/admin", "/admin/", "/admin/app.js", "/admin/app.css", "/admin/world.json"]) {
      const r = await fetch(c.base + p);
      expect([p, r.status]).toEqual([p, 200]);
      expect(r.headers.get("content-security-policy")).toContain("script-src 'self'");
    }
    expect((await fetch(`${c.base}/admin/../../etc/passwd`)).status).toBe(404);
    expect((await fetch(`${c.base}/admin/index.ts`)).status).toBe(404);
    const page = await newPage();
    await signIn(page, c.base, ADMIN.email, ADMIN.password);
    await page.waitForSelector('svg[data-chart="scans"] rect.bar');
    const bars = await page.locator('svg[data-chart="scans"] rect.bar').count();
    expect(bars).toBeGreaterThan(12);
    const series = await page.locator('svg[data-chart="scans"] rect.bar').evaluateAll((els) => [...new Set(els.map((e) => e.getAttribute("data-series")))].sort());
    expect(series).toEqual(["authentic", "invalid", "suspicious"]);
    expect(await page.locator('svg[data-chart="periods"] rect.bar').count()).toBe(5);
    expect(await page.textContent("#cards")).toContain("Tenants");
    // Tokens stay in this tab's sessionStorage, never in a cookie.
    expect(await ctx.cookies()).toEqual([]);
    expect(await page.evaluate(() => Object.keys(sessionStorage))).toEqual(["voketag.session"]);
    await shot(page, "1-admin-overview");
    await page.click('a[data-nav="fraud"]');
    await page.waitForSelector("svg.fraud-map path.country");
    expect(await page.locator('svg.fraud-map path.country[data-country="BR"]').count()).toBeGreaterThan(0);
    expect(await page.locator("svg.fraud-map rect.cell").count()).toBeGreaterThanOrEqual(4);
    await page.waitForSelector("table.riskiest tbody tr");
    await shot(page, "2-admin-fraud-map");
    await page.close();
  }, 60_000);

  it("exports the audit trail as CSV", async (c) => {
    const page = await newPage();
    await signIn(page, c.base, ADMIN.email, ADMIN.password);
    await page.click('a[data-nav="audit"]');
    await page.waitForSelector("table.audit tbody tr");
    expect(await page.textContent("table.audit")).toContain("tenant.create");
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
    expect(dl.suggestedFilename()).toMatch(/^voketag-audit-.*\.csv$/);
    const csv = fs.readFileSync((await dl.path())!, "utf8");
    expect(csv.split("\r\n")[0]).toBe("seq,at,actor_type,actor_id,role,tenant_id,action,target_type,target_id,request_id,network,before,after,prev_hash,hash");
    expect(csv).toContain("tenant.create");
    await page.click("#verify-chain");
    // The export's own message is already there: wait for the verification's.
    await page.locator("#audit-out .msg", { hasText: /The chain holds|Broken at/ }).waitFor();
    expect(await page.textContent("#audit-out")).toContain("The chain holds");
    await shot(page, "3-admin-audit");
    await page.close();
  }, 60_000);

  it("retries a failed anchor from god mode, and the batch is anchored", async (c) => {
    const page = await newPage();
    await signIn(page, c.base, ADMIN.email, ADMIN.password);
    await page.click('a[data-nav="god"]');
    await page.waitForSelector("table.nodes tbody tr");
    await page.waitForSelector(`#retry-anchor-${f.period}`);
    await shot(page, "4-admin-god-mode");
    await page.click(`#retry-anchor-${f.period}`);
    await page.waitForSelector("#god-out .msg.ok");
    await until(
      async () => {
        await page.waitForSelector("#anchor-now:not([disabled])");
        await page.click("#anchor-now");
        await page.waitForSelector("#god-out .msg");
        return c.api.get(`/v1/anchor/${f.failedBatch}`, f.key);
      },
      (r) => r.body.status === "final",
      60_000,
      1000,
    );
    await page.goto(`${c.base}/admin#/god`);
    await page.waitForSelector("table.nodes tbody tr");
    expect(await page.locator(`#retry-anchor-${f.period}`).count()).toBe(0);
    await shot(page, "5-admin-god-mode-after-retry");
    await page.close();
  }, 90_000);
});

describe("tenant admin", () => {
  it("uploads a CSV, watches it register, and downloads the labels", async (c) => {
    const page = await newPage();
    await signIn(page, c.base, f.tenantAdmin.email, PASSWORD);
    // The tenant's own portal: no platform sections.
    const nav = await page.locator("nav.side a").allTextContents();
    expect(nav).toEqual(expect.arrayContaining(["Batches", "New batch", "Scans", "Fraud", "Recalls", "API keys", "Webhooks"]));
    expect(nav).not.toContain("Tenants");
    expect(nav).not.toContain("God mode");
    await page.click('a[data-nav="new-batch"]');
    const rows = ["sku,name,serial,gtin,lot"];
    for (let i = 0; i < 3000; i++) rows.push(`W-${i % 4},Diver ${i % 4},CSV-${String(i).padStart(6, "0")},,L${i % 7}`);
    await page.fill("#batch-name", "Uploaded from the console");
    await page.fill("#batch-markets", "br, pt");
    await page.setInputFiles("#batch-file", { name: "batch.csv", mimeType: "text/csv", buffer: Buffer.from(rows.join("\n") + "\n") });
    const posts: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && r.url().includes("/v1/batches")) posts.push(r.url());
    });

    const seen = new Set<number>();
    const watch = setInterval(() => {
      void page.getAttribute("#upload-progress", "aria-valuenow").then((v) => v !== null && seen.add(Number(v)), () => undefined);
    }, 30);
    await page.click("#upload");
    await page.waitForSelector("text=Registered 3,000 products.", { timeout: 60_000 });
    clearInterval(watch);
    // The bar moved through intermediate values before it was full.
    expect([...seen].some((v) => v > 0 && v < 100)).toBe(true);
    expect(await page.getAttribute("#upload-progress", "aria-valuenow")).toBe("100");
    await shot(page, "6-tenant-upload-registered");
    const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 60_000 }), page.click("#labels-pdf")]);
    const pdf = fs.readFileSync((await dl.path())!);
    expect(pdf.subarray(0, 5).toString()).toBe("%PDF-");
    expect(pdf.length).toBeGreaterThan(10_000);
    await page.click('a[data-nav="batches"]');
    await page.waitForSelector("table.batches tbody tr");
    expect(await page.textContent("table.batches")).toContain("Uploaded from the console");
    await page.click("text=Uploaded from the console");
    await page.waitForSelector("#anchor-status");
    expect(await page.textContent("main")).toContain("CSV-000000");
    await shot(page, "7-tenant-batch");
    await page.click('a[data-nav="overview"]');
    await page.waitForSelector('svg[data-chart="scans"] rect.bar');
    await shot(page, "8-tenant-overview");
    await page.close();
    expect(posts).toHaveLength(1);
    const b = await c.api.get("/v1/batches?limit=10", f.key);
    const mine = b.body.items.filter((x: any) => x.name === "Uploaded from the console");
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ market_regions: ["BR", "PT"], progress: { done: 3000, total: 3000 } });
  }, 120_000);

  it("left no script or style refused by the CSP, and no page error", async () => {
    expect(problems).toEqual([]);
  });
});
