// The one config module: every setting the cluster reads from its environment, parsed and checked
// once. Durations are integer seconds (ARCHITECTURE.md); secrets may come from `<NAME>_FILE`.
import fs from "node:fs";
import path from "node:path";
import { parseRetrySchedule } from "./retry-schedule";

export const ALL_SERVICES = ["api", "factory", "scan", "anchor", "admin", "webhooks", "maintenance"] as const;
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
  /** TLS to NATS (a tls:// TRANSPORTER or any of the files set) and a private CA for rediss:// (OPERATIONS.md). */
  tls: { nats: { caFile?: string; certFile?: string; keyFile?: string } | null; redisCaFile: string | null };
  /** Port of the node's probe listener (/v1/health, /v1/ready about this node only); null: none. */
  healthPort: number | null;
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
    /** How often in-flight anchors are watched (confirmations, reorgs, stuck transactions). */
    pollSeconds: number;
    /** A transaction not mined after this long is replaced (same nonce, higher fee). */
    stuckTimeoutSeconds: number;
    /** First wait between submission attempts within a cycle; doubles each time. */
    retryBackoffSeconds: number;
    /** Below this wallet balance (decimal wei: a string, so the config stays JSON) readiness warns and the alert fires. */
    lowBalanceWei: string;
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
  /** Factory (issue 3): unfinished uploads expire after uploadTtlSeconds; a batch holds at most batchMaxProducts. */
  factory: { uploadTtlSeconds: number; batchMaxProducts: number };
  /** Admin (issue 7): outgoing mail, login throttling, privacy retention, the console's address. */
  mail: { smtpUrl: string | null; from: string; outboxDir: string | null };
  login: { maxFailures: number; networkMaxFailures: number; windowSeconds: number; lockSeconds: number; slowdownMs: number; inviteTtlSeconds: number; resetTtlSeconds: number };
  retention: { scanLocationSeconds: number; reportContactSeconds: number; maintenanceIntervalSeconds: number };
  consoleUrl: string;
  /** Scan path: a scan request gives up (503) after timeoutSeconds; page form tokens live formTtlSeconds. */
  scan: { timeoutSeconds: number; formTtlSeconds: number };
  /** Port of this node's Prometheus endpoint (0 = any free port). */
  metricsPort: number;
  /** Broker processes this node runs (bin/node.ts forks them; they share the HTTP port). */
  workers: number;
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

