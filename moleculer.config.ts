// Broker options, all read from lib/config. Fault tolerance is set on purpose (Moleculer leaves it
// off): every value below says why it is what it is.
import type { BrokerOptions, Errors } from "moleculer";
import { loadConfig, Config, redisConnection } from "./lib/config";
import { RequestContextMiddleware, requestLogFields, ZipkinHexExporter } from "./mixins/request-context";
import { UnsharedDefinitionsMiddleware } from "./mixins/unshared-definitions";
import { ResilientRedisCacher } from "./mixins/resilient-cacher";

export function brokerOptions(config: Config = loadConfig()): BrokerOptions & { voketag: Config } {
  return <any>{
    namespace: config.namespace,
    nodeID: config.nodeID,
    transporter: config.transporter
      ? {
          type: "NATS",
          options: {
            url: config.transporter,
            // Keep trying to reconnect through a NATS restart instead of giving up after 10 tries.
            maxReconnectAttempts: -1,
            reconnectTimeWait: 500,
            // Set: the client insists on TLS (no plaintext fallback), with a private CA / client cert if given.
            ...(config.tls.nats ? { tls: config.tls.nats } : {}),
          },
        }
      : null,
    // JSONExt keeps Dates, Buffers and BigInts intact between nodes (plain JSON would not).
    serializer: "JSONExt",
    cacher: config.redisUrl
      ? // Redis down or slow degrades to no cache (mixins/resilient-cacher.ts), never a failed call.
        new ResilientRedisCacher({
          prefix: `${config.namespace}-cache`,
          ttl: 300,
          // Scan-path budget: a Redis command gives up after 100 ms rather than delay a verdict.
          // Auto-pipelining sends the commands of one event-loop turn (many scans under load) in one
          // write: measured, a socket write per command was a large share of a scan's CPU.
          redis: {
            ...redisConnection(config.redisUrl, config.tls.redisCaFile),
            commandTimeout: 100,
            maxRetriesPerRequest: 1,
            enableOfflineQueue: false,
            enableAutoPipelining: true,
          },
        })
      : { type: "MemoryLRU", options: { ttl: 300, max: 10000 } },
    // A call that has not answered in 10 s has failed; handlers that legitimately run longer
    // (registration, exports) are asynchronous or stream, and set their own timeout.
    requestTimeout: 10_000,
    retryPolicy: {
      // Only errors Moleculer marks retryable (node gone, timeout, 503) are retried, three times,
      // 100 ms doubling: enough to ride over a killed node being dropped, short of the client's patience.
      enabled: true,
      retries: 3,
      delay: 100,
      maxDelay: 1000,
      factor: 2,
      check: (err: Error) => !!(err as Errors.MoleculerRetryableError).retryable,
    },
    circuitBreaker: {
      // Open a breaker on an endpoint failing half of at least 20 calls in 60 s; probe again after 10 s.
      enabled: true,
      threshold: 0.5,
      minRequestCount: 20,
      windowTime: 60,
      halfOpenTime: 10_000,
      check: (err: any) => err && (err.code >= 500 || err.retryable),
    },
    bulkhead: {
      // 100 concurrent calls per action per node, 1,000 queued: a burst queues, a flood is refused.
      enabled: true,
      concurrency: 100,
      maxQueueSize: 1000,
    },
    // Heartbeats every 1 s, a node silent for 4 s is dropped: a SIGKILLed node stops getting calls
    // within seconds (the default 30 s would fail every request routed to it meanwhile).
    heartbeatInterval: 1,
    heartbeatTimeout: 4,
    registry: { strategy: "RoundRobin", preferLocal: true },
    // Track in-flight requests so a stopping node finishes them (SIGTERM: exit within 10 s).
    tracking: { enabled: true, shutdownTimeout: 8000 },
    validator: true,
    logger: {
      type: "Pino",
      options: {
        level: config.logLevel,
        pino: { options: { base: null, timestamp: () => `,"time":"${new Date().toISOString()}"`, mixin: requestLogFields } },
      },
    },
    // Every node serves its own series for Prometheus (METRICS_PORT; the api also shows them at /metrics).
    metrics: {
      enabled: true,
      reporter: [{ type: "Prometheus", options: { port: config.metricsPort, path: "/metrics", defaultLabels: () => ({ namespace: config.namespace, nodeID: config.nodeID ?? "" }) } }],
    },
    middlewares: [RequestContextMiddleware, UnsharedDefinitionsMiddleware],
    tracing: config.zipkinUrl
      ? {
          enabled: true,
          exporter: [new (ZipkinHexExporter as any)({ baseURL: config.zipkinUrl, interval: 1, defaultTags: { namespace: config.namespace } })],
        }
      : { enabled: false },
    voketag: config,
  };
}

export default brokerOptions;
