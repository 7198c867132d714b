// Failed-login policy, per account and per client network: failures count within a window; past half
// the limit every further attempt waits longer (doubling), and at the limit the key is locked for a
// while. Unknown accounts are counted exactly like real ones, so lock-outs reveal nothing.
import { createHash } from "node:crypto";

export interface ThrottlePolicy {
  maxFailures: number;
  windowSeconds: number;
  lockSeconds: number;
  /** The first added delay (ms) once failures reach half the limit; doubles per failure. */
  slowdownMs: number;
}

export interface ThrottleRow {
  failures: number;
  window_start: Date | string;
  locked_until: Date | string | null;
}

/** Most a single attempt is held back: long enough to hurt a guesser, short of an HTTP timeout. */
export const MAX_SLOWDOWN_MS = 4000;

/** Failures that still count at `now` (the window restarts once it has passed). */
export function liveFailures(row: ThrottleRow | undefined, now: Date, p: ThrottlePolicy): number {
  if (!row) return 0;
  const start = new Date(row.window_start).getTime();
  return now.getTime() - start >= p.windowSeconds * 1000 ? 0 : row.failures;
}

/** Seconds until the key may try again, or 0 when it is not locked. */
export function lockedFor(row: ThrottleRow | undefined, now: Date): number {
  if (!row?.locked_until) return 0;
  const ms = new Date(row.locked_until).getTime() - now.getTime();
  return ms > 0 ? Math.ceil(ms / 1000) : 0;
}

/** Delay before answering an attempt after `failures` recent failures. */
export function slowdownMs(failures: number, p: ThrottlePolicy): number {
  const from = Math.ceil(p.maxFailures / 2);
  if (failures < from || p.slowdownMs <= 0) return 0;
  return Math.min(MAX_SLOWDOWN_MS, p.slowdownMs * 2 ** (failures - from));
}

/** The account key: a hash of the normalised address, so the table holds no email addresses. */
export function accountKey(email: string): string {
  return createHash("sha256").update(`voketag:login:${email.trim().toLowerCase()}`).digest("hex");
}
