// Every admin and auth route listed in /openapi.json, called with no credentials, with a tenant API
// key and with a user of every role: 401 without credentials (unless public), 403 for every role the
// route does not admit, and never 401/403 for a role it admits. The table below is the policy; a
// route missing from it fails the suite, so a new admin route cannot ship unclassified.
import crypto from "node:crypto";
import { startAdminCluster, AdminCluster } from "../support/admin-cluster";
import { listOperations } from "../../lib/openapi";

type Who = "admin" | "operator" | "auditor" | "tenant_admin" | "tenant_viewer";
const ALL: Who[] = ["admin", "operator", "auditor", "tenant_admin", "tenant_viewer"];
const STAFF: Who[] = ["admin", "operator"];
const READERS: Who[] = ["admin", "operator", "auditor"];
const MANAGERS: Who[] = ["admin", "operator", "tenant_admin"];

const POLICY: Record<string, Who[] | "public"> = {
  "GET /.well-known/jwks.json": "public",
  "POST /v1/auth/login": "public",
  "POST /v1/auth/refresh": "public",
  "POST /v1/auth/logout": "public",
  "POST /v1/auth/password-reset": "public",
  "POST /v1/auth/password-reset/confirm": "public",
  "GET /v1/auth/me": ALL,
  "PATCH /v1/auth/me": ALL,
  "GET /admin": "public",
  "GET /admin/{file}": "public",
  "POST /v1/admin/tenants": STAFF,
  "GET /v1/admin/tenants": READERS,
  "GET /v1/admin/tenants/{id}": ALL,
  "PATCH /v1/admin/tenants/{id}": STAFF,
  "POST /v1/admin/tenants/{id}/suspend": STAFF,
  "POST /v1/admin/tenants/{id}/reactivate": STAFF,
  "POST /v1/admin/tenants/{id}/api-keys": STAFF,
  "GET /v1/admin/tenants/{id}/api-keys": READERS,
  "DELETE /v1/admin/tenants/{id}/api-keys/{key_id}": STAFF,
  "GET /v1/admin/tenants/{id}/export": ["admin", "auditor", "tenant_admin"],
  "POST /v1/admin/tenants/{id}/erase-personal-data": ["admin"],
  "POST /v1/admin/users": MANAGERS,
  "GET /v1/admin/users": ALL,
  "GET /v1/admin/users/{id}": ALL,
  "PATCH /v1/admin/users/{id}": MANAGERS,
  "POST /v1/admin/users/{id}/disable": MANAGERS,
  "POST /v1/admin/users/{id}/enable": MANAGERS,
  "POST /v1/admin/users/{id}/unlock": MANAGERS,
  "POST /v1/admin/users/{id}/invite": MANAGERS,
  "GET /v1/admin/audit": ALL,
  "GET /v1/admin/audit/verify": READERS,
  "GET /v1/admin/dashboard": ALL,
  "GET /v1/admin/analytics/fraud": ALL,
  "GET /v1/admin/analytics/geo": ALL,
  "GET /v1/admin/analytics/trends": ALL,
  "GET /v1/admin/scans": ALL,
  "GET /v1/admin/god/system": READERS,
  "GET /v1/admin/god/failures": READERS,
  "POST /v1/admin/god/batches/{id}/retry": STAFF,
  "POST /v1/admin/god/anchors/{id}/retry": STAFF,
  "POST /v1/admin/god/anchor/cycle": STAFF,
  "POST /v1/admin/god/outbox/requeue": STAFF,
  "POST /v1/admin/god/webhooks/requeue": STAFF,
  "POST /v1/admin/god/retry/{id}": STAFF,
  "GET /v1/admin/god/settings": READERS,
  "PUT /v1/admin/god/settings/{key}": ["admin"],
  "DELETE /v1/admin/god/settings/{key}": ["admin"],
  "GET /v1/admin/god/tenants/{id}/risk": READERS,
  "PUT /v1/admin/god/tenants/{id}/risk": ["admin"],
  "POST /v1/admin/god/jwt/rotate": ["admin"],
  "POST /v1/admin/god/maintenance/run": STAFF,
};

const isAdminRoute = (path: string) => /^\/v1\/(admin|auth)(\/|$)/.test(path) || path === "/.well-known/jwks.json" || /^\/admin(\/|$)/.test(path);

let c: AdminCluster | null = null;
const who: Partial<Record<Who, Record<string, string>>> = {};
let key: Record<string, string> = {};

