-- Append-only, hash-chained audit trail: every mutation, written in the same transaction as the change.
CREATE TABLE audit_log (
  seq          bigint PRIMARY KEY,
  at           timestamptz NOT NULL,
  actor_type   text NOT NULL,
  actor_id     text,
  role         text,
  tenant_id    uuid,
  action       text NOT NULL,
  target_type  text,
  target_id    text,
  request_id   text,
  network      text,
  entry        jsonb NOT NULL,
  prev_hash    text NOT NULL,
  hash         text NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);

CREATE TABLE audit_head (
  id    integer PRIMARY KEY CHECK (id = 1),
  seq   bigint NOT NULL,
  hash  text NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, repeat('0', 64));

-- Append-only: the database itself refuses to change or remove an audit entry.
CREATE FUNCTION audit_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_immutable();
