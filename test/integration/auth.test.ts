// Identity end to end on a real cluster: RS256 tokens and the JWKS, lock-outs per account and per
// network, refresh rotation and reuse detection, key rotation, password reset and invitations by
// mail (.eml files), tenant suspension, tenant users on the factory API, mass assignment.
import crypto from "node:crypto";
import * as jose from "jose";
import { startAdminCluster, AdminCluster, ADMIN, PASSWORD, tokenIn, eventually } from "../support/admin-cluster";
import { until } from "../support/http";

let c: AdminCluster | null = null;
const it = (name: string, fn: (c: AdminCluster) => Promise<void>, t?: number) => global.it(name, async () => (c ? fn(c) : undefined), t);
const from = (ip: string) => ({ "x-forwarded-for": ip });
const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

beforeAll(async () => {
  c = await startAdminCluster("auth", {
    env: { TRUST_PROXY: "127.0.0.1/32", LOGIN_MAX_FAILURES: "4", LOGIN_NETWORK_MAX_FAILURES: "10", LOGIN_LOCK: "600", LOGIN_SLOWDOWN_MS: "100" },
  });
});
afterAll(async () => c?.close());

async function registeredProduct(c: AdminCluster, key: Record<string, string>) {
  const b = await c.api.post("/v1/batches", { name: "b", products: [{ sku: "S", name: "Watch", serial: `SN-${crypto.randomUUID()}` }] }, key);
  expect(b.status).toBe(202);
  await until(() => c.api.get(`/v1/batches/${b.body.id}`, key), (r) => ["registered", "anchoring", "anchored"].includes(r.body.status), 30_000);
  const p = await c.api.get(`/v1/batches/${b.body.id}/products`, key);
  return { batchId: b.body.id, product: p.body.items[0] };
}

