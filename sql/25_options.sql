-- pg_webhooks: per-webhook options, what a webhook is sent and when.
--
--   SELECT webhooks.configure(7, '{"format": "form", "exclude_columns": ["password_hash"]}');
--
-- Options (a key set to null returns the option to its default):
--   format           "json" (default), "form" (Copernica-style x-www-form-urlencoded), "query"
--                    (the same parameters in the URL's query string, no body) or "raw" (the
--                    event's data alone as the JSON body, no envelope: an emitted payload
--                    arrives exactly as given)
--   method           "POST" (default), "PUT" or "GET" (GET needs format "query")
--   fields           [{"column": "first_name", "name": "fname", "default": "friend"}, ...]: send
--                    only these values, each under its own name, with a default for NULL or
--                    missing values (KlickTipp). URL placeholders __name__ are filled from them.
--   key_field        the value always sent with fields (default "email"), under its column's
--                    name, or under the name a field gives that column ({"column": "email",
--                    "name": "EmailAddress"}: KlickTipp's forms name it as they like)
--   parameters       {"key": "value", ...}: fixed parameters, sent as parameters[key]=value
--   source           a tracked table: only its events (Copernica's database or collection)
--   filter           an SQL/JSON path over the event's payload: a predicate that must be true,
--                    such as '$.new.country == "NL"', or a path that must find a value
--   on_change        ["email", ...]: update events only when one of these columns changed
--   include_columns  ["email", ...]: row columns sent; the others are left out
--   exclude_columns  ["password_hash", ...]: row columns never sent
--   exclude_origins  ["squeezely", ...]: events written by these origins (SET pg_webhooks.origin,
--                    or application_name) are not sent: a receiver that writes back does not
--                    get its own change again
--   throttle         "6 hours" (1 second to 1 year): at most one event per throttle_per value in this time; events
--   throttle_per     within it are dropped (state dropped, last_error 'throttled'), not merged
--   retry_schedule   ["0s", "1 minute", "1 hour"]: this webhook's delay before each attempt (1 to
--                    100 of them, each 0 to 30 days), instead of the relay's --retry-schedule;
--                    its length is the number of attempts before the delivery is parked
--   request_timeout  "30 seconds" (1 second to 10 minutes): how long one request may take,
--                    instead of the relay's --request-timeout; the relay cuts it to half its
--                    lease, so that an attempt always ends while its lease holds
--   ordered_by       "primary key", or a row column or payload field ("contact_id"): events with
--                    the same value are delivered one at a time in commit order; one that
--                    waits for a retry holds back only its key, and parking it releases the next
--   batch            10 (1 to 100): send up to this many events in one request, a JSON array of
--                    their bodies, each with its "id" (format "json" only, no fields or URL
--                    placeholders); the request's outcome is each event's. 1 is the default
--   signature        "hmac-sha256" (default: Standard Webhooks v1 with the webhook's secret),
--                    "ed25519" (Standard Webhooks v1a) or "rsa-sha256" (HTTP Signatures with
--                    Digest, Date, X-Nonce and X-Copernica-ID, as Copernica and SMTPeter sign):
--                    a new key pair is made; its public key is read with webhooks.public_keys()
--                    and replaced with webhooks.rotate_signing_key()
--   signature_account the X-Copernica-ID value of rsa-sha256 requests (default "webhook_<id>")
--   headers          {"Authorization": "Bearer ...", "X-Api-Key": "..."}: extra request
--                    headers, for receivers that authenticate callers. Their values are secrets:
--                    get() and list() show only their names (options.header_names). Headers the
--                    relay sets (signature, content-type, host, user-agent, hop-by-hop) are
--                    refused (webhooks._headers_problem, sql/10_tables.sql)
--
-- Filters are decided at fan-out: an event a webhook does not want gets no delivery at all.

CREATE FUNCTION webhooks._bad_option(name text, value jsonb, reason text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'pg_webhooks: invalid option % %: %', name, left(value::text, 200), reason
        USING ERRCODE = 'invalid_parameter_value';
END $$;

-- A text option: a JSON string, one of choices if given.
CREATE FUNCTION webhooks._text_option(name text, value jsonb, choices text[] DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'string' OR btrim(value #>> '{}') = '' THEN
        PERFORM webhooks._bad_option(name, value, 'expected a non-empty string');
    END IF;
    IF choices IS NOT NULL AND NOT (value #>> '{}') = ANY (choices) THEN
        PERFORM webhooks._bad_option(name, value, 'expected one of ' || array_to_string(choices, ', '));
    END IF;
    RETURN value #>> '{}';
END $$;

-- A list option: a JSON array of non-empty strings (NULL for JSON null).
CREATE FUNCTION webhooks._names_option(name text, value jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'array' OR jsonb_array_length(value) = 0
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(value) v
                  WHERE jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = '') THEN
        PERFORM webhooks._bad_option(name, value, 'expected a non-empty array of non-empty strings');
    END IF;
    RETURN ARRAY(SELECT jsonb_array_elements_text(value));
END $$;

-- fields: [{"column": ..., "name": ..., "default": ...}], names unique; returned with every
-- name filled in.
CREATE FUNCTION webhooks._fields_option(value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    field jsonb;
    result jsonb := '[]';
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'array' OR jsonb_array_length(value) = 0 THEN
        PERFORM webhooks._bad_option('fields', value, 'expected a non-empty array of objects');
    END IF;
    FOR field IN SELECT jsonb_array_elements(value) LOOP
        IF jsonb_typeof(field) <> 'object'
           OR jsonb_typeof(field -> 'column') IS DISTINCT FROM 'string'
           OR btrim(field ->> 'column') = ''
           OR EXISTS (SELECT 1 FROM jsonb_object_keys(field) k
                      WHERE k NOT IN ('column', 'name', 'default'))
           OR jsonb_typeof(coalesce(field -> 'name', '""')) <> 'string'
           OR jsonb_typeof(coalesce(field -> 'default', '""')) NOT IN ('string', 'number', 'null') THEN
            PERFORM webhooks._bad_option('fields', field,
                'each field is {"column": <text>, "name": <text>, "default": <text or number>}');
        END IF;
        result := result || jsonb_build_array(jsonb_build_object(
            'column', field -> 'column',
            'name', coalesce(nullif(field ->> 'name', ''), field ->> 'column'),
            'default', field -> 'default'));
    END LOOP;
    IF (SELECT count(DISTINCT f ->> 'name') FROM jsonb_array_elements(result) f)
       <> jsonb_array_length(result) THEN
        PERFORM webhooks._bad_option('fields', value, 'two fields have the same name');
    END IF;
    RETURN result;
END $$;

CREATE FUNCTION webhooks._parameters_option(value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(value) p
                  WHERE jsonb_typeof(p.value) NOT IN ('string', 'number', 'boolean')) THEN
        PERFORM webhooks._bad_option('parameters', value,
            'expected an object of text, number or boolean values');
    END IF;
    RETURN value;
END $$;

CREATE FUNCTION webhooks._source_option(value jsonb) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    table_name text := webhooks._text_option('source', value);
    tracked_source regclass;
BEGIN
    IF table_name IS NULL THEN
        RETURN NULL;
    END IF;
    -- by schema-qualified name, or by table name alone when that is unambiguous (this function
    -- runs with its own search_path, so the caller's cannot resolve the name)
    SELECT t.source INTO tracked_source
    FROM webhooks.tracked t
    JOIN pg_class c ON c.oid = t.source
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE table_name IN (n.nspname || '.' || c.relname, c.relname)
    ORDER BY table_name = n.nspname || '.' || c.relname DESC
    LIMIT 1;
    IF NOT FOUND THEN
        PERFORM webhooks._bad_option('source', value, 'not a tracked table');
    END IF;
    RETURN tracked_source;
END $$;

CREATE FUNCTION webhooks._filter_option(value jsonb) RETURNS jsonpath
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    path text := webhooks._text_option('filter', value);
BEGIN
    RETURN path::jsonpath;
EXCEPTION WHEN syntax_error OR invalid_text_representation THEN
    PERFORM webhooks._bad_option('filter', value, 'not an SQL/JSON path (' || SQLERRM || ')');
    RETURN NULL;
END $$;

-- An interval option: text PostgreSQL reads as an interval ("30 seconds", "5m"), from shortest
-- to longest, given as text so that the message says them as written (NULL for JSON null).
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

-- throttle: at most a year, as fan-out subtracts it from event times ("100000000 years"
-- overflowed there); under a second throttles nothing worth the name.
CREATE FUNCTION webhooks._throttle_option(value jsonb) RETURNS interval
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT webhooks._interval_option('throttle', value, '1 second', '1 year')
$$;

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

-- retry_schedule: a JSON array of 1 to 100 intervals, each from 0 to 30 days.
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

-- Options that only make sense together, and URL placeholders that fields cannot fill.
CREATE FUNCTION webhooks._check_options(hook webhooks.webhooks) RETURNS void
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

CREATE FUNCTION webhooks.configure(id bigint, options jsonb) RETURNS webhooks.webhook_info
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

-- Does a path hold for a payload? A predicate ('$.new.country == "NL"') must be true; any other
-- path ('$.new ? (@.vip == true)') must find something other than null. Errors in the data (a
-- missing key in strict mode, a type mismatch) make a predicate unknown, which counts as "no".
CREATE FUNCTION webhooks._path_holds(path jsonpath, payload jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(CASE jsonb_typeof(r) WHEN 'boolean' THEN r::text::boolean
                                         WHEN 'null' THEN false
                                         ELSE r IS NOT NULL END,
                    false)
    FROM (SELECT jsonb_path_query_first(payload, path, silent => true) AS r) first_result
$$;

-- Is a row column sent to this webhook?
CREATE FUNCTION webhooks._column_sent(hook webhooks.webhooks, col text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (hook.include_columns IS NULL OR col = ANY (hook.include_columns))
       AND (hook.exclude_columns IS NULL OR col <> ALL (hook.exclude_columns))
$$;

-- Did an update change a column this webhook sees (and, with on_change, listens to)? A change to
-- an excluded password_hash alone sends nothing.
CREATE FUNCTION webhooks._visible_change(hook webhooks.webhooks, payload jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM jsonb_array_elements_text(payload -> 'changed') c(col)
                   WHERE webhooks._column_sent(hook, c.col)
                     AND (hook.on_change IS NULL OR c.col = ANY (hook.on_change)))
$$;

-- Does this webhook want this event? Everything but the filter (webhooks._filter_verdict) and
-- the throttle, which fan_out decides. Kept free of subqueries so the planner inlines it into
-- fan-out: the checks a webhook does not use then cost next to nothing (BENCHMARKS.md).
CREATE FUNCTION webhooks._wants(
    hook webhooks.webhooks, event text, source regclass, origin text, payload jsonb
) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT webhooks._event_matches(hook.event, event)
       AND (hook.verified_at IS NOT NULL OR NOT hook.verification_required)
       AND (hook.source IS NULL OR hook.source = source)
       AND (hook.exclude_origins IS NULL OR origin IS NULL OR origin <> ALL (hook.exclude_origins))
       AND (source IS NULL OR right(event, 8) <> '.updated'
            OR (hook.on_change IS NULL AND hook.include_columns IS NULL
                AND hook.exclude_columns IS NULL)
            OR webhooks._visible_change(hook, payload))
$$;

-- Does the webhook's filter hold for this payload? true without a filter. Some paths fail on
-- some data even in silent mode (comparing a date with a timestamptz, say): one such event must
-- not stop fan-out for everyone. So fan_out first evaluates every filter plainly (no cost per
-- call), and only when that statement failed, walks the batch again carefully: then a filter
-- that fails gives NULL, the event counts as not matching, and a dropped delivery row keeps the
-- reason (webhooks._filter_error) where SQL can see it.
CREATE FUNCTION webhooks._filter_verdict(hook webhooks.webhooks, payload jsonb, careful boolean)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN hook.filter IS NULL THEN true
                WHEN careful THEN webhooks._path_holds_or_null(hook.filter, payload)
                ELSE webhooks._path_holds(hook.filter, payload) END
$$;

CREATE FUNCTION webhooks._path_holds_or_null(path jsonpath, payload jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN webhooks._path_holds(path, payload);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END $$;

-- Why a filter failed on a payload (NULL if it did not).
CREATE FUNCTION webhooks._filter_error(path jsonpath, payload jsonb) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM webhooks._path_holds(path, payload);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN left(format('filter failed (%s): %s', SQLSTATE, SQLERRM), 1000);
END $$;

-- The value a throttled webhook is throttled by, from the row (new, else old) or the payload,
-- as its md5: webhooks.throttles keys on it, and a value of a few kB (any writer can store one)
-- would not fit a btree key, failing fan-out for every webhook.
CREATE FUNCTION webhooks._throttle_value(hook webhooks.webhooks, payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN hook.throttle IS NOT NULL THEN
        md5(coalesce(payload -> 'new', payload -> 'old', payload) ->> hook.throttle_per) END
$$;

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

-- A row image with only the columns the webhook is sent.
CREATE FUNCTION webhooks._visible_row(hook webhooks.webhooks, image jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN image IS NULL OR jsonb_typeof(image) <> 'object' THEN image
        WHEN hook.include_columns IS NULL AND hook.exclude_columns IS NULL THEN image
        ELSE (SELECT coalesce(jsonb_object_agg(c.key, c.value), '{}')
              FROM jsonb_each(image) c WHERE webhooks._column_sent(hook, c.key))
    END
$$;

-- The payload as this webhook is sent it: row images, the parent row's values
-- (webhooks.enrich) and the changed list without the columns it is not sent; for application
-- events, the payload without them.
CREATE FUNCTION webhooks._visible_payload(hook webhooks.webhooks, payload jsonb, is_row boolean)
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

COMMENT ON FUNCTION webhooks.configure(bigint, jsonb) IS
'Set a webhook''s options: format (json, form, query, raw), method (POST, PUT, GET), fields, '
'key_field, parameters, source, filter, on_change, include_columns, exclude_columns, '
'exclude_origins, throttle, throttle_per, headers, retry_schedule, request_timeout, batch, '
'ordered_by; a key set to '
'null restores the default. See '
'sql/25_options.sql. Returns the webhook as get() shows it.';
