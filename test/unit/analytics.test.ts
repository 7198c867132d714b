import fc from "fast-check";
import { fillDays, gridCellOf, GRID_SIZES, rate, timeRange, RangeProblem } from "../../lib/analytics";
import { gridCell } from "../../lib/geo";

describe("time ranges", () => {
  const now = new Date("2026-03-10T15:00:00Z");
  it("defaults to the last N days ending now", () => {
    const r = timeRange({}, now, 7);
    expect(r.to).toEqual(now);
    expect(r.from.toISOString()).toBe("2026-03-03T15:00:00.000Z");
    expect(timeRange({ days: 1 }, now).from.toISOString()).toBe("2026-03-09T15:00:00.000Z");
  });
  it("refuses reversed, unparsable and over-long ranges", () => {
    expect(() => timeRange({ from: "2026-03-10", to: "2026-03-01" }, now)).toThrow(RangeProblem);
    expect(() => timeRange({ from: "yesterday" }, now)).toThrow(RangeProblem);
    expect(() => timeRange({ from: "2020-01-01", to: "2026-01-01" }, now)).toThrow(/366/);
  });
});

describe("day series", () => {
  it("fills empty days with zeros and totals each day", () => {
    const from = new Date("2026-03-01T10:00:00Z");
    const to = new Date("2026-03-04T00:00:00Z");
    const days = fillDays(
      [
        { day: "2026-03-01", verdict: "authentic", n: 3 },
        { day: "2026-03-01", verdict: "suspicious", n: 1 },
        { day: "2026-03-03", verdict: "invalid", n: 2 },
      ],
      from,
      to,
    );
    expect(days.map((d) => d.date)).toEqual(["2026-03-01", "2026-03-02", "2026-03-03"]);
    expect(days[0]).toEqual({ date: "2026-03-01", authentic: 3, suspicious: 1, recalled: 0, invalid: 0, total: 4 });
    expect(days[1].total).toBe(0);
    expect(days[2].invalid).toBe(2);
  });
});

describe("rates", () => {
  it("divides safely", () => {
    expect(rate(1, 3)).toBe(0.3333);
    expect(rate(5, 0)).toBe(0);
  });
});

describe("grid cells", () => {
  // The SQL computes floor(x / size + 1e-9) (with the same clamps); gridCellOf names the result.
  const sqlIndex = (lat: number, lng: number, s: number) => ({
    li: Math.min(Math.floor(lat / s + 1e-9), Math.floor((90 - s / 2) / s + 1e-9)),
    gi: Math.floor((lng === 180 ? -180 : lng) / s + 1e-9),
  });
  it("names cells exactly like lib/geo gridCell for every accepted size", () => {
    fc.assert(
      fc.property(
        fc.double({ min: -90, max: 90, noNaN: true }),
        fc.double({ min: -180, max: 180, noNaN: true }),
        fc.constantFrom(...GRID_SIZES),
        (lat, lng, s) => {
          const p = { lat: Math.round(lat * 100) / 100 + 0, lng: Math.round(lng * 100) / 100 + 0 };
          const { li, gi } = sqlIndex(p.lat, p.lng, s);
          expect(gridCellOf(li, gi, s).cell).toBe(gridCell(p, s));
        },
      ),
      { numRuns: 3000 },
    );
  });
  it("gives the corners of the cell", () => {
    expect(gridCellOf(-24, -47, 1)).toEqual({ cell: "-24,-47", south: -24, west: -47, north: -23, east: -46 });
    expect(gridCellOf(1, 2, 0.5).cell).toBe("0.5,1.0");
  });
});
