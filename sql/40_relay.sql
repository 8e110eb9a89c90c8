-- pg_webhooks: the functions the relay calls (role webhooks_relay).
--
-- An event's way: events --fan_out--> deliveries(pending) --claim--> leased --ack--> delivered,
-- pending again (retry), or failed (parked). A lease is committed, so no transaction stays open
-- across an HTTP request; a lease that runs out is claimable again (at-least-once delivery).

-- Turn committed events into one delivery per matching webhook.
--
-- Why snapshots: event ids come from a sequence before commit, so "id > last seen" would skip an
-- event whose transaction commits after a later one. Instead a batch covers exactly the
-- transactions visible in a new snapshot but not in the last finished one; a large batch is
-- walked in (xid, id) order over several calls. Only one relay fans out at a time (SKIP LOCKED);
-- the others go straight on to claiming.
-- The next events of a fan-out batch, in (xid, id) order: those visible in batch_upto but not
-- in done_upto. Not visible in done_upto means one of two things, read apart so that neither
-- walks events already fanned out: the transaction was in progress when done_upto was taken
-- (its xip: a few index probes), or it started since (the range from done_upto's xmax, walked
-- in index order). "xid >= xmin" instead walked every event committed since the oldest open
-- transaction on every batch, so a long or prepared transaction made each batch cost as much as
-- the backlog behind it. The first branch's xids are all below the second's, and Append
-- returns its branches in order (no parallel plans here), so the LIMIT takes the first events.
-- The planner cannot know how few rows the snapshot tests keep, and left to itself it sorts
-- the whole remaining backlog on every call (quadratic: 43 ms per 1,000 events at a 100k
-- backlog, BENCHMARKS.md). Without sorts and bitmap scans it walks each day's (xid, id) index
-- in order (a Merge Append) and stops at the limit; the settings apply to this function alone.
CREATE FUNCTION webhooks._fan_out_batch(state webhooks.fan_out_state, max_events integer)
RETURNS SETOF webhooks.events
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
SET enable_sort = off SET enable_bitmapscan = off SET jit = off
SET max_parallel_workers_per_gather = 0 AS $$
    (SELECT e.*
     FROM webhooks.events e
     WHERE e.xid = ANY (ARRAY(SELECT x FROM pg_snapshot_xip(state.done_upto) x
                               WHERE pg_visible_in_snapshot(x, state.batch_upto)))
       AND (e.xid, e.id) > (state.after_xid, state.after_id)
     ORDER BY e.xid, e.id
     LIMIT max_events)
    UNION ALL
    (SELECT e.*
     FROM webhooks.events e
     WHERE e.xid >= pg_snapshot_xmax(state.done_upto)
       AND e.xid < pg_snapshot_xmax(state.batch_upto)
       AND (e.xid, e.id) > (state.after_xid, state.after_id)
       AND pg_visible_in_snapshot(e.xid, state.batch_upto)
     ORDER BY e.xid, e.id
     LIMIT max_events)
    LIMIT max_events
$$;

