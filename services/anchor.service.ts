// Anchor: every period, one chain transaction carries the Merkle root over all newly registered
// batches (and the scan ledger heads); proofs and verification for anyone.
import type { ServiceSchema, Context } from "moleculer";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { TokensMixin } from "../mixins/tokens.mixin";
import { badRequest, conflict, notFound } from "../mixins/errors";
import { tenantOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { ChainClient, connectRpc } from "../lib/chain";
import { startDevChain } from "../lib/devchain";
import { buildTree, serializeTree, proofFromSerialized } from "../lib/merkle";
import { encodeAnchorCalldata, decodeAnchorCalldata } from "../lib/anchor-payload";
import {
  batchLeafHash,
  ledgerHeadLeafHash,
  productLeafHash,
  buildProofDocument,
  parseProofDocument,
  verifyProofDocument,
  ethersChainReader,
  ProofFormatError,
  PROOF_VERSION,
} from "../lib/proof";

// The advisory lock that makes one node at a time run the cycle, cluster-wide.
const CYCLE_LOCK = 7261003;

const AnchorService: ServiceSchema = {
  name: "anchor",
  mixins: [OutboxMixin, IdempotencyMixin, TokensMixin],
  actions: {
    ready: {
      visibility: "public",
      async handler(this: any) {
        const out: Record<string, any> = {};
        try {
          await this.db.ping();
          out[this.db.kind === "pg" ? "postgres" : "pglite"] = { ok: true };
        } catch (err) {
          out.postgres = { ok: false, detail: (err as Error).message };
        }
        try {
          const block = await withTimeout(this.chain.blockNumber(), 2000);
          out.chain = { ok: true, block };
        } catch (err) {
          out.chain = { ok: false, detail: `chain RPC: ${(err as Error).message}` };
        }
        return out;
      },
    },

    request: {
      rest: { method: "POST", fullPath: "/v1/anchor" },
      auth: "key",
      scope: "anchors:write",
      summary: "Ask for a batch to be anchored in the next cycle (asking again returns the same job)",
      successStatus: 202,
      params: { batch_id: "uuid", callback_url: { type: "url", optional: true, max: 2048 } },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, async () => {
          const b = await this.db.query("SELECT status FROM batches WHERE id = $1 AND tenant_id = $2", [ctx.params.batch_id, tenant]);
          if (!b.rowCount) throw notFound("batch");
          if (b.rows[0].status === "failed") throw conflict("the batch failed registration and cannot be anchored");
          await this.db.query(
            "INSERT INTO anchor_jobs (tenant_id, batch_id, callback_url) VALUES ($1, $2, $3) ON CONFLICT (batch_id) DO NOTHING",
            [tenant, ctx.params.batch_id, ctx.params.callback_url ?? null],
          );
          const { rows } = await this.db.query("SELECT id, batch_id FROM anchor_jobs WHERE batch_id = $1", [ctx.params.batch_id]);
          const status = await this.batchAnchor(ctx.params.batch_id);
          ctx.meta.$statusCode = 202;
          ctx.meta.$location = `/v1/anchor/${ctx.params.batch_id}`;
          this.scheduleCycleSoon();
          return { id: rows[0].id, batch_id: rows[0].batch_id, status: status.status };
        });
      },
    } as any,

    status: {
      rest: { method: "GET", fullPath: "/v1/anchor/:batch_id" },
      auth: "key",
      scope: "batches:read",
      summary: "A batch's anchor: status, confirmations, transaction and block",
      params: { batch_id: "uuid" },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const b = await this.db.query("SELECT 1 FROM batches WHERE id = $1 AND tenant_id = $2", [ctx.params.batch_id, tenant]);
        if (!b.rowCount) throw notFound("batch");
        return this.batchAnchor(ctx.params.batch_id);
      },
    } as any,

    retry: {
      rest: { method: "POST", fullPath: "/v1/anchor/:id/retry" },
      auth: "any",
      scope: "anchors:write",
      summary: "Put a failed anchor (by batch id or job id) back in the queue",
      successStatus: 202,
      params: { id: "uuid" },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { rows } = await this.db.query(
          `SELECT j.batch_id FROM anchor_jobs j WHERE (j.id = $1 OR j.batch_id = $1) AND j.tenant_id = $2
           UNION SELECT b.id FROM batches b WHERE b.id = $1 AND b.tenant_id = $2`,
          [ctx.params.id, tenant],
        );
        if (!rows.length) throw notFound("anchor");
        const batchId = rows[0].batch_id;
        await this.db.query(
          `UPDATE periods SET status = 'pending', attempts = 0, last_error = NULL
            WHERE status = 'failed' AND id IN (SELECT period_id FROM period_leaves WHERE kind = 'batch' AND ref = $1)`,
          [batchId],
        );
        this.scheduleCycleSoon();
        ctx.meta.$statusCode = 202;
        return this.batchAnchor(batchId);
      },
    } as any,

    proof: {
      rest: { method: "GET", fullPath: "/v1/products/:id/proof" },
      auth: "public",
      summary: "A product's self-contained proof document (once its batch is anchored)",
      params: { id: "uuid" },
      async handler(this: any, ctx: Context<any, any>) {
        const { rows } = await this.db.query(
          `SELECT p.*, b.tree, b.leaf_count, b.root FROM products p JOIN batches b ON b.id = p.batch_id WHERE p.id = $1`,
          [ctx.params.id],
        );
        const p = rows[0];
        if (!p) throw notFound("product");
        const period = await this.finalPeriodOf(p.batch_id);
        if (!period) throw conflict("the product's batch is not anchored yet", { status: (await this.batchAnchor(p.batch_id)).status });
        const batchProof = proofFromSerialized(p.tree, p.leaf_count, p.ordinal);
        const periodProof = proofFromSerialized(period.tree, period.leaf_count, period.leaf_index);
        return buildProofDocument({
          product: { tag_id: p.id, tenant_id: p.tenant_id, batch_id: p.batch_id, sku: p.sku, name: p.name, serial: p.serial, gtin: p.gtin, lot: p.lot, salt: p.salt },
          batch: { id: p.batch_id, root: p.root, leaf_count: p.leaf_count, path: batchProof.steps },
          period: { id: period.id, root: period.root, path: periodProof.steps },
          anchor: {
            chain_id: Number(period.chain_id),
            tx_hash: period.tx_hash,
            block_number: Number(period.block_number),
            address: period.address,
            confirmations_required: this.config.anchor.confirmations,
          },
          issuer_url: this.config.verificationUrlBase,
        });
      },
    } as any,

    verifyProof: {
      rest: { method: "POST", fullPath: "/v1/verify/proof" },
      auth: "public",
      summary: "Verify a proof document (the body is the document itself)",
      async handler(this: any, ctx: Context<any, any>) {
        const { $idem, ...body } = ctx.params;
        let doc;
        try {
          doc = parseProofDocument(body);
        } catch (err) {
          if (err instanceof ProofFormatError) throw badRequest("not a proof document", { problems: (err as any).problems });
          throw err;
        }
        return verifyProofDocument(doc, ethersChainReader(this.chain.provider));
      },
    } as any,

    verifyBatch: {
      rest: { method: "GET", fullPath: "/v1/verify/:batch_id" },
      auth: "public",
      summary: "Recompute a batch's root from its stored products and compare it with the chain",
      params: { batch_id: "uuid" },
      async handler(this: any, ctx: Context<any, any>) {
        const b = await this.db.query("SELECT id, tenant_id, root, leaf_count, status FROM batches WHERE id = $1", [ctx.params.batch_id]);
        if (!b.rowCount) throw notFound("batch");
        const batch = b.rows[0];
        const checks: { name: string; ok: boolean; detail: string }[] = [];
        const leaves: Buffer[] = [];
        let badLeaves = 0;
        for (let after = -1; ; ) {
          const { rows } = await this.db.query(
            "SELECT id, tenant_id, batch_id, sku, name, serial, gtin, lot, salt, leaf_hash, ordinal FROM products WHERE batch_id = $1 AND ordinal > $2 ORDER BY ordinal LIMIT 10000",
            [batch.id, after],
          );
          if (!rows.length) break;
          for (const r of rows) {
            const leaf = productLeafHash({ tag_id: r.id, tenant_id: r.tenant_id, batch_id: r.batch_id, sku: r.sku, name: r.name, serial: r.serial, gtin: r.gtin, lot: r.lot, salt: r.salt });
            if (leaf.toString("hex") !== r.leaf_hash) badLeaves++;
            leaves.push(leaf);
          }
          after = rows[rows.length - 1].ordinal;
        }
        checks.push({ name: "leaves", ok: badLeaves === 0 && leaves.length > 0, detail: `${leaves.length} products, ${badLeaves} with a stored leaf hash that does not match their data` });
        const root = leaves.length ? buildTree(leaves).root.toString("hex") : null;
        checks.push({ name: "batch_root", ok: root === batch.root, detail: root === batch.root ? `recomputed root ${root}` : `recomputed ${root}, stored ${batch.root}` });
        const period = await this.finalPeriodOf(batch.id);
        if (!period) {
          checks.push({ name: "anchor", ok: false, detail: "the batch is not anchored yet" });
        } else {
          const expected = batchLeafHash(batch.id, root ?? "").toString("hex");
          const proof = proofFromSerialized(period.tree, period.leaf_count, period.leaf_index);
          const periodOk = expected === period.leaf_hash && proof.root.toString("hex") === period.root;
          checks.push({ name: "period_path", ok: periodOk, detail: periodOk ? `batch leaf is in period ${period.id}` : "the batch leaf does not lead to the period root" });
          const tx = await this.chain.transaction(period.tx_hash).catch(() => null);
          const onChain = tx ? decodeAnchorCalldata(tx.data)?.toString("hex") : null;
          checks.push({ name: "transaction", ok: onChain === period.root, detail: tx ? `transaction ${period.tx_hash} carries ${onChain ?? "no anchor payload"}` : `transaction ${period.tx_hash} not found on chain` });
        }
        return { batch_id: batch.id, valid: checks.every((c) => c.ok), checks };
      },
    } as any,

    verifyTransaction: {
      rest: { method: "GET", fullPath: "/v1/verify/transaction/:tx_id" },
      auth: "public",
      summary: "What an anchoring transaction carries, read from the chain",
      params: { tx_id: { type: "string", pattern: /^0x[0-9a-fA-F]{64}$/ } },
      async handler(this: any, ctx: Context<any, any>) {
        const txHash = ctx.params.tx_id.toLowerCase();
        const tx = await this.chain.transaction(txHash);
        if (!tx) throw notFound("transaction");
        const root = decodeAnchorCalldata(tx.data);
        const head = await this.chain.blockNumber();
        const { rows } = await this.db.query("SELECT id, root, status FROM periods WHERE lower(tx_hash) = $1", [txHash]);
        const period = rows[0];
        const count = period ? await this.db.query("SELECT count(*) AS n FROM period_leaves WHERE period_id = $1 AND kind = 'batch'", [period.id]) : null;
        return {
          tx_hash: tx.hash,
          from: tx.from,
          block_number: tx.blockNumber,
          confirmations: tx.blockNumber === null ? 0 : head - tx.blockNumber + 1,
          anchored_root: root ? root.toString("hex") : null,
          is_voketag_anchor: !!root && tx.from.toLowerCase() === this.chain.address.toLowerCase(),
          period: period ? { id: period.id, root: period.root, status: period.status, batches: count!.rows[0].n, matches: root?.toString("hex") === period.root } : null,
        };
      },
    } as any,

    identity: {
      rest: { method: "GET", fullPath: "/.well-known/voketag.json" },
      auth: "public",
      summary: "This instance's identity for verifiers: chain, anchoring address, token key ids, proof formats",
      async handler(this: any) {
        const ring = await this.tokenKeyring();
        return {
          name: "VokeTag",
          url: this.config.verificationUrlBase,
          chains: [{ chain_id: await this.chain.chainId(), anchoring_addresses: [this.chain.address], method: "calldata", payload: "VOKETAG1 || period_root" }],
          token_key_ids: Object.keys(ring.keys),
          proof_versions: [PROOF_VERSION],
          jwks_uri: `${this.config.verificationUrlBase}/.well-known/jwks.json`,
        };
      },
    } as any,

    cycle: {
      visibility: "public",
      async handler(this: any) {
        return this.runCycle();
      },
    },

    onEvent: {
      visibility: "public",
      async handler() {
        return { ok: true };
      },
    },
  },

  methods: {
    scheduleCycleSoon(this: any) {
      if (this.soonTimer) return;
      this.soonTimer = setTimeout(() => {
        this.soonTimer = null;
        void this.runCycle().catch((err: Error) => this.logger.warn({ err: err.message }, "anchor cycle failed"));
      }, 500);
      this.soonTimer.unref?.();
    },

    async batchAnchor(this: any, batchId: string) {
      const { rows } = await this.db.query(
        `SELECT p.id, p.status, p.confirmations, p.tx_hash, p.block_number, p.chain_id FROM period_leaves l JOIN periods p ON p.id = l.period_id
          WHERE l.kind = 'batch' AND l.ref = $1 ORDER BY (p.status = 'final') DESC, p.created_at DESC LIMIT 1`,
        [batchId],
      );
      const p = rows[0];
      return {
        batch_id: batchId,
        status: p?.status ?? "pending",
        confirmations: p?.confirmations ?? 0,
        tx_hash: p?.tx_hash ?? null,
        block_number: p?.block_number == null ? null : Number(p.block_number),
        chain_id: p?.chain_id ?? (await this.chain.chainId()),
        period_id: p?.id ?? null,
      };
    },

    async finalPeriodOf(this: any, batchId: string) {
      const { rows } = await this.db.query(
        `SELECT p.*, l.leaf_index, l.leaf_hash FROM period_leaves l JOIN periods p ON p.id = l.period_id
          WHERE l.kind = 'batch' AND l.ref = $1 AND p.status = 'final' LIMIT 1`,
        [batchId],
      );
      return rows[0] ?? null;
    },

    /** One cycle, on one node of the cluster at a time: advance in-flight periods, then open a new one. */
    async runCycle(this: any) {
      if (this.cycleRunning) return this.cycleRunning;
      this.cycleRunning = this.db
        .session(async (s: Queryable) => {
          const lock = await s.query("SELECT pg_try_advisory_lock($1) AS ok", [CYCLE_LOCK]);
          if (!lock.rows[0].ok) return { leader: false };
          try {
            await this.advancePeriods();
            const opened = await this.openPeriod();
            await this.submitPending();
            return { leader: true, opened };
          } finally {
            await s.query("SELECT pg_advisory_unlock($1)", [CYCLE_LOCK]);
          }
        })
        .finally(() => (this.cycleRunning = null));
      return this.cycleRunning;
    },

    /** Gathers every registered batch in no live period, plus changed ledger heads, into a new period. */
    async openPeriod(this: any) {
      const { rows: batches } = await this.db.query(
        `SELECT b.id, b.root FROM batches b
          WHERE b.status IN ('registered', 'anchoring') AND b.root IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM period_leaves l JOIN periods p ON p.id = l.period_id
                             WHERE l.kind = 'batch' AND l.ref = b.id::text AND p.status <> 'failed')
          ORDER BY b.registered_at, b.id LIMIT 100000`,
      );
      if (!batches.length) return null;
      let heads: { partition: string; seq: number; hash: string }[] = [];
      try {
        heads = await this.broker.call("scan.ledgerHeads", {}, { timeout: 3000, retries: 0 });
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "ledger heads unavailable; anchoring batches only this period");
      }
      const leaves = [
        ...batches.map((b: any) => ({ kind: "batch", ref: b.id, data: { batch_id: b.id, root: b.root }, hash: batchLeafHash(b.id, b.root) })),
        ...heads.map((h) => ({ kind: "ledger_head", ref: h.partition, data: h, hash: ledgerHeadLeafHash(h) })),
      ];
      const tree = buildTree(leaves.map((l) => l.hash));
      const chainId = await this.chain.chainId();
      const periodId = await this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          "INSERT INTO periods (root, tree, leaf_count, status, chain_id, address) VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id",
          [tree.root.toString("hex"), serializeTree(tree), leaves.length, chainId, this.chain.address],
        );
        const id = r.rows[0].id;
        await q.query(
          `INSERT INTO period_leaves (period_id, leaf_index, kind, ref, leaf_hash, data)
           SELECT $1, i, kind, ref, hash, data::jsonb FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[]) AS t(i, kind, ref, hash, data)`,
          [id, leaves.map((_, i) => i), leaves.map((l) => l.kind), leaves.map((l) => l.ref), leaves.map((l) => l.hash.toString("hex")), leaves.map((l) => JSON.stringify(l.data))],
        );
        return id;
      });
      this.logger.info({ period_id: periodId, batches: batches.length, ledger_heads: heads.length, root: tree.root.toString("hex") }, "anchor period opened");
      return periodId;
    },

    async submitPending(this: any) {
      const { rows } = await this.db.query("SELECT id, root FROM periods WHERE status = 'pending' ORDER BY created_at");
      for (const p of rows) {
        try {
          const nonce = await this.chain.pendingNonce();
          const txHash = await this.chain.sendData(encodeAnchorCalldata(Buffer.from(p.root, "hex")), { nonce });
          await this.db.tx(async (q: Queryable) => {
            await q.query("UPDATE periods SET status = 'submitted', tx_hash = $2, nonce = $3, submitted_at = now(), attempts = attempts + 1 WHERE id = $1", [p.id, txHash, nonce]);
            const b = await q.query("SELECT ref FROM period_leaves WHERE period_id = $1 AND kind = 'batch'", [p.id]);
            await this.emitDurable(q, "anchor.submitted", { period_id: p.id, tx_hash: txHash, batch_ids: b.rows.map((r: any) => r.ref) });
          });
          this.pokeOutbox();
          this.logger.info({ period_id: p.id, tx_hash: txHash, nonce }, "anchor submitted");
        } catch (err) {
          await this.db.query("UPDATE periods SET attempts = attempts + 1, last_error = $2 WHERE id = $1", [p.id, (err as Error).message]);
          this.logger.warn({ period_id: p.id, err: (err as Error).message }, "anchor submission failed; will retry");
        }
      }
    },

    /** Counts confirmations of submitted periods; final at ANCHOR_CONFIRMATIONS. */
    async advancePeriods(this: any) {
      const { rows } = await this.db.query("SELECT id, tx_hash, status, chain_id FROM periods WHERE status IN ('submitted', 'confirmed')");
      if (!rows.length) return;
      const head = await this.chain.blockNumber();
      for (const p of rows) {
        const receipt = await this.chain.receipt(p.tx_hash);
        if (!receipt) continue;
        const confirmations = head - receipt.blockNumber + 1;
        const final = confirmations >= this.config.anchor.confirmations;
        await this.db.tx(async (q: Queryable) => {
          await q.query(
            `UPDATE periods SET status = $2, confirmations = $3, block_number = $4, final_at = CASE WHEN $2 = 'final' THEN now() END WHERE id = $1`,
            [p.id, final ? "final" : "confirmed", confirmations, receipt.blockNumber],
          );
          if (final) {
            const b = await q.query("SELECT ref FROM period_leaves WHERE period_id = $1 AND kind = 'batch'", [p.id]);
            await this.emitDurable(q, "anchor.confirmed", {
              period_id: p.id,
              tx_hash: p.tx_hash,
              block_number: receipt.blockNumber,
              chain_id: Number(p.chain_id),
              batch_ids: b.rows.map((r: any) => r.ref),
            });
          }
        });
        if (final) {
          this.pokeOutbox();
          this.logger.info({ period_id: p.id, tx_hash: p.tx_hash, block: receipt.blockNumber }, "anchor final");
        }
      }
    },
  },

  async started(this: any) {
    const a = this.config.anchor;
    if (a.rpcUrl) {
      if (!a.privateKey) throw new Error("ANCHOR_RPC_URL needs ANCHOR_PRIVATE_KEY (or ANCHOR_PRIVATE_KEY_FILE)");
      this.chain = await connectRpc(a.rpcUrl, a.privateKey);
    } else {
      this.chain = startDevChain({ dataDir: this.config.dataDir === "memory://" ? null : this.config.dataDir, chainId: a.chainId, privateKey: a.privateKey ?? undefined });
    }
    this.logger.info({ address: this.chain.address, chain_id: await this.chain.chainId(), rpc: a.rpcUrl ?? "in-process dev chain" }, "chain connected");
    this.cycleTimer = setInterval(() => {
      void this.runCycle().catch((err: Error) => this.logger.warn({ err: err.message }, "anchor cycle failed"));
    }, a.intervalSeconds * 1000);
    this.cycleTimer.unref();
  },

  async stopped(this: any) {
    clearInterval(this.cycleTimer);
    if (this.soonTimer) clearTimeout(this.soonTimer);
    await this.cycleRunning?.catch(() => undefined);
    await this.chain?.close();
  },
};

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref())]);
}

export default AnchorService;
