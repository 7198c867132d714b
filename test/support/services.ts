// Real services for integration suites: a suite that needs one says loudly that it skipped when it
// is unreachable, and fails instead when VOKETAG_REQUIRE_SERVICES=1 (as .ci/run sets).
import net from "node:net";

export const REQUIRE = process.env.VOKETAG_REQUIRE_SERVICES === "1";

export const SERVICES = {
  postgres: { host: "127.0.0.1", port: 5432, url: process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test" },
  redis: { host: "127.0.0.1", port: 6379, url: process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379" },
  nats: { host: "127.0.0.1", port: 4222, url: process.env.TEST_NATS_URL || "nats://127.0.0.1:4222" },
};

export function reachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/**
 * Resolves to true when every named service answers. Otherwise throws under
 * VOKETAG_REQUIRE_SERVICES=1, or warns loudly and resolves false so the suite skips.
 */
export async function needServices(suite: string, names: (keyof typeof SERVICES)[]): Promise<boolean> {
  const down: string[] = [];
  for (const n of names) if (!(await reachable(SERVICES[n].host, SERVICES[n].port))) down.push(`${n} (${SERVICES[n].host}:${SERVICES[n].port})`);
  if (!down.length) return true;
  const msg = `${suite}: unreachable: ${down.join(", ")}`;
  if (REQUIRE) throw new Error(`${msg} — VOKETAG_REQUIRE_SERVICES=1, so this is a failure`);
  // eslint-disable-next-line no-console
  console.warn(`\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!! SKIPPED ${msg}\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n`);
  return false;
}
