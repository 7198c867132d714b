// QR codes for printed tags, as runs of dark modules that a PDF or SVG draws as rectangles (vector,
// sharp at any print resolution). Encoding is the `qrcode` package's.
import QRCode from "qrcode";

export interface QrMatrix {
  /** Modules per side, without the quiet zone. */
  size: number;
  /** Row-major, 1 = dark. */
  data: Uint8Array;
}

/** Modules of white border every reader expects around a code (ISO/IEC 18004 quiet zone). */
export const QUIET_ZONE = 4;

// Error correction M (15 %) survives scuffed labels at a size that still fits a URL in version 5-7.
// The mask is fixed: choosing the "best" one evaluates all eight and makes encoding three times slower
// (100,000 labels per PDF), while any mask decodes; the penalty rules only avoid rare
// hard-to-read patterns, which mask 0's fine checkerboard does not produce in practice.
const OPTIONS = { errorCorrectionLevel: "M", maskPattern: 0 } as const;

export function qrMatrix(text: string): QrMatrix {
  // One byte-mode segment: searching for the shortest mix of modes costs six times the encoding
  // and saves at most one version (4 modules a side) on a URL.
  const qr = QRCode.create([{ data: text, mode: "byte" }] as any, OPTIONS as any);
  const m = qr.modules as unknown as { size: number; data: Uint8Array };
  return { size: m.size, data: m.data };
}

/**
 * Horizontal runs of dark modules, [x, y, length] in module units, y from the top. Drawing one
 * rectangle per run instead of per module keeps a label's vector data about four times smaller.
 */
export function darkRuns(m: QrMatrix): number[] {
  const out: number[] = [];
  const { size, data } = m;
  for (let y = 0; y < size; y++) {
    let x = 0;
    while (x < size) {
      if (!data[y * size + x]) {
        x++;
        continue;
      }
      const start = x;
      while (x < size && data[y * size + x]) x++;
      out.push(start, y, x - start);
    }
  }
  return out;
}

/** SVG path data of the dark modules, module units, origin at the code's top-left corner (no quiet zone). */
export function svgPathData(m: QrMatrix): string {
  const r = darkRuns(m);
  let d = "";
  for (let i = 0; i < r.length; i += 3) d += `M${r[i]} ${r[i + 1]}h${r[i + 2]}v1h-${r[i + 2]}z`;
  return d;
}

/**
 * PDF content operators filling the dark modules, in module units with y growing downwards from the
 * code's top-left corner: the caller sets the transformation (`q s 0 0 -s x y cm … Q`).
 */
export function pdfRects(m: QrMatrix): string {
  const r = darkRuns(m);
  const parts: string[] = [];
  for (let i = 0; i < r.length; i += 3) parts.push(`${r[i]} ${r[i + 1]} ${r[i + 2]} 1 re`);
  return parts.join("\n") + "\nf";
}
