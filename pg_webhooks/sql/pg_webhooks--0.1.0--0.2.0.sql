-- pg_webhooks 0.1.0 -> 0.2.0 (ALTER EXTENSION pg_webhooks UPDATE).
--
-- Adds per-webhook request headers and retry policy (configure's "headers", "retry_schedule",
-- "request_timeout"), which claim() and claim_probes() return; the "raw" format; list() by
-- source table and test_all(); batches ("batch"); per-key ordering ("ordered_by"); asymmetric
-- signatures ("signature", public_keys(), rotate_signing_key()); identify(); enrich(); delivery
-- rows of up to 100 events and a compact log of successful attempts (issue 15). Every statement
-- here makes an object exactly as sql/ at 0.2.0 defines it: tests/tests/upgrade.rs compares an
-- upgraded database's extension objects with a fresh install's, definitions, owners and grants.
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
    ADD COLUMN batch_size integer CHECK (batch_size BETWEEN 2 AND 100),
    ADD COLUMN ordered_by text CHECK (length(ordered_by) BETWEEN 1 AND 200),
    -- asymmetric signatures (configure's "signature")
    ADD COLUMN signature text NOT NULL DEFAULT 'hmac-sha256'
        CHECK (signature IN ('hmac-sha256', 'ed25519', 'rsa-sha256')),
    ADD COLUMN signing_key text,
    ADD COLUMN public_key text,
    ADD COLUMN previous_signing_key text,
    ADD COLUMN previous_public_key text,
    ADD COLUMN previous_key_until timestamptz,
    ADD COLUMN signature_account text
        CHECK (signature_account ~ '^[!-~]([ -~]{0,198}[!-~])?$'),
    ADD CONSTRAINT webhooks_signing_key_check CHECK (
        (signature = 'hmac-sha256') = (signing_key IS NULL)
        AND (signing_key IS NULL) = (public_key IS NULL)
        AND (previous_signing_key IS NULL) = (previous_public_key IS NULL)),
    -- format "raw"
    DROP CONSTRAINT webhooks_format_check,
    ADD CONSTRAINT webhooks_format_check CHECK (format IN ('json', 'form', 'query', 'raw'));

-- The webhook as list()/get() show it: everything but the secrets.
CREATE OR REPLACE VIEW webhooks.webhook_info AS
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

-- Options that only make sense together, and URL placeholders that fields cannot fill.
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
    IF hook.batch_size IS NOT NULL AND (hook.format <> 'json' OR hook.fields IS NOT NULL
                                        OR hook.url ~ '__[A-Za-z0-9]') THEN
        RAISE EXCEPTION 'pg_webhooks: batch sends a JSON array of event bodies, so it needs format "json" without fields or URL placeholders'
            USING ERRCODE = 'invalid_parameter_value';
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

-- batch: a whole number of events per request, 1 (no batches, stored as NULL) to 100.
CREATE FUNCTION webhooks._batch_option(value jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'number' OR value::text::numeric NOT IN (SELECT generate_series(1, 100)) THEN
        PERFORM webhooks._bad_option('batch', value, 'expected a whole number from 1 to 100');
    END IF;
    RETURN nullif(value::text::integer, 1);
END $$;


-- ordered_by: "primary key", or the name of a row column or payload field (at most 200
-- characters, as webhooks.webhooks checks).
CREATE FUNCTION webhooks._ordered_by_option(value jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text := webhooks._text_option('ordered_by', value);
BEGIN
    IF length(name) > 200 THEN
        PERFORM webhooks._bad_option('ordered_by', value, 'expected at most 200 characters');
    END IF;
    RETURN name;
END $$;

-- The key an ordered webhook orders this event by, as its md5 (a short fixed-size value for
-- deliveries_order_idx, whatever a writer stores): the row's primary key values with the
-- table, or a row column or payload field as throttle_per reads it. NULL (an emitted event
-- and "primary key", a missing field): the event is not ordered.
CREATE FUNCTION webhooks._order_key(hook webhooks.webhooks, source regclass, payload jsonb)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN hook.ordered_by IS NULL THEN NULL
        WHEN hook.ordered_by = 'primary key' THEN (
            SELECT md5(_order_key.source::oid::text || ' '
                       || jsonb_agg(coalesce(payload -> 'new', payload -> 'old') -> c.name ORDER BY c.n)::text)
            FROM webhooks.tracked t, unnest(t.key_columns) WITH ORDINALITY AS c(name, n)
            WHERE t.source = _order_key.source)
        ELSE md5(coalesce(payload -> 'new', payload -> 'old', payload) ->> hook.ordered_by)
    END
$$;

-- Key pairs for asymmetric signatures (pg_webhooks/src/signing_key.rs)
CREATE FUNCTION webhooks._new_signing_key(scheme text)
RETURNS TABLE (signing_key text, public_key text, key_id text)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'new_signing_key_wrapper';

-- signature: a change of scheme makes a new key pair (none for hmac-sha256) and drops the
-- previous one; naming the scheme the webhook already has changes nothing.
CREATE FUNCTION webhooks._with_signature(hook webhooks.webhooks, value jsonb)
RETURNS webhooks.webhooks
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    scheme text := coalesce(webhooks._text_option('signature', value,
                                                  ARRAY['hmac-sha256', 'ed25519', 'rsa-sha256']),
                            'hmac-sha256');
BEGIN
    IF scheme = hook.signature THEN
        RETURN hook;
    END IF;
    hook.signature := scheme;
    hook.signing_key := NULL;
    hook.public_key := NULL;
    IF scheme <> 'hmac-sha256' THEN
        SELECT k.signing_key, k.public_key INTO hook.signing_key, hook.public_key
        FROM webhooks._new_signing_key(scheme) k;
    END IF;
    hook.previous_signing_key := NULL;
    hook.previous_public_key := NULL;
    hook.previous_key_until := NULL;
    RETURN hook;
END $$;

-- signature_account: printable ASCII, 1 to 200 characters (it becomes a header value).
CREATE FUNCTION webhooks._signature_account_option(value jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    account text := webhooks._text_option('signature_account', value);
BEGIN
    IF account !~ '^[!-~]([ -~]{0,198}[!-~])?$' THEN
        PERFORM webhooks._bad_option('signature_account', value,
                                     'expected 1 to 200 printable ASCII characters');
    END IF;
    RETURN account;
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
                          'retry_schedule', 'request_timeout', 'batch', 'ordered_by',
                          'signature', 'signature_account'])
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
    IF o ? 'batch' THEN hook.batch_size := webhooks._batch_option(o -> 'batch'); END IF;
    IF o ? 'ordered_by' THEN hook.ordered_by := webhooks._ordered_by_option(o -> 'ordered_by'); END IF;
    IF o ? 'signature' THEN hook := webhooks._with_signature(hook, o -> 'signature'); END IF;
    IF o ? 'signature_account' THEN
        hook.signature_account := webhooks._signature_account_option(o -> 'signature_account');
    END IF;
    PERFORM webhooks._check_options(hook);
    UPDATE webhooks.webhooks w
    SET format = hook.format, method = hook.method, fields = hook.fields,
        key_field = hook.key_field, parameters = hook.parameters, source = hook.source,
        filter = hook.filter, on_change = hook.on_change, include_columns = hook.include_columns,
        exclude_columns = hook.exclude_columns, exclude_origins = hook.exclude_origins,
        throttle = hook.throttle, throttle_per = hook.throttle_per, headers = hook.headers,
        retry_schedule = hook.retry_schedule, request_timeout = hook.request_timeout,
        batch_size = hook.batch_size, ordered_by = hook.ordered_by, signature = hook.signature,
        signing_key = hook.signing_key, public_key = hook.public_key,
        previous_signing_key = hook.previous_signing_key,
        previous_public_key = hook.previous_public_key,
        previous_key_until = hook.previous_key_until,
        signature_account = hook.signature_account, updated_at = now()
    WHERE w.id = hook.id;
    RETURN webhooks.get(hook.id);
END $$;

COMMENT ON FUNCTION webhooks.configure(bigint, jsonb) IS
'Set a webhook''s options: format (json, form, query, raw), method (POST, PUT, GET), fields, '
'key_field, parameters, source, filter, on_change, include_columns, exclude_columns, '
'exclude_origins, throttle, throttle_per, headers, retry_schedule, request_timeout, batch, '
'ordered_by; a key set to '
'null restores the default. See '
'sql/25_options.sql. Returns the webhook as get() shows it.';

-- claim() and claim_probes() return more columns: a new return type needs a new function
DROP FUNCTION webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]);
DROP FUNCTION webhooks.claim_probes(text, integer, interval);

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

