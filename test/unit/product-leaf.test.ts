// The product leaf's hand-ordered canonical text is byte for byte what canonicalize() gives.
import fc from "fast-check";
import { canonicalize } from "../../lib/canonical";
import { productLeafText } from "../../lib/proof";

describe("product leaf text", () => {
  it("equals the canonical JSON of the listed fields for any strings", () => {
    const str = fc.string({ unit: "binary", maxLength: 40 });
    fc.assert(
      fc.property(fc.record({ tag_id: str, tenant_id: str, batch_id: str, sku: str, name: str, serial: str, salt: str, gtin: fc.option(str), lot: fc.option(str) }), (p) => {
        const expected = canonicalize({ type: "product", tag_id: p.tag_id, tenant_id: p.tenant_id, batch_id: p.batch_id, sku: p.sku, name: p.name, serial: p.serial, gtin: p.gtin, lot: p.lot, salt: p.salt });
        expect(productLeafText(p)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });
});
