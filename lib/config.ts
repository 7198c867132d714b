// The one config module: every setting the cluster reads from its environment, parsed and checked
// once. Durations are integer seconds (ARCHITECTURE.md); secrets may come from `<NAME>_FILE`.
import fs from "node:fs";
import path from "node:path";
import { parseRetrySchedule } from "./retry-schedule";

export const ALL_SERVICES = ["api", "factory", "scan", "anchor", "admin", "webhooks"] as const;
export type ServiceName = (typeof ALL_SERVICES)[number];

export interface Config {
  nodeEnv: string;
  production: boolean;
  nodeID?: string;
  namespace: string;
  port: number;
  host: string;
  dataDir: string;
  verificationUrlBase: string;
  transporter: string | null;
  databaseUrl: string | null;
  redisUrl: string | null;
  services: ServiceName[];
  logLevel: string;
  trustProxy: string[];
  keyEnv: string;
  admin: { email: string | null; password: string | null };
  tokenKeys: string | null;
  jwt: { privateKeyPem: string | null; issuer: string; audience: string; ttlSeconds: number; refreshTtlSeconds: number };
  anchor: {
    rpcUrl: string | null;
    privateKey: string | null;
    confirmations: number;
    intervalSeconds: number;
    maxFeeGwei: number;
    chainId: number;
  };
  webhooks: {
    allowPrivate: boolean;
    /** Delays (s) before each delivery attempt; the first is the immediate try. */
    retrySchedule: number[];
    timeoutSeconds: number;
    /** How long a worker holds a claimed delivery; must outlast timeoutSeconds. */
    leaseSeconds: number;
    concurrency: number;
    pollMs: number;
    retentionSeconds: number;
  };
  /** Requests per minute: per API key, per user, per client network, per device (public routes). */
  rateLimits: { key: number; user: number; network: number; device: number };
  outboxPollMs: number;
  /** Scan path: a scan request gives up (503) after timeoutSeconds; page form tokens live formTtlSeconds. */
  scan: { timeoutSeconds: number; formTtlSeconds: number };
  /** Port of this node's Prometheus endpoint (0 = any free port). */
  metricsPort: number;
  /** Zipkin v2 collector (an OTel collector's zipkin receiver works): tracing is on when set. */
  zipkinUrl: string | null;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, def: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min) throw new ConfigError(`${name} must be >= ${min}`);
  return n;
}

/** A secret from NAME or NAME_FILE; production refuses the plain variable (it leaks through `env`). */
export function secret(env: Env, name: string, production: boolean): string | null {
  const file = env[`${name}_FILE`];
  if (file) return fs.readFileSync(file, "utf8").trim();
  const plain = env[name];
  if (plain === undefined || plain === "") return null;
  if (production) throw new ConfigError(`${name} must be given as ${name}_FILE in production`);
  return plain;
}

