// The public REST door (moleculer-web). Routes come from the services' own action definitions
// (`rest`, `auth`, `scope`, `roles`), so /openapi.json lists every route by construction.
import http from "node:http";
import crypto from "node:crypto";
import type { ServiceSchema, Context } from "moleculer";
import ApiGateway from "moleculer-web";
import { ConfigMixin } from "../mixins/config.mixin";
import { redisConnection } from "../lib/config";
import { verifyAccessToken } from "../lib/jwt";
import { buildOpenApi, RouteInfo } from "../lib/openapi";
import { renderDocsPage, DOCS_CSS } from "../lib/docs-page";
import { clientIp, deviceFingerprint, hashNetwork, validateCidrs } from "../lib/fingerprint";
import { rateLimitHeaders, RatePolicy, RateDecision } from "../lib/ratelimit";
import { RateLimiter } from "../mixins/rate-limiter";
import { renderScanPage, renderThankYouPage, renderPrivacyPage, consumerPage, SCAN_PAGE_CSS, SCAN_PAGE_JS } from "../lib/scan-page";
import { parseDigitalLinkPath } from "../lib/gs1";
import type { Principal } from "../mixins/principal";
import { media, ok } from "../lib/schemas/common";
import { staticAsset } from "../mixins/static-asset";
import { ErrorBody, Health, OpenApiDocument, Readiness, pageErrors, html } from "../lib/schemas/api";

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

// Pages and the API alike: no framing, no sniffing, scripts only from ourselves.
const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Opener-Policy": "same-origin",
};

interface HttpError {
  status: number;
  code: string;
  message: string;
  details?: unknown;
  retryAfter?: number;
}

/** Maps anything thrown on the way to the contract's error shape; unknown errors are 500s without detail. */
export function toHttpError(err: any): HttpError {
  const type = err?.type;
  const status = typeof err?.code === "number" ? err.code : typeof err?.status === "number" ? err.status : 500;
  // body-parser
  if (type === "entity.parse.failed") return { status: 400, code: "BAD_REQUEST", message: "request body is not valid JSON" };
  if (type === "entity.too.large") return { status: 413, code: "PAYLOAD_TOO_LARGE", message: "request body is too large" };
  if (type === "encoding.unsupported" || type === "charset.unsupported")
    return { status: 415, code: "UNSUPPORTED_MEDIA_TYPE", message: err.message };
  if (type === "request.aborted" || type === "request.size.invalid") return { status: 400, code: "BAD_REQUEST", message: err.message };
  // fastest-validator through Moleculer: bad input is a 400 in this contract (422 is for idempotency).
  if (err?.name === "ValidationError" || type === "VALIDATION_ERROR")
    return {
      status: 400,
      code: "VALIDATION_ERROR",
      message: "request parameters are invalid",
      details: Array.isArray(err.data)
        ? err.data.map((d: any) => ({ field: d.field, message: d.message, type: d.type }))
        : err.data,
    };
  if (err?.name === "ServiceNotFoundError" || err?.name === "ServiceNotAvailableError" || err?.name === "RequestTimeoutError" ||
      err?.name === "RequestRejectedError" || err?.name === "QueueIsFullError" || err?.name === "BrokerDisconnectedError" || err?.name === "CircuitBreakerOpenError")
    return { status: 503, code: "SERVICE_UNAVAILABLE", message: "a service is temporarily unavailable", retryAfter: 5 };
  if (err?.name === "NotFoundError" && status === 404) return { status: 404, code: "NOT_FOUND", message: "no such route" };
  if (status === 503) return { status, code: type || "SERVICE_UNAVAILABLE", message: err.message, retryAfter: err.data?.retry_after ?? 5 };
  if (status === 429) return { status, code: type || "RATE_LIMITED", message: err.message, retryAfter: err.data?.retry_after ?? 1 };
  if (status >= 400 && status < 500)
    return { status, code: typeof type === "string" && type ? type : "ERROR", message: err.message, details: err.data ?? undefined };
  return { status: 500, code: "INTERNAL", message: "internal error" };
}

