import { createHash, createHmac } from "node:crypto";
import fc from "fast-check";
import { canonicalize } from "../../lib/canonical";
import { clientIp, deviceFingerprint, hashNetwork, ipInCidrs, networkPrefix, normalizeIp, validateCidrs } from "../../lib/fingerprint";

const UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const device = (ip: string, over: Partial<Parameters<typeof deviceFingerprint>[0]> = {}) =>
  deviceFingerprint({ userAgent: UA, acceptLanguage: "pt-BR,pt;q=0.9", clientFingerprint: "c1", ip, ...over });

describe("networkPrefix", () => {
  it("reduces IPv4 to its /24", () => {
    expect(networkPrefix("203.0.113.57")).toBe("203.0.113.0/24");
    expect(networkPrefix(" 198.51.100.1 ")).toBe("198.51.100.0/24");
    expect(networkPrefix("1.2.3.4:5678")).toBe("1.2.3.0/24");
  });

  it("treats IPv4-mapped IPv6 as IPv4, dotted or hex", () => {
    expect(networkPrefix("::ffff:203.0.113.57")).toBe("203.0.113.0/24");
    expect(networkPrefix("::FFFF:cb00:7139")).toBe("203.0.113.0/24");
  });

  it("reduces IPv6 to its /48 in RFC 5952 form", () => {
    expect(networkPrefix("2001:db8:1234:5678::1")).toBe("2001:db8:1234::/48");
    expect(networkPrefix("2001:0DB8:1234:ffff:0:0:0:9")).toBe("2001:db8:1234::/48");
    expect(networkPrefix("2001:db8::1")).toBe("2001:db8::/48");
    expect(networkPrefix("[2001:db8:aa::1]:443")).toBe("2001:db8:aa::/48");
    expect(networkPrefix("fe80::1%eth0")).toBe("fe80::/48");
  });

  it('answers "unknown" for anything that is not an address', () => {
    for (const bad of ["", "garbage", "1.2.3", "256.1.1.1", "01.2.3.4", "1.2.3.4.5", "2001:db8:::1", "unknown"]) {
      expect(networkPrefix(bad)).toBe("unknown");
    }
  });
});

describe("normalizeIp", () => {
  it("canonicalises addresses", () => {
    expect(normalizeIp("2001:0db8:0000:0000:0001:0000:0000:0001")).toBe("2001:db8::1:0:0:1");
    expect(normalizeIp("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(normalizeIp("nope")).toBeNull();
  });
});

describe("deviceFingerprint", () => {
  it("is a SHA-256 hex over the canonical form, with the network prefix instead of the IP", () => {
    const fp = device("203.0.113.57");
    const expected = createHash("sha256")
      .update(canonicalize({ v: 1, ua: UA, lang: "pt-br,pt;q=0.9", client: "c1", net: "203.0.113.0/24" }))
      .digest("hex");
    expect(fp).toBe(expected);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
  });

  it("is the same within one /24 and differs across /24s", () => {
    expect(device("203.0.113.57")).toBe(device("203.0.113.200"));
    expect(device("203.0.113.57")).toBe(device("::ffff:203.0.113.9"));
    expect(device("203.0.113.57")).not.toBe(device("203.0.114.57"));
  });

  it("is the same within one IPv6 /48 and differs across /48s", () => {
    expect(device("2001:db8:1:1::1")).toBe(device("2001:db8:1:ffff::abcd"));
    expect(device("2001:db8:1::1")).not.toBe(device("2001:db8:2::1"));
  });

  it("never depends on the host part of the address", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), (a, b) => {
        expect(device(`192.0.2.${a}`)).toBe(device(`192.0.2.${b}`));
      }),
    );
  });

  it("distinguishes user agent, language and client fingerprint, ignoring header spacing and case", () => {
    const base = device("203.0.113.57");
    expect(device("203.0.113.57", { userAgent: UA + " X" })).not.toBe(base);
    expect(device("203.0.113.57", { acceptLanguage: "en-US" })).not.toBe(base);
    expect(device("203.0.113.57", { clientFingerprint: "c2" })).not.toBe(base);
    expect(device("203.0.113.57", { acceptLanguage: " PT-BR, pt;q=0.9 " })).toBe(base);
  });

  it("handles missing fields", () => {
    const fp = deviceFingerprint({});
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(deviceFingerprint({ userAgent: "", ip: "garbage" })).toBe(fp);
  });
});

describe("hashNetwork", () => {
  it("keys the network, not the host, and uses HMAC when given a secret", () => {
    expect(hashNetwork("203.0.113.1")).toBe(hashNetwork("203.0.113.254"));
    expect(hashNetwork("203.0.113.1")).not.toBe(hashNetwork("203.0.112.1"));
    expect(hashNetwork("203.0.113.1", "s3cret")).toBe(
      createHmac("sha256", "s3cret").update("voketag:network:v1:203.0.113.0/24").digest("hex"),
    );
    expect(hashNetwork("203.0.113.1", "s3cret")).not.toBe(hashNetwork("203.0.113.1", "other"));
    expect(hashNetwork("203.0.113.1", "s3cret")).not.toBe(hashNetwork("203.0.113.1"));
  });
});

