// The consumer's verification page and its small companions (thank-you, error, privacy pages):
// server-rendered, readable and usable without JavaScript (the report form is a plain POST), small
// enough for a slow phone, localised by Accept-Language (English, Portuguese). No inline script or
// style: the CSP forbids them; the one script, /assets/scan.js, only offers to share a location.
//
// Page tokens: the report form and the "share my location" form carry an HMAC-signed token (made
// and checked by the scan service with its secret), so a form can only be posted by someone who was
// served the page (no cross-site forged reports), a location can only be added to a scan by the one
// who made it, and a double submission is recognised by its nonce.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export type Lang = "en" | "pt";
export type PageVerdict = "authentic" | "suspicious" | "recalled" | "invalid";

export interface ScanPageData {
  verdict: PageVerdict;
  risk: { score: number; level: string; factors: { name: string; contribution: number; detail: string }[] };
  product: { id: string; name: string; sku: string; serial: string; gtin: string | null; lot: string | null; recall_reason?: string | null } | null;
  batch: { id: string; name: string | null } | null;
  brand: { name: string } | null;
  anchor: { status: string; tx_hash: string | null; proof_url: string } | null;
  scan: { id: string; count: number; first_scanned_at: string };
  /** Page-only fields from scan.verify: signed form tokens, and whether a location was shared. */
  page?: { report_form?: string | null; locate_receipt?: string | null; located?: boolean; country?: string | null };
}

export const REPORT_REASONS = ["counterfeit", "tampered_tag", "wrong_product", "damaged", "other"] as const;

const EN = {
  title: "Product verification",
  authentic: "Genuine product",
  authentic_sub: "This tag was issued by the brand and its record checks out.",
  suspicious: "Warning: this tag looks suspicious",
  suspicious_sub: "The tag is real, but the way it has been scanned suggests it may have been copied. Be careful before you buy.",
  recalled: "This product has been recalled",
  recalled_sub: "The manufacturer has recalled this product. Stop using it and contact the seller or the brand.",
  recall_notice: "The manufacturer's notice:",
  invalid: "This tag could not be verified",
  invalid_sub: "The code was not issued by the brand, or the link is damaged. The product may not be genuine.",
  why: "Why we are warning you",
  product: "Product",
  brand: "Brand",
  batch: "Batch",
  serial: "Serial number",
  lot: "Lot",
  gtin: "GTIN",
  scans: "Times scanned",
  first: "First scanned",
  anchor: "Public record",
  anchor_final: "The brand's registration of this product is sealed on a public blockchain.",
  anchor_pending: "The brand's registration of this product is being sealed on a public blockchain; the proof will be available soon.",
  proof: "View the proof",
  tx: "Transaction",
  locate_title: "Help us check this product",
  locate_text: "You may share your approximate location (rounded to about 1 km) so we can spot copies sold far away. It is optional.",
  locate_button: "Share my location",
  locate_wait: "Waiting for your location…",
  locate_denied: "Location not shared. That is fine: the check above stands.",
  located: "Thank you: your approximate location was added to this check.",
  report: "Report a problem",
  report_intro: "Something wrong with this product or its tag? Tell the brand.",
  reason: "What is wrong?",
  choose: "Choose…",
  r_counterfeit: "I think it is a fake",
  r_tampered_tag: "The tag looks tampered with",
  r_wrong_product: "The tag belongs to another product",
  r_damaged: "The product or tag is damaged",
  r_other: "Something else",
  details: "Details (optional)",
  contact: "Your email or phone (optional, only if you want an answer)",
  send: "Send report",
  invalid_help: "If you bought this product as genuine, keep the receipt and contact the seller or the brand.",
  privacy_link: "Privacy",
  privacy_short: "We keep a hash of your device and network, never your IP address; your location only if you share it, rounded to about 1 km.",
  thanks_title: "Thank you",
  thanks: "Your report was sent to the brand. It helps protect other buyers.",
  thanks_contact: "If you left a contact, the brand may get in touch with you.",
  error_unavailable_title: "Verification is temporarily unavailable",
  error_unavailable: "We could not check this product right now. Nothing is wrong with your product because of this: please try again in a moment.",
  error_bad_title: "This request could not be processed",
  error_bad: "Some of the information sent was not valid. Go back and try again.",
  error_form_title: "This form has expired",
  error_form: "Scan the tag again to get a fresh page, then send the form.",
  error_not_found_title: "Page not found",
  error_not_found: "This link is not a product link we know. Check that you scanned the whole code.",
  retry: "Try again",
  privacy_title: "Privacy",
  privacy_body: [
    "When you check a product we record the scan in a tamper-evident ledger so the brand can detect copied tags.",
    "We store: the time, the tag, the verdict, a one-way hash of your browser (user agent and language) and of your network (the first three parts of an IPv4 address, or the first 48 bits of an IPv6 one). We never store your IP address.",
    "Your location is used only if you choose to share it, and is rounded to about 1 km before it is stored.",
    "If you send a report, we store what you wrote and, only if you give one, your contact so the brand can answer you.",
    "Scan records are used to protect buyers and brands against counterfeits, and are not sold.",
  ],
  fl: {
    scan_count: "Scanned unusually often",
    distinct_devices: "Scanned from many different devices",
    impossible_travel: "Scanned in places too far apart for the time between the scans",
    grey_market: "Scanned outside the regions this product is sold in",
    enumeration: "This device or network has scanned many different tags",
    fraud_reports: "People have reported problems with this product",
    product_status: "The manufacturer has withdrawn this product",
    not_anchored: "Not yet sealed on the public record",
  } as Record<string, string>,
};

