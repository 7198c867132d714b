import Ajv2020 from "ajv/dist/2020";
import Validator from "fastest-validator";
import { buildOpenApi, fvParamsToJsonSchema, fvToJsonSchema, listOperations, type RouteInfo } from "../../lib/openapi";
import { DOCS_CSS, escapeHtml, renderDocsPage } from "../../lib/docs-page";

// Formats are documentation here (ajv-formats is not installed); structure is what we check.
const ajv = () => new Ajv2020({ strict: true, allowUnionTypes: true, validateFormats: false, allErrors: true });

describe("fvToJsonSchema: shorthands", () => {
  it.each<[string, object]>([
    ["string", { type: "string" }],
    ["string|min:3|max:10", { type: "string", minLength: 3, maxLength: 10 }],
    ["string|length:5", { type: "string", minLength: 5, maxLength: 5 }],
    ["string|no-empty", { type: "string", minLength: 1 }],
    ["string|empty:false", { type: "string", minLength: 1 }],
    ["string|alpha", { type: "string", pattern: "^[a-zA-Z]+$" }],
    ["number", { type: "number" }],
    ["number|integer|min:0|max:99", { type: "integer", minimum: 0, maximum: 99 }],
    ["number|positive", { type: "number", exclusiveMinimum: 0 }],
    ["number|negative", { type: "number", exclusiveMaximum: 0 }],
    ["boolean", { type: "boolean" }],
    ["uuid", { type: "string", format: "uuid" }],
    ["email", { type: "string", format: "email" }],
    ["email|max:254", { type: "string", format: "email", maxLength: 254 }],
    ["url", { type: "string", format: "uri" }],
    ["date", { type: "string", format: "date-time" }],
    ["any", {}],
    ["object", { type: "object" }],
    ["array", { type: "array" }],
    ["string[]", { type: "array", items: { type: "string" } }],
    ["uuid[]|min:1|max:5", { type: "array", items: { type: "string", format: "uuid" }, minItems: 1, maxItems: 5 }],
    ["string|nullable", { type: ["string", "null"] }],
    ["luhn", { type: ["string", "integer"] }],
    ["objectID", { type: "string", pattern: "^[0-9a-fA-F]{24}$" }],
    ["forbidden", { not: {} }],
    ["no-such-rule", {}],
  ])("%s", (shorthand, expected) => {
    expect(fvToJsonSchema(shorthand)).toEqual(expected);
  });

  it("has no '?' optional suffix, exactly like fastest-validator", () => {
    // fastest-validator rejects "string?" as an unknown type; we treat it as unknown too ({}),
    // and optionality comes only from `optional`.
    expect(() => new Validator().compile({ a: "string?" })).toThrow(/Invalid 'string\?' type/);
    expect(fvToJsonSchema("string?")).toEqual({});
    expect(fvParamsToJsonSchema({ a: "string|optional", b: "string" })).toEqual({
      type: "object",
      properties: { a: { type: "string" }, b: { type: "string" } },
      required: ["b"],
    });
  });
});

