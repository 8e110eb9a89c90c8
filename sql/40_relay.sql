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
-- PL/pgSQL with a generic plan, so that a session plans it once: as a SQL function it was
-- parsed and planned on every call (BENCHMARKS.md).
CREATE FUNCTION webhooks._fan_out_batch(state webhooks.fan_out_state, max_events integer)
RETURNS SETOF webhooks.events
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
SET enable_sort = off SET enable_bitmapscan = off SET jit = off
SET max_parallel_workers_per_gather = 0 SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
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
     -- one lower bound, the later of done_upto's xmax and the batch's last event: as two
     -- conditions, the index scan started at the first and read every entry below the other,
     -- each call reading the whole day's events fanned out before (BENCHMARKS.md)
     WHERE (e.xid, e.id) > (greatest(state.after_xid, pg_snapshot_xmax(state.done_upto)),
                            CASE WHEN state.after_xid >= pg_snapshot_xmax(state.done_upto)
                                 THEN state.after_id ELSE '-9223372036854775808'::bigint END)
       AND e.xid < pg_snapshot_xmax(state.batch_upto)
       AND pg_visible_in_snapshot(e.xid, state.batch_upto)
     ORDER BY e.xid, e.id
     LIMIT max_events)
    LIMIT max_events;
END $$;

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
    first_created timestamptz;
    replay_window interval;
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
    IF state.batch_order IS NULL THEN
        state.batch_order := nextval('webhooks.delivery_order_seq');
    END IF;
    SELECT s.replay_window INTO replay_window FROM webhooks._settings() s;

    WITH batch AS MATERIALIZED (
        SELECT * FROM webhooks._fan_out_batch(state, max_events)
    ), matching AS (
        -- the webhooks that want each event (sql/25_options.sql: pattern, verification, source,
        -- origins, columns, then the filter); an event nobody wants gets no delivery at all
        SELECT b.id, b.xid, b.created_at, b.payload, w.id AS webhook_id, w.filter,
               webhooks._sends(w) AS sends, w.throttle,
               -- a webhook the system switched off (so not sending) holds only the first replay
               -- window's events
               w.status = 'disabled' AND b.created_at >= w.status_changed_at + replay_window
                   AS past_buffer,
               webhooks._throttle_value(w, b.payload) AS throttle_value,
               webhooks._filter_verdict(w, b.payload, careful) AS verdict,
               CASE WHEN w.ordered_by IS NOT NULL THEN webhooks._order_key(w, b.source, b.payload) END
                   AS order_key
        FROM batch b
        JOIN webhooks.webhooks w ON webhooks._wants(w, b.event, b.source, b.origin, b.payload)
    ), wanted AS (
        -- verdict NULL: the filter failed on this event (careful mode), recorded as dropped
        SELECT m.id, m.xid, m.created_at, m.webhook_id, m.sends, m.past_buffer, m.throttle,
               m.order_key,
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
        -- one row per webhook, outcome and UTC day (a row lives in one day's partition), of up
        -- to 100 events in (xid, id) order; rows of a webhook are claimed in id order. An
        -- ordered webhook's event has a row of its own, placed among its key's events by this
        -- batch and its event id: the id follows commit order where it matters, for writes to
        -- one row (the later writer waits for the row lock before its trigger takes an id),
        -- and xid order does not. While its key's next event waits for a retry, it is not due
        -- before that either (claim would read past it on every call until then).
        INSERT INTO webhooks.deliveries
            (webhook_id, event_created_at, event_ids, event_xids, event_times, marks, state,
             due_at, last_error, order_key, order_batch, order_event)
        SELECT r.webhook_id, max(r.created_at),
               array_agg(r.id ORDER BY r.xid, r.id), array_agg(r.xid ORDER BY r.xid, r.id),
               array_agg(r.created_at ORDER BY r.xid, r.id), repeat('0', count(*)::integer),
               r.state,
               CASE WHEN r.state <> 'pending' THEN NULL
                    WHEN r.order_key IS NULL THEN now()
                    ELSE greatest(now(), (
                        SELECT CASE WHEN y.state = 'pending' THEN y.due_at END
                        FROM webhooks.deliveries y
                        WHERE y.webhook_id = r.webhook_id AND y.order_key = r.order_key
                          AND y.state IN ('pending', 'leased')
                          AND y.event_created_at >= state.queued_since
                        ORDER BY y.order_batch, y.order_event
                        LIMIT 1)) END,
               r.last_error, r.order_key,
               CASE WHEN r.order_key IS NOT NULL THEN state.batch_order END,
               CASE WHEN r.order_key IS NOT NULL THEN min(r.id) END
        FROM (SELECT o.*, (row_number() OVER (PARTITION BY o.webhook_id, o.state, o.last_error, o.day,
                                                           o.order_key IS NULL
                                              ORDER BY o.xid, o.id) - 1)
                          / CASE WHEN o.order_key IS NULL THEN 100 ELSE 1 END AS chunk
              FROM (SELECT d.*, (d.created_at AT TIME ZONE 'UTC')::date AS day,
                           CASE WHEN d.throttled OR d.filter_error IS NOT NULL THEN 'dropped'
                                WHEN d.sends THEN 'pending'
                                WHEN d.past_buffer THEN 'dropped' ELSE 'held' END AS state,
                           CASE WHEN d.throttled THEN 'throttled'
                                WHEN d.filter_error IS NOT NULL THEN d.filter_error
                                WHEN d.past_buffer
                                    THEN 'after the replay window of an automatic deactivation'
                           END AS last_error
                    FROM decided d) o) r
        GROUP BY r.webhook_id, r.state, r.last_error, r.day, r.order_key, r.chunk
        ORDER BY r.webhook_id, r.day, r.chunk
    ), remembered AS (
        INSERT INTO webhooks.throttles (webhook_id, value, sent_at)
        SELECT d.webhook_id, d.throttle_value, max(d.created_at)
        FROM decided d
        -- (an event dropped past a deactivation's buffer was never sent: it marks nothing)
        WHERE d.throttle_value IS NOT NULL AND NOT d.throttled AND NOT d.past_buffer
        GROUP BY d.webhook_id, d.throttle_value
        ON CONFLICT (webhook_id, value) DO UPDATE SET sent_at = excluded.sent_at
    )
    SELECT count(*)::integer,
           (array_agg(b.xid ORDER BY b.xid DESC, b.id DESC))[1],
           (array_agg(b.id ORDER BY b.xid DESC, b.id DESC))[1],
           min(b.created_at)
    INTO taken, last_xid, last_id, first_created
    FROM batch b;

    -- (an event of a long transaction may be from a day claims no longer look at)
    IF taken < max_events THEN
        UPDATE webhooks.fan_out_state
        SET done_upto = state.batch_upto, batch_upto = NULL, after_xid = '0', after_id = 0,
            batch_order = NULL,
            queued_since = least(queued_since,
                                 webhooks._utc_midnight((first_created AT TIME ZONE 'UTC')::date));
    ELSE
        UPDATE webhooks.fan_out_state
        SET batch_upto = state.batch_upto, after_xid = last_xid, after_id = last_id,
            batch_order = state.batch_order,
            queued_since = least(queued_since,
                                 webhooks._utc_midnight((first_created AT TIME ZONE 'UTC')::date));
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

-- What a request is signed with: the secret or private key, and during a rotation the previous one.
CREATE FUNCTION webhooks._signing_secrets(hook webhooks.webhooks) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE hook.signature
        WHEN 'hmac-sha256' THEN
            CASE WHEN hook.previous_secret_until > now()
                 THEN ARRAY[hook.secret, hook.previous_secret] ELSE ARRAY[hook.secret] END
        WHEN 'ed25519' THEN
            CASE WHEN hook.previous_key_until > now()
                 THEN ARRAY[hook.signing_key, hook.previous_signing_key]
                 ELSE ARRAY[hook.signing_key] END
        -- one Signature header: the previous key's until the overlap ends; the account id is
        -- part of what is signed, so it travels with the key
        ELSE ARRAY[CASE WHEN hook.previous_key_until > now() THEN hook.previous_signing_key
                        ELSE hook.signing_key END
                   || ':' || coalesce(hook.signature_account, 'webhook_' || hook.id)] END
$$;

-- The `data` of a request body, as this webhook is sent it (its column lists applied). Row
-- events get the table, the entity and the primary key added; rows of a child table also the
-- parent profile's id, the collection (the child's entity) and the parent table (database), or
-- the identifiers webhooks.identify() gave; a table identified as a database gets `database`.
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
        || CASE WHEN t.parent_column IS NULL THEN
                    CASE WHEN t.database_name IS NULL THEN '{}'::jsonb
                         ELSE jsonb_build_object('database', t.database_name) END
                ELSE jsonb_build_object(
               'profile', coalesce(e.payload -> 'new', e.payload -> 'old') -> t.parent_column,
               'collection', coalesce(t.collection_name, t.entity),
               'database', coalesce(t.database_name, t.parent_table::text)) END
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
    retry_schedule_ms bigint[], request_timeout_ms integer, batch_size integer
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
    open_batches_below bigint;
    oldest_queued timestamptz;
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
    -- (read after fan-out, which moves queued_since back for events of an earlier day)
    SELECT CASE WHEN s.batch_upto IS NULL THEN 9223372036854775807 ELSE s.batch_order END,
           s.queued_since
    INTO open_batches_below, oldest_queued
    FROM webhooks.fan_out_state s;
    -- EXISTS in a FILTER, not in WHERE: as a semi-join the planner read every due delivery
    SELECT ceil(max_deliveries::numeric / greatest(1, count(*) FILTER (WHERE EXISTS (
               SELECT FROM webhooks.deliveries d
               WHERE d.webhook_id = w.id AND d.state IN ('pending', 'leased')
                 AND d.due_at <= now() AND d.event_created_at >= oldest_queued))))
    INTO share
    FROM webhooks.webhooks w
    WHERE webhooks._sends(w) AND w.id <> ALL (coalesce(skip_webhooks, '{}'));
    RETURN QUERY
    WITH candidates AS (
        -- each webhook's due rows in order until they hold the events it may take (read
        -- without a lock: "before" counts the events of the rows ahead), then those rows
        -- locked; a row of 100 events must not lock the rows behind it
        SELECT d.id, d.event_created_at, d.webhook_id, d.due_at, d.marks, d.attempts,
               d.event_ids, d.event_xids, d.event_times, c.before, c.wanted, d.leased_until,
               coalesce(d.leased_until <= now(), true) AS lease_ran_out
        FROM webhooks.webhooks w
        CROSS JOIN LATERAL (
            SELECT o.id, o.event_created_at, o.before, want.wanted
            FROM (SELECT greatest(0, least(coalesce(room_sizes[array_position(room_webhooks, w.id)],
                                                    per_webhook),
                                           share)) AS wanted) want
            CROSS JOIN LATERAL (
                SELECT x.id, x.event_created_at,
                       coalesce(sum(webhooks._leasable(x.marks))
                                    OVER (ORDER BY x.due_at, x.id
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                           AS before
                FROM (SELECT x.*
                      FROM webhooks.deliveries x
                      WHERE x.webhook_id = w.id
                        AND x.state IN ('pending', 'leased')
                        AND x.due_at <= now()
                        -- (a variable: PostgreSQL leaves the earlier days' partitions unopened)
                        AND x.event_created_at >= oldest_queued
                      ORDER BY x.due_at, x.id
                      -- at most 1,000 past those it takes: the events queued behind an
                      -- ordered webhook's busy keys slow that webhook, not every claim
                      LIMIT want.wanted + 1000) x
                -- an ordered webhook's event goes when it is its key's next: no earlier one
                -- pending (waiting for a retry, or due) or leased, and not in a fan-out batch
                -- still in progress (sql/10_tables.sql, fan_out_state)
                WHERE (x.order_key IS NULL
                       OR (x.order_batch < open_batches_below
                           AND NOT EXISTS (
                               SELECT FROM webhooks.deliveries y
                               WHERE y.webhook_id = x.webhook_id AND y.order_key = x.order_key
                                 AND y.state IN ('pending', 'leased')
                                 AND y.event_created_at >= oldest_queued
                                 AND (y.order_batch, y.order_event) < (x.order_batch, x.order_event))))
                ORDER BY x.due_at, x.id
                LIMIT want.wanted
            ) o
            WHERE o.before < want.wanted
        ) c
        JOIN webhooks.deliveries d ON d.id = c.id AND d.event_created_at = c.event_created_at
        WHERE webhooks._sends(w) AND w.id <> ALL (coalesce(skip_webhooks, '{}'))
          AND d.state IN ('pending', 'leased') AND d.due_at <= now()
        -- (no oldest_queued on the rows this locks and the updates below write: on PostgreSQL
        -- 18.6, pruning those by it made two relays lease the same events, which were then sent
        -- twice; tests/tests/operations.rs)
        FOR UPDATE OF d SKIP LOCKED
    ), positions AS (
        SELECT c.id, c.event_created_at, c.webhook_id, c.due_at, c.attempts, c.before, c.wanted,
               c.lease_ran_out, length(c.marks) AS n, p.k::integer AS k, substr(c.marks, p.k::integer, 1) AS mark,
               p.event_id, p.event_xid, p.event_time,
               -- this event's place among the webhook's leasable events
               c.before + p.k - length(replace(substr(c.marks, 1, p.k::integer), '0', '')) AS rank
        FROM candidates c
        CROSS JOIN LATERAL unnest(c.event_ids, c.event_xids, c.event_times)
            WITH ORDINALITY AS p(event_id, event_xid, event_time, k)
    ), chosen AS (
        SELECT p.*
        FROM positions p
        WHERE p.n = 1 OR (p.mark = '0' AND p.rank <= p.wanted)
        ORDER BY p.due_at, p.id, p.k
        LIMIT max_deliveries
    ), moved AS (
        -- an event whose lease ran out in a row of several is retried in a row of its own (the
        -- lease counts as an attempt, as it does for a row of one event)
        INSERT INTO webhooks.deliveries
            (webhook_id, event_created_at, event_ids, event_xids, event_times, marks, state,
             due_at, attempts, last_error)
        SELECT p.webhook_id, p.event_time, ARRAY[p.event_id], ARRAY[p.event_xid],
               ARRAY[p.event_time], '0', 'pending', now(), 1, 'lease ran out'
        FROM positions p
        WHERE p.n > 1 AND p.mark = 'l' AND p.lease_ran_out
    ), leased_one AS (
        UPDATE webhooks.deliveries d
        SET state = 'leased', due_at = now() + lease, attempts = d.attempts + 1,
            leased_by = relay, updated_at = now()
        FROM chosen ch
        WHERE ch.n = 1 AND d.id = ch.id AND d.event_created_at = ch.event_created_at
    ), leased_several AS (
        -- a row of several stays due while it owes events; its leased ones wait for
        -- leased_until (see webhooks.deliveries)
        UPDATE webhooks.deliveries d
        SET state = CASE WHEN strpos(u.new_marks, 'l') > 0 THEN 'leased'
                         WHEN strpos(u.new_marks, '0') > 0 THEN 'pending' ELSE 'delivered' END,
            -- (never shorter than the lease of events another claim holds in the row)
            due_at = CASE WHEN strpos(u.new_marks, '0') > 0 THEN d.due_at
                          WHEN u.taken > 0 THEN greatest(u.kept_lease, now() + lease)
                          WHEN strpos(u.new_marks, 'l') > 0 THEN d.leased_until END,
            leased_until = CASE WHEN u.taken > 0 THEN greatest(u.kept_lease, now() + lease)
                                WHEN strpos(u.new_marks, 'l') > 0 THEN d.leased_until END,
            marks = u.new_marks,
            leased_by = CASE WHEN u.taken > 0 THEN relay
                             WHEN strpos(u.new_marks, 'l') > 0 THEN d.leased_by END,
            updated_at = now()
        FROM (SELECT c.id, c.event_created_at, count(ch.k) AS taken,
                     webhooks._marked(CASE WHEN c.lease_ran_out THEN replace(c.marks, 'l', 'm')
                                           ELSE c.marks END,
                                      array_agg(ch.k) FILTER (WHERE ch.k IS NOT NULL),
                                      array_fill('l'::text, ARRAY[count(ch.k)::integer]))
                         AS new_marks,
                     c.lease_ran_out AND strpos(c.marks, 'l') > 0 AS moves,
                     CASE WHEN NOT c.lease_ran_out THEN c.leased_until END AS kept_lease
              FROM candidates c
              LEFT JOIN chosen ch ON ch.id = c.id AND ch.event_created_at = c.event_created_at
              WHERE length(c.marks) > 1
              GROUP BY c.id, c.event_created_at, c.marks, c.lease_ran_out, c.leased_until) u
        WHERE d.id = u.id AND d.event_created_at = u.event_created_at
          AND (u.taken > 0 OR u.moves)
    )
    SELECT ch.id + ch.k - 1, CASE WHEN ch.n = 1 THEN ch.attempts + 1 ELSE 1 END,
           w.id, w.url, webhooks._signing_secrets(w),
           e.id, e.event, e.created_at, webhooks._event_data(e, w, t, k.key),
           w.max_in_flight, w.rate_limit_per_second,
           w.format, w.method, w.fields, coalesce(w.key_field, 'email'), w.parameters, w.headers,
           -- (the CHECK on request_timeout keeps it far inside integer)
           CASE WHEN w.retry_schedule IS NOT NULL THEN webhooks._milliseconds(w.retry_schedule) END,
           webhooks._milliseconds(w.request_timeout)::integer,
           w.batch_size
    FROM chosen ch
    JOIN webhooks.webhooks w ON w.id = ch.webhook_id
    JOIN webhooks.events e
      ON e.xid = ch.event_xid AND e.id = ch.event_id AND e.created_at = ch.event_time
         AND e.created_at >= oldest_queued
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
-- A row of one event is updated in place. In a row of several, a delivered event is marked
-- delivered, a released one owed again, and a failed one moves to a row of its own that carries
-- its retry (or its parking) and its attempt log from here on.
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
    queued constant text[] := ARRAY['pending', 'leased'];
    rows bigint[];
    hooks bigint[];
    applied integer;
    gone_webhooks bigint[];
    failing_webhooks bigint[];
    -- (every leased delivery's event is from then on: see fan_out_state; only the reads use it,
    -- as in claim())
    oldest_queued timestamptz := (SELECT s.queued_since FROM webhooks.fan_out_state s);
BEGIN
    rows := ARRAY(SELECT DISTINCT webhooks._delivery_row_id(r.delivery_id)
                  FROM jsonb_to_recordset(results) AS r(delivery_id bigint));
    -- The webhooks first (KEY SHARE: other acknowledgements go on, activate() and deactivate()
    -- wait), so that the status read below, which decides between pending and held, stays
    -- true until this commits. Then the rows of several events, which take several outcomes
    -- at once, so that the statement below reads their marks as they are and knows which
    -- outcomes it applies. Both in id order, so acknowledgements cannot deadlock.
    hooks := ARRAY(SELECT d.webhook_id FROM webhooks.deliveries d
                   WHERE d.id = ANY (rows) AND d.event_created_at >= oldest_queued);
    PERFORM FROM webhooks.webhooks w WHERE w.id = ANY (hooks) ORDER BY w.id FOR KEY SHARE OF w;
    -- (queued ones only: a stale id of a held row locked beside maintain()'s expiry
    -- deadlocked; a variable, as `leased` below)
    PERFORM FROM webhooks.deliveries d
    WHERE d.id = ANY (rows) AND d.state = ANY (queued) AND length(d.marks) > 1
    ORDER BY d.id
    FOR UPDATE OF d;

    WITH outcome AS MATERIALIZED (
        -- Times come from the database's clock, not the relay's: a retry is due retry_after_ms
        -- (at most a year) after this acknowledgement, and an attempt started duration_ms
        -- before it. A relay with a skewed clock moves neither retries nor disabling.
        SELECT DISTINCT ON (r.delivery_id)
               r.delivery_id, webhooks._delivery_row_id(r.delivery_id) AS row_id,
               webhooks._delivery_position(r.delivery_id) AS k, r.attempt, r.outcome,
               r.status, r.error, r.response,
               now() + make_interval(secs => least(greatest(r.retry_after_ms, 0), 31536000000) / 1000.0)
                   AS retry_at,
               now() - make_interval(secs => least(greatest(r.duration_ms, 0), 86400000) / 1000.0)
                   AS started_at,
               coalesce(r.duration_ms, 0) AS duration_ms
        FROM jsonb_to_recordset(results) AS r(
            delivery_id bigint, attempt integer, outcome text, retry_after_ms bigint,
            status integer, error text, response text, duration_ms integer)
        WHERE r.outcome IN ('delivered', 'retry', 'failed', 'gone', 'released')
          AND r.delivery_id > 0
        ORDER BY r.delivery_id
    ), target AS MATERIALIZED (
        -- each outcome with its event's row, when it answers the lease that row holds now
        -- (state = a variable: in the generic plan it cannot match the partial index of due
        -- deliveries, which the planner would otherwise read whole for each outcome)
        SELECT o.*, d.event_created_at, d.webhook_id, length(d.marks) AS n, d.marks,
               d.event_ids[o.k] AS event_id, d.event_xids[o.k] AS event_xid,
               d.event_times[o.k] AS event_time, w.status <> 'active' AS held,
               CASE WHEN length(d.marks) > 1 AND o.outcome IN ('retry', 'failed', 'gone')
                    THEN nextval('webhooks.deliveries_id_seq') END AS moved_to
        FROM outcome o
        JOIN webhooks.deliveries d ON d.id = o.row_id AND d.event_created_at >= oldest_queued
        JOIN webhooks.webhooks w ON w.id = d.webhook_id
        WHERE d.state = leased
          AND ((length(d.marks) = 1 AND o.k = 1 AND d.attempts = o.attempt)
               OR (length(d.marks) > 1 AND o.k <= length(d.marks) AND o.attempt = 1
                   AND substr(d.marks, o.k, 1) = 'l'))
    ), single AS (
        UPDATE webhooks.deliveries d
        SET state = CASE
                WHEN t.outcome = 'delivered' THEN 'delivered'
                WHEN t.outcome IN ('failed', 'gone') THEN 'failed'
                WHEN t.held THEN 'held'
                ELSE 'pending' END,
            due_at = CASE
                WHEN t.outcome IN ('delivered', 'failed', 'gone') OR t.held THEN NULL
                WHEN t.outcome = 'retry' THEN t.retry_at
                ELSE now() END,
            attempts = CASE WHEN t.outcome = 'released' THEN d.attempts - 1 ELSE d.attempts END,
            leased_by = NULL,
            last_status = CASE WHEN t.outcome = 'released' THEN d.last_status ELSE t.status END,
            last_error = CASE WHEN t.outcome = 'released' THEN d.last_error ELSE t.error END,
            updated_at = now()
        FROM target t
        WHERE t.n = 1 AND d.id = t.row_id AND d.event_created_at = t.event_created_at
          AND d.state = leased AND d.attempts = t.attempt
        RETURNING t.delivery_id, t.event_id, t.event_xid, t.webhook_id, t.attempt, t.outcome,
                  t.status, t.error, t.response, t.started_at, t.duration_ms,
                  d.state, d.due_at, d.order_key, d.order_batch, d.order_event
    ), waiting AS (
        -- an ordered webhook's event that waits for a retry holds its key's later events back
        -- until then: they are not due before it (claim would read past them on every call)
        UPDATE webhooks.deliveries y
        SET due_at = s.due_at, updated_at = now()
        FROM single s
        WHERE s.order_key IS NOT NULL AND s.state = 'pending' AND s.due_at > now()
          AND y.webhook_id = s.webhook_id AND y.order_key = s.order_key
          AND y.state = 'pending' AND y.due_at < s.due_at
          AND (y.order_batch, y.order_event) > (s.order_batch, s.order_event)
    ), moved AS (
        INSERT INTO webhooks.deliveries
            (id, webhook_id, event_created_at, event_ids, event_xids, event_times, marks, state,
             due_at, attempts, last_status, last_error)
        SELECT t.moved_to, t.webhook_id, t.event_time, ARRAY[t.event_id], ARRAY[t.event_xid],
               ARRAY[t.event_time], '0',
               CASE WHEN t.outcome IN ('failed', 'gone') THEN 'failed'
                    WHEN t.held THEN 'held' ELSE 'pending' END,
               CASE WHEN t.outcome = 'retry' AND NOT t.held THEN t.retry_at END,
               1, t.status, t.error
        FROM target t
        WHERE t.n > 1 AND t.outcome IN ('retry', 'failed', 'gone')
    ), several AS (
        UPDATE webhooks.deliveries d
        SET marks = g.new_marks,
            state = CASE WHEN strpos(g.new_marks, 'l') > 0 THEN 'leased'
                         WHEN strpos(g.new_marks, '0') = 0 THEN 'delivered'
                         WHEN g.held THEN 'held' ELSE 'pending' END,
            due_at = CASE WHEN strpos(g.new_marks, '0') > 0 AND NOT g.held
                              THEN least(d.due_at, now())
                          WHEN strpos(g.new_marks, 'l') > 0 THEN d.leased_until END,
            leased_until = CASE WHEN strpos(g.new_marks, 'l') > 0 THEN d.leased_until END,
            leased_by = CASE WHEN strpos(g.new_marks, 'l') > 0 THEN d.leased_by END,
            -- a 2xx the receiver answered for this row; delivery_log has each event's own
            last_status = coalesce(g.delivered_status, d.last_status),
            updated_at = now()
        FROM (SELECT t.row_id, t.event_created_at, bool_or(t.held) AS held,
                     max(t.status) FILTER (WHERE t.outcome = 'delivered') AS delivered_status,
                     webhooks._marked(min(t.marks), array_agg(t.k),
                                      array_agg(CASE t.outcome WHEN 'delivered' THEN 'd'
                                                               WHEN 'released' THEN '0'
                                                               ELSE 'm' END)) AS new_marks
              FROM target t
              WHERE t.n > 1
              GROUP BY t.row_id, t.event_created_at) g
        WHERE d.id = g.row_id AND d.event_created_at = g.event_created_at
    ), recorded AS (
        -- the outcomes applied, each under the delivery id its event has from now on
        SELECT s.delivery_id, s.event_id, s.event_xid, s.webhook_id, s.attempt, s.outcome,
               s.status, s.error, s.response, s.started_at, s.duration_ms
        FROM single s
        UNION ALL
        SELECT CASE WHEN t.outcome IN ('retry', 'failed', 'gone') THEN t.moved_to
                    ELSE t.delivery_id END,
               t.event_id, t.event_xid, t.webhook_id, t.attempt, t.outcome, t.status, t.error,
               t.response, t.started_at, t.duration_ms
        FROM target t
        WHERE t.n > 1
    ), failures AS (
        INSERT INTO webhooks.attempts
            (delivery_id, event_id, event_xid, webhook_id, attempt, started_at, duration_ms,
             outcome, status, error, response)
        SELECT r.delivery_id, r.event_id, r.event_xid, r.webhook_id, r.attempt, r.started_at,
               r.duration_ms, r.outcome, r.status, r.error, left(r.response, 4096)
        FROM recorded r
        WHERE r.outcome IN ('retry', 'failed', 'gone')
    ), successes AS (
        INSERT INTO webhooks.successes
            (webhook_id, logged_at, delivery_ids, event_ids, event_xids, attempts, started_at,
             duration_ms, status, errors, responses)
        SELECT r.webhook_id, now(), array_agg(r.delivery_id ORDER BY r.delivery_id),
               array_agg(r.event_id ORDER BY r.delivery_id),
               array_agg(r.event_xid ORDER BY r.delivery_id),
               array_agg(r.attempt ORDER BY r.delivery_id),
               array_agg(r.started_at ORDER BY r.delivery_id),
               array_agg(r.duration_ms ORDER BY r.delivery_id),
               array_agg(r.status ORDER BY r.delivery_id),
               array_agg(r.error ORDER BY r.delivery_id),
               array_agg(left(nullif(r.response, ''), 4096) ORDER BY r.delivery_id)
        FROM recorded r
        WHERE r.outcome = 'delivered'
        GROUP BY r.webhook_id
    ), health AS (
        UPDATE webhooks.webhooks w
        SET consecutive_failures = CASE WHEN s.succeeded THEN 0
                                        ELSE w.consecutive_failures + s.failures END,
            failing_since = CASE WHEN s.succeeded THEN NULL
                                 ELSE coalesce(w.failing_since, s.first_failure) END,
            last_success_at = CASE WHEN s.succeeded THEN now() ELSE w.last_success_at END
        FROM (SELECT r.webhook_id,
                     bool_or(r.outcome = 'delivered') AS succeeded,
                     count(*) FILTER (WHERE r.outcome <> 'delivered') AS failures,
                     min(r.started_at) FILTER (WHERE r.outcome <> 'delivered') AS first_failure
              FROM recorded r
              WHERE r.outcome <> 'released'
              GROUP BY r.webhook_id) s
        WHERE w.id = s.webhook_id
          -- a healthy webhook's row is rewritten at most once a second, not on every batch:
          -- each rewrite leaves a dead row version that claim() reads past until vacuum
          AND NOT (s.succeeded AND w.consecutive_failures = 0 AND w.failing_since IS NULL
                   AND w.last_success_at > now() - interval '1 second')
    )
    SELECT count(*)::integer,
           array_agg(DISTINCT r.webhook_id) FILTER (WHERE r.outcome = 'gone'),
           array_agg(DISTINCT r.webhook_id) FILTER (WHERE r.outcome IN ('retry', 'failed'))
    INTO applied, gone_webhooks, failing_webhooks
    FROM recorded r;

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
    SELECT (SELECT coalesce(sum(webhooks._owed(d.marks)), 0)::bigint FROM webhooks.deliveries d
            WHERE d.state IN ('pending', 'leased')),
           (SELECT coalesce(sum(webhooks._owed(d.marks)), 0)::bigint FROM webhooks.deliveries d
            WHERE d.state = 'held')
$$;

-- Deliver a delivery again (a parked failure, or a delivered one on request). An event of a
-- row of several moves to a row of its own for it, as when it is retried. An ordered webhook's
-- event goes after what its key has queued.
CREATE FUNCTION webhooks.redeliver(delivery_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    row_id bigint := webhooks._delivery_row_id(redeliver.delivery_id);
    event_position integer := webhooks._delivery_position(redeliver.delivery_id);
    found_row webhooks.deliveries;
    hook_active boolean;
    mark text;
BEGIN
    PERFORM webhooks._require_value('delivery_id', delivery_id IS NULL);
    SELECT * INTO found_row FROM webhooks.deliveries d WHERE d.id = row_id;
    IF NOT FOUND OR redeliver.delivery_id < 1 OR event_position > length(found_row.marks) THEN
        RAISE EXCEPTION 'pg_webhooks: delivery % does not exist', redeliver.delivery_id
            USING ERRCODE = 'no_data_found';
    END IF;
    -- its day may be one claims no longer look at (webhooks.fan_out_state); a row's day never
    -- changes, so this holds for what the row is once locked
    PERFORM webhooks._queued_from(found_row.event_created_at);
    -- the webhook, then the row, as ack() locks them
    SELECT w.status = 'active' INTO hook_active FROM webhooks.webhooks w
    WHERE w.id = found_row.webhook_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: delivery % belongs to webhook %, which was deleted',
            redeliver.delivery_id, found_row.webhook_id
            USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO found_row FROM webhooks.deliveries d
    WHERE d.id = found_row.id AND d.event_created_at = found_row.event_created_at FOR UPDATE;
    IF length(found_row.marks) = 1 THEN
        IF found_row.state IN ('failed', 'delivered', 'dropped') THEN
            UPDATE webhooks.deliveries d
            SET state = CASE WHEN hook_active THEN 'pending' ELSE 'held' END,
                due_at = CASE WHEN hook_active THEN now() END,
                -- (after what its key has queued: a requeue is a new turn)
                order_batch = CASE WHEN d.order_key IS NOT NULL
                                   THEN nextval('webhooks.delivery_order_seq') END,
                updated_at = now()
            WHERE d.id = found_row.id AND d.event_created_at = found_row.event_created_at;
        END IF;
        RETURN;  -- else already queued or in flight
    END IF;
    mark := substr(found_row.marks, event_position, 1);
    IF mark = 'm' THEN
        RAISE EXCEPTION 'pg_webhooks: delivery % moved to a delivery of its own when it was retried or redelivered',
            redeliver.delivery_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Find it in webhooks.delivery_status by event_id %s and webhook_id %s.',
                                found_row.event_ids[event_position], found_row.webhook_id);
    END IF;
    IF mark = 'd' OR (mark = '0' AND found_row.state = 'dropped') THEN
        UPDATE webhooks.deliveries d
        SET marks = webhooks._marked(d.marks, ARRAY[event_position], ARRAY['m']), updated_at = now()
        WHERE d.id = found_row.id AND d.event_created_at = found_row.event_created_at;
        INSERT INTO webhooks.deliveries
            (webhook_id, event_created_at, event_ids, event_xids, event_times, marks, state, due_at)
        VALUES (found_row.webhook_id, found_row.event_times[event_position],
                ARRAY[found_row.event_ids[event_position]], ARRAY[found_row.event_xids[event_position]],
                ARRAY[found_row.event_times[event_position]], '0',
                CASE WHEN hook_active THEN 'pending' ELSE 'held' END,
                CASE WHEN hook_active THEN now() END);
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
'Events owed to receivers (pending or leased) and held for inactive webhooks.';
COMMENT ON FUNCTION webhooks.redeliver(bigint) IS
'Queue a delivery again: a parked failure, or a delivered one. Held if the webhook is off.';
COMMENT ON FUNCTION webhooks.fan_out(integer, boolean) IS
'Turn up to max_events committed events into deliveries; claim() calls it. careful: a filter '
'that fails on an event counts as not matching (recorded as a dropped delivery).';
