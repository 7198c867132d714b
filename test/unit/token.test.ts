import { createHmac, randomUUID } from "node:crypto";
import { generateTokenKey, parseKeyring, signToken, verifyToken, TokenKeyring } from "../../lib/token";

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const key1 = Buffer.alloc(32, 1);
const key2 = Buffer.alloc(32, 2);
const spec = (entries: [string, Buffer][]) => entries.map(([k, v]) => `${k}:${v.toString("base64")}`).join(",");

describe("parseKeyring", () => {
  it("makes the first key active and keeps every key", () => {
    const ring = parseKeyring(spec([["k2", key2], ["k1", key1]]));
    expect(ring.active).toBe("k2");
    expect(Object.keys(ring.keys).sort()).toEqual(["k1", "k2"]);
    expect(ring.keys.k1.equals(key1)).toBe(true);
  });

  it("tolerates whitespace and base64url secrets", () => {
    const k = Buffer.alloc(33, 0xfb); // encodes with '+' and '/' in standard base64
    const ring = parseKeyring(` a1 : ${k.toString("base64url")} , b2:${k.toString("base64")}\n`);
    expect(ring.keys.a1.equals(k)).toBe(true);
    expect(ring.keys.b2.equals(k)).toBe(true);
  });

  it.each([
    ["", "empty"],
    ["k1", "no colon"],
    [`k1:${Buffer.alloc(31).toString("base64")}`, "31-byte secret"],
    [`K1:${key1.toString("base64")}`, "uppercase kid"],
    [`toolongkid:${key1.toString("base64")}`, "kid over 8 chars"],
    [`:${key1.toString("base64")}`, "empty kid"],
    [`k1:${key1.toString("base64")},k1:${key2.toString("base64")}`, "duplicate kid"],
    [`k1:${key1.toString("base64").slice(0, 20)}!!${key1.toString("base64").slice(20)}`, "non-base64 characters"],
  ])("rejects %j (%s)", (s) => {
    expect(() => parseKeyring(s)).toThrow();
  });

  it("does not echo secret material in its errors", () => {
    const short = Buffer.from("secret-material-abc").toString("base64");
    expect(() => parseKeyring(`k1:${short}`)).toThrow(/19 bytes/);
    try {
      parseKeyring(`k1:${short}`);
    } catch (e) {
      expect(String((e as Error).message)).not.toContain(short);
    }
  });

  it("generateTokenKey gives 32 fresh random bytes usable in a keyring", () => {
    const a = generateTokenKey();
    const b = generateTokenKey();
    expect(a.length).toBe(32);
    expect(a.equals(b)).toBe(false);
    expect(parseKeyring(`k:${a.toString("base64")}`).keys.k.equals(a)).toBe(true);
  });
});

