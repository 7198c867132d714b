// Database access for a service: `this.db` (shared per process), migrations applied once at start,
// and connection failures turned into 503 + Retry-After instead of 500s.
import type { ServiceSchema } from "moleculer";
import { acquireDatabase, releaseDatabase, migrate, Database } from "./database";
import { ConfigMixin } from "./config.mixin";
import { isConnectionError, unavailable } from "./errors";

const migrated = new WeakMap<Database, Promise<unknown>>();

export const DbMixin: Partial<ServiceSchema> = {
  mixins: [ConfigMixin],
  hooks: {
    error: {
      "*"(this: any, _ctx: any, err: any) {
        if (isConnectionError(err)) throw unavailable("database unavailable");
        throw err;
      },
    },
  },
  actions: {
    /** This service's database answers (the gateway's /v1/ready asks each service; anchor adds its chain). */
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
  },
  created(this: any) {
    this.db = acquireDatabase(this.config);
  },
  async started(this: any) {
    let p = migrated.get(this.db);
    if (!p) {
      p = migrate(this.db).then((applied) => {
        if (applied.length) this.logger.info({ applied }, "migrations applied");
      });
      migrated.set(this.db, p);
    }
    await p;
  },
  async stopped(this: any) {
    await releaseDatabase(this.db);
  },
};
