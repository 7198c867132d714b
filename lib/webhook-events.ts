// The events tenants can subscribe to, with the example bodies docs/WEBHOOKS.md shows. A webhook
// body is always `{type, timestamp, data}`; `data` is the outbox event's data as written.
export const WEBHOOK_EVENTS = [
  "batch.registered",
  "batch.failed",
  "batch.anchored",
  "anchor.confirmed",
  "product.recalled",
  "product.recall_withdrawn",
  "scan.suspicious",
  "fraud.reported",
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

/** Sent by POST /v1/webhooks/:id/test; not subscribable, always delivered to the endpoint tested. */
export const TEST_EVENT = "webhook.test";

export interface WebhookMessage {
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

/** Subscriptions: known event names, or "*" for all of them (including ones added later). */
export function unknownEvents(events: string[]): string[] {
  return events.filter((e) => e !== "*" && !(WEBHOOK_EVENTS as readonly string[]).includes(e));
}

export function messageBody(type: string, timestamp: string | Date, data: Record<string, unknown>): string {
  const ts = typeof timestamp === "string" ? timestamp : timestamp.toISOString();
  const message: WebhookMessage = { type, timestamp: ts, data };
  return JSON.stringify(message);
}

const T = "3f1c2a9e-5b7d-4e0a-9c61-2d8b7f4a1e03";
const B = "8a6f0c3e-2d41-4b7a-a1c9-5e3f7d2b9c10";
const R = "5c4b3a29-1807-4f6e-8d5c-4b3a29180706";

export const EVENT_EXAMPLES: Record<WebhookEventType | typeof TEST_EVENT, WebhookMessage> = {
  "batch.registered": {
    type: "batch.registered",
    timestamp: "2026-03-02T10:15:04.120Z",
    data: { tenant_id: T, batch_id: B, products: 3, root: "5d0c1e2b9f6a47c3e8d1b0a9f2c4e6d8b7a5c3e1f0d9b8a7c6e5d4c3b2a1f0e9" },
  },
  "batch.failed": {
    type: "batch.failed",
    timestamp: "2026-03-02T10:15:04.120Z",
    data: { tenant_id: T, batch_id: B, errors: [{ row: 0, field: "serial", message: "a serial was registered concurrently by another batch" }] },
  },
  "batch.anchored": {
    type: "batch.anchored",
    timestamp: "2026-03-02T10:17:40.002Z",
    data: {
      tenant_id: T,
      batch_id: B,
      period_id: "c0a8e4f2-7b1d-4c6e-9a3f-1e2d3c4b5a69",
      chain_id: 137,
      tx_hash: "0x9c3b7e1d5f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e",
      block_number: 51234567,
    },
  },
  "anchor.confirmed": {
    type: "anchor.confirmed",
    timestamp: "2026-03-02T10:17:39.871Z",
    data: {
      tenant_id: T,
      period_id: "c0a8e4f2-7b1d-4c6e-9a3f-1e2d3c4b5a69",
      chain_id: 137,
      tx_hash: "0x9c3b7e1d5f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e",
      block_number: 51234567,
      batch_ids: [B],
    },
  },
  "product.recalled": {
    type: "product.recalled",
    timestamp: "2026-03-05T08:00:00.000Z",
    data: { tenant_id: T, recall_id: R, scope: "product", batch_id: B, tag_ids: ["0e6f3a2b-9c1d-4e8f-a7b6-c5d4e3f2a1b0"], products: 1, reason: "defective clasp" },
  },
  "product.recall_withdrawn": {
    type: "product.recall_withdrawn",
    timestamp: "2026-03-06T09:30:00.000Z",
    data: { tenant_id: T, recall_id: R, scope: "product", batch_id: B, tag_ids: ["0e6f3a2b-9c1d-4e8f-a7b6-c5d4e3f2a1b0"], products: 1 },
  },
  "scan.suspicious": {
    type: "scan.suspicious",
    timestamp: "2026-03-04T19:22:11.530Z",
    data: {
      tenant_id: T,
      scan_id: "6b2e9d4c-1a3f-4e7b-8c5d-0f9e8d7c6b5a",
      tag_id: "0e6f3a2b-9c1d-4e8f-a7b6-c5d4e3f2a1b0",
      batch_id: B,
      score: 72,
      factors: [{ name: "impossible_travel", detail: "scanned 9,100 km away 40 minutes after the previous scan" }],
    },
  },
  "fraud.reported": {
    type: "fraud.reported",
    timestamp: "2026-03-04T19:30:02.004Z",
    data: { tenant_id: T, report_id: "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d", tag_id: "0e6f3a2b-9c1d-4e8f-a7b6-c5d4e3f2a1b0", batch_id: B, reason: "counterfeit" },
  },
  "webhook.test": {
    type: "webhook.test",
    timestamp: "2026-03-01T12:00:00.000Z",
    data: { tenant_id: T, endpoint_id: "4f5e6d7c-8b9a-4c0d-9e1f-2a3b4c5d6e7f", message: "This is a test delivery from VokeTag." },
  },
};
