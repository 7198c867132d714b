// Response schemas of the webhooks service (services/webhooks.service.ts): endpoints, the callback
// channel, deliveries and their attempts. They mirror endpointView and deliveryView field for field.
import { WEBHOOK_EVENTS, TEST_EVENT } from "../webhook-events";
import { arrayOf, bool, enumOf, freeObject, int, nullable, num, obj, str, strings, timestamp, uuid, JsonSchema } from "./common";

const endpointFields: Record<string, JsonSchema> = {
  id: uuid,
  kind: { ...enumOf(["endpoint", "callback"]), description: "\"callback\": the channel of one-off callbacks (callback_url), which has no URL of its own." },
  url: nullable(str),
  description: nullable(str),
  events: { ...strings, description: `Subscribed event types, or "*" for all (${WEBHOOK_EVENTS.join(", ")}).` },
  status: enumOf(["enabled", "disabled"]),
  disabled_reason: nullable(str),
  disabled_at: nullable(timestamp),
  previous_secret_expires_at: { ...nullable(timestamp), description: "While set, the previous secret also signs (a second signature)." },
  created_at: timestamp,
  updated_at: timestamp,
};

export const WebhookEndpoint = obj(endpointFields);
/** Creation and rotation: the signing secret, shown only in this answer. */
export const WebhookEndpointWithSecret = obj({ ...endpointFields, secret: { type: "string", pattern: "^whsec_" } });
export const WebhookEndpointDeleted = obj({ ...endpointFields, deleted_at: timestamp, deleted: { const: true } });

/** The body every delivery POSTs: {type, timestamp, data}. */
export const WebhookMessage = obj({ type: str, timestamp, data: freeObject });

export const WebhookEventTypes = obj({
  items: arrayOf(obj({ type: enumOf([...WEBHOOK_EVENTS, TEST_EVENT]), subscribable: bool, example: WebhookMessage })),
});

const deliveryFields: Record<string, JsonSchema> = {
  id: uuid,
  endpoint_id: uuid,
  webhook_id: { ...str, description: "The Standard Webhooks message id: the same on every attempt and replay." },
  event_type: str,
  url: nullable(str),
  status: enumOf(["pending", "succeeded", "dead", "cancelled"]),
  in_flight: { ...bool, description: "A worker holds it right now." },
  attempts: int,
  response_status: nullable(int),
  latency_ms: nullable(num),
  error: nullable(str),
  last_attempt_at: nullable(timestamp),
  next_attempt_at: nullable(timestamp),
  created_at: timestamp,
  delivered_at: nullable(timestamp),
};

export const WebhookDelivery = obj(deliveryFields);

const WebhookAttempt = obj({
  attempt: int,
  at: timestamp,
  url: nullable(str),
  address: { ...nullable(str), description: "The IP address the request went to." },
  response_status: nullable(int),
  latency_ms: nullable(num),
  error: nullable(str),
  response_body: { ...nullable(str), description: "The start of the receiver's answer." },
  node: nullable(str),
});

export const WebhookDeliveryDetail = obj({ ...deliveryFields, payload: WebhookMessage, history: arrayOf(WebhookAttempt) });