-- Planner settings for fan_out, claim and ack, all measured (BENCHMARKS.md): generic plans,
-- because re-planning these queries on every call was about 40% of PostgreSQL's time while
-- draining a backlog; index scans only here, because statistics taken while a day was nearly
-- empty made the first look read the whole day (14 ms per call at 100k events), and as a bitmap
-- scan it gathered every event not yet fanned out before answering (tests/tests/plans.rs);
-- never JIT, as the plan types turned off make every cost look huge and compiling took 0.8 s
-- per call.
CREATE FUNCTION webhooks.fan_out(max_events integer DEFAULT 1000, careful boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off
SET jit = off AS $$
DECLARE
    state webhooks.fan_out_state;
    taken integer;
    last_xid xid8;
    last_id bigint;
BEGIN
    -- Most calls find nothing new. Look without locking first: the lock and the state update
    -- would make every empty poll a write, and so a commit flush.
    IF NOT EXISTS (
        SELECT 1 FROM webhooks.fan_out_state s
        WHERE s.batch_upto IS NOT NULL
           -- not visible in done_upto: at or after its xmax, or in progress when it was taken
           -- (two index probes; "xid >= xmin" would walk every event committed since xmin)
           OR EXISTS (SELECT 1 FROM webhooks.events e
                      WHERE e.xid >= pg_snapshot_xmax(s.done_upto))
           -- (= ANY of an array, not IN: the planner turned IN into a walk of every event)
           OR EXISTS (SELECT 1 FROM webhooks.events e
                      WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(s.done_upto))))
    ) THEN
        RETURN 0;
    END IF;
    SELECT * INTO state FROM webhooks.fan_out_state FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF state.batch_upto IS NULL THEN
        state.batch_upto := pg_current_snapshot();
        state.after_xid := '0';
        state.after_id := 0;
    END IF;

    WITH batch AS MATERIALIZED (
        SELECT * FROM webhooks._fan_out_batch(state, max_events)
    ), matching AS (
        -- the webhooks that want each event (sql/25_options.sql: pattern, verification, source,
        -- origins, columns, then the filter); an event nobody wants gets no delivery at all
        SELECT b.id, b.xid, b.created_at, b.payload, w.id AS webhook_id, w.filter,
               webhooks._sends(w) AS sends, w.throttle,
               webhooks._throttle_value(w, b.payload) AS throttle_value,
               webhooks._filter_verdict(w, b.payload, careful) AS verdict
        FROM batch b
        JOIN webhooks.webhooks w ON webhooks._wants(w, b.event, b.source, b.origin, b.payload)
    ), wanted AS (
        -- verdict NULL: the filter failed on this event (careful mode), recorded as dropped
        SELECT m.id, m.xid, m.created_at, m.webhook_id, m.sends, m.throttle,
               CASE WHEN m.verdict THEN m.throttle_value END AS throttle_value,
               CASE WHEN m.verdict IS NULL THEN webhooks._filter_error(m.filter, m.payload) END
                   AS filter_error
        FROM matching m
        WHERE m.verdict IS NOT FALSE
    ), repeats AS (
        -- events of throttled webhooks that follow an earlier one for the same value here
        SELECT r.id, r.webhook_id
        FROM (SELECT x.id, x.webhook_id,
                     row_number() OVER (PARTITION BY x.webhook_id, x.throttle_value
                                        ORDER BY x.xid, x.id) AS nth
              FROM wanted x WHERE x.throttle_value IS NOT NULL) r
        WHERE r.nth > 1
    ), decided AS (
        -- throttled: the webhook sent for this value within its throttle, before or earlier in
        -- this batch; such events are dropped, visibly
        SELECT x.*, x.throttle_value IS NOT NULL AND (
                   r.id IS NOT NULL
                   OR EXISTS (SELECT 1 FROM webhooks.throttles t
                              WHERE t.webhook_id = x.webhook_id AND t.value = x.throttle_value
                                AND t.sent_at > x.created_at - x.throttle)) AS throttled
        FROM wanted x
        LEFT JOIN repeats r ON r.id = x.id AND r.webhook_id = x.webhook_id
    ), fanned AS (
        INSERT INTO webhooks.deliveries
            (event_id, event_xid, event_created_at, webhook_id, state, due_at, last_error)
        SELECT d.id, d.xid, d.created_at, d.webhook_id,
               CASE WHEN d.throttled OR d.filter_error IS NOT NULL THEN 'dropped'
                    WHEN d.sends THEN 'pending' ELSE 'held' END,
               CASE WHEN d.sends AND NOT d.throttled AND d.filter_error IS NULL THEN now() END,
               CASE WHEN d.throttled THEN 'throttled' ELSE d.filter_error END
        FROM decided d
        ORDER BY d.xid, d.id, d.webhook_id
    ), remembered AS (
        INSERT INTO webhooks.throttles (webhook_id, value, sent_at)
        SELECT d.webhook_id, d.throttle_value, max(d.created_at)
        FROM decided d
        WHERE d.throttle_value IS NOT NULL AND NOT d.throttled
        GROUP BY d.webhook_id, d.throttle_value
        ON CONFLICT (webhook_id, value) DO UPDATE SET sent_at = excluded.sent_at
    )
    SELECT count(*)::integer,
           (array_agg(b.xid ORDER BY b.xid DESC, b.id DESC))[1],
           (array_agg(b.id ORDER BY b.xid DESC, b.id DESC))[1]
    INTO taken, last_xid, last_id
    FROM batch b;

    IF taken < max_events THEN
        UPDATE webhooks.fan_out_state
        SET done_upto = state.batch_upto, batch_upto = NULL, after_xid = '0', after_id = 0;
    ELSE
        UPDATE webhooks.fan_out_state
        SET batch_upto = state.batch_upto, after_xid = last_xid, after_id = last_id;
    END IF;
    RETURN taken;
