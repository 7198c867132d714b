// Production hygiene in lib/config.ts: secrets come from files; in production a secret given as a
// plain variable is refused at start (a node started that way exits non-zero and says why); TLS to
// NATS and Redis is configuration.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig, ConfigError, redisConnection } from "../../lib/config";

const ROOT = path.resolve(__dirname, "..", "..");
let dir: string;
const file = (name: string, content: string) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content + "\n");
  return p;
};

beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-prodcfg-"))));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const PROD = { NODE_ENV: "production" };
const refused = (env: Record<string, string>, message: RegExp) => {
  expect(() => loadConfig({ ...PROD, ...env })).toThrow(ConfigError);
  expect(() => loadConfig({ ...PROD, ...env })).toThrow(message);
};

describe("secrets in production", () => {
  it.each(["TOKEN_KEYS", "JWT_PRIVATE_KEY", "ANCHOR_PRIVATE_KEY", "VOKETAG_ADMIN_PASSWORD"])("refuses %s as a plain variable and takes it from its _FILE", (name) => {
    refused({ [name]: "some-secret" }, new RegExp(`${name} must be given as ${name}_FILE in production`));
    const cfg = loadConfig({ ...PROD, [`${name}_FILE`]: file(name, "from-a-file") });
    const got = { TOKEN_KEYS: cfg.tokenKeys, JWT_PRIVATE_KEY: cfg.jwt.privateKeyPem, ANCHOR_PRIVATE_KEY: cfg.anchor.privateKey, VOKETAG_ADMIN_PASSWORD: cfg.admin.password }[name];
    expect(got).toBe("from-a-file"); // trailing newline trimmed
  });

  it("refuses a DATABASE_URL, REDIS_URL or ANCHOR_RPC_URL carrying a password, and accepts one without", () => {
    refused({ DATABASE_URL: "postgres://voketag:hunter2@db:5432/voketag" }, /DATABASE_URL carries a password: give it as DATABASE_URL_FILE/);
    refused({ REDIS_URL: "rediss://:hunter2@redis:6380" }, /REDIS_URL carries a password/);
    refused({ ANCHOR_RPC_URL: "https://user:key@rpc.example" }, /ANCHOR_RPC_URL carries a password/);
    // Client certificates, .pgpass or a private network: no secret in the URL, fine as configuration.
    const cfg = loadConfig({ ...PROD, DATABASE_URL: "postgres://voketag@db:5432/voketag?sslmode=verify-full", REDIS_URL: "rediss://redis:6380" });
    expect(cfg.databaseUrl).toBe("postgres://voketag@db:5432/voketag?sslmode=verify-full");
    const fromFile = loadConfig({ ...PROD, DATABASE_URL_FILE: file("db", "postgres://voketag:hunter2@db:5432/voketag"), REDIS_URL_FILE: file("redis", "redis://:pw@redis:6379") });
    expect(fromFile.databaseUrl).toBe("postgres://voketag:hunter2@db:5432/voketag");
    expect(fromFile.redisUrl).toBe("redis://:pw@redis:6379");
  });

  it("refuses PGPASSWORD in production (pg would read it from the environment behind our back)", () => {
    refused({ PGPASSWORD: "hunter2" }, /PGPASSWORD must not be set in production/);
    expect(() => loadConfig({ PGPASSWORD: "hunter2" })).not.toThrow();
  });

  it("names the variable and the path when a secret file cannot be read", () => {
    refused({ TOKEN_KEYS_FILE: path.join(dir, "missing") }, /TOKEN_KEYS_FILE: cannot read .*missing \(ENOENT\)/);
  });

  it("allows plain variables outside production (development, tests)", () => {
    const cfg = loadConfig({ TOKEN_KEYS: "k1:abc", DATABASE_URL: "postgres://u:p@db/x" });
    expect(cfg.tokenKeys).toBe("k1:abc");
    expect(cfg.databaseUrl).toBe("postgres://u:p@db/x");
  });

  it("a node started in production with a plain secret exits non-zero with a clear message", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "bin", "node.ts")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: "production", TOKEN_KEYS: "k1:" + Buffer.alloc(32).toString("base64"), VOKETAG_DATA_DIR: "memory://" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.status).not.toBeNull();
    expect(r.stderr).toContain("voketag: configuration error: TOKEN_KEYS must be given as TOKEN_KEYS_FILE in production");
    // Refused before anything started: no port, no database.
    expect(r.stdout).not.toMatch(/HTTP listening|migrations applied/);
    const db = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "bin", "node.ts")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: "production", DATABASE_URL: "postgres://voketag:hunter2@127.0.0.1:1/x" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(db.status).not.toBe(0);
    expect(db.stderr).toContain("DATABASE_URL carries a password: give it as DATABASE_URL_FILE in production");
    expect(db.stderr).not.toContain("hunter2");
  });
});

describe("TLS as configuration", () => {
  it("a tls:// transporter insists on TLS; CA and client certificate files are passed to the NATS client", () => {
    expect(loadConfig({ TRANSPORTER: "nats://n:4222" }).tls.nats).toBeNull();
    expect(loadConfig({ TRANSPORTER: "tls://n:4222" }).tls.nats).toEqual({ caFile: undefined, certFile: undefined, keyFile: undefined });
    const withFiles = loadConfig({ TRANSPORTER: "nats://n:4222", NATS_TLS_CA_FILE: "/ca.pem", NATS_TLS_CERT_FILE: "/c.pem", NATS_TLS_KEY_FILE: "/k.pem" });
    expect(withFiles.tls.nats).toEqual({ caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem" });
    expect(() => loadConfig({ NATS_TLS_CERT_FILE: "/c.pem" })).toThrow(/go together/);
    expect(() => loadConfig({ TRANSPORTER: "redis://x" })).toThrow(/nats:\/\/ or tls:\/\//);
  });

  it("rediss:// uses TLS, verified against REDIS_TLS_CA_FILE when given", () => {
    expect(redisConnection("redis://h:6379").tls).toBeUndefined();
    expect(redisConnection("rediss://:pw@h:6380/2")).toMatchObject({ host: "h", port: 6380, password: "pw", db: 2, tls: {} });
    const ca = file("ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    expect((redisConnection("rediss://h:6380", ca).tls as any).ca.toString()).toContain("BEGIN CERTIFICATE");
    expect(loadConfig({ REDIS_TLS_CA_FILE: ca }).tls.redisCaFile).toBe(ca);
  });
});

describe("WORKERS", () => {
  const cluster = { TRANSPORTER: "nats://127.0.0.1:4222", DATABASE_URL: "postgres://127.0.0.1/test" };
  it("is 1 by default and takes a count when the workers can be a cluster", () => {
    expect(loadConfig({}).workers).toBe(1);
    expect(loadConfig({ ...cluster, WORKERS: "3", SERVICES: "api,scan" }).workers).toBe(3);
    expect(loadConfig({ ...cluster, WORKERS: "2", ANCHOR_RPC_URL: "http://127.0.0.1:8545" }).workers).toBe(2);
  });
  it("refuses several workers on the embedded defaults, which are one process's", () => {
    expect(() => loadConfig({ WORKERS: "2" })).toThrow(/needs TRANSPORTER/);
    expect(() => loadConfig({ WORKERS: "2", TRANSPORTER: cluster.TRANSPORTER })).toThrow(/needs DATABASE_URL/);
    expect(() => loadConfig({ ...cluster, WORKERS: "2" })).toThrow(/needs ANCHOR_RPC_URL/);
    expect(() => loadConfig({ WORKERS: "0" })).toThrow(/WORKERS must be >= 1/);
  });
});
