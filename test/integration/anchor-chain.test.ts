// Anchoring against a real EVM over JSON-RPC (ANCHOR_RPC_URL): a dev chain served over HTTP on
// loopback by this test, behind a mempool proxy that can hold transactions (stuck) and drop sockets
// (crashes, lost answers). One in-process broker (factory + anchor) on a throwaway Postgres database,
// restarted where a scenario needs another configuration or a restart. Cycles are driven by the test
// (ANCHOR_INTERVAL is an hour) so every state can be observed.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ServiceBroker, Context } from "moleculer";
import AnchorService, { ANCHOR_METRICS, MAX_ATTEMPTS } from "../../services/anchor.service";
import FactoryService from "../../services/factory.service";
import { loadConfig } from "../../lib/config";
import { startDevChainServer } from "../../lib/devchain";
import { connectRpc, type ChainClient } from "../../lib/chain";
import { buildTree, serializeTree } from "../../lib/merkle";
import { decodeAnchorCalldata } from "../../lib/anchor-payload";
import { productLeafHash, verifyProofDocument, jsonRpcChainReader, type ProofDocument } from "../../lib/proof";
import { startChainMempool, type ChainMempool } from "../support/chain-mempool";
import { needServices } from "../support/services";
import { createTestDatabase } from "../support/test-database";
import { freePort } from "../support/node-process";
import { until } from "../support/http";

let available = false;
let dropDb: () => Promise<void> = async () => undefined;
let dbUrl: string;
let chainDir: string;
let chainPort: number;
let chainKey: string;
let chainServer: { url: string; close(): Promise<void> } | null = null;
let chain: ChainClient; // straight to the dev chain: evm_* controls and reading what is on chain
let mempool: ChainMempool;
let broker: ServiceBroker | null = null;
const TENANT_A = crypto.randomUUID();
const TENANT_B = crypto.randomUUID();

const it = ((name: string, fn: () => Promise<void>, t?: number) => global.it(name, async () => (available ? fn() : undefined), t)) as any;

async function startChain() {
  chainServer = await startDevChainServer({ port: chainPort, chainId: 31337, privateKey: chainKey, dataDir: chainDir });
}

async function startBroker(env: Record<string, string> = {}) {
  const config = loadConfig({
    VOKETAG_DATA_DIR: "memory://",
    DATABASE_URL: dbUrl,
    ANCHOR_RPC_URL: mempool.url,
    ANCHOR_PRIVATE_KEY: chainKey,
    ANCHOR_INTERVAL: "3600",
    ANCHOR_POLL_INTERVAL: "3600",
    ANCHOR_CONFIRMATIONS: "3",
    ANCHOR_RETRY_BACKOFF: "1",
    OUTBOX_POLL_MS: "100",
    WEBHOOKS_ALLOW_PRIVATE: "1",
    ...env,
  });
  broker = new ServiceBroker({ logger: false, metrics: { enabled: true, reporter: [] }, voketag: config } as any);
  broker.createService(FactoryService);
  broker.createService(AnchorService);
  await broker.start();
}

async function stopBroker() {
  await broker?.stop();
  broker = null;
}

const anchorSvc = () => broker!.getLocalService("anchor") as any;
const db = () => anchorSvc().db;
const cycle = (open: "auto" | "force" | "never" = "never") => broker!.call("anchor.cycle", { open }) as Promise<any>;
const rows = async (sql: string, params: unknown[] = []) => (await db().query(sql, params)).rows;

function ctxFor(tenant: string | null, method = "POST", pathName = "/") {
  return Context.create(broker!, null as any, {}, {
    meta: { principal: { type: "key", id: `key-${tenant}`, tenant_id: tenant, role: null, scopes: ["*"] }, http: { method, path: pathName }, client: { ip: "127.0.0.1" } },
  });
}
const call = (action: string, params: any, tenant: string | null = TENANT_A) => ctxFor(tenant).call(action, params) as Promise<any>;
const anchorStatus = (batchId: string, tenant = TENANT_A) => call("anchor.status", { batch_id: batchId }, tenant);

