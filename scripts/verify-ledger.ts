// Joins the running cluster (the node's own environment: TRANSPORTER, VOKETAG_NAMESPACE) as a
// service-less node, asks scan.verifyLedger to walk every partition of the hash-chained scan
// ledger, prints the result and exits 1 when any partition is broken. For operators after a
// restore or an incident (docs/RUNBOOK-backup-restore.md):
//   kubectl -n voketag exec deploy/voketag-ops -- node --import tsx scripts/verify-ledger.ts
import { ServiceBroker } from "moleculer";
import { loadConfig } from "../lib/config";
import { brokerOptions } from "../moleculer.config";

async function main() {
  const config = loadConfig({ ...process.env, SERVICES: "api" });
  if (!config.transporter) throw new Error("TRANSPORTER is not set: this joins a running cluster");
  const opts = brokerOptions(config);
  const broker = new ServiceBroker({ ...opts, nodeID: `verify-ledger-${process.pid}`, logger: false, metrics: false, tracing: false } as any);
  await broker.start();
  try {
    await broker.waitForServices(["scan"], 20_000);
    const r: any = await broker.call("scan.verifyLedger", {}, { timeout: 600_000 });
    for (const p of r.partitions) console.log(`partition ${p.partition}: ${p.ok ? "ok" : "BROKEN"} — ${p.count} entries${p.broken ? `; at seq ${p.broken.seq}: ${p.broken.reason} (${p.broken.detail ?? ""})` : ""}`);
    console.log(r.ok ? "ledger: every partition verifies" : "ledger: BROKEN");
    return r.ok ? 0 : 1;
  } finally {
    await broker.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`verify-ledger: ${err.message}`);
    process.exit(2);
  },
);
