// Printable tags for a batch: a CSV for label printers' own software, one SVG sheet, and an A4 PDF
// of QR codes with their serials streamed page by page. One layout serves the SVG and the PDF, so a
// sheet previewed as SVG prints the same from the PDF.
import { qrMatrix, pdfRects, svgPathData, QUIET_ZONE } from "./qr";
import { A4, PdfStreamWriter, pdfString } from "./pdf";
import { toCsvLine } from "./csv";

export interface Label {
  /** What the QR code encodes: the GS1 Digital Link when the product has a GTIN, else the verification URL. */
  url: string;
  serial: string;
  sku?: string | null;
  name?: string | null;
  gtin?: string | null;
  lot?: string | null;
  tag_id?: string;
  token?: string;
  verification_url?: string;
  digital_link?: string | null;
}

export const LABEL_CSV_COLUMNS = ["serial", "url", "verification_url", "digital_link", "token", "tag_id", "gtin", "lot", "sku", "name"] as const;

export function labelCsvHeader(): string {
  return toCsvLine([...LABEL_CSV_COLUMNS]);
}

export function labelCsvLine(l: Label): string {
  return toCsvLine([l.serial, l.url, l.verification_url ?? l.url, l.digital_link ?? "", l.token ?? "", l.tag_id ?? "", l.gtin ?? "", l.lot ?? "", l.sku ?? "", l.name ?? ""]);
}

// A4, 10 mm margins, 4 × 6 labels of about 47 × 46 mm: a QR code of about 36 mm, which phones read
// from arm's length, with the serial and the product under it.
export const LAYOUT = {
  page: A4,
  margin: 28.35,
  columns: 4,
  rows: 6,
  qrSize: 100,
  serialFontSize: 9,
  nameFontSize: 6.5,
} as const;

export const LABELS_PER_PAGE = LAYOUT.columns * LAYOUT.rows;

interface Cell {
  /** Top-left of the QR code (quiet zone included), in points from the page's top-left corner. */
  x: number;
  y: number;
}

/** Where label `i` of a page puts its QR code (quiet zone included): points from the page's top-left corner. */
export function qrBox(i: number): { x: number; y: number; size: number } {
  const c = cell(i);
  return { x: c.x, y: c.y, size: LAYOUT.qrSize };
}

function cell(i: number): Cell {
  const cw = (LAYOUT.page.width - 2 * LAYOUT.margin) / LAYOUT.columns;
  const ch = (LAYOUT.page.height - 2 * LAYOUT.margin) / LAYOUT.rows;
  const col = i % LAYOUT.columns;
  const row = Math.floor(i / LAYOUT.columns) % LAYOUT.rows;
  return { x: LAYOUT.margin + col * cw + (cw - LAYOUT.qrSize) / 2, y: LAYOUT.margin + row * ch + 4 };
}

/** Shortens text to about `maxWidth` points in Helvetica at `fontSize` (average glyph ≈ 0.55 em). */
function fit(s: string, fontSize: number, maxWidth = LAYOUT.qrSize + 20): string {
  const max = Math.floor(maxWidth / (fontSize * 0.55));
  return s.length <= max ? s : s.slice(0, Math.max(1, max - 1)) + "…";
}

const r2 = (n: number) => Math.round(n * 100) / 100;

