-- pg_webhooks: who may do what. RELIABILITY.md has the threat model this serves.
--
--   webhooks_admin    manages webhooks and tracking, reads delivery history and secrets (through
--                     webhooks.secret()). Grant it to the roles that administer webhooks.
--   webhooks_relay    what the relay needs: claim, ack, probes, maintenance. Grant it to the
--                     relay's login.
--   webhooks_emit     emit() only.
--   webhooks_capture  internal: the capture trigger appends row events as this role
--                     (pg_webhooks/src/capture.rs). It may insert events and read the tracking
--                     table and nothing else, and it must have no members and no login: it is
--                     refused when it already exists otherwise.
--   everyone else     nothing. Writers of tracked tables need no grant at all.
-- The tables themselves are granted to nobody: secrets are never readable by PUBLIC.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['webhooks_admin', 'webhooks_relay', 'webhooks_emit',
                                     'webhooks_capture'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
    -- whoever could become webhooks_capture could write row events of any table
    IF EXISTS (SELECT 1 FROM pg_roles r
               WHERE r.rolname = 'webhooks_capture'
                 AND (r.rolcanlogin OR r.rolsuper OR r.rolcreaterole OR r.rolbypassrls
                      OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid))) THEN
        RAISE EXCEPTION 'pg_webhooks: role webhooks_capture already exists with a login, members, '
                        'memberships or special attributes'
            USING ERRCODE = 'invalid_role_specification',
                  HINT = 'It is pg_webhooks'' internal capture role: drop it (or strip it to '
                         'NOLOGIN without members) and create the extension again.';
    END IF;
END $$;

REVOKE ALL ON SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA webhooks FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;

GRANT USAGE ON SCHEMA webhooks TO webhooks_admin, webhooks_relay, webhooks_emit;

GRANT EXECUTE ON FUNCTION
    webhooks.create(text, text, text, text, integer, double precision, text),
    webhooks.list(text, text),
    webhooks.get(bigint),
    webhooks.secret(bigint),
    webhooks.activate(bigint, boolean),
    webhooks.deactivate(bigint),
    webhooks.delete(bigint),
    webhooks.rotate_secret(bigint, interval, text),
    webhooks.update(bigint, text, text, text, integer, double precision),
    webhooks.verification_file(bigint),
    webhooks.verify(bigint),
    webhooks.test(bigint, jsonb, text),
    webhooks.probe(bigint, interval),
    webhooks.sample_data(text),
    webhooks.track(regclass, text, text),
    webhooks.configure(bigint, jsonb),
    webhooks.untrack(regclass),
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
    webhooks._add_capture_triggers(regclass),
    webhooks._drop_capture_triggers(regclass),
    webhooks._table_tree(regclass)
TO webhooks_admin;

GRANT EXECUTE ON FUNCTION webhooks.emit(text, jsonb, text) TO webhooks_admin, webhooks_emit;

GRANT SELECT ON webhooks.webhook_info, webhooks.tracked_tables, webhooks.delivery_status,
    webhooks.delivery_log, webhooks.notifications, webhooks.probe_info TO webhooks_admin;

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
GRANT EXECUTE ON FUNCTION webhooks._origin(), webhooks._wake_relays() TO webhooks_capture;
