// Admin: users and login (RS256 JWTs, rotating refresh tokens), tenants, the JWKS.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { ServiceSchema, Context } from "moleculer";
import { DbMixin } from "../mixins/db.mixin";
import { IdempotencyMixin } from "../mixins/idempotency.mixin";
import { AuditMixin } from "../mixins/audit.mixin";
import { storedKeys } from "../mixins/signing-keys";
import { badRequest, notFound, tooMany, unauthorized } from "../mixins/errors";
import { principalOf } from "../mixins/principal";
import type { Queryable } from "../mixins/database";
import { generateSigningKey, kidFor, publicJwk, signAccessToken, SigningKey } from "../lib/jwt";
import { hashPassword, verifyPassword, passwordProblem } from "../lib/password";
import { listParams, decodeCursor, page, DEFAULT_LIMIT } from "../lib/cursor";

const MAX_FAILED_LOGINS = 5;
const LOCK_MINUTES = 15;
const PLATFORM_STAFF = ["admin", "operator"];
const PLATFORM_READERS = ["admin", "operator", "auditor"];

const sha256 = (s: string) => crypto.createHash("sha256").update(s).digest("hex");

const AdminService: ServiceSchema = {
  name: "admin",
  mixins: [DbMixin, IdempotencyMixin, AuditMixin],
  actions: {
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

    jwks: {
      rest: { method: "GET", fullPath: "/.well-known/jwks.json" },
      auth: "public",
      summary: "Public keys that verify VokeTag access tokens",
      async handler(this: any) {
        const keys: SigningKey[] = await this.signingKeys();
        return { keys: keys.map(publicJwk) };
      },
    } as any,

    principalStatus: {
      visibility: "public",
      cache: { keys: ["user_id", "tenant_id"], ttl: 5 },
      params: { user_id: "string", tenant_id: { type: "string", nullable: true, optional: true } },
      async handler(this: any, ctx: Context<any, any>) {
        const { rows } = await this.db.query(
          "SELECT u.status, t.status AS tenant_status FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.id::text = $1",
          [ctx.params.user_id],
        );
        const r = rows[0];
        if (!r || r.status !== "active") return { active: false, reason: "user is disabled" };
        if (r.tenant_status && r.tenant_status !== "active") return { active: false, reason: "tenant is suspended" };
        return { active: true };
      },
    },

    login: {
      rest: { method: "POST", fullPath: "/v1/auth/login" },
      auth: "public",
      summary: "Log in with email and password: an access token and a refresh token",
      params: { email: { type: "string", min: 3, max: 320 }, password: { type: "string", min: 1, max: 256 } },
      async handler(this: any, ctx: Context<any, any>) {
        const { rows } = await this.db.query("SELECT * FROM users WHERE lower(email) = lower($1)", [ctx.params.email]);
        const user = rows[0];
        if (user?.locked_until && new Date(user.locked_until) > new Date()) {
          const wait = Math.ceil((new Date(user.locked_until).getTime() - Date.now()) / 1000);
          throw tooMany("too many failed logins: try again later", wait);
        }
        const ok = await verifyPassword(user?.password_hash ?? null, ctx.params.password);
        if (!ok || !user || user.status !== "active") {
          if (user)
            await this.db.query(
              `UPDATE users SET failed_logins = failed_logins + 1,
                 locked_until = CASE WHEN failed_logins + 1 >= $2 THEN now() + make_interval(mins => $3) END
               WHERE id = $1`,
              [user.id, MAX_FAILED_LOGINS, LOCK_MINUTES],
            );
          throw unauthorized("invalid email or password");
        }
        await this.db.query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1", [user.id]);
        return this.issueTokens(user, crypto.randomUUID());
      },
    } as any,

    refresh: {
      rest: { method: "POST", fullPath: "/v1/auth/refresh" },
      auth: "public",
      summary: "Trade a refresh token for new tokens (the old one is spent)",
      params: { refresh_token: { type: "string", min: 10, max: 200 } },
      async handler(this: any, ctx: Context<any, any>) {
        const hash = sha256(ctx.params.refresh_token);
        const spent = await this.db.tx(async (q: Queryable) => {
          const { rows } = await q.query("SELECT * FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE", [hash]);
          const t = rows[0];
          if (!t) return null;
          if (t.revoked_at) {
            // A spent token used again means it was copied: end the whole family.
            await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL", [t.family]);
            return null;
          }
          if (new Date(t.expires_at) < new Date()) return null;
          await q.query("UPDATE refresh_tokens SET revoked_at = now() WHERE id = $1", [t.id]);
          return t;
        });
        if (!spent) throw unauthorized("invalid refresh token");
        const { rows } = await this.db.query("SELECT u.*, t.status AS tenant_status FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.id = $1", [spent.user_id]);
        const user = rows[0];
        if (!user || user.status !== "active" || (user.tenant_status && user.tenant_status !== "active")) throw unauthorized("account disabled");
        return this.issueTokens(user, spent.family);
      },
    } as any,

    logout: {
      rest: { method: "POST", fullPath: "/v1/auth/logout" },
      auth: "public",
      summary: "Revoke a refresh token",
      params: { refresh_token: { type: "string", min: 10, max: 200 } },
      async handler(this: any, ctx: Context<any, any>) {
        await this.db.query("UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE token_hash = $1", [sha256(ctx.params.refresh_token)]);
        ctx.meta.$statusCode = 204;
        return null;
      },
    } as any,

    createTenant: {
      rest: { method: "POST", fullPath: "/v1/admin/tenants" },
      auth: "user",
      roles: PLATFORM_STAFF,
      summary: "Create a tenant (a manufacturer)",
      successStatus: 201,
      params: { name: { type: "string", min: 1, max: 200, trim: true } },
      async handler(this: any, ctx: Context<any, any>) {
        return this.idempotent(ctx, async () => {
          const tenant = await this.db.tx(async (q: Queryable) => {
            const { rows } = await q.query("INSERT INTO tenants (name) VALUES ($1) RETURNING id, name, status, created_at", [ctx.params.name]);
            await this.audit(q, ctx, { action: "tenant.create", target_type: "tenant", target_id: rows[0].id, tenant_id: rows[0].id, after: { name: rows[0].name } });
            return rows[0];
          });
          ctx.meta.$statusCode = 201;
          return tenant;
        });
      },
    } as any,

    listTenants: {
      rest: { method: "GET", fullPath: "/v1/admin/tenants" },
      auth: "user",
      roles: PLATFORM_READERS,
      summary: "List tenants",
      params: { ...listParams },
      async handler(this: any, ctx: Context<any, any>) {
        const limit = ctx.params.limit ?? DEFAULT_LIMIT;
        const c = ctx.params.cursor ? decodeCursor(ctx.params.cursor, 2) : null;
        if (ctx.params.cursor && !c) throw badRequest("invalid cursor");
        const { rows } = await this.db.query(
          `SELECT id, name, status, created_at FROM tenants WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1::timestamptz, $2::uuid))
            ORDER BY created_at, id LIMIT $3`,
          [c?.[0] ?? null, c?.[1] ?? null, limit + 1],
        );
        return page(rows, limit, (t: any) => [new Date(t.created_at).toISOString(), t.id]);
      },
    } as any,

    createTenantKey: {
      rest: { method: "POST", fullPath: "/v1/admin/tenants/:id/api-keys" },
      auth: "user",
      roles: PLATFORM_STAFF,
      summary: "Create an API key for a tenant (the key is shown only in this response)",
      successStatus: 201,
      params: {
        id: "uuid",
        name: { type: "string", min: 1, max: 100 },
        scopes: { type: "array", items: "string", optional: true },
      },
      async handler(this: any, ctx: Context<any, any>) {
        const p = principalOf(ctx);
        const t = await this.db.query("SELECT 1 FROM tenants WHERE id = $1", [ctx.params.id]);
        if (!t.rowCount) throw notFound("tenant");
        const key: any = await ctx.call("factory.issueKey", {
          tenant_id: ctx.params.id,
          name: ctx.params.name,
          scopes: ctx.params.scopes,
          created_by: `user:${p.id}`,
        });
        ctx.meta.$statusCode = 201;
        return key;
      },
    } as any,
  },

  methods: {
    async signingKeys(this: any): Promise<SigningKey[]> {
      if (this._jwtKeys) return this._jwtKeys;
      if (this.config.jwt.privateKeyPem) {
        const pem = this.config.jwt.privateKeyPem;
        this._jwtKeys = [{ kid: kidFor(pem), privatePem: pem }];
      } else {
        const rows = await storedKeys(this.db, "jwt", () => {
          const k = generateSigningKey();
          return { kid: k.kid, material: k.privatePem };
        });
        // Newest first: it signs; the older ones still verify until their tokens expire.
        this._jwtKeys = rows.filter((r: any) => !r.retired_at).reverse().map((r: any) => ({ kid: r.kid, privatePem: r.material }));
      }
      return this._jwtKeys;
    },

    async issueTokens(this: any, user: any, family: string) {
      const [key] = await this.signingKeys();
      const cfg = this.config.jwt;
      const access = await signAccessToken(
        key,
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
        await q.query("INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, 'admin', $3)", [email, "Administrator", hash]);
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
  },

  async started(this: any) {
    await this.signingKeys();
    await this.bootstrapAdmin();
  },
};

export default AdminService;
