// `npm run cluster`: the production topology on this machine (api×2, scan×2, factory, anchor,
// admin+webhooks over NATS, on the local Postgres and Redis, a JSON-RPC dev chain), until Ctrl-C.
import { ClusterHarness } from "./cluster";

const admin = { email: process.env.VOKETAG_ADMIN_EMAIL || "admin@voketag.local", password: process.env.VOKETAG_ADMIN_PASSWORD || "cluster-admin-password" };

async function main() {
  console.log("starting the cluster (7 broker processes over NATS)…");
  const h = await ClusterHarness.start({ env: { VOKETAG_ADMIN_EMAIL: admin.email, VOKETAG_ADMIN_PASSWORD: admin.password, ANCHOR_INTERVAL: process.env.ANCHOR_INTERVAL || "10" } });
  console.log(`\nVokeTag cluster up at ${h.baseUrl}  (admin ${admin.email} / ${admin.password})`);
  console.log(`database ${h.env.databaseUrl}  chain ${h.env.rpcUrl}  namespace ${h.env.env.VOKETAG_NAMESPACE}`);
  for (const n of h.nodes) console.log(`  ${n.id.padEnd(10)} pid ${n.handle.proc.pid}  services ${n.env.SERVICES}${n.env.PORT ? `  port ${n.env.PORT}` : ""}`);
  console.log("\nCtrl-C stops every node and drops the cluster's database.");
  const stop = async () => {
    await h.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
