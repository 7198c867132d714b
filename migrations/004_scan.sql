-- Scan path: indexes the risk model's per-scan reads need, and what a location shared after the
-- scan (the consumer page's "share my location") changes.

-- Enumeration: distinct tags per device / per network over the last window, newest first, read
-- from the index alone (product_id included) so a busy network costs an index range, not heap reads.
DROP INDEX IF EXISTS scans_device;
CREATE INDEX scans_device ON scans (device, at DESC) INCLUDE (product_id);
CREATE INDEX scans_network ON scans (network, at DESC) INCLUDE (product_id);

-- Where the scan came from: api (POST/GET /v1/scan), page (/r/:token) or gs1 (Digital Link path).
ALTER TABLE scans ADD COLUMN channel text;
-- Set when the consumer shared a location after the scan; the ledger holds a "location" entry for it.
ALTER TABLE scans ADD COLUMN located_at timestamptz;

-- Fraud reports count once per reporting device and tag.
CREATE INDEX reports_batch_device ON reports (batch_id, product_id, device);
