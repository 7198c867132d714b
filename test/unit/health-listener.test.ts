// The probe listener (mixins/health-listener.ts) on a real broker: /v1/health answers once started,
// /v1/ready reflects this node's own services only, a failing local dependency is a 503 that names
// it, Redis does not fail readiness, and the api's cluster-wide readiness action is never called.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { ServiceBroker } from "moleculer";
import { startHealthListener, nodeReadiness } from "../../mixins/health-listener";

let broker: ServiceBroker;
let server: http.Server;
let base: string;
const state = { postgres: true, apiReadyCalled: 0, listening: true };

beforeAll(async () => {
  broker = new ServiceBroker({ logger: false, nodeID: "probe-test" });
  broker.createService({
    name: "scan",
    actions: {
      ready: () => (state.postgres ? { postgres: { ok: true } } : { postgres: { ok: false, detail: "connection refused" } }),
    },
  });
  broker.createService({ name: "worker", actions: { other: () => 1 } });
  broker.createService({
    name: "api",
    actions: {
      ready: () => {
        state.apiReadyCalled++;
        return { factory: { ok: false } };
      },
    },
    created(this: any) {
      this.httpServer = { get listening() { return state.listening; } };
    },
  });
  await broker.start();
  server = await startHealthListener(broker, { port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await broker.stop();
});

async function get(path: string) {
  const res = await fetch(base + path);
  return { status: res.status, body: (await res.json()) as any, retryAfter: res.headers.get("retry-after") };
}

it("answers /v1/health with the node's id", async () => {
  const r = await get("/v1/health");
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ status: "ok", node: "probe-test" });
});

it("is ready when this node's services are, without asking the api's cluster-wide readiness", async () => {
  state.postgres = true;
  const r = await get("/v1/ready");
  expect(r.status).toBe(200);
  expect(r.body.checks).toEqual({ postgres: { ok: true }, http: { ok: true } });
  expect(state.apiReadyCalled).toBe(0);
});

it("answers 503 with Retry-After naming the failing local dependency", async () => {
  state.postgres = false;
  const r = await get("/v1/ready");
  expect(r.status).toBe(503);
  expect(r.retryAfter).toBe("5");
  expect(r.body.failing).toEqual(["postgres"]);
  expect(r.body.checks.postgres.detail).toBe("connection refused");
  state.postgres = true;
});

it("is not ready while the gateway's port is closed", async () => {
  state.listening = false;
  const r = await get("/v1/ready");
  expect(r.status).toBe(503);
  expect(r.body.failing).toEqual(["http"]);
  state.listening = true;
});

it("reports Redis without failing on it (the cacher degrades to no cache)", async () => {
  const b: any = broker;
  const saved = b.cacher;
  b.cacher = { client: { ping: () => Promise.reject(new Error("ECONNREFUSED")) } };
  try {
    const r = await nodeReadiness(broker);
    expect(r.ready).toBe(true);
    expect(r.checks.redis).toMatchObject({ ok: false, critical: false });
  } finally {
    b.cacher = saved;
  }
});

it("answers 404 elsewhere and 405 to other methods", async () => {
  expect((await get("/v1/scan")).status).toBe(404);
  const res = await fetch(base + "/v1/health", { method: "POST" });
  expect(res.status).toBe(405);
});
