// 5. Chain RPC unreachable during anchoring: the anchor stays pending, is retried, and the batch is
// anchored exactly once. The chain is the cluster's own JSON-RPC dev chain with its state on disk; the
// anchor nodes (two, so leadership is tried too) reach it through a proxy (chaos/rpc-proxy.ts).
//   A. the chain server stopped (and the RPC port refusing) while a batch waits to be anchored, then
//      started again on the same port with the same data directory;
//   B. the answer to eth_sendRawTransaction lost after the chain accepted the transaction;
//   C. the RPC going away right after accepting a transaction, before its receipt is read.
// Every transaction on the chain is then read back: no period root may be carried twice.
import { tempDir, onCleanup } from "../infra";
import { startRpcProxy, ProxyMode } from "../rpc-proxy";
import { withDb } from "../checks";
import { startCluster, seedTenant, registerBatch, sleep, secs } from "../cluster";
import { client } from "../../test/support/http";
import { freePort } from "../../test/support/node-process";
import { decodeAnchorCalldata } from "../../lib/anchor-payload";
import type { Scenario } from "./types";

async function rpc(url: string, method: string, params: unknown[] = []) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
  const body: any = await res.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

/** Every anchoring transaction on the chain, by the root it carries. */
export async function anchorsOnChain(url: string): Promise<Map<string, string[]>> {
  const head = Number(BigInt(await rpc(url, "eth_blockNumber")));
  const byRoot = new Map<string, string[]>();
  for (let n = 0; n <= head; n++) {
    const block = await rpc(url, "eth_getBlockByNumber", ["0x" + n.toString(16), true]);
    for (const tx of block?.transactions ?? []) {
      const root = decodeAnchorCalldata(tx.input ?? tx.data ?? "");
      if (!root) continue;
      const k = root.toString("hex");
      byRoot.set(k, [...(byRoot.get(k) ?? []), tx.hash]);
    }
  }
  return byRoot;
}

