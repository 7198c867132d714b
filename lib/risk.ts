// The antifraud risk model. Pure and deterministic: the same ScanContext and RiskConfig always give
// the same assessment, with no clock, database or network inside (time arrives as ctx.now), so a
// support agent can replay any scored scan. Formulas and defaults are documented in docs/RISK.md.
import { countryName, countryOf, haversineKm, isValidLatLng, normalizeIso2, offsetKm, regionCodesOf, type LatLng } from "./geo";

export type ProductStatus = "active" | "recalled" | "void";
export type RiskLevel = "low" | "medium" | "high";
export type Verdict = "authentic" | "suspicious" | "recalled" | "invalid";

export interface ScanLocation {
  lat: number;
  lng: number;
  /** Radius of the location's uncertainty in metres, as browsers report it. */
  accuracy_m?: number;
}

export interface ScanContext {
  now: Date;
  product: { status: ProductStatus; anchored: boolean };
  /** The batch's ISO 3166-1 alpha-2 markets; [] = may be sold anywhere. */
  marketRegions: string[];
  location?: ScanLocation;
  /** Device fingerprint hash of this scan. */
  device: string;
  /** Previous scans of this tag, oldest first; may be only the latest N. */
  history: { at: Date; device: string; location?: ScanLocation }[];
  /** Total previous scans of this tag (history may be truncated). */
  priorScanCount: number;
  /** Distinct devices among previous scans, this one excluded. */
  priorDistinctDevices: number;
  /**
   * Whether this device scanned the tag before. Optional: when omitted it is read from history,
   * which only sees the latest N scans, so pass it when history is truncated.
   */
  deviceSeenBefore?: boolean;
  /** Distinct tags this device scanned within thresholds.enumeration.window_seconds, this one included. */
  deviceRecentDistinctTags: number;
  /**
   * Distinct tags scanned from this device's network (/24 or /48) in the same window, this one
   * included. Optional; it counts as `network / thresholds.enumeration.network_share` tags of one
   * device, since a network is shared by a household, a shop or a carrier's NAT.
   */
  networkRecentDistinctTags?: number;
  /** Fraud reports on this tag, and on its whole batch (this tag's included). */
  reports: { tag: number; batch: number };
}

export const FACTOR_NAMES = [
  "scan_count",
  "distinct_devices",
  "impossible_travel",
  "grey_market",
  "enumeration",
  "fraud_reports",
  "product_status",
  "not_anchored",
] as const;
export type FactorName = (typeof FACTOR_NAMES)[number];

export interface RiskThresholds {
  /** Scans of the tag, this one included: idle up to `normal`, full at `saturate`. */
  scan_count: { normal: number; saturate: number };
  /** Distinct devices, this one included: idle up to `normal`, full at `saturate`. */
  distinct_devices: { normal: number; saturate: number };
  impossible_travel: {
    /** Implied speeds up to this are plausible (an airliner). */
    speed_kmh: number;
    /** Speed at which the factor is full. */
    saturate_kmh: number;
    /** Time gaps shorter than this count as this long, so GPS jitter between quick rescans is not "travel". */
    min_gap_seconds: number;
    /** Every location is taken as uncertain by at least this much (covers ~1 km storage coarsening). */
    accuracy_floor_m: number;
  };
  grey_market: {
    /** A scan located less precisely than this is not judged. */
    max_accuracy_m: number;
    /** Border tolerance when the scan reports no larger accuracy (border data is approximate). */
    border_margin_m: number;
  };
  /**
   * Distinct tags one device scanned in `window_seconds`: idle up to `normal`, full at `saturate`. A
   * network's distinct tags count divided by `network_share` (how many devices a network stands for).
   */
  enumeration: { normal: number; saturate: number; window_seconds: number; network_share: number };
  /** points = tag reports + batch_report_weight × other reports on the batch; full at `saturate` points. */
  fraud_reports: { batch_report_weight: number; saturate: number };
  /** Normalised value of each product status (active is always 0). */
  product_status: { recalled: number; void: number };
}