beforeAll(async () => {
  c = await startAdminCluster("roles");
  if (!c) return;
  const tenant = await c.tenant("Roles Co");
  who.admin = c.admin;
  for (const r of ["operator", "auditor"] as Who[]) who[r] = (await c.user(r)).headers;
  for (const r of ["tenant_admin", "tenant_viewer"] as Who[]) who[r] = (await c.user(r, tenant)).headers;
  key = await c.key(tenant);
});
afterAll(async () => c?.close());

/** A concrete path: ids that exist nowhere, the setting key that exists, the console's script. */
function concrete(path: string): string {
  return path
    .replace("{file}", "app.js")
    .replace("{key}", "anchor.interval_seconds")
    .replace(/\{[a-z_]+\}/g, () => crypto.randomUUID());
}

test("every admin route refuses missing credentials, API keys and roles it does not admit", async () => {
  if (!c) return;
  const spec = await c.api.get("/openapi.json");
  const ops = listOperations(spec.body).filter((o) => isAdminRoute(o.path));
  const missing = ops.map((o) => `${o.method} ${o.path}`).filter((k) => !(k in POLICY));
  expect(missing).toEqual([]);
  // Every route of the policy is actually served.
  const served = new Set(ops.map((o) => `${o.method} ${o.path}`));
  expect(Object.keys(POLICY).filter((k) => !served.has(k))).toEqual([]);

  const failures: string[] = [];
  let calls = 0;
  for (const op of ops) {
    const rule = POLICY[`${op.method} ${op.path}`];
    const path = concrete(op.path);
    const send = async (headers: Record<string, string>) => {
      calls++;
      const body = ["POST", "PUT", "PATCH"].includes(op.method) ? {} : undefined;
      const r = await c!.api.request(op.method, path, { body, headers });
      if (r.status >= 500) failures.push(`${op.method} ${path} answered ${r.status}: ${r.text.slice(0, 200)}`);
      return r.status;
    };
    const anon = await send({});
    if (rule === "public") {
      if (anon === 401 || anon === 403) failures.push(`${op.method} ${op.path} is public but answered ${anon} without credentials`);
      continue;
    }
    if (anon !== 401) failures.push(`${op.method} ${op.path} without credentials: ${anon}, expected 401`);
    const withKey = await send(key);
    if (withKey !== 403) failures.push(`${op.method} ${op.path} with a tenant API key: ${withKey}, expected 403`);
    const bad = await send({ authorization: "Bearer not.a.jwt" });
    if (bad !== 401) failures.push(`${op.method} ${op.path} with a garbage token: ${bad}, expected 401`);
    for (const role of ALL) {
      const status = await send(who[role]!);
      const allowed = rule.includes(role);
      if (allowed && (status === 401 || status === 403)) failures.push(`${op.method} ${op.path} as ${role}: ${status}, but the role is admitted`);
      if (!allowed && status !== 403) failures.push(`${op.method} ${op.path} as ${role}: ${status}, expected 403`);
    }
  }
  expect(failures).toEqual([]);
  expect(calls).toBeGreaterThan(300);
}, 120_000);

test("tenant users reading admin data are confined to their tenant", async () => {
  if (!c) return;
  const other = await c.tenant("Other Roles Co");
  const tv = who.tenant_viewer!;
  const me = await c.api.get("/v1/auth/me", tv);
  const mine = me.body.tenant_id;
  for (const path of ["/v1/admin/dashboard", "/v1/admin/analytics/fraud", "/v1/admin/analytics/trends", "/v1/admin/analytics/geo", "/v1/admin/scans", "/v1/admin/audit", "/v1/admin/users"]) {
    const r = await c.api.get(`${path}?tenant_id=${other}`, tv);
    expect(r.status).toBe(200);
    if (r.body.tenant_id !== undefined) expect(r.body.tenant_id).toBe(mine);
    for (const item of r.body.items ?? []) if ("tenant_id" in item) expect(item.tenant_id).toBe(mine);
  }
  expect((await c.api.get(`/v1/admin/tenants/${other}`, tv)).status).toBe(404);
  expect((await c.api.get(`/v1/admin/tenants/${mine}`, tv)).status).toBe(200);
  expect((await c.api.get(`/v1/admin/tenants/${other}/export`, who.tenant_admin!)).status).toBe(404);
});
