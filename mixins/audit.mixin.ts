// The audit trail: `this.audit(q, ctx, {...})` inside a mutation's transaction appends who did what
// to which target, before/after, the request id and a keyed hash of the caller's network, chained
// by hash like the scan ledger so an auditor can prove nothing was removed or edited.
import type { ServiceSchema } from "moleculer";
import crypto from "node:crypto";
import type { Queryable } from "./database";
import { storedKeys } from "./signing-keys";
import { DbMixin } from "./db.mixin";
import { nextLedgerRow } from "../lib/ledger";
import { hashNetwork } from "../lib/fingerprint";

export interface AuditRecord {
  action: string;
  target_type?: string;
  target_id?: string | null;
  tenant_id?: string | null;
  before?: unknown;
  after?: unknown;
}

/** Who acts: the authenticated principal, or the system (scheduled work, bootstrap). */
function actorOf(ctx: any) {
  const p = ctx?.meta?.principal;
  if (!p) return { actor_type: "system", actor_id: null, role: null, tenant_id: null };
  return { actor_type: p.type, actor_id: p.id, role: p.role ?? null, tenant_id: p.tenant_id ?? null };
}

export const AuditMixin: Partial<ServiceSchema> = {
  mixins: [DbMixin],
  // Loaded before any transaction needs it: PGlite has one connection, a query from inside a
  // transaction to fetch it would wait on that transaction forever.
  async started(this: any) {
    await this.auditNetworkKey();
  },
  methods: {
    async audit(this: any, q: Queryable, ctx: any, rec: AuditRecord) {
      const actor = actorOf(ctx);
      const ip = ctx?.meta?.client?.ip;
      const network = ip ? hashNetwork(ip, this._auditKey) : null;
      const head = (await q.query<{ seq: number; hash: string }>("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")).rows[0];
      const entry = {
        at: new Date().toISOString(),
        ...actor,
        tenant_id: rec.tenant_id !== undefined ? rec.tenant_id : actor.tenant_id,
        action: rec.action,
        target_type: rec.target_type ?? null,
        target_id: rec.target_id ?? null,
        before: rec.before ?? null,
        after: rec.after ?? null,
        request_id: ctx?.requestID ?? null,
        network,
      };
      const row = nextLedgerRow(Number(head.seq) === 0 ? null : { seq: Number(head.seq), hash: head.hash }, entry);
      await q.query(
        `INSERT INTO audit_log (seq, at, actor_type, actor_id, role, tenant_id, action, target_type, target_id, request_id, network, entry, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14)`,
        [row.seq, entry.at, entry.actor_type, entry.actor_id, entry.role, entry.tenant_id, entry.action, entry.target_type, entry.target_id, entry.request_id, network, JSON.stringify(entry), row.prev_hash, row.hash],
      );
      await q.query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", [row.seq, row.hash]);
    },

    /** The key that makes network hashes irreversible (2^24 IPv4 /24s are easy to enumerate). */
    async auditNetworkKey(this: any): Promise<string> {
      if (!this._auditKey) {
        const rows = await storedKeys(this.db, "network", () => ({ kid: "n1", material: crypto.randomBytes(32).toString("base64") }));
        this._auditKey = rows[rows.length - 1].material;
      }
      return this._auditKey;
    },
  },
};
