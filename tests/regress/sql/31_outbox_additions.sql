-- The capture writes events without SQL (pg_webhooks/src/capture/outbox.rs), yet what a DBA adds
-- to webhooks.events applies to captured events as to an INSERT: triggers, constraints, and
-- partitions whose columns are laid out unlike the parent's. Each case rolls back.
CREATE TABLE contacts (id bigserial PRIMARY KEY, email text NOT NULL);
SELECT webhooks.track('contacts', entity => 'contact');

-- a BEFORE ROW trigger sees the event row and may change it
CREATE FUNCTION stamp_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.payload := NEW.payload || '{"stamped": true}';
    RETURN NEW;
END $$;
BEGIN;
CREATE TRIGGER stamp BEFORE INSERT ON webhooks.events FOR EACH ROW EXECUTE FUNCTION stamp_event();
INSERT INTO contacts (email) VALUES ('before@example.com');
SELECT event, payload -> 'stamped' AS stamped, payload #>> '{new,email}' AS email
FROM webhooks.events ORDER BY id DESC LIMIT 1;
ROLLBACK;

-- an AFTER ROW trigger fires once per event, after the row is written
CREATE FUNCTION announce_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'event written: % (%)', NEW.event, NEW.payload #>> '{new,email}';
    RETURN NULL;
END $$;
BEGIN;
CREATE TRIGGER announce AFTER INSERT ON webhooks.events FOR EACH ROW EXECUTE FUNCTION announce_event();
INSERT INTO contacts (email) VALUES ('after1@example.com'), ('after2@example.com');
ROLLBACK;

-- a CHECK constraint refuses the writer's statement, and nothing of it is written
BEGIN;
ALTER TABLE webhooks.events ADD CONSTRAINT small_payloads CHECK (pg_column_size(payload) < 100) NOT VALID;
SELECT regexp_replace(try($$INSERT INTO contacts (email) VALUES (repeat('x', 200) || '@example.com')$$),
                      'events_p[0-9]+', 'events_p<today>') AS refused;
SELECT count(*) AS contacts FROM contacts;
ROLLBACK;

