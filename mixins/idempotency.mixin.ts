// Idempotency-Key on creating POSTs (ARCHITECTURE.md): scoped by credential, method and path; a
// repeat replays the stored response, the same key with another body is 422, a repeat while the
// first still runs is 409. Stored 24 h.
import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import { canonicalize } from "../lib/canonical";
import { conflict, unprocessable, badRequest } from "./errors";

const TTL_HOURS = 24;

export const IdempotencyMixin: Partial<ServiceSchema> = {
  methods: {
    async idempotent(this: any, ctx: any, fn: () => Promise<any>): Promise<any> {
      const key: string | undefined = ctx.meta?.idempotencyKey;
      if (!key) return fn();
      if (key.length > 255 || !/^[\x21-\x7e]+$/.test(key)) throw badRequest("Idempotency-Key must be 1-255 visible ASCII characters");
      const p = ctx.meta.principal;
      const scope = `${p ? `${p.type}:${p.id}` : "anon"}|${ctx.meta.http?.method ?? ""}|${ctx.meta.http?.path ?? ctx.action?.name}`;
      const { $idem, ...params } = ctx.params ?? {};
      const requestHash = crypto.createHash("sha256").update(canonicalize(params)).digest("hex");
      // Expired keys are taken over in the same statement, so a key can be reused after 24 h.
      const claimed = await this.db.query(
        `INSERT INTO idempotency_keys (scope, key, request_hash, state, expires_at)
           VALUES ($1, $2, $3, 'running', now() + make_interval(hours => ${TTL_HOURS}))
         ON CONFLICT (scope, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, state = 'running',
           status = NULL, body = NULL, headers = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
           WHERE idempotency_keys.expires_at < now()
         RETURNING key`,
        [scope, key, requestHash],
      );
      if (!claimed.rowCount) {
        const { rows } = await this.db.query(
          "SELECT request_hash, state, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
          [scope, key],
        );
        const prior = rows[0];
        if (!prior) return this.idempotent(ctx, fn);
        if (prior.request_hash !== requestHash)
          throw unprocessable("Idempotency-Key was already used with a different request body");
        if (prior.state === "running") throw conflict("a request with this Idempotency-Key is still being processed");
        ctx.meta.$statusCode = prior.status;
        ctx.meta.$responseHeaders = { ...(ctx.meta.$responseHeaders || {}), "Idempotent-Replayed": "true" };
        return JSON.parse(prior.body);
      }
      try {
        const result = await fn();
        await this.db.query(
          "UPDATE idempotency_keys SET state = 'done', status = $3, body = $4 WHERE scope = $1 AND key = $2",
          [scope, key, ctx.meta.$statusCode ?? 200, JSON.stringify(result ?? null)],
        );
        return result;
      } catch (err) {
        // A failed request leaves nothing behind: the client may retry with the same key.
        await this.db.query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", [scope, key]).catch(() => undefined);
        throw err;
      }
    },
  },
};
