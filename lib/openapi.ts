// OpenAPI 3.1 from the gateway's route table. The gateway calls buildOpenApi at run time with every
// alias it serves, so the document cannot drift from the routes; the request schemas come from the
// actions' fastest-validator `params`, converted here to JSON Schema 2020-12 (OpenAPI 3.1's dialect).
// Pure: no Moleculer import, no fastest-validator import (we only read its schema language).

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
export type AuthMode = "public" | "key" | "user" | "any";

export interface RouteResponse {
  description: string;
  schema?: object;
  contentType?: string;
  /** Several media types for one status (e.g. ?format=csv|json): media type → schema (null: none). */
  content?: Record<string, object | null>;
}

export interface RouteInfo {
  method: HttpMethod;
  path: string;
  action: string;
  params?: Record<string, any>;
  auth: AuthMode;
  summary?: string;
  description?: string;
  tags?: string[];
  responses?: Record<string, RouteResponse>;
  /** Error statuses this operation answers besides the standard ones (409, 422, …): the Error body. */
  errors?: number[];
  contentTypes?: string[];
  successStatus?: number;
}

export type JsonSchema = Record<string, any>;

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description?: string };
  servers?: { url: string }[];
  tags: { name: string }[];
  paths: Record<string, Record<string, any>>;
  components: Record<string, Record<string, any>>;
}

export interface BuildOpenApiOptions {
  title: string;
  version: string;
  description?: string;
  serverUrl?: string;
  routes: RouteInfo[];
}

// ---------------------------------------------------------------------------------------------
// fastest-validator → JSON Schema
// ---------------------------------------------------------------------------------------------

type Rule = Record<string, any>;

// Same algorithm as fastest-validator's parseShortHand, so "number|optional|min:0|no-empty" and
// "string[]|min:1" mean here exactly what they mean to the validator. (It has no "?" suffix syntax:
// "string?" is an unknown type there, so it is one here too.)
function parseShorthand(str: string): Rule {
  const parts = str.split("|").map((s) => s.trim());
  const type = parts[0];
  const rule: Rule = type.endsWith("[]") ? { type: "array", items: type.slice(0, -2) } : { type };
  for (const part of parts.slice(1)) {
    const idx = part.indexOf(":");
    if (idx !== -1) {
      const key = part.substring(0, idx).trim();
      const raw = part.substring(idx + 1).trim();
      let value: unknown = raw;
      if (raw === "true" || raw === "false") value = raw === "true";
      else if (!Number.isNaN(Number(raw))) value = Number(raw);
      rule[key] = value;
    } else if (part.startsWith("no-")) rule[part.slice(3)] = false;
    else rule[part] = true;
  }
  return rule;
}

function isPlainObject(v: unknown): v is Record<string, any> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof RegExp) && !(v instanceof Date);
}

// Normalise any rule form (shorthand string, array of alternatives, `$$type` object, full rule) to a
// full rule object, mirroring fastest-validator's resolveType. Never mutates the caller's schema.
function resolveRule(input: unknown): Rule {
  if (typeof input === "string") return parseShorthand(input);
  if (Array.isArray(input)) {
    const rules = input.map(resolveRule);
    const rule: Rule = { type: "multi", rules: input };
    if (rules.length > 0 && rules.every((r) => r.optional === true)) rule.optional = true;
    if (rules.length > 0 && rules.every((r) => r.nullable === true)) rule.nullable = true;
    return rule;
  }
  if (!isPlainObject(input)) return {};
  if (typeof input.$$type === "string") {
    const { $$type, ...props } = input;
    return { ...parseShorthand($$type), props };
  }
  return { ...input };
}

// A property may be left out when the validator would not complain: optional, defaulted, forbidden.
function isOptionalRule(rule: Rule): boolean {
  return rule.optional === true || rule.type === "forbidden" || rule.default !== undefined;
}