-- In a transaction: today's partition of webhooks.events detached, `replacement` attached with
-- its bounds (a probe row finds which partition is today's).
CREATE FUNCTION replace_todays_partition(replacement regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    today regclass;
    bound text;
BEGIN
    INSERT INTO contacts (email) VALUES ('probe@example.com');
    today := (SELECT tableoid::regclass FROM webhooks.events WHERE created_at = now() LIMIT 1);
    bound := (SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = today);
    EXECUTE format('ALTER TABLE webhooks.events DETACH PARTITION %s', today);
    EXECUTE format('ALTER TABLE webhooks.events ATTACH PARTITION %s %s', replacement, bound);
END $$;

-- a partition whose columns are in another order than the parent's gets each value in its column
BEGIN;
CREATE TABLE webhooks.events_reordered (payload jsonb NOT NULL, origin text, source regclass,
    event text NOT NULL, xid xid8 NOT NULL, created_at timestamptz NOT NULL, id bigint NOT NULL);
SELECT replace_todays_partition('webhooks.events_reordered');
INSERT INTO contacts (email) SELECT 'reordered' || i || '@example.com' FROM generate_series(1, 3) i;
SELECT event, source, payload #>> '{new,email}' AS email, xid = pg_current_xact_id() AS this_xid,
       id <= currval('webhooks.events_id_seq') AS id_from_the_sequence
FROM webhooks.events_reordered ORDER BY id;
ROLLBACK;

-- a foreign table as today's partition is refused with a clear error, and the write with it
-- (postgres_fdw back into this database: a foreign table that takes inserts)
CREATE EXTENSION postgres_fdw;
DO $$
BEGIN
    EXECUTE format('CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname %L, port %L, host %L)',
                   current_database(), current_setting('port'),
                   split_part(current_setting('unix_socket_directories'), ',', 1));
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER loopback OPTIONS (user 'postgres', password_required 'false');
CREATE TABLE elsewhere_rows (id bigint, created_at timestamptz, xid xid8, event text,
                             source regclass, origin text, payload jsonb);
BEGIN;
CREATE FOREIGN TABLE webhooks.events_elsewhere (id bigint NOT NULL, created_at timestamptz NOT NULL,
    xid xid8 NOT NULL, event text NOT NULL, source regclass, origin text, payload jsonb NOT NULL)
    SERVER loopback OPTIONS (table_name 'elsewhere_rows');
SELECT replace_todays_partition('webhooks.events_elsewhere');
SELECT try($$INSERT INTO contacts (email) VALUES ('elsewhere@example.com')$$);
SELECT count(*) AS contacts_written FROM contacts WHERE email = 'elsewhere@example.com';
ROLLBACK;
DROP TABLE elsewhere_rows;
SET client_min_messages = warning;
DROP EXTENSION postgres_fdw CASCADE;
RESET client_min_messages;

-- statement triggers fire once per statement, and transition tables hold its events
CREATE FUNCTION count_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_WHEN = 'BEFORE' THEN
        RAISE NOTICE 'before the statement';
    ELSE
        RAISE NOTICE 'after the statement: % events', (SELECT count(*) FROM written_events);
    END IF;
    RETURN NULL;
END $$;
BEGIN;
CREATE TRIGGER before_statement BEFORE INSERT ON webhooks.events
    FOR EACH STATEMENT EXECUTE FUNCTION count_events();
CREATE TRIGGER after_statement AFTER INSERT ON webhooks.events
    REFERENCING NEW TABLE AS written_events FOR EACH STATEMENT EXECUTE FUNCTION count_events();
INSERT INTO contacts (email) SELECT 'statement' || i || '@example.com' FROM generate_series(1, 3) i;
ROLLBACK;

-- a column a DBA adds gets its default
BEGIN;
ALTER TABLE webhooks.events ADD COLUMN tenant int NOT NULL DEFAULT 7;
INSERT INTO contacts (email) VALUES ('tenant@example.com');
SELECT event, tenant FROM webhooks.events ORDER BY id DESC LIMIT 1;
ROLLBACK;

-- the INSERT privilege of webhooks_capture is checked, as for an INSERT
BEGIN;
REVOKE INSERT ON webhooks.events FROM webhooks_capture;
SELECT try($$INSERT INTO contacts (email) VALUES ('revoked@example.com')$$);
ROLLBACK;

-- a path a cast sets while the row images are made does not reach the triggers of
-- webhooks.events: they run under pg_catalog, pg_temp as for an INSERT by the capture
CREATE SCHEMA shadow;
GRANT USAGE ON SCHEMA shadow TO PUBLIC;
CREATE FUNCTION shadow.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'shadow.lower ran as %', current_user;
    RETURN $1;
END $$;
CREATE TYPE shade AS ENUM ('dark');
CREATE FUNCTION shade_json(shade) RETURNS json LANGUAGE sql AS
    $$ SELECT json_build_object('shade', $1::text, 'path', set_config('search_path', 'shadow, pg_catalog', true)) $$;
CREATE CAST (shade AS json) WITH FUNCTION shade_json(shade);
CREATE FUNCTION normalise_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.event := lower(NEW.event);
    RETURN NEW;
END $$;
BEGIN;
ALTER TABLE contacts ADD COLUMN shade shade;
CREATE TRIGGER normalise BEFORE INSERT ON webhooks.events FOR EACH ROW EXECUTE FUNCTION normalise_event();
INSERT INTO contacts (email, shade) VALUES ('shady@example.com', 'dark');
SELECT event, payload #> '{new,shade}' AS shade FROM webhooks.events ORDER BY id DESC LIMIT 1;
ROLLBACK;
DROP CAST (shade AS json);
DROP FUNCTION shade_json(shade), normalise_event(), count_events();
DROP TYPE shade;
DROP SCHEMA shadow CASCADE;

-- each backend keeps where the capture's values go in webhooks.events until DDL on the table:
-- after a column is renamed, the next write looks the columns up again (and finds one missing)
BEGIN;
INSERT INTO contacts (email) VALUES ('kept@example.com');
ROLLBACK;
BEGIN;
ALTER TABLE webhooks.events RENAME COLUMN origin TO origin_renamed;
INSERT INTO contacts (email) VALUES ('renamed@example.com');
ROLLBACK;
BEGIN;
INSERT INTO contacts (email) VALUES ('restored@example.com');
SELECT event, payload #>> '{new,email}' AS email FROM webhooks.events ORDER BY id DESC LIMIT 1;
ROLLBACK;

-- and the event ids' sequence until DDL on it: one put in its place is drawn from at once
BEGIN;
ALTER SEQUENCE webhooks.events_id_seq RENAME TO events_id_seq_before;
CREATE SEQUENCE webhooks.events_id_seq START 900000000;
GRANT USAGE ON SEQUENCE webhooks.events_id_seq TO webhooks_capture;
INSERT INTO contacts (email) VALUES ('new_sequence@example.com');
SELECT id >= 900000000 AS from_the_new_sequence FROM webhooks.events ORDER BY created_at DESC, id DESC LIMIT 1;
ROLLBACK;

SELECT webhooks.untrack('contacts');
DROP TABLE contacts;
DROP FUNCTION stamp_event(), announce_event(), replace_todays_partition(regclass);
