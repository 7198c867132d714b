// Factory: tenants' API keys, batches and products, tokens, uploads, labels, recalls and tags.
// Registration is asynchronous and all-or-nothing: products, the batch's Merkle tree and its outbox
// event commit together (one COPY transaction on Postgres). Domain rules live in lib/ (products,
// uploads, labels, token, gs1, merkle); this file wires them to the database and the broker.
import crypto from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setImmediate as nextTurn } from "node:timers/promises";
import type { ServiceSchema, Context } from "moleculer";
import type { PoolClient } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { TokensMixin } from "../mixins/tokens.mixin";
import { AuditMixin } from "../mixins/audit.mixin";
import { badRequest, conflict, forbidden, notFound, unauthorized, cursorParam } from "../mixins/errors";
import { Errors } from "moleculer";
import { principalOf, tenantOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { generateApiKey, parseApiKey, verifyApiKey, API_SCOPES, isSubset, unknownScopes } from "../lib/apikey";
import { signToken, TokenKeyring } from "../lib/token";
import { buildDigitalLink } from "../lib/gs1";
import { buildTreeParallel, serializeTree } from "../lib/merkle";
import { productLeafHash } from "../lib/proof";
import {
  BatchChecker,
  CSV_COLUMNS,
  HeadReader,
  SerialSet,
  ProductInput,
  RowError,
  RowsError,
  MAX_ROW_ERRORS,
  checkProductRows,
  copyField,
  marketRegionsOf,
  productFromCsv,
} from "../lib/products";
import { csvRecords, CsvError } from "../lib/csv";
import { listParams, page, DEFAULT_LIMIT } from "../lib/cursor";
import { isValidIso2 } from "../lib/geo";
import { chunkStart, MAX_UPLOAD_BYTES, PIECE_BYTES, UPLOAD_CONTENT_TYPES } from "../lib/uploads";
import { Label, labelCsvHeader, labelCsvLine, labelsPdf, svgSheet, LABELS_PER_PAGE } from "../lib/labels";
import type { OutboxEvent } from "../lib/events";
import { ok } from "../lib/schemas/common";
import {
  ApiKey,
  ApiKeyCreated,
  ApiKeyPage,
  BATCH_STATUSES,
  BatchAccepted,
  BatchDetail,
  BatchPage,
  BatchRetried,
  Product,
  PRODUCT_STATUSES,
  ProductDetail,
  ProductPage,
  ProductRetagged,
  Recall,
  RecallPage,
  Upload,
  UploadPage,
  VOID_REASONS,
} from "../lib/schemas/factory";

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

// JSON bodies give an array; a CSV upload gives them as a query parameter ("BR,PT" or repeated).
const marketRegionsParam = {
  type: "multi",
  optional: true,
  rules: [
    { type: "array", items: { type: "string", min: 2, max: 2 }, max: 250 },
    { type: "string", max: 1000 },
  ],
};

const batchBody = {
  name: { type: "string", max: 200, optional: true },
  market_regions: marketRegionsParam,
};

const uuidParam = { type: "uuid" };
const MAX_INLINE_PRODUCTS = 10_000;
const REGISTERED = ["registered", "anchoring", "anchored"];
// Rows per INSERT transaction on PGlite (see insertChunked) and rows per COPY write on Postgres.
const PGLITE_CHUNK = 2000;
const COPY_WRITE_BYTES = 1 << 16;
// The COPY transaction's progress is written from another connection this often.
const PROGRESS_EVERY_MS = 1000;
// A streamed CSV body not turned into a batch (client gone, node died) is swept after this long.
const SPOOL_TTL_SECONDS = 3600;
// Above this many products a batch-wide status change drops every cached scan lookup at once.
const BIG_BATCH = 10_000;
// Rows handed on at a time by the source (one await per step, not per row), and between two turns
// of the event loop in CPU-bound loops (registration stays in the background).
const ROWS_PER_STEP = 1000;
// A product whose printed tag is void has no label (until a replacement tag is issued).
const PRINTABLE = "NOT EXISTS (SELECT 1 FROM product_tags t WHERE t.tag_id = coalesce(p.tag_id, p.id) AND t.status = 'void')";
const PRODUCT_COLUMNS = "id, tenant_id, batch_id, ordinal, sku, name, serial, gtin, lot, attributes, token_kid, salt, leaf_hash";

type Product = Required<ProductInput>;
type SourceRow = { product: Product; row: number };

const FactoryService: ServiceSchema = {
  name: "factory",
  mixins: [OutboxMixin, IdempotencyMixin, TokensMixin, AuditMixin],
  actions: {
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
        return this.idempotent(ctx, () => this.createKey(ctx, ctx.params.tenant_id, ctx.params.name, ctx.params.scopes, ctx.params.created_by));
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
      responses: { 201: ok("The key, shown only here", ApiKeyCreated) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const tenant = tenantOf(ctx);
        const requested: string[] = ctx.params.scopes ?? p.scopes;
        if (!p.scopes.includes("*") && !isSubset(requested.includes("*") ? [...API_SCOPES] : requested, p.scopes))
          throw forbidden("a key can only mint keys within its own scopes");
        return this.idempotent(ctx, async () => {
          const key = await this.createKey(ctx, tenant, ctx.params.name, requested, `${p.type}:${p.id}`);
          ctx.meta.$statusCode = 201;
          return key;
        });
      },
    } as any,

    listApiKeys: {
      rest: { method: "GET", fullPath: "/v1/api-keys" },
      auth: "key",
      scope: "keys:read",
      summary: "List your tenant's API keys (never the secret)",
      params: { ...listParams },
      responses: { 200: ok("A page of keys", ApiKeyPage) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT id, name, prefix, scopes, created_at, revoked_at, last_used_at FROM api_keys
            WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
            ORDER BY created_at, id LIMIT $4`,
          [tenant, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(rows.map(keyView), limit, (k: any) => [new Date(k.created_at).toISOString(), k.id]);
      },
    } as any,

    getApiKey: {
      rest: { method: "GET", fullPath: "/v1/api-keys/:id" },
      auth: "key",
      scope: "keys:read",
      summary: "One of your tenant's API keys (never the secret)",
      params: { id: uuidParam },
      responses: { 200: ok("The key", ApiKey) },
      async handler(this: any, ctx: Context<any, any>) {
        const { rows } = await this.db.query(
          "SELECT id, name, prefix, scopes, created_at, revoked_at, last_used_at FROM api_keys WHERE id = $1 AND tenant_id = $2",
          [ctx.params.id, tenantOf(ctx)],
        );
        if (!rows.length) throw notFound("API key");
        return keyView(rows[0]);
      },
    } as any,

    revokeApiKey: {
      rest: { method: "DELETE", fullPath: "/v1/api-keys/:id" },
      auth: "key",
      scope: "keys:write",
      summary: "Revoke an API key (it stops working at once)",
      params: { id: uuidParam },
      responses: { 200: ok("The key, revoked", ApiKey) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.db.tx(async (q: Queryable) => {
          const { rows } = await q.query(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND tenant_id = $2 RETURNING id, name, prefix, scopes, created_at, revoked_at, last_used_at",
            [ctx.params.id, tenant],
          );
          if (!rows.length) throw notFound("API key");
          await this.audit(q, ctx, { action: "api_key.revoke", target_type: "api_key", target_id: rows[0].id, tenant_id: tenant, after: { revoked_at: rows[0].revoked_at } });
          return keyView(rows[0]);
        });
      },
    } as any,

    // ---- Batches and products ------------------------------------------------------------------
    registerBatch: {
      rest: { method: "POST", fullPath: "/v1/batches", type: "stream" },
      contentTypes: ["application/json", "text/csv"],
      auth: "key",
      scope: "batches:write",
      summary:
        "Register a batch: JSON {name?, market_regions?, products} (up to 10,000) or a text/csv body of any size " +
        "(columns sku,name,serial,gtin,lot,attributes; name and market_regions as query parameters). Asynchronous: 202 with the batch id",
      successStatus: 202,
      timeout: 0,
      retryPolicy: { enabled: false },
      params: {
        ...batchBody,
        // Rows are checked by lib/products (row-numbered errors, first 100), not here.
        products: { type: "array", optional: true, items: { type: "object" }, description: "[{sku, name, serial, gtin?, lot?, attributes?}] (JSON bodies)" },
      },
      responses: { 202: ok("Accepted: the batch registers in the background", BatchAccepted) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const regions = this.checkRegions(ctx.params.market_regions);
        const name = ctx.params.name ?? null;
        if (ctx.params.products === null) throw badRequest("products must be an array of products");
        if (ctx.params.products !== undefined) {
          const products = ctx.params.products as unknown[];
          if (products.length > MAX_INLINE_PRODUCTS)
            throw new Errors.MoleculerClientError(
              `at most ${MAX_INLINE_PRODUCTS} products in a JSON body; send text/csv or use /v1/uploads for more`,
              413,
              "PAYLOAD_TOO_LARGE",
            );
          if (!products.length) throw badRequest("products is empty");
          return this.idempotent(ctx, () => this.acceptInline(ctx, tenant, name, regions, products));
        }
        return this.acceptCsvStream(ctx, tenant, name, regions);
      },
    } as any,

    registerProduct: {
      rest: { method: "POST", fullPath: "/v1/products" },
      auth: "key",
      scope: "batches:write",
      summary: "Register one product (a one-product batch; 202 with the batch id)",
      successStatus: 202,
      params: { ...productItem.props, market_regions: marketRegionsParam },
      responses: { 202: ok("Accepted: the one-product batch registers in the background", BatchAccepted) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { market_regions, ...product } = ctx.params;
        const regions = this.checkRegions(market_regions);
        return this.idempotent(ctx, () => this.acceptInline(ctx, tenant, null, regions, [product]));
      },
    } as any,

    getProduct: {
      rest: { method: "GET", fullPath: "/v1/products/:id" },
      auth: "key",
      scope: "batches:read",
      summary: "One product with its current tag, the tags it had before, and its recall if any",
      params: { id: uuidParam },
      responses: { 200: ok("The product with its tags", ProductDetail) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { rows } = await this.db.query("SELECT * FROM products WHERE id = $1 AND tenant_id = $2", [ctx.params.id, tenant]);
        if (!rows.length) throw notFound("product");
        const ring = await this.tokenKeyring();
        const tags = await this.db.query(
          "SELECT tag_id, token_kid, status, void_reason, voided_at, replaced_by, created_at FROM product_tags WHERE product_id = $1 ORDER BY created_at, tag_id",
          [ctx.params.id],
        );
        const view = (await this.productViews(rows, ring))[0];
        return {
          ...view,
          tags: tags.rows.map((t: any) => ({
            id: t.tag_id,
            status: t.status,
            token: this.tokenFor(t.tag_id, t.token_kid, ring),
            void_reason: t.void_reason,
            voided_at: t.voided_at,
            replaced_by: t.replaced_by,
          })),
        };
      },
    } as any,

    listBatches: {
      rest: { method: "GET", fullPath: "/v1/batches" },
      auth: "key",
      scope: "batches:read",
      summary: "List your batches, newest first",
      params: { ...listParams, status: { type: "enum", values: [...BATCH_STATUSES], optional: true } },
      responses: { 200: ok("A page of batches", BatchPage) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT ${BATCH_COLUMNS} FROM ${BATCH_FROM} WHERE b.tenant_id = $1 AND ($2::text IS NULL OR b.status = $2)
              AND ($3::timestamptz IS NULL OR (b.created_at, b.id) < ($3::timestamptz, $4::uuid))
            ORDER BY b.created_at DESC, b.id DESC LIMIT $5`,
          [tenant, ctx.params.status ?? null, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(rows.map(batchView), limit, (b: any) => [new Date(b.created_at).toISOString(), b.id]);
      },
    } as any,

    getBatch: {
      rest: { method: "GET", fullPath: "/v1/batches/:id" },
      auth: "key",
      scope: "batches:read",
      summary: "A batch with its status, progress (done/total, rate, ETA while processing) and history",
      params: { id: uuidParam },
      responses: { 200: ok("The batch", BatchDetail) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { rows } = await this.db.query(`SELECT ${BATCH_COLUMNS} FROM ${BATCH_FROM} WHERE b.id = $1 AND b.tenant_id = $2`, [ctx.params.id, tenant]);
        if (!rows.length) throw notFound("batch");
        const history = await this.db.query("SELECT status, at, detail FROM batch_history WHERE batch_id = $1 ORDER BY id", [ctx.params.id]);
        return { ...batchView(rows[0]), history: history.rows };
      },
    } as any,

    listBatchProducts: {
      rest: { method: "GET", fullPath: "/v1/batches/:id/products" },
      auth: "key",
      scope: "batches:read",
      summary: "The batch's products with their tokens, verification URLs and GS1 Digital Links (none until registered)",
      params: { id: uuidParam, ...listParams, status: { type: "enum", values: [...PRODUCT_STATUSES], optional: true } },
      responses: { 200: ok("A page of products", ProductPage) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 1);
        const b = await this.db.query("SELECT status FROM batches WHERE id = $1 AND tenant_id = $2", [ctx.params.id, tenant]);
        if (!b.rowCount) throw notFound("batch");
        // Products of a batch still registering may be partly written (PGlite): show none until registered.
        if (!REGISTERED.includes(b.rows[0].status)) return { items: [], next_cursor: null };
        const { rows } = await this.db.query(
          `SELECT * FROM products WHERE batch_id = $1 AND tenant_id = $2 AND ordinal > $3 AND ($4::text IS NULL OR status = $4)
            ORDER BY ordinal LIMIT $5`,
          [ctx.params.id, tenant, c?.[0] ?? -1, ctx.params.status ?? null, limit + 1],
        );
        const ring = await this.tokenKeyring();
        return page(await this.productViews(rows, ring), limit, (p: any) => [p.ordinal]);
      },
    } as any,

    batchLabels: {
      rest: { method: "GET", fullPath: "/v1/batches/:id/labels" },
      auth: "key",
      scope: "batches:read",
      summary:
        "Printable tags: format=csv (serial, URL, token…), svg (one A4 sheet of 24 QR codes; page=N) or pdf (A4, streamed). " +
        "The QR code holds the GS1 Digital Link when the product has a GTIN, else the verification URL. Void tags are left out",
      params: {
        id: uuidParam,
        format: { type: "enum", values: ["csv", "svg", "pdf"], optional: true },
        page: { type: "number", integer: true, min: 1, optional: true, convert: true },
      },
      responses: {
        200: { description: "The labels in the format asked for", content: { "application/pdf": null, "text/csv": null, "image/svg+xml": null } },
      },
      errors: [409],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const format = ctx.params.format ?? "pdf";
        const { rows } = await this.db.query("SELECT id, name, status FROM batches WHERE id = $1 AND tenant_id = $2", [ctx.params.id, tenant]);
        if (!rows.length) throw notFound("batch");
        const batch = rows[0];
        if (!REGISTERED.includes(batch.status)) throw conflict(`the batch is ${batch.status}: labels exist once it is registered`);
        const ring = await this.tokenKeyring();
        const file = `batch-${batch.id}-labels`;
        if (format === "svg") {
          const pageNo = ctx.params.page ?? 1;
          const count = await this.db.query(`SELECT count(*) AS n FROM products p WHERE p.batch_id = $1 AND ${PRINTABLE}`, [batch.id]);
          const pages = Math.max(1, Math.ceil(count.rows[0].n / LABELS_PER_PAGE));
          if (pageNo > pages) throw notFound(`page ${pageNo} (the batch has ${pages})`);
          const r = await this.db.query(
            `SELECT * FROM products p WHERE p.batch_id = $1 AND ${PRINTABLE} ORDER BY p.ordinal OFFSET $2 LIMIT $3`,
            [batch.id, (pageNo - 1) * LABELS_PER_PAGE, LABELS_PER_PAGE],
          );
          ctx.meta.$responseType = "image/svg+xml; charset=utf-8";
          ctx.meta.$responseHeaders = {
            "Content-Disposition": `inline; filename="${file}-${pageNo}.svg"`,
            "X-Total-Pages": String(pages),
            ...(pageNo < pages && { Link: `</v1/batches/${batch.id}/labels?format=svg&page=${pageNo + 1}>; rel="next"` }),
          };
          return svgSheet((await this.productViews(r.rows, ring)).map(labelOf), { title: batch.name ?? file });
        }
        const pages = this.labelPages(batch.id, ring);
        if (format === "csv") {
          ctx.meta.$responseType = "text/csv; charset=utf-8";
          ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="${file}.csv"` };
          return Readable.from(
            (async function* () {
              yield labelCsvHeader();
              for await (const labels of pages) yield labels.map(labelCsvLine).join("");
            })(),
            { objectMode: false },
          );
        }
        ctx.meta.$responseType = "application/pdf";
        ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="${file}.pdf"` };
        return Readable.from(labelsPdf(pages, { title: batch.name ?? file }), { objectMode: false });
      },
    } as any,

    // ---- Resumable uploads ------------------------------------------------------------------
    createUpload: {
      rest: { method: "POST", fullPath: "/v1/uploads" },
      auth: "key",
      scope: "batches:write",
      summary:
        "Start a resumable upload of a product file (up to 2 GiB): declare its size and SHA-256; then PUT its bytes " +
        "to /v1/uploads/{id} with Upload-Offset (or Content-Range, or ?offset=). The complete file becomes a batch",
      successStatus: 201,
      params: {
        size: { type: "number", integer: true, min: 1, max: MAX_UPLOAD_BYTES },
        sha256: { type: "string", pattern: /^[0-9a-fA-F]{64}$/ },
        content_type: { type: "enum", values: [...UPLOAD_CONTENT_TYPES], optional: true },
        ...batchBody,
      },
      responses: { 201: ok("The upload, ready for its bytes", Upload) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const p = principalOf(ctx);
        const regions = this.checkRegions(ctx.params.market_regions);
        return this.idempotent(ctx, async () => {
          const up = await this.db.tx(async (q: Queryable) => {
            const { rows } = await q.query(
              `INSERT INTO uploads (tenant_id, kind, created_by, name, market_regions, content_type, size, sha256, status, expires_at)
               VALUES ($1, 'upload', $2, $3, $4, $5, $6, $7, 'receiving', now() + make_interval(secs => $8)) RETURNING *`,
              [tenant, `${p.type}:${p.id}`, ctx.params.name ?? null, regions, ctx.params.content_type ?? "text/csv", ctx.params.size, ctx.params.sha256.toLowerCase(), this.config.factory.uploadTtlSeconds],
            );
            await this.audit(q, ctx, { action: "upload.create", target_type: "upload", target_id: rows[0].id, tenant_id: tenant, after: { size: ctx.params.size, sha256: rows[0].sha256 } });
            return rows[0];
          });
          ctx.meta.$statusCode = 201;
          ctx.meta.$location = `/v1/uploads/${up.id}`;
          return uploadView(up);
        });
      },
    } as any,

    putUpload: {
      rest: { method: "PUT", fullPath: "/v1/uploads/:id", type: "stream" },
      contentTypes: ["application/octet-stream"],
      auth: "key",
      scope: "batches:write",
      summary:
        "Append bytes to an upload at its current offset (Upload-Offset header, Content-Range or ?offset=); 409 with the " +
        "expected offset otherwise. The chunk that completes the file checks its SHA-256 (422 on mismatch) and answers 202 with the batch id",
      timeout: 0,
      retryPolicy: { enabled: false },
      params: { id: uuidParam, offset: { type: "number", integer: true, min: 0, optional: true, convert: true } },
      responses: {
        200: ok("The chunk is stored; the file is not complete yet", Upload),
        202: ok("The file is complete: it becomes a batch (batch_id)", Upload),
      },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        return this.appendUpload(ctx, tenantOf(ctx));
      },
    } as any,

    getUpload: {
      rest: { method: "GET", fullPath: "/v1/uploads/:id" },
      auth: "key",
      scope: "batches:read",
      summary: "What has arrived of an upload (received bytes = the offset to resume from), its status and its batch",
      params: { id: uuidParam },
      responses: { 200: ok("The upload", Upload) },
      async handler(this: any, ctx: Context<any, any>) {
        const up = await this.uploadOf(ctx.params.id, tenantOf(ctx));
        ctx.meta.$responseHeaders = { "Upload-Offset": String(up.received), "Upload-Length": String(up.size), "Cache-Control": "no-store" };
        return uploadView(up);
      },
    } as any,

    listUploads: {
      rest: { method: "GET", fullPath: "/v1/uploads" },
      auth: "key",
      scope: "batches:read",
      summary: "Your uploads, newest first",
      params: { ...listParams },
      responses: { 200: ok("A page of uploads", UploadPage) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT * FROM uploads WHERE tenant_id = $1 AND kind = 'upload'
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $4`,
          [tenant, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(rows.map(uploadView), limit, (u: any) => [new Date(u.created_at).toISOString(), u.id]);
      },
    } as any,

    cancelUpload: {
      rest: { method: "DELETE", fullPath: "/v1/uploads/:id" },
      auth: "key",
      scope: "batches:write",
      summary: "Abandon an unfinished upload (its bytes are deleted)",
      params: { id: uuidParam },
      responses: { 200: ok("The upload, cancelled", Upload) },
      errors: [409],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const up = await this.uploadOf(ctx.params.id, tenant);
        if (up.status !== "receiving") throw conflict(`the upload is ${up.status}`);
        const done = await this.db.tx(async (q: Queryable) => {
          const r = await q.query("UPDATE uploads SET status = 'cancelled', updated_at = now() WHERE id = $1 AND status = 'receiving' RETURNING *", [up.id]);
          if (!r.rowCount) throw conflict("the upload changed meanwhile");
          await q.query("DELETE FROM upload_chunks WHERE upload_id = $1", [up.id]);
          await this.audit(q, ctx, { action: "upload.cancel", target_type: "upload", target_id: up.id, tenant_id: tenant });
          return r.rows[0];
        });
        return uploadView(done);
      },
    } as any,

    // ---- Recalls and tags ---------------------------------------------------------------------
    recallProduct: {
      rest: { method: "POST", fullPath: "/v1/products/:id/recall" },
      auth: "key",
      scope: "recalls:write",
      summary: "Recall one product: scans answer `recalled` at once (event product.recalled)",
      successStatus: 201,
      params: { id: uuidParam, reason: { type: "string", min: 1, max: 500, trim: true } },
      responses: { 201: ok("The recall", Recall) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, async () => {
          const { recall, keys } = await this.db.tx(async (q: Queryable) => {
            const { rows } = await q.query("SELECT id, batch_id, status, recall_id, tag_id FROM products WHERE id = $1 AND tenant_id = $2 FOR UPDATE", [ctx.params.id, tenant]);
            const p = rows[0];
            if (!p) throw notFound("product");
            if (p.status === "recalled") throw conflict("the product is already recalled", { recall_id: p.recall_id });
            const r = await q.query(
              "INSERT INTO recalls (tenant_id, scope, product_id, batch_id, reason, products, created_by) VALUES ($1, 'product', $2, $3, $4, 1, $5) RETURNING *",
              [tenant, p.id, p.batch_id, ctx.params.reason, actorOf(ctx)],
            );
            await q.query("UPDATE products SET status = 'recalled', status_reason = $2, recall_id = $3 WHERE id = $1", [p.id, ctx.params.reason, r.rows[0].id]);
            await this.emitDurable(q, "product.recalled", {
              tenant_id: tenant, recall_id: r.rows[0].id, scope: "product", batch_id: p.batch_id, tag_ids: [p.id], products: 1, reason: ctx.params.reason,
            }, ctx.requestID);
            await this.audit(q, ctx, { action: "product.recall", target_type: "product", target_id: p.id, tenant_id: tenant, before: { status: p.status }, after: { status: "recalled", recall_id: r.rows[0].id, reason: ctx.params.reason } });
            return { recall: r.rows[0], keys: await this.lookupKeys(q, [p.id]) };
          });
          this.pokeOutbox();
          await this.statusChanged(ctx, { product_ids: keys });
          ctx.meta.$statusCode = 201;
          ctx.meta.$location = `/v1/recalls/${recall.id}`;
          return recallView(recall);
        });
      },
    } as any,

    retryBatch: {
      rest: { method: "POST", fullPath: "/v1/batches/:id/retry" },
      auth: "key",
      scope: "batches:write",
      summary: "Register again a batch that failed on the server's side (its data was kept); 202. A batch that failed on its data needs a corrected batch (409)",
      successStatus: 202,
      params: { id: uuidParam },
      responses: { 202: ok("Accepted: registration starts again", BatchRetried) },
      errors: [409],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const b = await this.db.tx(async (q: Queryable) => {
          const { rows } = await q.query("SELECT id, status, source IS NOT NULL AS kept FROM batches WHERE id = $1 AND tenant_id = $2 FOR UPDATE", [ctx.params.id, tenant]);
          const row = rows[0];
          if (!row) throw notFound("batch");
          if (row.status !== "failed") throw conflict(`the batch is ${row.status}, not failed`);
          if (!row.kept) throw conflict("the batch failed on its data: send a corrected batch");
          await q.query("UPDATE batches SET status = 'received', errors = NULL, updated_at = now() WHERE id = $1", [row.id]);
          await this.addHistory(q, row.id, "received", { retry: true });
          await this.audit(q, ctx, { action: "batch.retry", target_type: "batch", target_id: row.id, tenant_id: tenant, before: { status: "failed" }, after: { status: "received" } });
          return row;
        });
        setImmediate(() => void this.processBatch(b.id, ctx.requestID));
        ctx.meta.$statusCode = 202;
        return { id: b.id, status: "received" };
      },
    } as any,

    recallBatch: {
      rest: { method: "POST", fullPath: "/v1/batches/:id/recall" },
      auth: "key",
      scope: "recalls:write",
      summary: "Recall every product of a batch not already recalled (event product.recalled)",
      successStatus: 201,
      params: { id: uuidParam, reason: { type: "string", min: 1, max: 500, trim: true } },
      responses: { 201: ok("The recall", Recall) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, async () => {
          const { recall, keys } = await this.db.tx(async (q: Queryable) => {
            const { rows } = await q.query("SELECT id, status FROM batches WHERE id = $1 AND tenant_id = $2 FOR UPDATE", [ctx.params.id, tenant]);
            const b = rows[0];
            if (!b) throw notFound("batch");
            if (!REGISTERED.includes(b.status)) throw conflict(`the batch is ${b.status}: only registered batches can be recalled`);
            const r = await q.query(
              "INSERT INTO recalls (tenant_id, scope, batch_id, reason, products, created_by) VALUES ($1, 'batch', $2, $3, 0, $4) RETURNING *",
              [tenant, b.id, ctx.params.reason, actorOf(ctx)],
            );
            const u = await q.query(
              "UPDATE products SET status = 'recalled', status_reason = $2, recall_id = $3 WHERE batch_id = $1 AND status <> 'recalled'",
              [b.id, ctx.params.reason, r.rows[0].id],
            );
            if (!u.rowCount) throw conflict("every product of the batch is already recalled");
            const rec = await q.query("UPDATE recalls SET products = $2 WHERE id = $1 RETURNING *", [r.rows[0].id, u.rowCount]);
            await this.emitDurable(q, "product.recalled", {
              tenant_id: tenant, recall_id: r.rows[0].id, scope: "batch", batch_id: b.id, products: u.rowCount, reason: ctx.params.reason,
            }, ctx.requestID);
            await this.audit(q, ctx, { action: "batch.recall", target_type: "batch", target_id: b.id, tenant_id: tenant, after: { recall_id: r.rows[0].id, products: u.rowCount, reason: ctx.params.reason } });
            const tags = await q.query("SELECT t.tag_id FROM product_tags t JOIN products p ON p.id = t.product_id WHERE p.batch_id = $1", [b.id]);
            return { recall: rec.rows[0], keys: tags.rows.map((t: any) => t.tag_id) };
          });
          this.pokeOutbox();
          await this.statusChanged(ctx, { batch_id: ctx.params.id, product_ids: keys });
          ctx.meta.$statusCode = 201;
          ctx.meta.$location = `/v1/recalls/${recall.id}`;
          return recallView(recall);
        });
      },
    } as any,

    listRecalls: {
      rest: { method: "GET", fullPath: "/v1/recalls" },
      auth: "key",
      scope: "batches:read",
      summary: "Your recalls, newest first (withdrawn ones included)",
      params: { ...listParams },
      responses: { 200: ok("A page of recalls", RecallPage) },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT * FROM recalls WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $4`,
          [tenant, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(rows.map(recallView), limit, (r: any) => [new Date(r.created_at).toISOString(), r.id]);
      },
    } as any,

    getRecall: {
      rest: { method: "GET", fullPath: "/v1/recalls/:id" },
      auth: "key",
      scope: "batches:read",
      summary: "One recall",
      params: { id: uuidParam },
      responses: { 200: ok("The recall", Recall) },
      async handler(this: any, ctx: Context<any, any>) {
        const { rows } = await this.db.query("SELECT * FROM recalls WHERE id = $1 AND tenant_id = $2", [ctx.params.id, tenantOf(ctx)]);
        if (!rows.length) throw notFound("recall");
        return recallView(rows[0]);
      },
    } as any,

    withdrawRecall: {
      rest: { method: "POST", fullPath: "/v1/recalls/:id/withdraw" },
      auth: "key",
      scope: "recalls:write",
      summary: "Withdraw a recall: its products are active again (event product.recall_withdrawn)",
      params: { id: uuidParam, reason: { type: "string", max: 500, optional: true, trim: true } },
      responses: { 200: ok("The recall, withdrawn", Recall) },
      errors: [409],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const { recall, keys } = await this.db.tx(async (q: Queryable) => {
          const { rows } = await q.query("SELECT * FROM recalls WHERE id = $1 AND tenant_id = $2 FOR UPDATE", [ctx.params.id, tenant]);
          const r = rows[0];
          if (!r) throw notFound("recall");
          if (r.withdrawn_at) throw conflict("the recall is already withdrawn");
          // A product whose printed tag was voided meanwhile goes back to void, not active.
          const u = await q.query(
            `UPDATE products p SET recall_id = NULL, status_reason = NULL,
                    status = CASE WHEN EXISTS (SELECT 1 FROM product_tags t WHERE t.tag_id = coalesce(p.tag_id, p.id) AND t.status = 'void') THEN 'void' ELSE 'active' END
              WHERE p.recall_id = $1 RETURNING p.id`,
            [r.id],
          );
          const w = await q.query(
            "UPDATE recalls SET withdrawn_at = now(), withdrawn_by = $2, withdraw_reason = $3 WHERE id = $1 RETURNING *",
            [r.id, actorOf(ctx), ctx.params.reason ?? null],
          );
          await this.emitDurable(q, "product.recall_withdrawn", {
            tenant_id: tenant, recall_id: r.id, scope: r.scope, batch_id: r.batch_id, ...(r.product_id && { tag_ids: [r.product_id] }), products: u.rowCount,
          }, ctx.requestID);
          await this.audit(q, ctx, { action: "recall.withdraw", target_type: "recall", target_id: r.id, tenant_id: tenant, after: { products: u.rowCount, reason: ctx.params.reason ?? null } });
          const keys = r.scope === "product" ? await this.lookupKeys(q, [r.product_id]) : (await q.query("SELECT t.tag_id FROM product_tags t JOIN products p ON p.id = t.product_id WHERE p.batch_id = $1", [r.batch_id])).rows.map((t: any) => t.tag_id);
          return { recall: w.rows[0], keys };
        });
        this.pokeOutbox();
        await this.statusChanged(ctx, recall.scope === "product" ? { product_ids: keys } : { batch_id: recall.batch_id, product_ids: keys });
        return recallView(recall);
      },
    } as any,

    voidTag: {
      rest: { method: "POST", fullPath: "/v1/products/:id/void" },
      auth: "key",
      scope: "products:write",
      summary: "Void the product's printed tag (lost, damaged, misprinted, stolen): its token answers as void from now on",
      params: { id: uuidParam, reason: { type: "enum", values: [...VOID_REASONS] }, details: { type: "string", max: 500, optional: true } },
      responses: { 200: ok("The product; its printed tag is void", Product) },
      errors: [409],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const ring = await this.tokenKeyring();
        const { product, keys } = await this.db.tx(async (q: Queryable) => {
          const p = await this.lockProduct(q, ctx.params.id, tenant);
          const current = p.tag_id ?? p.id;
          const t = await q.query("SELECT status FROM product_tags WHERE tag_id = $1", [current]);
          if (t.rows[0]?.status === "void") throw conflict("the product's tag is already void");
          await this.voidTagRow(q, p, current, ctx.params.reason, null);
          const u = await q.query(
            "UPDATE products SET status = CASE WHEN status = 'active' THEN 'void' ELSE status END, status_reason = CASE WHEN status = 'active' THEN $2 ELSE status_reason END WHERE id = $1 RETURNING *",
            [p.id, `tag ${ctx.params.reason}${ctx.params.details ? `: ${ctx.params.details}` : ""}`],
          );
          await this.audit(q, ctx, { action: "tag.void", target_type: "product", target_id: p.id, tenant_id: tenant, before: { tag_id: current, status: p.status }, after: { status: u.rows[0].status, reason: ctx.params.reason } });
          return { product: u.rows[0], keys: await this.lookupKeys(q, [p.id]) };
        });
        await this.statusChanged(ctx, { product_ids: keys });
        return (await this.productViews([product], ring))[0];
      },
    } as any,

    replaceTag: {
      rest: { method: "POST", fullPath: "/v1/products/:id/replace-tag" },
      auth: "key",
      scope: "products:write",
      summary:
        "Issue a replacement tag for the same product record: a new token (the printed one becomes void, if it was not already). " +
        "201 with the product, its new token and URLs",
      successStatus: 201,
      params: { id: uuidParam, reason: { type: "enum", values: [...VOID_REASONS] }, details: { type: "string", max: 500, optional: true } },
      responses: { 201: ok("The product with its new tag", ProductRetagged) },
      errors: [409, 422],
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const ring: TokenKeyring = await this.tokenKeyring();
        return this.idempotent(ctx, async () => {
          const { product, keys } = await this.db.tx(async (q: Queryable) => {
            const p = await this.lockProduct(q, ctx.params.id, tenant);
            const current = p.tag_id ?? p.id;
            const next = crypto.randomUUID();
            const t = await q.query("SELECT status FROM product_tags WHERE tag_id = $1", [current]);
            if (t.rows[0]?.status === "void") await q.query("UPDATE product_tags SET replaced_by = $2 WHERE tag_id = $1", [current, next]);
            else await this.voidTagRow(q, p, current, ctx.params.reason, next);
            await q.query("INSERT INTO product_tags (tag_id, product_id, tenant_id, token_kid, status) VALUES ($1, $2, $3, $4, 'active')", [next, p.id, tenant, ring.active]);
            const u = await q.query(
              `UPDATE products SET tag_id = $2, token_kid = $3,
                      status = CASE WHEN status = 'void' THEN 'active' ELSE status END,
                      status_reason = CASE WHEN status = 'void' THEN NULL ELSE status_reason END
                WHERE id = $1 RETURNING *`,
              [p.id, next, ring.active],
            );
            await this.audit(q, ctx, { action: "tag.replace", target_type: "product", target_id: p.id, tenant_id: tenant, before: { tag_id: current }, after: { tag_id: next, reason: ctx.params.reason } });
            return { product: u.rows[0], keys: await this.lookupKeys(q, [p.id]) };
          });
          await this.statusChanged(ctx, { product_ids: keys });
          ctx.meta.$statusCode = 201;
          return { ...(await this.productViews([product], ring))[0], replaced_tag_id: keys.find((k: string) => k !== product.tag_id && k !== product.id) ?? product.id };
        });
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

    checkRegions(this: any, input: unknown): string[] {
      const regions = marketRegionsOf(input);
      const bad = regions.filter((r) => !isValidIso2(r));
      if (bad.length) throw badRequest(`market_regions must be ISO 3166-1 alpha-2 codes: ${bad.slice(0, 20).join(", ")}`);
      return regions;
    },

    /**
     * After a product status change: the scan path's cached views of these products are dropped
     * before the change is answered (from the shared cacher — Redis in a cluster, the node's own
     * memory when embedded), and every scan node is told to drop its own (product.status_changed:
     * nodes with a memory cache, and lookups that were in flight during the change).
     */
    async statusChanged(this: any, ctx: Context | null, payload: { product_ids?: string[]; batch_id?: string }) {
      const data = { ...(payload.product_ids?.length && { product_ids: payload.product_ids }), ...(payload.batch_id && { batch_id: payload.batch_id }) };
      const cacher = this.broker.cacher;
      if (cacher) {
        try {
          const keys = [...(payload.product_ids ?? [])];
          let all = false;
          if (payload.batch_id) {
            const { rows } = await this.db.query("SELECT id FROM products WHERE batch_id = $1 LIMIT $2", [payload.batch_id, BIG_BATCH + 1]);
            // A big batch: one sweep of every cached lookup beats a million deletes (they refill on demand).
            if (rows.length > BIG_BATCH) all = true;
            else for (const r of rows) keys.push(r.id);
          }
          if (all) await cacher.clean("scan.lookup:*");
          else for (let i = 0; i < keys.length; i += 1000) await cacher.del(keys.slice(i, i + 1000).map((k: string) => `scan.lookup:${k}`));
        } catch (err) {
          this.logger.warn({ err: (err as Error).message }, "cached product views not dropped; scan nodes will on the event");
        }
      }
      await (ctx ?? this.broker).broadcast("product.status_changed", data);
    },

    /** The scan cache keys of products: their ids and every replacement tag they had. */
    async lookupKeys(this: any, q: Queryable, productIds: string[]): Promise<string[]> {
      const { rows } = await q.query("SELECT tag_id FROM product_tags WHERE product_id = ANY($1::uuid[])", [productIds]);
      return [...new Set([...productIds, ...rows.map((r: any) => r.tag_id)])];
    },

    async lockProduct(this: any, q: Queryable, id: string, tenant: string) {
      const { rows } = await q.query("SELECT * FROM products WHERE id = $1 AND tenant_id = $2 FOR UPDATE", [id, tenant]);
      if (!rows.length) throw notFound("product");
      const b = await q.query("SELECT status FROM batches WHERE id = $1", [rows[0].batch_id]);
      if (!REGISTERED.includes(b.rows[0].status)) throw conflict("the product's batch is not registered");
      return rows[0];
    },

    async voidTagRow(this: any, q: Queryable, p: any, tagId: string, reason: string, replacedBy: string | null) {
      await q.query(
        `INSERT INTO product_tags (tag_id, product_id, tenant_id, token_kid, status, void_reason, voided_at, replaced_by, created_at)
         VALUES ($1, $2, $3, $4, 'void', $5, now(), $6, $7)
         ON CONFLICT (tag_id) DO UPDATE SET status = 'void', void_reason = EXCLUDED.void_reason, voided_at = now(), replaced_by = EXCLUDED.replaced_by`,
        [tagId, p.id, p.tenant_id, p.token_kid, reason, replacedBy, p.created_at],
      );
    },

    async createKey(this: any, ctx: Context, tenantId: string, name: string, scopes: string[] | undefined, createdBy: string | null) {
      const granted = scopes && scopes.length ? [...new Set(scopes)] : ["*"];
      const unknown = unknownScopes(granted.filter((s) => s !== "*"));
      if (unknown.length) throw badRequest(`unknown scopes: ${unknown.join(", ")}`, { known: API_SCOPES });
      const t = await this.db.query("SELECT status FROM tenants WHERE id = $1", [tenantId]);
      if (!t.rowCount) throw notFound("tenant");
      const { key, prefix, hash } = generateApiKey(this.config.keyEnv);
      const row = await this.db.tx(async (q: Queryable) => {
        const { rows } = await q.query(
          "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes, created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at",
          [tenantId, name, prefix, hash, granted, createdBy],
        );
        await this.audit(q, ctx, { action: "api_key.create", target_type: "api_key", target_id: rows[0].id, tenant_id: tenantId, after: { name, prefix, scopes: granted } });
        return rows[0];
      });
      (ctx.meta as any).$statusCode = 201;
      (ctx.meta as any).$location = `/v1/api-keys/${row.id}`;
      return { id: row.id, key, prefix, scopes: granted, name, tenant_id: tenantId, created_at: row.created_at };
    },

    // ---- Accepting a batch (the request) -----------------------------------------------------

    /** A JSON batch: checked whole, stored as the batch's source, registered in the background. */
    async acceptInline(this: any, ctx: Context<any, any>, tenantId: string, name: string | null, regions: string[], rows: unknown[]) {
      const checked = checkProductRows(rows);
      if (checked.errorCount) throw badRequest(`${checked.errorCount} product row(s) are invalid; nothing was registered`, { rows: checked.errors });
      await this.rejectKnownSerials(tenantId, checked.products);
      return this.createBatch(ctx, tenantId, { name, regions, total: checked.products.length, source: { kind: "inline", products: checked.products } });
    },

    /**
     * A text/csv body of any size: spooled to the database as it streams in (never held whole),
     * its header checked as soon as it arrives (400 for a missing or unknown column); the rows are
     * checked during registration, in the same pass that inserts them, and one bad row fails the
     * batch with every row's reason (first 100) and nothing inserted. 202 with the batch id.
     */
    async acceptCsvStream(this: any, ctx: Context<any, any>, tenantId: string, name: string | null, regions: string[]) {
      const stream = (ctx.stream ?? undefined) as unknown as AsyncIterable<Buffer> | undefined;
      const p = principalOf(ctx);
      const spool = await this.openSpool(tenantId, `${p.type}:${p.id}`, name, regions);
      const hash = crypto.createHash("sha256");
      const head = new HeadReader();
      let bytes = 0;
      let batchId: string | null = null;
      try {
        if (stream)
          for await (const raw of stream) {
            const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as any);
            bytes += chunk.length;
            hash.update(chunk);
            await spool.write(chunk);
            await head.push(chunk);
          }
        if (bytes === 0) throw badRequest("give the products as JSON {products: [...]} or as a text/csv body");
        await head.end();
        await spool.close(bytes);
        // The body is a stream: the idempotency fingerprint covers its hash with the query parameters.
        ctx.params.body_sha256 = hash.digest("hex");
        return await this.idempotent(ctx, async () => {
          const created = await this.createBatch(ctx, tenantId, {
            name,
            regions,
            total: 0,
            source: { kind: "upload", upload_id: spool.id },
            upload: { id: spool.id, bytes, sha256: ctx.params.body_sha256 },
          });
          batchId = created.id;
          return created;
        });
      } catch (err) {
        if (err instanceof CsvError) throw badRequest(`the CSV cannot be read: ${err.message}; nothing was registered`, { rows: [{ row: err.row, message: err.message }] });
        throw err;
      } finally {
        if (!batchId) await spool.discard().catch((err: Error) => this.logger.warn({ upload_id: spool.id, err: err.message }, "could not delete a spooled CSV"));
      }
    },

    /** Inserts the batch (received) and its history, audited, then starts registration. */
    async createBatch(
      this: any,
      ctx: Context<any, any>,
      tenantId: string,
      b: { name: string | null; regions: string[]; total: number; source: any; upload?: { id: string; bytes: number; sha256: string } },
    ) {
      const id = await this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          "INSERT INTO batches (tenant_id, name, market_regions, status, total, source) VALUES ($1, $2, $3, 'received', $4, $5::jsonb) RETURNING id",
          [tenantId, b.name, b.regions, b.total, JSON.stringify(b.source)],
        );
        const batchId = r.rows[0].id;
        if (b.upload)
          await q.query(
            "UPDATE uploads SET status = 'completed', size = $2, received = $2, sha256 = $3, batch_id = $4, completed_at = now(), updated_at = now() WHERE id = $1",
            [b.upload.id, b.upload.bytes, b.upload.sha256, batchId],
          );
        await this.addHistory(q, batchId, "received", { total: b.total });
        await this.audit(q, ctx, { action: "batch.create", target_type: "batch", target_id: batchId, tenant_id: tenantId, after: { name: b.name, total: b.total, market_regions: b.regions, source: b.source.kind } });
        return batchId;
      });
      ctx.meta.$statusCode = 202;
      ctx.meta.$location = `/v1/batches/${id}`;
      this.scheduleBatch(id, ctx.requestID);
      return { id, status: "received", total: b.total || null };
    },

    /** Serials already registered in the tenant fail a JSON batch up front with a clear 409. */
    async rejectKnownSerials(this: any, tenantId: string, products: Product[]) {
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

    // ---- Spooled files (CSV bodies and resumable uploads) -----------------------------------

    /** A CSV body being received: its bytes go to upload_chunks in pieces as they arrive. */
    async openSpool(this: any, tenantId: string, createdBy: string, name: string | null, regions: string[]) {
      const { rows } = await this.db.query(
        `INSERT INTO uploads (tenant_id, kind, created_by, name, market_regions, content_type, status, expires_at)
         VALUES ($1, 'stream', $2, $3, $4, 'text/csv', 'receiving', now() + make_interval(secs => $5)) RETURNING id`,
        [tenantId, createdBy, name, regions, SPOOL_TTL_SECONDS],
      );
      const id: string = rows[0].id;
      const db = this.db;
      let offset = 0;
      let pending: Buffer[] = [];
      let pendingLen = 0;
      const flush = async () => {
        if (!pendingLen) return;
        const data = Buffer.concat(pending, pendingLen);
        pending = [];
        pendingLen = 0;
        await db.query('INSERT INTO upload_chunks (upload_id, "offset", data) VALUES ($1, $2, $3)', [id, offset, data]);
        offset += data.length;
      };
      return {
        id,
        async write(chunk: Buffer) {
          pending.push(chunk);
          pendingLen += chunk.length;
          if (pendingLen >= PIECE_BYTES) await flush();
        },
        async close(bytes: number) {
          await flush();
          if (offset !== bytes) throw new Error(`spool holds ${offset} bytes, ${bytes} were received`);
        },
        async discard() {
          await db.query("DELETE FROM uploads WHERE id = $1 AND batch_id IS NULL", [id]);
        },
      };
    },

    async uploadOf(this: any, id: string, tenantId: string) {
      const { rows } = await this.db.query("SELECT * FROM uploads WHERE id = $1 AND tenant_id = $2 AND kind = 'upload'", [id, tenantId]);
      if (!rows.length) throw notFound("upload");
      return rows[0];
    },

    /** PUT /v1/uploads/:id: stores the body in pieces, each committed with the new offset. */
    async appendUpload(this: any, ctx: Context<any, any>, tenantId: string) {
      let up = await this.uploadOf(ctx.params.id, tenantId);
      const h = ctx.meta.http?.headers ?? {};
      const start = chunkStart({ uploadOffset: h["upload-offset"], contentRange: h["content-range"], queryOffset: ctx.params.offset });
      if (!start) throw badRequest("say where this chunk starts: Upload-Offset header, Content-Range or ?offset=");
      if ("error" in start) throw badRequest(start.error);
      const offsetHeaders = (u: any) => ({ "Upload-Offset": String(u.received), "Upload-Length": String(u.size) });
      if (up.status === "completed" && start.offset === Number(up.size)) {
        // The final chunk's answer was lost and the client asks again: the same answer, nothing new.
        ctx.meta.$responseHeaders = offsetHeaders(up);
        ctx.meta.$statusCode = 202;
        ctx.meta.$location = `/v1/batches/${up.batch_id}`;
        return uploadView(up);
      }
      if (up.status !== "receiving") throw conflict(`the upload is ${up.status}`, uploadView(up));
      if (start.total !== undefined && start.total !== Number(up.size)) throw badRequest(`Content-Range total ${start.total} differs from the declared size ${up.size}`);
      if (start.offset !== Number(up.received)) {
        ctx.meta.$responseHeaders = offsetHeaders(up);
        throw conflict(`the upload continues at offset ${up.received}, not ${start.offset}`, { received: Number(up.received), size: Number(up.size) });
      }
      const size = Number(up.size);
      let offset = start.offset;
      let pending: Buffer[] = [];
      let pendingLen = 0;
      const flush = async () => {
        if (!pendingLen) return;
        const data = Buffer.concat(pending, pendingLen);
        pending = [];
        pendingLen = 0;
        await this.db.tx(async (q: Queryable) => {
          const r = await q.query(
            "UPDATE uploads SET received = received + $3, updated_at = now() WHERE id = $1 AND received = $2 AND status = 'receiving' RETURNING received",
            [up.id, offset, data.length],
          );
          if (!r.rowCount) throw conflict("another request is writing to this upload at the same offset");
          await q.query('INSERT INTO upload_chunks (upload_id, "offset", data) VALUES ($1, $2, $3)', [up.id, offset, data]);
        });
        this.hashAppended(up.id, offset, data);
        offset += data.length;
      };
      try {
        if (ctx.stream)
          for await (const raw of ctx.stream as unknown as AsyncIterable<Buffer>) {
            const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as any);
            if (offset + pendingLen + chunk.length > size) throw badRequest(`the chunk goes past the declared size of ${size} bytes`);
            if (start.end !== undefined && offset + pendingLen + chunk.length > start.end + 1) throw badRequest("the body is longer than its Content-Range");
            pending.push(chunk);
            pendingLen += chunk.length;
            while (pendingLen >= PIECE_BYTES) await flush();
          }
        await flush();
      } catch (err) {
        // A cut connection keeps what arrived: the client resumes from GET's offset.
        await flush().catch(() => undefined);
        throw err;
      }
      up = await this.uploadOf(up.id, tenantId);
      ctx.meta.$responseHeaders = offsetHeaders(up);
      if (Number(up.received) < size) return uploadView(up);
      return this.completeUpload(ctx, up);
    },

    /** Keeps a running SHA-256 of uploads written through this node, so completion rarely rereads the file. */
    hashAppended(this: any, id: string, offset: number, data: Buffer) {
      const hashes: Map<string, { hash: crypto.Hash; offset: number; at: number }> = this.uploadHashes;
      let s = hashes.get(id);
      if (!s && offset === 0) hashes.set(id, (s = { hash: crypto.createHash("sha256"), offset: 0, at: 0 }));
      if (!s || s.offset !== offset) return;
      s.hash.update(data);
      s.offset += data.length;
      s.at = Date.now();
    },

    async uploadDigest(this: any, id: string, size: number): Promise<string> {
      const hashes: Map<string, { hash: crypto.Hash; offset: number }> = this.uploadHashes;
      // Chunks written through other nodes (or before a restart) are read back from the database.
      const s = hashes.get(id) ?? { hash: crypto.createHash("sha256"), offset: 0 };
      hashes.delete(id);
      if (s.offset < size) for await (const chunk of this.uploadChunks(id, s.offset)) s.hash.update(chunk);
      return s.hash.digest("hex");
    },

    /** The file's bytes from `from` (a piece boundary), a few pieces per query. */
    async *uploadChunks(this: any, id: string, from = 0): AsyncGenerator<Buffer> {
      let offset = from;
      for (;;) {
        const { rows } = await this.db.query('SELECT "offset", data FROM upload_chunks WHERE upload_id = $1 AND "offset" >= $2 ORDER BY "offset" LIMIT 8', [id, offset]);
        if (!rows.length) return;
        for (const r of rows) {
          if (Number(r.offset) !== offset) throw new Error(`upload ${id}: a gap at byte ${offset}`);
          yield r.data;
          offset += r.data.length;
        }
      }
    },

    /** The last byte arrived: SHA-256 and header checked, then the file becomes a batch (202). */
    async completeUpload(this: any, ctx: Context<any, any>, up: any) {
      const refuse = async (status: number, type: string, message: string, details: Record<string, unknown>) => {
        await this.db.tx(async (q: Queryable) => {
          const r = await q.query(
            "UPDATE uploads SET status = 'failed', error = $2::jsonb, updated_at = now() WHERE id = $1 AND status = 'receiving' RETURNING id",
            [up.id, JSON.stringify({ code: type, message, ...details })],
          );
          if (!r.rowCount) return;
          await q.query("DELETE FROM upload_chunks WHERE upload_id = $1", [up.id]);
          await this.audit(q, ctx, { action: "upload.refuse", target_type: "upload", target_id: up.id, tenant_id: up.tenant_id, after: { code: type } });
        });
        throw new Errors.MoleculerClientError(`${message}; nothing was registered`, status, type, details);
      };
      const actual = await this.uploadDigest(up.id, Number(up.size));
      if (actual !== up.sha256) await refuse(422, "CHECKSUM_MISMATCH", "the file's SHA-256 differs from the one declared", { expected: up.sha256, actual });
      // The header is checked now (cheap, and a wrong file is refused at once); the rows during registration.
      try {
        const head = new HeadReader();
        for await (const chunk of this.uploadChunks(up.id)) if (await head.push(chunk)) break;
        await head.end();
      } catch (err) {
        if (err instanceof CsvError) await refuse(400, "BAD_REQUEST", `the CSV cannot be read: ${err.message}`, { rows: [{ row: err.row, message: err.message }] });
        throw err;
      }
      let batchId: string | null = null;
      await this.db.tx(async (q: Queryable) => {
        const r = await q.query("UPDATE uploads SET status = 'completed', completed_at = now(), updated_at = now() WHERE id = $1 AND status = 'receiving' RETURNING id", [up.id]);
        if (!r.rowCount) return; // completed concurrently by the same final chunk sent twice
        const b = await q.query(
          "INSERT INTO batches (tenant_id, name, market_regions, status, total, source) VALUES ($1, $2, $3, 'received', 0, $4::jsonb) RETURNING id",
          [up.tenant_id, up.name, up.market_regions, JSON.stringify({ kind: "upload", upload_id: up.id })],
        );
        batchId = b.rows[0].id;
        await q.query("UPDATE uploads SET batch_id = $2 WHERE id = $1", [up.id, batchId]);
        await this.addHistory(q, batchId!, "received", { upload_id: up.id, bytes: Number(up.size) });
        await this.audit(q, ctx, { action: "batch.create", target_type: "batch", target_id: batchId, tenant_id: up.tenant_id, after: { name: up.name, upload_id: up.id, source: "upload" } });
      });
      if (batchId) this.scheduleBatch(batchId, ctx.requestID);
      const done = await this.uploadOf(up.id, up.tenant_id);
      ctx.meta.$statusCode = 202;
      ctx.meta.$location = `/v1/batches/${done.batch_id}`;
      return uploadView(done);
    },

    // ---- Registration (background) ------------------------------------------------------------

    /** Runs registrations a few at a time per node: each holds a connection for its whole COPY. */
    scheduleBatch(this: any, batchId: string, requestID?: string) {
      this.registrationQueue.push({ batchId, requestID });
      this.drainRegistrations();
    },

    drainRegistrations(this: any) {
      const limit = this.db.kind === "pg" ? 2 : 1;
      while (this.registrationsRunning < limit && this.registrationQueue.length) {
        const { batchId, requestID } = this.registrationQueue.shift();
        this.registrationsRunning++;
        this.registrationsDone = this.processBatch(batchId, requestID)
          .catch((err: Error) => this.logger.error({ batch_id: batchId, err: err.message }, "registration crashed"))
          .finally(() => {
            this.registrationsRunning--;
            this.drainRegistrations();
          });
      }
    },

    /**
     * received → processing → registered (or failed). One pass over the source: each row is checked,
     * hashed and inserted as it is read; the first bad row stops the inserting (rolled back) and the
     * rest of the file is only read for the first 100 errors.
     */
    async processBatch(this: any, batchId: string, requestID?: string) {
      const claim = await this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          `UPDATE batches SET status = 'processing', started_at = now(), done = 0, updated_at = now()
            WHERE id = $1 AND status = 'received' RETURNING id, tenant_id, source, total`,
          [batchId],
        );
        if (!r.rowCount) return undefined;
        await q.query(
          `INSERT INTO batch_progress (batch_id, phase) VALUES ($1, 'inserting')
           ON CONFLICT (batch_id) DO UPDATE SET phase = 'inserting', done = 0, bytes_done = NULL, bytes_total = NULL, at = now()`,
          [batchId],
        );
        await this.addHistory(q, batchId, "processing");
        return r.rows[0];
      });
      if (!claim) return;
      const source = claim.source;
      const tenantId: string = claim.tenant_id;
      // Serials repeated within the file are left to the unique index (see duplicateSerials).
      const checker = new BatchChecker({ serials: false });
      const meter = { bytesDone: 0, bytesTotal: 0 };
      const it: AsyncIterator<(SourceRow | null)[]> = this.sourceRows(source, checker, meter)[Symbol.asyncIterator]();
      try {
        const ring: TokenKeyring = await this.tokenKeyring();
        const batch: BatchInsert = { id: batchId, tenantId, expected: claim.total || 0, kid: ring.active, uploadId: source.kind === "upload" ? source.upload_id : null };
        const insert = this.db.kind === "pg" ? this.insertWithCopy : this.insertChunked;
        const products = await insert.call(this, batch, it, meter, requestID);
        this.logger.info({ batch_id: batchId, products, request_id: requestID }, "batch registered");
      } catch (err: any) {
        await it.return?.(undefined).catch(() => undefined);
        let failure = err;
        // Bad rows: the file is read again from the start, checking only, for the first 100 errors.
        if (err instanceof InvalidRow || err instanceof CsvError) failure = await this.rowErrors(source).catch(() => err);
        else if (err?.code === "23505") failure = await this.duplicateSerials(tenantId, batchId, source).catch(() => err);
        await this.failBatch(batchId, failure, requestID, source);
      }
    },

    /**
     * The source's rows in order: a valid row, or null for an invalid one (its errors are in
     * `checker`). A CSV file is parsed as it is read back from the database, a few MiB at a time.
     */
    async *sourceRows(this: any, source: any, checker: BatchChecker, meter: { bytesDone: number; bytesTotal: number }): AsyncGenerator<(SourceRow | null)[]> {
      if (source.kind === "inline") {
        // Checked whole when the request came in.
        const products = source.products as Product[];
        for (let i = 0; i < products.length; i += ROWS_PER_STEP) {
          yield products.slice(i, i + ROWS_PER_STEP).map((product, k) => ({ product, row: i + k + 1 }));
          await nextTurn();
        }
        return;
      }
      const max = this.config.factory.batchMaxProducts;
      meter.bytesTotal = Number((await this.db.query("SELECT size FROM uploads WHERE id = $1", [source.upload_id])).rows[0]?.size ?? 0);
      const self = this;
      const counted = async function* () {
        // A chunk counts as read once the parser asks for the next one (half of it meanwhile).
        let previous = 0;
        for await (const c of self.uploadChunks(source.upload_id)) {
          meter.bytesDone += previous / 2 + c.length / 2;
          previous = c.length;
          yield c;
        }
      };
      let step: (SourceRow | null)[] = [];
      for await (const { row, record } of csvRecords(counted(), CSV_COLUMNS)) {
        const r = productFromCsv(record, row);
        const product = r.error ? (checker.fail(r.error), null) : checker.check(r.input, row);
        if (checker.count > max) throw new RowsError([{ row, message: tooManyProducts(max).message }]);
        step.push(product ? { product, row } : null);
        if (step.length >= ROWS_PER_STEP) {
          yield step;
          step = [];
          // Parsing a stored file never waits on I/O between its reads: let requests and timers in.
          await nextTurn();
        }
      }
      if (step.length) yield step;
      if (!checker.count && checker.ok) throw new RowsError([{ row: 1, message: "the CSV has a header but no product rows" }]);
    },

    /** Every row checked (serials repeated in the file included) until 100 errors are found. */
    async rowErrors(this: any, source: any): Promise<RowsError> {
      const checker = new BatchChecker();
      try {
        for await (const _ of this.sourceRows(source, checker, { bytesDone: 0, bytesTotal: 0 })) if (checker.errors.length >= MAX_ROW_ERRORS) break;
      } catch (err) {
        if (err instanceof RowsError) return err;
        if (!(err instanceof CsvError)) throw err;
        checker.fail({ row: err.row, message: err.message });
      }
      return new RowsError(checker.errors, checker.errorCount);
    },

    /**
     * Writes progress from outside the registration's transaction (which nobody else can see into),
     * once a second; doubles as the heartbeat that keeps other nodes from taking the batch over.
     */
    progressTicker(this: any, batchId: string, read: () => { done: number; bytesDone: number; bytesTotal: number; phase?: string }) {
      let inflight: Promise<unknown> = Promise.resolve();
      const timer = setInterval(() => {
        const p = read();
        inflight = this.writeProgress(this.db, batchId, p).catch((err: Error) => this.logger.warn({ batch_id: batchId, err: err.message }, "progress not written"));
      }, PROGRESS_EVERY_MS);
      return {
        async stop() {
          clearInterval(timer);
          await inflight;
        },
      };
    },

    async writeProgress(this: any, q: Queryable, batchId: string, p: { done: number; bytesDone: number; bytesTotal: number; phase?: string }) {
      await q.query(
        "UPDATE batch_progress SET done = $2, bytes_done = $3, bytes_total = $4, phase = coalesce($5, phase), at = now() WHERE batch_id = $1",
        [batchId, p.done, p.bytesTotal ? Math.round(p.bytesDone) : null, p.bytesTotal || null, p.phase ?? null],
      );
    },

    /**
     * Postgres: one COPY in one transaction (all or nothing), the rows streamed to it as they are
     * read, checked and hashed; then the Merkle tree, the registered status and the outbox event in
     * the same transaction.
     */
    async insertWithCopy(this: any, batch: BatchInsert, it: AsyncIterator<(SourceRow | null)[]>, meter: Meter, requestID?: string) {
      const client: PoolClient = await this.db.pool.connect();
      // A checked-out client that loses its server emits 'error': without a listener that event
      // would end the process; the COPY then fails through the pipeline and the batch fails cleanly.
      const onLost = (err: Error) => this.logger.warn({ batch_id: batch.id, err: err.message }, "database connection lost during COPY");
      client.on("error", onLost);
      const leaves = new LeafBuffer(batch.expected);
      const rows = new RowEncoder(batch);
      const progress = this.progressTicker(batch.id, () => ({ done: leaves.count, ...meter }));
      let broken = false;
      const t0 = Date.now();
      const timings: Record<string, number> = {};
      try {
        await client.query("BEGIN");
        const copy = client.query(copyFrom(`COPY products (${PRODUCT_COLUMNS}) FROM STDIN`));
        async function* lines() {
          let buf = "";
          for (;;) {
            const r = await it.next();
            if (r.done) {
              // Postgres now runs the rows' foreign-key checks and the index work it deferred.
              meter.phase = "finishing";
              timings.rows_sent_s = (Date.now() - t0) / 1000;
              break;
            }
            for (const x of r.value) {
              if (!x) throw new InvalidRow();
              buf += rows.line(x.product, leaves);
            }
            if (buf.length >= COPY_WRITE_BYTES) {
              yield buf;
              buf = "";
            }
          }
          if (buf) yield buf;
        }
        await pipeline(Readable.from(lines(), { objectMode: false }), copy);
        timings.copy_s = (Date.now() - t0) / 1000;
        await progress.stop();
        const tree = await this.treeOf(batch.id, leaves);
        timings.tree_s = (Date.now() - t0) / 1000;
        await this.finishRegistration(pgQueryable(client), batch, tree, leaves.count, requestID);
        await client.query("COMMIT");
        timings.commit_s = (Date.now() - t0) / 1000;
        this.logger.info({ batch_id: batch.id, products: leaves.count, ...timings }, "registration timings");
      } catch (err) {
        broken = true;
        await client.query("ROLLBACK").catch(() => undefined);
        throw err;
      } finally {
        await progress.stop();
        // A connection that failed mid-COPY is not reused.
        client.removeListener("error", onLost);
        client.release(broken ? true : undefined);
      }
      this.pokeOutbox();
      return leaves.count;
    },

    /**
     * PGlite (one connection for the whole node): a single transaction would stall every other
     * request for as long as the batch takes, so rows go in a few thousand per transaction, the
     * batch stays 'processing' (its products are listed nowhere until then), and any failure —
     * or a restart — deletes what was written.
     */
    async insertChunked(this: any, batch: BatchInsert, it: AsyncIterator<(SourceRow | null)[]>, meter: { bytesDone: number; bytesTotal: number }, requestID?: string) {
      const leaves = new LeafBuffer(batch.expected);
      const rows = new RowEncoder(batch);
      let chunk: string[][] = [];
      const flush = async () => {
        if (!chunk.length) return;
        const c = chunk;
        chunk = [];
        const col = (i: number) => c.map((r) => r[i]);
        await this.db.tx(async (q: Queryable) => {
          await q.query(
            `INSERT INTO products (${PRODUCT_COLUMNS})
             SELECT id, $1, $2, ord, sku, name, serial, gtin, lot, attrs::jsonb, $3, salt, leaf
               FROM unnest($4::uuid[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
                 AS t(id, ord, sku, name, serial, gtin, lot, attrs, salt, leaf)`,
            [batch.tenantId, batch.id, batch.kid, col(0), col(1), col(2), col(3), col(4), col(5), col(6), col(7), col(8), col(9)],
          );
          await this.writeProgress(q, batch.id, { done: leaves.count, ...meter });
        });
      };
      try {
        await this.db.query("DELETE FROM products WHERE batch_id = $1", [batch.id]);
        for (;;) {
          const r = await it.next();
          if (r.done) break;
          for (const x of r.value) {
            if (!x) throw new InvalidRow();
            chunk.push(rows.fields(x.product, leaves));
            if (chunk.length >= PGLITE_CHUNK) await flush();
          }
        }
        await flush();
        const tree = await this.treeOf(batch.id, leaves);
        await this.db.tx((q: Queryable) => this.finishRegistration(q, batch, tree, leaves.count, requestID));
      } catch (err) {
        await this.db.query("DELETE FROM products WHERE batch_id = $1", [batch.id]).catch(() => undefined);
        throw err;
      }
      this.pokeOutbox();
      return leaves.count;
    },

    async treeOf(this: any, batchId: string, leaves: LeafBuffer) {
      await this.writeProgress(this.db, batchId, { done: leaves.count, bytesDone: 0, bytesTotal: 0, phase: "tree" });
      return buildTreeParallel(leaves.views());
    },

    async finishRegistration(this: any, q: Queryable, batch: BatchInsert, tree: any, n: number, requestID?: string) {
      const root = tree.root.toString("hex");
      await q.query(
        `UPDATE batches SET status = 'registered', done = $4, total = $4, root = $2, tree = $3,
            leaf_count = $4, source = NULL, registered_at = now(), updated_at = now() WHERE id = $1`,
        [batch.id, root, serializeTree(tree), n],
      );
      await q.query("DELETE FROM batch_progress WHERE batch_id = $1", [batch.id]);
      // The file has become the products: its bytes go with the same commit.
      if (batch.uploadId) await q.query("DELETE FROM upload_chunks WHERE upload_id = $1", [batch.uploadId]);
      await this.addHistory(q, batch.id, "registered", { products: n });
      await this.emitDurable(q, "batch.registered", { tenant_id: batch.tenantId, batch_id: batch.id, products: n, root }, requestID);
      await this.audit(q, null, { action: "batch.register", target_type: "batch", target_id: batch.id, tenant_id: batch.tenantId, after: { products: n, root } });
      this.broker.metrics.increment("voketag_products_registered_total", null, n);
      this.broker.metrics.increment("voketag_batches_registered_total");
    },

    /**
     * After a unique-index violation: which rows repeat a serial, within the batch or of the
     * tenant's other batches (first 100, in row order).
     */
    async duplicateSerials(this: any, tenantId: string, batchId: string, source: any): Promise<RowsError> {
      const inBatch: RowError[] = [];
      const known: RowError[] = [];
      let found = 0;
      let chunk: SourceRow[] = [];
      const check = async () => {
        const { rows } = await this.db.query(
          `SELECT n.row, n.serial, nullif(n.gtin, '') AS gtin FROM unnest($2::int[], $3::text[], $4::text[]) AS n(row, gtin, serial)
            WHERE EXISTS (SELECT 1 FROM products p WHERE p.tenant_id = $1 AND coalesce(p.gtin, '') = n.gtin AND p.serial = n.serial AND p.batch_id <> $5)
            ORDER BY n.row`,
          [tenantId, chunk.map((r) => r.row), chunk.map((r) => r.product.gtin ?? ""), chunk.map((r) => r.product.serial), batchId],
        );
        chunk = [];
        for (const r of rows) {
          found++;
          if (known.length < MAX_ROW_ERRORS)
            known.push({ row: r.row, field: "serial", message: `serial ${r.serial}${r.gtin ? ` (GTIN ${r.gtin})` : ""} is already registered for this tenant` });
        }
      };
      const serials = new SerialSet();
      for await (const step of this.sourceRows(source, new BatchChecker({ serials: false }), { bytesDone: 0, bytesTotal: 0 })) {
        for (const r of step as (SourceRow | null)[]) {
          if (!r) continue;
          const dup = serials.add(r.product, r.row);
          if (dup) {
            found++;
            if (inBatch.length < MAX_ROW_ERRORS) inBatch.push(dup);
          }
          chunk.push(r);
        }
        if (chunk.length >= 5000) await check();
        if (inBatch.length + known.length >= MAX_ROW_ERRORS) break;
      }
      if (chunk.length) await check();
      if (!found) return new RowsError([{ row: 0, field: "serial", message: "a serial was registered concurrently by another batch" }]);
      return new RowsError([...inBatch, ...known].sort((a, b) => a.row - b.row).slice(0, MAX_ROW_ERRORS), found);
    },

    async failBatch(this: any, batchId: string, err: any, requestID: string | undefined, source: any) {
      let errors: RowError[];
      // A failure of the data (rows, CSV) needs a corrected batch; a failure of the server (database
      // restarted mid-registration) keeps the source so the same batch can be retried as it is.
      const retryable = !(err instanceof RowsError || err instanceof CsvError);
      if (err instanceof RowsError) errors = err.errors;
      else if (err instanceof CsvError) errors = [{ row: err.row, message: err.message }];
      else {
        this.logger.error({ batch_id: batchId, request_id: requestID, err: err?.message, stack: err?.stack }, "batch registration failed");
        errors = [{ row: 0, message: "registration failed on the server; nothing was registered (the batch may be sent again)" }];
      }
      this.logger.warn({ batch_id: batchId, request_id: requestID, errors: errors.length }, "batch failed");
      await this.db
        .tx(async (q: Queryable) => {
          const r = await q.query(
            `UPDATE batches SET status = 'failed', errors = $2::jsonb, source = CASE WHEN $3 THEN source END, updated_at = now()
              WHERE id = $1 AND status IN ('received', 'processing') RETURNING tenant_id`,
            [batchId, JSON.stringify(errors), retryable],
          );
          if (!r.rowCount) return;
          await q.query("DELETE FROM batch_progress WHERE batch_id = $1", [batchId]);
          await this.addHistory(q, batchId, "failed", { errors: errors.slice(0, 10), error_count: err instanceof RowsError ? err.errorCount : errors.length });
          await this.emitDurable(q, "batch.failed", { tenant_id: r.rows[0].tenant_id, batch_id: batchId, errors, retryable }, requestID);
          await this.audit(q, null, { action: "batch.fail", target_type: "batch", target_id: batchId, tenant_id: r.rows[0].tenant_id, after: { errors: errors.length } });
          if (!retryable && source?.kind === "upload") await q.query("DELETE FROM upload_chunks WHERE upload_id = $1", [source.upload_id]);
        })
        .catch((e: any) => this.logger.error({ batch_id: batchId, err: e?.message }, "could not mark batch failed"));
      this.pokeOutbox();
    },

    /** Batches a dead node left half-way are taken up again (nothing of theirs was committed). */
    async resumeStuckBatches(this: any) {
      const { rows } = await this.db.query(
        `UPDATE batches b SET status = 'received', updated_at = now()
          WHERE b.status IN ('received', 'processing') AND b.source IS NOT NULL AND b.updated_at < now() - interval '2 minutes'
            AND NOT EXISTS (SELECT 1 FROM batch_progress p WHERE p.batch_id = b.id AND p.at > now() - interval '2 minutes')
          RETURNING id`,
      );
      for (const r of rows) this.scheduleBatch(r.id);
    },

    /** Unfinished uploads past their time, and CSV bodies whose request never finished. */
    async expireUploads(this: any) {
      const { rows } = await this.db.query(
        `UPDATE uploads SET status = 'expired', updated_at = now() WHERE status = 'receiving' AND expires_at < now() RETURNING id`,
      );
      for (const r of rows) await this.db.query("DELETE FROM upload_chunks WHERE upload_id = $1", [r.id]);
    },

    // ---- Views -------------------------------------------------------------------------------

    tokenFor(this: any, tagId: string, kid: string, ring: TokenKeyring): string | null {
      // A tag signed with a key since removed from the keyring no longer verifies anywhere: no token.
      if (!Object.hasOwn(ring.keys, kid)) return null;
      return signToken(tagId, { active: kid, keys: ring.keys });
    },

    async productViews(this: any, rows: any[], ring: TokenKeyring) {
      const base = this.config.verificationUrlBase;
      return rows.map((r) => {
        const tagId = r.tag_id ?? r.id;
        const token = this.tokenFor(tagId, r.token_kid, ring);
        return {
          id: r.id,
          batch_id: r.batch_id,
          status: r.status,
          status_reason: r.status_reason,
          tag_id: tagId,
          token,
          verification_url: token ? `${base}/r/${token}` : null,
          digital_link: r.gtin && token ? buildDigitalLink(base, { gtin: r.gtin, lot: r.lot, serial: r.serial, token }) : null,
          sku: r.sku,
          name: r.name,
          serial: r.serial,
          gtin: r.gtin,
          lot: r.lot,
          attributes: r.attributes,
          recall_id: r.recall_id ?? null,
          ordinal: r.ordinal,
          created_at: r.created_at,
        };
      });
    },

    /** The batch's labels in pages of up to 1,000, read from the database only as they are consumed. */
    async *labelPages(this: any, batchId: string, ring: TokenKeyring): AsyncGenerator<Label[]> {
      let after = -1;
      for (;;) {
        const { rows } = await this.db.query(
          `SELECT * FROM products p WHERE p.batch_id = $1 AND p.ordinal > $2 AND ${PRINTABLE} ORDER BY p.ordinal LIMIT 960`,
          [batchId, after],
        );
        if (!rows.length) return;
        after = rows[rows.length - 1].ordinal;
        yield (await this.productViews(rows, ring)).filter((v: any) => v.token).map(labelOf);
      }
    },
  },

  created(this: any) {
    const m: any = this.broker.metrics;
    if (!m.getMetric("voketag_products_registered_total")) {
      m.register({ type: "counter", name: "voketag_products_registered_total", description: "Products registered (committed)" });
      m.register({ type: "counter", name: "voketag_batches_registered_total", description: "Batches registered (committed)" });
    }
    this.uploadHashes = new Map();
    this.registrationQueue = [];
    this.registrationsRunning = 0;
    this.registrationsDone = Promise.resolve();
  },
  started(this: any) {
    this.maintenanceTimer = setInterval(() => {
      this.resumeStuckBatches().catch(() => undefined);
      this.expireUploads().catch(() => undefined);
      // Running hashes of uploads nobody has written to for an hour: completion rereads instead.
      for (const [id, s] of this.uploadHashes) if (Date.now() - s.at > 3600_000) this.uploadHashes.delete(id);
    }, 60_000);
    this.maintenanceTimer.unref();
  },
  async stopped(this: any) {
    clearInterval(this.maintenanceTimer);
  },
};

