// The node's probe listener on HEALTH_PORT: Kubernetes asks every pod about itself, whatever its
// services (most have no HTTP port). /v1/health: the process is up and its services have started.
// /v1/ready: this node's own dependencies answer — its NATS connection and the `ready` action of
// each local service (Postgres, the chain for anchor nodes). It deliberately does not ask the rest
// of the cluster, unlike the api's public /v1/ready: one anchor node losing its RPC endpoint must
// not take every gateway out of its Service. Redis is reported but does not fail readiness: the
// cacher degrades to no cache (mixins/resilient-cacher.ts) and the node keeps serving.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ServiceBroker } from "moleculer";

type Check = { ok: boolean; detail?: string; critical?: boolean; [k: string]: unknown };

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** This node's readiness: { ready, checks } with one entry per dependency, by name. */
export async function nodeReadiness(broker: ServiceBroker): Promise<{ ready: boolean; failing: string[]; checks: Record<string, Check> }> {
  const b = broker as any;
  const checks: Record<string, Check> = {};
  if (b.stopping || !b.started) checks.node = { ok: false, detail: b.stopping ? "stopping" : "starting" };
  if (b.transit) checks.nats = { ok: !!b.transit.connected };
  const client = b.cacher?.client;
  if (client?.ping) {
    try {
      await withTimeout(client.ping(), 500);
      checks.redis = { ok: true, critical: false };
    } catch (err) {
      checks.redis = { ok: false, critical: false, detail: (err as Error).message };
    }
  }
  await Promise.all(
    (b.services as any[]).map(async (svc) => {
      if (svc.name === "api") {
        // The gateway's own readiness action looks at the whole cluster; locally, its port is open.
        checks.http = { ok: !!svc.httpServer?.listening };
        return;
      }
      if (!svc.schema?.actions?.ready) return;
      try {
        const r = (await broker.call(`${svc.name}.ready`, {}, { nodeID: broker.nodeID, timeout: 2500, retries: 0 })) as Record<string, Check>;
        for (const [k, v] of Object.entries(r ?? {})) {
          // Two local services both report postgres: a failure from either is kept.
          if (!checks[k] || checks[k].ok) checks[k] = v;
        }
      } catch (err) {
        checks[svc.name] = { ok: false, detail: (err as Error).message };
      }
    }),
  );
  const failing = Object.entries(checks)
    .filter(([, c]) => !c.ok && c.critical !== false)
    .map(([k]) => k);
  return { ready: failing.length === 0, failing, checks };
}

export async function startHealthListener(broker: ServiceBroker, opts: { port: number; host?: string }): Promise<http.Server> {
  const startedAt = Date.now();
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...(status === 503 ? { "retry-after": "5" } : {}) });
      res.end(JSON.stringify(body));
    };
    const path = (req.url || "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, { error: { code: "METHOD_NOT_ALLOWED", message: "GET only" } });
    if (path === "/v1/health") return send(200, { status: "ok", node: broker.nodeID, uptime_s: Math.round((Date.now() - startedAt) / 1000) });
    if (path === "/v1/ready") {
      nodeReadiness(broker).then(
        (r) => send(r.ready ? 200 : 503, { status: r.ready ? "ready" : "unavailable", node: broker.nodeID, failing: r.failing, checks: r.checks }),
        (err) => send(503, { status: "unavailable", node: broker.nodeID, failing: ["node"], checks: { node: { ok: false, detail: String(err?.message ?? err) } } }),
      );
      return;
    }
    send(404, { error: { code: "NOT_FOUND", message: "the probe listener serves /v1/health and /v1/ready" } });
  });
  // Probes are short: idle sockets must not pile up.
  server.keepAliveTimeout = 5000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  broker.logger.info({ port: (server.address() as AddressInfo).port }, "health listener up");
  return server;
}