type Text = typeof EN;

const PT: Text = {
  title: "Verificação do produto",
  authentic: "Produto original",
  authentic_sub: "Esta etiqueta foi emitida pela marca e o seu registo confere.",
  suspicious: "Atenção: esta etiqueta parece suspeita",
  suspicious_sub: "A etiqueta é real, mas a forma como tem sido lida sugere que pode ter sido copiada. Tenha cuidado antes de comprar.",
  recalled: "Este produto foi recolhido",
  recalled_sub: "O fabricante recolheu este produto. Deixe de o usar e contacte o vendedor ou a marca.",
  recall_notice: "Aviso do fabricante:",
  invalid: "Não foi possível verificar esta etiqueta",
  invalid_sub: "O código não foi emitido pela marca, ou o link está danificado. O produto pode não ser original.",
  why: "Porque o estamos a avisar",
  product: "Produto",
  brand: "Marca",
  batch: "Lote de produção",
  serial: "Número de série",
  lot: "Lote",
  gtin: "GTIN",
  scans: "Leituras",
  first: "Primeira leitura",
  anchor: "Registo público",
  anchor_final: "O registo deste produto pela marca está selado numa blockchain pública.",
  anchor_pending: "O registo deste produto pela marca está a ser selado numa blockchain pública; a prova ficará disponível em breve.",
  proof: "Ver a prova",
  tx: "Transação",
  locate_title: "Ajude-nos a verificar este produto",
  locate_text: "Pode partilhar a sua localização aproximada (arredondada a cerca de 1 km) para detetarmos cópias vendidas longe. É opcional.",
  locate_button: "Partilhar a minha localização",
  locate_wait: "À espera da sua localização…",
  locate_denied: "Localização não partilhada. Não faz mal: a verificação acima mantém-se.",
  located: "Obrigado: a sua localização aproximada foi acrescentada a esta verificação.",
  report: "Comunicar um problema",
  report_intro: "Algo de errado com este produto ou com a etiqueta? Diga à marca.",
  reason: "O que está errado?",
  choose: "Escolha…",
  r_counterfeit: "Acho que é falso",
  r_tampered_tag: "A etiqueta parece adulterada",
  r_wrong_product: "A etiqueta pertence a outro produto",
  r_damaged: "O produto ou a etiqueta estão danificados",
  r_other: "Outra coisa",
  details: "Detalhes (opcional)",
  contact: "O seu email ou telefone (opcional, só se quiser resposta)",
  send: "Enviar",
  invalid_help: "Se comprou este produto como original, guarde o recibo e contacte o vendedor ou a marca.",
  privacy_link: "Privacidade",
  privacy_short: "Guardamos um resumo (hash) do seu dispositivo e da sua rede, nunca o seu endereço IP; a localização apenas se a partilhar, arredondada a cerca de 1 km.",
  thanks_title: "Obrigado",
  thanks: "O seu relato foi enviado à marca. Ajuda a proteger outros compradores.",
  thanks_contact: "Se deixou um contacto, a marca poderá falar consigo.",
  error_unavailable_title: "Verificação temporariamente indisponível",
  error_unavailable: "Não foi possível verificar este produto agora. Isto não significa que haja algo de errado com o produto: tente de novo daqui a pouco.",
  error_bad_title: "Não foi possível processar o pedido",
  error_bad: "Alguma da informação enviada não era válida. Volte atrás e tente de novo.",
  error_form_title: "Este formulário expirou",
  error_form: "Leia a etiqueta de novo para obter uma página nova e depois envie o formulário.",
  error_not_found_title: "Página não encontrada",
  error_not_found: "Este link não é um link de produto que conheçamos. Verifique se leu o código completo.",
  retry: "Tentar de novo",
  privacy_title: "Privacidade",
  privacy_body: [
    "Quando verifica um produto registamos a leitura num registo à prova de adulteração, para que a marca possa detetar etiquetas copiadas.",
    "Guardamos: a hora, a etiqueta, o resultado, um resumo irreversível (hash) do seu navegador (agente e idioma) e da sua rede (as três primeiras partes de um endereço IPv4, ou os primeiros 48 bits de um IPv6). Nunca guardamos o seu endereço IP.",
    "A sua localização só é usada se a quiser partilhar, e é arredondada a cerca de 1 km antes de ser guardada.",
    "Se enviar um relato, guardamos o que escreveu e, apenas se o indicar, o seu contacto para que a marca lhe possa responder.",
    "Os registos de leitura servem para proteger compradores e marcas contra contrafações e não são vendidos.",
  ],
  fl: {
    scan_count: "Lido um número invulgar de vezes",
    distinct_devices: "Lido em muitos dispositivos diferentes",
    impossible_travel: "Lido em locais demasiado distantes para o tempo entre as leituras",
    grey_market: "Lido fora das regiões onde este produto é vendido",
    enumeration: "Este dispositivo ou rede leu muitas etiquetas diferentes",
    fraud_reports: "Foram comunicados problemas com este produto",
    product_status: "O fabricante retirou este produto",
    not_anchored: "Ainda não selado no registo público",
  },
};

