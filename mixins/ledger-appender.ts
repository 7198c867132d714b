// Group-committed appends to the hash-chained scan ledger: scans arriving within a few milliseconds
// for the same partition share one transaction (one head-row lock, one commit), which is durable
// before any of them is answered. Partitions commit independently, so nodes do not queue behind
// one head row.
import type { Database, Queryable } from "./database";
import { nextLedgerRow, ChainLink } from "../lib/ledger";

export const LEDGER_PARTITIONS = 16;
const MAX_GROUP = 200;
const GROUP_WAIT_MS = 2;

export interface ScanRecord {
  id: string;
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
}

interface Pending {
  scan: ScanRecord;
  /** Runs inside the group's transaction after the rows are written (e.g. an outbox event). */
  extra?: (q: Queryable) => Promise<void>;
  resolve: (v: { seq: number; hash: string }) => void;
  reject: (e: unknown) => void;
}

/** The canonical ledger entry of a scan: what its hash covers. */
export function ledgerEntry(s: ScanRecord) {
  return {
    scan_id: s.id,
    tag_id: s.product_id,
    tenant_id: s.tenant_id,
    at: s.at.toISOString(),
    device: s.device,
    country: s.country,
    verdict: s.verdict,
    score: s.score,
  };
}

export class LedgerAppender {
  private queues = new Map<number, Pending[]>();
  private busy = new Set<number>();
  constructor(private db: Database) {}

  append(partition: number, scan: ScanRecord, extra?: Pending["extra"]): Promise<{ seq: number; hash: string }> {
    return new Promise((resolve, reject) => {
      let q = this.queues.get(partition);
      if (!q) this.queues.set(partition, (q = []));
      q.push({ scan, extra, resolve, reject });
      if (!this.busy.has(partition)) {
        this.busy.add(partition);
        setTimeout(() => void this.flush(partition), GROUP_WAIT_MS);
      }
    });
  }

  private async flush(partition: number) {
    const queue = this.queues.get(partition) ?? [];
    const group = queue.splice(0, MAX_GROUP);
    if (!group.length) {
      this.busy.delete(partition);
      return;
    }
    try {
      const links = await this.db.tx(async (q) => {
        await q.query("INSERT INTO ledger_heads (partition, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING", [partition, "0".repeat(64)]);
        const h = await q.query<{ seq: number; hash: string }>("SELECT seq, hash FROM ledger_heads WHERE partition = $1 FOR UPDATE", [partition]);
        let head: ChainLink | null = h.rows[0].seq === 0 ? null : { seq: Number(h.rows[0].seq), hash: h.rows[0].hash };
        const rows = group.map((p) => {
          const row = nextLedgerRow(head, ledgerEntry(p.scan));
          head = { seq: row.seq, hash: row.hash };
          return row;
        });
        await q.query(
          `INSERT INTO ledger (partition, seq, prev_hash, hash, entry)
           SELECT $1, seq, prev, hash, entry::jsonb FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS t(seq, prev, hash, entry)`,
          [partition, rows.map((r) => r.seq), rows.map((r) => r.prev_hash), rows.map((r) => r.hash), rows.map((r) => JSON.stringify(r.entry))],
        );
        const s = group.map((p) => p.scan);
        await q.query(
          `INSERT INTO scans (id, tenant_id, product_id, batch_id, at, device, network, lat, lng, country, verdict, score, factors, partition, seq)
           SELECT id, tenant, product, batch, at, device, network, lat, lng, country, verdict, score, factors::jsonb, $1, seq
             FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::timestamptz[], $7::text[], $8::text[], $9::float8[], $10::float8[], $11::text[], $12::text[], $13::int[], $14::text[], $15::bigint[])
               AS t(id, tenant, product, batch, at, device, network, lat, lng, country, verdict, score, factors, seq)`,
          [
            partition,
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
            rows.map((r) => r.seq),
          ],
        );
        await q.query("UPDATE ledger_heads SET seq = $2, hash = $3 WHERE partition = $1", [partition, head!.seq, head!.hash]);
        for (const p of group) if (p.extra) await p.extra(q);
        return rows.map((r) => ({ seq: r.seq, hash: r.hash }));
      });
      group.forEach((p, i) => p.resolve(links[i]));
    } catch (err) {
      for (const p of group) p.reject(err);
    }
    if ((this.queues.get(partition) ?? []).length) setImmediate(() => void this.flush(partition));
    else this.busy.delete(partition);
  }
}
