// A node's memory as the OS sees it, after a full garbage collection. The node is started with
// NODE_OPTIONS=--inspect=127.0.0.1:0 (loopback, a port of its own); we ask V8 for a full GC over
// the inspector protocol (HeapProfiler.collectGarbage) and read VmRSS from /proc/<pid>/status. No
// debug route or product code is involved, and the inspector stays on loopback in test processes.
import fs from "node:fs";

/** NODE_OPTIONS for a node whose memory we will measure. */
export function inspectableNodeOptions(): string {
  return `${process.env.NODE_OPTIONS ?? ""} --inspect=127.0.0.1:0`.trim();
}

/** The inspector's WebSocket URL, from the "Debugger listening on ws://…" line the node printed. */
export function inspectorUrl(logs: string[]): string | null {
  for (const line of logs) {
    const m = /Debugger listening on (ws:\/\/\S+)/.exec(line);
    if (m) return m[1];
  }
  return null;
}

async function cdp(url: string, calls: { method: string; params?: object }[], timeoutMs = 30_000): Promise<any[]> {
  const ws = new WebSocket(url);
  const results: any[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`inspector at ${url} did not answer in ${timeoutMs} ms`));
    }, timeoutMs);
    let i = 0;
    const next = () => {
      if (i >= calls.length) {
        clearTimeout(timer);
        ws.close();
        return resolve();
      }
      ws.send(JSON.stringify({ id: i + 1, method: calls[i].method, params: calls[i].params ?? {} }));
    };
    ws.onopen = next;
    ws.onerror = (e: any) => {
      clearTimeout(timer);
      reject(new Error(`inspector at ${url}: ${e?.message ?? "connection failed"}`));
    };
    ws.onmessage = (ev: any) => {
      const msg = JSON.parse(String(ev.data));
      if (msg.id !== i + 1) return; // events, not our answer
      if (msg.error) {
        clearTimeout(timer);
        ws.close();
        return reject(new Error(`${calls[i].method}: ${msg.error.message}`));
      }
      results.push(msg.result);
      i++;
      next();
    };
  });
  return results;
}

export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export interface MemorySample {
  rssMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
}

/**
 * Full GC (twice: the second collects what finalizers of the first released), a settle pause so
 * freed pages go back to the OS, then RSS and V8's heap use.
 */
export async function measureAfterGc(pid: number, logs: string[], settleMs = 1000): Promise<MemorySample> {
  const url = inspectorUrl(logs);
  if (!url) throw new Error(`pid ${pid} has no inspector (start it with NODE_OPTIONS=${inspectableNodeOptions()})`);
  await cdp(url, [{ method: "HeapProfiler.collectGarbage" }, { method: "HeapProfiler.collectGarbage" }]);
  await new Promise((r) => setTimeout(r, settleMs));
  const [heap] = await cdp(url, [{ method: "Runtime.getHeapUsage" }]);
  const mb = (b: number) => Math.round((b / 1048576) * 10) / 10;
  return { rssMb: mb(rssBytes(pid)), heapUsedMb: mb(heap.usedSize), heapTotalMb: mb(heap.totalSize) };
}

export function growthPct(before: number, after: number): number {
  return Math.round(((after - before) / before) * 1000) / 10;
}
