-- pg_webhooks 0.1.0 -> 0.2.0 (ALTER EXTENSION pg_webhooks UPDATE).
--
-- Adds per-webhook request headers and retry policy (configure's "headers", "retry_schedule",
-- "request_timeout"), which claim() and claim_probes() return; the "raw" format; list() by
-- source table and test_all(). Every statement here makes an
-- object exactly as sql/ at 0.2.0 defines it: tests/tests/upgrade.rs compares an upgraded
-- database's extension objects with a fresh install's, definitions, owners and grants.
\echo Use "ALTER EXTENSION pg_webhooks UPDATE" to load this file. \quit

CREATE FUNCTION webhooks._headers_problem(headers jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN headers IS NULL THEN NULL
        WHEN jsonb_typeof(headers) <> 'object' THEN 'expected an object of header names to text values'
        WHEN (SELECT count(*) FROM jsonb_object_keys(headers)) > 20 THEN 'at most 20 headers'
        ELSE (SELECT problem FROM (
            SELECT CASE
                WHEN h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$'
                    THEN format('%s is not a header name', to_jsonb(left(h.key, 100)))
                WHEN lower(h.key) IN ('content-type', 'content-length', 'content-encoding', 'host',
                                      'user-agent', 'webhook-id', 'webhook-timestamp',
                                      'webhook-signature', 'connection', 'keep-alive',
                                      'proxy-authenticate', 'proxy-authorization',
                                      'proxy-connection', 'te', 'trailer', 'transfer-encoding',
                                      'upgrade', 'expect')
                    THEN format('%s is set by the relay itself', to_jsonb(h.key))
                WHEN count(*) OVER (PARTITION BY lower(h.key)) > 1
                    THEN format('%s is given twice', to_jsonb(lower(h.key)))
                WHEN jsonb_typeof(h.value) <> 'string'
                    THEN format('the value of %s is not text', to_jsonb(h.key))
                WHEN h.value #>> '{}' !~ E'^[\\x20-\\x7E\\t]+$' OR btrim(h.value #>> '{}') = ''
                     OR length(h.value #>> '{}') > 4096
                    THEN format('the value of %s must be 1 to 4096 visible ASCII characters, '
                                'spaces or tabs', to_jsonb(h.key))
            END AS problem
            FROM jsonb_each(headers) h) checked
            WHERE problem IS NOT NULL
            ORDER BY problem
            LIMIT 1)
    END
$$;

-- Durations as the relay reads them, and as the bounds on stored ones are checked: counted in
-- elapsed time, so "5 years -1800 days" is not taken for the 5 minutes it compares equal to.
CREATE FUNCTION webhooks._milliseconds(period interval) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM period) * 1000)::bigint
$$;

CREATE FUNCTION webhooks._milliseconds(periods interval[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN periods IS NOT NULL THEN
        ARRAY(SELECT (extract(epoch FROM p) * 1000)::bigint
              FROM unnest(periods) WITH ORDINALITY AS u(p, n) ORDER BY n) END
$$;

ALTER TABLE webhooks.webhooks
    ADD COLUMN headers jsonb CHECK (webhooks._headers_problem(headers) IS NULL),
    ADD COLUMN retry_schedule interval[]
        CHECK (array_ndims(retry_schedule) = 1
               AND cardinality(retry_schedule) BETWEEN 1 AND 100
               AND array_position(retry_schedule, NULL) IS NULL
               AND 0 <= ALL (webhooks._milliseconds(retry_schedule))
               AND 2592000000 >= ALL (webhooks._milliseconds(retry_schedule))),
    ADD COLUMN request_timeout interval
        CHECK (webhooks._milliseconds(request_timeout) BETWEEN 1000 AND 600000),
    -- format "raw"
    DROP CONSTRAINT webhooks_format_check,
    ADD CONSTRAINT webhooks_format_check CHECK (format IN ('json', 'form', 'query', 'raw'));

CREATE OR REPLACE VIEW webhooks.webhook_info AS
SELECT id, app, event, url,
       status, status = 'active' AS active, status_reason, status_changed_at,
       description, max_in_flight, rate_limit_per_second,
       consecutive_failures, failing_since, last_success_at,
       previous_secret_until > now() AS rotating_secret,
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
           'header_names', (SELECT jsonb_agg(h ORDER BY h) FROM jsonb_object_keys(headers) h)))
           AS options,
       created_at, updated_at
