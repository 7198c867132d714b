// Malformed requests for every route of the OpenAPI document: for each operation, its path, query
// and body parameters are taken from the document and attacked one at a time (wrong types, missing
// and extra fields, unicode edge cases, injection strings, path traversal, broken JSON and CSV,
// wrong media types, huge headers and bodies, junk credentials), starting from a request that
// would be valid, so that each mutation reaches the code behind the validator too.
import { Rng, WRONG_TYPES, UNICODE, INJECTION, PATH_VALUES, BROKEN_JSON, BROKEN_CSV, CONTENT_TYPES, AUTH_JUNK } from "./values";

export type Auth = "public" | "key" | "user" | "any";

export interface Route {
  method: string;
  template: string;
  auth: Auth;
  params: { name: string; in: "path" | "query"; schema: any; required: boolean }[];
  bodyTypes: string[];
  bodySchema: any;
}

export interface FuzzRequest {
  route: string;
  kind: string;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: string | Buffer;
  /** The server may answer and close before reading it all (huge bodies and headers). */
  mayReset?: boolean;
}

/** Values that make a request valid up to the mutation: the fuzzing tenant's own resources. */
export interface Fixtures {
  key: string;
  bearer: string;
  token: string;
  ids: {
    batch: string;
    product: string;
    webhook?: string;
    delivery?: string;
    upload?: string;
    recall?: string;
    /** a tenant and key the fuzzer may suspend, erase or revoke */
    spareTenant: string;
    spareTenantKey?: string;
    spareKey?: string;
    spareUser?: string;
  };
  receiverUrl: string;
}

export function routesOf(doc: any): Route[] {
  const out: Route[] = [];
  for (const [template, ops] of Object.entries<any>(doc.paths))
    for (const [method, op] of Object.entries<any>(ops)) {
      const sec: string[] = (op.security ?? []).flatMap((s: any) => Object.keys(s));
      const auth: Auth = !sec.length ? "public" : sec.includes("ApiKey") && sec.includes("Bearer") ? "any" : sec.includes("ApiKey") ? "key" : "user";
      const content = op.requestBody?.content ?? {};
      out.push({
        method: method.toUpperCase(),
        template,
        auth,
        params: (op.parameters ?? []).filter((p: any) => p.in === "path" || p.in === "query").map((p: any) => ({ name: p.name, in: p.in, schema: p.schema ?? {}, required: !!p.required })),
        bodyTypes: Object.keys(content),
        bodySchema: content["application/json"]?.schema ?? null,
      });
    }
  return out;
}

const uuid = () => "xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx".replace(/x/g, () => Math.floor(Math.random() * 16).toString(16));

/** Percent-encodes anything, lone surrogates included (encodeURIComponent throws on those). */
export function enc(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...s].map((ch) => {
      try {
        return encodeURIComponent(ch);
      } catch {
        const c = ch.charCodeAt(0);
        return "%" + (0xe0 | (c >> 12)).toString(16) + "%" + (0x80 | ((c >> 6) & 0x3f)).toString(16) + "%" + (0x80 | (c & 0x3f)).toString(16);
      }
    }).join("");
  }
}

/** A plausible value for a path parameter: the fixture the route is about, when there is one. */
function ownPathValue(route: Route, name: string, fx: Fixtures): string {
  const segs = route.template.split("/");
  const before = segs[segs.indexOf(`{${name}}`) - 1] ?? "";
  const ids = fx.ids;
  if (name === "delivery_id") return ids.delivery ?? uuid();
  if (name === "key_id") return ids.spareTenantKey ?? uuid();
  if (name === "tag_id") return ids.product;
  if (name === "batch_id") return ids.batch;
  if (name === "token") return fx.token;
  if (name === "tx_id") return "0x" + "ab".repeat(32);
  if (name === "gtin") return "09506000134352";
  if (name === "lot") return "L1";
  if (name === "serial") return "SN1";
  if (name === "file") return "app.js";
  if (name === "key") return "fuzz_setting";
  if (name === "rest") return "09506000134352/21/SN1";
  const byResource: Record<string, string | undefined> = {
    batches: ids.batch,
    products: ids.product,
    webhooks: ids.webhook,
    uploads: ids.upload,
    recalls: ids.recall,
    "api-keys": ids.spareKey,
    tenants: ids.spareTenant,
    users: ids.spareUser,
    anchor: ids.batch,
    anchors: ids.batch,
    retry: uuid(),
  };
  return byResource[before] ?? uuid();
}