describe("signToken / verifyToken", () => {
  const ring: TokenKeyring = { active: "k1", keys: { k1: key1 } };

  it("round-trips, with a short URL-safe shape and the documented MAC", () => {
    const id = randomUUID();
    const t = signToken(id, ring);
    expect(t).toMatch(/^k1\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22}$/);
    expect(encodeURIComponent(t)).toBe(t);
    expect(verifyToken(t, ring)).toEqual({ ok: true, tagId: id, kid: "k1" });
    // Independent recomputation of the format in the brief.
    const uuidBytes = Buffer.from(id.replace(/-/g, ""), "hex");
    const expected = createHmac("sha256", key1).update(Buffer.concat([Buffer.from("vt1|k1|"), uuidBytes])).digest().subarray(0, 16);
    expect(t).toBe(`k1.${uuidBytes.toString("base64url")}.${expected.toString("base64url")}`);
  });

  it("normalises an uppercase UUID to lowercase and is deterministic", () => {
    const id = randomUUID();
    expect(signToken(id.toUpperCase(), ring)).toBe(signToken(id, ring));
    expect(verifyToken(signToken(id.toUpperCase(), ring), ring)).toMatchObject({ ok: true, tagId: id });
  });

  it("refuses to sign a non-UUID or with a broken keyring", () => {
    expect(() => signToken("not-a-uuid", ring)).toThrow();
    expect(() => signToken(randomUUID(), { active: "zz", keys: { k1: key1 } })).toThrow();
    expect(() => signToken(randomUUID(), { active: "k1", keys: { k1: Buffer.alloc(8) } })).toThrow();
  });

  it("rejects EVERY single-character substitution at every position", () => {
    const twoKeys: TokenKeyring = { active: "k1", keys: { k1: key1, k2: key2 } };
    for (let n = 0; n < 5; n++) {
      const t = signToken(randomUUID(), twoKeys);
      expect(verifyToken(t, twoKeys).ok).toBe(true);
      let tried = 0;
      for (let i = 0; i < t.length; i++) {
        for (const c of B64URL + ".") {
          if (c === t[i]) continue;
          const mutated = t.slice(0, i) + c + t.slice(i + 1);
          const r = verifyToken(mutated, twoKeys);
          if (r.ok) throw new Error(`mutation at ${i} to ${c} verified: ${mutated}`);
          tried++;
        }
      }
      expect(tried).toBe(t.length * 64);
    }
  });

  it("rejects non-canonical base64url spellings (unused bits of the last character)", () => {
    const t = signToken(randomUUID(), ring);
    const [kid, id, sig] = t.split(".");
    // Last char of 22 holds 2 data bits + 4 unused ones: flip the unused bits only.
    const twin = (s: string) => {
      const v = B64URL.indexOf(s[21]);
      const alt = B64URL[(v & 0b110000) | ((v + 1) & 0b1111)];
      const variant = s.slice(0, 21) + alt;
      expect(Buffer.from(variant, "base64url").equals(Buffer.from(s, "base64url"))).toBe(true); // same bytes
      return variant;
    };
    expect(verifyToken(`${kid}.${twin(id)}.${sig}`, ring)).toEqual({ ok: false, reason: "malformed" });
    expect(verifyToken(`${kid}.${id}.${twin(sig)}`, ring)).toEqual({ ok: false, reason: "malformed" });
  });

  it("supports rotation: old tags verify, new tags use the new key, dropping a key yields unknown_key", () => {
    const ring1 = parseKeyring(spec([["k1", key1]]));
    const oldId = randomUUID();
    const oldToken = signToken(oldId, ring1);

    const ring2 = parseKeyring(spec([["k2", key2], ["k1", key1]]));
    expect(verifyToken(oldToken, ring2)).toEqual({ ok: true, tagId: oldId, kid: "k1" });
    const newId = randomUUID();
    const newToken = signToken(newId, ring2);
    expect(newToken.startsWith("k2.")).toBe(true);
    expect(verifyToken(newToken, ring2)).toEqual({ ok: true, tagId: newId, kid: "k2" });

    const ring3 = parseKeyring(spec([["k2", key2]]));
    expect(verifyToken(oldToken, ring3)).toEqual({ ok: false, reason: "unknown_key" });
    expect(verifyToken(newToken, ring3).ok).toBe(true);
    // The old ring does not know k2.
    expect(verifyToken(newToken, ring1)).toEqual({ ok: false, reason: "unknown_key" });
  });

  it("rejects tokens forged with another key, under our kid or relabelled", () => {
    const id = randomUUID();
    const attacker: TokenKeyring = { active: "k1", keys: { k1: generateTokenKey() } };
    expect(verifyToken(signToken(id, attacker), ring)).toEqual({ ok: false, reason: "bad_signature" });
    // A genuine MAC under k2 relabelled as k1: the kid is inside the MAC, and the keys differ anyway.
    const both: TokenKeyring = { active: "k2", keys: { k1: key1, k2: key1 } };
    const relabelled = signToken(id, both).replace(/^k2\./, "k1.");
    expect(verifyToken(relabelled, both)).toEqual({ ok: false, reason: "bad_signature" });
    // Swapping the tag id onto another tag's MAC fails.
    const a = signToken(randomUUID(), ring).split(".");
    const b = signToken(randomUUID(), ring).split(".");
    expect(verifyToken(`${a[0]}.${b[1]}.${a[2]}`, ring)).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("does not resolve kids through Object.prototype", () => {
    const t = signToken(randomUUID(), ring);
    const tail = t.slice(t.indexOf("."));
    for (const kid of ["valueof", "tostring", "proto", "k1x"]) {
      expect(verifyToken(kid + tail, ring)).toEqual({ ok: false, reason: "unknown_key" });
    }
  });

  it.each<[string, unknown]>([
    ["empty", ""],
    ["dots only", ".."],
    ["many dots", ".".repeat(60)],
    ["huge", "k1." + "A".repeat(1_000_000)],
    ["unicode", "k1.ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ.ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ"],
    ["emoji", "🔑." + "A".repeat(22) + "." + "A".repeat(22)],
    ["padding", "k1.AAAAAAAAAAAAAAAAAAAAAA==.AAAAAAAAAAAAAAAAAAAAAA=="],
    ["standard base64", "k1.AAAAAAAAAAAAAAAAAAAA+/.AAAAAAAAAAAAAAAAAAAAAA"],
    ["extra segment", "k1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.x"],
    ["whitespace", " k1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA"],
    ["trailing newline", "k1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA\n"],
    ["nine-char kid", "k12345678.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA"],
    ["short mac", "k1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAA"],
    ["not a string", 12345],
    ["null", null],
  ])("rejects garbage (%s) as malformed", (_name, input) => {
    expect(verifyToken(input as string, ring)).toEqual({ ok: false, reason: "malformed" });
  });
});
