// Human-readable API reference rendered on the server from the OpenAPI document. The gateway's CSP
// forbids scripts and third-party origins, so this is plain HTML plus one same-origin stylesheet
// (DOCS_CSS, served at /docs/docs.css): no Swagger UI, no CDN, no inline script or style attribute.

export interface DocsPageOptions {
  title?: string;
  /** Where the gateway serves DOCS_CSS. */
  cssHref?: string;
  /** Where the gateway serves the machine-readable document. */
  specHref?: string;
}

// Colours chosen for WCAG AA: every text/background pair below is at least 4.5:1.
export const DOCS_CSS = `:root{color-scheme:light;--fg:#1a1a1a;--muted:#4a4a4a;--bg:#ffffff;--panel:#f4f5f7;--line:#c9ccd1;--link:#1d4ed8}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--link)}
a:focus-visible{outline:3px solid #b45309;outline-offset:2px}
.skip{position:absolute;left:-10000px;top:0}
.skip:focus{left:1rem;top:1rem;background:var(--bg);padding:.5rem;z-index:1}
header,main,nav{max-width:72rem;margin:0 auto;padding:0 1rem}
header{padding-top:1.5rem;border-bottom:1px solid var(--line)}
h1{margin:.2em 0}
h2{margin-top:2rem;border-bottom:2px solid var(--line);padding-bottom:.2rem}
h3{font-size:1.1rem;margin:0 0 .5rem;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}
h4{margin:1rem 0 .3rem;font-size:1rem}
.meta{color:var(--muted)}
nav ul{list-style:none;padding-left:0}
nav ul ul{padding-left:1rem;margin-bottom:.5rem}
nav li{margin:.15rem 0}
.op{border:1px solid var(--line);border-radius:6px;padding:1rem;margin:1rem 0}
.method{display:inline-block;min-width:4.2rem;text-align:center;font:700 .8rem/1.6 ui-monospace,Menlo,Consolas,monospace;color:#fff;border-radius:4px;padding:0 .4rem;background:#4a4a4a}
.method-get{background:#1d4ed8}.method-post{background:#15803d}.method-put{background:#a14a07}.method-patch{background:#6d28d9}.method-delete{background:#b91c1c}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9rem}
.path{font-weight:600;word-break:break-all}
pre{background:var(--panel);border:1px solid var(--line);border-radius:4px;padding:.75rem;overflow:auto;max-height:32rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:var(--panel)}
.auth-public{color:#15803d;font-weight:600}
.deprecated{color:#b91c1c;font-weight:600}
`;

type Obj = Record<string, any>;

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

export function escapeHtml(value: unknown): string {
  return String(value ?? "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// Local references only (#/components/...): that is all buildOpenApi emits.
function resolveRef(doc: Obj, v: unknown): Obj {
  let cur: unknown = v;
  for (let hops = 0; hops < 10 && isObj(cur) && typeof cur.$ref === "string" && cur.$ref.startsWith("#/"); hops++) {
    let target: unknown = doc;
    for (const part of cur.$ref.slice(2).split("/")) {
      const key = part.replace(/~1/g, "/").replace(/~0/g, "~");
      target = isObj(target) ? target[key] : undefined;
    }
    if (!isObj(target)) break;
    cur = target;
  }
  return isObj(cur) ? cur : {};
}

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "") || "x";
}

// A short human description of a schema for parameter tables: "string (uuid)", "array of integer"...
function schemaLabel(s: unknown): string {
  if (!isObj(s)) return s === false ? "never" : "any";
  if (typeof s.$ref === "string") return s.$ref.split("/").pop() ?? "object";
  if (Array.isArray(s.enum)) return "one of: " + s.enum.map((v: unknown) => JSON.stringify(v)).join(", ");
  if ("const" in s) return "exactly " + JSON.stringify(s.const);
  const alts = s.oneOf ?? s.anyOf;
  if (Array.isArray(alts)) return alts.map(schemaLabel).join(" or ");
  const types: string[] = Array.isArray(s.type) ? s.type : typeof s.type === "string" ? [s.type] : [];
  if (types.length === 0) return "any";
  let label = types
    .map((t) => (t === "array" ? "array of " + (s.items === undefined ? "any" : schemaLabel(s.items)) : t))
    .join(" | ");
  if (typeof s.format === "string") label += ` (${s.format})`;
  const limits: string[] = [];
  for (const [k, name] of [["minLength", "min length"], ["maxLength", "max length"], ["minimum", "min"], ["maximum", "max"], ["minItems", "min items"], ["maxItems", "max items"], ["pattern", "pattern"]] as const) {
    if (s[k] !== undefined) limits.push(`${name} ${s[k]}`);
  }
  if (s.default !== undefined) limits.push(`default ${JSON.stringify(s.default)}`);
  if (limits.length > 0) label += "; " + limits.join(", ");
  return label;
}