/** The content stream of one PDF page of up to LABELS_PER_PAGE labels. */
export function pdfPageContent(labels: Label[]): string {
  if (labels.length > LABELS_PER_PAGE) throw new RangeError(`at most ${LABELS_PER_PAGE} labels per page`);
  const H = LAYOUT.page.height;
  let out = "0 g\n";
  labels.forEach((l, i) => {
    const c = cell(i);
    const m = qrMatrix(l.url);
    const s = LAYOUT.qrSize / (m.size + 2 * QUIET_ZONE);
    // Module units, y downwards, origin at the first module (inside the quiet zone).
    out += `q ${r2(s)} 0 0 ${r2(-s)} ${r2(c.x + QUIET_ZONE * s)} ${r2(H - c.y - QUIET_ZONE * s)} cm\n${pdfRects(m)}\nQ\n`;
    const textX = r2(c.x + QUIET_ZONE * s);
    const serialY = r2(H - c.y - LAYOUT.qrSize - LAYOUT.serialFontSize + 2);
    out += `BT /F1 ${LAYOUT.serialFontSize} Tf ${textX} ${serialY} Td ${pdfString(fit(l.serial, LAYOUT.serialFontSize))} Tj ET\n`;
    const caption = [l.sku, l.name].filter(Boolean).join(" · ");
    if (caption) out += `BT /F1 ${LAYOUT.nameFontSize} Tf ${textX} ${r2(serialY - LAYOUT.nameFontSize - 2)} Td ${pdfString(fit(caption, LAYOUT.nameFontSize))} Tj ET\n`;
  });
  return out;
}

/**
 * The PDF, one page at a time: pulls pages of labels from `pages` only as the consumer reads, so
 * memory stays flat whatever the number of labels.
 */
export async function* labelsPdf(pages: AsyncIterable<Label[]>, info: { title?: string } = {}): AsyncGenerator<Buffer> {
  const w = new PdfStreamWriter(LAYOUT.page);
  yield w.begin();
  for await (const labels of pages) {
    for (let i = 0; i < labels.length; i += LABELS_PER_PAGE) yield w.page(pdfPageContent(labels.slice(i, i + LABELS_PER_PAGE)));
  }
  if (w.pageCount === 0) yield w.page("");
  yield w.end({ title: info.title });
}

function xml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "");
}

/** One A4 sheet as SVG (the same layout as a PDF page), in points; up to LABELS_PER_PAGE labels. */
export function svgSheet(labels: Label[], info: { title?: string } = {}): string {
  if (labels.length > LABELS_PER_PAGE) throw new RangeError(`at most ${LABELS_PER_PAGE} labels per sheet`);
  const { width, height } = LAYOUT.page;
  const parts = [
    `<?xml version="1.0" encoding="UTF-8"?>\n`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="210mm" height="297mm" viewBox="0 0 ${width} ${height}">\n`,
    info.title ? `<title>${xml(info.title)}</title>\n` : "",
    `<rect width="100%" height="100%" fill="#fff"/>\n`,
  ];
  labels.forEach((l, i) => {
    const c = cell(i);
    const m = qrMatrix(l.url);
    const s = LAYOUT.qrSize / (m.size + 2 * QUIET_ZONE);
    const x0 = r2(c.x + QUIET_ZONE * s);
    const y0 = r2(c.y + QUIET_ZONE * s);
    parts.push(
      `<g><title>${xml(l.url)}</title>` +
        `<path transform="translate(${x0} ${y0}) scale(${r2(s)})" shape-rendering="crispEdges" fill="#000" d="${svgPathData(m)}"/>` +
        `<text x="${x0}" y="${r2(c.y + LAYOUT.qrSize + LAYOUT.serialFontSize - 2)}" font-family="Helvetica, Arial, sans-serif" font-size="${LAYOUT.serialFontSize}">${xml(fit(l.serial, LAYOUT.serialFontSize))}</text>`,
    );
    const caption = [l.sku, l.name].filter(Boolean).join(" · ");
    if (caption)
      parts.push(
        `<text x="${x0}" y="${r2(c.y + LAYOUT.qrSize + LAYOUT.serialFontSize + LAYOUT.nameFontSize)}" font-family="Helvetica, Arial, sans-serif" font-size="${LAYOUT.nameFontSize}">${xml(fit(caption, LAYOUT.nameFontSize))}</text>`,
      );
    parts.push("</g>\n");
  });
  parts.push("</svg>\n");
  return parts.join("");
}
