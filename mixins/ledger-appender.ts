// Group-committed appends to the hash-chained scan ledger: scans arriving while a commit is in flight
// (or within `waitMs`) share the next one — one call of ledger_append_many (migration 009), one round
// trip, one commit for every partition that has pending scans — which is durable before any of them
// is answered. A partition is in at most one commit at a time; its entries are written only if its
// head row still holds the link they were chained onto, which keeps each partition linear when
// several processes append at once, and the (partition, seq) primary key makes a fork impossible.
// Partitions keep nodes from queueing behind one head row: a node whose chain moved re-chains just
// that partition.
import type { Database, Queryable } from "./database";
import { nextLedgerRow, ChainLink, GENESIS_HASH } from "../lib/ledger";
import { isConnectionError } from "./errors";

export const LEDGER_PARTITIONS = 16;

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
  /** Most entries per partition per commit. 1 = one entry per commit (the benchmark's reference). */
  maxGroup?: number;
  /** Extra wait before an idle appender commits, to let more scans join (0: next tick). */
  waitMs?: number;
  /** false: one commit per partition (the benchmark's reference); true: partitions share commits. */
  crossPartition?: boolean;
  /** Told the entries of every commit (metrics). */
  onCommit?: (entries: number) => void;
}

type Groups = Map<number, Pending[]>;

const APPEND_SQL = `SELECT ledger_append_many($1::int[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
  $6::int[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::uuid[], $13::uuid[], $14::uuid[], $15::uuid[],
  $16::timestamptz[], $17::text[], $18::text[], $19::float8[], $20::float8[], $21::text[], $22::text[], $23::int[], $24::text[], $25::text[]) AS ok`;

export class LedgerAppender {
  private queues = new Map<number, Pending[]>();
  /** Partitions with a commit in flight. */
  private busy = new Set<number>();
  private scheduled = false;
  private ensured = new Set<number>();
  /** The last link this process wrote per partition: where its next group is chained on. */
  private heads = new Map<number, ChainLink | null>();
  private readonly maxGroup: number;
  private readonly waitMs: number;
  private readonly crossPartition: boolean;
  private readonly onCommit?: (entries: number) => void;
  /** Transactions committed and entries written, for the benchmark and metrics. */
  readonly stats = { commits: 0, entries: 0 };

  constructor(
    private db: Database,
    opts: AppenderOptions = {},
  ) {
    this.maxGroup = Math.max(1, opts.maxGroup ?? MAX_GROUP);
    this.waitMs = Math.max(0, opts.waitMs ?? 0);
    this.crossPartition = opts.crossPartition ?? true;
    this.onCommit = opts.onCommit;
  }

  append(partition: number, scan: ScanRecord, extra?: Pending["extra"]): Promise<ChainLink> {
    return new Promise((resolve, reject) => {
      let q = this.queues.get(partition);
      if (!q) this.queues.set(partition, (q = []));
      q.push({ scan, extra, resolve, reject });
      this.schedule();
    });
  }

