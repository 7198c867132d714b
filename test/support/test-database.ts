// A throwaway Postgres database for in-process broker tests. (PGlite cannot load inside jest's VM:
// its CommonJS build uses dynamic import(), which jest refuses without --experimental-vm-modules.)
import crypto from "node:crypto";
import { Client } from "pg";
import { SERVICES } from "./services";

export async function createTestDatabase(name: string): Promise<{ url: string; drop(): Promise<void> }> {
  const db = `vk_${name}_${crypto.randomBytes(4).toString("hex")}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  const admin = new Client({ connectionString: SERVICES.postgres.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  const u = new URL(SERVICES.postgres.url);
  u.pathname = `/${db}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new Client({ connectionString: SERVICES.postgres.url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
      await c.end();
    },
  };
}
