-- pg_webhooks: partitions and retention.
--
-- events, deliveries, attempts and successes are partitioned by UTC day. maintain() (the relay calls it
-- every minute; cron or an operator may too) creates the partitions for the coming days and drops
-- whole days older than settings.retention. A day is kept, whatever its age, while it still holds
-- an event not yet fanned out, a delivery waiting or in flight, or a held delivery (maintain()
-- first drops those past the replay window, webhooks._expire_held): retention never loses a
-- committed event. No mass DELETE ever runs.

CREATE FUNCTION webhooks._partition_name(parent text, day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT parent || '_p' || to_char(day, 'YYYYMMDD')
$$;

-- The UTC day a partition covers, from its name; NULL for the default partitions.
CREATE FUNCTION webhooks._partition_day(partition_name text) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_date(substring(partition_name FROM '_p([0-9]{8})$'), 'YYYYMMDD')
$$;

CREATE FUNCTION webhooks._utc_midnight(day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT day::timestamp AT TIME ZONE 'UTC'
$$;

-- Deliveries of events from event_time's UTC day on are being queued: claims and
-- acknowledgements must look at that day again. Called first, before the webhook and its rows
-- are locked: fan-out holds the state row while it locks webhooks (the key of their throttle
-- marks), so the other order could deadlock. From then on maintain() cannot move queued_since
-- past rows it does not see yet. With NULL it takes the lock only, for a caller that finds its
-- rows' earliest day once it holds it (fan-out may add rows until then).
CREATE FUNCTION webhooks._queued_from(event_time timestamptz) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    -- (always an update, also when queued_since is earlier already: the row lock is what keeps
    -- maintain() from counting days while these rows are being queued)
    UPDATE webhooks.fan_out_state
    SET queued_since = least(queued_since,
                             webhooks._utc_midnight((event_time AT TIME ZONE 'UTC')::date))
$$;

-- The start of the oldest UTC day whose deliveries partition holds a pending or leased
-- delivery: '-infinity' for the default partition, and the start of today when none does.
CREATE FUNCTION webhooks._oldest_queued_day() RETURNS timestamptz
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
    queued boolean;
BEGIN
    FOR part IN
        SELECT c.relname, webhooks._partition_day(c.relname) AS day
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'webhooks.deliveries'::regclass
        ORDER BY 2 NULLS FIRST
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM webhooks.%I d'
                       ' WHERE d.state IN (''pending'', ''leased''))', part.relname)
            INTO queued;
        IF queued THEN
            RETURN coalesce(webhooks._utc_midnight(part.day), '-infinity');
        END IF;
    END LOOP;
    RETURN webhooks._utc_midnight((now() AT TIME ZONE 'UTC')::date);
END $$;

-- Partition work never makes writers or relays wait. CREATE TABLE ... PARTITION OF would take
-- ACCESS EXCLUSIVE on the parent, queueing every writer behind any long transaction that reads
-- it; a table made apart and then attached takes only SHARE UPDATE EXCLUSIVE on the parent.
-- Dropping a day does need ACCESS EXCLUSIVE on the parent: like every lock here it is waited
-- for at most lock_timeout (50 ms), then maintain() skips the day and tries again next time.
-- Partitions are made settings.partitions_ahead days ahead, so a skipped attach costs nothing.
-- Partitions are members of the extension, so pg_dump leaves them (operational data) out.
CREATE FUNCTION webhooks._create_partition(parent text, day date) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms' AS $$
DECLARE
    name text := webhooks._partition_name(parent, day);
BEGIN
    IF to_regclass(format('webhooks.%I', name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE webhooks.%I (LIKE webhooks.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   name, parent);
    -- like everything of pg_webhooks' (sql/90_privileges.sql); once the extension exists
    IF to_regrole('webhooks_owner') IS NOT NULL THEN
        EXECUTE format('ALTER TABLE webhooks.%I OWNER TO webhooks_owner', name);
    END IF;
    EXECUTE format('ALTER TABLE webhooks.%I ATTACH PARTITION webhooks.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, name, webhooks._utc_midnight(day), webhooks._utc_midnight(day + 1));
    IF NOT EXISTS (SELECT 1 FROM pg_depend d
                   WHERE d.classid = 'pg_class'::regclass
                     AND d.objid = format('webhooks.%I', name)::regclass
                     AND d.deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION pg_webhooks ADD TABLE webhooks.%I', name);
    END IF;
    RETURN true;
END $$;

CREATE FUNCTION webhooks._drop_partition(parent text, day date) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms' AS $$
DECLARE
    name text := webhooks._partition_name(parent, day);
BEGIN
    IF to_regclass(format('webhooks.%I', name)) IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER EXTENSION pg_webhooks DROP TABLE webhooks.%I', name);
    EXECUTE format('DROP TABLE webhooks.%I', name);
END $$;

-- Is anything in this day still owed to a receiver?
CREATE FUNCTION webhooks._day_has_open_work(day date) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    events_part text := webhooks._partition_name('events', day);
    deliveries_part text := webhooks._partition_name('deliveries', day);
    open_work boolean := false;
    fanned pg_snapshot;
BEGIN
    -- Events visible in done_upto have all their deliveries; the others (at or after its xmax,
    -- or in progress when it was taken) may not. Two index probes, like fan_out's first look:
    -- "xid >= xmin" would keep delivered days while a long transaction holds xmin back.
    SELECT s.done_upto INTO fanned FROM webhooks.fan_out_state s;
    IF to_regclass(format('webhooks.%I', events_part)) IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM webhooks.%I WHERE xid >= $1)'
                       ' OR EXISTS (SELECT 1 FROM webhooks.%I WHERE xid = ANY ($2))',
                       events_part, events_part)
            INTO open_work
            USING pg_snapshot_xmax(fanned), ARRAY(SELECT pg_snapshot_xip(fanned));
    END IF;
    IF NOT open_work AND to_regclass(format('webhooks.%I', deliveries_part)) IS NOT NULL THEN
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM webhooks.%I d WHERE d.state IN (''pending'', ''leased'', ''held'')'
            -- a deleted webhook is owed nothing (webhooks.delete)
            ' AND EXISTS (SELECT 1 FROM webhooks.webhooks w WHERE w.id = d.webhook_id))',
            deliveries_part)
            INTO open_work;
    END IF;
    RETURN open_work;
END $$;

CREATE FUNCTION webhooks.maintain() RETURNS TABLE (action text, object text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    conf record;
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
    parent text;
BEGIN
    -- One maintainer at a time; the others have nothing to add. A row lock on a table no role
    -- is granted, not an advisory lock, which any role could take and hold forever.
    PERFORM FROM webhooks.maintenance_lock FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO conf FROM webhooks._settings();

    FOR day IN SELECT today + g FROM generate_series(-1, conf.partitions_ahead) g LOOP
        FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'attempts', 'successes'] LOOP
            BEGIN
                IF webhooks._create_partition(parent, day) THEN
                    action := 'created'; object := webhooks._partition_name(parent, day);
                    RETURN NEXT;
                END IF;
            EXCEPTION
                WHEN check_violation THEN
                    -- rows for this day already sit in the default partition
                    action := 'skipped (rows in default partition)';
                    object := webhooks._partition_name(parent, day);
                    RETURN NEXT;
                WHEN lock_not_available THEN
                    action := 'skipped (locked, tried again next time)';
                    object := webhooks._partition_name(parent, day);
                    RETURN NEXT;
            END;
        END LOOP;
    END LOOP;

    -- held events past the replay window are dropped, and counted per webhook; before the
    -- retention below, so that none leaves uncounted with its day
    object := webhooks._expire_held(NULL)::text;
    IF object <> '0' THEN
        action := 'expired held deliveries';
        RETURN NEXT;
    END IF;

    FOR day IN
        SELECT DISTINCT webhooks._partition_day(c.relname)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('webhooks.events'::regclass, 'webhooks.deliveries'::regclass,
                              'webhooks.attempts'::regclass, 'webhooks.successes'::regclass)
          AND webhooks._partition_day(c.relname) IS NOT NULL
          AND webhooks._utc_midnight(webhooks._partition_day(c.relname) + 1)
              < now() - conf.retention
        ORDER BY 1
    LOOP
        IF webhooks._day_has_open_work(day) THEN
            action := 'kept (open work)'; object := webhooks._partition_name('events', day);
            RETURN NEXT;
            CONTINUE;
        END IF;
        BEGIN
            FOREACH parent IN ARRAY ARRAY['successes', 'attempts', 'deliveries', 'events'] LOOP
                PERFORM webhooks._drop_partition(parent, day);
            END LOOP;
            action := 'dropped'; object := to_char(day, 'YYYY-MM-DD');
        EXCEPTION WHEN lock_not_available THEN
            action := 'kept (locked, tried again next time)'; object := to_char(day, 'YYYY-MM-DD');
        END;
        RETURN NEXT;
    END LOOP;


    -- throttle marks older than their webhook's throttle decide nothing any more
    DELETE FROM webhooks.throttles t USING webhooks.webhooks w
    WHERE w.id = t.webhook_id AND (w.throttle IS NULL OR t.sent_at < now() - w.throttle);

    -- set-aside events are remembered as long as events are kept
    DELETE FROM webhooks.set_aside_events a WHERE a.set_aside_at < now() - conf.retention;

    -- relays that stopped heartbeating (crashed) no longer ask writers for NOTIFY
    DELETE FROM webhooks.relays r WHERE r.seen_at < now() - interval '10 minutes';

    -- Claims and acknowledgements look at the days since the oldest that has a queued delivery
    -- (fan_out_state.queued_since). Counted after the row is locked, and skipped while a
    -- fan-out or a requeue holds it: they may be queueing rows of a day not counted yet. Last,
    -- as waiting for nothing: a claim holding the row may wait for a partition dropped above.
    PERFORM FROM webhooks.fan_out_state FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        UPDATE webhooks.fan_out_state SET queued_since = webhooks._oldest_queued_day();
    END IF;
END $$;

COMMENT ON FUNCTION webhooks.maintain() IS
'Create the daily partitions ahead of time and drop days older than settings.retention that '
'hold no open work. The relay runs it every minute.';

SELECT webhooks.maintain();
