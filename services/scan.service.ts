// Scan: one hop from the gateway — token check, product lookup (cached), risk scoring and the
// ledger append all happen here. A forged token is a verdict (`invalid`), never an error.
import crypto from "node:crypto";
import type { ServiceSchema, Context } from "moleculer";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { TokensMixin } from "../mixins/tokens.mixin";
import { LedgerAppender, LEDGER_PARTITIONS, ScanRecord } from "../mixins/ledger-appender";
import { badRequest, notFound } from "../mixins/errors";
import { tenantOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { verifyToken } from "../lib/token";
import { assessRisk, verdictFor, mergeRiskConfig, DEFAULT_RISK_CONFIG, FACTOR_NAMES, RiskAssessment } from "../lib/risk";
import { ChainVerifier, partitionFor } from "../lib/ledger";
import { deviceFingerprint, networkPrefix, hashNetwork } from "../lib/fingerprint";
import { countryOf, coarsen } from "../lib/geo";
import { listParams, decodeCursor, page, DEFAULT_LIMIT } from "../lib/cursor";

const HISTORY = 20;
const location = {
  type: "object",
  optional: true,
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

const ScanService: ServiceSchema = {
  name: "scan",
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

    scan: {
      rest: { method: "POST", fullPath: "/v1/scan" },
      auth: "public",
      summary: "Verify a tag: verdict, risk with its factors, product, batch, brand, anchor; records the scan",
      timeout: 5000,
      params: scanParams,
      handler(this: any, ctx: Context<any, any>) {
        return this.verifyScan(ctx, ctx.params);
      },
    } as any,

    scanByQuery: {
      rest: { method: "GET", fullPath: "/v1/scan" },
      auth: "public",
      summary: "Verify a tag given as ?token= (records the scan)",
      timeout: 5000,
      params: { token: scanParams.token },
      handler(this: any, ctx: Context<any, any>) {
        return this.verifyScan(ctx, { token: ctx.params.token });
      },
    } as any,

    /** Used by the consumer page: the same verification. */
    verify: <any>{
      visibility: "public",
      timeout: 5000,
      params: { ...scanParams, channel: { type: "string", optional: true } },
      handler(this: any, ctx: Context<any, any>) {
        return this.verifyScan(ctx, ctx.params);
      },
    },

    history: {
      rest: { method: "GET", fullPath: "/v1/scan/:tag_id" },
      auth: "key",
      scope: "scans:read",
      summary: "A tag's scan history, newest first",
      params: { tag_id: "uuid", ...listParams },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = ctx.params.cursor ? decodeCursor(ctx.params.cursor, 2) : null;
        if (ctx.params.cursor && !c) throw badRequest("invalid cursor");
        const p = await this.db.query("SELECT 1 FROM products WHERE id = $1 AND tenant_id = $2", [ctx.params.tag_id, tenant]);
        if (!p.rowCount) throw notFound("tag");
        const { rows } = await this.db.query(
          `SELECT id, at, verdict, score, country, lat, lng, device, factors FROM scans
            WHERE product_id = $1 AND ($2::timestamptz IS NULL OR (at, id) < ($2::timestamptz, $3::uuid))
            ORDER BY at DESC, id DESC LIMIT $4`,
          [ctx.params.tag_id, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(
          rows.map((r: any) => ({ id: r.id, at: r.at, verdict: r.verdict, score: r.score, country: r.country, location: r.lat === null ? null : { lat: r.lat, lng: r.lng }, device: r.device.slice(0, 12), factors: r.factors })),
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
      params: {
        token: { type: "string", min: 1, max: 200, optional: true },
        tag_id: { type: "uuid", optional: true },
        reason: { type: "enum", values: ["counterfeit", "tampered_tag", "wrong_product", "damaged", "other"] },
        details: { type: "string", max: 2000, optional: true },
        contact: { type: "string", max: 320, optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        return this.idempotent(ctx, async () => {
          let tagId: string | null = ctx.params.tag_id ?? null;
          if (!tagId && ctx.params.token) {
            const v = verifyToken(ctx.params.token, await this.tokenKeyring());
            if (!v.ok) throw badRequest("token is not valid");
            tagId = v.tagId;
          }
          if (!tagId) throw badRequest("give token or tag_id");
          const product = await this.lookup(ctx, tagId);
          if (!product) throw notFound("tag");
          const device = this.deviceOf(ctx);
          const id = await this.db.tx(async (q: Queryable) => {
            const r = await q.query(
              "INSERT INTO reports (tenant_id, product_id, batch_id, reason, details, contact, device) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, created_at",
              [product.tenant_id, tagId, product.batch_id, ctx.params.reason, ctx.params.details ?? null, ctx.params.contact ?? null, device],
            );
            await this.emitDurable(q, "fraud.reported", { tenant_id: product.tenant_id, report_id: r.rows[0].id, tag_id: tagId, batch_id: product.batch_id, reason: ctx.params.reason }, ctx.requestID);
            return r.rows[0].id;
          });
          this.pokeOutbox();
          ctx.meta.$statusCode = 201;
          return { id };
        });
      },
    } as any,

    /** The product as the scan path needs it; cached (Redis in the cluster), cleaned on status changes. */
    lookup: {
      visibility: "public",
      cache: { keys: ["id"], ttl: 300 },
      params: { id: "uuid" },
      async handler(this: any, ctx: Context<any, any>) {
        const { rows } = await this.db.query(
          `SELECT p.id, p.tenant_id, p.batch_id, p.sku, p.name, p.serial, p.gtin, p.lot, p.attributes, p.status, p.status_reason,
                  b.name AS batch_name, b.market_regions, b.created_at AS batch_created_at, t.name AS brand, t.settings AS tenant_settings
             FROM products p JOIN batches b ON b.id = p.batch_id JOIN tenants t ON t.id = p.tenant_id WHERE p.id = $1`,
          [ctx.params.id],
        );
        return rows[0] ?? null;
      },
    },

    verifyLedger: {
      visibility: "public",
      params: { partition: { type: "number", integer: true, min: 0, optional: true, convert: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const parts = ctx.params.partition !== undefined ? [ctx.params.partition] : [...Array(LEDGER_PARTITIONS).keys()];
        const results = [];
        for (const partition of parts) {
          const v = new ChainVerifier();
          let after = 0;
          let broken: any = null;
          for (;;) {
            const { rows } = await this.db.query(
              "SELECT seq, prev_hash, hash, entry FROM ledger WHERE partition = $1 AND seq > $2 ORDER BY seq LIMIT 5000",
              [partition, after],
            );
            if (!rows.length) break;
            for (const r of rows) {
              const res = v.push(r);
              if (res && !res.ok) {
                broken = res;
                break;
              }
            }
            if (broken) break;
            after = Number(rows[rows.length - 1].seq);
          }
          const head = await this.db.query("SELECT seq, hash FROM ledger_heads WHERE partition = $1", [partition]);
          const result = v.result();
          const headRow = head.rows[0];
          const headMatches = !headRow || headRow.seq === 0 || (result.ok && result.head?.seq === Number(headRow.seq) && result.head?.hash === headRow.hash);
          results.push({
            partition,
            ok: !broken && result.ok && headMatches,
            count: result.ok ? result.count : undefined,
            broken: broken ?? (result.ok ? (headMatches ? null : { reason: "head_mismatch", detail: "the stored head does not match the last entry" }) : result),
          });
        }
        return { ok: results.every((r) => r.ok), partitions: results };
      },
    },

    ledgerHeads: {
      visibility: "public",
      async handler(this: any) {
        const { rows } = await this.db.query("SELECT partition, seq, hash FROM ledger_heads WHERE seq > 0 ORDER BY partition");
        return rows.map((r: any) => ({ partition: String(r.partition), seq: Number(r.seq), hash: r.hash }));
      },
    },
  },

  methods: {
    deviceOf(this: any, ctx: Context<any, any>, clientFingerprint?: string) {
      const c = ctx.meta.client || {};
      return deviceFingerprint({ userAgent: c.userAgent, acceptLanguage: c.acceptLanguage, clientFingerprint, ip: c.ip });
    },

    async lookup(this: any, ctx: Context<any, any>, id: string) {
      return ctx.call("scan.lookup", { id });
    },

    async verifyScan(this: any, ctx: Context<any, any>, params: { token: string; location?: any; fingerprint?: string }) {
      const now = new Date();
      const device = this.deviceOf(ctx, params.fingerprint);
      const network = hashNetwork(ctx.meta.client?.ip || "", this.networkSecret());
      const v = verifyToken(params.token, await this.tokenKeyring());
      const product = v.ok ? await this.lookup(ctx, v.tagId) : null;
      const loc = params.location ? coarsen(params.location) : null;
      const country = params.location ? countryOf(params.location) : null;
      const scanId = crypto.randomUUID();

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
        const [hist, counts, sweep, reports, anchorRow] = await Promise.all([
          this.db.query("SELECT at, device, lat, lng FROM scans WHERE product_id = $1 ORDER BY at DESC LIMIT $2", [product.id, HISTORY]),
          this.db.query(
            "SELECT count(*) AS n, count(DISTINCT device) AS d, min(at) AS first, bool_or(device = $2) AS seen FROM scans WHERE product_id = $1",
            [product.id, device],
          ),
          this.db.query(
            "SELECT count(DISTINCT product_id) AS n, bool_or(product_id = $3) AS this FROM scans WHERE (device = $1 OR network = $2) AND at > now() - make_interval(secs => $4)",
            [device, network, product.id, DEFAULT_RISK_CONFIG.thresholds.enumeration.window_seconds],
          ),
          this.db.query(
            "SELECT count(*) FILTER (WHERE product_id = $1) AS tag, count(*) AS batch FROM reports WHERE batch_id = $2",
            [product.id, product.batch_id],
          ),
          this.anchorOf(product.batch_id),
        ]);
        anchor = anchorRow;
        const c = counts.rows[0];
        let cfg = DEFAULT_RISK_CONFIG;
        try {
          if (product.tenant_settings?.risk) cfg = mergeRiskConfig(DEFAULT_RISK_CONFIG, product.tenant_settings.risk);
        } catch (err) {
          this.logger.warn({ tenant_id: product.tenant_id, err: (err as Error).message }, "tenant risk settings ignored");
        }
        risk = assessRisk(
          {
            now,
            product: { status: product.status, anchored: anchor?.status === "final" },
            marketRegions: product.market_regions ?? [],
            location: params.location,
            device,
            history: hist.rows.reverse().map((h: any) => ({ at: new Date(h.at), device: h.device, location: h.lat === null ? undefined : { lat: h.lat, lng: h.lng } })),
            priorScanCount: c.n,
            priorDistinctDevices: c.d,
            deviceSeenBefore: !!c.seen,
            deviceRecentDistinctTags: sweep.rows[0].n + (sweep.rows[0].this ? 0 : 1),
            reports: { tag: reports.rows[0].tag, batch: reports.rows[0].batch },
          },
          cfg,
        );
        stats = { count: c.n + 1, devices: c.d + (c.seen ? 0 : 1), first: c.first ? new Date(c.first) : now };
      }
      const verdict = verdictFor(product?.status ?? null, risk, v.ok && !!product);
      const record: ScanRecord = {
        id: scanId,
        tenant_id: product?.tenant_id ?? null,
        product_id: product?.id ?? null,
        batch_id: product?.batch_id ?? null,
        at: now,
        device,
        network,
        lat: loc?.lat ?? null,
        lng: loc?.lng ?? null,
        country,
        verdict,
        score: risk.score,
        factors: risk.factors.filter((f) => f.contribution > 0).map((f) => ({ name: f.name, contribution: f.contribution })),
      };
      const suspicious = verdict === "suspicious";
      // The verdict is answered only once its ledger entry is durable.
      await this.appender.append(partitionFor(product?.id ?? device, LEDGER_PARTITIONS), record, suspicious
        ? (q: Queryable) =>
            this.emitDurable(q, "scan.suspicious", {
              tenant_id: product.tenant_id,
              scan_id: scanId,
              tag_id: product.id,
              batch_id: product.batch_id,
              score: risk.score,
              factors: risk.factors.filter((f) => f.contribution > 0).map((f) => ({ name: f.name, detail: f.detail })),
            }, ctx.requestID)
        : undefined);
      if (suspicious) this.pokeOutbox();
      const base = this.config.verificationUrlBase;
      return {
        verdict,
        risk,
        product: product
          ? { id: product.id, sku: product.sku, name: product.name, serial: product.serial, gtin: product.gtin, lot: product.lot, status: product.status, attributes: product.attributes }
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
    },

    async anchorOf(this: any, batchId: string) {
      const { rows } = await this.db.query(
        `SELECT p.status, p.chain_id, p.tx_hash, p.block_number FROM period_leaves l JOIN periods p ON p.id = l.period_id
          WHERE l.kind = 'batch' AND l.ref = $1 ORDER BY (p.status = 'final') DESC, p.created_at DESC LIMIT 1`,
        [batchId],
      );
      return rows[0] ?? null;
    },

    networkSecret(this: any) {
      // Network hashes are keyed with the token keyring's active secret: not reversible from the DB alone.
      return this._keyring?.keys[this._keyring.active];
    },
  },

  created(this: any) {
    this.appender = new LedgerAppender(this.db);
  },
};

export default ScanService;