FROM webhooks.webhooks w;

-- Where a URL sends its requests: scheme, user info, host and port.
CREATE FUNCTION webhooks._origin_of(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*'))
$$;

CREATE OR REPLACE FUNCTION webhooks.update(
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

-- list() takes a source table: a new argument needs a new function
DROP FUNCTION webhooks.list(text, text);

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

COMMENT ON FUNCTION webhooks.list(text, text, regclass) IS
'Webhooks, optionally filtered by app, by event and by the tracked table they apply to, with '
'their status; secrets are not shown.';

CREATE FUNCTION webhooks._interval_option(name text, value jsonb, shortest text, longest text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    period interval;
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    BEGIN
        period := webhooks._text_option(name, value)::interval;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow
                   OR numeric_value_out_of_range THEN
        period := NULL;
    END;
    -- "infinity" is an interval from PostgreSQL 17 on, and not one before
    IF period IS NULL OR NOT isfinite(period) THEN
        PERFORM webhooks._bad_option(name, value, 'not a finite interval such as "30 seconds"');
    END IF;
    -- in elapsed time: compared as intervals, "5 years -1800 days 5 minutes" equals 5 minutes
    IF NOT webhooks._milliseconds(period)
           BETWEEN webhooks._milliseconds(shortest::interval)
               AND webhooks._milliseconds(longest::interval) THEN
        PERFORM webhooks._bad_option(name, value, format('must be from %s to %s', shortest, longest));
    END IF;
    RETURN period;
END $$;

CREATE FUNCTION webhooks._retry_schedule_option(value jsonb) RETURNS interval[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'array' OR jsonb_array_length(value) NOT BETWEEN 1 AND 100 THEN
        PERFORM webhooks._bad_option('retry_schedule', value,
            'expected an array of 1 to 100 intervals, such as ["0s", "1 minute", "1 hour"]');
    END IF;
    RETURN ARRAY(SELECT webhooks._interval_option('retry_schedule', d, '0', '30 days')
                 FROM jsonb_array_elements(value) WITH ORDINALITY AS e(d, n) ORDER BY n);
END $$;

CREATE FUNCTION webhooks._headers_option(value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    problem := webhooks._headers_problem(value);
    IF problem IS NOT NULL THEN
        -- the reason names the header, never its value: values are secrets
        RAISE EXCEPTION 'pg_webhooks: invalid option headers: %', problem
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;

CREATE OR REPLACE FUNCTION webhooks._throttle_option(value jsonb) RETURNS interval
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT webhooks._interval_option('throttle', value, '1 second', '1 year')
$$;

CREATE OR REPLACE FUNCTION webhooks._check_options(hook webhooks.webhooks) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing text;
BEGIN
    IF hook.method = 'GET' AND hook.format <> 'query' THEN
        RAISE EXCEPTION 'pg_webhooks: method GET sends no body, so it needs format "query", not "%"',
            hook.format
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (hook.throttle IS NULL) <> (hook.throttle_per IS NULL) THEN
        RAISE EXCEPTION 'pg_webhooks: throttle and throttle_per go together'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example {"throttle": "6 hours", "throttle_per": "contact_id"}.';
    END IF;
    IF hook.fields IS NOT NULL THEN
        SELECT p[1] INTO missing
        FROM regexp_matches(hook.url, '__([A-Za-z0-9](?:[A-Za-z0-9_]*[A-Za-z0-9])?)__', 'g') p
        -- the names sent: the fields', and the key field's column unless a field renames it
        WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(hook.fields) f WHERE f ->> 'name' = p[1])
          AND (p[1] <> coalesce(hook.key_field, 'email')
               OR EXISTS (SELECT 1 FROM jsonb_array_elements(hook.fields) f
                          WHERE f ->> 'column' = coalesce(hook.key_field, 'email')))
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'pg_webhooks: the URL placeholder __%__ is not one of the fields', missing
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION webhooks.configure(id bigint, options jsonb) RETURNS webhooks.webhook_info
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
    o jsonb := options;
    unknown text;
BEGIN
    PERFORM webhooks._require_value('options', options IS NULL);
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'pg_webhooks: options must be a JSON object, not %', jsonb_typeof(options)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(options) k
    WHERE k <> ALL (ARRAY['format', 'method', 'fields', 'key_field', 'parameters', 'source',
                          'filter', 'on_change', 'include_columns', 'exclude_columns',
                          'exclude_origins', 'throttle', 'throttle_per', 'headers',
                          'retry_schedule', 'request_timeout'])
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pg_webhooks: unknown option "%"', left(unknown, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The options are listed in COMMENT ON FUNCTION webhooks.configure.';
    END IF;
    hook := webhooks._lock_webhook(configure.id);
    IF o ? 'format' THEN
        hook.format := coalesce(webhooks._text_option('format', o -> 'format',
                                                      ARRAY['json', 'form', 'query', 'raw']), 'json');
    END IF;
    IF o ? 'method' THEN
        hook.method := coalesce(webhooks._text_option('method', o -> 'method',
                                                      ARRAY['POST', 'PUT', 'GET']), 'POST');
    END IF;
    IF o ? 'fields' THEN hook.fields := webhooks._fields_option(o -> 'fields'); END IF;
    IF o ? 'key_field' THEN hook.key_field := webhooks._text_option('key_field', o -> 'key_field'); END IF;
    IF o ? 'parameters' THEN hook.parameters := webhooks._parameters_option(o -> 'parameters'); END IF;
    IF o ? 'source' THEN hook.source := webhooks._source_option(o -> 'source'); END IF;
    IF o ? 'filter' THEN hook.filter := webhooks._filter_option(o -> 'filter'); END IF;
    IF o ? 'on_change' THEN hook.on_change := webhooks._names_option('on_change', o -> 'on_change'); END IF;
    IF o ? 'include_columns' THEN
        hook.include_columns := webhooks._names_option('include_columns', o -> 'include_columns');
    END IF;
    IF o ? 'exclude_columns' THEN
        hook.exclude_columns := webhooks._names_option('exclude_columns', o -> 'exclude_columns');
    END IF;
    IF o ? 'exclude_origins' THEN
        hook.exclude_origins := webhooks._names_option('exclude_origins', o -> 'exclude_origins');
    END IF;
    IF o ? 'throttle' THEN hook.throttle := webhooks._throttle_option(o -> 'throttle'); END IF;
    IF o ? 'throttle_per' THEN
        hook.throttle_per := webhooks._text_option('throttle_per', o -> 'throttle_per');
    END IF;
    IF o ? 'headers' THEN hook.headers := webhooks._headers_option(o -> 'headers'); END IF;
    IF o ? 'retry_schedule' THEN
        hook.retry_schedule := webhooks._retry_schedule_option(o -> 'retry_schedule');
    END IF;
    IF o ? 'request_timeout' THEN
        hook.request_timeout := webhooks._interval_option('request_timeout', o -> 'request_timeout',
                                                          '1 second', '10 minutes');
    END IF;
    PERFORM webhooks._check_options(hook);
    UPDATE webhooks.webhooks w
    SET format = hook.format, method = hook.method, fields = hook.fields,
        key_field = hook.key_field, parameters = hook.parameters, source = hook.source,
        filter = hook.filter, on_change = hook.on_change, include_columns = hook.include_columns,
        exclude_columns = hook.exclude_columns, exclude_origins = hook.exclude_origins,
        throttle = hook.throttle, throttle_per = hook.throttle_per, headers = hook.headers,
        retry_schedule = hook.retry_schedule, request_timeout = hook.request_timeout,
        updated_at = now()
    WHERE w.id = hook.id;
    RETURN webhooks.get(hook.id);
END $$;

COMMENT ON FUNCTION webhooks.configure(bigint, jsonb) IS
'Set a webhook''s options: format (json, form, query, raw), method (POST, PUT, GET), fields, '
'key_field, parameters, source, filter, on_change, include_columns, exclude_columns, '
'exclude_origins, throttle, throttle_per, headers, retry_schedule, request_timeout; a key set to '
'null restores the default. See '
'sql/25_options.sql. Returns the webhook as get() shows it.';

-- claim() and claim_probes() return more columns: a new return type needs a new function
DROP FUNCTION webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]);
DROP FUNCTION webhooks.claim_probes(text, integer, interval);

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

COMMENT ON FUNCTION webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]) IS
'Relay API: fan out new events, then lease due deliveries. See sql/40_relay.sql.';