/** A value satisfying a JSON schema, as far as a generator can guess (names help: url, email...). */
export function exampleOf(schema: any, name: string, fx: Fixtures, depth = 0): unknown {
  if (!schema || depth > 4) return "fuzz";
  if (schema.enum) return schema.enum[0];
  if (schema.const !== undefined) return schema.const;
  if (schema.oneOf || schema.anyOf) return exampleOf((schema.oneOf ?? schema.anyOf)[0], name, fx, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t: string) => t !== "null") : schema.type;
  if (name === "batch_id") return fx.ids.batch;
  if (name === "tag_id") return fx.ids.product;
  if (name === "token") return fx.token;
  if (name === "url") return fx.receiverUrl;
  if (name === "callback_url") return fx.receiverUrl;
  if (name === "events") return ["*"];
  if (name === "email") return `fuzz.${Math.floor(Math.random() * 1e9)}@example.com`;
  if (name === "sha256") return "a".repeat(64);
  if (name === "market_regions") return ["BR"];
  if (name === "products") return [{ sku: "FZ", name: "Fuzz", serial: `fz-${Math.random().toString(36).slice(2)}` }];
  if (name === "role") return "tenant_viewer";
  if (name === "tenant_id") return fx.ids.spareTenant;
  if (name === "scopes") return ["batches:read"];
  if (schema.format === "uuid") return uuid();
  switch (type) {
    case "string":
      return "fuzz".padEnd(Math.max(4, schema.minLength ?? 0), "z").slice(0, schema.maxLength ?? 64);
    case "integer":
    case "number":
      return schema.minimum ?? 1;
    case "boolean":
      return true;
    case "array":
      return [exampleOf(schema.items ?? {}, name, fx, depth + 1)];
    case "object": {
      const o: Record<string, unknown> = {};
      for (const [k, v] of Object.entries<any>(schema.properties ?? {})) o[k] = exampleOf(v, k, fx, depth + 1);
      return o;
    }
    default:
      return "fuzz";
  }
}

const jsonHeaders = { "content-type": "application/json" };
const asString = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

