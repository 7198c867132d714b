// Admin: login (RS256 JWTs, rotating refresh tokens, throttled per account and per network), users
// and roles, invitations and password resets by mail, tenants and their suspension, the audit
// trail's read side, dashboard and analytics, privacy (export, erasure, retention) and god mode.
// Role checks happen twice: the gateway refuses a route's wrong roles (`roles`), and every handler
// confines tenant users to their own tenant.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { ServiceSchema, Context } from "moleculer";
import { DbMixin } from "../mixins/db.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { AuditMixin } from "../mixins/audit.mixin";
import { SettingsMixin } from "../mixins/settings.mixin";
import { MaintenanceMixin, MaintenanceJob } from "../mixins/maintenance.mixin";
import { storedKeys } from "../mixins/signing-keys";
import { badRequest, conflict, forbidden, notFound, tooMany, unauthorized, unavailable, cursorParam } from "../mixins/errors";
import { principalOf, Principal } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { generateSigningKey, parsePrivateKeys, publicJwk, signAccessToken, SigningKey } from "../lib/jwt";
import { hashPassword, verifyPassword, passwordProblem } from "../lib/password";
import { listParams, page, DEFAULT_LIMIT } from "../lib/cursor";
import { hashNetwork } from "../lib/fingerprint";
import { accountKey, liveFailures, lockedFor, slowdownMs, ThrottlePolicy } from "../lib/login-throttle";
import {
  ADMIN_ONLY, EVERYONE, READERS, STAFF, USER_MANAGERS, canManageUser, canSeeUser, isPlatformReader, isTenantRole, newUserPlacement,
  permittedUserChanges, ROLES,
} from "../lib/admin-roles";
import { createMailer, renderAccountMail, setPasswordLink, Mailer } from "../lib/mail";
import { pagedStream, concatStreams } from "../lib/paged-stream";
import { AUDIT_COLUMNS, AUDIT_CSV_HEADER, auditCondition, auditCsvLine, auditView, auditExportView, AuditFilter } from "../lib/audit-export";
import { ChainVerifier } from "../lib/ledger";
import { fillDays, gridCellOf, gridIndexSql, GRID_SIZES, rate, RangeProblem, timeRange, VERDICTS } from "../lib/analytics";
import { checkRuntimeSetting, RUNTIME_SETTINGS, runtimeSetting } from "../lib/runtime-settings";
import { DEFAULT_RISK_CONFIG, mergeRiskConfig, RiskConfigError } from "../lib/risk";
import { worldShapesJson } from "../lib/world-map";
import { arrayOf, media, ok, page as pageOf } from "../lib/schemas/common";
import {
  AdminScan, AnchorCycle, AnchorRetried, AnythingRetried, AuditEntry, AuditExportEntry, AuditVerification, BatchRetried, Dashboard,
  ErasureResult, Failures, FraudAnalytics, GeoAnalytics, InviteSent, Jwks, JwtRotated, MaintenanceRun, Me, OutboxRequeued, ResetAccepted, ResetConfirmed,
  RuntimeSettings, RuntimeSettingView, SystemStatus, Tenant, TenantApiKey, TenantExportLine, TenantRisk, TenantRiskSet, TenantWithCounts, TokenPair, TrendAnalytics, User,
  UserUpdated, WebhooksRequeued, WorldShapes,
} from "../lib/schemas/admin";
import { ApiKeyCreated } from "../lib/schemas/factory";

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");
const newSecret = () => crypto.randomBytes(32).toString("base64url");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const JWT_KEY_CACHE_MS = 30_000;
const RESETS_PER_HOUR = 5;
const EXPORT_PAGE = 1000;
const CONSOLE_DIR = path.join(__dirname, "..", "console");
const CONSOLE_FILES: Record<string, string> = {
  "app.js": "application/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

const uuid = { type: "uuid" };
const optionalUuid = { type: "uuid", optional: true };
const when = { type: "date", convert: true, optional: true };
const rangeParams = { from: when, to: when, days: { type: "number", integer: true, min: 1, max: 366, optional: true, convert: true }, tenant_id: optionalUuid };
const passwordParam = { type: "string", min: 1, max: 256 };

function userView(u: any) {
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    role: u.role,
    tenant_id: u.tenant_id,
    status: u.status,
    // An invited account has no password until its holder sets one through the mailed link.
    invited: !u.password_hash && u.status === "active",
    locked_until: u.locked_until && new Date(u.locked_until) > new Date() ? u.locked_until : null,
    last_login_at: u.last_login_at ?? null,
    created_at: u.created_at,
    updated_at: u.updated_at ?? null,
    disabled_at: u.disabled_at ?? null,
  };
}

function tenantView(t: any) {
  return { id: t.id, name: t.name, status: t.status, suspended_at: t.suspended_at ?? null, suspended_reason: t.suspended_reason ?? null, created_at: t.created_at, updated_at: t.updated_at ?? null };
}

const keyView = (k: any) => ({ id: k.id, name: k.name, prefix: k.prefix, scopes: k.scopes, created_by: k.created_by, created_at: k.created_at, revoked_at: k.revoked_at, last_used_at: k.last_used_at });

/** Counts by a key column as an object, every expected key present. */
function countsBy(rows: any[], key: string, expected: readonly string[] = []) {
  const out: Record<string, number> = Object.fromEntries(expected.map((k) => [k, 0]));
  for (const r of rows) out[r[key]] = Number(r.n);
  return out;
}

function verdictRates(r: any) {
  const n = Number(r.n ?? 0);
  return {
    scans: n,
    suspicious: Number(r.suspicious ?? 0),
    invalid: Number(r.invalid ?? 0),
    recalled: Number(r.recalled ?? 0),
    suspicious_rate: rate(r.suspicious ?? 0, n),
    invalid_rate: rate(r.invalid ?? 0, n),
  };
}

const VERDICT_COUNTS = `count(*) AS n, count(*) FILTER (WHERE s.verdict = 'suspicious') AS suspicious,
  count(*) FILTER (WHERE s.verdict = 'invalid') AS invalid, count(*) FILTER (WHERE s.verdict = 'recalled') AS recalled`;

