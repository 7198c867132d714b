// Two anchor nodes (child processes) on one cluster: real Postgres, NATS, Redis and a JSON-RPC dev
// chain. Batches keep arriving; each ANCHOR_INTERVAL slot gets at most one period and every period
// exactly one transaction, whichever node holds the lock. Midway the node that anchored last is
// killed (SIGKILL): the other carries on, finishing what it left, with no nonce reused or skipped.
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "../support/node-process";
import { needServices } from "../support/services";
import { createClusterEnv, ClusterEnv } from "../support/cluster";
import { ADMIN } from "../support/journey";
import { client, until } from "../support/http";
import { connectRpc, type ChainClient } from "../../lib/chain";
import { decodeAnchorCalldata } from "../../lib/anchor-payload";

const INTERVAL = 2;

describe("two anchor nodes: one transaction per period, cluster-wide", () => {
  let available = false;
  let cluster: ClusterEnv;
  let gateway: NodeHandle;
  const anchors: Record<string, NodeHandle> = {};
  let base: string;
  let pg: Client;
  let chain: ChainClient;

  beforeAll(async () => {
    available = await needServices("anchor-leader", ["postgres", "redis", "nats"]);
    if (!available) return;
    cluster = await createClusterEnv("anchor_leader");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const common = {
      ...cluster.env,
      VERIFICATION_URL_BASE: base,
      VOKETAG_ADMIN_EMAIL: ADMIN.email,
      VOKETAG_ADMIN_PASSWORD: ADMIN.password,
      ANCHOR_INTERVAL: String(INTERVAL),
      ANCHOR_POLL_INTERVAL: "1",
    };
    [gateway, anchors["anchor-1"], anchors["anchor-2"]] = await Promise.all([
      startNode({ ...common, SERVICES: "api,factory,admin,scan", NODE_ID: "gateway-1", PORT: String(port) }),
      startNode({ ...common, SERVICES: "anchor", NODE_ID: "anchor-1" }),
      startNode({ ...common, SERVICES: "anchor", NODE_ID: "anchor-2" }),
    ]);
    pg = new Client({ connectionString: cluster.databaseUrl });
    await pg.connect();
    chain = connectRpc(cluster.rpcUrl, cluster.env.ANCHOR_PRIVATE_KEY);
  });

  afterAll(async () => {
    await Promise.all([gateway?.stop(), ...Object.values(anchors).map((n) => n.stop())]);
    await pg?.end();
    await chain?.close();
    await cluster?.close();
  });

  const openedBy = (node: string) =>
    anchors[node].logs
      .map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return null;
        }
      })
      .filter((l) => l?.msg === "anchor period opened")
      .map((l) => l.period_id as string);

  it("keeps one transaction per period while batches arrive and the leader is killed", async () => {
    if (!available) return;
    const api = client(base);
    const login = await api.post("/v1/auth/login", ADMIN);
    const jwt = { authorization: `Bearer ${login.body.access_token}` };
    const tenant = await api.post("/v1/admin/tenants", { name: "Leader Co" }, jwt);
    const key = { "x-api-key": (await api.post(`/v1/admin/tenants/${tenant.body.id}/api-keys`, { name: "k" }, jwt)).body.key };

    const batches: string[] = [];
    let killed: string | null = null;
    let openedBeforeKill = 0;
    const t0 = Date.now();
    for (let i = 0; Date.now() - t0 < 12_000; i++) {
      const r = await api.post("/v1/batches", { products: [{ sku: "S", name: "N", serial: `L-${i}-a` }, { sku: "S", name: "N", serial: `L-${i}-b` }] }, key);
      expect(r.status).toBe(202);
      batches.push(r.body.id);
      if (!killed && Date.now() - t0 > 6_000) {
        // The node that opened the latest period is (or was just) the leader: kill it mid-stride.
        const latest = (await pg.query("SELECT id FROM periods ORDER BY created_at DESC LIMIT 1")).rows[0]?.id;
        killed = openedBy("anchor-1").includes(latest) ? "anchor-1" : "anchor-2";
        await anchors[killed].stop("SIGKILL");
        openedBeforeKill = openedBy(killed === "anchor-1" ? "anchor-2" : "anchor-1").length;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const survivor = killed === "anchor-1" ? "anchor-2" : "anchor-1";

    // Every batch ends anchored, the survivor finishing on its own.
    try {
      await until(
        async () => (await pg.query("SELECT count(*)::int AS n FROM batches WHERE id = ANY($1::uuid[]) AND status = 'anchored'", [batches])).rows[0].n,
        (n) => n === batches.length,
        45_000,
        500,
      );
    } catch (err) {
      const trouble = (n: NodeHandle) => n.logs.filter((l) => /"level":(40|50|60)/.test(l)).slice(-15).join("\n");
      const periods = (await pg.query("SELECT status, count(*)::int AS n, max(last_error) AS err FROM periods GROUP BY status")).rows;
      throw new Error(`${(err as Error).message}\nkilled ${killed}; periods ${JSON.stringify(periods)}\n${survivor}:\n${trouble(anchors[survivor])}\ngateway:\n${trouble(gateway)}`);
    }
    // Batches kept coming after the kill: only the survivor can have anchored them.
    expect(openedBy(survivor).length).toBeGreaterThan(openedBeforeKill);

    const periods = (await pg.query("SELECT id, root, status, slot_start, tx_hash, nonce FROM periods ORDER BY created_at")).rows;
    expect(periods.every((p) => p.status === "final")).toBe(true);
    // One period per slot: no two nodes opened a period in the same interval.
    expect(new Set(periods.map((p) => new Date(p.slot_start).getTime())).size).toBe(periods.length);
    // Every opened period was opened by exactly one node, and each was logged by whoever opened it.
    const opened = [...openedBy("anchor-1"), ...openedBy("anchor-2")];
    expect(new Set(opened).size).toBe(opened.length);
    expect(periods.map((p) => p.id).every((id) => opened.includes(id))).toBe(true);
    // Every batch in exactly one period.
    const leaves = (await pg.query("SELECT ref, count(*)::int AS n FROM period_leaves WHERE kind = 'batch' GROUP BY ref")).rows;
    expect(leaves).toHaveLength(batches.length);
    expect(leaves.every((l) => l.n === 1)).toBe(true);

    // On chain: exactly one anchoring transaction per period, nonces 0..n-1 each once.
    const head = await chain.blockNumber();
    const ours: { root: string | null; nonce: number; hash: string }[] = [];
    for (let n = 0; n <= head; n++) {
      const block = await chain.request("eth_getBlockByNumber", ["0x" + n.toString(16), true]);
      for (const tx of block.transactions)
        if (tx.from.toLowerCase() === chain.address.toLowerCase()) ours.push({ root: decodeAnchorCalldata(tx.input)?.toString("hex") ?? null, nonce: Number(BigInt(tx.nonce)), hash: tx.hash });
    }
    expect(ours).toHaveLength(periods.length);
    expect(ours.map((t) => t.root).sort()).toEqual(periods.map((p) => p.root).sort());
    expect(ours.map((t) => t.hash).sort()).toEqual(periods.map((p) => p.tx_hash).sort());
    expect(ours.map((t) => t.nonce).sort((a, b) => a - b)).toEqual(ours.map((_, i) => i));
    // Batches arrived for ~12 s at one period per 2-s slot at most.
    expect(periods.length).toBeGreaterThanOrEqual(3);
    expect(periods.length).toBeLessThanOrEqual(Math.ceil((Date.now() - t0) / 1000 / INTERVAL) + 1);
  }, 120_000);
});