END $$;

-- Fan out the current batch one event at a time, carefully; an event that fails even alone is
-- set aside in webhooks.set_aside_events with the reason, and the batch goes on past it. Only
-- when both the whole batch and its careful walk failed (claim() calls this): each event costs
-- a subtransaction here. Returns how many events were set aside.
CREATE FUNCTION webhooks._fan_out_one_by_one(max_events integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    state webhooks.fan_out_state;
    poison webhooks.events;
    set_aside integer := 0;
BEGIN
    SELECT * INTO state FROM webhooks.fan_out_state FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;  -- another relay is fanning out
    END IF;
    -- fix the batch's snapshot first, so that every try below walks the same events
    IF state.batch_upto IS NULL THEN
        UPDATE webhooks.fan_out_state
        SET batch_upto = pg_current_snapshot(), after_xid = '0', after_id = 0;
    END IF;
    FOR i IN 1..max_events LOOP
        BEGIN
            EXIT WHEN webhooks.fan_out(1, careful => true) = 0;  -- the batch is done
        EXCEPTION WHEN OTHERS THEN
            -- not one event's fault: a deadlock or lock timeout, resources, shutdown, a bug
            IF left(SQLSTATE, 2) IN ('40', '53', '55', '57', '58', 'XX') THEN
                RAISE;
            END IF;
            SELECT * INTO state FROM webhooks.fan_out_state;
            SELECT * INTO poison FROM webhooks._fan_out_batch(state, 1);
            IF poison.id IS NULL THEN
                RAISE;
            END IF;
            INSERT INTO webhooks.set_aside_events
                (event_id, event_xid, event_created_at, event, reason)
            VALUES (poison.id, poison.xid, poison.created_at, poison.event,
                    left(format('%s: %s', SQLSTATE, SQLERRM), 1000));
            UPDATE webhooks.fan_out_state SET after_xid = poison.xid, after_id = poison.id;
            set_aside := set_aside + 1;
            RAISE WARNING 'pg_webhooks: event % set aside, fan-out failed on it: %', poison.id, SQLERRM;
        END;
    END LOOP;
    RETURN set_aside;
END $$;

-- The secrets a request is signed with: the current one, and the previous one during a rotation.
CREATE FUNCTION webhooks._signing_secrets(hook webhooks.webhooks) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN hook.previous_secret_until > now()
                THEN ARRAY[hook.secret, hook.previous_secret]
                ELSE ARRAY[hook.secret] END
$$;

-- The `data` of a request body, as this webhook is sent it (its column lists applied). Row
-- events get the table, the entity and the primary key added; rows of a child table also the
-- parent profile's id, the collection (the child's entity) and the parent table (database).
-- t is the event's tracked table (NULL for emitted events), key its primary key's values
-- (claim() picks them). Written without subqueries so that the planner inlines it into claim():
-- it runs for every delivery.
CREATE FUNCTION webhooks._event_data(e webhooks.events, hook webhooks.webhooks, t webhooks.tracked,
                                     key jsonb)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN hook.include_columns IS NULL AND hook.exclude_columns IS NULL THEN e.payload
                ELSE webhooks._visible_payload(hook, e.payload, e.source IS NOT NULL) END
        || CASE WHEN e.source IS NULL THEN '{}'::jsonb ELSE jsonb_build_object(
               'table', e.source::text,
               'entity', t.entity,
               'key', key)
           END
        || CASE WHEN t.parent_column IS NULL THEN '{}'::jsonb ELSE jsonb_build_object(
               'profile', coalesce(e.payload -> 'new', e.payload -> 'old') -> t.parent_column,
               'collection', t.entity,
               'database', t.parent_table::text) END