export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = env.NODE_ENV || "development";
  const production = nodeEnv === "production";
  const port = int(env, "PORT", 3000);
  const services = (env.SERVICES || ALL_SERVICES.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of services)
    if (!(ALL_SERVICES as readonly string[]).includes(s))
      throw new ConfigError(`SERVICES: unknown service "${s}" (known: ${ALL_SERVICES.join(", ")})`);
  const transporter = env.TRANSPORTER || null;
  if (transporter && !/^nats:\/\//.test(transporter)) throw new ConfigError("TRANSPORTER must be a nats:// URL");
  return {
    nodeEnv,
    production,
    nodeID: env.NODE_ID || undefined,
    // Nodes join the cluster of their namespace only: several clusters can share one NATS and Redis.
    namespace: env.VOKETAG_NAMESPACE || "voketag",
    port,
    host: env.HOST || "0.0.0.0",
    // "memory://" keeps everything in memory (tests); otherwise a directory.
    dataDir: env.VOKETAG_DATA_DIR === "memory://" ? "memory://" : path.resolve(env.VOKETAG_DATA_DIR || "./data"),
    verificationUrlBase: (env.VERIFICATION_URL_BASE || `http://localhost:${port}`).replace(/\/+$/, ""),
    transporter,
    databaseUrl: secret(env, "DATABASE_URL", false),
    redisUrl: env.REDIS_URL || null,
    services: services as ServiceName[],
    logLevel: env.LOG_LEVEL || "info",
    trustProxy: (env.TRUST_PROXY || "").split(",").map((s) => s.trim()).filter(Boolean),
    keyEnv: env.VOKETAG_KEY_ENV || (production ? "live" : "test"),
    admin: { email: env.VOKETAG_ADMIN_EMAIL || null, password: secret(env, "VOKETAG_ADMIN_PASSWORD", production) },
    tokenKeys: secret(env, "TOKEN_KEYS", production),
    jwt: {
      privateKeyPem: secret(env, "JWT_PRIVATE_KEY", production),
      issuer: env.JWT_ISSUER || "voketag",
      audience: env.JWT_AUDIENCE || "voketag-api",
      ttlSeconds: int(env, "JWT_TTL", 900, 60),
      refreshTtlSeconds: int(env, "REFRESH_TTL", 30 * 86400, 60),
    },
    anchor: {
      rpcUrl: env.ANCHOR_RPC_URL || null,
      privateKey: secret(env, "ANCHOR_PRIVATE_KEY", production),
      confirmations: int(env, "ANCHOR_CONFIRMATIONS", 1, 1),
      intervalSeconds: int(env, "ANCHOR_INTERVAL", 60, 1),
      maxFeeGwei: int(env, "ANCHOR_MAX_FEE_GWEI", 200, 1),
      chainId: int(env, "ANCHOR_DEV_CHAIN_ID", 1337, 1),
    },
    webhooks: webhookSettings(env),
    rateLimits: {
      key: int(env, "RATE_LIMIT_KEY", 1200, 1),
      user: int(env, "RATE_LIMIT_USER", 600, 1),
      network: int(env, "RATE_LIMIT_NETWORK", 600, 1),
      device: int(env, "RATE_LIMIT_DEVICE", 120, 1),
    },
    // Milliseconds, not a user-facing duration: how often the relay sweeps for rows it was not poked about.
    outboxPollMs: int(env, "OUTBOX_POLL_MS", 1000, 10),
    scan: { timeoutSeconds: int(env, "SCAN_TIMEOUT", 5, 1), formTtlSeconds: int(env, "SCAN_FORM_TTL", 86_400, 60) },
    metricsPort: int(env, "METRICS_PORT", 0),
    zipkinUrl: env.TRACING_ZIPKIN_URL || null,
  };
}

/** ioredis takes a URL or an options object, not both: the URL's parts go into the options. */
export function redisConnection(url: string) {
  const u = new URL(url);
  return {
    host: u.hostname || "127.0.0.1",
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname && u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === "rediss:" ? {} : undefined,
  };
}

function webhookSettings(env: Env): Config["webhooks"] {
  let retrySchedule: number[];
  try {
    retrySchedule = parseRetrySchedule(env.WEBHOOK_RETRY_SCHEDULE);
  } catch (err) {
    throw new ConfigError(`WEBHOOK_RETRY_SCHEDULE: ${(err as Error).message}`);
  }
  const timeoutSeconds = int(env, "WEBHOOK_TIMEOUT", 15, 1);
  const leaseSeconds = int(env, "WEBHOOK_LEASE", timeoutSeconds + 45, 1);
  // A worker still waiting on a receiver must never lose its lease to another node.
  if (leaseSeconds <= timeoutSeconds + 1) throw new ConfigError("WEBHOOK_LEASE must be longer than WEBHOOK_TIMEOUT + 1");
  return {
    // Loopback and RFC 1918 receivers (tests, private networks); link-local and metadata never.
    allowPrivate: env.WEBHOOKS_ALLOW_PRIVATE === "1",
    retrySchedule,
    timeoutSeconds,
    leaseSeconds,
    concurrency: int(env, "WEBHOOK_CONCURRENCY", 32, 1),
    // Milliseconds, like OUTBOX_POLL_MS: how often a worker looks for due deliveries nobody poked it about.
    pollMs: int(env, "WEBHOOK_POLL_MS", 1000, 10),
    retentionSeconds: int(env, "WEBHOOK_RETENTION", 30 * 86400, 3600),
  };
}
