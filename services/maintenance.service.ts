// Scheduled housekeeping, one node at a time (mixins/maintenance.mixin.ts), every MAINTENANCE_INTERVAL
// seconds: expired Idempotency-Keys, abandoned uploads, webhook deliveries past WEBHOOK_RETENTION
// and planner statistics. Deletions go in batches of short statements, so a large backlog never
// holds locks for long; a job whose table another issue has not created yet reports it and skips.
import type { ServiceSchema, Context } from "moleculer";
import { MaintenanceMixin, MaintenanceJob } from "../mixins/maintenance.mixin";
import { AuditMixin } from "../mixins/audit.mixin";
import { badRequest } from "../mixins/errors";

const BATCH = 5000;

const MaintenanceService: ServiceSchema = {
  name: "maintenance",
  mixins: [MaintenanceMixin, AuditMixin],

  actions: {
    /** Runs every job now (or one), still one node at a time; for operators and god mode. */
    run: {
      visibility: "public",
      params: { job: { type: "string", optional: true, max: 100 }, force: { type: "boolean", optional: true, default: true } },
      async handler(this: any, ctx: Context<{ job?: string; force: boolean }>) {
        const names = this.maintenanceJobs().map((j: MaintenanceJob) => j.name);
        if (ctx.params.job && !names.includes(ctx.params.job))
          throw badRequest(`unknown maintenance job "${ctx.params.job}" (known: ${names.join(", ")})`);
        return this.runDueMaintenance({ force: ctx.params.force, only: ctx.params.job });
      },
    },

    /** The last run of each job: when, where, what it did. */
    status: {
      visibility: "public",
      async handler(this: any) {
        const { rows } = await this.db.query("SELECT job, node, started_at, finished_at, ok, result, error FROM maintenance_runs ORDER BY job");
        return rows;
      },
    },
  },

  methods: {
    maintenanceJobs(this: any): MaintenanceJob[] {
      const every = this.config.retention.maintenanceIntervalSeconds;
      const job = (name: string, run: () => Promise<Record<string, unknown>>): MaintenanceJob => ({
        name,
        everySeconds: every,
        run: async () => {
          const result = await run();
          await this.auditMaintenance(name, result);
          return result;
        },
      });
      return [
        job("idempotency-keys", () => this.expiredIdempotencyKeys()),
        job("abandoned-uploads", () => this.abandonedUploads()),
        job("webhook-deliveries", () => this.oldWebhookDeliveries()),
        job("statistics", () => this.refreshStatistics()),
      ];
    },

    async tableExists(this: any, name: string): Promise<boolean> {
      const { rows } = await this.db.query("SELECT to_regclass($1) IS NOT NULL AS ok", [name]);
      return rows[0].ok;
    },

    /** Repeats a batched DELETE until a batch comes back short. */
    async deleteInBatches(this: any, sql: string, params: unknown[] = []): Promise<number> {
      let total = 0;
      for (;;) {
        const r = await this.db.query(sql, params);
        total += r.rowCount;
        if (r.rowCount < BATCH || this._maintenanceStopped) return total;
      }
    },

    /** Keys past their 24 h. The expiry is checked on the row deleted too: a key taken over since the
     *  subquery read it (idempotency.mixin reuses expired keys in place) is live again and stays. */
    async expiredIdempotencyKeys(this: any) {
      const deleted = await this.deleteInBatches(
        `DELETE FROM idempotency_keys k USING (SELECT scope, key FROM idempotency_keys WHERE expires_at < now() LIMIT ${BATCH}) e
          WHERE k.scope = e.scope AND k.key = e.key AND k.expires_at < now()`,
      );
      return { deleted };
    },

    /** Uploads still receiving after their expiry become `expired`; the bytes of every upload that
     *  will never become a batch (expired, failed, cancelled) are dropped. */
    async abandonedUploads(this: any) {
      if (!(await this.tableExists("uploads")) || !(await this.tableExists("upload_chunks"))) return { skipped: "no uploads table" };
      let expired = 0;
      for (;;) {
        const r = await this.db.query(
          `UPDATE uploads SET status = 'expired', updated_at = now()
            WHERE id IN (SELECT id FROM uploads WHERE status = 'receiving' AND expires_at < now() ORDER BY expires_at LIMIT ${BATCH})
              AND status = 'receiving' AND expires_at < now()`,
        );
        expired += r.rowCount;
        if (r.rowCount < BATCH || this._maintenanceStopped) break;
      }
      // Chunks can be large: fewer per statement.
      let chunks = 0;
      for (;;) {
        const r = await this.db.query(
          `DELETE FROM upload_chunks c USING (
             SELECT c2.upload_id, c2."offset" FROM upload_chunks c2 JOIN uploads u ON u.id = c2.upload_id
              WHERE u.status IN ('expired', 'failed', 'cancelled') LIMIT 500) d
            WHERE c.upload_id = d.upload_id AND c."offset" = d."offset"`,
        );
        chunks += r.rowCount;
        if (r.rowCount < 500 || this._maintenanceStopped) break;
      }
      return { expired, chunks_deleted: chunks };
    },

    /** Finished deliveries (and their attempts, by cascade) older than WEBHOOK_RETENTION. */
    async oldWebhookDeliveries(this: any) {
      if (!(await this.tableExists("webhook_deliveries"))) return { skipped: "no webhook_deliveries table" };
      const deleted = await this.deleteInBatches(
        `DELETE FROM webhook_deliveries WHERE id IN (
           SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < now() - make_interval(secs => $1) LIMIT ${BATCH})
           AND status <> 'pending'`,
        [this.config.webhooks.retentionSeconds],
      );
      return { deleted };
    },

    /** ANALYZE the tables that changed by more than 5 % (at least 1,000 rows) since their last
     *  statistics, or never had any: bulk registrations and purges outrun autovacuum's analyze. */
    async refreshStatistics(this: any) {
      const { rows } = await this.db.query(
        `SELECT relname FROM pg_stat_user_tables
          WHERE schemaname = current_schema()
            AND (n_mod_since_analyze >= greatest(1000, 0.05 * n_live_tup)
                 OR (last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup + n_mod_since_analyze > 0))
          ORDER BY relname`,
      );
      const analyzed: string[] = [];
      for (const r of rows) {
        if (this._maintenanceStopped) break;
        await this.db.query(`ANALYZE "${String(r.relname).replace(/"/g, '""')}"`);
        analyzed.push(r.relname);
      }
      return { analyzed };
    },

    /** Deletions are mutations: one audit entry per run that removed anything. */
    async auditMaintenance(this: any, job: string, result: Record<string, unknown>) {
      const changed = Object.values(result).some((v) => typeof v === "number" && v > 0);
      if (!changed) return;
      await this.db.tx((q: any) => this.audit(q, null, { action: `maintenance.${job}`, target_type: "maintenance_job", target_id: job, after: result }));
    },
  },
};

export default MaintenanceService;
