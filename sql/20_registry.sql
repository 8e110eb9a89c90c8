-- pg_webhooks: the webhook registry, as application code and admins see it.
--
-- Errors (SQLSTATE):
--   22004 null_value_not_allowed   an argument is NULL
--   22023 invalid_parameter_value  an argument is empty or malformed (URL, event name, secret...)
--   P0002 no_data_found            no webhook (or delivery) has this id
--   22001 string_data_right_truncation  a text argument is longer than its limit
--   54000 program_limit_exceeded   an emitted payload is larger than 1 MiB
-- Every function checks all its input before it writes, so a refused call changes nothing.

-- Raise 22004/22023 unless the text argument has a value.
CREATE FUNCTION webhooks._require(arg_name text, value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION 'pg_webhooks: % must not be null', arg_name
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF btrim(value) = '' THEN
        RAISE EXCEPTION 'pg_webhooks: % must not be empty', arg_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;

-- Raise 22001 when a text argument is longer than max_length characters.
CREATE FUNCTION webhooks._check_length(arg_name text, value text, max_length integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF length(value) > max_length THEN
        RAISE EXCEPTION 'pg_webhooks: % is % characters long; at most % are allowed',
            arg_name, length(value), max_length
            USING ERRCODE = 'string_data_right_truncation';
    END IF;
    RETURN value;
END $$;

-- Raise 22004 when a non-text argument is NULL.
CREATE FUNCTION webhooks._require_value(arg_name text, is_null boolean) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF is_null THEN
        RAISE EXCEPTION 'pg_webhooks: % must not be null', arg_name
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
END $$;

-- Event names are dot-separated lower-case words: 'profile.created', 'email.opened'.
CREATE FUNCTION webhooks._check_event_name(arg_name text, name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._require(arg_name, name);
    IF length(name) > 200 OR name !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' THEN
        RAISE EXCEPTION 'pg_webhooks: invalid % "%"', arg_name, left(name, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use dot-separated lower-case words, like profile.updated.';
    END IF;
    RETURN name;
END $$;

-- Names under webhook. are pg_webhooks' own events (webhook.disabled): no application event
-- and no tracked table's entity may take them, so a receiver can trust where they come from.
CREATE FUNCTION webhooks._check_unreserved(arg_name text, name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name = 'webhook' OR left(name, 8) = 'webhook.' THEN
        RAISE EXCEPTION 'pg_webhooks: % "%" is reserved: names under webhook. are pg_webhooks'' own events',
            arg_name, name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN name;
END $$;

-- What a webhook subscribes to: an event name, 'prefix.*' or '*'.
CREATE FUNCTION webhooks._check_event_pattern(pattern text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._require('event', pattern);
    IF pattern = '*' THEN
        RETURN pattern;
    END IF;
    IF length(pattern) > 200
       OR pattern !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$' THEN
        RAISE EXCEPTION 'pg_webhooks: invalid event "%"', left(pattern, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an event name like profile.updated, a prefix like profile.*, or *.';
    END IF;
    RETURN pattern;
END $$;

-- Does a webhook's event pattern cover this event? Inlined into fan-out. pg_webhooks' own
-- operational events ('webhook.disabled') go only to webhooks that ask for them by name or
-- 'webhook.*', never to '*': a catch-all receiver would otherwise hear of its own disabling.
CREATE FUNCTION webhooks._event_matches(pattern text, event text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pattern = event
        OR (pattern = '*' AND left(event, 8) <> 'webhook.')
        OR (right(pattern, 2) = '.*' AND left(event, length(pattern) - 1) = left(pattern, -1))
$$;

-- The webhook as list()/get() show it: everything but the secrets.
CREATE VIEW webhooks.webhook_info AS
SELECT id, app, event, url,
       status, status = 'active' AS active, status_reason, status_changed_at,
       description, max_in_flight, rate_limit_per_second,
       consecutive_failures, failing_since, last_success_at,
       previous_secret_until > now() OR previous_key_until > now() AS rotating_secret,
       verification_required, verification_status, verification_reason, verified_at,
       webhooks._sends(w) AS sending, expired_events,
       jsonb_strip_nulls(jsonb_build_object(
           'format', nullif(format, 'json'), 'method', nullif(method, 'POST'), 'fields', fields,
           'key_field', key_field, 'parameters', parameters, 'source', source::text,
           'filter', filter::text, 'on_change', on_change, 'include_columns', include_columns,
           'exclude_columns', exclude_columns, 'exclude_origins', exclude_origins,
           'throttle', throttle::text, 'throttle_per', throttle_per,
           -- names only: the values are secrets
           'retry_schedule', retry_schedule::text[], 'request_timeout', request_timeout::text,
           'batch', batch_size, 'ordered_by', ordered_by,
           'signature', nullif(signature, 'hmac-sha256'), 'signature_account', signature_account,
           'header_names', (SELECT jsonb_agg(h ORDER BY h) FROM jsonb_object_keys(headers) h)))
           AS options,
       created_at, updated_at
FROM webhooks.webhooks w;

-- A webhook row, or raise P0002.
CREATE FUNCTION webhooks._find_webhook(webhook_id bigint) RETURNS webhooks.webhooks
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found_row webhooks.webhooks;
BEGIN
    PERFORM webhooks._require_value('id', webhook_id IS NULL);
    SELECT * INTO found_row FROM webhooks.webhooks w WHERE w.id = webhook_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: webhook % does not exist', webhook_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN found_row;
END $$;

-- Lock a webhook row for a change, or raise P0002.
CREATE FUNCTION webhooks._lock_webhook(webhook_id bigint) RETURNS webhooks.webhooks
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found_row webhooks.webhooks;
BEGIN
    SELECT * INTO found_row FROM webhooks.webhooks w WHERE w.id = webhook_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM webhooks._find_webhook(webhook_id); -- raises 22004 or P0002, as lookups do
    END IF;
    RETURN found_row;
END $$;

-- Raise 22023 for a per-webhook limit out of range (NULL: the relay's default). The ranges:
--   max_in_flight          1 to 10,000 requests at once
--   rate_limit_per_second  0.001 to 1,000,000 (NaN and infinities are refused: PostgreSQL
--                          counts NaN above every number, so "> 0" alone let it through)
CREATE FUNCTION webhooks._check_limits(max_in_flight integer, rate_limit_per_second double precision)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF max_in_flight IS NOT NULL AND NOT max_in_flight BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'pg_webhooks: max_in_flight must be between 1 and 10000, not %', max_in_flight
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rate_limit_per_second IS NOT NULL AND NOT rate_limit_per_second BETWEEN 0.001 AND 1000000 THEN
        RAISE EXCEPTION 'pg_webhooks: rate_limit_per_second must be between 0.001 and 1000000, not %',
            rate_limit_per_second
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

CREATE FUNCTION webhooks.create(
    app text,
    event text,
    url text,
    description text DEFAULT NULL,
    max_in_flight integer DEFAULT NULL,
    rate_limit_per_second double precision DEFAULT NULL,
    secret text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    PERFORM webhooks._check_length('app', webhooks._require('app', app), 200);
    PERFORM webhooks._check_length('description', description, 2000);
    PERFORM webhooks._check_event_pattern(event);
    PERFORM webhooks._check_limits(max_in_flight, rate_limit_per_second);
    INSERT INTO webhooks.webhooks
        (app, event, url, secret, description, max_in_flight, rate_limit_per_second,
         verification_required)
    VALUES (
        app, event, webhooks._check_url(webhooks._require('url', url)),
        CASE WHEN secret IS NULL THEN webhooks._new_secret() ELSE webhooks._check_secret(secret) END,
        description, max_in_flight, rate_limit_per_second,
        (SELECT s.require_verification FROM webhooks._settings() s))
    RETURNING id INTO new_id;
    RETURN new_id;
END $$;

-- Where a URL sends its requests: scheme, user info, host and port.
CREATE FUNCTION webhooks._origin_of(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*'))
$$;

-- Change a webhook; a NULL argument leaves that setting as it is. A new URL must be verified
-- again (when the webhook requires verification): until then it sends nothing.
CREATE FUNCTION webhooks.update(
    id bigint,
    url text DEFAULT NULL,
    event text DEFAULT NULL,
    description text DEFAULT NULL,
    max_in_flight integer DEFAULT NULL,
    rate_limit_per_second double precision DEFAULT NULL
) RETURNS webhooks.webhook_info
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
    new_url text := CASE WHEN url IS NOT NULL THEN webhooks._check_url(webhooks._require('url', url)) END;
BEGIN
    IF event IS NOT NULL THEN
        PERFORM webhooks._check_event_pattern(event);
    END IF;
    PERFORM webhooks._check_length('description', description, 2000);
    PERFORM webhooks._check_limits(max_in_flight, rate_limit_per_second);
    hook := webhooks._lock_webhook(update.id);
    UPDATE webhooks.webhooks w
    SET url = coalesce(new_url, w.url),
        event = coalesce(update.event, w.event),
        description = coalesce(update.description, w.description),
        max_in_flight = coalesce(update.max_in_flight, w.max_in_flight),
        rate_limit_per_second = coalesce(update.rate_limit_per_second, w.rate_limit_per_second),
        updated_at = now()
    WHERE w.id = hook.id;
    PERFORM webhooks._check_options(webhooks._find_webhook(hook.id)); -- URL placeholders
    IF new_url IS DISTINCT FROM hook.url AND new_url IS NOT NULL THEN
        UPDATE webhooks.webhooks w
        SET verification_status = 'unverified', verified_at = NULL,
            verification_reason = 'the URL changed from ' || hook.url
        WHERE w.id = hook.id;
    END IF;
    -- The request headers are secrets no one can read back: moving the webhook to another
    -- server must not carry them there, or changing the URL would be a way to read them.
    IF new_url IS NOT NULL AND hook.headers IS NOT NULL
       AND webhooks._origin_of(new_url) IS DISTINCT FROM webhooks._origin_of(hook.url) THEN
        UPDATE webhooks.webhooks w SET headers = NULL WHERE w.id = hook.id;
        RAISE NOTICE 'pg_webhooks: webhook %''s request headers were removed: its URL moved to %',
            hook.id, webhooks._origin_of(new_url)
            USING HINT = 'Set them again with webhooks.configure() if the new receiver needs them.';
    END IF;
    RETURN webhooks.get(hook.id);
END $$;

-- source: the webhooks that apply to this tracked table (Copernica: to a database or a
-- collection): those limited to it, and those without a source whose event pattern takes
-- one of its row events.
CREATE FUNCTION webhooks.list(app text DEFAULT NULL, event text DEFAULT NULL,
                              source regclass DEFAULT NULL)
RETURNS SETOF webhooks.webhook_info
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT i.* FROM webhooks.webhook_info i JOIN webhooks.webhooks w ON w.id = i.id
    WHERE (list.app IS NULL OR w.app = list.app)
      AND (list.event IS NULL OR w.event = list.event)
      AND (list.source IS NULL OR w.source = list.source
           OR (w.source IS NULL AND EXISTS (
                   SELECT 1 FROM webhooks.tracked t, unnest(ARRAY['created', 'updated', 'deleted']) op
                   WHERE t.source = list.source
                     AND webhooks._event_matches(w.event, t.entity || '.' || op))))
    ORDER BY w.id
$$;

CREATE FUNCTION webhooks.get(id bigint) RETURNS webhooks.webhook_info
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    info webhooks.webhook_info;
BEGIN
    PERFORM webhooks._require_value('id', get.id IS NULL);
    SELECT * INTO info FROM webhooks.webhook_info w WHERE w.id = get.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: webhook % does not exist', get.id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN info;
END $$;

CREATE FUNCTION webhooks.secret(id bigint) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (webhooks._find_webhook(secret.id)).secret
$$;

-- Switch a webhook on. Events that arrived while it was off were held; replay_events decides
-- whether they are delivered now (oldest first) or dropped. Returns how many are replayed.
CREATE FUNCTION webhooks.activate(id bigint, replay_events boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
    expired bigint;
    replayed bigint := 0;
BEGIN
    PERFORM webhooks._require_value('replay_events', replay_events IS NULL);
    IF replay_events THEN
        PERFORM webhooks._queued_from(NULL);  -- (the lock only, before the webhook's)
    END IF;
    hook := webhooks._lock_webhook(activate.id);
    IF hook.status = 'active' THEN
        RETURN 0;
    END IF;
    PERFORM webhooks._hold_queued(hook.id);
    expired := webhooks._expire_held(hook.id);
    IF expired > 0 THEN
        RAISE NOTICE 'pg_webhooks: dropped % held events of webhook % that were older than the replay window',
            expired, hook.id
            USING HINT = 'webhooks.get(id).expired_events counts them; settings.replay_window sets the window.';
    END IF;
    UPDATE webhooks.deliveries d
    SET state = 'dropped', due_at = NULL, last_error = 'dropped by activate(replay_events => false)',
        updated_at = now()
    WHERE d.webhook_id = hook.id AND d.state = 'held' AND NOT replay_events;
    IF replay_events THEN
        -- held events may be from days claims no longer look at (webhooks.fan_out_state)
        PERFORM webhooks._queued_from((SELECT min(d.event_created_at) FROM webhooks.deliveries d
                                       WHERE d.webhook_id = hook.id AND d.state = 'held'));
        WITH queued AS (
            UPDATE webhooks.deliveries d
            SET state = 'pending', due_at = now(), updated_at = now()
            WHERE d.webhook_id = hook.id AND d.state = 'held'
            RETURNING webhooks._owed(d.marks) AS events
        )
        SELECT coalesce(sum(q.events), 0) INTO replayed FROM queued q;
    END IF;
    UPDATE webhooks.webhooks w
    SET status = 'active', status_reason = NULL, status_changed_at = now(),
        consecutive_failures = 0, failing_since = NULL, updated_at = now()
    WHERE w.id = hook.id;
    RETURN replayed;
END $$;

-- Drop held deliveries older than settings.replay_window (of one webhook, or of all when
-- only_webhook is NULL), counting them in webhooks.expired_events. Returns how many. A webhook
-- the system switched off (disabled) keeps instead the events of the first replay window after
-- that (Mailingwork's buffer; fan_out() does not hold later ones), for activate(), until
-- settings.retention has passed since that window ended: a receiver that is gone for good does
-- not pin its days (and every other webhook's in them) forever.
CREATE FUNCTION webhooks._expire_held(only_webhook bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    locked bigint[];
    dropped bigint;
BEGIN
    -- The webhooks first, in id order, then only their rows, as activate() locks them: with the
    -- rows first, maintain() and an activate() of the same webhook deadlocked. (Rows held since
    -- this lock wait for the next run.)
    locked := ARRAY(
        SELECT w.id FROM webhooks.webhooks w, webhooks._settings() s
        WHERE (only_webhook IS NULL OR w.id = only_webhook)
          AND EXISTS (SELECT FROM webhooks.deliveries d
                      WHERE d.state = 'held' AND d.webhook_id = w.id
                        AND d.event_created_at < now() - s.replay_window)
        ORDER BY w.id
        FOR NO KEY UPDATE OF w);
    WITH expired AS (
        UPDATE webhooks.deliveries d
        SET state = 'dropped', due_at = NULL, last_error = 'held longer than the replay window',
            updated_at = now()
        FROM webhooks.webhooks w, webhooks._settings() s
        WHERE d.state = 'held' AND w.id = d.webhook_id AND d.webhook_id = ANY (locked)
          AND d.event_created_at < now() - s.replay_window
          AND NOT (w.status = 'disabled'
                   AND d.event_created_at < w.status_changed_at + s.replay_window
                   AND now() < w.status_changed_at + s.replay_window + s.retention)
        RETURNING d.webhook_id, webhooks._owed(d.marks) AS events
    ), per_webhook AS (
        SELECT e.webhook_id, sum(e.events) AS n FROM expired e GROUP BY e.webhook_id
    ), counted AS (
        UPDATE webhooks.webhooks w SET expired_events = w.expired_events + p.n
        FROM per_webhook p WHERE w.id = p.webhook_id
    )
    SELECT coalesce(sum(p.n), 0)::bigint INTO dropped FROM per_webhook p;
    RETURN dropped;
END $$;

-- Switch a webhook off by hand. Queued deliveries are held (see activate).
CREATE FUNCTION webhooks.deactivate(id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
BEGIN
    hook := webhooks._lock_webhook(deactivate.id);
    IF hook.status <> 'active' THEN
        RETURN;
    END IF;
    PERFORM webhooks._switch_off(hook.id, 'inactive', 'deactivated by ' || session_user);
END $$;

-- Hold what a switched-off webhook owes: its pending rows, and the owed events of rows of several
-- whose other events are leased (they move to a held row of their own; the leased ones finish
-- in their row). activate() runs it again first: rows a claim or an acknowledgement wrote
-- beside the switch-off are held then.
CREATE FUNCTION webhooks._hold_queued(webhook_id bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE webhooks.deliveries d
    SET state = 'held', due_at = NULL, leased_by = NULL, updated_at = now()
    WHERE d.webhook_id = _hold_queued.webhook_id AND d.state = 'pending';
    WITH owing AS (
        SELECT d.id, d.event_created_at, d.marks, d.event_ids, d.event_xids, d.event_times
        FROM webhooks.deliveries d
        WHERE d.webhook_id = _hold_queued.webhook_id AND d.state = 'leased'
          AND length(d.marks) > 1 AND strpos(d.marks, '0') > 0
        FOR UPDATE
    ), emptied AS (
        UPDATE webhooks.deliveries d
        SET marks = translate(o.marks, '0', 'm'), due_at = d.leased_until, updated_at = now()
        FROM owing o
        WHERE d.id = o.id AND d.event_created_at = o.event_created_at
    )
    INSERT INTO webhooks.deliveries
        (webhook_id, event_created_at, event_ids, event_xids, event_times, marks, state)
    SELECT _hold_queued.webhook_id, max(p.event_time), array_agg(p.event_id ORDER BY p.k),
           array_agg(p.event_xid ORDER BY p.k), array_agg(p.event_time ORDER BY p.k),
           repeat('0', count(*)::integer), 'held'
    FROM owing o
    CROSS JOIN LATERAL unnest(o.event_ids, o.event_xids, o.event_times)
        WITH ORDINALITY AS p(event_id, event_xid, event_time, k)
    WHERE substr(o.marks, p.k::integer, 1) = '0'
    GROUP BY o.id;
$$;

-- Stop a webhook: status, reason, and its queued deliveries become held.
CREATE FUNCTION webhooks._switch_off(webhook_id bigint, new_status text, reason text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE webhooks.webhooks w
    SET status = new_status, status_reason = reason, status_changed_at = now(), updated_at = now()
    WHERE w.id = webhook_id;
    SELECT webhooks._hold_queued(webhook_id);
$$;

-- The system switches a webhook off: held like a deactivation, plus a notification row, a
-- NOTIFY on webhooks_notifications for whoever watches (Mailingwork's system notification), and
-- an operational event 'webhook.disabled' that an owner URL can subscribe to (Svix's
-- endpoint.disabled): webhooks.create('ops', 'webhook.disabled', 'https://owner.example/hook').
CREATE FUNCTION webhooks._disable(webhook_id bigint, reason text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT webhooks._switch_off(webhook_id, 'disabled', reason);
    INSERT INTO webhooks.notifications (webhook_id, kind, reason)
    VALUES (webhook_id, 'disabled', reason);
    INSERT INTO webhooks.events (event, origin, payload)
    SELECT 'webhook.disabled', 'pg_webhooks',
           jsonb_build_object('webhook_id', w.id, 'app', w.app, 'event', w.event, 'url', w.url,
                              'reason', reason, 'disabled_at', now())
    FROM webhooks.webhooks w WHERE w.id = _disable.webhook_id;
    SELECT pg_notify('webhooks_notifications',
                     jsonb_build_object('webhook_id', webhook_id, 'kind', 'disabled',
                                        'reason', reason)::text);
$$;

-- Deliver again what failed (or was dropped) for a webhook since a point in time, like Svix's
-- recover. Returns how many deliveries were queued again (held if the webhook is off).
CREATE FUNCTION webhooks.recover(id bigint, since timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
    queued bigint;
    -- an ordered webhook's events go after what their keys have queued, in event id order
    requeue_order bigint := nextval('webhooks.delivery_order_seq');
BEGIN
    PERFORM webhooks._require_value('since', since IS NULL);
    PERFORM webhooks._queued_from(NULL);  -- (the lock only, before the webhook's)
    hook := webhooks._lock_webhook(recover.id);
    IF hook.status = 'active' THEN
        -- (they may be from days claims no longer look at: webhooks.fan_out_state)
        PERFORM webhooks._queued_from((SELECT min(d.event_created_at) FROM webhooks.deliveries d
                                       WHERE d.webhook_id = hook.id AND d.event_created_at >= since
                                         AND d.state IN ('failed', 'dropped')));
    END IF;
    WITH revived AS (
        UPDATE webhooks.deliveries d
        SET state = CASE WHEN hook.status = 'active' THEN 'pending' ELSE 'held' END,
            due_at = CASE WHEN hook.status = 'active' THEN now() END,
            order_batch = CASE WHEN d.order_key IS NOT NULL THEN requeue_order END,
            updated_at = now()
        WHERE d.webhook_id = hook.id AND d.event_created_at >= since
          AND d.state IN ('failed', 'dropped')
          AND webhooks._owed(d.marks) > 0  -- (a row whose events all moved out holds none)
        RETURNING webhooks._owed(d.marks) AS events
    )
    SELECT coalesce(sum(r.events), 0) INTO queued FROM revived r;
    RETURN queued;
END $$;

COMMENT ON FUNCTION webhooks.recover(bigint, timestamptz) IS
'Queue again every failed or dropped delivery of a webhook whose event happened since the given '
'time (at most settings.retention back). Returns how many were queued.';

-- Delete a webhook. Its queued and held deliveries go with it at once: nothing more is claimed
-- for it. A request already in flight completes, and its acknowledgement finds nothing to
-- update. The attempt log keeps the webhook's rows until retention drops their day.
CREATE FUNCTION webhooks.delete(id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
BEGIN
    hook := webhooks._lock_webhook(delete.id);
    -- Again until nothing is left: a claim or an acknowledgement that held one of these rows
    -- may have moved an event to a new row, which only the next statement sees (the one before
    -- waited for it to commit).
    LOOP
        DELETE FROM webhooks.deliveries d
        WHERE d.webhook_id = hook.id AND d.state IN ('held', 'pending', 'leased');
        EXIT WHEN NOT FOUND;
    END LOOP;
    DELETE FROM webhooks.webhooks w WHERE w.id = hook.id;
END $$;

-- A rotation's overlap (rotate_secret, rotate_signing_key): given, and not negative.
CREATE FUNCTION webhooks._check_overlap(overlap interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._require_value('overlap', overlap IS NULL);
    IF overlap < '0' THEN
        RAISE EXCEPTION 'pg_webhooks: overlap must not be negative, not %', overlap
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- Replace the signing secret. During the overlap requests carry signatures with both the new
-- and the old secret, so receivers can switch without losing a request. Returns the new secret.
CREATE FUNCTION webhooks.rotate_secret(
    id bigint,
    overlap interval DEFAULT '24 hours',
    new_secret text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
    replacement text;
BEGIN
    PERFORM webhooks._check_overlap(overlap);
    replacement := CASE WHEN new_secret IS NULL THEN webhooks._new_secret()
                        ELSE webhooks._check_secret(new_secret) END;
    hook := webhooks._lock_webhook(rotate_secret.id);
    UPDATE webhooks.webhooks w
    SET previous_secret = CASE WHEN overlap > '0' THEN w.secret END,
        previous_secret_until = CASE WHEN overlap > '0' THEN now() + overlap END,
        secret = replacement,
        updated_at = now()
    WHERE w.id = hook.id;
    RETURN replacement;
END $$;

-- The public keys of a webhook that signs asymmetrically (configure's "signature"), to hand to
-- its receiver: the current one, and during a rotation's overlap the previous one. The private
-- keys never leave the table but towards the relay.
CREATE FUNCTION webhooks.public_keys(id bigint)
RETURNS TABLE (signature text, key_id text, public_key text, current boolean, signing boolean,
               previous_until timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks := webhooks._find_webhook(public_keys.id);
BEGIN
    IF hook.signing_key IS NULL THEN
        RAISE EXCEPTION 'pg_webhooks: webhook % signs with hmac-sha256 and has no public key', hook.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'configure(id, ''{"signature": "ed25519"}'') or "rsa-sha256" makes a key pair; '
                         'webhooks.secret(id) gives the shared secret.';
    END IF;
    -- signing: the key requests are signed with now (both for ed25519 during an overlap; for
    -- rsa-sha256 the previous one until the overlap ends)
    RETURN QUERY
        SELECT hook.signature, split_part(hook.signing_key, ':', 2), hook.public_key, true,
               NOT (hook.signature = 'rsa-sha256' AND hook.previous_key_until > now()),
               NULL::timestamptz
        UNION ALL
        SELECT hook.signature, split_part(hook.previous_signing_key, ':', 2),
               hook.previous_public_key, false, true, hook.previous_key_until
        WHERE hook.previous_key_until > now();
END $$;

-- Replace the key pair of a webhook that signs asymmetrically; the previous key keeps signing
-- during overlap (see webhooks.webhooks.previous_key_until). Returns the new public key.
CREATE FUNCTION webhooks.rotate_signing_key(id bigint, overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
    fresh record;
BEGIN
    PERFORM webhooks._check_overlap(overlap);
    hook := webhooks._lock_webhook(rotate_signing_key.id);
    IF hook.signing_key IS NULL THEN
        RAISE EXCEPTION 'pg_webhooks: webhook % signs with hmac-sha256 and has no key pair', hook.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'webhooks.rotate_secret(id) replaces its secret.';
    END IF;
    -- a second overlapping rotation would drop the key receivers still hold
    IF hook.previous_key_until > now() AND overlap > '0' THEN
        RAISE EXCEPTION 'pg_webhooks: webhook % is still rotating its key, until %', hook.id,
            hook.previous_key_until
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Rotate again after that, or with overlap => ''0'' to drop both old keys now.';
    END IF;
    SELECT * INTO fresh FROM webhooks._new_signing_key(hook.signature);
    UPDATE webhooks.webhooks w
    SET previous_signing_key = CASE WHEN overlap > '0' THEN w.signing_key END,
        previous_public_key = CASE WHEN overlap > '0' THEN w.public_key END,
        previous_key_until = CASE WHEN overlap > '0' THEN now() + overlap END,
        signing_key = fresh.signing_key, public_key = fresh.public_key, updated_at = now()
    WHERE w.id = hook.id;
    RETURN fresh.public_key;
END $$;

COMMENT ON FUNCTION webhooks.create(text, text, text, text, integer, double precision, text) IS
'Subscribe a URL to an event (an event name, ''prefix.*'' or ''*''); app is a free label to '
'filter on. Generates a whsec_ signing secret unless one is given. Returns the webhook id.';
COMMENT ON FUNCTION webhooks.update(bigint, text, text, text, integer, double precision) IS
'Change a webhook''s url, event, description or limits (NULL leaves a setting unchanged). A new '
'URL drops the verification: the webhook sends nothing until webhooks.verify() succeeds again. '
'Returns the webhook as get() shows it.';
COMMENT ON FUNCTION webhooks.list(text, text, regclass) IS
'Webhooks, optionally filtered by app, by event and by the tracked table they apply to, with '
'their status; secrets are not shown.';
COMMENT ON FUNCTION webhooks.get(bigint) IS
'One webhook with its status; raises no_data_found (P0002) for an unknown id.';
COMMENT ON FUNCTION webhooks.secret(bigint) IS
'The current signing secret of a webhook (whsec_...), for configuring the receiver.';
COMMENT ON FUNCTION webhooks.activate(bigint, boolean) IS
'Switch a webhook on. With replay_events the events held while it was off (within '
'settings.replay_window) are delivered, oldest first; without, they are dropped. Returns the '
'number of events replayed.';
COMMENT ON FUNCTION webhooks.deactivate(bigint) IS
'Switch a webhook off. Events keep being recorded for it and are held for activate().';
COMMENT ON FUNCTION webhooks.delete(bigint) IS
'Delete a webhook and its queued deliveries; its attempt log stays until retention removes it.';
COMMENT ON FUNCTION webhooks.public_keys(bigint) IS
'The public keys of a webhook that signs with ed25519 (whpk_...) or rsa-sha256 (PEM), for its '
'receiver: the current key, and the previous one while a rotation overlaps.';
COMMENT ON FUNCTION webhooks.rotate_signing_key(bigint, interval) IS
'Replace the key pair of a webhook that signs with ed25519 or rsa-sha256; the previous key '
'keeps signing during overlap. Returns the new public key.';
COMMENT ON FUNCTION webhooks.rotate_secret(bigint, interval, text) IS
'Replace the signing secret; during overlap both secrets sign each request. Returns the new '
'secret.';