const AdminService: ServiceSchema = {
  name: "admin",
  mixins: [DbMixin, IdempotencyMixin, AuditMixin, SettingsMixin, MaintenanceMixin],
  actions: {
    // ---- Identity ------------------------------------------------------------------------------
    jwks: {
      rest: { method: "GET", fullPath: "/.well-known/jwks.json" },
      responses: { 200: ok("The JSON Web Key Set", Jwks) },
      auth: "public",
      summary: "Public keys that verify VokeTag access tokens (during a rotation, the old key too)",
      async handler(this: any) {
        const { verify } = await this.signingKeys();
        return { keys: verify.map(publicJwk) };
      },
    } as any,

    /** Asked by the gateway on every JWT request (cached 5 s): is the account (and its tenant) still active? */
    principalStatus: {
      visibility: "public",
      cache: { keys: ["user_id", "tenant_id", "role"], ttl: 5 },
      params: { user_id: "string", tenant_id: { type: "string", nullable: true, optional: true }, role: { type: "string", optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        if (!UUID_RE.test(ctx.params.user_id)) return { active: false, reason: "unknown account" };
        const { rows } = await this.db.query(
          "SELECT u.status, u.role, u.tenant_id, t.status AS tenant_status FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.id = $1",
          [ctx.params.user_id],
        );
        const r = rows[0];
        if (!r || r.status !== "active") return { active: false, reason: "user is disabled" };
        // A token minted before the account moved tenant speaks for the old one: refuse it.
        if ((r.tenant_id ?? null) !== (ctx.params.tenant_id ?? null)) return { active: false, reason: "the account's tenant has changed" };
        // Given the token's role (the gateway may pass it), a token minted before a role change is refused.
        if (ctx.params.role !== undefined && ctx.params.role !== r.role) return { active: false, reason: "the account's role has changed: sign in again" };
        if (r.tenant_status && r.tenant_status !== "active") return { active: false, reason: "tenant is suspended" };
        return { active: true };
      },
    },

    login: {
      rest: { method: "POST", fullPath: "/v1/auth/login" },
      responses: { 200: ok("An access token and a refresh token", TokenPair) },
      errors: [401],
      auth: "public",
      summary: "Log in with email and password: an access token (15 min) and a refresh token. 429 after repeated failures.",
      params: { email: { type: "string", min: 3, max: 320 }, password: passwordParam },
      async handler(this: any, ctx: Context<any, any>) {
        const email = String(ctx.params.email).trim().toLowerCase();
        const acct = accountKey(email);
        const net = await this.networkOf(ctx);
        const now = new Date();
        const { rows: th } = await this.db.query(
          "SELECT scope, failures, window_start, locked_until FROM login_throttle WHERE (scope = 'account' AND key = $1) OR (scope = 'network' AND key = $2)",
          [acct, net],
        );
        const a = th.find((r: any) => r.scope === "account");
        const n = th.find((r: any) => r.scope === "network");
        const wait = Math.max(lockedFor(a, now), lockedFor(n, now));
        if (wait) throw tooMany("too many failed logins: try again later", wait);
        // Past half the limit every attempt is held back, doubling: guessing gets slow before it gets locked.
        const delay = Math.max(slowdownMs(liveFailures(a, now, this.accountPolicy()), this.accountPolicy()), slowdownMs(liveFailures(n, now, this.networkPolicy()), this.networkPolicy()));
        if (delay) await sleep(delay);
        const { rows } = await this.db.query(
          "SELECT u.*, t.status AS tenant_status FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE lower(u.email) = $1",
          [email],
        );
        const user = rows[0];
        const valid = await verifyPassword(user?.password_hash ?? null, ctx.params.password);
        if (!valid || !user) {
          const locked = await this.loginFailed(ctx, acct, net, user);
          if (locked) ctx.meta.$responseHeaders = { "Retry-After": String(locked) };
          throw unauthorized("invalid email or password");
        }
        if (user.status !== "active") throw unauthorized("this account is disabled");
        if (user.tenant_status && user.tenant_status !== "active") throw unauthorized("this account's tenant is suspended");
        await this.db.tx(async (q: Queryable) => {
          await q.query("DELETE FROM login_throttle WHERE scope = 'account' AND key = $1", [acct]);
          await q.query("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = now() WHERE id = $1", [user.id]);
          await this.audit(q, this.asUser(ctx, user), { action: "auth.login", target_type: "user", target_id: user.id, tenant_id: user.tenant_id });
        });
        return this.issueTokens(user, crypto.randomUUID());
      },
    } as any,

    refresh: {
      rest: { method: "POST", fullPath: "/v1/auth/refresh" },
      responses: { 200: ok("A new token pair", TokenPair) },
      errors: [401],
      auth: "public",
      summary: "Trade a refresh token for new tokens (the old one is spent; reusing a spent one ends the session)",
      params: { refresh_token: { type: "string", min: 10, max: 200 } },
      async handler(this: any, ctx: Context<any, any>) {
        const hash = sha256(ctx.params.refresh_token);
        const outcome = await this.db.tx(async (q: Queryable) => {
          const { rows } = await q.query("SELECT * FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE", [hash]);
          const t = rows[0];
          if (!t) return null;
          if (t.revoked_at) {
            // A spent token used again means it was copied: end the whole family.
            const r = await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL", [t.family]);
            if (r.rowCount)
              await this.audit(q, ctx, { action: "auth.refresh_reuse", target_type: "user", target_id: t.user_id, after: { family: t.family, revoked: r.rowCount } });
            return null;
          }
          if (new Date(t.expires_at) < new Date()) return null;
          await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE id = $1", [t.id]);
          return t;
        });
        if (!outcome) throw unauthorized("invalid refresh token");
        const { rows } = await this.db.query("SELECT u.*, t.status AS tenant_status FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.id = $1", [outcome.user_id]);
        const user = rows[0];
        if (!user || user.status !== "active" || (user.tenant_status && user.tenant_status !== "active")) throw unauthorized("account disabled");
        return this.issueTokens(user, outcome.family);
      },
    } as any,

    logout: {
      rest: { method: "POST", fullPath: "/v1/auth/logout" },
      responses: { 204: { description: "The session is ended (also when the token was unknown or already spent)" } },
      auth: "public",
      summary: "End a session: its refresh token and every token rotated from it are revoked",
      params: { refresh_token: { type: "string", min: 10, max: 200 } },
      async handler(this: any, ctx: Context<any, any>) {
        await this.db.tx(async (q: Queryable) => {
          const { rows } = await q.query("SELECT user_id, family FROM refresh_tokens WHERE token_hash = $1", [sha256(ctx.params.refresh_token)]);
          if (!rows.length) return;
          const r = await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL", [rows[0].family]);
          if (r.rowCount) await this.audit(q, this.asUser(ctx, { id: rows[0].user_id }), { action: "auth.logout", target_type: "user", target_id: rows[0].user_id });
        });
        ctx.meta.$statusCode = 204;
        return null;
      },
    } as any,

    passwordReset: {
      rest: { method: "POST", fullPath: "/v1/auth/password-reset" },
      responses: { 202: ok("Accepted (whether or not the address has an account)", ResetAccepted) },
      auth: "public",
      summary: "Ask for a password reset link by mail. Always 202, whether or not the address has an account.",
      successStatus: 202,
      params: { email: { type: "string", min: 3, max: 320 } },
      handler(this: any, ctx: Context<any, any>) {
        const email = String(ctx.params.email).trim().toLowerCase();
        // The work happens after the answer: neither the status nor the timing tells whether the account exists.
        const actx = { meta: { ...ctx.meta }, requestID: ctx.requestID };
        setImmediate(() => this.startReset(actx, email).catch((err: Error) => this.logger.warn({ err: err.message }, "password reset request failed")));
        ctx.meta.$statusCode = 202;
        return { status: "accepted", message: "If an account exists for this address, a reset link is on its way." };
      },
    } as any,

    passwordResetConfirm: {
      rest: { method: "POST", fullPath: "/v1/auth/password-reset/confirm" },
      responses: { 200: ok("The password is set", ResetConfirmed) },
      auth: "public",
      summary: "Set a password with the token from a reset or invitation mail (single use)",
      params: { token: { type: "string", min: 20, max: 200 }, password: passwordParam },
      async handler(this: any, ctx: Context<any, any>) {
        const problem = passwordProblem(ctx.params.password);
        if (problem) throw badRequest(problem);
        const hash = await hashPassword(ctx.params.password);
        const user = await this.db.tx(async (q: Queryable) => {
          const t = await q.query(
            "UPDATE user_tokens SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id, purpose",
            [sha256(ctx.params.token)],
          );
          const tok = t.rows[0];
          if (!tok) return null;
          const u = (await q.query("SELECT * FROM users WHERE id = $1 FOR UPDATE", [tok.user_id])).rows[0];
          if (!u || u.status !== "active") return null;
          await q.query(
            "UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now(), failed_logins = 0, locked_until = NULL WHERE id = $1",
            [u.id, hash],
          );
          // Every other outstanding link dies, and every session: whoever knew the old password is out.
          await q.query("UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", [u.id]);
          await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", [u.id]);
          await q.query("DELETE FROM login_throttle WHERE scope = 'account' AND key = $1", [accountKey(u.email)]);
          await this.audit(q, this.asUser(ctx, u), { action: tok.purpose === "invite" ? "user.invite_accepted" : "user.password_reset", target_type: "user", target_id: u.id, tenant_id: u.tenant_id });
          return u;
        });
        if (!user) throw badRequest("this link is invalid, already used or expired: ask for a new one");
        return { status: "ok", email: user.email };
      },
    } as any,

    me: {
      rest: { method: "GET", fullPath: "/v1/auth/me" },
      responses: { 200: ok("Your account", Me) },
      auth: "user",
      summary: "Your own account, with your tenant",
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const u = await this.userRow(this.db, p.id);
        if (!u) throw notFound("user");
        const t = u.tenant_id ? (await this.db.query("SELECT id, name, status FROM tenants WHERE id = $1", [u.tenant_id])).rows[0] : null;
        return { ...userView(u), tenant: t ?? null };
      },
    } as any,

    updateMe: {
      rest: { method: "PATCH", fullPath: "/v1/auth/me" },
      responses: { 200: ok("Your account", User) },
      auth: "user",
      summary: "Change your name or your password (current_password required); other fields are ignored",
      params: { name: { type: "string", min: 1, max: 200, optional: true, trim: true }, password: { ...passwordParam, optional: true }, current_password: { ...passwordParam, optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const u = await this.userRow(this.db, p.id);
        if (!u) throw notFound("user");
        let hash: string | null = null;
        if (ctx.params.password !== undefined) {
          if (!(await verifyPassword(u.password_hash, ctx.params.current_password ?? ""))) throw forbidden("current_password is wrong");
          const problem = passwordProblem(ctx.params.password);
          if (problem) throw badRequest(problem);
          hash = await hashPassword(ctx.params.password);
        }
        const row = await this.db.tx(async (q: Queryable) => {
          const r = await q.query(
            `UPDATE users SET name = coalesce($2, name), password_hash = coalesce($3, password_hash),
                password_changed_at = CASE WHEN $3::text IS NULL THEN password_changed_at ELSE now() END, updated_at = now()
              WHERE id = $1 RETURNING *`,
            [u.id, ctx.params.name ?? null, hash],
          );
          await this.audit(q, ctx, { action: hash ? "user.password_change" : "user.update", target_type: "user", target_id: u.id, tenant_id: u.tenant_id, before: { name: u.name }, after: { name: r.rows[0].name } });
          return r.rows[0];
        });
        return userView(row);
      },
    } as any,

    // ---- Tenants -------------------------------------------------------------------------------
    createTenant: {
      rest: { method: "POST", fullPath: "/v1/admin/tenants" },
      responses: { 201: ok("The new tenant", Tenant) },
      errors: [409, 422],
      auth: "user",
      roles: STAFF,
      summary: "Create a tenant (a manufacturer)",
      successStatus: 201,
      params: { name: { type: "string", min: 1, max: 200, trim: true } },
      async handler(this: any, ctx: Context<any, any>) {
        return this.idempotent(ctx, async () => {
          const tenant = await this.db.tx(async (q: Queryable) => {
            const { rows } = await q.query("INSERT INTO tenants (name) VALUES ($1) RETURNING *", [ctx.params.name]);
            await this.audit(q, ctx, { action: "tenant.create", target_type: "tenant", target_id: rows[0].id, tenant_id: rows[0].id, after: { name: rows[0].name } });
            return rows[0];
          });
          ctx.meta.$statusCode = 201;
          ctx.meta.$location = `/v1/admin/tenants/${tenant.id}`;
          return tenantView(tenant);
        });
      },
    } as any,

    listTenants: {
      rest: { method: "GET", fullPath: "/v1/admin/tenants" },
      responses: { 200: ok("One page of tenants", pageOf(Tenant)) },
      auth: "user",
      roles: READERS,
      summary: "List tenants, oldest first (filter by status or a name prefix)",
      params: { ...listParams, status: { type: "enum", values: ["active", "suspended"], optional: true }, q: { type: "string", max: 200, optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT * FROM tenants WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1::timestamptz, $2::uuid))
              AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR lower(name) LIKE lower($4) || '%')
            ORDER BY created_at, id LIMIT $5`,
          [c?.[0] ?? null, c?.[1] ?? null, ctx.params.status ?? null, ctx.params.q ? ctx.params.q.replace(/[\\%_]/g, (x: string) => `\\${x}`) : null, limit + 1],
        );
        const p = page(rows, limit, (t: any) => [new Date(t.created_at).toISOString(), t.id]);
        return { items: p.items.map(tenantView), next_cursor: p.next_cursor };
      },
    } as any,

    getTenant: {
      rest: { method: "GET", fullPath: "/v1/admin/tenants/:id" },
      responses: { 200: ok("The tenant with its counts", TenantWithCounts) },
      auth: "user",
      roles: EVERYONE,
      summary: "A tenant with its counts (tenant users: their own tenant only)",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        const t = await this.tenantFor(ctx, ctx.params.id);
        const { rows } = await this.db.query(
          `SELECT (SELECT count(*) FROM users WHERE tenant_id = $1) AS users,
                  (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL) AS api_keys,
                  (SELECT count(*) FROM batches WHERE tenant_id = $1) AS batches,
                  (SELECT count(*) FROM products WHERE tenant_id = $1) AS products`,
          [t.id],
        );
        return { ...tenantView(t), counts: rows[0] };
      },
    } as any,

    updateTenant: {
      rest: { method: "PATCH", fullPath: "/v1/admin/tenants/:id" },
      responses: { 200: ok("The tenant", Tenant) },
      auth: "user",
      roles: STAFF,
      summary: "Rename a tenant (status changes go through suspend and reactivate)",
      params: { id: uuid, name: { type: "string", min: 1, max: 200, trim: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const row = await this.db.tx(async (q: Queryable) => {
          const before = (await q.query("SELECT * FROM tenants WHERE id = $1 FOR UPDATE", [ctx.params.id])).rows[0];
          if (!before) throw notFound("tenant");
          const r = await q.query("UPDATE tenants SET name = $2, updated_at = now() WHERE id = $1 RETURNING *", [ctx.params.id, ctx.params.name]);
          await this.audit(q, ctx, { action: "tenant.update", target_type: "tenant", target_id: before.id, tenant_id: before.id, before: { name: before.name }, after: { name: r.rows[0].name } });
          return r.rows[0];
        });
        return tenantView(row);
      },
    } as any,

    suspendTenant: {
      rest: { method: "POST", fullPath: "/v1/admin/tenants/:id/suspend" },
      responses: { 200: ok("The tenant", Tenant) },
      auth: "user",
      roles: STAFF,
      summary: "Suspend a tenant: its API keys and users are refused (within 5 s); consumers still verify its products",
      params: { id: uuid, reason: { type: "string", max: 500, optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        return tenantView(await this.setTenantStatus(ctx, ctx.params.id, "suspended", ctx.params.reason ?? null));
      },
    } as any,

    reactivateTenant: {
      rest: { method: "POST", fullPath: "/v1/admin/tenants/:id/reactivate" },
      responses: { 200: ok("The tenant", Tenant) },
      auth: "user",
      roles: STAFF,
      summary: "Lift a tenant's suspension",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        return tenantView(await this.setTenantStatus(ctx, ctx.params.id, "active", null));
      },
    } as any,

    createTenantKey: {
      rest: { method: "POST", fullPath: "/v1/admin/tenants/:id/api-keys" },
      responses: { 201: ok("The new key (the secret is shown only here)", ApiKeyCreated) },
      errors: [409, 422],
      auth: "user",
      roles: STAFF,
      summary: "Create an API key for a tenant (the key is shown only in this response)",
      successStatus: 201,
      params: { id: uuid, name: { type: "string", min: 1, max: 100 }, scopes: { type: "array", items: "string", optional: true, max: 20 } },
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const t = await this.db.query("SELECT 1 FROM tenants WHERE id = $1", [ctx.params.id]);
        if (!t.rowCount) throw notFound("tenant");
        const key: any = await ctx.call("factory.issueKey", { tenant_id: ctx.params.id, name: ctx.params.name, scopes: ctx.params.scopes, created_by: `user:${p.id}` });
        // factory.issueKey audits the creation (api_key.create) with this staff member as the actor.
        ctx.meta.principal = p;
        ctx.meta.$statusCode = 201;
        return key;
      },
    } as any,

    listTenantKeys: {
      rest: { method: "GET", fullPath: "/v1/admin/tenants/:id/api-keys" },
      responses: { 200: ok("One page of the tenant's keys", pageOf(TenantApiKey)) },
      auth: "user",
      roles: READERS,
      summary: "A tenant's API keys (never the secret)",
      params: { id: uuid, ...listParams },
      async handler(this: any, ctx: Context<any, any>) {
        await this.tenantFor(ctx, ctx.params.id);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT * FROM api_keys WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
            ORDER BY created_at, id LIMIT $4`,
          [ctx.params.id, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        const p = page(rows, limit, (k: any) => [new Date(k.created_at).toISOString(), k.id]);
        return { items: p.items.map(keyView), next_cursor: p.next_cursor };
      },
    } as any,

    revokeTenantKey: {
      rest: { method: "DELETE", fullPath: "/v1/admin/tenants/:id/api-keys/:key_id" },
      responses: { 200: ok("The revoked key", TenantApiKey) },
      auth: "user",
      roles: STAFF,
      summary: "Revoke one of a tenant's API keys",
      params: { id: uuid, key_id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        await this.tenantFor(ctx, ctx.params.id);
        const before = (await this.db.query("SELECT * FROM api_keys WHERE id = $1 AND tenant_id = $2", [ctx.params.key_id, ctx.params.id])).rows[0];
        if (!before) throw notFound("API key");
        // factory.revokeApiKey audits the revocation (api_key.revoke), the staff member as the actor.
        const revoked = await this.callAsTenant(ctx, "factory.revokeApiKey", { id: ctx.params.key_id }, ctx.params.id);
        // The same view as this route's list (created_by included), not the factory's.
        return keyView({ ...before, ...revoked });
      },
    } as any,

    exportTenant: {
      rest: { method: "GET", fullPath: "/v1/admin/tenants/:id/export" },
      responses: { 200: { description: "One JSON object per line, each with its `type`", content: { "application/x-ndjson": TenantExportLine } } },
      auth: "user",
      roles: ["admin", "auditor", "tenant_admin"],
      summary: "All of a tenant's data as a stream of JSON lines: tenant, users, keys, batches, products, scans, reports, webhooks, audit",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        const t = await this.tenantFor(ctx, ctx.params.id);
        await this.db.tx((q: Queryable) => this.audit(q, ctx, { action: "tenant.export", target_type: "tenant", target_id: t.id, tenant_id: t.id }));
        ctx.meta.$responseType = "application/x-ndjson; charset=utf-8";
        ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="voketag-tenant-${t.id}.ndjson"`, "Cache-Control": "no-store" };
        return this.tenantExportStream(t.id);
      },
    } as any,

    erasePersonalData: {
      rest: { method: "POST", fullPath: "/v1/admin/tenants/:id/erase-personal-data" },
      responses: { 200: ok("What was erased", ErasureResult) },
      auth: "user",
      roles: ADMIN_ONLY,
      summary: "Erase a tenant's personal data on request (report contacts and texts, scan locations, its users' identities); confirm with the tenant id",
      params: { id: uuid, confirm: { type: "string", max: 64 } },
      async handler(this: any, ctx: Context<any, any>) {
        const t = await this.tenantFor(ctx, ctx.params.id);
        if (ctx.params.confirm !== t.id) throw badRequest("confirm must repeat the tenant id");
        const result = await this.db.tx(async (q: Queryable) => {
          const reports = await q.query("UPDATE reports SET contact = NULL, details = NULL WHERE tenant_id = $1 AND (contact IS NOT NULL OR details IS NOT NULL)", [t.id]);
          const scans = await q.query("UPDATE scans SET lat = NULL, lng = NULL WHERE tenant_id = $1 AND lat IS NOT NULL", [t.id]);
          const users = await q.query(
            `UPDATE users SET email = 'erased+' || id || '@invalid', name = 'erased', password_hash = NULL, status = 'disabled',
                disabled_at = coalesce(disabled_at, now()), updated_at = now() WHERE tenant_id = $1 RETURNING id`,
            [t.id],
          );
          const ids = users.rows.map((u: any) => u.id);
          await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = ANY($1::uuid[]) AND revoked_at IS NULL", [ids]);
          await q.query("UPDATE user_tokens SET used_at = now() WHERE user_id = ANY($1::uuid[]) AND used_at IS NULL", [ids]);
          const counts = { reports: reports.rowCount, scan_locations: scans.rowCount, users: users.rowCount };
          await this.audit(q, ctx, { action: "tenant.erase_personal_data", target_type: "tenant", target_id: t.id, tenant_id: t.id, after: counts });
          return counts;
        });
        await this.forgetPrincipals();
        return { tenant_id: t.id, erased: result };
      },
    } as any,

    // ---- Users ---------------------------------------------------------------------------------
    createUser: {
      rest: { method: "POST", fullPath: "/v1/admin/users" },
      responses: { 201: ok("The new user", User) },
      // 404: the tenant_id names no tenant.
      errors: [404, 409, 422],
      auth: "user",
      roles: USER_MANAGERS,
      summary: "Create a user; without a password an invitation to set one is mailed. Tenant admins create users of their own tenant.",
      successStatus: 201,
      params: {
        email: { type: "email", max: 320 },
        name: { type: "string", min: 1, max: 200, trim: true },
        role: { type: "string", max: 32 },
        tenant_id: { type: "uuid", optional: true, nullable: true },
        password: { ...passwordParam, optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const placed = newUserPlacement({ id: p.id, role: p.role, tenant_id: p.tenant_id }, ctx.params);
        if ("status" in placed) throw placed.status === 403 ? forbidden(placed.message) : badRequest(placed.message);
        // null means "no password" (an invitation), like an absent field.
        if (ctx.params.password === null) delete ctx.params.password;
        if (ctx.params.password !== undefined) {
          const problem = passwordProblem(ctx.params.password);
          if (problem) throw badRequest(problem);
        }
        return this.idempotent(ctx, async () => {
          if (placed.tenant_id) {
            const t = await this.db.query("SELECT status FROM tenants WHERE id = $1", [placed.tenant_id]);
            if (!t.rowCount) throw notFound("tenant");
          }
          const email = String(ctx.params.email).trim().toLowerCase();
          const hash = ctx.params.password !== undefined ? await hashPassword(ctx.params.password) : null;
          const token = hash ? null : newSecret();
          const user = await this.db.tx(async (q: Queryable) => {
            const dup = await q.query("SELECT 1 FROM users WHERE lower(email) = $1", [email]);
            if (dup.rowCount) throw conflict("a user with this email already exists");
            const { rows } = await q
              .query(
                "INSERT INTO users (email, name, role, tenant_id, password_hash, password_changed_at) VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::text IS NULL THEN NULL ELSE now() END) RETURNING *",
                [email, ctx.params.name, placed.role, placed.tenant_id, hash],
              )
              .catch((err: any) => {
                // Two requests for one address at once: the unique index decides, the loser gets 409.
                if (err?.code === "23505") throw conflict("a user with this email already exists");
                throw err;
              });
            if (token) await this.storeUserToken(q, rows[0].id, "invite", token, this.config.login.inviteTtlSeconds);
            // The audit keeps ids and roles, not names or addresses: an erasure must not leave them in an append-only log.
            await this.audit(q, ctx, { action: "user.create", target_type: "user", target_id: rows[0].id, tenant_id: placed.tenant_id, after: { role: placed.role, tenant_id: placed.tenant_id, invited: !hash } });
            return rows[0];
          });
          if (token) await this.mailAccount(user, "invite", token, p.email ?? null);
          ctx.meta.$statusCode = 201;
          ctx.meta.$location = `/v1/admin/users/${user.id}`;
          return userView(user);
        });
      },
    } as any,

    listUsers: {
      rest: { method: "GET", fullPath: "/v1/admin/users" },
      responses: { 200: ok("One page of users", pageOf(User)) },
      auth: "user",
      roles: EVERYONE,
      summary: "List users, oldest first (tenant users: their tenant's)",
      params: {
        ...listParams,
        tenant_id: optionalUuid,
        role: { type: "enum", values: [...ROLES], optional: true },
        status: { type: "enum", values: ["active", "disabled"], optional: true },
        q: { type: "string", max: 320, optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = this.tenantScope(ctx, ctx.params.tenant_id);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT * FROM users WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR role = $2) AND ($3::text IS NULL OR status = $3)
              AND ($4::text IS NULL OR lower(email) LIKE lower($4) || '%' OR lower(name) LIKE lower($4) || '%')
              AND ($5::timestamptz IS NULL OR (created_at, id) > ($5::timestamptz, $6::uuid))
            ORDER BY created_at, id LIMIT $7`,
          [tenant, ctx.params.role ?? null, ctx.params.status ?? null, ctx.params.q ? ctx.params.q.replace(/[\\%_]/g, (x: string) => `\\${x}`) : null, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        const p = page(rows, limit, (u: any) => [new Date(u.created_at).toISOString(), u.id]);
        return { items: p.items.map(userView), next_cursor: p.next_cursor };
      },
    } as any,

    getUser: {
      rest: { method: "GET", fullPath: "/v1/admin/users/:id" },
      responses: { 200: ok("The user", User) },
      auth: "user",
      roles: EVERYONE,
      summary: "One user (tenant users: of their tenant only)",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        return userView(await this.visibleUser(ctx, this.db, ctx.params.id));
      },
    } as any,

    updateUser: {
      rest: { method: "PATCH", fullPath: "/v1/admin/users/:id" },
      responses: { 200: ok("The user, and the fields that were ignored", UserUpdated) },
      errors: [409],
      auth: "user",
      roles: USER_MANAGERS,
      summary: "Change a user's name or role; fields you may not set (role beyond your grant, tenant, email, status) are ignored",
      params: { id: uuid, name: { type: "string", min: 1, max: 200, trim: true, optional: true }, role: { type: "string", max: 32, optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const { id, ...body } = ctx.params;
        const row = await this.db.tx(async (q: Queryable) => {
          const u = await this.visibleUser(ctx, q, id, true);
          const { changes, ignored } = permittedUserChanges({ id: p.id, role: p.role, tenant_id: p.tenant_id }, u, body);
          if (!Object.keys(changes).length) return { u, ignored };
          if (changes.role && u.role === "admin" && changes.role !== "admin") await this.keepOneAdmin(q, u.id);
          const r = await q.query("UPDATE users SET name = coalesce($2, name), role = coalesce($3, role), updated_at = now() WHERE id = $1 RETURNING *", [u.id, changes.name ?? null, changes.role ?? null]);
          if (changes.role && changes.role !== u.role)
            // A new role takes effect at the next sign-in: sessions holding the old one end now.
            await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", [u.id]);
          await this.audit(q, ctx, { action: "user.update", target_type: "user", target_id: u.id, tenant_id: u.tenant_id, before: { role: u.role, name_changed: false }, after: { role: r.rows[0].role, name_changed: r.rows[0].name !== u.name, ignored } });
          return { u: r.rows[0], ignored };
        });
        return { ...userView(row.u), ignored_fields: row.ignored };
      },
    } as any,

    disableUser: {
      rest: { method: "POST", fullPath: "/v1/admin/users/:id/disable" },
      responses: { 200: ok("The user", User) },
      errors: [409],
      auth: "user",
      roles: USER_MANAGERS,
      summary: "Disable a user: their sessions end and their access tokens are refused within 5 s",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        return userView(await this.setUserStatus(ctx, ctx.params.id, "disabled"));
      },
    } as any,

    enableUser: {
      rest: { method: "POST", fullPath: "/v1/admin/users/:id/enable" },
      responses: { 200: ok("The user", User) },
      auth: "user",
      roles: USER_MANAGERS,
      summary: "Enable a disabled user again",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        return userView(await this.setUserStatus(ctx, ctx.params.id, "active"));
      },
    } as any,

    unlockUser: {
      rest: { method: "POST", fullPath: "/v1/admin/users/:id/unlock" },
      responses: { 200: ok("The user", User) },
      auth: "user",
      roles: USER_MANAGERS,
      summary: "Lift a user's lock-out after failed logins",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        const row = await this.db.tx(async (q: Queryable) => {
          const u = await this.managedUser(ctx, q, ctx.params.id);
          await q.query("DELETE FROM login_throttle WHERE scope = 'account' AND key = $1", [accountKey(u.email)]);
          const r = await q.query("UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = now() WHERE id = $1 RETURNING *", [u.id]);
          await this.audit(q, ctx, { action: "user.unlock", target_type: "user", target_id: u.id, tenant_id: u.tenant_id, before: { locked_until: u.locked_until } });
          return r.rows[0];
        });
        return userView(row);
      },
    } as any,

    inviteUser: {
      rest: { method: "POST", fullPath: "/v1/admin/users/:id/invite" },
      responses: { 202: ok("The invitation is on its way", InviteSent) },
      errors: [409],
      auth: "user",
      roles: USER_MANAGERS,
      summary: "Mail a new set-password link (earlier links stop working)",
      successStatus: 202,
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const token = newSecret();
        const u = await this.db.tx(async (q: Queryable) => {
          const u = await this.managedUser(ctx, q, ctx.params.id);
          if (u.status !== "active") throw conflict("the user is disabled: enable them first");
          await q.query("UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", [u.id]);
          await this.storeUserToken(q, u.id, "invite", token, this.config.login.inviteTtlSeconds);
          await this.audit(q, ctx, { action: "user.invite", target_type: "user", target_id: u.id, tenant_id: u.tenant_id });
          return u;
        });
        await this.mailAccount(u, "invite", token, p.email ?? null);
        ctx.meta.$statusCode = 202;
        return { status: "sent", user_id: u.id };
      },
    } as any,

    // ---- Audit ---------------------------------------------------------------------------------
    auditLog: {
      rest: { method: "GET", fullPath: "/v1/admin/audit" },
      responses: { 200: { description: "One page of entries, or with ?format every match (a JSON array or CSV)", content: { "application/json": { oneOf: [pageOf(AuditEntry), arrayOf(AuditExportEntry)] }, "text/csv": null } } },
      auth: "user",
      roles: EVERYONE,
      summary: "The audit trail, newest first, filtered by actor, action (\"user.*\" for a prefix), tenant, target and time; ?format=csv|json exports every match as a stream",
      params: {
        ...listParams,
        actor: { type: "string", max: 200, optional: true },
        action: { type: "string", max: 100, optional: true },
        tenant_id: optionalUuid,
        target_type: { type: "string", max: 50, optional: true },
        target_id: { type: "string", max: 200, optional: true },
        from: when,
        to: when,
        format: { type: "enum", values: ["csv", "json"], optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        const f: AuditFilter = {
          actor: ctx.params.actor,
          action: ctx.params.action,
          tenant_id: this.tenantScope(ctx, ctx.params.tenant_id) ?? undefined,
          target_type: ctx.params.target_type,
          target_id: ctx.params.target_id,
          from: ctx.params.from?.toISOString(),
          to: ctx.params.to?.toISOString(),
        };
        if (ctx.params.format) return this.auditExport(ctx, f, ctx.params.format);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 1);
        const cond = auditCondition(f, 3);
        const { rows } = await this.db.query(
          `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE ($1::bigint IS NULL OR seq < $1) AND ${cond.sql} ORDER BY seq DESC LIMIT $2`,
          [c?.[0] ?? null, limit + 1, ...cond.params],
        );
        const p = page(rows, limit, (r: any) => [Number(r.seq)]);
        return { items: p.items.map(auditView), next_cursor: p.next_cursor };
      },
    } as any,

    verifyAudit: {
      rest: { method: "GET", fullPath: "/v1/admin/audit/verify" },
      responses: { 200: ok("The chain's verification", AuditVerification) },
      auth: "user",
      roles: READERS,
      summary: "Walk the audit trail's hash chain from the first entry: the first broken link, if any, and whether the stored head matches",
      async handler(this: any) {
        return this.verifyAuditChain();
      },
    } as any,

    // ---- Dashboard and analytics ---------------------------------------------------------------
    dashboard: {
      rest: { method: "GET", fullPath: "/v1/admin/dashboard" },
      responses: { 200: ok("The dashboard", Dashboard) },
      auth: "user",
      roles: EVERYONE,
      summary: "Tenants, batches by status, products, anchors by status, scans today and over 7 days, suspicious rate, outbox lag, failed webhook deliveries",
      params: { tenant_id: optionalUuid },
      async handler(this: any, ctx: Context<any, any>) {
        return this.dashboardFor(this.tenantScope(ctx, ctx.params.tenant_id));
      },
    } as any,

    fraud: {
      rest: { method: "GET", fullPath: "/v1/admin/analytics/fraud" },
      responses: { 200: ok("Fraud analytics", FraudAnalytics) },
      auth: "user",
      roles: EVERYONE,
      summary: "Suspicious and invalid rates by tenant, product (SKU) and batch, and the riskiest tags, over a time range (default 30 days)",
      params: { ...rangeParams, limit: { type: "number", integer: true, min: 1, max: 500, optional: true, convert: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = this.tenantScope(ctx, ctx.params.tenant_id);
        return this.fraudAnalytics(tenant, this.rangeOf(ctx.params, 30), ctx.params.limit ?? 20);
      },
    } as any,

    geo: {
      rest: { method: "GET", fullPath: "/v1/admin/analytics/geo" },
      responses: { 200: ok("Scans per grid cell or per country", GeoAnalytics) },
      auth: "user",
      roles: EVERYONE,
      summary: "Scan counts by verdict per grid cell (cell = degrees: 0.25, 0.5, 1, 2, 5, 10; named by its south-west corner) or per country (by=country)",
      params: {
        ...rangeParams,
        by: { type: "enum", values: ["cell", "country"], optional: true },
        cell: { type: "number", optional: true, convert: true },
        verdict: { type: "enum", values: [...VERDICTS], optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = this.tenantScope(ctx, ctx.params.tenant_id);
        const size = ctx.params.cell ?? 1;
        if (!(GRID_SIZES as readonly number[]).includes(size)) throw badRequest(`cell must be one of ${GRID_SIZES.join(", ")}`);
        return this.geoAnalytics(tenant, this.rangeOf(ctx.params, 30), ctx.params.by ?? "cell", size, ctx.params.verdict ?? null);
      },
    } as any,

    trends: {
      rest: { method: "GET", fullPath: "/v1/admin/analytics/trends" },
      responses: { 200: ok("Daily series", TrendAnalytics) },
      auth: "user",
      roles: EVERYONE,
      summary: "Daily scans by verdict, and batches registered and anchored per day (UTC days; default 30)",
      params: rangeParams,
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = this.tenantScope(ctx, ctx.params.tenant_id);
        return this.trendAnalytics(tenant, this.rangeOf(ctx.params, 30));
      },
    } as any,

    scans: {
      rest: { method: "GET", fullPath: "/v1/admin/scans" },
      responses: { 200: ok("One page of scans", pageOf(AdminScan)) },
      auth: "user",
      roles: EVERYONE,
      summary: "Recent scans, newest first, with their product (tenant users: their tenant's)",
      params: { ...listParams, tenant_id: optionalUuid, batch_id: optionalUuid, verdict: { type: "enum", values: [...VERDICTS], optional: true }, from: when, to: when },
      async handler(this: any, ctx: Context<any, any>) {
        const tenant = this.tenantScope(ctx, ctx.params.tenant_id);
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = cursorParam(ctx.params.cursor, 2);
        const { rows } = await this.db.query(
          `SELECT s.id, s.at, s.verdict, s.score, s.country, s.lat, s.lng, s.tenant_id, s.product_id, s.batch_id, s.factors, left(s.device, 12) AS device,
                  p.serial, p.sku, p.name AS product_name
             FROM scans s LEFT JOIN products p ON p.id = s.product_id
            WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND ($2::uuid IS NULL OR s.batch_id = $2) AND ($3::text IS NULL OR s.verdict = $3)
              AND ($4::timestamptz IS NULL OR s.at >= $4) AND ($5::timestamptz IS NULL OR s.at < $5)
              AND ($6::timestamptz IS NULL OR (s.at, s.id) < ($6::timestamptz, $7::uuid))
            ORDER BY s.at DESC, s.id DESC LIMIT $8`,
          [tenant, ctx.params.batch_id ?? null, ctx.params.verdict ?? null, ctx.params.from ?? null, ctx.params.to ?? null, c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        const p = page(rows, limit, (s: any) => [new Date(s.at).toISOString(), s.id]);
        return {
          items: p.items.map((s: any) => ({
            id: s.id, at: s.at, verdict: s.verdict, score: s.score, country: s.country, location: s.lat === null ? null : { lat: s.lat, lng: s.lng },
            tenant_id: s.tenant_id, tag_id: s.product_id, batch_id: s.batch_id, serial: s.serial, sku: s.sku, product_name: s.product_name, device: s.device, factors: s.factors,
          })),
          next_cursor: p.next_cursor,
        };
      },
    } as any,

    // ---- God mode ------------------------------------------------------------------------------
    godSystem: {
      rest: { method: "GET", fullPath: "/v1/admin/god/system" },
      responses: { 200: ok("The running system", SystemStatus) },
      auth: "user",
      roles: READERS,
      summary: "The running system: broker nodes and their services, open circuit breakers, outbox lag, anchor queue, webhooks, maintenance, runtime settings",
      async handler(this: any, ctx: Context<any, any>) {
        return this.systemStatus(ctx);
      },
    } as any,

    godFailures: {
      rest: { method: "GET", fullPath: "/v1/admin/god/failures" },
      responses: { 200: ok("What waits for a hand", Failures) },
      auth: "user",
      roles: READERS,
      summary: "What is waiting for a hand: failed batches, failed anchors, outbox events still pending after retries, dead webhook deliveries",
      params: { limit: { type: "number", integer: true, min: 1, max: 500, optional: true, convert: true } },
      async handler(this: any, ctx: Context<any, any>) {
        return this.failures(ctx.params.limit ?? 50);
      },
    } as any,

    godRetryBatch: {
      rest: { method: "POST", fullPath: "/v1/admin/god/batches/:id/retry" },
      responses: { 202: ok("The batch is queued for registration again", BatchRetried) },
      errors: [409],
      auth: "user",
      roles: STAFF,
      summary: "Retry a failed batch's registration (factory)",
      successStatus: 202,
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        ctx.meta.$statusCode = 202;
        return this.retryBatch(ctx, ctx.params.id);
      },
    } as any,

    godRetryAnchor: {
      rest: { method: "POST", fullPath: "/v1/admin/god/anchors/:id/retry" },
      responses: { 202: ok("The anchor is queued again", AnchorRetried) },
      errors: [409],
      auth: "user",
      roles: STAFF,
      summary: "Retry a failed anchor: by period id, batch id or anchor job id (anchor)",
      successStatus: 202,
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        ctx.meta.$statusCode = 202;
        return this.retryAnchor(ctx, ctx.params.id);
      },
    } as any,

    godAnchorNow: {
      rest: { method: "POST", fullPath: "/v1/admin/god/anchor/cycle" },
      responses: { 200: ok("What the cycle did", AnchorCycle) },
      auth: "user",
      roles: STAFF,
      summary: "Run an anchoring cycle now, opening a period for whatever waits (anchor.cycle)",
      async handler(this: any, ctx: Context<any, any>) {
        const result = await ctx.call("anchor.cycle", { open: "force" }, { timeout: 60_000, meta: { idempotencyKey: undefined } });
        await this.auditAlone(ctx, { action: "god.anchor_cycle", target_type: "anchor", after: result });
        return { result };
      },
    } as any,

    godRequeueOutbox: {
      rest: { method: "POST", fullPath: "/v1/admin/god/outbox/requeue" },
      responses: { 200: ok("The events made due now", OutboxRequeued) },
      errors: [404],
      auth: "user",
      roles: STAFF,
      summary: "Deliver pending outbox events now (one by id, or every one still pending), instead of at their backoff time",
      params: { id: { type: "number", integer: true, min: 1, optional: true, convert: true }, topic: { type: "string", max: 100, optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        return this.requeueOutbox(ctx, ctx.params.id ?? null, ctx.params.topic ?? null);
      },
    } as any,

    godRequeueWebhooks: {
      rest: { method: "POST", fullPath: "/v1/admin/god/webhooks/requeue" },
      responses: { 200: ok("The deliveries replayed", WebhooksRequeued) },
      errors: [404],
      auth: "user",
      roles: STAFF,
      summary: "Replay dead webhook deliveries (one, a tenant's, or all; at most 1,000 per call) through the webhooks service",
      params: { delivery_id: optionalUuid, tenant_id: optionalUuid },
      async handler(this: any, ctx: Context<any, any>) {
        return this.requeueWebhooks(ctx, ctx.params.delivery_id ?? null, ctx.params.tenant_id ?? null);
      },
    } as any,

    godRetry: {
      rest: { method: "POST", fullPath: "/v1/admin/god/retry/:id" },
      responses: { 202: ok("What was retried, by kind", AnythingRetried) },
      errors: [409],
      auth: "user",
      roles: STAFF,
      summary: "Retry whatever this id names: a failed batch, a failed anchor (period, batch or job), an outbox event (number) or a dead webhook delivery",
      successStatus: 202,
      params: { id: { type: "string", min: 1, max: 64 } },
      async handler(this: any, ctx: Context<any, any>) {
        ctx.meta.$statusCode = 202;
        return this.retryAny(ctx, String(ctx.params.id).trim());
      },
    } as any,

    godSettings: {
      rest: { method: "GET", fullPath: "/v1/admin/god/settings" },
      responses: { 200: ok("The runtime settings", RuntimeSettings) },
      auth: "user",
      roles: READERS,
      summary: "Runtime settings: each key with its environment default and the value stored in god mode",
      async handler(this: any) {
        return { items: await this.runtimeSettings() };
      },
    } as any,

    godSetSetting: {
      rest: { method: "PUT", fullPath: "/v1/admin/god/settings/:key" },
      responses: { 200: ok("The setting", RuntimeSettingView) },
      auth: "user",
      roles: ADMIN_ONLY,
      summary: "Change a runtime setting (overrides its environment variable on every node within seconds)",
      params: { key: { type: "string", max: 100 }, value: { type: "any" } },
      async handler(this: any, ctx: Context<any, any>) {
        const checked = checkRuntimeSetting(ctx.params.key, ctx.params.value);
        if (!checked.ok) throw badRequest(checked.message);
        const p = principalOf(ctx);
        await this.db.tx(async (q: Queryable) => {
          const before = (await q.query("SELECT value FROM settings WHERE key = $1 FOR UPDATE", [ctx.params.key])).rows[0];
          await q.query(
            `INSERT INTO settings (key, value, updated_by, updated_at) VALUES ($1, $2::jsonb, $3, now())
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by, updated_at = now()`,
            [ctx.params.key, JSON.stringify(checked.value), `${p.type}:${p.id}`],
          );
          await this.audit(q, ctx, { action: "setting.update", target_type: "setting", target_id: ctx.params.key, before: { value: before?.value ?? null }, after: { value: checked.value } });
        });
        this._settings?.delete(ctx.params.key);
        return (await this.runtimeSettings()).find((s: any) => s.key === ctx.params.key);
      },
    } as any,

    godResetSetting: {
      rest: { method: "DELETE", fullPath: "/v1/admin/god/settings/:key" },
      responses: { 200: ok("The setting", RuntimeSettingView) },
      auth: "user",
      roles: ADMIN_ONLY,
      summary: "Forget a runtime setting's stored value: its environment variable applies again",
      params: { key: { type: "string", max: 100 } },
      async handler(this: any, ctx: Context<any, any>) {
        if (!runtimeSetting(ctx.params.key)) throw notFound("setting");
        await this.db.tx(async (q: Queryable) => {
          const r = await q.query("DELETE FROM settings WHERE key = $1 RETURNING value", [ctx.params.key]);
          if (r.rowCount) await this.audit(q, ctx, { action: "setting.reset", target_type: "setting", target_id: ctx.params.key, before: { value: r.rows[0].value } });
        });
        this._settings?.delete(ctx.params.key);
        return (await this.runtimeSettings()).find((s: any) => s.key === ctx.params.key);
      },
    } as any,

    godGetRisk: {
      rest: { method: "GET", fullPath: "/v1/admin/god/tenants/:id/risk" },
      responses: { 200: ok("The tenant's risk configuration", TenantRisk) },
      auth: "user",
      roles: READERS,
      summary: "A tenant's risk-model override and the configuration in effect",
      params: { id: uuid },
      async handler(this: any, ctx: Context<any, any>) {
        const t = await this.tenantFor(ctx, ctx.params.id);
        const override = t.settings?.risk ?? null;
        let effective = DEFAULT_RISK_CONFIG;
        try {
          effective = mergeRiskConfig(DEFAULT_RISK_CONFIG, override);
        } catch {
          /* an override stored before validation existed: the scan service ignores it too */
        }
        return { tenant_id: t.id, override, effective, defaults: DEFAULT_RISK_CONFIG };
      },
    } as any,

    godSetRisk: {
      rest: { method: "PUT", fullPath: "/v1/admin/god/tenants/:id/risk" },
      responses: { 200: ok("The tenant's risk configuration", TenantRiskSet) },
      auth: "user",
      roles: ADMIN_ONLY,
      summary: "Set a tenant's risk weights and thresholds (a partial override of the defaults; null removes it). Checked before it is stored.",
      params: { id: uuid, risk: { type: "any", nullable: true } },
      async handler(this: any, ctx: Context<any, any>) {
        let effective;
        try {
          effective = mergeRiskConfig(DEFAULT_RISK_CONFIG, ctx.params.risk);
        } catch (err) {
          if (err instanceof RiskConfigError) throw badRequest(err.message, { field: err.field });
          throw err;
        }
        const t = await this.db.tx(async (q: Queryable) => {
          const before = (await q.query("SELECT id, settings FROM tenants WHERE id = $1 FOR UPDATE", [ctx.params.id])).rows[0];
          if (!before) throw notFound("tenant");
          const r =
            ctx.params.risk === null
              ? await q.query("UPDATE tenants SET settings = settings - 'risk', updated_at = now() WHERE id = $1 RETURNING id, settings", [before.id])
              : await q.query("UPDATE tenants SET settings = jsonb_set(settings, '{risk}', $2::jsonb), updated_at = now() WHERE id = $1 RETURNING id, settings", [before.id, JSON.stringify(ctx.params.risk)]);
          await this.audit(q, ctx, { action: "tenant.risk_update", target_type: "tenant", target_id: before.id, tenant_id: before.id, before: { risk: before.settings?.risk ?? null }, after: { risk: ctx.params.risk } });
          return r.rows[0];
        });
        // The scan path caches products with their tenant's settings: drop those views at once.
        await this.broker.cacher?.clean("scan.lookup:**").catch(() => undefined);
        return { tenant_id: t.id, override: t.settings?.risk ?? null, effective };
      },
    } as any,

    godRotateJwt: {
      rest: { method: "POST", fullPath: "/v1/admin/god/jwt/rotate" },
      responses: { 200: ok("The new key id, and the keys that verify until they retire", JwtRotated) },
      errors: [409],
      auth: "user",
      roles: ADMIN_ONLY,
      summary: "Rotate the access-token signing key: a new kid signs from now; the old key verifies until its last tokens expire",
      async handler(this: any, ctx: Context<any, any>) {
        return this.rotateJwtKey(ctx);
      },
    } as any,

    godMaintenance: {
      rest: { method: "POST", fullPath: "/v1/admin/god/maintenance/run" },
      responses: { 200: ok("Each job's outcome", MaintenanceRun) },
      auth: "user",
      roles: STAFF,
      summary: "Run scheduled maintenance now: retention (scan locations, report contacts, expired tokens) and the maintenance service's jobs",
      async handler(this: any, ctx: Context<any, any>) {
        const outcomes: any[] = [];
        for (const job of this.maintenanceJobs() as MaintenanceJob[]) outcomes.push(await this.runMaintenanceJob({ ...job, run: () => this.retention(ctx) }, true));
        if (this.hasAction("maintenance.run")) {
          const more: any = await ctx.call("maintenance.run", { force: true }, { timeout: 120_000 }).catch((err: Error) => [{ job: "maintenance", ran: false, error: err.message }]);
          outcomes.push(...more);
        }
        await this.auditAlone(ctx, { action: "god.maintenance_run", target_type: "maintenance", after: { jobs: outcomes.map((o) => ({ job: o.job, ran: o.ran, ok: o.ok })) } });
        return { jobs: outcomes };
      },
    } as any,

    /** The retention periods in effect (god-mode values over the environment), for the privacy notice. */
    privacyFacts: {
      visibility: "public",
      async handler(this: any) {
        const r = await this.retentionSeconds();
        return { scan_location_days: Math.round(r.scanLocation / 86_400), report_contact_days: Math.round(r.reportContact / 86_400) };
      },
    },

    // ---- The web console -----------------------------------------------------------------------
    console: {
      rest: { method: "GET", fullPath: "/admin" },
      responses: { 200: media("The console page", "text/html") },
      auth: "public",
      summary: "The web console (platform staff and tenant staff)",
      handler(this: any, ctx: Context<any, any>) {
        ctx.meta.$responseType = "text/html; charset=utf-8";
        ctx.meta.$responseHeaders = { "Cache-Control": "no-cache" };
        return this.consoleFile("index.html");
      },
    } as any,

    consoleAsset: {
      rest: { method: "GET", fullPath: "/admin/:file" },
      responses: { 200: { description: "The file", content: { "application/javascript": null, "text/css": null, "text/html": null, "application/json": WorldShapes } } },
      auth: "public",
      summary: "The web console's script, stylesheet and offline world map",
      params: { file: { type: "string", max: 40 } },
      handler(this: any, ctx: Context<any, any>) {
        const file = ctx.params.file;
        if (file === "world.json") {
          ctx.meta.$responseType = "application/json; charset=utf-8";
          ctx.meta.$responseHeaders = { "Cache-Control": "public, max-age=86400" };
          return worldShapesJson();
        }
        if (file === "index.html" || file === "") {
          ctx.meta.$responseType = "text/html; charset=utf-8";
          return this.consoleFile("index.html");
        }
        const type = CONSOLE_FILES[file];
        if (!type) throw notFound("file");
        ctx.meta.$responseType = type;
        ctx.meta.$responseHeaders = { "Cache-Control": "no-cache" };
        return this.consoleFile(file);
      },
    } as any,
  },

  events: {
    // Another admin node rotated the JWT key: sign with the new one at once (the cache would catch up in 30 s).
    "admin.jwtKeysChanged"(this: any) {
      this._jwtRows = null;
    },
  },

  methods: {
    // ---- helpers -------------------------------------------------------------------------------

    rangeOf(this: any, params: any, defDays: number) {
      try {
        return timeRange(params, new Date(), defDays);
      } catch (err) {
        if (err instanceof RangeProblem) throw badRequest(err.message);
        throw err;
      }
    },

    /** The tenant a read is confined to: any (or the one asked for) for platform readers, their own for tenant users. */
    tenantScope(this: any, ctx: Context<any, any>, requested?: string | null): string | null {
      const p = principalOf(ctx);
      if (p.type === "user" && isPlatformReader(p.role)) return requested ?? null;
      if (p.tenant_id && (p.type === "key" || isTenantRole(p.role))) return p.tenant_id;
      throw forbidden("your role may not read this");
    },

    /** A tenant by id as the caller may see it: another tenant's id is a 404 for tenant users. */
    async tenantFor(this: any, ctx: Context<any, any>, id: string) {
      const p = principalOf(ctx);
      if (!(p.type === "user" && isPlatformReader(p.role)) && p.tenant_id !== id) throw notFound("tenant");
      const { rows } = await this.db.query("SELECT * FROM tenants WHERE id = $1", [id]);
      if (!rows.length) throw notFound("tenant");
      return rows[0];
    },

    /** ctx as seen by the audit when no principal is set yet (login, reset): the account acts. */
    asUser(this: any, ctx: Context<any, any>, u: { id: string; role?: string | null; tenant_id?: string | null }) {
      return { meta: { ...ctx.meta, principal: { type: "user", id: u.id, role: u.role ?? null, tenant_id: u.tenant_id ?? null, scopes: [] } }, requestID: ctx.requestID };
    },

    async auditAlone(this: any, ctx: any, rec: any) {
      await this.db.tx((q: Queryable) => this.audit(q, ctx, rec));
    },

    /** Calls a tenant-scoped action on the tenant's behalf (god mode, staff tools); the caller's principal is restored after. */
    async callAsTenant(this: any, ctx: Context<any, any>, action: string, params: any, tenantId: string, opts: any = {}) {
      const p: Principal = principalOf(ctx);
      // The callee's meta flows back into ours: keep our own status, headers and principal.
      const kept = { $statusCode: ctx.meta.$statusCode, $location: ctx.meta.$location, $responseHeaders: ctx.meta.$responseHeaders, $responseType: ctx.meta.$responseType };
      try {
        return await ctx.call(action, params, { ...opts, meta: { principal: { ...p, tenant_id: tenantId, scopes: ["*"] }, idempotencyKey: undefined } });
      } finally {
        Object.assign(ctx.meta, kept, { principal: p });
      }
    },

    hasAction(this: any, name: string): boolean {
      return !!this.broker.registry.actions.isAvailable(name);
    },

    async networkOf(this: any, ctx: Context<any, any>): Promise<string> {
      const ip = ctx.meta.client?.ip;
      return hashNetwork(ip || "unknown", await this.auditNetworkKey());
    },

    accountPolicy(this: any): ThrottlePolicy {
      const l = this.config.login;
      return { maxFailures: l.maxFailures, windowSeconds: l.windowSeconds, lockSeconds: l.lockSeconds, slowdownMs: l.slowdownMs };
    },

    networkPolicy(this: any): ThrottlePolicy {
      const l = this.config.login;
      return { maxFailures: l.networkMaxFailures, windowSeconds: l.windowSeconds, lockSeconds: l.lockSeconds, slowdownMs: l.slowdownMs };
    },

    /** Counts one failure against the key; returns the row after it. */
    async bumpThrottle(this: any, q: Queryable, scope: string, key: string, p: ThrottlePolicy) {
      const { rows } = await q.query(
        `INSERT INTO login_throttle AS t (scope, key, failures, window_start, locked_until)
           VALUES ($1, $2, 1, now(), CASE WHEN 1 >= $3 THEN now() + make_interval(secs => $5) END)
         ON CONFLICT (scope, key) DO UPDATE SET
           failures = CASE WHEN t.window_start <= now() - make_interval(secs => $4) THEN 1 ELSE t.failures + 1 END,
           window_start = CASE WHEN t.window_start <= now() - make_interval(secs => $4) THEN now() ELSE t.window_start END,
           locked_until = CASE
             WHEN (CASE WHEN t.window_start <= now() - make_interval(secs => $4) THEN 1 ELSE t.failures + 1 END) >= $3 THEN now() + make_interval(secs => $5)
             WHEN t.locked_until > now() THEN t.locked_until END
         RETURNING failures, locked_until`,
        [scope, key, p.maxFailures, p.windowSeconds, p.lockSeconds],
      );
      return rows[0];
    },

    /** Records a failed login; returns the lock's seconds when this failure locked the account or network. */
    async loginFailed(this: any, ctx: Context<any, any>, acct: string, net: string, user: any): Promise<number> {
      return this.db.tx(async (q: Queryable) => {
        const a = await this.bumpThrottle(q, "account", acct, this.accountPolicy());
        const n = await this.bumpThrottle(q, "network", net, this.networkPolicy());
        if (user) await q.query("UPDATE users SET failed_logins = $2, locked_until = $3 WHERE id = $1", [user.id, a.failures, a.locked_until]);
        const now = new Date();
        const locked = Math.max(lockedFor(a, now), lockedFor(n, now));
        // No address in the trail (it may be a mistyped password): the account, if any, and the counters.
        await this.audit(q, { meta: { ...ctx.meta, principal: { type: "anonymous", id: null, role: null, tenant_id: null } }, requestID: ctx.requestID }, {
          action: locked ? "auth.locked" : "auth.login_failed",
          target_type: user ? "user" : null,
          target_id: user?.id ?? null,
          tenant_id: user?.tenant_id ?? null,
          after: { account_failures: a.failures, network_failures: n.failures, locked_seconds: locked || undefined },
        });
        return locked;
      });
    },

    async forgetPrincipals(this: any) {
      // principalStatus answers are cached 5 s (Redis in a cluster): drop them so a change applies now.
      await this.broker.cacher?.clean("admin.principalStatus:**").catch(() => undefined);
    },

    async userRow(this: any, q: Queryable, id: string, lock = false) {
      if (!UUID_RE.test(id)) return null;
      const { rows } = await q.query(`SELECT * FROM users WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [id]);
      return rows[0] ?? null;
    },

    async visibleUser(this: any, ctx: Context<any, any>, q: Queryable, id: string, lock = false) {
      const p = principalOf(ctx);
      const u = await this.userRow(q, id, lock);
      if (!u || !canSeeUser({ id: p.id, role: p.role, tenant_id: p.tenant_id }, u)) throw notFound("user");
      return u;
    },

    async managedUser(this: any, ctx: Context<any, any>, q: Queryable, id: string) {
      const p = principalOf(ctx);
      const u = await this.visibleUser(ctx, q, id, true);
      if (!canManageUser({ id: p.id, role: p.role, tenant_id: p.tenant_id }, u)) throw forbidden("your role may not manage this account");
      return u;
    },

    /** Refuses to leave the platform without an active admin. */
    async keepOneAdmin(this: any, q: Queryable, leaving: string) {
      const { rows } = await q.query("SELECT count(*) AS n FROM users WHERE role = 'admin' AND status = 'active' AND id <> $1", [leaving]);
      if (!rows[0].n) throw conflict("this is the last active admin");
    },

    async setUserStatus(this: any, ctx: Context<any, any>, id: string, status: "active" | "disabled") {
      const p = principalOf(ctx);
      if (id === p.id && status === "disabled") throw conflict("you cannot disable your own account");
      const row = await this.db.tx(async (q: Queryable) => {
        const u = await this.managedUser(ctx, q, id);
        if (u.status === status) return u;
        if (status === "disabled" && u.role === "admin") await this.keepOneAdmin(q, u.id);
        const r = await q.query(
          "UPDATE users SET status = $2, disabled_at = CASE WHEN $2 = 'disabled' THEN now() END, updated_at = now() WHERE id = $1 RETURNING *",
          [u.id, status],
        );
        if (status === "disabled") {
          await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", [u.id]);
          await q.query("UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", [u.id]);
        }
        await this.audit(q, ctx, { action: status === "disabled" ? "user.disable" : "user.enable", target_type: "user", target_id: u.id, tenant_id: u.tenant_id, before: { status: u.status }, after: { status } });
        return r.rows[0];
      });
      await this.forgetPrincipals();
      return row;
    },

    async setTenantStatus(this: any, ctx: Context<any, any>, id: string, status: "active" | "suspended", reason: string | null) {
      const row = await this.db.tx(async (q: Queryable) => {
        const t = (await q.query("SELECT * FROM tenants WHERE id = $1 FOR UPDATE", [id])).rows[0];
        if (!t) throw notFound("tenant");
        if (t.status === status) return t;
        const r = await q.query(
          `UPDATE tenants SET status = $2, suspended_at = CASE WHEN $2 = 'suspended' THEN now() END,
              suspended_reason = CASE WHEN $2 = 'suspended' THEN $3 END, updated_at = now() WHERE id = $1 RETURNING *`,
          [id, status, reason],
        );
        await this.audit(q, ctx, { action: status === "suspended" ? "tenant.suspend" : "tenant.reactivate", target_type: "tenant", target_id: id, tenant_id: id, before: { status: t.status }, after: { status, reason } });
        return r.rows[0];
      });
      await this.forgetPrincipals();
      return row;
    },

    async storeUserToken(this: any, q: Queryable, userId: string, purpose: "invite" | "reset", token: string, ttlSeconds: number) {
      await q.query("INSERT INTO user_tokens (user_id, purpose, token_hash, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))", [userId, purpose, sha256(token), ttlSeconds]);
    },

    async mailAccount(this: any, user: any, kind: "invite" | "reset", token: string, inviter: string | null) {
      const ttl = kind === "invite" ? this.config.login.inviteTtlSeconds : this.config.login.resetTtlSeconds;
      const m = renderAccountMail(kind, { name: user.name, link: setPasswordLink(this.config.consoleUrl, token), validMinutes: Math.round(ttl / 60), inviter });
      try {
        const r = await this.mailer.send({ to: user.email, ...m });
        this.logger.info({ user_id: user.id, kind, message_id: r.messageId, file: r.file }, "account mail sent");
      } catch (err) {
        // The token is stored: staff can send the invitation again, the user can ask for another reset.
        this.logger.error({ user_id: user.id, kind, err: (err as Error).message }, "account mail could not be sent");
      }
    },

    async startReset(this: any, ctx: any, email: string) {
      const acct = accountKey(email);
      const token = newSecret();
      const user = await this.db.tx(async (q: Queryable) => {
        const a = await this.bumpThrottle(q, "reset", acct, { maxFailures: RESETS_PER_HOUR + 1, windowSeconds: 3600, lockSeconds: 3600, slowdownMs: 0 });
        // A mailbox is not flooded: past a few requests an hour they are dropped silently.
        if (a.failures > RESETS_PER_HOUR) return null;
        const u = (await q.query("SELECT u.* FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE lower(u.email) = $1 AND u.status = 'active'", [email])).rows[0];
        if (!u) return null;
        await q.query("UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND purpose = 'reset' AND used_at IS NULL", [u.id]);
        await this.storeUserToken(q, u.id, "reset", token, this.config.login.resetTtlSeconds);
        await this.audit(q, { ...ctx, meta: { ...ctx.meta, principal: { type: "anonymous", id: null, role: null, tenant_id: null } } }, { action: "user.password_reset_requested", target_type: "user", target_id: u.id, tenant_id: u.tenant_id });
        return u;
      });
      if (user) await this.mailAccount(user, "reset", token, null);
    },

    // ---- signing keys --------------------------------------------------------------------------
    /** { sign, verify }: the newest key signs; every key not yet past its retirement verifies. */
    async signingKeys(this: any): Promise<{ sign: SigningKey; verify: SigningKey[] }> {
      if (this.config.jwt.privateKeyPem) {
        this._jwtKeys ??= (() => {
          const all = parsePrivateKeys(this.config.jwt.privateKeyPem);
          return { sign: all[0], verify: all };
        })();
        return this._jwtKeys;
      }
      // The stored rows are cached briefly; which of them still verify is decided at every call,
      // so a retired key leaves the JWKS the moment its retirement time passes.
      if (!this._jwtRows || Date.now() - this._jwtRowsAt > JWT_KEY_CACHE_MS) {
        this._jwtRows = await storedKeys(this.db, "jwt", () => {
          const k = generateSigningKey();
          return { kid: k.kid, material: k.privatePem };
        });
        this._jwtRowsAt = Date.now();
      }
      const now = Date.now();
      const live = this._jwtRows.filter((r: any) => !r.retired_at || new Date(r.retired_at).getTime() > now).reverse();
      const signer = live.find((r: any) => !r.retired_at) ?? live[0];
      const toKey = (r: any) => ({ kid: r.kid, privatePem: r.material });
      return { sign: toKey(signer), verify: live.map(toKey) };
    },

    async rotateJwtKey(this: any, ctx: Context<any, any>) {
      if (this.config.jwt.privateKeyPem)
        throw conflict("signing keys come from JWT_PRIVATE_KEY: rotate by putting the new PEM first in it and keeping the old one after it for JWT_TTL seconds");
      const k = generateSigningKey();
      const grace = this.config.jwt.ttlSeconds + 60;
      const result = await this.db.tx(async (q: Queryable) => {
        await q.query("SELECT pg_advisory_xact_lock(hashtext('signing_keys:jwt'))");
        const old = await q.query(
          "UPDATE signing_keys SET retired_at = now() + make_interval(secs => $1) WHERE purpose = 'jwt' AND retired_at IS NULL RETURNING kid, retired_at",
          [grace],
        );
        await q.query("INSERT INTO signing_keys (purpose, kid, material) VALUES ('jwt', $1, $2)", [k.kid, k.privatePem]);
        const retiring = old.rows.map((r: any) => ({ kid: r.kid, verifies_until: r.retired_at }));
        await this.audit(q, ctx, { action: "jwt.rotate", target_type: "signing_key", target_id: k.kid, after: { kid: k.kid, retiring: retiring.map((r: any) => r.kid) } });
        return { kid: k.kid, retiring };
      });
      this._jwtRows = null;
      this.broker.broadcast("admin.jwtKeysChanged", { kid: k.kid });
      return result;
    },

    async issueTokens(this: any, user: any, family: string) {
      const { sign } = await this.signingKeys();
      const cfg = this.config.jwt;
      const access = await signAccessToken(
        sign,
        { sub: user.id, role: user.role, tenant_id: user.tenant_id, email: user.email },
        { issuer: cfg.issuer, audience: cfg.audience, ttlSeconds: cfg.ttlSeconds },
      );
      const refresh = "rt_" + crypto.randomBytes(32).toString("base64url");
      await this.db.query(
        "INSERT INTO refresh_tokens (user_id, token_hash, family, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        [user.id, sha256(refresh), family, cfg.refreshTtlSeconds],
      );
      return { access_token: access, token_type: "Bearer", expires_in: cfg.ttlSeconds, refresh_token: refresh };
    },

    /** The first admin comes from VOKETAG_ADMIN_EMAIL / _PASSWORD on a start that finds no users. */
    async bootstrapAdmin(this: any) {
      let { email, password } = this.config.admin;
      let generated = false;
      if (!email || !password) {
        // Outside production a fresh install gets an admin anyway, its password written to the data dir.
        if (this.config.production || this.config.databaseUrl) return;
        email = email || "admin@voketag.local";
        password = crypto.randomBytes(12).toString("base64url");
        generated = true;
      }
      const problem = passwordProblem(password);
      if (problem) {
        this.logger.error(`VOKETAG_ADMIN_PASSWORD rejected: ${problem}`);
        return;
      }
      const hash = await hashPassword(password);
      await this.db.tx(async (q: Queryable) => {
        await q.query("SELECT pg_advisory_xact_lock(7261002)");
        const n = await q.query("SELECT 1 FROM users LIMIT 1");
        if (n.rowCount) return;
        const { rows } = await q.query("INSERT INTO users (email, name, role, password_hash, password_changed_at) VALUES ($1, $2, 'admin', $3, now()) RETURNING id", [email.toLowerCase(), "Administrator", hash]);
        await this.audit(q, null, { action: "user.bootstrap_admin", target_type: "user", target_id: rows[0].id, after: { role: "admin" } });
        if (generated && this.config.dataDir === "memory://") {
          this.logger.warn({ email, password }, "bootstrap admin created with a generated password (in-memory instance)");
        } else if (generated) {
          const file = path.join(this.config.dataDir, "admin-password.txt");
          fs.mkdirSync(this.config.dataDir, { recursive: true });
          fs.writeFileSync(file, `${email}\n${password}\n`, { mode: 0o600 });
          this.logger.warn({ email, password_file: file }, "bootstrap admin created with a generated password (set VOKETAG_ADMIN_EMAIL/VOKETAG_ADMIN_PASSWORD to choose one)");
        } else this.logger.info({ email }, "bootstrap admin created");
      });
    },

    // ---- audit read side -----------------------------------------------------------------------
    auditExport(this: any, ctx: Context<any, any>, f: AuditFilter, format: "csv" | "json") {
      const cond = auditCondition(f, 3);
      const fetchPage = async (last: any) =>
        (await this.db.query(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 AND ${cond.sql} ORDER BY seq LIMIT $2`, [last ? Number(last.seq) : 0, EXPORT_PAGE, ...cond.params])).rows;
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
      ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="voketag-audit-${stamp}.${format}"`, "Cache-Control": "no-store" };
      if (format === "csv") {
        ctx.meta.$responseType = "text/csv; charset=utf-8";
        return pagedStream({ fetchPage, pageSize: EXPORT_PAGE, head: AUDIT_CSV_HEADER, line: (r: any) => auditCsvLine(r) });
      }
      ctx.meta.$responseType = "application/json; charset=utf-8";
      return pagedStream({ fetchPage, pageSize: EXPORT_PAGE, head: "[", tail: "\n]\n", line: (r: any, first: boolean) => (first ? "\n" : ",\n") + JSON.stringify(auditExportView(r)) });
    },

    async verifyAuditChain(this: any) {
      const v = new ChainVerifier();
      let after = 0;
      let broken: any = null;
      for (;;) {
        const { rows } = await this.db.query("SELECT seq, prev_hash, hash, entry FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000", [after]);
        if (!rows.length) break;
        broken = v.pushAll(rows);
        if (broken) break;
        after = Number(rows[rows.length - 1].seq);
      }
      const head = (await this.db.query("SELECT seq, hash FROM audit_head WHERE id = 1")).rows[0];
      const res = v.result();
      const stored = head ? { seq: Number(head.seq), hash: head.hash } : null;
      const headMatches = !!stored && res.ok && (stored.seq === 0 ? res.head === null : res.head?.seq === stored.seq && res.head?.hash === stored.hash);
      return {
        ok: res.ok && headMatches,
        count: v.count,
        head: res.ok ? res.head : null,
        stored_head: stored,
        // The link's own ok flag would repeat the top-level one.
        broken: broken ? { seq: broken.seq, reason: broken.reason, detail: broken.detail } : (headMatches ? null : { reason: "head_mismatch", detail: `the stored head (seq ${stored?.seq}) does not match the last entry (seq ${res.ok ? res.head?.seq ?? 0 : "?"}): entries were removed from the end or the head was edited` }),
      };
    },

    // ---- privacy -------------------------------------------------------------------------------
    tenantExportStream(this: any, tenantId: string) {
      const section = (type: string, sql: string, keyOf: (r: any) => unknown, view: (r: any) => any = (r) => r) => () =>
        pagedStream({
          pageSize: EXPORT_PAGE,
          fetchPage: async (last: any) => (await this.db.query(sql, [tenantId, last ? keyOf(last) : null, EXPORT_PAGE])).rows,
          line: (r: any) => JSON.stringify({ type, ...view(r) }) + "\n",
        });
      const byId = (table: string, cols: string) => `SELECT ${cols} FROM ${table} WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3`;
      const id = (r: any) => r.id;
      return concatStreams([
        section("tenant", "SELECT id, name, status, settings, created_at, suspended_at FROM tenants WHERE id = $1 AND $2::uuid IS NULL LIMIT $3", id),
        section("user", byId("users", "id, email, name, role, status, created_at, last_login_at, disabled_at"), id),
        section("api_key", byId("api_keys", "id, name, prefix, scopes, created_by, created_at, revoked_at, last_used_at"), id),
        section("batch", byId("batches", "id, name, market_regions, status, total, done, errors, root, leaf_count, created_at, registered_at, anchored_at"), id),
        section("product", byId("products", "id, batch_id, ordinal, sku, name, serial, gtin, lot, attributes, status, status_reason, leaf_hash, created_at"), id),
        section("scan", byId("scans", "id, product_id, batch_id, at, verdict, score, country, lat, lng, factors"), id),
        section("report", byId("reports", "id, product_id, batch_id, reason, details, contact, created_at"), id),
        section("webhook", byId("webhook_endpoints", "id, kind, url, description, events, status, created_at, deleted_at"), id),
        section("audit", `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1 AND seq > coalesce($2::bigint, 0) ORDER BY seq LIMIT $3`, (r) => Number(r.seq), auditView),
      ]);
    },

    async retentionSeconds(this: any) {
      const r = this.config.retention;
      return {
        scanLocation: Number(await this.setting("RETENTION_SCAN_LOCATION", r.scanLocationSeconds)),
        reportContact: Number(await this.setting("RETENTION_REPORT_CONTACT", r.reportContactSeconds)),
      };
    },

    /** Scheduled on one node at a time by MaintenanceMixin (an advisory lock and maintenance_runs). */
    maintenanceJobs(this: any): MaintenanceJob[] {
      return [{ name: "retention", everySeconds: this.config.retention.maintenanceIntervalSeconds, run: () => this.retention(null) }];
    },

    /**
     * Retention: scan locations and report contacts past their time are cleared, expired tokens
     * and stale throttle rows deleted — one transaction with its audit entry.
     */
    async retention(this: any, ctx: any = null) {
      const ret = await this.retentionSeconds();
      return this.db.tx(async (q: Queryable) => {
        const scans = await q.query("UPDATE scans SET lat = NULL, lng = NULL WHERE at < now() - make_interval(secs => $1) AND lat IS NOT NULL", [ret.scanLocation]);
        const reports = await q.query("UPDATE reports SET contact = NULL WHERE created_at < now() - make_interval(secs => $1) AND contact IS NOT NULL", [ret.reportContact]);
        const tokens = await q.query("DELETE FROM user_tokens WHERE expires_at < now() - interval '1 day'");
        const refresh = await q.query("DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'");
        const throttle = await q.query("DELETE FROM login_throttle WHERE window_start < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now())");
        const result = {
          scan_locations_cleared: scans.rowCount,
          report_contacts_cleared: reports.rowCount,
          expired_tokens_deleted: tokens.rowCount + refresh.rowCount,
          throttle_rows_deleted: throttle.rowCount,
          scan_location_seconds: ret.scanLocation,
          report_contact_seconds: ret.reportContact,
        };
        await this.audit(q, ctx, { action: "retention.run", target_type: "maintenance_job", target_id: "retention", after: result });
        return result;
      });
    },

    // ---- dashboard and analytics ---------------------------------------------------------------
    async dashboardFor(this: any, tenant: string | null) {
      const now = new Date();
      const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
      const weekStart = new Date(today.getTime() - 6 * 86_400_000);
      const q = (sql: string, params: unknown[] = []) => this.db.query(sql, params).then((r: any) => r.rows);
      const [tenants, batches, products, anchors, scans, days, outbox, webhooks, waiting] = await Promise.all([
        tenant
          ? q("SELECT id, name, status FROM tenants WHERE id = $1", [tenant])
          : q("SELECT count(*) AS total, count(*) FILTER (WHERE status = 'active') AS active, count(*) FILTER (WHERE status = 'suspended') AS suspended FROM tenants"),
        q("SELECT status, count(*) AS n FROM batches WHERE ($1::uuid IS NULL OR tenant_id = $1) GROUP BY status", [tenant]),
        this.productCount(tenant),
        tenant
          ? q(
              `SELECT p.status, count(DISTINCT p.id) AS n FROM periods p JOIN period_leaves l ON l.period_id = p.id AND l.kind = 'batch'
                 JOIN batches b ON b.id::text = l.ref WHERE b.tenant_id = $1 GROUP BY p.status`,
              [tenant],
            )
          : q("SELECT status, count(*) AS n FROM periods GROUP BY status"),
        q(
          `SELECT count(*) FILTER (WHERE s.at >= $2) AS today, ${VERDICT_COUNTS} FROM scans s WHERE s.at >= $3 AND ($1::uuid IS NULL OR s.tenant_id = $1)`,
          [tenant, today, weekStart],
        ),
        q(
          "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, verdict, count(*) AS n FROM scans WHERE at >= $2 AND ($1::uuid IS NULL OR tenant_id = $1) GROUP BY 1, 2",
          [tenant, weekStart],
        ),
        tenant ? Promise.resolve(null) : q("SELECT count(*) AS unsent, min(created_at) AS oldest, count(*) FILTER (WHERE attempts > 1) AS retrying FROM outbox WHERE sent_at IS NULL"),
        q(
          `SELECT count(*) FILTER (WHERE status = 'dead') AS dead, count(*) FILTER (WHERE status = 'dead' AND created_at >= $2) AS dead_7d,
                  count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying
             FROM webhook_deliveries WHERE ($1::uuid IS NULL OR tenant_id = $1)`,
          [tenant, weekStart],
        ).catch(() => [{ dead: null, dead_7d: null, retrying: null }]),
        q(
          `SELECT count(*) AS n FROM batches b WHERE b.status IN ('registered', 'anchoring') AND ($1::uuid IS NULL OR b.tenant_id = $1)
              AND NOT EXISTS (SELECT 1 FROM period_leaves l JOIN periods p ON p.id = l.period_id WHERE l.kind = 'batch' AND l.ref = b.id::text AND p.status = 'final')`,
          [tenant],
        ),
      ]);
      const s = scans[0];
      const o = outbox?.[0];
      return {
        tenant_id: tenant,
        generated_at: now.toISOString(),
        tenants: tenant ? tenants[0] ?? null : { total: tenants[0].total, active: tenants[0].active, suspended: tenants[0].suspended },
        batches: { by_status: countsBy(batches, "status", ["received", "processing", "registered", "anchoring", "anchored", "failed"]), total: batches.reduce((a: number, r: any) => a + Number(r.n), 0) },
        products,
        anchors: { by_status: countsBy(anchors, "status", ["pending", "submitted", "confirmed", "final", "failed"]), batches_awaiting: waiting[0].n },
        scans: {
          today: s.today,
          last_7_days: s.n,
          by_verdict_7_days: { authentic: s.n - s.suspicious - s.invalid - s.recalled, suspicious: s.suspicious, recalled: s.recalled, invalid: s.invalid },
          daily: fillDays(days, weekStart, new Date(today.getTime() + 86_400_000)),
        },
        suspicious_rate_7_days: rate(s.suspicious, s.n),
        outbox: o ? { unsent: o.unsent, retrying: o.retrying, lag_seconds: o.oldest ? Math.max(0, Math.round((now.getTime() - new Date(o.oldest).getTime()) / 1000)) : 0 } : null,
        webhooks: { failed_deliveries: webhooks[0].dead, failed_last_7_days: webhooks[0].dead_7d, retrying: webhooks[0].retrying },
      };
    },

    /** Exact below a million rows; the planner's estimate above (a count(*) over 10 M products takes seconds). */
    async productCount(this: any, tenant: string | null): Promise<{ total: number; estimated: boolean }> {
      if (!tenant) {
        const est = await this.db.query("SELECT reltuples::bigint AS n FROM pg_class WHERE relname = 'products'").catch(() => ({ rows: [] }));
        const n = Number(est.rows[0]?.n ?? -1);
        if (n > 1_000_000) return { total: n, estimated: true };
      }
      const { rows } = await this.db.query("SELECT count(*) AS n FROM products WHERE ($1::uuid IS NULL OR tenant_id = $1)", [tenant]);
      return { total: rows[0].n, estimated: false };
    },

    async fraudAnalytics(this: any, tenant: string | null, range: { from: Date; to: Date }, limit: number) {
      const args = [range.from, range.to, tenant, limit];
      const where = "s.at >= $1 AND s.at < $2 AND ($3::uuid IS NULL OR s.tenant_id = $3)";
      const q = (sql: string) => this.db.query(sql, args).then((r: any) => r.rows);
      const [totals, byTenant, byProduct, byBatch, tags] = await Promise.all([
        q(`SELECT ${VERDICT_COUNTS} FROM scans s WHERE ${where} AND $4::int > 0`),
        q(`SELECT s.tenant_id, t.name, ${VERDICT_COUNTS} FROM scans s LEFT JOIN tenants t ON t.id = s.tenant_id WHERE ${where}
            GROUP BY s.tenant_id, t.name ORDER BY count(*) FILTER (WHERE s.verdict = 'suspicious') DESC, count(*) DESC LIMIT $4`),
        q(`SELECT p.tenant_id, p.sku, min(p.name) AS name, ${VERDICT_COUNTS} FROM scans s JOIN products p ON p.id = s.product_id WHERE ${where}
            GROUP BY p.tenant_id, p.sku ORDER BY count(*) FILTER (WHERE s.verdict = 'suspicious') DESC, count(*) DESC LIMIT $4`),
        q(`SELECT s.batch_id, b.name, b.tenant_id, ${VERDICT_COUNTS} FROM scans s JOIN batches b ON b.id = s.batch_id WHERE ${where}
            GROUP BY s.batch_id, b.name, b.tenant_id ORDER BY count(*) FILTER (WHERE s.verdict = 'suspicious') DESC, count(*) DESC LIMIT $4`),
        q(`SELECT s.product_id, p.serial, p.sku, p.name, p.batch_id, p.tenant_id, p.status, ${VERDICT_COUNTS},
                  max(s.score) AS max_score, round(avg(s.score))::int AS avg_score, count(DISTINCT s.device) AS devices,
                  count(DISTINCT s.country) AS countries, max(s.at) AS last_scan_at,
                  (SELECT count(*) FROM reports r WHERE r.product_id = s.product_id) AS reports
             FROM scans s JOIN products p ON p.id = s.product_id WHERE ${where}
            GROUP BY s.product_id, p.serial, p.sku, p.name, p.batch_id, p.tenant_id, p.status
            ORDER BY max(s.score) DESC, count(*) FILTER (WHERE s.verdict = 'suspicious') DESC, count(*) DESC LIMIT $4`),
      ]);
      return {
        tenant_id: tenant,
        from: range.from.toISOString(),
        to: range.to.toISOString(),
        totals: verdictRates(totals[0] ?? {}),
        by_tenant: byTenant.map((r: any) => ({ tenant_id: r.tenant_id, name: r.name ?? (r.tenant_id ? null : "(unattributed: token did not verify)"), ...verdictRates(r) })),
        by_product: byProduct.map((r: any) => ({ tenant_id: r.tenant_id, sku: r.sku, name: r.name, ...verdictRates(r) })),
        by_batch: byBatch.map((r: any) => ({ batch_id: r.batch_id, name: r.name, tenant_id: r.tenant_id, ...verdictRates(r) })),
        riskiest_tags: tags.map((r: any) => ({
          tag_id: r.product_id, serial: r.serial, sku: r.sku, name: r.name, batch_id: r.batch_id, tenant_id: r.tenant_id, status: r.status,
          max_score: r.max_score, avg_score: r.avg_score, devices: r.devices, countries: r.countries, reports: r.reports, last_scan_at: r.last_scan_at, ...verdictRates(r),
        })),
      };
    },

    async geoAnalytics(this: any, tenant: string | null, range: { from: Date; to: Date }, by: "cell" | "country", size: number, verdict: string | null) {
      const base = "s.at >= $1 AND s.at < $2 AND ($3::uuid IS NULL OR s.tenant_id = $3) AND ($4::text IS NULL OR s.verdict = $4)";
      const out: any = { tenant_id: tenant, from: range.from.toISOString(), to: range.to.toISOString(), by, verdict };
      if (by === "country") {
        const { rows } = await this.db.query(
          `SELECT s.country, ${VERDICT_COUNTS} FROM scans s WHERE ${base} GROUP BY s.country ORDER BY count(*) DESC LIMIT 300`,
          [range.from, range.to, tenant, verdict],
        );
        out.countries = rows.map((r: any) => ({ country: r.country, ...verdictRates(r) }));
        return out;
      }
      const idx = gridIndexSql("s.lat", "s.lng", "$5::float8");
      const { rows } = await this.db.query(
        `SELECT ${idx.lat} AS li, ${idx.lng} AS gi, ${VERDICT_COUNTS} FROM scans s WHERE ${base} AND s.lat IS NOT NULL
          GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 5000`,
        [range.from, range.to, tenant, verdict, size],
      );
      out.cell_degrees = size;
      out.cells = rows.map((r: any) => ({ ...gridCellOf(Number(r.li), Number(r.gi), size), ...verdictRates(r) }));
      return out;
    },

    async trendAnalytics(this: any, tenant: string | null, range: { from: Date; to: Date }) {
      const args = [range.from, range.to, tenant];
      const [scans, registered, anchored] = await Promise.all([
        this.db.query(
          "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, verdict, count(*) AS n FROM scans WHERE at >= $1 AND at < $2 AND ($3::uuid IS NULL OR tenant_id = $3) GROUP BY 1, 2",
          args,
        ),
        this.db.query(
          "SELECT to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS n, sum(total) AS products FROM batches WHERE registered_at >= $1 AND registered_at < $2 AND ($3::uuid IS NULL OR tenant_id = $3) GROUP BY 1",
          args,
        ),
        this.db.query(
          "SELECT to_char(anchored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS n FROM batches WHERE anchored_at >= $1 AND anchored_at < $2 AND ($3::uuid IS NULL OR tenant_id = $3) GROUP BY 1",
          args,
        ),
      ]);
      const reg = new Map(registered.rows.map((r: any) => [r.day, r]));
      const anc = new Map(anchored.rows.map((r: any) => [r.day, r]));
      const days = fillDays(scans.rows, range.from, range.to).map((d) => {
        const r: any = reg.get(d.date);
        const a: any = anc.get(d.date);
        return { ...d, batches_registered: Number(r?.n ?? 0), products_registered: Number(r?.products ?? 0), batches_anchored: Number(a?.n ?? 0) };
      });
      return { tenant_id: tenant, from: range.from.toISOString(), to: range.to.toISOString(), days };
    },

    // ---- god mode ------------------------------------------------------------------------------
    async systemStatus(this: any, ctx: Context<any, any>) {
      const nodes = (this.broker.registry.getNodeList({ onlyAvailable: false, withServices: true }) as any[]).map((n) => ({
        id: n.id,
        available: n.available,
        local: n.local,
        hostname: n.hostname ?? null,
        cpu: n.cpu ?? null,
        offline_since: n.offlineSince ? new Date(n.offlineSince).toISOString() : null,
        services: (n.services ?? []).map((s: any) => s.fullName ?? s.name).filter((s: string) => !s.startsWith("$")).sort(),
      }));
      // Breakers live in each caller's memory: ask every node for its own (Moleculer's $node.metrics).
      const breakers: any[] = [];
      const unknown: string[] = [];
      await Promise.all(
        nodes.filter((n) => n.available).map(async (n) => {
          try {
            const metrics: any[] = await ctx.call("$node.metrics", { types: ["gauge"], includes: ["moleculer.circuit-breaker.*"] }, { nodeID: n.id, timeout: 2000, retries: 0 });
            for (const m of metrics)
              for (const v of m.values ?? [])
                if (Number(v.value) > 0)
                  breakers.push({ node: n.id, state: m.name.includes("half") ? "half-open" : "open", target_node: v.labels?.affectedNodeID ?? null, service: v.labels?.service ?? null, action: v.labels?.action ?? null });
          } catch {
            unknown.push(n.id);
          }
        }),
      );
      const q = (sql: string, p: unknown[] = []) => this.db.query(sql, p).then((r: any) => r.rows);
      const [outbox, topics, periods, waiting, jobs, lastFinal, hooks, maint] = await Promise.all([
        q("SELECT count(*) AS unsent, min(created_at) AS oldest, count(*) FILTER (WHERE next_at <= now()) AS due, count(*) FILTER (WHERE attempts > 3) AS stuck FROM outbox WHERE sent_at IS NULL"),
        q("SELECT topic, count(*) AS n FROM outbox WHERE sent_at IS NULL GROUP BY topic ORDER BY n DESC"),
        q("SELECT status, count(*) AS n FROM periods GROUP BY status"),
        q(
          `SELECT count(*) AS n, min(b.registered_at) AS oldest FROM batches b WHERE b.status IN ('registered', 'anchoring') AND b.root IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM period_leaves l JOIN periods p ON p.id = l.period_id WHERE l.kind = 'batch' AND l.ref = b.id::text AND p.status <> 'failed')`,
        ),
        q("SELECT count(*) AS n FROM anchor_jobs j WHERE NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = j.batch_id AND b.status = 'anchored')"),
        q("SELECT max(final_at) AS at FROM periods WHERE status = 'final'"),
        q("SELECT count(*) FILTER (WHERE status = 'pending' AND next_at <= now()) AS due, count(*) FILTER (WHERE status = 'dead') AS dead FROM webhook_deliveries").catch(() => [{ due: null, dead: null }]),
        q("SELECT job, node, started_at, finished_at, ok, result, error FROM maintenance_runs ORDER BY job").catch(() => []),
      ]);
      const now = Date.now();
      const age = (t: any) => (t ? Math.max(0, Math.round((now - new Date(t).getTime()) / 1000)) : 0);
      return {
        generated_at: new Date().toISOString(),
        namespace: this.broker.namespace || null,
        node: this.broker.nodeID,
        nodes,
        circuit_breakers: { open: breakers, nodes_not_reporting: unknown },
        outbox: { unsent: outbox[0].unsent, due: outbox[0].due, stuck: outbox[0].stuck, lag_seconds: age(outbox[0].oldest), by_topic: topics },
        anchor: {
          periods: countsBy(periods, "status", ["pending", "submitted", "confirmed", "final", "failed"]),
          batches_waiting: waiting[0].n,
          oldest_waiting_seconds: age(waiting[0].oldest),
          jobs_open: jobs[0].n,
          last_final_at: lastFinal[0].at,
          interval_seconds: Number(await this.setting("ANCHOR_INTERVAL", this.config.anchor.intervalSeconds)),
        },
        webhooks: { due: hooks[0].due, dead: hooks[0].dead },
        maintenance: maint,
        settings: await this.runtimeSettings(),
      };
    },

    async failures(this: any, limit: number) {
      const q = (sql: string) => this.db.query(sql, [limit]).then((r: any) => r.rows);
      const [batches, periods, outbox, hooks] = await Promise.all([
        q("SELECT b.id, b.tenant_id, t.name AS tenant, b.name, b.total, b.errors, b.updated_at FROM batches b JOIN tenants t ON t.id = b.tenant_id WHERE b.status = 'failed' ORDER BY b.updated_at DESC LIMIT $1"),
        q(
          `SELECT p.id, p.root, p.attempts, p.last_error, p.created_at, p.tx_hash,
                  (SELECT array_agg(l.ref ORDER BY l.leaf_index) FROM period_leaves l WHERE l.period_id = p.id AND l.kind = 'batch') AS batch_ids
             FROM periods p WHERE p.status = 'failed' ORDER BY p.created_at DESC LIMIT $1`,
        ),
        q("SELECT id, topic, pending, attempts, last_error, created_at, next_at FROM outbox WHERE sent_at IS NULL AND attempts > 1 ORDER BY id LIMIT $1"),
        q(
          `SELECT d.id, d.endpoint_id, d.tenant_id, d.event_type, d.attempts, d.last_status, d.last_error, d.created_at
             FROM webhook_deliveries d WHERE d.status = 'dead' ORDER BY d.created_at DESC LIMIT $1`,
        ).catch(() => []),
      ]);
      const dead: any = this.hasAction("anchor.listDeadLetters")
        ? await this.broker.call("anchor.listDeadLetters", { state: "open", limit }).catch(() => null)
        : null;
      return {
        batches: batches.map((b: any) => ({ ...b, errors: Array.isArray(b.errors) ? b.errors.slice(0, 5) : b.errors })),
        anchor_dead_letters: dead?.items ?? [],
        anchors: periods.map((p: any) => ({ ...p, batch_ids: p.batch_ids ?? [] })),
        outbox,
        webhook_deliveries: hooks,
      };
    },

    async retryBatch(this: any, ctx: Context<any, any>, id: string) {
      const b = (await this.db.query("SELECT id, tenant_id, status FROM batches WHERE id = $1", [id])).rows[0];
      if (!b) throw notFound("batch");
      if (b.status !== "failed") throw conflict(`the batch is ${b.status}, not failed`);
      if (!this.hasAction("factory.retryBatch"))
        throw unavailable("retrying a batch needs the factory's retryBatch action, which no node of this cluster offers", 30);
      const result = await this.callAsTenant(ctx, "factory.retryBatch", { id }, b.tenant_id, { timeout: 30_000 });
      await this.auditAlone(ctx, { action: "god.batch_retry", target_type: "batch", target_id: id, tenant_id: b.tenant_id, before: { status: b.status }, after: { result } });
      return { kind: "batch", id, result };
    },

    /**
     * A failed anchor by period id or dead-letter id (anchor.retryDeadLetter), or by batch id or job
     * id (anchor.retry, on the batch's tenant's behalf). The anchor service audits the requeue.
     */
    async retryAnchor(this: any, ctx: Context<any, any>, id: string) {
      const period = (await this.db.query(
        "SELECT p.id, p.status FROM periods p WHERE p.id = $1 UNION ALL SELECT p.id, p.status FROM anchor_dead_letters d JOIN periods p ON p.id = d.period_id WHERE d.id = $1",
        [id],
      ).catch(() => this.db.query("SELECT id, status FROM periods WHERE id = $1", [id]))).rows[0];
      if (period) {
        if (period.status !== "failed") throw conflict(`nothing to retry: the anchor period is ${period.status}`);
        if (!this.hasAction("anchor.retryDeadLetter")) throw unavailable("retrying an anchor period needs the anchor service's retryDeadLetter action, which no node offers", 30);
        const result: any = await ctx.call("anchor.retryDeadLetter", { id: period.id }, { timeout: 30_000, meta: { idempotencyKey: undefined } });
        return { kind: "anchor", id, period_id: period.id, result };
      }
      const b = (await this.db.query("SELECT b.id, b.tenant_id FROM batches b WHERE b.id = $1 OR b.id = (SELECT batch_id FROM anchor_jobs WHERE id = $1)", [id])).rows[0];
      if (!b) throw notFound("anchor");
      const result: any = await this.callAsTenant(ctx, "anchor.retry", { id: b.id }, b.tenant_id, { timeout: 30_000 });
      return { kind: "anchor", id, batch_id: b.id, period_id: result?.period_id ?? null, result };
    },

    async requeueOutbox(this: any, ctx: Context<any, any>, id: number | null, topic: string | null) {
      return this.db.tx(async (q: Queryable) => {
        const r = await q.query(
          `UPDATE outbox SET next_at = now() WHERE sent_at IS NULL AND cardinality(pending) > 0 AND next_at > now()
              AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR topic = $2) RETURNING id`,
          [id, topic],
        );
        if (id !== null && !r.rowCount) {
          const e = await q.query("SELECT sent_at FROM outbox WHERE id = $1", [id]);
          if (!e.rowCount) throw notFound("outbox event");
        }
        await this.audit(q, ctx, { action: "god.outbox_requeue", target_type: "outbox", target_id: id === null ? null : String(id), after: { requeued: r.rowCount, topic } });
        return { kind: "outbox", requeued: r.rowCount, ids: r.rows.map((x: any) => Number(x.id)).slice(0, 100) };
      });
    },

    async requeueWebhooks(this: any, ctx: Context<any, any>, deliveryId: string | null, tenant: string | null) {
      if (!this.hasAction("webhooks.replay")) throw unavailable("the webhooks service is not running in this cluster", 30);
      const { rows } = await this.db.query(
        `SELECT id, endpoint_id, tenant_id FROM webhook_deliveries WHERE status = 'dead' AND ($1::uuid IS NULL OR id = $1) AND ($2::uuid IS NULL OR tenant_id = $2)
          ORDER BY created_at LIMIT 1000`,
        [deliveryId, tenant],
      );
      if (deliveryId && !rows.length) throw notFound("dead webhook delivery");
      let replayed = 0;
      const skipped: { id: string; reason: string }[] = [];
      for (const d of rows) {
        try {
          await this.callAsTenant(ctx, "webhooks.replay", { id: d.endpoint_id, delivery_id: d.id }, d.tenant_id);
          replayed++;
        } catch (err) {
          skipped.push({ id: d.id, reason: (err as Error).message });
        }
      }
      await this.auditAlone(ctx, { action: "god.webhooks_requeue", target_type: "webhook_delivery", target_id: deliveryId, tenant_id: tenant, after: { replayed, skipped: skipped.length } });
      return { kind: "webhook_delivery", replayed, skipped: skipped.slice(0, 50) };
    },

    async retryAny(this: any, ctx: Context<any, any>, id: string) {
      if (/^\d{1,18}$/.test(id)) return this.requeueOutbox(ctx, Number(id), null);
      if (!UUID_RE.test(id)) throw badRequest("give a batch, period, anchor job or webhook delivery id (uuid), or an outbox event id (number)");
      const { rows } = await this.db.query(
        `SELECT 'batch' AS kind, status FROM batches WHERE id = $1
         UNION ALL SELECT 'period', status FROM periods WHERE id = $1
         UNION ALL SELECT 'job', NULL FROM anchor_jobs WHERE id = $1
         UNION ALL SELECT 'dead_letter', NULL FROM anchor_dead_letters WHERE id = $1`,
        [id],
      );
      const hit = rows[0];
      if (hit?.kind === "batch" && hit.status === "failed") return this.retryBatch(ctx, id);
      if (hit) return this.retryAnchor(ctx, id);
      const d = await this.db.query("SELECT 1 FROM webhook_deliveries WHERE id = $1", [id]).catch(() => ({ rowCount: 0 }));
      if (d.rowCount) return this.requeueWebhooks(ctx, id, null);
      throw notFound("nothing to retry with this id");
    },

    async runtimeSettings(this: any) {
      const { rows } = await this.db.query("SELECT key, value, updated_by, updated_at FROM settings WHERE key = ANY($1::text[])", [RUNTIME_SETTINGS.map((s) => s.key)]);
      const stored = new Map(rows.map((r: any) => [r.key, r]));
      const env: Record<string, number> = {
        ANCHOR_INTERVAL: this.config.anchor.intervalSeconds,
        ANCHOR_CONFIRMATIONS: this.config.anchor.confirmations,
        ANCHOR_MAX_FEE_GWEI: this.config.anchor.maxFeeGwei,
        RETENTION_SCAN_LOCATION: this.config.retention.scanLocationSeconds,
        RETENTION_REPORT_CONTACT: this.config.retention.reportContactSeconds,
      };
      return RUNTIME_SETTINGS.map((s) => {
        const r: any = stored.get(s.key);
        return { key: s.key, description: s.description, env: s.env, read_by: s.readBy, min: s.min, max: s.max, default: env[s.key] ?? null, value: r ? r.value : null, effective: r ? r.value : env[s.key] ?? null, updated_by: r?.updated_by ?? null, updated_at: r?.updated_at ?? null };
      });
    },

    consoleFile(this: any, name: string): string {
      this._console ??= new Map();
      let text = this._console.get(name);
      if (text === undefined) {
        text = fs.readFileSync(path.join(CONSOLE_DIR, name), "utf8");
        this._console.set(name, text);
      }
      return text;
    },
  },

  created(this: any) {
    this.mailer = createMailer(this.config.mail) as Mailer;
  },

  async started(this: any) {
    await this.signingKeys();
    await this.bootstrapAdmin();
  },

  async stopped(this: any) {
    this.mailer?.close();
  },
};

export default AdminService;
