// Shared rate limits: one Lua round trip in Redis (every gateway node shares a key's budget), in
// memory on the embedded default. While Redis is unreachable the limits fall back to this node's
// memory instead of failing requests, and Redis is tried again after a few seconds.
import crypto from "node:crypto";
import Redis from "ioredis";
import { GCRA_LUA, MemoryRateStore, RateDecision, RatePolicy } from "../lib/ratelimit";

const RETRY_REDIS_AFTER_MS = 5000;
const SHA = crypto.createHash("sha1").update(GCRA_LUA).digest("hex");

export class RateLimiter {
  private memory = new MemoryRateStore();
  private redis: Redis | null = null;
  private redisDownUntil = 0;

  constructor(redisOptions: Record<string, unknown> | null, private prefix: string) {
    if (redisOptions)
      // Auto-pipelined like the cacher: one write per event-loop turn, not one per request.
      this.redis = new Redis({ ...redisOptions, commandTimeout: 100, maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: false, enableAutoPipelining: true } as any);
    this.redis?.on("error", () => undefined);
  }

  async hit(key: string, policy: RatePolicy): Promise<RateDecision> {
    if (this.redis && Date.now() >= this.redisDownUntil) {
      try {
        const k = `${this.prefix}:rl:${policy.name}:${key}`;
        const args = [String(policy.limit), String(policy.windowSeconds * 1000)];
        let r: number[];
        try {
          r = (await this.redis.evalsha(SHA, 1, k, ...args)) as number[];
        } catch (err: any) {
          if (!String(err?.message).includes("NOSCRIPT")) throw err;
          r = (await this.redis.eval(GCRA_LUA, 1, k, ...args)) as number[];
        }
        return {
          allowed: r[0] === 1,
          limit: policy.limit,
          remaining: r[1],
          resetSeconds: Math.ceil(r[2] / 1000),
          retryAfterSeconds: r[0] === 1 ? 0 : Math.max(1, Math.ceil(r[3] / 1000)),
        };
      } catch {
        this.redisDownUntil = Date.now() + RETRY_REDIS_AFTER_MS;
      }
    }
    return this.memory.hit(key, policy);
  }

  async close() {
    this.redis?.disconnect();
  }
}
