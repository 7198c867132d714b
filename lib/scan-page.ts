// The consumer's verification page: server-rendered, readable without JavaScript, small enough for
// a slow phone, localised by Accept-Language. No inline script or style (the CSP forbids them).

export interface ScanPageData {
  verdict: "authentic" | "suspicious" | "recalled" | "invalid";
  risk: { score: number; level: string; factors: { name: string; contribution: number; detail: string }[] };
  product: { id: string; name: string; sku: string; serial: string; gtin: string | null; lot: string | null } | null;
  batch: { id: string; name: string | null } | null;
  brand: { name: string } | null;
  anchor: { status: string; tx_hash: string | null; proof_url: string } | null;
  scan: { count: number; first_scanned_at: string };
}

type Lang = "en" | "pt";

const TEXT: Record<Lang, Record<string, string>> = {
  en: {
    title: "Product verification",
    authentic: "Genuine product",
    authentic_sub: "This tag was issued by the brand and its record checks out.",
    suspicious: "Warning: this tag looks suspicious",
    suspicious_sub: "The tag is real, but how it has been scanned suggests it may have been copied.",
    recalled: "This product has been recalled",
    recalled_sub: "The manufacturer has recalled this product. Stop using it and contact the seller.",
    invalid: "This tag could not be verified",
    invalid_sub: "The code is not one the brand issued. The product may not be genuine.",
    product: "Product",
    brand: "Brand",
    batch: "Batch",
    serial: "Serial",
    lot: "Lot",
    scans: "Times scanned",
    first: "First scanned",
    anchor: "Public record",
    anchor_final: "Registered on a public blockchain",
    anchor_pending: "Being registered on a public blockchain",
    proof: "Download the proof",
    why: "Why",
    report: "Report a problem",
    privacy: "Privacy: we keep a hash of your device and network, never your IP address, and your location only if you share it, rounded to about 1 km.",
  },
  pt: {
    title: "Verificação do produto",
    authentic: "Produto original",
    authentic_sub: "Esta etiqueta foi emitida pela marca e o seu registo confere.",
    suspicious: "Atenção: esta etiqueta parece suspeita",
    suspicious_sub: "A etiqueta é real, mas a forma como tem sido lida sugere que pode ter sido copiada.",
    recalled: "Este produto foi recolhido",
    recalled_sub: "O fabricante recolheu este produto. Deixe de o usar e contacte o vendedor.",
    invalid: "Não foi possível verificar esta etiqueta",
    invalid_sub: "O código não foi emitido pela marca. O produto pode não ser original.",
    product: "Produto",
    brand: "Marca",
    batch: "Lote de produção",
    serial: "Número de série",
    lot: "Lote",
    scans: "Leituras",
    first: "Primeira leitura",
    anchor: "Registo público",
    anchor_final: "Registado numa blockchain pública",
    anchor_pending: "A ser registado numa blockchain pública",
    proof: "Descarregar a prova",
    why: "Porquê",
    report: "Comunicar um problema",
    privacy: "Privacidade: guardamos um resumo (hash) do seu dispositivo e rede, nunca o seu endereço IP, e a localização apenas se a partilhar, arredondada a cerca de 1 km.",
  },
};

/** Picks the best supported language from an Accept-Language header (q-values honoured). */
export function pickLang(header: string | undefined): Lang {
  if (!header) return "en";
  const ranked = header
    .split(",")
    .map((part) => {
      const [tag, ...params] = part.trim().split(";");
      const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
      return { tag: tag.toLowerCase(), q: q ? Number(q.slice(2)) || 0 : 1 };
    })
    .sort((a, b) => b.q - a.q);
  for (const { tag } of ranked) {
    if (tag.startsWith("pt")) return "pt";
    if (tag.startsWith("en")) return "en";
  }
  return "en";
}

export function escapeHtml(v: unknown): string {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export function renderScanPage(d: ScanPageData, opts: { lang?: string } = {}): string {
  const lang = pickLang(opts.lang);
  const t = TEXT[lang];
  const rows: [string, string | null | undefined][] = d.product
    ? [
        [t.product, d.product.name],
        [t.brand, d.brand?.name],
        [t.serial, d.product.serial],
        [t.lot, d.product.lot],
        [t.batch, d.batch?.name ?? d.batch?.id],
        [t.scans, String(d.scan.count)],
        [t.first, new Date(d.scan.first_scanned_at).toLocaleString(lang === "pt" ? "pt-PT" : "en-GB", { timeZone: "UTC" }) + " UTC"],
      ]
    : [];
  const reasons = d.verdict === "suspicious" ? d.risk.factors.filter((f) => f.contribution > 0) : [];
  const anchor = d.anchor
    ? `<section class="anchor"><h2>${t.anchor}</h2><p>${d.anchor.status === "final" ? t.anchor_final : t.anchor_pending}</p>${
        d.anchor.status === "final" ? `<p><a href="${escapeHtml(d.anchor.proof_url)}">${t.proof}</a></p>` : ""
      }</section>`
    : "";
  return `<!doctype html>
<html lang="${lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${t.title}</title>
<link rel="stylesheet" href="/assets/scan.css">
</head>
<body>
<main>
<section class="verdict v-${d.verdict}" role="status">
<h1>${t[d.verdict]}</h1>
<p>${t[`${d.verdict}_sub`]}</p>
</section>
${reasons.length ? `<section class="why"><h2>${t.why}</h2><ul>${reasons.map((f) => `<li>${escapeHtml(f.detail)}</li>`).join("")}</ul></section>` : ""}
${rows.length ? `<dl>${rows.filter(([, v]) => v).map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(v)}</dd>`).join("")}</dl>` : ""}
${anchor}
<footer><p class="privacy">${t.privacy}</p></footer>
</main>
</body>
</html>`;
}

export const SCAN_PAGE_CSS = `*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f6f7f9}
main{max-width:34rem;margin:0 auto;padding:1rem}
.verdict{border-radius:12px;padding:1.25rem;margin-bottom:1rem;color:#fff}
.verdict h1{margin:0 0 .25rem;font-size:1.5rem}.verdict p{margin:0}
.v-authentic{background:#146c2e}.v-suspicious{background:#8a4b00}.v-recalled{background:#a4161a}.v-invalid{background:#3d3d3d}
section,dl{background:#fff;border-radius:12px;padding:1rem;margin:0 0 1rem}
h2{font-size:1.1rem;margin:0 0 .5rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem}dt{color:#4a4a4a}dd{margin:0;font-weight:600;word-break:break-word}
a{color:#1d4ed8}.privacy{font-size:.85rem;color:#4a4a4a}
`;