function regexSource(p: unknown): string | undefined {
  if (p instanceof RegExp) return p.source;
  if (typeof p === "string") return p;
  return undefined;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

// Copies a literal (default, const, enum member) into plain JSON; functions (dynamic defaults) have
// no JSON form and are dropped by the caller.
function toJsonValue(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (v === undefined || typeof v === "function") return undefined;
  return JSON.parse(JSON.stringify(v));
}

function jsonTypeOf(v: unknown): string | undefined {
  if (typeof v === "string") return "string";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  if (v === null) return "null";
  return undefined;
}

// The JSON type(s) a converted schema admits when it says so at its top level; used to decide
// whether alternatives of a `multi` rule are disjoint.
function declaredTypes(s: JsonSchema): string[] | undefined {
  if (typeof s.type === "string") return s.type === "integer" ? ["integer"] : [s.type];
  if (Array.isArray(s.type)) return s.type;
  return undefined;
}

function typesOverlap(a: string[], b: string[]): boolean {
  const norm = (t: string[]) => new Set(t.flatMap((x) => (x === "integer" ? ["number"] : [x])));
  const sa = norm(a);
  for (const t of norm(b)) if (sa.has(t)) return true;
  return false;
}

const STRING_PATTERNS: Record<string, string> = {
  alpha: "^[a-zA-Z]+$",
  numeric: "^-?[0-9]\\d*(\\.\\d+)?$",
  alphanum: "^[a-zA-Z0-9]+$",
  alphadash: "^[a-zA-Z0-9_-]+$",
  hex: "^[0-9a-fA-F]+$",
  base64: "^(?:[A-Za-z0-9+\\/]{4})*(?:[A-Za-z0-9+\\/]{2}==|[A-Za-z0-9+/]{3}=)?$",
  singleLine: "^[^\\r\\n]*$",
};

// JSON Schema allows one `pattern` per schema; further ones go into allOf so all still apply.
function addPatterns(s: JsonSchema, patterns: string[]): void {
  if (patterns.length === 0) return;
  s.pattern = patterns[0];
  if (patterns.length > 1) s.allOf = patterns.slice(1).map((p) => ({ pattern: p }));
}

function applyLengths(s: JsonSchema, rule: Rule, minKey: string, maxKey: string): void {
  if (typeof rule.min === "number") s[minKey] = rule.min;
  if (typeof rule.max === "number") s[maxKey] = rule.max;
  if (typeof rule.length === "number") {
    s[minKey] = rule.length;
    s[maxKey] = rule.length;
  }
}

// Nested positions (items, rules, record key/value) are always rules to the validator, never field maps.
function convertAny(input: unknown): JsonSchema {
  return convertRule(resolveRule(input));
}

function convertRule(rule: Rule): JsonSchema {
  let s: JsonSchema;
  switch (rule.type) {
    case "string": {
      s = { type: "string" };
      applyLengths(s, rule, "minLength", "maxLength");
      if (rule.empty === false && !(s.minLength >= 1)) s.minLength = 1;
      const patterns: string[] = [];
      const own = regexSource(rule.pattern);
      if (own !== undefined) patterns.push(own);
      for (const [flag, p] of Object.entries(STRING_PATTERNS)) if (rule[flag] === true) patterns.push(p);
      if (typeof rule.contains === "string") patterns.push(escapeRegex(rule.contains));
      addPatterns(s, patterns);
      if (Array.isArray(rule.enum)) s.enum = toJsonValue(rule.enum);
      break;
    }
    case "number": {
      s = { type: rule.integer === true ? "integer" : "number" };
      if (typeof rule.min === "number") s.minimum = rule.min;
      if (typeof rule.max === "number") s.maximum = rule.max;
      if (typeof rule.equal === "number") s.const = rule.equal;
      if (typeof rule.notEqual === "number") s.not = { const: rule.notEqual };
      if (rule.positive === true) s.exclusiveMinimum = 0;
      if (rule.negative === true) s.exclusiveMaximum = 0;
      break;
    }
    case "boolean":
      s = { type: "boolean" };
      break;
    case "uuid":
      s = { type: "string", format: "uuid" };
      break;
    case "email":
      s = { type: "string", format: "email" };
      applyLengths(s, rule, "minLength", "maxLength");
      break;
    case "url":
      s = { type: "string", format: "uri" };
      break;
    case "date":
      // JSON has no Date: over HTTP the validator sees an ISO string (with `convert`).
      s = { type: "string", format: "date-time" };
      break;
    case "enum":
      s = { enum: toJsonValue(rule.values ?? []) };
      break;
    case "equal":
      if (rule.value !== undefined && typeof rule.field !== "string") s = { const: toJsonValue(rule.value) };
      else s = typeof rule.field === "string" ? { description: `Must equal the field "${rule.field}".` } : {};
      break;
    case "object": {
      const props = rule.props ?? rule.properties;
      s = isPlainObject(props) ? convertProps(props, rule.strict === true) : { type: "object" };
      if (typeof rule.minProps === "number") s.minProperties = rule.minProps;
      if (typeof rule.maxProps === "number") s.maxProperties = rule.maxProps;
      break;
    }
    case "record": {
      s = { type: "object" };
      if (rule.key !== undefined && rule.key !== "string") s.propertyNames = convertAny(rule.key);
      if (rule.value !== undefined && rule.value !== "any") s.additionalProperties = convertAny(rule.value);
      break;
    }
    case "array": {
      s = { type: "array" };
      if (rule.items !== undefined) s.items = convertAny(rule.items);
      applyLengths(s, rule, "minItems", "maxItems");
      if (rule.empty === false && !(s.minItems >= 1)) s.minItems = 1;
      if (rule.unique === true) s.uniqueItems = true;
      if (rule.contains !== undefined) s.contains = { const: toJsonValue(rule.contains) };
      if (Array.isArray(rule.enum)) s.items = { ...(s.items ?? {}), enum: toJsonValue(rule.enum) };
      break;
    }
    case "tuple": {
      s = { type: "array" };
      if (Array.isArray(rule.items) && rule.items.length > 0) {
        s.prefixItems = rule.items.map(convertAny);
        s.minItems = rule.items.length;
        s.maxItems = rule.items.length;
        s.items = false;
      } else if (rule.empty === false) s.minItems = 1;
      break;
    }
    case "multi": {
      const alts: JsonSchema[] = (Array.isArray(rule.rules) ? rule.rules : []).map(convertAny);
      // The validator accepts a value if any alternative does. oneOf says "exactly one", which is the
      // same thing only when the alternatives' types cannot overlap; otherwise anyOf keeps it true.
      const types = alts.map(declaredTypes);
      const disjoint = types.every((t, i) => t !== undefined && types.slice(0, i).every((u) => !typesOverlap(t, u!)));
      s = disjoint ? { oneOf: alts } : { anyOf: alts };
      break;
    }
    case "luhn":
      s = { type: ["string", "integer"] };
      break;
    case "objectID":
      s = { type: "string", pattern: "^[0-9a-fA-F]{24}$" };
      break;
    case "currency": {
      s = { type: "string" };
      const p = regexSource(rule.customRegex);
      if (p !== undefined) s.pattern = p;
      break;
    }
    case "mac":
      s = { type: "string" };
      break;
    case "forbidden":
      s = { not: {} };
      break;
    default:
      // any, function, class, custom and aliases we cannot see: no constraint we can state.
      s = {};
  }

  // Homogeneous enums get a type too: it documents better and path parameters rely on it.
  if (Array.isArray(s.enum) && s.type === undefined) {
    const t = new Set(s.enum.map(jsonTypeOf));
    if (t.size === 1) {
      const only = [...t][0];
      if (only) s.type = only;
    }
  }

  if (rule.nullable === true) makeNullable(s);
  const def = toJsonValue(rule.default);
  if (def !== undefined) s.default = def;
  if (typeof rule.description === "string") s.description = rule.description;
  if (typeof rule.label === "string") s.title = rule.label;
  if (Array.isArray(rule.examples)) s.examples = toJsonValue(rule.examples);
  return s;
}

function makeNullable(s: JsonSchema): void {
  if (Object.keys(s).length === 0) return; // {} already admits null
  if (Array.isArray(s.enum)) s.enum = [...s.enum, null];
  if (typeof s.type === "string") s.type = [s.type, "null"];
  else if (Array.isArray(s.type)) {
    if (!s.type.includes("null")) s.type = [...s.type, "null"];
  } else if (!Array.isArray(s.enum)) {
    const inner = { ...s };
    for (const k of Object.keys(s)) delete s[k];
    s.anyOf = [inner, { type: "null" }];
  }
}

// A map of field → rule (a params schema, or an object rule's props) as an object schema.
function convertProps(props: Record<string, any>, strict: boolean): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const key of Object.keys(props)) {
    if (key.startsWith("$$")) continue; // $$strict, $$async, $$root… are directives, not fields
    const rule = resolveRule(props[key]);
    properties[key] = convertRule(rule);
    if (!isOptionalRule(rule)) required.push(key);
  }
  const s: JsonSchema = { type: "object", properties };
  if (required.length > 0) s.required = required;
  if (strict) s.additionalProperties = false;
  return s;
}

