// VokeTag web console: platform staff (admin, operator, auditor) and tenant staff (tenant_admin,
// tenant_viewer) in one page, each seeing what their role allows (the server checks every call
// again). No framework, no CDN: DOM built with createElement (never innerHTML with data), charts and
// the fraud map drawn as SVG. Tokens live in sessionStorage and travel as a Bearer header.
/* global window, document, sessionStorage, fetch, location, setTimeout, URLSearchParams, XMLHttpRequest, Blob, Node, prompt, crypto */
"use strict";
(function () {
  const STORE = "voketag.session";
  const PLATFORM = ["admin", "operator", "auditor"];
  const STAFF = ["admin", "operator"];
  const VERDICT_COLORS = { authentic: "#2e9e5e", suspicious: "#e0a100", recalled: "#7c4dbb", invalid: "#d0453a" };
  const app = document.getElementById("app");

  // ---- DOM helpers ------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    // A button is an action unless it says it submits: inside a form it would submit it again.
    if (tag === "button" && !(attrs && attrs.type)) el.type = "button";
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  const SVGNS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  const clear = (el) => { while (el.firstChild) el.removeChild(el.firstChild); return el; };
  const fmtDate = (v) => (v ? new Date(v).toISOString().replace("T", " ").slice(0, 19) : "");
  const fmtPct = (v) => `${(Number(v || 0) * 100).toFixed(1)}%`;
  const fmtNum = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en"));
  const badge = (v) => h("span", { class: `badge ${v}` }, v);
  const short = (id) => (id ? String(id).slice(0, 8) : "");

  function table(columns, rows, opts) {
    if (!rows.length) return h("p", { class: "empty" }, (opts && opts.empty) || "Nothing yet.");
    return h("div", { class: "table-wrap" }, h("table", { class: (opts && opts.class) || "" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "" }, c.label)))),
      h("tbody", {}, rows.map((r) => h("tr", { "data-id": r.id || null }, columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.value(r))))))));
  }
  function message(kind, text) { return h("div", { class: `msg ${kind}`, role: kind === "err" ? "alert" : "status" }, text); }

  // ---- Session and API --------------------------------------------------------------------------
  let session = null;
  try { session = JSON.parse(sessionStorage.getItem(STORE) || "null"); } catch { session = null; }
  const save = () => (session ? sessionStorage.setItem(STORE, JSON.stringify(session)) : sessionStorage.removeItem(STORE));

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || `request failed (${status})`);
      this.status = status;
      this.body = body;
    }
  }

  async function refresh() {
    if (!session || !session.refresh) return false;
    const r = await fetch("/v1/auth/refresh", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refresh_token: session.refresh }) });
    if (!r.ok) return false;
    const t = await r.json();
    session.access = t.access_token;
    session.refresh = t.refresh_token;
    save();
    return true;
  }

  async function raw(method, path, body, headers) {
    const go = () => {
      const hdr = Object.assign({}, headers || {});
      if (session && session.access) hdr.authorization = `Bearer ${session.access}`;
      let payload = body;
      if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
        hdr["content-type"] = "application/json";
        payload = JSON.stringify(body);
      }
      return fetch(path, { method, headers: hdr, body: payload });
    };
    let res = await go();
    if (res.status === 401 && session && (await refresh())) res = await go();
    if (res.status === 401 && session) {
      session = null;
      save();
      route();
      throw new ApiError(401, { error: { message: "your session has ended: sign in again" } });
    }
    return res;
  }

  const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`);

  async function api(method, path, body) {
    // Creating calls carry an Idempotency-Key: a request the browser repeats has one effect.
    const res = await raw(method, path, body, method === "POST" ? { "idempotency-key": newKey() } : undefined);
    const text = await res.text();
    let data;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }
  const get = (p) => api("GET", p);
  const post = (p, b) => api("POST", p, b === undefined ? {} : b);

  /** Downloads a protected file: fetched with the Bearer token, then saved from a blob URL. */
  async function download(path, fallbackName) {
    const res = await raw("GET", path);
    if (!res.ok) {
      let msg = `download failed (${res.status})`;
      try { msg = (await res.json()).error.message; } catch { /* not JSON */ }
      throw new Error(msg);
    }
    const cd = res.headers.get("content-disposition") || "";
    const m = /filename="?([^";]+)"?/.exec(cd);
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: (m && m[1]) || fallbackName, class: "hidden-download" });
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 10_000);
    return blob.size;
  }

  const role = () => (session && session.me ? session.me.role : null);
  const isPlatform = () => PLATFORM.includes(role());
  const canStaff = () => STAFF.includes(role());
  const isAdmin = () => role() === "admin";
  const isTenantAdmin = () => role() === "tenant_admin";

  // ---- Routing ----------------------------------------------------------------------------------
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    return { parts: (path || "").split("/").filter(Boolean), query: new URLSearchParams(query || "") };
  }
  function go(path) { location.hash = `#/${path}`; }
  window.addEventListener("hashchange", () => route());

  function navItems() {
    if (isPlatform())
      return [["overview", "Overview"], ["fraud", "Fraud"], ["tenants", "Tenants"], ["users", "Users"], ["audit", "Audit"], ["god", "God mode"]];
    const items = [["overview", "Overview"], ["batches", "Batches"]];
    if (isTenantAdmin()) items.push(["new-batch", "New batch"]);
    items.push(["scans", "Scans"], ["fraud", "Fraud"], ["recalls", "Recalls"], ["keys", "API keys"], ["webhooks", "Webhooks"]);
    if (isTenantAdmin()) items.push(["users", "Users"]);
    items.push(["audit", "Audit"]);
    return items;
  }

  const VIEWS = {};
  let current = 0;

  async function route() {
    const { parts, query } = parseHash();
    if (parts[0] === "set-password") return renderSetPassword(query.get("token") || "");
    if (!session || !session.access) return renderLogin(parts[0] === "reset" ? "reset" : "login");
    if (!session.me) {
      try { session.me = await get("/v1/auth/me"); save(); } catch { session = null; save(); return renderLogin("login"); }
    }
    const allowed = navItems().map((n) => n[0]);
    const name = allowed.includes(parts[0]) ? parts[0] : "overview";
    const main = renderShell(name);
    const token = ++current;
    main.appendChild(h("p", { class: "muted", id: "loading" }, "Loading…"));
    try {
      await VIEWS[name](main, parts.slice(1), query, () => token === current);
    } catch (err) {
      if (token !== current) return;
      main.appendChild(message("err", err.message));
    } finally {
      const l = main.querySelector("#loading");
      if (l) l.remove();
    }
  }

  function renderShell(active) {
    const me = session.me;
    const scope = me.tenant ? `${me.tenant.name}` : "Platform";
    clear(app);
    const main = h("main", { id: "main", tabindex: "-1" });
    app.appendChild(h("header", { class: "top" },
      h("span", { class: "brand" }, "VokeTag"),
      h("span", { class: "scope" }, scope),
      h("span", { class: "who" }, `${me.email} · ${me.role}`),
      h("button", { class: "small", id: "sign-out", onclick: signOut }, "Sign out")));
    app.appendChild(h("div", { class: "shell" },
      h("nav", { class: "side", "aria-label": "Sections" }, navItems().map(([k, label]) => h("a", { href: `#/${k}`, class: k === active ? "active" : "", "data-nav": k }, label))),
      main));
    return main;
  }

  async function signOut() {
    const rt = session && session.refresh;
    session = null;
    save();
    if (rt) await fetch("/v1/auth/logout", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refresh_token: rt }) }).catch(() => undefined);
    location.hash = "#/login";
    route();
  }

  // ---- Login, reset, set password ---------------------------------------------------------------
  function renderLogin(mode) {
    clear(app);
    const box = h("div", { class: "login" }, h("h1", {}, "VokeTag"));
    const msg = h("div");
    if (mode === "reset") {
      const email = h("input", { type: "email", id: "reset-email", required: true, autocomplete: "email" });
      box.append(h("form", { onsubmit: async (e) => {
        e.preventDefault();
        clear(msg);
        await fetch("/v1/auth/password-reset", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: email.value }) });
        msg.appendChild(message("ok", "If an account exists for this address, a reset link is on its way."));
      } }, h("label", {}, "Email", email), msg, h("button", { type: "submit" }, "Send reset link")), h("p", { class: "links" }, h("a", { href: "#/login" }, "Back to sign in")));
    } else {
      const email = h("input", { type: "email", id: "login-email", required: true, autocomplete: "username" });
      const password = h("input", { type: "password", id: "login-password", required: true, autocomplete: "current-password" });
      box.append(h("form", { id: "login-form", onsubmit: async (e) => {
        e.preventDefault();
        clear(msg);
        const r = await fetch("/v1/auth/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: email.value, password: password.value }) });
        const body = await r.json().catch(() => null);
        if (!r.ok) {
          msg.appendChild(message("err", r.status === 429 ? `Too many attempts: try again in ${r.headers.get("retry-after") || "a few"} seconds.` : (body && body.error && body.error.message) || "Sign-in failed."));
          return;
        }
        session = { access: body.access_token, refresh: body.refresh_token };
        save();
        if (!/^#\/(overview|fraud|tenants|users|audit|god|batches|new-batch|scans|recalls|keys|webhooks)/.test(location.hash)) location.hash = "#/overview";
        route();
      } }, h("label", {}, "Email", email), h("label", {}, "Password", password), msg, h("button", { type: "submit", id: "login-submit" }, "Sign in")),
      h("p", { class: "links" }, h("a", { href: "#/reset" }, "Forgot your password?")));
    }
    app.appendChild(box);
  }

  function renderSetPassword(token) {
    clear(app);
    const p1 = h("input", { type: "password", id: "new-password", required: true, minlength: "12", autocomplete: "new-password" });
    const p2 = h("input", { type: "password", id: "new-password-2", required: true, minlength: "12", autocomplete: "new-password" });
    const msg = h("div");
    app.appendChild(h("div", { class: "login" }, h("h1", {}, "Choose your password"),
      h("form", { onsubmit: async (e) => {
        e.preventDefault();
        clear(msg);
        if (p1.value !== p2.value) return msg.appendChild(message("err", "The two passwords differ."));
        const r = await fetch("/v1/auth/password-reset/confirm", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token, password: p1.value }) });
        const body = await r.json().catch(() => null);
        if (!r.ok) return msg.appendChild(message("err", (body && body.error && body.error.message) || "That did not work."));
        msg.appendChild(message("ok", "Your password is set. You can sign in now."));
        setTimeout(() => { location.hash = "#/login"; }, 1200);
      } }, h("p", { class: "muted" }, "At least 12 characters."), h("label", {}, "New password", p1), h("label", {}, "Again", p2), msg, h("button", { type: "submit" }, "Set password"))));
  }

  // ---- Charts (SVG) -----------------------------------------------------------------------------
  /** Stacked daily bars: days [{date, ...}], series [[key, colour]]. */
  function stackedBars(id, days, series, opts) {
    const W = opts.width || 720, H = opts.height || 230, L = 44, B = 26, T = 10, R = 8;
    const max = Math.max(1, ...days.map((d) => series.reduce((a, [k]) => a + (d[k] || 0), 0)));
    const step = niceStep(max);
    const top = Math.ceil(max / step) * step;
    const bw = (W - L - R) / Math.max(1, days.length);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const svg = s("svg", { class: "chart", "data-chart": id, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.label });
    svg.appendChild(s("title", {}, opts.label));
    for (let v = 0; v <= top; v += step) {
      svg.appendChild(s("line", { class: "gridline", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      svg.appendChild(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtNum(v)));
    }
    svg.appendChild(s("line", { class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
    const every = Math.ceil(days.length / (W < 600 ? 5 : 10));
    days.forEach((d, i) => {
      let acc = 0;
      const x = L + i * bw + bw * 0.12;
      for (const [k, colour] of series) {
        const v = d[k] || 0;
        if (!v) continue;
        const rect = s("rect", { class: "bar", "data-series": k, x, width: bw * 0.76, y: y(acc + v), height: Math.max(0.5, y(acc) - y(acc + v)), fill: colour });
        rect.appendChild(s("title", {}, `${d.date}: ${v} ${k}`));
        svg.appendChild(rect);
        acc += v;
      }
      if (i % every === 0) svg.appendChild(s("text", { x: L + i * bw + bw / 2, y: H - 8, "text-anchor": "middle" }, d.date.slice(5)));
    });
    return h("div", {}, svg, h("div", { class: "legend" }, series.map(([k]) => h("span", {}, h("i", { class: `sw-${k}` }), k))));
  }

  /** Horizontal bars for a handful of named counts. */
  function hbars(id, counts, label) {
    const entries = Object.entries(counts);
    const W = 420, rowH = 24, L = 90, H = entries.length * rowH + 10;
    const max = Math.max(1, ...entries.map(([, v]) => v));
    const svg = s("svg", { class: "chart", "data-chart": id, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    svg.appendChild(s("title", {}, label));
    entries.forEach(([k, v], i) => {
      const y = 5 + i * rowH;
      svg.appendChild(s("text", { x: L - 8, y: y + 15, "text-anchor": "end" }, k));
      const rect = s("rect", { class: "bar", x: L, y: y + 3, height: rowH - 8, width: Math.max(v ? 2 : 0, ((W - L - 60) * v) / max), fill: ["final", "anchored"].includes(k) ? "#2e9e5e" : k === "failed" ? "#d0453a" : "#1646a8" });
      rect.appendChild(s("title", {}, `${k}: ${v}`));
      svg.appendChild(rect);
      svg.appendChild(s("text", { x: L + ((W - L - 60) * v) / max + 6, y: y + 15 }, fmtNum(v)));
    });
    return svg;
  }

  function niceStep(max) {
    const raw = max / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / p;
    return Math.max(1, (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p);
  }

  // ---- The fraud map (countries from /admin/world.json, cells from the geo analytics) ------------
  let world = null;
  async function fraudMap(tenantParam) {
    world = world || (await (await fetch("/admin/world.json")).json());
    const [byCountry, byCell] = await Promise.all([get(`/v1/admin/analytics/geo?by=country&days=90${tenantParam}`), get(`/v1/admin/analytics/geo?cell=5&days=90${tenantParam}`)]);
    const counts = Object.fromEntries(byCountry.countries.filter((c) => c.country).map((c) => [c.country, c]));
    const maxScans = Math.max(1, ...byCountry.countries.map((c) => c.scans));
    // Latitudes 84 N to 60 S: nobody scans a tag in Antarctica.
    const svg = s("svg", { class: "fraud-map", viewBox: "0 6 360 144", role: "img", "aria-label": "Map of scans by country, with suspicious hot spots" });
    svg.appendChild(s("title", {}, "Scans by country (blue) and by 5° cell (red where some were suspicious)"));
    for (let lng = -150; lng <= 150; lng += 30) svg.appendChild(s("line", { class: "graticule", x1: lng + 180, x2: lng + 180, y1: 0, y2: 180 }));
    for (let lat = -60; lat <= 60; lat += 30) svg.appendChild(s("line", { class: "graticule", x1: 0, x2: 360, y1: 90 - lat, y2: 90 - lat }));
    const ringPath = (ring, dx) => "M" + ring.map(([x, y]) => `${(x + 180 + dx).toFixed(1)},${(90 - y).toFixed(1)}`).join("L") + "Z";
    for (const shape of world) {
      const c = counts[shape.c];
      const t = c ? Math.sqrt(c.scans / maxScans) : 0;
      // Rings unwrapped past the antimeridian are drawn again on the other side of the map.
      const d = shape.p.map((ring) => {
        const xs = ring.map((p) => p[0]);
        return ringPath(ring, 0) + (Math.max(...xs) > 180 ? ringPath(ring, -360) : "") + (Math.min(...xs) < -180 ? ringPath(ring, 360) : "");
      }).join("");
      const fill = c ? `rgb(${Math.round(200 - 150 * t)},${Math.round(215 - 120 * t)},${Math.round(240 - 60 * t)})` : "#f3f4f6";
      const path = s("path", { class: "country", d, fill, "data-country": shape.c });
      path.appendChild(s("title", {}, c ? `${shape.n}: ${c.scans} scans, ${fmtPct(c.suspicious_rate)} suspicious` : shape.n));
      svg.appendChild(path);
    }
    const maxCell = Math.max(1, ...byCell.cells.map((c) => c.scans));
    for (const c of byCell.cells) {
      const size = byCell.cell_degrees;
      const rect = s("rect", { class: "cell", x: c.west + 180, y: 90 - c.north, width: size, height: size, fill: c.suspicious ? "#d0453a" : "#1646a8", "fill-opacity": (0.35 + 0.6 * (c.scans / maxCell)).toFixed(2), "data-cell": c.cell });
      rect.appendChild(s("title", {}, `cell ${c.cell}: ${c.scans} scans, ${c.suspicious} suspicious`));
      svg.appendChild(rect);
    }
    return h("div", {}, svg, h("div", { class: "legend" }, h("span", {}, h("i", { class: "sw-registered" }), "scans by country / cell"), h("span", {}, h("i", { class: "sw-invalid" }), "cells with suspicious scans")));
  }

  // ---- Overview ---------------------------------------------------------------------------------
  VIEWS.overview = async (main, _p, _q, live) => {
    const [d, trends] = await Promise.all([get("/v1/admin/dashboard"), get("/v1/admin/analytics/trends?days=30")]);
    if (!live()) return;
    const card = (label, value, sub) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
    main.append(h("h1", {}, isPlatform() ? "Platform overview" : `${session.me.tenant ? session.me.tenant.name : ""} overview`));
    main.append(h("div", { class: "cards", id: "cards" },
      isPlatform() ? card("Tenants", fmtNum(d.tenants.total), `${d.tenants.suspended} suspended`) : null,
      card("Batches", fmtNum(d.batches.total), `${d.batches.by_status.failed} failed`),
      card("Products", fmtNum(d.products.total), d.products.estimated ? "estimate" : ""),
      card("Scans today", fmtNum(d.scans.today), `${fmtNum(d.scans.last_7_days)} in 7 days`),
      card("Suspicious (7 days)", fmtPct(d.suspicious_rate_7_days), `${d.scans.by_verdict_7_days.suspicious} scans`),
      card("Anchors waiting", fmtNum(d.anchors.batches_awaiting), `${d.anchors.by_status.final} final periods`),
      d.outbox ? card("Outbox lag", `${d.outbox.lag_seconds} s`, `${d.outbox.unsent} unsent`) : null,
      card("Failed webhooks", fmtNum(d.webhooks.failed_deliveries), `${fmtNum(d.webhooks.retrying)} retrying`)));
    main.append(h("section", { class: "panel" }, h("h2", {}, "Scans per day by verdict (30 days)"),
      stackedBars("scans", trends.days, Object.entries(VERDICT_COLORS), { label: "Scans per day by verdict" })));
    main.append(h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "Batches registered and anchored per day"),
        stackedBars("anchors", trends.days.map((x) => ({ date: x.date, registered: x.batches_registered, anchored: x.batches_anchored })), [["registered", "#1646a8"], ["anchored", "#2e9e5e"]], { label: "Batches registered and anchored per day", width: 420, height: 220 })),
      h("section", { class: "panel" }, h("h2", {}, "Anchor periods by status"), hbars("periods", d.anchors.by_status, "Anchor periods by status"),
        h("h2", {}, "Batches by status"), hbars("batches", d.batches.by_status, "Batches by status"))));
  };

  // ---- Fraud ------------------------------------------------------------------------------------
  VIEWS.fraud = async (main, _p, q, live) => {
    const tenant = isPlatform() && q.get("tenant_id") ? `&tenant_id=${encodeURIComponent(q.get("tenant_id"))}` : "";
    const f = await get(`/v1/admin/analytics/fraud?days=30&limit=20${tenant}`);
    const map = await fraudMap(tenant);
    if (!live()) return;
    main.append(h("h1", {}, "Fraud"));
    main.append(h("div", { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "label" }, "Scans (30 days)"), h("div", { class: "value" }, fmtNum(f.totals.scans))),
      h("div", { class: "card" }, h("div", { class: "label" }, "Suspicious"), h("div", { class: "value" }, fmtPct(f.totals.suspicious_rate))),
      h("div", { class: "card" }, h("div", { class: "label" }, "Invalid"), h("div", { class: "value" }, fmtPct(f.totals.invalid_rate)))));
    main.append(h("section", { class: "panel" }, h("h2", {}, "Where scans come from"), map));
    main.append(h("h2", {}, "Suspicious tags"), table([
      { label: "Serial", value: (r) => r.serial },
      { label: "SKU", value: (r) => r.sku },
      { label: "Max score", num: true, value: (r) => r.max_score },
      { label: "Scans", num: true, value: (r) => r.scans },
      { label: "Suspicious", num: true, value: (r) => r.suspicious },
      { label: "Devices", num: true, value: (r) => r.devices },
      { label: "Countries", num: true, value: (r) => r.countries },
      { label: "Reports", num: true, value: (r) => r.reports },
      { label: "Last scan", value: (r) => fmtDate(r.last_scan_at) },
      { label: "Status", value: (r) => badge(r.status) },
    ], f.riskiest_tags.map((r) => Object.assign({ id: r.tag_id }, r)), { empty: "No scans in this period.", class: "riskiest" }));
    const rates = (rows, first) => table([first, { label: "Scans", num: true, value: (r) => r.scans }, { label: "Suspicious", num: true, value: (r) => fmtPct(r.suspicious_rate) }, { label: "Invalid", num: true, value: (r) => fmtPct(r.invalid_rate) }], rows);
    main.append(h("div", { class: "grid2" },
      isPlatform() ? h("section", {}, h("h2", {}, "By tenant"), rates(f.by_tenant, { label: "Tenant", value: (r) => r.name || "(unattributed)" })) : null,
      h("section", {}, h("h2", {}, "By product (SKU)"), rates(f.by_product, { label: "SKU", value: (r) => `${r.sku} · ${r.name}` })),
      h("section", {}, h("h2", {}, "By batch"), rates(f.by_batch, { label: "Batch", value: (r) => r.name || short(r.batch_id) }))));
  };

  // ---- Tenants (platform) -----------------------------------------------------------------------
  VIEWS.tenants = async (main, parts, _q, live) => {
    if (parts[0]) return tenantDetail(main, parts[0], live);
    const list = await get("/v1/admin/tenants?limit=1000");
    if (!live()) return;
    main.append(h("h1", {}, "Tenants"));
    const out = h("div");
    if (canStaff()) {
      const name = h("input", { id: "tenant-name", required: true, maxlength: "200", placeholder: "Acme Watches" });
      main.append(h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault();
        try { const t = await post("/v1/admin/tenants", { name: name.value }); go(`tenants/${t.id}`); } catch (err) { clear(out).appendChild(message("err", err.message)); }
      } }, h("label", {}, "New tenant", name), h("button", { type: "submit" }, "Create")), out);
    }
    main.append(table([
      { label: "Name", value: (t) => h("a", { href: `#/tenants/${t.id}` }, t.name) },
      { label: "Status", value: (t) => badge(t.status) },
      { label: "Created", value: (t) => fmtDate(t.created_at) },
      { label: "Id", value: (t) => h("span", { class: "mono" }, t.id) },
    ], list.items, { empty: "No tenants yet." }));
  };

  async function tenantDetail(main, id, live) {
    const [t, keys, users] = await Promise.all([get(`/v1/admin/tenants/${id}`), get(`/v1/admin/tenants/${id}/api-keys?limit=1000`), get(`/v1/admin/users?tenant_id=${id}&limit=1000`)]);
    const risk = await get(`/v1/admin/god/tenants/${id}/risk`).catch(() => null);
    if (!live()) return;
    const out = h("div");
    const act = (label, fn, cls) => h("button", { class: `small ${cls || "secondary"}`, onclick: async () => { try { const r = await fn(); if (r !== false) route(); } catch (err) { clear(out).appendChild(message("err", err.message)); } } }, label);
    main.append(h("h1", {}, t.name, " ", badge(t.status)), out);
    main.append(h("section", { class: "panel" }, h("dl", { class: "kv" },
      h("dt", {}, "Id"), h("dd", { class: "mono" }, t.id),
      h("dt", {}, "Created"), h("dd", {}, fmtDate(t.created_at)),
      h("dt", {}, "Users · keys · batches · products"), h("dd", {}, `${t.counts.users} · ${t.counts.api_keys} · ${t.counts.batches} · ${fmtNum(t.counts.products)}`),
      t.suspended_reason ? [h("dt", {}, "Suspended because"), h("dd", {}, t.suspended_reason)] : null),
      h("div", { class: "actions", style: null },
        canStaff() ? (t.status === "active"
          ? act("Suspend", async () => { const reason = prompt("Why is this tenant suspended?"); if (reason === null) return false; await post(`/v1/admin/tenants/${id}/suspend`, { reason }); }, "danger")
          : act("Reactivate", () => post(`/v1/admin/tenants/${id}/reactivate`))) : null,
        ["admin", "auditor"].includes(role()) ? act("Export data", async () => { await download(`/v1/admin/tenants/${id}/export`, `tenant-${id}.ndjson`); return false; }) : null,
        isAdmin() ? act("Erase personal data", async () => {
          const ok = prompt(`This erases report contacts, scan locations and this tenant's users' identities. Type the tenant id to confirm:\n${id}`);
          if (ok !== id) return false;
          const r = await post(`/v1/admin/tenants/${id}/erase-personal-data`, { confirm: id });
          clear(out).appendChild(message("ok", `Erased: ${JSON.stringify(r.erased)}`));
          return false;
        }, "danger") : null)));
    const keyOut = h("div");
    main.append(h("h2", {}, "API keys"), keyOut);
    keysPanel(main, keyOut, {
      manage: canStaff(), inputId: "key-name", placeholder: "factory line 1", items: keys.items,
      create: `/v1/admin/tenants/${id}/api-keys`, keyPath: (k) => `/v1/admin/tenants/${id}/api-keys/${k.id}`,
    });
    main.append(h("h2", {}, "Users"), usersTable(users.items, out));
    if (risk) {
      const text = h("textarea", { id: "risk-json", "aria-label": "Risk override (JSON)" }, JSON.stringify(risk.override || {}, null, 2));
      main.append(h("section", { class: "panel" }, h("h2", {}, "Risk weights"),
        h("p", { class: "muted" }, "A partial override of the defaults, e.g. {\"weights\": {\"grey_market\": 40}}. Checked by the server before it is stored."),
        text, isAdmin() ? h("div", { class: "actions" }, act("Save risk settings", async () => {
          let value;
          try { value = JSON.parse(text.value || "null"); } catch { throw new Error("not valid JSON"); }
          await api("PUT", `/v1/admin/god/tenants/${id}/risk`, { risk: value && Object.keys(value).length ? value : null });
        }, "")) : null,
        h("details", {}, h("summary", {}, "Defaults"), h("pre", { class: "mono" }, JSON.stringify(risk.defaults, null, 2)))));
    }
  }

  // ---- Users ------------------------------------------------------------------------------------
  function usersTable(items, out) {
    const act = (label, fn, cls) => h("button", { class: `small ${cls || "secondary"}`, onclick: async () => { try { await fn(); route(); } catch (err) { clear(out).appendChild(message("err", err.message)); } } }, label);
    const manage = ["admin", "operator", "tenant_admin"].includes(role());
    return table([
      { label: "Email", value: (u) => u.email },
      { label: "Name", value: (u) => u.name },
      { label: "Role", value: (u) => u.role },
      { label: "Status", value: (u) => [badge(u.status), u.invited ? " invited" : "", u.locked_until ? " locked" : ""] },
      { label: "Last sign-in", value: (u) => fmtDate(u.last_login_at) },
      { label: "", value: (u) => (manage && u.id !== session.me.id ? h("div", { class: "actions" },
        u.status === "active" ? act("Disable", () => post(`/v1/admin/users/${u.id}/disable`), "danger") : act("Enable", () => post(`/v1/admin/users/${u.id}/enable`)),
        u.invited ? act("Resend invitation", () => post(`/v1/admin/users/${u.id}/invite`)) : null,
        u.locked_until ? act("Unlock", () => post(`/v1/admin/users/${u.id}/unlock`)) : null) : "") },
    ], items, { empty: "No users." });
  }

  VIEWS.users = async (main, _p, _q, live) => {
    const list = await get("/v1/admin/users?limit=1000");
    const tenants = isPlatform() ? await get("/v1/admin/tenants?limit=1000") : null;
    if (!live()) return;
    main.append(h("h1", {}, "Users"));
    const out = h("div");
    const grantable = isAdmin() ? ["admin", "operator", "auditor", "tenant_admin", "tenant_viewer"] : ["tenant_admin", "tenant_viewer"];
    if (["admin", "operator", "tenant_admin"].includes(role())) {
      const email = h("input", { type: "email", id: "user-email", required: true });
      const name = h("input", { id: "user-name", required: true });
      const r = h("select", { id: "user-role" }, grantable.map((x) => h("option", { value: x }, x)));
      const tenant = tenants ? h("select", { id: "user-tenant" }, h("option", { value: "" }, "(platform)"), tenants.items.map((t) => h("option", { value: t.id }, t.name))) : null;
      const pw = h("input", { type: "password", id: "user-password", placeholder: "empty: send an invitation", autocomplete: "new-password" });
      main.append(h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault();
        const body = { email: email.value, name: name.value, role: r.value };
        if (tenant && tenant.value) body.tenant_id = tenant.value;
        if (pw.value) body.password = pw.value;
        try {
          const u = await post("/v1/admin/users", body);
          route();
          setTimeout(() => document.getElementById("main").prepend(message("ok", u.invited ? `Invitation mailed to ${u.email}.` : `User ${u.email} created.`)), 300);
        } catch (err) { clear(out).appendChild(message("err", err.message)); }
      } }, h("label", {}, "Email", email), h("label", {}, "Name", name), h("label", {}, "Role", r), tenant ? h("label", {}, "Tenant", tenant) : null, h("label", {}, "Password", pw), h("button", { type: "submit" }, "Create user")));
    }
    main.append(out, usersTable(list.items, out));
  };

  // ---- Audit ------------------------------------------------------------------------------------
  VIEWS.audit = async (main, _p, q, live) => {
    main.append(h("h1", {}, "Audit trail"));
    const field = (id, label, type, ph) => h("label", {}, label, h("input", { id, name: id, type: type || "text", placeholder: ph || "", value: q.get(id) || "" }));
    const form = h("form", { class: "inline", id: "audit-filter", onsubmit: (e) => {
      e.preventDefault();
      const p = new URLSearchParams();
      for (const el of form.querySelectorAll("input")) if (el.value) p.set(el.name, el.value);
      location.hash = `#/audit?${p}`;
    } }, field("actor", "Actor id"), field("action", "Action", "text", "user.*"), isPlatform() ? field("tenant_id", "Tenant id") : null, field("from", "From", "date"), field("to", "To", "date"), h("button", { type: "submit" }, "Filter"));
    main.append(form);
    const params = new URLSearchParams();
    for (const k of ["actor", "action", "tenant_id"]) if (q.get(k)) params.set(k, q.get(k));
    if (q.get("from")) params.set("from", new Date(q.get("from")).toISOString());
    if (q.get("to")) params.set("to", new Date(new Date(q.get("to")).getTime() + 86400000).toISOString());
    const out = h("div", { id: "audit-out" });
    const exportAs = (fmt) => async () => {
      const p = new URLSearchParams(params);
      p.set("format", fmt);
      try { const n = await download(`/v1/admin/audit?${p}`, `voketag-audit.${fmt}`); clear(out).appendChild(message("ok", `Exported ${fmtNum(n)} bytes as ${fmt.toUpperCase()}.`)); } catch (err) { clear(out).appendChild(message("err", err.message)); }
    };
    main.append(h("div", { class: "toolbar" },
      h("button", { class: "secondary", id: "export-csv", onclick: exportAs("csv") }, "Export CSV"),
      h("button", { class: "secondary", id: "export-json", onclick: exportAs("json") }, "Export JSON"),
      isPlatform() ? h("button", { class: "secondary", id: "verify-chain", onclick: async () => {
        const v = await get("/v1/admin/audit/verify");
        clear(out).appendChild(v.ok ? message("ok", `The chain holds: ${fmtNum(v.count)} entries, head ${v.head ? v.head.hash.slice(0, 16) : "-"}…`) : message("err", `Broken at ${v.broken.seq || "the head"}: ${v.broken.reason} ${v.broken.detail || ""}`));
      } }, "Verify chain") : null), out);
    const rowsBox = h("div");
    main.append(rowsBox);
    let cursor = null;
    const more = h("button", { class: "secondary", id: "audit-more", onclick: () => load() }, "More");
    const all = [];
    async function load() {
      const p = new URLSearchParams(params);
      p.set("limit", "100");
      if (cursor) p.set("cursor", cursor);
      const page = await get(`/v1/admin/audit?${p}`);
      if (!live()) return;
      all.push(...page.items);
      cursor = page.next_cursor;
      clear(rowsBox).appendChild(table([
        { label: "#", num: true, value: (e) => e.seq },
        { label: "When", value: (e) => fmtDate(e.at) },
        { label: "Actor", value: (e) => (e.actor_id ? `${e.actor_type} ${short(e.actor_id)}` : e.actor_type) },
        { label: "Role", value: (e) => e.role || "" },
        { label: "Action", value: (e) => h("span", { class: "mono" }, e.action) },
        { label: "Target", value: (e) => (e.target_type ? `${e.target_type} ${short(e.target_id)}` : "") },
        { label: "Change", value: (e) => h("span", { class: "mono" }, summarise(e.before, e.after)) },
      ], all.map((e) => Object.assign({ id: String(e.seq) }, e)), { empty: "No entries match.", class: "audit" }));
      if (cursor) rowsBox.appendChild(more);
    }
    await load();
  };

  function summarise(before, after) {
    const txt = (v) => (v === null || v === undefined ? "" : JSON.stringify(v));
    const b = txt(before), a = txt(after);
    const out = b && a ? `${b} → ${a}` : a || b;
    return out.length > 140 ? out.slice(0, 137) + "…" : out;
  }

  // ---- God mode (platform) ----------------------------------------------------------------------
  VIEWS.god = async (main, _p, _q, live) => {
    const [sys, fail] = await Promise.all([get("/v1/admin/god/system"), get("/v1/admin/god/failures")]);
    if (!live()) return;
    const out = h("div", { id: "god-out" });
    const act = (label, fn, cls, id) => h("button", { class: `small ${cls || "secondary"}`, id: id || null, disabled: !canStaff() ? true : null, onclick: async (e) => {
      e.target.disabled = true;
      try { const r = await fn(); clear(out).appendChild(message("ok", `${label}: ${summarise(null, r)}`)); setTimeout(route, 800); } catch (err) { clear(out).appendChild(message("err", err.message)); e.target.disabled = false; }
    } }, label);
    main.append(h("h1", {}, "God mode"), out);
    main.append(h("div", { class: "toolbar" },
      act("Anchor now", () => post("/v1/admin/god/anchor/cycle"), "", "anchor-now"),
      act("Deliver pending outbox events", () => post("/v1/admin/god/outbox/requeue"), "", "requeue-outbox"),
      act("Replay dead webhooks", () => post("/v1/admin/god/webhooks/requeue"), "", "requeue-webhooks"),
      act("Run maintenance", () => post("/v1/admin/god/maintenance/run"), "", "run-maintenance"),
      isAdmin() ? act("Rotate signing key", () => post("/v1/admin/god/jwt/rotate"), "danger", "rotate-key") : null));
    main.append(h("div", { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "label" }, "Outbox"), h("div", { class: "value" }, fmtNum(sys.outbox.unsent)), h("div", { class: "sub" }, `lag ${sys.outbox.lag_seconds} s, ${sys.outbox.stuck} stuck`)),
      h("div", { class: "card" }, h("div", { class: "label" }, "Anchor queue"), h("div", { class: "value" }, fmtNum(sys.anchor.batches_waiting)), h("div", { class: "sub" }, `${sys.anchor.periods.pending} pending · ${sys.anchor.periods.submitted} submitted · ${sys.anchor.periods.failed} failed`)),
      h("div", { class: "card" }, h("div", { class: "label" }, "Open breakers"), h("div", { class: "value" }, String(sys.circuit_breakers.open.length)), h("div", { class: "sub" }, sys.circuit_breakers.nodes_not_reporting.length ? `${sys.circuit_breakers.nodes_not_reporting.length} node(s) silent` : "all nodes reporting")),
      h("div", { class: "card" }, h("div", { class: "label" }, "Webhooks"), h("div", { class: "value" }, fmtNum(sys.webhooks.dead)), h("div", { class: "sub" }, `dead · ${fmtNum(sys.webhooks.due)} due`))));
    main.append(h("h2", {}, "Nodes"), table([
      { label: "Node", value: (n) => [n.id, n.local ? " (this)" : ""] },
      { label: "Available", value: (n) => badge(n.available ? "ok" : "failed") },
      { label: "Services", value: (n) => n.services.join(", ") },
      { label: "CPU", num: true, value: (n) => (n.cpu === null ? "" : `${n.cpu}%`) },
      { label: "Offline since", value: (n) => fmtDate(n.offline_since) },
    ], sys.nodes.map((n) => Object.assign({}, n)), { class: "nodes" }));
    if (sys.circuit_breakers.open.length)
      main.append(h("h2", {}, "Open circuit breakers"), table([{ label: "On node", value: (b) => b.node }, { label: "Towards", value: (b) => b.target_node }, { label: "Action", value: (b) => b.action || b.service }, { label: "State", value: (b) => b.state }], sys.circuit_breakers.open));
    main.append(h("h2", {}, "Failed anchors"), table([
      { label: "Period", value: (p) => h("span", { class: "mono" }, short(p.id)) },
      { label: "Batches", num: true, value: (p) => p.batch_ids.length },
      { label: "Attempts", num: true, value: (p) => p.attempts },
      { label: "Last error", value: (p) => p.last_error || "" },
      { label: "Since", value: (p) => fmtDate(p.created_at) },
      { label: "", value: (p) => act("Retry", () => post(`/v1/admin/god/anchors/${p.id}/retry`), "", `retry-anchor-${p.id}`) },
    ], fail.anchors, { empty: "No failed anchor.", class: "failed-anchors" }));
    main.append(h("h2", {}, "Failed batches"), table([
      { label: "Batch", value: (b) => `${b.name || short(b.id)} · ${b.tenant}` },
      { label: "Products", num: true, value: (b) => b.total },
      { label: "Errors", value: (b) => summarise(null, b.errors) },
      { label: "", value: (b) => act("Retry", () => post(`/v1/admin/god/batches/${b.id}/retry`)) },
    ], fail.batches, { empty: "No failed batch." }));
    main.append(h("h2", {}, "Outbox events retrying"), table([
      { label: "#", num: true, value: (o) => o.id },
      { label: "Topic", value: (o) => o.topic },
      { label: "Waiting for", value: (o) => o.pending.join(", ") },
      { label: "Attempts", num: true, value: (o) => o.attempts },
      { label: "Last error", value: (o) => o.last_error || "" },
      { label: "", value: (o) => act("Deliver now", () => post("/v1/admin/god/outbox/requeue", { id: Number(o.id) })) },
    ], fail.outbox, { empty: "Every event delivered." }));
    main.append(h("h2", {}, "Dead webhook deliveries"), table([
      { label: "Event", value: (d) => d.event_type },
      { label: "Attempts", num: true, value: (d) => d.attempts },
      { label: "Last answer", value: (d) => d.last_status || d.last_error || "" },
      { label: "", value: (d) => act("Replay", () => post("/v1/admin/god/webhooks/requeue", { delivery_id: d.id })) },
    ], fail.webhook_deliveries, { empty: "No dead delivery." }));
    main.append(h("h2", {}, "Runtime settings"), table([
      { label: "Setting", value: (x) => [h("span", { class: "mono" }, x.key), h("div", { class: "muted" }, x.description)] },
      { label: "Default (env)", num: true, value: (x) => x.default },
      { label: "Stored", num: true, value: (x) => (x.value === null ? "–" : x.value) },
      { label: "", value: (x) => (isAdmin() ? h("div", { class: "actions" },
        act("Change", async () => {
          const v = prompt(`${x.key} (${x.min}–${x.max})`, String(x.effective));
          if (v === null) return "unchanged";
          return api("PUT", `/v1/admin/god/settings/${x.key}`, { value: Number(v) });
        }),
        x.value !== null ? act("Reset", () => api("DELETE", `/v1/admin/god/settings/${x.key}`)) : null) : "") },
    ], sys.settings.map((x) => Object.assign({ id: x.key }, x))));
  };

  // ---- Tenant portal: batches -------------------------------------------------------------------
  VIEWS.batches = async (main, parts, _q, live) => {
    if (parts[0]) return batchDetail(main, parts[0], live);
    const list = await get("/v1/batches?limit=200");
    if (!live()) return;
    main.append(h("h1", {}, "Batches"));
    main.append(table([
      { label: "Batch", value: (b) => h("a", { href: `#/batches/${b.id}` }, b.name || short(b.id)) },
      { label: "Status", value: (b) => badge(b.status) },
      { label: "Products", num: true, value: (b) => `${fmtNum(b.progress.done)} / ${fmtNum(b.progress.total)}` },
      { label: "Created", value: (b) => fmtDate(b.created_at) },
      { label: "Anchored", value: (b) => fmtDate(b.anchored_at) },
    ], list.items, { empty: "No batches yet.", class: "batches" }));
  };

  async function batchDetail(main, id, live) {
    const [b, products, anchor] = await Promise.all([get(`/v1/batches/${id}`), get(`/v1/batches/${id}/products?limit=100`), get(`/v1/anchor/${id}`).catch(() => null)]);
    if (!live()) return;
    const out = h("div");
    const act = (label, fn, cls) => h("button", { class: `small ${cls || "secondary"}`, onclick: async () => { try { await fn(); } catch (err) { clear(out).appendChild(message("err", err.message)); } } }, label);
    main.append(h("h1", {}, b.name || `Batch ${short(b.id)}`, " ", badge(b.status)), out);
    main.append(h("section", { class: "panel" }, h("dl", { class: "kv" },
      h("dt", {}, "Id"), h("dd", { class: "mono" }, b.id),
      h("dt", {}, "Products"), h("dd", {}, `${fmtNum(b.progress.done)} / ${fmtNum(b.progress.total)}`),
      h("dt", {}, "Markets"), h("dd", {}, (b.market_regions || []).join(", ") || "any"),
      h("dt", {}, "Merkle root"), h("dd", { class: "mono" }, b.root || "–"),
      h("dt", {}, "Anchor"), h("dd", { id: "anchor-status" }, anchor ? [badge(anchor.status), anchor.tx_hash ? [" tx ", h("span", { class: "mono" }, anchor.tx_hash), ` · block ${anchor.block_number} · ${anchor.confirmations} confirmation(s)`] : ""] : "–"),
      products.items[0] && anchor && anchor.status === "final" ? [h("dt", {}, "Proof"), h("dd", {}, h("a", { href: `/v1/products/${products.items[0].id}/proof`, target: "_blank", rel: "noopener" }, "proof document of the first product"), " · ", h("a", { href: `/v1/verify/${b.id}`, target: "_blank", rel: "noopener" }, "verify the batch against the chain"))] : null),
      h("div", { class: "toolbar" },
        ["registered", "anchoring", "anchored"].includes(b.status) ? [
          act("Labels (PDF)", () => download(`/v1/batches/${id}/labels?format=pdf`, `labels-${id}.pdf`), ""),
          act("Labels (CSV)", () => download(`/v1/batches/${id}/labels?format=csv`, `labels-${id}.csv`)),
          act("Labels (SVG)", () => download(`/v1/batches/${id}/labels?format=svg`, `labels-${id}.svg`)),
        ] : null,
        isTenantAdmin() && ["registered", "anchoring", "anchored"].includes(b.status) ? act("Anchor now", async () => { await post("/v1/anchor", { batch_id: id }); route(); }) : null,
        isTenantAdmin() && ["registered", "anchoring", "anchored"].includes(b.status) ? act("Recall batch", async () => {
          const reason = prompt("Why is this batch recalled?");
          if (!reason) return;
          await post(`/v1/batches/${id}/recall`, { reason });
          clear(out).appendChild(message("ok", "Batch recalled: scans now answer recalled."));
        }, "danger") : null)));
    if (b.errors && b.errors.length) main.append(h("h2", {}, "Errors"), table([{ label: "Row", num: true, value: (e) => e.row }, { label: "Field", value: (e) => e.field || "" }, { label: "Problem", value: (e) => e.message }], b.errors));
    main.append(h("h2", {}, "Products"), table([
      { label: "#", num: true, value: (p) => p.ordinal + 1 },
      { label: "Serial", value: (p) => p.serial },
      { label: "SKU", value: (p) => p.sku },
      { label: "Name", value: (p) => p.name },
      { label: "Status", value: (p) => badge(p.status) },
      { label: "Tag", value: (p) => h("a", { href: p.verification_url, target: "_blank", rel: "noopener" }, "open") },
      { label: "", value: (p) => (isTenantAdmin() && p.status === "active" ? act("Recall", async () => {
        const reason = prompt(`Why is ${p.serial} recalled?`);
        if (!reason) return;
        await post(`/v1/products/${p.id}/recall`, { reason });
        route();
      }, "danger") : "") },
    ], products.items, { empty: "No products yet." }));
    if (b.history) main.append(h("h2", {}, "History"), table([{ label: "When", value: (x) => fmtDate(x.at) }, { label: "Status", value: (x) => badge(x.status) }, { label: "Detail", value: (x) => summarise(null, x.detail) }], b.history));
  }

  VIEWS["new-batch"] = async (main) => {
    main.append(h("h1", {}, "New batch"));
    main.append(h("p", { class: "muted" }, "A CSV file with a header row: sku, name, serial, and optionally gtin, lot, attributes (JSON). Any size: it is streamed and checked row by row; one bad row fails the whole batch with its row number."));
    const name = h("input", { id: "batch-name", maxlength: "200", placeholder: "Spring 2026" });
    const markets = h("input", { id: "batch-markets", placeholder: "BR,PT" });
    const file = h("input", { id: "batch-file", type: "file", accept: ".csv,text/csv", required: true });
    const bar = h("div", { class: "progress", id: "upload-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" }, h("div"));
    const status = h("p", { id: "upload-status", "aria-live": "polite" });
    const after = h("div", { id: "upload-after" });
    const setBar = (pct, cls) => {
      bar.firstChild.style.width = `${Math.max(0, Math.min(100, pct))}%`;
      bar.setAttribute("aria-valuenow", String(Math.round(pct)));
      bar.className = `progress ${cls || ""}`;
    };
    const form = h("form", { class: "panel", id: "batch-form", onsubmit: async (e) => {
      e.preventDefault();
      clear(after);
      const f = file.files[0];
      if (!f) return;
      const q = new URLSearchParams();
      if (name.value) q.set("name", name.value);
      if (markets.value) q.set("market_regions", markets.value.replace(/\s+/g, "").toUpperCase());
      status.textContent = `Uploading ${f.name}…`;
      setBar(0);
      let accepted;
      try {
        accepted = await uploadCsv(`/v1/batches?${q}`, f, (sent, total) => {
          setBar((sent / total) * 50);
          status.textContent = `Uploading: ${Math.round((sent / total) * 100)}%`;
        });
      } catch (err) {
        setBar(100, "failed");
        status.textContent = "";
        after.appendChild(message("err", err.message));
        return;
      }
      status.textContent = "Registering…";
      for (;;) {
        const b = await get(`/v1/batches/${accepted.id}`);
        const { done, total } = b.progress;
        setBar(50 + (total ? (done / total) * 50 : 0), b.status === "failed" ? "failed" : "");
        status.textContent = b.status === "processing" || b.status === "received"
          ? `Registering: ${fmtNum(done)} / ${fmtNum(total)} products${b.eta_s ? ` (about ${b.eta_s} s left)` : ""}`
          : "";
        if (b.status === "failed") {
          after.appendChild(message("err", `The batch failed: ${(b.errors || []).slice(0, 5).map((x) => `row ${x.row}: ${x.message}`).join("; ")}`));
          return;
        }
        if (["registered", "anchoring", "anchored"].includes(b.status)) {
          setBar(100, "done");
          status.textContent = `Registered ${fmtNum(total)} products.`;
          after.append(message("ok", `Batch ${b.name || short(b.id)} is registered.`), h("div", { class: "toolbar" },
            h("button", { id: "labels-pdf", onclick: async () => { try { await download(`/v1/batches/${b.id}/labels?format=pdf`, `labels-${b.id}.pdf`); } catch (err) { after.appendChild(message("err", err.message)); } } }, "Download labels (PDF)"),
            h("button", { class: "secondary", onclick: () => download(`/v1/batches/${b.id}/labels?format=csv`, `labels-${b.id}.csv`) }, "Labels (CSV)"),
            h("a", { href: `#/batches/${b.id}` }, "Open the batch")));
          return;
        }
        await new Promise((r) => setTimeout(r, 400));
      }
    } }, h("div", { class: "toolbar" }, h("label", {}, "Name", name), h("label", {}, "Markets (ISO codes)", markets), h("label", {}, "CSV file", file), h("button", { type: "submit", id: "upload" }, "Upload")), bar, status, after);
    main.append(form);
  };

  /** POSTs a file as text/csv with upload progress (fetch has none), refreshing the token once on 401. */
  function uploadCsv(url, file, onProgress, retried, key) {
    const idemKey = key || newKey();
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("content-type", "text/csv");
      xhr.setRequestHeader("authorization", `Bearer ${session.access}`);
      // A browser may send a POST again when a kept-alive connection drops under it: the key makes
      // the repeat replay the first answer instead of registering the batch twice.
      xhr.setRequestHeader("idempotency-key", idemKey);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
      xhr.onerror = () => reject(new Error("the upload was interrupted"));
      xhr.onload = async () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status === 401 && !retried && (await refresh())) return uploadCsv(url, file, onProgress, true, idemKey).then(resolve, reject);
        if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
        const details = body && body.error && body.error.details && body.error.details.rows ? `: ${body.error.details.rows.slice(0, 5).map((r) => `row ${r.row} ${r.message}`).join("; ")}` : "";
        reject(new Error(((body && body.error && body.error.message) || `upload failed (${xhr.status})`) + details));
      };
      xhr.send(file);
    });
  }

  // ---- Tenant portal: scans, recalls, keys, webhooks ----------------------------------------------
  VIEWS.scans = async (main, _p, q, live) => {
    const verdict = q.get("verdict") || "";
    const list = await get(`/v1/admin/scans?limit=200${verdict ? `&verdict=${verdict}` : ""}`);
    if (!live()) return;
    main.append(h("h1", {}, "Scans"));
    main.append(h("div", { class: "toolbar" }, ["", "authentic", "suspicious", "recalled", "invalid"].map((v) => h("a", { href: `#/scans${v ? `?verdict=${v}` : ""}`, class: v === verdict ? "active" : "" }, v || "all"))));
    main.append(table([
      { label: "When", value: (x) => fmtDate(x.at) },
      { label: "Verdict", value: (x) => badge(x.verdict) },
      { label: "Score", num: true, value: (x) => x.score },
      { label: "Serial", value: (x) => x.serial || "–" },
      { label: "SKU", value: (x) => x.sku || "" },
      { label: "Country", value: (x) => x.country || "" },
      { label: "Device", value: (x) => h("span", { class: "mono" }, x.device) },
      { label: "Factors", value: (x) => (x.factors || []).map((f) => `${f.name} +${f.contribution}`).join(", ") },
    ], list.items, { empty: "No scans yet." }));
  };

  VIEWS.recalls = async (main, _p, _q, live) => {
    const list = await get("/v1/recalls?limit=200");
    if (!live()) return;
    const out = h("div");
    main.append(h("h1", {}, "Recalls"), h("p", { class: "muted" }, "Recall a product or a whole batch from its batch page."), out);
    main.append(table([
      { label: "When", value: (r) => fmtDate(r.created_at) },
      { label: "Scope", value: (r) => r.scope },
      { label: "Products", num: true, value: (r) => r.products },
      { label: "Reason", value: (r) => r.reason },
      { label: "State", value: (r) => badge(r.withdrawn_at ? "withdrawn" : "recalled") },
      { label: "", value: (r) => (isTenantAdmin() && !r.withdrawn_at ? h("button", { class: "small secondary", onclick: async () => {
        try { await post(`/v1/recalls/${r.id}/withdraw`, { reason: "withdrawn from the console" }); route(); } catch (err) { clear(out).appendChild(message("err", err.message)); }
      } }, "Withdraw") : "") },
    ], list.items, { empty: "No recalls." }));
  };

  // A tenant's API keys, for staff on the tenant's page and for a tenant admin on their own: create
  // (the secret shown once, in `out`) and revoke.
  function keysPanel(main, out, { manage, inputId, placeholder, items, create, keyPath }) {
    if (manage) {
      const name = h("input", { id: inputId, required: true, placeholder });
      main.append(h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const k = await post(create, { name: name.value });
          clear(out).append(message("info", "Copy this key now: it is shown only once."), h("p", { class: "secret", id: "new-key" }, k.key));
        } catch (err) { clear(out).appendChild(message("err", err.message)); }
      } }, h("label", {}, "New key", name), h("button", { type: "submit" }, "Create key")));
    }
    main.append(table([
      { label: "Name", value: (k) => k.name },
      { label: "Prefix", value: (k) => h("span", { class: "mono" }, k.prefix) },
      { label: "Scopes", value: (k) => k.scopes.join(" ") },
      { label: "Last used", value: (k) => fmtDate(k.last_used_at) },
      { label: "State", value: (k) => badge(k.revoked_at ? "revoked" : "active") },
      { label: "", value: (k) => (manage && !k.revoked_at ? h("button", { class: "small danger", onclick: async () => { try { await api("DELETE", keyPath(k)); route(); } catch (err) { clear(out).appendChild(message("err", err.message)); } } }, "Revoke") : "") },
    ], items, { empty: "No keys." }));
  }

  VIEWS.keys = async (main, _p, _q, live) => {
    const list = await get("/v1/api-keys?limit=200");
    if (!live()) return;
    const out = h("div");
    main.append(h("h1", {}, "API keys"), out);
    keysPanel(main, out, {
      manage: isTenantAdmin(), inputId: "own-key-name", placeholder: "ERP integration", items: list.items,
      create: "/v1/api-keys", keyPath: (k) => `/v1/api-keys/${k.id}`,
    });
  };

  VIEWS.webhooks = async (main, _p, _q, live) => {
    const list = await get("/v1/webhooks?limit=200");
    if (!live()) return;
    const out = h("div");
    main.append(h("h1", {}, "Webhooks"), out);
    if (isTenantAdmin()) {
      const url = h("input", { id: "hook-url", type: "url", required: true, placeholder: "https://erp.example.com/voketag" });
      const events = h("input", { id: "hook-events", value: "batch.registered,batch.anchored,scan.suspicious,fraud.reported" });
      main.append(h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const w = await post("/v1/webhooks", { url: url.value, events: events.value.split(",").map((x) => x.trim()).filter(Boolean) });
          clear(out).append(message("info", "Signing secret (shown once):"), h("p", { class: "secret" }, w.secret));
        } catch (err) { clear(out).appendChild(message("err", err.message)); }
      } }, h("label", {}, "Endpoint URL", url), h("label", {}, "Events", events), h("button", { type: "submit" }, "Add endpoint")));
    }
    const act = (label, fn, cls) => h("button", { class: `small ${cls || "secondary"}`, onclick: async () => { try { await fn(); route(); } catch (err) { clear(out).appendChild(message("err", err.message)); } } }, label);
    main.append(table([
      { label: "URL", value: (w) => w.url || "(callbacks)" },
      { label: "Events", value: (w) => (w.events || []).join(", ") },
      { label: "Status", value: (w) => badge(w.status) },
      { label: "", value: (w) => (isTenantAdmin() && w.kind !== "callback" ? h("div", { class: "actions" }, act("Send test", () => post(`/v1/webhooks/${w.id}/test`)), act("Delete", () => api("DELETE", `/v1/webhooks/${w.id}`), "danger")) : "") },
    ], list.items, { empty: "No webhook endpoints." }));
  };

  route();
})();
