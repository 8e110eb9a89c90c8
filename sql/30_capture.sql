-- pg_webhooks: turning row changes and application calls into events.
--
-- track() puts three AFTER ... FOR EACH STATEMENT triggers on a table, one each for INSERT,
-- UPDATE and DELETE, reading the statement's transition tables: a 100-row INSERT costs one
-- INSERT ... SELECT into the outbox, not 100 trigger calls.
-- A role that may only write its own table still produces events without any grant on the
-- webhooks schema: the trigger appends them as webhooks_capture (see webhooks._capture below).

-- Who caused this change: SET pg_webhooks.origin = '...' wins over application_name.
-- No SET clause and LANGUAGE sql, so the planner inlines it into the capture INSERT. Inlined, it
-- is parsed with the caller's search_path, so even its operators are named (a NULLIF's = would
-- be looked up there).
CREATE FUNCTION webhooks._origin() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        CASE WHEN pg_catalog.current_setting('pg_webhooks.origin', true) OPERATOR(pg_catalog.<>) ''
             THEN pg_catalog.current_setting('pg_webhooks.origin', true) END,
        CASE WHEN pg_catalog.current_setting('application_name', true) OPERATOR(pg_catalog.<>) ''
             THEN pg_catalog.current_setting('application_name', true) END)
$$;

-- The one capture trigger function, for INSERT, UPDATE and DELETE statements, is in Rust
-- (pg_webhooks/src/capture.rs): it makes the row images with the writer's rights and appends
-- them to the outbox as the role webhooks_capture, so no code a table's owner controls (a cast
-- of a column's type to json...) ever runs with more rights than the writer has. The event's
-- entity and source come from webhooks.tracked, never from trigger arguments.
--
-- Updates: an update that changes nothing emits nothing. Values are compared as jsonb, which
-- works for every column type (a row comparison fails on json or point columns). Old and new
-- images are paired by position in the transition tables: PostgreSQL appends a row's old and new
-- image in the same step, also when the update moves the row to another partition (then no
-- row-level UPDATE trigger fires at all, which is why this is a statement trigger).
-- tests/regress/sql/30_capture.sql guards this.
CREATE FUNCTION webhooks._capture() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'capture_wrapper';

-- Each backend keeps what webhooks.tracked says of the tables it writes, and whether
-- webhooks.relays lists an idle relay (pg_webhooks/src/capture/kept.rs). Any change of their
-- rows, by these functions, by a relay or by hand, invalidates the table's relcache entry, which
-- tells every backend to read it again from its next statement on. ALWAYS: also for changes a
-- logical replication subscription applies; while either trigger of a table fires otherwise, or
-- not at all, backends keep nothing of it.
CREATE FUNCTION webhooks._announce_change() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'announce_change_wrapper';
CREATE TRIGGER tracking_reaches_writers AFTER INSERT OR UPDATE OR DELETE ON webhooks.tracked
    FOR EACH ROW EXECUTE FUNCTION webhooks._announce_change();
CREATE TRIGGER tracking_reaches_writers_on_truncate AFTER TRUNCATE ON webhooks.tracked
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._announce_change();
ALTER TABLE webhooks.tracked ENABLE ALWAYS TRIGGER tracking_reaches_writers;
ALTER TABLE webhooks.tracked ENABLE ALWAYS TRIGGER tracking_reaches_writers_on_truncate;
CREATE TRIGGER relays_reach_writers AFTER INSERT OR UPDATE OR DELETE ON webhooks.relays
    FOR EACH ROW EXECUTE FUNCTION webhooks._announce_change();
CREATE TRIGGER relays_reach_writers_on_truncate AFTER TRUNCATE ON webhooks.relays
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._announce_change();
ALTER TABLE webhooks.relays ENABLE ALWAYS TRIGGER relays_reach_writers;
ALTER TABLE webhooks.relays ENABLE ALWAYS TRIGGER relays_reach_writers_on_truncate;

-- How many capture triggers a table has (track() makes three).
CREATE FUNCTION webhooks._capture_triggers(source regclass) RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*)::integer FROM pg_trigger t
    WHERE t.tgrelid = source AND t.tgfoid = 'webhooks._capture()'::regprocedure
$$;

