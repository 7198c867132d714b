// The ledger's group commit on a real Postgres: scans of many partitions share one commit, two
// appenders with their own view of the heads (two nodes) append to the same partitions at once
// and every chain stays linear, an entry that cannot be written fails alone, and outbox-style extras
// run in the same transaction as their entry.
import { acquireDatabase, releaseDatabase, migrate, Database } from "../../mixins/database";
import { LedgerAppender } from "../../mixins/ledger-appender";
import { invalidScanRecord } from "../support/scan-record";
import { verifyChain } from "../../lib/ledger";
import { createTestDatabase } from "../support/test-database";
import { needServices } from "../support/services";

const record = invalidScanRecord;

describe("ledger group commit (Postgres)", () => {
  let available = false;
  let drop: () => Promise<void>;
  let db: Database;

  beforeAll(async () => {
    available = await needServices("ledger-appender", ["postgres"]);
    if (!available) return;
    const t = await createTestDatabase("ledger_appender");
    drop = t.drop;
    db = acquireDatabase({ databaseUrl: t.url, dataDir: "memory://" });
    await migrate(db);
  });
  afterAll(async () => {
    if (!available) return;
    await releaseDatabase(db);
    await drop();
  });

  async function chainOf(partition: number) {
    const { rows } = await db.query("SELECT seq, prev_hash, hash, entry FROM ledger WHERE partition = $1 ORDER BY seq", [partition]);
    return rows;
  }

  it("writes the scans of many partitions in one commit, each partition's chain linear", async () => {
    if (!available) return;
    const a = new LedgerAppender(db);
    const links = await Promise.all(Array.from({ length: 64 }, (_, i) => a.append(100 + (i % 8), record())));
    // 64 entries over 8 partitions, all queued in one tick: one commit.
    expect(a.stats).toEqual({ commits: 1, entries: 64 });
    expect(links.filter((l) => l.seq === 8)).toHaveLength(8);
    for (let p = 100; p < 108; p++) {
      const rows = await chainOf(p);
      expect(rows.map((r: any) => Number(r.seq))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(verifyChain(rows).ok).toBe(true);
    }
    const scans = await db.query("SELECT count(*)::int AS n FROM scans WHERE partition BETWEEN 100 AND 107");
    expect(scans.rows[0].n).toBe(64);
  });

  it("keeps partitions linear when two appenders (two nodes) write the same partitions at once", async () => {
    if (!available) return;
    const one = new LedgerAppender(db);
    const two = new LedgerAppender(db);
    const n = 600;
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        // Spread over time so the appenders' commits interleave and each sees the other move the heads.
        await new Promise((r) => setTimeout(r, i % 50));
        return (i % 2 ? one : two).append(200 + (i % 4), record());
      }),
    );
    let total = 0;
    for (let p = 200; p < 204; p++) {
      const rows = await chainOf(p);
      total += rows.length;
      expect(rows.map((r: any) => Number(r.seq))).toEqual(rows.map((_: unknown, i: number) => i + 1));
      expect(verifyChain(rows).ok).toBe(true);
      const head = (await db.query("SELECT seq, hash FROM ledger_heads WHERE partition = $1", [p])).rows[0];
      expect({ seq: Number(head.seq), hash: head.hash }).toEqual({ seq: rows.length, hash: rows[rows.length - 1].hash });
    }
    expect(total).toBe(n);
    // Grouping happened on both sides.
    expect(one.stats.commits + two.stats.commits).toBeLessThan(n);
  });

  it("fails only the entry that cannot be written, not the scans sharing its commit", async () => {
    if (!available) return;
    const a = new LedgerAppender(db);
    const dup = record();
    await a.append(300, dup);
    // The same scan id again violates the scans primary key; its neighbours must still land.
    const results = await Promise.allSettled([a.append(300, record()), a.append(301, { ...dup }), a.append(302, record())]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((await chainOf(300)).length).toBe(2);
    expect((await chainOf(301)).length).toBe(0);
    expect(verifyChain(await chainOf(300)).ok).toBe(true);
  });

  it("runs an entry's extra in its transaction: a failing extra leaves no entry behind", async () => {
    if (!available) return;
    const a = new LedgerAppender(db);
    await db.query("CREATE TABLE IF NOT EXISTS appender_extra (scan_id uuid PRIMARY KEY)");
    const good = record();
    await a.append(400, good, (q) => q.query("INSERT INTO appender_extra VALUES ($1)", [good.id]).then(() => undefined));
    const bad = record();
    await expect(a.append(400, bad, () => Promise.reject(new Error("outbox refused")))).rejects.toThrow("outbox refused");
    const rows = await chainOf(400);
    expect(rows.map((r: any) => r.entry.scan_id)).toEqual([good.id]);
    expect((await db.query("SELECT scan_id FROM appender_extra")).rows).toEqual([{ scan_id: good.id }]);
    expect((await db.query("SELECT count(*)::int AS n FROM scans WHERE id = $1", [bad.id])).rows[0].n).toBe(0);
    // The chain goes on after the failure.
    await a.append(400, record());
    expect(verifyChain(await chainOf(400)).ok).toBe(true);
  });
});
