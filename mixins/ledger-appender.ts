// Group-committed appends to the hash-chained scan ledger: scans arriving while a partition's
// previous commit is in flight (or within `waitMs`) share one transaction (one statement, one commit),
// which is durable before any of them is answered. Partitions commit independently, so nodes do not
// queue behind one head row; a group is written only if the partition's head row still holds the
// link it was chained onto, which keeps each partition linear when several processes append at once,
// and the (partition, seq) primary key makes a fork impossible.
import type { Database, Queryable } from "./database";
import { nextLedgerRow, ChainLink, GENESIS_HASH } from "../lib/ledger";
import { isConnectionError } from "./errors";

export const LEDGER_PARTITIONS = 16;

/**
 * A query the scan path runs on every scan, as a named prepared statement on Postgres: parsed and
 * planned once per pooled connection instead of on every call (measured: planning these statements
 * costs two to three times their execution). Same SQL, same result as db.query; PGlite runs it plainly.
 */
export async function hotQuery<T = any>(db: Database, name: string, text: string, values: unknown[]): Promise<{ rows: T[] }> {
  if (db.kind === "pg" && db.pool) {
    const r = await db.pool.query({ name, text, values: values as any[] });
    return { rows: r.rows as T[] };
  }
  return db.query<T>(text, values);
}
const MAX_GROUP = 200;

export interface ScanRecord {
  id: string;
  /** "scan" (default) records a new scan; "location" adds a location shared later to scan `id`. */
  kind?: "scan" | "location";
  tenant_id: string | null;
  product_id: string | null;
  batch_id: string | null;
  at: Date;
  device: string;
  network: string;
  lat: number | null;
  lng: number | null;
  country: string | null;
  verdict: string;
  score: number;
  factors: unknown;
  channel?: string | null;
}

interface Pending {
  scan: ScanRecord;
  /** Runs inside the group's transaction after the rows are written (e.g. an outbox event). */
  extra?: (q: Queryable) => Promise<void>;
  resolve: (v: ChainLink) => void;
  reject: (e: unknown) => void;
}

/** The canonical ledger entry of a scan (or of a location added to one): what its hash covers. */
export function ledgerEntry(s: ScanRecord) {
  const entry = {
    scan_id: s.id,
    tag_id: s.product_id,
    tenant_id: s.tenant_id,
    at: s.at.toISOString(),
    device: s.device,
    country: s.country,
    verdict: s.verdict,
    score: s.score,
  };
  return s.kind === "location" ? { kind: "location", ...entry } : entry;
}

export interface AppenderOptions {
  /** Most entries per transaction. 1 = one transaction per append (the benchmark's reference). */
  maxGroup?: number;
  /** Extra wait before an idle partition commits, to let more scans join (0: next tick). */
  waitMs?: number;
}

export class LedgerAppender {
  private queues = new Map<number, Pending[]>();
  private busy = new Set<number>();
  private ensured = new Set<number>();
  /** The last link this process wrote per partition: where its next group is chained on. */
  private heads = new Map<number, ChainLink | null>();
  private readonly maxGroup: number;
  private readonly waitMs: number;
  /** Transactions committed and entries written, for the benchmark and metrics. */
  readonly stats = { commits: 0, entries: 0 };

  constructor(
    private db: Database,
    opts: AppenderOptions = {},
  ) {
    this.maxGroup = Math.max(1, opts.maxGroup ?? MAX_GROUP);
    this.waitMs = Math.max(0, opts.waitMs ?? 0);
  }

  append(partition: number, scan: ScanRecord, extra?: Pending["extra"]): Promise<ChainLink> {
    return new Promise((resolve, reject) => {
      let q = this.queues.get(partition);
      if (!q) this.queues.set(partition, (q = []));
      q.push({ scan, extra, resolve, reject });
      if (!this.busy.has(partition)) {
        this.busy.add(partition);
        // Scans arriving in the same tick (or within waitMs) join this commit; later ones queue
        // behind it and form the next group, so grouping grows with load and costs nothing when idle.
        if (this.waitMs > 0) setTimeout(() => void this.flush(partition), this.waitMs);
        else setImmediate(() => void this.flush(partition));
      }
    });
  }

  private async flush(partition: number) {
    const queue = this.queues.get(partition) ?? [];
    const group = queue.splice(0, this.maxGroup);
    if (group.length) {
      try {
        await this.commit(partition, group);
      } catch (err) {
        // A group fails as a whole; unless the database is gone, retry its entries one by one so
        // one bad entry cannot fail the scans that happened to share its transaction.
        if (group.length > 1 && !isConnectionError(err)) {
          for (const p of group) await this.commit(partition, [p]).catch((e) => p.reject(e));
        } else for (const p of group) p.reject(err);
      }
    }
    if ((this.queues.get(partition) ?? []).length) setImmediate(() => void this.flush(partition));
    else this.busy.delete(partition);
  }

  private async commit(partition: number, group: Pending[]) {
    if (!this.ensured.has(partition)) {
      await this.db.query("INSERT INTO ledger_heads (partition, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING", [partition, GENESIS_HASH]);
      this.ensured.add(partition);
    }
    const links = group.some((p) => p.extra) ? await this.commitLocked(partition, group) : await this.commitOptimistic(partition, group);
    this.heads.set(partition, links[links.length - 1]);
    this.stats.commits++;
    this.stats.entries += group.length;
    group.forEach((p, i) => p.resolve(links[i]));
  }

