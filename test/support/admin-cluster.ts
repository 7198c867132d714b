// A VokeTag cluster for the admin suites (auth, roles, audit, dashboard, god mode, privacy, REPL,
// console): real Postgres, Redis and NATS through createClusterEnv, one or two broker processes,
// the bootstrap admin, helpers to make users of every role, and the mail outbox (.eml files).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { startNode, freePort, NodeHandle } from "./node-process";
import { createClusterEnv, ClusterEnv } from "./cluster";
import { needServices } from "./services";
import { client } from "./http";
import { decodeQuotedPrintable } from "../../lib/mail";

export const ADMIN = { email: "root@voketag.test", password: "correct horse battery staple" };
export const PASSWORD = "a long enough password 42";

export interface AdminCluster {
  base: string;
  api: ReturnType<typeof client>;
  env: Record<string, string>;
  cluster: ClusterEnv;
  nodes: NodeHandle[];
  dataDir: string;
  pg: Client;
  /** Authorization header of the bootstrap admin. */
  admin: Record<string, string>;
  login(email: string, password?: string): Promise<Record<string, string>>;
  /** A tenant, created by the admin. */
  tenant(name: string): Promise<string>;
  /** A user with a password; returns its id and Authorization header. */
  user(role: string, tenantId?: string | null, email?: string): Promise<{ id: string; email: string; headers: Record<string, string> }>;
  /** An API key of the tenant (all scopes). */
  key(tenantId: string): Promise<Record<string, string>>;
  /** Mails written to the outbox for an address, oldest first, decoded. */
  mails(to: string): string[];
  close(): Promise<void>;
}

let seq = 0;

/**
 * Starts the cluster, or resolves null (the suite then skips loudly) when a real service is down.
 * `split` runs two processes: api+scan+admin and factory+anchor+webhooks+maintenance.
 */
export async function startAdminCluster(name: string, opts: { env?: Record<string, string>; split?: boolean } = {}): Promise<AdminCluster | null> {
  if (!(await needServices(name, ["postgres", "redis", "nats"]))) return null;
  const cluster = await createClusterEnv(name);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `voketag-${name}-`));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    ...cluster.env,
    VOKETAG_DATA_DIR: dataDir,
    VERIFICATION_URL_BASE: base,
    VOKETAG_ADMIN_EMAIL: ADMIN.email,
    VOKETAG_ADMIN_PASSWORD: ADMIN.password,
    // Every request of a suite comes from loopback: per-network limits would throttle the suite itself.
    RATE_LIMIT_NETWORK: "100000",
    RATE_LIMIT_DEVICE: "100000",
    RATE_LIMIT_USER: "100000",
    RATE_LIMIT_KEY: "100000",
    LOGIN_SLOWDOWN_MS: "20",
    ANCHOR_INTERVAL: "3600",
    LOG_LEVEL: "info",
    ...opts.env,
  };
  const nodes: NodeHandle[] = [];
  const ready = /HTTP listening|started successfully/;
  if (opts.split) {
    nodes.push(await startNode({ ...env, SERVICES: "factory,anchor,webhooks,maintenance", NODE_ID: `${name}-workers` }, { waitFor: /started successfully/ }));
    nodes.push(await startNode({ ...env, SERVICES: "api,scan,admin", NODE_ID: `${name}-front`, PORT: String(port) }, { waitFor: /HTTP listening/ }));
  } else {
    nodes.push(await startNode({ ...env, NODE_ID: `${name}-node`, PORT: String(port) }, { waitFor: ready }));
  }
  const api = client(base);
  const pg = new Client({ connectionString: cluster.databaseUrl });
  await pg.connect();

  const login = async (email: string, password = PASSWORD) => {
    const r = await api.post("/v1/auth/login", { email, password });
    if (r.status !== 200) throw new Error(`login ${email}: ${r.status} ${r.text}`);
    return { authorization: `Bearer ${r.body.access_token}` };
  };
  const admin = await login(ADMIN.email, ADMIN.password);
  const ac: AdminCluster = {
    base,
    api,
    env,
    cluster,
    nodes,
    dataDir,
    pg,
    admin,
    login,
    async tenant(tname) {
      const r = await api.post("/v1/admin/tenants", { name: tname }, admin);
      if (r.status !== 201) throw new Error(`tenant: ${r.status} ${r.text}`);
      return r.body.id;
    },
    async user(role, tenantId = null, email) {
      const address = email ?? `${role}.${++seq}.${Date.now()}@voketag.test`;
      const r = await api.post("/v1/admin/users", { email: address, name: `${role} ${seq}`, role, tenant_id: tenantId ?? undefined, password: PASSWORD }, admin);
      if (r.status !== 201) throw new Error(`user: ${r.status} ${r.text}`);
      return { id: r.body.id, email: address, headers: await login(address) };
    },
    async key(tenantId) {
      const r = await api.post(`/v1/admin/tenants/${tenantId}/api-keys`, { name: "test key" }, admin);
      if (r.status !== 201) throw new Error(`key: ${r.status} ${r.text}`);
      return { "x-api-key": r.body.key };
    },
    mails(to) {
      const dir = path.join(dataDir, "outbox");
      if (!fs.existsSync(dir)) return [];
      return fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".eml"))
        .sort()
        .map((f) => fs.readFileSync(path.join(dir, f), "utf8"))
        .filter((m) => new RegExp(`^To: ${to.replace(/[.+]/g, "\\$&")}$`, "mi").test(m))
        .map(decodeQuotedPrintable);
    },
    async close() {
      await pg.end().catch(() => undefined);
      for (const n of [...nodes].reverse()) await n.stop().catch(() => undefined);
      await cluster.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return ac;
}

/** The set-password token in a mail. */
export function tokenIn(mail: string): string {
  const m = /set-password\?token=([A-Za-z0-9_%-]+)/.exec(mail);
  if (!m) throw new Error(`no set-password link in:\n${mail.slice(0, 2000)}`);
  return decodeURIComponent(m[1]);
}

/** Waits until `fn` returns something truthy. */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 100): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