/**
 * Converts a fastest-validator rule to JSON Schema 2020-12. Strings are shorthands ("string|min:3",
 * "uuid[]"), arrays are alternatives (multi). An object is read as one rule when it has a string
 * `type`, a `$$type` or `$$root: true`; otherwise as a params map (field → rule, `$$strict` honoured),
 * the way fastest-validator compiles a root schema. Use fvParamsToJsonSchema to force the latter.
 */
export function fvToJsonSchema(schema: Record<string, any> | string | any[]): JsonSchema {
  if (typeof schema === "string" || Array.isArray(schema)) return convertRule(resolveRule(schema));
  if (!isPlainObject(schema)) return {};
  if (schema.$$root === true) {
    const { $$root, ...rule } = schema;
    return convertRule(resolveRule(rule));
  }
  if (typeof schema.type === "string" || typeof schema.$$type === "string") return convertRule(resolveRule(schema));
  return fvParamsToJsonSchema(schema);
}

/** An action's `params` (always a field map unless `$$root: true`) as a JSON Schema. */
export function fvParamsToJsonSchema(params: Record<string, any>): JsonSchema {
  if (params.$$root === true) {
    const { $$root, ...rule } = params;
    return convertRule(resolveRule(rule));
  }
  return convertProps(params, params.$$strict === true);
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

interface PathVariant {
  template: string; // OpenAPI form: /v1/batches/{id}
  params: { name: string; wildcard: boolean }[];
}

type PathNode = { kind: "text"; value: string } | { kind: "param"; name: string; wildcard: boolean } | { kind: "group"; nodes: PathNode[] };

const ID_START = /[$_\p{ID_Start}]/u;
const ID_CONTINUE = /[$\u200c\u200d\p{ID_Continue}]/u;

// path-to-regexp 8 syntax (what moleculer-web 0.11 uses): `:name`, `*name` (spans segments),
// `:"quoted name"`, `{optional/:group}`, `\` escapes.
function parsePath(path: string): PathNode[] {
  let i = 0;
  const readName = (): string => {
    if (path[i] === '"') {
      let name = "";
      i++;
      while (i < path.length && path[i] !== '"') {
        if (path[i] === "\\") i++;
        name += path[i++] ?? "";
      }
      i++;
      return name;
    }
    let name = "";
    if (i < path.length && ID_START.test(path[i])) {
      name += path[i++];
      while (i < path.length && ID_CONTINUE.test(path[i])) name += path[i++];
    }
    return name;
  };
  const parseSeq = (inGroup: boolean): PathNode[] => {
    const nodes: PathNode[] = [];
    let text = "";
    const flush = () => {
      if (text) nodes.push({ kind: "text", value: text });
      text = "";
    };
    while (i < path.length) {
      const c = path[i];
      if (c === "\\") {
        text += path[i + 1] ?? "";
        i += 2;
      } else if (c === ":" || c === "*") {
        i++;
        const name = readName();
        if (!name) {
          text += c; // not a parameter after all; keep it literal
          continue;
        }
        flush();
        nodes.push({ kind: "param", name, wildcard: c === "*" });
      } else if (c === "{") {
        i++;
        flush();
        nodes.push({ kind: "group", nodes: parseSeq(true) });
      } else if (c === "}" && inGroup) {
        i++;
        flush();
        return nodes;
      } else {
        text += c;
        i++;
      }
    }
    flush();
    return nodes;
  };
  return parseSeq(false);
}

// OpenAPI has no optional path segments: a route with `{...}` groups becomes one path per choice.
function expandPath(path: string): PathVariant[] {
  const expand = (nodes: PathNode[]): PathVariant[] => {
    let acc: PathVariant[] = [{ template: "", params: [] }];
    for (const node of nodes) {
      let options: PathVariant[];
      if (node.kind === "text") options = [{ template: node.value, params: [] }];
      else if (node.kind === "param") options = [{ template: `{${node.name}}`, params: [{ name: node.name, wildcard: node.wildcard }] }];
      else options = [{ template: "", params: [] }, ...expand(node.nodes)];
      const next: PathVariant[] = [];
      for (const a of acc) for (const o of options) next.push({ template: a.template + o.template, params: [...a.params, ...o.params] });
      acc = next;
    }
    return acc;
  };
  const seen = new Set<string>();
  const out: PathVariant[] = [];
  for (const v of expand(parsePath(path))) {
    let t = v.template.replace(/\/{2,}/g, "/");
    if (!t.startsWith("/")) t = "/" + t;
    if (t.length > 1 && t.endsWith("/")) t = t.slice(0, -1); // moleculer-web strips trailing slashes
    if (seen.has(t)) continue;
    seen.add(t);
    out.push({ template: t, params: v.params });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Document
// ---------------------------------------------------------------------------------------------

const METHOD_ORDER: HttpMethod[] = ["GET", "PUT", "POST", "DELETE", "PATCH"]; // OpenAPI's path-item order
const BODY_METHODS = new Set<HttpMethod>(["POST", "PUT", "PATCH"]);
const REASONS: Record<number, string> = { 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content" };

const ERROR_SCHEMA: JsonSchema = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message", "request_id"],
      properties: {
        code: { type: "string", description: "Stable machine-readable error code." },
        message: { type: "string", description: "Human-readable explanation." },
        details: { description: "Optional structured details, e.g. the failing fields of a 400." },
        request_id: { type: "string", description: "Id of the request; quote it when reporting a problem." },
      },
    },
  },
};

function errorResponse(description: string, retryAfter = false): Record<string, any> {
  const r: Record<string, any> = {
    description,
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  };
  if (retryAfter) r.headers = { "Retry-After": { $ref: "#/components/headers/RetryAfter" } };
  return r;
}

const STANDARD_RESPONSES: Record<string, Record<string, any>> = {
  BadRequest: errorResponse("Bad request: the input is invalid or cannot be parsed."),
  Unauthorized: errorResponse("Missing or invalid credential."),
  Forbidden: errorResponse("The credential lacks the role or scope for this operation."),
  NotFound: errorResponse("Not found (or owned by another tenant)."),
  PayloadTooLarge: errorResponse("Request body too large."),
  UnsupportedMediaType: errorResponse("Unsupported request media type."),
  TooManyRequests: errorResponse("Rate limit exceeded; retry after the given delay.", true),
  ServiceUnavailable: errorResponse("A dependency is unavailable; retry after the given delay.", true),
  Conflict: errorResponse("Conflict with the resource's current state."),
  Gone: errorResponse("The resource existed but is gone (expired or removed)."),
  UnprocessableEntity: errorResponse("Well-formed but refused: the content breaks a rule (see the error code)."),
};

const STANDARD_BY_CODE: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  409: "Conflict",
  410: "Gone",
  413: "PayloadTooLarge",
  415: "UnsupportedMediaType",
  422: "UnprocessableEntity",
  429: "TooManyRequests",
  503: "ServiceUnavailable",
};

