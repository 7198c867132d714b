// A reusable multi-process cluster on this machine: start broker processes by service group over
// NATS, put load through them, kill and restart nodes, count what was acknowledged and stored.
// `npm run cluster`, the cluster tests and the chaos suite all stand on it.
import net from "node:net";
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "../test/support/node-process";
import { createClusterEnv, ClusterEnv, ClusterEnvOptions } from "../test/support/cluster";

export interface GroupSpec {
  name: string;
  services: string;
  count: number;
}

/** The default topology: api×2, scan×2, factory, anchor, admin+webhooks. */
export const DEFAULT_GROUPS: GroupSpec[] = [
  { name: "api", services: "api", count: 2 },
  { name: "scan", services: "scan", count: 2 },
  { name: "factory", services: "factory", count: 1 },
  { name: "anchor", services: "anchor", count: 1 },
  { name: "admin", services: "admin,webhooks", count: 1 },
];

export interface ClusterNode {
  id: string;
  group: string;
  env: Record<string, string>;
  handle: NodeHandle;
}

/** Round-robin TCP balancer in front of the api nodes, skipping ones that refuse connections. */
class Balancer {
  private server: net.Server;
  private next = 0;
  private clients = new Set<net.Socket>();
  constructor(private targets: () => number[]) {
    this.server = net.createServer((client) => {
      this.clients.add(client);
      client.once("close", () => this.clients.delete(client));
      this.route(client, 0);
    });
  }
  listen(port: number) {
    return new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", () => resolve()));
  }
  private route(client: net.Socket, tried: number) {
    const ports = this.targets();
    if (!ports.length || tried >= ports.length) return client.destroy();
    const port = ports[this.next++ % ports.length];
    const upstream = net.connect(port, "127.0.0.1");
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      client.pipe(upstream).pipe(client);
    });
    upstream.once("error", () => (connected ? client.destroy() : this.route(client, tried + 1)));
    client.once("error", () => upstream.destroy());
    client.once("close", () => upstream.destroy());
  }
  close() {
    // Clients' idle keep-alive connections would otherwise hold close() open for a minute.
    return new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const c of this.clients) c.destroy();
    });
  }
}

