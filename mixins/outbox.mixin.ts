// The transactional outbox (ARCHITECTURE.md, "Data never lost"): a service writes the event in the
// same transaction as the change; one relay per process delivers it to every consumer listed in
// lib/events and marks it sent only when all have acknowledged; consumers record what they handled.
import type { ServiceSchema, ServiceBroker, Logger } from "moleculer";
import type { Database, Queryable } from "./database";
import { DbMixin } from "./db.mixin";
import { EVENT_CONSUMERS, OutboxEvent, outboxBackoffSeconds } from "../lib/events";

const LEASE_SECONDS = 60;
const BATCH = 200;

export class OutboxRelay {
  private timer: NodeJS.Timeout | null = null;
  private lagTimer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  constructor(
    private db: Database,
    private broker: ServiceBroker,
    private logger: Logger,
    private pollMs: number,
  ) {}

  start() {
    this.timer = setInterval(() => this.poke(), this.pollMs);
    this.timer.unref();
    const m: any = this.broker.metrics;
    if (!m.getMetric("voketag_outbox_pending")) {
      m.register({ type: "gauge", name: "voketag_outbox_pending", description: "Outbox events not yet acknowledged by every consumer" });
      m.register({ type: "gauge", name: "voketag_outbox_lag_seconds", unit: "seconds", description: "Age of the oldest unacknowledged outbox event" });
      m.register({ type: "counter", name: "voketag_outbox_delivered_total", labelNames: ["topic", "outcome"], description: "Outbox deliveries to consumers by outcome" });
    }
    this.lagTimer = setInterval(() => void this.measureLag(), 5000);
    this.lagTimer.unref();
  }

  /** Outbox lag for dashboards and the alert on a stuck relay. */
  private async measureLag() {
    try {
      const { rows } = await this.db.query<{ n: number; age: number | null }>(
        "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM outbox WHERE sent_at IS NULL",
      );
      const m: any = this.broker.metrics;
      m.set("voketag_outbox_pending", rows[0].n);
      m.set("voketag_outbox_lag_seconds", rows[0].age ?? 0);
    } catch {
      /* the database being down is reported by readiness */
    }
  }

  /** Sweep now (after a commit that wrote rows); coalesces while a sweep runs. */
  poke() {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.sweepLoop().finally(() => (this.running = null));
  }

  async stop() {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.lagTimer) clearInterval(this.lagTimer);
    await this.running;
  }

  private async sweepLoop() {
    do {
      this.again = false;
      try {
        const n = await this.sweep();
        if (n === BATCH) this.again = true;
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "outbox sweep failed");
      }
    } while (this.again && !this.stopped);
  }

  async sweep(): Promise<number> {
    // A lease, not a long transaction: consumers use the same database (and PGlite has one connection).
    const { rows } = await this.db.query<any>(
      `UPDATE outbox SET next_at = now() + make_interval(secs => ${LEASE_SECONDS}), attempts = attempts + 1
        WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL AND next_at <= now()
                     ORDER BY id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
        RETURNING id, topic, payload, pending, request_id, attempts, created_at`,
    );
    rows.sort((a, b) => a.id - b.id);
    for (const row of rows) {
      const event: OutboxEvent = {
        id: Number(row.id),
        type: row.topic,
        timestamp: new Date(row.created_at).toISOString(),
        data: row.payload,
      };
      const left: string[] = [];
      let lastError: string | null = null;
      for (const consumer of row.pending as string[]) {
        // A consumer with no live endpoint is skipped at once (its service may be starting or not
        // deployed): Moleculer's own retries would stall the whole sweep behind this row.
        if (this.broker.findNextActionEndpoint(consumer) instanceof Error) {
          left.push(consumer);
          lastError = `${consumer}: no live endpoint`;
          continue;
        }
        try {
          await this.broker.call(consumer, event, { requestID: row.request_id || undefined, retries: 0 });
          (this.broker.metrics as any).increment("voketag_outbox_delivered_total", { topic: row.topic, outcome: "ok" });
        } catch (err) {
          left.push(consumer);
          lastError = `${consumer}: ${(err as Error).message}`;
          (this.broker.metrics as any).increment("voketag_outbox_delivered_total", { topic: row.topic, outcome: "retry" });
        }
      }
      if (lastError) this.logger.warn({ event_id: event.id, type: event.type, request_id: row.request_id, error: lastError }, "outbox delivery failed, will retry");
      await this.db.query(
        `UPDATE outbox SET pending = $2::text[], last_error = $3,
            sent_at = CASE WHEN cardinality($2::text[]) = 0 THEN now() END,
            next_at = now() + make_interval(secs => $4)
          WHERE id = $1`,
        [row.id, left, lastError, left.length ? outboxBackoffSeconds(row.attempts) : 0],
      );
    }
    return rows.length;
  }
}

const relays = new WeakMap<Database, { relay: OutboxRelay; refs: number }>();

export const OutboxMixin: Partial<ServiceSchema> = {
  mixins: [DbMixin],
  methods: {
    /** Writes an event in the caller's transaction; call pokeOutbox() after the commit. */
    async emitDurable(this: any, q: Queryable, topic: string, data: Record<string, unknown>, requestID?: string | null) {
      const consumers = EVENT_CONSUMERS[topic];
      if (!consumers) throw new Error(`unknown outbox topic ${topic}`);
      await q.query("INSERT INTO outbox (topic, payload, request_id, pending) VALUES ($1, $2::jsonb, $3, $4::text[])", [
        topic,
        JSON.stringify(data),
        requestID ?? null,
        consumers,
      ]);
    },
    pokeOutbox(this: any) {
      relays.get(this.db)?.relay.poke();
    },
    /**
     * Runs fn once per (consumer, event id), in one transaction with the record of having done so.
     * Returns false when the event had been handled already.
     */
    async consumeOnce(this: any, consumer: string, event: OutboxEvent, fn: (q: Queryable) => Promise<void>): Promise<boolean> {
      return this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING event_id",
          [consumer, event.id],
        );
        if (!r.rowCount) return false;
        await fn(q);
        return true;
      });
    },
  },
  started(this: any) {
    let entry = relays.get(this.db);
    if (!entry) {
      entry = { relay: new OutboxRelay(this.db, this.broker, this.logger, this.config.outboxPollMs), refs: 0 };
      relays.set(this.db, entry);
      entry.relay.start();
    }
    entry.refs++;
  },
  async stopped(this: any) {
    const entry = relays.get(this.db);
    if (entry && --entry.refs <= 0) {
      relays.delete(this.db);
      await entry.relay.stop();
    }
  },
};
