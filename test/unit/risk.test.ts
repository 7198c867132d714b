import fc from "fast-check";
import { EARTH_RADIUS_KM } from "../../lib/geo";
import {
  assessRisk,
  DEFAULT_RISK_CONFIG,
  FACTOR_NAMES,
  type FactorName,
  levelFor,
  mergeRiskConfig,
  enumerationBuckets,
  type RiskAssessment,
  RiskConfigError,
  type ScanContext,
  verdictFor,
} from "../../lib/risk";

const SAO_PAULO = { lat: -23.5505, lng: -46.6333, accuracy_m: 25 };
const SAO_PAULO_2 = { lat: -23.5512, lng: -46.6341, accuracy_m: 40 }; // ~100 m away
const LISBON = { lat: 38.7223, lng: -9.1393, accuracy_m: 25 };
const MONTEVIDEO = { lat: -34.9011, lng: -56.1645 };
const RIVERA_UY = { lat: -30.905, lng: -55.55 }; // Uruguayan side of a twin city; Brazil is ~3 km north-east
const SAN_JUAN = { lat: 18.4655, lng: -66.1057 };
const MID_ATLANTIC = { lat: 30, lng: -40 };

const T0 = new Date("2025-03-01T12:00:00Z");
const at = (minutes: number) => new Date(T0.getTime() + minutes * 60_000);

function ctx(over: Partial<ScanContext> = {}): ScanContext {
  return {
    now: T0,
    product: { status: "active", anchored: true },
    marketRegions: [],
    device: "dev-A",
    history: [],
    priorScanCount: 0,
    priorDistinctDevices: 0,
    deviceRecentDistinctTags: 1,
    reports: { tag: 0, batch: 0 },
    ...over,
  };
}

const factor = (r: RiskAssessment, name: FactorName) => {
  const f = r.factors.find((x) => x.name === name);
  if (!f) throw new Error(`factor ${name} missing`);
  return f;
};
const contribution = (r: RiskAssessment, name: FactorName) => factor(r, name).contribution;
/** Names of the factors that contribute. */
const active = (r: RiskAssessment) => r.factors.filter((f) => f.contribution > 0).map((f) => f.name);

/** A point on the equator `km` east of 0°E (open sea in the Gulf of Guinea). */
const eastOnEquator = (km: number) => ({ lat: 0, lng: (km / EARTH_RADIUS_KM) * (180 / Math.PI) });

/** Two located scans `km` apart (accuracy floor 1 km each, so 2 km of slack), `minutes` apart. */
function travel(km: number, minutes: number, accuracy_m?: number): ScanContext {
  const a = { ...eastOnEquator(0), accuracy_m };
  const b = { ...eastOnEquator(km), accuracy_m };
  return ctx({ now: at(minutes), location: b, history: [{ at: T0, device: "dev-A", location: a }], priorScanCount: 1, priorDistinctDevices: 1 });
}

describe("assessRisk: shape", () => {
  it("always lists every factor, in order, idle ones with contribution 0", () => {
    const r = assessRisk(ctx());
    expect(r.factors.map((f) => f.name)).toEqual([...FACTOR_NAMES]);
    expect(FACTOR_NAMES).toEqual(["scan_count", "distinct_devices", "impossible_travel", "grey_market", "enumeration", "fraud_reports", "product_status", "not_anchored"]);
    for (const f of r.factors) {
      expect(f.contribution).toBe(0);
      expect(f.weight).toBe(DEFAULT_RISK_CONFIG.weights[f.name as FactorName]);
      expect(f.detail.length).toBeGreaterThan(20);
    }
    expect(r).toMatchObject({ score: 0, level: "low" });
  });

  it("scores the rounded sum of contributions, capped at 100", () => {
    const r = assessRisk(ctx({ priorScanCount: 5, reports: { tag: 1, batch: 1 } }));
    // scan_count 15 × 1/20 = 0.75, fraud_reports 40 × 1/3 = 13.33
    expect(contribution(r, "scan_count")).toBe(0.75);
    expect(contribution(r, "fraud_reports")).toBe(13.33);
    expect(r.score).toBe(14);
    const worst = assessRisk(ctx({ product: { status: "void", anchored: false }, priorScanCount: 99, priorDistinctDevices: 20, deviceRecentDistinctTags: 500, reports: { tag: 9, batch: 99 } }));
    expect(worst.factors.reduce((s, f) => s + f.contribution, 0)).toBeGreaterThan(100);
    expect(worst).toMatchObject({ score: 100, level: "high" });
  });
});

