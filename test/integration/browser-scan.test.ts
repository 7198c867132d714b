// The consumer page in headless Chromium (playwright-core, Debian's /usr/bin/chromium) against a real
// node (Postgres, Redis, a JSON-RPC chain for the anchor proof): screenshots of the four verdicts,
// the GS1 Digital Link path, the report form without JavaScript, the optional location, basic
// accessibility (lang, labels, contrast), page weight and security headers. Screenshots are written
// to $SCREENSHOT_DIR (default: the system temp dir) and their paths logged.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { chromium, BrowserContext, Page, Response } from "playwright-core";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client, until } from "../support/http";
import { ADMIN } from "../support/journey";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SHOTS = path.join(process.env.SCREENSHOT_DIR || os.tmpdir(), "voketag-consumer-page");
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 1 };
const SAO_PAULO = { lat: -23.5505, lng: -46.6333 };
const LISBON = { latitude: 38.7223, longitude: -9.1393 };

describe("consumer page in Chromium", () => {
  let available = false;
  let cluster: ClusterEnv;
  let node: NodeHandle;
  let base: string;
  let db: Client;
  let key: Record<string, string>;
  let items: any[];
  const profiles: string[] = [];
  const contexts: BrowserContext[] = [];

  async function browser(opts: Record<string, unknown> = {}): Promise<BrowserContext> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-chromium-"));
    profiles.push(dir);
    const ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args: ARGS, locale: "en-GB", ...PHONE, ...opts });
    contexts.push(ctx);
    return ctx;
  }

  async function shot(page: Page, name: string) {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  }

  const scans = async (tag: string) => (await db.query("SELECT count(*)::int AS n FROM scans WHERE product_id = $1", [tag])).rows[0].n;

  beforeAll(async () => {
    available = await needServices("browser-scan", ["postgres", "redis"]);
    if (!available) return;
    if (!fs.existsSync(CHROMIUM)) throw new Error(`browser-scan: ${CHROMIUM} is missing (apt-get install chromium)`);
    cluster = await createClusterEnv("browserscan");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({
      ...cluster.env,
      TRANSPORTER: "",
      SERVICES: "api,factory,scan,anchor,admin",
      PORT: String(port),
      VERIFICATION_URL_BASE: base,
      ANCHOR_INTERVAL: "1",
      VOKETAG_ADMIN_EMAIL: ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: ADMIN.password,
    });
    db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    const api = client(base);
    const jwt = { authorization: `Bearer ${(await api.post("/v1/auth/login", ADMIN)).body.access_token}` };
    const t = await api.post("/v1/admin/tenants", { name: "Maré Relógios" }, jwt);
    key = { "x-api-key": (await api.post(`/v1/admin/tenants/${t.body.id}/api-keys`, { name: "k" }, jwt)).body.key };
    const b = await api.post(
      "/v1/batches",
      {
        name: "Primavera 2026",
        market_regions: ["BR"],
        products: Array.from({ length: 7 }, (_, i) => ({ sku: "MR-100", name: "Mergulhador 100", serial: `MR${i}`, gtin: "09506000134352", lot: "L26" })),
      },
      key,
    );
    await until(() => api.get(`/v1/batches/${b.body.id}`, key), (r) => ["registered", "anchoring", "anchored"].includes(r.body.status), 30_000);
    items = (await api.get(`/v1/batches/${b.body.id}/products`, key)).body.items;
    expect((await api.post("/v1/anchor", { batch_id: b.body.id }, key)).status).toBe(202);
    await until(() => api.get(`/v1/anchor/${b.body.id}`, key), (r) => r.body.status === "final", 60_000, 300);
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    for (const d of profiles) fs.rmSync(d, { recursive: true, force: true });
    await db?.end();
    await node?.stop();
    await cluster?.close();
    if (available) console.log(`consumer page screenshots: ${SHOTS}`);
  });

  /** Contrast ratio (WCAG 2) between an element's text colour and its section's background. */
  async function contrast(page: Page, selector: string, bgSelector: string): Promise<number> {
    return page.evaluate(
      ([sel, bgSel]) => {
        const rgb = (c: string) => (c.match(/[\d.]+/g) || []).slice(0, 3).map(Number);
        const lum = (c: string) => {
          const [r, g, b] = rgb(c).map((v) => {
            const s = v / 255;
            return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
          });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const w = globalThis as any;
        const fg = w.getComputedStyle(w.document.querySelector(sel)).color;
        const bg = w.getComputedStyle(w.document.querySelector(bgSel)).backgroundColor;
        const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
        return (a + 0.05) / (b + 0.05);
      },
      [selector, bgSelector],
    );
  }

  async function accessibility(page: Page, lang: string) {
    expect(await page.getAttribute("html", "lang")).toBe(lang);
    expect(await page.locator("h1").count()).toBe(1);
    // Every visible form control has a label.
    const unlabelled = await page.$$eval("select, textarea, input:not([type=hidden]), button", (els) =>
      els.filter((e: any) => e.tagName === "BUTTON" ? !e.textContent.trim() : !(e.labels && e.labels.length)).map((e) => e.outerHTML),
    );
    expect(unlabelled).toEqual([]);
    expect(await contrast(page, ".verdict h1", ".verdict")).toBeGreaterThanOrEqual(4.5);
    expect(await contrast(page, ".verdict p:not(.icon)", ".verdict")).toBeGreaterThanOrEqual(4.5);
    expect(await contrast(page, "footer .privacy", "body")).toBeGreaterThanOrEqual(4.5);
    if (await page.locator("button[type=submit]").count()) expect(await contrast(page, "button[type=submit]", "button[type=submit]")).toBeGreaterThanOrEqual(4.5);
  }

  /** Opens a page, collecting every response's size and any CSP violation. */
  async function open(page: Page, url: string) {
    const bytes: Record<string, number> = {};
    const violations: string[] = [];
    page.on("console", (m) => m.text().includes("Content Security Policy") && violations.push(m.text()));
    page.on("response", async (r: Response) => {
      const body = await r.body().catch(() => Buffer.alloc(0));
      bytes[r.url()] = body.length;
    });
    const res = await page.goto(url, { waitUntil: "load" });
    await page.waitForLoadState("networkidle");
    return { res: res!, bytes, violations };
  }

  it("shows an authentic, anchored product in words and colour, with the proof link, light and with security headers", async () => {
    if (!available) return;
    const ctx = await browser();
    const page = await ctx.newPage();
    const p = items[0];
    const before = await scans(p.id);
    const { res, bytes, violations } = await open(page, `${base}/r/${p.token}`);
    expect(res.status()).toBe(200);
    expect(await scans(p.id)).toBe(before + 1);
    expect(await page.textContent("h1")).toBe("Genuine product");
    expect(await page.getAttribute(".verdict", "class")).toContain("v-authentic");
    const facts = await page.textContent("dl.facts");
    for (const s of ["Mergulhador 100", "Maré Relógios", "Primavera 2026", "MR0", "L26"]) expect(facts).toContain(s);
    expect(await page.textContent(".anchor")).toContain("sealed on a public blockchain");
    const proofHref = await page.getAttribute(".anchor a", "href");
    expect(proofHref).toBe(`${base}/v1/products/${p.id}/proof`);
    const proof = await fetch(proofHref!);
    expect(proof.status).toBe(200);
    expect(((await proof.json()) as any).anchor.tx_hash).toMatch(/^0x[0-9a-f]{64}$/);
    // The script offers the location (the section is hidden without it).
    expect(await page.isVisible("#locate-btn")).toBe(true);
    const h = res.headers();
    expect(h["content-security-policy"]).toMatch(/script-src 'self'/);
    expect(h["content-security-policy"]).toMatch(/frame-ancestors 'none'/);
    expect(h["content-security-policy"]).not.toMatch(/unsafe-inline/);
    expect(h["strict-transport-security"]).toMatch(/max-age=\d+/);
    expect(h["x-content-type-options"]).toBe("nosniff");
    expect(h["cache-control"]).toBe("no-store");
    expect(violations).toEqual([]);
    const total = Object.values(bytes).reduce((a, b) => a + b, 0);
    expect(Object.keys(bytes).map((u) => new URL(u).pathname).sort()).toEqual(["/assets/scan.css", "/assets/scan.js", `/r/${p.token}`].sort());
    expect(total).toBeLessThan(50 * 1024);
    await accessibility(page, "en");
    await shot(page, "authentic");

    // Portuguese through Accept-Language (a browser set to Brazilian Portuguese).
    const pt = await (await browser({ locale: "pt-BR" })).newPage();
    await open(pt, `${base}/r/${p.token}`);
    expect(await pt.textContent("h1")).toBe("Produto original");
    await accessibility(pt, "pt");
    await shot(pt, "authentic-pt");
  });

  it("shows a suspicious tag with its reasons (São Paulo, then Lisbon)", async () => {
    if (!available) return;
    const p = items[1];
    const api = client(base);
    expect((await api.post("/v1/scan", { token: p.token, location: SAO_PAULO })).body.verdict).toBe("authentic");
    expect((await api.post("/v1/scan", { token: p.token, location: { lat: LISBON.latitude, lng: LISBON.longitude } })).body.verdict).toBe("suspicious");
    const page = await (await browser()).newPage();
    await open(page, `${base}/r/${p.token}`);
    expect(await page.textContent("h1")).toBe("Warning: this tag looks suspicious");
    const why = await page.textContent(".why");
    expect(why).toContain("Scanned in places too far apart");
    expect(why).toContain("Brazil (BR)");
    expect(await page.getAttribute(".report details", "open")).not.toBeNull();
    await accessibility(page, "en");
    await shot(page, "suspicious");
  });

  it("shows a recalled product", async () => {
    if (!available) return;
    const p = items[2];
    expect((await client(base).post(`/v1/products/${p.id}/recall`, { reason: "strap buckle may break" }, key)).status).toBe(201);
    const page = await (await browser()).newPage();
    await until(async () => (await open(page, `${base}/r/${p.token}`), await page.textContent("h1")), (h) => h === "This product has been recalled", 5000, 100);
    expect(await page.getAttribute(".verdict", "class")).toContain("v-recalled");
    expect(await page.textContent(".verdict .notice")).toBe("The manufacturer's notice: strap buckle may break");
    await accessibility(page, "en");
    await shot(page, "recalled");
  });

  it("shows an invalid tag as a verdict, not an error, and records it", async () => {
    if (!available) return;
    const t: string = items[3].token;
    const garbled = t.slice(0, -4) + (t.at(-4) === "A" ? "B" : "A") + t.slice(-3);
    const before = (await db.query("SELECT count(*)::int AS n FROM scans WHERE verdict = 'invalid'")).rows[0].n;
    const page = await (await browser()).newPage();
    const { res } = await open(page, `${base}/r/${garbled}`);
    expect(res.status()).toBe(200);
    expect(await page.textContent("h1")).toBe("This tag could not be verified");
    expect(await page.locator("form").count()).toBe(0);
    expect((await db.query("SELECT count(*)::int AS n FROM scans WHERE verdict = 'invalid'")).rows[0].n).toBe(before + 1);
    await accessibility(page, "en");
    await shot(page, "invalid");
  });

  it("renders the same page for the GS1 Digital Link path and records exactly one scan", async () => {
    if (!available) return;
    const p = items[4];
    expect(p.digital_link).toMatch(new RegExp(`^${base}/01/09506000134352/10/L26/21/MR4\\?vt=`));
    const page = await (await browser()).newPage();
    const before = await scans(p.id);
    const { res } = await open(page, p.digital_link);
    expect(res.status()).toBe(200);
    expect(await page.textContent("h1")).toBe("Genuine product");
    expect(await page.textContent("dl.facts")).toContain("MR4");
    expect(await scans(p.id)).toBe(before + 1);
    expect((await db.query("SELECT channel FROM scans WHERE product_id = $1 ORDER BY at DESC LIMIT 1", [p.id])).rows[0].channel).toBe("gs1");
    // The same token under another product's path is not a link the brand printed.
    const wrong = await open(page, `${base}/01/09506000134352/10/L26/21/MR5?vt=${encodeURIComponent(p.token)}`);
    expect(wrong.res.status()).toBe(200);
    expect(await page.textContent("h1")).toBe("This tag could not be verified");
    const junk = await open(page, `${base}/01/09506000134352/22/ABC?vt=${encodeURIComponent(p.token)}`);
    expect(junk.res.status()).toBe(404);
    expect(await page.textContent("h1")).toBe("Page not found");
    expect(await scans(p.id)).toBe(before + 1);
    await shot(page, "gs1-not-found");
  });

  it("files a report through the form with JavaScript off, once even if sent twice, and thanks the consumer", async () => {
    if (!available) return;
    const p = items[5];
    const ctx = await browser({ javaScriptEnabled: false });
    const page = await ctx.newPage();
    await open(page, `${base}/r/${p.token}`);
    expect(await page.isVisible("#locate-btn")).toBe(false);
    await page.click(".report summary");
    await page.selectOption("#reason", "counterfeit");
    await page.fill("#details", "Logo looks blurry; sold on a street stall.");
    await page.fill("#contact", "buyer@example.com");
    await shot(page, "report-form");
    // What the browser is about to send, to send it a second time (a double tap, a flaky network).
    const sent = await page.$$eval(".report form [name]", (els) => els.map((e: any) => [e.name, e.value]));
    const [nav] = await Promise.all([page.waitForNavigation(), page.click(".report button[type=submit]")]);
    expect(nav!.status()).toBe(201);
    expect(await page.textContent("h1")).toBe("Thank you");
    await shot(page, "report-thanks");
    const reports = () => db.query("SELECT reason, details, contact FROM reports WHERE product_id = $1", [p.id]).then((r) => r.rows);
    const again = await fetch(`${base}/r/${encodeURIComponent(p.token)}/report`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(sent as [string, string][]).toString(),
    });
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.text()).toContain("Thank you");
    expect(await reports()).toEqual([{ reason: "counterfeit", details: "Logo looks blurry; sold on a street stall.", contact: "buyer@example.com" }]);
    // A forged form token is refused with a page, not a report.
    const forged = await fetch(`${base}/r/${encodeURIComponent(p.token)}/report`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ form: "1700000000.AAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", reason: "other" }).toString(),
    });
    expect(forged.status).toBe(400);
    expect(await forged.text()).toContain("This form has expired");
    expect(await reports()).toHaveLength(1);
  });

  it("asks for the location only on the consumer's click and adds it to the same scan", async () => {
    if (!available) return;
    const p = items[6];
    const ctx = await browser({ geolocation: LISBON, permissions: ["geolocation"] });
    const page = await ctx.newPage();
    await open(page, `${base}/r/${p.token}`);
    expect(await scans(p.id)).toBe(1);
    // Nothing is asked or sent until the consumer clicks.
    await page.waitForTimeout(300);
    expect(page.url()).toBe(`${base}/r/${p.token}`);
    expect((await db.query("SELECT lat FROM scans WHERE product_id = $1", [p.id])).rows[0].lat).toBeNull();
    await shot(page, "location-offer");
    await Promise.all([page.waitForNavigation(), page.click("#locate-btn")]);
    expect(await page.textContent(".locate")).toContain("your approximate location was added");
    const rows = (await db.query("SELECT country, lat, lng FROM scans WHERE product_id = $1", [p.id])).rows;
    expect(rows).toEqual([{ country: "PT", lat: 38.72, lng: -9.14 }]);
    // Lisbon is outside the batch's market (BR): noted, still authentic on its own.
    expect(await page.textContent("h1")).toBe("Genuine product");
    await shot(page, "location-added");

    // Refused permission: the page says so politely and stays as it was.
    const denied = await (await browser({ permissions: [] })).newPage();
    await open(denied, `${base}/r/${p.token}`);
    await denied.click("#locate-btn");
    await denied.waitForFunction(() => (globalThis as any).document.getElementById("locate-msg").textContent.length > 0);
    expect(await denied.textContent("#locate-msg")).toContain("Location not shared");
    expect(await scans(p.id)).toBe(2);
  });

  it("links a short privacy notice, localised", async () => {
    if (!available) return;
    const page = await (await browser({ locale: "pt-PT" })).newPage();
    await page.setExtraHTTPHeaders({ "accept-language": "pt-PT" });
    const { res } = await open(page, `${base}/privacy`);
    expect(res.status()).toBe(200);
    expect(await page.textContent("main")).toContain("Nunca guardamos o seu endereço IP");
    expect(await page.getAttribute("html", "lang")).toBe("pt");
  });
});
