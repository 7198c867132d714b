import { gcra, MemoryRateStore, rateLimitHeaders, RatePolicy } from "../../lib/ratelimit";

const policy: RatePolicy = { name: "key", limit: 10, windowSeconds: 60 };

describe("GCRA rate limiting", () => {
  it("allows a burst of exactly `limit`, then refuses with a retry time", () => {
    const store = new MemoryRateStore();
    const now = 1_000_000;
    const seen = Array.from({ length: 10 }, () => store.hit("a", policy, now));
    expect(seen.every((d) => d.allowed)).toBe(true);
    expect(seen.map((d) => d.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    const refused = store.hit("a", policy, now);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterSeconds).toBe(6); // one emission interval: 60 s / 10
  });

  it("refills one request per emission interval", () => {
    const store = new MemoryRateStore();
    const now = 0;
    for (let i = 0; i < 10; i++) store.hit("a", policy, now);
    expect(store.hit("a", policy, now + 5_999).allowed).toBe(false);
    expect(store.hit("a", policy, now + 6_000).allowed).toBe(true);
    expect(store.hit("a", policy, now + 6_000).allowed).toBe(false);
  });

  it("keeps keys apart and forgets idle ones", () => {
    const store = new MemoryRateStore();
    for (let i = 0; i < 10; i++) store.hit("a", policy, 0);
    expect(store.hit("b", policy, 0).allowed).toBe(true);
    store.sweep(120_000);
    expect(store.size).toBe(0);
  });

  it("a refused request does not consume budget", () => {
    let tat: number | null = null;
    for (let i = 0; i < 10; i++) tat = gcra(0, tat, policy).tat ?? tat;
    const refused = gcra(0, tat, policy);
    expect(refused.tat).toBeNull();
  });

  it("emits draft-8 and X-RateLimit headers, Retry-After only when refused", () => {
    const ok = rateLimitHeaders(policy, { allowed: true, limit: 10, remaining: 3, resetSeconds: 42, retryAfterSeconds: 0 });
    expect(ok).toMatchObject({ "RateLimit-Policy": '"key";q=10;w=60', RateLimit: '"key";r=3;t=42', "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "42" });
    expect(ok["Retry-After"]).toBeUndefined();
    const no = rateLimitHeaders(policy, { allowed: false, limit: 10, remaining: 0, resetSeconds: 60, retryAfterSeconds: 6 });
    expect(no["Retry-After"]).toBe("6");
  });
});