export interface RiskConfig {
  weights: Record<FactorName, number>;
  thresholds: RiskThresholds;
  /** Score boundaries: score >= medium is medium, score >= high is high. */
  levels: { medium: number; high: number };
}

export interface RiskFactor {
  name: FactorName;
  value: number | string | boolean | null;
  weight: number;
  contribution: number;
  detail: string;
}

export interface RiskAssessment {
  score: number;
  level: RiskLevel;
  factors: RiskFactor[];
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

export const DEFAULT_RISK_CONFIG: RiskConfig = deepFreeze({
  weights: {
    scan_count: 15,
    distinct_devices: 45,
    impossible_travel: 60,
    grey_market: 25,
    enumeration: 35,
    fraud_reports: 40,
    product_status: 40,
    not_anchored: 0,
  },
  thresholds: {
    scan_count: { normal: 5, saturate: 25 },
    distinct_devices: { normal: 2, saturate: 8 },
    impossible_travel: { speed_kmh: 900, saturate_kmh: 1800, min_gap_seconds: 300, accuracy_floor_m: 1000 },
    grey_market: { max_accuracy_m: 50_000, border_margin_m: 2000 },
    enumeration: { normal: 10, saturate: 50, window_seconds: 3600, network_share: 20 },
    fraud_reports: { batch_report_weight: 0.25, saturate: 3 },
    product_status: { recalled: 0.5, void: 1 },
  },
  levels: { medium: 30, high: 60 },
});

// ---------------------------------------------------------------------------------------------
// Per-tenant overrides

/** A rejected override; `field` is the dotted path of the offending value. */
export class RiskConfigError extends Error {
  constructor(
    public readonly field: string,
    message: string,
  ) {
    super(`risk config: ${field}: ${message}`);
    this.name = "RiskConfigError";
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);

type Bound = { min: number; max: number; integer?: boolean; minExclusive?: boolean };
// Range of every numeric leaf; cross-field rules (normal < saturate, ...) are checked afterwards.
const COUNT: Bound = { min: 0, max: 1_000_000, integer: true };
const THRESHOLD_BOUNDS: { [F in keyof RiskThresholds]: { [K in keyof RiskThresholds[F]]: Bound } } = {
  scan_count: { normal: COUNT, saturate: COUNT },
  distinct_devices: { normal: COUNT, saturate: COUNT },
  impossible_travel: {
    speed_kmh: { min: 0, max: 100_000, minExclusive: true },
    saturate_kmh: { min: 0, max: 1_000_000, minExclusive: true },
    min_gap_seconds: { min: 1, max: 86_400 },
    accuracy_floor_m: { min: 0, max: 100_000 },
  },
  grey_market: { max_accuracy_m: { min: 0, max: 10_000_000 }, border_margin_m: { min: 0, max: 100_000 } },
  enumeration: {
    normal: COUNT,
    saturate: COUNT,
    window_seconds: { min: 1, max: 30 * 86_400, integer: true },
    network_share: { min: 1, max: 100_000, integer: true },
  },
  fraud_reports: { batch_report_weight: { min: 0, max: 1 }, saturate: { min: 0, max: 1_000_000, minExclusive: true } },
  product_status: { recalled: { min: 0, max: 1 }, void: { min: 0, max: 1 } },
};

function checkNumber(field: string, v: unknown, b: Bound): number {
  if (typeof v !== "number" || !Number.isFinite(v)) throw new RiskConfigError(field, "must be a finite number");
  if (b.integer && !Number.isInteger(v)) throw new RiskConfigError(field, "must be an integer");
  if (v < b.min || (b.minExclusive && v === b.min) || v > b.max) {
    throw new RiskConfigError(field, `must be ${b.minExclusive ? "greater than" : "at least"} ${b.min} and at most ${b.max}`);
  }
  return v;
}

function checkKeys(field: string, v: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (!isPlainObject(v)) throw new RiskConfigError(field, "must be an object");
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) throw new RiskConfigError(field ? `${field}.${k}` : k, "unknown field");
  }
  return v;
}

