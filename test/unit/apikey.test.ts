import { createHash } from "node:crypto";
import { API_SCOPES, generateApiKey, hashApiKey, isSubset, parseApiKey, scopesAllow, unknownScopes, verifyApiKey } from "../../lib/apikey";

describe("generateApiKey", () => {
  it("produces vk_<env>_<prefix>_<secret> with a stored hash that verifies", () => {
    const { key, prefix, hash } = generateApiKey("live");
    expect(key).toMatch(/^vk_live_[a-z0-9]{8}_[0-9A-Za-z]{43}$/);
    expect(key.split("_")[2]).toBe(prefix);
    expect(hash).toBe(createHash("sha256").update(key).digest("hex"));
    expect(parseApiKey(key)).toEqual({ env: "live", prefix, secret: key.slice(`vk_live_${prefix}_`.length) });
    expect(verifyApiKey(key, hash)).toBe(true);
  });

  it("accepts test and other short lowercase envs, rejects the rest", () => {
    expect(generateApiKey("test").key.startsWith("vk_test_")).toBe(true);
    expect(generateApiKey("staging").key.startsWith("vk_staging_")).toBe(true);
    for (const env of ["", "x", "LIVE", "toolongenv", "li_ve", "live1"]) expect(() => generateApiKey(env)).toThrow(RangeError);
  });

  it("is random: no repeated keys or prefixes over many draws, and every prefix character is used", () => {
    const keys = new Set<string>();
    const prefixes = new Set<string>();
    const chars = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const k = generateApiKey("test");
      keys.add(k.key);
      prefixes.add(k.prefix);
      for (const c of k.prefix) chars.add(c);
    }
    expect(keys.size).toBe(2000);
    expect(prefixes.size).toBe(2000);
    expect(chars.size).toBe(36);
  });
});

describe("parseApiKey", () => {
  const good = "vk_live_abcd1234_" + "A".repeat(32);

  it("accepts base64url secrets (which may contain '_' and '-')", () => {
    expect(parseApiKey("vk_test_abcd1234_" + "a_b-".repeat(10))).toEqual({ env: "test", prefix: "abcd1234", secret: "a_b-".repeat(10) });
    expect(parseApiKey(good)).not.toBeNull();
  });

  it.each([
    ["", "empty"],
    ["vk_live_abcd1234_" + "A".repeat(31), "secret too short"],
    ["vk_live_abcd1234_" + "A".repeat(129), "secret too long"],
    ["vk_live_abcd123_" + "A".repeat(32), "prefix 7 chars"],
    ["vk_live_abcd12345_" + "A".repeat(32), "prefix 9 chars"],
    ["vk_live_ABCD1234_" + "A".repeat(32), "uppercase prefix"],
    ["vk_l_abcd1234_" + "A".repeat(32), "env too short"],
    ["vk_Live_abcd1234_" + "A".repeat(32), "uppercase env"],
    ["vk_live_abcd1234" + "A".repeat(32), "missing separator"],
    ["sk_live_abcd1234_" + "A".repeat(32), "wrong product marker"],
    ["VK_live_abcd1234_" + "A".repeat(32), "uppercase marker"],
    [" " + good, "leading space"],
    [good + "\n", "trailing newline"],
    ["vk_live_abcd1234_" + "A".repeat(31) + "=", "padding"],
    ["vk_live_abcd1234_" + "A".repeat(31) + "+", "standard base64 char"],
    ["vk_live_abcd1234_" + "Ä".repeat(32), "unicode"],
    ["vk_live_abcd1234_" + "A".repeat(1_000_000), "huge"],
  ])("rejects %j (%s)", (k) => {
    expect(parseApiKey(k)).toBeNull();
  });

  it("rejects non-strings", () => {
    expect(parseApiKey(undefined as unknown as string)).toBeNull();
    expect(parseApiKey({ toString: () => "vk_live_abcd1234_" + "A".repeat(32) } as unknown as string)).toBeNull();
  });
});

describe("verifyApiKey", () => {
  it("rejects the right prefix with a wrong secret", () => {
    const { key, prefix, hash } = generateApiKey("live");
    const secret = key.split("_").slice(3).join("_");
    const flipped = secret.slice(0, -1) + (secret.endsWith("A") ? "B" : "A");
    const forged = `vk_live_${prefix}_${flipped}`;
    expect(parseApiKey(forged)).not.toBeNull();
    expect(verifyApiKey(forged, hash)).toBe(false);
    expect(verifyApiKey(`vk_live_${prefix}_${"0".repeat(43)}`, hash)).toBe(false);
    // The same secret under another env is another key.
    expect(verifyApiKey(key.replace("vk_live_", "vk_test_"), hash)).toBe(false);
  });

  it("rejects another tenant's valid key against this hash", () => {
    const a = generateApiKey("live");
    const b = generateApiKey("live");
    expect(verifyApiKey(b.key, a.hash)).toBe(false);
  });

  it("rejects malformed keys even when the hash matches them", () => {
    const bad = "not-a-key";
    expect(verifyApiKey(bad, hashApiKey(bad))).toBe(false);
  });

  it("rejects malformed stored hashes without throwing", () => {
    const { key, hash } = generateApiKey("live");
    for (const h of ["", hash.slice(0, 63), hash + "0", hash.toUpperCase(), "z".repeat(64), null]) {
      expect(verifyApiKey(key, h as string)).toBe(false);
    }
  });
});

describe("scopes", () => {
  it("lists the documented scopes", () => {
    expect([...API_SCOPES]).toEqual([
      "batches:read",
      "batches:write",
      "products:write",
      "keys:read",
      "keys:write",
      "webhooks:read",
      "webhooks:write",
      "scans:read",
      "anchors:write",
      "recalls:write",
    ]);
  });

  it("scopesAllow: exact match or '*'", () => {
    expect(scopesAllow(["batches:read"], "batches:read")).toBe(true);
    expect(scopesAllow(["batches:read"], "batches:write")).toBe(false);
    expect(scopesAllow([], "batches:read")).toBe(false);
    expect(scopesAllow(["*"], "recalls:write")).toBe(true);
    expect(scopesAllow(["*"], "*")).toBe(true);
    // Holding some scopes is not holding all of them.
    expect(scopesAllow([...API_SCOPES], "*")).toBe(false);
    // No prefix or pattern games.
    expect(scopesAllow(["batches"], "batches:read")).toBe(false);
    expect(scopesAllow(["batches:*"], "batches:read")).toBe(false);
    expect(scopesAllow(["Batches:Read"], "batches:read")).toBe(false);
  });

  it("isSubset: a key mints keys only within its own scopes", () => {
    const granted = ["batches:read", "keys:write"];
    expect(isSubset(["batches:read"], granted)).toBe(true);
    expect(isSubset([], granted)).toBe(true);
    expect(isSubset(["batches:read", "keys:write"], granted)).toBe(true);
    expect(isSubset(["batches:read", "batches:write"], granted)).toBe(false);
    // Escalation to everything is refused unless the key itself has "*".
    expect(isSubset(["*"], granted)).toBe(false);
    expect(isSubset(["*"], [...API_SCOPES])).toBe(false);
    expect(isSubset(["*"], ["*"])).toBe(true);
    expect(isSubset([...API_SCOPES], ["*"])).toBe(true);
    expect(isSubset("batches:read" as unknown as string[], granted)).toBe(false);
  });

  it("unknownScopes names what is not a scope", () => {
    expect(unknownScopes(["batches:read", "*", "admin", "batches:*"])).toEqual(["admin", "batches:*"]);
  });
});
