// When to try a webhook delivery again. The schedule lists the delays, in seconds, before each
// attempt: the first (0) is the immediate try; after the last has failed the delivery is dead.
export const DEFAULT_RETRY_SCHEDULE: readonly number[] = [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];

/** Jitter stretches a delay by up to this fraction (never shortens it), so retries do not stampede. */
export const JITTER = 0.2;
/** A receiver's Retry-After is honoured up to a day; anything longer is taken as a day. */
export const MAX_RETRY_AFTER_SECONDS = 86400;

/** WEBHOOK_RETRY_SCHEDULE: comma-separated integer seconds, e.g. "0,5,300". Throws on bad input. */
export function parseRetrySchedule(raw: string | undefined | null): number[] {
  if (raw === undefined || raw === null || raw.trim() === "") return [...DEFAULT_RETRY_SCHEDULE];
  const parts = raw.split(",").map((s) => s.trim());
  if (parts.length > 50) throw new Error("at most 50 attempts");
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d+$/.test(p)) throw new Error(`"${p}" is not a whole number of seconds`);
    const n = Number(p);
    if (n > 7 * 86400) throw new Error(`${n} s is longer than a week`);
    out.push(n);
  }
  return out;
}

/** Retry-After as seconds from now: delta-seconds or an HTTP date; null when absent or unparsable. */
export function parseRetryAfter(value: string | string[] | undefined | null, now = Date.now()): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return null;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Math.min(Number(s), MAX_RETRY_AFTER_SECONDS);
  const at = Date.parse(s);
  if (Number.isNaN(at)) return null;
  return Math.min(Math.max(0, Math.ceil((at - now) / 1000)), MAX_RETRY_AFTER_SECONDS);
}

/**
 * Seconds until the next attempt after `attemptsMade` attempts have failed, or null when the
 * schedule is used up (the delivery is dead). A receiver's Retry-After can only push it later.
 */
export function nextRetryDelay(schedule: readonly number[], attemptsMade: number, opts: { retryAfter?: number | null; random?: () => number } = {}): number | null {
  if (attemptsMade >= schedule.length) return null;
  const base = schedule[Math.max(0, attemptsMade)];
  const r = (opts.random ?? Math.random)();
  const jittered = base * (1 + JITTER * Math.min(Math.max(r, 0), 1));
  const delay = Math.max(jittered, opts.retryAfter ?? 0);
  return Math.round(delay * 1000) / 1000;
}
