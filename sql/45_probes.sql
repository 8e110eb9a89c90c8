-- pg_webhooks: probes, the one-off requests the relay makes for an admin.
--
--   verify(id)  ownership verification (Copernica, SMTPeter): the relay fetches the webhook's
--               verification file next to its URL and compares the content. A webhook that
--               requires verification (settings.require_verification when it was created) sends
--               nothing, and no events are recorded for it, until a verify() succeeds.
--   test(id)    one request, signed as usual, sent at once; no retries.
--
-- SQL cannot wait for HTTP, and the relay only sees a request once its transaction commits: both
-- return a probe id at once; probe(id, wait => ...) reads the result (after the commit).
--
--   SELECT * FROM webhooks.verification_file(7);   -- put this file on the receiver's server
--   SELECT webhooks.verify(7);                     -- commit, then:
--   SELECT * FROM webhooks.probe(12, wait => '10 seconds');

CREATE VIEW webhooks.probe_info AS
SELECT id, webhook_id, kind, url, event, payload, state, requested_by, requested_at,
       finished_at, success, result, status, error, response, duration_ms
FROM webhooks.probes;

-- Where the relay looks for a webhook's verification file: the file name, what it must contain,
-- and the URLs tried in order (next to the callback script, then the web root).
CREATE FUNCTION webhooks.verification_file(id bigint)
RETURNS TABLE (file_name text, content text, urls text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
BEGIN
    hook := webhooks._find_webhook(verification_file.id);
    file_name := hook.verification_file;
    content := hook.verification_token;
    urls := webhooks._verification_urls(hook.url, hook.verification_file);
    RETURN NEXT;
END $$;

-- Queue a probe and wake a relay (probes are rare: always NOTIFY).
CREATE FUNCTION webhooks._request_probe(hook webhooks.webhooks, kind text, event text, payload jsonb)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    probe_id bigint;
BEGIN
    INSERT INTO webhooks.probes (webhook_id, kind, url, event, payload)
    VALUES (hook.id, kind, hook.url, event, payload)
    RETURNING id INTO probe_id;
    PERFORM pg_notify('webhooks_probes', probe_id::text);
    RETURN probe_id;
END $$;

CREATE FUNCTION webhooks.verify(id bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
BEGIN
    hook := webhooks._lock_webhook(verify.id);
    UPDATE webhooks.webhooks w
    SET verification_status = 'checking', verification_reason = NULL, updated_at = now()
    WHERE w.id = hook.id AND w.verified_at IS NULL;
    RETURN webhooks._request_probe(hook, 'verify', NULL, NULL);
END $$;

-- The event name a test request carries: the webhook's own, or a representative one for a
-- pattern ('profile.*' -> 'profile.updated', '*' -> 'webhook.test').
CREATE FUNCTION webhooks._test_event(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN pattern = '*' THEN 'webhook.test'
                WHEN right(pattern, 2) = '.*' THEN left(pattern, -1) || 'updated'
                ELSE pattern END
$$;

-- A realistic `data` for an event, shaped as the real ones are: row events as the capture
-- trigger writes them (sql/30_capture.sql), email and subscription events with the fields
-- docs/events.md documents for emit() callers.
CREATE FUNCTION webhooks.sample_data(event text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    WITH profile(old_row, new_row) AS (
        SELECT jsonb_build_object('id', 42, 'email', 'jane@example.com', 'name', 'Jane Doe',
                                  'country', 'DE'),
               jsonb_build_object('id', 42, 'email', 'jane@example.com', 'name', 'Jane Doe',
                                  'country', 'NL')
    ), base AS (
        SELECT jsonb_build_object('table', 'public.' || split_part(event, '.', 1) || 's',
                                  'entity', split_part(event, '.', 1),
                                  'key', jsonb_build_object('id', 42)) AS row_event,
               jsonb_build_object('recipient', 'jane@example.com', 'profile_id', 42,
                                  'message_id', 'msg-20261122-0001',
                                  'tags', jsonb_build_array('newsletter')) AS email_event,
               jsonb_build_object('ip', '192.0.2.10', 'useragent', 'Mozilla/5.0 (X11; Linux x86_64)',
                                  'referer', 'https://mail.example.com/') AS reader
    )
    SELECT CASE
        WHEN event LIKE '%.created' THEN b.row_event || jsonb_build_object('new', p.new_row)
        WHEN event LIKE '%.updated' THEN b.row_event || jsonb_build_object(
            'old', p.old_row, 'new', p.new_row, 'changed', jsonb_build_array('country'))
        WHEN event LIKE '%.deleted' THEN b.row_event || jsonb_build_object('old', p.old_row)
        WHEN event = 'email.opened' THEN b.email_event || b.reader
        WHEN event = 'email.clicked' THEN b.email_event || b.reader
            || jsonb_build_object('original', 'https://shop.example.com/offer?id=7')
        WHEN event = 'email.bounced' THEN b.email_event || jsonb_build_object(
            'envelope', 'bounces@mail.example.com',
            'mime', 'Final-Recipient: rfc822; jane@example.com' || chr(10) || 'Status: 5.1.1')
        WHEN event = 'email.failed' THEN b.email_event || jsonb_build_object(
            'action', 'failed', 'state', 'permanent', 'code', 550, 'extended', '5.1.1',
            'description', 'The email account that you tried to reach does not exist')
        WHEN event IN ('email.delivered', 'email.unsubscribed', 'email.abuse') THEN b.email_event
        WHEN event IN ('optin_finalized', 'optout_finalized', 'profilemanager_finalized') THEN
            jsonb_build_object(
                'id', 1001, 'subscriber_id', 42,
                'fields', jsonb_build_array(jsonb_build_object('id', 1, 'value', 'jane@example.com'),
                                            jsonb_build_object('id', 2, 'value', 'Jane')),
                'lists', jsonb_build_array(jsonb_build_object(
                    'id', 7, 'state', CASE WHEN event = 'optout_finalized' THEN 'unsubscribed'
                                           ELSE 'subscribed' END)),
                'timestamp', '2026-11-22T10:00:00Z')
        ELSE jsonb_build_object('message', 'a test request from pg_webhooks')
    END
    FROM profile p, base b
$$;

-- Send one request to a webhook now, signed as usual. Works whatever its status (so a receiver
-- can be checked before activate()), but not to a URL that still needs verification: that
-- would let anyone aim requests at a server nobody has shown to own.
CREATE FUNCTION webhooks.test(id bigint, payload jsonb DEFAULT NULL, event text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hook webhooks.webhooks;
    sent_event text;
BEGIN
    IF test.event IS NOT NULL THEN
        PERFORM webhooks._check_event_name('event', test.event);
    END IF;
    IF jsonb_typeof(payload) IS DISTINCT FROM 'object' AND payload IS NOT NULL THEN
        RAISE EXCEPTION 'pg_webhooks: payload must be a JSON object, not %', jsonb_typeof(payload)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    hook := webhooks._lock_webhook(test.id);
    IF hook.verification_required AND hook.verified_at IS NULL THEN
        RAISE EXCEPTION 'pg_webhooks: webhook % is not verified, so nothing is sent to it', hook.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Serve the file from webhooks.verification_file(id), then webhooks.verify(id).';
    END IF;
    sent_event := coalesce(test.event, webhooks._test_event(hook.event));
    RETURN webhooks._request_probe(hook, 'test', sent_event,
                                   coalesce(payload, webhooks.sample_data(sent_event)));
END $$;

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

-- A probe and its result. With wait, keep looking (in new snapshots) until it is done or the
-- time is up; the request must have been committed for a relay to see it.
CREATE FUNCTION webhooks.probe(id bigint, wait interval DEFAULT '0')
RETURNS webhooks.probe_info
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    info webhooks.probe_info;
    give_up timestamptz := clock_timestamp() + coalesce(wait, '0');
BEGIN
    PERFORM webhooks._require_value('id', probe.id IS NULL);
    LOOP
        SELECT * INTO info FROM webhooks.probe_info p WHERE p.id = probe.id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pg_webhooks: probe % does not exist', probe.id
                USING ERRCODE = 'no_data_found';
        END IF;
        EXIT WHEN info.state = 'done' OR clock_timestamp() >= give_up;
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN info;
END $$;

-- Relay side: lease open probes (new ones, or ones whose relay died), with what is needed to
-- run them.
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

-- Relay side: record a probe's result. A verification counts only for the URL it was made
-- against (the URL may have changed meanwhile).
CREATE FUNCTION webhooks.finish_probe(probe_id bigint, outcome jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    done webhooks.probes;
BEGIN
    UPDATE webhooks.probes p
    SET state = 'done', finished_at = now(), lease_until = NULL,
        success = (outcome ->> 'success')::boolean,
        result = outcome ->> 'result',
        status = (outcome ->> 'status')::integer,
        error = outcome ->> 'error',
        response = outcome ->> 'response',
        duration_ms = (outcome ->> 'duration_ms')::integer
    WHERE p.id = finish_probe.probe_id AND p.state = 'running'
    RETURNING p.* INTO done;
    IF done.kind = 'verify' THEN
        UPDATE webhooks.webhooks w
        SET verification_status = CASE WHEN done.success THEN 'verified' ELSE 'failed' END,
            verification_reason = done.result,
            verified_at = CASE WHEN done.success THEN now() END,
            updated_at = now()
        WHERE w.id = done.webhook_id AND w.url = done.url;
    END IF;
END $$;

COMMENT ON FUNCTION webhooks.verification_file(bigint) IS
'The verification file of a webhook: its name, the content it must have, and the URLs where '
'webhooks.verify() looks for it (next to the callback URL, then at the web root).';
COMMENT ON FUNCTION webhooks.verify(bigint) IS
'Ask a relay to fetch the webhook''s verification file and compare its content; the outcome is '
'in get()/list() (verification_status, verification_reason). Returns the probe id.';
COMMENT ON FUNCTION webhooks.sample_data(text) IS
'A realistic example of the data an event carries; the default payload of webhooks.test().';
COMMENT ON FUNCTION webhooks.test_all(text) IS
'Send a test request to every webhook of an app that may be sent one; returns each probe id.';
COMMENT ON FUNCTION webhooks.test(bigint, jsonb, text) IS
'Send one signed request to a webhook now (payload: a JSON object, default a sample for its '
'event), whatever its status but only once verified. Returns the probe id; read the response '
'with webhooks.probe(id, wait => ...).';
COMMENT ON FUNCTION webhooks.probe(bigint, interval) IS
'A verification or test request and its outcome: state, success, result, HTTP status, error '
'class, response excerpt, duration. With wait, waits up to that long for a committed request '
'to be done.';
COMMENT ON FUNCTION webhooks.claim_probes(text, integer, interval) IS
'Relay API: lease up to max_probes open probes (new, or left by a relay whose lease ran out).';
COMMENT ON FUNCTION webhooks.finish_probe(bigint, jsonb) IS
'Relay API: record a probe''s outcome; a verification updates its webhook if the URL is unchanged.';
