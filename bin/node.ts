// One VokeTag node: the services named by SERVICES (all by default) in one broker. SIGTERM stops
// accepting, lets in-flight requests finish and exits within 10 s. WORKERS=n forks n such brokers
// sharing the HTTP port (Node's cluster module hands each connection to one of them), so one machine's
// cores all serve; a worker that dies is started again.
import cluster from "node:cluster";
import { ServiceBroker } from "moleculer";
import type { Config } from "../lib/config";
import { configOrExit } from "./config-or-exit";
import { brokerOptions } from "../moleculer.config";
import { createNode } from "../services";
import { startHealthListener } from "../mixins/health-listener";

async function main() {
  const config = configOrExit("voketag");
  if (config.workers > 1 && cluster.isPrimary) return supervise(config);
  const broker: ServiceBroker = createNode(config, brokerOptions(config));
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    broker.logger.info({ signal }, "stopping");
    const hard = setTimeout(() => process.exit(1), 10_000);
    hard.unref();
    try {
      await broker.stop();
      process.exit(0);
    } catch {
      process.exit(1);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  await broker.start();
  // Probes for every pod, api or not: this node's own liveness and dependencies (k8s/).
  if (config.healthPort) await startHealthListener(broker, { port: config.healthPort, host: config.host });
}

function supervise(config: Config) {
  const log = (level: string, msg: string, extra: Record<string, unknown> = {}) =>
    process.stderr.write(JSON.stringify({ level, time: Date.now(), pid: process.pid, msg, ...extra }) + "\n");
  let stopping = false;
  const start = (i: number) => {
    // Each worker is a node of its own in the cluster: NODE_ID gains the worker's number.
    const w = cluster.fork({ VOKETAG_WORKER: String(i), ...(config.nodeID ? { NODE_ID: `${config.nodeID}-w${i}` } : {}) });
    w.on("exit", (code, signal) => {
      if (stopping) {
        if (!Object.keys(cluster.workers ?? {}).length) process.exit(0);
        return;
      }
      log("error", "worker exited; starting it again", { worker: i, code, signal });
      setTimeout(() => start(i), 1000).unref();
    });
  };
  for (let i = 0; i < config.workers; i++) start(i);
  log("info", "supervising workers", { workers: config.workers });
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("info", "stopping workers", { signal });
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
    // Workers stop within 10 s on their own; this only bounds a stuck one.
    setTimeout(() => process.exit(1), 11_000).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err) => {
  console.error("voketag: failed to start:", err);
  process.exit(1);
});
