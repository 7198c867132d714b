// The journey on real Postgres, Redis and NATS, the services split over two broker processes that
// can only reach each other over NATS: api+scan in one, factory+anchor+admin in the other.
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { runJourney, ADMIN } from "../support/journey";
import { client } from "../support/http";

describe("journey on a two-process cluster over NATS", () => {
  let available = false;
  let cluster: ClusterEnv;
  let gateway: NodeHandle;
  let workers: NodeHandle;
  let base: string;

  beforeAll(async () => {
    available = await needServices("journey-cluster", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("journey");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const common = { ...cluster.env, VERIFICATION_URL_BASE: base, ANCHOR_INTERVAL: "1", VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password };
    workers = await startNode({ ...common, SERVICES: "factory,anchor,admin,webhooks", NODE_ID: "workers-1" });
    gateway = await startNode({ ...common, SERVICES: "api,scan", NODE_ID: "gateway-1", PORT: String(port) });
  });

  afterAll(async () => {
    await gateway?.stop();
    await workers?.stop();
    await cluster?.close();
  });

  it("carries one batch from registration to a verified proof across processes", async () => {
    if (!available) return;
    const r = await runJourney(base);
    // Each process ran only its own services: the factory's work happened on the other node.
    expect(gateway.logs.join("\n")).not.toMatch(/"svc":"factory"/);
    expect(workers.logs.join("\n")).toMatch(/"svc":"factory"/);
    expect(r.products).toHaveLength(3);
  });

  it("reports every dependency ready, by name", async () => {
    if (!available) return;
    const ready = await client(base).get("/v1/ready");
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toMatchObject({ nats: { ok: true }, redis: { ok: true }, postgres: { ok: true }, chain: { ok: true } });
  });

  it("answers 503 naming the missing service when its node is gone", async () => {
    if (!available) return;
    await workers.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 6000)); // heartbeatTimeout is 4 s
    const api = client(base);
    const ready = await api.get("/v1/ready");
    expect(ready.status).toBe(503);
    expect(ready.headers.get("retry-after")).toBeTruthy();
    expect(ready.body.failing).toEqual(expect.arrayContaining(["factory", "anchor", "admin", "webhooks"]));
    const login = await api.post("/v1/auth/login", ADMIN);
    expect(login.status).toBe(503);
    expect(login.body.error.code).toBe("SERVICE_UNAVAILABLE");
  });
});
