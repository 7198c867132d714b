// Reads printed labels back the way a phone would: poppler's pdftoppm renders a PDF page to pixels,
// jsQR decodes the QR code in each label's box (lib/labels qrBox). Used by the label tests.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import jsQR from "jsqr";
import { qrBox, LABELS_PER_PAGE } from "../../lib/labels";

export function havePdftoppm(): boolean {
  try {
    execFileSync("pdftoppm", ["-v"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** The text of every QR code on page `page` (1-based) of a PDF, in label order; null where none decodes. */
export function decodePdfPage(pdf: Buffer, page: number, dpi = 100): (string | null)[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vk-labels-"));
  try {
    const file = path.join(dir, "l.pdf");
    fs.writeFileSync(file, pdf);
    execFileSync("pdftoppm", ["-r", String(dpi), "-gray", "-f", String(page), "-l", String(page), file, path.join(dir, "p")]);
    const img = fs.readdirSync(dir).find((f) => f.endsWith(".pgm"));
    if (!img) throw new Error("pdftoppm rendered nothing");
    const raw = fs.readFileSync(path.join(dir, img));
    const m = /^P5\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(raw.toString("latin1", 0, 64));
    if (!m) throw new Error("not a binary PGM");
    const width = Number(m[1]);
    const off = m[0].length;
    const k = dpi / 72;
    const out: (string | null)[] = [];
    for (let i = 0; i < LABELS_PER_PAGE; i++) {
      const b = qrBox(i);
      const x0 = Math.floor(b.x * k);
      const y0 = Math.floor(b.y * k);
      const n = Math.ceil(b.size * k);
      const rgba = new Uint8ClampedArray(n * n * 4);
      for (let y = 0; y < n; y++)
        for (let x = 0; x < n; x++) {
          const v = raw[off + (y0 + y) * width + x0 + x] ?? 255;
          const j = (y * n + x) * 4;
          rgba[j] = rgba[j + 1] = rgba[j + 2] = v;
          rgba[j + 3] = 255;
        }
      out.push(jsQR(rgba, n, n)?.data ?? null);
    }
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