describe("assessRisk: baseline scans", () => {
  it("a first scan is low and authentic", () => {
    const r = assessRisk(ctx({ location: SAO_PAULO, marketRegions: ["BR"] }));
    expect(r).toMatchObject({ score: 0, level: "low" });
    expect(verdictFor("active", r, true)).toBe("authentic");
  });

  it("a second scan by the same phone at the same place next day is low and authentic", () => {
    const r = assessRisk(
      ctx({
        now: at(24 * 60),
        location: SAO_PAULO_2,
        marketRegions: ["BR"],
        history: [{ at: T0, device: "dev-A", location: SAO_PAULO }],
        priorScanCount: 1,
        priorDistinctDevices: 1,
      }),
    );
    expect(r).toMatchObject({ score: 0, level: "low" });
    expect(factor(r, "impossible_travel").value).toBe(0);
    expect(factor(r, "distinct_devices").value).toBe(1);
    expect(factor(r, "scan_count").value).toBe(2);
    expect(verdictFor("active", r, true)).toBe("authentic");
  });
});

describe("factor scan_count", () => {
  const scans = (prior: number) => assessRisk(ctx({ priorScanCount: prior }));

  it("counts this scan and stays idle up to 5", () => {
    expect(factor(scans(0), "scan_count")).toMatchObject({ value: 1, contribution: 0 });
    expect(factor(scans(4), "scan_count")).toMatchObject({ value: 5, contribution: 0 });
    expect(factor(scans(4), "scan_count").detail).toContain("5 times");
  });

  it("ramps from 6 scans to full weight at 25", () => {
    expect(factor(scans(5), "scan_count")).toMatchObject({ value: 6, contribution: 0.75 });
    expect(contribution(scans(14), "scan_count")).toBe(7.5);
    expect(contribution(scans(24), "scan_count")).toBe(15);
    expect(contribution(scans(500), "scan_count")).toBe(15);
    expect(factor(scans(5), "scan_count").detail).toMatch(/6 times.*More than 5/);
  });

  it("trusts history when it is longer than priorScanCount", () => {
    const history = Array.from({ length: 9 }, (_, i) => ({ at: at(i), device: "dev-A" }));
    expect(factor(assessRisk(ctx({ now: at(10), history, priorScanCount: 0 })), "scan_count").value).toBe(10);
  });
});

describe("factor distinct_devices", () => {
  it("counts this device when it is new, and stays idle up to 2 devices", () => {
    const r = assessRisk(ctx({ device: "dev-B", history: [{ at: T0, device: "dev-A" }], priorScanCount: 1, priorDistinctDevices: 1, now: at(5) }));
    expect(factor(r, "distinct_devices")).toMatchObject({ value: 2, contribution: 0 });
  });

  it("does not count a device already seen in history", () => {
    const r = assessRisk(ctx({ device: "dev-A", history: [{ at: T0, device: "dev-A" }, { at: at(1), device: "dev-B" }], priorScanCount: 2, priorDistinctDevices: 2, now: at(5) }));
    expect(factor(r, "distinct_devices")).toMatchObject({ value: 2, contribution: 0 });
  });

  it("devices beyond the first 2 contribute, reaching full weight at 8", () => {
    const devices = (prior: number) => assessRisk(ctx({ device: "new", priorScanCount: prior, priorDistinctDevices: prior }));
    expect(factor(devices(2), "distinct_devices")).toMatchObject({ value: 3, contribution: 7.5 });
    expect(contribution(devices(4), "distinct_devices")).toBe(22.5);
    expect(contribution(devices(7), "distinct_devices")).toBe(45);
    expect(contribution(devices(30), "distinct_devices")).toBe(45);
    expect(factor(devices(2), "distinct_devices").detail).toContain("3 different devices, 1 more than the 2 expected");
  });

  it("honours deviceSeenBefore when history is truncated", () => {
    const base = { device: "dev-A", history: [], priorScanCount: 50, priorDistinctDevices: 3 };
    expect(factor(assessRisk(ctx(base)), "distinct_devices").value).toBe(4);
    expect(factor(assessRisk(ctx({ ...base, deviceSeenBefore: true })), "distinct_devices").value).toBe(3);
    expect(factor(assessRisk(ctx({ ...base, history: [{ at: T0, device: "dev-A" }], deviceSeenBefore: false })), "distinct_devices").value).toBe(4);
  });
});