/** A registered batch written the way the factory writes one: products, leaves, stored tree. */
async function seedBatch(tenant = TENANT_A, n = 3): Promise<string> {
  const batchId = crypto.randomUUID();
  const products = Array.from({ length: n }, (_, i) => ({
    id: crypto.randomUUID(),
    sku: "OIL-500",
    name: "Olive oil 500 ml",
    serial: `SN-${crypto.randomBytes(6).toString("hex")}-${i}`,
    gtin: i % 2 ? "09506000134352" : null,
    lot: i % 2 ? "L1" : null,
    salt: crypto.randomBytes(16).toString("hex"),
  }));
  const leaves = products.map((p) => productLeafHash({ tag_id: p.id, tenant_id: tenant, batch_id: batchId, ...p }));
  const tree = buildTree(leaves);
  await db().tx(async (q: any) => {
    await q.query("INSERT INTO batches (id, tenant_id, status, total, done, root, tree, leaf_count, registered_at) VALUES ($1, $2, 'registered', $3, $3, $4, $5, $3, now())", [
      batchId,
      tenant,
      n,
      tree.root.toString("hex"),
      serializeTree(tree),
    ]);
    for (const [i, p] of products.entries())
      await q.query(
        "INSERT INTO products (id, tenant_id, batch_id, ordinal, sku, name, serial, gtin, lot, token_kid, salt, leaf_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'k1', $10, $11)",
        [p.id, tenant, batchId, i, p.sku, p.name, p.serial, p.gtin, p.lot, p.salt, leaves[i].toString("hex")],
      );
  });
  return batchId;
}

async function periodOf(batchId: string) {
  const r = await rows("SELECT p.* FROM period_leaves l JOIN periods p ON p.id = l.period_id WHERE l.kind = 'batch' AND l.ref = $1", [batchId]);
  expect(r).toHaveLength(1); // a batch is in exactly one period, ever
  return r[0];
}

/** Every transaction on the dev chain from the anchoring address, read block by block. */
async function anchorTxsOnChain(address = chain.address) {
  const head = await chain.blockNumber();
  const out: { hash: string; nonce: number; block: number; root: string | null }[] = [];
  for (let n = 0; n <= head; n++) {
    const block = await chain.request("eth_getBlockByNumber", ["0x" + n.toString(16), true]);
    for (const tx of block?.transactions ?? [])
      if (tx.from.toLowerCase() === address.toLowerCase())
        out.push({ hash: tx.hash, nonce: Number(BigInt(tx.nonce)), block: n, root: decodeAnchorCalldata(tx.input)?.toString("hex") ?? null });
  }
  return out;
}

async function mine(blocks = 1) {
  for (let i = 0; i < blocks; i++) await chain.request("evm_mine", []);
}
const metricValue = (name: string, labels: Record<string, string> = {}) => {
  const m: any = broker!.metrics.getMetric(name);
  const v = m?.get(labels);
  return v ? v.value : undefined;
};
/** God mode: a value in the settings table overrides the environment (the mixin caches it 5 s). */
async function setSetting(key: string, value: unknown) {
  if (value === null) await db().query("DELETE FROM settings WHERE key = $1", [key]);
  else await db().query("INSERT INTO settings (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", [key, JSON.stringify(value)]);
  anchorSvc()._settings?.clear();
}

beforeAll(async () => {
  available = await needServices("anchor-chain", ["postgres"]);
  if (!available) return;
  const tdb = await createTestDatabase("anchor_chain");
  dropDb = tdb.drop;
  dbUrl = tdb.url;
  chainDir = fs.mkdtempSync(path.join(os.tmpdir(), "voketag-anchor-chain-"));
  chainPort = await freePort();
  chainKey = "0x" + crypto.randomBytes(32).toString("hex");
  await startChain();
  chain = connectRpc(chainServer!.url, chainKey);
  mempool = await startChainMempool(chainServer!.url);
  await startBroker();
  await db().query("INSERT INTO tenants (id, name) VALUES ($1, 'Acme'), ($2, 'Globex')", [TENANT_A, TENANT_B]);
});

