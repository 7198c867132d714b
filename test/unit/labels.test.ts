// Labels: QR modules drawn as runs, the streaming PDF writer's structure, and the printed codes
// decoding back to their URLs (pdftoppm renders, jsQR reads).
import jsQR from "jsqr";
import { qrMatrix, darkRuns, svgPathData } from "../../lib/qr";
import { PdfStreamWriter, pdfString } from "../../lib/pdf";
import { labelsPdf, svgSheet, labelCsvHeader, labelCsvLine, LABELS_PER_PAGE, Label } from "../../lib/labels";
import { decodePdfPage, havePdftoppm } from "../integration/labels-render";

const URL = "https://verify.example.com/01/09506000134352/10/L1/21/SN0001?vt=k1.AAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBB";

async function pdfOf(labels: Label[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of labelsPdf((async function* () {
    yield labels;
  })(), { title: "t" }))
    parts.push(b);
  return Buffer.concat(parts);
}

describe("QR modules", () => {
  it("draws exactly the dark modules, and the matrix decodes back to the URL", () => {
    const m = qrMatrix(URL);
    const runs = darkRuns(m);
    const drawn = new Uint8Array(m.size * m.size);
    for (let i = 0; i < runs.length; i += 3) for (let x = runs[i]; x < runs[i] + runs[i + 2]; x++) drawn[runs[i + 1] * m.size + x] = 1;
    expect(Buffer.from(drawn).equals(Buffer.from(m.data.map((v) => (v ? 1 : 0))))).toBe(true);
    // Rasterise at 4 px per module with a quiet zone and read it back.
    const s = 4;
    const n = (m.size + 8) * s;
    const rgba = new Uint8ClampedArray(n * n * 4).fill(255);
    for (let y = 0; y < m.size; y++)
      for (let x = 0; x < m.size; x++)
        if (m.data[y * m.size + x])
          for (let dy = 0; dy < s; dy++)
            for (let dx = 0; dx < s; dx++) {
              const j = (((y + 4) * s + dy) * n + (x + 4) * s + dx) * 4;
              rgba[j] = rgba[j + 1] = rgba[j + 2] = 0;
            }
    expect(jsQR(rgba, n, n)?.data).toBe(URL);
    expect(svgPathData(m)).toMatch(/^M\d+ \d+h\d+v1h-\d+z/);
  });
});

describe("PDF writer", () => {
  it("writes a cross-reference table whose offsets point at their objects", () => {
    const w = new PdfStreamWriter();
    const pdf = Buffer.concat([w.begin(), w.page("0 g 0 0 10 10 re f"), w.page(""), w.end({ title: "x" })]).toString("latin1");
    expect(pdf.startsWith("%PDF-1.4\n")).toBe(true);
    const xrefAt = Number(/startxref\n(\d+)\n%%EOF\n$/.exec(pdf)![1]);
    expect(pdf.slice(xrefAt, xrefAt + 4)).toBe("xref");
    const lines = pdf.slice(xrefAt).split("\n");
    const count = Number(lines[1].split(" ")[1]);
    for (let id = 1; id < count; id++) {
      const off = Number(lines[2 + id].slice(0, 10));
      expect(pdf.slice(off, off + `${id} 0 obj`.length)).toBe(`${id} 0 obj`);
    }
    expect(pdf).toContain("/Count 2");
  });

  it("escapes text for the standard fonts (WinAnsi), never breaking the string", () => {
    expect(pdfString("a(b)c\\")).toBe("(a\\(b\\)c\\\\)");
    expect(pdfString("é€")).toBe("(\\351\\200)");
    expect(pdfString("漢\n")).toBe("(??)");
  });
});

describe("label sheets", () => {
  const labels: Label[] = Array.from({ length: 30 }, (_, i) => ({
    url: `${URL.replace("SN0001", `SN${i}`)}`,
    serial: `SN${i}`,
    sku: "W-100",
    name: "Diver <100> & (co) é",
  }));

  it("prints an A4 PDF whose QR codes decode back to their URLs, page by page", async () => {
    if (!havePdftoppm()) throw new Error("pdftoppm (poppler-utils) is required for this test");
    const pdf = await pdfOf(labels);
    const first = decodePdfPage(pdf, 1);
    expect(first).toEqual(labels.slice(0, LABELS_PER_PAGE).map((l) => l.url));
    const second = decodePdfPage(pdf, 2);
    expect(second.slice(0, 6)).toEqual(labels.slice(LABELS_PER_PAGE).map((l) => l.url));
    expect(second.slice(6).every((x) => x === null)).toBe(true);
  });

  it("draws an SVG sheet of the same layout, with text escaped", () => {
    const svg = svgSheet(labels.slice(0, 3), { title: "Batch <1>" });
    expect(svg).toContain('width="210mm" height="297mm"');
    expect(svg.match(/<path /g)).toHaveLength(3);
    expect(svg).toContain("Batch &#60;1&#62;");
    expect(svg).not.toContain("<100>");
    expect(() => svgSheet(labels)).toThrow(RangeError);
  });

  it("writes a CSV of serial and URL first, neutralising spreadsheet formulas", () => {
    expect(labelCsvHeader()).toBe("serial,url,verification_url,digital_link,token,tag_id,gtin,lot,sku,name\r\n");
    expect(labelCsvLine({ url: "https://x/r/t", serial: "=1+1", name: "a,b" })).toBe("'=1+1,https://x/r/t,https://x/r/t,,,,,,,\"a,b\"\r\n");
  });
});
