-- pg_webhooks: who may do what. RELIABILITY.md has the threat model this serves.
--
--   webhooks_admin    manages webhooks and tracking, reads delivery history and secrets (through
--                     webhooks.secret()). Grant it to the roles that administer webhooks.
--   webhooks_relay    what the relay needs: claim, ack, probes, maintenance. Grant it to the
--                     relay's login.
--   webhooks_emit     emit() only.
--   webhooks_capture  internal: the capture trigger appends row events as this role
--                     (pg_webhooks/src/capture.rs). It may insert events and read the tracking
--                     table and nothing else.
--   webhooks_owner    internal: owns pg_webhooks' tables and its SECURITY DEFINER functions, so
--                     those run with rights on pg_webhooks' own objects only, not as the
--                     superuser who created the extension (see the end of this file).
--   everyone else     nothing. Writers of tracked tables need no grant at all.
-- The tables themselves are granted to nobody: secrets are never readable by PUBLIC. The two
-- internal roles must have no login and no members (whoever could become one could write row
-- events, or read every secret): CREATE EXTENSION refuses them when they already exist
-- otherwise.

DO $$
DECLARE
    role_name text;
    suspect text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['webhooks_admin', 'webhooks_relay', 'webhooks_emit',
                                     'webhooks_capture', 'webhooks_owner'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
    SELECT r.rolname INTO suspect FROM pg_roles r
    WHERE r.rolname IN ('webhooks_capture', 'webhooks_owner')
      AND (r.rolcanlogin OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolbypassrls
           OR r.rolreplication
           OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid)
           OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: role % already exists with a login, members, memberships or '
                        'special attributes', suspect
            USING ERRCODE = 'invalid_role_specification',
                  HINT = 'It is one of pg_webhooks'' internal roles: drop it (or strip it to NOLOGIN '
                         'without members) and create the extension again.';
    END IF;
END $$;

REVOKE ALL ON SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA webhooks FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;

GRANT USAGE ON SCHEMA webhooks TO webhooks_admin, webhooks_relay, webhooks_emit;

GRANT EXECUTE ON FUNCTION
    webhooks.create(text, text, text, text, integer, double precision, text),
    webhooks.list(text, text, regclass),
    webhooks.get(bigint),
    webhooks.secret(bigint),
    webhooks.activate(bigint, boolean),
    webhooks.deactivate(bigint),
    webhooks.delete(bigint),
    webhooks.rotate_secret(bigint, interval, text),
    webhooks.public_keys(bigint),
    webhooks.rotate_signing_key(bigint, interval),
    webhooks.update(bigint, text, text, text, integer, double precision),
    webhooks.verification_file(bigint),
    webhooks.verify(bigint),
    webhooks.test(bigint, jsonb, text),
    webhooks.test_all(text),
    webhooks.probe(bigint, interval),
    webhooks.sample_data(text),
    webhooks.track(regclass, text, text),
    webhooks.configure(bigint, jsonb),
    webhooks.untrack(regclass),
    webhooks.identify(regclass, text, text),
    webhooks.enrich(regclass, text[]),
    webhooks.redeliver(bigint),
    webhooks.recover(bigint, timestamptz),
    webhooks.queue_depth(),
    webhooks.maintain(),
    -- track() runs as its caller, who creates the triggers and so needs these
    webhooks._require(text, text),
    webhooks._require_value(text, boolean),
    webhooks._check_event_name(text, text),
    webhooks._check_unreserved(text, text),
    webhooks._check_trackable(regclass),
    webhooks._is_tracked(regclass),
    webhooks._remember_tracked(regclass, text, text),
    webhooks._forget_tracked(regclass),
    webhooks._capture(),
    webhooks._add_capture_triggers(regclass, text[]),
    webhooks._remember_parent_values(regclass),
    webhooks._drop_capture_triggers(regclass),
    webhooks._table_tree(regclass)
TO webhooks_admin;

GRANT EXECUTE ON FUNCTION webhooks.emit(text, jsonb, text) TO webhooks_admin, webhooks_emit;

GRANT SELECT ON webhooks.webhook_info, webhooks.tracked_tables, webhooks.delivery_status,
    webhooks.delivery_log, webhooks.notifications, webhooks.probe_info,
    webhooks.set_aside_events TO webhooks_admin;

GRANT EXECUTE ON FUNCTION
    webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]),
    webhooks.ack(text, jsonb),
    webhooks.relay_idle(text, boolean),
    webhooks.relay_leave(text),
    webhooks.claim_probes(text, integer, interval),
    webhooks.finish_probe(bigint, jsonb),
    webhooks.queue_depth(),
    webhooks.maintain()
TO webhooks_relay;

-- settings are changed with plain SQL (see sql/10_tables.sql)
GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks.settings TO webhooks_admin;

-- the capture trigger's append (pg_webhooks/src/capture.rs): events, the tracking table that
-- names them, and the idle relays it may wake
GRANT USAGE ON SCHEMA webhooks TO webhooks_capture;
GRANT INSERT ON webhooks.events TO webhooks_capture;
GRANT USAGE ON SEQUENCE webhooks.events_id_seq TO webhooks_capture;
GRANT SELECT ON webhooks.tracked, webhooks.relays TO webhooks_capture;
GRANT EXECUTE ON FUNCTION webhooks._origin() TO webhooks_capture;

-- Ownership. The tables, views and sequences, and every SECURITY DEFINER function but two,
-- belong to webhooks_owner. Two stay the installing superuser's because they must: maintain()
-- adds and drops partitions as members of the extension, which only the extension's owner may,
-- and the event trigger function that puts capture triggers on new partitions of any role's
-- tracked table. Neither runs code another role controls (RELIABILITY.md, threat model).
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT c.oid::regclass AS name, CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END AS kind
        FROM pg_class c
        WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'p', 'v')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO webhooks_owner', object.kind, object.name);
    END LOOP;
    -- sequences of identity columns moved with their tables
    FOR object IN
        SELECT c.oid::regclass AS name FROM pg_class c
        WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'S'
          AND c.relowner <> 'webhooks_owner'::regrole
    LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO webhooks_owner', object.name);
    END LOOP;
    FOR object IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p
        WHERE p.pronamespace = 'webhooks'::regnamespace AND p.prosecdef
          AND p.oid NOT IN ('webhooks.maintain()'::regprocedure,
                            'webhooks._capture_new_partitions()'::regprocedure)
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO webhooks_owner', object.name);
    END LOOP;
END $$;
GRANT USAGE ON SCHEMA webhooks TO webhooks_owner;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks TO webhooks_owner;