$$;

-- Fan out, then lease up to max_deliveries due deliveries: oldest first, at most per_webhook
-- from one webhook and none from skip_webhooks (those the relay already has enough of in
-- flight), so one slow endpoint cannot take every slot. room_webhooks may take room_sizes
-- instead of per_webhook: the relay claims ahead for endpoints that answer quickly.
-- The webhooks with due work share max_deliveries equally: taking up to max_deliveries from
-- each and keeping the oldest read and locked 35 times more rows than it leased with 100 busy
-- webhooks (BENCHMARKS.md). Within a webhook deliveries stay in order.
CREATE FUNCTION webhooks.claim(
    relay text,
    max_deliveries integer,
    per_webhook integer,
    skip_webhooks bigint[],
    lease interval,
    room_webhooks bigint[] DEFAULT '{}',
    room_sizes integer[] DEFAULT '{}'
) RETURNS TABLE (
    delivery_id bigint, attempt integer, webhook_id bigint, url text, secrets text[],
    event_id bigint, event text, occurred_at timestamptz, data jsonb,
    max_in_flight integer, rate_limit_per_second double precision,
    format text, method text, fields jsonb, key_field text, parameters jsonb, headers jsonb,
    retry_schedule_ms bigint[], request_timeout_ms integer
)
-- Nested loops only: a claim touches a few hundred rows by key, and with stale statistics the
-- planner otherwise hashes the whole deliveries table to update them (25 ms at 100k rows). No
-- sorts where an index gives the order: stale statistics otherwise sort every due delivery of
-- each webhook (100-150 ms per claim at 100k). No whole-table scans: a day's partition analyzed
-- while empty was read whole for every webhook's share (tests/tests/plans.rs). Generic plans
-- and no JIT: see fan_out.
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off SET enable_mergejoin = off SET enable_sort = off
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan SET jit = off AS $$
DECLARE
    share integer;
