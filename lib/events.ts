// Durable events: which consumers must acknowledge each outbox topic. The relay calls each listed
// action until it succeeds, so an event survives a consumer being down; consumers are idempotent.
export const EVENT_CONSUMERS: Record<string, string[]> = {
  "batch.registered": ["webhooks.onEvent"],
  "batch.failed": ["webhooks.onEvent"],
  "anchor.submitted": ["factory.onEvent"],
  "anchor.confirmed": ["factory.onEvent", "webhooks.onEvent"],
  "batch.anchored": ["webhooks.onEvent"],
  "product.recalled": ["webhooks.onEvent", "scan.onEvent"],
  "product.recall_withdrawn": ["webhooks.onEvent", "scan.onEvent"],
  "scan.suspicious": ["webhooks.onEvent"],
  "fraud.reported": ["webhooks.onEvent"],
};

export const EVENT_TOPICS = Object.keys(EVENT_CONSUMERS);

export interface OutboxEvent<T = Record<string, unknown>> {
  /** Outbox row id: stable across redeliveries, the consumer's idempotency key. */
  id: number;
  type: string;
  timestamp: string;
  data: T;
}

/** Delay before the next delivery attempt of an outbox row: 1 s doubling to 5 min. */
export function outboxBackoffSeconds(attempts: number): number {
  return Math.min(300, 2 ** Math.max(0, attempts - 1));
}
