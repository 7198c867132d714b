// Starts VokeTag nodes as real child processes (bin/node.ts), the way `npm start` does, and stops
// them with SIGTERM (or SIGKILL for chaos tests).
import { spawn, ChildProcess } from "node:child_process";
import path from "node:path";
import net from "node:net";

const ROOT = path.resolve(__dirname, "..", "..");

export interface NodeHandle {
  proc: ChildProcess;
  logs: string[];
  port?: number;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** Spawns a node; resolves once it logs "HTTP listening" (api nodes) or "ServiceBroker ... started". */
export async function startNode(env: Record<string, string>, opts: { waitFor?: RegExp; timeoutMs?: number } = {}): Promise<NodeHandle> {
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin", "node.ts")], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: string[] = [];
  const waitFor = opts.waitFor ?? (env.SERVICES && !env.SERVICES.split(",").includes("api") ? /started successfully/ : /HTTP listening/);
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start in time:\n${logs.slice(-30).join("\n")}`)), opts.timeoutMs ?? 60_000);
    const onData = (buf: Buffer) => {
      for (const line of buf.toString().split("\n")) {
        if (!line) continue;
        logs.push(line);
        if (waitFor.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before starting:\n${logs.slice(-30).join("\n")}`));
    });
  });
  await ready;
  const handle: NodeHandle = {
    proc,
    logs,
    port: env.PORT ? Number(env.PORT) : undefined,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode !== null || proc.signalCode) return proc.exitCode;
      proc.kill(signal);
      return exited;
    },
  };
  return handle;
}