CREATE FUNCTION webhooks.claim_probes(relay text, max_probes integer, lease interval)
RETURNS TABLE (probe_id bigint, kind text, webhook_id bigint, url text, secrets text[],
               event text, payload jsonb, file_urls text[], file_content text,
               format text, method text, fields jsonb, key_field text, parameters jsonb,
               headers jsonb, request_timeout_ms integer)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH open AS (
        SELECT p.id FROM webhooks.probes p
        WHERE p.state = 'requested' OR (p.state = 'running' AND p.lease_until < now())
        ORDER BY p.id
        LIMIT max_probes
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE webhooks.probes p
        SET state = 'running', leased_by = relay, lease_until = now() + lease
        FROM open o WHERE p.id = o.id
        RETURNING p.*
    )
    SELECT l.id, l.kind, w.id, l.url, webhooks._signing_secrets(w), l.event, l.payload,
           webhooks._verification_urls(l.url, w.verification_file), w.verification_token,
           w.format, w.method, w.fields, coalesce(w.key_field, 'email'), w.parameters, w.headers,
           webhooks._milliseconds(w.request_timeout)::integer
    FROM leased l JOIN webhooks.webhooks w ON w.id = l.webhook_id
    ORDER BY l.id
$$;

-- A test request to every webhook of an app that may be sent one (verified, or not needing
-- verification), as test() would send it; Copernica's "test all webhooks".
CREATE FUNCTION webhooks.test_all(app text)
RETURNS TABLE (webhook_id bigint, probe_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._require_value('app', app IS NULL);
    RETURN QUERY
    SELECT w.id, webhooks.test(w.id)
    FROM webhooks.webhooks w
    WHERE w.app = test_all.app AND (w.verified_at IS NOT NULL OR NOT w.verification_required)
    ORDER BY w.id;
END $$;

COMMENT ON FUNCTION webhooks.test_all(text) IS
'Send a test request to every webhook of an app that may be sent one; returns each probe id.';

COMMENT ON FUNCTION webhooks.claim_probes(text, integer, interval) IS
'Relay API: lease up to max_probes open probes (new, or left by a relay whose lease ran out).';

-- Rights as sql/90_privileges.sql gives them: the SECURITY DEFINER functions belong to
-- webhooks_owner, nothing is PUBLIC's, the relay may claim.
ALTER FUNCTION webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[])
    OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.claim_probes(text, integer, interval) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.list(text, text, regclass) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.test_all(text) OWNER TO webhooks_owner;
REVOKE EXECUTE ON FUNCTION
    webhooks._headers_problem(jsonb),
    webhooks._origin_of(text),
    webhooks._interval_option(text, jsonb, text, text),
    webhooks._retry_schedule_option(jsonb),
    webhooks._headers_option(jsonb),
    webhooks._milliseconds(interval),
    webhooks._milliseconds(interval[]),
    webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]),
    webhooks.claim_probes(text, integer, interval),
    webhooks.list(text, text, regclass),
    webhooks.test_all(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    webhooks._headers_problem(jsonb),
    webhooks._origin_of(text),
    webhooks._interval_option(text, jsonb, text, text),
    webhooks._retry_schedule_option(jsonb),
    webhooks._headers_option(jsonb),
    webhooks._milliseconds(interval),
    webhooks._milliseconds(interval[]),
    webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]),
    webhooks.claim_probes(text, integer, interval),
    webhooks.list(text, text, regclass),
    webhooks.test_all(text)
TO webhooks_owner;
GRANT EXECUTE ON FUNCTION webhooks.list(text, text, regclass), webhooks.test_all(text)
TO webhooks_admin;
GRANT EXECUTE ON FUNCTION
    webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]),
    webhooks.claim_probes(text, integer, interval)
TO webhooks_relay;