function ref(name: string): { $ref: string } {
  return { $ref: `#/components/responses/${name}` };
}

function serviceOf(action: string): string {
  const i = action.lastIndexOf(".");
  return i > 0 ? action.slice(0, i) : action;
}

function safeOperationId(action: string): string {
  return action.replace(/[^A-Za-z0-9_]+/g, "_");
}

function isJsonLike(ct: string): boolean {
  const base = ct.split(";")[0].trim().toLowerCase();
  return base === "application/json" || base.endsWith("+json");
}

function isFormLike(ct: string): boolean {
  const base = ct.split(";")[0].trim().toLowerCase();
  return base === "application/x-www-form-urlencoded" || base === "multipart/form-data";
}

// The body schema for one media type: structured types carry the params schema; text and binary
// bodies reach the action as a string, so the field schema would be misleading there.
function bodySchemaFor(ct: string, objectSchema: JsonSchema | undefined): JsonSchema {
  if (isJsonLike(ct) || isFormLike(ct)) return objectSchema ?? {};
  if (ct.toLowerCase().startsWith("text/")) return { type: "string" };
  return { type: "string", contentMediaType: ct };
}

function securityFor(auth: AuthMode): Record<string, string[]>[] {
  switch (auth) {
    case "public":
      return [];
    case "key":
      return [{ ApiKey: [] }];
    case "user":
      return [{ Bearer: [] }];
    case "any":
      return [{ ApiKey: [] }, { Bearer: [] }];
  }
}