-- Remember a tracked table. SECURITY DEFINER: the caller creates the triggers with its own
-- rights (track() is SECURITY INVOKER), but has no rights on webhooks.tracked. Called directly,
-- it checks what track() checks, and that the capture triggers are there: only a role that
-- could create them (the TRIGGER privilege) can have a table tracked.
CREATE FUNCTION webhooks._remember_tracked(source regclass, entity text, parent text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._check_unreserved('entity', webhooks._check_event_name('entity', entity));
    PERFORM webhooks._check_trackable(source);
    IF webhooks._capture_triggers(source) <> 3 THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" does not have the capture triggers; use webhooks.track()',
            source
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO webhooks.tracked (source, entity, key_columns, parent_column, parent_table)
    SELECT _remember_tracked.source, _remember_tracked.entity,
           coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                     FROM pg_index i
                     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                     WHERE i.indrelid = _remember_tracked.source AND i.indisprimary),
                    '{}'),
           parent,
           -- the table a single-column foreign key on the parent column points to
           (SELECT c.confrelid::regclass
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.conrelid = _remember_tracked.source AND c.contype = 'f'
              AND cardinality(c.conkey) = 1 AND a.attname = parent
            LIMIT 1);
END $$;

-- Forget a tracked table, once its capture triggers are gone (untrack() drops them first).
CREATE FUNCTION webhooks._forget_tracked(source regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF webhooks._capture_triggers(source) > 0 THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" still has its capture triggers; use webhooks.untrack()',
            source
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM webhooks.tracked t WHERE t.source = _forget_tracked.source;
END $$;

CREATE FUNCTION webhooks._is_tracked(source regclass) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM webhooks.tracked t WHERE t.source = _is_tracked.source)
$$;

-- Refuse anything but an ordinary or partitioned table (views, partitions, temp tables...).
CREATE FUNCTION webhooks._check_trackable(source regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel pg_class;
    parent regclass;
BEGIN
    SELECT * INTO rel FROM pg_class c WHERE c.oid = source;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'pg_webhooks: "%" is a %, not a table; only tables can be tracked', source,
            CASE rel.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                             WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence'
                             WHEN 'i' THEN 'index' ELSE 'relation of kind ' || rel.relkind::text END
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'pg_webhooks: "%" is a temporary table and cannot be tracked', source
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relispartition THEN
        SELECT i.inhparent::regclass INTO parent FROM pg_inherits i WHERE i.inhrelid = source;
        RAISE EXCEPTION 'pg_webhooks: "%" is a partition of "%"; track "%" instead',
            source, parent, parent
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relnamespace = 'webhooks'::regnamespace THEN
        RAISE EXCEPTION 'pg_webhooks: "%" belongs to pg_webhooks itself and cannot be tracked',
            source
            USING ERRCODE = 'wrong_object_type';
    END IF;
END $$;

-- The three capture triggers of a table (transition tables allow one event per trigger), made
-- where missing. As its caller: track() needs the TRIGGER privilege like CREATE TRIGGER does.
-- A partitioned table's statement triggers do not fire for writes made directly to one of its
-- partitions, so every partition gets them too (the trigger maps them to the tracked root), also
-- one attached or created later (webhooks._capture_new_partitions).
-- arguments: none, or what webhooks.enrich() gives (the column holding the parent's key, then
-- the parent's columns to send).
CREATE FUNCTION webhooks._add_capture_triggers(rel regclass, arguments text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind record;
BEGIN
    FOR kind IN
        SELECT * FROM (VALUES
            ('webhooks_capture_insert', 'INSERT', 'NEW TABLE AS new_rows'),
            ('webhooks_capture_update', 'UPDATE', 'OLD TABLE AS old_rows NEW TABLE AS new_rows'),
            ('webhooks_capture_delete', 'DELETE', 'OLD TABLE AS old_rows')) k(name, op, tables)
        WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = rel AND t.tgname = k.name)
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s FOR EACH STATEMENT '
                       'EXECUTE FUNCTION webhooks._capture(%s)', kind.name, kind.op, rel, kind.tables,
                       (SELECT string_agg(quote_literal(a), ', ' ORDER BY n)
                        FROM unnest(arguments) WITH ORDINALITY u(a, n)));
    END LOOP;
END $$;

-- The arguments of a table's capture triggers (pg_trigger keeps them NUL-terminated, one after
-- the other). Only of a trigger that runs webhooks._capture(): one of the table owner's own
-- under that name must not choose what _capture_new_partitions gives new partitions.
CREATE FUNCTION webhooks._capture_arguments(rel regclass) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rest bytea;
    ends integer;
    arguments text[] := '{}';
