// Response schemas of the factory's routes: API keys, batches, products and their tags, uploads,
// recalls. Shapes follow the views in services/factory.service.ts (keyView, batchView, productViews,
// uploadView, recallView) and the columns behind them (migrations 001, 003).
import { API_SCOPES } from "../apikey";
import { UPLOAD_CONTENT_TYPES } from "../uploads";
import { arrayOf, enumOf, freeObject, int, nullable, obj, page, str, strings, timestamp, uuid, type JsonSchema } from "./common";

export const BATCH_STATUSES = ["received", "processing", "registered", "anchoring", "anchored", "failed"] as const;
export const PRODUCT_STATUSES = ["active", "recalled", "void"] as const;
export const TAG_STATUSES = ["active", "void"] as const;
/** Why a printed tag is voided (POST /v1/products/:id/void and replace-tag take one of these). */
export const VOID_REASONS = ["lost", "damaged", "misprinted", "stolen", "other"] as const;
export const UPLOAD_STATUSES = ["receiving", "completed", "failed", "cancelled", "expired"] as const;
export const RECALL_SCOPES = ["product", "batch"] as const;
/** The phase of a batch being registered (batch_progress.phase). */
export const BATCH_PHASES = ["inserting", "finishing", "tree"] as const;

const scope = enumOf(["*", ...API_SCOPES]);
const hex64: JsonSchema = { type: "string", pattern: "^[0-9a-f]{64}$" };

/** An API key as listed (never its secret). */
export const ApiKey = obj({
  id: uuid,
  name: str,
  prefix: str,
  scopes: arrayOf(scope),
  created_at: timestamp,
  revoked_at: nullable(timestamp),
  last_used_at: nullable(timestamp),
});

/** A key just created: the only answer that carries the key itself (tenant and admin routes alike). */
export const ApiKeyCreated = obj({
  id: uuid,
  key: { type: "string", pattern: "^vk_[a-z]{2,8}_[a-z0-9]{8}_[A-Za-z0-9_-]{32,128}$" },
  prefix: str,
  scopes: arrayOf(scope),
  name: str,
  tenant_id: uuid,
  created_at: timestamp,
});

/** One refused row of a batch (lib/products RowError); row 0 is the batch as a whole. */
export const RowError = obj({ row: int, message: str }, { field: str });

/** POST /v1/batches and /v1/products: accepted for registration. */
export const BatchAccepted = obj({
  id: uuid,
  status: enumOf(["received"]),
  total: nullable({ type: "integer", minimum: 1, description: "Products in the batch; null for a CSV until it is read through." }),
});

/** POST /v1/batches/:id/retry: registration starts again. */
export const BatchRetried = obj({ id: uuid, status: enumOf(["received"]) });

const batchFields: Record<string, JsonSchema> = {
  id: uuid,
  name: nullable(str),
  status: enumOf(BATCH_STATUSES),
  market_regions: strings,
  progress: obj({ done: int, total: int }, { estimated: { const: true, description: "total is estimated from the bytes read so far (a CSV)." } }),
  rate_per_s: nullable(int),
  eta_s: nullable(int),
  root: nullable(hex64),
  errors: nullable(arrayOf(RowError)),
  created_at: timestamp,
  started_at: nullable(timestamp),
  registered_at: nullable(timestamp),
  anchored_at: nullable(timestamp),
};
const batchPhase = { phase: { ...nullable(enumOf(BATCH_PHASES)), description: "Only while processing." } };

export const Batch = obj(batchFields, batchPhase);

/** GET /v1/batches/:id: the batch with its status history. */
export const BatchDetail = obj(
  { ...batchFields, history: arrayOf(obj({ status: enumOf(BATCH_STATUSES), at: timestamp, detail: nullable(freeObject) })) },
  batchPhase,
);

export const Product = obj({
  id: uuid,
  batch_id: uuid,
  status: enumOf(PRODUCT_STATUSES),
  status_reason: nullable(str),
  tag_id: { ...uuid, description: "The tag printed now: the product's id, or its latest replacement tag." },
  token: { ...nullable(str), description: "null when the tag was signed with a key since removed from the keyring." },
  verification_url: nullable({ type: "string", format: "uri" }),
  digital_link: { ...nullable({ type: "string", format: "uri" }), description: "GS1 Digital Link; null without a GTIN." },
  sku: str,
  name: str,
  serial: str,
  gtin: nullable(str),
  lot: nullable(str),
  attributes: freeObject,
  recall_id: nullable(uuid),
  ordinal: int,
  created_at: timestamp,
});

export const ProductTag = obj({
  id: uuid,
  status: enumOf(TAG_STATUSES),
  token: nullable(str),
  void_reason: nullable(enumOf(VOID_REASONS)),
  voided_at: nullable(timestamp),
  replaced_by: nullable(uuid),
});

/** GET /v1/products/:id: the product with every tag it has had. */
export const ProductDetail = obj({ ...Product.properties, tags: arrayOf(ProductTag) });

/** POST /v1/products/:id/replace-tag: the product with its new tag, and the tag it replaced. */
export const ProductRetagged = obj({ ...Product.properties, replaced_tag_id: uuid });

export const Upload = obj({
  id: uuid,
  status: enumOf(UPLOAD_STATUSES),
  size: int,
  received: int,
  sha256: hex64,
  content_type: enumOf(UPLOAD_CONTENT_TYPES),
  name: nullable(str),
  market_regions: strings,
  batch_id: nullable(uuid),
  error: nullable(obj({ code: str, message: str }, {}, { open: true, description: "Why the upload was refused, with the error's details." })),
  created_at: timestamp,
  completed_at: nullable(timestamp),
  expires_at: timestamp,
});

export const Recall = obj({
  id: uuid,
  scope: enumOf(RECALL_SCOPES),
  product_id: nullable(uuid),
  batch_id: uuid,
  reason: str,
  products: int,
  status: enumOf(["active", "withdrawn"]),
  created_at: timestamp,
  withdrawn_at: nullable(timestamp),
  withdraw_reason: nullable(str),
});

export const ApiKeyPage = page(ApiKey);
export const BatchPage = page(Batch);
export const ProductPage = page(Product);
export const UploadPage = page(Upload);
export const RecallPage = page(Recall);
