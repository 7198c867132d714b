// Pure helpers of the dashboard and analytics: time windows, day series with the empty days filled
// in, rates, and grid cells named exactly like lib/geo's gridCell (the south-west corner), so a map
// can place a cell without a lookup table.
export const VERDICTS = ["authentic", "suspicious", "recalled", "invalid"] as const;
export type VerdictName = (typeof VERDICTS)[number];

/** Cell sizes the geo analytics accept, in degrees (1° ≈ 111 km north-south). */
export const GRID_SIZES = [0.25, 0.5, 1, 2, 5, 10] as const;

export const MAX_RANGE_DAYS = 366;
const DAY_MS = 86_400_000;

export class RangeProblem extends Error {}

/**
 * The window [from, to) of a query: explicit from/to, or the last `days` days (default `defDays`)
 * ending now. At most MAX_RANGE_DAYS long; from must be before to.
 */
export function timeRange(q: { from?: Date | string | null; to?: Date | string | null; days?: number | null }, now: Date, defDays = 30) {
  const to = q.to ? new Date(q.to) : now;
  const from = q.from ? new Date(q.from) : new Date(to.getTime() - (q.days ?? defDays) * DAY_MS);
  if (Number.isNaN(to.getTime()) || Number.isNaN(from.getTime())) throw new RangeProblem("from and to must be ISO 8601 dates");
  if (from >= to) throw new RangeProblem("from must be before to");
  if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * DAY_MS) throw new RangeProblem(`a range is at most ${MAX_RANGE_DAYS} days`);
  return { from, to };
}

export const utcDay = (d: Date | string) => new Date(d).toISOString().slice(0, 10);

export interface DayCount {
  day: string | Date;
  verdict: string;
  n: number;
}

/** One entry per UTC day from `from` to `to`, each with a count per verdict and the total. */
export function fillDays(rows: DayCount[], from: Date, to: Date) {
  const byDay = new Map<string, Record<string, number>>();
  for (const r of rows) {
    const k = typeof r.day === "string" ? r.day.slice(0, 10) : utcDay(r.day);
    const e = byDay.get(k) ?? {};
    e[r.verdict] = (e[r.verdict] ?? 0) + Number(r.n);
    byDay.set(k, e);
  }
  const out: ({ date: string; total: number } & Record<VerdictName, number>)[] = [];
  const start = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  // `to` is exclusive: a range ending at midnight does not show the day that starts there.
  const last = new Date(to.getTime() - 1);
  const end = Date.UTC(last.getUTCFullYear(), last.getUTCMonth(), last.getUTCDate());
  for (let t = start; t <= end; t += DAY_MS) {
    const date = new Date(t).toISOString().slice(0, 10);
    const e = byDay.get(date) ?? {};
    const counts = Object.fromEntries(VERDICTS.map((v) => [v, e[v] ?? 0])) as Record<VerdictName, number>;
    out.push({ date, ...counts, total: VERDICTS.reduce((s, v) => s + counts[v], 0) });
  }
  return out;
}

/** part / whole to four decimals; 0 when there is nothing to divide. */
export function rate(part: number, whole: number): number {
  return whole > 0 ? Math.round((Number(part) / Number(whole)) * 10_000) / 10_000 : 0;
}

function decimalsOf(x: number): number {
  const s = String(x);
  const dot = s.indexOf(".");
  return dot < 0 ? 0 : s.length - dot - 1;
}

/**
 * SQL expressions for the integer cell indices of (lat, lng) columns, with `$n` the size parameter;
 * the same rule as gridCell: points on a line belong to the upper cell, latitude 90 to the top
 * row, longitude 180 to -180.
 */
export function gridIndexSql(latCol: string, lngCol: string, sizeParam: string) {
  const idx = (x: string) => `floor(${x} / ${sizeParam} + 1e-9)`;
  return {
    lat: `LEAST(${idx(latCol)}, ${idx(`(90 - ${sizeParam} / 2)`)})`,
    lng: idx(`(CASE WHEN ${lngCol} = 180 THEN -180 ELSE ${lngCol} END)`),
  };
}

/** A cell's name and its corners from the indices gridIndexSql computed. */
export function gridCellOf(latIdx: number, lngIdx: number, size: number) {
  const d = decimalsOf(size);
  const fmt = (i: number) => (i * size + 0).toFixed(d);
  const south = latIdx * size;
  const west = lngIdx * size;
  return { cell: `${fmt(latIdx)},${fmt(lngIdx)}`, south, west, north: south + size, east: west + size };
}