// A batch with its progress while it registers.
const BATCH_COLUMNS = `b.id, b.tenant_id, b.name, b.market_regions, b.status, b.total, coalesce(p.done, b.done) AS done, p.bytes_done, p.bytes_total,
  b.errors, b.root, p.phase, b.started_at, b.created_at, b.updated_at, b.registered_at, b.anchored_at`;
const BATCH_FROM = "batches b LEFT JOIN batch_progress p ON p.batch_id = b.id";

type Meter = { bytesDone: number; bytesTotal: number; phase?: string };
type BatchInsert = { id: string; tenantId: string; expected: number; kid: string; uploadId: string | null };

/** Signals the first invalid row to the inserting loop (the transaction is rolled back). */
class InvalidRow extends Error {}

/** The batch's Merkle leaves, 32 bytes each in one growing buffer (not a million small Buffers). */
class LeafBuffer {
  private buf: Buffer;
  count = 0;
  constructor(expected: number) {
    this.buf = Buffer.allocUnsafe(32 * Math.max(1024, expected));
  }
  push(leaf: Buffer) {
    if ((this.count + 1) * 32 > this.buf.length) {
      const bigger = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, this.count * 32);
      this.buf = bigger;
    }
    leaf.copy(this.buf, this.count * 32);
    this.count++;
  }
  /**
   * The leaves as the array lib/merkle takes, each view made when it is read (the tree copies every
   * leaf once): a million views held at once would cost more memory than the leaves themselves.
   */
  views(): Buffer[] {
    const { buf, count } = this;
    return new Proxy([] as Buffer[], {
      get(target, key) {
        if (key === "length") return count;
        if (typeof key === "string" && /^\d+$/.test(key)) {
          const i = Number(key);
          return i < count ? buf.subarray(i * 32, i * 32 + 32) : undefined;
        }
        return Reflect.get(target, key);
      },
    });
  }
}

