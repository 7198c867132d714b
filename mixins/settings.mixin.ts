// Runtime settings (god mode): a value stored in the settings table overrides the environment's.
// Read through a short cache so a change reaches every node within a few seconds.
import type { ServiceSchema } from "moleculer";

const TTL_MS = 5000;

export const SettingsMixin: Partial<ServiceSchema> = {
  methods: {
    /** The stored value of `key`, or `fallback` when none is stored. */
    async setting<T>(this: any, key: string, fallback: T): Promise<T> {
      const cache: Map<string, { at: number; value: unknown }> = (this._settings ??= new Map());
      const hit = cache.get(key);
      if (hit && Date.now() - hit.at < TTL_MS) return (hit.value ?? fallback) as T;
      const { rows } = await this.db.query("SELECT value FROM settings WHERE key = $1", [key]);
      const value = rows.length ? rows[0].value : null;
      cache.set(key, { at: Date.now(), value });
      return (value ?? fallback) as T;
    },
  },
};
