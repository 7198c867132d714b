// The fuzzer in CI (fuzz/run.ts): 10,000 malformed requests across every route of /openapi.json
// against one real node. Zero 5xx, zero hangs or dropped connections, the node alive, its RSS after
// a full GC within 10% of where it stood after the warm-up pass, and every 4xx of the API in the
// contract's JSON error shape. FUZZ_SEED picks another reproducible run.
import { needServices } from "../support/services";
import { startFuzzTarget, runFuzz, fuzzSummary, FuzzTarget, FuzzReport } from "../../fuzz/run";

describe("fuzz: 10,000 malformed requests over every route", () => {
  let available = false;
  let target: FuzzTarget | undefined;
  let report: FuzzReport;

  beforeAll(async () => {
    available = await needServices("fuzz", ["postgres", "redis"]);
    if (!available) return;
    target = await startFuzzTarget();
    report = await runFuzz({ target, requests: 10_000, seed: Number(process.env.FUZZ_SEED ?? 1) });
    // eslint-disable-next-line no-console
    console.log(fuzzSummary(report));
  }, 300_000);

  afterAll(async () => {
    await target?.stop();
  });

  it("sends at least 10,000 requests and reaches every route of the OpenAPI document", () => {
    if (!available) return;
    expect(report.requests - report.unsendable).toBeGreaterThanOrEqual(10_000);
    expect(report.routes_not_covered).toEqual([]);
    expect(report.per_route_min).toBeGreaterThanOrEqual(50);
  });

  it("answers no request with a 5xx", () => {
    if (!available) return;
    expect(report.failures.filter((f) => typeof f.status === "number" && f.status >= 500).map((f) => `${f.status} ${f.method} ${f.path} (${f.kind}) ${f.cause ?? ""}`)).toEqual([]);
  });

  it("never hangs, never drops a connection, and the node stays up", () => {
    if (!available) return;
    expect({ hangs: report.hangs, resets: report.resets }).toEqual({ hangs: 0, resets: 0 });
    expect(report.node_alive).toBe(true);
    expect(report.health_after).toBe(200);
  });

  it("keeps RSS after GC within 10% of where it stood after warm-up", () => {
    if (!available) return;
    expect(report.rss).not.toBeNull();
    expect(report.rss!.growth_pct).toBeLessThan(10);
  });

  it("answers every 4xx of /v1 with the JSON error shape", () => {
    if (!available) return;
    expect(report.non_json_examples).toEqual([]);
  });
});
