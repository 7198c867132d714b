import {
  pickLang,
  renderScanPage,
  renderThankYouPage,
  renderErrorPage,
  renderPrivacyPage,
  signPageToken,
  verifyPageToken,
  pageErrorOf,
  consumerPage,
  escapeHtml,
  SCAN_PAGE_CSS,
  SCAN_PAGE_JS,
  ScanPageData,
} from "../../lib/scan-page";

const TOKEN = "k1.KnND1cGcTYC9lB0F5FTYzQ.q7wDOZOFxyk7SqnPGFphQA";

function data(over: Partial<ScanPageData> = {}): ScanPageData {
  return {
    verdict: "authentic",
    risk: {
      score: 0,
      level: "low",
      factors: [
        { name: "impossible_travel", contribution: 0, detail: "No journey." },
        { name: "grey_market", contribution: 0, detail: "In market." },
      ],
    },
    product: { id: "2a7343d5-c19c-4d80-bd94-1d05e454d8cd", name: "Diver 100", sku: "W-100", serial: "SN0001", gtin: "09506000134352", lot: "L1" },
    batch: { id: "b", name: "Spring 2026" },
    brand: { name: "Acme Watches" },
    anchor: { status: "final", tx_hash: "0x" + "ab".repeat(32), proof_url: "https://v.example/v1/products/2a7343d5-c19c-4d80-bd94-1d05e454d8cd/proof" },
    scan: { id: "572441f4-46b1-4377-b4e2-55ea5d67174e", count: 2, first_scanned_at: "2026-03-01T10:00:00.000Z" },
    page: { report_form: "1.abcdefghij.x", locate_receipt: "1.abcdefghij.y", located: false },
    ...over,
  };
}

const labelsCover = (html: string) => {
  const ids = [...html.matchAll(/<(?:select|textarea|input)(?![^>]*type="hidden")[^>]*\bid="([^"]+)"/g)].map((m) => m[1]);
  for (const id of ids) expect(html).toContain(`<label for="${id}">`);
  return ids;
};

describe("pickLang", () => {
  it.each([
    [undefined, "en"],
    ["", "en"],
    ["pt-BR,pt;q=0.9,en;q=0.8", "pt"],
    ["pt-PT", "pt"],
    ["en-US,en;q=0.9,pt;q=0.8", "en"],
    ["fr-FR,fr;q=0.9,pt;q=0.5,en;q=0.4", "pt"],
    ["de, en;q=0.3, pt;q=0.7", "pt"],
    ["pt;q=0, en", "en"],
    ["ptx, fr", "en"],
    ["*", "en"],
    [";;;,,q=", "en"],
  ])("%p -> %p", (header, lang) => expect(pickLang(header as any)).toBe(lang));
});

