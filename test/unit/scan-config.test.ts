import { loadConfig, ConfigError } from "../../lib/config";

describe("scan settings", () => {
  it("give a scan 5 s by default and page forms a day; both are integer seconds", () => {
    expect(loadConfig({}).scan).toEqual({ timeoutSeconds: 5, formTtlSeconds: 86_400 });
    expect(loadConfig({ SCAN_TIMEOUT: "2", SCAN_FORM_TTL: "3600" }).scan).toEqual({ timeoutSeconds: 2, formTtlSeconds: 3600 });
    expect(() => loadConfig({ SCAN_TIMEOUT: "0" })).toThrow(ConfigError);
    expect(() => loadConfig({ SCAN_TIMEOUT: "1.5" })).toThrow(ConfigError);
    expect(() => loadConfig({ SCAN_FORM_TTL: "59" })).toThrow(ConfigError);
  });
});