/** Throws RiskConfigError naming the first invalid field of a complete config. */
export function validateRiskConfig(cfg: RiskConfig): RiskConfig {
  checkKeys("", cfg, ["weights", "thresholds", "levels"]);
  const w = checkKeys("weights", cfg.weights, FACTOR_NAMES);
  for (const name of FACTOR_NAMES) checkNumber(`weights.${name}`, w[name], { min: 0, max: 100 });
  // not_anchored is informational: anchoring lags registration by design, so it must never score.
  if (cfg.weights.not_anchored !== 0) throw new RiskConfigError("weights.not_anchored", "must be 0 (informational factor)");
  const t = checkKeys("thresholds", cfg.thresholds, Object.keys(THRESHOLD_BOUNDS));
  for (const [f, bounds] of Object.entries(THRESHOLD_BOUNDS) as [string, Record<string, Bound>][]) {
    const group = checkKeys(`thresholds.${f}`, t[f], Object.keys(bounds));
    for (const [k, b] of Object.entries(bounds)) checkNumber(`thresholds.${f}.${k}`, group[k], b);
  }
  const th = cfg.thresholds;
  for (const f of ["scan_count", "distinct_devices", "enumeration"] as const) {
    if (th[f].saturate <= th[f].normal) throw new RiskConfigError(`thresholds.${f}.saturate`, `must be greater than thresholds.${f}.normal`);
  }
  if (th.impossible_travel.saturate_kmh <= th.impossible_travel.speed_kmh) {
    throw new RiskConfigError("thresholds.impossible_travel.saturate_kmh", "must be greater than thresholds.impossible_travel.speed_kmh");
  }
  const l = checkKeys("levels", cfg.levels, ["medium", "high"]);
  checkNumber("levels.medium", l.medium, { min: 1, max: 100, integer: true });
  checkNumber("levels.high", l.high, { min: 1, max: 100, integer: true });
  if (cfg.levels.high <= cfg.levels.medium) throw new RiskConfigError("levels.high", "must be greater than levels.medium");
  return cfg;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/**
 * A tenant's partial override deep-merged over `base` (weights, thresholds per factor, levels):
 * `{ weights: { grey_market: 40 }, levels: { high: 70 } }`. null/undefined means no override.
 * Unknown fields and out-of-range values throw RiskConfigError naming the field, so a typo can
 * never silently leave a tenant on defaults. The result is a fresh, frozen, validated config.
 */
export function mergeRiskConfig(base: RiskConfig, override: unknown): RiskConfig {
  const out = clone(base) as RiskConfig;
  if (override !== undefined && override !== null) {
    const o = checkKeys("", override, ["weights", "thresholds", "levels"]);
    if (o.weights !== undefined) {
      const w = checkKeys("weights", o.weights, FACTOR_NAMES);
      for (const [k, v] of Object.entries(w)) out.weights[k as FactorName] = checkNumber(`weights.${k}`, v, { min: 0, max: 100 });
    }
    if (o.thresholds !== undefined) {
      const t = checkKeys("thresholds", o.thresholds, Object.keys(THRESHOLD_BOUNDS));
      for (const [f, group] of Object.entries(t)) {
        const bounds = (THRESHOLD_BOUNDS as Record<string, Record<string, Bound>>)[f];
        const g = checkKeys(`thresholds.${f}`, group, Object.keys(bounds));
        const target = (out.thresholds as unknown as Record<string, Record<string, number>>)[f];
        for (const [k, v] of Object.entries(g)) target[k] = checkNumber(`thresholds.${f}.${k}`, v, bounds[k]);
      }
    }
    if (o.levels !== undefined) {
      const l = checkKeys("levels", o.levels, ["medium", "high"]);
      if (l.medium !== undefined) out.levels.medium = checkNumber("levels.medium", l.medium, { min: 1, max: 100, integer: true });
      if (l.high !== undefined) out.levels.high = checkNumber("levels.high", l.high, { min: 1, max: 100, integer: true });
    }
  }
  return deepFreeze(validateRiskConfig(out));
}

// ---------------------------------------------------------------------------------------------
// Formatting for `detail`: fixed English, no locale APIs, so details are reproducible everywhere.

function fmtInt(n: number): string {
  const s = String(Math.round(Math.abs(n)));
  const grouped = s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (n < 0 && Math.round(n) !== 0 ? "-" : "") + grouped;
}

function plural(n: number, one: string, many = one + "s"): string {
  return `${fmtInt(n)} ${n === 1 ? one : many}`;
}

function fmtDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return plural(s, "second");
  if (s < 3600) return plural(Math.round(s / 60), "minute");
  // One decimal below 10 units, so "1.5 hours" is not rounded to "2 hours".
  const unit = (x: number, name: string): string => {
    const v = x < 10 ? Math.round(x * 10) / 10 : Math.round(x);
    return `${Number.isInteger(v) ? fmtInt(v) : v.toFixed(1)} ${v === 1 ? name : name + "s"}`;
  };
  if (s < 48 * 3600) return unit(s / 3600, "hour");
  return unit(s / 86_400, "day");
}

