// Starting a scenario's cluster through the harness, with the cleanup registered, and seeding it
// through the REST API (admin login, a tenant, its key, a batch whose tokens the load scans).
import { ClusterHarness, GroupSpec } from "../harness/cluster";
import type { ClusterEnvOptions } from "../test/support/cluster";
import { seedBatch } from "../harness/seed";
import { client, until } from "../test/support/http";
import { onCleanup, tempDir } from "./infra";
import type { Recorder } from "./report";

export const CHAOS_ADMIN = { email: "admin@chaos.test", password: "chaos admin password 2026" };

/** Settings every chaos cluster shares: limits out of the way of the load, a quick outbox relay. */
export function chaosEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    VOKETAG_ADMIN_EMAIL: CHAOS_ADMIN.email,
    VOKETAG_ADMIN_PASSWORD: CHAOS_ADMIN.password,
    RATE_LIMIT_NETWORK: "10000000",
    RATE_LIMIT_DEVICE: "10000000",
    RATE_LIMIT_KEY: "10000000",
    RATE_LIMIT_USER: "10000000",
    ANCHOR_INTERVAL: "3600",
    OUTBOX_POLL_MS: "200",
    ...extra,
  };
}

export async function startCluster(
  rec: Recorder,
  opts: { name: string; groups: GroupSpec[]; env?: Record<string, string>; infra?: ClusterEnvOptions },
): Promise<ClusterHarness> {
  const t0 = Date.now();
  // Each cluster keeps whatever it writes to disk (mail outbox, ...) in a directory of its own.
  const h = await ClusterHarness.start({ name: opts.name, groups: opts.groups, env: chaosEnv({ VOKETAG_DATA_DIR: tempDir(opts.name), ...opts.env }), infra: opts.infra });
  onCleanup(
    `cluster ${opts.name}`,
    () => h.stop(),
    () => {
      for (const n of h.nodes) if (n.handle.proc.pid && n.handle.proc.exitCode === null) process.kill(n.handle.proc.pid, "SIGKILL");
    },
  );
  rec.log(`cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${h.nodes.map((n) => `${n.id}[${n.env.SERVICES}]`).join(" ")} at ${h.baseUrl}`);
  return h;
}

export interface Tenant {
  jwt: Record<string, string>;
  key: Record<string, string>;
  tenantId: string;
}

/** An admin login and a fresh tenant with an all-scopes key. */
export async function seedTenant(baseUrl: string, name = `Chaos ${Date.now()}`): Promise<Tenant> {
  const api = client(baseUrl);
  // The gateway answers once it sees the admin service; right after a start that may take a moment.
  const login = await until(() => api.post("/v1/auth/login", CHAOS_ADMIN), (r) => r.status === 200, 30_000, 500);
  const jwt = { authorization: `Bearer ${login.body.access_token}` };
  const t = await api.post("/v1/admin/tenants", { name }, jwt);
  if (t.status !== 201) throw new Error(`tenant: ${t.status} ${t.text}`);
  const k = await api.post(`/v1/admin/tenants/${t.body.id}/api-keys`, { name: "chaos" }, jwt);
  if (k.status !== 201) throw new Error(`key: ${k.status} ${k.text}`);
  return { jwt, key: { "x-api-key": k.body.key }, tenantId: t.body.id };
}

/** A registered batch of `products` products; its tokens feed the scan load. */
export async function seedScanTokens(baseUrl: string, products = 200) {
  const api = client(baseUrl);
  await until(() => api.post("/v1/auth/login", CHAOS_ADMIN), (r) => r.status === 200, 30_000, 500);
  return seedBatch(baseUrl, CHAOS_ADMIN, products);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const secs = (ms: number) => Math.round(ms / 100) / 10;

/** Registers a small JSON batch for a tenant and waits for it: its id and its products' tokens. */
export async function registerBatch(baseUrl: string, key: Record<string, string>, n: number, label = "chaos") {
  const api = client(baseUrl);
  const stamp = `${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  const r = await api.post("/v1/batches", { name: label, products: Array.from({ length: n }, (_, i) => ({ sku: "CH", name: "Chaos product", serial: `${stamp}-${i}` })) }, key);
  if (r.status !== 202) throw new Error(`batch: ${r.status} ${r.text.slice(0, 300)}`);
  const b = await until(() => api.get(`/v1/batches/${r.body.id}`, key), (x) => ["registered", "anchoring", "anchored", "failed"].includes(x.body?.status), 60_000, 250);
  if (b.body.status === "failed") throw new Error(`batch failed: ${JSON.stringify(b.body.errors)}`);
  const products = await api.get(`/v1/batches/${r.body.id}/products?limit=1000`, key);
  return { id: r.body.id as string, tokens: products.body.items.map((p: any) => p.token as string), ids: products.body.items.map((p: any) => p.id as string) };
}