describe("CIDR matching", () => {
  const cidrs = ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "::1", "::ffff:172.16.0.0/108"];

  it("matches IPv4, IPv6, bare addresses and mapped forms", () => {
    expect(ipInCidrs("10.255.0.1", cidrs)).toBe(true);
    expect(ipInCidrs("11.0.0.1", cidrs)).toBe(false);
    expect(ipInCidrs("192.168.1.77", cidrs)).toBe(true);
    expect(ipInCidrs("192.168.2.1", cidrs)).toBe(false);
    expect(ipInCidrs("2001:db8:ffff::1", cidrs)).toBe(true);
    expect(ipInCidrs("2001:db9::1", cidrs)).toBe(false);
    expect(ipInCidrs("::1", cidrs)).toBe(true);
    expect(ipInCidrs("::2", cidrs)).toBe(false);
    expect(ipInCidrs("::ffff:10.1.2.3", cidrs)).toBe(true);
    expect(ipInCidrs("172.31.0.1", cidrs)).toBe(true);
    expect(ipInCidrs("172.32.0.1", cidrs)).toBe(false);
    expect(ipInCidrs("garbage", cidrs)).toBe(false);
    expect(ipInCidrs("8.8.8.8", ["0.0.0.0/0"])).toBe(true);
    expect(ipInCidrs("2001::1", ["0.0.0.0/0"])).toBe(false);
  });

  it("agrees with a prefix comparison for random IPv4 addresses", () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, net, bits) => {
        const toInt = (s: string) => s.split(".").reduce((a, o) => a * 256 + Number(o), 0);
        const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
        const expected = ((toInt(ip) & mask) >>> 0) === ((toInt(net) & mask) >>> 0);
        expect(ipInCidrs(ip, [`${net}/${bits}`])).toBe(expected);
      }),
    );
  });

  it("rejects invalid CIDRs by name", () => {
    expect(() => validateCidrs(["10.0.0.0/8", "10.0.0.0/33"])).toThrow(/10\.0\.0\.0\/33/);
    expect(() => validateCidrs(["nope/8"])).toThrow(/nope/);
    expect(() => validateCidrs(["2001:db8::/129"])).toThrow();
    expect(() => validateCidrs(["10.0.0.0/8/1"])).toThrow();
  });
});

describe("clientIp", () => {
  const TRUST = ["10.0.0.0/8", "fd00::/8"];

  it("uses the socket address when there is no trusted proxy", () => {
    expect(clientIp("203.0.113.9", undefined, TRUST)).toBe("203.0.113.9");
    expect(clientIp("::ffff:203.0.113.9", null, [])).toBe("203.0.113.9");
  });

  it("ignores X-Forwarded-For from an untrusted socket (spoofing)", () => {
    expect(clientIp("203.0.113.9", "1.2.3.4", TRUST)).toBe("203.0.113.9");
    expect(clientIp("203.0.113.9", "10.0.0.1, 1.2.3.4", TRUST)).toBe("203.0.113.9");
    expect(clientIp("203.0.113.9", "1.2.3.4", [])).toBe("203.0.113.9");
  });

  it("takes the right-most untrusted entry behind trusted proxies", () => {
    expect(clientIp("10.0.0.5", "198.51.100.7", TRUST)).toBe("198.51.100.7");
    // The client forged "6.6.6.6"; the trusted proxy appended the real peer after it.
    expect(clientIp("10.0.0.5", "6.6.6.6, 198.51.100.7", TRUST)).toBe("198.51.100.7");
    expect(clientIp("10.0.0.5", "6.6.6.6, 198.51.100.7, 10.0.0.3", TRUST)).toBe("198.51.100.7");
    expect(clientIp("10.0.0.5", ["6.6.6.6", "198.51.100.7, 10.0.0.3"], TRUST)).toBe("198.51.100.7");
    expect(clientIp("fd00::1", "2001:db8::9", TRUST)).toBe("2001:db8::9");
    expect(clientIp("::ffff:10.0.0.5", "[2001:db8::9]:1234", TRUST)).toBe("2001:db8::9");
  });

  it("answers the left-most entry when every hop is trusted", () => {
    expect(clientIp("10.0.0.5", "10.0.0.1, 10.0.0.2", TRUST)).toBe("10.0.0.1");
  });

  it("stops at an unparsable entry, keeping the last trusted hop", () => {
    expect(clientIp("10.0.0.5", "198.51.100.7, garbage", TRUST)).toBe("10.0.0.5");
    expect(clientIp("10.0.0.5", "garbage, 198.51.100.7", TRUST)).toBe("198.51.100.7");
    expect(clientIp("10.0.0.5", "", TRUST)).toBe("10.0.0.5");
  });

  it('answers "unknown" for an invalid socket address', () => {
    expect(clientIp(undefined, "1.2.3.4", TRUST)).toBe("unknown");
    expect(clientIp("garbage", "1.2.3.4", TRUST)).toBe("unknown");
  });
});