function fmtKm(km: number): string {
  return km < 10 ? `${(Math.round(km * 10) / 10).toFixed(1)} km` : `${fmtInt(km)} km`;
}

function fmtPlace(p: LatLng): string {
  const code = countryOf(p);
  if (!code) return "a place outside any country";
  return `${countryName(code) ?? code} (${code})`;
}

function fmtList(items: string[], max = 5): string {
  const shown = items.length > max ? [...items.slice(0, max), `${items.length - max} more`] : items;
  return shown.length <= 1 ? shown.join("") : `${shown.slice(0, -1).join(", ")} and ${shown[shown.length - 1]}`;
}

// ---------------------------------------------------------------------------------------------
// Factors

interface Raw {
  value: number | string | boolean | null;
  /** Normalised value in [0, 1]. */
  norm: number;
  detail: string;
}

const clamp01 = (x: number): number => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0);
/** Share of the way from `normal` (0) to `saturate` (1). */
const ramp = (x: number, normal: number, saturate: number): number => clamp01((x - normal) / (saturate - normal));
// Counts arrive from SQL; a driver left returning bigint as a decimal string must not zero them.
const count = (x: unknown): number => {
  const n = typeof x === "string" && /^\d+$/.test(x) ? Number(x) : x;
  return typeof n === "number" && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
};
const round2 = (x: number): number => Math.round(x * 100) / 100 + 0;
// Brand check instead of instanceof: Dates from another realm (vm contexts, test fakes) are still Dates.
const timeOf = (d: unknown): number => (Object.prototype.toString.call(d) === "[object Date]" ? Date.prototype.getTime.call(d) : NaN);

function scanCount(ctx: ScanContext, t: RiskThresholds["scan_count"]): Raw {
  const n = Math.max(count(ctx.priorScanCount), ctx.history.length) + 1;
  const norm = ramp(n, t.normal, t.saturate);
  const base = n === 1 ? "This is the first scan of this tag." : `This tag has now been scanned ${plural(n, "time")}.`;
  const detail =
    norm > 0
      ? `${base} More than ${t.normal} scans is unusual for one product; a copied tag printed on many fakes is scanned again and again.`
      : `${base} Up to ${t.normal} scans is normal.`;
  return { value: n, norm, detail };
}

function distinctDevices(ctx: ScanContext, t: RiskThresholds["distinct_devices"]): Raw {
  const inHistory = new Set(ctx.history.map((h) => h.device));
  const seen = ctx.deviceSeenBefore ?? inHistory.has(ctx.device);
  const prior = Math.max(count(ctx.priorDistinctDevices), inHistory.size);
  const d = Math.max(1, prior + (seen ? 0 : 1));
  const norm = ramp(d, t.normal, t.saturate);
  const detail =
    norm > 0
      ? `This tag has been scanned from ${plural(d, "different device")}, ${d - t.normal} more than the ${t.normal} expected for one product (its buyer, perhaps a shop); the same code on many phones suggests copies.`
      : d === 1
        ? "Only this device has scanned this tag."
        : `This tag has been scanned from ${plural(d, "different device")}; up to ${t.normal} is normal.`;
  return { value: d, norm, detail };
}

