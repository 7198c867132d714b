-- Admin (issue 7): users' lifecycle, single-use mail tokens, login throttling, tenant suspension,
-- and the indexes the dashboard, analytics and retention read by.

ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE users ADD COLUMN last_login_at timestamptz;
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;
ALTER TABLE users ADD CONSTRAINT users_status_check CHECK (status IN ('active', 'disabled'));
-- Tenant roles are bound to exactly one tenant; platform roles to none.
ALTER TABLE users ADD CONSTRAINT users_tenant_role CHECK ((role IN ('tenant_admin', 'tenant_viewer')) = (tenant_id IS NOT NULL));
CREATE INDEX users_tenant ON users (tenant_id, created_at, id);
CREATE INDEX users_created ON users (created_at, id);

ALTER TABLE tenants ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE tenants ADD COLUMN suspended_at timestamptz;
ALTER TABLE tenants ADD COLUMN suspended_reason text;
CREATE INDEX tenants_created ON tenants (created_at, id);

-- Invitations and password resets: only a hash of the token is kept; used_at makes it single-use.
CREATE TABLE user_tokens (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES users(id),
  purpose     text NOT NULL CHECK (purpose IN ('invite', 'reset')),
  token_hash  text NOT NULL UNIQUE,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_tokens_user ON user_tokens (user_id, purpose);

-- Failed logins per account (a hash of the email, so unknown addresses lock like real ones) and per
-- client network (keyed hash of its /24 or /48); password-reset requests per account.
CREATE TABLE login_throttle (
  scope         text NOT NULL CHECK (scope IN ('account', 'network', 'reset')),
  key           text NOT NULL,
  failures      integer NOT NULL DEFAULT 0,
  window_start  timestamptz NOT NULL DEFAULT now(),
  locked_until  timestamptz,
  PRIMARY KEY (scope, key)
);

CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

-- Platform-wide time ranges (dashboard, trends, retention): scans arrive in time order, so a BRIN
-- index is tiny and costs the scan path next to nothing.
CREATE INDEX IF NOT EXISTS scans_at_brin ON scans USING brin (at);
CREATE INDEX IF NOT EXISTS reports_contact_created ON reports (created_at) WHERE contact IS NOT NULL;
CREATE INDEX IF NOT EXISTS reports_tenant ON reports (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS outbox_created_unsent ON outbox (created_at) WHERE sent_at IS NULL;