describe("renderScanPage", () => {
  it.each(["authentic", "suspicious", "recalled", "invalid"] as const)("renders %s in words, colour class and the page language", (verdict) => {
    const en = renderScanPage(data({ verdict, ...(verdict === "invalid" && { product: null, batch: null, brand: null, anchor: null }) }), { token: TOKEN });
    const pt = renderScanPage(data({ verdict, ...(verdict === "invalid" && { product: null, batch: null, brand: null, anchor: null }) }), { lang: "pt-BR", token: TOKEN });
    expect(en).toContain('<html lang="en">');
    expect(pt).toContain('<html lang="pt">');
    expect(en).toContain(`class="verdict v-${verdict}"`);
    expect(SCAN_PAGE_CSS).toContain(`.v-${verdict}{background:`);
    const words = { authentic: ["Genuine product", "Produto original"], suspicious: ["looks suspicious", "parece suspeita"], recalled: ["has been recalled", "foi recolhido"], invalid: ["could not be verified", "Não foi possível verificar"] }[verdict];
    expect(en).toContain(words[0]);
    expect(pt).toContain(words[1]);
  });

  it("shows product, brand, batch, scans and the anchor proof link; the report form; the location offer", () => {
    const html = renderScanPage(data(), { token: TOKEN });
    for (const s of ["Diver 100", "Acme Watches", "Spring 2026", "SN0001", "L1", "09506000134352", "<dd>2</dd>", "1 Mar 2026"]) expect(html).toContain(s);
    expect(html).toContain('href="https://v.example/v1/products/2a7343d5-c19c-4d80-bd94-1d05e454d8cd/proof"');
    expect(html).toContain("sealed on a public blockchain");
    expect(html).toContain(`action="/r/${TOKEN}/report"`);
    expect(html).toContain('name="form" value="1.abcdefghij.x"');
    expect(html).toContain(`action="/r/${TOKEN}/locate"`);
    expect(html).toMatch(/<section id="locate" class="locate" hidden/);
    expect(html).toContain('<script src="/assets/scan.js" defer></script>');
    expect(labelsCover(html).sort()).toEqual(["contact", "details", "reason"]);
    expect(html).toContain('<a href="/privacy">');
  });

  it("says the anchor is pending without a dead proof link", () => {
    const html = renderScanPage(data({ anchor: { status: "pending", tx_hash: null, proof_url: "https://v.example/p" } }), { token: TOKEN });
    expect(html).toContain("being sealed");
    expect(html).not.toContain("https://v.example/p");
  });

  it("lists the reasons of a suspicious verdict, localised; hides them for an authentic one", () => {
    const factors = [
      { name: "impossible_travel", contribution: 60, detail: "Brazil then Portugal an hour later." },
      { name: "grey_market", contribution: 25, detail: "Outside BR." },
      { name: "scan_count", contribution: 0, detail: "idle" },
    ];
    const en = renderScanPage(data({ verdict: "suspicious", risk: { score: 85, level: "high", factors } }), { token: TOKEN });
    expect(en).toContain("Scanned in places too far apart");
    expect(en).toContain("Brazil then Portugal an hour later.");
    expect(en).not.toContain("idle");
    const pt = renderScanPage(data({ verdict: "suspicious", risk: { score: 85, level: "high", factors } }), { lang: "pt", token: TOKEN });
    expect(pt).toContain("Lido em locais demasiado distantes");
    expect(pt).not.toContain("Brazil then Portugal");
    const ok = renderScanPage(data({ risk: { score: 20, level: "low", factors } }), { token: TOKEN });
    expect(ok).not.toContain("Brazil then Portugal");
  });

  it("offers no report form and no location for an invalid tag, and advises what to do", () => {
    const html = renderScanPage(data({ verdict: "invalid", product: null, batch: null, brand: null, anchor: null, page: { report_form: null, locate_receipt: null } }), { token: "garbage" });
    expect(html).not.toContain("<form");
    expect(html).not.toContain("<script");
    expect(html).toContain("contact the seller");
  });

  it("thanks instead of offering the location again once it was shared", () => {
    const html = renderScanPage(data({ page: { report_form: "1.abcdefghij.x", locate_receipt: null, located: true } }), { token: TOKEN });
    expect(html).toContain("your approximate location was added");
    expect(html).not.toContain('id="locate-form"');
    expect(html).not.toContain("<script");
  });

  it("escapes everything that comes from a tenant or the URL", () => {
    const evil = '<script>alert(1)</script>"\'&';
    const html = renderScanPage(
      data({ product: { id: "x", name: evil, sku: evil, serial: evil, gtin: null, lot: evil }, brand: { name: evil }, batch: { id: "b", name: evil }, anchor: { status: "final", tx_hash: null, proof_url: 'javascript:alert(1)"' } }),
      { token: '"><script>x</script>' },
    );
    expect(html).not.toContain("<script>alert");
    expect(html).not.toContain('"><script>x');
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;");
    expect(html).toContain("/r/%22%3E%3Cscript%3Ex%3C%2Fscript%3E/report");
    expect(escapeHtml(null)).toBe("");
  });

  it("has no inline script or style (the CSP forbids them)", () => {
    for (const html of [renderScanPage(data(), { token: TOKEN }), renderThankYouPage(), renderErrorPage("unavailable"), renderPrivacyPage({ lang: "pt" })]) {
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    }
  });

  it("stays far under 50 KB with everything at its largest, stylesheet and script included", () => {
    const long = "W".repeat(256);
    const factors = Array.from({ length: 8 }, (_, i) => ({ name: ["scan_count", "distinct_devices", "impossible_travel", "grey_market", "enumeration", "fraud_reports", "product_status", "not_anchored"][i], contribution: 10, detail: "d".repeat(400) }));
    const html = renderScanPage(
      data({ verdict: "suspicious", risk: { score: 100, level: "high", factors }, product: { id: "x", name: long, sku: long, serial: long.slice(0, 128), gtin: "09506000134352", lot: long.slice(0, 20) }, brand: { name: long }, batch: { id: "b", name: long } }),
      { token: "t".repeat(200) },
    );
    const bytes = Buffer.byteLength(html) + Buffer.byteLength(SCAN_PAGE_CSS) + Buffer.byteLength(SCAN_PAGE_JS);
    expect(bytes).toBeLessThan(50 * 1024);
    expect(bytes).toBeLessThan(20 * 1024);
  });
});

