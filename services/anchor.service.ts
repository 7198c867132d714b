// Anchor: a timestamping authority on an EVM chain. Once per ANCHOR_INTERVAL, on one node of the
// cluster (a Postgres advisory lock), every registered batch not yet anchored, from every tenant,
// plus the scan ledger heads, goes into one period tree whose root travels in ONE transaction
// (lib/anchor-payload). The period then moves pending → submitted → confirmed(n) → final at
// ANCHOR_CONFIRMATIONS, surviving reorgs (back to pending, same signed transaction again), stuck
// transactions (replaced at the same nonce, fee capped), an unreachable RPC (stays pending) and
// restarts (the signed transaction and its nonce are stored before anything is sent). Proofs and
// verification for anyone, a browser verifier page, and the instance's public identity.
import type { ServiceSchema, Context } from "moleculer";
import { ethers } from "ethers";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { TokensMixin } from "../mixins/tokens.mixin";
import { AuditMixin } from "../mixins/audit.mixin";
import { SettingsMixin } from "../mixins/settings.mixin";
import { badRequest, conflict, notFound, cursorParam } from "../mixins/errors";
import { tenantOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import {
  ChainClient,
  connectRpc,
  classifyChainError,
  chainErrorReason,
  cappedFees,
  replacementFees,
  backoffSeconds,
  GWEI,
  type AnchorReceipt,
  type Fees,
} from "../lib/chain";
import { startDevChain } from "../lib/devchain";
import { buildTree, serializeTree, proofFromSerialized } from "../lib/merkle";
import { encodeAnchorCalldata, decodeAnchorCalldata, anchorTransactionGas, ANCHOR_MAGIC_BYTES } from "../lib/anchor-payload";
import {
  batchLeafHash,
  ledgerHeadLeafHash,
  productLeafHash,
  buildProofDocument,
  parseProofDocument,
  verifyProofDocument,
  jsonRpcChainReader,
  ProofFormatError,
  PROOF_VERSION,
} from "../lib/proof";
import { checkWebhookUrl } from "../lib/ssrf";
import { listParams, page, DEFAULT_LIMIT } from "../lib/cursor";
import { renderVerifierPage, VERIFIER_CSS } from "../lib/verifier-page";
import { buildVerifierBundle } from "../lib/verifier-bundle";
import { staticAsset } from "../mixins/static-asset";
import { media, ok } from "../lib/schemas/common";
import { AnchorJob, AnchorStatus, BatchVerification, Identity, ProofDocument, ProofVerification, TransactionVerification } from "../lib/schemas/anchor";

// The advisory lock that makes one node at a time run the cycle, cluster-wide.
const CYCLE_LOCK = 7261003;
// Submission attempts per period per cycle before it goes to the dead-letter table.
export const MAX_ATTEMPTS = 3;
// What one anchor costs at most (40 non-zero calldata bytes): for the anchors-left estimate.
const ANCHOR_GAS = BigInt(anchorTransactionGas("0x" + "ff".repeat(40)));

export const ANCHOR_METRICS = {
  balance: "voketag_anchor_wallet_balance_wei",
  lowBalance: "voketag_anchor_wallet_low_balance",
  chainUp: "voketag_anchor_chain_up",
  periods: "voketag_anchor_periods",
  deadLetters: "voketag_anchor_dead_letters_open",
  oldestUnfinished: "voketag_anchor_oldest_unfinished_seconds",
  lastFinal: "voketag_anchor_last_final_timestamp_seconds",
  transactions: "voketag_anchor_transactions_total",
  reorgs: "voketag_anchor_reorgs_total",
  failures: "voketag_anchor_submit_failures_total",
} as const;

interface AnchorSettings {
  intervalSeconds: number;
  confirmations: number;
  maxFeeWei: bigint;
  stuckTimeoutSeconds: number;
  lowBalanceWei: bigint;
}

interface PeriodRow {
  id: string;
  root: string;
  status: string;
  nonce: number | null;
  tx_hash: string | null;
  block_number: number | null;
  block_hash: string | null;
  confirmations: number;
  chain_id: number;
  address: string;
  submitted_at: Date | null;
}

interface TxRow {
  tx_hash: string;
  nonce: number;
  raw: string;
  status: string;
  kind: string;
  max_fee_per_gas: string;
  max_priority_fee_per_gas: string;
  sent_at: Date | null;
  created_at: Date;
}

/** Thrown to end a cycle early when the RPC cannot be reached: nothing is lost, it resumes next time. */
class ChainUnavailable extends Error {}
/** The advisory lock is gone (the session died): stop before touching the chain again. */
class LostLeadership extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

const AnchorService: ServiceSchema = {
  name: "anchor",
  mixins: [OutboxMixin, IdempotencyMixin, TokensMixin, AuditMixin, SettingsMixin],
  actions: {
    ready: {
      visibility: "public",
      async handler(this: any) {
        const out: Record<string, any> = {};
        const dbKey = this.db.kind === "pg" ? "postgres" : "pglite";
        const [db, chain, wallet] = await Promise.allSettled([
          withTimeout(this.db.ping(), 1500),
          withTimeout(Promise.all([this.chain.blockNumber(), this.chain.chainId()]), 1500),
          withTimeout(this.walletStatus(), 1500),
        ]);
        out[dbKey] = db.status === "fulfilled" ? { ok: true } : { ok: false, detail: (db.reason as Error).message };
        out.chain =
          chain.status === "fulfilled"
            ? { ok: true, block: chain.value[0], chain_id: chain.value[1], endpoint: this.chain.endpoint }
            : { ok: false, detail: `chain RPC (${this.chain.endpoint}): ${(chain.reason as Error).message}` };
        // A low balance is a warning, not unreadiness: the node still serves proofs and verification.
        out.anchor_wallet = wallet.status === "fulfilled" ? { ok: true, ...(wallet.value as object) } : { ok: true, address: this.chain.address, detail: "balance unknown: chain RPC unreachable" };
        if (db.status === "fulfilled") {
          try {
            out.anchoring = { ok: true, ...((await withTimeout(this.queueStatus(), 1000)) as object) };
          } catch {
            /* the database check above already says why */
          }
        }
        return out;
      },
    },

    request: {
      rest: { method: "POST", fullPath: "/v1/anchor" },
      auth: "key",
      scope: "anchors:write",
      summary: "Ask for a batch to be anchored in the next cycle (asking again returns the same job); callback_url gets batch.anchored",
      successStatus: 202,
      params: { batch_id: "uuid", callback_url: { type: "string", optional: true, max: 2048 } },
      responses: { 202: ok("The batch's anchor job", AnchorJob) },
      errors: [404, 409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { batch_id: batchId, callback_url: callbackUrl } = ctx.params;
        if (callbackUrl !== undefined) {
          // Syntax, scheme and literal addresses now; the webhooks service checks again (DNS) when it delivers.
          const check = checkWebhookUrl(callbackUrl, { allowPrivate: this.config.webhooks.allowPrivate, requireHttps: this.config.production });
          if (!check.ok) throw badRequest(`callback_url refused: ${check.reason}`, { field: "callback_url" });
        }
        return this.idempotent(ctx, async () => {
          const job = await this.db.tx(async (q: Queryable) => {
            const b = await q.query("SELECT status FROM batches WHERE id = $1 AND tenant_id = $2", [batchId, tenant]);
            if (!b.rowCount) throw notFound("batch");
            if (b.rows[0].status === "failed") throw conflict("the batch failed registration and cannot be anchored");
            const ins = await q.query(
              `INSERT INTO anchor_jobs (tenant_id, batch_id, callback_url, period_id)
               VALUES ($1, $2::uuid, $3, (SELECT period_id FROM period_leaves WHERE kind = 'batch' AND ref = $2::uuid::text LIMIT 1))
               ON CONFLICT (batch_id) DO NOTHING RETURNING id`,
              [tenant, batchId, callbackUrl ?? null],
            );
            if (ins.rowCount)
              await this.audit(q, ctx, { action: "anchor.request", target_type: "batch", target_id: batchId, tenant_id: tenant, after: { job_id: ins.rows[0].id, callback_url: callbackUrl ?? null } });
            return (await q.query("SELECT id, batch_id FROM anchor_jobs WHERE batch_id = $1", [batchId])).rows[0];
          });
          const status = await this.batchAnchor(batchId);
          ctx.meta.$statusCode = 202;
          ctx.meta.$location = `/v1/anchor/${batchId}`;
          return { id: job.id, batch_id: job.batch_id, status: status.status };
        });
      },
    } as any,

    status: {
      rest: { method: "GET", fullPath: "/v1/anchor/:batch_id" },
      auth: "key",
      scope: "batches:read",
      summary: "A batch's anchor: pending, submitted, confirmed (n confirmations), final or failed; transaction and block",
      params: { batch_id: "uuid" },
      responses: { 200: ok("The batch's anchor", AnchorStatus) },
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
      summary: "Put a failed (dead-lettered) anchor back in the queue, by batch id or job id",
      successStatus: 202,
      params: { id: "uuid" },
      responses: { 202: ok("Requeued: the anchor as it is now", AnchorStatus) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { rows } = await this.db.query(
          `SELECT j.batch_id::text AS batch_id FROM anchor_jobs j WHERE (j.id = $1 OR j.batch_id = $1) AND j.tenant_id = $2
           UNION SELECT b.id::text FROM batches b WHERE b.id = $1 AND b.tenant_id = $2`,
          [ctx.params.id, tenant],
        );
        if (!rows.length) throw notFound("anchor");
        const batchId = rows[0].batch_id;
        return this.idempotent(ctx, async () => {
          const current = await this.batchAnchor(batchId);
          if (current.status !== "failed") throw conflict(`nothing to retry: the anchor is ${current.status}`, { status: current.status });
          await this.requeuePeriod(ctx, current.period_id, { tenant_id: tenant, batch_id: batchId });
          this.scheduleCycleSoon();
          ctx.meta.$statusCode = 202;
          return this.batchAnchor(batchId);
        });
      },
    } as any,

    // ---- God mode (the admin service exposes these; no route of their own) --------------------
    listDeadLetters: {
      visibility: "public",
      params: { ...listParams, state: { type: "enum", values: ["open", "requeued", "all"], optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const state = ctx.params.state ?? "open";
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT d.id, d.period_id, d.reason, d.attempts, d.created_at, d.requeued_at, d.requeued_by,
                  p.root, p.status AS period_status, p.nonce,
                  (SELECT count(*) FROM period_leaves l WHERE l.period_id = d.period_id AND l.kind = 'batch') AS batches
             FROM anchor_dead_letters d JOIN periods p ON p.id = d.period_id
            WHERE ($1 = 'all' OR ($1 = 'open') = (d.requeued_at IS NULL))
              AND ($2::timestamptz IS NULL OR (d.created_at, d.id) < ($2::timestamptz, $3::uuid))
            ORDER BY d.created_at DESC, d.id DESC LIMIT $4`,
          [state, c ? c[0] : null, c ? c[1] : null, limit + 1],
        );
        const items = rows.map((r: any) => ({ ...r, batches: Number(r.batches), created_at: iso(r.created_at), requeued_at: r.requeued_at ? iso(r.requeued_at) : null }));
        return page(items, limit, (last: any) => [last.created_at, last.id]);
      },
    },

    retryDeadLetter: {
      visibility: "public",
      params: { id: "uuid" },
      async handler(this: any, ctx: Context<any, any>) {
        // By dead-letter id or by period id (a failed period is requeued even without its letter).
        const { rows } = await this.db.query(
          `SELECT period_id FROM (SELECT period_id, created_at FROM anchor_dead_letters WHERE id = $1 OR period_id = $1
                                 UNION ALL SELECT id, created_at FROM periods WHERE id = $1 AND status = 'failed') x
            ORDER BY created_at DESC LIMIT 1`,
          [ctx.params.id],
        );
        if (!rows.length) throw notFound("dead letter");
        const requeued = await this.requeuePeriod(ctx, rows[0].period_id, null);
        if (!requeued) throw conflict("this dead letter was already requeued");
        this.scheduleCycleSoon();
        return { period_id: rows[0].period_id, status: "pending" };
      },
    },

    cycle: {
      visibility: "public",
      params: { open: { type: "enum", values: ["auto", "force", "never"], optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        return this.runCycle({ open: ctx.params.open ?? "auto" });
      },
    },

    // ---- Proofs and verification ---------------------------------------------------------------
    proof: {
      rest: { method: "GET", fullPath: "/v1/products/:id/proof" },
      auth: "public",
      summary: "A product's self-contained proof document (voketag-proof/1, docs/PROOFS.md), once its batch is anchored",
      params: { id: "uuid" },
      responses: { 200: ok("The proof document", ProofDocument) },
      errors: [409],
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
            confirmations_required: (await this.anchorSettings()).confirmations,
          },
          issuer_url: this.config.verificationUrlBase,
        });
      },
    } as any,

    verifyProof: {
      rest: { method: "POST", fullPath: "/v1/verify/proof" },
      auth: "public",
      summary: "Verify a proof document (the body is the document itself); every check reported by name",
      responses: { 200: ok("Every check by name (valid: false when one fails)", ProofVerification) },
      async handler(this: any, ctx: Context<any, any>) {
        const { $idem, ...body } = ctx.params;
        let doc;
        try {
          doc = parseProofDocument(body);
        } catch (err) {
          if (err instanceof ProofFormatError) throw badRequest("not a proof document", { problems: (err as any).problems });
          throw err;
        }
        // "sender" also checks that the anchoring address is this instance's (/.well-known/voketag.json).
        const trusted = await this.anchoringAddresses(doc.anchor.chain_id);
        return verifyProofDocument(doc, this.chainReader(), { trustedAddresses: trusted.length ? trusted : undefined });
      },
    } as any,

    verifyBatch: {
      rest: { method: "GET", fullPath: "/v1/verify/:batch_id" },
      auth: "public",
      summary: "Recompute a batch's root from its stored products and compare it with the chain",
      params: { batch_id: "uuid" },
      responses: { 200: ok("Every check by name", BatchVerification) },
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
          checks.push({ name: "anchor", ok: false, detail: `the batch is not anchored yet (${(await this.batchAnchor(batch.id)).status})` });
        } else {
          const expected = batchLeafHash(batch.id, root ?? "0".repeat(64)).toString("hex");
          const proof = proofFromSerialized(period.tree, period.leaf_count, period.leaf_index);
          const periodOk = expected === period.leaf_hash && proof.root.toString("hex") === period.root;
          checks.push({ name: "period_path", ok: periodOk, detail: periodOk ? `batch leaf is in period ${period.id}` : "the batch leaf does not lead to the period root" });
          const tx = await this.chain.transaction(period.tx_hash).catch(() => null);
          const onChain = tx ? decodeAnchorCalldata(tx.data)?.toString("hex") : null;
          const fromUs = !!tx && tx.from.toLowerCase() === String(period.address).toLowerCase();
          checks.push({
            name: "transaction",
            ok: onChain === period.root && fromUs && tx!.blockNumber === Number(period.block_number),
            detail: tx ? `transaction ${period.tx_hash} from ${tx.from} in block ${tx.blockNumber} carries ${onChain ?? "no anchor payload"}` : `transaction ${period.tx_hash} not found on chain`,
          });
        }
        return { batch_id: batch.id, valid: checks.every((c) => c.ok), checks };
      },
    } as any,

    verifyTransaction: {
      rest: { method: "GET", fullPath: "/v1/verify/transaction/:tx_id" },
      auth: "public",
      summary: "What an anchoring transaction carries, read from the chain",
      params: { tx_id: { type: "string", pattern: /^0x[0-9a-fA-F]{64}$/ } },
      responses: { 200: ok("What the transaction anchors", TransactionVerification) },
      async handler(this: any, ctx: Context<any, any>) {
        const txHash = ctx.params.tx_id.toLowerCase();
        const tx = await this.chain.transaction(txHash);
        if (!tx) throw notFound("transaction");
        const root = decodeAnchorCalldata(tx.data);
        const head = await this.chain.blockNumber();
        const { rows } = await this.db.query(
          `SELECT p.id, p.root, p.status FROM periods p WHERE lower(p.tx_hash) = $1
           UNION SELECT p.id, p.root, p.status FROM anchor_txs t JOIN periods p ON p.id = t.period_id WHERE lower(t.tx_hash) = $1 LIMIT 1`,
          [txHash],
        );
        const period = rows[0];
        const count = period ? await this.db.query("SELECT count(*) AS n FROM period_leaves WHERE period_id = $1 AND kind = 'batch'", [period.id]) : null;
        const addresses = await this.anchoringAddresses(await this.chain.chainId());
        return {
          tx_hash: tx.hash,
          from: tx.from,
          block_number: tx.blockNumber,
          confirmations: tx.blockNumber === null ? 0 : Math.max(0, head - tx.blockNumber + 1),
          anchored_root: root ? root.toString("hex") : null,
          is_voketag_anchor: !!root && addresses.includes(tx.from.toLowerCase()),
          period: period ? { id: period.id, root: period.root, status: period.status, batches: Number(count!.rows[0].n), matches: root?.toString("hex") === period.root } : null,
        };
      },
    } as any,

    identity: {
      rest: { method: "GET", fullPath: "/.well-known/voketag.json" },
      auth: "public",
      summary: "This instance's identity for verifiers: chains, anchoring addresses, token key ids, proof formats",
      responses: { 200: ok("The identity document", Identity) },
      async handler(this: any, ctx: Context<any, any>) {
        const ring = await this.tokenKeyring();
        const settings = await this.anchorSettings();
        const chainId = await this.chain.chainId().catch(() => null);
        const { rows } = await this.db.query("SELECT DISTINCT chain_id, lower(address) AS address FROM periods WHERE status = 'final'");
        const chains = new Map<number, Set<string>>();
        const add = (id: number, address: string) => (chains.get(id) ?? chains.set(id, new Set()).get(id)!).add(ethers.getAddress(address));
        if (chainId !== null) add(chainId, this.chain.address);
        for (const r of rows) add(Number(r.chain_id), r.address);
        const base = this.config.verificationUrlBase;
        ctx.meta.$responseHeaders = { "Cache-Control": "public, max-age=300" };
        return {
          name: "VokeTag",
          url: base,
          proof_versions: [PROOF_VERSION],
          chains: [...chains].map(([id, addrs]) => ({
            chain_id: id,
            // The current anchoring address first; earlier ones stay listed so old proofs still verify.
            anchoring_addresses: [...addrs],
            current: id === chainId,
            method: "calldata",
            payload: "VOKETAG1 || period_root",
            payload_prefix: "0x" + ANCHOR_MAGIC_BYTES.toString("hex"),
            confirmations_required: settings.confirmations,
          })),
          token_key_ids: Object.keys(ring.keys),
          jwks_uri: `${base}/.well-known/jwks.json`,
          verifier: { page: `${base}/verify`, cli: "npx voketag verify proof.json --rpc <URL> --issuer " + base, spec: "docs/PROOFS.md" },
        };
      },
    } as any,

    // ---- The browser verifier: a page and the lib/ bundle it runs ------------------------------
    verifierPage: {
      rest: { method: "GET", fullPath: "/verify" },
      auth: "public",
      summary: "Browser verifier: checks a proof document against an RPC URL you give, in your browser",
      responses: { 200: media("The verifier page", "text/html") },
      handler(this: any, ctx: Context<any, any>) {
        ctx.meta.$responseType = "text/html; charset=utf-8";
        // The page's script talks to the RPC the user names (any origin); scripts stay same-origin only.
        ctx.meta.$responseHeaders = {
          "Content-Security-Policy":
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' https: http:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
          "Cache-Control": "no-cache",
        };
        return renderVerifierPage();
      },
    } as any,

    verifierScript: {
      rest: { method: "GET", fullPath: "/assets/verify.js" },
      auth: "public",
      summary: "Script of the browser verifier (lib/proof and lib/merkle bundled for the browser)",
      responses: { 200: media("The verifier script", "text/javascript") },
      async handler(this: any, ctx: Context<any, any>) {
        const bundle = await this.verifierBundle();
        ctx.meta.$responseType = "text/javascript; charset=utf-8";
        ctx.meta.$responseHeaders = { "Cache-Control": "public, max-age=300", ETag: `"${bundle.sha256.slice(0, 32)}"` };
        return bundle.code;
      },
    } as any,

    verifierCss: staticAsset({ path: "/assets/verify.css", summary: "Stylesheet of the browser verifier", type: "text/css", body: VERIFIER_CSS, maxAgeSeconds: 300 }),
  },

  methods: {
    chainReader(this: any) {
      return jsonRpcChainReader((method: string, params: unknown[]) => this.chain.request(method, params));
    },

    verifierBundle(this: any) {
      // Built once per process from lib/ (no second copy of the verification code).
      this._bundle ??= buildVerifierBundle().catch((err: Error) => {
        this._bundle = null;
        this.logger.error({ err: err.message }, "browser verifier bundle failed to build");
        throw err;
      });
      return this._bundle;
    },

    /** Settings, with god-mode values (settings table) over the environment's. */
    async anchorSettings(this: any): Promise<AnchorSettings> {
      const a = this.config.anchor;
      const int = async (key: string, def: number, min: number) => {
        const v = Number(await this.setting(key, def));
        return Number.isSafeInteger(v) && v >= min ? v : def;
      };
      const weiSetting = async (key: string, def: string) => {
        const v = String(await this.setting(key, def));
        return /^\d+$/.test(v) ? BigInt(v) : BigInt(def);
      };
      return {
        intervalSeconds: await int("ANCHOR_INTERVAL", a.intervalSeconds, 1),
        confirmations: await int("ANCHOR_CONFIRMATIONS", a.confirmations, 1),
        maxFeeWei: BigInt(await int("ANCHOR_MAX_FEE_GWEI", a.maxFeeGwei, 1)) * GWEI,
        stuckTimeoutSeconds: await int("ANCHOR_STUCK_TIMEOUT", a.stuckTimeoutSeconds, 1),
        lowBalanceWei: await weiSetting("ANCHOR_LOW_BALANCE_WEI", a.lowBalanceWei),
      };
    },

    /** Lower-case anchoring addresses of this instance on a chain: the current one and any used before. */
    async anchoringAddresses(this: any, chainId: number): Promise<string[]> {
      const { rows } = await this.db.query("SELECT DISTINCT lower(address) AS a FROM periods WHERE chain_id = $1 AND status = 'final'", [chainId]);
      const set = new Set<string>(rows.map((r: any) => r.a));
      if ((await this.chain.chainId().catch(() => null)) === chainId) set.add(this.chain.address.toLowerCase());
      return [...set];
    },

    async walletStatus(this: any) {
      const settings: AnchorSettings = await this.anchorSettings();
      const [balance, fees] = await Promise.all([this.chain.balanceWei(), this.chain.feeData().catch(() => null)]);
      const fee = fees ? cappedFees(fees, settings.maxFeeWei).maxFeePerGas : settings.maxFeeWei;
      const low = balance < settings.lowBalanceWei;
      this.recordWallet(balance, low);
      return {
        address: this.chain.address,
        balance_wei: balance.toString(),
        balance_eth: ethers.formatEther(balance),
        low_balance_threshold_wei: settings.lowBalanceWei.toString(),
        low_balance: low,
        anchors_left_estimate: fee > 0n ? Number(balance / (ANCHOR_GAS * fee)) : null,
        ...(low ? { warning: `anchoring wallet ${this.chain.address} holds ${ethers.formatEther(balance)} ETH, below ANCHOR_LOW_BALANCE_WEI: top it up before anchors start failing` } : {}),
      };
    },

    recordWallet(this: any, balance: bigint, low: boolean) {
      const labels = { address: this.chain.address };
      this.metric("set", ANCHOR_METRICS.balance, labels, Number(balance));
      this.metric("set", ANCHOR_METRICS.lowBalance, labels, low ? 1 : 0);
    },

    async queueStatus(this: any) {
      const { rows } = await this.db.query(
        `SELECT (SELECT count(*) FROM periods WHERE status IN ('pending', 'submitted', 'confirmed')) AS unfinished,
                (SELECT count(*) FROM anchor_dead_letters WHERE requeued_at IS NULL) AS dead_letters,
                (SELECT extract(epoch FROM now() - min(created_at)) FROM periods WHERE status IN ('pending', 'submitted', 'confirmed')) AS oldest`,
      );
      const r = rows[0];
      const dead = Number(r.dead_letters);
      return {
        unfinished_periods: Number(r.unfinished),
        dead_letters: dead,
        oldest_unfinished_seconds: r.oldest === null ? null : Math.round(Number(r.oldest)),
        ...(dead ? { warning: `${dead} period(s) in the anchor dead-letter table: POST /v1/anchor/:id/retry or god mode puts them back` } : {}),
      };
    },

    metric(this: any, op: "set" | "increment", name: string, labels: Record<string, string | number> | undefined, value = 1) {
      const m = this.broker.metrics;
      if (!m?.isEnabled?.() || !m.hasMetric(name)) return;
      if (op === "increment") m.increment(name, labels, value);
      else m.set(name, value, labels);
    },

    scheduleCycleSoon(this: any) {
      if (this.soonTimer || this.stopping) return;
      this.soonTimer = setTimeout(() => {
        this.soonTimer = null;
        void this.runCycle({ open: "auto" }).catch((err: Error) => this.logger.warn({ err: err.message }, "anchor cycle failed"));
      }, 500);
      this.soonTimer.unref?.();
    },

    async batchAnchor(this: any, batchId: string) {
      const { rows } = await this.db.query(
        `SELECT p.id, p.status, p.confirmations, p.tx_hash, p.block_number, p.chain_id, p.last_error,
                (SELECT reason FROM anchor_dead_letters d WHERE d.period_id = p.id AND d.requeued_at IS NULL LIMIT 1) AS dead_letter
           FROM period_leaves l JOIN periods p ON p.id = l.period_id
          WHERE l.kind = 'batch' AND l.ref = $1 ORDER BY (p.status = 'final') DESC, p.created_at DESC LIMIT 1`,
        [batchId],
      );
      const p = rows[0];
      const out: Record<string, unknown> = {
        batch_id: batchId,
        status: p?.status ?? "pending",
        confirmations: p?.confirmations ?? 0,
        tx_hash: p?.tx_hash ?? null,
        block_number: p?.block_number == null ? null : Number(p.block_number),
        chain_id: p?.chain_id ?? (await this.chain.chainId().catch(() => null)),
        period_id: p?.id ?? null,
      };
      if (p?.status === "failed") out.error = p.dead_letter ?? p.last_error;
      return out;
    },

    async finalPeriodOf(this: any, batchId: string) {
      const { rows } = await this.db.query(
        `SELECT p.*, l.leaf_index, l.leaf_hash FROM period_leaves l JOIN periods p ON p.id = l.period_id
          WHERE l.kind = 'batch' AND l.ref = $1 AND p.status = 'final' LIMIT 1`,
        [batchId],
      );
      return rows[0] ?? null;
    },

    async requeuePeriod(this: any, ctx: Context<any, any>, periodId: string, scope: { tenant_id: string; batch_id: string } | null): Promise<boolean> {
      const by = ctx.meta?.principal ? `${ctx.meta.principal.type}:${ctx.meta.principal.id}` : "system";
      const done = await this.db.tx(async (q: Queryable) => {
        const p = await q.query("UPDATE periods SET status = 'pending', attempts = 0, last_error = NULL, next_attempt_at = NULL, updated_at = now() WHERE id = $1 AND status = 'failed' RETURNING id", [periodId]);
        if (!p.rowCount) return false;
        const d = await q.query("UPDATE anchor_dead_letters SET requeued_at = now(), requeued_by = $2 WHERE period_id = $1 AND requeued_at IS NULL RETURNING id, reason", [periodId, by]);
        await this.audit(q, ctx, {
          action: "anchor.retry",
          target_type: scope ? "batch" : "anchor_period",
          target_id: scope ? scope.batch_id : periodId,
          tenant_id: scope ? scope.tenant_id : null,
          before: { status: "failed", dead_letter: d.rows[0] ?? null },
          after: { status: "pending", period_id: periodId },
        });
        return true;
      });
      if (done) this.logger.info({ period_id: periodId, by }, "anchor period requeued from the dead-letter table");
      return done;
    },

    // ---- The cycle -------------------------------------------------------------------------------

    /**
     * One cycle, on one node of the cluster at a time: watch what is in flight (confirmations, reorgs,
     * stuck transactions), open this slot's period if it has none, then (re)send what is pending.
     * open: "auto" once per ANCHOR_INTERVAL slot; "force" now (god mode, tests); "never" just watch.
     */
    async runCycle(this: any, opts: { open?: "auto" | "force" | "never" } = {}) {
      if (this.cycleRunning) {
        // A request to open now must not be swallowed by a cycle already past its opening step.
        if (opts.open === "force") return this.cycleRunning.then(() => this.runCycle(opts));
        return this.cycleRunning;
      }
      this.cycleRunning = this.db
        .session(async (s: Queryable) => {
          const lock = await s.query("SELECT pg_try_advisory_lock($1) AS ok", [CYCLE_LOCK]);
          if (!lock.rows[0].ok) return { leader: false };
          try {
            return { leader: true, ...(await this.cycleAsLeader(s, opts.open ?? "auto")) };
          } finally {
            await s.query("SELECT pg_advisory_unlock($1)", [CYCLE_LOCK]).catch(() => undefined);
          }
        })
        .finally(() => (this.cycleRunning = null));
      return this.cycleRunning;
    },

    async cycleAsLeader(this: any, s: Queryable, open: "auto" | "force" | "never") {
      const settings: AnchorSettings = await this.anchorSettings();
      const out: Record<string, unknown> = { opened: null };
      let chainDown = false;
      // Runs a step that talks to the chain; an unreachable RPC skips the chain steps after it.
      const step = async <T>(fn: () => Promise<T>, evenIfDown = false): Promise<T | undefined> => {
        if (chainDown && !evenIfDown) return undefined;
        try {
          return await fn();
        } catch (err) {
          if (!(err instanceof ChainUnavailable) && classifyChainError(err) !== "unavailable") throw err;
          if (!chainDown) this.setChainUp(false, err);
          chainDown = true;
          return undefined;
        }
      };
      try {
        await step(async () => {
          if (!this.reconciled) {
            await this.reconcileNonces();
            this.reconciled = true;
          }
          await this.advancePeriods(s, settings);
        });
        // A period closes on time even while the chain is unreachable: it is sent when it is back.
        if (open !== "never") out.opened = (await step(() => this.openPeriod(settings, open === "force"), true)) ?? null;
        // Sending is tried even after the RPC failed above: each pending period records the attempt.
        out.submitted = await step(() => this.submitPending(s, settings), true);
        if (chainDown) out.chain = "unavailable";
        else this.setChainUp(true);
      } catch (err) {
        if (!(err instanceof LostLeadership)) throw err;
        this.logger.warn("anchor cycle stopped: the advisory lock was lost");
        out.lost_lock = true;
      } finally {
        await this.updateQueueMetrics().catch(() => undefined);
      }
      return out;
    },

    setChainUp(this: any, up: boolean, err?: unknown) {
      if (!up && this.chainUp !== false) this.logger.warn({ err: err ? chainErrorReason(err) : undefined, rpc: this.chain.endpoint }, "chain RPC unreachable: anchors stay pending and are retried");
      if (up && this.chainUp === false) this.logger.info({ rpc: this.chain.endpoint }, "chain RPC reachable again");
      this.chainUp = up;
      this.metric("set", ANCHOR_METRICS.chainUp, undefined, up ? 1 : 0);
    },

    async assertLeader(this: any, s: Queryable) {
      // Session advisory locks die with their connection: check before every transaction we send.
      const { rows } = await s.query(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND pid = pg_backend_pid() AND granted) AS held",
        [CYCLE_LOCK],
      );
      if (!rows[0].held) throw new LostLeadership();
    },

    /**
     * Once per process, before the first submission: compares the nonces stored with unfinished
     * periods with the chain's. A nonce the chain has used up without any of our transactions being
     * mined was taken by someone else using the key: that period is signed again with a new nonce,
     * never a reused one. (Stored transactions the chain has not seen are simply sent again.)
     */
    async reconcileNonces(this: any) {
      const [mined, pending, chainId] = await Promise.all([this.chain.minedNonce(), this.chain.pendingNonce(), this.chain.chainId()]);
      const { rows } = await this.db.query(
        `SELECT id, root, status, nonce, tx_hash, block_number, block_hash, confirmations, chain_id, address, submitted_at FROM periods
          WHERE nonce IS NOT NULL AND status IN ('pending', 'submitted') AND chain_id = $1 AND lower(address) = lower($2) ORDER BY nonce`,
        [chainId, this.chain.address],
      );
      let released = 0;
      for (const p of rows as PeriodRow[]) {
        if (p.nonce! >= mined || (await this.minedTxOf(await this.txsOf(p.id)))) continue;
        await this.releaseNonce(p, "nonce used by a transaction VokeTag did not send");
        released++;
      }
      const held = rows.length ? Number(rows[rows.length - 1].nonce) : null;
      this.logger.info({ chain_mined_nonce: mined, chain_pending_nonce: pending, highest_held_nonce: held, released }, "anchor nonces reconciled with the chain");
      if (held === null && pending > mined) this.logger.warn({ pending, mined }, "the anchoring address has pending transactions VokeTag did not record: is the key used elsewhere?");
    },

    /** Gathers every registered batch in no period, plus moved ledger heads, into this slot's period. */
    async openPeriod(this: any, settings: AnchorSettings, force: boolean) {
      const slot = await this.db.query(
        `SELECT to_timestamp(floor(extract(epoch FROM now()) / $1) * $1) AS slot_start,
                EXISTS (SELECT 1 FROM periods WHERE slot_start >= to_timestamp(floor(extract(epoch FROM now()) / $1) * $1)) AS taken`,
        [settings.intervalSeconds],
      );
      if (slot.rows[0].taken && !force) return null;
      const { rows: batches } = await this.db.query(
        `SELECT b.id, b.root FROM batches b
          WHERE b.status IN ('registered', 'anchoring') AND b.root IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM period_leaves l WHERE l.kind = 'batch' AND l.ref = b.id::text)
          ORDER BY b.registered_at, b.id LIMIT 100000`,
      );
      let heads: { partition: string; seq: number; hash: string }[] = [];
      try {
        heads = await this.broker.call("scan.ledgerHeads", {}, { timeout: 3000, retries: 0 });
      } catch (err) {
        this.logger.debug({ err: (err as Error).message }, "ledger heads unavailable; anchoring batches only this period");
      }
      // Ledger heads alone open a period only when they moved since they were last anchored.
      const { rows: last } = await this.db.query(
        `SELECT l.ref, (l.data->>'seq')::bigint AS seq FROM period_leaves l
          WHERE l.kind = 'ledger_head' AND l.period_id = (SELECT p.id FROM periods p JOIN period_leaves x ON x.period_id = p.id AND x.kind = 'ledger_head'
                                                           WHERE p.status <> 'failed' ORDER BY p.created_at DESC LIMIT 1)`,
      );
      const lastSeq = new Map<string, number>(last.map((r: any) => [r.ref, Number(r.seq)]));
      const headsMoved = heads.some((h) => lastSeq.get(h.partition) !== h.seq);
      if (!batches.length && !headsMoved) return null;
      const leaves = [
        ...batches.map((b: any) => ({ kind: "batch", ref: b.id, data: { batch_id: b.id, root: b.root }, hash: batchLeafHash(b.id, b.root) })),
        ...heads.map((h) => ({ kind: "ledger_head", ref: h.partition, data: h, hash: ledgerHeadLeafHash(h) })),
      ];
      const tree = buildTree(leaves.map((l) => l.hash));
      const chainId = await this.chain.chainId();
      const periodId = await this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          "INSERT INTO periods (root, tree, leaf_count, status, chain_id, address, slot_start) VALUES ($1, $2, $3, 'pending', $4, $5, $6) RETURNING id",
          [tree.root.toString("hex"), serializeTree(tree), leaves.length, chainId, this.chain.address, slot.rows[0].slot_start],
        );
        const id = r.rows[0].id;
        await q.query(
          `INSERT INTO period_leaves (period_id, leaf_index, kind, ref, leaf_hash, data)
           SELECT $1, i, kind, ref, hash, data::jsonb FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[]) AS t(i, kind, ref, hash, data)`,
          [id, leaves.map((_, i) => i), leaves.map((l) => l.kind), leaves.map((l) => l.ref), leaves.map((l) => l.hash.toString("hex")), leaves.map((l) => JSON.stringify(l.data))],
        );
        if (batches.length) await q.query("UPDATE anchor_jobs SET period_id = $1 WHERE batch_id = ANY($2::uuid[])", [id, batches.map((b: any) => b.id)]);
        return id;
      });
      this.logger.info({ period_id: periodId, batches: batches.length, ledger_heads: heads.length, root: tree.root.toString("hex"), forced: force }, "anchor period opened");
      return periodId;
    },

    async txsOf(this: any, periodId: string): Promise<TxRow[]> {
      const { rows } = await this.db.query(
        "SELECT tx_hash, nonce, raw, status, kind, max_fee_per_gas::text, max_priority_fee_per_gas::text, sent_at, created_at FROM anchor_txs WHERE period_id = $1 ORDER BY created_at, tx_hash",
        [periodId],
      );
      return rows;
    },

    /** The first of a period's transactions that the chain has mined, with its receipt. */
    async minedTxOf(this: any, txs: TxRow[]): Promise<{ tx: TxRow; receipt: AnchorReceipt } | null> {
      for (const tx of txs) {
        const receipt = await this.chain.receipt(tx.tx_hash);
        if (receipt) return { tx, receipt };
      }
      return null;
    },

    /**
     * Pending periods in nonce order, each with up to MAX_ATTEMPTS tries (exponential backoff).
     * An unreachable RPC ends the cycle with the period still pending; any other failure, repeated
     * MAX_ATTEMPTS times, dead-letters it. A later period never overtakes one that failed, so the
     * chain never sees a nonce gap.
     */
    async submitPending(this: any, s: Queryable, settings: AnchorSettings) {
      const { rows } = await this.db.query(
        `SELECT id, root, status, nonce, tx_hash, submitted_at, chain_id, address FROM periods
          WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
          ORDER BY nonce NULLS LAST, created_at`,
      );
      let submitted = 0;
      for (const p of rows as PeriodRow[]) {
        const errors: { at: string; attempt: number; kind: string; error: string }[] = [];
        let ok = false;
        for (let attempt = 1; attempt <= MAX_ATTEMPTS && !ok; attempt++) {
          try {
            await this.submitOnce(s, p, settings);
            ok = true;
            submitted++;
          } catch (err) {
            if (err instanceof LostLeadership) throw err;
            const kind = classifyChainError(err);
            const reason = chainErrorReason(err);
            errors.push({ at: new Date().toISOString(), attempt, kind, error: reason });
            this.metric("increment", ANCHOR_METRICS.failures, { kind });
            await this.db.query("UPDATE periods SET attempts = attempts + 1, last_error = $2, updated_at = now() WHERE id = $1", [p.id, reason]);
            this.logger.warn({ period_id: p.id, attempt, kind, err: reason }, "anchor submission failed");
            if (kind === "unavailable") throw new ChainUnavailable(reason);
            if (attempt < MAX_ATTEMPTS) await sleep(backoffSeconds(attempt, this.config.anchor.retryBackoffSeconds) * 1000);
          }
        }
        if (!ok) {
          await this.deadLetter(p, errors);
          break;
        }
      }
      return submitted;
    },

    /** Signs (once) and broadcasts a pending period's transaction; the nonce and raw bytes are stored first. */
    async submitOnce(this: any, s: Queryable, p: PeriodRow, settings: AnchorSettings) {
      const chain: ChainClient = this.chain;
      const txs: TxRow[] = await this.txsOf(p.id);
      // Mined after all (a broadcast whose answer was lost, or a reorg that put it back)?
      const mined = await this.minedTxOf(txs);
      if (mined) return this.markSubmitted(p, mined.tx.tx_hash);
      let tx = [...txs].reverse().find((t) => t.status === "signed" || t.status === "sent") ?? null;
      if (tx && tx.nonce < (await chain.minedNonce())) {
        // Its nonce is used up and none of ours is mined: someone else used the key. Never reuse it.
        await this.releaseNonce(p, "nonce used by a transaction VokeTag did not send");
        tx = null;
      }
      if (!tx) {
        const [pendingNonce, suggested, held] = await Promise.all([
          chain.pendingNonce(),
          chain.feeData(),
          this.db.query("SELECT max(nonce) AS max FROM periods WHERE nonce IS NOT NULL AND status <> 'final' AND chain_id = $1 AND lower(address) = lower($2) AND id <> $3", [p.chain_id, chain.address, p.id]),
        ]);
        const heldMax = held.rows[0].max === null ? -1 : Number(held.rows[0].max);
        const nonce = Math.max(pendingNonce, heldMax + 1);
        const fees = cappedFees(suggested, settings.maxFeeWei);
        await this.assertLeader(s);
        const signed = await chain.signData(encodeAnchorCalldata(Buffer.from(p.root, "hex")), { nonce, ...fees });
        // Stored before it is sent: a crash from here on resends exactly this transaction.
        await this.db.tx(async (q: Queryable) => {
          const r = await q.query("UPDATE periods SET nonce = $2, chain_id = $3, address = $4, updated_at = now() WHERE id = $1 AND status = 'pending' RETURNING id", [p.id, nonce, p.chain_id, chain.address]);
          if (!r.rowCount) throw new LostLeadership();
          await q.query(
            `INSERT INTO anchor_txs (tx_hash, period_id, chain_id, address, nonce, raw, max_fee_per_gas, max_priority_fee_per_gas, status, kind)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'signed', 'first')`,
            [signed.hash, p.id, p.chain_id, chain.address, nonce, signed.raw, signed.maxFeePerGas.toString(), signed.maxPriorityFeePerGas.toString()],
          );
        });
        tx = { tx_hash: signed.hash, nonce, raw: signed.raw, status: "signed", kind: "first", max_fee_per_gas: signed.maxFeePerGas.toString(), max_priority_fee_per_gas: signed.maxPriorityFeePerGas.toString(), sent_at: null, created_at: new Date() };
      }
      await this.assertLeader(s);
      try {
        await chain.broadcast(tx.raw);
      } catch (err) {
        if (classifyChainError(err) === "nonce_too_low") {
          const again = await this.minedTxOf(await this.txsOf(p.id));
          if (again) return this.markSubmitted(p, again.tx.tx_hash);
          await this.releaseNonce(p, "nonce used by a transaction VokeTag did not send");
        }
        throw err;
      }
      this.metric("increment", ANCHOR_METRICS.transactions, { kind: tx.status === "signed" ? tx.kind : "rebroadcast" });
      await this.markSubmitted(p, tx.tx_hash);
    },

    async markSubmitted(this: any, p: PeriodRow, txHash: string) {
      await this.db.tx(async (q: Queryable) => {
        // sent_at restarts the stuck clock: a transaction sent again after a reorg is not stuck yet.
        await q.query("UPDATE anchor_txs SET status = 'sent', sent_at = now() WHERE tx_hash = $1 AND status IN ('signed', 'sent', 'dropped')", [txHash]);
        const r = await q.query(
          `UPDATE periods SET status = 'submitted', tx_hash = $2, submitted_at = coalesce(submitted_at, now()), last_error = NULL, next_attempt_at = NULL, updated_at = now()
            WHERE id = $1 AND status = 'pending' RETURNING id`,
          [p.id, txHash],
        );
        // The first submission tells the factory (batches → anchoring); resubmissions after a reorg need not.
        if (r.rowCount && !p.submitted_at) {
          const b = await q.query("SELECT ref FROM period_leaves WHERE period_id = $1 AND kind = 'batch'", [p.id]);
          if (b.rowCount) await this.emitDurable(q, "anchor.submitted", { period_id: p.id, tx_hash: txHash, batch_ids: b.rows.map((x: any) => x.ref) });
        }
      });
      this.pokeOutbox();
      this.logger.info({ period_id: p.id, tx_hash: txHash }, "anchor submitted");
    },

    async releaseNonce(this: any, p: PeriodRow, why: string) {
      await this.db.tx(async (q: Queryable) => {
        await q.query("UPDATE anchor_txs SET status = 'dropped' WHERE period_id = $1 AND status IN ('signed', 'sent')", [p.id]);
        await q.query("UPDATE periods SET nonce = NULL, status = 'pending', tx_hash = NULL, confirmations = 0, block_number = NULL, block_hash = NULL, updated_at = now() WHERE id = $1 AND status <> 'final'", [p.id]);
      });
      this.logger.warn({ period_id: p.id, nonce: p.nonce, why }, "anchor nonce released; the period will be sent with a new one");
    },

    async deadLetter(this: any, p: PeriodRow, errors: { error: string }[]) {
      const reason = errors[errors.length - 1]?.error ?? "unknown failure";
      await this.db.tx(async (q: Queryable) => {
        // A transaction some node once accepted may still be mined: its nonce stays reserved so no
        // later period is ever given it. One no node ever accepted frees its nonce.
        const accepted = await q.query("SELECT 1 FROM anchor_txs WHERE period_id = $1 AND (status IN ('sent', 'mined') OR sent_at IS NOT NULL) LIMIT 1", [p.id]);
        if (!accepted.rowCount) await q.query("UPDATE anchor_txs SET status = 'dropped' WHERE period_id = $1 AND status = 'signed'", [p.id]);
        await q.query(
          `UPDATE periods SET status = 'failed', last_error = $2, updated_at = now(), nonce = CASE WHEN $3 THEN nonce END WHERE id = $1`,
          [p.id, reason, accepted.rowCount > 0],
        );
        await q.query("INSERT INTO anchor_dead_letters (period_id, reason, attempts) VALUES ($1, $2, $3::jsonb)", [p.id, reason, JSON.stringify(errors)]);
      });
      this.logger.error({ period_id: p.id, reason, attempts: errors.length }, "anchor period dead-lettered after repeated failures");
    },

    /**
     * Watches periods in flight: counts confirmations (final at ANCHOR_CONFIRMATIONS), notices a
     * reorg that dropped the transaction (back to pending: it is sent again), a transaction the
     * mempool lost (resent), one stuck past ANCHOR_STUCK_TIMEOUT (replaced: same nonce, higher fee,
     * capped), and a dead-lettered period whose earlier transaction got mined after all.
     */
    async advancePeriods(this: any, s: Queryable, settings: AnchorSettings) {
      const { rows } = await this.db.query(
        `SELECT id, root, status, nonce, tx_hash, block_number, block_hash, confirmations, chain_id, address, submitted_at FROM periods
          WHERE status IN ('submitted', 'confirmed') OR (status = 'failed' AND nonce IS NOT NULL) ORDER BY nonce NULLS LAST, created_at`,
      );
      if (!rows.length) return;
      const minedNonce = await this.chain.minedNonce();
      const head = await this.chain.blockNumber();
      for (const p of rows as PeriodRow[]) {
        const txs: TxRow[] = await this.txsOf(p.id);
        const mined = await this.minedTxOf(txs);
        if (mined) {
          await this.recordMined(p, mined, Math.max(head, mined.receipt.blockNumber), settings);
          continue;
        }
        if (p.status === "failed") continue;
        if (p.status === "confirmed") {
          await this.recordReorg(p, txs);
          continue;
        }
        if (p.nonce !== null && p.nonce < minedNonce) {
          // Re-read receipts: our transaction may have been mined between the two reads.
          if (!(await this.minedTxOf(txs))) await this.releaseNonce(p, "nonce used by a transaction VokeTag did not send");
          continue;
        }
        const live = txs.filter((t) => t.status === "sent");
        const known = await Promise.all(live.map((t) => this.chain.transaction(t.tx_hash)));
        if (!known.some(Boolean)) {
          // No node knows it any more (mempool eviction, node restart): send it again.
          await this.db.query("UPDATE periods SET status = 'pending', updated_at = now() WHERE id = $1 AND status = 'submitted'", [p.id]);
          this.logger.warn({ period_id: p.id, tx_hash: p.tx_hash }, "anchor transaction unknown to the node: it will be sent again");
          continue;
        }
        const latest = live[live.length - 1];
        const age = (Date.now() - new Date(latest.sent_at ?? latest.created_at).getTime()) / 1000;
        if (age >= settings.stuckTimeoutSeconds) await this.replaceStuck(s, p, latest, settings);
      }
    },

    async recordMined(this: any, p: PeriodRow, mined: { tx: TxRow; receipt: AnchorReceipt }, head: number, settings: AnchorSettings) {
      const { tx, receipt } = mined;
      const confirmations = head - receipt.blockNumber + 1;
      const final = confirmations >= settings.confirmations;
      const status = final ? "final" : "confirmed";
      if (p.status === status && p.confirmations === confirmations && p.block_hash === receipt.blockHash) return;
      if (p.block_hash && p.block_hash !== receipt.blockHash) {
        this.metric("increment", ANCHOR_METRICS.reorgs, undefined);
        this.logger.warn({ period_id: p.id, tx_hash: tx.tx_hash, was: p.block_hash, now: receipt.blockHash }, "anchor re-mined in another block after a reorg");
      }
      try {
        await this.db.tx(async (q: Queryable) => {
          await q.query("UPDATE anchor_txs SET status = 'mined', gas_used = $2, sent_at = coalesce(sent_at, now()) WHERE tx_hash = $1", [tx.tx_hash, receipt.gasUsed.toString()]);
          await q.query("UPDATE anchor_txs SET status = 'replaced' WHERE period_id = $1 AND tx_hash <> $2 AND status IN ('signed', 'sent', 'mined')", [p.id, tx.tx_hash]);
          const r = await q.query(
            `UPDATE periods SET status = $2, confirmations = $3, block_number = $4, block_hash = $5, tx_hash = $6, updated_at = now(),
                    final_at = CASE WHEN $2 = 'final' THEN now() END, submitted_at = coalesce(submitted_at, now()),
                    reorgs = reorgs + CASE WHEN block_hash IS NOT NULL AND block_hash <> $5 THEN 1 ELSE 0 END
              WHERE id = $1 AND status <> 'final' RETURNING id`,
            [p.id, status, confirmations, receipt.blockNumber, receipt.blockHash, tx.tx_hash],
          );
          if (!r.rowCount) return;
          if (p.status === "failed") {
            await q.query("UPDATE anchor_dead_letters SET requeued_at = now(), requeued_by = 'chain: mined after all' WHERE period_id = $1 AND requeued_at IS NULL", [p.id]);
          }
          if (final) {
            const b = await q.query("SELECT ref FROM period_leaves WHERE period_id = $1 AND kind = 'batch'", [p.id]);
            await this.emitDurable(q, "anchor.confirmed", {
              period_id: p.id,
              tx_hash: tx.tx_hash,
              block_number: receipt.blockNumber,
              chain_id: Number(p.chain_id),
              batch_ids: b.rows.map((x: any) => x.ref),
            });
          }
        });
      } catch (err: any) {
        if (err?.code !== "23505") throw err;
        // periods_final_root: this root is already final in another period. Never two final anchors.
        this.logger.error({ period_id: p.id, root: p.root }, "this root already has a final anchor; the period is set aside");
        await this.deadLetter(p, [{ error: "the same root is already final in another period" }]);
        return;
      }
      if (final) {
        this.pokeOutbox();
        this.metric("set", ANCHOR_METRICS.lastFinal, undefined, Math.floor(Date.now() / 1000));
        this.logger.info({ period_id: p.id, tx_hash: tx.tx_hash, block: receipt.blockNumber, confirmations }, "anchor final");
      }
    },

    async recordReorg(this: any, p: PeriodRow, txs: TxRow[]) {
      // It was mined and no longer is. Back in a mempool (submitted) or gone (pending: the same
      // signed transaction is sent again, same nonce, so it cannot be anchored twice).
      const inPool = (await Promise.all(txs.filter((t) => t.status !== "dropped").map((t) => this.chain.transaction(t.tx_hash)))).some(Boolean);
      const status = inPool ? "submitted" : "pending";
      await this.db.tx(async (q: Queryable) => {
        await q.query("UPDATE anchor_txs SET status = 'sent' WHERE period_id = $1 AND status IN ('mined', 'replaced')", [p.id]);
        await q.query(
          "UPDATE periods SET status = $2, confirmations = 0, block_number = NULL, block_hash = NULL, reorgs = reorgs + 1, updated_at = now() WHERE id = $1 AND status = 'confirmed'",
          [p.id, status],
        );
      });
      this.metric("increment", ANCHOR_METRICS.reorgs, undefined);
      this.logger.warn({ period_id: p.id, tx_hash: p.tx_hash, was_block: p.block_number, now: status }, "anchor transaction dropped by a reorg: the period is anchored again");
    },

    async replaceStuck(this: any, s: Queryable, p: PeriodRow, latest: TxRow, settings: AnchorSettings) {
      const chain: ChainClient = this.chain;
      const previous: Fees = { maxFeePerGas: BigInt(latest.max_fee_per_gas), maxPriorityFeePerGas: BigInt(latest.max_priority_fee_per_gas) };
      const next = replacementFees(previous, await chain.feeData(), settings.maxFeeWei);
      if (!next) {
        const msg = `stuck at nonce ${latest.nonce} and ANCHOR_MAX_FEE_GWEI leaves no room for a higher fee: waiting for fees to fall`;
        if (p.tx_hash && this.lastCapWarning !== latest.tx_hash) this.logger.warn({ period_id: p.id, tx_hash: latest.tx_hash, max_fee_per_gas: previous.maxFeePerGas.toString() }, msg);
        this.lastCapWarning = latest.tx_hash;
        await this.db.query("UPDATE periods SET last_error = $2 WHERE id = $1", [p.id, msg]);
        return;
      }
      await this.assertLeader(s);
      const signed = await chain.signData(encodeAnchorCalldata(Buffer.from(p.root, "hex")), { nonce: latest.nonce, ...next });
      await this.db.query(
        `INSERT INTO anchor_txs (tx_hash, period_id, chain_id, address, nonce, raw, max_fee_per_gas, max_priority_fee_per_gas, status, kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'signed', 'replacement')`,
        [signed.hash, p.id, p.chain_id, chain.address, latest.nonce, signed.raw, next.maxFeePerGas.toString(), next.maxPriorityFeePerGas.toString()],
      );
      try {
        await chain.broadcast(signed.raw);
      } catch (err) {
        const kind = classifyChainError(err);
        // Not accepted: forget it (if the original gets mined meanwhile, receipts tell).
        await this.db.query("UPDATE anchor_txs SET status = 'dropped' WHERE tx_hash = $1", [signed.hash]);
        await this.db.query("UPDATE periods SET last_error = $2 WHERE id = $1", [p.id, `replacement refused: ${chainErrorReason(err)}`]);
        if (kind === "unavailable") throw new ChainUnavailable(chainErrorReason(err));
        this.logger.warn({ period_id: p.id, kind, err: chainErrorReason(err) }, "replacement of a stuck anchor transaction refused");
        return;
      }
      await this.db.tx(async (q: Queryable) => {
        await q.query("UPDATE anchor_txs SET status = 'sent', sent_at = now() WHERE tx_hash = $1", [signed.hash]);
        await q.query("UPDATE periods SET tx_hash = $2, last_error = NULL, updated_at = now() WHERE id = $1", [p.id, signed.hash]);
      });
      this.metric("increment", ANCHOR_METRICS.transactions, { kind: "replacement" });
      this.logger.warn(
        { period_id: p.id, nonce: latest.nonce, replaced: latest.tx_hash, tx_hash: signed.hash, max_fee_per_gas: next.maxFeePerGas.toString(), tip: next.maxPriorityFeePerGas.toString() },
        "stuck anchor transaction replaced (same nonce, higher fee)",
      );
    },

    async updateQueueMetrics(this: any) {
      const { rows } = await this.db.query("SELECT status, count(*) AS n FROM periods WHERE status <> 'final' GROUP BY status");
      const counts: Record<string, number> = { pending: 0, submitted: 0, confirmed: 0, failed: 0 };
      for (const r of rows) counts[r.status] = Number(r.n);
      for (const [status, n] of Object.entries(counts)) this.metric("set", ANCHOR_METRICS.periods, { status }, n);
      const q = await this.queueStatus();
      this.metric("set", ANCHOR_METRICS.deadLetters, undefined, q.dead_letters);
      this.metric("set", ANCHOR_METRICS.oldestUnfinished, undefined, q.oldest_unfinished_seconds ?? 0);
    },

    async tick(this: any) {
      // Every anchor node watches the wallet, the RPC and the queue (so its series never go stale
      // when another node leads); only the lock holder runs the cycle.
      try {
        await withTimeout(this.walletStatus(), 5000);
        this.setChainUp(true);
      } catch (err) {
        this.setChainUp(false, err);
      }
      const r = await this.runCycle({ open: "auto" });
      if (r && !r.leader) {
        this.logger.debug("anchor cycle skipped: another node holds the lock");
        await this.updateQueueMetrics().catch(() => undefined);
      }
    },

    scheduleTick(this: any) {
      if (this.stopping) return;
      const a = this.config.anchor;
      const interval = this.lastInterval ?? a.intervalSeconds;
      // Ticks land on wall-clock multiples, so every node of the cluster wakes at the same moments.
      const every = Math.min(interval, a.pollSeconds) * 1000;
      const delay = every - (Date.now() % every) + 50;
      this.tickTimer = setTimeout(() => void this.tickThenReschedule(), delay);
      this.tickTimer.unref();
    },

    async tickThenReschedule(this: any) {
      try {
        this.lastInterval = (await this.anchorSettings()).intervalSeconds;
        await this.tick();
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "anchor cycle failed");
      } finally {
        this.scheduleTick();
      }
    },
  },

  created(this: any) {
    const m = this.broker.metrics;
    const reg = (type: string, name: string, description: string, labelNames: string[] = []) => {
      if (!m.hasMetric(name)) m.register({ type, name, labelNames, description });
    };
    reg("gauge", ANCHOR_METRICS.balance, "Balance of the anchoring wallet, in wei", ["address"]);
    reg("gauge", ANCHOR_METRICS.lowBalance, "1 when the anchoring wallet is below ANCHOR_LOW_BALANCE_WEI", ["address"]);
    reg("gauge", ANCHOR_METRICS.chainUp, "1 when the last anchor cycle reached the chain RPC");
    reg("gauge", ANCHOR_METRICS.periods, "Anchor periods not yet final, by status", ["status"]);
    reg("gauge", ANCHOR_METRICS.deadLetters, "Anchor periods waiting in the dead-letter table");
    reg("gauge", ANCHOR_METRICS.oldestUnfinished, "Age of the oldest anchor period not yet final");
    reg("gauge", ANCHOR_METRICS.lastFinal, "When an anchor last became final (Unix time)");
    reg("counter", ANCHOR_METRICS.transactions, "Anchor transactions sent, by kind (first, replacement, rebroadcast)", ["kind"]);
    reg("counter", ANCHOR_METRICS.reorgs, "Anchors dropped or moved by a chain reorganisation");
    reg("counter", ANCHOR_METRICS.failures, "Failed anchor submission attempts, by kind", ["kind"]);
  },

  async started(this: any) {
    const a = this.config.anchor;
    if (a.rpcUrl) {
      if (!a.privateKey) throw new Error("ANCHOR_RPC_URL needs ANCHOR_PRIVATE_KEY (or ANCHOR_PRIVATE_KEY_FILE)");
      this.chain = connectRpc(a.rpcUrl, a.privateKey);
    } else {
      this.chain = startDevChain({ dataDir: this.config.dataDir === "memory://" ? null : this.config.dataDir, chainId: a.chainId, privateKey: a.privateKey ?? undefined });
    }
    const chainId = await withTimeout(this.chain.chainId(), 3000).catch((err: Error) => {
      this.logger.warn({ rpc: this.chain.endpoint, err: err.message }, "chain RPC not reachable at start: anchoring waits for it");
      return null;
    });
    this.logger.info({ address: this.chain.address, chain_id: chainId, rpc: this.chain.endpoint }, "chain client ready");
    this.scheduleTick();
  },

  async stopped(this: any) {
    this.stopping = true;
    clearTimeout(this.tickTimer);
    if (this.soonTimer) clearTimeout(this.soonTimer);
    await this.cycleRunning?.catch(() => undefined);
    await this.chain?.close();
  },
};

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref())]);
}

function iso(v: unknown): string {
  return v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString();
}

export default AnchorService;