/** A product's new row: its tag id, salt and Merkle leaf, as a COPY text line or as fields. */
class RowEncoder {
  private salts = Buffer.alloc(0);
  private saltAt = 0;
  private readonly prefix: string;
  private readonly kid: string;
  constructor(private readonly batch: BatchInsert) {
    this.prefix = `\t${batch.tenantId}\t${batch.id}\t`;
    this.kid = copyField(batch.kid);
  }
  private salt(): string {
    // Random bytes fetched 64 KiB at a time: one call per row would cost more than the hashing.
    if (this.saltAt + 16 > this.salts.length) {
      this.salts = crypto.randomBytes(16 * 4096);
      this.saltAt = 0;
    }
    const s = this.salts.toString("hex", this.saltAt, this.saltAt + 16);
    this.saltAt += 16;
    return s;
  }
  private next(p: Product, leaves: LeafBuffer) {
    const id = crypto.randomUUID();
    const salt = this.salt();
    const leaf = productLeafHash({ tag_id: id, tenant_id: this.batch.tenantId, batch_id: this.batch.id, sku: p.sku, name: p.name, serial: p.serial, gtin: p.gtin, lot: p.lot, salt });
    const ordinal = leaves.count;
    leaves.push(leaf);
    return { id, salt, leaf: leaf.toString("hex"), ordinal };
  }
  line(p: Product, leaves: LeafBuffer): string {
    const r = this.next(p, leaves);
    return (
      `${r.id}${this.prefix}${r.ordinal}\t${copyField(p.sku)}\t${copyField(p.name)}\t${copyField(p.serial)}\t${copyField(p.gtin)}\t` +
      `${copyField(p.lot)}\t${copyField(JSON.stringify(p.attributes ?? {}))}\t${this.kid}\t${r.salt}\t${r.leaf}\n`
    );
  }
  fields(p: Product, leaves: LeafBuffer): string[] {
    const r = this.next(p, leaves);
    return [r.id, String(r.ordinal), p.sku, p.name, p.serial, p.gtin as string, p.lot as string, JSON.stringify(p.attributes ?? {}), r.salt, r.leaf];
  }
}