describe("fvToJsonSchema: full rules", () => {
  it("string: pattern RegExp becomes its source, several patterns all apply, enum kept", () => {
    expect(fvToJsonSchema({ type: "string", pattern: /^[A-Z]{2}$/, min: 2 })).toEqual({ type: "string", minLength: 2, pattern: "^[A-Z]{2}$" });
    expect(fvToJsonSchema({ type: "string", pattern: "^a", hex: true, contains: "a.b" })).toEqual({
      type: "string",
      pattern: "^a",
      allOf: [{ pattern: "^[0-9a-fA-F]+$" }, { pattern: "a\\.b" }],
    });
    expect(fvToJsonSchema({ type: "string", enum: ["csv", "json"] })).toEqual({ type: "string", enum: ["csv", "json"] });
  });

  it("number: equal, notEqual, integer", () => {
    expect(fvToJsonSchema({ type: "number", integer: true, equal: 3 })).toEqual({ type: "integer", const: 3 });
    expect(fvToJsonSchema({ type: "number", notEqual: 0 })).toEqual({ type: "number", not: { const: 0 } });
  });

  it("enum, equal", () => {
    expect(fvToJsonSchema({ type: "enum", values: ["low", "medium", "high"] })).toEqual({ type: "string", enum: ["low", "medium", "high"] });
    expect(fvToJsonSchema({ type: "enum", values: [1, "a"] })).toEqual({ enum: [1, "a"] });
    expect(fvToJsonSchema({ type: "equal", value: true, strict: true })).toEqual({ const: true });
    expect(fvToJsonSchema({ type: "equal", field: "password" })).toEqual({ description: 'Must equal the field "password".' });
  });

  it("array: items, length, empty, unique, contains, enum", () => {
    expect(fvToJsonSchema({ type: "array", items: "number|integer", length: 2 })).toEqual({ type: "array", items: { type: "integer" }, minItems: 2, maxItems: 2 });
    expect(fvToJsonSchema({ type: "array", empty: false, unique: true, contains: "x" })).toEqual({ type: "array", minItems: 1, uniqueItems: true, contains: { const: "x" } });
    expect(fvToJsonSchema({ type: "array", items: "string", enum: ["user", "admin"] })).toEqual({ type: "array", items: { type: "string", enum: ["user", "admin"] } });
  });

  it("object: props and properties, nested, strict true vs remove, min/maxProps", () => {
    const nested = {
      type: "object",
      strict: true,
      props: {
        lat: { type: "number", min: -90, max: 90 },
        lng: "number|min:-180|max:180",
        accuracy_m: "number|optional|positive",
        meta: { type: "object", properties: { a: "string" } },
      },
    };
    expect(fvToJsonSchema(nested)).toEqual({
      type: "object",
      properties: {
        lat: { type: "number", minimum: -90, maximum: 90 },
        lng: { type: "number", minimum: -180, maximum: 180 },
        accuracy_m: { type: "number", exclusiveMinimum: 0 },
        meta: { type: "object", properties: { a: { type: "string" } }, required: ["a"] },
      },
      required: ["lat", "lng", "meta"],
      additionalProperties: false,
    });
    // "remove" strips extras instead of rejecting them: extras are still accepted.
    expect(fvToJsonSchema({ type: "object", strict: "remove", props: { a: "string" } })).not.toHaveProperty("additionalProperties");
    expect(fvToJsonSchema({ type: "object", minProps: 1, maxProps: 3 })).toEqual({ type: "object", minProperties: 1, maxProperties: 3 });
  });

  it("$$type nested-object shorthand, optional via its type string", () => {
    const s = fvParamsToJsonSchema({ circle: { $$type: "object|optional", o: { $$type: "object", x: "number" }, r: "number" } });
    expect(s).toEqual({
      type: "object",
      properties: {
        circle: {
          type: "object",
          properties: { o: { type: "object", properties: { x: { type: "number" } }, required: ["x"] }, r: { type: "number" } },
          required: ["o", "r"],
        },
      },
    });
  });

  it("$$strict on a params map sets additionalProperties false; $$async is ignored", () => {
    expect(fvToJsonSchema({ $$strict: true, $$async: true, name: "string" })).toEqual({
      type: "object",
      properties: { name: { type: "string" } },
      required: ["name"],
      additionalProperties: false,
    });
  });

  it("$$root: the object is one rule", () => {
    expect(fvToJsonSchema({ $$root: true, type: "string", min: 3 })).toEqual({ type: "string", minLength: 3 });
    expect(fvParamsToJsonSchema({ $$root: true, type: "array", items: "string" })).toEqual({ type: "array", items: { type: "string" } });
  });

  it("default makes a field optional and is emitted; function defaults are dropped; Date becomes ISO", () => {
    const s = fvParamsToJsonSchema({
      limit: { type: "number", integer: true, min: 1, max: 1000, default: 100, convert: true },
      at: { type: "date", default: () => new Date() },
      since: { type: "date", default: new Date("2024-01-02T03:04:05Z") },
    });
    expect(s.required).toBeUndefined();
    expect(s.properties.limit).toEqual({ type: "integer", minimum: 1, maximum: 1000, default: 100 });
    expect(s.properties.at).toEqual({ type: "string", format: "date-time" });
    expect(s.properties.since.default).toBe("2024-01-02T03:04:05.000Z");
  });

  it("nullable on types, enums and type-less schemas", () => {
    expect(fvToJsonSchema({ type: "enum", values: ["a"], nullable: true })).toEqual({ type: ["string", "null"], enum: ["a", null] });
    expect(fvToJsonSchema({ type: "equal", value: 1, nullable: true })).toEqual({ anyOf: [{ const: 1 }, { type: "null" }] });
    expect(fvToJsonSchema({ type: "any", nullable: true })).toEqual({});
  });

  it("multi and arrays of rules: oneOf when the types are disjoint, anyOf when they overlap", () => {
    expect(fvToJsonSchema({ type: "multi", rules: [{ type: "boolean" }, { type: "number" }] })).toEqual({ oneOf: [{ type: "boolean" }, { type: "number" }] });
    expect(fvToJsonSchema(["boolean", "number|min:0|max:1"])).toEqual({ oneOf: [{ type: "boolean" }, { type: "number", minimum: 0, maximum: 1 }] });
    // A uuid is also a string: oneOf would reject it, the validator accepts it.
    expect(fvToJsonSchema(["string", "uuid"])).toEqual({ anyOf: [{ type: "string" }, { type: "string", format: "uuid" }] });
    // An array of optional rules is optional, as in fastest-validator.
    expect(fvParamsToJsonSchema({ a: ["string|optional", "number|optional"] }).required).toBeUndefined();
  });

  it("record and tuple", () => {
    expect(fvToJsonSchema({ type: "record", key: { type: "string", alpha: true }, value: "string[]" })).toEqual({
      type: "object",
      propertyNames: { type: "string", pattern: "^[a-zA-Z]+$" },
      additionalProperties: { type: "array", items: { type: "string" } },
    });
    expect(fvToJsonSchema({ type: "tuple", items: ["string", { type: "number", min: 0 }] })).toEqual({
      type: "array",
      prefixItems: [{ type: "string" }, { type: "number", minimum: 0 }],
      minItems: 2,
      maxItems: 2,
      items: false,
    });
  });

  it("forbidden fields are not required; unknown types and custom checks are unconstrained", () => {
    const s = fvParamsToJsonSchema({ password: "forbidden", x: { type: "class", instanceOf: Buffer }, y: { type: "any", custom: () => true } });
    expect(s.required).toEqual(["x", "y"]);
    expect(s.properties).toEqual({ password: { not: {} }, x: {}, y: {} });
  });

  it("carries description, label and examples", () => {
    expect(fvToJsonSchema({ type: "string", label: "Serial", description: "Unique per GTIN", examples: ["A1"] })).toEqual({
      type: "string",
      title: "Serial",
      description: "Unique per GTIN",
      examples: ["A1"],
    });
  });

  it("does not mutate the input schema", () => {
    const params = { $$strict: true, c: { $$type: "object|optional", x: "number" }, l: ["string", "number"] };
    const copy = JSON.parse(JSON.stringify(params));
    fvParamsToJsonSchema(params);
    expect(params).toEqual(copy);
  });

  // The converted schema should accept and reject the same values as fastest-validator itself.
  describe("agrees with fastest-validator", () => {
    const cases: [string, Record<string, any>, unknown[]][] = [
      ["strings", { s: "string|min:2|max:4|alphanum" }, [{ s: "ab" }, { s: "abcd" }, { s: "a" }, { s: "abcde" }, { s: "a-b" }, { s: 3 }, {}]],
      ["numbers", { n: "number|integer|min:1|max:10" }, [{ n: 1 }, { n: 10 }, { n: 0 }, { n: 11 }, { n: 1.5 }, { n: "3" }]],
      ["positive", { n: "number|positive", m: "number|optional|notEqual:5" }, [{ n: 1 }, { n: 0 }, { n: -1 }, { n: 1, m: 5 }, { n: 1, m: 4 }]],
      ["enum", { level: { type: "enum", values: ["low", "medium", "high"] } }, [{ level: "low" }, { level: "LOW" }, { level: 1 }]],
      ["strict", { $$strict: true, a: "string", b: "boolean|optional" }, [{ a: "x" }, { a: "x", b: true }, { a: "x", c: 1 }, { b: true }]],
      ["array", { tags: { type: "array", items: "string|no-empty", min: 1, max: 2, unique: true } }, [{ tags: ["a"] }, { tags: [] }, { tags: ["a", "b", "c"] }, { tags: [""] }, { tags: ["a", "a"] }]],
      ["multi", { v: ["boolean", "number|min:0|max:1"] }, [{ v: true }, { v: 0 }, { v: 1 }, { v: 2 }, { v: "yes" }]],
      ["nullable", { v: "string|nullable" }, [{ v: null }, { v: "x" }, {}]],
      ["nested", { loc: { type: "object", strict: true, props: { lat: "number|min:-90|max:90", lng: "number" } } }, [{ loc: { lat: 0, lng: 0 } }, { loc: { lat: 91, lng: 0 } }, { loc: { lat: 0 } }, { loc: { lat: 0, lng: 0, x: 1 } }]],
      ["tuple", { t: { type: "tuple", items: ["string", "number"] } }, [{ t: ["a", 1] }, { t: [1, "a"] }, { t: ["a"] }, { t: ["a", 1, 2] }]],
      ["record", { r: { type: "record", key: "string|alpha", value: "number" } }, [{ r: { ab: 1 } }, { r: { a1: 1 } }, { r: { ab: "x" } }]],
      ["equal", { agree: { type: "equal", value: true, strict: true } }, [{ agree: true }, { agree: false }]],
      ["forbidden", { a: "string", password: "forbidden" }, [{ a: "x" }, { a: "x", password: "p" }]],
    ];
    it.each(cases)("%s", (_name, params, values) => {
      const fvCheck = new Validator().compile(JSON.parse(JSON.stringify(params)));
      const ajvCheck = ajv().compile(fvParamsToJsonSchema(params));
      for (const value of values) {
        const fv = fvCheck(JSON.parse(JSON.stringify(value))) === true;
        expect({ value, valid: ajvCheck(value) }).toEqual({ value, valid: fv });
      }
    });
  });
});