const TEXT: Record<Lang, Text> = { en: EN, pt: PT };

/** Picks the best supported language from an Accept-Language header (q-values honoured, q=0 excluded). */
export function pickLang(header: string | undefined | null): Lang {
  if (!header) return "en";
  const ranked = String(header)
    .slice(0, 512)
    .split(",")
    .map((part, i) => {
      const [tag, ...params] = part.trim().split(";");
      const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
      const n = q ? Number(q.slice(2)) : 1;
      return { tag: tag.trim().toLowerCase(), q: Number.isFinite(n) ? n : 0, i };
    })
    .filter((x) => x.q > 0)
    .sort((a, b) => b.q - a.q || a.i - b.i);
  for (const { tag } of ranked) {
    if (tag === "pt" || tag.startsWith("pt-")) return "pt";
    if (tag === "en" || tag.startsWith("en-")) return "en";
  }
  return "en";
}

export function escapeHtml(v: unknown): string {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

function layout(lang: Lang, title: string, body: string): string {
  const t = TEXT[lang];
  return `<!doctype html>
<html lang="${lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/assets/scan.css">
</head>
<body>
<main>
${body}
<footer><p class="privacy">${t.privacy_short} <a href="/privacy">${t.privacy_link}</a></p></footer>
</main>
</body>
</html>`;
}

const ICON: Record<PageVerdict, string> = { authentic: "✓", suspicious: "!", recalled: "!", invalid: "✕" };

function formatTime(iso: string, lang: Lang): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleString(lang === "pt" ? "pt-PT" : "en-GB", { timeZone: "UTC", dateStyle: "medium", timeStyle: "short" }) + " UTC";
}