describe("login and tokens", () => {
  it("issues RS256 access tokens with iss, aud, a 15-minute exp and a kid from the JWKS", async (c) => {
    const r = await c.api.post("/v1/auth/login", { email: ADMIN.email, password: ADMIN.password });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ token_type: "Bearer", expires_in: 900 });
    expect(r.body.refresh_token).toMatch(/^rt_/);
    const header = jose.decodeProtectedHeader(r.body.access_token);
    expect(header.alg).toBe("RS256");
    const jwks = await c.api.get("/.well-known/jwks.json");
    expect(jwks.body.keys.map((k: any) => k.kid)).toContain(header.kid);
    expect(JSON.stringify(jwks.body)).not.toMatch(/"d"|PRIVATE/);
    const { payload } = await jose.jwtVerify(r.body.access_token, jose.createLocalJWKSet(jwks.body), { algorithms: ["RS256"] });
    expect(payload).toMatchObject({ iss: "voketag", aud: "voketag-api", role: "admin" });
    expect(payload.exp! - payload.iat!).toBe(900);
    // No refresh token or hash is stored in clear.
    const stored = await c.pg.query("SELECT token_hash FROM refresh_tokens WHERE token_hash = $1", [sha256(r.body.refresh_token)]);
    expect(stored.rowCount).toBe(1);
    const clear = await c.pg.query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1", [r.body.refresh_token]);
    expect(clear.rowCount).toBe(0);
  });

  it("answers 401 alike for a wrong password and an unknown account", async (c) => {
    const wrong = await c.api.request("POST", "/v1/auth/login", { body: { email: ADMIN.email, password: "not the password" }, headers: from("10.50.0.1") });
    const unknown = await c.api.request("POST", "/v1/auth/login", { body: { email: "nobody@voketag.test", password: "not the password" }, headers: from("10.50.0.1") });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body.error.message).toBe(unknown.body.error.message);
  });

  it("slows down, then locks an account after repeated failures, even for the right password and from elsewhere", async (c) => {
    const u = await c.user("operator");
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const t0 = Date.now();
      const r = await c.api.request("POST", "/v1/auth/login", { body: { email: u.email, password: `guess ${i} guess guess` }, headers: from(`10.60.${i}.1`) });
      times.push(Date.now() - t0);
      expect(r.status).toBe(401);
    }
    // Past half the limit each attempt waits longer: 100 ms, then 200 ms.
    expect(times[3]).toBeGreaterThanOrEqual(190);
    expect(times[3]).toBeGreaterThan(times[0]);
    const locked = await c.api.request("POST", "/v1/auth/login", { body: { email: u.email, password: PASSWORD }, headers: from("10.61.0.1") });
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(500);
    // An unknown address locks the same way: the lock-out tells nothing about which accounts exist.
    for (let i = 0; i < 4; i++) await c.api.request("POST", "/v1/auth/login", { body: { email: "ghost@voketag.test", password: "guess guess guess" }, headers: from(`10.62.${i}.1`) });
    expect((await c.api.request("POST", "/v1/auth/login", { body: { email: "ghost@voketag.test", password: "x" }, headers: from("10.63.0.1") })).status).toBe(429);
    // Staff lift the lock; the audit has the failures and the lock, without the address typed.
    const list = await c.api.get(`/v1/admin/users/${u.id}`, c.admin);
    expect(list.body.locked_until).toBeTruthy();
    expect((await c.api.post(`/v1/admin/users/${u.id}/unlock`, {}, c.admin)).status).toBe(200);
    expect((await c.api.request("POST", "/v1/auth/login", { body: { email: u.email, password: PASSWORD }, headers: from("10.61.0.2") })).status).toBe(200);
    const audit = await c.api.get(`/v1/admin/audit?target_id=${u.id}&action=auth.*`, c.admin);
    expect(audit.body.items.map((e: any) => e.action)).toEqual(expect.arrayContaining(["auth.login_failed", "auth.locked", "auth.login"]));
    expect(JSON.stringify(audit.body)).not.toContain("guess");
  });

  it("locks a network that fails across many accounts, and only that network", async (c) => {
    const u = await c.user("auditor");
    for (let i = 0; i < 10; i++) {
      const r = await c.api.request("POST", "/v1/auth/login", { body: { email: `spray${i}@voketag.test`, password: "Summer2026!!!!" }, headers: from(`10.70.0.${i + 1}`) });
      expect(r.status).toBe(401);
    }
    // Same /24: the network is locked even for a valid account.
    const same = await c.api.request("POST", "/v1/auth/login", { body: { email: u.email, password: PASSWORD }, headers: from("10.70.0.200") });
    expect(same.status).toBe(429);
    const other = await c.api.request("POST", "/v1/auth/login", { body: { email: u.email, password: PASSWORD }, headers: from("10.71.0.1") });
    expect(other.status).toBe(200);
    const rows = await c.pg.query("SELECT key FROM login_throttle WHERE scope = 'network'");
    for (const r of rows.rows) expect(r.key).toMatch(/^[0-9a-f]{64}$/);
  });

  it("rotates refresh tokens on use; reusing a spent one ends the session; logout revokes", async (c) => {
    const u = await c.user("auditor");
    const first = await c.api.post("/v1/auth/login", { email: u.email, password: PASSWORD });
    const second = await c.api.post("/v1/auth/refresh", { refresh_token: first.body.refresh_token });
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).not.toBe(first.body.refresh_token);
    // The spent token comes back (stolen): refused, and the whole family with it.
    expect((await c.api.post("/v1/auth/refresh", { refresh_token: first.body.refresh_token })).status).toBe(401);
    expect((await c.api.post("/v1/auth/refresh", { refresh_token: second.body.refresh_token })).status).toBe(401);
    const s2 = await c.api.post("/v1/auth/login", { email: u.email, password: PASSWORD });
    expect((await c.api.post("/v1/auth/logout", { refresh_token: s2.body.refresh_token })).status).toBe(204);
    expect((await c.api.post("/v1/auth/refresh", { refresh_token: s2.body.refresh_token })).status).toBe(401);
    expect((await c.api.post("/v1/auth/refresh", { refresh_token: "rt_forged_forged_forged" })).status).toBe(401);
  });

  it("rotates the signing key: a new kid signs, tokens of the old one verify until they expire", async (c) => {
    const before = await c.api.post("/v1/auth/login", { email: ADMIN.email, password: ADMIN.password });
    const oldKid = jose.decodeProtectedHeader(before.body.access_token).kid;
    const op = await c.user("operator");
    expect((await c.api.post("/v1/admin/god/jwt/rotate", {}, op.headers)).status).toBe(403);
    const rot = await c.api.post("/v1/admin/god/jwt/rotate", {}, bearer(before.body.access_token));
    expect(rot.status).toBe(200);
    expect(rot.body.kid).not.toBe(oldKid);
    expect(rot.body.retiring.map((r: any) => r.kid)).toContain(oldKid);
    const after = await c.api.post("/v1/auth/login", { email: ADMIN.email, password: ADMIN.password });
    expect(jose.decodeProtectedHeader(after.body.access_token).kid).toBe(rot.body.kid);
    const jwks = await c.api.get("/.well-known/jwks.json");
    expect(jwks.body.keys.map((k: any) => k.kid)).toEqual(expect.arrayContaining([oldKid, rot.body.kid]));
    // Both tokens work through the gateway (it fetches the JWKS again for the unknown kid).
    expect((await c.api.get("/v1/auth/me", bearer(after.body.access_token))).status).toBe(200);
    expect((await c.api.get("/v1/auth/me", bearer(before.body.access_token))).status).toBe(200);
    // The old key verifies only until its last token expires (JWT_TTL + a minute), then leaves the JWKS.
    const r = await c.pg.query("SELECT retired_at - now() AS left FROM signing_keys WHERE purpose = 'jwt' AND kid = $1", [oldKid]);
    const left = r.rows[0].left;
    expect(left.minutes * 60 + (left.seconds ?? 0)).toBeGreaterThan(900);
    await c.pg.query("UPDATE signing_keys SET retired_at = now() - interval '1 second' WHERE purpose = 'jwt' AND kid = $1", [oldKid]);
    const gone = await eventually(async () => {
      const k = await c.api.get("/.well-known/jwks.json");
      return !k.body.keys.some((x: any) => x.kid === oldKid) ? k : null;
    }, 40_000, 1000);
    expect(gone.body.keys.map((k: any) => k.kid)).toContain(rot.body.kid);
  }, 60_000);
});