// A structural subset of the OpenAPI 3.1 schema: enough to catch misplaced or missing keys.
const OAS31_STRUCTURE = {
  type: "object",
  required: ["openapi", "info", "paths"],
  additionalProperties: false,
  patternProperties: { "^x-": true },
  properties: {
    openapi: { type: "string", pattern: "^3\\.1\\.\\d+$" },
    info: {
      type: "object",
      required: ["title", "version"],
      additionalProperties: false,
      properties: { title: { type: "string" }, version: { type: "string" }, description: { type: "string" } },
    },
    servers: { type: "array", items: { type: "object", required: ["url"], properties: { url: { type: "string" } } } },
    tags: { type: "array", items: { type: "object", required: ["name"], properties: { name: { type: "string" } } } },
    paths: { type: "object", propertyNames: { pattern: "^/" }, additionalProperties: { $ref: "#/$defs/pathItem" } },
    components: {
      type: "object",
      additionalProperties: false,
      properties: {
        schemas: { type: "object", additionalProperties: { type: ["object", "boolean"] } },
        responses: { type: "object", additionalProperties: { $ref: "#/$defs/response" } },
        headers: { type: "object", additionalProperties: { type: "object", properties: { schema: { type: "object" } } } },
        securitySchemes: { type: "object", additionalProperties: { $ref: "#/$defs/securityScheme" } },
      },
    },
  },
  $defs: {
    pathItem: {
      type: "object",
      additionalProperties: false,
      properties: {
        summary: { type: "string" },
        description: { type: "string" },
        parameters: { type: "array", items: { $ref: "#/$defs/parameter" } },
        get: { $ref: "#/$defs/operation" },
        put: { $ref: "#/$defs/operation" },
        post: { $ref: "#/$defs/operation" },
        delete: { $ref: "#/$defs/operation" },
        patch: { $ref: "#/$defs/operation" },
        head: { $ref: "#/$defs/operation" },
        options: { $ref: "#/$defs/operation" },
        trace: { $ref: "#/$defs/operation" },
      },
    },
    operation: {
      type: "object",
      required: ["responses"],
      additionalProperties: false,
      patternProperties: { "^x-": true },
      properties: {
        operationId: { type: "string", minLength: 1 },
        summary: { type: "string" },
        description: { type: "string" },
        tags: { type: "array", items: { type: "string" } },
        security: { type: "array", items: { type: "object", additionalProperties: { type: "array", items: { type: "string" } } } },
        parameters: { type: "array", items: { $ref: "#/$defs/parameter" } },
        requestBody: {
          type: "object",
          required: ["content"],
          additionalProperties: false,
          properties: {
            description: { type: "string" },
            required: { type: "boolean" },
            content: { type: "object", minProperties: 1, additionalProperties: { $ref: "#/$defs/mediaType" } },
          },
        },
        responses: {
          type: "object",
          minProperties: 1,
          propertyNames: { pattern: "^([1-5](\\d\\d|XX)|default)$" },
          additionalProperties: { anyOf: [{ $ref: "#/$defs/reference" }, { $ref: "#/$defs/response" }] },
        },
        deprecated: { type: "boolean" },
      },
    },
    parameter: {
      type: "object",
      required: ["name", "in", "schema"],
      additionalProperties: false,
      properties: {
        name: { type: "string", minLength: 1 },
        in: { enum: ["query", "header", "path", "cookie"] },
        required: { type: "boolean" },
        description: { type: "string" },
        schema: { type: ["object", "boolean"] },
        style: { enum: ["matrix", "label", "form", "simple", "spaceDelimited", "pipeDelimited", "deepObject"] },
        explode: { type: "boolean" },
      },
      if: { properties: { in: { const: "path" } } },
      then: { required: ["required"], properties: { required: { const: true } } },
    },
    mediaType: { type: "object", additionalProperties: false, properties: { schema: { type: ["object", "boolean"] } } },
    reference: { type: "object", required: ["$ref"], additionalProperties: false, properties: { $ref: { type: "string", pattern: "^#/components/" } } },
    response: {
      type: "object",
      required: ["description"],
      additionalProperties: false,
      properties: {
        description: { type: "string" },
        content: { type: "object", additionalProperties: { $ref: "#/$defs/mediaType" } },
        headers: { type: "object", additionalProperties: { anyOf: [{ $ref: "#/$defs/reference" }, { type: "object", properties: { schema: { type: "object" } } }] } },
      },
    },
    securityScheme: {
      type: "object",
      required: ["type"],
      additionalProperties: false,
      properties: {
        type: { enum: ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"] },
        description: { type: "string" },
        name: { type: "string" },
        in: { enum: ["query", "header", "cookie"] },
        scheme: { type: "string" },
        bearerFormat: { type: "string" },
      },
      oneOf: [
        { properties: { type: { const: "apiKey" } }, required: ["name", "in"] },
        { properties: { type: { const: "http" } }, required: ["scheme"] },
      ],
    },
  },
};

const ROUTES: RouteInfo[] = [
  {
    method: "POST",
    path: "/v1/batches",
    action: "factory.registerBatch",
    auth: "any",
    summary: "Register a batch",
    contentTypes: ["application/json", "text/csv"],
    successStatus: 202,
    params: {
      $$strict: true,
      name: "string|optional",
      market_regions: { type: "array", items: { type: "string", pattern: /^[A-Z]{2}$/ }, optional: true },
      products: { type: "array", min: 1, items: { type: "object", props: { sku: "string", name: "string", serial: "string", gtin: "string|optional|numeric" } } },
    },
  },
  {
    method: "GET",
    path: "/v1/batches",
    action: "factory.listBatches",
    auth: "any",
    params: { limit: { type: "number", integer: true, min: 1, max: 1000, default: 100, convert: true }, cursor: "string|optional", filter: { type: "object", optional: true, props: { status: "string" } } },
  },
  { method: "GET", path: "/v1/batches/:id", action: "factory.getBatch", auth: "any", params: { id: "uuid" } },
  { method: "GET", path: "/v1/batches/:id/products", action: "factory.listProducts", auth: "any", params: { id: "uuid", limit: "number|optional|convert:true" } },
  { method: "POST", path: "/v1/batches/:id/recall", action: "factory.recallBatch", auth: "key", params: { id: "uuid", reason: "string|min:3" } },
  { method: "DELETE", path: "/v1/api-keys/:id", action: "factory.revokeKey", auth: "key", params: { id: "uuid" }, successStatus: 204 },
  { method: "POST", path: "/v1/scan", action: "scan.verify", auth: "public", summary: "Verify a tag <script>alert(1)</script>", params: { token: "string|min:10" } },
  { method: "GET", path: "/v1/scan", action: "scan.verify", auth: "public", params: { token: "string" } },
  {
    method: "GET",
    path: "/v1/scan/:tag_id",
    action: "scan.history",
    auth: "user",
    tags: ["Scans"],
    responses: { "200": { description: "The scan history", schema: { type: "object", properties: { items: { type: "array" } } } } },
  },
  { method: "POST", path: "/v1/webhooks", action: "webhooks.create", auth: "key", successStatus: 201, params: { url: "url", events: "string[]", description: "string|optional" } },
  { method: "GET", path: "/v1/webhooks", action: "webhooks.list", auth: "key" },
  { method: "POST", path: "/v1/auth/logout", action: "admin.logout", auth: "user" },
  { method: "GET", path: "/01/:gtin/*rest", action: "api.digitalLink", auth: "public", params: { gtin: "string|numeric|length:14" } },
  { method: "GET", path: "/v1/admin/audit{.:format}", action: "admin.audit", auth: "user" },
];

function build(routes = ROUTES) {
  return buildOpenApi({ title: "VokeTag API", version: "0.1.0", description: "Test", serverUrl: "http://localhost:3000", routes }) as Record<string, any>;
}

function templated(path: string): string {
  return path.replace(/[:*]([A-Za-z_$][\w$]*)/g, "{$1}");
}

function resolvePointer(doc: any, ref: string): unknown {
  return ref
    .slice(2)
    .split("/")
    .reduce((o: any, k) => (o == null ? undefined : o[k.replace(/~1/g, "/").replace(/~0/g, "~")]), doc);
}

describe("buildOpenApi", () => {
  const doc = build();
  const ops = listOperations(doc);
  const op = (method: string, path: string) => doc.paths[path][method.toLowerCase()];

  it("has the OpenAPI 3.1 structure", () => {
    // strictRequired would want every conditional `required` name re-declared inside its branch.
    const validate = new Ajv2020({ strict: true, strictRequired: false, allowUnionTypes: true, allErrors: true }).compile(OAS31_STRUCTURE);
    const ok = validate(doc);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    // The structure check has teeth: optional path params or a missing responses object fail it.
    const broken = build();
    broken.paths["/v1/batches/{id}"].get.parameters[0].required = false;
    delete broken.paths["/v1/webhooks"].post.responses;
    expect(validate(broken)).toBe(false);
    expect(validate.errors!.map((e) => e.instancePath)).toEqual(
      expect.arrayContaining(["/paths/~1v1~1batches~1{id}/get/parameters/0/required", "/paths/~1v1~1webhooks/post"]),
    );
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info).toEqual({ title: "VokeTag API", version: "0.1.0", description: "Test" });
    expect(doc.servers).toEqual([{ url: "http://localhost:3000" }]);
  });

  it("every {param} in a path has exactly one required path parameter, and no other path parameter exists", () => {
    for (const { method, path } of ops) {
      const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const pathParams = (op(method, path).parameters ?? []).filter((p: any) => p.in === "path");
      expect(pathParams.map((p: any) => p.name).sort()).toEqual(names);
      for (const p of pathParams) expect(p.required).toBe(true);
    }
  });

  it("every $ref resolves and every emitted schema is valid JSON Schema 2020-12", () => {
    const refs: string[] = [];
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) {
          if (k === "$ref" && typeof x === "string") refs.push(x);
          else walk(x);
        }
      }
    };
    walk(doc);
    expect(refs.length).toBeGreaterThan(0);
    for (const r of refs) expect(resolvePointer(doc, r)).toBeDefined();

    const a = ajv();
    for (const { method, path } of ops) {
      const o = op(method, path);
      for (const p of o.parameters ?? []) expect(() => a.compile(p.schema)).not.toThrow();
      for (const m of Object.values<any>(o.requestBody?.content ?? {})) expect(() => a.compile(m.schema)).not.toThrow();
    }
  });

  it("maps :param and *wildcard to {param}, with uuid format from the params schema", () => {
    expect(Object.keys(doc.paths)).toContain("/v1/batches/{id}/products");
    expect(op("GET", "/v1/batches/{id}").parameters).toEqual([{ name: "id", in: "path", required: true, schema: { type: "string", format: "uuid" } }]);
    const dl = op("GET", "/01/{gtin}/{rest}").parameters;
    expect(dl[0]).toEqual({ name: "gtin", in: "path", required: true, schema: { type: "string", minLength: 14, maxLength: 14, pattern: "^-?[0-9]\\d*(\\.\\d+)?$" } });
    expect(dl[1]).toMatchObject({ name: "rest", in: "path", required: true, schema: { type: "string" } });
    // A path parameter absent from params is still a required string.
    expect(op("GET", "/v1/scan/{tag_id}").parameters).toEqual([{ name: "tag_id", in: "path", required: true, schema: { type: "string" } }]);
  });

  it("expands path-to-regexp optional groups into one path each", () => {
    expect(op("GET", "/v1/admin/audit").operationId).toBe("admin_audit");
    expect(op("GET", "/v1/admin/audit.{format}").operationId).toBe("admin_audit_2");
  });

  it("GET/DELETE params become query parameters, path params excluded", () => {
    const list = op("GET", "/v1/batches").parameters;
    expect(list).toEqual([
      { name: "limit", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: 1000, default: 100 } },
      { name: "cursor", in: "query", required: false, schema: { type: "string" } },
      { name: "filter", in: "query", required: false, schema: { type: "object", properties: { status: { type: "string" } }, required: ["status"] }, style: "deepObject", explode: true },
    ]);
    expect(op("GET", "/v1/scan").parameters).toEqual([{ name: "token", in: "query", required: true, schema: { type: "string" } }]);
    expect(op("GET", "/v1/batches/{id}/products").parameters.map((p: any) => `${p.in}:${p.name}`)).toEqual(["path:id", "query:limit"]);
    expect(op("DELETE", "/v1/api-keys/{id}").parameters.map((p: any) => `${p.in}:${p.name}`)).toEqual(["path:id"]);
    expect(op("GET", "/v1/batches").requestBody).toBeUndefined();
  });

  it("POST/PUT/PATCH get a requestBody per content type, without path params", () => {
    const body = op("POST", "/v1/batches").requestBody;
    expect(Object.keys(body.content)).toEqual(["application/json", "text/csv"]);
    expect(body.required).toBe(true);
    const json = body.content["application/json"].schema;
    expect(json.additionalProperties).toBe(false);
    expect(json.required).toEqual(["products"]);
    expect(json.properties.market_regions.items).toEqual({ type: "string", pattern: "^[A-Z]{2}$" });
    expect(body.content["text/csv"].schema).toEqual({ type: "string" });

    const recall = op("POST", "/v1/batches/{id}/recall");
    expect(recall.requestBody.content["application/json"].schema).toEqual({ type: "object", properties: { reason: { type: "string", minLength: 3 } }, required: ["reason"] });
    expect(recall.parameters).toEqual([{ name: "id", in: "path", required: true, schema: { type: "string", format: "uuid" } }]);
    // No params at all: no body to describe.
    expect(op("POST", "/v1/auth/logout").requestBody).toBeUndefined();
  });

  it("declares ApiKey and Bearer and maps auth to per-operation security", () => {
    expect(doc.components.securitySchemes).toEqual({
      ApiKey: expect.objectContaining({ type: "apiKey", in: "header", name: "X-API-Key" }),
      Bearer: expect.objectContaining({ type: "http", scheme: "bearer", bearerFormat: "JWT" }),
    });
    expect(op("POST", "/v1/scan").security).toEqual([]);
    expect(op("POST", "/v1/webhooks").security).toEqual([{ ApiKey: [] }]);
    expect(op("GET", "/v1/scan/{tag_id}").security).toEqual([{ Bearer: [] }]);
    expect(op("GET", "/v1/batches").security).toEqual([{ ApiKey: [] }, { Bearer: [] }]);
  });

  it("merges methods on one path into one path item", () => {
    expect(Object.keys(doc.paths["/v1/webhooks"])).toEqual(["get", "post"]);
    expect(Object.keys(doc.paths["/v1/scan"])).toEqual(["get", "post"]);
    expect(op("GET", "/v1/webhooks").operationId).toBe("webhooks_list");
    expect(op("POST", "/v1/webhooks").operationId).toBe("webhooks_create");
  });

  it("operationIds are unique; an action mapped twice gets a suffix", () => {
    const ids = ops.map(({ method, path }) => op(method, path).operationId);
    expect(new Set(ids).size).toBe(ids.length);
    expect([op("GET", "/v1/scan").operationId, op("POST", "/v1/scan").operationId]).toEqual(["scan_verify", "scan_verify_2"]);
  });

  it("tags default to the action's service; explicit tags win; top-level tags list them", () => {
    expect(op("GET", "/v1/batches").tags).toEqual(["factory"]);
    expect(op("GET", "/v1/scan/{tag_id}").tags).toEqual(["Scans"]);
    expect(doc.tags.map((t: any) => t.name)).toEqual(["Scans", "admin", "api", "factory", "scan", "webhooks"]);
  });

  it("adds the standard error responses, sharing components.schemas.Error", () => {
    const codes = (m: string, p: string) => Object.keys(op(m, p).responses);
    expect(codes("POST", "/v1/scan")).toEqual(["200", "400", "413", "415", "429", "503"]);
    expect(codes("GET", "/v1/batches")).toEqual(["200", "400", "401", "403", "429", "503"]);
    expect(codes("GET", "/v1/batches/{id}")).toEqual(["200", "400", "401", "403", "404", "429", "503"]);
    expect(codes("DELETE", "/v1/api-keys/{id}")).toEqual(["204", "400", "401", "403", "404", "429", "503"]);
    for (const { method, path } of ops) expect(op(method, path).responses).not.toHaveProperty("500");

    expect(op("GET", "/v1/batches").responses["401"]).toEqual({ $ref: "#/components/responses/Unauthorized" });
    expect(doc.components.responses.TooManyRequests.headers).toHaveProperty("Retry-After");
    expect(doc.components.responses.ServiceUnavailable.headers).toHaveProperty("Retry-After");
    const errorSchema = ajv().compile(doc.components.schemas.Error);
    expect(errorSchema({ error: { code: "not_found", message: "No such batch", request_id: "r1" } })).toBe(true);
    expect(errorSchema({ error: { code: "bad_request", message: "x", details: [{ field: "a" }], request_id: "r1" } })).toBe(true);
    expect(errorSchema({ error: { code: "x", message: "x" } })).toBe(false);
    expect(errorSchema({ code: "x", message: "x", request_id: "r" })).toBe(false);
  });

  it("success responses come from `responses` or the success status", () => {
    expect(op("GET", "/v1/scan/{tag_id}").responses["200"]).toEqual({
      description: "The scan history",
      content: { "application/json": { schema: { type: "object", properties: { items: { type: "array" } } } } },
    });
    expect(op("POST", "/v1/batches").responses["202"]).toEqual({ description: "Accepted" });
    expect(op("POST", "/v1/webhooks").responses["201"]).toEqual({ description: "Created" });
    expect(op("GET", "/v1/webhooks").responses["200"]).toEqual({ description: "OK" });
    expect(op("POST", "/v1/batches").responses).not.toHaveProperty("200");
  });

  it("is deterministic: sorted paths, same bytes whatever the route order", () => {
    const keys = Object.keys(doc.paths);
    expect(keys).toEqual([...keys].sort());
    const reversed = JSON.stringify(build([...ROUTES].reverse()));
    // operationId suffixes follow the sorted order, not the input order.
    expect(reversed).toBe(JSON.stringify(doc));
  });

  it("keeps the first of two routes with the same method and path, as moleculer-web does", () => {
    const d = build([
      { method: "GET", path: "/v1/x", action: "a.first", auth: "public" },
      { method: "GET", path: "/v1/x/", action: "a.second", auth: "public" },
    ]);
    expect(listOperations(d)).toEqual([{ method: "GET", path: "/v1/x" }]);
    expect(d.paths["/v1/x"].get.operationId).toBe("a_first");
  });

  it("listOperations round-trips every route", () => {
    const expected = ROUTES.filter((r) => !r.path.includes("{")).map((r) => `${r.method} ${templated(r.path)}`);
    expected.push("GET /v1/admin/audit", "GET /v1/admin/audit.{format}");
    expect(ops.map((o) => `${o.method} ${o.path}`).sort()).toEqual(expected.sort());
  });

  it("returns a fresh object each time", () => {
    const a = build();
    a.components.schemas.Error.required.push("oops");
    expect(build().components.schemas.Error.required).toEqual(["error"]);
  });
});