function pgQueryable(client: PoolClient): Queryable {
  return {
    async query<T>(sql: string, params?: unknown[]) {
      const r = await client.query(sql, params as any[]);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    },
  };
}

/** Location of what a 201/202 created (moleculer-web itself sets it for 201 and redirects only). */

function actorOf(ctx: Context<any, any>): string | null {
  const p = ctx.meta?.principal;
  return p ? `${p.type}:${p.id}` : null;
}

function tooManyProducts(max: number) {
  return new Errors.MoleculerClientError(`a batch holds at most ${max} products; split the file`, 413, "PAYLOAD_TOO_LARGE");
}

function labelOf(v: any): Label {
  return {
    url: v.digital_link ?? v.verification_url,
    serial: v.serial,
    sku: v.sku,
    name: v.name,
    gtin: v.gtin,
    lot: v.lot,
    tag_id: v.tag_id,
    token: v.token,
    verification_url: v.verification_url,
    digital_link: v.digital_link,
  };
}

function keyView(r: any) {
  return { id: r.id, name: r.name, prefix: r.prefix, scopes: r.scopes, created_at: r.created_at, revoked_at: r.revoked_at, last_used_at: r.last_used_at };
}

function uploadView(u: any) {
  return {
    id: u.id,
    status: u.status,
    size: u.size === null ? null : Number(u.size),
    received: Number(u.received),
    sha256: u.sha256,
    content_type: u.content_type,
    name: u.name,
    market_regions: u.market_regions,
    batch_id: u.batch_id,
    error: u.error,
    created_at: u.created_at,
    completed_at: u.completed_at,
    expires_at: u.expires_at,
  };
}

