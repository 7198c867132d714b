// Building blocks of the response schemas in /openapi.json (JSON Schema 2020-12, OpenAPI 3.1's
// dialect). Actions declare `responses: { 200: ok("…", Schema) }`; the gateway copies them into the
// document and the integration client checks every real response against them. Blocks are shared
// freely: mixins/unshared-definitions.ts gives each action its own copy before it crosses NATS.
import type { RouteResponse, JsonSchema } from "../openapi";

export type { JsonSchema };

export const uuid: JsonSchema = { type: "string", format: "uuid" };
/** Timestamps leave the API as ISO 8601 strings (JSON.stringify of a Date). */
export const timestamp: JsonSchema = { type: "string", format: "date-time" };
export const str: JsonSchema = { type: "string" };
export const int: JsonSchema = { type: "integer" };
export const num: JsonSchema = { type: "number" };
export const bool: JsonSchema = { type: "boolean" };
export const anyValue: JsonSchema = {};
export const strings: JsonSchema = { type: "array", items: { type: "string" } };

/** The schema, or null. */
export function nullable(s: JsonSchema): JsonSchema {
  // An enum lists its values, so null must be one of them too.
  if (typeof s.type === "string") return { ...s, type: [s.type, "null"], ...(Array.isArray(s.enum) && { enum: [...s.enum, null] }) };
  return { anyOf: [s, { type: "null" }] };
}

export function arrayOf(items: JsonSchema): JsonSchema {
  return { type: "array", items };
}

export function enumOf(values: readonly string[]): JsonSchema {
  return { type: "string", enum: [...values] };
}

/**
 * An object whose `required` fields are always present and whose other listed fields may be. Extra
 * fields are refused unless `open`: a field the API starts returning must be documented first.
 */
export function obj(required: Record<string, JsonSchema>, optional: Record<string, JsonSchema> = {}, opts: { open?: boolean; description?: string } = {}): JsonSchema {
  const out: JsonSchema = { type: "object", properties: { ...required, ...optional } };
  if (Object.keys(required).length) out.required = Object.keys(required);
  if (!opts.open) out.additionalProperties = false;
  if (opts.description) out.description = opts.description;
  return out;
}

/** A free-form object (tenant-defined attributes, settings documents). */
export const freeObject: JsonSchema = { type: "object" };

/** One page of a cursor-paginated list (lib/cursor: items, next_cursor). */
export function page(item: JsonSchema): JsonSchema {
  return obj({ items: arrayOf(item), next_cursor: nullable(str) });
}

/** A JSON success response. */
export function ok(description: string, schema: JsonSchema): RouteResponse {
  return { description, schema };
}

/** A non-JSON success response (CSV, PDF, HTML…) named by its media type. */
export function media(description: string, contentType: string): RouteResponse {
  return { description, contentType };
}
