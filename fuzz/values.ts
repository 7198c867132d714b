// The hostile values the fuzzer draws from: wrong types, unicode edge cases, injection strings,
// path traversal, broken JSON and CSV. A seeded PRNG picks among them, so a run is reproducible
// from its seed.

/** mulberry32: small, fast, good enough to pick test cases reproducibly. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)],
    chance: (p: number) => next() < p,
  };
}
export type Rng = ReturnType<typeof prng>;

const deep = (n: number, leaf: unknown): unknown => {
  let v: unknown = leaf;
  for (let i = 0; i < n; i++) v = { a: v };
  return v;
};

/** JSON values of every type and the awkward corners of each. */
export const WRONG_TYPES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e308,
  -1e308,
  // 2^53 + 1 as JSON text: beyond what a double holds exactly.
  JSON.parse("9007199254740993"),
  "",
  " ",
  "x".repeat(10_000),
  "0",
  "true",
  "null",
  "NaN",
  "-Infinity",
  [],
  [null],
  [1, "a", {}],
  {},
  { $gt: "" },
  JSON.parse('{"__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}}}'),
  deep(200, 1),
  Array.from({ length: 5000 }, (_, i) => i),
];

export const UNICODE: string[] = [
  "\u0000",
  "a\u0000b",
  "\ud800", // a lone surrogate: not encodable as UTF-8
  "\udfff\ud800",
  "\u202eevil\u202c",
  "\u200b\u200c\u200d\u2060",
  "\ufeffBOM",
  "𝕍𝕠𝕜𝕖𝕋𝕒𝕘 🏷️👩‍👩‍👧‍👦",
  "e\u0301".repeat(2000),
  "Z̷̧̛̖̗a̸̢̛͚l̶̨̛g̴̢̛o̷̢̘",
  "ﷺ﷽",
  "\u{10FFFF}\u{E0001}",
  "ＡＢＣ１２３",
  "İıſK",
  "\r\n\t\v\f",
  "\u0085\u2028\u2029",
  "é".normalize("NFD"),
  "日本語のテキスト",
  "مرحبا بالعالم",
  "\\u0000",
];

export const INJECTION: string[] = [
  "' OR '1'='1",
  "1; DROP TABLE products;--",
  "\"; DELETE FROM tenants WHERE ''='",
  "1' UNION SELECT password_hash FROM users--",
  "$(reboot)",
  "`id`",
  "; cat /etc/passwd",
  "| nc 127.0.0.1 4444",
  "$" + "{jndi:ldap://127.0.0.1/a}",
  "{{7*7}}",
  "<%= 7*7 %>",
  "#{7*7}",
  "<script>alert(1)</script>",
  "\"><img src=x onerror=alert(1)>",
  "javascript:alert(1)",
  "{\"$where\": \"sleep(1000)\"}",
  "*)(uid=*))(|(uid=*",
  "%00",
  "%n%n%n%n%s%s",
  "=cmd|' /C calc'!A0",
  "../../../../etc/passwd",
  "file:///etc/passwd",
  "http://169.254.169.254/latest/meta-data/",
  "\r\nSet-Cookie: x=1",
  "admin'--",
  "\\' OR 1=1 --",
];

/** Path-segment values: traversal in every spelling, encodings a parser may get wrong. */
export const PATH_VALUES: string[] = [
  "..",
  "../..",
  "..%2F..%2F..%2Fetc%2Fpasswd",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "..%252f..%252fetc%252fpasswd",
  "....//....//etc/passwd",
  "..\\..\\windows\\win.ini",
  "%c0%ae%c0%ae%c0%af",
  "%00",
  "abc%00.json",
  "%zz",
  "%",
  "%E0%A4%A",
  "%ff%fe",
  "%F0%9F%92%A9",
  "00000000-0000-0000-0000-000000000000",
  "ffffffff-ffff-ffff-ffff-ffffffffffff",
  "00000000-0000-0000-0000-00000000000g",
  "1'OR'1'='1",
  "1%27%20OR%20%271%27%3D%271",
  "%3Cscript%3E",
  "a".repeat(5000),
  "-1",
  "0",
  "1e309",
  "null",
  "undefined",
  "%20",
  "~",
  ";",
  "%3B",
  "*",
  ".json",
  "%2F",
  "x;jsessionid=1",
  "0x" + "f".repeat(64),
  "0x" + "g".repeat(64),
];