function recallView(r: any) {
  return {
    id: r.id,
    scope: r.scope,
    product_id: r.product_id,
    batch_id: r.batch_id,
    reason: r.reason,
    products: r.products,
    status: r.withdrawn_at ? "withdrawn" : "active",
    created_at: r.created_at,
    withdrawn_at: r.withdrawn_at,
    withdraw_reason: r.withdraw_reason,
  };
}

function batchView(b: any) {
  const processing = b.status === "processing";
  const elapsed = processing && b.started_at ? (Date.now() - new Date(b.started_at).getTime()) / 1000 : 0;
  const rate = processing && elapsed > 0 && b.done > 0 ? b.done / elapsed : null;
  // A CSV's row count is known once it is read through: meanwhile total and ETA come from the bytes read.
  const bytesTotal = Number(b.bytes_total ?? 0);
  const bytesDone = Number(b.bytes_done ?? 0);
  const estimated = processing && !b.total && bytesTotal > 0 && bytesDone > 0;
  const total = estimated ? Math.max(b.done, Math.round((b.done * bytesTotal) / bytesDone)) : b.total;
  let eta: number | null = null;
  if (rate) eta = estimated ? Math.round(((bytesTotal - bytesDone) / bytesDone) * elapsed) : Math.max(0, Math.round((total - b.done) / rate));
  return {
    id: b.id,
    name: b.name,
    status: b.status,
    market_regions: b.market_regions,
    progress: { done: b.done, total, ...(estimated && { estimated: true }) },
    ...(processing && { phase: b.phase }),
    rate_per_s: rate === null ? null : Math.round(rate),
    eta_s: eta,
    root: b.root,
    errors: b.errors,
    created_at: b.created_at,
    started_at: b.started_at,
    registered_at: b.registered_at,
    anchored_at: b.anchored_at,
  };
}

export default FactoryService;
