// Moleculer's Redis cacher with a breaker: a cache is an optimisation, so a Redis that is down or
// slow must cost a scan at most one 100 ms command timeout, never the answer. Moleculer's own cacher
// fails the action when a GET rejects and leaves SET rejections unhandled (which kills a Node 22
// process); here every failure trips a breaker, reads become misses, writes are dropped, and Redis is
// tried again after `reopenMs` (the breaker recovers by itself when Redis returns).
//
// Invalidation must not be lost: a DEL that could not reach Redis marks the cache dirty, and the
// first command after recovery flushes the whole cache namespace before anything is read from it, so
// a product recalled while Redis was away is never served from a stale entry.
import { Cachers } from "moleculer";

export const CACHE_REOPEN_MS = 2000;

export class ResilientRedisCacher extends Cachers.Redis {
  private downUntil = 0;
  private dirty = false;
  private flushing: Promise<void> | null = null;
  readonly reopenMs: number;

  constructor(opts: ConstructorParameters<typeof Cachers.Redis>[0] & { reopenMs?: number }) {
    super(opts);
    this.reopenMs = (opts as any)?.reopenMs ?? CACHE_REOPEN_MS;
  }

  /** QUIT politely when Redis answers; a dead or hung one must not hold the broker's stop (or keep reconnecting). */
  override async close(): Promise<void> {
    const client: any = this.client;
    if (!client) return;
    if (client.status === "ready") await Promise.race([client.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 500).unref())]);
    client.disconnect();
  }

  /** True while the breaker is open (Redis is skipped). */
  get open(): boolean {
    return Date.now() < this.downUntil;
  }

  private trip(op: string, err: unknown) {
    if (!this.open) this.logger.warn({ op, err: (err as Error)?.message }, `cache unavailable, skipped for ${this.reopenMs} ms`);
    this.downUntil = Date.now() + this.reopenMs;
  }

  /** Before the first read after an outage with lost invalidations: drop everything cached. */
  private async ready(): Promise<boolean> {
    if (this.open) return false;
    if (!this.dirty) return true;
    this.flushing ??= super
      .clean("*")
      .then(() => {
        this.dirty = false;
        this.logger.info("cache flushed after an outage that lost invalidations");
      })
      .catch((err: unknown) => this.trip("clean", err))
      .finally(() => (this.flushing = null));
    await this.flushing;
    return !this.dirty && !this.open;
  }

  /**
   * Runs other Redis work of the scan path (enumeration sketches) on this client under the same
   * breaker and 100 ms command timeout: undefined when Redis is skipped or fails, so the caller
   * takes its fallback. Keys are given without the prefix.
   */
  async guarded<T>(fn: (client: any, prefix: string) => Promise<T>): Promise<T | undefined> {
    if (this.open || !(this as any).connected) return undefined;
    try {
      return await fn(this.client, this.prefix ?? "");
    } catch (err) {
      this.trip("command", err);
      return undefined;
    }
  }

  override async get(key: string): Promise<any> {
    if (!(await this.ready())) return this.opts.missingResponse;
    try {
      return await super.get(key);
    } catch (err) {
      this.trip("get", err);
      return this.opts.missingResponse;
    }
  }

  override async getWithTTL(key: string): Promise<any> {
    if (!(await this.ready())) return { data: null, ttl: null };
    try {
      return await super.getWithTTL(key);
    } catch (err) {
      this.trip("get", err);
      return { data: null, ttl: null };
    }
  }

  override async set(key: string, data: any, ttl?: number): Promise<any> {
    if (this.open || this.dirty) return null;
    try {
      return await super.set(key, data, ttl);
    } catch (err) {
      this.trip("set", err);
      return null;
    }
  }

  override async del(keys: string | string[]): Promise<any> {
    if (this.open) {
      this.dirty = true;
      return 0;
    }
    try {
      return await super.del(keys);
    } catch (err) {
      this.dirty = true;
      this.trip("del", err);
      return 0;
    }
  }

  override async clean(match?: string | string[]): Promise<any> {
    if (this.open) {
      this.dirty = true;
      return null;
    }
    try {
      return await super.clean(match);
    } catch (err) {
      this.dirty = true;
      this.trip("clean", err);
      return null;
    }
  }
}