describe("password reset and invitations", () => {
  it("always answers 202, mails a single-use 30-minute link, stores only its hash", async (c) => {
    const u = await c.user("tenant_viewer", await c.tenant("Reset Co"));
    const nobody = await c.api.post("/v1/auth/password-reset", { email: "nobody-at-all@voketag.test" });
    const some = await c.api.post("/v1/auth/password-reset", { email: u.email.toUpperCase() });
    expect(nobody.status).toBe(202);
    expect(some.status).toBe(202);
    expect(some.body).toEqual(nobody.body);
    const session = await c.api.post("/v1/auth/login", { email: u.email, password: PASSWORD });
    const mail = await eventually(() => c.mails(u.email)[0]);
    expect(mail).toMatch(/Subject: Reset your VokeTag password/);
    expect(c.mails("nobody-at-all@voketag.test")).toEqual([]);
    const token = tokenIn(mail);
    const t = await c.pg.query("SELECT token_hash, purpose, extract(epoch FROM expires_at - created_at) AS ttl FROM user_tokens WHERE user_id = $1 AND purpose = 'reset'", [u.id]);
    expect(t.rows[0].token_hash).toBe(sha256(token));
    expect(Number(t.rows[0].ttl)).toBeCloseTo(1800, -1);
    expect(JSON.stringify(t.rows)).not.toContain(token);
    expect((await c.api.post("/v1/auth/password-reset/confirm", { token, password: "short" })).status).toBe(400);
    const ok = await c.api.post("/v1/auth/password-reset/confirm", { token, password: "a brand new password 2026" });
    expect(ok.status).toBe(200);
    expect((await c.api.post("/v1/auth/password-reset/confirm", { token, password: "another new password 2026" })).status).toBe(400);
    expect((await c.api.post("/v1/auth/login", { email: u.email, password: PASSWORD })).status).toBe(401);
    expect((await c.api.post("/v1/auth/login", { email: u.email, password: "a brand new password 2026" })).status).toBe(200);
    // Whoever held a session with the old password is out.
    expect((await c.api.post("/v1/auth/refresh", { refresh_token: session.body.refresh_token })).status).toBe(401);
  });

  it("refuses an expired link", async (c) => {
    const u = await c.user("auditor");
    await c.api.post("/v1/auth/password-reset", { email: u.email });
    const token = tokenIn(await eventually(() => c.mails(u.email)[0]));
    await c.pg.query("UPDATE user_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1", [sha256(token)]);
    expect((await c.api.post("/v1/auth/password-reset/confirm", { token, password: "a brand new password 2026" })).status).toBe(400);
  });

  it("invites a user created without a password; the mailed link activates the account", async (c) => {
    const tenant = await c.tenant("Invite Co");
    const email = `invitee.${Date.now()}@voketag.test`;
    const r = await c.api.post("/v1/admin/users", { email, name: "Ivy", role: "tenant_admin", tenant_id: tenant }, c.admin);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ email, role: "tenant_admin", tenant_id: tenant, invited: true });
    expect(JSON.stringify(r.body)).not.toMatch(/password|hash/);
    expect((await c.api.post("/v1/auth/login", { email, password: "anything at all here" })).status).toBe(401);
    const mail = await eventually(() => c.mails(email)[0]);
    expect(mail).toMatch(/Subject: Your VokeTag account/);
    expect(mail).toContain(`${c.base}/admin/#/set-password?token=`);
    expect((await c.api.post("/v1/auth/password-reset/confirm", { token: tokenIn(mail), password: PASSWORD })).status).toBe(200);
    const me = await c.api.get("/v1/auth/me", await c.login(email));
    expect(me.body).toMatchObject({ email, role: "tenant_admin", invited: false, tenant: { id: tenant, name: "Invite Co" } });
  });
});

