// Checks real HTTP responses against the served OpenAPI document with an independent validator
// (Ajv, JSON Schema 2020-12, OpenAPI 3.1's dialect). The integration client runs every response it
// sees through here, so each suite that talks to the gateway is also a contract test: a field the
// spec does not describe, a wrong type or a status the operation does not document fails the test.
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import type { ValidateFunction } from "ajv";

interface Operation {
  method: string;
  template: string;
  regex: RegExp;
  op: Record<string, any>;
}

export interface ContractSpec {
  doc: Record<string, any>;
  ops: Operation[];
  ajv: Ajv2020;
  compiled: Map<string, ValidateFunction>;
}

export interface ContractViolation {
  operation: string;
  status: number;
  message: string;
}

/** Operations seen and checked in this test file (a suite may assert its coverage). */
export const checked = new Set<string>();

const specs = new Map<string, Promise<ContractSpec | null>>();

function templateRegex(template: string, op: Record<string, any>): RegExp {
  const wildcard = new Set<string>(
    (op.parameters ?? []).filter((p: any) => p.in === "path" && /rest of the path/.test(p.description ?? "")).map((p: any) => p.name),
  );
  const src = template
    .split(/(\{[^}]+\})/)
    .map((part) => {
      const m = /^\{([^}]+)\}$/.exec(part);
      if (!m) return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      return wildcard.has(m[1]) ? "(.+)" : "([^/]+)";
    })
    .join("");
  return new RegExp(`^${src}$`);
}

export function compileSpec(doc: Record<string, any>): ContractSpec {
  // strict: false because OpenAPI adds keywords of its own (example, x-…) to the schemas.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  // The document itself, so "#/components/…" references resolve.
  ajv.addSchema(doc, "openapi.json");
  const ops: Operation[] = [];
  for (const [template, item] of Object.entries<any>(doc.paths ?? {}))
    for (const [method, op] of Object.entries<any>(item))
      if (["get", "post", "put", "patch", "delete"].includes(method)) ops.push({ method: method.toUpperCase(), template, regex: templateRegex(template, op), op });
  // Literal segments win over parameters when two templates match one path.
  ops.sort((a, b) => b.template.replace(/\{[^}]+\}/g, "").length - a.template.replace(/\{[^}]+\}/g, "").length);
  return { doc, ops, ajv, compiled: new Map() };
}

/** The served spec of a gateway, fetched once per base URL; null when it cannot be had. */
export function specFor(base: string): Promise<ContractSpec | null> {
  let p = specs.get(base);
  if (!p) {
    // A server without a spec (a webhook receiver) is remembered as such; one that did not answer
    // at all may be a node still starting, so that failure is not remembered.
    p = fetch(`${base}/openapi.json`).then(
      async (r) => (r.ok ? compileSpec((await r.json()) as Record<string, any>) : null),
      () => {
        specs.delete(base);
        return null;
      },
    );
    specs.set(base, p);
  }
  return p;
}

export function findOperation(spec: ContractSpec, method: string, pathname: string): Operation | undefined {
  return spec.ops.find((o) => o.method === method && o.regex.test(pathname));
}

function escapePointer(s: string): string {
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

/**
 * The violation of one response, or null when it conforms (or the spec says nothing about it: a
 * path no operation has is the gateway's 404, which the route tests cover).
 */
export function checkResponse(
  spec: ContractSpec,
  res: { method: string; url: string; status: number; contentType: string | null; body: unknown; text: string },
): ContractViolation | null {
  const u = new URL(res.url);
  const o = findOperation(spec, res.method, u.pathname);
  if (!o) return null;
  const name = `${o.method} ${o.template}`;
  checked.add(name);
  const responses = o.op.responses ?? {};
  let status = String(res.status);
  let r = responses[status] ?? responses[`${status[0]}XX`] ?? responses.default;
  if (!r) return { operation: name, status: res.status, message: `status ${res.status} is not documented (documented: ${Object.keys(responses).join(", ")})` };
  if (r.$ref) {
    const key = r.$ref.split("/").pop();
    r = spec.doc.components?.responses?.[key];
    status = `ref:${key}`;
  }
  const content: Record<string, any> = r?.content ?? {};
  const mediaTypes = Object.keys(content);
  if (!mediaTypes.length) return null;
  const ct = (res.contentType ?? "").split(";")[0].trim().toLowerCase();
  if (res.status === 204 || (ct === "" && res.text === "")) return null;
  const media = mediaTypes.find((m) => m.toLowerCase() === ct) ?? mediaTypes.find((m) => m.endsWith("/*") && ct.startsWith(m.slice(0, -1)));
  if (!media) return { operation: name, status: res.status, message: `content type ${ct || "(none)"} is not documented (documented: ${mediaTypes.join(", ")})` };
  const isJson = media === "application/json" || media.endsWith("+json");
  if (!isJson || !content[media].schema) return null;
  const key = `${name} ${status} ${media}`;
  let validate = spec.compiled.get(key);
  if (!validate) {
    const pointer = status.startsWith("ref:")
      ? `#/components/responses/${escapePointer(status.slice(4))}/content/${escapePointer(media)}/schema`
      : `#/paths/${escapePointer(o.template)}/${o.method.toLowerCase()}/responses/${status in responses ? status : Object.keys(responses).find((k) => responses[k] === r)}/content/${escapePointer(media)}/schema`;
    validate = spec.ajv.getSchema(`openapi.json${pointer}`) as ValidateFunction;
    if (!validate) return { operation: name, status: res.status, message: `no schema at ${pointer}` };
    spec.compiled.set(key, validate);
  }
  if (validate(res.body)) return null;
  const errors = (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || "(body)"} ${e.message}${e.params && "additionalProperty" in e.params ? `: ${(e.params as any).additionalProperty}` : ""}`);
  return { operation: name, status: res.status, message: `${errors.join("; ")} — body: ${res.text.slice(0, 400)}` };
}

export class ContractError extends Error {}

/** Throws when a response does not match the served spec; the integration client calls this. */
export async function assertConforms(base: string, res: { method: string; url: string; status: number; contentType: string | null; body: unknown; text: string }) {
  const spec = await specFor(base);
  if (!spec) return;
  const v = checkResponse(spec, res);
  if (v) throw new ContractError(`response does not match /openapi.json: ${v.operation} → ${v.status}: ${v.message}`);
}
