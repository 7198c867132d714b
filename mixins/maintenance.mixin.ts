// Scheduled maintenance on one node at a time. A service lists its jobs (`maintenanceJobs()`); every
// node running the service ticks, and a job runs where the tick first takes its Postgres advisory
// lock and finds it due in maintenance_runs (its last finish older than its interval). So a job
// runs once per interval cluster-wide, never on two nodes at once, and keeps running when any node
// is lost. A run that fails is recorded and tried again at the next interval, not in a loop.
import type { ServiceSchema } from "moleculer";
import type { Queryable } from "./database";
import { DbMixin } from "./db.mixin";

export interface MaintenanceJob {
  /** Unique cluster-wide: names the lock and the maintenance_runs row. */
  name: string;
  /** Seconds between runs, cluster-wide. */
  everySeconds: number;
  /** Does the work; what it returns (counts) is stored with the run and logged. */
  run(): Promise<Record<string, unknown>>;
}

export type JobOutcome =
  | { job: string; ran: true; ok: true; result: Record<string, unknown>; ms: number }
  | { job: string; ran: true; ok: false; error: string; ms: number }
  | { job: string; ran: false; reason: "locked" | "not_due" };

// pg_try_advisory_lock(int, int): the first key is VokeTag's maintenance space, the second the job.
const LOCK_SPACE = 7261008;
// How often a node looks for due jobs, at most: the interval itself is enforced through the database.
const MAX_TICK_SECONDS = 60;

export const MaintenanceMixin: Partial<ServiceSchema> = {
  mixins: [DbMixin],
  methods: {
    /** The jobs of this service: overridden by the service. */
    maintenanceJobs(): MaintenanceJob[] {
      return [];
    },

    /**
     * Runs one job if no other node holds it; `force` skips the due check (an operator's "now"), never
     * the lock.
     */
    async runMaintenanceJob(this: any, job: MaintenanceJob, force = false): Promise<JobOutcome> {
      return this.db.session(async (s: Queryable) => {
        const got = await s.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok", [LOCK_SPACE, job.name]);
        if (!got.rows[0].ok) return { job: job.name, ran: false, reason: "locked" };
        try {
          if (!force) {
            const due = await s.query(
              `SELECT 1 FROM maintenance_runs WHERE job = $1 AND finished_at > now() - make_interval(secs => $2) LIMIT 1`,
              [job.name, job.everySeconds],
            );
            if (due.rowCount) return { job: job.name, ran: false, reason: "not_due" };
          }
          await s.query(
            `INSERT INTO maintenance_runs (job, node, started_at) VALUES ($1, $2, now())
             ON CONFLICT (job) DO UPDATE SET node = EXCLUDED.node, started_at = now()`,
            [job.name, this.broker.nodeID],
          );
          const t0 = Date.now();
          try {
            const result = await job.run();
            await s.query("UPDATE maintenance_runs SET finished_at = clock_timestamp(), ok = true, result = $2::jsonb, error = NULL WHERE job = $1", [job.name, JSON.stringify(result)]);
            this.logger.info({ job: job.name, ...result, ms: Date.now() - t0 }, "maintenance job done");
            return { job: job.name, ran: true, ok: true, result, ms: Date.now() - t0 };
          } catch (err) {
            const message = (err as Error).message;
            await s.query("UPDATE maintenance_runs SET finished_at = clock_timestamp(), ok = false, error = $2 WHERE job = $1", [job.name, message]).catch(() => undefined);
            this.logger.warn({ job: job.name, err: message }, "maintenance job failed");
            return { job: job.name, ran: true, ok: false, error: message, ms: Date.now() - t0 };
          }
        } finally {
          await s.query("SELECT pg_advisory_unlock($1, hashtext($2))", [LOCK_SPACE, job.name]).catch(() => undefined);
        }
      });
    },

    /** Every job that is due, one after another (they share the database; no hurry). */
    async runDueMaintenance(this: any, opts: { force?: boolean; only?: string } = {}): Promise<JobOutcome[]> {
      const out: JobOutcome[] = [];
      for (const job of this.maintenanceJobs() as MaintenanceJob[]) {
        if (opts.only && job.name !== opts.only) continue;
        if (this._maintenanceStopped) break;
        out.push(await this.runMaintenanceJob(job, !!opts.force));
      }
      return out;
    },

    tickMaintenance(this: any) {
      if (this._maintenanceRunning || this._maintenanceStopped) return;
      this._maintenanceRunning = this.runDueMaintenance()
        .catch((err: Error) => this.logger.warn({ err: err.message }, "maintenance tick failed"))
        .finally(() => (this._maintenanceRunning = null));
    },
  },

  started(this: any) {
    const jobs: MaintenanceJob[] = this.maintenanceJobs();
    if (!jobs.length) return;
    const tick = Math.max(1, Math.min(MAX_TICK_SECONDS, ...jobs.map((j) => j.everySeconds)));
    // Nodes started together should not all reach for the locks in the same second.
    this._maintenanceFirst = setTimeout(() => this.tickMaintenance(), Math.floor(Math.random() * tick * 1000));
    this._maintenanceFirst.unref();
    this._maintenanceTimer = setInterval(() => this.tickMaintenance(), tick * 1000);
    this._maintenanceTimer.unref();
  },

  async stopped(this: any) {
    this._maintenanceStopped = true;
    clearTimeout(this._maintenanceFirst);
    clearInterval(this._maintenanceTimer);
    // A job in progress finishes (each step is a short statement) before the database is released.
    await this._maintenanceRunning;
  },
};