function securityLabel(doc: Obj, requirements: unknown): string {
  if (!Array.isArray(requirements) || requirements.length === 0) return '<span class="auth-public">None (public)</span>';
  const schemes: Obj = doc.components?.securitySchemes ?? {};
  const one = (name: string): string => {
    const s = schemes[name];
    if (isObj(s) && s.type === "apiKey") return `${escapeHtml(name)}: API key in ${escapeHtml(s.in)} <code>${escapeHtml(s.name)}</code>`;
    if (isObj(s) && s.type === "http") return `${escapeHtml(name)}: <code>Authorization: ${escapeHtml(String(s.scheme ?? "").replace(/^bearer$/i, "Bearer"))} &lt;${escapeHtml(s.bearerFormat ?? "token")}&gt;</code>`;
    return escapeHtml(name);
  };
  const alts = requirements.map((req: unknown) => {
    const names = isObj(req) ? Object.keys(req) : [];
    return names.length === 0 ? "none" : names.map(one).join(" and ");
  });
  return alts.join(" <strong>or</strong> ");
}

function pre(value: unknown): string {
  return `<pre><code>${escapeHtml(JSON.stringify(value, null, 2))}</code></pre>`;
}

// A schema that is only a reference to a named component links to it instead of repeating it.
function schemaBlock(s: unknown): string {
  if (isObj(s) && typeof s.$ref === "string" && s.$ref.startsWith("#/components/schemas/") && Object.keys(s).length === 1) {
    const name = s.$ref.slice("#/components/schemas/".length);
    return `<p>Schema: <a href="#schema-${escapeHtml(slug(name))}">${escapeHtml(name)}</a></p>`;
  }
  return pre(s);
}

interface Op {
  method: string;
  path: string;
  op: Obj;
  pathItem: Obj;
  anchor: string;
}

function renderParameters(doc: Obj, op: Op): string {
  const params = [...(Array.isArray(op.pathItem.parameters) ? op.pathItem.parameters : []), ...(Array.isArray(op.op.parameters) ? op.op.parameters : [])].map((p) => resolveRef(doc, p));
  if (params.length === 0) return "";
  const rows = params
    .map(
      (p) =>
        `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${escapeHtml(p.in)}</td><td>${escapeHtml(schemaLabel(p.schema))}</td><td>${p.required ? "yes" : "no"}</td><td>${escapeHtml(p.description ?? "")}</td></tr>`,
    )
    .join("\n");
  return `<h4>Parameters</h4>
<table><thead><tr><th scope="col">Name</th><th scope="col">In</th><th scope="col">Type</th><th scope="col">Required</th><th scope="col">Description</th></tr></thead>
<tbody>
${rows}
</tbody></table>`;
}

function renderRequestBody(doc: Obj, op: Op): string {
  if (!op.op.requestBody) return "";
  const body = resolveRef(doc, op.op.requestBody);
  const parts = Object.entries(isObj(body.content) ? body.content : {}).map(
    ([ct, media]) => `<p>Media type <code>${escapeHtml(ct)}</code></p>\n${schemaBlock(isObj(media) ? media.schema ?? {} : {})}`,
  );
  const desc = body.description ? `<p>${escapeHtml(body.description)}</p>\n` : "";
  return `<h4>Request body${body.required ? " (required)" : " (optional)"}</h4>\n${desc}${parts.join("\n")}`;
}

function renderResponses(doc: Obj, op: Op): string {
  const responses: Obj = isObj(op.op.responses) ? op.op.responses : {};
  const codes = Object.keys(responses).sort();
  if (codes.length === 0) return "";
  const rows = codes
    .map((code) => {
      const r = resolveRef(doc, responses[code]);
      const content = Object.entries(isObj(r.content) ? r.content : {})
        .map(([ct, media]) => `<code>${escapeHtml(ct)}</code>${isObj(media) && media.schema !== undefined ? "\n" + schemaBlock(media.schema) : ""}`)
        .join("\n");
      const headers = isObj(r.headers) ? Object.keys(r.headers).map((h) => `<code>${escapeHtml(h)}</code>`).join(", ") : "";
      return `<tr><th scope="row">${escapeHtml(code)}</th><td>${escapeHtml(r.description ?? "")}${headers ? `<br>Headers: ${headers}` : ""}</td><td>${content}</td></tr>`;
    })
    .join("\n");
  return `<h4>Responses</h4>
<table><thead><tr><th scope="col">Status</th><th scope="col">Description</th><th scope="col">Content</th></tr></thead>
<tbody>
${rows}
</tbody></table>`;
}

function renderOperation(doc: Obj, op: Op): string {
  const o = op.op;
  const security = o.security ?? doc.security;
  return `<article class="op" id="${escapeHtml(op.anchor)}" aria-labelledby="${escapeHtml(op.anchor)}-h">
<h3 id="${escapeHtml(op.anchor)}-h"><span class="method method-${escapeHtml(op.method)}">${escapeHtml(op.method.toUpperCase())}</span> <code class="path">${escapeHtml(op.path)}</code></h3>
${o.summary ? `<p><strong>${escapeHtml(o.summary)}</strong></p>\n` : ""}${o.deprecated ? '<p class="deprecated">Deprecated</p>\n' : ""}${o.description ? o.description.split(/\n{2,}/).map((para: string) => `<p>${escapeHtml(para)}</p>`).join("\n") + "\n" : ""}<p class="meta">Operation id <code>${escapeHtml(o.operationId ?? "")}</code></p>
<p>Authentication: ${securityLabel(doc, security)}</p>
${renderParameters(doc, op)}
${renderRequestBody(doc, op)}
${renderResponses(doc, op)}
</article>`;
}