describe("tenants and tenant users", () => {
  it("suspends a tenant: its keys and users are refused, consumers still verify its products", async (c) => {
    const tenant = await c.tenant("Suspended Co");
    const key = await c.key(tenant);
    const ta = await c.user("tenant_admin", tenant);
    const { product } = await registeredProduct(c, key);
    expect((await c.api.get("/v1/batches", ta.headers)).status).toBe(200);
    const op = await c.user("operator");
    expect((await c.api.post(`/v1/admin/tenants/${tenant}/suspend`, { reason: "unpaid" }, op.headers)).body).toMatchObject({ status: "suspended", suspended_reason: "unpaid" });
    expect((await c.api.get("/v1/batches", key)).status).toBe(401);
    // The gateway caches account status for at most 5 s; suspension also clears that cache.
    await eventually(async () => (await c.api.get("/v1/batches", ta.headers)).status === 401, 7000, 250);
    expect((await c.api.post("/v1/auth/login", { email: ta.email, password: PASSWORD })).status).toBe(401);
    const scan = await c.api.post("/v1/scan", { token: product.token });
    expect(scan.status).toBe(200);
    expect(scan.body.verdict).toBe("authentic");
    expect((await c.api.post(`/v1/admin/tenants/${tenant}/reactivate`, {}, op.headers)).body.status).toBe("active");
    expect((await c.api.get("/v1/batches", key)).status).toBe(200);
    await eventually(async () => (await c.api.get("/v1/batches", ta.headers)).status === 200, 7000, 250);
  });

  it("lets tenant users call the factory API with their JWT, within their role and tenant", async (c) => {
    const mine = await c.tenant("Mine Co");
    const theirs = await c.tenant("Theirs Co");
    const viewer = await c.user("tenant_viewer", mine);
    const tadmin = await c.user("tenant_admin", mine);
    const other = await registeredProduct(c, await c.key(theirs));
    const created = await c.api.post("/v1/batches", { products: [{ sku: "A", name: "A", serial: "JWT-1" }] }, tadmin.headers);
    expect(created.status).toBe(202);
    const denied = await c.api.post("/v1/batches", { products: [{ sku: "A", name: "A", serial: "JWT-2" }] }, viewer.headers);
    expect(denied.status).toBe(403);
    const list = await c.api.get("/v1/batches", viewer.headers);
    expect(list.status).toBe(200);
    expect(list.body.items.map((b: any) => b.id)).toEqual([created.body.id]);
    expect((await c.api.get(`/v1/batches/${other.batchId}`, tadmin.headers)).status).toBe(404);
    // Admin routes stay closed to them beyond their tenant.
    expect((await c.api.get(`/v1/admin/tenants/${theirs}`, tadmin.headers)).status).toBe(404);
    expect((await c.api.get("/v1/admin/tenants", tadmin.headers)).status).toBe(403);
  });

  it("ignores role and tenant fields a caller may not set (mass assignment)", async (c) => {
    const mine = await c.tenant("Assign Co");
    const other = await c.tenant("Other Co");
    const ta = await c.user("tenant_admin", mine);
    const tv = await c.user("tenant_viewer", mine);
    const me = await c.api.request("PATCH", "/v1/auth/me", { body: { name: "Renamed", role: "admin", tenant_id: other, status: "active", email: "x@evil.test" }, headers: ta.headers });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ name: "Renamed", role: "tenant_admin", tenant_id: mine, email: ta.email });
    const up = await c.api.request("PATCH", `/v1/admin/users/${tv.id}`, { body: { role: "admin", tenant_id: other, name: "Viewer 2" }, headers: ta.headers });
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ role: "tenant_viewer", tenant_id: mine, name: "Viewer 2" });
    expect(up.body.ignored_fields.sort()).toEqual(["role", "tenant_id"]);
    const promote = await c.api.request("PATCH", `/v1/admin/users/${tv.id}`, { body: { role: "tenant_admin" }, headers: ta.headers });
    expect(promote.body.role).toBe("tenant_admin");
    expect((await c.api.post("/v1/admin/users", { email: `esc.${Date.now()}@voketag.test`, name: "E", role: "admin" }, ta.headers)).status).toBe(403);
    const placed = await c.api.post("/v1/admin/users", { email: `placed.${Date.now()}@voketag.test`, name: "P", role: "tenant_viewer", tenant_id: other, password: PASSWORD }, ta.headers);
    expect(placed.status).toBe(201);
    expect(placed.body.tenant_id).toBe(mine);
    const row = await c.pg.query("SELECT role, tenant_id FROM users WHERE id = $1", [ta.id]);
    expect(row.rows[0]).toEqual({ role: "tenant_admin", tenant_id: mine });
    // No response carries a password hash.
    const all = await c.api.get("/v1/admin/users?limit=1000", c.admin);
    expect(JSON.stringify(all.body)).not.toMatch(/\$argon2|password_hash/);
  });

  it("disables a user: their access token is refused within seconds and their sessions end", async (c) => {
    const u = await c.user("operator");
    const s = await c.api.post("/v1/auth/login", { email: u.email, password: PASSWORD });
    expect((await c.api.get("/v1/admin/tenants", u.headers)).status).toBe(200);
    expect((await c.api.post(`/v1/admin/users/${u.id}/disable`, {}, c.admin)).body.status).toBe("disabled");
    await eventually(async () => (await c.api.get("/v1/admin/tenants", u.headers)).status === 401, 7000, 250);
    expect((await c.api.post("/v1/auth/refresh", { refresh_token: s.body.refresh_token })).status).toBe(401);
    expect((await c.api.post("/v1/auth/login", { email: u.email, password: PASSWORD })).status).toBe(401);
    // Nobody disables their own account, nor the last admin.
    const me = await c.api.get("/v1/auth/me", c.admin);
    expect((await c.api.post(`/v1/admin/users/${me.body.id}/disable`, {}, c.admin)).status).toBe(409);
  });
});