interface Fix {
  at: number;
  loc: ScanLocation;
  current: boolean;
}

function impossibleTravel(ctx: ScanContext, t: RiskThresholds["impossible_travel"]): Raw {
  const now = timeOf(ctx.now);
  const fixes: Fix[] = [];
  for (const h of ctx.history) {
    const at = timeOf(h.at);
    if (h.location && isValidLatLng(h.location) && Number.isFinite(at)) fixes.push({ at, loc: h.location, current: false });
  }
  // Stable sort: callers promise oldest first, but a clock-skewed node must not break the walk.
  fixes.sort((a, b) => a.at - b.at);
  const located = ctx.location !== undefined && isValidLatLng(ctx.location);
  if (located) fixes.push({ at: Math.max(now, fixes.length ? fixes[fixes.length - 1].at : now), loc: ctx.location!, current: true });

  if (fixes.length < 2) {
    const detail = located
      ? "No earlier scan of this tag shared a location, so there is no journey to check."
      : fixes.length
        ? "This scan shared no location, and earlier scans give no journey to check."
        : "No scan of this tag shared a location, so travel could not be checked.";
    return { value: null, norm: 0, detail };
  }

  const unc = (l: ScanLocation): number => Math.max(count(l.accuracy_m), t.accuracy_floor_m) / 1000;
  // Consecutive located scans only: if A->C is too fast then A->B or B->C is (triangle inequality).
  // Earlier pairs count as much as the latest: once two copies of a tag are seen, every scan of it is suspect.
  let worst: { speed: number; km: number; gap: number; a: Fix; b: Fix } | null = null;
  for (let i = fixes.length - 1; i >= 1; i--) {
    const a = fixes[i - 1];
    const b = fixes[i];
    const km = haversineKm(a.loc, b.loc);
    const effectiveKm = Math.max(0, km - unc(a.loc) - unc(b.loc));
    const gap = b.at - a.at;
    const hours = Math.max(gap, t.min_gap_seconds * 1000) / 3_600_000;
    const speed = effectiveKm / hours;
    // Strict > keeps the most recent pair on ties, which is the one a reader expects.
    if (!worst || speed > worst.speed) worst = { speed, km, gap, a, b };
  }
  const w = worst!;
  const norm = ramp(w.speed, t.speed_kmh, t.saturate_kmh);
  const speed = Math.round(w.speed);
  const journey = w.b.current
    ? `The previous located scan was in ${fmtPlace(w.a.loc)}; this scan, ${fmtDuration(w.gap)} later, is in ${fmtPlace(w.b.loc)}, ${fmtKm(w.km)} away`
    : `Earlier scans of this tag were made in ${fmtPlace(w.a.loc)} and then, ${fmtDuration(w.gap)} later, in ${fmtPlace(w.b.loc)}, ${fmtKm(w.km)} apart`;
  const detail =
    norm > 0
      ? `${journey}: allowing for location accuracy that means travelling at about ${fmtInt(speed)} km/h, faster than an airliner (${fmtInt(t.speed_kmh)} km/h). One product cannot move that fast, so this tag has probably been copied.`
      : `${journey}: about ${fmtInt(speed)} km/h allowing for location accuracy, a plausible journey.`;
  return { value: speed, norm, detail };
}