/** The whole reference as one HTML page (links DOCS_CSS; contains no script). */
export function renderDocsPage(doc: object, opts: DocsPageOptions = {}): string {
  const d = doc as Obj;
  const info: Obj = isObj(d.info) ? d.info : {};
  const title = opts.title ?? info.title ?? "API reference";
  const cssHref = opts.cssHref ?? "/docs/docs.css";
  const specHref = opts.specHref ?? "/openapi.json";

  // Group by each operation's first tag, in the document's tag order, then any others by name.
  const groups = new Map<string, Op[]>();
  const anchors = new Set<string>();
  for (const [path, rawItem] of Object.entries(isObj(d.paths) ? d.paths : {})) {
    if (!isObj(rawItem)) continue;
    for (const method of METHODS) {
      const o = rawItem[method];
      if (!isObj(o)) continue;
      const tag = Array.isArray(o.tags) && o.tags.length > 0 ? String(o.tags[0]) : "Other";
      let anchor = "op-" + slug(o.operationId ?? `${method}-${path}`);
      for (let n = 2; anchors.has(anchor); n++) anchor = `op-${slug(o.operationId ?? `${method}-${path}`)}-${n}`;
      anchors.add(anchor);
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag)!.push({ method, path, op: o, pathItem: rawItem, anchor });
    }
  }
  const declared: string[] = Array.isArray(d.tags) ? d.tags.map((t: Obj) => String(t?.name)) : [];
  const tagOrder = [...declared.filter((t) => groups.has(t)), ...[...groups.keys()].filter((t) => !declared.includes(t)).sort()];
  const tagInfo = new Map<string, Obj>((Array.isArray(d.tags) ? d.tags : []).filter(isObj).map((t: Obj) => [String(t.name), t]));

  const nav = tagOrder
    .map((tag) => {
      const items = groups
        .get(tag)!
        .map((op) => `<li><a href="#${escapeHtml(op.anchor)}">${escapeHtml(op.method.toUpperCase())} ${escapeHtml(op.path)}</a></li>`)
        .join("\n");
      return `<li><a href="#tag-${escapeHtml(slug(tag))}">${escapeHtml(tag)}</a>\n<ul>\n${items}\n</ul></li>`;
    })
    .join("\n");

  const sections = tagOrder
    .map((tag) => {
      const t = tagInfo.get(tag);
      const desc = t?.description ? `<p>${escapeHtml(t.description)}</p>\n` : "";
      return `<section id="tag-${escapeHtml(slug(tag))}" aria-labelledby="tag-${escapeHtml(slug(tag))}-h">
<h2 id="tag-${escapeHtml(slug(tag))}-h">${escapeHtml(tag)}</h2>
${desc}${groups.get(tag)!.map((op) => renderOperation(d, op)).join("\n")}
</section>`;
    })
    .join("\n");

  const schemes: Obj = d.components?.securitySchemes ?? {};
  const authItems = Object.keys(schemes)
    .map((name) => `<dt>${securityLabel(d, [{ [name]: [] }])}</dt><dd>${escapeHtml(schemes[name]?.description ?? "")}</dd>`)
    .join("\n");
  const schemas: Obj = d.components?.schemas ?? {};
  const schemaItems = Object.keys(schemas)
    .map((name) => `<h3 id="schema-${escapeHtml(slug(name))}">${escapeHtml(name)}</h3>\n${pre(schemas[name])}`)
    .join("\n");
  const servers = Array.isArray(d.servers) ? d.servers.filter(isObj).map((s: Obj) => `<code>${escapeHtml(s.url)}</code>`).join(", ") : "";

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="${escapeHtml(cssHref)}">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
<h1>${escapeHtml(title)}</h1>
<p class="meta">Version ${escapeHtml(info.version ?? "")} · OpenAPI ${escapeHtml(d.openapi ?? "")} · <a href="${escapeHtml(specHref)}">${escapeHtml(specHref)}</a>${servers ? ` · Server ${servers}` : ""}</p>
${info.description ? `<p>${escapeHtml(info.description)}</p>\n` : ""}</header>
<nav aria-label="Operations">
<h2>Contents</h2>
<ul>
<li><a href="#authentication">Authentication</a></li>
${nav}
${schemaItems ? '<li><a href="#schemas">Schemas</a></li>' : ""}
</ul>
</nav>
<main id="main">
<section id="authentication" aria-labelledby="authentication-h">
<h2 id="authentication-h">Authentication</h2>
<p>Each operation lists the credentials it accepts; "or" means any one of them is enough.</p>
${authItems ? `<dl>\n${authItems}\n</dl>` : "<p>No security schemes are declared.</p>"}
</section>
${sections}
${schemaItems ? `<section id="schemas" aria-labelledby="schemas-h">\n<h2 id="schemas-h">Schemas</h2>\n${schemaItems}\n</section>` : ""}
</main>
</body>
</html>
`;
}