export const chainRpcDown: Scenario = {
  id: 5,
  name: "Chain RPC unreachable",
  fault: "the chain RPC stopped while anchoring is due (restarted on its port with its data), a lost eth_sendRawTransaction answer, the RPC gone between submission and receipt",
  budget: (quick) => (quick ? 180 : 360),
  async run({ quick, rec }) {
    const downMs = quick ? 12_000 : 30_000;
    const chainPort = await freePort();
    const chainUrl = `http://127.0.0.1:${chainPort}`;
    const proxy = await startRpcProxy(chainUrl);
    onCleanup("rpc proxy", () => proxy.close());
    const h = await startCluster(rec, {
      name: "chaos5",
      infra: { chainDataDir: tempDir("chain5"), chainPort },
      env: { ANCHOR_RPC_URL: proxy.url, ANCHOR_INTERVAL: "2", ANCHOR_CONFIRMATIONS: "1" },
      groups: [
        { name: "anchor", services: "anchor", count: 2 },
        { name: "api", services: "api,admin,factory,scan,webhooks", count: 1 },
      ],
    });
    const api = client(h.baseUrl);
    const t = await seedTenant(h.baseUrl);
    const db = h.env.databaseUrl;
    const periodsOf = (batchId: string) =>
      withDb(db, async (c) =>
        (await c.query(
          `SELECT p.id, p.status, p.attempts, p.last_error, p.root, p.tx_hash FROM period_leaves l JOIN periods p ON p.id = l.period_id
            WHERE l.kind = 'batch' AND l.ref = $1 ORDER BY p.created_at`,
          [batchId],
        )).rows,
      );
    const anchorStatus = async (batchId: string) => {
      const r = await api.get(`/v1/anchor/${batchId}`, t.key).catch(() => null);
      return r ? (r.status === 200 ? r.body.status : `http ${r.status}`) : "unreachable";
    };
    const waitFinal = async (batchId: string, ms: number) => {
      const end = Date.now() + ms;
      let s = "";
      while (Date.now() < end) {
        s = await anchorStatus(batchId);
        if (s === "final" || s === "failed") break;
        await sleep(500);
      }
      return s;
    };
    const requested: { label: string; batchId: string; status: number; final?: string; finalAfterS?: number }[] = [];
    const ask = async (label: string) => {
      const b = await registerBatch(h.baseUrl, t.key, 5, `chaos5-${label}`);
      const r = await api.post("/v1/anchor", { batch_id: b.id }, t.key);
      const entry: (typeof requested)[number] = { label, batchId: b.id, status: r.status };
      requested.push(entry);
      return entry;
    };

    // A. RPC down (chain server stopped, port refusing) while the batch waits for its anchor.
    await proxy.setMode("refuse");
    await h.env.chain.stop();
    rec.log("chain RPC down (chain server stopped)");
    const a = await ask("A");
    const tDown = Date.now();
    const seenStatuses = new Set<string>();
    while (Date.now() - tDown < downMs) {
      seenStatuses.add(await anchorStatus(a.batchId));
      await sleep(1000);
    }
    const duringOutage = await periodsOf(a.batchId);
    await h.env.chain.start();
    await proxy.setMode("pass");
    const tUp = Date.now();
    rec.log(`chain RPC back after ${secs(tUp - tDown)} s (same port, same data directory)`);
    a.final = await waitFinal(a.batchId, 90_000);
    a.finalAfterS = secs(Date.now() - tUp);
    const attempts = duringOutage.reduce((n: number, p: any) => Math.max(n, Number(p.attempts) || 0), 0);
    rec.figure("A_rpc_down", { down_s: downMs / 1000, statuses_seen: [...seenStatuses], periods: duringOutage.map((p: any) => ({ status: p.status, attempts: p.attempts, last_error: String(p.last_error ?? "").slice(0, 120) })), final_after_s: a.finalAfterS });
    rec.check("A: the anchor request is accepted while the RPC is down", a.status === 202, `POST /v1/anchor → ${a.status}`);
    rec.check("A: the anchor stays pending while the RPC is unreachable", [...seenStatuses].every((s) => s === "pending"), `statuses seen: ${[...seenStatuses].join(", ")}`);
    rec.check("A: submission is retried during the outage", attempts >= 2, `${attempts} attempts recorded on its period (${duringOutage.length} period(s))`);
    rec.check("A: anchored once the RPC is back", a.final === "final", `status ${a.final} ${a.finalAfterS} s after the RPC returned`);

    // B and C: the transaction reaches the chain but the node does not hear so.
    const faults: [string, ProxyMode, string][] = [
      ["B", "drop-send-response", "the answer to eth_sendRawTransaction lost"],
      ["C", "down-after-send", "the RPC down right after accepting the transaction"],
    ];
    for (const [label, mode, what] of faults) {
      await proxy.setMode(mode, { downMs: quick ? 6000 : 15_000 });
      const e = await ask(label);
      const t0 = Date.now();
      e.final = await waitFinal(e.batchId, 90_000);
      e.finalAfterS = secs(Date.now() - t0);
      await proxy.setMode("pass");
      const ps = await periodsOf(e.batchId);
      rec.figure(`${label}_${mode}`, { final_after_s: e.finalAfterS, periods: ps.map((p: any) => ({ status: p.status, attempts: p.attempts })) });
      rec.check(`${label}: anchored after ${what}`, e.status === 202 && e.final === "final", `POST → ${e.status}, status ${e.final} after ${e.finalAfterS} s`);
    }
    rec.figure("proxy", proxy.counts);
    rec.check("the faults happened as planned", proxy.counts.droppedSendResponses === 1 && proxy.counts.refusedPeriods >= 2, JSON.stringify(proxy.counts));

    // Exactly once: on chain, and in the database.
    const onChain = await anchorsOnChain(chainUrl);
    const doubles = [...onChain.entries()].filter(([, txs]) => txs.length > 1);
    const perBatch = await Promise.all(
      requested.map(async (r) => {
        const ps = await periodsOf(r.batchId);
        const finals = ps.filter((p: any) => p.status === "final");
        const txs = finals.length === 1 ? onChain.get(finals[0].root)?.length ?? 0 : 0;
        // Roots of this batch's other periods that made it on chain too (a second anchor of the batch).
        const otherOnChain = ps.filter((p: any) => p.status !== "final" && onChain.has(p.root)).length;
        const batch = (await api.get(`/v1/batches/${r.batchId}`, t.key)).body;
        return { label: r.label, final_periods: finals.length, txs_for_root: txs, other_periods_on_chain: otherOnChain, batch_status: batch?.status };
      }),
    );
    rec.figure("anchors", { on_chain_roots: onChain.size, on_chain_txs: [...onChain.values()].reduce((n, x) => n + x.length, 0), per_batch: perBatch });
    rec.check("no root is anchored twice on chain", doubles.length === 0, doubles.length ? doubles.map(([root, txs]) => `${root.slice(0, 12)}… in ${txs.length} txs`).join("; ") : `${onChain.size} roots, one transaction each`);
    const once = perBatch.filter((b) => b.final_periods === 1 && b.txs_for_root === 1 && b.other_periods_on_chain === 0);
    rec.check("each batch is anchored exactly once (one final period, one transaction)", once.length === requested.length, JSON.stringify(perBatch));
    rec.check("each batch is marked anchored", perBatch.every((b) => b.batch_status === "anchored"), perBatch.map((b) => `${b.label}: ${b.batch_status}`).join(", "));
    const accepted = requested.filter((r) => r.status === 202).length;
    rec.count({ unit: "anchors", sent: requested.length, acknowledged: accepted, stored: once.length, lost: Math.max(0, accepted - once.length) });
  },
};
