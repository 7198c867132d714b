// The one database layer: the same SQL on a `pg` pool (cluster) and on PGlite (embedded default).
// Services reach it through db.mixin; nothing else opens connections.
import fs from "node:fs";
import path from "node:path";
import { Pool, types as pgTypes, PoolClient } from "pg";

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Queryable {
  query<T = any>(sql: string, params?: unknown[]): Promise<QueryResult<T>>;
}

export interface Database extends Queryable {
  readonly kind: "pg" | "pglite";
  /** Runs fn inside BEGIN/COMMIT; any throw rolls back. Use only the handle it receives. */
  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  /** Runs fn on one dedicated session (advisory locks are per session). */
  session<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  /**
   * A statement run on every request of a hot path, as a named prepared statement on Postgres:
   * parsed and planned once per pooled connection, not on every call (measured: planning the scan
   * path's statements cost two to three times executing them). Same SQL and result as query.
   */
  prepared<T = any>(name: string, sql: string, params: unknown[]): Promise<QueryResult<T>>;
  /** Several statements at once, no parameters (migrations). */
  exec(sql: string): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
  /** The underlying pg pool, for COPY streams; null on PGlite. */
  readonly pool: Pool | null;
}

// int8 (counts, sequences) as numbers on both drivers: our values stay far below 2^53.
const INT8 = 20;
const parseInt8 = (v: string) => Number(v);

function normaliseRows<T>(rows: any[]): T[] {
  // PGlite hands bytea back as Uint8Array, pg as Buffer: give callers Buffers on both.
  for (const row of rows)
    for (const k in row) {
      const v = row[k];
      if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    }
  return rows as T[];
}

class PgDatabase implements Database {
  readonly kind = "pg" as const;
  readonly pool: Pool;
  constructor(url: string) {
    const types = {
      getTypeParser: (oid: number, format?: any) =>
        oid === INT8 ? parseInt8 : (pgTypes.getTypeParser as any)(oid, format),
    };
    this.pool = new Pool({
      connectionString: url,
      max: Number(process.env.DATABASE_POOL_MAX || 10),
      // A request must fail fast, not hang, when Postgres is gone: the gateway answers 503.
      connectionTimeoutMillis: 3000,
      idleTimeoutMillis: 30000,
      types: types as any,
    });
    // An idle client losing its server must not crash the process; the next query reconnects.
    this.pool.on("error", () => undefined);
  }
  async query<T>(sql: string, params?: unknown[]): Promise<QueryResult<T>> {
    const r = await this.pool.query(sql, params as any[]);
    return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
  }
  async prepared<T>(name: string, sql: string, params: unknown[]): Promise<QueryResult<T>> {
    const r = await this.pool.query({ name, text: sql, values: params as any[] });
    return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
  }
  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // A checked-out client whose server goes away emits 'error'; unheard, that event ends the
    // process. The failure already reaches the caller through its pending query.
    let lost: Error | undefined;
    const onError = (err: Error) => (lost = err);
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      const result = await fn(clientQueryable(client));
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.removeListener("error", onError);
      // A client that lost its server is destroyed, not handed to the next caller.
      client.release(lost);
    }
  }
  async session<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let lost: Error | undefined;
    const onError = (err: Error) => (lost = err);
    client.on("error", onError);
    try {
      return await fn(clientQueryable(client));
    } finally {
      client.removeListener("error", onError);
      client.release(lost);
    }
  }
  async exec(sql: string) {
    await this.pool.query(sql);
  }
  async ping() {
    await this.pool.query("SELECT 1");
  }
  async close() {
    await this.pool.end();
  }
}

function clientQueryable(client: PoolClient): Queryable {
  return {
    async query<T>(sql: string, params?: unknown[]) {
      const r = await client.query(sql, params as any[]);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    },
  };
}