afterAll(async () => {
  await stopBroker().catch(() => undefined);
  await mempool?.close();
  await chainServer?.close().catch(() => undefined);
  await chain?.close();
  await dropDb();
  if (chainDir) fs.rmSync(chainDir, { recursive: true, force: true });
});

describe("the anchoring cycle on a JSON-RPC dev chain", () => {
  let firstBatch: string;
  let firstPeriod: any;

  it("POST /v1/anchor answers 202 with a job, the same job when asked again, and refuses unsafe callback URLs", async () => {
    firstBatch = await seedBatch(TENANT_A);
    const job = await ctxFor(TENANT_A, "POST", "/v1/anchor").call("anchor.request", { batch_id: firstBatch, callback_url: "https://hooks.example.com/anchored" });
    expect(job).toMatchObject({ batch_id: firstBatch, status: "pending" });
    const again: any = await call("anchor.request", { batch_id: firstBatch });
    expect(again.id).toBe((job as any).id);
    expect((await rows("SELECT callback_url FROM anchor_jobs WHERE batch_id = $1", [firstBatch]))[0].callback_url).toBe("https://hooks.example.com/anchored");
    await expect(call("anchor.request", { batch_id: await seedBatch(TENANT_A), callback_url: "http://169.254.169.254/latest" })).rejects.toMatchObject({ code: 400 });
    await expect(call("anchor.request", { batch_id: firstBatch }, TENANT_B)).rejects.toMatchObject({ code: 404 }); // another tenant's batch
    expect((await rows("SELECT action FROM audit_log WHERE action = 'anchor.request'")).length).toBe(1);
  });

  it("one transaction carries every waiting batch of every tenant: pending → submitted → confirmed(1), (2) → final(3)", async () => {
    const b2 = await seedBatch(TENANT_B, 5);
    expect((await anchorStatus(firstBatch)).status).toBe("pending");
    mempool.hold(true);
    const r = await cycle("force");
    expect(r).toMatchObject({ leader: true, submitted: 1 });
    firstPeriod = await periodOf(firstBatch);
    expect((await periodOf(b2)).id).toBe(firstPeriod.id);
    const waiting = await rows("SELECT count(*)::int AS n FROM period_leaves WHERE period_id = $1 AND kind = 'batch'", [firstPeriod.id]);
    expect(waiting[0].n).toBe(3); // both of tenant A's batches and tenant B's
    const submitted = await anchorStatus(firstBatch);
    expect(submitted).toMatchObject({ status: "submitted", confirmations: 0, period_id: firstPeriod.id, chain_id: 31337 });
    expect(submitted.tx_hash).toMatch(/^0x[0-9a-f]{64}$/);
    expect(mempool.held()).toHaveLength(1);
    await until(() => rows("SELECT status FROM batches WHERE id = $1", [b2]), (r) => r[0].status === "anchoring", 5000, 50);

    mempool.hold(false);
    await mempool.release();
    await cycle();
    expect(await anchorStatus(firstBatch)).toMatchObject({ status: "confirmed", confirmations: 1 });
    await mine();
    await cycle();
    expect(await anchorStatus(firstBatch)).toMatchObject({ status: "confirmed", confirmations: 2 });
    expect((await rows("SELECT status FROM batches WHERE id = $1", [firstBatch]))[0].status).toBe("anchoring"); // not before final
    await mine();
    await cycle();
    const final = await anchorStatus(firstBatch);
    expect(final).toMatchObject({ status: "final", confirmations: 3 });
    await until(() => rows("SELECT status FROM batches WHERE id = ANY($1::uuid[])", [[firstBatch, b2]]), (r) => r.every((x: any) => x.status === "anchored"), 5000, 50);

    const onChain = (await anchorTxsOnChain()).filter((t) => t.root === firstPeriod.root);
    expect(onChain).toHaveLength(1);
    expect(onChain[0].hash).toBe(final.tx_hash);
    expect(metricValue(ANCHOR_METRICS.transactions, { kind: "first" })).toBe(1);
  });

  it("a product's proof verifies against the chain: every check by name; the API, batch and transaction checks agree", async () => {
    const [p] = await rows("SELECT id FROM products WHERE batch_id = $1 ORDER BY ordinal LIMIT 1", [firstBatch]);
    const doc: ProofDocument = await call("anchor.proof", { id: p.id }, null);
    expect(doc.anchor).toMatchObject({ chain_id: 31337, address: chain.address, confirmations_required: 3 });
    const reader = jsonRpcChainReader((m, params) => chain.request(m, params));
    const result = await verifyProofDocument(doc, reader, { trustedAddresses: [chain.address] });
    expect(result.checks.map((c) => [c.name, c.ok])).toEqual(
      ["leaf", "batch_path", "batch_leaf", "period_path", "transaction", "sender", "chain", "block", "confirmations"].map((n) => [n, true]),
    );
    const api = await call("anchor.verifyProof", doc, null);
    expect(api.valid).toBe(true);
    const tampered = JSON.parse(JSON.stringify(doc));
    tampered.product.serial += "x";
    expect((await call("anchor.verifyProof", tampered, null)).checks.filter((c: any) => !c.ok).map((c: any) => c.name)).toEqual(["leaf"]);
    const batch = await call("anchor.verifyBatch", { batch_id: firstBatch }, null);
    expect(batch).toMatchObject({ valid: true });
    const tx = await call("anchor.verifyTransaction", { tx_id: doc.anchor.tx_hash }, null);
    expect(tx).toMatchObject({ is_voketag_anchor: true, anchored_root: firstPeriod.root, period: { id: firstPeriod.id, matches: true, batches: 3 } });
  });

  it("a duplicated anchor.confirmed (re-emitted or redelivered) does not emit batch.anchored twice", async () => {
    const [confirmed] = await rows("SELECT id, topic, payload, created_at FROM outbox WHERE topic = 'anchor.confirmed' AND payload->>'period_id' = $1", [firstPeriod.id]);
    // The same payload written again (a second emission) …
    await db().query("INSERT INTO outbox (topic, payload, pending) VALUES ('anchor.confirmed', $1::jsonb, '{factory.onEvent}')", [JSON.stringify(confirmed.payload)]);
    anchorSvc().pokeOutbox();
    // … and the original event delivered once more.
    await broker!.call("factory.onEvent", { id: Number(confirmed.id), type: "anchor.confirmed", timestamp: new Date(confirmed.created_at).toISOString(), data: confirmed.payload });
    await until(() => rows("SELECT count(*)::int AS n FROM outbox WHERE topic = 'anchor.confirmed' AND sent_at IS NULL AND 'factory.onEvent' = ANY(pending)"), (r) => r[0].n === 0, 5000, 50);
    const anchored = await rows("SELECT payload->>'batch_id' AS batch_id, count(*)::int AS n FROM outbox WHERE topic = 'batch.anchored' GROUP BY 1");
    expect(anchored).toHaveLength(3);
    expect(anchored.every((r: any) => r.n === 1)).toBe(true);
  });

  it("a reorg that drops the transaction sends the period back to pending and anchors it again; one final anchor per root", async () => {
    const batchId = await seedBatch(TENANT_A);
    const snapshot = await chain.request("evm_snapshot", []);
    await cycle("force");
    await cycle();
    const before = await anchorStatus(batchId);
    expect(before).toMatchObject({ status: "confirmed", confirmations: 1 });
    const period = await periodOf(batchId);

    await chain.request("evm_revert", [snapshot]); // the block holding the anchor is gone
    expect(await chain.transaction(before.tx_hash)).toBeNull();
    const reorgsBefore = metricValue(ANCHOR_METRICS.reorgs) ?? 0;
    await cycle(); // notices the drop, and sends the same signed transaction again
    const after = await periodOf(batchId);
    expect(after.reorgs).toBe(1);
    expect(after.status).toBe("submitted");
    expect(after.tx_hash).toBe(before.tx_hash); // the stored transaction, same nonce: it cannot land twice
    expect(metricValue(ANCHOR_METRICS.reorgs)).toBe(reorgsBefore + 1);
    await cycle();
    await mine(2);
    await cycle();
    expect(await anchorStatus(batchId)).toMatchObject({ status: "final", confirmations: 3, period_id: period.id });
    expect((await anchorTxsOnChain()).filter((t) => t.root === period.root)).toHaveLength(1);
    expect(await rows("SELECT id FROM periods WHERE root = $1 AND status = 'final'", [period.root])).toHaveLength(1);
    expect(await rows("SELECT tx_hash FROM anchor_txs WHERE period_id = $1", [period.id])).toHaveLength(1);
  });

  it("a transaction stuck past ANCHOR_STUCK_TIMEOUT is replaced at the same nonce with a higher fee, never above ANCHOR_MAX_FEE_GWEI", async () => {
    const suggested = await chain.feeData();
    // A cap with room for a few 12.5% bumps and no more (god-mode settings override the environment).
    const capGwei = Math.ceil(Number(suggested.maxFeePerGas) / 1e9 * 1.55);
    await setSetting("ANCHOR_MAX_FEE_GWEI", capGwei);
    await setSetting("ANCHOR_STUCK_TIMEOUT", 1);
    await setSetting("ANCHOR_CONFIRMATIONS", 1);
    try {
      const batchId = await seedBatch(TENANT_B);
      mempool.hold(true);
      const sentBefore = mempool.sent.length;
      await cycle("force");
      const period = await periodOf(batchId);
      for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, 1100));
        await cycle();
      }
      const sent = mempool.sent.slice(sentBefore);
      expect(new Set(sent.map((s) => s.nonce)).size).toBe(1); // one nonce throughout
      expect(sent[0].outcome).toBe("held");
      const replacements = sent.slice(1);
      expect(replacements.length).toBeGreaterThanOrEqual(2);
      expect(replacements.every((s) => s.outcome === "replaced-held")).toBe(true); // each paid enough more
      for (let i = 1; i < sent.length; i++) {
        expect(sent[i].maxFeePerGas).toBeGreaterThan(sent[i - 1].maxFeePerGas);
        expect(sent[i].maxPriorityFeePerGas).toBeGreaterThan(sent[i - 1].maxPriorityFeePerGas);
      }
      const cap = BigInt(capGwei) * 10n ** 9n;
      expect(sent.every((s) => s.maxFeePerGas <= cap)).toBe(true);
      // The cap stopped the bumping before the six cycles were over, and says so.
      expect(replacements.length).toBeLessThan(6);
      expect((await periodOf(batchId)).last_error).toMatch(/ANCHOR_MAX_FEE_GWEI/);
      const stored = await rows("SELECT kind, nonce FROM anchor_txs WHERE period_id = $1 ORDER BY created_at", [period.id]);
      expect(stored.map((s: any) => s.kind)).toEqual(["first", ...replacements.map(() => "replacement")]);

      mempool.hold(false);
      await mempool.release(); // only the last replacement is in the pool: the others were replaced
      await cycle();
      const final = await anchorStatus(batchId, TENANT_B);
      expect(final.status).toBe("final");
      expect(final.tx_hash).toBe(sent[sent.length - 1].hash);
      const mined = (await anchorTxsOnChain()).filter((t) => t.root === period.root);
      expect(mined).toHaveLength(1);
      expect(mined[0].hash).toBe(final.tx_hash);
      const statuses = await rows("SELECT status, count(*)::int AS n FROM anchor_txs WHERE period_id = $1 GROUP BY status", [period.id]);
      expect(Object.fromEntries(statuses.map((s: any) => [s.status, s.n]))).toEqual({ mined: 1, replaced: replacements.length });
    } finally {
      mempool.hold(false);
      await setSetting("ANCHOR_MAX_FEE_GWEI", null);
      await setSetting("ANCHOR_STUCK_TIMEOUT", null);
      await setSetting("ANCHOR_CONFIRMATIONS", null);
    }
  });

  it("a restart sends the stored transaction again: no nonce is ever reused or skipped", async () => {
    await setSetting("ANCHOR_CONFIRMATIONS", 1);
    try {
      // 1. Signed and stored, then the process "dies" before the node hears of it.
      const x = await seedBatch(TENANT_A);
      mempool.sendRawFault("reset-before");
      expect((await cycle("force")).chain).toBe("unavailable");
      const px = await periodOf(x);
      expect(px.status).toBe("pending");
      const [stored] = await rows("SELECT tx_hash, nonce, status FROM anchor_txs WHERE period_id = $1", [px.id]);
      expect(stored).toMatchObject({ status: "signed", nonce: px.nonce });
      mempool.sendRawFault(null);
      await stopBroker();
      await startBroker({ ANCHOR_CONFIRMATIONS: "1" });
      await cycle();
      await cycle();
      const x2 = await anchorStatus(x);
      expect(x2).toMatchObject({ status: "final", tx_hash: stored.tx_hash }); // the very transaction signed before the "crash"

      // 1b. Stored, not sent, and meanwhile the key spends that nonce elsewhere: after the restart
      // the stored transaction is given up (never sent on a nonce already used) and signed again.
      const w = await seedBatch(TENANT_A);
      mempool.sendRawFault("reset-before");
      await cycle("force");
      mempool.sendRawFault(null);
      const pw = await periodOf(w);
      expect(pw.nonce).toBe(px.nonce + 1);
      await chain.sendData("0x", { nonce: pw.nonce }); // someone else using the anchoring key
      await stopBroker();
      await startBroker({ ANCHOR_CONFIRMATIONS: "1" });
      await cycle();
      await cycle();
      const pw2 = await periodOf(w);
      expect(pw2).toMatchObject({ status: "final", nonce: pw.nonce + 1 });
      expect(await rows("SELECT nonce, status FROM anchor_txs WHERE period_id = $1 ORDER BY created_at", [pw.id])).toEqual([
        { nonce: pw.nonce, status: "dropped" },
        { nonce: pw.nonce + 1, status: "mined" },
      ]);

      // 2. Sent, mined, but the answer lost on the way back.
      const y = await seedBatch(TENANT_A);
      mempool.sendRawFault("reset-after");
      expect((await cycle("force")).chain).toBe("unavailable");
      mempool.sendRawFault(null);
      await cycle();
      await cycle();
      const py = await periodOf(y);
      expect(py).toMatchObject({ status: "final", nonce: px.nonce + 3 });
      expect(await rows("SELECT tx_hash FROM anchor_txs WHERE period_id = $1", [py.id])).toHaveLength(1);

      // 3. The next period takes the next nonce.
      const z = await seedBatch(TENANT_A);
      await cycle("force");
      await cycle();
      expect((await periodOf(z)).nonce).toBe(px.nonce + 4);

      // On chain: nonces 0..n-1, each exactly once; every VokeTag anchor is a final period's, once.
      const ours = await anchorTxsOnChain();
      expect(ours.map((t) => t.nonce).sort((a, b) => a - b)).toEqual(ours.map((_, i) => i));
      expect(await chain.minedNonce()).toBe(ours.length);
      const anchored = ours.filter((t) => t.root !== null).map((t) => t.root);
      const finals = await rows("SELECT root FROM periods WHERE status = 'final'");
      expect(anchored.sort()).toEqual(finals.map((f: any) => f.root).sort());
    } finally {
      mempool.sendRawFault(null);
      await setSetting("ANCHOR_CONFIRMATIONS", null);
    }
  });

  it("the RPC down for a while: the anchor stays pending, is retried, and lands once", async () => {
    // Straight at the dev chain this time, so "down" is a refused connection.
    await stopBroker();
    await startBroker({ ANCHOR_RPC_URL: chainServer!.url, ANCHOR_CONFIRMATIONS: "1" });
    const batchId = await seedBatch(TENANT_B);
    await chainServer!.close();
    chainServer = null;
    for (let i = 0; i < 2; i++) expect((await cycle(i === 0 ? "force" : "auto")).chain).toBe("unavailable");
    const period = await periodOf(batchId);
    expect(period.status).toBe("pending");
    expect(period.last_error).toMatch(/ECONNREFUSED|cannot reach/);
    expect(period.attempts).toBe(2); // tried in each cycle, and neither try counts against it
    expect(await rows("SELECT 1 FROM anchor_dead_letters WHERE period_id = $1", [period.id])).toHaveLength(0); // unreachable is not a failure of the anchor
    expect(metricValue(ANCHOR_METRICS.chainUp)).toBe(0);
    const ready = await broker!.call("anchor.ready");
    expect(ready).toMatchObject({ chain: { ok: false } });

    await startChain(); // same port, same data directory: the chain is as it was
    await cycle();
    await cycle();
    expect(await anchorStatus(batchId, TENANT_B)).toMatchObject({ status: "final" });
    expect(metricValue(ANCHOR_METRICS.chainUp)).toBe(1);
    expect((await anchorTxsOnChain()).filter((t) => t.root === period.root)).toHaveLength(1);
  });

  it("publishes /.well-known/voketag.json: chain id, anchoring address, token key ids, proof versions", async () => {
    const id: any = await ctxFor(null, "GET", "/.well-known/voketag.json").call("anchor.identity", {});
    expect(id).toMatchObject({ name: "VokeTag", proof_versions: ["voketag-proof/1"] });
    expect(id.chains).toEqual([expect.objectContaining({ chain_id: 31337, anchoring_addresses: [chain.address], method: "calldata", payload_prefix: "0x564f4b4554414731" })]);
    expect(id.token_key_ids.length).toBeGreaterThan(0);
    const ready = await broker!.call("anchor.ready");
    expect(ready).toMatchObject({ chain: { ok: true, chain_id: 31337 }, anchor_wallet: { ok: true, address: chain.address, low_balance: false }, anchoring: { ok: true, dead_letters: 0 } });
    expect(metricValue(ANCHOR_METRICS.balance, { address: chain.address })).toBeGreaterThan(0);
  });
});

