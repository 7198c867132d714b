// Labels over HTTP on a two-process cluster (the PDF streams from the factory node to the gateway
// over NATS): CSV of serial and URL, an SVG sheet, an A4 PDF whose QR codes decode back to each
// product's URL (pdftoppm renders, jsQR reads), and flat memory from 10,000 to 50,000 labels.
import path from "node:path";
import { execFileSync } from "node:child_process";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client } from "../support/http";
import { ADMIN, GTIN, Tenant, newTenant, postCsv, settled, allProducts } from "./factory-support";
import { decodePdfPage, havePdftoppm } from "./labels-render";
import { LABELS_PER_PAGE } from "../../lib/labels";

describe("labels", () => {
  let available = false;
  let cluster: ClusterEnv;
  let gateway: NodeHandle;
  let workers: NodeHandle;
  let base: string;
  let t: Tenant;
  let batchId: string;
  let products: any[];

  beforeAll(async () => {
    available = await needServices("labels", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("labels");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const common = { ...cluster.env, VERIFICATION_URL_BASE: base, ANCHOR_INTERVAL: "3600", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    workers = await startNode({ ...common, SERVICES: "factory,anchor,admin", NODE_ID: "workers" });
    gateway = await startNode({ ...common, SERVICES: "api,scan", NODE_ID: "gateway", PORT: String(port) });
    t = await newTenant(base, "Printer");
    const res = await client(base).post(
      "/v1/batches",
      {
        name: "Labels <test>",
        products: Array.from({ length: 30 }, (_, i) => ({ sku: `SKU-${i}`, name: "Diver (100)", serial: `L${i}`, ...(i % 3 !== 2 && { gtin: GTIN, lot: "LOT/1" }) })),
      },
      t.h,
    );
    batchId = res.body.id;
    await settled(base, t, batchId);
    products = await allProducts(base, t, batchId);
  });

  afterAll(async () => {
    await gateway?.stop();
    await workers?.stop();
    await cluster?.close();
  });

  const it = ((name: string, fn: () => Promise<void>, timeout?: number) => global.it(name, async () => (available ? fn() : undefined), timeout)) as any;
  const urlOf = (p: any) => p.digital_link ?? p.verification_url;

  it("answers a CSV of serial and URL (the GS1 Digital Link when there is a GTIN), one line per tag", async () => {
    const res = await fetch(`${base}/v1/batches/${batchId}/labels?format=csv`, { headers: t.h });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/csv/);
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="batch-${batchId}-labels.csv"`);
    const lines = (await res.text()).trimEnd().split("\r\n");
    expect(lines[0]).toBe("serial,url,verification_url,digital_link,token,tag_id,gtin,lot,sku,name");
    expect(lines).toHaveLength(31);
    products.forEach((p, i) => {
      const f = lines[i + 1].split(",");
      expect(f.slice(0, 6)).toEqual([p.serial, urlOf(p), p.verification_url, p.digital_link ?? "", p.token, p.id]);
    });
    expect(lines[1].split(",")[1]).toMatch(new RegExp(`^${base}/01/${GTIN}/10/LOT%2F1/21/L0\\?vt=`));
    expect(lines[3].split(",")[1]).toBe(`${base}/r/${products[2].token}`);
  });

  it("draws an A4 SVG sheet of 24 labels per page", async () => {
    const res = await fetch(`${base}/v1/batches/${batchId}/labels?format=svg&page=2`, { headers: t.h });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^image\/svg\+xml/);
    expect(res.headers.get("x-total-pages")).toBe("2");
    const svg = await res.text();
    expect(svg).toContain('width="210mm" height="297mm"');
    expect(svg.match(/<path /g)).toHaveLength(30 - LABELS_PER_PAGE);
    expect(svg).toContain("<title>Labels &#60;test&#62;</title>");
    const first = await fetch(`${base}/v1/batches/${batchId}/labels?format=svg`, { headers: t.h });
    expect(first.headers.get("link")).toBe(`</v1/batches/${batchId}/labels?format=svg&page=2>; rel="next"`);
    expect((await fetch(`${base}/v1/batches/${batchId}/labels?format=svg&page=3`, { headers: t.h })).status).toBe(404);
    expect((await fetch(`${base}/v1/batches/${batchId}/labels?format=png`, { headers: t.h })).status).toBe(400);
  });

  it("streams a printable A4 PDF whose QR codes decode back to each product's URL", async () => {
    if (!havePdftoppm()) throw new Error("pdftoppm (poppler-utils) is required");
    const res = await fetch(`${base}/v1/batches/${batchId}/labels?format=pdf`, { headers: t.h });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/pdf");
    const pdf = Buffer.from(await res.arrayBuffer());
    expect(pdf.subarray(0, 8).toString()).toBe("%PDF-1.4");
    const info = execFileSync("pdfinfo", ["-"], { input: pdf }).toString();
    expect(info).toMatch(/Pages:\s+2/);
    expect(info).toMatch(/Page size:\s+595\.28 x 841\.89 pts \(A4\)/);
    const decoded = [...decodePdfPage(pdf, 1), ...decodePdfPage(pdf, 2).slice(0, 30 - LABELS_PER_PAGE)];
    expect(decoded).toEqual(products.map(urlOf));
    // The serials are printed as text under the codes.
    const text = execFileSync("pdftotext", ["-", "-"], { input: pdf }).toString();
    for (const p of products) expect(text).toContain(p.serial);
  });

  it("has no labels for a batch that did not register (409) nor for another tenant's (404)", async () => {
    const failed = await postCsv(base, t, "sku,name,serial\r\nA,B,S1\r\nA,B,S1\r\n");
    await settled(base, t, failed.body.id);
    expect((await fetch(`${base}/v1/batches/${failed.body.id}/labels`, { headers: t.h })).status).toBe(409);
    const other = await newTenant(base, "Other");
    expect((await fetch(`${base}/v1/batches/${batchId}/labels`, { headers: other.h })).status).toBe(404);
  });

  it("keeps memory flat however many labels: RSS grows less than 50 MB from 10,000 to 50,000 labels", async () => {
    const run = (n: number) =>
      JSON.parse(execFileSync(process.execPath, ["--import", "tsx", path.join(__dirname, "labels-memory-child.ts"), String(n)], { cwd: path.resolve(__dirname, "../.."), encoding: "utf8" }).trim());
    const small = run(10_000);
    const big = run(50_000);
    expect(big.bytes).toBeGreaterThan(4 * small.bytes);
    expect(big.maxRssMb - small.maxRssMb).toBeLessThan(50);
  }, 180_000);
});
