import * as countryCoder from "@rapideditor/country-coder";
import fc from "fast-check";
import {
  coarsen,
  countryName,
  countryOf,
  gridCell,
  haversineKm,
  ISO_3166_1_ALPHA2,
  isValidIso2,
  isValidLatLng,
  normalizeIso2,
  offsetKm,
  regionCodesOf,
} from "../../lib/geo";

const SAO_PAULO = { lat: -23.5505, lng: -46.6333 };
const LISBON = { lat: 38.7223, lng: -9.1393 };
const TOKYO = { lat: 35.6762, lng: 139.6503 };
const NEW_YORK = { lat: 40.7128, lng: -74.006 };
const LONDON = { lat: 51.5074, lng: -0.1278 };
const MID_ATLANTIC = { lat: 30, lng: -40 };
const MID_PACIFIC = { lat: 0, lng: -140 };
const SAN_JUAN = { lat: 18.4655, lng: -66.1057 };

describe("haversineKm", () => {
  it("matches published great-circle distances", () => {
    expect(haversineKm(SAO_PAULO, LISBON)).toBeGreaterThan(7900);
    expect(haversineKm(SAO_PAULO, LISBON)).toBeLessThan(8000);
    expect(haversineKm(LONDON, NEW_YORK)).toBeCloseTo(5570, -1);
    // One degree of latitude is ~111.2 km on the mean sphere.
    expect(haversineKm({ lat: 0, lng: 0 }, { lat: 1, lng: 0 })).toBeCloseTo(111.19, 1);
  });

  it("is zero for a point and half the circumference for antipodes", () => {
    expect(haversineKm(TOKYO, TOKYO)).toBe(0);
    expect(haversineKm({ lat: 0, lng: 0 }, { lat: 0, lng: 180 })).toBeCloseTo(Math.PI * 6371.0088, 3);
  });

  it("is symmetric, non-negative and obeys the triangle inequality", () => {
    const pt = fc.record({ lat: fc.double({ min: -90, max: 90, noNaN: true }), lng: fc.double({ min: -180, max: 180, noNaN: true }) });
    fc.assert(
      fc.property(pt, pt, pt, (a, b, c) => {
        const ab = haversineKm(a, b);
        expect(ab).toBeGreaterThanOrEqual(0);
        expect(Math.abs(ab - haversineKm(b, a))).toBeLessThan(1e-6);
        // Near antipodal points asin() loses digits: allow 0.1 m of floating-point slack.
        expect(haversineKm(a, c)).toBeLessThanOrEqual(ab + haversineKm(b, c) + 1e-4);
      }),
      { seed: 1561651876, path: "8:0:0:9:2:3:0:6:1:2:0:0:0:0:0:5:1:0:4:0:1:0:2:4:1:1:1:1:37:4:2:1:2:1:1:1:3:5:1:2:3:2", endOnFailure: true },
    );
  });

  it("keeps the triangle inequality for random points too", () => {
    const pt = fc.record({ lat: fc.double({ min: -90, max: 90, noNaN: true }), lng: fc.double({ min: -180, max: 180, noNaN: true }) });
    fc.assert(fc.property(pt, pt, pt, (a, b, c) => haversineKm(a, c) <= haversineKm(a, b) + haversineKm(b, c) + 1e-4));
  });
});

describe("offsetKm", () => {
  it("moves about the requested distance", () => {
    expect(haversineKm(LISBON, offsetKm(LISBON, 10, 0))).toBeCloseTo(10, 0);
    expect(haversineKm(LISBON, offsetKm(LISBON, 0, -10))).toBeCloseTo(10, 0);
  });
});