describe("factor impossible_travel", () => {
  it("is idle without two located scans", () => {
    expect(factor(assessRisk(ctx()), "impossible_travel")).toMatchObject({ value: null, contribution: 0 });
    expect(factor(assessRisk(ctx({ location: LISBON })), "impossible_travel")).toMatchObject({ value: null, contribution: 0 });
    const oneOld = ctx({ now: at(60), history: [{ at: T0, device: "x", location: SAO_PAULO }], priorScanCount: 1, priorDistinctDevices: 1 });
    expect(factor(assessRisk(oneOld), "impossible_travel")).toMatchObject({ value: null, contribution: 0 });
  });

  it("is idle at 900 km/h and below, after removing 1 km of uncertainty per location", () => {
    // 902 km in one hour: 900 km/h once the 2 km of slack is removed.
    expect(factor(assessRisk(travel(902, 60)), "impossible_travel")).toMatchObject({ value: 900, contribution: 0 });
    expect(contribution(assessRisk(travel(500, 60)), "impossible_travel")).toBe(0);
  });

  it("ramps from 900 to 1800 km/h", () => {
    expect(factor(assessRisk(travel(1002, 60)), "impossible_travel")).toMatchObject({ value: 1000, contribution: 6.67 });
    expect(contribution(assessRisk(travel(1352, 60)), "impossible_travel")).toBe(30);
    expect(contribution(assessRisk(travel(1802, 60)), "impossible_travel")).toBe(60);
    expect(contribution(assessRisk(travel(5000, 60)), "impossible_travel")).toBe(60);
  });

  it("lets reported accuracy absorb the distance", () => {
    // 100 km in 5 minutes is 1,176 km/h after slack...
    expect(contribution(assessRisk(travel(100, 5)), "impossible_travel")).toBeGreaterThan(0);
    // ...but not when each location is only known within 50 km.
    expect(factor(assessRisk(travel(100, 5, 50_000)), "impossible_travel")).toMatchObject({ value: 0, contribution: 0 });
  });

  it("counts gaps shorter than 5 minutes as 5 minutes", () => {
    // 50 km in 10 s would be 18,000 km/h; over the 5-minute minimum gap it is 576 km/h.
    const r = assessRisk(ctx({ now: new Date(T0.getTime() + 10_000), location: eastOnEquator(50), history: [{ at: T0, device: "a", location: eastOnEquator(0) }] }));
    expect(factor(r, "impossible_travel")).toMatchObject({ value: 576, contribution: 0 });
    // Same timestamp: still finite.
    const same = assessRisk(ctx({ now: T0, location: eastOnEquator(200), history: [{ at: T0, device: "a", location: eastOnEquator(0) }] }));
    expect(factor(same, "impossible_travel").value).toBe(2376);
  });

  it("compares against the latest previous located scan, skipping unlocated ones", () => {
    const r = assessRisk(
      ctx({
        now: at(120),
        location: LISBON,
        history: [
          { at: T0, device: "a", location: SAO_PAULO },
          { at: at(60), device: "a", location: { ...LISBON, lat: 38.7 } },
          { at: at(90), device: "a" },
        ],
      }),
    );
    // SP -> Lisbon took one hour (impossible) and is still reported, though the latest pair is local.
    expect(contribution(r, "impossible_travel")).toBe(60);
    const local = assessRisk(ctx({ now: at(120), location: LISBON, history: [{ at: at(60), device: "a", location: { ...LISBON, lat: 38.7 } }, { at: at(90), device: "a" }] }));
    expect(factor(local, "impossible_travel")).toMatchObject({ value: 0, contribution: 0 });
  });

  it("names both countries and the speed in its detail", () => {
    const r = assessRisk(ctx({ now: at(60), location: LISBON, history: [{ at: T0, device: "a", location: SAO_PAULO }] }));
    const f = factor(r, "impossible_travel");
    expect(f.contribution).toBe(60);
    expect(f.value).toBeGreaterThan(7800);
    expect(f.detail).toContain("Brazil (BR)");
    expect(f.detail).toContain("Portugal (PT)");
    expect(f.detail).toContain(`${(f.value as number).toLocaleString("en-US")} km/h`);
    expect(f.detail).toContain("1 hour later");
  });

  it("ignores invalid coordinates and tolerates out-of-order history", () => {
    const r = assessRisk(ctx({ now: at(120), location: { lat: 200, lng: 0 }, history: [{ at: at(60), device: "a", location: LISBON }, { at: T0, device: "a", location: SAO_PAULO }] }));
    expect(contribution(r, "impossible_travel")).toBe(60);
    expect(factor(r, "grey_market").value).toBeNull();
  });
});