function withoutKeys(s: JsonSchema, keys: Set<string>): JsonSchema {
  if (!isPlainObject(s.properties)) return s;
  const out: JsonSchema = { ...s, properties: {} };
  for (const [k, v] of Object.entries(s.properties)) if (!keys.has(k)) out.properties[k] = v;
  const req = Array.isArray(s.required) ? s.required.filter((k: string) => !keys.has(k)) : [];
  if (req.length > 0) out.required = req;
  else delete out.required;
  return out;
}

function pathParamSchema(prop: JsonSchema | undefined): JsonSchema {
  // Path segments are always strings; keep the field's own constraints (format uuid, pattern,
  // enum…) when it is a string rule, minus a default, which a required parameter cannot use.
  if (prop && prop.type === "string") {
    const { default: _d, ...rest } = prop;
    return rest;
  }
  return { type: "string" };
}

function buildOperation(route: RouteInfo, variant: PathVariant, operationId: string): Record<string, any> {
  const paramsSchema = route.params ? fvParamsToJsonSchema(route.params) : undefined;
  const props: Record<string, JsonSchema> = isPlainObject(paramsSchema?.properties) ? paramsSchema!.properties : {};
  const required = new Set<string>(Array.isArray(paramsSchema?.required) ? paramsSchema!.required : []);
  const pathNames = new Set(variant.params.map((p) => p.name));

  const op: Record<string, any> = { operationId };
  if (route.summary) op.summary = route.summary;
  if (route.description) op.description = route.description;
  op.tags = route.tags && route.tags.length > 0 ? [...route.tags] : [serviceOf(route.action)];
  op.security = securityFor(route.auth);
  op["x-moleculer-action"] = route.action;

  const parameters: Record<string, any>[] = variant.params.map((p) => {
    const param: Record<string, any> = { name: p.name, in: "path", required: true, schema: pathParamSchema(props[p.name]) };
    if (p.wildcard) param.description = "The rest of the path; may span several segments (contains '/').";
    else if (props[p.name]?.description) param.description = props[p.name].description;
    return param;
  });

  let requestBody: Record<string, any> | undefined;
  if (BODY_METHODS.has(route.method)) {
    const body = paramsSchema ? withoutKeys(paramsSchema, pathNames) : undefined;
    const hasFields = body !== undefined && (!isPlainObject(body.properties) || Object.keys(body.properties).length > 0);
    if (hasFields || route.contentTypes) {
      const content: Record<string, any> = {};
      for (const ct of route.contentTypes ?? ["application/json"]) content[ct] = { schema: bodySchemaFor(ct, body) };
      requestBody = { required: Array.isArray(body?.required) && body!.required.length > 0, content };
    }
  } else {
    for (const [name, schema] of Object.entries(props)) {
      if (pathNames.has(name)) continue;
      const q: Record<string, any> = { name, in: "query", required: required.has(name), schema };
      if (typeof schema.description === "string") q.description = schema.description;
      // qs (moleculer-web's query parser) reads nested objects as filter[a]=1: OpenAPI's deepObject.
      if (schema.type === "object") {
        q.style = "deepObject";
        q.explode = true;
      }
      parameters.push(q);
    }
  }
  if (parameters.length > 0) op.parameters = parameters;
  if (requestBody) op.requestBody = requestBody;

  const responses: Record<string, any> = {};
  for (const [code, r] of Object.entries(route.responses ?? {})) {
    const out: Record<string, any> = { description: r.description };
    if (r.schema) out.content = { [r.contentType ?? "application/json"]: { schema: toJsonValue(r.schema) } };
    else if (r.contentType) out.content = { [r.contentType]: {} };
    for (const [ct, schema] of Object.entries(r.content ?? {})) (out.content ??= {})[ct] = schema ? { schema: toJsonValue(schema) } : {};
    responses[code] = out;
  }
  for (const code of route.errors ?? []) {
    if (String(code) in responses) continue;
    responses[String(code)] = STANDARD_BY_CODE[code] ? ref(STANDARD_BY_CODE[code]) : errorResponse(`Error ${code}.`);
  }
  if (!Object.keys(responses).some((c) => /^[23]/.test(c))) {
    const status = route.successStatus ?? 200;
    responses[String(status)] = { description: REASONS[status] ?? "Success" };
  }
  const std: [string, string, boolean][] = [
    ["400", "BadRequest", true],
    ["401", "Unauthorized", route.auth !== "public"],
    ["403", "Forbidden", route.auth !== "public"],
    ["404", "NotFound", variant.params.length > 0],
    ["413", "PayloadTooLarge", requestBody !== undefined],
    ["415", "UnsupportedMediaType", requestBody !== undefined],
    ["429", "TooManyRequests", true],
    ["503", "ServiceUnavailable", true],
  ];
  for (const [code, name, applies] of std) if (applies && !(code in responses)) responses[code] = ref(name);
  op.responses = sortResponses(responses);
  return op;
}

