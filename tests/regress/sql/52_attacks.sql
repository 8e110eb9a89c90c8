-- Attacks by roles with some rights: none of them gains the extension owner's rights, writes a
-- row event by hand, or takes pg_webhooks' reserved names.
CREATE ROLE mallory LOGIN IN ROLE webhooks_admin;     -- an admin who owns a table
CREATE ROLE table_owner LOGIN;                        -- owns a tracked table, nothing more
CREATE ROLE plain_writer LOGIN;                       -- may write that table
GRANT CREATE ON SCHEMA public TO mallory, table_owner;
-- whatever a cast runs as is recorded here, for everyone to see
CREATE TABLE ran_as (who text, superuser boolean, escalated text);
GRANT ALL ON ran_as TO PUBLIC;

-- A cast from a column's type to json is code its owner controls, and to_jsonb() runs it. In
-- the capture trigger it runs with the rights of whoever wrote the row, never more (and with
-- search_path = pg_catalog, pg_temp, as in a SECURITY DEFINER function: it names its tables).
SET ROLE mallory;
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE FUNCTION mood_to_json(mood) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    outcome text := 'refused';
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
        outcome := 'became superuser';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    BEGIN
        PERFORM count(*) FROM webhooks.webhooks;
        outcome := outcome || ', read the secrets';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    BEGIN
        INSERT INTO webhooks.events (event, payload) VALUES ('profile.forged', '{}');
        outcome := outcome || ', forged an event';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    INSERT INTO public.ran_as SELECT current_user, r.rolsuper, outcome FROM pg_roles r
    WHERE r.rolname = current_user;
    RETURN to_json($1::text);
END $$;
CREATE CAST (mood AS json) WITH FUNCTION mood_to_json(mood);
CREATE TABLE moods (id int PRIMARY KEY, mood mood);
SELECT webhooks.track('moods');
GRANT INSERT, UPDATE ON moods TO plain_writer;
INSERT INTO moods VALUES (1, 'happy');
RESET ROLE;
SET ROLE plain_writer;
UPDATE moods SET mood = 'sad';
RESET ROLE;
SELECT who, superuser, escalated FROM ran_as ORDER BY who;
SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory';
SELECT event, payload -> 'new' ->> 'mood' AS mood FROM webhooks.events
WHERE source = 'moods'::regclass OR event = 'profile.forged' ORDER BY id;
TRUNCATE ran_as;

-- The owner of a tracked table (no admin) changes a column to such a type afterwards: the cast
-- still runs only as the writer.
CREATE TABLE owned (id int PRIMARY KEY, note text);
ALTER TABLE owned OWNER TO table_owner;
SELECT webhooks.track('owned');
SET ROLE table_owner;
CREATE TYPE trap AS ENUM ('sprung');
CREATE FUNCTION trap_to_json(trap) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ran_as SELECT current_user, r.rolsuper, 'none' FROM pg_roles r
    WHERE r.rolname = current_user;
    RETURN '"sprung"';
END $$;
CREATE CAST (trap AS json) WITH FUNCTION trap_to_json(trap);
ALTER TABLE owned ALTER COLUMN note TYPE trap USING 'sprung';
GRANT INSERT ON owned TO plain_writer;
RESET ROLE;
SET ROLE plain_writer;
INSERT INTO owned VALUES (1, 'sprung');
RESET ROLE;
SELECT who, superuser FROM ran_as;

-- A writer's search_path cannot swap the functions that make the row images.
CREATE SCHEMA writer_tricks AUTHORIZATION plain_writer;
SET ROLE plain_writer;
CREATE FUNCTION writer_tricks.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql
AS $$ SELECT '{"forged": true}'::jsonb $$;
SET search_path = writer_tricks, public, pg_catalog;
INSERT INTO owned VALUES (2, 'sprung');
RESET search_path;
RESET ROLE;
SELECT payload FROM webhooks.events WHERE source = 'owned'::regclass ORDER BY id;

-- Nor can its own operators be bound into the trigger's statements: not into its row images,
-- not into the append that runs as webhooks_capture (the = of a NULLIF there), and not into a
-- plan this session keeps for the next writer. Every evil = records who ran it.
CREATE TABLE operator_calls (who text);
GRANT ALL ON operator_calls TO PUBLIC;
GRANT SELECT, UPDATE ON owned TO plain_writer;
SET ROLE plain_writer;
GRANT USAGE ON SCHEMA writer_tricks TO PUBLIC;   -- so webhooks_capture would see them too
CREATE FUNCTION writer_tricks.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.operator_calls VALUES (current_user);
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR writer_tricks.= (LEFTARG = text, RIGHTARG = text, FUNCTION = writer_tricks.text_eq);
CREATE FUNCTION writer_tricks.jsonb_eq(jsonb, jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.operator_calls VALUES (current_user);
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR writer_tricks.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = writer_tricks.jsonb_eq);
SET search_path = writer_tricks, public, pg_catalog;
SET pg_webhooks.origin = 'tricks';
INSERT INTO owned VALUES (3, 'sprung');
UPDATE owned SET id = 30 WHERE id = 3;
RESET pg_webhooks.origin;
RESET search_path;
RESET ROLE;
SELECT count(*) AS evil_operator_calls FROM operator_calls;
SELECT event, origin FROM webhooks.events WHERE source = 'owned'::regclass AND origin = 'tricks'
ORDER BY id;