describe("factor grey_market", () => {
  it("is idle without a location or without market regions", () => {
    expect(factor(assessRisk(ctx({ marketRegions: ["BR"] })), "grey_market")).toMatchObject({ value: null, contribution: 0 });
    const anywhere = factor(assessRisk(ctx({ location: LISBON, marketRegions: [] })), "grey_market");
    expect(anywhere).toMatchObject({ value: "PT", contribution: 0 });
    expect(anywhere.detail).toContain("anywhere");
  });

  it("is idle inside the markets, active outside them", () => {
    expect(factor(assessRisk(ctx({ location: SAO_PAULO, marketRegions: ["BR"] })), "grey_market")).toMatchObject({ value: "BR", contribution: 0 });
    expect(factor(assessRisk(ctx({ location: SAO_PAULO, marketRegions: ["br", "AR"] })), "grey_market").contribution).toBe(0);
    const out = factor(assessRisk(ctx({ location: LISBON, marketRegions: ["BR"] })), "grey_market");
    expect(out).toMatchObject({ value: "PT", contribution: 25 });
    expect(out.detail).toContain("Portugal (PT)");
    expect(out.detail).toContain("BR");
  });

  it("treats a territory as inside its sovereign's market, and its own", () => {
    expect(factor(assessRisk(ctx({ location: SAN_JUAN, marketRegions: ["US"] })), "grey_market")).toMatchObject({ value: "PR", contribution: 0 });
    expect(factor(assessRisk(ctx({ location: SAN_JUAN, marketRegions: ["PR"] })), "grey_market").contribution).toBe(0);
    expect(factor(assessRisk(ctx({ location: SAN_JUAN, marketRegions: ["CA"] })), "grey_market").contribution).toBe(25);
  });

  it("gives the benefit of the doubt within the location's accuracy of a market border", () => {
    expect(factor(assessRisk(ctx({ location: MONTEVIDEO, marketRegions: ["BR"] })), "grey_market").contribution).toBe(25);
    const near = factor(assessRisk(ctx({ location: { ...RIVERA_UY, accuracy_m: 5000 }, marketRegions: ["BR"] })), "grey_market");
    expect(near).toMatchObject({ value: "UY", contribution: 0 });
    expect(near.detail).toContain("within 5.0 km");
    const strict = mergeRiskConfig(DEFAULT_RISK_CONFIG, { thresholds: { grey_market: { border_margin_m: 0 } } });
    expect(contribution(assessRisk(ctx({ location: RIVERA_UY, marketRegions: ["BR"] }), strict), "grey_market")).toBe(25);
  });

  it("is idle when the location is too imprecise or at sea", () => {
    expect(factor(assessRisk(ctx({ location: { ...LISBON, accuracy_m: 60_000 }, marketRegions: ["BR"] })), "grey_market").contribution).toBe(0);
    expect(factor(assessRisk(ctx({ location: MID_ATLANTIC, marketRegions: ["BR"] })), "grey_market")).toMatchObject({ value: null, contribution: 0 });
  });
});