BEGIN
    -- One event must not stop the claim: if fan-out fails (a filter that fails on one event's
    -- data), the batch is walked again carefully (sql/25_options.sql, _filter_verdict), and
    -- should even that fail, one event at a time, setting aside the one that fails alone.
    BEGIN
        PERFORM webhooks.fan_out();
    EXCEPTION WHEN OTHERS THEN
        BEGIN
            PERFORM webhooks.fan_out(careful => true);
        EXCEPTION WHEN OTHERS THEN
            PERFORM webhooks._fan_out_one_by_one();
        END;
    END;
    -- EXISTS in a FILTER, not in WHERE: as a semi-join the planner read every due delivery
    SELECT ceil(max_deliveries::numeric / greatest(1, count(*) FILTER (WHERE EXISTS (
               SELECT FROM webhooks.deliveries d
               WHERE d.webhook_id = w.id AND d.state IN ('pending', 'leased')
                 AND d.due_at <= now()))))
    INTO share
    FROM webhooks.webhooks w
    WHERE webhooks._sends(w) AND w.id <> ALL (coalesce(skip_webhooks, '{}'));
    RETURN QUERY
    WITH candidates AS (
        SELECT c.id, c.event_created_at
        FROM webhooks.webhooks w
        CROSS JOIN LATERAL (
            SELECT d.id, d.event_created_at, d.due_at, d.event_id
            FROM webhooks.deliveries d
            WHERE d.webhook_id = w.id
              AND d.state IN ('pending', 'leased')
              AND d.due_at <= now()
            ORDER BY d.due_at, d.event_id
            -- rows locked here beyond the outer LIMIT stay locked until the claim commits
            -- (at once, in the relay), so never lock more than one claim can take
            LIMIT greatest(0, least(coalesce(room_sizes[array_position(room_webhooks, w.id)],
                                             per_webhook),
                                    share))
            FOR UPDATE SKIP LOCKED
        ) c
        WHERE webhooks._sends(w) AND w.id <> ALL (coalesce(skip_webhooks, '{}'))
        ORDER BY c.due_at, c.event_id
        LIMIT max_deliveries
    ), leased AS (
        UPDATE webhooks.deliveries d
        SET state = 'leased', due_at = now() + lease, attempts = d.attempts + 1,
            leased_by = relay, updated_at = now()
        FROM candidates c
        WHERE d.id = c.id AND d.event_created_at = c.event_created_at
        RETURNING d.id, d.attempts, d.webhook_id, d.event_id, d.event_xid, d.event_created_at
    )
    SELECT l.id, l.attempts, w.id, w.url, webhooks._signing_secrets(w),
           e.id, e.event, e.created_at, webhooks._event_data(e, w, t, k.key),
           w.max_in_flight, w.rate_limit_per_second,
           w.format, w.method, w.fields, coalesce(w.key_field, 'email'), w.parameters, w.headers,
           -- (the CHECK on request_timeout keeps it far inside integer)
           webhooks._milliseconds(w.retry_schedule), webhooks._milliseconds(w.request_timeout)::integer
    FROM leased l
    JOIN webhooks.webhooks w ON w.id = l.webhook_id
    JOIN webhooks.events e
      ON e.xid = l.event_xid AND e.id = l.event_id AND e.created_at = l.event_created_at
    LEFT JOIN webhooks.tracked t ON t.source = e.source
    -- the row's primary key, picked member by member (never the whole row as text: a row of
    -- 180 MB of control characters passed PostgreSQL's 1 GB limit as text and failed every claim)
    CROSS JOIN LATERAL (
        SELECT coalesce(jsonb_object_agg(c.name, coalesce(e.payload -> 'new', e.payload -> 'old') -> c.name),
                        '{}') AS key
        FROM unnest(t.key_columns) AS c(name)
    ) k
    ORDER BY e.created_at, e.id;
END $$;

-- Record the outcomes of a batch of attempts (see relay/README.md for the JSON shape). An
-- outcome for a lease that ran out and was claimed again is ignored: the newer lease wins.
CREATE FUNCTION webhooks.ack(relay text, results jsonb) RETURNS integer
-- Nested loops over single indexes only, as in claim(): acknowledgements update rows by key.
-- With statistics from when a day's partition was nearly empty, the planner otherwise reads
-- every leased delivery for each outcome (230 ms to 1.3 s per 500 outcomes at a 100k backlog,
-- BENCHMARKS.md), and a generic plan that expects one row scans webhooks once per webhook.
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan SET jit = off AS $$
DECLARE
    leased constant text := 'leased';
    applied integer;
    gone_webhooks bigint[];
    failing_webhooks bigint[];
