// A ledger entry for a scan of an unknown token: what the appender tests and the benchmark write.
import crypto from "node:crypto";
import type { ScanRecord } from "../../mixins/ledger-appender";

export function invalidScanRecord(over: Partial<ScanRecord> = {}): ScanRecord {
  return {
    id: crypto.randomUUID(),
    tenant_id: null,
    product_id: null,
    batch_id: null,
    at: new Date(),
    device: crypto.randomBytes(32).toString("hex"),
    network: "n",
    lat: null,
    lng: null,
    country: null,
    verdict: "invalid",
    score: 100,
    factors: [],
    ...over,
  };
}
