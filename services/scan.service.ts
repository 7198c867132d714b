// Scan: one hop from the gateway — token check, product lookup (cached), risk scoring and the
// ledger append all happen here. A forged token is a verdict (`invalid`), never an error; a verdict
// is answered only once its ledger entry is durable; a scan that cannot finish in SCAN_TIMEOUT
// seconds is a 503, never a guess.
import crypto from "node:crypto";
import type { ServiceSchema, Context } from "moleculer";
import { Errors } from "moleculer";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { TokensMixin } from "../mixins/tokens.mixin";
import { LedgerAppender, LEDGER_PARTITIONS, ScanRecord } from "../mixins/ledger-appender";
import { TickBatcher } from "../lib/batcher";
import { badRequest, notFound, cursorParam } from "../mixins/errors";
import { tenantOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { verifyToken } from "../lib/token";
import { assessRisk, verdictFor, mergeRiskConfig, enumerationBuckets, DEFAULT_RISK_CONFIG, FACTOR_NAMES, RiskAssessment, RiskConfig } from "../lib/risk";
import { ChainVerifier, partitionFor } from "../lib/ledger";
import { deviceFingerprint, hashNetwork } from "../lib/fingerprint";
import { countryOf, coarsen } from "../lib/geo";
import { listParams, page, DEFAULT_LIMIT } from "../lib/cursor";
import { signPageToken, verifyPageToken, REPORT_REASONS } from "../lib/scan-page";
import { ResilientRedisCacher } from "../mixins/resilient-cacher";
import { ok } from "../lib/schemas/common";
import { ReportCreated, ScanHistoryPage, ScanResult } from "../lib/schemas/scan";

/** Latest scans of a tag the travel check looks back over. */
const HISTORY = 20;
/** Nil UUID: "exclude no scan" in queries that can exclude the scan being located. */
const NO_SCAN = "00000000-0000-0000-0000-000000000000";
const CACHE_KEY = (id: string) => `scan.lookup:${id}`;
/** Seconds a product lookup stays cached; status changes invalidate it sooner. */
const LOOKUP_TTL = 300;

const location = {
  type: "object",
  optional: true,
  strict: "remove",
  props: {
    lat: { type: "number", min: -90, max: 90 },
    lng: { type: "number", min: -180, max: 180 },
    accuracy_m: { type: "number", min: 0, max: 1_000_000, optional: true },
  },
};
const scanParams = {
  token: { type: "string", min: 1, max: 200 },
  location,
  fingerprint: { type: "string", max: 256, optional: true },
};
const reportParams = {
  reason: { type: "enum", values: [...REPORT_REASONS] },
  details: { type: "string", max: 2000, optional: true },
  contact: { type: "string", max: 320, optional: true },
};

interface ScanInput {
  token?: string;
  location?: { lat: number; lng: number; accuracy_m?: number };
  fingerprint?: string;
  channel?: "api" | "page" | "gs1";
  /** GS1 Digital Link: the product the link's path names; a token for another product is invalid. */
  expect?: { gtin: string; lot?: string; serial?: string };
  /** Add a location to a scan already recorded (the consumer page's "share my location"). */
  refine?: { scan_id: string; receipt: string };
}

const isTimeout = (err: any) => err?.type === "SCAN_TIMEOUT";

// A token names a tag: a product's original tag (its own id) or a replacement; an old tag the brand
// voided still verifies but answers as void.
const LOOKUP_SQL = `SELECT p.id, g.tag_id, g.status AS tag_status, p.tenant_id, p.batch_id, p.sku, p.name, p.serial, p.gtin, p.lot, p.attributes,
         CASE WHEN p.status = 'recalled' THEN 'recalled' WHEN g.status = 'void' THEN 'void' ELSE p.status END AS status,
         p.status_reason, b.name AS batch_name, b.market_regions, t.name AS brand, t.settings -> 'risk' AS risk_settings
    FROM tags g JOIN products p ON p.id = g.product_id JOIN batches b ON b.id = p.batch_id JOIN tenants t ON t.id = p.tenant_id
   WHERE g.tag_id = $1`;

// Everything the model needs but the enumeration counts, for every scan of one event-loop turn in one
// round trip (lib/batcher): per scan ($1..$4 arrays: product, device, batch, a scan to leave out when
// a location is shared later) its tag's latest scans, scan and device counts, whether this device
// scanned it before, distinct reporting devices on the tag and on the batch, and the batch's anchor.
const STATS_SQL = `SELECT q.i,
         (SELECT coalesce(json_agg(h ORDER BY h.at), '[]'::json) FROM (
            SELECT at, device, lat, lng FROM scans WHERE product_id = q.product AND id <> q.exclude ORDER BY at DESC LIMIT ${HISTORY}) h) AS history,
         c.n, c.d, c.first, c.seen, r.tag AS reports_tag, r.batch AS reports_batch,
         (SELECT row_to_json(a) FROM (
            SELECT p.status, p.chain_id, p.tx_hash, p.block_number FROM period_leaves l JOIN periods p ON p.id = l.period_id
             WHERE l.kind = 'batch' AND l.ref = q.batch::text ORDER BY (p.status = 'final') DESC, p.created_at DESC LIMIT 1) a) AS anchor
    FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[]) WITH ORDINALITY AS q(product, device, batch, exclude, i)
    CROSS JOIN LATERAL (
      SELECT count(*) AS n, count(DISTINCT device) AS d, min(at) AS first, coalesce(bool_or(device = q.device), false) AS seen
        FROM scans WHERE product_id = q.product AND id <> q.exclude) c
    CROSS JOIN LATERAL (
      SELECT count(DISTINCT device) FILTER (WHERE product_id = q.product) AS tag, count(DISTINCT (product_id, device)) AS batch
        FROM reports WHERE batch_id = q.batch) r
   ORDER BY q.i`;

interface StatsInput {
  product: string;
  device: string;
  batch: string;
  exclude: string;
}

const ScanService: ServiceSchema = {
  name: "scan",
  mixins: [OutboxMixin, IdempotencyMixin, TokensMixin],
  actions: {
    scan: {
      rest: { method: "POST", fullPath: "/v1/scan" },
      auth: "public",
      summary: "Verify a tag: verdict, risk with its factors, product, batch, brand, anchor; records the scan",
      responses: { 200: ok("The verdict (a token that does not verify is the verdict invalid, not an error)", ScanResult) },
      params: scanParams,
      handler(this: any, ctx: Context<any, any>) {
        return this.timed(ctx, () => this.verifyScan(ctx, { ...ctx.params, channel: "api" }));
      },
    } as any,

    scanByQuery: {
      rest: { method: "GET", fullPath: "/v1/scan" },
      auth: "public",
      summary: "Verify a tag given as ?token= (records the scan)",
      responses: { 200: ok("The verdict", ScanResult) },
      params: { token: scanParams.token },
      handler(this: any, ctx: Context<any, any>) {
        return this.timed(ctx, () => this.verifyScan(ctx, { token: ctx.params.token, channel: "api" }));
      },
    } as any,

    /** The consumer pages' verification: the same scan, plus the page's signed form tokens. */
    verify: <any>{
      visibility: "public",
      params: {
        token: { type: "string", max: 200, optional: true },
        location,
        fingerprint: scanParams.fingerprint,
        channel: { type: "enum", values: ["page", "gs1"], optional: true },
        expect: {
          type: "object",
          optional: true,
          props: { gtin: { type: "string", max: 14 }, lot: { type: "string", max: 20, optional: true }, serial: { type: "string", max: 20, optional: true } },
        },
        refine: { type: "object", optional: true, props: { scan_id: "uuid", receipt: { type: "string", max: 200 } } },
      },
      handler(this: any, ctx: Context<any, any>) {
        if (ctx.params.refine && !ctx.params.location) throw badRequest("a location is required to add one to a scan");
        return this.timed(ctx, () => this.verifyScan(ctx, { ...ctx.params, channel: ctx.params.channel ?? "page" }, true));
      },
    },

    history: {
      rest: { method: "GET", fullPath: "/v1/scan/:tag_id" },
      auth: "key",
      scope: "scans:read",
      summary: "A tag's scan history, newest first",
      responses: { 200: ok("A page of scans", ScanHistoryPage) },
      params: { tag_id: "uuid", ...listParams },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        // The product's id, or any tag it has had (a replacement tag's id).
        const p = await this.db.query("SELECT g.product_id FROM tags g JOIN products p ON p.id = g.product_id WHERE g.tag_id = $1 AND p.tenant_id = $2", [ctx.params.tag_id, tenant]);
        if (!p.rowCount) throw notFound("tag");
        const productId = p.rows[0].product_id;
        const { rows } = await this.db.query(
          `SELECT id, at, verdict, score, country, lat, lng, device, factors, channel, located_at FROM scans
            WHERE product_id = $1 AND ($2::timestamptz IS NULL OR (at, id) < ($2::timestamptz, $3::uuid))
            ORDER BY at DESC, id DESC LIMIT $4`,
          [productId, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(
          rows.map((r: any) => ({
            id: r.id,
            at: r.at,
            verdict: r.verdict,
            score: r.score,
            country: r.country,
            location: r.lat === null ? null : { lat: r.lat, lng: r.lng },
            located_at: r.located_at,
            channel: r.channel,
            // A prefix of the device hash: enough to tell devices apart, not a stable identifier to share.
            device: r.device.slice(0, 12),
            factors: r.factors,
          })),
          limit,
          (s: any) => [new Date(s.at).toISOString(), s.id],
        );
      },
    } as any,

    report: {
      rest: { method: "POST", fullPath: "/v1/report" },
      auth: "public",
      summary: "Report a problem with a product (counterfeit, tampered tag, ...)",
      successStatus: 201,
      responses: { 201: ok("The report is filed", ReportCreated) },
      // 404: the tag is unknown; 409/422: Idempotency-Key still running / reused with another body.
      errors: [404, 409, 422],
      params: {
        token: { type: "string", min: 1, max: 200, optional: true },
        tag_id: { type: "uuid", optional: true },
        ...reportParams,
      },
      async handler(this: any, ctx: Context<any, any>) {
        return this.idempotent(ctx, async () => {
          let tagId: string | null = ctx.params.tag_id ?? null;
          if (ctx.params.token) {
            const v = verifyToken(ctx.params.token, await this.tokenKeyring());
            if (!v.ok) throw badRequest("token is not valid");
            if (tagId && tagId !== v.tagId) throw badRequest("token and tag_id name different tags");
            tagId = v.tagId;
          }
          if (!tagId) throw badRequest("give token or tag_id");
          return this.createReport(ctx, tagId, ctx.params);
        });
      },
    } as any,

    /** The consumer page's report form (no JavaScript): its signed form token stands for a CSRF token and an idempotency key. */
    pageReport: {
      visibility: "public",
      params: { token: { type: "string", min: 1, max: 200 }, form: { type: "string", max: 200 }, ...reportParams },
      async handler(this: any, ctx: Context<any, any>) {
        const v = verifyToken(ctx.params.token, await this.tokenKeyring());
        if (!v.ok) throw badRequest("token is not valid");
        const check = verifyPageToken(this.pageSecret(), "report", v.tagId, ctx.params.form, this.clock(), this.config.scan.formTtlSeconds);
        if (!check.ok) throw new Errors.MoleculerClientError("the form is not valid or has expired", 400, "FORM_EXPIRED", { reason: check.reason });
        // A double submission of one rendered form files one report.
        ctx.meta.idempotencyKey = `page-report:${check.nonce}`;
        return this.idempotent(ctx, () => this.createReport(ctx, v.tagId, ctx.params));
      },
    },

    /** Drops cached lookups of these products (or of a whole batch) on this node's cacher. */
    invalidate: {
      visibility: "public",
      params: {
        product_ids: { type: "array", items: "uuid", optional: true },
        batch_id: { type: "uuid", optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        return { deleted: await this.invalidateProducts(ctx.params.product_ids ?? [], ctx.params.batch_id) };
      },
    },

    /**
     * Durable events (lib/events): a recall or its withdrawal drops the cached lookups too, so a
     * lost product.status_changed broadcast (a node reconnecting to NATS) cannot leave a stale view.
     */
    onEvent: {
      visibility: "public",
      async handler(this: any, ctx: Context<any, any>) {
        const { type, data } = ctx.params ?? {};
        if (type === "product.recalled" || type === "product.recall_withdrawn") {
          await this.invalidateProducts(Array.isArray(data?.tag_ids) ? data.tag_ids : [], data?.scope === "batch" ? data.batch_id : undefined);
        }
        return { ok: true };
      },
    },

    /**
     * Walks every partition's chain (or one) from genesis and reports the first broken link, then
     * compares the last entry with the stored head, which is how an entry deleted from the end of a
     * chain is caught (the anchored head will catch it too once the anchoring issue lands).
     */
    verifyLedger: {
      visibility: "public",
      params: { partition: { type: "number", integer: true, min: 0, max: LEDGER_PARTITIONS - 1, optional: true, convert: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const parts = ctx.params.partition !== undefined ? [ctx.params.partition] : [...Array(LEDGER_PARTITIONS).keys()];
        const results = [];
        for (const partition of parts) {
          const v = new ChainVerifier();
          let after = 0;
          for (;;) {
            const { rows } = await this.db.query(
              "SELECT seq, prev_hash, hash, entry FROM ledger WHERE partition = $1 AND seq > $2 ORDER BY seq LIMIT 5000",
              [partition, after],
            );
            if (!rows.length || v.pushAll(rows)) break;
            after = Number(rows[rows.length - 1].seq);
          }
          const result = v.result();
          const headRow = (await this.db.query("SELECT seq, hash FROM ledger_heads WHERE partition = $1", [partition])).rows[0];
          const storedHead = headRow && Number(headRow.seq) > 0 ? { seq: Number(headRow.seq), hash: headRow.hash } : null;
          let broken: any = result.ok ? null : { seq: result.seq, reason: result.reason, detail: result.detail };
          if (result.ok) {
            const last = result.head;
            if ((last?.seq ?? 0) !== (storedHead?.seq ?? 0) || (last && storedHead && last.hash !== storedHead.hash)) {
              const missing = (storedHead?.seq ?? 0) > (last?.seq ?? 0);
              broken = {
                seq: missing ? (last?.seq ?? 0) + 1 : last!.seq,
                reason: "head_mismatch",
                detail: missing
                  ? `the stored head is at seq ${storedHead!.seq} but the chain ends at seq ${last?.seq ?? 0}: entries were removed from the end`
                  : `the chain ends at seq ${last!.seq} (${last!.hash}) but the stored head is ${storedHead ? `seq ${storedHead.seq} (${storedHead.hash})` : "empty"}`,
              };
            }
          }
          results.push({ partition, ok: !broken, count: v.count, head: storedHead, broken });
        }
        return { ok: results.every((r) => r.ok), partitions: results };
      },
    },

    /** The current head of every non-empty partition: what the anchoring cycle commits on chain. */
    ledgerHeads: {
      visibility: "public",
      async handler(this: any) {
        const { rows } = await this.db.query("SELECT partition, seq, hash FROM ledger_heads WHERE seq > 0 ORDER BY partition");
        return rows.map((r: any) => ({ partition: String(r.partition), seq: Number(r.seq), hash: r.hash }));
      },
    },
  },

  events: {
    // Broadcast by the factory on a recall or any product status change: every node drops its view
    // at once (with Redis the cache is shared, so the first node to get this clears it for all).
    "product.status_changed": {
      params: {
        product_ids: { type: "array", items: "uuid", optional: true },
        batch_id: { type: "uuid", optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        await this.invalidateProducts(ctx.params.product_ids ?? [], ctx.params.batch_id);
      },
    },
  },

  methods: {
    /** The scan's time. A method so a test can move this service's clock (an hour later in Lisbon). */
    clock(): Date {
      return new Date();
    },

    deviceOf(this: any, ctx: Context<any, any>, clientFingerprint?: string) {
      const c = ctx.meta.client || {};
      return deviceFingerprint({ userAgent: c.userAgent, acceptLanguage: c.acceptLanguage, clientFingerprint, ip: c.ip });
    },

    /**
     * The product as the scan path needs it, through the Moleculer cacher (Redis in the cluster),
     * cleaned on status changes (invalidateProducts names the same key). Read here rather than
     * through a cached action: measured, a nested action call's context and middleware chain cost
     * about a tenth of a scan's CPU.
     */
    async lookup(this: any, id: string) {
      const cacher = this.broker.cacher;
      if (!cacher) return this.readProduct(id);
      const key = CACHE_KEY(id);
      const hit = await cacher.get(key);
      if (hit !== null && hit !== undefined) return hit;
      const product = await this.readProduct(id);
      await cacher.set(key, product, LOOKUP_TTL);
      return product;
    },

    async readProduct(this: any, id: string) {
      const { rows } = await this.db.prepared("scan_lookup_v1", LOOKUP_SQL, [id]);
      return rows[0] ?? null;
    },

    /** Runs a scan under the scan deadline. The 503 is not retryable: the scan may still be recorded. */
    timed(this: any, ctx: Context<any, any>, fn: () => Promise<unknown>) {
      ctx.meta.$responseHeaders = { ...(ctx.meta.$responseHeaders || {}), "Cache-Control": "no-store" };
      const ms = this.config.scan.timeoutSeconds * 1000;
      let timer: NodeJS.Timeout;
      const deadline = new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Errors.MoleculerError(`the scan did not complete within ${this.config.scan.timeoutSeconds} s`, 503, "SCAN_TIMEOUT", { retry_after: 2 })),
          ms,
        );
      });
      return Promise.race([fn(), deadline]).finally(() => clearTimeout(timer)).catch((err) => {
        if (isTimeout(err)) this.logger.warn({ request_id: ctx.requestID }, "scan timed out");
        throw err;
      });
    },

    riskConfig(this: any, product: any): RiskConfig {
      const override = product.risk_settings;
      if (!override) return DEFAULT_RISK_CONFIG;
      const key = JSON.stringify(override);
      let cfg = this.riskConfigs.get(key);
      if (!cfg) {
        try {
          cfg = mergeRiskConfig(DEFAULT_RISK_CONFIG, override);
        } catch (err) {
          // Overrides are validated when saved; one that slipped past must not stop scans.
          this.logger.warn({ tenant_id: product.tenant_id, err: (err as Error).message }, "tenant risk settings ignored");
          cfg = DEFAULT_RISK_CONFIG;
        }
        if (this.riskConfigs.size > 1000) this.riskConfigs.clear();
        this.riskConfigs.set(key, cfg);
      }
      return cfg;
    },

    async verifyScan(this: any, ctx: Context<any, any>, params: ScanInput, forPage = false) {
      const started: Date = this.clock();
      const ring = await this.tokenKeyring();
      const secret = this.pageSecret();
      let device: string = this.deviceOf(ctx, params.fingerprint);
      let network: string = hashNetwork(ctx.meta.client?.ip || "", this.networkSecret());
      const v = params.token ? verifyToken(params.token, ring) : { ok: false as const };
      let product: any = v.ok ? await this.lookup(v.tagId) : null;
      // A GS1 Digital Link whose path names another product than its token is not one the brand printed.
      if (product && params.expect && !linkMatches(product, params.expect)) product = null;

      // Adding a location to a scan already made: same scan (id, time, device), nothing counted twice.
      let refined: any = null;
      if (params.refine) {
        if (!product) throw badRequest("the tag did not verify");
        const receipt = verifyPageToken(secret, "locate", params.refine.scan_id, params.refine.receipt, started, this.config.scan.formTtlSeconds);
        if (!receipt.ok) throw new Errors.MoleculerClientError("the location form is not valid or has expired", 400, "FORM_EXPIRED", { reason: receipt.reason });
        const r = await this.db.query("SELECT id, at, device, network, lat, lng, verdict, product_id FROM scans WHERE id = $1", [params.refine.scan_id]);
        refined = r.rows[0];
        if (!refined || refined.product_id !== product.id) throw badRequest("no such scan of this tag");
        device = refined.device;
        network = refined.network;
      }
      const now: Date = refined ? new Date(refined.at) : started;
      const alreadyLocated = !!refined && refined.lat !== null;
      const loc = alreadyLocated ? { lat: refined.lat, lng: refined.lng } : params.location;
      const stored = loc ? coarsen(loc) : null;
      const country = loc ? countryOf(loc) : null;
      const scanId: string = refined?.id ?? crypto.randomUUID();

      let risk: RiskAssessment;
      let stats = { count: 1, devices: 1, first: now };
      let anchor: any = null;
      if (!product) {
        risk = {
          score: 100,
          level: "high",
          factors: FACTOR_NAMES.map((name) => ({ name, value: null, weight: 0, contribution: 0, detail: "not assessed: the tag's token did not verify" })),
        };
      } else {
        const cfg: RiskConfig = this.riskConfig(product);
        const e = cfg.thresholds.enumeration;
        const since = new Date(now.getTime() - e.window_seconds * 1000);
        // Enumeration counts come from Redis sketches when Redis answers (one round trip, constant
        // cost however busy a network is); otherwise from the scans table, newest rows first.
        // One round trip for everything else the model needs, in parallel with the sketches.
        const [sweep, s] = await Promise.all([
          refined ? undefined : this.sweepCounts(device, network, product.id, now, e.window_seconds),
          this.statsBatcher.load({ product: product.id, device, batch: product.batch_id, exclude: refined?.id ?? NO_SCAN }) as Promise<any>,
        ]);
        // Without the sketches: the scans table, newest rows of the window first (enough to saturate).
        const swept: { device: number; network: number } =
          sweep ??
          (await this.db
            .query(
              `SELECT (SELECT count(DISTINCT product_id) FILTER (WHERE product_id <> $1)
                         FROM (SELECT product_id FROM scans WHERE device = $2 AND at > $4 ORDER BY at DESC LIMIT $5) x) + 1 AS device,
                      (SELECT count(DISTINCT product_id) FILTER (WHERE product_id <> $1)
                         FROM (SELECT product_id FROM scans WHERE network = $3 AND at > $4 ORDER BY at DESC LIMIT $6) x) + 1 AS network`,
              [product.id, device, network, since.toISOString(), e.saturate * 2, e.saturate * e.network_share * 2],
            )
            .then((r: any) => ({ device: Number(r.rows[0].device), network: Number(r.rows[0].network) })));
        anchor = s.anchor;
        const history = (typeof s.history === "string" ? JSON.parse(s.history) : s.history) as any[];
        risk = assessRisk(
          {
            now,
            product: { status: product.status, anchored: anchor?.status === "final" },
            marketRegions: product.market_regions ?? [],
            location: loc ? { lat: loc.lat, lng: loc.lng, accuracy_m: (params.location as any)?.accuracy_m } : undefined,
            device,
            history: history.map((h) => ({ at: new Date(h.at), device: h.device, location: h.lat === null ? undefined : { lat: h.lat, lng: h.lng } })),
            priorScanCount: Number(s.n),
            priorDistinctDevices: Number(s.d),
            deviceSeenBefore: !!s.seen,
            deviceRecentDistinctTags: swept.device,
            networkRecentDistinctTags: swept.network,
            reports: { tag: Number(s.reports_tag), batch: Number(s.reports_batch) },
          },
          cfg,
        );
        stats = { count: Number(s.n) + 1, devices: Number(s.d) + (s.seen ? 0 : 1), first: s.first ? new Date(s.first) : now };
      }
      const verdict = verdictFor(product?.status ?? null, risk, !!product);
      if (!refined) {
        this.broker.metrics.increment("voketag_scans_total", { verdict });
        this.broker.metrics.observe("voketag_scan_risk_score", risk.score);
      }

      if (!alreadyLocated) {
        const record: ScanRecord = {
          id: scanId,
          kind: refined ? "location" : "scan",
          tenant_id: product?.tenant_id ?? null,
          product_id: product?.id ?? null,
          batch_id: product?.batch_id ?? null,
          at: refined ? started : now,
          device,
          network,
          lat: stored?.lat ?? null,
          lng: stored?.lng ?? null,
          country,
          verdict,
          score: risk.score,
          factors: risk.factors.filter((f) => f.contribution > 0).map((f) => ({ name: f.name, contribution: f.contribution })),
          channel: params.channel ?? "api",
        };
        // The tenant hears of every high-risk scan (a recalled product scanned from a copy too), once.
        const flag = !!product && (verdict === "suspicious" || risk.level === "high") && !(refined && refined.verdict === "suspicious");
        await this.appender.append(
          partitionFor(product?.id ?? device, LEDGER_PARTITIONS),
          record,
          flag
            ? (q: Queryable) =>
                this.emitDurable(
                  q,
                  "scan.suspicious",
                  {
                    tenant_id: product.tenant_id,
                    scan_id: scanId,
                    tag_id: product.id,
                    batch_id: product.batch_id,
                    verdict,
                    score: risk.score,
                    country,
                    factors: risk.factors.filter((f) => f.contribution > 0).map((f) => ({ name: f.name, contribution: f.contribution, detail: f.detail })),
                  },
                  ctx.requestID,
                )
            : undefined,
        );
        if (flag) this.pokeOutbox();
      }

      const base = this.config.verificationUrlBase;
      const result: any = {
        verdict,
        risk,
        product: product
          ? {
              id: product.id,
              sku: product.sku,
              name: product.name,
              serial: product.serial,
              gtin: product.gtin,
              lot: product.lot,
              status: product.status,
              // A recall's reason is the manufacturer's public notice; other reasons stay internal.
              ...(product.status === "recalled" && { recall_reason: product.status_reason ?? null }),
              attributes: product.attributes,
              tag: { id: product.tag_id, status: product.tag_status },
            }
          : null,
        batch: product ? { id: product.batch_id, name: product.batch_name, market_regions: product.market_regions } : null,
        brand: product ? { id: product.tenant_id, name: product.brand } : null,
        anchor: product
          ? {
              status: anchor?.status ?? "pending",
              chain_id: anchor?.chain_id ?? null,
              tx_hash: anchor?.tx_hash ?? null,
              block_number: anchor?.block_number ?? null,
              proof_url: `${base}/v1/products/${product.id}/proof`,
            }
          : null,
        scan: { id: scanId, count: stats.count, devices: stats.devices, first_scanned_at: stats.first.toISOString() },
      };
      if (forPage) {
        result.page = {
          report_form: product ? signPageToken(secret, "report", product.id, started) : null,
          locate_receipt: product && !refined ? signPageToken(secret, "locate", scanId, started) : null,
          located: !!refined,
          country,
        };
      }
      return result;
    },

    /**
     * Distinct tags this device and this network scanned in the window, this one included, from
     * HyperLogLog sketches in Redis (see enumerationBuckets); undefined without Redis.
     */
    async sweepCounts(this: any, device: string, network: string, tag: string, now: Date, windowSeconds: number) {
      const cacher = this.broker.cacher;
      if (!(cacher instanceof ResilientRedisCacher)) return undefined;
      const b = enumerationBuckets(now, windowSeconds);
      const key = (kind: string, id: string, bucket: number) => `sweep:${kind}:${windowSeconds}:${id.slice(0, 32)}:${bucket}`;
      const res = await cacher.guarded(async (client, prefix) => {
        const p = client.pipeline();
        for (const [kind, id] of [["d", device], ["n", network]]) {
          const k = prefix + key(kind, id, b.write);
          p.pfadd(k, tag).expire(k, b.ttlSeconds);
        }
        p.pfcount(...b.read.map((i) => prefix + key("d", device, i)));
        p.pfcount(...b.read.map((i) => prefix + key("n", network, i)));
        const out: [Error | null, number][] = await p.exec();
        const err = out.find(([e]) => e)?.[0];
        if (err) throw err;
        return { device: Math.max(1, Number(out[4][1])), network: Math.max(1, Number(out[5][1])) };
      });
      return res;
    },

    async createReport(this: any, ctx: Context<any, any>, tagId: string, p: { reason: string; details?: string; contact?: string }) {
      const product = await this.lookup(tagId);
      if (!product) throw notFound("tag");
      const device = this.deviceOf(ctx);
      const id = await this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          "INSERT INTO reports (tenant_id, product_id, batch_id, reason, details, contact, device) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
          [product.tenant_id, product.id, product.batch_id, p.reason, p.details || null, p.contact || null, device],
        );
        // The webhook payload leaves out the reporter's contact: it goes to the tenant's own systems
        // through the authenticated API, not to every subscribed URL.
        await this.emitDurable(
          q,
          "fraud.reported",
          { tenant_id: product.tenant_id, report_id: r.rows[0].id, tag_id: product.id, batch_id: product.batch_id, reason: p.reason, details: p.details || null },
          ctx.requestID,
        );
        return r.rows[0].id;
      });
      this.pokeOutbox();
      ctx.meta.$statusCode = 201;
      return { id };
    },

    async invalidateProducts(this: any, ids: string[], batchId?: string) {
      const cacher = this.broker.cacher;
      if (!cacher) return 0;
      const all = new Set(ids);
      if (ids.length) {
        // A product's replacement tags are cache keys of their own.
        const { rows } = await this.db
          .query("SELECT tag_id FROM product_tags WHERE product_id = ANY($1::uuid[])", [ids])
          .catch(() => ({ rows: [] as any[] }));
        for (const r of rows) all.add(r.tag_id);
      }
      if (batchId) {
        try {
          const { rows } = await this.db.query(
            "SELECT id FROM products WHERE batch_id = $1 UNION SELECT t.tag_id FROM product_tags t JOIN products p ON p.id = t.product_id WHERE p.batch_id = $1",
            [batchId],
          );
          for (const r of rows) all.add(r.id);
        } catch (err) {
          // Without the database the batch's products are unknown: drop every cached lookup.
          this.logger.warn({ batch_id: batchId, err: (err as Error).message }, "batch products unknown, dropping all cached lookups");
          await cacher.clean("scan.lookup:*");
          return all.size;
        }
      }
      const keys = [...all].map(CACHE_KEY);
      const del = async () => {
        for (let i = 0; i < keys.length; i += 1000) await cacher.del(keys.slice(i, i + 1000));
      };
      await del();
      // A lookup that read the old row just before the change may write it back after this delete.
      setTimeout(() => void del().catch(() => undefined), 1000).unref();
      return keys.length;
    },

    networkSecret(this: any) {
      // Network hashes are keyed with the token keyring's active secret: not reversible from the DB alone.
      return this._keyring?.keys[this._keyring.active];
    },

    /** Key of the consumer pages' signed form tokens, derived from the token keyring's active secret. */
    pageSecret(this: any): Buffer {
      const key: Buffer = this._keyring.keys[this._keyring.active];
      if (!this._pageSecret || this._pageSecretFor !== key) {
        this._pageSecret = crypto.createHmac("sha256", key).update("voketag:page-token-key:v1").digest();
        this._pageSecretFor = key;
      }
      return this._pageSecret;
    },
  },

  created(this: any) {
    const m: any = this.broker.metrics;
    if (!m.getMetric("voketag_scans_total")) {
      m.register({ type: "counter", name: "voketag_scans_total", labelNames: ["verdict"], description: "Scans answered, by verdict" });
      m.register({ type: "histogram", name: "voketag_scan_risk_score", buckets: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], description: "Risk score of answered scans" });
      m.register({ type: "histogram", name: "voketag_ledger_commit_entries", buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500], description: "Ledger entries per group commit (grouping grows with load)" });
    }
    this.appender = new LedgerAppender(this.db, { onCommit: (entries: number) => m.observe("voketag_ledger_commit_entries", entries) });
    this.statsBatcher = new TickBatcher<StatsInput, any>(async (inputs) => {
      const { rows } = await this.db.prepared("scan_stats_v2", STATS_SQL, [
        inputs.map((x) => x.product),
        inputs.map((x) => x.device),
        inputs.map((x) => x.batch),
        inputs.map((x) => x.exclude),
      ]);
      return rows;
    });
    this.riskConfigs = new Map<string, RiskConfig>();
  },

  async started(this: any) {
    // Load the keyring now: the first scan should not pay for it, and page tokens need it.
    await this.tokenKeyring();
  },
};

function linkMatches(product: any, expect: { gtin: string; lot?: string; serial?: string }): boolean {
  if (!product.gtin || product.gtin !== expect.gtin) return false;
  if (expect.serial !== undefined && expect.serial !== product.serial) return false;
  if (expect.lot !== undefined && expect.lot !== (product.lot ?? undefined)) return false;
  return true;
}

export default ScanService;
