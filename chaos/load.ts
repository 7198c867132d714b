// Open-loop scan load with a record per request (when it started, how long it took, what came
// back), so a scenario can cut the run into phases (before / during / after a fault) and compare.
// Acknowledged = 200 with a scan id: the consumer got a verdict, so the scan must be in the ledger.
import { percentile } from "../harness/cluster";

export interface Sample {
  /** ms since the load started */
  t: number;
  ms: number;
  status: number | string;
  scanId?: string;
}

export interface Stats {
  sent: number;
  acknowledged: number;
  failed: number;
  statuses: Record<string, number>;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** acknowledged per second over the window */
  throughput: number;
}

export interface LoadOptions {
  baseUrl: string;
  tokens: string[];
  ratePerSecond: number;
  concurrency?: number;
  timeoutMs?: number;
}

export class ScanLoad {
  readonly samples: Sample[] = [];
  readonly startedAt = Date.now();
  private stopped = false;
  private loop: Promise<void>;
  private inflight = new Set<Promise<void>>();

  constructor(private opts: LoadOptions) {
    this.loop = this.run();
  }

  /** ms since the load started (to mark phases). */
  now(): number {
    return Date.now() - this.startedAt;
  }

  private async run() {
    const interval = 1000 / this.opts.ratePerSecond;
    const limit = this.opts.concurrency ?? 64;
    let i = 0;
    for (let next = Date.now(); !this.stopped; next += interval) {
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      // A saturated target: do not pile up more than `limit` requests (the rate then drops, and
      // the latency of the queued ones says so).
      while (this.inflight.size >= limit) await Promise.race(this.inflight);
      if (this.stopped) break;
      const token = this.opts.tokens[i % this.opts.tokens.length];
      const p = this.one(token, i++);
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    }
  }

  private async one(token: string, i: number) {
    const sample: Sample = { t: this.now(), ms: 0, status: 0 };
    const t0 = performance.now();
    try {
      const res = await fetch(`${this.opts.baseUrl}/v1/scan`, {
        method: "POST",
        // Many devices, so that per-device limits and risk factors behave like a crowd, not one phone.
        headers: { "content-type": "application/json", "user-agent": `chaos-load/${i % 500}`, "accept-language": "en" },
        body: JSON.stringify({ token }),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
      });
      sample.status = res.status;
      const body: any = await res.json().catch(() => null);
      if (res.status === 200 && body?.scan?.id) sample.scanId = body.scan.id;
    } catch (err: any) {
      // "TypeError: fetch failed" says little: keep the network cause (ECONNRESET, other side closed...).
      const cause = err?.cause?.code || err?.cause?.message;
      sample.status = `${err?.name || "error"}${cause ? `:${cause}` : ""}`;
    }
    sample.ms = performance.now() - t0;
    this.samples.push(sample);
  }

  async stop(): Promise<Sample[]> {
    this.stopped = true;
    await this.loop;
    await Promise.all(this.inflight);
    return this.samples;
  }
}

/** Statistics of the requests that started in [fromMs, toMs). */
export function stats(samples: Sample[], fromMs = 0, toMs = Infinity): Stats {
  const s = samples.filter((x) => x.t >= fromMs && x.t < toMs);
  const statuses: Record<string, number> = {};
  let acknowledged = 0;
  for (const x of s) {
    statuses[x.status] = (statuses[x.status] ?? 0) + 1;
    if (x.scanId) acknowledged++;
  }
  const lat = s.map((x) => x.ms).sort((a, b) => a - b);
  const first = s.length ? Math.min(...s.map((x) => x.t)) : 0;
  const last = s.length ? Math.max(...s.map((x) => x.t + x.ms)) : 0;
  const r = (v: number) => Math.round(v * 10) / 10;
  return {
    sent: s.length,
    acknowledged,
    failed: s.length - acknowledged,
    statuses,
    p50: r(percentile(lat, 50)),
    p95: r(percentile(lat, 95)),
    p99: r(percentile(lat, 99)),
    max: r(lat.length ? lat[lat.length - 1] : 0),
    throughput: last > first ? r((acknowledged * 1000) / (last - first)) : 0,
  };
}

export const ackIds = (samples: Sample[]) => samples.filter((s) => s.scanId).map((s) => s.scanId!);