BEGIN
    WITH outcome AS (
        -- Times come from the database's clock, not the relay's: a retry is due retry_after_ms
        -- (at most a year) after this acknowledgement, and an attempt started duration_ms
        -- before it. A relay with a skewed clock moves neither retries nor disabling.
        SELECT r.delivery_id, r.attempt, r.outcome, r.status, r.error, r.response,
               now() + make_interval(secs => least(greatest(r.retry_after_ms, 0), 31536000000) / 1000.0)
                   AS retry_at,
               now() - make_interval(secs => least(greatest(r.duration_ms, 0), 86400000) / 1000.0)
                   AS started_at,
               r.duration_ms
        FROM jsonb_to_recordset(results) AS r(
            delivery_id bigint, attempt integer, outcome text, retry_after_ms bigint,
            status integer, error text, response text, duration_ms integer)
        WHERE r.outcome IN ('delivered', 'retry', 'failed', 'gone', 'released')
    ), updated AS (
        UPDATE webhooks.deliveries d
        SET state = CASE
                WHEN o.outcome = 'delivered' THEN 'delivered'
                WHEN o.outcome IN ('failed', 'gone') THEN 'failed'
                WHEN w.status <> 'active' THEN 'held'
                ELSE 'pending' END,
            due_at = CASE
                WHEN o.outcome IN ('delivered', 'failed', 'gone') OR w.status <> 'active' THEN NULL
                WHEN o.outcome = 'retry' THEN o.retry_at
                ELSE now() END,
            attempts = CASE WHEN o.outcome = 'released' THEN d.attempts - 1 ELSE d.attempts END,
            leased_by = NULL,
            last_status = CASE WHEN o.outcome = 'released' THEN d.last_status ELSE o.status END,
            last_error = CASE WHEN o.outcome = 'released' THEN d.last_error ELSE o.error END,
            updated_at = now()
        FROM outcome o, webhooks.webhooks w
        -- state = a variable: in the generic plan it cannot match the partial index of due
        -- deliveries, which the planner would otherwise read whole for each outcome
        WHERE d.id = o.delivery_id AND d.state = leased AND d.attempts = o.attempt
          AND w.id = d.webhook_id
        RETURNING d.id AS delivery_id, d.event_id, d.event_xid, d.webhook_id, o.attempt, o.outcome,
                  o.status, o.error, o.response, o.started_at,
                  coalesce(o.duration_ms, 0) AS duration_ms
    ), logged AS (
        INSERT INTO webhooks.attempts
            (delivery_id, event_id, event_xid, webhook_id, attempt, started_at, duration_ms,
             outcome, status, error, response)
        SELECT u.delivery_id, u.event_id, u.event_xid, u.webhook_id, u.attempt, u.started_at,
               u.duration_ms,
               u.outcome, u.status, u.error, left(u.response, 4096)
        FROM updated u
        WHERE u.outcome <> 'released'
    ), health AS (
        UPDATE webhooks.webhooks w
        SET consecutive_failures = CASE WHEN s.succeeded THEN 0
                                        ELSE w.consecutive_failures + s.failures END,
            failing_since = CASE WHEN s.succeeded THEN NULL
                                 ELSE coalesce(w.failing_since, s.first_failure) END,
            last_success_at = CASE WHEN s.succeeded THEN now() ELSE w.last_success_at END
        FROM (SELECT u.webhook_id,
                     bool_or(u.outcome = 'delivered') AS succeeded,
                     count(*) FILTER (WHERE u.outcome <> 'delivered') AS failures,
                     min(u.started_at) FILTER (WHERE u.outcome <> 'delivered') AS first_failure
              FROM updated u
              WHERE u.outcome <> 'released'
              GROUP BY u.webhook_id) s
        WHERE w.id = s.webhook_id
          -- a healthy webhook's row is rewritten at most once a second, not on every batch:
          -- each rewrite leaves a dead row version that claim() reads past until vacuum
          AND NOT (s.succeeded AND w.consecutive_failures = 0 AND w.failing_since IS NULL
                   AND w.last_success_at > now() - interval '1 second')
    )
    SELECT count(*)::integer,
           array_agg(DISTINCT u.webhook_id) FILTER (WHERE u.outcome = 'gone'),
           array_agg(DISTINCT u.webhook_id) FILTER (WHERE u.outcome IN ('retry', 'failed'))
    INTO applied, gone_webhooks, failing_webhooks
    FROM updated u;

    -- 410 Gone: the receiver wants no more; switch the webhook off at once.
    PERFORM webhooks._disable(w.id, 'receiver answered 410 Gone')
    FROM webhooks.webhooks w
    WHERE w.id = ANY (gone_webhooks) AND w.status = 'active';

    -- A receiver that keeps failing is switched off too (its events are held meanwhile).
    PERFORM webhooks._disable(w.id, format('%s consecutive failed attempts since %s',
                                           w.consecutive_failures, w.failing_since))
    FROM webhooks.webhooks w, webhooks._settings() s
    WHERE w.id = ANY (failing_webhooks) AND w.status = 'active'
      AND w.consecutive_failures >= s.disable_after_failures
      AND w.failing_since <= now() - s.disable_after;
    RETURN applied;
