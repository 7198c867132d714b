// Resumable uploads on a cluster with TWO factory nodes behind one gateway (real Postgres, Redis,
// NATS): a 50 MB file sent in chunks that land on either node, a connection cut mid-chunk and
// resumed from what GET says arrived, the SHA-256 checked on completion, and the file registered.
import http from "node:http";
import crypto from "node:crypto";
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { client } from "../support/http";
import { ADMIN, Tenant, newTenant, productCsv, raw, settled, sha256 } from "./factory-support";

const MiB = 1024 * 1024;

describe("resumable uploads across two factory nodes", () => {
  let available = false;
  let cluster: ClusterEnv;
  let nodes: NodeHandle[] = [];
  let base: string;
  let port: number;
  let db: Client;
  let t: Tenant;
  let other: Tenant;

  beforeAll(async () => {
    available = await needServices("uploads", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("uploads");
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const common = { ...cluster.env, VERIFICATION_URL_BASE: base, ANCHOR_INTERVAL: "3600", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    nodes = await Promise.all([
      startNode({ ...common, SERVICES: "factory,admin,anchor", NODE_ID: "factory-a" }),
      startNode({ ...common, SERVICES: "factory", NODE_ID: "factory-b" }),
    ]);
    nodes.push(await startNode({ ...common, SERVICES: "api,scan", NODE_ID: "gateway", PORT: String(port) }));
    db = new Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    t = await newTenant(base, "Uploader");
    other = await newTenant(base, "Other");
  });

  afterAll(async () => {
    await db?.end();
    for (const n of nodes.reverse()) await n.stop();
    await cluster?.close();
  });

  const it = ((name: string, fn: () => Promise<void>, timeout?: number) => global.it(name, async () => (available ? fn() : undefined), timeout)) as any;
  const put = (id: string, offset: number, body: Buffer, h: Record<string, string> = t.h) =>
    raw(base, "PUT", `/v1/uploads/${id}?offset=${offset}`, body, { ...h, "content-type": "application/octet-stream" });
  const create = (file: Buffer, extra: Record<string, unknown> = {}) => client(base).post("/v1/uploads", { size: file.length, sha256: sha256(file), name: "big file", market_regions: ["BR"], ...extra }, t.h);

  /** Sends `body` but cuts the connection after `sendBytes`, as a dropped mobile link would. */
  function cutPut(id: string, offset: number, body: Buffer, sendBytes: number): Promise<void> {
    return new Promise((resolve) => {
      const req = http.request(`${base}/v1/uploads/${id}?offset=${offset}`, {
        method: "PUT",
        headers: { ...t.h, "content-type": "application/octet-stream", "content-length": String(body.length) },
      });
      req.on("error", () => resolve());
      req.on("response", (res) => {
        res.resume();
        resolve();
      });
      req.write(body.subarray(0, sendBytes), () => setTimeout(() => req.destroy(), 300));
    });
  }

  it("takes a 50 MB file in chunks, resumes after a cut from the offset GET reports, checks its SHA-256 and registers it", async () => {
    const file = Buffer.from(productCsv(125_000, "U", { pad: 330 }));
    expect(file.length).toBeGreaterThan(50 * 1000 * 1000);
    const c = await create(file);
    expect(c.status).toBe(201);
    expect(c.body).toMatchObject({ status: "receiving", size: file.length, received: 0, sha256: sha256(file) });
    expect(c.headers.get("location")).toBe(`/v1/uploads/${c.body.id}`);
    const id = c.body.id;

    const first = await put(id, 0, file.subarray(0, 16 * MiB));
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ status: "receiving", received: 16 * MiB });
    expect(first.headers.get("upload-offset")).toBe(String(16 * MiB));

    // The connection drops 5.5 MiB into a 16 MiB chunk: what arrived is kept.
    await cutPut(id, 16 * MiB, file.subarray(16 * MiB, 32 * MiB), 5.5 * MiB);
    // The server may still be storing what it got when the link dropped: wait for the offset to settle.
    let status = await client(base).get(`/v1/uploads/${id}`, t.h);
    for (let i = 0, same = 0; i < 100 && same < 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const next = await client(base).get(`/v1/uploads/${id}`, t.h);
      same = next.body.received === status.body.received && next.body.received > 16 * MiB ? same + 1 : 0;
      status = next;
    }
    const resumeAt = status.body.received;
    expect(resumeAt).toBeGreaterThan(16 * MiB);
    expect(resumeAt).toBeLessThanOrEqual(21.5 * MiB);
    expect(status.headers.get("upload-offset")).toBe(String(resumeAt));
    // What arrived is exactly the file's bytes up to there.
    const stored = await db.query('SELECT "offset", data FROM upload_chunks WHERE upload_id = $1 ORDER BY "offset"', [id]);
    expect(Buffer.concat(stored.rows.map((r) => r.data)).equals(file.subarray(0, resumeAt))).toBe(true);

    // A chunk at the wrong offset is refused with the right one.
    const wrong = await put(id, 16 * MiB, file.subarray(16 * MiB, 17 * MiB));
    expect(wrong.status).toBe(409);
    expect(wrong.body.error.details).toMatchObject({ received: resumeAt, size: file.length });

    // Resume: the rest in chunks (round-robin over both factory nodes).
    let offset = resumeAt;
    let last: any;
    while (offset < file.length) {
      const end = Math.min(file.length, offset + 12 * MiB);
      last = await put(id, offset, file.subarray(offset, end));
      offset = end;
      if (offset < file.length) expect(last.status).toBe(200);
    }
    expect(last.status).toBe(202);
    expect(last.body).toMatchObject({ status: "completed", received: file.length });
    expect(last.headers.get("location")).toBe(`/v1/batches/${last.body.batch_id}`);
    const b = await settled(base, t, last.body.batch_id, 120_000);
    expect(b).toMatchObject({ status: "registered", name: "big file", market_regions: ["BR"], progress: { done: 125_000, total: 125_000 } });
    const n = await db.query("SELECT count(*)::int AS n FROM products WHERE batch_id = $1", [last.body.batch_id]);
    expect(n.rows[0].n).toBe(125_000);
    // The final chunk's answer lost and sent again: the same answer, nothing new.
    const again = await put(id, file.length, Buffer.alloc(0));
    expect(again.status).toBe(202);
    expect(again.body.batch_id).toBe(last.body.batch_id);
    // The file's bytes are gone once registered; the upload says where they went.
    expect((await db.query("SELECT count(*)::int AS n FROM upload_chunks WHERE upload_id = $1", [id])).rows[0].n).toBe(0);
    expect((await client(base).get(`/v1/uploads/${id}`, t.h)).body).toMatchObject({ status: "completed", batch_id: last.body.batch_id });
  }, 240_000);

  it("refuses a file whose SHA-256 differs from the declared one: 422, nothing registered", async () => {
    const file = Buffer.from(productCsv(2000, "X"));
    const c = await create(file, { sha256: sha256(Buffer.from("something else")) });
    const batches = (await db.query("SELECT count(*)::int AS n FROM batches")).rows[0].n;
    expect((await put(c.body.id, 0, file.subarray(0, 50_000))).status).toBe(200);
    const res = await put(c.body.id, 50_000, file.subarray(50_000));
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("CHECKSUM_MISMATCH");
    expect(res.body.error.details).toEqual({ expected: sha256(Buffer.from("something else")), actual: sha256(file) });
    const up = await client(base).get(`/v1/uploads/${c.body.id}`, t.h);
    expect(up.body).toMatchObject({ status: "failed", batch_id: null, error: { code: "CHECKSUM_MISMATCH" } });
    expect((await db.query("SELECT count(*)::int AS n FROM batches")).rows[0].n).toBe(batches);
    expect((await db.query("SELECT count(*)::int AS n FROM upload_chunks WHERE upload_id = $1", [c.body.id])).rows[0].n).toBe(0);
    expect((await put(c.body.id, 0, file)).status).toBe(409);
  });

  it("refuses a file with a missing column when it completes, and chunks past the declared size", async () => {
    const file = Buffer.from("sku,name\r\nA,B\r\n");
    const c = await create(file);
    const res = await put(c.body.id, 0, file);
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/missing required columns: "serial"/);
    expect((await client(base).get(`/v1/uploads/${c.body.id}`, t.h)).body.status).toBe("failed");

    const small = Buffer.from(productCsv(3, "S"));
    const s = await create(small);
    const over = await put(s.body.id, 0, Buffer.concat([small, Buffer.from("more")]));
    expect(over.status).toBe(400);
    expect(over.body.error.message).toMatch(/past the declared size/);
    expect((await raw(base, "PUT", `/v1/uploads/${s.body.id}`, small, { ...t.h, "content-type": "application/octet-stream" })).status).toBe(400);
    expect((await raw(base, "PUT", `/v1/uploads/${s.body.id}?offset=0`, small, { ...t.h, "content-type": "text/csv" })).status).toBe(415);
  });

  it("validates the declaration, lists uploads, cancels one, and hides them from other tenants", async () => {
    const api = client(base);
    expect((await api.post("/v1/uploads", { size: 3 * 1024 ** 3, sha256: "a".repeat(64) }, t.h)).status).toBe(400);
    expect((await api.post("/v1/uploads", { size: 10, sha256: "xyz" }, t.h)).status).toBe(400);
    expect((await api.post("/v1/uploads", { size: 10, sha256: "a".repeat(64), content_type: "application/pdf" }, t.h)).status).toBe(400);
    const file = Buffer.from(productCsv(10, "Z"));
    const c = await create(file);
    await put(c.body.id, 0, file.subarray(0, 100));
    expect((await api.get(`/v1/uploads/${c.body.id}`, other.h)).status).toBe(404);
    expect((await put(c.body.id, 100, file.subarray(100), other.h)).status).toBe(404);
    expect((await api.del(`/v1/uploads/${c.body.id}`, other.h)).status).toBe(404);
    const list = await api.get("/v1/uploads?limit=2", t.h);
    expect(list.body.items).toHaveLength(2);
    expect(list.body.items[0].id).toBe(c.body.id);
    const cancelled = await api.del(`/v1/uploads/${c.body.id}`, t.h);
    expect(cancelled.body).toMatchObject({ status: "cancelled" });
    expect((await db.query("SELECT count(*)::int AS n FROM upload_chunks WHERE upload_id = $1", [c.body.id])).rows[0].n).toBe(0);
    expect((await put(c.body.id, 100, file.subarray(100))).status).toBe(409);
    // An Idempotency-Key makes a retried declaration create one upload, not two.
    const key = { ...t.h, "idempotency-key": crypto.randomUUID() };
    const a = await api.post("/v1/uploads", { size: 10, sha256: "b".repeat(64) }, key);
    const b = await api.post("/v1/uploads", { size: 10, sha256: "b".repeat(64) }, key);
    expect(b.body.id).toBe(a.body.id);
    expect(b.headers.get("idempotent-replayed")).toBe("true");
  });
});