describe("failures: backoff, dead letters, retry", () => {
  it(`retries ${MAX_ATTEMPTS} times per cycle with exponential backoff, then dead-letters with the reason; retry and god mode put it back`, async () => {
    // A wallet with no money: every node refuses its transactions.
    const poorKey = "0x" + crypto.randomBytes(32).toString("hex");
    const poor = connectRpc(chainServer!.url, poorKey);
    await stopBroker();
    await startBroker({ ANCHOR_RPC_URL: chainServer!.url, ANCHOR_PRIVATE_KEY: poorKey, ANCHOR_CONFIRMATIONS: "1", ANCHOR_RETRY_BACKOFF: "1" });
    try {
      const ready = await broker!.call("anchor.ready");
      expect(ready).toMatchObject({ anchor_wallet: { ok: true, low_balance: true, balance_wei: "0" } });
      expect((ready as any).anchor_wallet.warning).toMatch(/below ANCHOR_LOW_BALANCE_WEI/);
      expect(metricValue(ANCHOR_METRICS.lowBalance, { address: poor.address })).toBe(1);

      const batchId = await seedBatch(TENANT_A);
      const job: any = await call("anchor.request", { batch_id: batchId });
      const t0 = Date.now();
      await cycle("force");
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2900); // waits of 1 s then 2 s between the 3 attempts
      const status = await anchorStatus(batchId);
      expect(status.status).toBe("failed");
      expect(status.error).toMatch(/insufficient funds/i);
      const [dead] = await rows("SELECT * FROM anchor_dead_letters WHERE period_id = $1", [status.period_id]);
      expect(dead.reason).toMatch(/insufficient funds/i);
      expect(dead.attempts).toHaveLength(MAX_ATTEMPTS);
      const at = dead.attempts.map((a: any) => Date.parse(a.at));
      expect(at[1] - at[0]).toBeGreaterThanOrEqual(900);
      expect(at[2] - at[1]).toBeGreaterThanOrEqual(1900);
      expect((await periodOf(batchId)).nonce).toBeNull(); // never accepted: its nonce is free again

      // A dead letter stays put: the next cycle does not try it again.
      const attempts = (await periodOf(batchId)).attempts;
      await cycle();
      expect((await periodOf(batchId)).attempts).toBe(attempts);
      const readyDead: any = await broker!.call("anchor.ready");
      expect(readyDead.anchoring).toMatchObject({ ok: true, dead_letters: 1 });

      // God mode lists and requeues it (still no money: back in the dead-letter table).
      const list: any = await broker!.call("anchor.listDeadLetters", {});
      expect(list.items).toEqual([expect.objectContaining({ id: dead.id, period_id: status.period_id, batches: 1, reason: dead.reason })]);
      expect(list.next_cursor).toBeNull();
      await ctxFor(null).call("anchor.retryDeadLetter", { id: dead.id }, { meta: { principal: { type: "user", id: "admin-1", tenant_id: null, role: "admin", scopes: ["*"] } } });
      await expect(broker!.call("anchor.retryDeadLetter", { id: dead.id })).rejects.toMatchObject({ code: 409 });
      expect((await anchorStatus(batchId)).status).toBe("pending");
      await cycle();
      expect((await anchorStatus(batchId)).status).toBe("failed");
      expect(await rows("SELECT id FROM anchor_dead_letters WHERE period_id = $1", [status.period_id])).toHaveLength(2);

      // Top up the wallet; the tenant asks for a retry (by job id): it lands.
      await chain.request("evm_setAccountBalance", [poor.address, "0x" + (10n ** 18n).toString(16)]);
      const again: any = await ctxFor(TENANT_A, "POST", `/v1/anchor/${job.id}/retry`).call("anchor.retry", { id: job.id });
      expect(again).toMatchObject({ batch_id: batchId, status: "pending" });
      await cycle();
      await cycle();
      expect(await anchorStatus(batchId)).toMatchObject({ status: "final" });
      await expect(call("anchor.retry", { id: batchId })).rejects.toMatchObject({ code: 409 }); // nothing left to retry
      await expect(call("anchor.retry", { id: batchId }, TENANT_B)).rejects.toMatchObject({ code: 404 });
      const audit = await rows("SELECT actor_type, actor_id, target_id FROM audit_log WHERE action = 'anchor.retry' ORDER BY seq");
      expect(audit).toEqual([expect.objectContaining({ actor_type: "user", actor_id: "admin-1" }), expect.objectContaining({ actor_type: "key", target_id: batchId })]);
      expect(((await broker!.call("anchor.listDeadLetters", {})) as any).items).toHaveLength(0);
    } finally {
      await poor.close();
    }
  });
});