END $$;

-- A relay that says it is idle asks writers to NOTIFY it; a busy one polls instead. Called again
-- on each idle timeout as a heartbeat, so maintain() can forget relays that died.
CREATE FUNCTION webhooks.relay_idle(relay text, idle boolean) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO webhooks.relays (name, idle, seen_at) VALUES (relay, idle, now())
    ON CONFLICT (name) DO UPDATE SET idle = excluded.idle, seen_at = excluded.seen_at
$$;

CREATE FUNCTION webhooks.relay_leave(relay text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM webhooks.relays r WHERE r.name = relay
$$;

CREATE FUNCTION webhooks.queue_depth() RETURNS TABLE (queued bigint, held bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT count(*) FROM webhooks.deliveries d WHERE d.state IN ('pending', 'leased')),
           (SELECT count(*) FROM webhooks.deliveries d WHERE d.state = 'held')
$$;

-- Deliver a delivery again (a parked failure, or a delivered one on request).
CREATE FUNCTION webhooks.redeliver(delivery_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._require_value('delivery_id', delivery_id IS NULL);
    UPDATE webhooks.deliveries d
    SET state = CASE WHEN w.status = 'active' THEN 'pending' ELSE 'held' END,
        due_at = CASE WHEN w.status = 'active' THEN now() END,
        updated_at = now()
    FROM webhooks.webhooks w
    WHERE d.id = redeliver.delivery_id AND w.id = d.webhook_id
      AND d.state IN ('failed', 'delivered', 'dropped');
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.id = redeliver.delivery_id) THEN
            RETURN;  -- already queued or in flight
        END IF;
        RAISE EXCEPTION 'pg_webhooks: delivery % does not exist', redeliver.delivery_id
            USING ERRCODE = 'no_data_found';
    END IF;
END $$;

COMMENT ON FUNCTION webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]) IS
'Relay API: fan out new events, then lease due deliveries. See sql/40_relay.sql.';
COMMENT ON FUNCTION webhooks.ack(text, jsonb) IS
'Relay API: record a batch of attempt outcomes. See relay/README.md for the JSON shape.';
COMMENT ON FUNCTION webhooks.relay_idle(text, boolean) IS
'Relay API: mark a relay idle (writers then NOTIFY webhooks_wakeup) or busy (they do not).';
COMMENT ON FUNCTION webhooks.relay_leave(text) IS 'Relay API: a relay shuts down.';
COMMENT ON FUNCTION webhooks.queue_depth() IS
'Deliveries waiting (pending or leased) and held for inactive webhooks.';
COMMENT ON FUNCTION webhooks.redeliver(bigint) IS
'Queue a delivery again: a parked failure, or a delivered one. Held if the webhook is off.';
COMMENT ON FUNCTION webhooks.fan_out(integer, boolean) IS
'Turn up to max_events committed events into deliveries; claim() calls it. careful: a filter '
'that fails on an event counts as not matching (recorded as a dropped delivery).';
