import { accountKey, liveFailures, lockedFor, slowdownMs, MAX_SLOWDOWN_MS, ThrottlePolicy } from "../../lib/login-throttle";

const p: ThrottlePolicy = { maxFailures: 6, windowSeconds: 900, lockSeconds: 900, slowdownMs: 250 };
const now = new Date("2026-01-01T12:00:00Z");

describe("login throttle policy", () => {
  it("counts failures only inside the window", () => {
    expect(liveFailures(undefined, now, p)).toBe(0);
    expect(liveFailures({ failures: 4, window_start: new Date(now.getTime() - 60_000), locked_until: null }, now, p)).toBe(4);
    expect(liveFailures({ failures: 4, window_start: new Date(now.getTime() - 900_000), locked_until: null }, now, p)).toBe(0);
  });

  it("reports a lock in whole seconds, and none once it has passed", () => {
    expect(lockedFor({ failures: 6, window_start: now, locked_until: new Date(now.getTime() + 1500) }, now)).toBe(2);
    expect(lockedFor({ failures: 6, window_start: now, locked_until: new Date(now.getTime() - 1) }, now)).toBe(0);
    expect(lockedFor({ failures: 6, window_start: now, locked_until: null }, now)).toBe(0);
  });

  it("slows down from half the limit, doubling, capped", () => {
    expect([0, 1, 2].map((n) => slowdownMs(n, p))).toEqual([0, 0, 0]);
    expect([3, 4, 5].map((n) => slowdownMs(n, p))).toEqual([250, 500, 1000]);
    expect(slowdownMs(40, p)).toBe(MAX_SLOWDOWN_MS);
    expect(slowdownMs(5, { ...p, slowdownMs: 0 })).toBe(0);
  });

  it("keys accounts by a hash of the normalised address, never the address", () => {
    expect(accountKey(" Ann@Example.COM ")).toBe(accountKey("ann@example.com"));
    expect(accountKey("ann@example.com")).toMatch(/^[0-9a-f]{64}$/);
    expect(accountKey("ann@example.com")).not.toBe(accountKey("bob@example.com"));
  });
});
