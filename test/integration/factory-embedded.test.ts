// The factory on the embedded defaults (one process, PGlite, memory cache): API keys and scopes,
// JSON and CSV batches through PGlite's chunked path (a failure part-way leaves nothing behind), a
// resumable upload, labels that decode, and a recall the next scan sees.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { client } from "../support/http";
import { ADMIN, GTIN, Tenant, adminJwt, newTenant, productCsv, postCsv, raw, settled, allProducts, sha256 } from "./factory-support";
import { decodePdfPage, havePdftoppm } from "./labels-render";

describe("factory on embedded defaults (PGlite)", () => {
  let node: NodeHandle;
  let base: string;
  let dataDir: string;
  let t: Tenant;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-factory-"));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({ PORT: String(port), VOKETAG_DATA_DIR: dataDir, VERIFICATION_URL_BASE: base, VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password, ANCHOR_INTERVAL: "3600" });
    t = await newTenant(base, "Embedded");
  });

  afterAll(async () => {
    await node?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("manages API keys: scopes within the minting key's, list without secrets, revocation at once, last use recorded", async () => {
    const api = client(base);
    const reader = await api.post("/v1/api-keys", { name: "reader", scopes: ["batches:read", "keys:read"] }, t.h);
    expect(reader.status).toBe(201);
    expect(reader.body).toMatchObject({ name: "reader", scopes: ["batches:read", "keys:read"] });
    expect(reader.body.key).toMatch(/^vk_test_[a-z0-9]{8}_[A-Za-z0-9]{43}$/);
    expect(reader.body.key.split("_")[2]).toBe(reader.body.prefix);
    const r = { "x-api-key": reader.body.key };
    expect((await api.get("/v1/batches", r)).status).toBe(200);
    expect((await api.post("/v1/batches", { products: [{ sku: "A", name: "n", serial: "S" }] }, r)).status).toBe(403);
    expect((await api.post("/v1/api-keys", { name: "escalate", scopes: ["batches:write"] }, r)).status).toBe(403);
    expect((await api.post("/v1/api-keys", { name: "bad", scopes: ["batches:fly"] }, t.h)).status).toBe(400);
    const list = await api.get("/v1/api-keys", t.h);
    expect(list.text).not.toContain(reader.body.key.split("_")[3]);
    const listed = list.body.items.find((k: any) => k.id === reader.body.id);
    expect(listed.last_used_at).not.toBeNull();
    expect((await api.get(`/v1/api-keys/${reader.body.id}`, t.h)).body).toMatchObject({ prefix: reader.body.prefix, revoked_at: null });
    const revoked = await api.del(`/v1/api-keys/${reader.body.id}`, t.h);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revoked_at).not.toBeNull();
    expect((await api.get("/v1/batches", r)).status).toBe(401);
    // A key that looks right but is not ours, and garbage: 401 alike.
    expect((await api.get("/v1/batches", { "x-api-key": reader.body.key.slice(0, -4) + "AAAA" })).status).toBe(401);
    expect((await api.get("/v1/batches", { "x-api-key": "nope" })).status).toBe(401);
    // A suspended tenant's keys stop working.
    const jwt = await adminJwt(base);
    const s = await newTenant(base, "Suspended");
    expect((await api.post(`/v1/admin/tenants/${s.id}/suspend`, {}, jwt)).status).toBeLessThan(300);
    expect((await api.get("/v1/batches", s.h)).status).toBe(401);
  });

  it("registers JSON and CSV batches on PGlite with GS1 Digital Links", async () => {
    const api = client(base);
    const j = await api.post("/v1/batches", { market_regions: ["PT"], products: [{ sku: "A", name: "n", serial: "E1", gtin: "9506000134352", lot: "L1" }] }, t.h);
    expect(j.status).toBe(202);
    expect((await settled(base, t, j.body.id)).status).toBe("registered");
    const [p] = await allProducts(base, t, j.body.id);
    expect(p.digital_link).toBe(`${base}/01/${GTIN}/10/L1/21/E1?vt=${p.token}`);
    const c = await postCsv(base, t, productCsv(12_000, "EC"), "?market_regions=PT");
    expect(c.status).toBe(202);
    const b = await settled(base, t, c.body.id);
    expect(b).toMatchObject({ status: "registered", progress: { done: 12_000, total: 12_000 }, market_regions: ["PT"] });
    const all = await allProducts(base, t, c.body.id);
    expect(all.map((x) => x.ordinal)).toEqual([...Array(12_000).keys()]);
    expect(all[11_999].serial).toBe("EC11999");
  });

  it("leaves nothing behind when a row far into a CSV fails, after earlier rows were written in chunks", async () => {
    const lines = productCsv(9000, "F").trimEnd().split("\r\n");
    lines[8500] = "W-1,broken,F8499,123,L1,"; // row 8501: not a GTIN
    const res = await postCsv(base, t, lines.join("\r\n") + "\r\n");
    const b = await settled(base, t, res.body.id);
    expect(b).toMatchObject({ status: "failed", errors: [{ row: 8501, field: "gtin" }] });
    // Every serial of that file is free again: the same rows, fixed, register.
    lines[8500] = `W-1,fixed,F8499,${GTIN},L1,`;
    const again = await postCsv(base, t, lines.join("\r\n") + "\r\n");
    expect((await settled(base, t, again.body.id)).status).toBe("registered");
  });

  it("takes a resumable upload and registers it", async () => {
    const api = client(base);
    const file = Buffer.from(productCsv(3000, "UP"));
    const c = await api.post("/v1/uploads", { size: file.length, sha256: sha256(file) }, t.h);
    const put = (offset: number, body: Buffer) => raw(base, "PUT", `/v1/uploads/${c.body.id}?offset=${offset}`, body, { ...t.h, "content-type": "application/octet-stream" });
    expect((await put(0, file.subarray(0, 70_000))).body.received).toBe(70_000);
    expect((await put(0, file.subarray(0, 10))).status).toBe(409);
    const done = await put(70_000, file.subarray(70_000));
    expect(done.status).toBe(202);
    expect((await settled(base, t, done.body.batch_id)).progress).toEqual({ done: 3000, total: 3000 });
  });

  it("prints labels whose QR codes decode, and a recall the next scan sees", async () => {
    const api = client(base);
    const res = await api.post("/v1/batches", { products: Array.from({ length: 3 }, (_, i) => ({ sku: "L", name: "label", serial: `LB${i}`, gtin: GTIN })) }, t.h);
    await settled(base, t, res.body.id);
    const products = await allProducts(base, t, res.body.id);
    if (!havePdftoppm()) throw new Error("pdftoppm (poppler-utils) is required");
    const pdf = Buffer.from(await (await fetch(`${base}/v1/batches/${res.body.id}/labels`, { headers: t.h })).arrayBuffer());
    expect(decodePdfPage(pdf, 1).slice(0, 3)).toEqual(products.map((p) => p.digital_link));
    expect((await api.post("/v1/scan", { token: products[0].token })).body.verdict).toBe("authentic");
    expect((await api.post(`/v1/products/${products[0].id}/recall`, { reason: "faulty" }, t.h)).status).toBe(201);
    expect((await api.post("/v1/scan", { token: products[0].token })).body.verdict).toBe("recalled");
  });
});