describe("countryOf", () => {
  it("codes known cities", () => {
    expect(countryOf(SAO_PAULO)).toBe("BR");
    expect(countryOf(LISBON)).toBe("PT");
    expect(countryOf(TOKYO)).toBe("JP");
    expect(countryOf(NEW_YORK)).toBe("US");
    expect(countryOf(LONDON)).toBe("GB");
  });

  it("is null in open ocean and for invalid coordinates", () => {
    expect(countryOf(MID_ATLANTIC)).toBeNull();
    expect(countryOf(MID_PACIFIC)).toBeNull();
    expect(countryOf({ lat: 91, lng: 0 })).toBeNull();
    expect(countryOf({ lat: NaN, lng: 0 })).toBeNull();
  });

  it("answers a territory's own ISO code, not its sovereign's", () => {
    expect(countryOf(SAN_JUAN)).toBe("PR");
    expect(countryOf({ lat: 22.3193, lng: 114.1694 })).toBe("HK");
    expect(countryOf({ lat: 54.2, lng: -4.5 })).toBe("IM");
  });

  it("does not let country-coder's shared default options leak between calls", () => {
    // iso1A2Code without options mutates country-coder's defaults; countryOf must be unaffected.
    countryCoder.iso1A2Code([-66.1, 18.4]);
    expect(countryOf(SAN_JUAN)).toBe("PR");
  });

  it("only ever answers codes isValidIso2 accepts", () => {
    fc.assert(
      fc.property(fc.double({ min: -90, max: 90, noNaN: true }), fc.double({ min: -180, max: 180, noNaN: true }), (lat, lng) => {
        const c = countryOf({ lat, lng });
        expect(c === null || isValidIso2(c)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe("regionCodesOf", () => {
  it("lists the territory and its sovereign, most specific first, without EU/UN groupings", () => {
    expect(regionCodesOf(SAN_JUAN)).toEqual(["PR", "US"]);
    expect(regionCodesOf(LISBON)).toEqual(["PT"]);
    expect(regionCodesOf(MID_ATLANTIC)).toEqual([]);
  });
});

describe("countryName", () => {
  it("names codes in English and rejects unknown ones", () => {
    expect(countryName("PT")).toBe("Portugal");
    expect(countryName("BR")).toBe("Brazil");
    expect(countryName("ZZ")).toBeNull();
  });
});

describe("ISO 3166-1 alpha-2 list", () => {
  it("is exactly country-coder's officially assigned set", () => {
    // @types/geojson is not installed, so the features are typed by hand.
    const features = countryCoder.borders.features as { properties: { isoStatus?: string; iso1A2?: string } }[];
    const official = features
      .filter((f) => f.properties.isoStatus === "official" && f.properties.iso1A2)
      .map((f) => f.properties.iso1A2 as string)
      .sort();
    expect([...ISO_3166_1_ALPHA2].sort()).toEqual(official);
    expect(ISO_3166_1_ALPHA2).toHaveLength(249);
  });

  it("isValidIso2 accepts assigned codes and XK, rejects the rest", () => {
    for (const c of ["BR", "PT", "JP", "US", "PR", "AQ", "XK"]) expect(isValidIso2(c)).toBe(true);
    for (const c of ["br", "UK", "EU", "UN", "ZZ", "BRA", "", " BR", 42, null]) expect(isValidIso2(c)).toBe(false);
  });

  it("normalizeIso2 trims and upper-cases", () => {
    expect(normalizeIso2(" br ")).toBe("BR");
    expect(normalizeIso2("uk")).toBeNull();
    expect(normalizeIso2(undefined)).toBeNull();
  });
});

describe("coarsen", () => {
  it("rounds to 2 decimals by default (~1 km)", () => {
    expect(coarsen({ lat: -23.55052, lng: -46.633309 })).toEqual({ lat: -23.55, lng: -46.63 });
    expect(coarsen({ lat: 38.72239, lng: -9.13936 }, 3)).toEqual({ lat: 38.722, lng: -9.139 });
    expect(coarsen({ lat: 38.72239, lng: -9.13936 }, 0)).toEqual({ lat: 39, lng: -9 });
  });

  it("never moves a point more than half a unit per axis and drops extra fields", () => {
    fc.assert(
      fc.property(fc.double({ min: -90, max: 90, noNaN: true }), fc.double({ min: -180, max: 180, noNaN: true }), (lat, lng) => {
        const c = coarsen({ lat, lng, accuracy_m: 5 } as { lat: number; lng: number });
        expect(Object.keys(c).sort()).toEqual(["lat", "lng"]);
        expect(Math.abs(c.lat - lat)).toBeLessThanOrEqual(0.005 + 1e-9);
        expect(Math.abs(c.lng - lng)).toBeLessThanOrEqual(0.005 + 1e-9);
        expect(isValidLatLng(c)).toBe(true);
      }),
    );
  });

  it("normalises negative zero so the stored form is stable", () => {
    expect(Object.is(coarsen({ lat: -0.001, lng: 0 }).lat, 0)).toBe(true);
  });

  it("rejects invalid input", () => {
    expect(() => coarsen({ lat: 100, lng: 0 })).toThrow(RangeError);
    expect(() => coarsen(LISBON, 1.5)).toThrow(RangeError);
  });
});

describe("gridCell", () => {
  it("names the south-west corner of the cell", () => {
    expect(gridCell(SAO_PAULO)).toBe("-24,-47");
    expect(gridCell(LISBON)).toBe("38,-10");
    expect(gridCell(SAO_PAULO, 0.5)).toBe("-24.0,-47.0");
    expect(gridCell(LISBON, 0.25)).toBe("38.50,-9.25");
  });

  it("puts points on a line in the upper cell despite binary fractions", () => {
    expect(gridCell({ lat: 0.3, lng: 0.3 }, 0.1)).toBe("0.3,0.3");
    expect(gridCell({ lat: 0, lng: 0 })).toBe("0,0");
  });

  it("keeps the poles and the antimeridian inside the grid", () => {
    expect(gridCell({ lat: 90, lng: 180 })).toBe("89,-180");
    expect(gridCell({ lat: -90, lng: -180 })).toBe("-90,-180");
  });

  it("contains the point it was computed from", () => {
    fc.assert(
      fc.property(
        fc.double({ min: -90, max: 89.99, noNaN: true }),
        fc.double({ min: -180, max: 179.99, noNaN: true }),
        fc.constantFrom(0.1, 0.25, 0.5, 1, 5),
        (lat, lng, size) => {
          const [cLat, cLng] = gridCell({ lat, lng }, size).split(",").map(Number);
          expect(lat).toBeGreaterThanOrEqual(cLat - 1e-6);
          expect(lat).toBeLessThan(cLat + size + 1e-6);
          expect(lng).toBeGreaterThanOrEqual(cLng - 1e-6);
          expect(lng).toBeLessThan(cLng + size + 1e-6);
        },
      ),
    );
  });

  it("rejects a bad size", () => {
    expect(() => gridCell(LISBON, 0)).toThrow(RangeError);
    expect(() => gridCell(LISBON, -1)).toThrow(RangeError);
  });
});