const ApiService: ServiceSchema = {
  name: "api",
  mixins: [ApiGateway as any, ConfigMixin],
  settings: <any>{
    // We create and open the HTTP server ourselves once every local service has started.
    server: false,
    log4XXResponses: false,
    logRequest: null,
    logResponse: null,
    logRequestParams: null,
    logResponseData: null,
    optimizeOrder: true,
    cors: {
      // The API is called from tenants' own front ends with header credentials (no cookies), so any
      // origin may call it; credentials: false keeps browsers from sending ambient credentials.
      origin: "*",
      methods: ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
      allowedHeaders: ["Content-Type", "X-API-Key", "Authorization", "Idempotency-Key", "X-Request-Id", "Upload-Offset"],
      exposedHeaders: ["X-Request-Id", "Retry-After", "RateLimit", "RateLimit-Policy", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Location",
        "Upload-Offset", "Upload-Length", "Idempotent-Replayed", "X-Total-Pages", "Link", "Content-Disposition"],
      credentials: false,
      maxAge: 600,
    },
    routes: [
      {
        path: "",
        autoAliases: true,
        mappingPolicy: "restrict",
        authentication: true,
        authorization: true,
        mergeParams: true,
        bodyParsers: { json: { strict: false, limit: "16mb" }, urlencoded: { extended: false, limit: "1mb" } },
        onBeforeCall(this: any, ctx: Context<any, any>, _route: any, req: any) {
          const action = req.$action || {};
          const method = req.method;
          if ((method === "POST" || method === "PUT" || method === "PATCH") && hasBody(req)) {
            const allowed: string[] = action.contentTypes || ["application/json"];
            const ct = String(req.headers["content-type"] || "").split(";")[0].trim().toLowerCase();
            if (!allowed.includes(ct)) {
              throw Object.assign(new Error(`Content-Type must be one of: ${allowed.join(", ")}`), {
                code: 415,
                type: "UNSUPPORTED_MEDIA_TYPE",
              });
            }
          }
          // Text Postgres cannot store (NUL) or that is not valid UTF-16 (lone surrogates) is bad input,
          // answered here once for every route instead of as a database error deep inside a service.
          const bad = badText(req.$params);
          if (bad) throw Object.assign(new Error(`${bad} contains a NUL character or an unpaired surrogate`), { code: 400, type: "BAD_REQUEST" });
          const fwd: Record<string, string> = {};
          for (const h of ["upload-offset", "content-range", "upload-length"]) if (typeof req.headers[h] === "string") fwd[h] = req.headers[h];
          ctx.meta.http = { method, path: req.$alias?.path ?? req.parsedUrl, headers: fwd };
          const idem = req.headers["idempotency-key"];
          if (idem) ctx.meta.idempotencyKey = String(idem);
          ctx.meta.client = {
            ip: clientIp(req.socket.remoteAddress || "", req.headers["x-forwarded-for"] as string | undefined, this.config.trustProxy),
            userAgent: String(req.headers["user-agent"] || "").slice(0, 512),
            acceptLanguage: String(req.headers["accept-language"] || "").slice(0, 256),
          };
          req.$logAction = action.name;
        },
        // moleculer-web sends ctx.meta.$location only with a 201 or a redirect; a 202 names where to
        // follow the work it accepted just the same.
        onAfterCall(this: any, ctx: Context<any, any>, _route: any, _req: any, res: any, data: unknown) {
          const location = (ctx.meta as any).$location;
          if (location && !res.headersSent) res.setHeader("Location", location);
          return data;
        },
      },
    ],
    onError(this: any, req: any, res: any, err: any) {
      this.sendJsonError(req, res, err);
    },
  },
  actions: {
    // moleculer-web's alias list would be published at /api/list-aliases: /openapi.json replaces it.
    listAliases: false as any,

    health: {
      rest: { method: "GET", fullPath: "/v1/health" },
      auth: "public",
      summary: "Liveness: the process is up",
      responses: { 200: ok("The process is up", Health) },
      handler() {
        return { status: "ok", node: this.broker.nodeID, uptime_s: Math.round(process.uptime()) };
      },
    } as any,

    ready: {
      rest: { method: "GET", fullPath: "/v1/ready" },
      auth: "public",
      summary: "Readiness: every dependency in use answers (503 naming the failing one otherwise)",
      responses: {
        200: ok("Every dependency answers", Readiness),
        // The same body names the failing dependencies (Retry-After: 5).
        503: ok("A dependency does not answer", { oneOf: [Readiness, ErrorBody] }),
      },
      async handler(this: any, ctx: Context<any, any>) {
        const checks: Record<string, { ok: boolean; detail?: string; [k: string]: unknown }> = {};
        if (this.config.transporter) checks.nats = { ok: !!(this.broker as any).transit?.connected };
        const cacher: any = this.broker.cacher;
        if (cacher?.client?.ping) {
          try {
            await withTimeout(cacher.client.ping(), 500);
            checks.redis = { ok: true };
          } catch (err) {
            checks.redis = { ok: false, detail: (err as Error).message };
          }
        }
        const names = ["factory", "scan", "anchor", "admin", "webhooks"];
        await Promise.all(
          names.map(async (svc) => {
            try {
              const r = await ctx.call(`${svc}.ready`, {}, { timeout: 2000, retries: 0 });
              Object.assign(checks, r);
            } catch (err: any) {
              checks[svc] = { ok: false, detail: err?.name === "ServiceNotFoundError" ? "service not running in the cluster" : err.message };
            }
          }),
        );
        const failing = Object.entries(checks).filter(([, c]) => !c.ok).map(([k]) => k);
        if (failing.length) {
          ctx.meta.$statusCode = 503;
          ctx.meta.$responseHeaders = { "Retry-After": "5" };
        }
        return { status: failing.length ? "unavailable" : "ready", failing, checks };
      },
    } as any,

    metrics: {
      rest: { method: "GET", fullPath: "/metrics" },
      auth: "user",
      roles: ["admin", "operator", "auditor"],
      summary: "This node's metrics in Prometheus text format (scrapers use METRICS_PORT on each node)",
      responses: { 200: media("Prometheus text exposition format 0.0.4", "text/plain") },
      handler(this: any, ctx: Context<any, any>) {
        const reporter = ((this.broker.metrics as any).reporter || []).find((r: any) => typeof r.generatePrometheusResponse === "function");
        ctx.meta.$responseType = "text/plain; version=0.0.4; charset=utf-8";
        return reporter ? reporter.generatePrometheusResponse() : "";
      },
    } as any,

    openapi: {
      rest: { method: "GET", fullPath: "/openapi.json" },
      auth: "public",
      summary: "This API's OpenAPI 3.1 document",
      responses: { 200: ok("The OpenAPI 3.1 document", OpenApiDocument) },
      handler(this: any) {
        return this.openApiDocument();
      },
    } as any,

    docs: {
      rest: { method: "GET", fullPath: "/docs" },
      auth: "public",
      summary: "Human-readable API reference",
      responses: { 200: html("The API reference page") },
      handler(this: any, ctx: Context<any, any>) {
        ctx.meta.$responseType = "text/html; charset=utf-8";
        return renderDocsPage(this.openApiDocument(), { title: "VokeTag API" });
      },
    } as any,

    docsCss: staticAsset({ path: "/docs/docs.css", summary: "Stylesheet of /docs", type: "text/css", body: DOCS_CSS }),

    // ---- Consumer pages (HTML; the verification itself is one call to scan.verify) ------------
    scanPage: {
      rest: { method: "GET", fullPath: "/r/:token" },
      auth: "public",
      params: { token: "string" },
      summary: "The consumer's verification page for a tag (records one scan)",
      responses: { 200: html("The verification page (its verdict shown; an invalid token is a page too)"), ...pageErrors() },
      async handler(this: any, ctx: Context<any, any>) {
        return consumerPage(ctx.meta, async () => {
          const result: any = await ctx.call("scan.verify", { token: ctx.params.token, channel: "page" });
          return renderScanPage(result, { lang: ctx.meta.client?.acceptLanguage, token: ctx.params.token });
        });
      },
    } as any,

    gs1Page: {
      // One alias per shape: the key qualifiers' names are checked by parseDigitalLinkPath (a path
      // with unknown or out-of-order ones is a not-found page, recording nothing).
      rest: [
        { method: "GET", fullPath: "/01/:gtin" },
        { method: "GET", fullPath: "/01/:gtin/:k1/:v1" },
        { method: "GET", fullPath: "/01/:gtin/:k1/:v1/:k2/:v2" },
      ],
      auth: "public",
      params: {
        gtin: "string",
        k1: { type: "string", optional: true },
        v1: { type: "string", optional: true },
        k2: { type: "string", optional: true },
        v2: { type: "string", optional: true },
        vt: { type: "any", optional: true },
      },
      summary: "GS1 Digital Link (/01/{gtin}/10/{lot}/21/{serial}?vt={token}): the same verification page (records one scan)",
      responses: { 200: html("The verification page"), ...pageErrors() },
      async handler(this: any, ctx: Context<any, any>) {
        return consumerPage(ctx.meta, async () => {
          // Path parameters arrive decoded: re-encode each so parseDigitalLinkPath checks exactly what was sent.
          const { gtin, k1, v1, k2, v2, vt } = ctx.params;
          const seg = [gtin, k1, v1, k2, v2].filter((x) => typeof x === "string").map((x) => encodeURIComponent(x));
          const parts = parseDigitalLinkPath(`/01/${seg.join("/")}${typeof vt === "string" ? `?vt=${encodeURIComponent(vt)}` : ""}`);
          if (!parts) throw Object.assign(new Error("not a GS1 Digital Link"), { code: 404 });
          const expect = { gtin: parts.gtin, ...(parts.lot !== undefined && { lot: parts.lot }), ...(parts.serial !== undefined && { serial: parts.serial }) };
          const result: any = await ctx.call("scan.verify", { token: parts.token, channel: "gs1", expect });
          return renderScanPage(result, { lang: ctx.meta.client?.acceptLanguage, token: parts.token });
        });
      },
    } as any,

    scanPageLocate: {
      rest: { method: "POST", fullPath: "/r/:token/locate" },
      auth: "public",
      contentTypes: ["application/x-www-form-urlencoded"],
      params: { token: "string", scan_id: "string", receipt: "string", lat: "string", lng: "string", accuracy_m: { type: "string", optional: true } },
      summary: "The page's optional 'share my location' form: adds the location to the scan just made (no new scan)",
      responses: { 200: html("The verification page again, with the location taken into account"), ...pageErrors() },
      async handler(this: any, ctx: Context<any, any>) {
        return consumerPage(ctx.meta, async () => {
          const num = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? Number(v) : undefined);
          const acc = num(ctx.params.accuracy_m);
          const location = { lat: num(ctx.params.lat), lng: num(ctx.params.lng), ...(acc !== undefined && Number.isFinite(acc) && { accuracy_m: acc }) };
          const result: any = await ctx.call("scan.verify", {
            token: ctx.params.token,
            channel: "page",
            location,
            refine: { scan_id: ctx.params.scan_id, receipt: ctx.params.receipt },
          });
          return renderScanPage(result, { lang: ctx.meta.client?.acceptLanguage, token: ctx.params.token });
        });
      },
    } as any,

    scanPageReport: {
      rest: { method: "POST", fullPath: "/r/:token/report" },
      auth: "public",
      contentTypes: ["application/x-www-form-urlencoded"],
      params: { token: "string", form: "string", reason: "string", details: { type: "string", optional: true }, contact: { type: "string", optional: true } },
      summary: "The page's report form (works without JavaScript): files a report, answers a thank-you page",
      responses: {
        201: html("The thank-you page (the report is filed)"),
        ...pageErrors(),
        // The form's token is its idempotency key: a second submission while the first runs, or with other fields.
        409: html("The same form is still being submitted: an error page"),
        422: html("The same form was already submitted with other fields: an error page"),
      },
      async handler(this: any, ctx: Context<any, any>) {
        return consumerPage(ctx.meta, async () => {
          const blank = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined);
          const details = blank(ctx.params.details);
          const contact = blank(ctx.params.contact);
          await ctx.call("scan.pageReport", {
            token: ctx.params.token,
            form: ctx.params.form,
            reason: ctx.params.reason,
            ...(details && { details }),
            ...(contact && { contact }),
          });
          ctx.meta.$statusCode = 201;
          return renderThankYouPage({ lang: ctx.meta.client?.acceptLanguage, contact: !!contact });
        });
      },
    } as any,

    privacyPage: {
      rest: { method: "GET", fullPath: "/privacy" },
      auth: "public",
      summary: "The consumer pages' privacy notice",
      responses: { 200: html("The privacy notice") },
      handler(ctx: Context<any, any>) {
        ctx.meta.$responseType = "text/html; charset=utf-8";
        return renderPrivacyPage({ lang: ctx.meta.client?.acceptLanguage });
      },
    } as any,

    scanPageCss: staticAsset({ path: "/assets/scan.css", summary: "Stylesheet of the consumer page", type: "text/css", body: SCAN_PAGE_CSS, maxAgeSeconds: 3600 }),
    scanPageJs: staticAsset({
      path: "/assets/scan.js",
      summary: "The consumer page's only script: offers to share a location",
      type: "text/javascript",
      body: SCAN_PAGE_JS,
      maxAgeSeconds: 3600,
    }),
  },
  events: {
    // The port opens only when every local service has started (ARCHITECTURE.md, Runtime).
    "$broker.started"(this: any) {
      // Aliases are otherwise regenerated 500 ms after the last service change: build them now.
      for (const route of this.routes) if (route.opts.autoAliases) this.regenerateAutoAliases(route);
      this.listen();
    },
  },
  methods: {
    listen(this: any) {
      const server = http.createServer((req, res) => this.handleHttp(req, res));
      server.keepAliveTimeout = 65_000;
      server.headersTimeout = 66_000;
      server.requestTimeout = 120_000;
      this.httpServer = server;
      server.listen(this.config.port, this.config.host, () => {
        const addr = server.address() as any;
        this.logger.info({ port: addr?.port }, "HTTP listening");
        this.broker.broadcastLocal("api.listening", { port: addr?.port });
      });
    },

    handleHttp(this: any, req: any, res: any) {
      const started = process.hrtime.bigint();
      let rid = req.headers["x-request-id"];
      if (typeof rid !== "string" || !REQUEST_ID_RE.test(rid)) rid = crypto.randomUUID();
      req.headers["x-request-id"] = rid;
      delete req.headers["x-correlation-id"];
      res.setHeader("X-Request-Id", rid);
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
      res.once("finish", () => {
        const latency = Number(process.hrtime.bigint() - started) / 1e6;
        const action: string | undefined = req.$logAction;
        this.logger.info(
          {
            request_id: rid,
            method: req.method,
            path: String(req.originalUrl || req.url).split("?")[0],
            status: res.statusCode,
            latency_ms: Math.round(latency * 100) / 100,
            service: action ? action.split(".")[0] : null,
            action: action ?? null,
          },
          "request",
        );
      });
      this.httpHandler(req, res);
    },

    sendJsonError(this: any, req: any, res: any, err: any) {
      const e = toHttpError(err);
      if (e.status >= 500 && e.status !== 503) this.logger.error({ request_id: req.headers["x-request-id"], err: err?.message, stack: err?.stack }, "request failed");
      if (res.headersSent) return void res.end();
      const ctx = req.$ctx;
      const extra = ctx?.meta?.$responseHeaders;
      if (extra) for (const [k, v] of Object.entries(extra)) if (k.toLowerCase() !== "content-type") res.setHeader(k, v as string);
      if (e.retryAfter) res.setHeader("Retry-After", String(e.retryAfter));
      res.setHeader("Content-Type", "application/json; charset=utf-8");
      res.writeHead(e.status);
      const body: any = { error: { code: e.code, message: e.message, request_id: req.headers["x-request-id"] } };
      if (e.details !== undefined && e.details !== null) body.error.details = e.details;
      res.end(JSON.stringify(body));
    },

    // moleculer-web's default 404 goes through sendError -> our JSON shape. A route whose service
    // has left the cluster (its node died) is a 503 to retry, not a 404.
    send404(this: any, req: any, res: any) {
      const url = String(req.parsedUrl || req.url || "").split("?")[0];
      const gone = [...this.knownAliases.values()].some((a: any) => a.isMethod(req.method) && a.match(url));
      if (gone) return this.sendJsonError(req, res, { name: "ServiceNotFoundError", code: 503, message: "service unavailable" });
      this.sendJsonError(req, res, { name: "NotFoundError", code: 404, type: "NOT_FOUND", message: "no such route" });
    },

    regenerateAutoAliases(this: any, route: any) {
      ApiGateway.methods!.regenerateAutoAliases.call(this, route);
      for (const a of this.aliases) if (a._generated) this.knownAliases.set(`${a.method} ${a.path}`, a);
    },

    async authenticate(this: any, ctx: Context<any, any>, _route: any, req: any): Promise<Principal | null> {
      const apiKey = req.headers["x-api-key"];
      const authz = req.headers["authorization"];
      if (apiKey) {
        const p = await ctx.call("factory.authenticateKey", { key: String(apiKey) });
        return p as Principal;
      }
      if (typeof authz === "string" && /^Bearer\s+/i.test(authz)) {
        const token = authz.replace(/^Bearer\s+/i, "").trim();
        const claims = await this.verifyJwt(ctx, token);
        if (!claims) throw Object.assign(new Error("invalid or expired access token"), { code: 401, type: "UNAUTHORIZED" });
        // The role travels too: a token minted before a role change is refused within the status cache's 5 s.
        const status: any = await ctx.call("admin.principalStatus", { user_id: claims.sub, tenant_id: claims.tenant_id, role: claims.role });
        if (!status.active) throw Object.assign(new Error(status.reason), { code: 401, type: "UNAUTHORIZED" });
        return {
          type: "user",
          id: claims.sub,
          tenant_id: claims.tenant_id,
          role: claims.role,
          email: claims.email,
          scopes: roleScopes(claims.role),
        };
      }
      return null;
    },

    async verifyJwt(this: any, ctx: Context<any, any>, token: string) {
      const opts = { issuer: this.config.jwt.issuer, audience: this.config.jwt.audience };
      for (const fresh of [false, true]) {
        const jwks = await this.jwks(ctx, fresh);
        try {
          return await verifyAccessToken(token, jwks, opts);
        } catch (err: any) {
          // An unknown kid may be a key rotated in since we cached the set: fetch it once more.
          if (err?.code === "ERR_JWKS_NO_MATCHING_KEY" && !fresh) continue;
          return null;
        }
      }
      return null;
    },

    async jwks(this: any, ctx: Context<any, any>, fresh: boolean) {
      const now = Date.now();
      if (!fresh && this.jwksCache && now - this.jwksCache.at < 60_000) return this.jwksCache.value;
      const value = await ctx.call("admin.jwks");
      this.jwksCache = { at: now, value };
      return value;
    },

    async authorize(this: any, ctx: Context<any, any>, route: any, req: any, res: any) {
      this.checkAccess(ctx, req);
      await this.applyRateLimits(ctx, req, res);
    },

    /** Per key, per user, or (public routes) per network and per device; 429 with Retry-After. */
    async applyRateLimits(this: any, ctx: Context<any, any>, req: any, res: any) {
      const p: Principal | null = ctx.meta.principal;
      const rl = this.config.rateLimits;
      const checks: [string, RatePolicy][] = [];
      if (p?.type === "key") checks.push([p.id, { name: "key", limit: rl.key, windowSeconds: 60 }]);
      else if (p?.type === "user") checks.push([p.id, { name: "user", limit: rl.user, windowSeconds: 60 }]);
      else {
        const c = ctx.meta.client;
        checks.push([hashNetwork(c.ip), { name: "network", limit: rl.network, windowSeconds: 60 }]);
        checks.push([deviceFingerprint({ userAgent: c.userAgent, acceptLanguage: c.acceptLanguage, ip: c.ip }), { name: "device", limit: rl.device, windowSeconds: 60 }]);
      }
      // Network and device budgets are checked at once: one Redis round trip's latency, not two.
      const decisions = await Promise.all(checks.map(([key, policy]) => this.limiter.hit(key, policy)));
      let worst = { policy: checks[0][1], d: decisions[0] as RateDecision };
      decisions.forEach((d: RateDecision, i: number) => {
        if (worst.d.allowed && (!d.allowed || d.remaining < worst.d.remaining)) worst = { policy: checks[i][1], d };
      });
      const headers = rateLimitHeaders(worst.policy, worst.d);
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      if (!worst.d.allowed)
        throw Object.assign(new Error(`rate limit exceeded (${worst.policy.name}): retry in ${worst.d.retryAfterSeconds} s`), {
          code: 429,
          type: "RATE_LIMITED",
          data: { retry_after: worst.d.retryAfterSeconds },
        });
    },

    checkAccess(this: any, ctx: Context<any, any>, req: any) {
      const action = req.$action || {};
      const auth: string = action.auth || "user";
      const p: Principal | null = ctx.meta.principal = ctx.meta.user || null;
      ctx.meta.user = undefined;
      if (auth === "public") return;
      if (!p) throw Object.assign(new Error("credentials required (X-API-Key or Authorization: Bearer)"), { code: 401, type: "UNAUTHORIZED" });
      if (auth === "key" && p.type !== "key" && !(p.type === "user" && p.tenant_id))
        throw Object.assign(new Error("this route takes a tenant API key or a tenant user"), { code: 403, type: "FORBIDDEN" });
      if (auth === "user" && p.type !== "user")
        throw Object.assign(new Error("this route takes a user's access token"), { code: 403, type: "FORBIDDEN" });
      if (Array.isArray(action.roles) && (p.type !== "user" || !action.roles.includes(p.role)))
        throw Object.assign(new Error("your role may not do this"), { code: 403, type: "FORBIDDEN" });
      if (action.scope && !p.scopes.includes("*") && !p.scopes.includes(action.scope))
        throw Object.assign(new Error(`missing scope ${action.scope}`), { code: 403, type: "FORBIDDEN" });
    },

    openApiDocument(this: any) {
      const actions = new Map<string, any>();
      for (const a of this.broker.registry.getActionList({ skipInternal: true, withEndpoints: false }) as any[])
        actions.set(a.name, a.action);
      const routes: RouteInfo[] = [];
      for (const alias of this.aliases as any[]) {
        if (!alias.action) continue;
        const def = actions.get(alias.action) || {};
        const methods = alias.method === "*" ? ["GET"] : [alias.method];
        for (const method of methods)
          routes.push({
            method,
            path: alias.fullPath || alias.path,
            action: alias.action,
            params: def.params,
            auth: def.auth || "user",
            summary: def.summary,
            description: def.description,
            contentTypes: def.contentTypes,
            successStatus: def.successStatus,
            responses: def.responses,
            errors: def.errors,
          });
      }
      return buildOpenApi({
        title: "VokeTag API",
        version: "1.0.0",
        description: "Product authentication: signed tags, fraud-scored scans, batches anchored on an EVM chain.",
        serverUrl: this.config.verificationUrlBase,
        routes,
      });
    },
  },
  created(this: any) {
    this.knownAliases = new Map();
    // A bad TRUST_PROXY entry fails the start, not every request.
    validateCidrs(this.config.trustProxy);
    this.limiter = new RateLimiter(this.config.redisUrl ? redisConnection(this.config.redisUrl, this.config.tls.redisCaFile) : null, this.config.namespace);
  },
  async stopped(this: any) {
    await this.limiter?.close();
    const server: http.Server | undefined = this.httpServer;
    if (!server) return;
    // Stop accepting; idle keep-alive sockets close now, busy ones after their response.
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => {
        server.closeAllConnections();
        resolve();
      }, 8000).unref();
    });
  },
};

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The path of the first string (or key) in v holding NUL or an unpaired surrogate, or null. */
export function badText(v: unknown, path = "params", depth = 0): string | null {
  if (typeof v === "string") return v.includes("\u0000") || LONE_SURROGATE.test(v) ? path : null;
  if (!v || typeof v !== "object" || depth > 32) return null;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k.includes("\u0000") || LONE_SURROGATE.test(k)) return `${path} key`;
    const r = badText(x, Array.isArray(v) ? `${path}[${k}]` : `${path}.${k}`, depth + 1);
    if (r) return r;
  }
  return null;
}

function hasBody(req: any): boolean {
  return Number(req.headers["content-length"] || 0) > 0 || !!req.headers["transfer-encoding"];
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref())]);
}

/** Scopes a user's role grants on the tenant API (keys carry their own). */
export function roleScopes(role: string): string[] {
  if (role === "tenant_admin") return ["*"];
  if (role === "tenant_viewer" || role === "auditor") return ["batches:read", "keys:read", "webhooks:read", "scans:read"];
  if (role === "admin" || role === "operator") return ["*"];
  return [];
}

export default ApiService;