/** The verification page. `token` is the tag's token, used for the forms' targets. */
export function renderScanPage(d: ScanPageData, opts: { lang?: string | null; token?: string | null } = {}): string {
  const lang = pickLang(opts.lang);
  const t = TEXT[lang];
  const parts: string[] = [];
  parts.push(`<section class="verdict v-${d.verdict}" role="status" aria-live="polite">
<p class="icon" aria-hidden="true">${ICON[d.verdict]}</p>
<h1>${t[d.verdict]}</h1>
<p>${t[`${d.verdict}_sub`]}</p>
${d.verdict === "recalled" && d.product?.recall_reason ? `<p class="notice">${t.recall_notice} ${escapeHtml(d.product.recall_reason)}</p>` : ""}</section>`);

  const reasons = d.verdict === "suspicious" || d.verdict === "recalled" ? d.risk.factors.filter((f) => f.contribution > 0) : [];
  if (reasons.length) {
    const items = reasons
      .map((f) => `<li><strong>${escapeHtml(t.fl[f.name] ?? f.name)}</strong>${lang === "en" ? `<br><span class="detail">${escapeHtml(f.detail)}</span>` : ""}</li>`)
      .join("");
    parts.push(`<section class="why"><h2>${t.why}</h2><ul>${items}</ul></section>`);
  }

  if (d.product) {
    const rows: [string, string | null | undefined][] = [
      [t.product, d.product.name],
      [t.brand, d.brand?.name],
      [t.serial, d.product.serial],
      [t.lot, d.product.lot],
      [t.gtin, d.product.gtin],
      [t.batch, d.batch?.name || d.batch?.id],
      [t.scans, String(d.scan.count)],
      [t.first, formatTime(d.scan.first_scanned_at, lang)],
    ];
    parts.push(`<dl class="facts">${rows
      .filter(([, v]) => v)
      .map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(v)}</dd>`)
      .join("")}</dl>`);
  } else {
    parts.push(`<section><p>${t.invalid_help}</p></section>`);
  }

  if (d.anchor) {
    const final = d.anchor.status === "final";
    const tx = final && d.anchor.tx_hash ? `<p class="tx">${t.tx}: <code>${escapeHtml(d.anchor.tx_hash.slice(0, 10))}…${escapeHtml(d.anchor.tx_hash.slice(-8))}</code></p>` : "";
    parts.push(`<section class="anchor a-${final ? "final" : "pending"}"><h2>${t.anchor}</h2><p>${final ? t.anchor_final : t.anchor_pending}</p>${tx}${
      final ? `<p><a href="${escapeHtml(d.anchor.proof_url)}">${t.proof}</a></p>` : ""
    }</section>`);
  }

  const token = opts.token ? encodeURIComponent(opts.token) : null;
  if (d.page?.located) {
    parts.push(`<section class="locate"><p>${t.located}</p></section>`);
  } else if (token && d.product && d.page?.locate_receipt) {
    // Hidden until /assets/scan.js finds a geolocation API: without script there is nothing to click.
    parts.push(`<section id="locate" class="locate" hidden data-wait="${escapeHtml(t.locate_wait)}" data-denied="${escapeHtml(t.locate_denied)}">
<h2>${t.locate_title}</h2>
<p>${t.locate_text}</p>
<form id="locate-form" method="post" action="/r/${token}/locate">
<input type="hidden" name="scan_id" value="${escapeHtml(d.scan.id)}">
<input type="hidden" name="receipt" value="${escapeHtml(d.page.locate_receipt)}">
<input type="hidden" name="lat" value=""><input type="hidden" name="lng" value=""><input type="hidden" name="accuracy_m" value="">
<button type="button" id="locate-btn">${t.locate_button}</button>
<p id="locate-msg" class="msg" role="status"></p>
</form>
</section>`);
  }

  if (token && d.product && d.page?.report_form) {
    const options = REPORT_REASONS.map((r) => `<option value="${r}">${t[`r_${r}`]}</option>`).join("");
    parts.push(`<section class="report">
<details${d.verdict === "authentic" ? "" : " open"}>
<summary><h2>${t.report}</h2></summary>
<p>${t.report_intro}</p>
<form method="post" action="/r/${token}/report">
<input type="hidden" name="form" value="${escapeHtml(d.page.report_form)}">
<label for="reason">${t.reason}</label>
<select id="reason" name="reason" required><option value="">${t.choose}</option>${options}</select>
<label for="details">${t.details}</label>
<textarea id="details" name="details" maxlength="2000" rows="4"></textarea>
<label for="contact">${t.contact}</label>
<input id="contact" name="contact" type="text" maxlength="320" autocomplete="email">
<button type="submit">${t.send}</button>
</form>
</details>
</section>`);
  }
  if (token && d.page?.locate_receipt && !d.page?.located) parts.push(`<script src="/assets/scan.js" defer></script>`);
  return layout(lang, `${t[d.verdict]} · ${t.title}`, parts.join("\n"));
}

export function renderThankYouPage(opts: { lang?: string | null; contact?: boolean } = {}): string {
  const lang = pickLang(opts.lang);
  const t = TEXT[lang];
  return layout(lang, t.thanks_title, `<section class="verdict v-thanks" role="status"><h1>${t.thanks_title}</h1><p>${t.thanks}</p>${opts.contact ? `<p>${t.thanks_contact}</p>` : ""}</section>`);
}

export type ErrorPageKind = "unavailable" | "bad" | "form" | "not_found";

export function renderErrorPage(kind: ErrorPageKind, opts: { lang?: string | null } = {}): string {
  const lang = pickLang(opts.lang);
  const t = TEXT[lang];
  const title = t[`error_${kind}_title`];
  return layout(lang, title, `<section class="verdict v-error" role="alert"><h1>${title}</h1><p>${t[`error_${kind}`]}</p></section>`);
}

export function renderPrivacyPage(opts: { lang?: string | null } = {}): string {
  const lang = pickLang(opts.lang);
  const t = TEXT[lang];
  return layout(lang, t.privacy_title, `<section class="doc"><h1>${t.privacy_title}</h1>${t.privacy_body.map((p) => `<p>${p}</p>`).join("")}</section>`);
}

// ---------------------------------------------------------------------------------------------
// Signed page tokens: `<issued-at seconds>.<nonce>.<HMAC>`, bound to a purpose and a subject (the
// tag id for a report form, the scan id for a location receipt).

export type PageTokenPurpose = "report" | "locate";

function pageMac(secret: Buffer, purpose: PageTokenPurpose, subject: string, issuedAt: number, nonce: string): string {
  return createHmac("sha256", secret).update(`voketag:page:v1:${purpose}:${subject}:${issuedAt}:${nonce}`).digest("base64url");
}

export function signPageToken(secret: Buffer, purpose: PageTokenPurpose, subject: string, now: Date, nonce = randomBytes(12).toString("base64url")): string {
  const issuedAt = Math.floor(now.getTime() / 1000);
  return `${issuedAt}.${nonce}.${pageMac(secret, purpose, subject, issuedAt, nonce)}`;
}

export type PageTokenCheck = { ok: true; nonce: string; issuedAt: number } | { ok: false; reason: "malformed" | "bad_signature" | "expired" };

export function verifyPageToken(secret: Buffer, purpose: PageTokenPurpose, subject: string, token: unknown, now: Date, maxAgeSeconds: number): PageTokenCheck {
  if (typeof token !== "string" || token.length > 200) return { ok: false, reason: "malformed" };
  const m = /^(\d{1,12})\.([A-Za-z0-9_-]{8,32})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return { ok: false, reason: "malformed" };
  const issuedAt = Number(m[1]);
  const expected = Buffer.from(pageMac(secret, purpose, subject, issuedAt, m[2]));
  const given = Buffer.from(m[3]);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, reason: "bad_signature" };
  const age = Math.floor(now.getTime() / 1000) - issuedAt;
  // A little clock skew between nodes is tolerated; a token from the future is not.
  if (age > maxAgeSeconds || age < -300) return { ok: false, reason: "expired" };
  return { ok: true, nonce: m[2], issuedAt };
}

// ---------------------------------------------------------------------------------------------
// Assets

export const SCAN_PAGE_CSS = `*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f1f3f6}
main{max-width:34rem;margin:0 auto;padding:.75rem}
section,dl{background:#fff;border-radius:12px;padding:1rem;margin:0 0 .75rem}
section>:first-child{margin-top:0}section>:last-child{margin-bottom:0}
.verdict .notice{margin-top:.6rem;font-weight:600}
h1{font-size:1.45rem;line-height:1.25;margin:0 0 .35rem}h2{font-size:1.1rem;margin:0 0 .5rem}
.verdict{color:#fff;padding:1.25rem}.verdict p{margin:0}
.verdict .icon{float:right;width:2.5rem;height:2.5rem;margin:0 0 .5rem .5rem;border:3px solid #fff;border-radius:50%;text-align:center;font:700 1.5rem/2.1rem system-ui,sans-serif}
.v-authentic{background:#146c2e}.v-suspicious{background:#8a4b00}.v-recalled{background:#a4161a}.v-invalid{background:#3d3d3d}
.v-thanks{background:#1d4ed8}.v-error{background:#3d3d3d}
.why ul{margin:0;padding-left:1.2rem}.why li{margin:.35rem 0}.detail{color:#4a4a4a;font-size:.92rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem}dt{color:#4a4a4a}dd{margin:0;font-weight:600;word-break:break-word}
.a-final{border-left:6px solid #146c2e}.a-pending{border-left:6px solid #8a6d00}
code{font-size:.9rem}a{color:#1d4ed8}
summary{cursor:pointer;list-style:revert}summary h2{display:inline;margin:0}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
select,textarea,input[type=text]{width:100%;font:inherit;padding:.6rem;border:1px solid #6b6b6b;border-radius:8px;background:#fff;color:#1a1a1a}
button{margin-top:.9rem;font:inherit;font-weight:600;padding:.7rem 1.1rem;border:0;border-radius:8px;background:#1d4ed8;color:#fff;min-height:44px;cursor:pointer}
button:disabled{background:#6b6b6b}
:focus-visible{outline:3px solid #b45309;outline-offset:2px}
.msg{margin:.5rem 0 0;color:#4a4a4a}
.privacy{font-size:.85rem;color:#4a4a4a;padding:0 .25rem}
`;

// Offers to share a location; only on the consumer's click does the browser ask. The form then
// re-submits this scan (its id and signed receipt) with coordinates: the server adds the location
// to the scan already recorded, so nothing is counted twice.
export const SCAN_PAGE_JS = `(function () {
  "use strict";
  var card = document.getElementById("locate");
  if (!card || !("geolocation" in navigator)) return;
  var form = document.getElementById("locate-form");
  var btn = document.getElementById("locate-btn");
  var msg = document.getElementById("locate-msg");
  card.hidden = false;
  btn.addEventListener("click", function () {
    btn.disabled = true;
    msg.textContent = card.getAttribute("data-wait");
    navigator.geolocation.getCurrentPosition(function (p) {
      form.elements.lat.value = String(p.coords.latitude);
      form.elements.lng.value = String(p.coords.longitude);
      form.elements.accuracy_m.value = String(Math.round(p.coords.accuracy || 0));
      form.submit();
    }, function () {
      btn.disabled = false;
      msg.textContent = card.getAttribute("data-denied");
    }, { enableHighAccuracy: false, timeout: 15000, maximumAge: 300000 });
  });
})();
`;

// ---------------------------------------------------------------------------------------------
// Errors on page routes: a consumer gets a page in their language with the right status, never JSON.

const UNAVAILABLE_ERRORS = new Set([
  "ServiceNotFoundError",
  "ServiceNotAvailableError",
  "RequestTimeoutError",
  "RequestRejectedError",
  "QueueIsFullError",
  "BrokerDisconnectedError",
  "CircuitBreakerOpenError",
]);

export function pageErrorOf(err: any): { status: number; kind: ErrorPageKind; retryAfter?: number } {
  const code = typeof err?.code === "number" ? err.code : 500;
  if (UNAVAILABLE_ERRORS.has(err?.name) || code === 503 || code === 504) return { status: 503, kind: "unavailable", retryAfter: Number(err?.data?.retry_after) || 5 };
  if (err?.type === "FORM_EXPIRED") return { status: 400, kind: "form" };
  if (err?.name === "ValidationError") return { status: 400, kind: "bad" };
  if (code === 404) return { status: 404, kind: "not_found" };
  if (code === 429) return { status: 429, kind: "unavailable", retryAfter: Number(err?.data?.retry_after) || 1 };
  if (code >= 400 && code < 500) return { status: code, kind: "bad" };
  return { status: 500, kind: "unavailable" };
}

/**
 * Runs a consumer page's handler with `meta` being the Moleculer context's meta: HTML, never cached,
 * and any error as a page in the consumer's language with the right status (and Retry-After).
 */
export async function consumerPage(meta: Record<string, any>, render: () => Promise<string>): Promise<string> {
  try {
    const html = await render();
    meta.$responseType = "text/html; charset=utf-8";
    meta.$responseHeaders = { ...(meta.$responseHeaders || {}), "Cache-Control": "no-store" };
    return html;
  } catch (err) {
    const e = pageErrorOf(err);
    meta.$statusCode = e.status;
    meta.$responseType = "text/html; charset=utf-8";
    meta.$responseHeaders = { "Cache-Control": "no-store", ...(e.retryAfter && { "Retry-After": String(e.retryAfter) }) };
    return renderErrorPage(e.kind, { lang: meta.client?.acceptLanguage });
  }
}
