// Settings god mode may change at run time (stored in the settings table, they override the
// environment on every node within a few seconds — mixins/settings.mixin). Each key names the
// variable it overrides and the service that reads it.
export interface RuntimeSetting {
  key: string;
  description: string;
  env: string;
  readBy: string;
  min: number;
  max: number;
}

// Keys are the names of the variables they override, as the services read them
// (this.setting("ANCHOR_INTERVAL", config.anchor.intervalSeconds)).
export const RUNTIME_SETTINGS: readonly RuntimeSetting[] = [
  { key: "ANCHOR_INTERVAL", description: "Seconds between anchoring cycles", env: "ANCHOR_INTERVAL", readBy: "anchor", min: 1, max: 86_400 },
  { key: "ANCHOR_CONFIRMATIONS", description: "Confirmations before an anchor is final", env: "ANCHOR_CONFIRMATIONS", readBy: "anchor", min: 1, max: 1000 },
  { key: "ANCHOR_MAX_FEE_GWEI", description: "Cap on the anchoring transaction fee (gwei)", env: "ANCHOR_MAX_FEE_GWEI", readBy: "anchor", min: 1, max: 100_000 },
  { key: "RETENTION_SCAN_LOCATION", description: "Seconds a scan keeps its (coarse) location", env: "RETENTION_SCAN_LOCATION", readBy: "admin (retention)", min: 3600, max: 10 * 365 * 86_400 },
  { key: "RETENTION_REPORT_CONTACT", description: "Seconds a fraud report keeps the reporter's contact", env: "RETENTION_REPORT_CONTACT", readBy: "admin (retention)", min: 3600, max: 10 * 365 * 86_400 },
];

export function runtimeSetting(key: string): RuntimeSetting | undefined {
  return RUNTIME_SETTINGS.find((s) => s.key === key);
}

/** The value to store, or why it is refused. Every runtime setting is an integer (durations in seconds). */
export function checkRuntimeSetting(key: string, value: unknown): { ok: true; value: number } | { ok: false; message: string } {
  const spec = runtimeSetting(key);
  if (!spec) return { ok: false, message: `unknown setting ${key} (known: ${RUNTIME_SETTINGS.map((s) => s.key).join(", ")})` };
  if (typeof value !== "number" || !Number.isInteger(value)) return { ok: false, message: `${key} must be an integer` };
  if (value < spec.min || value > spec.max) return { ok: false, message: `${key} must be between ${spec.min} and ${spec.max}` };
  return { ok: true, value };
}
