// Webhooks on the embedded default (one process, PGlite): the same claim-and-lease SQL on PGlite's
// single connection, retries, the request id of the request that caused an event on every log line
// of its delivery, and a delivery that survives the process being SIGKILLed and started again on
// the same data directory.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { Webhook } from "standardwebhooks";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { ADMIN } from "../support/journey";
import { client, until } from "../support/http";
import { startReceiver, Receiver, Received } from "../support/webhook-receiver";

describe("webhooks on embedded defaults", () => {
  let node: NodeHandle;
  let env: Record<string, string>;
  let dataDir: string;
  let receiver: Receiver;
  let api: ReturnType<typeof client>;
  let key: Record<string, string>;
  const onPath = (p: string) => (all: Received[]) => all.filter((r) => r.path === p);

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-webhooks-"));
    receiver = await startReceiver();
    const port = await freePort();
    env = {
      PORT: String(port),
      VOKETAG_DATA_DIR: dataDir,
      VERIFICATION_URL_BASE: `http://127.0.0.1:${port}`,
      VOKETAG_ADMIN_EMAIL: ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: ADMIN.password,
      WEBHOOKS_ALLOW_PRIVATE: "1",
      WEBHOOK_RETRY_SCHEDULE: "0,1,1,1,1",
      WEBHOOK_TIMEOUT: "4",
      WEBHOOK_LEASE: "6",
      WEBHOOK_POLL_MS: "200",
      OUTBOX_POLL_MS: "200",
    };
    node = await startNode(env);
    api = client(`http://127.0.0.1:${port}`);
    const login = await api.post("/v1/auth/login", ADMIN);
    const jwt = { authorization: `Bearer ${login.body.access_token}` };
    const t = await api.post("/v1/admin/tenants", { name: "Embedded" }, jwt);
    key = { "x-api-key": (await api.post(`/v1/admin/tenants/${t.body.id}/api-keys`, { name: "k" }, jwt)).body.key };
  }, 90_000);

  afterAll(async () => {
    await receiver?.close();
    await node?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("delivers a registered batch after failures, signed, under one webhook-id", async () => {
    const ep = await api.post("/v1/webhooks", { url: receiver.url("/e"), events: ["batch.registered"] }, key);
    expect(ep.status).toBe(201);
    let n = 0;
    receiver.setHandler((r) => (r.path === "/e" && ++n <= 2 ? { status: 502 } : { status: 200 }));
    const batch = await api.post("/v1/batches", { products: [{ sku: "S", name: "N", serial: "E-1" }] }, key);
    const got = onPath("/e")(await receiver.waitFor((all) => onPath("/e")(all).length >= 3, 20_000));
    expect(new Set(got.map((r) => r.headers["webhook-id"])).size).toBe(1);
    for (const r of got) expect(new Webhook(ep.body.secret).verify(r.body, r.headers)).toMatchObject({ type: "batch.registered", data: { batch_id: batch.body.id } });
    const l = await until(() => api.get(`/v1/webhooks/${ep.body.id}/deliveries`, key), (r) => r.body.items[0]?.status === "succeeded");
    expect(l.body.items[0]).toMatchObject({ attempts: 3, response_status: 200 });
  }, 40_000);

  it("logs each delivery attempt under the request id of the request that caused the event", async () => {
    const ep = await api.post("/v1/webhooks", { url: receiver.url("/recalls"), events: ["product.recalled"] }, key);
    expect(ep.status).toBe(201);
    const batch = await api.post("/v1/batches", { products: [{ sku: "S", name: "N", serial: "R-1" }, { sku: "S", name: "N", serial: "R-2" }] }, key);
    await until(() => api.get(`/v1/batches/${batch.body.id}`, key), (r) => r.body.status === "registered" || r.body.status === "anchored");
    const products = (await api.get(`/v1/batches/${batch.body.id}/products`, key)).body.items;

    // Two failed attempts per event, so the worker logs them ("webhook attempt failed"): the first
    // made by the sweep the event's arrival started, the retry by a later one; the third succeeds.
    const tries = new Map<string, number>();
    receiver.setHandler((r) => {
      const id = r.headers["webhook-id"];
      tries.set(id, (tries.get(id) ?? 0) + 1);
      return tries.get(id)! <= 2 ? { status: 500, body: "not yet" } : { status: 200 };
    });
    const ids = [`recall-${crypto.randomUUID()}`, `recall-${crypto.randomUUID()}`];
    for (let i = 0; i < 2; i++) {
      const r = await api.request("POST", `/v1/products/${products[i].id}/recall`, { body: { reason: "clasp" }, headers: { ...key, "x-request-id": ids[i] } });
      expect(r.status).toBe(201);
      expect(r.headers.get("x-request-id")).toBe(ids[i]);
    }
    const got = await receiver.waitFor((all) => all.filter((r) => r.path === "/recalls").length >= 6, 20_000);
    await until(() => api.get(`/v1/webhooks/${ep.body.id}/deliveries`, key), (r) => r.body.items.length === 2 && r.body.items.every((d: any) => d.status === "succeeded"));

    // Which webhook-id carries which recall: the body names the tag.
    const webhookIdOf = (tag: string) => got.find((r: Received) => r.path === "/recalls" && JSON.parse(r.body).data.tag_ids[0] === tag)!.headers["webhook-id"];
    const lines = node.logs.flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
    for (let i = 0; i < 2; i++) {
      const attempts = lines.filter((l) => l.msg === "webhook attempt failed" && l.webhook_id === webhookIdOf(products[i].id));
      expect(attempts.length).toBe(2);
      for (const l of attempts) expect(l.request_id).toBe(ids[i]);
    }
  }, 60_000);

  it("finishes a delivery the process was killed in the middle of, after a restart on the same data", async () => {
    const ep = await api.post("/v1/webhooks", { url: receiver.url("/k"), events: ["batch.registered"] }, key);
    receiver.setHandler((r) => (r.path === "/k" && onPath("/k")(receiver.received).length === 1 ? "hang" : { status: 200 }));
    await api.post("/v1/batches", { products: [{ sku: "S", name: "N", serial: "E-2" }] }, key);
    const [first] = onPath("/k")(await receiver.waitFor((all) => onPath("/k")(all).length >= 1, 20_000));
    await node.stop("SIGKILL");
    node = await startNode(env);
    const got = onPath("/k")(await receiver.waitFor((all) => onPath("/k")(all).length >= 2, 30_000));
    expect(got[1].headers["webhook-id"]).toBe(first.headers["webhook-id"]);
    expect(new Webhook(ep.body.secret).verify(got[1].body, got[1].headers)).toMatchObject({ type: "batch.registered" });
    const l = await until(() => api.get(`/v1/webhooks/${ep.body.id}/deliveries`, key), (r) => r.body.items[0]?.status === "succeeded");
    expect(l.body.items[0].attempts).toBe(2);
  }, 90_000);

  it("stops on SIGTERM within 10 s even with a receiver that never answers", async () => {
    const ep = await api.post("/v1/webhooks", { url: receiver.url("/h"), events: ["*"] }, key);
    receiver.setHandler((r) => (r.path === "/h" ? "hang" : { status: 200 }));
    await api.post(`/v1/webhooks/${ep.body.id}/test`, undefined, key);
    await receiver.waitFor((all) => onPath("/h")(all).length >= 1);
    const t0 = Date.now();
    expect(await node.stop("SIGTERM")).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  }, 30_000);
});