describe("factor enumeration", () => {
  const tags = (n: number) => assessRisk(ctx({ deviceRecentDistinctTags: n }));

  it("is idle up to 10 distinct tags in the window", () => {
    expect(factor(tags(10), "enumeration")).toMatchObject({ value: 10, contribution: 0 });
    expect(factor(tags(0), "enumeration").value).toBe(1);
    expect(factor(tags(1), "enumeration").detail).toContain("in the last hour");
  });

  it("ramps to full weight at 50", () => {
    expect(factor(tags(11), "enumeration")).toMatchObject({ value: 11, contribution: 0.88 });
    expect(contribution(tags(30), "enumeration")).toBe(17.5);
    expect(contribution(tags(50), "enumeration")).toBe(35);
    expect(contribution(tags(5000), "enumeration")).toBe(35);
    expect(factor(tags(50), "enumeration").detail).toContain("50 different tags");
  });

  it("counts a network's sweep as one device's share of it (network_share devices per network)", () => {
    const net = (device: number, network: number) => assessRisk(ctx({ deviceRecentDistinctTags: device, networkRecentDistinctTags: network }));
    // 200 tags across a network of up to 20 devices: 10 each, still normal.
    expect(factor(net(1, 200), "enumeration")).toMatchObject({ value: 10, contribution: 0 });
    expect(factor(net(1, 201), "enumeration")).toMatchObject({ value: 11, contribution: 0.88 });
    expect(factor(net(1, 1000), "enumeration")).toMatchObject({ value: 50, contribution: 35 });
    expect(factor(net(1, 1000), "enumeration").detail).toMatch(/^Devices on this network scanned 1,000 different tags in the last hour, as many as 50 tags for each of the 20 devices/);
    // The device's own count wins when it is the larger, and the detail says "this device".
    expect(factor(net(30, 100), "enumeration")).toMatchObject({ value: 30, contribution: 17.5 });
    expect(factor(net(30, 100), "enumeration").detail).toMatch(/^This device scanned 30 different tags/);
    // Omitted or junk network counts change nothing.
    expect(factor(net(5, NaN), "enumeration").value).toBe(5);
    expect(factor(assessRisk(ctx({ deviceRecentDistinctTags: 5 })), "enumeration").value).toBe(5);
  });

  it("takes network_share and the window from a tenant's override", () => {
    const cfg = mergeRiskConfig(DEFAULT_RISK_CONFIG, { thresholds: { enumeration: { network_share: 2, window_seconds: 600 } } });
    const r = assessRisk(ctx({ deviceRecentDistinctTags: 1, networkRecentDistinctTags: 40 }), cfg);
    expect(factor(r, "enumeration")).toMatchObject({ value: 20 });
    expect(factor(r, "enumeration").detail).toContain("in the last 10 minutes");
    expect(() => mergeRiskConfig(DEFAULT_RISK_CONFIG, { thresholds: { enumeration: { network_share: 0 } } })).toThrow("thresholds.enumeration.network_share");
    expect(() => mergeRiskConfig(DEFAULT_RISK_CONFIG, { thresholds: { enumeration: { network_share: 1.5 } } })).toThrow("must be an integer");
  });
});

describe("factor fraud_reports", () => {
  const reports = (tag: number, batch: number) => assessRisk(ctx({ reports: { tag, batch } }));

  it("is idle without reports", () => {
    expect(factor(reports(0, 0), "fraud_reports")).toMatchObject({ value: 0, contribution: 0 });
  });

  it("weighs a report on the tag four times one elsewhere in the batch", () => {
    expect(factor(reports(1, 1), "fraud_reports")).toMatchObject({ value: 1, contribution: 13.33 });
    expect(factor(reports(0, 4), "fraud_reports")).toMatchObject({ value: 1, contribution: 13.33 });
    expect(factor(reports(0, 1), "fraud_reports")).toMatchObject({ value: 0.25, contribution: 3.33 });
    expect(factor(reports(2, 6), "fraud_reports").detail).toContain("2 times, and other products of its batch 4 times");
  });

  it("saturates at 3 points and never makes a scan suspicious on its own", () => {
    const r = reports(10, 500);
    expect(contribution(r, "fraud_reports")).toBe(40);
    expect(r.level).toBe("medium");
    expect(verdictFor("active", r, true)).toBe("authentic");
  });
});

describe("factor product_status and not_anchored", () => {
  it("active contributes nothing; recalled half; void all", () => {
    const status = (s: "active" | "recalled" | "void") => assessRisk(ctx({ product: { status: s, anchored: true } }));
    expect(factor(status("active"), "product_status")).toMatchObject({ value: "active", contribution: 0 });
    expect(factor(status("recalled"), "product_status")).toMatchObject({ value: "recalled", contribution: 20 });
    expect(factor(status("void"), "product_status")).toMatchObject({ value: "void", contribution: 40 });
    expect(factor(status("recalled"), "product_status").detail).toContain("recalled");
  });

  it("shows not_anchored but never lets it contribute", () => {
    const r = assessRisk(ctx({ product: { status: "active", anchored: false } }));
    expect(factor(r, "not_anchored")).toMatchObject({ value: true, weight: 0, contribution: 0 });
    expect(factor(assessRisk(ctx()), "not_anchored").value).toBe(false);
    // Even a hand-built config that bypassed validation cannot make it score.
    const rogue = { ...DEFAULT_RISK_CONFIG, weights: { ...DEFAULT_RISK_CONFIG.weights, not_anchored: 50 } };
    expect(assessRisk(ctx({ product: { status: "active", anchored: false } }), rogue).score).toBe(0);
  });
});

