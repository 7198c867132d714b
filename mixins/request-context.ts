// The request id in every log line: each local action and event handler runs inside an
// AsyncLocalStorage scope holding its context, and the logger adds that context's request id.
// Moleculer already carries ctx.requestID across nodes, the outbox relay and nested calls.
import { AsyncLocalStorage } from "node:async_hooks";
import crypto from "node:crypto";
import { TracerExporters } from "moleculer";

export const requestScope = new AsyncLocalStorage<{ requestID?: string | null }>();

export const RequestContextMiddleware = {
  name: "RequestContext",
  localAction(handler: (ctx: any) => any) {
    return (ctx: any) => requestScope.run(ctx, () => handler(ctx));
  },
  localEvent(handler: (ctx: any) => any) {
    return (ctx: any) => requestScope.run(ctx, () => handler(ctx));
  },
};

/** pino mixin: adds request_id to a log line written while serving a request. */
export function requestLogFields(): Record<string, unknown> {
  const id = requestScope.getStore()?.requestID;
  return id ? { request_id: id } : {};
}

/** Runs fn with a request id in scope (timers and workers that act for an earlier request). */
export function withRequestId<T>(requestID: string | null | undefined, fn: () => T): T {
  return requestScope.run({ requestID }, fn);
}

/**
 * Zipkin wants 64/128-bit hex trace ids; request ids may be any client-given string, so ids that
 * are not hex are hashed instead of truncated into something an OTel collector would reject.
 */
export class ZipkinHexExporter extends (TracerExporters as any).Zipkin {
  convertID(id: string | null) {
    if (!id) return null;
    const hex = id.replace(/-/g, "");
    return /^[0-9a-f]{16,}$/i.test(hex) ? hex.substring(0, 16).toLowerCase() : crypto.createHash("sha256").update(id).digest("hex").substring(0, 16);
  }
}
