// Geography helpers for the risk model and analytics: distances, offline country lookup, and the
// coarsening applied before a scan location is stored. Pure: country-coder ships its borders inline.
import * as countryCoder from "@rapideditor/country-coder";

export interface LatLng {
  lat: number;
  lng: number;
}

/** Mean Earth radius (IUGG), km. */
export const EARTH_RADIUS_KM = 6371.0088;

export function isValidLatLng(p: unknown): p is LatLng {
  if (p === null || typeof p !== "object") return false;
  const { lat, lng } = p as Record<string, unknown>;
  return (
    typeof lat === "number" && typeof lng === "number" &&
    Number.isFinite(lat) && Number.isFinite(lng) &&
    lat >= -90 && lat <= 90 && lng >= -180 && lng <= 180
  );
}

function assertLatLng(p: LatLng, fn: string): void {
  if (!isValidLatLng(p)) throw new RangeError(`${fn}: invalid coordinates ${JSON.stringify(p)}`);
}

const rad = (deg: number): number => (deg * Math.PI) / 180;

/** Great-circle distance in km (haversine; error under 0.5% against the ellipsoid, plenty for fraud scoring). */
export function haversineKm(a: LatLng, b: LatLng): number {
  const dLat = rad(b.lat - a.lat);
  const dLng = rad(b.lng - a.lng);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLng / 2) ** 2;
  // min() guards against h creeping over 1 through rounding for antipodal points.
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/**
 * Point `northKm` north and `eastKm` east of p (flat-Earth approximation, fine below ~100 km).
 * Used to probe the edge of a location's accuracy circle.
 */
export function offsetKm(p: LatLng, northKm: number, eastKm: number): LatLng {
  const lat = Math.max(-90, Math.min(90, p.lat + northKm / 111.32));
  const cos = Math.max(1e-6, Math.cos(rad(p.lat)));
  let lng = p.lng + eastKm / (111.32 * cos);
  lng = ((((lng + 180) % 360) + 360) % 360) - 180;
  return { lat, lng };
}

// ISO 3166-1 alpha-2 officially assigned codes (249), plus XK: Kosovo has no assigned code, but the
// user-assigned XK is what the EU, banks and country-coder use, and a tenant selling there must be
// able to name it as a market. A unit test keeps this list equal to country-coder's "official" set.
export const ISO_3166_1_ALPHA2: readonly string[] = Object.freeze(
  (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV " +
    "BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES " +
    "ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE " +
    "IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY " +
    "MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU " +
    "NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM " +
    "SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE " +
    "VG VI VN VU WF WS YE YT ZA ZM ZW"
  ).split(" "),
);
export const USER_ASSIGNED_ALPHA2: readonly string[] = Object.freeze(["XK"]);

const VALID_ISO2 = new Set<string>([...ISO_3166_1_ALPHA2, ...USER_ASSIGNED_ALPHA2]);

/** Exact, upper-case ISO 3166-1 alpha-2 code (or XK). Callers normalise input with normalizeIso2. */
export function isValidIso2(code: unknown): code is string {
  return typeof code === "string" && VALID_ISO2.has(code);
}

/** " br " -> "BR"; null when it is not a known code. */
export function normalizeIso2(code: unknown): string | null {
  if (typeof code !== "string") return null;
  const c = code.trim().toUpperCase();
  return VALID_ISO2.has(c) ? c : null;
}

// country-coder writes `withProp` into the options object it is given, including its shared default
// object, so every call below passes a fresh one.
function lookupFeature(p: LatLng) {
  return countryCoder.feature([p.lng, p.lat], { level: "territory", withProp: "iso1A2" });
}

/**
 * ISO 3166-1 alpha-2 code of the place p is in, at the most specific level ISO codes it: a
 * territory with its own code answers that code (San Juan -> PR, Hong Kong -> HK, Douglas -> IM),
 * not the sovereign state's. Country-coder's borders include territorial waters; Antarctica is AQ.
 * Open ocean, unrecognised areas (northern Cyprus) and invalid coordinates answer null; any
 * answer is one isValidIso2 accepts.
 */
export function countryOf(p: LatLng): string | null {
  if (!isValidLatLng(p)) return null;
  const code = lookupFeature(p)?.properties.iso1A2;
  return code && VALID_ISO2.has(code) ? code : null;
}

/**
 * Every valid alpha-2 code whose area contains p, most specific first: San Juan -> ["PR", "US"].
 * Market checks use this so a batch for "US" is at home in Puerto Rico, and one for "PR" too.
 */
export function regionCodesOf(p: LatLng): string[] {
  if (!isValidLatLng(p)) return [];
  return countryCoder.iso1A2Codes([p.lng, p.lat]).filter((c) => VALID_ISO2.has(c));
}

/** English short name of a code ("PT" -> "Portugal"), null for unknown codes. */
export function countryName(code: string): string | null {
  if (!isValidIso2(code)) return null;
  return countryCoder.feature(code, { level: "territory" })?.properties.nameEn ?? null;
}

/**
 * Round coordinates to `decimals` places before storing a scan location: 2 decimals is at most
 * ~1.1 km north-south (less east-west), enough for fraud checks and maps, too coarse to find a
 * consumer's home. The risk model's accuracy floor absorbs the rounding.
 */
export function coarsen(p: LatLng, decimals = 2): LatLng {
  assertLatLng(p, "coarsen");
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 10) throw new RangeError("coarsen: decimals must be an integer 0..10");
  const f = 10 ** decimals;
  // `+ 0` turns -0 into 0 so stored and hashed forms do not depend on the sign of a rounded zero.
  const r = (x: number): number => Math.round(x * f) / f + 0;
  return { lat: r(p.lat), lng: r(p.lng) };
}

function decimalsOf(x: number): number {
  const s = String(x);
  if (s.includes("e-")) return Number(s.split("e-")[1]);
  const dot = s.indexOf(".");
  return dot < 0 ? 0 : s.length - dot - 1;
}

/**
 * Analytics grid cell containing p, named by its south-west corner: gridCell(São Paulo) = "-24,-47";
 * with sizeDeg 0.5, "-24.0,-47.0". The name is the corner, so a dashboard maps it back without a
 * lookup table (centre = corner + sizeDeg / 2). Latitude 90 joins the top row; longitude 180 is -180.
 */
export function gridCell(p: LatLng, sizeDeg = 1): string {
  assertLatLng(p, "gridCell");
  if (!Number.isFinite(sizeDeg) || sizeDeg <= 0 || sizeDeg > 180) throw new RangeError("gridCell: sizeDeg must be in (0, 180]");
  const d = Math.min(decimalsOf(sizeDeg), 10);
  // The epsilon keeps points exactly on a line in the upper cell despite binary fractions (0.3 / 0.1).
  const index = (x: number): number => Math.floor(x / sizeDeg + 1e-9);
  const latIdx = Math.min(index(p.lat), index(90 - sizeDeg / 2));
  const lng = p.lng === 180 ? -180 : p.lng;
  const lngIdx = index(lng);
  const fmt = (i: number): string => (i * sizeDeg + 0).toFixed(d);
  return `${fmt(latIdx)},${fmt(lngIdx)}`;
}
