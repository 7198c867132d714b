// One VokeTag node: the services named by SERVICES (all by default) in one broker. SIGTERM stops
// accepting, lets in-flight requests finish and exits within 10 s.
import { ServiceBroker } from "moleculer";
import { loadConfig, ConfigError } from "../lib/config";
import { brokerOptions } from "../moleculer.config";
import { createNode } from "../services";
import { startHealthListener } from "../mixins/health-listener";

async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`voketag: configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
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

main().catch((err) => {
  console.error("voketag: failed to start:", err);
  process.exit(1);
});
