// Moleculer sends a node's action definitions to the cluster through utils.safetyObject, which drops
// every object it has seen once before, not only cycles. A params rule or response schema used twice
// (a shared `uuid` rule, the `timestamp` building block) would vanish from the second place on other
// nodes: the gateway's /openapi.json and validation there would lose fields. So each action gets its
// own copy of its definition's objects when the service is created (after mixins are merged).
import type { Middleware } from "moleculer";

/** Copies plain objects and arrays, element by element; functions, RegExps and the rest stay shared. */
export function unshare<T>(value: T): T {
  if (Array.isArray(value)) return value.map(unshare) as T;
  if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = unshare(v);
    return out as T;
  }
  return value;
}

export const UnsharedDefinitionsMiddleware: Middleware = {
  name: "UnsharedDefinitions",
  serviceCreating(_service: unknown, schema: any) {
    for (const [name, def] of Object.entries<any>(schema.actions ?? {}))
      if (def && typeof def === "object") schema.actions[name] = { ...def, ...unshare({ params: def.params, responses: def.responses }) };
  },
} as any;