describe("scenario: one token in São Paulo, then Lisbon an hour later, then three new devices", () => {
  const history: ScanContext["history"] = [];
  const results: RiskAssessment[] = [];
  const scans = [
    { at: T0, device: "dev-A", location: SAO_PAULO },
    { at: at(60), device: "dev-B", location: LISBON },
    { at: at(70), device: "dev-C", location: LISBON },
    { at: at(80), device: "dev-D", location: LISBON },
    { at: at(90), device: "dev-E", location: LISBON },
  ];
  beforeAll(() => {
    for (const s of scans) {
      results.push(
        assessRisk(
          ctx({
            now: s.at,
            device: s.device,
            location: s.location,
            marketRegions: ["BR"],
            history: [...history],
            priorScanCount: history.length,
            priorDistinctDevices: new Set(history.map((h) => h.device)).size,
          }),
        ),
      );
      history.push(s);
    }
  });

  it("the São Paulo scan is authentic", () => {
    expect(results[0]).toMatchObject({ score: 0, level: "low" });
  });

  it("the Lisbon scan is already suspicious: impossible travel and grey market", () => {
    expect(results[1].level).toBe("high");
    expect(active(results[1])).toEqual(["impossible_travel", "grey_market"]);
    expect(verdictFor("active", results[1], true)).toBe("suspicious");
  });

  it("the last new device is suspicious with impossible_travel, distinct_devices and grey_market", () => {
    const last = results[4];
    expect(last).toMatchObject({ score: 100, level: "high" });
    expect(active(last)).toEqual(["distinct_devices", "impossible_travel", "grey_market"]);
    expect(factor(last, "distinct_devices").value).toBe(5);
    expect(verdictFor("active", last, true)).toBe("suspicious");
  });

  it("is still high without market regions, and without any location on the new devices", () => {
    const r = assessRisk(
      ctx({ now: at(90), device: "dev-E", marketRegions: [], history: history.slice(0, 4).map((h, i) => (i < 2 ? h : { at: h.at, device: h.device })), priorScanCount: 4, priorDistinctDevices: 4 }),
    );
    expect(r.level).toBe("high");
    expect(active(r)).toEqual(["distinct_devices", "impossible_travel"]);
    expect(r.score).toBe(83); // 22.5 + 60
  });
});