export interface LoadResult {
  sent: number;
  acknowledged: number;
  failed: number;
  statuses: Record<string, number>;
  scanIds: string[];
  latenciesMs: number[];
  p50: number;
  p95: number;
  p99: number;
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export class ClusterHarness {
  nodes: ClusterNode[] = [];
  baseUrl = "";
  private balancer: Balancer | null = null;
  private constructor(
    readonly env: ClusterEnv,
    private common: Record<string, string>,
  ) {}

  /** Starts every group (workers first, then the gateways) behind one balanced port. */
  static async start(opts: { groups?: GroupSpec[]; env?: Record<string, string>; name?: string; infra?: ClusterEnvOptions } = {}) {
    const clusterEnv = await createClusterEnv(opts.name ?? "cluster", opts.infra);
    const port = await freePort();
    const common = { ...clusterEnv.env, VERIFICATION_URL_BASE: `http://127.0.0.1:${port}`, ...(opts.env ?? {}) };
    const h = new ClusterHarness(clusterEnv, common);
    const groups = opts.groups ?? DEFAULT_GROUPS;
    // Migrations run once under an advisory lock, but starting one worker first keeps logs readable.
    const workers = groups.filter((g) => !g.services.split(",").includes("api"));
    const gateways = groups.filter((g) => g.services.split(",").includes("api"));
    const [first, ...rest] = workers.flatMap((g) => Array.from({ length: g.count }, (_, i) => ({ g, i })));
    const all = async (ps: Promise<unknown>[]) => {
      const failed = (await Promise.allSettled(ps)).find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    };
    try {
      if (first) await h.spawn(first.g, first.i);
      await all(rest.map(({ g, i }) => h.spawn(g, i)));
      await all(gateways.flatMap((g) => Array.from({ length: g.count }, (_, i) => h.spawn(g, i))));
    } catch (err) {
      // A node that failed to start must not leave the others (and the database) behind.
      await h.stop().catch(() => undefined);
      throw err;
    }
    h.balancer = new Balancer(() => h.nodes.filter((n) => n.group === "api" && n.handle.proc.exitCode === null && !n.handle.proc.signalCode).map((n) => n.handle.port!));
    await h.balancer.listen(port);
    h.baseUrl = `http://127.0.0.1:${port}`;
    return h;
  }

  private async spawn(g: GroupSpec, i: number) {
    const id = `${g.name}-${i + 1}`;
    const env: Record<string, string> = { ...this.common, SERVICES: g.services, NODE_ID: id };
    if (g.services.split(",").includes("api")) env.PORT = String(await freePort());
    const handle = await startNode(env);
    const node = { id, group: g.name, env, handle };
    this.nodes.push(node);
    return node;
  }

  node(id: string): ClusterNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** SIGKILL (or another signal) one node; it stays down until restart(). */
  async kill(id: string, signal: NodeJS.Signals = "SIGKILL") {
    return this.node(id).handle.stop(signal);
  }

  async restart(id: string) {
    const n = this.node(id);
    await n.handle.stop("SIGTERM");
    n.handle = await startNode(n.env);
    return n;
  }

  /**
   * Scans at a steady rate for a while: every request with its outcome; acknowledged = 200 with
   * a scan id (the consumer got a verdict).
   */
  async scanLoad(opts: { tokens: string[]; ratePerSecond: number; durationMs: number; concurrency?: number; timeoutMs?: number }): Promise<LoadResult> {
    const result: LoadResult = { sent: 0, acknowledged: 0, failed: 0, statuses: {}, scanIds: [], latenciesMs: [], p50: 0, p95: 0, p99: 0 };
    const end = Date.now() + opts.durationMs;
    const interval = 1000 / opts.ratePerSecond;
    const inflight = new Set<Promise<void>>();
    const limit = opts.concurrency ?? 64;
    let i = 0;
    for (let next = Date.now(); Date.now() < end; next += interval) {
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      while (inflight.size >= limit) await Promise.race(inflight);
      const token = opts.tokens[i++ % opts.tokens.length];
      result.sent++;
      const p = (async () => {
        const t0 = performance.now();
        try {
          const res = await fetch(`${this.baseUrl}/v1/scan`, {
            method: "POST",
            headers: { "content-type": "application/json", "user-agent": `load-${i % 50}` },
            body: JSON.stringify({ token }),
            signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
          });
          const body: any = await res.json().catch(() => null);
          result.statuses[res.status] = (result.statuses[res.status] ?? 0) + 1;
          if (res.status === 200 && body?.scan?.id) {
            result.acknowledged++;
            result.scanIds.push(body.scan.id);
          } else result.failed++;
        } catch (err) {
          result.failed++;
          const k = (err as Error).name || "error";
          result.statuses[k] = (result.statuses[k] ?? 0) + 1;
        }
        result.latenciesMs.push(performance.now() - t0);
      })();
      inflight.add(p);
      p.finally(() => inflight.delete(p));
    }
    await Promise.all(inflight);
    const sorted = [...result.latenciesMs].sort((a, b) => a - b);
    result.p50 = percentile(sorted, 50);
    result.p95 = percentile(sorted, 95);
    result.p99 = percentile(sorted, 99);
    return result;
  }

  /** A query on the cluster's own database. */
  async sql<T = any>(text: string, params: unknown[] = []): Promise<T[]> {
    const c = new Client({ connectionString: this.env.databaseUrl });
    await c.connect();
    try {
      return (await c.query(text, params as any[])).rows as T[];
    } finally {
      await c.end();
    }
  }

  async stop() {
    await this.balancer?.close().catch(() => undefined);
    await Promise.all(this.nodes.map((n) => n.handle.stop("SIGTERM").catch(() => undefined)));
    await this.env.close();
  }
}
