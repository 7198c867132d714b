// Factory: tenants' API keys, batches and products, tokens. Registration is asynchronous and
// all-or-nothing: products, the batch's Merkle tree and its outbox event commit together.
import crypto from "node:crypto";
import type { ServiceSchema, Context } from "moleculer";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { TokensMixin } from "../mixins/tokens.mixin";
import { badRequest, conflict, forbidden, notFound, unauthorized } from "../mixins/errors";
import { principalOf, tenantOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { generateApiKey, parseApiKey, verifyApiKey, API_SCOPES, isSubset, unknownScopes } from "../lib/apikey";
import { signToken } from "../lib/token";
import { buildDigitalLink } from "../lib/gs1";
import { buildTree, serializeTree } from "../lib/merkle";
import { productLeafHash } from "../lib/proof";
import { checkProductRows, ProductInput, RowError } from "../lib/products";
import { listParams, decodeCursor, page, DEFAULT_LIMIT } from "../lib/cursor";
import { isValidIso2 } from "../lib/geo";
import type { OutboxEvent } from "../lib/events";

const productItem = {
  type: "object",
  props: {
    sku: { type: "string", min: 1, max: 128 },
    name: { type: "string", min: 1, max: 256 },
    serial: { type: "string", min: 1, max: 128 },
    gtin: { type: "string", optional: true, nullable: true, max: 14 },
    lot: { type: "string", optional: true, nullable: true, max: 20 },
    attributes: { type: "object", optional: true, nullable: true },
  },
};

const batchBody = {
  name: { type: "string", max: 200, optional: true },
  market_regions: { type: "array", items: { type: "string", length: 2 }, max: 250, optional: true },
};

const uuidParam = { type: "uuid" };

const FactoryService: ServiceSchema = {
  name: "factory",
  mixins: [OutboxMixin, IdempotencyMixin, TokensMixin],
  actions: {
    ready: {
      visibility: "public",
      async handler(this: any) {
        try {
          await this.db.ping();
          return { [this.db.kind === "pg" ? "postgres" : "pglite"]: { ok: true } };
        } catch (err) {
          return { postgres: { ok: false, detail: (err as Error).message } };
        }
      },
    },

    // ---- API keys ----------------------------------------------------------------------------
    authenticateKey: {
      visibility: "public",
      params: { key: { type: "string", max: 200 } },
      async handler(this: any, ctx: Context<{ key: string }>) {
        const parsed = parseApiKey(ctx.params.key);
        if (!parsed) throw unauthorized("invalid API key");
        const { rows } = await this.db.query(
          `SELECT k.id, k.tenant_id, k.key_hash, k.scopes, k.revoked_at, t.status AS tenant_status,
                  (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute') AS stale
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.prefix = $1`,
          [parsed.prefix],
        );
        const k = rows[0];
        // Compare even when the prefix is unknown, so timing does not tell which prefixes exist.
        const ok = verifyApiKey(ctx.params.key, k?.key_hash ?? "0".repeat(64));
        if (!k || !ok || k.revoked_at) throw unauthorized("invalid API key");
        if (k.tenant_status !== "active") throw unauthorized("tenant is suspended");
        // last_used_at at most once a minute per key: no write per request on the hot path.
        if (k.stale) await this.db.query("UPDATE api_keys SET last_used_at = now() WHERE id = $1", [k.id]);
        return { type: "key", id: k.id, tenant_id: k.tenant_id, role: null, scopes: k.scopes };
      },
    },

    issueKey: {
      visibility: "public",
      params: {
        tenant_id: "uuid",
        name: { type: "string", min: 1, max: 100 },
        scopes: { type: "array", items: "string", optional: true },
        created_by: { type: "string", optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        return this.idempotent(ctx, () => this.createKey(ctx.params.tenant_id, ctx.params.name, ctx.params.scopes, ctx.params.created_by));
      },
    },

    createApiKey: {
      rest: { method: "POST", fullPath: "/v1/api-keys" },
      auth: "key",
      scope: "keys:write",
      summary: "Create an API key for your tenant (shown once; scopes within your own)",
      successStatus: 201,
      params: {
        name: { type: "string", min: 1, max: 100 },
        scopes: { type: "array", items: "string", optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const tenant = tenantOf(ctx);
        const requested: string[] = ctx.params.scopes ?? p.scopes;
        if (!p.scopes.includes("*") && !isSubset(requested.includes("*") ? [...API_SCOPES] : requested, p.scopes))
          throw forbidden("a key can only mint keys within its own scopes");
        return this.idempotent(ctx, () => this.createKey(tenant, ctx.params.name, requested, `${p.type}:${p.id}`));
      },
    } as any,

    listApiKeys: {
      rest: { method: "GET", fullPath: "/v1/api-keys" },
      auth: "key",
      scope: "keys:read",
      summary: "List your tenant's API keys (never the secret)",
      params: { ...listParams },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = this.cursorOf(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT id, name, prefix, scopes, created_at, revoked_at, last_used_at FROM api_keys
            WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
            ORDER BY created_at, id LIMIT $4`,
          [tenant, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(rows.map(keyView), limit, (k: any) => [k.created_at, k.id]);
      },
    } as any,

    revokeApiKey: {
      rest: { method: "DELETE", fullPath: "/v1/api-keys/:id" },
      auth: "key",
      scope: "keys:write",
      summary: "Revoke an API key",
      params: { id: uuidParam },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { rows } = await this.db.query(
          "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND tenant_id = $2 RETURNING id, name, prefix, scopes, created_at, revoked_at, last_used_at",
          [ctx.params.id, tenant],
        );
        if (!rows.length) throw notFound("API key");
        return keyView(rows[0]);
      },
    } as any,

    // ---- Batches and products ------------------------------------------------------------------
    registerBatch: {
      rest: { method: "POST", fullPath: "/v1/batches" },
      auth: "key",
      scope: "batches:write",
      summary: "Register a batch of products (asynchronous: 202 with the batch id)",
      successStatus: 202,
      params: { ...batchBody, products: { type: "array", min: 1, max: 10_000, items: productItem } },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, () => this.acceptBatch(ctx, tenant, ctx.params.name ?? null, ctx.params.market_regions ?? [], ctx.params.products));
      },
    } as any,

    registerProduct: {
      rest: { method: "POST", fullPath: "/v1/products" },
      auth: "key",
      scope: "batches:write",
      summary: "Register one product (a one-product batch; 202 with the batch id)",
      successStatus: 202,
      params: { ...productItem.props, market_regions: batchBody.market_regions },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { market_regions, ...product } = ctx.params;
        return this.idempotent(ctx, () => this.acceptBatch(ctx, tenant, null, market_regions ?? [], [product]));
      },
    } as any,

    listBatches: {
      rest: { method: "GET", fullPath: "/v1/batches" },
      auth: "key",
      scope: "batches:read",
      summary: "List your batches, newest first",
      params: { ...listParams, status: { type: "string", optional: true, max: 20 } },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = this.cursorOf(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT * FROM batches WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $5`,
          [tenant, ctx.params.status ?? null, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(rows.map(batchView), limit, (b: any) => [b.created_at, b.id]);
      },
    } as any,

    getBatch: {
      rest: { method: "GET", fullPath: "/v1/batches/:id" },
      auth: "key",
      scope: "batches:read",
      summary: "A batch with its status, progress and history",
      params: { id: uuidParam },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { rows } = await this.db.query("SELECT * FROM batches WHERE id = $1 AND tenant_id = $2", [ctx.params.id, tenant]);
        if (!rows.length) throw notFound("batch");
        const history = await this.db.query("SELECT status, at, detail FROM batch_history WHERE batch_id = $1 ORDER BY id", [ctx.params.id]);
        return { ...batchView(rows[0]), history: history.rows };
      },
    } as any,

    listBatchProducts: {
      rest: { method: "GET", fullPath: "/v1/batches/:id/products" },
      auth: "key",
      scope: "batches:read",
      summary: "The batch's products with their tokens and verification URLs",
      params: { id: uuidParam, ...listParams },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = this.cursorOf(ctx.params.cursor, 1);
        const b = await this.db.query("SELECT 1 FROM batches WHERE id = $1 AND tenant_id = $2", [ctx.params.id, tenant]);
        if (!b.rowCount) throw notFound("batch");
        const { rows } = await this.db.query(
          `SELECT * FROM products WHERE batch_id = $1 AND tenant_id = $2 AND ordinal > $3 ORDER BY ordinal LIMIT $4`,
          [ctx.params.id, tenant, c?.[0] ?? -1, limit + 1],
        );
        const ring = await this.tokenKeyring();
        return page(rows.map((r: any) => this.productView(r, ring)), limit, (p: any) => [p.ordinal]);
      },
    } as any,

    // ---- Durable events --------------------------------------------------------------------
    onEvent: {
      visibility: "public",
      async handler(this: any, ctx: Context<OutboxEvent<any>>) {
        const event = ctx.params;
        await this.consumeOnce("factory", event, async (q: Queryable) => {
          if (event.type === "anchor.submitted") {
            const r = await q.query(
              "UPDATE batches SET status = 'anchoring', updated_at = now() WHERE id = ANY($1::uuid[]) AND status = 'registered' RETURNING id",
              [event.data.batch_ids],
            );
            for (const b of r.rows) await this.addHistory(q, b.id, "anchoring", { period_id: event.data.period_id, tx_hash: event.data.tx_hash });
          } else if (event.type === "anchor.confirmed") {
            // Marking anchored is idempotent: a batch already anchored is left as it is.
            const r = await q.query(
              `UPDATE batches SET status = 'anchored', anchored_at = now(), updated_at = now()
                WHERE id = ANY($1::uuid[]) AND status IN ('registered', 'anchoring') RETURNING id, tenant_id`,
              [event.data.batch_ids],
            );
            for (const b of r.rows) {
              await this.addHistory(q, b.id, "anchored", { period_id: event.data.period_id, tx_hash: event.data.tx_hash, block_number: event.data.block_number });
              await this.emitDurable(q, "batch.anchored", {
                tenant_id: b.tenant_id,
                batch_id: b.id,
                period_id: event.data.period_id,
                chain_id: event.data.chain_id,
                tx_hash: event.data.tx_hash,
                block_number: event.data.block_number,
              }, ctx.requestID);
            }
          }
        });
        this.pokeOutbox();
        return { ok: true };
      },
    },
  },

  methods: {
    cursorOf(this: any, cursor: string | undefined, arity: number) {
      if (!cursor) return null;
      const c = decodeCursor(cursor, arity);
      if (!c) throw badRequest("invalid cursor");
      return c;
    },

    async createKey(this: any, tenantId: string, name: string, scopes: string[] | undefined, createdBy: string | null) {
      const granted = scopes && scopes.length ? [...new Set(scopes)] : ["*"];
      const unknown = unknownScopes(granted.filter((s) => s !== "*"));
      if (unknown.length) throw badRequest(`unknown scopes: ${unknown.join(", ")}`, { known: API_SCOPES });
      const t = await this.db.query("SELECT status FROM tenants WHERE id = $1", [tenantId]);
      if (!t.rowCount) throw notFound("tenant");
      const { key, prefix, hash } = generateApiKey(this.config.keyEnv);
      const { rows } = await this.db.query(
        "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at",
        [tenantId, name, prefix, hash, granted, createdBy],
      );
      return { id: rows[0].id, key, prefix, scopes: granted, name, tenant_id: tenantId, created_at: rows[0].created_at };
    },

    async acceptBatch(this: any, ctx: Context<any, any>, tenantId: string, name: string | null, regions: string[], rows: ProductInput[]) {
      const markets = [...new Set(regions.map((r) => String(r).toUpperCase()))];
      const badRegions = markets.filter((r) => !isValidIso2(r));
      if (badRegions.length) throw badRequest(`market_regions must be ISO 3166-1 alpha-2 codes: ${badRegions.join(", ")}`);
      const checked = checkProductRows(rows);
      if (checked.errorCount) throw badRequest(`${checked.errorCount} product row(s) are invalid; nothing was registered`, { rows: checked.errors });
      await this.rejectKnownSerials(tenantId, checked.products);
      const id = await this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          "INSERT INTO batches (tenant_id, name, market_regions, status, total, source) VALUES ($1, $2, $3, 'received', $4, $5::jsonb) RETURNING id",
          [tenantId, name, markets, checked.products.length, JSON.stringify({ kind: "inline", products: checked.products })],
        );
        await this.addHistory(q, r.rows[0].id, "received", { total: checked.products.length });
        return r.rows[0].id;
      });
      ctx.meta.$statusCode = 202;
      ctx.meta.$location = `/v1/batches/${id}`;
      setImmediate(() => this.processBatch(id, ctx.requestID));
      return { id, status: "received", total: checked.products.length };
    },

    /** Serials already registered in the tenant fail the request up front with a clear 409. */
    async rejectKnownSerials(this: any, tenantId: string, products: Required<ProductInput>[]) {
      const { rows } = await this.db.query(
        `SELECT p.serial, p.gtin FROM products p
           JOIN unnest($2::text[], $3::text[]) AS n(gtin, serial) ON coalesce(p.gtin, '') = n.gtin AND p.serial = n.serial
          WHERE p.tenant_id = $1 LIMIT 100`,
        [tenantId, products.map((p) => p.gtin ?? ""), products.map((p) => p.serial)],
      );
      if (rows.length)
        throw conflict(`${rows.length} serial(s) are already registered for this tenant; nothing was registered`, {
          serials: rows.map((r: any) => ({ serial: r.serial, gtin: r.gtin })),
        });
    },

    async addHistory(this: any, q: Queryable, batchId: string, status: string, detail: unknown = null) {
      await q.query("INSERT INTO batch_history (batch_id, status, detail) VALUES ($1, $2, $3::jsonb)", [batchId, status, detail === null ? null : JSON.stringify(detail)]);
    },

    /** received → processing → registered (or failed), products and tree in one transaction. */
    async processBatch(this: any, batchId: string, requestID?: string) {
      try {
        const claim = await this.db.tx(async (q: Queryable) => {
          const r = await q.query(
            "UPDATE batches SET status = 'processing', updated_at = now() WHERE id = $1 AND status = 'received' RETURNING tenant_id, source",
            [batchId],
          );
          if (r.rowCount) await this.addHistory(q, batchId, "processing");
          return r.rows[0];
        });
        if (!claim) return;
        const ring = await this.tokenKeyring();
        const products: Required<ProductInput>[] = claim.source.products;
        const rows = products.map((p, i) => {
          const id = crypto.randomUUID();
          const salt = crypto.randomBytes(16).toString("hex");
          const leaf = productLeafHash({ tag_id: id, tenant_id: claim.tenant_id, batch_id: batchId, sku: p.sku, name: p.name, serial: p.serial, gtin: p.gtin, lot: p.lot, salt });
          return { id, ordinal: i, p, salt, leaf };
        });
        const tree = buildTree(rows.map((r) => r.leaf));
        await this.db.tx(async (q: Queryable) => {
          for (let i = 0; i < rows.length; i += 1000) {
            const chunk = rows.slice(i, i + 1000);
            await q.query(
              `INSERT INTO products (id, tenant_id, batch_id, ordinal, sku, name, serial, gtin, lot, attributes, token_kid, salt, leaf_hash)
               SELECT id, $1, $2, ord, sku, name, serial, gtin, lot, attrs::jsonb, $3, salt, leaf
                 FROM unnest($4::uuid[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
                   AS t(id, ord, sku, name, serial, gtin, lot, attrs, salt, leaf)`,
              [
                claim.tenant_id,
                batchId,
                ring.active,
                chunk.map((r) => r.id),
                chunk.map((r) => r.ordinal),
                chunk.map((r) => r.p.sku),
                chunk.map((r) => r.p.name),
                chunk.map((r) => r.p.serial),
                chunk.map((r) => r.p.gtin),
                chunk.map((r) => r.p.lot),
                chunk.map((r) => JSON.stringify(r.p.attributes ?? {})),
                chunk.map((r) => r.salt),
                chunk.map((r) => r.leaf.toString("hex")),
              ],
            );
          }
          await q.query(
            `UPDATE batches SET status = 'registered', done = total, root = $2, tree = $3, leaf_count = $4, source = NULL,
                registered_at = now(), updated_at = now() WHERE id = $1`,
            [batchId, tree.root.toString("hex"), serializeTree(tree), rows.length],
          );
          await this.addHistory(q, batchId, "registered", { products: rows.length });
          await this.emitDurable(q, "batch.registered", { tenant_id: claim.tenant_id, batch_id: batchId, products: rows.length, root: tree.root.toString("hex") }, requestID);
        });
        this.pokeOutbox();
      } catch (err: any) {
        await this.failBatch(batchId, err, requestID);
      }
    },

    async failBatch(this: any, batchId: string, err: any, requestID?: string) {
      const errors: RowError[] =
        err?.code === "23505" ? [{ row: 0, field: "serial", message: "a serial was registered concurrently by another batch" }] : [{ row: 0, message: String(err?.message || err) }];
      this.logger.warn({ batch_id: batchId, request_id: requestID, err: err?.message }, "batch registration failed");
      await this.db
        .tx(async (q: Queryable) => {
          const r = await q.query(
            "UPDATE batches SET status = 'failed', errors = $2::jsonb, updated_at = now() WHERE id = $1 AND status IN ('received', 'processing') RETURNING tenant_id",
            [batchId, JSON.stringify(errors)],
          );
          if (!r.rowCount) return;
          await this.addHistory(q, batchId, "failed", { errors });
          await this.emitDurable(q, "batch.failed", { tenant_id: r.rows[0].tenant_id, batch_id: batchId, errors }, requestID);
        })
        .catch((e: any) => this.logger.error({ batch_id: batchId, err: e?.message }, "could not mark batch failed"));
      this.pokeOutbox();
    },

    /** Batches a dead node left half-way are taken up again (nothing of theirs was committed). */
    async resumeStuckBatches(this: any) {
      const { rows } = await this.db.query(
        `UPDATE batches SET status = 'received', updated_at = now()
          WHERE status IN ('received', 'processing') AND source IS NOT NULL AND updated_at < now() - interval '2 minutes'
          RETURNING id`,
      );
      for (const r of rows) await this.processBatch(r.id);
    },

    productView(this: any, r: any, ring: any) {
      const token = signToken(r.id, { active: r.token_kid, keys: ring.keys });
      const base = this.config.verificationUrlBase;
      return {
        id: r.id,
        batch_id: r.batch_id,
        status: r.status,
        token,
        verification_url: `${base}/r/${token}`,
        digital_link: r.gtin ? buildDigitalLink(base, { gtin: r.gtin, lot: r.lot, serial: r.serial, token }) : null,
        sku: r.sku,
        name: r.name,
        serial: r.serial,
        gtin: r.gtin,
        lot: r.lot,
        attributes: r.attributes,
        ordinal: r.ordinal,
        created_at: r.created_at,
      };
    },
  },

  started(this: any) {
    this.resumeTimer = setInterval(() => this.resumeStuckBatches().catch(() => undefined), 60_000);
    this.resumeTimer.unref();
  },
  stopped(this: any) {
    clearInterval(this.resumeTimer);
  },
};

function keyView(r: any) {
  return { id: r.id, name: r.name, prefix: r.prefix, scopes: r.scopes, created_at: r.created_at, revoked_at: r.revoked_at, last_used_at: r.last_used_at };
}

function batchView(b: any) {
  const elapsed = (Date.now() - new Date(b.created_at).getTime()) / 1000;
  const rate = b.status === "processing" && elapsed > 0 ? b.done / elapsed : null;
  return {
    id: b.id,
    name: b.name,
    status: b.status,
    market_regions: b.market_regions,
    progress: { done: b.done, total: b.total },
    rate_per_s: rate,
    eta_s: rate ? Math.round((b.total - b.done) / rate) : null,
    root: b.root,
    errors: b.errors,
    created_at: b.created_at,
    registered_at: b.registered_at,
    anchored_at: b.anchored_at,
  };
}

export default FactoryService;
