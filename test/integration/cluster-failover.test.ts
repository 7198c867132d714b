// Scan load through the production topology while one scan node is SIGKILLed: requests keep
// succeeding within the retry budget, every acknowledged scan is in the ledger, the ledger verifies.
import { ClusterHarness } from "../../harness/cluster";
import { seedBatch } from "../../harness/seed";
import { needServices } from "../support/services";
import { ChainVerifier } from "../../lib/ledger";

const ADMIN = { email: "admin@voketag.test", password: "cluster failover password" };

describe("cluster: a scan node SIGKILLed under load", () => {
  let available = false;
  let h: ClusterHarness;

  beforeAll(async () => {
    available = await needServices("cluster-failover", ["postgres", "redis", "nats"]);
    if (!available) return;
    h = await ClusterHarness.start({ name: "failover", env: { VOKETAG_ADMIN_EMAIL: ADMIN.email, VOKETAG_ADMIN_PASSWORD: ADMIN.password, RATE_LIMIT_NETWORK: "100000", RATE_LIMIT_DEVICE: "100000", ANCHOR_INTERVAL: "3600" } });
  }, 120_000);

  afterAll(async () => {
    await h?.stop();
  });

  it("keeps answering, loses no acknowledged scan, and the ledger verifies", async () => {
    if (!available) return;
    const seed = await seedBatch(h.baseUrl, ADMIN, 200);
    const loading = h.scanLoad({ tokens: seed.tokens, ratePerSecond: 40, durationMs: 15_000, concurrency: 64 });
    await new Promise((r) => setTimeout(r, 4000));
    await h.kill("scan-1", "SIGKILL");
    const load = await loading;
    // eslint-disable-next-line no-console
    console.log(JSON.stringify({ sent: load.sent, acknowledged: load.acknowledged, failed: load.failed, statuses: load.statuses, p50: load.p50, p99: load.p99 }));
    expect(load.sent).toBeGreaterThan(400);
    expect(load.failed).toBe(0);
    expect(load.acknowledged).toBe(load.sent);

    const stored = await h.sql<{ id: string }>("SELECT id FROM scans WHERE id = ANY($1::uuid[])", [load.scanIds]);
    expect(stored.length).toBe(load.scanIds.length);

    const parts = await h.sql<{ partition: number }>("SELECT DISTINCT partition FROM ledger");
    let entries = 0;
    for (const { partition } of parts) {
      const rows = await h.sql("SELECT seq, prev_hash, hash, entry FROM ledger WHERE partition = $1 ORDER BY seq", [partition]);
      const v = new ChainVerifier();
      expect(v.pushAll(rows)).toBeNull();
      const head = (await h.sql("SELECT seq, hash FROM ledger_heads WHERE partition = $1", [partition]))[0];
      expect(v.head).toEqual({ seq: Number(head.seq), hash: head.hash });
      entries += rows.length;
    }
    expect(entries).toBeGreaterThanOrEqual(load.acknowledged);
  }, 120_000);
});