-- A cast may change search_path while the trigger runs: the append is fixed again, so the
-- operators above still never run as webhooks_capture.
SET ROLE table_owner;
CREATE TYPE switcher AS ENUM ('on');
CREATE FUNCTION switcher_to_json(switcher) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'writer_tricks, public, pg_catalog', false);
    RETURN '"on"';
END $$;
CREATE CAST (switcher AS json) WITH FUNCTION switcher_to_json(switcher);
CREATE TABLE switched (id int PRIMARY KEY, state switcher);
RESET ROLE;
SELECT webhooks.track('switched');
GRANT INSERT ON switched TO plain_writer;
SET ROLE plain_writer;
INSERT INTO switched VALUES (1, 'on');
RESET ROLE;
RESET search_path;  -- the cast's SET outlives the trigger, as one inside any function does
SELECT who, count(*) FROM operator_calls GROUP BY who ORDER BY who;
SELECT payload FROM webhooks.events WHERE source = 'switched'::regclass;

-- Row events come only from capture: the trigger function cannot be called, a capture trigger
-- on a table that is not tracked writes nothing, and a table is tracked only with its triggers.
SET ROLE mallory;
SELECT try($$SELECT webhooks._capture()$$);
CREATE TABLE untracked (id int PRIMARY KEY);
CREATE TRIGGER sneaky AFTER INSERT ON untracked REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._capture();
INSERT INTO untracked VALUES (1);
-- one whose transition tables have other names (they could name a writer's temporary table)
CREATE TRIGGER renamed AFTER UPDATE ON untracked REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._capture();
SELECT try($$UPDATE untracked SET id = 2$$);
SELECT try($$SELECT webhooks._remember_tracked('untracked', 'profile', NULL)$$);
SELECT try($$SELECT webhooks._forget_tracked('moods')$$);
-- names under webhook. are pg_webhooks' own
SELECT try($$SELECT webhooks.track('untracked', entity => 'webhook')$$);
SELECT try($$SELECT webhooks.emit('webhook.disabled', '{}')$$);
RESET ROLE;
-- an emitted event cannot pass for a row change; an emit-only role can do nothing else
CREATE ROLE emitter LOGIN IN ROLE webhooks_emit;
SET ROLE emitter;
SELECT try($$SELECT webhooks.emit('profile.updated', '{"old": {}, "new": {}}')$$);
SELECT try($$SELECT webhooks.emit('moods.created', '{}')$$);
SELECT try($$SELECT webhooks.track('moods', entity => 'other')$$);
SELECT try($$SELECT * FROM webhooks.claim('x', 1, 1, '{}', '1 minute')$$);
SELECT try($$SELECT webhooks.secret(1)$$);
RESET ROLE;
DROP ROLE emitter;
-- nobody becomes the capture role (SET ROLE checks the login, so log in as mallory)
\c - mallory
SELECT try($$SET ROLE webhooks_capture$$);
\c - postgres
SELECT count(*) AS events_of_untracked FROM webhooks.events WHERE source = 'untracked'::regclass;
SELECT entity FROM webhooks.tracked WHERE source = 'moods'::regclass;

-- The internal roles have no login and no members; the capture role holds exactly what the
-- append needs.
SELECT rolname, rolcanlogin, rolsuper,
       (SELECT count(*) FROM pg_auth_members m WHERE m.roleid = r.oid) AS members
FROM pg_roles r WHERE rolname IN ('webhooks_capture', 'webhooks_owner') ORDER BY rolname;
SELECT c.relname, p.privilege
FROM pg_class c
CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p(privilege)
WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'p', 'v')
  AND has_table_privilege('webhooks_capture', c.oid, p.privilege)
ORDER BY 1, 2;

-- SECURITY DEFINER functions run as webhooks_owner, which owns pg_webhooks' objects and
-- nothing else; only these two run as the installing superuser, and why is in
-- sql/90_privileges.sql.
SELECT p.oid::regprocedure AS runs_as_superuser FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace AND p.prosecdef
  AND p.proowner <> 'webhooks_owner'::regrole
ORDER BY p.oid::regprocedure::text;
SELECT count(*) AS objects_not_owned_by_webhooks_owner FROM pg_class c
WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
  AND c.relowner <> 'webhooks_owner'::regrole;

-- Maintenance cannot be switched off by holding a lock: the old advisory lock means nothing,
-- and the row maintain() locks is granted to no one.
SELECT pg_advisory_lock(hashtext('pg_webhooks.maintain')) IS NOT NULL AS holds_advisory_lock;
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();
SELECT pg_advisory_unlock(hashtext('pg_webhooks.maintain'));
SET ROLE mallory;
SELECT try($$SELECT FROM webhooks.maintenance_lock FOR UPDATE$$);
RESET ROLE;

DROP TABLE moods, owned, untracked, ran_as, operator_calls, switched;
DROP SCHEMA writer_tricks CASCADE;
DROP CAST (mood AS json);
DROP CAST (trap AS json);
DROP CAST (switcher AS json);
DROP FUNCTION mood_to_json(mood), trap_to_json(trap), switcher_to_json(switcher);
DROP TYPE mood, trap, switcher;
REVOKE CREATE ON SCHEMA public FROM mallory, table_owner;
DROP ROLE mallory, table_owner, plain_writer;