  // Scans arriving in the same tick (or within waitMs) join one commit; later ones queue behind the
  // commit in flight and form the next, so grouping grows with load and costs nothing when idle.
  private schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      this.flush();
    };
    if (this.waitMs > 0) setTimeout(run, this.waitMs);
    else setImmediate(run);
  }

  private flush() {
    const shared: Groups = new Map();
    const own: Groups[] = [];
    for (const [partition, queue] of this.queues) {
      if (!queue.length || this.busy.has(partition)) continue;
      const group = queue.splice(0, this.maxGroup);
      this.busy.add(partition);
      // Outbox events need a transaction of their own around the head row lock.
      if (group.some((p) => p.extra) || !this.crossPartition) own.push(new Map([[partition, group]]));
      else shared.set(partition, group);
    }
    for (const groups of shared.size ? [shared, ...own] : own)
      void this.commitSafely(groups).finally(() => {
        for (const p of groups.keys()) this.busy.delete(p);
        if ([...groups.keys()].some((p) => this.queues.get(p)?.length)) this.schedule();
      });
  }

  /**
   * Commits the groups; a commit fails as a whole, so unless the database is gone its entries are
   * retried one by one, and one bad entry cannot fail the scans that happened to share its commit.
   */
  private async commitSafely(groups: Groups) {
    try {
      await this.commit(groups);
    } catch (err) {
      const entries = [...groups].flatMap(([partition, group]) => group.map((p) => [partition, p] as const));
      if (entries.length > 1 && !isConnectionError(err)) {
        for (const [partition, p] of entries) await this.commit(new Map([[partition, [p]]])).catch((e) => p.reject(e));
      } else for (const [, p] of entries) p.reject(err);
    }
  }

  private async commit(groups: Groups) {
    const fresh = [...groups.keys()].filter((p) => !this.ensured.has(p));
    if (fresh.length) {
      await this.db.query("INSERT INTO ledger_heads (partition, seq, hash) SELECT unnest($1::int[]), 0, $2 ON CONFLICT DO NOTHING", [fresh, GENESIS_HASH]);
      for (const p of fresh) this.ensured.add(p);
    }
    const [first] = groups;
    const links = groups.size === 1 && first[1].some((p) => p.extra) ? new Map([[first[0], await this.commitLocked(first[0], first[1])]]) : await this.commitOptimistic(groups);
    let entries = 0;
    for (const [partition, group] of groups) {
      const l = links.get(partition)!;
      this.heads.set(partition, l[l.length - 1]);
      entries += group.length;
      group.forEach((p, i) => p.resolve(l[i]));
    }
    this.stats.commits++;
    this.stats.entries += entries;
    this.onCommit?.(entries);
  }

  /**
   * The common case, one call (one round trip, its own transaction): each group is chained onto the
   * head this process last wrote; partitions whose head moved meanwhile (another process appended)
   * come back unwritten, and just those are re-read and re-chained.
   */
  private async commitOptimistic(groups: Groups): Promise<Map<number, ChainLink[]>> {
    const done = new Map<number, ChainLink[]>();
    let todo = [...groups.keys()];
    const unknown = todo.filter((p) => !this.heads.has(p));
    const heads = new Map(this.heads);
    if (unknown.length) for (const [p, h] of await this.readHeads(unknown)) heads.set(p, h);
    for (let attempt = 0; attempt < 20; attempt++) {
      const chained = todo.map((p) => ({ partition: p, head: heads.get(p) ?? null, rows: this.chain(heads.get(p) ?? null, groups.get(p)!) }));
      const { rows } = await this.db.prepared<{ ok: number[] }>("ledger_append_many_v1", APPEND_SQL, this.params(chained, groups));
      const ok = new Set((rows[0]?.ok ?? []).map(Number));
      for (const c of chained) if (ok.has(c.partition)) done.set(c.partition, c.rows.map((r) => ({ seq: r.seq, hash: r.hash })));
      todo = todo.filter((p) => !ok.has(p));
      if (!todo.length) return done;
      for (const [p, h] of await this.readHeads(todo)) heads.set(p, h);
    }
    throw new Error(`ledger partitions ${todo.join(", ")}: the head kept moving; append abandoned`);
  }

  /** With outbox events to write in the same transaction: lock the head row, write, run the extras, commit. */
  private async commitLocked(partition: number, group: Pending[]): Promise<ChainLink[]> {
    return this.db.tx(async (q) => {
      const h = await q.query<{ seq: number; hash: string }>("SELECT seq, hash FROM ledger_heads WHERE partition = $1 FOR UPDATE", [partition]);
      if (!h.rows.length) throw new Error(`ledger partition ${partition} has no head row`);
      const head: ChainLink | null = Number(h.rows[0].seq) === 0 ? null : { seq: Number(h.rows[0].seq), hash: h.rows[0].hash };
      const rows = this.chain(head, group);
      const r = await q.query<{ ok: number[] }>(APPEND_SQL, this.params([{ partition, head, rows }], new Map([[partition, group]])));
      // We hold the head row's lock: the head cannot have moved.
      if (!(r.rows[0]?.ok ?? []).map(Number).includes(partition)) throw new Error(`ledger partition ${partition}: locked head moved`);
      for (const p of group) if (p.extra) await p.extra(q);
      return rows.map((x) => ({ seq: x.seq, hash: x.hash }));
    });
  }

  private async readHeads(partitions: number[]): Promise<Map<number, ChainLink | null>> {
    const { rows } = await this.db.query<{ partition: number; seq: number; hash: string }>(
      "SELECT partition, seq, hash FROM ledger_heads WHERE partition = ANY($1::int[])",
      [partitions],
    );
    const out = new Map<number, ChainLink | null>();
    for (const r of rows) out.set(Number(r.partition), Number(r.seq) === 0 ? null : { seq: Number(r.seq), hash: r.hash });
    const missing = partitions.filter((p) => !out.has(p));
    if (missing.length) throw new Error(`ledger partitions ${missing.join(", ")} have no head row`);
    return out;
  }

  private chain(head: ChainLink | null, group: Pending[]) {
    let h = head;
    return group.map((p) => {
      const row = nextLedgerRow(h, ledgerEntry(p.scan));
      h = { seq: row.seq, hash: row.hash };
      return row;
    });
  }

  private params(chained: { partition: number; head: ChainLink | null; rows: ReturnType<LedgerAppender["chain"]> }[], groups: Groups): unknown[] {
    const rows = chained.flatMap((c) => c.rows.map((r) => ({ partition: c.partition, ...r })));
    const s = chained.flatMap((c) => groups.get(c.partition)!.map((p) => p.scan));
    const last = (c: (typeof chained)[number]) => c.rows[c.rows.length - 1];
    return [
      chained.map((c) => c.partition),
      chained.map((c) => c.head?.seq ?? 0),
      chained.map((c) => c.head?.hash ?? GENESIS_HASH),
      chained.map((c) => last(c).seq),
      chained.map((c) => last(c).hash),
      rows.map((r) => r.partition),
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
