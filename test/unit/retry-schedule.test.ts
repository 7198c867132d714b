import { DEFAULT_RETRY_SCHEDULE, parseRetrySchedule, parseRetryAfter, nextRetryDelay, JITTER, MAX_RETRY_AFTER_SECONDS } from "../../lib/retry-schedule";
import { loadConfig, ConfigError } from "../../lib/config";

describe("webhook retry schedule", () => {
  it("defaults to the Standard Webhooks delays", () => {
    expect(DEFAULT_RETRY_SCHEDULE).toEqual([0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]);
    expect(parseRetrySchedule(undefined)).toEqual([...DEFAULT_RETRY_SCHEDULE]);
    expect(parseRetrySchedule(" ")).toEqual([...DEFAULT_RETRY_SCHEDULE]);
  });

  it("reads WEBHOOK_RETRY_SCHEDULE as comma-separated seconds and refuses anything else", () => {
    expect(parseRetrySchedule("0, 1,2 ,60")).toEqual([0, 1, 2, 60]);
    expect(() => parseRetrySchedule("0,1.5")).toThrow(/whole number/);
    expect(() => parseRetrySchedule("0,-1")).toThrow(/whole number/);
    expect(() => parseRetrySchedule("0,,1")).toThrow(/whole number/);
    expect(() => parseRetrySchedule("0,1s")).toThrow(/whole number/);
    expect(() => parseRetrySchedule("0,999999999")).toThrow(/week/);
    expect(loadConfig({ WEBHOOK_RETRY_SCHEDULE: "0,1,1" }).webhooks.retrySchedule).toEqual([0, 1, 1]);
    expect(() => loadConfig({ WEBHOOK_RETRY_SCHEDULE: "soon" })).toThrow(ConfigError);
    expect(() => loadConfig({ WEBHOOK_TIMEOUT: "15", WEBHOOK_LEASE: "10" })).toThrow(/WEBHOOK_LEASE/);
    const d = loadConfig({}).webhooks;
    expect(d).toMatchObject({ timeoutSeconds: 15, allowPrivate: false });
    expect(d.leaseSeconds).toBeGreaterThan(d.timeoutSeconds);
  });

  it("waits the scheduled delay after each failed attempt, then gives up", () => {
    const s = DEFAULT_RETRY_SCHEDULE;
    const none = () => 0;
    expect(nextRetryDelay(s, 1, { random: none })).toBe(5);
    expect(nextRetryDelay(s, 2, { random: none })).toBe(300);
    expect(nextRetryDelay(s, 9, { random: none })).toBe(86400);
    expect(nextRetryDelay(s, 10, { random: none })).toBeNull();
    expect(nextRetryDelay([0, 1, 1], 3)).toBeNull();
  });

  it("adds jitter that only ever lengthens a delay, by at most 20 %", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const d = nextRetryDelay(DEFAULT_RETRY_SCHEDULE, 2)!;
      expect(d).toBeGreaterThanOrEqual(300);
      expect(d).toBeLessThanOrEqual(300 * (1 + JITTER));
      seen.add(d);
    }
    expect(seen.size).toBeGreaterThan(50);
    expect(nextRetryDelay(DEFAULT_RETRY_SCHEDULE, 2, { random: () => 1 })).toBe(360);
  });

  it("honours Retry-After when it asks for longer, never shorter", () => {
    expect(nextRetryDelay([0, 5, 300], 1, { retryAfter: 120, random: () => 0 })).toBe(120);
    expect(nextRetryDelay([0, 5, 300], 1, { retryAfter: 1, random: () => 0 })).toBe(5);
    expect(nextRetryDelay([0, 5], 2, { retryAfter: 1 })).toBeNull();
  });

  it("parses Retry-After as seconds or an HTTP date, capped at a day", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("30", now)).toBe(30);
    expect(parseRetryAfter(["7"], now)).toBe(7);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:02:00 GMT", now)).toBe(120);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("99999999", now)).toBe(MAX_RETRY_AFTER_SECONDS);
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });
});
