import fc from "fast-check";
import { buildDigitalLink, gtinCheckDigit, isGs1AiValue, isValidGtin, parseDigitalLinkPath, toGtin14 } from "../../lib/gs1";

// GS1's own library (no type declarations): the independent oracle for what we build.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { DigitalLink } = require("digital-link.js") as { DigitalLink: (x: unknown) => any };

const BASE = "https://voketag.example";
// CSET 82 minus the double quote, whose encoding digital-link.js's grammar copy mishandles (see below).
const CSET82 = `!%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz`;

describe("GTIN", () => {
  it.each([
    ["96385074", "GTIN-8"],
    ["40170725", "GTIN-8"],
    ["036000291452", "GTIN-12 (UPC-A)"],
    ["614141000036", "GTIN-12"],
    ["4006381333931", "GTIN-13"],
    ["9780345418913", "GTIN-13 (ISBN)"],
    ["5901234123457", "GTIN-13"],
    ["09506000134352", "GTIN-14"],
    ["00860080001300", "GTIN-14"],
    ["10614141000415", "GTIN-14"],
  ])("accepts %s (%s)", (g) => {
    expect(isValidGtin(g)).toBe(true);
    expect(toGtin14(g)).toHaveLength(14);
    expect(toGtin14(g).endsWith(g)).toBe(true);
    expect(String(gtinCheckDigit(g.slice(0, -1)))).toBe(g.slice(-1));
  });

  it.each([
    ["96385075", "GTIN-8"],
    ["036000291453", "GTIN-12"],
    ["4006381333932", "GTIN-13"],
    ["09506000134353", "GTIN-14"],
    ["19506000134352", "GTIN-14, indicator digit changed"],
    ["09560000134352", "GTIN-14, adjacent digits transposed"],
  ])("rejects %s (%s with a wrong check digit)", (g) => {
    expect(isValidGtin(g)).toBe(false);
    expect(() => toGtin14(g)).toThrow(RangeError);
  });

  it("treats leading zeros as padding: the check digit is unchanged", () => {
    expect(isValidGtin("9506000134352")).toBe(true);
    expect(toGtin14("9506000134352")).toBe("09506000134352");
    expect(toGtin14("036000291452")).toBe("00036000291452");
  });

  it.each([
    ["", "empty"],
    ["1234567", "7 digits"],
    ["12345678901", "11 digits"],
    ["123456789012345", "15 digits"],
    ["0950600013435a", "letter"],
    [" 9506000134352", "space"],
    ["-9506000134352", "sign"],
    ["０９５０６０００１３４３５２", "full-width digits"],
    ["9.50600013e+12", "float"],
  ])("rejects %j (%s)", (g) => {
    expect(isValidGtin(g)).toBe(false);
    expect(() => toGtin14(g)).toThrow(RangeError);
  });

  it("rejects non-strings without throwing", () => {
    expect(isValidGtin(96385074 as unknown as string)).toBe(false);
    expect(isValidGtin(null as unknown as string)).toBe(false);
  });

  it("gtinCheckDigit agrees with GS1's library for random bodies, and exactly one digit is valid", () => {
    fc.assert(
      fc.property(fc.constantFrom(7, 11, 12, 13), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 13, maxLength: 13 }), (len, digits) => {
        const body = digits.slice(0, len).join("");
        const cd = gtinCheckDigit(body);
        const valid = [...Array(10).keys()].filter((d) => isValidGtin(body + d));
        expect(valid).toEqual([cd]);
        const dl = DigitalLink({ domain: BASE, identifier: { "01": toGtin14(body + cd) } });
        expect(dl.isCheckDigitValid()).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("gtinCheckDigit rejects non-digit bodies", () => {
    expect(() => gtinCheckDigit("12a")).toThrow(RangeError);
    expect(() => gtinCheckDigit("")).toThrow(RangeError);
  });
});

describe("buildDigitalLink", () => {
  it("builds GTIN-only, lot, serial and lot+serial links that GS1's library validates and reads back", () => {
    const cases = [
      { gtin: "9506000134352" },
      { gtin: "09506000134352", lot: "ABC123" },
      { gtin: "96385074", serial: "12345" },
      { gtin: "036000291452", lot: "L-1.2_3", serial: "S/1?x=2&y" },
    ];
    for (const p of cases) {
      const uri = buildDigitalLink(BASE, p);
      const dl = DigitalLink(uri);
      expect(dl.isValid()).toBe(true);
      expect(dl.getIdentifier()).toEqual({ "01": toGtin14(p.gtin) });
      const kq = dl.getKeyQualifiers();
      expect(kq["10"] === undefined ? undefined : decodeURIComponent(kq["10"])).toBe(p.lot);
      expect(kq["21"] === undefined ? undefined : decodeURIComponent(kq["21"])).toBe(p.serial);
    }
  });

  it("produces the documented layout, with the token in the non-GS1 parameter vt", () => {
    const token = "k1.AAAAAAAAAAAAAAAAAAAAAA.Bb_-AAAAAAAAAAAAAAAAAA";
    const uri = buildDigitalLink(BASE + "/", { gtin: "9506000134352", lot: "AB", serial: "7", token });
    expect(uri).toBe(`${BASE}/01/09506000134352/10/AB/21/7?vt=${token}`);
    const dl = DigitalLink(uri);
    expect(dl.isValid()).toBe(true);
    expect(dl.getAttributes()).toEqual({ vt: token });
  });

  it("skips null and empty lot/serial", () => {
    expect(buildDigitalLink(BASE, { gtin: "96385074", lot: null, serial: "" })).toBe(`${BASE}/01/00000096385074`);
  });

  it("percent-encodes every reserved CSET 82 character as the standard requires", () => {
    const reserved = `!%&'()*+,/:;<=>?`;
    for (const c of reserved) {
      const serial = `A${c}B`;
      const uri = buildDigitalLink(BASE, { gtin: "09506000134352", serial });
      expect(uri).toBe(`${BASE}/01/09506000134352/21/A%${c.charCodeAt(0).toString(16).toUpperCase()}B`);
      expect(DigitalLink(uri).isValid()).toBe(true);
    }
    // Unreserved characters stay as they are.
    expect(buildDigitalLink(BASE, { gtin: "09506000134352", lot: "a-b.c_D9" })).toBe(`${BASE}/01/09506000134352/10/a-b.c_D9`);
  });

  it('encodes the double quote as %22 (RFC 3986; digital-link.js\'s grammar copy only knows a raw ")', () => {
    const uri = buildDigitalLink(BASE, { gtin: "09506000134352", lot: 'A"B' });
    expect(uri).toBe(`${BASE}/01/09506000134352/10/A%22B`);
    expect(parseDigitalLinkPath(uri.slice(BASE.length))).toEqual({ gtin: "09506000134352", lot: 'A"B' });
  });

  it("every generated lot/serial over CSET 82 is valid per GS1's library and round-trips", () => {
    const value = fc.string({ unit: fc.constantFrom(...CSET82), minLength: 1, maxLength: 20 });
    fc.assert(
      fc.property(fc.option(value, { nil: undefined }), fc.option(value, { nil: undefined }), (lot, serial) => {
        const uri = buildDigitalLink(BASE, { gtin: "4006381333931", lot, serial, token: "k1.x" });
        const dl = DigitalLink(uri);
        expect(dl.isValid()).toBe(true);
        const kq = dl.getKeyQualifiers();
        expect(kq["10"] === undefined ? undefined : decodeURIComponent(kq["10"])).toBe(lot);
        expect(kq["21"] === undefined ? undefined : decodeURIComponent(kq["21"])).toBe(serial);
        const back = parseDigitalLinkPath(uri.slice(BASE.length));
        expect(back).toEqual({ gtin: "04006381333931", token: "k1.x", ...(lot ? { lot } : {}), ...(serial ? { serial } : {}) });
      }),
      { numRuns: 300 },
    );
  });

  it.each<[{ gtin: string; lot?: string; serial?: string }, string]>([
    [{ gtin: "09506000134353" }, "bad check digit"],
    [{ gtin: "abc" }, "not a GTIN"],
    [{ gtin: "09506000134352", lot: "x".repeat(21) }, "lot over 20 chars"],
    [{ gtin: "09506000134352", serial: "SN 001" }, "space is not in CSET 82"],
    [{ gtin: "09506000134352", serial: "Ü1" }, "non-ASCII"],
    [{ gtin: "09506000134352", serial: "a~b" }, "tilde is not in CSET 82"],
    [{ gtin: "09506000134352", serial: "a#b" }, "hash is not in CSET 82"],
  ])("refuses %j (%s)", (p) => {
    expect(() => buildDigitalLink(BASE, p)).toThrow(RangeError);
  });

  it("refuses a base that is not an http(s) URL", () => {
    expect(() => buildDigitalLink("javascript:alert(1)", { gtin: "96385074" })).toThrow(RangeError);
    expect(() => buildDigitalLink("https://x.example/?a=1", { gtin: "96385074" })).toThrow(RangeError);
  });

  it("isGs1AiValue follows CSET 82 and the 20-character limit", () => {
    expect(isGs1AiValue("ABC-123/4")).toBe(true);
    expect(isGs1AiValue("x".repeat(20))).toBe(true);
    expect(isGs1AiValue("x".repeat(21))).toBe(false);
    expect(isGs1AiValue("")).toBe(false);
    for (const bad of [" ", "#", "$", "@", "[", "\\", "]", "^", "`", "{", "|", "}", "~", "\u00e9", "\n"]) expect(isGs1AiValue(`a${bad}`)).toBe(false);
  });
});

describe("parseDigitalLinkPath", () => {
  it("parses the path form the gateway sees", () => {
    expect(parseDigitalLinkPath("/01/09506000134352/10/ABC/21/123?vt=k1.abc")).toEqual({
      gtin: "09506000134352",
      lot: "ABC",
      serial: "123",
      token: "k1.abc",
    });
    expect(parseDigitalLinkPath("/01/09506000134352")).toEqual({ gtin: "09506000134352" });
    expect(parseDigitalLinkPath("/01/09506000134352/21/S%2F1%25")).toEqual({ gtin: "09506000134352", serial: "S/1%" });
    expect(parseDigitalLinkPath("/01/09506000134352/21/s%2f1")).toEqual({ gtin: "09506000134352", serial: "s/1" });
  });

  it("normalises a zero-suppressed GTIN and tolerates a trailing slash, fragments and other parameters", () => {
    expect(parseDigitalLinkPath("/01/96385074/21/9/")).toEqual({ gtin: "00000096385074", serial: "9" });
    expect(parseDigitalLinkPath("/01/9506000134352?linkType=gs1:pip&vt=t1&17=261231#x")).toEqual({ gtin: "09506000134352", token: "t1" });
  });

  it("round-trips what buildDigitalLink makes", () => {
    const p = { gtin: "10614141000415", lot: "L(1)*", serial: "A+B=C;D", token: "k2.abc_-" };
    const uri = buildDigitalLink("http://localhost:3000", p);
    expect(parseDigitalLinkPath(new URL(uri).pathname + new URL(uri).search)).toEqual(p);
  });

  it.each([
    ["/01/09506000134353/21/1", "bad check digit"],
    ["/01/0950600013435/21/1", "bad check digit in a 13-digit form"],
    ["/01/ABC", "not digits"],
    ["/01/", "missing GTIN"],
    ["/01", "missing GTIN"],
    ["/00/009506000134352", "another primary key"],
    ["01/09506000134352", "not a path"],
    ["https://x.example/01/09506000134352", "full URL, not the path form"],
    ["/x/01/09506000134352", "prefix"],
    ["/01/09506000134352/21", "qualifier without value"],
    ["/01/09506000134352/21/", "empty serial"],
    ["/01/09506000134352/21/1/10/L", "qualifiers out of order"],
    ["/01/09506000134352/21/1/21/2", "repeated qualifier"],
    ["/01/09506000134352/22/V/21/1", "unsupported qualifier"],
    ["/01/09506000134352/21/%E0%A4%A", "broken percent-encoding"],
    ["/01/09506000134352/21/%C3%9C", "non-CSET-82 after decoding"],
    ["/01/09506000134352/21/" + "x".repeat(21), "serial over 20"],
    ["/01/09506000134352?vt=a&vt=b", "two tokens"],
    ["/01/09506000134352?vt=", "empty token"],
    ["/01/09506000134352?vt=%zz", "broken token encoding"],
    ["/01/09506000134352/21/" + "1".repeat(5000), "huge"],
    ["", "empty"],
  ])("rejects %j (%s)", (s) => {
    expect(parseDigitalLinkPath(s)).toBeNull();
  });

  it("rejects non-strings", () => {
    expect(parseDigitalLinkPath(undefined as unknown as string)).toBeNull();
  });
});
