// The scan path's cacher when Redis is gone or hangs: a miss, never a failed action, and the
// breaker skips Redis for a while instead of paying the command timeout on every scan.
import net from "node:net";
import { ServiceBroker } from "moleculer";
import { ResilientRedisCacher } from "../../mixins/resilient-cacher";

function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  // Accepts connections and never answers: a Redis that hangs.
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
  });
  return new Promise((resolve) =>
    srv.listen(0, "127.0.0.1", () =>
      resolve({
        port: (srv.address() as net.AddressInfo).port,
        close: () => new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          srv.close(() => r());
        }),
      }),
    ),
  );
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function brokerWith(cacher: ResilientRedisCacher) {
  const broker = new ServiceBroker({ logger: false, cacher });
  let calls = 0;
  broker.createService({
    name: "p",
    actions: {
      get: {
        cache: { keys: ["id"], ttl: 60 },
        handler(ctx: any) {
          calls++;
          return { id: ctx.params.id, status: "active" };
        },
      },
    },
  });
  return { broker, calls: () => calls };
}

const redisOpts = (port: number, extra: object = {}) => ({
  host: "127.0.0.1",
  port,
  commandTimeout: 100,
  maxRetriesPerRequest: 0,
  enableOfflineQueue: false,
  lazyConnect: false,
  ...extra,
});

describe("ResilientRedisCacher", () => {
  it("answers from the handler when Redis refuses connections, with no unhandled rejection", async () => {
    const cacher = new ResilientRedisCacher({ prefix: "t", ttl: 60, redis: redisOpts(await closedPort()) });
    const { broker, calls } = brokerWith(cacher);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    await broker.start();
    try {
      for (let i = 0; i < 5; i++) expect(await broker.call("p.get", { id: "a" })).toEqual({ id: "a", status: "active" });
      expect(calls()).toBe(5);
      await expect(cacher.get("x")).resolves.toBeUndefined();
      await expect(cacher.set("x", { a: 1 })).resolves.toBeNull();
      await expect(cacher.del("x")).resolves.toBe(0);
      await expect(cacher.clean("*")).resolves.toBeNull();
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      await broker.stop();
    }
  });

  it("gives up on a hanging Redis after the 100 ms command timeout, then skips it while the breaker is open", async () => {
    const srv = await silentServer();
    // No ready check: the client believes it is connected, as with a Redis that stopped answering.
    const cacher = new ResilientRedisCacher({ prefix: "t", ttl: 60, reopenMs: 1000, redis: redisOpts(srv.port, { enableReadyCheck: false }) });
    const { broker, calls } = brokerWith(cacher);
    await broker.start();
    try {
      // Wait until the client believes it is connected (it is, at the TCP level).
      for (let i = 0; i < 100 && !(cacher as any).connected; i++) await new Promise((r) => setTimeout(r, 20));
      expect((cacher as any).connected).toBe(true);
      let t0 = Date.now();
      expect(await broker.call("p.get", { id: "a" })).toEqual({ id: "a", status: "active" });
      const first = Date.now() - t0;
      expect(first).toBeGreaterThanOrEqual(90);
      expect(first).toBeLessThan(600);
      expect(cacher.open).toBe(true);
      t0 = Date.now();
      for (let i = 0; i < 20; i++) await broker.call("p.get", { id: "a" });
      expect(Date.now() - t0).toBeLessThan(200);
      expect(calls()).toBe(21);
      // After reopenMs Redis is tried again (and still hangs: one more timeout, then open again).
      await new Promise((r) => setTimeout(r, 1050));
      expect(cacher.open).toBe(false);
      t0 = Date.now();
      await broker.call("p.get", { id: "a" });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
      expect(cacher.open).toBe(true);
    } finally {
      await broker.stop();
      await srv.close();
    }
  });
});
