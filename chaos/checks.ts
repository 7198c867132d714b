// What the database says after a fault: which acknowledged scans are stored (a scans row and a
// ledger entry naming them), and whether every ledger partition's hash chain verifies end to end
// and ends at its stored head.
import { Client } from "pg";
import { ChainVerifier } from "../lib/ledger";

export async function withDb<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export interface ScanStorage {
  acknowledged: number;
  inScans: number;
  inLedger: number;
  /** acknowledged and in both tables */
  stored: number;
  lost: number;
  /** a few acknowledged ids missing, for the report */
  missing: string[];
}

export async function scanStorage(url: string, scanIds: string[]): Promise<ScanStorage> {
  return withDb(url, async (c) => {
    const ids = [...new Set(scanIds)];
    const s = await c.query<{ id: string }>("SELECT id::text FROM scans WHERE id = ANY($1::uuid[])", [ids]);
    const l = await c.query<{ id: string }>("SELECT DISTINCT entry->>'scan_id' AS id FROM ledger WHERE entry->>'scan_id' = ANY($1::text[])", [ids]);
    const inScans = new Set(s.rows.map((r) => r.id));
    const inLedger = new Set(l.rows.map((r) => r.id));
    const stored = ids.filter((id) => inScans.has(id) && inLedger.has(id));
    const missing = ids.filter((id) => !(inScans.has(id) && inLedger.has(id)));
    return { acknowledged: ids.length, inScans: inScans.size, inLedger: inLedger.size, stored: stored.length, lost: missing.length, missing: missing.slice(0, 5) };
  });
}

export interface LedgerVerdict {
  ok: boolean;
  partitions: number;
  entries: number;
  problems: string[];
}

export async function verifyLedger(url: string): Promise<LedgerVerdict> {
  return withDb(url, async (c) => {
    const parts = (await c.query<{ partition: number }>("SELECT DISTINCT partition FROM ledger ORDER BY partition")).rows.map((r) => r.partition);
    const problems: string[] = [];
    let entries = 0;
    for (const partition of parts) {
      const v = new ChainVerifier();
      for (let after = 0; ; ) {
        const { rows } = await c.query("SELECT seq, prev_hash, hash, entry FROM ledger WHERE partition = $1 AND seq > $2 ORDER BY seq LIMIT 5000", [partition, after]);
        if (!rows.length) break;
        const broken = v.pushAll(rows);
        if (broken) {
          problems.push(`partition ${partition}: ${broken.reason} at seq ${broken.seq}: ${broken.detail}`);
          break;
        }
        after = Number(rows[rows.length - 1].seq);
      }
      entries += v.count;
      const head = (await c.query("SELECT seq, hash FROM ledger_heads WHERE partition = $1", [partition])).rows[0];
      if (v.ok && (!head || Number(head.seq) !== v.head?.seq || head.hash !== v.head?.hash))
        problems.push(`partition ${partition}: chain ends at ${JSON.stringify(v.head)} but the stored head is ${JSON.stringify(head ?? null)}`);
    }
    return { ok: problems.length === 0, partitions: parts.length, entries, problems };
  });
}
