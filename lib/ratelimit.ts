// Rate limiting with GCRA (the generic cell rate algorithm): one timestamp per key, exact, no
// background refill. The same algorithm runs in memory and as one Lua call in Redis, so every
// gateway node shares a key's budget in one round trip.

export interface RatePolicy {
  name: string;
  /** Requests allowed per window (also the burst). */
  limit: number;
  windowSeconds: number;
}

export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the budget is whole again. */
  resetSeconds: number;
  /** Seconds to wait before the next request can pass (0 when allowed). */
  retryAfterSeconds: number;
}

/** One GCRA step. `tat` is the stored theoretical arrival time (ms) or null; returns the new one. */
export function gcra(nowMs: number, tatMs: number | null, policy: RatePolicy): { decision: RateDecision; tat: number | null } {
  const windowMs = policy.windowSeconds * 1000;
  const interval = windowMs / policy.limit;
  const tat = Math.max(tatMs ?? nowMs, nowMs);
  const newTat = tat + interval;
  const allowAt = newTat - windowMs;
  if (nowMs < allowAt) {
    return {
      decision: {
        allowed: false,
        limit: policy.limit,
        remaining: 0,
        resetSeconds: Math.ceil((tat - nowMs) / 1000),
        retryAfterSeconds: Math.max(1, Math.ceil((allowAt - nowMs) / 1000)),
      },
      tat: null,
    };
  }
  return {
    decision: {
      allowed: true,
      limit: policy.limit,
      remaining: Math.floor((nowMs - allowAt) / interval),
      resetSeconds: Math.ceil((newTat - nowMs) / 1000),
      retryAfterSeconds: 0,
    },
    tat: newTat,
  };
}

/**
 * The same step in Redis. KEYS[1] = key; ARGV = limit, window ms. Returns
 * {allowed, remaining, reset_ms, retry_ms}; time comes from the Redis server so every node agrees.
 */
export const GCRA_LUA = `
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, math.floor((now - allow_at) / interval), math.ceil(new_tat - now), 0}
`;

/** The response headers: IETF draft-8 RateLimit/RateLimit-Policy and the common X-RateLimit-*. */
export function rateLimitHeaders(policy: RatePolicy, d: RateDecision): Record<string, string> {
  const h: Record<string, string> = {
    "RateLimit-Policy": `"${policy.name}";q=${policy.limit};w=${policy.windowSeconds}`,
    RateLimit: `"${policy.name}";r=${d.remaining};t=${d.resetSeconds}`,
    "X-RateLimit-Limit": String(d.limit),
    "X-RateLimit-Remaining": String(d.remaining),
    "X-RateLimit-Reset": String(d.resetSeconds),
  };
  if (!d.allowed) h["Retry-After"] = String(d.retryAfterSeconds);
  return h;
}

/** In-memory store: the embedded default, and the fallback while Redis is unreachable. */
export class MemoryRateStore {
  private tats = new Map<string, number>();
  private lastSweep = 0;
  hit(key: string, policy: RatePolicy, nowMs = Date.now()): RateDecision {
    const r = gcra(nowMs, this.tats.get(key) ?? null, policy);
    if (r.tat !== null) this.tats.set(key, r.tat);
    if (nowMs - this.lastSweep > 60_000) this.sweep(nowMs);
    return r.decision;
  }
  /** Forget keys whose budget is whole again, so memory follows active clients only. */
  sweep(nowMs = Date.now()) {
    this.lastSweep = nowMs;
    for (const [k, tat] of this.tats) if (tat <= nowMs) this.tats.delete(k);
  }
  get size() {
    return this.tats.size;
  }
}