function wei(env: Env, name: string, def: string): string {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number of wei, got "${raw}"`);
  return BigInt(raw.trim()).toString();
}

/** A secret from NAME or NAME_FILE; production refuses the plain variable (it leaks through `env`). */
export function secret(env: Env, name: string, production: boolean): string | null {
  const file = env[`${name}_FILE`];
  if (file) {
    try {
      return fs.readFileSync(file, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  const plain = env[name];
  if (plain === undefined || plain === "") return null;
  if (production) throw new ConfigError(`${name} must be given as ${name}_FILE in production`);
  return plain;
}

/**
 * A connection URL from NAME or NAME_FILE. Production refuses the plain variable only when the URL
 * carries a password (postgres://user:pw@…, rediss://:pw@…): one without (client certificates,
 * a .pgpass file, a private network) is configuration, not a secret.
 */
export function urlSecret(env: Env, name: string, production: boolean): string | null {
  const value = secret(env, name, false);
  if (value && production && !env[`${name}_FILE`] && urlPassword(value))
    throw new ConfigError(`${name} carries a password: give it as ${name}_FILE in production`);
  return value;
}

function urlPassword(url: string): boolean {
  try {
    return new URL(url).password !== "";
  } catch {
    return /:\/\/[^/@]*:[^/@]+@/.test(url);
  }
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
  if (transporter && !/^(nats|tls):\/\//.test(transporter)) throw new ConfigError("TRANSPORTER must be a nats:// or tls:// URL");
  // libpq's password variable would reach pg through the environment, unchecked: files only.
  if (production && env.PGPASSWORD) throw new ConfigError("PGPASSWORD must not be set in production: give the password in DATABASE_URL_FILE or PGPASSFILE");
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
    databaseUrl: urlSecret(env, "DATABASE_URL", production),
    redisUrl: urlSecret(env, "REDIS_URL", production),
    tls: tlsSettings(env, transporter),
    healthPort: env.HEALTH_PORT ? int(env, "HEALTH_PORT", 0, 1) : null,
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
      // Hosted RPC URLs often embed an API key: ANCHOR_RPC_URL_FILE keeps it out of the environment.
      rpcUrl: urlSecret(env, "ANCHOR_RPC_URL", production),
      privateKey: secret(env, "ANCHOR_PRIVATE_KEY", production),
      confirmations: int(env, "ANCHOR_CONFIRMATIONS", 1, 1),
      intervalSeconds: int(env, "ANCHOR_INTERVAL", 60, 1),
      maxFeeGwei: int(env, "ANCHOR_MAX_FEE_GWEI", 200, 1),
      chainId: int(env, "ANCHOR_DEV_CHAIN_ID", 1337, 1),
      pollSeconds: int(env, "ANCHOR_POLL_INTERVAL", 5, 1),
      stuckTimeoutSeconds: int(env, "ANCHOR_STUCK_TIMEOUT", 300, 1),
      retryBackoffSeconds: int(env, "ANCHOR_RETRY_BACKOFF", 2, 0),
      lowBalanceWei: wei(env, "ANCHOR_LOW_BALANCE_WEI", "50000000000000000"), // 0.05 ETH: ~1,000 anchors at 2 gwei
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
    // A batch's products, leaf hashes and serial index are held while it registers: 2,000,000 stays well under 1 GB.
    factory: { uploadTtlSeconds: int(env, "UPLOAD_TTL", 86_400, 60), batchMaxProducts: int(env, "BATCH_MAX_PRODUCTS", 2_000_000, 1) },
    ...adminSettings(env, production),
    scan: { timeoutSeconds: int(env, "SCAN_TIMEOUT", 5, 1), formTtlSeconds: int(env, "SCAN_FORM_TTL", 86_400, 60) },
    metricsPort: int(env, "METRICS_PORT", 0),
    zipkinUrl: env.TRACING_ZIPKIN_URL || null,
    workers: workerCount(env, transporter, services as ServiceName[]),
  };
}

// Several broker processes on one machine are a cluster like any other: they must share the
// database, hear each other's events and anchor on one chain, so the embedded defaults (a PGlite
// directory, an in-process chain, no transporter) cannot be split across processes.
function workerCount(env: Env, transporter: string | null, services: ServiceName[]): number {
  const n = int(env, "WORKERS", 1, 1);
  if (n === 1) return n;
  if (!transporter) throw new ConfigError("WORKERS > 1 needs TRANSPORTER: the workers are a cluster and must hear each other's events");
  if (!env.DATABASE_URL && !env.DATABASE_URL_FILE) throw new ConfigError("WORKERS > 1 needs DATABASE_URL: an embedded PGlite directory is one process's");
  if (services.includes("anchor") && !env.ANCHOR_RPC_URL && !env.ANCHOR_RPC_URL_FILE)
    throw new ConfigError("WORKERS > 1 with the anchor service needs ANCHOR_RPC_URL: the in-process chain is one process's");
  return n;
}

function adminSettings(env: Env, production: boolean): Pick<Config, "mail" | "login" | "retention" | "consoleUrl"> {
  const dataDir = env.VOKETAG_DATA_DIR === "memory://" ? null : path.resolve(env.VOKETAG_DATA_DIR || "./data");
  const base = (env.VERIFICATION_URL_BASE || `http://localhost:${env.PORT || 3000}`).replace(/\/+$/, "");
  return {
    mail: {
      smtpUrl: secret(env, "SMTP_URL", production),
      from: env.MAIL_FROM || "VokeTag <no-reply@voketag.local>",
      // Without SMTP_URL mail is written as .eml files here (embedded default, tests).
      outboxDir: env.MAIL_OUTBOX_DIR ? path.resolve(env.MAIL_OUTBOX_DIR) : dataDir ? path.join(dataDir, "outbox") : null,
    },
    login: {
      maxFailures: int(env, "LOGIN_MAX_FAILURES", 5, 1),
      networkMaxFailures: int(env, "LOGIN_NETWORK_MAX_FAILURES", 20, 1),
      windowSeconds: int(env, "LOGIN_WINDOW", 900, 1),
      lockSeconds: int(env, "LOGIN_LOCK", 900, 1),
      // Milliseconds, like OUTBOX_POLL_MS: the first added delay once failures pile up; it doubles per failure.
      slowdownMs: int(env, "LOGIN_SLOWDOWN_MS", 250, 0),
      inviteTtlSeconds: int(env, "INVITE_TTL", 7 * 86_400, 60),
      resetTtlSeconds: int(env, "PASSWORD_RESET_TTL", 1800, 60),
    },
    retention: {
      scanLocationSeconds: int(env, "RETENTION_SCAN_LOCATION", 90 * 86_400, 3600),
      reportContactSeconds: int(env, "RETENTION_REPORT_CONTACT", 180 * 86_400, 3600),
      maintenanceIntervalSeconds: int(env, "MAINTENANCE_INTERVAL", 3600, 1),
    },
    consoleUrl: (env.CONSOLE_URL || `${base}/admin`).replace(/\/+$/, ""),
  };
}

function tlsSettings(env: Env, transporter: string | null): Config["tls"] {
  const files = { caFile: env.NATS_TLS_CA_FILE || undefined, certFile: env.NATS_TLS_CERT_FILE || undefined, keyFile: env.NATS_TLS_KEY_FILE || undefined };
  if (!files.certFile !== !files.keyFile) throw new ConfigError("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together");
  const wanted = transporter?.startsWith("tls://") || Object.values(files).some(Boolean);
  return { nats: wanted ? files : null, redisCaFile: env.REDIS_TLS_CA_FILE || null };
}

/** ioredis takes a URL or an options object, not both: the URL's parts go into the options. */
export function redisConnection(url: string, tlsCaFile: string | null = null) {
  const u = new URL(url);
  return {
    host: u.hostname || "127.0.0.1",
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname && u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    // rediss:// verifies the server against the system CAs, or against REDIS_TLS_CA_FILE when set.
    tls: u.protocol === "rediss:" ? (tlsCaFile ? { ca: fs.readFileSync(tlsCaFile) } : {}) : undefined,
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