BEGIN
    SELECT t.tgargs INTO rest FROM pg_trigger t
    WHERE t.tgrelid = rel AND t.tgname = 'webhooks_capture_insert'
      AND t.tgfoid = 'webhooks._capture()'::regprocedure;
    LOOP
        ends := position('\x00'::bytea IN rest);
        EXIT WHEN ends IS NULL OR ends = 0;
        arguments := arguments || convert_from(substring(rest FROM 1 FOR ends - 1),
                                               getdatabaseencoding());
        rest := substring(rest FROM ends + 1);
    END LOOP;
    RETURN arguments;
END $$;

-- A table and, if it is partitioned, all its partitions at every level.
CREATE FUNCTION webhooks._table_tree(source regclass) RETURNS SETOF regclass
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT source UNION SELECT r.relid FROM pg_partition_tree(source) r
$$;

CREATE FUNCTION webhooks._drop_capture_triggers(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS webhooks_capture_insert ON %s', rel);
    EXECUTE format('DROP TRIGGER IF EXISTS webhooks_capture_update ON %s', rel);
    EXECUTE format('DROP TRIGGER IF EXISTS webhooks_capture_delete ON %s', rel);
END $$;

-- A partition created in, or attached to, a tracked partitioned table gets the capture triggers
-- at once, in the same transaction. SECURITY DEFINER: whoever may add a partition is captured
-- without a grant on the webhooks schema; CREATE TRIGGER runs no code of theirs. Only trees
-- whose root has its capture triggers: while pg_restore rebuilds a database the root has none
-- yet, and the dump's own CREATE TRIGGER statements must not find theirs made already.
CREATE FUNCTION webhooks._capture_new_partitions() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._add_capture_triggers(rel, webhooks._capture_arguments(tracked_root.source))
    FROM (SELECT DISTINCT t.source
          FROM pg_event_trigger_ddl_commands() c
          JOIN webhooks.tracked t ON t.source = coalesce(pg_partition_root(c.objid), c.objid)
          WHERE c.classid = 'pg_class'::regclass
            AND webhooks._capture_triggers(t.source) = 3) tracked_root,
         webhooks._table_tree(tracked_root.source) rel;
END $$;

CREATE EVENT TRIGGER webhooks_capture_new_partitions ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION webhooks._capture_new_partitions();

CREATE FUNCTION webhooks.track(source regclass, entity text DEFAULT NULL, parent text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    entity_name text;
BEGIN
    PERFORM webhooks._require_value('source', source IS NULL);
    entity_name := webhooks._check_unreserved('entity', webhooks._check_event_name(
        'entity', coalesce(entity, (SELECT c.relname::text FROM pg_class c WHERE c.oid = source))));
    PERFORM webhooks._check_trackable(source);
    IF parent IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = source AND a.attname = parent AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" has no column "%" for the parent profile', source,
            left(parent, 200)
            USING ERRCODE = 'undefined_column';
    END IF;
    IF webhooks._is_tracked(source) THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" is already tracked', source
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Call webhooks.untrack() first to change its entity name.';
    END IF;
    PERFORM webhooks._add_capture_triggers(rel, '{}') FROM webhooks._table_tree(source) rel;
    PERFORM webhooks._remember_tracked(source, entity_name, parent);
END $$;

CREATE FUNCTION webhooks.untrack(source regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._require_value('source', source IS NULL);
    IF NOT webhooks._is_tracked(source) THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" is not tracked', source
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM webhooks._drop_capture_triggers(rel) FROM webhooks._table_tree(source) rel;
    PERFORM webhooks._forget_tracked(source);
END $$;

-- A dropped table is no longer tracked.
CREATE FUNCTION webhooks._forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM webhooks.tracked t
    USING pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND t.source = d.objid;
END $$;

CREATE EVENT TRIGGER webhooks_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION webhooks._forget_dropped_tables();

CREATE VIEW webhooks.tracked_tables AS
SELECT source, entity, key_columns, parent_column, parent_table, tracked_at, database_name,
       collection_name, parent_values
FROM webhooks.tracked;

-- The identifiers a receiver knows a tracked table by (Copernica's database and collection ids):
-- form posts send them as `database` (given for each table, a child table too) and `collection`
-- (of a child table) instead of the table's name and the entity. NULL returns to those.
CREATE FUNCTION webhooks.identify(source regclass, database text, collection text DEFAULT NULL)
RETURNS webhooks.tracked_tables
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tracked_row webhooks.tracked;
    identified webhooks.tracked_tables;
BEGIN
    PERFORM webhooks._require_value('source', source IS NULL);
    PERFORM webhooks._check_length('database', database, 200);
    PERFORM webhooks._check_length('collection', collection, 200);
    IF btrim(database) = '' OR btrim(collection) = '' THEN
        RAISE EXCEPTION 'pg_webhooks: an identifier must not be empty (database %, collection %)',
            to_jsonb(database), to_jsonb(collection)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO tracked_row FROM webhooks.tracked t WHERE t.source = identify.source FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" is not tracked', source
            USING ERRCODE = 'undefined_object';
    END IF;
    IF collection IS NOT NULL AND tracked_row.parent_column IS NULL THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" is not a collection: it was tracked without a parent',
            source
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only a child table (webhooks.track(source, parent => ...)) has a collection.';
    END IF;
    UPDATE webhooks.tracked t SET database_name = database, collection_name = collection
    WHERE t.source = identify.source;
    SELECT * INTO identified FROM webhooks.tracked_tables v WHERE v.source = identify.source;
    RETURN identified;
END $$;

-- Events of a child or link table that carry chosen columns of the parent row its foreign key
-- points to, as `parent` (a tag's contact's email, for a receiver that knows contacts by it).
-- The capture trigger reads them in the writer's transaction, so they are the values at the
-- moment of the event, and with the writer's rights, like the row images: a writer needs SELECT
-- on those columns (a write without it fails, as any trigger's read would), and whoever may
-- create triggers on the table could already read what its writers can. So the choice lives in
-- the capture triggers' arguments, which only such a role can set, and tracked.parent_values
-- only copies them. The caller must also have the rights of the parent's owner: reading it runs
-- its row security policies as each writer. NULL or no columns stops sending them. The
-- triggers are made anew, in the caller's transaction: writes wait for it, and no event is
-- missed.
CREATE FUNCTION webhooks.enrich(source regclass, parent_columns text[])
RETURNS webhooks.tracked_tables
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tracked_row webhooks.tracked_tables;
    columns text[] := coalesce(parent_columns, '{}');
    bad text;
BEGIN
    PERFORM webhooks._require_value('source', source IS NULL);
    SELECT * INTO tracked_row FROM webhooks.tracked_tables v WHERE v.source = enrich.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" is not tracked', source
            USING ERRCODE = 'undefined_object';
    END IF;
    IF tracked_row.parent_column IS NULL THEN
        RAISE EXCEPTION 'pg_webhooks: table "%" has no parent: it was tracked without one', source
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Track it with webhooks.track(source, parent => ...) first.';
    END IF;
    IF tracked_row.parent_table IS NULL THEN
        RAISE EXCEPTION 'pg_webhooks: column "%" of "%" has no foreign key to find the parent row by',
            tracked_row.parent_column, source
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add a single-column foreign key on it, then track the table again.';
    END IF;
    -- reading the parent runs its owner's row security policies with the writers' rights: only
    -- a role that could run code as them through it anyway may choose it
    IF NOT pg_has_role((SELECT c.relowner FROM pg_class c WHERE c.oid = tracked_row.parent_table),
                       'USAGE') THEN
        RAISE EXCEPTION 'pg_webhooks: only the owner of parent table "%" may send its columns',
            tracked_row.parent_table
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Its row security policies would run with the rights of each writer.';
    END IF;
    IF cardinality(columns) > 20 THEN
        RAISE EXCEPTION 'pg_webhooks: % parent columns; at most 20 are sent', cardinality(columns)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    PERFORM webhooks._require_value('parent column', array_position(columns, NULL) IS NOT NULL);
    SELECT c INTO bad FROM unnest(columns) c GROUP BY c HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: parent column "%" is named twice', left(bad, 200)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c INTO bad FROM unnest(columns) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = tracked_row.parent_table AND a.attname = c
                        AND a.attnum > 0 AND NOT a.attisdropped)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: parent table "%" has no column "%"', tracked_row.parent_table,
            left(bad, 200)
            USING ERRCODE = 'undefined_column';
    END IF;
    PERFORM webhooks._drop_capture_triggers(rel) FROM webhooks._table_tree(source) rel;
    PERFORM webhooks._add_capture_triggers(rel, CASE WHEN columns = '{}' THEN '{}'
                                                     ELSE tracked_row.parent_column || columns END)
    FROM webhooks._table_tree(source) rel;
    PERFORM webhooks._remember_parent_values(source);
    SELECT * INTO tracked_row FROM webhooks.tracked_tables v WHERE v.source = enrich.source;
    RETURN tracked_row;
END $$;

-- Copy the parent columns a table's capture triggers send into webhooks.tracked, for
-- tracked_tables to show. SECURITY DEFINER: the caller has no rights on webhooks.tracked. It
-- takes no columns of its own, so calling it directly can change nothing the triggers say.
CREATE FUNCTION webhooks._remember_parent_values(source regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE webhooks.tracked t
    SET parent_values = nullif((webhooks._capture_arguments(t.source))[2:], '{}')
    WHERE t.source = _remember_parent_values.source;
END $$;

-- Wake an idle relay for new events (emit(); the capture trigger's append does the same in Rust,
-- pg_webhooks/src/capture/outbox.rs). A NOTIFY takes a cluster-wide lock at commit and stops commits
-- from grouping (NOTES.md section 2), so writers notify only while some relay has said it is
-- idle; a busy one polls. Never where transactions may be prepared: PREPARE TRANSACTION refuses
-- a transaction that notified, so there relays poll (--poll-interval).
CREATE FUNCTION webhooks._wake_relays() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_notify('webhooks_wakeup', '')
    FROM webhooks.relays r
    WHERE r.idle AND current_setting('max_prepared_transactions') = '0'
    LIMIT 1;
END $$;

-- An application event: anything that is not a row change (an email was opened, a contact got a
-- tag...). Written in the caller's transaction; returns the event id.
CREATE FUNCTION webhooks.emit(event text, payload jsonb, origin text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    event_id bigint;
BEGIN
    PERFORM webhooks._check_unreserved('event', webhooks._check_event_name('event', event));
    -- a request for an emitted event must not pass for a row change
    IF event ~ '\.(created|updated|deleted)$' THEN
        RAISE EXCEPTION 'pg_webhooks: event "%" is a row event name: only changes of a tracked table make <entity>.created, .updated and .deleted', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Track the table with webhooks.track(), or name the event differently.';
    END IF;
    PERFORM webhooks._require_value('payload', payload IS NULL);
    IF jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION 'pg_webhooks: payload must be a JSON object, not %', jsonb_typeof(payload)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_column_size(payload) > 1048576 THEN
        RAISE EXCEPTION 'pg_webhooks: payload is % bytes; at most 1 MiB is sent', pg_column_size(payload)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    PERFORM webhooks._check_length('origin', emit.origin, 200);
    INSERT INTO webhooks.events (event, origin, payload)
    VALUES (emit.event, coalesce(emit.origin, webhooks._origin()), emit.payload)
    RETURNING id INTO event_id;
    PERFORM webhooks._wake_relays();
    RETURN event_id;
END $$;

COMMENT ON FUNCTION webhooks.track(regclass, text, text) IS
'Emit <entity>.created, <entity>.updated and <entity>.deleted events for the row changes of a '
'table (entity defaults to the table name). For a child table (subprofiles), parent names the '
'column holding the parent profile''s id: its events then carry profile, collection and '
'database. The caller needs the TRIGGER privilege on it.';
COMMENT ON FUNCTION webhooks.untrack(regclass) IS
'Stop emitting events for a table''s row changes.';
COMMENT ON FUNCTION webhooks.identify(regclass, text, text) IS
'The identifiers a receiver knows a tracked table by: form posts send them as database and '
'collection (of a child table) instead of the table name and entity. NULL returns to those.';
COMMENT ON FUNCTION webhooks.enrich(regclass, text[]) IS
'Events of a child table carry these columns of the parent row its foreign key points to, as '
'parent, read in the writer''s transaction with the writer''s rights. NULL stops it.';
COMMENT ON FUNCTION webhooks.emit(text, jsonb, text) IS
'Record an application event (payload: a JSON object) in the current transaction; returns its '
'id. origin defaults to pg_webhooks.origin or application_name.';
