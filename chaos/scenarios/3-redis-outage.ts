// 3. Redis stopped for 30 s under scan load: scans keep answering (the cache and the rate limits
// degrade to the node's own memory), p99 before, during and after is reported, every acknowledged
// scan is stored, and the nodes use Redis again once it is back. The cluster runs on its own Redis
// (a child redis-server on another port). The full run also freezes Redis (SIGSTOP) for 10 s: a
// Redis that accepts connections but never answers, the case command timeouts exist for.
import Redis from "ioredis";
import { startRedis } from "../infra";
import { ScanLoad, stats, ackIds } from "../load";
import { scanStorage, verifyLedger } from "../checks";
import { startCluster, seedScanTokens, sleep } from "../cluster";
import type { Scenario } from "./types";

async function dbsize(url: string): Promise<number> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await r.connect();
    return await r.dbsize();
  } finally {
    r.disconnect();
  }
}

export const redisOutage: Scenario = {
  id: 3,
  name: "Redis stopped for 30 s",
  fault: "the cluster's own Redis stopped for 30 s (quick: 15 s) under scan load, then started again (full run: then frozen with SIGSTOP for 10 s)",
  budget: (quick) => (quick ? 150 : 300),
  async run({ quick, rec }) {
    const redis = await startRedis();
    rec.log(`own redis on port ${redis.port}`);
    const h = await startCluster(rec, {
      name: "chaos3",
      infra: { redisUrl: redis.url },
      groups: [
        { name: "api", services: "api", count: 2 },
        { name: "scan", services: "scan", count: 2 },
        { name: "worker", services: "factory,anchor,admin,webhooks", count: 1 },
      ],
    });
    const seed = await seedScanTokens(h.baseUrl, 300);
    const rate = quick ? 30 : 40;
    const p = quick ? { before: 8000, down: 15_000, after: 12_000 } : { before: 20_000, down: 30_000, after: 30_000, frozen: 10_000, tail: 20_000 };
    rec.figure("rate_per_s", rate);
    rec.figure("outage_s", p.down / 1000);
    const load = new ScanLoad({ baseUrl: h.baseUrl, tokens: seed.tokens, ratePerSecond: rate, concurrency: 64 });
    await sleep(p.before);
    const keysBefore = await dbsize(redis.url);
    const tDown = load.now();
    await redis.stop("SIGTERM");
    rec.log(`redis stopped (${keysBefore} keys in it)`);
    await sleep(p.down);
    const tUp = load.now();
    await redis.start();
    rec.log("redis started again (empty)");
    await sleep(p.after);
    const tAfter = load.now();
    let tFrozen = 0;
    let tThawed = 0;
    if (!quick) {
      tFrozen = load.now();
      process.kill(redis.pid()!, "SIGSTOP");
      rec.log("redis frozen (SIGSTOP)");
      await sleep(p.frozen!);
      process.kill(redis.pid()!, "SIGCONT");
      tThawed = load.now();
      rec.log("redis thawed (SIGCONT)");
      await sleep(p.tail!);
    }
    const samples = await load.stop();
    const keysAfter = await dbsize(redis.url);

    const all = stats(samples);
    const before = stats(samples, 0, tDown);
    const during = stats(samples, tDown, tUp);
    const after = stats(samples, tUp, tAfter);
    rec.figure("before", before);
    rec.figure("during_outage", during);
    rec.figure("after_outage", after);
    rec.check("scans keep answering while Redis is down", during.sent > 0 && during.failed === 0, `${during.sent} sent, ${during.acknowledged} answered with a verdict, ${during.failed} failed ${JSON.stringify(during.statuses)}; p50 ${during.p50} ms, p99 ${during.p99} ms (before: p99 ${before.p99} ms)`);
    rec.check("scans keep answering after Redis is back", after.failed === 0, `${after.sent} sent, ${after.failed} failed; p99 ${after.p99} ms`);
    rec.check("the nodes use Redis again once it is back", keysAfter > 0, `${keysAfter} keys in the restarted Redis (${keysBefore} before the outage)`);
    if (!quick) {
      const frozen = stats(samples, tFrozen, tThawed);
      const thawed = stats(samples, tThawed, Infinity);
      rec.figure("during_freeze", frozen);
      rec.figure("after_freeze", thawed);
      rec.check("scans keep answering while Redis hangs (SIGSTOP)", frozen.failed === 0, `${frozen.sent} sent, ${frozen.failed} failed ${JSON.stringify(frozen.statuses)}; p99 ${frozen.p99} ms`);
      rec.check("scans keep answering after Redis thaws", thawed.failed === 0, `${thawed.sent} sent, ${thawed.failed} failed; p99 ${thawed.p99} ms`);
    }
    const stored = await scanStorage(h.env.databaseUrl, ackIds(samples));
    rec.count({ unit: "scans", sent: all.sent, acknowledged: all.acknowledged, stored: stored.stored, lost: stored.lost });
    rec.check("every acknowledged scan is stored", stored.lost === 0, `${stored.acknowledged} acknowledged, ${stored.stored} stored, ${stored.lost} lost`);
    const ledger = await verifyLedger(h.env.databaseUrl);
    rec.check("the ledger verifies", ledger.ok, ledger.ok ? `${ledger.entries} entries` : ledger.problems.join("; "));
  },
};