function greyMarket(ctx: ScanContext, t: RiskThresholds["grey_market"]): Raw {
  const loc = ctx.location !== undefined && isValidLatLng(ctx.location) ? ctx.location : undefined;
  if (!loc) return { value: null, norm: 0, detail: "No location was shared with this scan, so the sales region could not be checked." };
  const country = countryOf(loc);
  const markets = [...new Set(ctx.marketRegions.map(normalizeIso2).filter((c): c is string => c !== null))];
  if (markets.length === 0) {
    return { value: country, norm: 0, detail: "This batch may be sold anywhere, so there is no sales region to check." };
  }
  const accuracyM = count(loc.accuracy_m);
  if (accuracyM > t.max_accuracy_m) {
    return { value: country, norm: 0, detail: `The location is too imprecise (within ${fmtKm(accuracyM / 1000)}) to tell the country, so the sales region was not checked.` };
  }
  if (!country) {
    return { value: null, norm: 0, detail: "The location is not inside any country (at sea, perhaps), so the sales region could not be checked." };
  }
  const inMarket = (p: LatLng): boolean => regionCodesOf(p).some((c) => markets.includes(c));
  const where = `${countryName(country) ?? country} (${country})`;
  const marketList = fmtList(markets);
  if (inMarket(loc)) return { value: country, norm: 0, detail: `Scanned in ${where}, where this batch is meant to be sold.` };
  // Benefit of the doubt near a border: probe the edge of the accuracy circle in 8 directions.
  const rKm = Math.max(accuracyM, t.border_margin_m) / 1000;
  for (let i = 0; i < 8; i++) {
    const a = (i * Math.PI) / 4;
    if (inMarket(offsetKm(loc, rKm * Math.cos(a), rKm * Math.sin(a)))) {
      return { value: country, norm: 0, detail: `Scanned in ${where}, within ${fmtKm(rKm)} of a region where this batch is meant to be sold (${marketList}), so it is not counted as outside.` };
    }
  }
  return {
    value: country,
    norm: 1,
    detail: `Scanned in ${where}, outside the regions this batch was made for (${marketList}). It may have been diverted to another market, or be a copy.`,
  };
}

function enumeration(ctx: ScanContext, t: RiskThresholds["enumeration"]): Raw {
  const device = Math.max(1, count(ctx.deviceRecentDistinctTags));
  const network = count(ctx.networkRecentDistinctTags);
  // A network stands for up to network_share devices: its sweep counts as one device's share of it.
  const fromNetwork = Math.ceil(network / t.network_share);
  const byNetwork = fromNetwork > device;
  const n = Math.max(device, fromNetwork);
  const norm = ramp(n, t.normal, t.saturate);
  // "the last hour" reads better than "the last 1 hour".
  const window = fmtDuration(t.window_seconds * 1000).replace(/^1 /, "");
  const who = byNetwork
    ? `Devices on this network scanned ${plural(network, "different tag")} in the last ${window}, as many as ${plural(n, "tag")} for each of the ${fmtInt(t.network_share)} devices a busy network may hold`
    : `This device scanned ${plural(device, "different tag")} in the last ${window}`;
  const detail =
    norm > 0
      ? `${who}, more than the ${t.normal} a shopper would; someone may be harvesting tag codes to copy them.`
      : `${who}; up to ${t.normal} is normal.`;
  return { value: n, norm, detail };
}

function fraudReports(ctx: ScanContext, t: RiskThresholds["fraud_reports"]): Raw {
  const tag = count(ctx.reports?.tag);
  // reports.batch includes this tag's own reports; they already count in full.
  const others = Math.max(0, count(ctx.reports?.batch) - tag);
  const points = tag + t.batch_report_weight * others;
  const norm = clamp01(points / t.saturate);
  const detail =
    tag + others === 0
      ? "Nobody has reported this tag or its batch as fake."
      : `People have reported this tag as possibly fake ${plural(tag, "time")}, and other products of its batch ${plural(others, "time")}. Reports are not verified, so on their own they never make a scan suspicious.`;
  return { value: round2(points), norm, detail };
}

function productStatus(ctx: ScanContext, t: RiskThresholds["product_status"]): Raw {
  const status = ctx.product.status;
  if (status === "recalled") {
    return { value: status, norm: clamp01(t.recalled), detail: "The manufacturer has recalled this product; follow the recall instructions and do not use it." };
  }
  if (status === "void") {
    return { value: status, norm: clamp01(t.void), detail: "The manufacturer has voided this tag: it should not be on any product for sale." };
  }
  return { value: status, norm: 0, detail: "The product is registered and active." };
}

function notAnchored(ctx: ScanContext): Raw {
  const pending = !ctx.product.anchored;
  return {
    value: pending,
    norm: 0,
    detail: pending
      ? "This product's registration is not yet sealed on the public blockchain. That is normal shortly after registration and does not change the score."
      : "This product's registration is sealed on the public blockchain.",
  };
}