class PGliteDatabase implements Database {
  readonly kind = "pglite" as const;
  readonly pool = null;
  private db: any;
  private ready: Promise<void>;
  constructor(dir: string) {
    // PGlite is ESM with a CJS build; required lazily so cluster nodes never load the WASM.
    const { PGlite } = require("@electric-sql/pglite");
    if (dir !== "memory://") fs.mkdirSync(dir, { recursive: true });
    this.db = new PGlite(dir, { parsers: { [INT8]: parseInt8 } });
    this.ready = this.db.waitReady;
  }
  async query<T>(sql: string, params?: unknown[]): Promise<QueryResult<T>> {
    await this.ready;
    const r = await this.db.query(sql, params);
    return { rows: normaliseRows<T>(r.rows), rowCount: r.affectedRows || r.rows.length };
  }
  prepared<T>(_name: string, sql: string, params: unknown[]): Promise<QueryResult<T>> {
    // One in-process session: nothing to gain from naming the statement.
    return this.query<T>(sql, params);
  }
  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    await this.ready;
    return this.db.transaction(async (tx: any) =>
      fn({
        async query<R>(sql: string, params?: unknown[]) {
          const r = await tx.query(sql, params);
          return { rows: normaliseRows<R>(r.rows), rowCount: r.affectedRows || r.rows.length };
        },
      }),
    );
  }
  async session<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    // One connection only: the whole instance is the session.
    return fn(this);
  }
  async exec(sql: string) {
    await this.ready;
    await this.db.exec(sql);
  }
  async ping() {
    await this.query("SELECT 1");
  }
  async close() {
    await this.ready;
    await this.db.close();
  }
}

// One instance per URL per process: embedded services share one PGlite (it allows one opener).
const instances = new Map<string, { db: Database; refs: number }>();

export function databaseKey(opts: { databaseUrl: string | null; dataDir: string }): string {
  return opts.databaseUrl || (opts.dataDir === "memory://" ? "memory://" : path.join(opts.dataDir, "pglite"));
}

export function acquireDatabase(opts: { databaseUrl: string | null; dataDir: string }): Database {
  const key = databaseKey(opts);
  let entry = instances.get(key);
  if (!entry) {
    const db = opts.databaseUrl ? new PgDatabase(opts.databaseUrl) : new PGliteDatabase(key);
    entry = { db, refs: 0 };
    instances.set(key, entry);
  }
  entry.refs++;
  return entry.db;
}

export async function releaseDatabase(db: Database): Promise<void> {
  for (const [key, entry] of instances)
    if (entry.db === db) {
      if (--entry.refs <= 0) {
        instances.delete(key);
        await db.close();
      }
      return;
    }
}

/**
 * Applies migrations/NNN_name.sql once each, in order, recorded in schema_migrations. An advisory
 * lock serialises nodes that start together; each file runs in its own transaction.
 */
export async function migrate(db: Database, dir = path.join(__dirname, "..", "migrations")): Promise<string[]> {
  const files = fs.readdirSync(dir).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
  const applied: string[] = [];
  await db.session(async (s) => {
    await s.query("SELECT pg_advisory_lock(7261001)");
    try {
      await s.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const done = new Set((await s.query<{ name: string }>("SELECT name FROM schema_migrations")).rows.map((r) => r.name));
      for (const f of files) {
        if (done.has(f)) continue;
        const sql = fs.readFileSync(path.join(dir, f), "utf8");
        if (db.kind === "pglite") {
          try {
            await db.exec(`BEGIN;\n${sql}\n;INSERT INTO schema_migrations(name) VALUES ('${f}');\nCOMMIT;`);
          } catch (err) {
            await db.exec("ROLLBACK").catch(() => undefined);
            throw new Error(`migration ${f} failed: ${(err as Error).message}`);
          }
        } else {
          await s.query("BEGIN");
          try {
            await s.query(sql);
            await s.query("INSERT INTO schema_migrations(name) VALUES ($1)", [f]);
            await s.query("COMMIT");
          } catch (err) {
            await s.query("ROLLBACK");
            throw new Error(`migration ${f} failed: ${(err as Error).message}`);
          }
        }
        applied.push(f);
      }
    } finally {
      await s.query("SELECT pg_advisory_unlock(7261001)");
    }
  });
  return applied;
}
