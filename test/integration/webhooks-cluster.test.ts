// Webhooks on a real cluster: a gateway process (api, factory, scan, anchor, admin) and two
// webhooks processes, over NATS, on Postgres and Redis. The REST contract and its attacks go
// through the gateway; events come from the real producers and from bulk outbox rows; a webhooks
// process is SIGKILLed mid-delivery. Every delivery is verified with the standardwebhooks library.
import crypto from "node:crypto";
import { Client } from "pg";
import { Webhook } from "standardwebhooks";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { ADMIN } from "../support/journey";
import { client, until } from "../support/http";
import { startReceiver, Receiver, Received } from "../support/webhook-receiver";
import { hashPassword } from "../../lib/password";

describe("webhooks on a cluster over NATS", () => {
  let available = false;
  let cluster: ClusterEnv;
  let gateway: NodeHandle;
  const workers: Record<string, NodeHandle> = {};
  let receiver: Receiver;
  let pg: Client;
  let api: ReturnType<typeof client>;
  let jwt: Record<string, string>;
  const tenants: Record<string, { id: string; key: Record<string, string> }> = {};
  const secrets: Record<string, string> = {};
  const onPath = (p: string) => (all: Received[]) => all.filter((r) => r.path === p);
  const verify = (secret: string, r: Received) => new Webhook(secret).verify(r.body, r.headers) as any;

  beforeAll(async () => {
    available = await needServices("webhooks-cluster", ["postgres", "redis", "nats"]);
    if (!available) return;
    [cluster, receiver] = await Promise.all([createClusterEnv("webhooks"), startReceiver()]);
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const common = {
      ...cluster.env,
      VERIFICATION_URL_BASE: base,
      ANCHOR_INTERVAL: "5",
      VOKETAG_ADMIN_EMAIL: ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: ADMIN.password,
      WEBHOOKS_ALLOW_PRIVATE: "1",
      WEBHOOK_RETRY_SCHEDULE: "0,1,1,2,2,2,2,2,2,2",
      WEBHOOK_TIMEOUT: "4",
      WEBHOOK_LEASE: "6",
      WEBHOOK_POLL_MS: "200",
      OUTBOX_POLL_MS: "200",
    };
    // The gateway's node migrates first; the webhooks nodes join once the schema is there.
    gateway = await startNode({ ...common, SERVICES: "api,factory,scan,anchor,admin", NODE_ID: "gw-1", PORT: String(port) });
    [workers["wh-1"], workers["wh-2"]] = await Promise.all(["wh-1", "wh-2"].map((id) => startNode({ ...common, SERVICES: "webhooks", NODE_ID: id })));
    pg = new Client({ connectionString: cluster.databaseUrl });
    await pg.connect();
    api = client(base);
    await until(() => api.get("/v1/webhooks"), (r) => r.status === 401, 20_000); // the gateway sees the webhooks service
    const login = await api.post("/v1/auth/login", ADMIN);
    jwt = { authorization: `Bearer ${login.body.access_token}` };
    for (const name of ["A", "B"]) {
      const t = await api.post("/v1/admin/tenants", { name: `Tenant ${name}` }, jwt);
      const k = await api.post(`/v1/admin/tenants/${t.body.id}/api-keys`, { name: "all" }, jwt);
      tenants[name] = { id: t.body.id, key: { "x-api-key": k.body.key } };
    }
  }, 120_000);

  afterAll(async () => {
    await receiver?.close();
    await Promise.all([gateway?.stop(), ...Object.values(workers).map((w) => w.stop())]);
    await pg?.end();
    await cluster?.close();
  });

  it("serves the REST contract with tenant isolation, scopes, SSRF refusals and idempotency", async () => {
    if (!available) return;
    const A = tenants.A.key;
    const B = tenants.B.key;
    const noCred = await api.post("/v1/webhooks", { url: receiver.url(), events: ["*"] });
    expect(noCred.status).toBe(401);
    expect(noCred.body.error).toMatchObject({ code: expect.any(String), request_id: expect.any(String) });
    const mint = async (scopes: string[]) => ({ "x-api-key": (await api.post("/v1/api-keys", { name: scopes.join(" "), scopes }, A)).body.key });
    const reader = await mint(["webhooks:read"]);
    const other = await mint(["batches:read"]);
    expect((await api.get("/v1/webhooks", other)).status).toBe(403);
    expect((await api.post("/v1/webhooks", { url: receiver.url(), events: ["*"] }, reader)).status).toBe(403);

    // SSRF through the real door: metadata is refused even though this cluster admits loopback.
    for (const url of ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://0xa9fea9fe/", "http://[fe80::1]:8080/"]) {
      const r = await api.post("/v1/webhooks", { url, events: ["*"] }, A);
      expect([url, r.status]).toEqual([url, 400]);
      expect(r.body.error.message).toMatch(/link-local|metadata/);
      expect(r.body.error.request_id).toBeTruthy();
    }
    expect((await api.post("/v1/webhooks", { url: receiver.url(), events: ["batch.nope"] }, A)).status).toBe(400);
    expect((await api.post("/v1/webhooks", { url: receiver.url(), events: "batch.registered" }, A)).status).toBe(400);

    const idem = { ...A, "idempotency-key": `wh-${crypto.randomUUID()}` };
    const created = await api.post("/v1/webhooks", { url: receiver.url("/a"), events: ["*"], description: "everything" }, idem);
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_/);
    expect(created.headers.get("location")).toBe(`/v1/webhooks/${created.body.id}`);
    secrets.A = created.body.secret;
    const again = await api.post("/v1/webhooks", { url: receiver.url("/a"), events: ["*"], description: "everything" }, idem);
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(created.body.id);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect((await api.post("/v1/webhooks", { url: receiver.url("/b"), events: ["*"] }, idem)).status).toBe(422);

    const list = await api.get("/v1/webhooks", reader);
    expect(list.status).toBe(200);
    expect(list.body).toEqual({ items: [expect.objectContaining({ id: created.body.id, url: receiver.url("/a") })], next_cursor: null });
    expect(list.text).not.toContain(created.body.secret);

    // Another tenant's id is 404 on every route.
    const id = created.body.id;
    const test = await api.post(`/v1/webhooks/${id}/test`, undefined, A);
    expect(test.status).toBe(202);
    for (const [method, path] of [
      ["GET", `/v1/webhooks/${id}`],
      ["DELETE", `/v1/webhooks/${id}`],
      ["POST", `/v1/webhooks/${id}/rotate-secret`],
      ["POST", `/v1/webhooks/${id}/test`],
      ["POST", `/v1/webhooks/${id}/enable`],
      ["GET", `/v1/webhooks/${id}/deliveries`],
      ["GET", `/v1/webhooks/${id}/deliveries/${test.body.id}`],
      ["POST", `/v1/webhooks/${id}/deliveries/${test.body.id}/replay`],
    ]) {
      const r = await api.request(method, path, { headers: B });
      expect([method, path, r.status]).toEqual([method, path, 404]);
      expect(r.body.error.code).toBe("NOT_FOUND");
    }
    expect((await api.get("/v1/webhooks", B)).body.items).toEqual([]);
    expect((await api.get(`/v1/webhooks/not-a-uuid`, A)).status).toBe(400);
    // A static path beside /v1/webhooks/:id still reaches its own action.
    const types = await api.get("/v1/webhooks/event-types", reader);
    expect(types.status).toBe(200);
    expect(types.body.items.filter((x: any) => x.subscribable).map((x: any) => x.type)).toEqual(["batch.registered", "batch.failed", "batch.anchored", "anchor.confirmed", "product.recalled", "product.recall_withdrawn", "scan.suspicious", "fraud.reported"]);

    // A tenant user reads through the gateway with its role's scopes (a viewer may not write).
    const email = `viewer-${crypto.randomUUID()}@acme.test`;
    await pg.query("INSERT INTO users (email, name, role, tenant_id, password_hash) VALUES ($1, 'Viewer', 'tenant_viewer', $2, $3)", [email, tenants.A.id, await hashPassword(ADMIN.password)]);
    const vlogin = await api.post("/v1/auth/login", { email, password: ADMIN.password });
    expect(vlogin.status).toBe(200);
    const viewer = { authorization: `Bearer ${vlogin.body.access_token}` };
    expect((await api.get("/v1/webhooks", viewer)).body.items.map((x: any) => x.id)).toEqual([id]);
    expect((await api.post("/v1/webhooks", { url: receiver.url(), events: ["*"] }, viewer)).status).toBe(403);

    const spec = await api.get("/openapi.json");
    for (const p of ["/v1/webhooks", "/v1/webhooks/{id}/rotate-secret", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", "/v1/webhooks/{id}/enable"]) expect(Object.keys(spec.body.paths)).toContain(p);

    // The test delivery arrives, signed.
    const [t] = onPath("/a")(await receiver.waitFor((all) => onPath("/a")(all).some((r) => r.headers["webhook-id"] === test.body.webhook_id)));
    expect(verify(secrets.A, t).type).toBe("webhook.test");
  }, 60_000);

  it("delivers the real events of a batch's life, and the anchor callback to callback_url", async () => {
    if (!available) return;
    const A = tenants.A.key;
    const cb = await api.post("/v1/webhooks/callbacks", undefined, A);
    expect(cb.status).toBe(201);
    const batch = await api.post("/v1/batches", { products: [{ sku: "W-1", name: "Watch", serial: `S-${crypto.randomUUID()}` }] }, A);
    expect(batch.status).toBe(202);
    // Asked at once, before the scheduled cycle (ANCHOR_INTERVAL=5) can anchor the batch without it.
    const anchor = await api.post("/v1/anchor", { batch_id: batch.body.id, callback_url: receiver.url("/anchored") }, A);
    expect(anchor.status).toBe(202);
    const types = (all: Received[]) => onPath("/a")(all).map((r) => verify(secrets.A, r)).filter((m) => m.data.batch_id === batch.body.id || m.data.batch_ids?.includes(batch.body.id)).map((m) => m.type);
    await receiver.waitFor((all) => ["batch.registered", "anchor.confirmed", "batch.anchored"].every((t) => types(all).includes(t)), 90_000);
    const confirmed = onPath("/a")(receiver.received).map((r) => verify(secrets.A, r)).find((m) => m.type === "anchor.confirmed");
    expect(confirmed.data).toMatchObject({ tenant_id: tenants.A.id, batch_ids: [batch.body.id], tx_hash: expect.stringMatching(/^0x/) });
    const [callback] = onPath("/anchored")(await receiver.waitFor((all) => onPath("/anchored")(all).length >= 1, 30_000));
    expect(verify(cb.body.secret, callback)).toMatchObject({ type: "batch.anchored", data: { tenant_id: tenants.A.id, batch_id: batch.body.id } });
    const ch = await api.get(`/v1/webhooks/${cb.body.id}/deliveries`, A);
    expect(ch.body.items[0]).toMatchObject({ event_type: "batch.anchored", url: receiver.url("/anchored") });
  }, 120_000);

  it("delivers 1,000 events, each exactly under one webhook-id", async () => {
    if (!available) return;
    const B = tenants.B.key;
    const ep = await api.post("/v1/webhooks", { url: receiver.url("/bulk"), events: ["batch.registered"] }, B);
    expect(ep.status).toBe(201);
    const N = 1000;
    const batchIds = Array.from({ length: N }, () => crypto.randomUUID());
    const t0 = Date.now();
    // As the factory would write them: outbox rows, relayed to webhooks.onEvent.
    await pg.query(
      `INSERT INTO outbox (topic, payload, pending)
       SELECT 'batch.registered', jsonb_build_object('tenant_id', $1::text, 'batch_id', b, 'products', 1), '{webhooks.onEvent}' FROM unnest($2::text[]) AS b`,
      [tenants.B.id, batchIds],
    );
    const idOf = new Map<string, Set<string>>();
    const distinct = () => {
      idOf.clear();
      for (const r of onPath("/bulk")(receiver.received)) {
        const batch = JSON.parse(r.body).data.batch_id;
        idOf.set(batch, (idOf.get(batch) ?? new Set()).add(r.headers["webhook-id"]));
      }
      return idOf.size;
    };
    await receiver.waitFor(() => distinct() >= N, 120_000);
    const seconds = (Date.now() - t0) / 1000;
    const got = onPath("/bulk")(receiver.received);
    for (const r of got) verify(ep.body.secret, r);
    expect(idOf.size).toBe(N);
    for (const b of batchIds) expect(idOf.get(b)?.size).toBe(1);
    expect(new Set(got.map((r) => r.headers["webhook-id"])).size).toBe(N);
    const rows = await until(
      () => pg.query("SELECT status, count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 GROUP BY status", [ep.body.id]),
      (r) => r.rows.length === 1 && r.rows[0].status === "succeeded",
    );
    expect(rows.rows[0].n).toBe(N);
    const byNode = await pg.query(
      "SELECT node, count(*)::int AS n FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1 GROUP BY node",
      [ep.body.id],
    );
    // eslint-disable-next-line no-console
    console.log(`webhooks: ${N} events delivered in ${seconds.toFixed(1)} s (${got.length} requests; by node: ${byNode.rows.map((r: any) => `${r.node}=${r.n}`).join(", ")})`);
    expect(byNode.rows.length).toBe(2); // both webhooks nodes took a share
  }, 180_000);

  it("survives the delivering process being SIGKILLed mid-delivery: another node delivers, same webhook-id", async () => {
    if (!available) return;
    const A = tenants.A.key;
    const ep = await api.post("/v1/webhooks", { url: receiver.url("/kill"), events: ["fraud.reported"] }, A);
    receiver.setHandler((r) => (r.path === "/kill" && onPath("/kill")(receiver.received).length === 1 ? "hang" : { status: 200 }));
    await pg.query(
      "INSERT INTO outbox (topic, payload, pending) VALUES ('fraud.reported', $1::jsonb, '{webhooks.onEvent}')",
      [JSON.stringify({ tenant_id: tenants.A.id, report_id: crypto.randomUUID(), reason: "counterfeit" })],
    );
    const [first] = onPath("/kill")(await receiver.waitFor((all) => onPath("/kill")(all).length >= 1, 30_000));
    const id = first.headers["webhook-id"];
    const held = await pg.query("SELECT id, leased_by FROM webhook_deliveries WHERE webhook_id = $1 AND endpoint_id = $2", [id, ep.body.id]);
    const victim = held.rows[0].leased_by as string;
    expect(Object.keys(workers)).toContain(victim);
    await workers[victim].stop("SIGKILL");
    const survivor = Object.keys(workers).find((k) => k !== victim)!;
    const got = onPath("/kill")(await receiver.waitFor((all) => onPath("/kill")(all).length >= 2, 30_000));
    expect(got[1].headers["webhook-id"]).toBe(id);
    expect(verify(ep.body.secret, got[1]).type).toBe("fraud.reported");
    const detail = await until(() => api.get(`/v1/webhooks/${ep.body.id}/deliveries/${held.rows[0].id}`, A), (r) => r.body.status === "succeeded");
    expect(detail.body.history.map((h: any) => h.node)).toEqual([victim, survivor]);
    expect(detail.body.history[0].error).toMatch(/stopped mid-delivery/);
    expect(detail.body.history[1]).toMatchObject({ response_status: 200 });
  }, 60_000);
});
