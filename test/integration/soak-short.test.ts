// The soak in CI, shortened to one minute (`npm run soak` runs ten): the production topology at
// half its measured peak scan rate. No scan fails, every acknowledged scan is stored, the ledger
// verifies, and no node's RSS after a full GC grows 10% or more.
import { needServices } from "../support/services";
import { runSoak, soakSummary, SoakReport } from "../../chaos/soak";

describe("soak (short): half the peak scan rate for a minute", () => {
  let available = false;
  let report: SoakReport;

  beforeAll(async () => {
    available = await needServices("soak-short", ["postgres", "redis", "nats"]);
    if (!available) return;
    report = await runSoak({ durationS: Number(process.env.SOAK_SECONDS ?? 60), peakSeconds: 10 });
    // eslint-disable-next-line no-console
    console.log(soakSummary(report));
  }, 240_000);

  it("answers every scan, stores every acknowledged one, and the ledger verifies", () => {
    if (!available) return;
    expect(report.soak.sent).toBeGreaterThan(report.rate_per_s * report.duration_s * 0.8);
    expect(report.soak.statuses).toEqual({ "200": report.soak.sent });
    expect(report.lost).toBe(0);
    expect(report.ledger_ok).toBe(true);
  });

  it("keeps every node's RSS after GC within 10% of where it stood after warm-up", () => {
    if (!available) return;
    expect(report.nodes.filter((n) => n.growth_pct >= 10).map((n) => `${n.id}: ${n.warm.rssMb} → ${n.after.rssMb} MB`)).toEqual([]);
  });
});
