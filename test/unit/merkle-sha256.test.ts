// lib/sha256: Node's native SHA-256 here, the pure implementation in the browser bundle. Both must
// be SHA-256 (FIPS 180-4) exactly: checked against NIST vectors, each other, and on every padding edge.
import { createHash } from "node:crypto";
import fc from "fast-check";
import { sha256, sha256Pure, SHA256_IMPLEMENTATION } from "../../lib/sha256";
import { hashLeaf, hashNode } from "../../lib/merkle";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const ref = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("lib/sha256", () => {
  it("uses node:crypto in Node (the fast path the benchmarks measure)", () => {
    expect(SHA256_IMPLEMENTATION).toBe("node:crypto");
    expect(Buffer.isBuffer(sha256(Buffer.from("abc")))).toBe(true);
  });

  it("the pure implementation matches the FIPS 180-4 / NIST examples", () => {
    expect(hex(sha256Pure(new Uint8Array()))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex(sha256Pure(Buffer.from("abc")))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(hex(sha256Pure(Buffer.from("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    expect(hex(sha256Pure(Buffer.alloc(1_000_000, "a")))).toBe("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  });

  it("the pure implementation agrees with node:crypto on every length across the padding boundaries", () => {
    for (let n = 0; n <= 200; n++) {
      const data = Buffer.alloc(n);
      for (let i = 0; i < n; i++) data[i] = (i * 31 + n) & 0xff;
      expect(hex(sha256Pure(data))).toBe(ref(data));
    }
  });

  it("property: pure and native agree on arbitrary inputs", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (data) => hex(sha256Pure(data)) === ref(data) && hex(sha256(data)) === ref(data)), { numRuns: 500 });
  });

  it("Merkle leaves and nodes hash through it with their RFC 6962 prefixes", () => {
    const a = Buffer.alloc(32, 1);
    const b = Buffer.alloc(32, 2);
    expect(hashLeaf(a).toString("hex")).toBe(hex(sha256Pure(Buffer.concat([Buffer.from([0]), a]))));
    expect(hashNode(a, b).toString("hex")).toBe(hex(sha256Pure(Buffer.concat([Buffer.from([1]), a, b]))));
  });
});