/** Raw request bodies that are not valid JSON, or are JSON in the wrong shape. */
export const BROKEN_JSON: (string | Buffer)[] = [
  "{",
  "}",
  "[",
  '{"a":}',
  '{"a":1,}',
  "{'a':1}",
  "nul",
  "tru",
  '"unterminated',
  "{\"a\":\"\\x41\"}",
  '{"a":"\\ud800"}',
  '{"a":1}{"b":2}',
  '{"a":1} trailing',
  "\ufeff{}",
  "[]",
  "null",
  "0",
  '"string"',
  "1e999999",
  '{"a":' + "1".repeat(100_000) + "}",
  "[".repeat(100_000) + "]".repeat(100_000),
  '{"a":'.repeat(20_000) + "1" + "}".repeat(20_000),
  '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
  '{"a":1,"a":2,"a":{"b":3}}',
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]), // invalid UTF-8 inside a string
  Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00]), // UTF-16 LE with BOM
  Buffer.alloc(1024, 0),
  "\u0000\u0001\u0002",
  " ".repeat(10_000),
];

export const BROKEN_CSV: (string | Buffer)[] = [
  "",
  "\n\n\n",
  "sku,name,serial\n",
  "not,the,right,header\n1,2,3,4\n",
  'sku,name,serial\n"unterminated,quote,here\n',
  'sku,name,serial\na,"b""c,d\n',
  "sku,name,serial\na,b\n",
  "sku,name,serial\na,b,c,d,e,f,g\n",
  "sku,name,serial\r\na,b,c\ra,b,d\n",
  "sku,sku,serial\na,b,c\n",
  "sku,name,serial,attributes\na,b,c,{not json}\n",
  "sku,name,serial,gtin\na,b,c,12345678901234567890\n",
  "sku,name,serial\n=cmd|' /C calc'!A0,@SUM(1+1),+1-1\n",
  "sku,name,serial\n" + "a,b,c\n".repeat(3),
  "sku,name,serial\na,b," + "x".repeat(200_000) + "\n",
  "sku," + "col,".repeat(2000) + "serial\n",
  "sku,name,serial\na\u0000,b,c\n",
  Buffer.concat([Buffer.from("sku,name,serial\na,"), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(",c\n")]),
  Buffer.from("\ufeffsku,name,serial\na,b,c\n", "utf16le"),
  "\ufeffsku,name,serial\na,b,c\n",
  "sku;name;serial\na;b;c\n",
  "sku\tname\tserial\na\tb\tc\n",
  '"sku","name","serial"\n"a","b","' + "\n".repeat(1000) + '"\n',
  "sku,name,serial\n" + "a,b,dup\n".repeat(5),
];

export const CONTENT_TYPES = [
  "text/plain",
  "application/xml",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/json; charset=utf-16",
  "application/json; charset=latin1",
  "application/vnd.api+json",
  "application/json, text/csv",
  "",
  "*/*",
  "text/csv; charset=utf-32",
  "application/octet-stream",
];

export const AUTH_JUNK: Record<string, string>[] = [
  { authorization: "Bearer" },
  { authorization: "Bearer " + "a".repeat(8000) },
  { authorization: "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0." },
  { authorization: "Basic YWRtaW46YWRtaW4=" },
  { authorization: "Bearer ../../../etc/passwd" },
  { "x-api-key": "" },
  { "x-api-key": "vk_test_00000000_" + "0".repeat(40) },
  { "x-api-key": "' OR 1=1--" },
  { "x-api-key": "x".repeat(5000) },
  { "x-api-key": "vk_live_ab_cd", authorization: "Bearer x.y.z" },
];
