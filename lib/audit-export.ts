// The audit trail's read side: filters (actor, action, tenant, target, time) turned into one SQL
// condition with numbered parameters, and the CSV / JSON forms of an entry for exports. A JSON
// export keeps each entry's hashed form (entry, prev_hash, hash), so it can be re-verified offline.
import { toCsvLine } from "./csv";

export interface AuditFilter {
  actor?: string;
  /** Exact action, or a prefix ending in "*" ("user.*"). */
  action?: string;
  tenant_id?: string;
  target_type?: string;
  target_id?: string;
  from?: string;
  to?: string;
}

export interface AuditRow {
  seq: number;
  at: Date | string;
  actor_type: string;
  actor_id: string | null;
  role: string | null;
  tenant_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  request_id: string | null;
  network: string | null;
  entry: { before?: unknown; after?: unknown; [k: string]: unknown };
  prev_hash: string;
  hash: string;
}

export const AUDIT_COLUMNS = "seq, at, actor_type, actor_id, role, tenant_id, action, target_type, target_id, request_id, network, entry, prev_hash, hash";

export const AUDIT_CSV_HEADER = toCsvLine([
  "seq", "at", "actor_type", "actor_id", "role", "tenant_id", "action", "target_type", "target_id", "request_id", "network", "before", "after", "prev_hash", "hash",
]);

const iso = (v: Date | string) => (v instanceof Date ? v.toISOString() : new Date(v).toISOString());
const json = (v: unknown) => (v === undefined || v === null ? "" : JSON.stringify(v));

export function auditCsvLine(r: AuditRow): string {
  return toCsvLine([
    Number(r.seq), iso(r.at), r.actor_type, r.actor_id, r.role, r.tenant_id, r.action, r.target_type, r.target_id, r.request_id, r.network,
    json(r.entry?.before), json(r.entry?.after), r.prev_hash, r.hash,
  ]);
}

/** The API view of an entry (lists and JSON exports). */
export function auditView(r: AuditRow) {
  return {
    seq: Number(r.seq),
    at: iso(r.at),
    actor_type: r.actor_type,
    actor_id: r.actor_id,
    role: r.role,
    tenant_id: r.tenant_id,
    action: r.action,
    target_type: r.target_type,
    target_id: r.target_id,
    request_id: r.request_id,
    network: r.network,
    before: r.entry?.before ?? null,
    after: r.entry?.after ?? null,
    entry: r.entry,
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
}

/** An entry as exported in JSON: the hashed `entry` itself (before/after inside it), its links. */
export function auditExportView(r: AuditRow) {
  const { before, after, ...rest } = auditView(r);
  void before;
  void after;
  return rest;
}

/**
 * `WHERE`-ready condition for a filter, its parameters numbered from `firstParam`. Values are always
 * parameters, never spliced into the SQL.
 */
export function auditCondition(f: AuditFilter, firstParam = 1): { sql: string; params: unknown[] } {
  const parts: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    parts.push(sql.replace("?", `$${firstParam + params.length - 1}`));
  };
  if (f.actor) add(f.actor === "system" ? "(actor_type = 'system' AND ? = 'system')" : "actor_id = ?", f.actor);
  if (f.action) {
    if (f.action.endsWith("*")) add("action LIKE ?", f.action.slice(0, -1).replace(/[\\%_]/g, (c) => `\\${c}`) + "%");
    else add("action = ?", f.action);
  }
  if (f.tenant_id) add("tenant_id = ?::uuid", f.tenant_id);
  if (f.target_type) add("target_type = ?", f.target_type);
  if (f.target_id) add("target_id = ?", f.target_id);
  if (f.from) add("at >= ?::timestamptz", f.from);
  if (f.to) add("at < ?::timestamptz", f.to);
  return { sql: parts.length ? parts.join(" AND ") : "TRUE", params };
}