describe("determinism", () => {
  const point = fc.record({ lat: fc.double({ min: -60, max: 70, noNaN: true }), lng: fc.double({ min: -180, max: 180, noNaN: true }), accuracy_m: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }) });
  const arbCtx: fc.Arbitrary<ScanContext> = fc
    .record({
      status: fc.constantFrom("active" as const, "recalled" as const, "void" as const),
      anchored: fc.boolean(),
      markets: fc.subarray(["BR", "PT", "US", "JP", "DE"]),
      location: fc.option(point, { nil: undefined }),
      device: fc.constantFrom("a", "b", "c", "d"),
      history: fc.array(fc.record({ minutes: fc.integer({ min: 0, max: 100_000 }), device: fc.constantFrom("a", "b", "c", "d", "e", "f"), location: fc.option(point, { nil: undefined }) }), { maxLength: 8 }),
      extraPrior: fc.nat(60),
      tags: fc.nat(200),
      tagReports: fc.nat(5),
      batchReports: fc.nat(50),
    })
    .map((g) => {
      const history = g.history.sort((x, y) => x.minutes - y.minutes).map((h) => ({ at: at(h.minutes), device: h.device, location: h.location }));
      return ctx({
        now: at(100_001),
        product: { status: g.status, anchored: g.anchored },
        marketRegions: g.markets,
        location: g.location,
        device: g.device,
        history,
        priorScanCount: history.length + g.extraPrior,
        priorDistinctDevices: new Set(history.map((h) => h.device)).size,
        deviceRecentDistinctTags: g.tags,
        reports: { tag: g.tagReports, batch: g.tagReports + g.batchReports },
      });
    });

  it("gives identical output for identical input, whatever the clock says", () => {
    fc.assert(
      fc.property(arbCtx, (c) => {
        const first = assessRisk(c);
        jest.useFakeTimers({ now: new Date("2031-01-01T00:00:00Z") });
        try {
          expect(assessRisk(structuredClone(c))).toEqual(first);
        } finally {
          jest.useRealTimers();
        }
      }),
      { numRuns: 150 },
    );
  });

  it("keeps every invariant: integer score 0..100, contributions within weight, level from score", () => {
    fc.assert(
      fc.property(arbCtx, (c) => {
        const r = assessRisk(c);
        expect(Number.isInteger(r.score)).toBe(true);
        expect(r.score).toBeGreaterThanOrEqual(0);
        expect(r.score).toBeLessThanOrEqual(100);
        expect(r.score).toBe(Math.min(100, Math.round(r.factors.reduce((s, f) => s + f.contribution, 0))));
        expect(r.level).toBe(levelFor(r.score));
        expect(r.factors.map((f) => f.name)).toEqual([...FACTOR_NAMES]);
        for (const f of r.factors) {
          expect(f.contribution).toBeGreaterThanOrEqual(0);
          expect(f.contribution).toBeLessThanOrEqual(f.weight);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("does not mutate its input", () => {
    const c = ctx({ now: at(120), location: LISBON, history: [{ at: at(60), device: "b", location: LISBON }, { at: T0, device: "a", location: SAO_PAULO }] });
    const frozen = structuredClone(c);
    Object.freeze(c.history);
    assessRisk(c);
    expect(c).toEqual(frozen);
  });

  it("rejects an invalid clock value", () => {
    expect(() => assessRisk(ctx({ now: new Date("nope") }))).toThrow(TypeError);
  });
});

describe("levelFor and verdictFor", () => {
  it("maps scores to levels at 30 and 60", () => {
    expect(levelFor(0)).toBe("low");
    expect(levelFor(29)).toBe("low");
    expect(levelFor(30)).toBe("medium");
    expect(levelFor(59)).toBe("medium");
    expect(levelFor(60)).toBe("high");
    expect(levelFor(100)).toBe("high");
  });

  it("derives the verdict from token, status and level", () => {
    const low = { level: "low" as const };
    const medium = { level: "medium" as const };
    const high = { level: "high" as const };
    expect(verdictFor("active", high, false)).toBe("invalid");
    expect(verdictFor(null, low, true)).toBe("invalid");
    expect(verdictFor("recalled", low, true)).toBe("recalled");
    expect(verdictFor("recalled", high, true)).toBe("recalled");
    expect(verdictFor("void", low, true)).toBe("suspicious");
    expect(verdictFor("active", high, true)).toBe("suspicious");
    expect(verdictFor("active", medium, true)).toBe("authentic");
    expect(verdictFor("active", low, true)).toBe("authentic");
  });
});

describe("mergeRiskConfig", () => {
  it("returns the base for no override, without sharing or mutating it", () => {
    expect(mergeRiskConfig(DEFAULT_RISK_CONFIG, undefined)).toEqual(DEFAULT_RISK_CONFIG);
    expect(mergeRiskConfig(DEFAULT_RISK_CONFIG, null)).toEqual(DEFAULT_RISK_CONFIG);
    expect(mergeRiskConfig(DEFAULT_RISK_CONFIG, {})).not.toBe(DEFAULT_RISK_CONFIG);
    expect(Object.isFrozen(DEFAULT_RISK_CONFIG.weights)).toBe(true);
  });

  it("deep-merges a partial override and the result changes scoring", () => {
    const cfg = mergeRiskConfig(DEFAULT_RISK_CONFIG, { weights: { grey_market: 60 }, thresholds: { scan_count: { normal: 2 } }, levels: { high: 50 } });
    expect(cfg.weights.grey_market).toBe(60);
    expect(cfg.weights.impossible_travel).toBe(60);
    expect(cfg.thresholds.scan_count).toEqual({ normal: 2, saturate: 25 });
    expect(cfg.levels).toEqual({ medium: 30, high: 50 });
    expect(DEFAULT_RISK_CONFIG.weights.grey_market).toBe(25);
    expect(Object.isFrozen(cfg.thresholds.scan_count)).toBe(true);
    const r = assessRisk(ctx({ location: LISBON, marketRegions: ["BR"] }), cfg);
    expect(r).toMatchObject({ score: 60, level: "high" });
    expect(verdictFor("active", r, true)).toBe("suspicious");
    // A merged config can itself be a base.
    expect(mergeRiskConfig(cfg, { levels: { medium: 20 } }).levels).toEqual({ medium: 20, high: 50 });
  });

  const rejects = (override: unknown, field: string) => {
    let err: unknown;
    try {
      mergeRiskConfig(DEFAULT_RISK_CONFIG, override);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RiskConfigError);
    expect((err as RiskConfigError).field).toBe(field);
    expect((err as Error).message).toContain(field);
  };

  it("rejects bad values, naming the field", () => {
    rejects({ weights: { scan_count: -1 } }, "weights.scan_count");
    rejects({ weights: { scan_count: 101 } }, "weights.scan_count");
    rejects({ weights: { scan_count: "10" } }, "weights.scan_count");
    rejects({ weights: { scan_count: NaN } }, "weights.scan_count");
    rejects({ weights: { not_anchored: 5 } }, "weights.not_anchored");
    rejects({ thresholds: { scan_count: { normal: 30 } } }, "thresholds.scan_count.saturate");
    rejects({ thresholds: { scan_count: { normal: 2.5 } } }, "thresholds.scan_count.normal");
    rejects({ thresholds: { impossible_travel: { speed_kmh: 0 } } }, "thresholds.impossible_travel.speed_kmh");
    rejects({ thresholds: { impossible_travel: { speed_kmh: 2000 } } }, "thresholds.impossible_travel.saturate_kmh");
    rejects({ thresholds: { fraud_reports: { batch_report_weight: 2 } } }, "thresholds.fraud_reports.batch_report_weight");
    rejects({ thresholds: { product_status: { void: -0.1 } } }, "thresholds.product_status.void");
    rejects({ levels: { medium: 70 } }, "levels.high");
    rejects({ levels: { high: 0 } }, "levels.high");
    rejects({ levels: { medium: 12.5 } }, "levels.medium");
  });

  it("rejects unknown fields and wrong shapes, naming the field", () => {
    rejects({ weight: {} }, "weight");
    rejects({ weights: { geo: 10 } }, "weights.geo");
    rejects({ thresholds: { scan_count: { max: 3 } } }, "thresholds.scan_count.max");
    rejects({ thresholds: { velocity: {} } }, "thresholds.velocity");
    rejects({ weights: [1, 2] }, "weights");
    rejects({ thresholds: { scan_count: 5 } }, "thresholds.scan_count");
    expect(() => mergeRiskConfig(DEFAULT_RISK_CONFIG, "high")).toThrow(RiskConfigError);
    expect(() => mergeRiskConfig(DEFAULT_RISK_CONFIG, [])).toThrow(RiskConfigError);
  });

  it("survives a JSON round trip, as stored per tenant", () => {
    const cfg = mergeRiskConfig(DEFAULT_RISK_CONFIG, { weights: { enumeration: 50 } });
    expect(mergeRiskConfig(DEFAULT_RISK_CONFIG, JSON.parse(JSON.stringify(cfg)))).toEqual(cfg);
  });
});

describe("robustness to SQL-shaped input", () => {
  it("reads counts given as the decimal strings pg returns for bigint", () => {
    const c = ctx({ priorScanCount: "9" as unknown as number, priorDistinctDevices: "4" as unknown as number, deviceRecentDistinctTags: "30" as unknown as number, reports: { tag: "1" as unknown as number, batch: "1" as unknown as number } });
    const r = assessRisk(c);
    expect(factor(r, "scan_count").value).toBe(10);
    expect(factor(r, "distinct_devices").value).toBe(5);
    expect(factor(r, "enumeration").value).toBe(30);
    expect(factor(r, "fraud_reports").value).toBe(1);
  });

  it("treats negative or non-numeric counts as zero", () => {
    const r = assessRisk(ctx({ priorScanCount: -3, priorDistinctDevices: NaN, deviceRecentDistinctTags: -1, reports: { tag: -1, batch: Infinity } }));
    expect(r.score).toBe(0);
    expect(factor(r, "scan_count").value).toBe(1);
  });
});

describe("enumerationBuckets", () => {
  it("writes the current sixth of the window and reads it with the six before (the whole window, at most a bucket more)", () => {
    const b = enumerationBuckets(new Date("2025-03-01T12:00:00Z"), 3600);
    const t = Date.parse("2025-03-01T12:00:00Z") / 1000;
    expect(b.write).toBe(Math.floor(t / 600));
    expect(b.read).toEqual([-6, -5, -4, -3, -2, -1, 0].map((d) => b.write + d));
    expect(b.ttlSeconds).toBe(4800);
    // Any scan within the last window is in a bucket read now.
    for (const ago of [0, 1, 599, 600, 3599, 3600]) {
      const then = enumerationBuckets(new Date((t - ago) * 1000), 3600);
      expect(b.read).toContain(then.write);
    }
    // And nothing older than window + one bucket.
    expect(b.read).not.toContain(enumerationBuckets(new Date((t - 4201) * 1000), 3600).write);
  });

  it("rounds small windows up to whole-second buckets and refuses bad input", () => {
    expect(enumerationBuckets(new Date(60_000), 1)).toEqual({ write: 60, read: [54, 55, 56, 57, 58, 59, 60], ttlSeconds: 8 });
    expect(() => enumerationBuckets(new Date(NaN), 60)).toThrow(TypeError);
    expect(() => enumerationBuckets(new Date(), 0)).toThrow(RangeError);
    expect(() => enumerationBuckets(new Date(), 1.5)).toThrow(RangeError);
  });
});
