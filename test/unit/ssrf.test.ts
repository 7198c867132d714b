// Where webhooks may go: every address family and spelling an attacker might use to reach inside.
import { classifyAddress, checkWebhookUrl, checkResolved, parseIPv4Loose, parseIPv6, kindAllowed, UrlPolicy } from "../../lib/ssrf";

const STRICT: UrlPolicy = { allowPrivate: false, requireHttps: false };
const PRIVATE_OK: UrlPolicy = { allowPrivate: true, requireHttps: false };
const PROD: UrlPolicy = { allowPrivate: false, requireHttps: true };

const kind = (ip: string) => classifyAddress(ip)?.kind;
const refused = (url: string, policy = STRICT) => {
  const r = checkWebhookUrl(url, policy);
  return r.ok ? null : r.reason;
};

describe("IPv4 classification", () => {
  it.each([
    ["8.8.8.8", "public"],
    ["1.1.1.1", "public"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", "public"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "cgnat"],
    ["100.127.255.255", "cgnat"],
    ["100.128.0.1", "public"],
    ["169.254.1.1", "link-local"],
    ["169.254.169.254", "metadata"],
    ["169.254.170.2", "metadata"],
    ["100.100.100.200", "metadata"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["240.0.0.1", "reserved"],
    ["192.0.2.10", "reserved"],
    ["198.18.0.1", "reserved"],
  ])("%s is %s", (ip, expected) => {
    expect(kind(ip)).toBe(expected);
  });

  it("reads inet_aton spellings: decimal, octal, hex, short forms", () => {
    expect(parseIPv4Loose("2130706433")).toEqual([127, 0, 0, 1]);
    expect(parseIPv4Loose("0x7f000001")).toEqual([127, 0, 0, 1]);
    expect(parseIPv4Loose("017700000001")).toEqual([127, 0, 0, 1]);
    expect(parseIPv4Loose("0177.0.0.1")).toEqual([127, 0, 0, 1]);
    expect(parseIPv4Loose("0x7f.0x0.0.0x1")).toEqual([127, 0, 0, 1]);
    expect(parseIPv4Loose("127.1")).toEqual([127, 0, 0, 1]);
    expect(parseIPv4Loose("10.1.257")).toEqual([10, 1, 1, 1]);
    expect(parseIPv4Loose("0251.0376.0251.0376")).toEqual([169, 254, 169, 254]);
    expect(parseIPv4Loose("256.0.0.1")).toBeNull();
    expect(parseIPv4Loose("4294967296")).toBeNull();
    expect(parseIPv4Loose("08.0.0.1")).toBeNull(); // 8 is not an octal digit
    expect(parseIPv4Loose("example.com")).toBeNull();
    for (const s of ["2130706433", "0x7f000001", "017700000001", "0x7f.1", "127.000.000.001"]) expect(kind(s)).toBe("loopback");
    expect(kind("0xa9fea9fe")).toBe("metadata");
    expect(kind("2852039166")).toBe("metadata"); // 169.254.169.254
  });
});

describe("IPv6 classification", () => {
  it.each([
    ["2606:4700:4700::1111", "public"],
    ["::1", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["::", "unspecified"],
    ["fe80::1", "link-local"],
    ["febf:ffff::1", "link-local"],
    ["fc00::1", "private"],
    ["fd12:3456::1", "private"],
    ["ff02::1", "multicast"],
    ["2001:db8::1", "reserved"],
    ["fd00:ec2::254", "metadata"],
    ["fec0::1", "reserved"],
    ["100::1", "reserved"],
  ])("%s is %s", (ip, expected) => {
    expect(kind(ip)).toBe(expected);
  });

  it("judges addresses that embed IPv4 by the IPv4 address", () => {
    expect(kind("::ffff:127.0.0.1")).toBe("loopback");
    expect(kind("::ffff:7f00:1")).toBe("loopback");
    expect(kind("0:0:0:0:0:ffff:a9fe:a9fe")).toBe("metadata");
    expect(kind("::ffff:10.0.0.1")).toBe("private");
    expect(kind("::ffff:8.8.8.8")).toBe("public");
    expect(kind("::127.0.0.1")).toBe("loopback"); // IPv4-compatible (deprecated)
    expect(kind("64:ff9b::a9fe:a9fe")).toBe("metadata"); // NAT64
    expect(kind("64:ff9b::8.8.8.8")).toBe("public");
    expect(kind("2002:7f00:1::1")).toBe("loopback"); // 6to4
    expect(kind("2002:c0a8:101::1")).toBe("private");
  });

  it("parses compressed, full, zoned and malformed forms", () => {
    expect(parseIPv6("[::1]")).toEqual([...new Array(15).fill(0), 1]);
    expect(parseIPv6("fe80::1%eth0")).not.toBeNull();
    expect(parseIPv6("1::2::3")).toBeNull();
    expect(parseIPv6("12345::")).toBeNull();
    expect(parseIPv6("1:2:3:4:5:6:7:8:9")).toBeNull();
    expect(parseIPv6("::ffff:999.0.0.1")).toBeNull();
    expect(classifyAddress("::FFFF:127.0.0.1")?.address).toBe("::ffff:7f00:1");
  });
});

describe("policy", () => {
  it("admits loopback and private only with the flag; never link-local, metadata, CGNAT", () => {
    for (const k of ["loopback", "private"] as const) {
      expect(kindAllowed(k, { allowPrivate: false })).toBe(false);
      expect(kindAllowed(k, { allowPrivate: true })).toBe(true);
    }
    for (const k of ["link-local", "metadata", "cgnat", "multicast", "unspecified", "broadcast", "reserved"] as const)
      expect(kindAllowed(k, { allowPrivate: true })).toBe(false);
    expect(kindAllowed("public", { allowPrivate: false })).toBe(true);
  });
});

describe("checkWebhookUrl", () => {
  it("accepts ordinary public URLs and keeps port and host", () => {
    const r = checkWebhookUrl("https://hooks.example.com:8443/in?x=1", STRICT);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.hostname).toBe("hooks.example.com");
      expect(r.port).toBe(8443);
      expect(r.https).toBe(true);
      expect(r.ip).toBeNull();
    }
    expect(refused("http://93.184.216.34/hook")).toBeNull();
    expect(refused("http://[2606:4700:4700::1111]/hook")).toBeNull();
  });

  it.each([
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/hook",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.1/",
    "http://0x7f.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://10.0.0.1/",
    "http://192.168.0.10:8080/",
  ])("refuses %s without WEBHOOKS_ALLOW_PRIVATE", (url) => {
    expect(refused(url)).toMatch(/loopback|private/);
  });

  it("admits loopback and private with the flag", () => {
    for (const url of ["http://127.0.0.1:9999/", "http://[::1]:9999/", "http://localhost:9999/", "http://10.1.2.3:8080/", "http://[fd00::1]:8080/"])
      expect(refused(url, PRIVATE_OK)).toBeNull();
  });

  it.each([
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://169.254.10.10/",
    "http://[fe80::1]/",
    "http://100.64.1.1/",
    "http://100.100.100.200/",
    "http://0.0.0.0:8080/",
    "http://0/",
    "http://[::]/",
    "http://224.0.0.1:8080/",
  ])("refuses %s even with the flag", (url) => {
    expect(refused(url, PRIVATE_OK)).not.toBeNull();
  });

  it("is not fooled by userinfo: the host after @ is the host, and credentials are refused outright", () => {
    expect(refused("http://hooks.example.com@127.0.0.1/")).toMatch(/credentials/);
    expect(refused("http://user:pass@hooks.example.com/")).toMatch(/credentials/);
    expect(refused("http://@hooks.example.com/")).toMatch(/credentials/);
    // The fragment hides nothing: the host is 127.0.0.1.
    expect(refused("http://127.0.0.1#@hooks.example.com/")).toMatch(/loopback/);
    expect(refused("http://127.0.0.1\\@hooks.example.com/")).not.toBeNull();
  });

  it("checks schemes, ports and shapes", () => {
    expect(refused("ftp://hooks.example.com/")).toMatch(/http or https/);
    expect(refused("file:///etc/passwd")).toMatch(/http or https/);
    expect(refused("gopher://hooks.example.com:70/")).toMatch(/http or https/);
    expect(refused("hooks.example.com/in")).toMatch(/valid absolute URL/);
    expect(refused("http://hooks.example.com:22/")).toMatch(/port 22/);
    expect(refused("http://hooks.example.com:25/")).toMatch(/port 25/);
    expect(refused("http://hooks.example.com:0/")).not.toBeNull();
    expect(refused("http://hooks.example.com:65536/")).not.toBeNull();
    expect(refused("http://hooks.example.com:80/")).toBeNull();
    expect(refused("https://hooks.example.com:443/")).toBeNull();
    expect(refused("http://hooks.example.com:1024/")).toBeNull();
    expect(refused("http://hooks.example.com/ in")).toMatch(/whitespace/);
    expect(refused("http://hooks.example.com/" + "a".repeat(3000))).toMatch(/longer/);
  });

  it("requires https in production", () => {
    expect(refused("http://hooks.example.com/", PROD)).toMatch(/https/);
    expect(refused("https://hooks.example.com/", PROD)).toBeNull();
  });
});

describe("checkResolved", () => {
  it("needs every resolved address to pass, and connects to the first", () => {
    expect(checkResolved("h", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"], STRICT)).toEqual({ ok: true, address: "93.184.216.34", family: 4 });
    const mixed = checkResolved("rebind.example", ["93.184.216.34", "127.0.0.1"], STRICT);
    expect(mixed.ok).toBe(false);
    if (!mixed.ok) expect(mixed.reason).toMatch(/rebind\.example resolves to a loopback address \(127\.0\.0\.1\)/);
    expect(checkResolved("h", ["169.254.169.254"], PRIVATE_OK).ok).toBe(false);
    expect(checkResolved("h", ["::ffff:169.254.169.254"], PRIVATE_OK).ok).toBe(false);
    expect(checkResolved("h", ["127.0.0.1"], PRIVATE_OK)).toEqual({ ok: true, address: "127.0.0.1", family: 4 });
    expect(checkResolved("h", [], PRIVATE_OK).ok).toBe(false);
    expect(checkResolved("h", ["not-an-ip"], PRIVATE_OK).ok).toBe(false);
  });
});
