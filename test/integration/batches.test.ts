// Batches on a two-process cluster (api+scan | factory+anchor+admin+webhooks over NATS, real Postgres
// and Redis): JSON and streamed CSV registration, all-or-nothing validation, progress, Merkle leaves,
// GS1 Digital Links checked with GS1's digital-link.js, and tags that survive a signing-key rotation.
import crypto from "node:crypto";
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client, until } from "../support/http";
import { ADMIN, GTIN, Tenant, newTenant, productCsv, postCsv, raw, settled, allProducts } from "./factory-support";
import { productLeafHash } from "../../lib/proof";
import { buildTree } from "../../lib/merkle";
import { verifyToken, parseKeyring } from "../../lib/token";

// GS1's own library (no type declarations): the independent oracle for the links we print.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { DigitalLink } = require("digital-link.js") as { DigitalLink: (x: unknown) => any };

const K1 = `k1:${crypto.randomBytes(32).toString("base64")}`;
const K2 = `k2:${crypto.randomBytes(32).toString("base64")}`;

describe("batches on a two-process cluster", () => {
  let available = false;
  let cluster: ClusterEnv;
  let gateway: NodeHandle;
  let workers: NodeHandle;
  let base: string;
  let port: number;
  let common: Record<string, string>;
  let db: Client;
  let t: Tenant;
  let other: Tenant;

  const start = async (tokenKeys: string) => {
    workers = await startNode({ ...common, TOKEN_KEYS: tokenKeys, SERVICES: "factory,anchor,admin,webhooks", NODE_ID: `workers-${crypto.randomBytes(2).toString("hex")}` });
    gateway = await startNode({ ...common, TOKEN_KEYS: tokenKeys, SERVICES: "api,scan", NODE_ID: `gateway-${crypto.randomBytes(2).toString("hex")}`, PORT: String(port) });
  };

  beforeAll(async () => {
    available = await needServices("batches", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("batches");
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    common = { ...cluster.env, VERIFICATION_URL_BASE: base, ANCHOR_INTERVAL: "3600", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    await start(K1);
    db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    t = await newTenant(base, "Acme");
    other = await newTenant(base, "Other");
  });

  afterAll(async () => {
    await db?.end();
    await gateway?.stop();
    await workers?.stop();
    await cluster?.close();
  });

  const it = ((name: string, fn: () => Promise<void>, timeout?: number) => global.it(name, async () => (available ? fn() : undefined), timeout)) as any;
  const count = async (sql: string, params: unknown[] = []) => Number((await db.query(sql, params)).rows[0].n);

  let jsonBatch: string;
  it("registers a JSON batch asynchronously: 202, then received → processing → registered with times", async () => {
    const api = client(base);
    const res = await api.post(
      "/v1/batches",
      {
        name: "Spring",
        market_regions: ["br", "PT"],
        products: [
          { sku: "W-100", name: "Diver 100", serial: "J1", gtin: "9506000134352", lot: "L/1", attributes: { colour: "black", size: 42 } },
          { sku: "W-100", name: "Diver 100", serial: "J2", gtin: GTIN, lot: "L/1" },
          { sku: "W-200", name: "Pilot", serial: "J3" },
        ],
      },
      t.h,
    );
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: "received", total: 3 });
    expect(res.headers.get("location")).toBe(`/v1/batches/${res.body.id}`);
    jsonBatch = res.body.id;
    const b = await settled(base, t, jsonBatch);
    expect(b).toMatchObject({ status: "registered", market_regions: ["BR", "PT"], progress: { done: 3, total: 3 }, name: "Spring" });
    expect(b.history.map((h: any) => h.status)).toEqual(["received", "processing", "registered"]);
    const times = b.history.map((h: any) => Date.parse(h.at));
    expect(times).toEqual([...times].sort());
    const products = await allProducts(base, t, jsonBatch);
    expect(products.map((p) => p.serial)).toEqual(["J1", "J2", "J3"]);
    expect(products[0]).toMatchObject({ gtin: GTIN, lot: "L/1", attributes: { colour: "black", size: 42 }, status: "active" });
    for (const p of products) {
      expect(p.verification_url).toBe(`${base}/r/${p.token}`);
      expect(verifyToken(p.token, parseKeyring(K1))).toMatchObject({ ok: true, tagId: p.id, kid: "k1" });
    }
    expect(products[2].digital_link).toBeNull();
    // GS1's library accepts the link; the lot's "/" is percent-encoded; the token rides in a non-GS1 parameter.
    expect(products[0].digital_link).toBe(`${base}/01/${GTIN}/10/L%2F1/21/J1?vt=${products[0].token}`);
    for (const p of products.slice(0, 2)) {
      const dl = DigitalLink(p.digital_link);
      expect(dl.isValid()).toBe(true);
      expect(dl.getIdentifier()).toEqual({ "01": GTIN });
      // digital-link.js hands the qualifiers back still percent-encoded.
      const q = dl.getKeyQualifiers();
      expect({ lot: decodeURIComponent(q["10"]), serial: decodeURIComponent(q["21"]) }).toEqual({ lot: "L/1", serial: p.serial });
    }
  });

  it("computes the Merkle leaves during registration: the stored root is the tree of the products' leaves", async () => {
    const b = (await db.query("SELECT root, leaf_count FROM batches WHERE id = $1", [jsonBatch])).rows[0];
    const rows = (await db.query("SELECT * FROM products WHERE batch_id = $1 ORDER BY ordinal", [jsonBatch])).rows;
    const leaves = rows.map((r) => productLeafHash({ tag_id: r.id, tenant_id: r.tenant_id, batch_id: r.batch_id, sku: r.sku, name: r.name, serial: r.serial, gtin: r.gtin, lot: r.lot, salt: r.salt }));
    rows.forEach((r, i) => expect(r.leaf_hash).toBe(leaves[i].toString("hex")));
    expect(b.leaf_count).toBe(3);
    expect(buildTree(leaves).root.toString("hex")).toBe(b.root);
  });

  it("refuses a JSON batch with bad rows, naming each row, and writes nothing", async () => {
    const before = await count("SELECT count(*) AS n FROM batches");
    const res = await client(base).post(
      "/v1/batches",
      {
        products: [
          { sku: "A", name: "ok", serial: "X1", gtin: GTIN },
          { sku: "A", name: "bad gtin", serial: "X2", gtin: "09506000134353" },
          { sku: "A", name: "dup", serial: "X1", gtin: GTIN },
          { sku: "A", name: "", serial: "X4" },
        ],
      },
      t.h,
    );
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/nothing was registered/);
    expect(res.body.error.details.rows).toEqual([
      { row: 2, field: "gtin", message: expect.stringMatching(/check digit/) },
      { row: 3, field: "serial", message: "duplicate serial X1 (first at row 1)" },
      { row: 4, field: "name", message: "name is required" },
    ]);
    expect(await count("SELECT count(*) AS n FROM batches")).toBe(before);
  });

  it("answers 409 for serials the tenant already has, 400 for bad regions, 413 and 415 for the wrong bodies", async () => {
    const api = client(base);
    const dup = await api.post("/v1/batches", { products: [{ sku: "A", name: "n", serial: "J1", gtin: GTIN }] }, t.h);
    expect(dup.status).toBe(409);
    expect(dup.body.error.details.serials).toEqual([{ serial: "J1", gtin: GTIN }]);
    // The same serial in another tenant is fine.
    expect((await api.post("/v1/batches", { products: [{ sku: "A", name: "n", serial: "J1", gtin: GTIN }] }, other.h)).status).toBe(202);
    expect((await api.post("/v1/batches", { market_regions: ["XX"], products: [{ sku: "A", name: "n", serial: "Q1" }] }, t.h)).status).toBe(400);
    const many = Array.from({ length: 10_001 }, (_, i) => ({ sku: "A", name: "n", serial: `M${i}` }));
    const tooMany = await api.post("/v1/batches", { products: many }, t.h);
    expect(tooMany.status).toBe(413);
    expect(tooMany.body.error.message).toMatch(/text\/csv/);
    const huge = await raw(base, "POST", "/v1/batches", JSON.stringify({ products: [{ sku: "A", name: "x".repeat(17 * 1024 * 1024), serial: "H" }] }), { ...t.h, "content-type": "application/json" });
    expect(huge.status).toBe(413);
    const malformed = await raw(base, "POST", "/v1/batches", '{"products": [', { ...t.h, "content-type": "application/json" });
    expect(malformed.status).toBe(400);
    const text = await raw(base, "POST", "/v1/batches", "sku,name,serial\n", { ...t.h, "content-type": "text/plain" });
    expect(text.status).toBe(415);
    const empty = await raw(base, "POST", "/v1/batches", JSON.stringify({ name: "no products" }), { ...t.h, "content-type": "application/json" });
    expect(empty.status).toBe(400);
  });

  let csvBatch: string;
  it("registers a text/csv body streamed through the gateway, with name and market regions as query parameters", async () => {
    const csv = productCsv(3000, "C");
    const res = await postCsv(base, t, csv, "?name=From%20CSV&market_regions=FR,de");
    expect(res.status).toBe(202);
    // The rows are counted as they are registered.
    expect(res.body).toMatchObject({ status: "received", total: null });
    expect(res.headers.get("location")).toBe(`/v1/batches/${res.body.id}`);
    csvBatch = res.body.id;
    const b = await settled(base, t, csvBatch);
    expect(b).toMatchObject({ status: "registered", name: "From CSV", market_regions: ["FR", "DE"], progress: { done: 3000, total: 3000 } });
    const products = await allProducts(base, t, csvBatch);
    expect(products).toHaveLength(3000);
    expect(products[1]).toMatchObject({ ordinal: 1, serial: "C1", sku: "W-1", name: "Watch, model 1", gtin: GTIN, lot: "L1", attributes: { i: 1, c: "é " } });
    expect(products[2]).toMatchObject({ gtin: null, digital_link: null });
    // The spooled file is gone once registered.
    expect(await count("SELECT count(*) AS n FROM upload_chunks c JOIN uploads u ON u.id = c.upload_id WHERE u.batch_id = $1", [csvBatch])).toBe(0);
  });

  it("refuses a CSV whose header lacks a column at once (400), writing nothing", async () => {
    const before = { b: await count("SELECT count(*) AS n FROM batches"), u: await count("SELECT count(*) AS n FROM uploads") };
    const missing = await postCsv(base, t, "sku,name,gtin\r\nA,B,\r\n");
    expect(missing.status).toBe(400);
    expect(missing.body.error.details.rows).toEqual([{ row: 1, message: expect.stringMatching(/missing required columns: "serial"/) }]);
    const unknown = await postCsv(base, t, "sku,name,serial,colour\r\nA,B,C,red\r\n");
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toMatch(/unknown columns: "colour"/);
    const empty = await raw(base, "POST", "/v1/batches", "", { ...t.h, "content-type": "text/csv" });
    expect(empty.status).toBe(400);
    expect(await count("SELECT count(*) AS n FROM batches")).toBe(before.b);
    expect(await count("SELECT count(*) AS n FROM uploads")).toBe(before.u);
  });

  it("fails a CSV batch with bad rows, naming each row (in-file duplicates included), with nothing inserted", async () => {
    const lines = productCsv(10, "B").trimEnd().split("\r\n");
    lines[3] = `W-1,Watch,B9,09506000134353,L1,`; // row 4: check digit
    lines[5] = `W-1,Watch,B1,${GTIN},L1,`; // row 6: B1 again
    lines[8] = `W-1,Watch,B88,,,{not json`; // row 9
    const bad = await postCsv(base, t, lines.join("\r\n") + "\r\n");
    expect(bad.status).toBe(202);
    const b = await settled(base, t, bad.body.id);
    expect(b.status).toBe("failed");
    expect(b.errors).toEqual([
      { row: 4, field: "gtin", message: expect.stringMatching(/check digit/) },
      { row: 6, field: "serial", message: "duplicate serial B1 (first at row 3)" },
      { row: 9, field: "attributes", message: "attributes is not valid JSON" },
    ]);
    // A serial repeated in a big file is caught by the unique index, then named by row.
    const dup = productCsv(5000, "D").trimEnd().split("\r\n");
    dup[4001] = dup[11];
    const d = await settled(base, t, (await postCsv(base, t, dup.join("\r\n") + "\r\n")).body.id);
    expect(d.errors).toEqual([{ row: 4002, field: "serial", message: "duplicate serial D10 (first at row 12)" }]);
    const quote = await settled(base, t, (await postCsv(base, t, 'sku,name,serial\r\nA,n,S1\r\nA,"open,S2\r\n')).body.id);
    expect(quote).toMatchObject({ status: "failed", errors: [{ row: 3, message: expect.stringMatching(/unterminated quoted field/) }] });
    const headerOnly = await settled(base, t, (await postCsv(base, t, "sku,name,serial\r\n")).body.id);
    expect(headerOnly).toMatchObject({ status: "failed", errors: [{ message: expect.stringMatching(/no product rows/) }] });
    const latin1 = await settled(base, t, (await postCsv(base, t, Buffer.from("sku,name,serial\r\nA,Caf\xe9,S1\r\n", "latin1"))).body.id);
    expect(latin1).toMatchObject({ status: "failed", errors: [{ row: 2, message: expect.stringMatching(/UTF-8/) }] });
    for (const id of [bad.body.id, d.id, quote.id, headerOnly.id, latin1.id])
      expect(await count("SELECT count(*) AS n FROM products WHERE batch_id = $1", [id])).toBe(0);
    // The spooled files of failed batches are deleted too.
    expect(await count("SELECT count(*) AS n FROM upload_chunks c JOIN uploads u ON u.id = c.upload_id WHERE u.batch_id = ANY($1::uuid[])", [[bad.body.id, d.id]])).toBe(0);
  });

  it("fails a CSV batch repeating serials the tenant has, listing the rows, with nothing inserted and batch.failed sent", async () => {
    const csv = ["sku,name,serial,gtin", "A,n,NEW1,", `A,n,C0,${GTIN}`, "A,n,NEW2,", "A,n,C2,"].join("\n") + "\n";
    const res = await postCsv(base, t, csv);
    expect(res.status).toBe(202);
    const b = await settled(base, t, res.body.id);
    expect(b.status).toBe("failed");
    expect(b.errors).toEqual([
      { row: 3, field: "serial", message: `serial C0 (GTIN ${GTIN}) is already registered for this tenant` },
      { row: 5, field: "serial", message: "serial C2 is already registered for this tenant" },
    ]);
    expect(b.history.map((h: any) => h.status)).toEqual(["received", "processing", "failed"]);
    expect(await count("SELECT count(*) AS n FROM products WHERE batch_id = $1", [res.body.id])).toBe(0);
    const ev = await db.query("SELECT payload FROM outbox WHERE topic = 'batch.failed' AND payload->>'batch_id' = $1", [res.body.id]);
    expect(ev.rows[0].payload.errors).toHaveLength(2);
    const reg = await db.query("SELECT payload FROM outbox WHERE topic = 'batch.registered' AND payload->>'batch_id' = $1", [csvBatch]);
    expect(reg.rows[0].payload).toMatchObject({ tenant_id: t.id, batch_id: csvBatch, products: 3000 });
  });

  it("shows progress (done/total, rate, ETA) while a big CSV batch is processing", async () => {
    const n = 150_000;
    const res = await postCsv(base, t, productCsv(n, "P"));
    expect(res.status).toBe(202);
    const seen: any[] = [];
    const final = await until(
      async () => {
        const r = await client(base).get(`/v1/batches/${res.body.id}`, t.h);
        if (r.body.status === "processing") seen.push(r.body);
        return r;
      },
      (r) => !["received", "processing"].includes(r.body.status),
      120_000,
      150,
    );
    expect(final.body).toMatchObject({ status: "registered", progress: { done: n, total: n } });
    const mid = seen.filter((s) => s.progress.done > 0 && s.progress.done < n);
    if (!mid.length) console.log(JSON.stringify(seen.map((s) => [s.phase, s.progress, s.rate_per_s])));
    expect(mid.length).toBeGreaterThan(0);
    for (const s of mid) {
      // The row count of a CSV is known once it is read through: until then it is estimated from the bytes read.
      if (s.progress.estimated) expect(Math.abs(s.progress.total - n) / n).toBeLessThan(0.25);
      else expect(s.progress.total).toBe(n);
      expect(s.rate_per_s).toBeGreaterThan(0);
      expect(s.eta_s).toBeGreaterThanOrEqual(0);
      expect(["inserting", "finishing", "tree"]).toContain(s.phase);
    }
    const dones = mid.map((s) => s.progress.done);
    expect(dones).toEqual([...dones].sort((a, b) => a - b));
    expect(await count("SELECT count(*) AS n FROM products WHERE batch_id = $1", [res.body.id])).toBe(n);
  }, 150_000);

  it("lists batches and products with capped cursors; another tenant's batch is a 404", async () => {
    const api = client(base);
    const page1 = await api.get("/v1/batches?limit=2", t.h);
    expect(page1.status).toBe(200);
    expect(page1.body.items).toHaveLength(2);
    const page2 = await api.get(`/v1/batches?limit=2&cursor=${page1.body.next_cursor}`, t.h);
    expect(page2.body.items[0].id).not.toBe(page1.body.items[1].id);
    expect((await api.get("/v1/batches?limit=1001", t.h)).status).toBe(400);
    expect((await api.get("/v1/batches?cursor=garbage", t.h)).status).toBe(400);
    const p = await api.get(`/v1/batches/${jsonBatch}/products?limit=2`, t.h);
    expect(p.body.items.map((x: any) => x.serial)).toEqual(["J1", "J2"]);
    const p2 = await api.get(`/v1/batches/${jsonBatch}/products?limit=2&cursor=${p.body.next_cursor}`, t.h);
    expect(p2.body).toMatchObject({ items: [{ serial: "J3" }], next_cursor: null });
    expect((await api.get(`/v1/batches/${jsonBatch}`, other.h)).status).toBe(404);
    expect((await api.get(`/v1/batches/${jsonBatch}/products`, other.h)).status).toBe(404);
  });

  it("keeps old tags verifying after a new signing key is added; new tags use the new key", async () => {
    const old = await allProducts(base, t, jsonBatch);
    await gateway.stop();
    await workers.stop();
    await start(`${K2},${K1}`);
    const api = client(base);
    const again = await allProducts(base, t, jsonBatch);
    expect(again.map((p) => p.token)).toEqual(old.map((p) => p.token));
    expect(again[0].token.startsWith("k1.")).toBe(true);
    const scan = await api.post("/v1/scan", { token: old[0].token });
    expect(scan.status).toBe(200);
    expect(scan.body.verdict).toBe("authentic");
    const res = await api.post("/v1/batches", { products: [{ sku: "R", name: "rotated", serial: "ROT1" }] }, t.h);
    expect(res.status).toBe(202);
    await settled(base, t, res.body.id);
    const [fresh] = await allProducts(base, t, res.body.id);
    expect(fresh.token.startsWith("k2.")).toBe(true);
    expect((await api.post("/v1/scan", { token: fresh.token })).body.verdict).toBe("authentic");
    // A forged token signed with an unknown key id is invalid, not an error.
    const forged = `k9.${fresh.token.split(".").slice(1).join(".")}`;
    expect((await api.post("/v1/scan", { token: forged })).body.verdict).toBe("invalid");
  }, 90_000);
});