-- Delivery rows of up to 100 events, failed attempts apart from a compact log of successes
-- (issue 15). The deliveries there are become rows of one event. Their ids move into blocks of
-- 128 (sql/10_tables.sql, deliveries_id_seq): delivery id n becomes (n - 1) * 128 + 1, in the
-- attempt log too.
-- The row of a delivery id, and its event's position within that row (see deliveries_id_seq).
-- Two scalar functions, which the planner inlines: as one function of two OUT columns in FROM,
-- it ran as a query of its own for every outcome ack() read (BENCHMARKS.md).
CREATE FUNCTION webhooks._delivery_row_id(delivery_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT delivery_id - (delivery_id - 1) % 128
$$;

CREATE FUNCTION webhooks._delivery_position(delivery_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((delivery_id - 1) % 128)::integer + 1
$$;

-- How many events a row still owes while pending or leased: all of a row of one event; the
-- owed and leased ones of a row of several.
CREATE FUNCTION webhooks._owed(marks text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(marks) = 1 THEN 1 ELSE length(translate(marks, 'dm', '')) END
$$;

-- How many events of a row a claim can lease: a row of one event, or the owed ones of a row of
-- several (leased ones whose lease ran out are moved to rows of their own instead).
CREATE FUNCTION webhooks._leasable(marks text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(marks) = 1 THEN 1 ELSE length(marks) - length(replace(marks, '0', '')) END
$$;

-- marks with the events at positions ks given the marks marks_to, one character each and each
-- position at most once, as claim() and ack() give them (a NULL ks changes nothing; positions
-- outside marks are ignored). A loop in PL/pgSQL: as a SQL query it was parsed and planned on
-- every call, several per claim.
CREATE FUNCTION webhooks._marked(marks text, ks integer[], marks_to text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    FOR i IN REVERSE coalesce(array_upper(ks, 1), 0) .. coalesce(array_lower(ks, 1), 1) LOOP
        CONTINUE WHEN ks[i] IS NULL OR ks[i] NOT BETWEEN 1 AND length(marks) OR marks_to[i] IS NULL;
        marks := overlay(marks PLACING marks_to[i] FROM ks[i] FOR 1);
    END LOOP;
    RETURN marks;
END $$;


ALTER TABLE webhooks.deliveries
    ADD COLUMN event_ids bigint[],
    ADD COLUMN event_xids xid8[],
    ADD COLUMN event_times timestamptz[],
    ADD COLUMN marks text,
    ADD COLUMN leased_until timestamptz;
UPDATE webhooks.deliveries
SET id = (id - 1) * 128 + 1, event_ids = ARRAY[event_id], event_xids = ARRAY[event_xid],
    event_times = ARRAY[event_created_at], marks = '0';
UPDATE webhooks.attempts SET delivery_id = (delivery_id - 1) * 128 + 1;
DO $$
BEGIN
    EXECUTE format('ALTER SEQUENCE webhooks.deliveries_id_seq INCREMENT BY 128 RESTART WITH %s',
                   (SELECT s.last_value * 128 + 1 FROM webhooks.deliveries_id_seq s));
END $$;
ALTER TABLE webhooks.deliveries
    ALTER COLUMN event_ids SET NOT NULL,
    ALTER COLUMN event_xids SET NOT NULL,
    ALTER COLUMN event_times SET NOT NULL,
    ALTER COLUMN marks SET NOT NULL,
    ADD CHECK (cardinality(event_ids) BETWEEN 1 AND 128 AND cardinality(event_xids) = cardinality(event_ids)
           AND cardinality(event_times) = cardinality(event_ids)
           AND length(marks) = cardinality(event_ids) AND marks ~ '^[0ldm]+$');

-- Per-key ordering ("ordered_by"): the key and place of an ordered webhook's event, the index
-- claim() asks, and the fan-out batch's place.
ALTER TABLE webhooks.deliveries
    ADD COLUMN order_key text,
    ADD COLUMN order_batch bigint,
    ADD COLUMN order_event bigint,
    ADD CONSTRAINT deliveries_order_check
        CHECK ((order_key IS NULL) = (order_batch IS NULL) AND (order_key IS NULL) = (order_event IS NULL)
               AND (order_key IS NULL OR length(marks) = 1));
CREATE INDEX deliveries_order_idx ON webhooks.deliveries (webhook_id, order_key, order_batch, order_event)
    WHERE order_key IS NOT NULL AND state IN ('pending', 'leased');
CREATE SEQUENCE webhooks.delivery_order_seq;
ALTER TABLE webhooks.fan_out_state ADD COLUMN batch_order bigint;

-- Claims and acknowledgements look only at the days since the oldest with a queued delivery
-- (sql/10_tables.sql); unknown until maintain() below counts them, so every day until then.
ALTER TABLE webhooks.fan_out_state ADD COLUMN queued_since timestamptz NOT NULL DEFAULT '-infinity';

-- Deliveries of events from event_time's UTC day on are being queued: claims and
-- acknowledgements must look at that day again. Called before the rows change, so that the
-- state row is locked before any delivery row, as fan-out locks them (no deadlock), and so that
-- maintain() cannot move queued_since past rows it does not see yet.
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

-- Successful attempts, compactly: one row per acknowledgement call and webhook, its arrays
-- holding one element per delivery. A row per attempt, with its index entries, was a third of
-- what a delivered event cost the database.
CREATE TABLE webhooks.successes (
    webhook_id    bigint NOT NULL,
    logged_at     timestamptz NOT NULL,
    delivery_ids  bigint[] NOT NULL,
    event_ids     bigint[] NOT NULL,
    event_xids    xid8[] NOT NULL,
    attempts      integer[] NOT NULL,
    started_at    timestamptz[] NOT NULL,
    duration_ms   integer[] NOT NULL,
    status        integer[] NOT NULL,
    errors        text[] NOT NULL,         -- a 2xx whose body broke off says so ('body')
    responses     text[] NOT NULL          -- first bytes of each response body (NULL: none)
) PARTITION BY RANGE (logged_at);

CREATE INDEX successes_webhook_idx ON webhooks.successes (webhook_id, logged_at);
CREATE TABLE webhooks.successes_default PARTITION OF webhooks.successes DEFAULT;

-- A row of several events shows one line per event (but those moved out to rows of their own,
-- which show themselves); there is no index by event, so a look by event_id reads every row.
CREATE OR REPLACE VIEW webhooks.delivery_status AS
SELECT d.id + p.k - 1 AS delivery_id, p.event_id, e.event, e.created_at AS occurred_at, e.origin,
       d.webhook_id, w.app, w.url,
       CASE WHEN length(d.marks) = 1 THEN d.state
            WHEN p.mark = 'd' THEN 'delivered'
            WHEN p.mark = 'l' THEN 'leased'
            WHEN d.state IN ('held', 'dropped') THEN d.state
            ELSE 'pending' END AS state,
       CASE WHEN length(d.marks) = 1 THEN d.attempts WHEN p.mark = '0' THEN 0 ELSE 1 END
           AS attempts,
       CASE WHEN length(d.marks) = 1 OR p.mark <> 'd' THEN d.due_at END AS next_attempt_at,
       CASE WHEN length(d.marks) = 1 OR p.mark = 'l' THEN d.leased_by END AS leased_by,
       CASE WHEN length(d.marks) = 1 OR p.mark = 'd' THEN d.last_status END AS last_status,
       CASE WHEN length(d.marks) = 1 OR p.mark = '0' THEN d.last_error END AS last_error,
       d.updated_at
FROM webhooks.deliveries d
CROSS JOIN LATERAL (
    SELECT u.event_id, u.event_xid, u.event_time, u.k, substr(d.marks, u.k::integer, 1) AS mark
    FROM unnest(d.event_ids, d.event_xids, d.event_times) WITH ORDINALITY AS u(event_id, event_xid, event_time, k)
) p
JOIN webhooks.events e
  ON e.xid = p.event_xid AND e.id = p.event_id AND e.created_at = p.event_time
LEFT JOIN webhooks.webhooks w ON w.id = d.webhook_id
WHERE p.mark <> 'm';

-- Failed attempts from webhooks.attempts, successful ones from the compact webhooks.successes.
CREATE OR REPLACE VIEW webhooks.delivery_log AS
SELECT a.delivery_id, a.event_id, e.event, a.webhook_id, w.app, w.url,
       a.attempt, a.started_at, a.duration_ms, a.outcome, a.status, a.error, a.response
FROM (SELECT f.delivery_id, f.event_id, f.event_xid, f.webhook_id, f.attempt, f.started_at,
             f.duration_ms, f.outcome, f.status, f.error, f.response
      FROM webhooks.attempts f
      UNION ALL
      SELECT u.delivery_id, u.event_id, u.event_xid, s.webhook_id, u.attempt, u.started_at,
             u.duration_ms, 'delivered', u.status, u.error, u.response
      FROM webhooks.successes s
      CROSS JOIN LATERAL unnest(s.delivery_ids, s.event_ids, s.event_xids, s.attempts,
                                s.started_at, s.duration_ms, s.status, s.errors, s.responses)
          AS u(delivery_id, event_id, event_xid, attempt, started_at, duration_ms, status,
               error, response)) a
LEFT JOIN webhooks.events e ON e.xid = a.event_xid AND e.id = a.event_id
LEFT JOIN webhooks.webhooks w ON w.id = a.webhook_id;


-- (the views no longer read them; their indexes go with them)
ALTER TABLE webhooks.deliveries DROP COLUMN event_id, DROP COLUMN event_xid;
CREATE INDEX deliveries_due_idx ON webhooks.deliveries (webhook_id, due_at, id)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_held_idx ON webhooks.deliveries (webhook_id, id)
    WHERE state = 'held';

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
CREATE OR REPLACE FUNCTION webhooks._switch_off(webhook_id bigint, new_status text, reason text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE webhooks.webhooks w
    SET status = new_status, status_reason = reason, status_changed_at = now(), updated_at = now()
    WHERE w.id = webhook_id;
    SELECT webhooks._hold_queued(webhook_id);
$$;

-- Delete a webhook. Its queued and held deliveries go with it at once: nothing more is claimed
-- for it. A request already in flight completes, and its acknowledgement finds nothing to
-- update. The attempt log keeps the webhook's rows until retention drops their day.
CREATE OR REPLACE FUNCTION webhooks.delete(id bigint) RETURNS void
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

-- Is anything in this day still owed to a receiver?
CREATE OR REPLACE FUNCTION webhooks._day_has_open_work(day date) RETURNS boolean
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


-- 0.2.0 plans the settings once per session (PL/pgSQL).
CREATE OR REPLACE FUNCTION webhooks._settings(
    OUT retention interval, OUT replay_window interval, OUT partitions_ahead integer,
    OUT disable_after_failures integer, OUT disable_after interval,
    OUT require_verification boolean)
-- (PL/pgSQL, so that each session plans the query once: a SQL function called in FROM is
-- parsed and planned again on every call, 0.3 ms of each fan-out under load, BENCHMARKS.md)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT coalesce(s.retention, interval '7 days'),
           coalesce(s.replay_window, interval '5 days'),
           coalesce(s.partitions_ahead, 3),
           coalesce(s.disable_after_failures, 10),
           coalesce(s.disable_after, interval '5 days'),
           coalesce(s.require_verification, true)
    INTO retention, replay_window, partitions_ahead, disable_after_failures, disable_after,
         require_verification
    FROM (SELECT) AS one LEFT JOIN webhooks.settings s ON true;
END $$;

-- 0.2.0 gives the walk of new events one lower bound and a kept plan (BENCHMARKS.md).
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
CREATE OR REPLACE FUNCTION webhooks._fan_out_batch(state webhooks.fan_out_state, max_events integer)
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
CREATE OR REPLACE FUNCTION webhooks.fan_out(max_events integer DEFAULT 1000, careful boolean DEFAULT false)
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

-- Record the outcomes of a batch of attempts (see relay/README.md for the JSON shape). An
-- outcome for a lease that ran out and was claimed again is ignored: the newer lease wins.
-- A row of one event is updated in place. In a row of several, a delivered event is marked
-- delivered, a released one owed again, and a failed one moves to a row of its own that carries
-- its retry (or its parking) and its attempt log from here on.
CREATE OR REPLACE FUNCTION webhooks.ack(relay text, results jsonb) RETURNS integer
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

CREATE OR REPLACE FUNCTION webhooks.queue_depth() RETURNS TABLE (queued bigint, held bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT coalesce(sum(webhooks._owed(d.marks)), 0)::bigint FROM webhooks.deliveries d
            WHERE d.state IN ('pending', 'leased')),
           (SELECT coalesce(sum(webhooks._owed(d.marks)), 0)::bigint FROM webhooks.deliveries d
            WHERE d.state = 'held')
$$;

-- Deliver a delivery again (a parked failure, or a delivered one on request). An event of a
-- row of several moves to a row of its own for it, as when it is retried.
CREATE OR REPLACE FUNCTION webhooks.redeliver(delivery_id bigint) RETURNS void
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

-- Switch a webhook on. Events that arrived while it was off were held; replay_events decides
-- whether they are delivered now (oldest first) or dropped. Returns how many are replayed.
CREATE OR REPLACE FUNCTION webhooks.activate(id bigint, replay_events boolean DEFAULT false) RETURNS bigint
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
CREATE OR REPLACE FUNCTION webhooks._expire_held(only_webhook bigint) RETURNS bigint
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

-- Deliver again what failed (or was dropped) for a webhook since a point in time, like Svix's
-- recover. Returns how many deliveries were queued again (held if the webhook is off).
CREATE OR REPLACE FUNCTION webhooks.recover(id bigint, since timestamptz) RETURNS bigint
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

CREATE OR REPLACE FUNCTION webhooks.maintain() RETURNS TABLE (action text, object text)
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


COMMENT ON FUNCTION webhooks.queue_depth() IS
'Events owed to receivers (pending or leased) and held for inactive webhooks.';

-- The new tables as sql/90_privileges.sql leaves every table: granted to nobody, owned by
-- webhooks_owner (partitions made by maintain() below get the same)
REVOKE ALL ON webhooks.successes, webhooks.successes_default FROM PUBLIC;
REVOKE ALL ON SEQUENCE webhooks.delivery_order_seq FROM PUBLIC;
ALTER SEQUENCE webhooks.delivery_order_seq OWNER TO webhooks_owner;
ALTER TABLE webhooks.successes OWNER TO webhooks_owner;
ALTER TABLE webhooks.successes_default OWNER TO webhooks_owner;
SELECT webhooks.maintain();
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i
                WHERE i.inhparent = 'webhooks.successes'::regclass
                  AND i.inhrelid <> 'webhooks.successes_default'::regclass LOOP
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', part);
    END LOOP;
END $$;

-- What a request is signed with: the secret or private key, and during a rotation the previous one.
CREATE OR REPLACE FUNCTION webhooks._signing_secrets(hook webhooks.webhooks) RETURNS text[]
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
CREATE OR REPLACE FUNCTION webhooks.rotate_secret(
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

COMMENT ON FUNCTION webhooks.public_keys(bigint) IS
'The public keys of a webhook that signs with ed25519 (whpk_...) or rsa-sha256 (PEM), for its '
'receiver: the current key, and the previous one while a rotation overlaps.';
COMMENT ON FUNCTION webhooks.rotate_signing_key(bigint, interval) IS
'Replace the key pair of a webhook that signs with ed25519 or rsa-sha256; the previous key '
'keeps signing during overlap. Returns the new public key.';

COMMENT ON COLUMN webhooks.webhooks.status IS
    'active: delivers; inactive: switched off by an admin; disabled: switched off by the system '
    '(410 Gone or repeated failures). Events are held for activate(): an inactive webhook''s '
    'of the latest settings.replay_window, a disabled one''s of the first replay_window after it '
    'was disabled.';

-- Identifiers of tracked tables (webhooks.identify)
ALTER TABLE webhooks.tracked
    ADD COLUMN database_name text CHECK (length(database_name) BETWEEN 1 AND 200),
    ADD COLUMN collection_name text CHECK (length(collection_name) BETWEEN 1 AND 200);

CREATE OR REPLACE VIEW webhooks.tracked_tables AS
SELECT source, entity, key_columns, parent_column, parent_table, tracked_at, database_name,
       collection_name
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

-- The `data` of a request body, as this webhook is sent it (its column lists applied). Row
-- events get the table, the entity and the primary key added; rows of a child table also the
-- parent profile's id, the collection (the child's entity) and the parent table (database), or
-- the identifiers webhooks.identify() gave; a table identified as a database gets `database`.
-- t is the event's tracked table (NULL for emitted events), key its primary key's values
-- (claim() picks them). Written without subqueries so that the planner inlines it into claim():
-- it runs for every delivery.
CREATE OR REPLACE FUNCTION webhooks._event_data(e webhooks.events, hook webhooks.webhooks, t webhooks.tracked,
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

COMMENT ON FUNCTION webhooks.identify(regclass, text, text) IS
'The identifiers a receiver knows a tracked table by: form posts send them as database and '
'collection (of a child table) instead of the table name and entity. NULL returns to those.';

-- Payloads enriched from the parent row (webhooks.enrich): the capture triggers' arguments
-- name the parent's columns; tracked.parent_values copies them. Triggers made by 0.1.0 have no
-- arguments and send no parent values, as before.
ALTER TABLE webhooks.tracked
    -- the parent row's columns each event carries as `parent` (webhooks.enrich): a copy of the
    -- capture triggers' arguments, which are what the trigger reads
    ADD COLUMN parent_values text[];

-- The payload as this webhook is sent it: row images, the parent row's values
-- (webhooks.enrich) and the changed list without the columns it is not sent; for application
-- events, the payload without them.
CREATE OR REPLACE FUNCTION webhooks._visible_payload(hook webhooks.webhooks, payload jsonb, is_row boolean)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN hook.include_columns IS NULL AND hook.exclude_columns IS NULL THEN payload
        WHEN NOT is_row THEN webhooks._visible_row(hook, payload)
        ELSE payload
            || CASE WHEN payload ? 'old'
                    THEN jsonb_build_object('old', webhooks._visible_row(hook, payload -> 'old'))
                    ELSE '{}' END
            || CASE WHEN payload ? 'new'
                    THEN jsonb_build_object('new', webhooks._visible_row(hook, payload -> 'new'))
                    ELSE '{}' END
            || CASE WHEN payload ? 'parent'
                    THEN jsonb_build_object('parent', webhooks._visible_row(hook, payload -> 'parent'))
                    ELSE '{}' END
            || CASE WHEN payload ? 'changed'
                    THEN jsonb_build_object('changed', coalesce(
                        (SELECT jsonb_agg(c.col ORDER BY c.col)
                         FROM jsonb_array_elements_text(payload -> 'changed') c(col)
                         WHERE webhooks._column_sent(hook, c.col)), '[]'))
                    ELSE '{}' END
    END
$$;

CREATE OR REPLACE VIEW webhooks.tracked_tables AS
SELECT source, entity, key_columns, parent_column, parent_table, tracked_at, database_name,
       collection_name, parent_values
FROM webhooks.tracked;

-- _add_capture_triggers() takes the triggers' arguments: a new argument needs a new function
DROP FUNCTION webhooks._add_capture_triggers(regclass);

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

-- A partition created in, or attached to, a tracked partitioned table gets the capture triggers
-- at once, in the same transaction. SECURITY DEFINER: whoever may add a partition is captured
-- without a grant on the webhooks schema; CREATE TRIGGER runs no code of theirs. Only trees
-- whose root has its capture triggers: while pg_restore rebuilds a database the root has none
-- yet, and the dump's own CREATE TRIGGER statements must not find theirs made already.
CREATE OR REPLACE FUNCTION webhooks._capture_new_partitions() RETURNS event_trigger
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

CREATE OR REPLACE FUNCTION webhooks.track(source regclass, entity text DEFAULT NULL, parent text DEFAULT NULL)
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

-- Events of a child or link table that carry chosen columns of the parent row its foreign key
-- points to, as `parent` (a tag's contact's email, for a receiver that knows contacts by it).
-- The capture trigger reads them in the writer's transaction, so they are the values at the
-- moment of the event, and with the writer's rights, like the row images: a writer needs SELECT
-- on those columns (a write without it fails, as any trigger's read would), and whoever may
-- create triggers on the table could already read what its writers can. So the choice lives in
-- the capture triggers' arguments, which only such a role can set, and tracked.parent_values
-- only copies them. NULL or no columns stops sending them. The triggers are made anew, in the
-- caller's transaction: writes wait for it, and no event is missed.
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

COMMENT ON FUNCTION webhooks.enrich(regclass, text[]) IS
'Events of a child table carry these columns of the parent row its foreign key points to, as '
'parent, read in the writer''s transaction with the writer''s rights. NULL stops it.';

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
REVOKE EXECUTE ON FUNCTION webhooks._announce_change() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhooks._announce_change() TO webhooks_owner;

-- Rights as sql/90_privileges.sql gives them: the SECURITY DEFINER functions belong to
-- webhooks_owner, nothing is PUBLIC's, the relay may claim.
ALTER FUNCTION webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[])
    OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.claim_probes(text, integer, interval) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.list(text, text, regclass) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.test_all(text) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.public_keys(bigint) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.identify(regclass, text, text) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks.rotate_signing_key(bigint, interval) OWNER TO webhooks_owner;
ALTER FUNCTION webhooks._remember_parent_values(regclass) OWNER TO webhooks_owner;
REVOKE EXECUTE ON FUNCTION
    webhooks.enrich(regclass, text[]),
    webhooks._add_capture_triggers(regclass, text[]),
    webhooks._capture_arguments(regclass),
    webhooks._remember_parent_values(regclass),
    webhooks.identify(regclass, text, text),
    webhooks._check_overlap(interval),
    webhooks._new_signing_key(text),
    webhooks._with_signature(webhooks.webhooks, jsonb),
    webhooks._signature_account_option(jsonb),
    webhooks.public_keys(bigint),
    webhooks.rotate_signing_key(bigint, interval),
    webhooks._batch_option(jsonb),
    webhooks._ordered_by_option(jsonb),
    webhooks._order_key(webhooks.webhooks, regclass, jsonb),
    webhooks._hold_queued(bigint),
    webhooks._delivery_row_id(bigint),
    webhooks._delivery_position(bigint),
    webhooks._queued_from(timestamptz),
    webhooks._oldest_queued_day(),
    webhooks._owed(text),
    webhooks._leasable(text),
    webhooks._marked(text, integer[], text[]),
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
-- before webhooks_owner's, as in a fresh install (90_privileges.sql), for the same ACLs
GRANT EXECUTE ON FUNCTION webhooks.enrich(regclass, text[]),
    webhooks._add_capture_triggers(regclass, text[])
TO webhooks_admin;
GRANT EXECUTE ON FUNCTION
    webhooks.enrich(regclass, text[]),
    webhooks._add_capture_triggers(regclass, text[]),
    webhooks._capture_arguments(regclass),
    webhooks._remember_parent_values(regclass),
    webhooks.identify(regclass, text, text),
    webhooks._check_overlap(interval),
    webhooks._new_signing_key(text),
    webhooks._with_signature(webhooks.webhooks, jsonb),
    webhooks._signature_account_option(jsonb),
    webhooks.public_keys(bigint),
    webhooks.rotate_signing_key(bigint, interval),
    webhooks._batch_option(jsonb),
    webhooks._ordered_by_option(jsonb),
    webhooks._order_key(webhooks.webhooks, regclass, jsonb),
    webhooks._hold_queued(bigint),
    webhooks._delivery_row_id(bigint),
    webhooks._delivery_position(bigint),
    webhooks._queued_from(timestamptz),
    webhooks._oldest_queued_day(),
    webhooks._owed(text),
    webhooks._leasable(text),
    webhooks._marked(text, integer[], text[]),
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
GRANT EXECUTE ON FUNCTION webhooks.list(text, text, regclass), webhooks.test_all(text),
    webhooks.public_keys(bigint), webhooks.rotate_signing_key(bigint, interval),
    webhooks.identify(regclass, text, text), webhooks._remember_parent_values(regclass)
TO webhooks_admin;
GRANT EXECUTE ON FUNCTION
    webhooks.claim(text, integer, integer, bigint[], interval, bigint[], integer[]),
    webhooks.claim_probes(text, integer, interval)
TO webhooks_relay;