function sortResponses(r: Record<string, any>): Record<string, any> {
  const out: Record<string, any> = {};
  for (const k of Object.keys(r).sort()) out[k] = r[k];
  return out;
}

export function buildOpenApi(opts: BuildOpenApiOptions): OpenApiDocument {
  // Expand, drop duplicates (moleculer-web serves the first alias that matches), then sort so the
  // document is byte-identical whatever order the services registered in.
  const entries: { route: RouteInfo; variant: PathVariant; index: number }[] = [];
  const seen = new Set<string>();
  opts.routes.forEach((route, index) => {
    for (const variant of expandPath(route.path)) {
      const key = `${route.method} ${variant.template}`;
      if (seen.has(key)) continue;
      seen.add(key);
      entries.push({ route, variant, index });
    }
  });
  entries.sort((a, b) => {
    if (a.variant.template !== b.variant.template) return a.variant.template < b.variant.template ? -1 : 1;
    return METHOD_ORDER.indexOf(a.route.method) - METHOD_ORDER.indexOf(b.route.method);
  });

  const usedIds = new Set<string>();
  const tags = new Set<string>();
  const paths: Record<string, Record<string, any>> = {};
  for (const { route, variant } of entries) {
    const base = safeOperationId(route.action);
    let id = base;
    for (let n = 2; usedIds.has(id); n++) id = `${base}_${n}`;
    usedIds.add(id);
    const op = buildOperation(route, variant, id);
    for (const t of op.tags) tags.add(t);
    (paths[variant.template] ??= {})[route.method.toLowerCase()] = op;
  }

  const doc: OpenApiDocument = {
    openapi: "3.1.0",
    info: { title: opts.title, version: opts.version, ...(opts.description ? { description: opts.description } : {}) },
    ...(opts.serverUrl ? { servers: [{ url: opts.serverUrl }] } : {}),
    tags: [...tags].sort().map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: {
        ApiKey: { type: "apiKey", in: "header", name: "X-API-Key", description: "A tenant's API key." },
        Bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "A user's access token from POST /v1/auth/login." },
      },
      schemas: { Error: ERROR_SCHEMA },
      responses: STANDARD_RESPONSES,
      headers: {
        RetryAfter: { description: "Seconds to wait before retrying.", schema: { type: "integer", minimum: 0 } },
      },
    },
  };
  // A fresh JSON copy: callers may serialise or mutate it without touching the shared constants.
  return JSON.parse(JSON.stringify(doc));
}

const DOC_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** Every operation in a document, in document order, with paths in their `{param}` form. */
export function listOperations(doc: object): { method: string; path: string }[] {
  const paths = (doc as { paths?: Record<string, Record<string, unknown>> }).paths ?? {};
  const out: { method: string; path: string }[] = [];
  for (const [path, item] of Object.entries(paths)) {
    for (const m of DOC_METHODS) if (item && isPlainObject(item[m])) out.push({ method: m.toUpperCase(), path });
  }
  return out;
}
