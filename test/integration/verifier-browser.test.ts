// The browser verifier (GET /verify) in headless Chromium: a real proof from a running VokeTag node,
// anchored on a JSON-RPC dev chain, is checked in the page against that RPC after the VokeTag node
// has been stopped; a tampered one is rejected, each check reported by name. The page runs the lib/
// bundle (lib/verifier-app.ts → lib/proof), and its CSP allows scripts from its own origin only.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { ADMIN } from "../support/journey";
import { client, until } from "../support/http";
import { startDevChainServer } from "../../lib/devchain";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = path.join(os.tmpdir(), "voketag-verifier-artifacts");

describe("browser verifier", () => {
  let node: NodeHandle;
  let base: string;
  let dataDir: string;
  let profile: string;
  let chainServer: { url: string; close(): Promise<void> };
  let browser: BrowserContext;
  let page: Page;
  let proof: any;
  let address: string;
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser verifier cannot be tested`);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-verifier-"));
    profile = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-chromium-"));
    const key = "0x" + crypto.randomBytes(32).toString("hex");
    chainServer = await startDevChainServer({ port: await freePort(), chainId: 31337, privateKey: key });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    [node, browser] = await Promise.all([
      startNode({
        PORT: String(port),
        VOKETAG_DATA_DIR: dataDir,
        VERIFICATION_URL_BASE: base,
        VOKETAG_ADMIN_EMAIL: ADMIN.email,
        VOKETAG_ADMIN_PASSWORD: ADMIN.password,
        ANCHOR_RPC_URL: chainServer.url,
        ANCHOR_PRIVATE_KEY: key,
        ANCHOR_INTERVAL: "1",
      }),
      chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      }),
    ]);
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });

    // A real product, registered and anchored through the API.
    const api = client(base);
    const jwt = { authorization: `Bearer ${(await api.post("/v1/auth/login", ADMIN)).body.access_token}` };
    const tenant = await api.post("/v1/admin/tenants", { name: "Verifier Co" }, jwt);
    const apiKey = { "x-api-key": (await api.post(`/v1/admin/tenants/${tenant.body.id}/api-keys`, { name: "k" }, jwt)).body.key };
    const batch = await api.post(
      "/v1/batches",
      { products: [1, 2, 3].map((i) => ({ sku: "W-100", name: "Diver 100", serial: `VB-${i}`, gtin: "09506000134352", lot: "L1" })) },
      apiKey,
    );
    await until(() => api.get(`/v1/batches/${batch.body.id}`, apiKey), (r) => ["registered", "anchoring", "anchored"].includes(r.body.status), 30_000);
    await api.post("/v1/anchor", { batch_id: batch.body.id }, apiKey);
    const final = await until(() => api.get(`/v1/anchor/${batch.body.id}`, apiKey), (r) => r.body.status === "final", 60_000, 300);
    const products = await api.get(`/v1/batches/${batch.body.id}/products`, apiKey);
    proof = (await api.get(`/v1/products/${products.body.items[1].id}/proof`)).body;
    expect(proof.anchor.tx_hash).toBe(final.body.tx_hash);
    address = proof.anchor.address;
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await node?.stop();
    await chainServer?.close().catch(() => undefined);
    for (const d of [dataDir, profile]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  async function verify(doc: unknown, rpc = chainServer.url) {
    await page.fill("#proof", typeof doc === "string" ? doc : JSON.stringify(doc, null, 2));
    await page.fill("#rpc", rpc);
    await page.click("#verify");
    await page.waitForFunction(() => {
      const r = (globalThis as any).document.getElementById("result");
      const e = (globalThis as any).document.getElementById("form-error");
      return (r && !r.hidden) || (e && !e.hidden);
    });
    return page.evaluate(() => {
      const d = (globalThis as any).document;
      const result = d.getElementById("result");
      return {
        shown: !result.hidden,
        valid: result.getAttribute("data-valid"),
        verdict: d.getElementById("verdict").textContent,
        checks: [...d.querySelectorAll("#checks li")].map((li: any) => ({ name: li.getAttribute("data-check"), ok: li.getAttribute("data-ok") === "true", detail: li.querySelector(".detail").textContent })),
        error: d.getElementById("form-error").hidden ? null : d.getElementById("form-error").textContent,
      };
    });
  }

  it("serves the page and its same-origin script under a CSP without inline scripts, and shows this instance's anchoring address", async () => {
    const res = await page.goto(`${base}/verify`);
    expect(res!.status()).toBe(200);
    const csp = res!.headers()["content-security-policy"];
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    const html = await res!.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // every script has a src: no inline code
    const js = await page.request.get(`${base}/assets/verify.js`);
    expect(js.status()).toBe(200);
    expect(js.headers()["content-type"]).toMatch(/javascript/);
    await page.waitForSelector("html[data-verifier=ready]");
    await page.waitForFunction((a) => (globalThis as any).document.getElementById("issuer-addresses").textContent.includes(a), address);
    // ?product= fills the proof in from this VokeTag.
    await page.goto(`${base}/verify?product=${proof.product.tag_id}&rpc=${encodeURIComponent(chainServer.url)}`);
    await page.waitForFunction(() => (globalThis as any).document.getElementById("proof").value.length > 0);
    expect(JSON.parse(await page.inputValue("#proof")).product.tag_id).toBe(proof.product.tag_id);
    expect(await page.inputValue("#rpc")).toBe(chainServer.url);
  });

  it("with VokeTag's server gone, accepts the real proof against the RPC and rejects tampered ones, each check by name", async () => {
    await page.goto(`${base}/verify`);
    await page.waitForFunction((a) => (globalThis as any).document.getElementById("issuer-addresses").textContent.includes(a), address);
    await node.stop(); // from here on, only this browser and the chain's RPC
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));

    const ok = await verify(proof);
    await page.screenshot({ path: path.join(ARTIFACTS, "verifier-valid.png"), fullPage: true });
    expect(ok.error).toBeNull();
    expect(ok.valid).toBe("true");
    expect(ok.checks.map((c) => c.name)).toEqual(["leaf", "batch_path", "batch_leaf", "period_path", "transaction", "sender", "chain", "block", "confirmations"]);
    expect(ok.checks.every((c) => c.ok)).toBe(true);
    expect(ok.checks.find((c) => c.name === "sender")!.detail).toMatch(/trusted/);
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((u) => u.startsWith(chainServer.url))).toBe(true); // nothing went to VokeTag

    const tampered = JSON.parse(JSON.stringify(proof));
    tampered.batch.root = (tampered.batch.root[0] === "0" ? "1" : "0") + tampered.batch.root.slice(1);
    const bad = await verify(tampered);
    await page.screenshot({ path: path.join(ARTIFACTS, "verifier-tampered.png"), fullPage: true });
    expect(bad.valid).toBe("false");
    expect(bad.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(["batch_path", "batch_leaf"]);
    expect(bad.verdict).toMatch(/Not valid/);

    const forged = JSON.parse(JSON.stringify(proof));
    forged.product.serial = "VB-999";
    expect((await verify(forged)).checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(["leaf"]);

    const wrongChain = JSON.parse(JSON.stringify(proof));
    wrongChain.anchor.chain_id = 1;
    expect((await verify(wrongChain)).checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(["sender", "chain"]); // chain 1 is not one this VokeTag anchors on

    const notADoc = await verify('{"version":"voketag-proof/1"}');
    expect(notADoc.shown).toBe(false);
    expect(notADoc.error).toMatch(/not a well-formed/);
    expect(consoleErrors.filter((e) => /Content Security Policy|Refused to/i.test(e))).toEqual([]);
  });
});
