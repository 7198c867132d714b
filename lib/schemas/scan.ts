// Response schemas of the scan routes: the verification answer (ARCHITECTURE.md, Scan), a tag's scan
// history and a filed report. Shapes follow scan.verifyScan and scan.history.
import { FACTOR_NAMES } from "../risk";
import { VERDICTS } from "../analytics";
import { arrayOf, enumOf, freeObject, int, nullable, num, obj, page, str, strings, timestamp, uuid } from "./common";
import { ANCHOR_STATUSES } from "./anchor";
import { PRODUCT_STATUSES, TAG_STATUSES } from "./factory";

export const RISK_LEVELS = ["low", "medium", "high"] as const;
export const SCAN_CHANNELS = ["api", "page", "gs1"] as const;

/** One factor of the risk model; every factor is listed, idle ones with contribution 0. */
export const RiskFactor = obj({
  name: enumOf(FACTOR_NAMES),
  value: { type: ["number", "string", "boolean", "null"] },
  weight: num,
  contribution: num,
  detail: str,
});

export const ScanResult = obj({
  verdict: enumOf(VERDICTS),
  risk: obj({ score: { type: "integer", minimum: 0, maximum: 100 }, level: enumOf(RISK_LEVELS), factors: arrayOf(RiskFactor) }),
  product: nullable(
    obj(
      {
        id: uuid,
        sku: str,
        name: str,
        serial: str,
        gtin: nullable(str),
        lot: nullable(str),
        status: enumOf(PRODUCT_STATUSES),
        attributes: freeObject,
        tag: obj({ id: uuid, status: enumOf(TAG_STATUSES) }),
      },
      { recall_reason: { ...nullable(str), description: "The manufacturer's recall notice (recalled products only)." } },
    ),
  ),
  batch: nullable(obj({ id: uuid, name: nullable(str), market_regions: strings })),
  brand: nullable(obj({ id: uuid, name: str })),
  anchor: nullable(
    obj({
      status: enumOf(ANCHOR_STATUSES),
      chain_id: nullable(int),
      tx_hash: nullable({ type: "string", pattern: "^0x[0-9a-fA-F]{64}$" }),
      block_number: nullable(int),
      proof_url: { type: "string", format: "uri" },
    }),
  ),
  scan: obj({ id: uuid, count: { type: "integer", minimum: 1 }, devices: { type: "integer", minimum: 1 }, first_scanned_at: timestamp }),
});

/** What every listing of scans shows of one (a tag's history, the admin's scan search). */
export const scanFields = {
  id: uuid,
  at: timestamp,
  verdict: enumOf(VERDICTS),
  score: int,
  country: nullable(str),
  location: nullable(obj({ lat: num, lng: num })),
};

/** One scan of a tag as its history lists it (factors: the ones that contributed). */
export const ScanHistoryItem = obj({
  ...scanFields,
  located_at: nullable(timestamp),
  channel: nullable(enumOf(SCAN_CHANNELS)),
  device: { type: "string", description: "A prefix of the device hash: tells devices apart, identifies none." },
  factors: arrayOf(obj({ name: enumOf(FACTOR_NAMES), contribution: num })),
});

export const ScanHistoryPage = page(ScanHistoryItem);

/** POST /v1/report. */
export const ReportCreated = obj({ id: uuid });
