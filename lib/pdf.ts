// A minimal PDF 1.4 writer that emits each page as soon as it is drawn: what it keeps is one offset
// per object and one id per page, so a 100,000-label document streams in constant memory (a general
// PDF library builds page objects it holds until the end). Pages are vector content with one font,
// the standard Helvetica (never embedded: every reader has it).
import { deflateSync } from "node:zlib";

export const A4 = { width: 595.28, height: 841.89 } as const;

const CATALOG = 1;
const PAGES = 2;
const FONT = 3;

export class PdfStreamWriter {
  private offset = 0;
  /** offsets[id] = byte offset of object `id`. */
  private readonly offsets: number[] = [];
  private readonly pageIds: number[] = [];
  private nextId = FONT + 1;
  private started = false;
  private ended = false;

  constructor(private readonly size: { width: number; height: number } = A4) {}

  get pageCount(): number {
    return this.pageIds.length;
  }

  /** The file header; call first. */
  begin(): Buffer {
    if (this.started) throw new Error("PdfStreamWriter: begin() called twice");
    this.started = true;
    // The comment line of high bytes tells transfer tools the file is binary.
    return this.emit(Buffer.from("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "latin1"));
  }

  /** One page from its content stream (PDF operators; text in WinAnsi, see pdfString). */
  page(content: string): Buffer {
    if (!this.started || this.ended) throw new Error("PdfStreamWriter: page() outside begin()/end()");
    const data = deflateSync(Buffer.from(content, "latin1"), { level: 6 });
    const contentId = this.nextId++;
    const pageId = this.nextId++;
    this.pageIds.push(pageId);
    const parts = [
      this.object(contentId, Buffer.concat([Buffer.from(`<< /Length ${data.length} /Filter /FlateDecode >>\nstream\n`, "latin1"), data, Buffer.from("\nendstream", "latin1")])),
      this.object(
        pageId,
        Buffer.from(
          `<< /Type /Page /Parent ${PAGES} 0 R /MediaBox [0 0 ${this.size.width} ${this.size.height}] ` +
            `/Resources << /Font << /F1 ${FONT} 0 R >> >> /Contents ${contentId} 0 R >>`,
          "latin1",
        ),
      ),
    ];
    return Buffer.concat(parts);
  }

  /** The shared objects, cross-reference table and trailer; call last. */
  end(info: { title?: string; producer?: string } = {}): Buffer {
    if (!this.started || this.ended) throw new Error("PdfStreamWriter: end() outside begin()");
    if (!this.pageIds.length) throw new Error("PdfStreamWriter: a PDF needs at least one page");
    this.ended = true;
    const infoId = this.nextId++;
    const parts = [
      this.object(FONT, Buffer.from("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>", "latin1")),
      this.object(PAGES, Buffer.from(`<< /Type /Pages /Count ${this.pageIds.length} /Kids [${this.pageIds.map((id) => `${id} 0 R`).join(" ")}] >>`, "latin1")),
      this.object(CATALOG, Buffer.from(`<< /Type /Catalog /Pages ${PAGES} 0 R >>`, "latin1")),
      this.object(
        infoId,
        Buffer.from(`<< /Producer ${pdfString(info.producer ?? "VokeTag")}${info.title ? ` /Title ${pdfString(info.title)}` : ""} >>`, "latin1"),
      ),
    ];
    const body = Buffer.concat(parts);
    const xrefAt = this.offset;
    const size = this.nextId;
    let xref = `xref\n0 ${size}\n0000000000 65535 f \n`;
    for (let id = 1; id < size; id++) {
      const off = this.offsets[id];
      if (off === undefined) throw new Error(`PdfStreamWriter: object ${id} was never written`);
      xref += `${String(off).padStart(10, "0")} 00000 n \n`;
    }
    xref += `trailer\n<< /Size ${size} /Root ${CATALOG} 0 R /Info ${infoId} 0 R >>\nstartxref\n${xrefAt}\n%%EOF\n`;
    return Buffer.concat([body, this.emit(Buffer.from(xref, "latin1"))]);
  }

  private object(id: number, body: Buffer): Buffer {
    this.offsets[id] = this.offset;
    return this.emit(Buffer.concat([Buffer.from(`${id} 0 obj\n`, "latin1"), body, Buffer.from("\nendobj\n", "latin1")]));
  }

  private emit(b: Buffer): Buffer {
    this.offset += b.length;
    return b;
  }
}

// Unicode → WinAnsiEncoding for the characters that differ from Latin-1 (0x80-0x9F).
const WIN_ANSI_EXTRA: Record<number, number> = {
  0x20ac: 0x80, 0x201a: 0x82, 0x0192: 0x83, 0x201e: 0x84, 0x2026: 0x85, 0x2020: 0x86, 0x2021: 0x87, 0x02c6: 0x88, 0x2030: 0x89,
  0x0160: 0x8a, 0x2039: 0x8b, 0x0152: 0x8c, 0x017d: 0x8e, 0x2018: 0x91, 0x2019: 0x92, 0x201c: 0x93, 0x201d: 0x94, 0x2022: 0x95,
  0x2013: 0x96, 0x2014: 0x97, 0x02dc: 0x98, 0x2122: 0x99, 0x0161: 0x9a, 0x203a: 0x9b, 0x0153: 0x9c, 0x017e: 0x9e, 0x0178: 0x9f,
};

/**
 * A PDF literal string for the standard fonts: WinAnsi bytes, with ( ) \ escaped and every byte
 * outside printable ASCII written as an octal escape; characters WinAnsi lacks become "?".
 */
export function pdfString(s: string): string {
  let out = "(";
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    let b: number;
    if (cp >= 0x20 && cp < 0x7f) b = cp;
    else if (cp >= 0xa0 && cp <= 0xff) b = cp;
    else b = WIN_ANSI_EXTRA[cp] ?? 0x3f;
    if (b === 0x28 || b === 0x29 || b === 0x5c) out += "\\" + String.fromCharCode(b);
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += "\\" + b.toString(8).padStart(3, "0");
  }
  return out + ")";
}
