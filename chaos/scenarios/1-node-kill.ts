// 1. SIGKILL a broker node under scan load: every acknowledged scan is in the ledger and the ledger
// verifies. A scan node is killed (its in-flight calls are retried on the other one); in the full run
// it is restarted and rejoins, and then a gateway node is SIGKILLed as well (only the requests in
// flight on it may fail: their sockets die with it).
import { ScanLoad, stats, ackIds } from "../load";
import { scanStorage, verifyLedger } from "../checks";
import { startCluster, seedScanTokens, sleep } from "../cluster";
import type { Scenario } from "./types";

export const nodeKill: Scenario = {
  id: 1,
  name: "SIGKILL a broker node",
  fault: "a scan node (and, full run, a gateway node) SIGKILLed under scan load",
  budget: (quick) => (quick ? 150 : 400),
  async run({ quick, rec }) {
    const h = await startCluster(rec, {
      name: "chaos1",
      groups: [
        { name: "api", services: "api", count: 2 },
        { name: "scan", services: "scan", count: 2 },
        { name: "worker", services: "factory,anchor,admin,webhooks", count: 1 },
      ],
    });
    const seed = await seedScanTokens(h.baseUrl, 300);
    const rate = quick ? 40 : 60;
    const concurrency = 64;
    const plan = quick ? { killScan: 4000, end: 15_000 } : { killScan: 10_000, restartScan: 30_000, killApi: 40_000, end: 60_000 };
    rec.log(`scan load ${rate}/s for ${plan.end / 1000} s; scan-1 SIGKILLed at ${plan.killScan / 1000} s`);
    const load = new ScanLoad({ baseUrl: h.baseUrl, tokens: seed.tokens, ratePerSecond: rate, concurrency });
    const marks: Record<string, number> = {};
    await sleep(plan.killScan);
    marks.killScan = load.now();
    await h.kill("scan-1", "SIGKILL");
    rec.log("scan-1 SIGKILLed");
    if (!quick) {
      await sleep(plan.restartScan! - load.now());
      marks.restartScan = load.now();
      await h.restart("scan-1");
      marks.scanBack = load.now();
      rec.log(`scan-1 restarted (${((marks.scanBack - marks.restartScan) / 1000).toFixed(1)} s to start)`);
      // Give the restarted node time to take its share before the next fault.
      await sleep(Math.max(0, Math.max(plan.killApi!, marks.scanBack + 10_000) - load.now()));
      marks.killApi = load.now();
      await h.kill("api-1", "SIGKILL");
      rec.log("api-1 SIGKILLed");
    }
    await sleep(Math.max(0, plan.end - load.now()));
    const samples = await load.stop();

    const all = stats(samples);
    const before = stats(samples, 0, marks.killScan);
    const scanKill = stats(samples, marks.killScan, marks.killScan + 5000);
    const scanPhase = stats(samples, marks.killScan, marks.restartScan ?? Infinity);
    rec.figure("rate_per_s", rate);
    rec.figure("all", all);
    rec.figure("before_kill", before);
    rec.figure("scan_kill_first_5s", scanKill);
    rec.figure("after_scan_kill", stats(samples, marks.killScan + 5000, marks.restartScan ?? Infinity));
    rec.check("no request failed while a scan node was SIGKILLed", scanPhase.failed === 0, `${scanPhase.sent} sent, ${scanPhase.failed} failed ${JSON.stringify(scanPhase.statuses)}; p99 in the 5 s after the kill ${scanKill.p99} ms (max ${scanKill.max} ms)`);
    if (!quick) {
      const restarting = stats(samples, marks.restartScan, marks.scanBack);
      rec.figure("while_scan_restarts", restarting);
      rec.check("no request failed while the killed scan node started again", restarting.failed === 0, `${restarting.sent} sent, ${restarting.failed} failed ${JSON.stringify(restarting.statuses)}`);
      const rejoined = stats(samples, marks.scanBack, marks.killApi);
      rec.figure("after_scan_restart", rejoined);
      // Requests in flight on the gateway when it died started before the kill: count them in.
      const apiKill = stats(samples.filter((x) => x.t + x.ms >= marks.killApi));
      rec.figure("after_api_kill", apiKill);
      rec.check("the restarted scan node rejoined without errors", rejoined.sent > 0 && rejoined.failed === 0, `${rejoined.sent} sent, ${rejoined.failed} failed`);
      rec.check(
        "a gateway SIGKILL fails only the requests in flight on it",
        apiKill.failed <= concurrency,
        `${apiKill.failed} of ${apiKill.sent} failed ${JSON.stringify(apiKill.statuses)} (bound: ${concurrency} in flight)`,
      );
      const settled = stats(samples, marks.killApi + 5000, Infinity);
      rec.check("requests 5 s after the gateway kill all succeed", settled.failed === 0, `${settled.sent} sent, ${settled.failed} failed`);
    }

    const stored = await scanStorage(h.env.databaseUrl, ackIds(samples));
    rec.count({ unit: "scans", sent: all.sent, acknowledged: all.acknowledged, stored: stored.stored, lost: stored.lost });
    rec.check("every acknowledged scan is in scans and in the ledger", stored.lost === 0, `${stored.acknowledged} acknowledged, ${stored.stored} stored, ${stored.lost} lost${stored.missing.length ? ` (e.g. ${stored.missing.join(", ")})` : ""}`);
    const ledger = await verifyLedger(h.env.databaseUrl);
    rec.figure("ledger", { partitions: ledger.partitions, entries: ledger.entries });
    rec.check("the ledger's hash chains verify and end at their stored heads", ledger.ok, ledger.ok ? `${ledger.entries} entries in ${ledger.partitions} partitions` : ledger.problems.join("; "));
  },
};