/** Scores one scan. Every factor of FACTOR_NAMES is listed, in that order, idle ones with contribution 0. */
export function assessRisk(ctx: ScanContext, cfg: RiskConfig = DEFAULT_RISK_CONFIG): RiskAssessment {
  if (!Number.isFinite(timeOf(ctx.now))) throw new TypeError("assessRisk: ctx.now must be a valid Date");
  const t = cfg.thresholds;
  const raw: Record<FactorName, Raw> = {
    scan_count: scanCount(ctx, t.scan_count),
    distinct_devices: distinctDevices(ctx, t.distinct_devices),
    impossible_travel: impossibleTravel(ctx, t.impossible_travel),
    grey_market: greyMarket(ctx, t.grey_market),
    enumeration: enumeration(ctx, t.enumeration),
    fraud_reports: fraudReports(ctx, t.fraud_reports),
    product_status: productStatus(ctx, t.product_status),
    not_anchored: notAnchored(ctx),
  };
  const factors: RiskFactor[] = FACTOR_NAMES.map((name) => {
    const r = raw[name];
    const weight = cfg.weights[name];
    // not_anchored never scores, whatever a config says.
    const contribution = name === "not_anchored" ? 0 : round2(weight * r.norm);
    return { name, value: r.value, weight, contribution, detail: r.detail };
  });
  // Summing the rounded contributions keeps the score reproducible from the listed factors.
  const sum = factors.reduce((s, f) => s + f.contribution, 0);
  const score = Math.min(100, Math.max(0, Math.round(round2(sum))));
  return { score, level: levelFor(score, cfg), factors };
}

export function levelFor(score: number, cfg: RiskConfig = DEFAULT_RISK_CONFIG): RiskLevel {
  if (score >= cfg.levels.high) return "high";
  if (score >= cfg.levels.medium) return "medium";
  return "low";
}

/**
 * The consumer-facing verdict. A token that does not verify, or names no product, is invalid.
 * Recalled wins over any risk: it is the message the consumer must act on. A void tag is
 * suspicious: it was withdrawn (misprint, destroyed or stolen stock), so it should not be on a
 * product for sale, and "recalled" would send the consumer to a safety recall that does not
 * exist. Otherwise high risk is suspicious; medium stays authentic (docs/RISK.md says why).
 */
export function verdictFor(
  status: ProductStatus | null | undefined,
  risk: Pick<RiskAssessment, "level"> | null | undefined,
  tokenValid: boolean,
): Verdict {
  if (!tokenValid || !status) return "invalid";
  if (status === "recalled") return "recalled";
  if (status === "void") return "suspicious";
  return risk?.level === "high" ? "suspicious" : "authentic";
}

// ---------------------------------------------------------------------------------------------
// Counting for the enumeration factor. A distinct count over a sliding window is kept as
// HyperLogLog sketches in buckets of a sixth of the window: the count reads the current bucket and
// the six before it, so it covers the whole window (and at most one bucket more). The sketches err
// by about 1%, well inside the factor's ramp.

export const ENUMERATION_BUCKETS = 6;

/** The bucket a scan at `now` writes to, the buckets a count reads, and how long a bucket must live. */
export function enumerationBuckets(now: Date, windowSeconds: number): { write: number; read: number[]; ttlSeconds: number } {
  const t = timeOf(now);
  if (!Number.isFinite(t)) throw new TypeError("enumerationBuckets: now must be a valid Date");
  if (!Number.isInteger(windowSeconds) || windowSeconds < 1) throw new RangeError("enumerationBuckets: windowSeconds must be a positive integer");
  const size = Math.ceil(windowSeconds / ENUMERATION_BUCKETS);
  const write = Math.floor(t / 1000 / size);
  const read = Array.from({ length: ENUMERATION_BUCKETS + 1 }, (_, i) => write - ENUMERATION_BUCKETS + i);
  return { write, read, ttlSeconds: size * (ENUMERATION_BUCKETS + 2) };
}