describe("renderDocsPage", () => {
  const doc = build();
  const html = renderDocsPage(doc);

  it("is a complete, accessible page linking the stylesheet", () => {
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).toContain('<html lang="en">');
    expect(html).toContain('<meta charset="utf-8">');
    expect(html).toContain("<title>VokeTag API</title>");
    expect(html).toContain('<link rel="stylesheet" href="/docs/docs.css">');
    expect(html).toMatch(/<h1>VokeTag API<\/h1>/);
    expect(html).toContain('<main id="main">');
    expect(html.trimEnd().endsWith("</html>")).toBe(true);
    expect(renderDocsPage(doc, { title: "Other", cssHref: "/x.css" })).toContain('<link rel="stylesheet" href="/x.css">');
  });

  it("has no script, no inline style attribute, no external asset", () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toMatch(/\sstyle=/i);
    expect(html).not.toMatch(/<(img|iframe|link|script)[^>]+(src|href)="(https?:)?\/\//i);
  });

  it("escapes a <script> in a summary", () => {
    expect(html).toContain("Verify a tag &lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).not.toContain("<script>alert(1)</script>");
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  });

  it("escapes schema text too (a pattern cannot close the <pre>)", () => {
    const evil = buildOpenApi({
      title: "T</title><script>x</script>",
      version: "1",
      routes: [{ method: "POST", path: "/a", action: "s.a", auth: "public", params: { p: { type: "string", pattern: "</pre><script>x</script>" } } }],
    });
    const page = renderDocsPage(evil);
    expect(page).not.toMatch(/<script/i);
    expect(page).toContain("&lt;/pre&gt;&lt;script&gt;");
    expect(page).toContain("<title>T&lt;/title&gt;&lt;script&gt;x&lt;/script&gt;</title>");
  });

  it("contains every operation, grouped under its tag, with method badge and auth", () => {
    for (const { method, path } of listOperations(doc)) {
      const o = doc.paths[path][method.toLowerCase()];
      const anchor = `op-${o.operationId}`;
      expect(html).toContain(`<article class="op" id="${anchor}"`);
      expect(html).toContain(`<span class="method method-${method.toLowerCase()}">${method}</span> <code class="path">${escapeHtml(path)}</code>`);
      expect(html).toContain(`href="#${anchor}"`);
      // Under the right tag section: the op's article comes after its tag heading.
      const tagAt = html.indexOf(`<h2 id="tag-${o.tags[0]}-h">`);
      expect(tagAt).toBeGreaterThan(-1);
      expect(html.indexOf(`id="${anchor}"`)).toBeGreaterThan(tagAt);
    }
    const article = (id: string) => html.slice(html.indexOf(`id="${id}"`), html.indexOf("</article>", html.indexOf(`id="${id}"`)));
    expect(article("op-scan_verify_2")).toContain("None (public)");
    expect(article("op-factory_listBatches")).toMatch(/ApiKey: API key in header <code>X-API-Key<\/code> <strong>or<\/strong> Bearer: <code>Authorization: Bearer &lt;JWT&gt;<\/code>/);
  });

  it("shows parameters, request bodies and responses", () => {
    const start = html.indexOf('id="op-factory_registerBatch"');
    const article = html.slice(start, html.indexOf("</article>", start));
    expect(article).toContain("<h4>Request body (required)</h4>");
    expect(article).toContain("<code>application/json</code>");
    expect(article).toContain("<code>text/csv</code>");
    expect(article).toContain("&quot;products&quot;");
    expect(article).toContain('<th scope="row">202</th><td>Accepted</td>');
    expect(article).toContain("Rate limit exceeded");
    expect(article).toContain('<a href="#schema-Error">Error</a>');

    const list = html.slice(html.indexOf('id="op-factory_listBatches"'));
    expect(list).toContain("<td><code>limit</code></td><td>query</td><td>integer; min 1, max 1000, default 100</td><td>no</td>");
    expect(html).toContain('<h3 id="schema-Error">Error</h3>');
  });

  it("ships a stylesheet covering every method badge", () => {
    for (const m of ["get", "post", "put", "patch", "delete"]) expect(DOCS_CSS).toContain(`.method-${m}{`);
    expect(DOCS_CSS).not.toMatch(/url\(|@import/);
  });
});
