// WORKERS=n: one node forks n brokers sharing its HTTP port over NATS. Both serve, a worker that is
// SIGKILLed is started again, and SIGTERM stops the lot within the 10 s budget.
import { execFileSync } from "node:child_process";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { needServices } from "../support/services";
import { until } from "../support/http";

function childrenOf(pid: number): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Node ids answering /v1/health over fresh connections (each may land on another worker). */
async function nodesSeen(base: string, tries = 40): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) {
    const r = await fetch(`${base}/v1/health`, { headers: { connection: "close" } });
    if (r.ok) seen.add(((await r.json()) as any).node);
  }
  return seen;
}

describe("WORKERS: several brokers behind one port", () => {
  let available = false;
  let cluster: ClusterEnv;
  let node: NodeHandle;
  let base: string;

  beforeAll(async () => {
    available = await needServices("workers", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("workers");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    node = await startNode({ ...cluster.env, PORT: String(port), WORKERS: "2", SERVICES: "api,scan", NODE_ID: "wtest", VERIFICATION_URL_BASE: base });
    // The port answers once the first worker listens; wait for the second too.
    await until(() => nodesSeen(base, 20), (s) => s.size === 2, 30_000, 200);
  }, 90_000);
  afterAll(async () => {
    await node?.stop("SIGKILL");
    for (const pid of node?.proc.pid ? childrenOf(node.proc.pid) : []) process.kill(pid, "SIGKILL");
    await cluster?.close();
  });

  it("serves from every worker, each a node of its own", async () => {
    if (!available) return;
    expect([...(await nodesSeen(base))].sort()).toEqual(["wtest-w0", "wtest-w1"]);
  });

  it("starts a SIGKILLed worker again", async () => {
    if (!available) return;
    const before = childrenOf(node.proc.pid!);
    expect(before).toHaveLength(2);
    process.kill(before[0], "SIGKILL");
    await until(async () => node.logs.some((l) => /worker exited; starting it again/.test(l)), Boolean, 10_000, 100);
    await until(() => nodesSeen(base, 20), (s) => s.size === 2, 60_000, 500);
    const after = childrenOf(node.proc.pid!);
    expect(after).toHaveLength(2);
    expect(after).not.toContain(before[0]);
  }, 90_000);

  it("stops every worker on SIGTERM within 10 s", async () => {
    if (!available) return;
    const workers = childrenOf(node.proc.pid!);
    const t0 = Date.now();
    const code = await node.stop("SIGTERM");
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(code).toBe(0);
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
  }, 30_000);
});
