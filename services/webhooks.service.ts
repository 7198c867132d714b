// Webhooks: tenants' endpoints, and durable, signed delivery of the outbox's events to them.
// onEvent (an outbox consumer) fans an event out into webhook_deliveries in one transaction; a
// worker on every webhooks node claims due rows under a lease, POSTs them (lib/webhook-http) and
// records the attempt. A node that dies mid-delivery loses its lease and another takes the row,
// with the same webhook-id. Signing, SSRF checks and the retry schedule live in lib/.
import type { ServiceSchema, Context } from "moleculer";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { AuditMixin } from "../mixins/audit.mixin";
import { badRequest, conflict, notFound, cursorParam } from "../mixins/errors";
import { principalOf, tenantOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { listParams, page, DEFAULT_LIMIT } from "../lib/cursor";
import type { OutboxEvent } from "../lib/events";
import { generateSecret, newMessageId, signedHeaders } from "../lib/webhook-signing";
import { WEBHOOK_EVENTS, TEST_EVENT, EVENT_EXAMPLES, unknownEvents, messageBody } from "../lib/webhook-events";
import { nextRetryDelay } from "../lib/retry-schedule";
import { postWebhook, refuseUrl, PostResult } from "../lib/webhook-http";
import type { UrlPolicy } from "../lib/ssrf";
import { withRequestId } from "../mixins/request-context";
import { ok, page as pageOf } from "../lib/schemas/common";
import {
  WebhookDelivery, WebhookDeliveryDetail, WebhookEndpoint, WebhookEndpointDeleted, WebhookEndpointWithSecret, WebhookEventTypes,
} from "../lib/schemas/webhooks";

/** A rotated-out secret keeps signing (as a second signature) this long. */
const ROTATION_OVERLAP_HOURS = 24;
const MAX_ENDPOINTS_PER_TENANT = 50;
const STOP_GRACE_MS = 5000;
const QUEUE_METRICS_EVERY_MS = 5000;

const idParam = { type: "uuid" };

const M = {
  deliveries: "voketag_webhook_deliveries_total",
  latency: "voketag_webhook_delivery_duration_seconds",
  lag: "voketag_webhook_queue_lag_seconds",
  due: "voketag_webhook_queue_due",
  fanout: "voketag_webhook_fanout_total",
};

interface Claimed {
  id: string;
  endpoint_id: string;
  tenant_id: string;
  webhook_id: string;
  event_type: string;
  url: string | null;
  payload: string;
  attempts: number;
  cycle_attempts: number;
  lease_token: string;
  prev_token: string | null;
  prev_node: string | null;
  kind: "endpoint" | "callback";
  endpoint_url: string | null;
  secret: string;
  previous_secret: string | null;
  previous_valid: boolean;
  /** The request that caused the event (outbox.request_id); null for test deliveries. */
  request_id: string | null;
}

const WebhooksService: ServiceSchema = {
  name: "webhooks",
  mixins: [OutboxMixin, IdempotencyMixin, AuditMixin],
  actions: {
    ready: {
      visibility: "public",
      async handler(this: any) {
        try {
          await this.db.ping();
          return { webhooks: { ok: true } };
        } catch (err) {
          return { webhooks: { ok: false, detail: (err as Error).message } };
        }
      },
    },

    // ---- Endpoints ---------------------------------------------------------------------------
    create: {
      rest: { method: "POST", fullPath: "/v1/webhooks" },
      responses: { 201: ok("The endpoint, with its signing secret (shown only here)", WebhookEndpointWithSecret) },
      errors: [409, 422],
      auth: "key",
      scope: "webhooks:write",
      summary: "Register a webhook endpoint (its signing secret is shown only in this answer)",
      successStatus: 201,
      params: {
        url: { type: "string", min: 1, max: 2048 },
        events: { type: "array", min: 1, max: 20, items: { type: "string", min: 1, max: 64 } },
        description: { type: "string", max: 500, optional: true, nullable: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const p = principalOf(ctx);
        return this.idempotent(ctx, async () => {
          const events = this.checkEvents(ctx.params.events);
          await this.checkUrl(ctx.params.url);
          const count = await this.db.query(
            "SELECT count(*)::int AS n FROM webhook_endpoints WHERE tenant_id = $1 AND kind = 'endpoint' AND deleted_at IS NULL",
            [tenant],
          );
          if (count.rows[0].n >= MAX_ENDPOINTS_PER_TENANT) throw conflict(`a tenant can have at most ${MAX_ENDPOINTS_PER_TENANT} webhook endpoints`);
          const secret = generateSecret();
          const rows = await this.db.tx(async (q: Queryable) => {
            const r = await q.query(
              `INSERT INTO webhook_endpoints (tenant_id, kind, url, description, events, secret, created_by)
               VALUES ($1, 'endpoint', $2, $3, $4, $5, $6) RETURNING *`,
              [tenant, ctx.params.url, ctx.params.description ?? null, events, secret, `${p.type}:${p.id}`],
            );
            await this.audit(q, ctx, { action: "webhook.create", target_type: "webhook", target_id: r.rows[0].id, tenant_id: tenant, after: { url: ctx.params.url, events } });
            return r.rows;
          });
          ctx.meta.$statusCode = 201;
          ctx.meta.$location = `/v1/webhooks/${rows[0].id}`;
          return { ...endpointView(rows[0]), secret };
        });
      },
    } as any,

    list: {
      rest: { method: "GET", fullPath: "/v1/webhooks" },
      responses: { 200: ok("One page of endpoints", pageOf(WebhookEndpoint)) },
      auth: "key",
      scope: "webhooks:read",
      summary: "List your webhook endpoints (and your callback channel, kind \"callback\"), oldest first",
      params: { ...listParams },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = this.cursorOf(ctx.params.cursor);
        const { rows } = await this.db.query(
          `SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL AND seq > $2 ORDER BY seq LIMIT $3`,
          [tenant, c ?? 0, limit + 1],
        );
        const p = page(rows, limit, (r: any) => [Number(r.seq)]);
        return { items: p.items.map(endpointView), next_cursor: p.next_cursor };
      },
    } as any,

    eventTypes: {
      rest: { method: "GET", fullPath: "/v1/webhooks/event-types" },
      responses: { 200: ok("The event types", WebhookEventTypes) },
      auth: "key",
      scope: "webhooks:read",
      summary: "The events an endpoint can subscribe to, each with an example body",
      async handler() {
        return { items: ([...WEBHOOK_EVENTS, TEST_EVENT] as (keyof typeof EVENT_EXAMPLES)[]).map((type) => ({ type, subscribable: type !== TEST_EVENT, example: EVENT_EXAMPLES[type] })) };
      },
    } as any,

    get: {
      rest: { method: "GET", fullPath: "/v1/webhooks/:id" },
      responses: { 200: ok("The endpoint", WebhookEndpoint) },
      auth: "key",
      scope: "webhooks:read",
      summary: "One webhook endpoint (never its secret)",
      params: { id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        return endpointView(await this.endpointOf(this.db, tenantOf(ctx), ctx.params.id));
      },
    } as any,

    remove: {
      rest: { method: "DELETE", fullPath: "/v1/webhooks/:id" },
      responses: { 200: ok("The deleted endpoint", WebhookEndpointDeleted) },
      auth: "key",
      scope: "webhooks:write",
      summary: "Delete a webhook endpoint; its pending deliveries are cancelled",
      params: { id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.db.tx(async (q: Queryable) => {
          const { rows } = await q.query(
            "UPDATE webhook_endpoints SET deleted_at = now(), updated_at = now() WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING *",
            [ctx.params.id, tenant],
          );
          if (!rows.length) throw notFound("webhook endpoint");
          await q.query("UPDATE webhook_deliveries SET status = 'cancelled', lease_token = NULL WHERE endpoint_id = $1 AND status = 'pending'", [ctx.params.id]);
          await this.audit(q, ctx, { action: "webhook.delete", target_type: "webhook", target_id: ctx.params.id, tenant_id: tenant, before: { url: rows[0].url } });
          return { ...endpointView(rows[0]), deleted: true };
        });
      },
    } as any,

    rotateSecret: {
      rest: { method: "POST", fullPath: "/v1/webhooks/:id/rotate-secret" },
      responses: { 200: ok("The endpoint, with its new secret (shown only here)", WebhookEndpointWithSecret) },
      errors: [409, 422],
      auth: "key",
      scope: "webhooks:write",
      summary: `Replace the signing secret (shown once); the previous one also signs for ${ROTATION_OVERLAP_HOURS} h`,
      params: { id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, async () => {
          const row = await this.db.tx(async (q: Queryable) => {
            await this.endpointOf(q, tenant, ctx.params.id, true);
            await this.audit(q, ctx, { action: "webhook.rotate_secret", target_type: "webhook", target_id: ctx.params.id, tenant_id: tenant });
            return this.rotate(q, ctx.params.id);
          });
          return { ...endpointView(row), secret: row.secret };
        });
      },
    } as any,

    enable: {
      rest: { method: "POST", fullPath: "/v1/webhooks/:id/enable" },
      responses: { 200: ok("The endpoint", WebhookEndpoint) },
      auth: "key",
      scope: "webhooks:write",
      summary: "Re-enable an endpoint (disabled by you or by a 410 answer); its held deliveries resume",
      params: { id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        const row = await this.setStatus(ctx, tenantOf(ctx), ctx.params.id, "enabled", null);
        this.pokeWorker();
        return endpointView(row);
      },
    } as any,

    disable: {
      rest: { method: "POST", fullPath: "/v1/webhooks/:id/disable" },
      responses: { 200: ok("The endpoint", WebhookEndpoint) },
      auth: "key",
      scope: "webhooks:write",
      summary: "Pause an endpoint: no new events are queued for it and queued ones wait",
      params: { id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        return endpointView(await this.setStatus(ctx, tenantOf(ctx), ctx.params.id, "disabled", "disabled by the tenant"));
      },
    } as any,

    test: {
      rest: { method: "POST", fullPath: "/v1/webhooks/:id/test" },
      responses: { 202: ok("The queued test delivery", WebhookDelivery) },
      errors: [409, 422],
      auth: "key",
      scope: "webhooks:write",
      summary: "Queue a signed webhook.test delivery to the endpoint (202; follow it in its deliveries)",
      successStatus: 202,
      params: { id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, async () => {
          const ep = await this.endpointOf(this.db, tenant, ctx.params.id);
          if (ep.kind !== "endpoint") throw conflict("a callback channel has no URL of its own to test");
          if (ep.status !== "enabled") throw conflict("the endpoint is disabled: enable it first");
          const body = messageBody(TEST_EVENT, new Date(), { tenant_id: tenant, endpoint_id: ep.id, message: "This is a test delivery from VokeTag." });
          const rows = await this.db.tx(async (q: Queryable) => {
            const r = await q.query(
              `INSERT INTO webhook_deliveries (endpoint_id, tenant_id, webhook_id, event_type, payload) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
              [ep.id, tenant, newMessageId(), TEST_EVENT, body],
            );
            await this.audit(q, ctx, { action: "webhook.test", target_type: "webhook", target_id: ep.id, tenant_id: tenant });
            return r.rows;
          });
          this.pokeWorker();
          ctx.meta.$statusCode = 202;
          ctx.meta.$location = `/v1/webhooks/${ep.id}/deliveries/${rows[0].id}`;
          return deliveryView(rows[0], ep);
        });
      },
    } as any,

    // ---- The callback channel (one-off callbacks such as POST /v1/anchor's callback_url) -------
    callbacks: {
      rest: { method: "POST", fullPath: "/v1/webhooks/callbacks" },
      responses: { 201: ok("The callback channel, with its secret (shown only here)", WebhookEndpointWithSecret) },
      errors: [409, 422],
      auth: "key",
      scope: "webhooks:write",
      summary: "Get your callback signing secret (shown once): creates your callback channel, or rotates its secret",
      successStatus: 201,
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, async () => {
          const row = await this.db.tx(async (q: Queryable) => {
            const ch = await this.callbackChannel(q, tenant);
            await this.audit(q, ctx, { action: ch.created ? "webhook.callbacks_create" : "webhook.callbacks_rotate", target_type: "webhook", target_id: ch.row.id, tenant_id: tenant });
            // A channel made on the fly by a callback has a secret nobody has seen: rotating keeps
            // callbacks already in flight verifiable while the tenant switches to this one.
            return ch.created ? ch.row : this.rotate(q, ch.row.id);
          });
          ctx.meta.$statusCode = 201;
          return { ...endpointView(row), secret: row.secret };
        });
      },
    } as any,

    // ---- Deliveries --------------------------------------------------------------------------
    deliveries: {
      rest: { method: "GET", fullPath: "/v1/webhooks/:id/deliveries" },
      responses: { 200: ok("One page of deliveries", pageOf(WebhookDelivery)) },
      auth: "key",
      scope: "webhooks:read",
      summary: "An endpoint's deliveries, newest first: status, attempts, last response code and latency",
      params: { id: idParam, ...listParams, status: { type: "enum", values: ["pending", "succeeded", "dead", "cancelled"], optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const ep = await this.endpointOf(this.db, tenant, ctx.params.id);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = this.cursorOf(ctx.params.cursor);
        const { rows } = await this.db.query(
          `SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND tenant_id = $2 AND ($3::text IS NULL OR status = $3)
              AND ($4::bigint IS NULL OR seq < $4) ORDER BY seq DESC LIMIT $5`,
          [ep.id, tenant, ctx.params.status ?? null, c, limit + 1],
        );
        const p = page(rows, limit, (r: any) => [Number(r.seq)]);
        return { items: p.items.map((r: any) => deliveryView(r, ep)), next_cursor: p.next_cursor };
      },
    } as any,

    delivery: {
      rest: { method: "GET", fullPath: "/v1/webhooks/:id/deliveries/:delivery_id" },
      responses: { 200: ok("The delivery with its payload and attempts", WebhookDeliveryDetail) },
      auth: "key",
      scope: "webhooks:read",
      summary: "One delivery with its payload and every attempt",
      params: { id: idParam, delivery_id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        const ep = await this.endpointOf(this.db, tenant, ctx.params.id);
        const d = await this.deliveryOf(this.db, tenant, ep.id, ctx.params.delivery_id);
        const history = await this.db.query(
          "SELECT attempt, at, url, address, response_status, latency_ms, error, response_body, node FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id",
          [d.id],
        );
        return { ...deliveryView(d, ep), payload: JSON.parse(d.payload), history: history.rows };
      },
    } as any,

    replay: {
      rest: { method: "POST", fullPath: "/v1/webhooks/:id/deliveries/:delivery_id/replay" },
      responses: { 202: ok("The delivery, pending again", WebhookDelivery) },
      errors: [409, 422],
      auth: "key",
      scope: "webhooks:write",
      summary: "Send a finished (dead or succeeded) delivery again, same webhook-id, with a fresh retry schedule",
      successStatus: 202,
      params: { id: idParam, delivery_id: idParam },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = tenantOf(ctx);
        return this.idempotent(ctx, async () => {
          const { ep, row } = await this.db.tx(async (q: Queryable) => {
            const ep = await this.endpointOf(q, tenant, ctx.params.id);
            const d = await this.deliveryOf(q, tenant, ep.id, ctx.params.delivery_id, true);
            if (d.status === "pending") throw conflict("the delivery is still pending: it will be retried on its own");
            if (ep.status !== "enabled") throw conflict("the endpoint is disabled: enable it first");
            const r = await q.query(
              `UPDATE webhook_deliveries SET status = 'pending', cycle_attempts = 0, next_at = now(), lease_token = NULL, delivered_at = NULL
                WHERE id = $1 RETURNING *`,
              [d.id],
            );
            await this.audit(q, ctx, { action: "webhook.replay", target_type: "webhook_delivery", target_id: d.id, tenant_id: tenant });
            return { ep, row: r.rows[0] };
          });
          this.pokeWorker();
          ctx.meta.$statusCode = 202;
          return deliveryView(row, ep);
        });
      },
    } as any,

    // ---- Durable events ----------------------------------------------------------------------
    onEvent: {
      visibility: "public",
      async handler(this: any, ctx: Context<OutboxEvent<any>>) {
        const event = ctx.params;
        let queued = 0;
        await this.consumeOnce("webhooks", event, async (q: Queryable) => {
          queued = await this.fanOut(q, event);
        });
        if (queued) {
          this.metric("increment", M.fanout, { type: event.type }, queued);
          this.pokeWorker();
        }
        return { ok: true, queued };
      },
    },
  },

  methods: {
    policy(this: any): UrlPolicy {
      return { allowPrivate: this.config.webhooks.allowPrivate, requireHttps: this.config.production };
    },

    async checkUrl(this: any, url: string) {
      const refused = await refuseUrl(url, this.policy());
      if (refused) throw badRequest(refused, { field: "url" });
    },

    checkEvents(events: string[]): string[] {
      const unique = [...new Set(events)];
      const unknown = unknownEvents(unique);
      if (unknown.length) throw badRequest(`unknown event types: ${unknown.join(", ")}`, { known: [...WEBHOOK_EVENTS, "*"] });
      return unique;
    },

    /** Webhook lists page by sequence number: a one-number cursor. */
    cursorOf(cursor: string | undefined): number | null {
      const c = cursorParam(cursor, 1);
      if (c && typeof c[0] !== "number") throw badRequest("invalid cursor");
      return c ? (c[0] as number) : null;
    },

    /** The tenant's endpoint, or 404 (another tenant's id is as unknown as a made-up one). */
    async endpointOf(this: any, q: Queryable, tenant: string, id: string, lock = false) {
      const { rows } = await q.query(
        `SELECT * FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL${lock ? " FOR UPDATE" : ""}`,
        [id, tenant],
      );
      if (!rows.length) throw notFound("webhook endpoint");
      return rows[0];
    },

    async deliveryOf(this: any, q: Queryable, tenant: string, endpointId: string, id: string, lock = false) {
      const { rows } = await q.query(
        `SELECT * FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2 AND tenant_id = $3${lock ? " FOR UPDATE" : ""}`,
        [id, endpointId, tenant],
      );
      if (!rows.length) throw notFound("delivery");
      return rows[0];
    },

    async rotate(this: any, q: Queryable, id: string) {
      const { rows } = await q.query(
        `UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,
            previous_expires_at = now() + make_interval(hours => ${ROTATION_OVERLAP_HOURS}), updated_at = now()
          WHERE id = $1 RETURNING *`,
        [id, generateSecret()],
      );
      return rows[0];
    },

    async setStatus(this: any, ctx: any, tenant: string, id: string, status: "enabled" | "disabled", reason: string | null) {
      return this.db.tx(async (q: Queryable) => {
        const { rows } = await q.query(
          `UPDATE webhook_endpoints SET status = $3, disabled_reason = $4, disabled_at = CASE WHEN $3 = 'disabled' THEN now() END, updated_at = now()
            WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING *`,
          [id, tenant, status, reason],
        );
        if (!rows.length) throw notFound("webhook endpoint");
        await this.audit(q, ctx, { action: status === "enabled" ? "webhook.enable" : "webhook.disable", target_type: "webhook", target_id: id, tenant_id: tenant });
        return rows[0];
      });
    },

    /** The tenant's callback channel, made (with a fresh secret) when it has none. */
    async callbackChannel(this: any, q: Queryable, tenant: string): Promise<{ row: any; created: boolean }> {
      const ins = await q.query(
        `INSERT INTO webhook_endpoints (tenant_id, kind, events, secret, description, created_by)
         VALUES ($1, 'callback', $2, $3, 'one-off callbacks (callback_url)', 'system')
         ON CONFLICT (tenant_id) WHERE kind = 'callback' AND deleted_at IS NULL DO NOTHING RETURNING *`,
        [tenant, ["batch.anchored"], generateSecret()],
      );
      if (ins.rows.length) return { row: ins.rows[0], created: true };
      const { rows } = await q.query("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND kind = 'callback' AND deleted_at IS NULL FOR UPDATE", [tenant]);
      return { row: rows[0], created: false };
    },

    /**
     * The (tenant, data) pairs an event is for. Most events name their tenant; anchor.confirmed
     * covers a whole period, so each tenant gets it with only its own batches.
     */
    async eventTargets(this: any, q: Queryable, event: OutboxEvent<any>): Promise<{ tenant: string; data: Record<string, unknown> }[]> {
      const data = event.data ?? {};
      if (typeof data.tenant_id === "string") return [{ tenant: data.tenant_id, data }];
      if (Array.isArray(data.batch_ids) && data.batch_ids.length) {
        const { rows } = await q.query("SELECT id, tenant_id FROM batches WHERE id = ANY($1::uuid[])", [data.batch_ids]);
        const byTenant = new Map<string, string[]>();
        for (const r of rows) byTenant.set(r.tenant_id, [...(byTenant.get(r.tenant_id) ?? []), r.id]);
        return [...byTenant].map(([tenant, ids]) => ({ tenant, data: { ...data, tenant_id: tenant, batch_ids: ids } }));
      }
      this.logger.warn({ event_id: event.id, type: event.type }, "webhook event names no tenant; not delivered");
      return [];
    },

    /** One delivery row per matching enabled endpoint (and callback URL), in the consumer's transaction. */
    async fanOut(this: any, q: Queryable, event: OutboxEvent<any>): Promise<number> {
      let queued = 0;
      for (const { tenant, data } of await this.eventTargets(q, event)) {
        const webhookId = newMessageId();
        const body = messageBody(event.type, event.timestamp, data);
        const r = await q.query(
          `INSERT INTO webhook_deliveries (endpoint_id, tenant_id, webhook_id, event_type, event_id, payload)
           SELECT id, tenant_id, $3, $2, $4, $5 FROM webhook_endpoints
            WHERE tenant_id = $1 AND kind = 'endpoint' AND status = 'enabled' AND deleted_at IS NULL
              AND ($2 = ANY(events) OR '*' = ANY(events))
           ON CONFLICT (endpoint_id, event_id) WHERE event_id IS NOT NULL DO NOTHING`,
          [tenant, event.type, webhookId, event.id, body],
        );
        queued += r.rowCount;
        if (event.type === "batch.anchored" && typeof data.batch_id === "string") {
          const job = await q.query(
            "SELECT callback_url FROM anchor_jobs WHERE batch_id = $1 AND tenant_id = $2 AND callback_url IS NOT NULL",
            [data.batch_id, tenant],
          );
          if (job.rows.length) {
            const ch = await this.callbackChannel(q, tenant);
            if (ch.row.status === "enabled") {
              const c = await q.query(
                `INSERT INTO webhook_deliveries (endpoint_id, tenant_id, webhook_id, event_type, event_id, url, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (endpoint_id, event_id) WHERE event_id IS NOT NULL DO NOTHING`,
                [ch.row.id, tenant, webhookId, event.type, event.id, job.rows[0].callback_url, body],
              );
              queued += c.rowCount;
            }
          }
        }
      }
      return queued;
    },

    // ---- The delivery worker -----------------------------------------------------------------
    metric(this: any, op: "increment" | "observe" | "set", name: string, labels: Record<string, string> | undefined, value = 1) {
      const m = this.broker.metrics;
      if (!m?.isEnabled?.() || !m.hasMetric(name)) return;
      if (op === "increment") m.increment(name, labels, value);
      else if (op === "observe") m.observe(name, value, labels);
      else m.set(name, value, labels);
    },

    pokeWorker(this: any) {
      const w = this.worker;
      if (!w || w.stopped) return;
      if (w.sweeping) {
        w.again = true;
        return;
      }
      // Outside any request's scope: a poke from onEvent must not lend that event's request id to
      // the sweep, whose deliveries each run under their own (deliverOne).
      w.sweeping = withRequestId(null, () => this.sweepLoop()).finally(() => (w.sweeping = null));
    },

    async sweepLoop(this: any) {
      const w = this.worker;
      do {
        w.again = false;
        try {
          await this.claimAndStart();
          await this.queueMetrics();
        } catch (err) {
          this.logger.warn({ err: (err as Error).message }, "webhook sweep failed");
        }
      } while (w.again && !w.stopped);
    },

    async claimAndStart(this: any) {
      const w = this.worker;
      const free = this.config.webhooks.concurrency - w.inFlight;
      if (free <= 0) return;
      const rows: Claimed[] = await this.claim(free);
      for (const row of rows) {
        w.inFlight++;
        w.held.add(row.lease_token);
        // Each delivery logs under the request id of the request that caused its event.
        withRequestId(row.request_id, () =>
          this.deliverOne(row)
            .catch((err: any) => this.logger.error({ delivery_id: row.id, err: err?.message }, "webhook delivery failed to record"))
            .finally(() => {
              w.inFlight--;
              w.held.delete(row.lease_token);
              this.pokeWorker();
            }),
        );
      }
      // A full batch means more may be due.
      if (rows.length === free) w.again = true;
    },

    /**
     * Claims due deliveries with a lease: the rows are locked only for this statement (SKIP LOCKED,
     * so nodes claim different rows), then belong to this node until next_at, which the outcome
     * moves. A node that dies leaves next_at to pass, and the row becomes due again.
     */
    async claim(this: any, limit: number): Promise<Claimed[]> {
      const { rows } = await this.db.query(
        `WITH due AS (
           SELECT d.id, d.lease_token AS prev_token, d.leased_by AS prev_node
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
            WHERE d.status = 'pending' AND d.next_at <= now() AND e.status = 'enabled' AND e.deleted_at IS NULL
            ORDER BY d.next_at LIMIT $1
            FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries d
            SET lease_token = gen_random_uuid(), leased_by = $2, next_at = now() + make_interval(secs => $3),
                attempts = d.attempts + 1, cycle_attempts = d.cycle_attempts + 1
           FROM due, webhook_endpoints e
          WHERE d.id = due.id AND e.id = d.endpoint_id
         RETURNING d.id, d.endpoint_id, d.tenant_id, d.webhook_id, d.event_type, d.url, d.payload, d.attempts, d.cycle_attempts,
                   d.lease_token, due.prev_token, due.prev_node, e.kind, e.url AS endpoint_url, e.secret, e.previous_secret,
                   coalesce(e.previous_expires_at > now(), false) AS previous_valid,
                   (SELECT o.request_id FROM outbox o WHERE o.id = d.event_id) AS request_id`,
        [limit, this.broker.nodeID, this.config.webhooks.leaseSeconds],
      );
      const lost = rows.filter((r: Claimed) => r.prev_token);
      if (lost.length)
        await this.db.query(
          `INSERT INTO webhook_attempts (delivery_id, attempt, error, node)
           SELECT id, n, 'no outcome recorded: the worker on ' || coalesce(node, '?') || ' stopped mid-delivery (lease expired)', node
             FROM unnest($1::uuid[], $2::int[], $3::text[]) AS t(id, n, node)`,
          [lost.map((r: Claimed) => r.id), lost.map((r: Claimed) => r.attempts - 1), lost.map((r: Claimed) => r.prev_node)],
        );
      return rows;
    },

    async deliverOne(this: any, row: Claimed) {
      const url = row.url ?? row.endpoint_url!;
      const secrets = [row.secret, ...(row.previous_valid && row.previous_secret ? [row.previous_secret] : [])];
      // A fresh timestamp per attempt (receivers reject old ones); the id never changes.
      const headers = signedHeaders(secrets, row.webhook_id, Math.floor(Date.now() / 1000), row.payload);
      const result: PostResult = await postWebhook({
        url,
        headers: { ...headers },
        body: row.payload,
        timeoutMs: this.config.webhooks.timeoutSeconds * 1000,
        policy: this.policy(),
      });
      if (result.status !== null) this.metric("observe", M.latency, undefined, result.latencyMs / 1000);
      await this.recordOutcome(row, url, result);
    },

    async recordOutcome(this: any, row: Claimed, url: string, r: PostResult) {
      const gone = r.status === 410;
      let outcome: "succeeded" | "retry" | "dead";
      let delay: number | null = null;
      if (r.ok) outcome = "succeeded";
      else if (gone || r.permanent) outcome = "dead";
      else {
        delay = nextRetryDelay(this.config.webhooks.retrySchedule, row.cycle_attempts, { retryAfter: r.retryAfter });
        outcome = delay === null ? "dead" : "retry";
      }
      await this.db.tx(async (q: Queryable) => {
        await q.query(
          `INSERT INTO webhook_attempts (delivery_id, attempt, url, address, response_status, latency_ms, error, response_body, node)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [row.id, row.attempts, url, r.address, r.status, r.latencyMs, r.error, r.body, this.broker.nodeID],
        );
        // Only the lease holder moves the row: if the lease was lost, the new holder decides.
        await q.query(
          `UPDATE webhook_deliveries SET status = $3, lease_token = NULL, last_status = $4, last_error = $5, last_latency_ms = $6,
              last_attempt_at = now(), delivered_at = CASE WHEN $3 = 'succeeded' THEN now() END,
              next_at = CASE WHEN $7::double precision IS NULL THEN next_at ELSE now() + make_interval(secs => $7::double precision) END
            WHERE id = $1 AND lease_token = $2`,
          [row.id, row.lease_token, outcome === "retry" ? "pending" : outcome, r.status, r.error, r.latencyMs, delay],
        );
        // 410 Gone: the receiver says the endpoint no longer exists; stop sending until re-enabled.
        if (gone && row.kind === "endpoint")
          await q.query(
            `UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'the receiver answered 410 Gone', disabled_at = now(), updated_at = now()
              WHERE id = $1 AND status = 'enabled'`,
            [row.endpoint_id],
          );
      });
      this.metric("increment", M.deliveries, { outcome: gone ? "gone" : outcome, kind: row.kind });
      if (outcome !== "succeeded")
        this.logger.info({ delivery_id: row.id, webhook_id: row.webhook_id, attempt: row.attempts, outcome, error: r.error, next_in_s: delay }, "webhook attempt failed");
    },

    async queueMetrics(this: any) {
      const w = this.worker;
      if (!this.broker.metrics?.isEnabled?.() || Date.now() - w.metricsAt < QUEUE_METRICS_EVERY_MS) return;
      w.metricsAt = Date.now();
      const { rows } = await this.db.query(
        `SELECT count(*)::int AS due, coalesce(extract(epoch FROM now() - min(d.next_at)), 0)::float8 AS lag
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
          WHERE d.status = 'pending' AND d.next_at <= now() AND e.status = 'enabled' AND e.deleted_at IS NULL`,
      );
      this.metric("set", M.due, undefined, rows[0].due);
      this.metric("set", M.lag, undefined, rows[0].lag);
    },

    /** Finished deliveries (and their attempts) older than WEBHOOK_RETENTION are dropped. */
    async pruneOld(this: any) {
      await this.db.query(
        `DELETE FROM webhook_deliveries WHERE id IN (
           SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < now() - make_interval(secs => $1) LIMIT 5000)`,
        [this.config.webhooks.retentionSeconds],
      );
    },
  },

  created(this: any) {
    const m = this.broker.metrics;
    m.register({ type: "counter", name: M.deliveries, labelNames: ["outcome", "kind"], description: "Webhook delivery attempts by outcome (succeeded, retry, dead, gone)" });
    m.register({ type: "histogram", name: M.latency, labelNames: [], unit: "seconds", buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15], description: "Time until a receiver answered a webhook" });
    m.register({ type: "gauge", name: M.lag, labelNames: [], unit: "seconds", description: "Age of the oldest due webhook delivery not yet attempted" });
    m.register({ type: "gauge", name: M.due, labelNames: [], description: "Webhook deliveries due and not yet attempted" });
    m.register({ type: "counter", name: M.fanout, labelNames: ["type"], description: "Webhook deliveries queued by event type" });
  },

  started(this: any) {
    this.worker = { inFlight: 0, held: new Set<string>(), stopped: false, sweeping: null, again: false, metricsAt: 0 };
    this.workerTimer = setInterval(() => this.pokeWorker(), this.config.webhooks.pollMs);
    this.workerTimer.unref();
    this.pruneTimer = setInterval(() => this.pruneOld().catch(() => undefined), 3600_000);
    this.pruneTimer.unref();
    this.pokeWorker();
  },

  async stopped(this: any) {
    const w = this.worker;
    if (!w) return;
    w.stopped = true;
    clearInterval(this.workerTimer);
    clearInterval(this.pruneTimer);
    await w.sweeping;
    // Let attempts under way finish; hand back the leases of any still running so another node
    // can take those rows at once instead of after the lease.
    const until = Date.now() + STOP_GRACE_MS;
    while (w.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    if (w.held.size)
      await this.db
        .query("UPDATE webhook_deliveries SET next_at = now(), lease_token = NULL WHERE lease_token = ANY($1::uuid[]) AND status = 'pending'", [[...w.held]])
        .catch(() => undefined);
  },
};

function endpointView(r: any) {
  const rotating = r.previous_expires_at && new Date(r.previous_expires_at).getTime() > Date.now();
  return {
    id: r.id,
    kind: r.kind,
    url: r.url,
    description: r.description,
    events: r.events,
    status: r.status,
    disabled_reason: r.disabled_reason,
    disabled_at: r.disabled_at,
    previous_secret_expires_at: rotating ? r.previous_expires_at : null,
    created_at: r.created_at,
    updated_at: r.updated_at,
    ...(r.deleted_at ? { deleted_at: r.deleted_at } : {}),
  };
}

function deliveryView(d: any, ep: any) {
  const leased = !!d.lease_token && new Date(d.next_at).getTime() > Date.now();
  return {
    id: d.id,
    endpoint_id: d.endpoint_id,
    webhook_id: d.webhook_id,
    event_type: d.event_type,
    url: d.url ?? ep.url,
    status: d.status,
    in_flight: d.status === "pending" && leased,
    attempts: d.attempts,
    response_status: d.last_status,
    latency_ms: d.last_latency_ms,
    error: d.last_error,
    last_attempt_at: d.last_attempt_at,
    next_attempt_at: d.status === "pending" && !leased ? d.next_at : null,
    created_at: d.created_at,
    delivered_at: d.delivered_at,
  };
}

export default WebhooksService;