describe("on the in-process dev chain (the embedded default)", () => {
  it("anchors, survives a reorg, and serves a proof that verifies", async () => {
    await stopBroker();
    // No ANCHOR_RPC_URL: a ganache EVM inside the process, in memory (VOKETAG_DATA_DIR=memory://).
    await startBroker({ ANCHOR_RPC_URL: "", ANCHOR_PRIVATE_KEY: "", ANCHOR_CONFIRMATIONS: "2" });
    const inProcess: ChainClient = anchorSvc().chain;
    expect(inProcess.endpoint).toBe("in-process dev chain");
    const batchId = await seedBatch(TENANT_B);
    const snapshot = await inProcess.request("evm_snapshot", []);
    await cycle("force");
    await cycle();
    expect(await anchorStatus(batchId, TENANT_B)).toMatchObject({ status: "confirmed", confirmations: 1, chain_id: 1337 });
    await inProcess.request("evm_revert", [snapshot]);
    await cycle(); // dropped: sent again
    expect((await periodOf(batchId)).reorgs).toBe(1);
    await cycle();
    await inProcess.request("evm_mine", []);
    await cycle();
    expect(await anchorStatus(batchId, TENANT_B)).toMatchObject({ status: "final", confirmations: 2 });
    const [p] = await rows("SELECT id FROM products WHERE batch_id = $1 LIMIT 1", [batchId]);
    const doc = await call("anchor.proof", { id: p.id }, null);
    const verdict = await call("anchor.verifyProof", doc, null);
    expect(verdict.valid).toBe(true);
    expect(verdict.checks).toHaveLength(9);
  });
});