export function casesFor(route: Route, fx: Fixtures, rng: Rng, count: number, allRoutes: Route[]): FuzzRequest[] {
  const name = `${route.method} ${route.template}`;
  const authHeaders: Record<string, string> =
    route.auth === "key" || route.auth === "any" ? { "x-api-key": fx.key } : route.auth === "user" ? { authorization: `Bearer ${fx.bearer}` } : {};
  const pathParams = route.params.filter((p) => p.in === "path");
  const queryParams = route.params.filter((p) => p.in === "query");
  const ownPath: Record<string, string> = Object.fromEntries(pathParams.map((p) => [p.name, ownPathValue(route, p.name, fx)]));
  const buildPath = (over: Record<string, string> = {}, query = "") =>
    route.template.replace(/\{(\w+)\}/g, (_, n) => (n in over ? over[n] : enc(ownPath[n]))) + (query ? `?${query}` : "");
  const hasJson = route.bodyTypes.includes("application/json") || (route.method !== "GET" && route.method !== "DELETE" && !route.bodyTypes.length);
  const baseBody = route.bodySchema ? (exampleOf(route.bodySchema, "", fx) as Record<string, unknown>) : {};
  const props = Object.entries<any>(route.bodySchema?.properties ?? {});
  const required: string[] = route.bodySchema?.required ?? [];
  const req = (kind: string, o: Partial<FuzzRequest> = {}): FuzzRequest => ({
    route: name,
    kind,
    method: route.method,
    path: o.path ?? buildPath(),
    headers: { ...authHeaders, ...(o.body !== undefined && !o.headers?.["content-type"] ? jsonHeaders : {}), ...(o.headers ?? {}) },
    body: o.body,
    mayReset: o.mayReset,
  });
  const withBody = (kind: string, body: unknown, headers: Record<string, string> = {}) =>
    req(kind, { body: typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body), headers: { ...jsonHeaders, ...headers } });

  const all: FuzzRequest[] = [];
  const add = (r: FuzzRequest) => all.push(r);

  // A valid-looking request, then credentials that are missing, junk or of the wrong kind.
  add(hasJson && route.bodySchema ? withBody("baseline", baseBody) : req("baseline"));
  for (const junk of AUTH_JUNK) add({ ...req("auth", hasJson ? { body: JSON.stringify(baseBody) } : {}), headers: { ...(hasJson ? jsonHeaders : {}), ...junk } });
  add({ ...req("auth"), headers: {} });
  if (route.auth === "key") add({ ...req("auth"), headers: { authorization: `Bearer ${fx.bearer}` } });
  if (route.auth === "user") add({ ...req("auth"), headers: { "x-api-key": fx.key } });

  // Path parameters: traversal, encodings, injection, unicode, other tenants' and unknown ids.
  for (const p of pathParams) {
    for (const v of PATH_VALUES) add(req("path", { path: buildPath({ [p.name]: v }) }));
    for (const v of INJECTION) add(req("path", { path: buildPath({ [p.name]: enc(v) }) }));
    for (const v of UNICODE) add(req("path", { path: buildPath({ [p.name]: enc(v) }) }));
    add(req("path", { path: buildPath({ [p.name]: uuid() }) }));
  }
  // Trailing junk and traversal after the route.
  for (const tail of ["/..", "/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//", "/.", "/x", ";x", "%00", "/%00", "?"]) add(req("path", { path: buildPath() + tail }));

  // Query parameters: wrong types, arrays, injection, unicode, huge; and unknown ones.
  for (const p of queryParams) {
    for (const v of WRONG_TYPES.slice(0, 20)) add(req("query", { path: buildPath({}, `${p.name}=${enc(asString(v))}`) }));
    for (const v of [...INJECTION, ...UNICODE]) add(req("query", { path: buildPath({}, `${p.name}=${enc(v)}`) }));
    for (const q of [`${p.name}=1&${p.name}=2`, `${p.name}[]=1`, `${p.name}[a]=1`, `${p.name}=-1`, `${p.name}=1001`, `${p.name}=99999999999999999999`, `${p.name}=1e3`, `${p.name}=0x10`, `${p.name}=`, `${p.name}`])
      add(req("query", { path: buildPath({}, q) }));
  }
  for (const q of ["__proto__[admin]=1", "constructor[prototype][admin]=1", "limit=1&limit=1000000", "a=" + "b".repeat(8000), "%zz=1", "x=%", "&&&&", "=", "cursor=" + enc("' OR 1=1--")])
    add(req("query", { path: buildPath({}, q) }));

  if (hasJson) {
    // Bodies: missing, wrong-typed, unicode, injection, extra fields, wrong shapes, broken JSON.
    for (const r of required) {
      const b = { ...baseBody };
      delete b[r];
      add(withBody("missing", b));
    }
    add(withBody("missing", {}));
    add(req("missing", { headers: jsonHeaders }));
    for (const [k, s] of props) {
      for (const v of WRONG_TYPES) add(withBody("type", { ...baseBody, [k]: v }));
      const isString = s?.type === "string" || (Array.isArray(s?.type) && s.type.includes("string")) || !s?.type;
      if (isString) {
        for (const v of UNICODE) add(withBody("unicode", { ...baseBody, [k]: v }));
        for (const v of INJECTION) add(withBody("inject", { ...baseBody, [k]: v }));
      }
    }
    add(withBody("extra", { ...baseBody, role: "admin", tenant_id: fx.ids.spareTenant, id: uuid(), status: "anchored", is_admin: true, scopes: ["*"] }));
    add(withBody("extra", { ...baseBody, [`x${"y".repeat(1000)}`]: 1 }));
    add(withBody("extra", JSON.stringify(baseBody).replace(/^\{/, '{"__proto__":{"admin":true},"constructor":{"prototype":{"role":"admin"}},')));
    add(withBody("extra", Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i]))));
    for (const v of [[], [baseBody], "string", 42, null, true]) add(withBody("shape", v));
    for (const raw of BROKEN_JSON) add(withBody("json", raw));
    for (const ct of CONTENT_TYPES) add(req("ctype", { body: JSON.stringify(baseBody), headers: { "content-type": ct } }));
  }
  if (route.bodyTypes.some((t) => t === "text/csv" || t === "application/octet-stream")) {
    const ct = route.bodyTypes.includes("text/csv") ? "text/csv" : "application/octet-stream";
    for (const raw of BROKEN_CSV) add(req("csv", { body: raw, headers: { "content-type": ct, ...(ct === "application/octet-stream" ? { "upload-offset": "0" } : {}) } }));
    for (const off of ["-1", "abc", "99999999999999999999", "1e3", " 0", "0, 0"]) add(req("csv", { body: "sku,name,serial\na,b,c\n", headers: { "content-type": ct, "upload-offset": off } }));
    add(req("csv", { body: "sku,name,serial\n", headers: { "content-type": ct, "content-range": "bytes 5-1/2" } }));
  }
  if (route.bodyTypes.includes("application/x-www-form-urlencoded"))
    for (const v of [...INJECTION, ...UNICODE].slice(0, 30)) add(req("form", { body: `form=${enc(v)}&reason=${enc(v)}&lat=${enc(v)}`, headers: { "content-type": "application/x-www-form-urlencoded" } }));

  // Methods the route does not have.
  const defined = new Set(allRoutes.filter((r) => r.template === route.template).map((r) => r.method));
  for (const m of ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"]) if (!defined.has(m)) add({ ...req("method"), method: m });

  // Headers: huge, many, odd.
  add(req("header", { headers: { "x-junk": "a".repeat(20_000) }, mayReset: true }));
  add(req("header", { headers: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`x-h${i}`, "v"])) }));
  add(req("header", { headers: { "idempotency-key": "k".repeat(10_000) } }));
  add(req("header", { headers: { "x-request-id": "../../../etc/passwd\u00e9" } }));
  add(req("header", { headers: { accept: "application/xml;q=1, */*;q=0" } }));
  add(req("header", { headers: { "accept-language": "x".repeat(4000) + ";q=1" } }));
  add(req("header", { headers: { "x-forwarded-for": "1.2.3.4, ' OR 1=1--, ::1, 999.999.999.999" } }));
  add(req("header", { headers: { "user-agent": UNICODE.join("") } }));

  // Shuffle, then take `count` (cycling with fresh random mutations when the route has fewer).
  for (let i = all.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [all[i], all[j]] = [all[j], all[i]];
  }
  const out = all.slice(0, count);
  const pools = [...WRONG_TYPES.map(asString), ...UNICODE, ...INJECTION, ...PATH_VALUES];
  while (out.length < count) {
    const v = rng.pick(pools);
    if (hasJson && props.length && rng.chance(0.5)) {
      const [k] = rng.pick(props);
      out.push(withBody("random", { ...baseBody, [k]: rng.chance(0.5) ? v : rng.pick(WRONG_TYPES) }));
    } else if (pathParams.length && rng.chance(0.5)) {
      out.push(req("random", { path: buildPath({ [rng.pick(pathParams).name]: enc(v) }) }));
    } else {
      const qn = queryParams.length ? rng.pick(queryParams).name : "q";
      out.push(req("random", { path: buildPath({}, `${qn}=${enc(v)}`) }));
    }
  }
  return out;
}

/** One 17 MB JSON body per route that takes JSON, for a handful of routes (413, never a crash). */
export function hugeBodyCases(routes: Route[], fx: Fixtures, n: number): FuzzRequest[] {
  const big = JSON.stringify({ name: "x".repeat(17 * 1024 * 1024) });
  return routes
    .filter((r) => r.bodyTypes.includes("application/json"))
    .slice(0, n)
    .map((r) => ({
      route: `${r.method} ${r.template}`,
      kind: "huge",
      method: r.method,
      path: r.template.replace(/\{(\w+)\}/g, () => fx.ids.batch),
      headers: { "content-type": "application/json", ...(r.auth === "user" ? { authorization: `Bearer ${fx.bearer}` } : r.auth === "public" ? {} : { "x-api-key": fx.key }) },
      body: big,
      mayReset: true,
    }));
}