describe("companion pages", () => {
  it("thank-you, error and privacy pages are localised", () => {
    expect(renderThankYouPage({ lang: "pt-BR", contact: true })).toContain("Obrigado");
    expect(renderThankYouPage({ lang: "en", contact: true })).toContain("may get in touch");
    expect(renderThankYouPage({ contact: false })).not.toContain("may get in touch");
    expect(renderErrorPage("unavailable", { lang: "pt" })).toContain("temporariamente indisponível");
    expect(renderErrorPage("form")).toContain("expired");
    expect(renderErrorPage("not_found")).toContain("not a product link");
    const privacy = renderPrivacyPage();
    expect(privacy).toContain("never store your IP address");
    expect(renderPrivacyPage({ lang: "pt" })).toContain("Nunca guardamos o seu endereço IP");
  });
});

describe("page tokens", () => {
  const secret = Buffer.alloc(32, 7);
  const now = new Date("2026-03-01T10:00:00Z");

  it("verify for their purpose, subject and secret only", () => {
    const t = signPageToken(secret, "report", "tag-1", now);
    expect(verifyPageToken(secret, "report", "tag-1", t, now, 3600)).toMatchObject({ ok: true, issuedAt: now.getTime() / 1000 });
    expect(verifyPageToken(secret, "locate", "tag-1", t, now, 3600)).toEqual({ ok: false, reason: "bad_signature" });
    expect(verifyPageToken(secret, "report", "tag-2", t, now, 3600)).toEqual({ ok: false, reason: "bad_signature" });
    expect(verifyPageToken(Buffer.alloc(32, 8), "report", "tag-1", t, now, 3600)).toEqual({ ok: false, reason: "bad_signature" });
    const [ts, nonce, mac] = t.split(".");
    expect(verifyPageToken(secret, "report", "tag-1", `${Number(ts) + 1}.${nonce}.${mac}`, now, 3600).ok).toBe(false);
    expect(verifyPageToken(secret, "report", "tag-1", `${ts}.${nonce}x.${mac}`, now, 3600).ok).toBe(false);
  });

  it("expire, and refuse ones from the future or malformed", () => {
    const t = signPageToken(secret, "report", "tag-1", now);
    expect(verifyPageToken(secret, "report", "tag-1", t, new Date(now.getTime() + 3601_000), 3600)).toEqual({ ok: false, reason: "expired" });
    expect(verifyPageToken(secret, "report", "tag-1", t, new Date(now.getTime() - 600_000), 3600)).toEqual({ ok: false, reason: "expired" });
    for (const bad of [undefined, 42, "", "a.b.c", "x".repeat(300), t + "="]) expect(verifyPageToken(secret, "report", "tag-1", bad, now, 3600)).toEqual({ ok: false, reason: "malformed" });
  });

  it("carry a fresh nonce each time (the report form's idempotency key)", () => {
    const a = verifyPageToken(secret, "report", "s", signPageToken(secret, "report", "s", now), now, 60);
    const b = verifyPageToken(secret, "report", "s", signPageToken(secret, "report", "s", now), now, 60);
    expect(a.ok && b.ok && a.nonce !== b.nonce).toBe(true);
  });
});

describe("page errors", () => {
  it.each([
    [{ name: "ServiceNotFoundError", code: 404 }, 503, "unavailable"],
    [{ name: "RequestTimeoutError", code: 504 }, 503, "unavailable"],
    [{ name: "MoleculerRetryableError", code: 503, data: { retry_after: 7 } }, 503, "unavailable"],
    [{ name: "MoleculerClientError", code: 400, type: "FORM_EXPIRED" }, 400, "form"],
    [{ name: "ValidationError", code: 422 }, 400, "bad"],
    [{ name: "MoleculerClientError", code: 404 }, 404, "not_found"],
    [{ name: "MoleculerClientError", code: 409 }, 409, "bad"],
    [new Error("boom"), 500, "unavailable"],
  ])("%p -> %p %p", (err, status, kind) => expect(pageErrorOf(err)).toMatchObject({ status, kind }));

  it("renders a page with Retry-After for a dependency that is down", async () => {
    const meta: any = { client: { acceptLanguage: "pt" } };
    const html = await consumerPage(meta, async () => {
      throw Object.assign(new Error("db down"), { name: "MoleculerRetryableError", code: 503, data: { retry_after: 5 } });
    });
    expect(meta).toMatchObject({ $statusCode: 503, $responseType: "text/html; charset=utf-8", $responseHeaders: { "Retry-After": "5", "Cache-Control": "no-store" } });
    expect(html).toContain('lang="pt"');
    const ok: any = {};
    expect(await consumerPage(ok, async () => "<p>hi</p>")).toBe("<p>hi</p>");
    expect(ok.$statusCode).toBeUndefined();
    expect(ok.$responseHeaders).toEqual({ "Cache-Control": "no-store" });
  });
});