  /**
   * The common case, one statement (one round trip, its own transaction): the entries are chained
   * onto the head this process last wrote, and written only if the head row still holds exactly that
   * link. Another process having appended meanwhile makes the statement write nothing; the head is
   * read again and the group chained onto it. Concurrent statements on one head row wait for each
   * other's row lock and then re-check the condition, so the chain stays linear.
   */
  private async commitOptimistic(partition: number, group: Pending[]): Promise<ChainLink[]> {
    let head = this.heads.get(partition) ?? (await this.readHead(partition));
    for (let attempt = 0; attempt < 20; attempt++) {
      const rows = this.chain(head, group);
      const last = rows[rows.length - 1];
      const { rows: out } = await hotQuery<{ n: number }>(this.db, "ledger_append_v1", APPEND_SQL, [
        ...this.params(partition, rows, group),
        last.seq,
        last.hash,
        head?.seq ?? 0,
        head?.hash ?? GENESIS_HASH,
      ]);
      if (out[0]?.n === 1) return rows.map((r) => ({ seq: r.seq, hash: r.hash }));
      head = await this.readHead(partition);
    }
    throw new Error(`ledger partition ${partition}: the head kept moving; append abandoned`);
  }

  /** With outbox events to write in the same transaction: lock the head row, write, run the extras, commit. */
  private async commitLocked(partition: number, group: Pending[]): Promise<ChainLink[]> {
    return this.db.tx(async (q) => {
      const h = await q.query<{ seq: number; hash: string }>("SELECT seq, hash FROM ledger_heads WHERE partition = $1 FOR UPDATE", [partition]);
      if (!h.rows.length) throw new Error(`ledger partition ${partition} has no head row`);
      const head: ChainLink | null = Number(h.rows[0].seq) === 0 ? null : { seq: Number(h.rows[0].seq), hash: h.rows[0].hash };
      const rows = this.chain(head, group);
      const last = rows[rows.length - 1];
      await q.query(
        `WITH ${WRITE_CTES("true")}
         UPDATE ledger_heads SET seq = $21, hash = $22 WHERE partition = $1`,
        [...this.params(partition, rows, group), last.seq, last.hash],
      );
      for (const p of group) if (p.extra) await p.extra(q);
      return rows.map((r) => ({ seq: r.seq, hash: r.hash }));
    });
  }

  private async readHead(partition: number): Promise<ChainLink | null> {
    const h = await this.db.query<{ seq: number; hash: string }>("SELECT seq, hash FROM ledger_heads WHERE partition = $1", [partition]);
    if (!h.rows.length) throw new Error(`ledger partition ${partition} has no head row`);
    return Number(h.rows[0].seq) === 0 ? null : { seq: Number(h.rows[0].seq), hash: h.rows[0].hash };
  }

  private chain(head: ChainLink | null, group: Pending[]) {
    let h = head;
    return group.map((p) => {
      const row = nextLedgerRow(h, ledgerEntry(p.scan));
      h = { seq: row.seq, hash: row.hash };
      return row;
    });
  }

  private params(partition: number, rows: ReturnType<LedgerAppender["chain"]>, group: Pending[]): unknown[] {
    const s = group.map((p) => p.scan);
    return [
      partition,
      rows.map((r) => r.seq),
      rows.map((r) => r.prev_hash),
      rows.map((r) => r.hash),
      rows.map((r) => JSON.stringify(r.entry)),
      s.map((x) => x.kind ?? "scan"),
      s.map((x) => x.id),
      s.map((x) => x.tenant_id),
      s.map((x) => x.product_id),
      s.map((x) => x.batch_id),
      s.map((x) => x.at.toISOString()),
      s.map((x) => x.device),
      s.map((x) => x.network),
      s.map((x) => x.lat),
      s.map((x) => x.lng),
      s.map((x) => x.country),
      s.map((x) => x.verdict),
      s.map((x) => x.score),
      s.map((x) => JSON.stringify(x.factors)),
      s.map((x) => x.channel ?? null),
    ];
  }
}

/**
 * The CTEs writing a group ($1 partition, $2..$20 the entries' columns): the ledger entries, the new
 * scans, and the scans a location was added to, each only when `guard` holds.
 */
function WRITE_CTES(guard: string): string {
  return `t AS (
           SELECT * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::uuid[], $8::uuid[], $9::uuid[], $10::uuid[],
                                $11::timestamptz[], $12::text[], $13::text[], $14::float8[], $15::float8[], $16::text[], $17::text[], $18::int[], $19::text[], $20::text[])
             AS t(seq, prev, hash, entry, kind, id, tenant, product, batch, at, device, network, lat, lng, country, verdict, score, factors, channel)
         ),
         l AS (INSERT INTO ledger (partition, seq, prev_hash, hash, entry) SELECT $1, seq, prev, hash, entry::jsonb FROM t WHERE ${guard}),
         n AS (
           INSERT INTO scans (id, tenant_id, product_id, batch_id, at, device, network, lat, lng, country, verdict, score, factors, partition, seq, channel, located_at)
           SELECT id, tenant, product, batch, at, device, network, lat, lng, country, verdict, score, factors::jsonb, $1, seq, channel,
                  CASE WHEN lat IS NULL THEN NULL ELSE at END
             FROM t WHERE kind = 'scan' AND ${guard}
         ),
         u AS (
           UPDATE scans SET lat = t.lat, lng = t.lng, country = t.country, verdict = t.verdict, score = t.score, factors = t.factors::jsonb, located_at = t.at
             FROM t WHERE t.kind = 'location' AND scans.id = t.id AND ${guard}
         )`;
}

const APPEND_SQL = `WITH upd AS (
           UPDATE ledger_heads SET seq = $21, hash = $22 WHERE partition = $1 AND seq = $23 AND hash = $24 RETURNING 1
         ), ${WRITE_CTES("EXISTS (SELECT 1 FROM upd)")}
         SELECT count(*)::int AS n FROM upd`;
