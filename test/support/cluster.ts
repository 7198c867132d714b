// A throwaway cluster on the real services: its own Postgres database, NATS namespace and Redis
// cache prefix, and a JSON-RPC EVM node on loopback, so suites never see each other's data.
import crypto from "node:crypto";
import { Client } from "pg";
import { SERVICES } from "./services";
import { freePort } from "./node-process";
import { startDevChainServer } from "../../lib/devchain";

export interface ClusterEnv {
  env: Record<string, string>;
  databaseUrl: string;
  rpcUrl: string;
  /** The JSON-RPC chain: stop() and start() again on the same port (with chainDataDir, the same blocks). */
  chain: { stop(): Promise<void>; start(): Promise<void> };
  close(): Promise<void>;
}

/** Other servers than the machine's shared ones (chaos scenarios that stop them run their own). */
export interface ClusterEnvOptions {
  postgresUrl?: string;
  redisUrl?: string;
  natsUrl?: string;
  chainDataDir?: string;
  chainPort?: number;
}

export async function createClusterEnv(name: string, opts: ClusterEnvOptions = {}): Promise<ClusterEnv> {
  const suffix = `${name}_${crypto.randomBytes(4).toString("hex")}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  const pgUrl = opts.postgresUrl ?? SERVICES.postgres.url;
  const admin = new Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE vk_${suffix}`);
  await admin.end();
  const u = new URL(pgUrl);
  u.pathname = `/vk_${suffix}`;
  const databaseUrl = u.toString();
  const chainKey = "0x" + crypto.randomBytes(32).toString("hex");
  const chainOpts = { port: opts.chainPort ?? (await freePort()), chainId: 31337, privateKey: chainKey, dataDir: opts.chainDataDir ?? null };
  let chain: Awaited<ReturnType<typeof startDevChainServer>> | null = await startDevChainServer(chainOpts);
  const rpcUrl = chain.url;
  return {
    databaseUrl,
    rpcUrl,
    chain: {
      async stop() {
        await chain?.close();
        chain = null;
      },
      async start() {
        chain ??= await startDevChainServer(chainOpts);
      },
    },
    env: {
      TRANSPORTER: opts.natsUrl ?? SERVICES.nats.url,
      DATABASE_URL: databaseUrl,
      REDIS_URL: opts.redisUrl ?? SERVICES.redis.url,
      VOKETAG_NAMESPACE: `vk-${suffix}`,
      ANCHOR_RPC_URL: rpcUrl,
      ANCHOR_PRIVATE_KEY: chainKey,
    },
    async close() {
      await chain?.close().catch(() => undefined);
      chain = null;
      const c = new Client({ connectionString: pgUrl });
      try {
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS vk_${suffix} WITH (FORCE)`).catch(() => undefined);
      } catch {
        // A scenario's own Postgres may be gone already: its whole server is dropped anyway.
      } finally {
        await c.end().catch(() => undefined);
      }
    },
  };
}
