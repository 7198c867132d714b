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
  close(): Promise<void>;
}

export async function createClusterEnv(name: string): Promise<ClusterEnv> {
  const suffix = `${name}_${crypto.randomBytes(4).toString("hex")}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  const admin = new Client({ connectionString: SERVICES.postgres.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE vk_${suffix}`);
  await admin.end();
  const u = new URL(SERVICES.postgres.url);
  u.pathname = `/vk_${suffix}`;
  const databaseUrl = u.toString();
  const chainKey = "0x" + crypto.randomBytes(32).toString("hex");
  const chain = await startDevChainServer({ port: await freePort(), chainId: 31337, privateKey: chainKey });
  return {
    databaseUrl,
    rpcUrl: chain.url,
    env: {
      TRANSPORTER: SERVICES.nats.url,
      DATABASE_URL: databaseUrl,
      REDIS_URL: SERVICES.redis.url,
      VOKETAG_NAMESPACE: `vk-${suffix}`,
      ANCHOR_RPC_URL: chain.url,
      ANCHOR_PRIVATE_KEY: chainKey,
    },
    async close() {
      await chain.close().catch(() => undefined);
      const c = new Client({ connectionString: SERVICES.postgres.url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS vk_${suffix} WITH (FORCE)`).catch(() => undefined);
      await c.end();
    },
  };
}
