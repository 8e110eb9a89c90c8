-- The webhook lifecycle: automatic deactivation with a notification, and recovery.
SELECT webhooks.create('life', 'life.*', 'https://example.com/life') AS hook \gset
-- start from an empty queue
SELECT count(*) >= 0 AS drained FROM webhooks.claim('setup', 100000, 100000, '{}', '1 hour');
UPDATE webhooks.deliveries SET state = 'failed', due_at = NULL WHERE state = 'leased';

CREATE FUNCTION fail_all(relay text) RETURNS integer LANGUAGE sql AS $$
    SELECT webhooks.ack(relay, coalesce(jsonb_agg(jsonb_build_object(
        'delivery_id', delivery_id, 'attempt', attempt, 'outcome', 'retry', 'status', 500,
        'retry_after_ms', 3600000)), '[]'))
    FROM webhooks.claim(relay, 100, 100, '{}', '1 minute')
$$;

-- failures below the threshold keep the webhook active
UPDATE webhooks.settings SET disable_after_failures = 3, disable_after = '1 hour';
SELECT webhooks.emit('life.signal', jsonb_build_object('n', n)) FROM generate_series(1, 3) n \g /dev/null
SELECT fail_all('relay');
SELECT status, consecutive_failures FROM webhooks.get(:hook);

-- enough failures, but not yet spanning disable_after: still active
SELECT webhooks.emit('life.signal', '{}') \g /dev/null
SELECT fail_all('relay');
SELECT status, consecutive_failures FROM webhooks.get(:hook);

-- failures spanning disable_after: disabled, with a reason and a notification
UPDATE webhooks.webhooks SET failing_since = now() - interval '2 hours' WHERE id = :hook;
SELECT webhooks.emit('life.signal', '{}') \g /dev/null
SELECT fail_all('relay');
SELECT status, status_reason LIKE '5 consecutive failed attempts since %' AS reason_given
FROM webhooks.get(:hook);
SELECT kind, reason LIKE '5 consecutive failed attempts%' AS reason_given
FROM webhooks.notifications WHERE webhook_id = :hook;
-- its waiting deliveries are held, and new events too
SELECT webhooks.emit('life.signal', '{}') \g /dev/null
SELECT count(*) FROM webhooks.claim('relay', 100, 100, '{}', '1 minute');
SELECT state, count(*) FROM webhooks.delivery_status WHERE webhook_id = :hook
GROUP BY state ORDER BY state;

-- 410 Gone notifies too
SELECT webhooks.create('life', 'gone.*', 'https://example.com/gone') AS gone_hook \gset
SELECT webhooks.emit('gone.away', '{}') \g /dev/null
SELECT webhooks.ack('relay', jsonb_agg(jsonb_build_object(
    'delivery_id', delivery_id, 'attempt', attempt, 'outcome', 'gone', 'status', 410)))
FROM webhooks.claim('relay', 100, 100, '{}', '1 minute');
SELECT kind, reason FROM webhooks.notifications WHERE webhook_id = :gone_hook;

-- recover queues failed and dropped deliveries since a time again
UPDATE webhooks.settings SET disable_after_failures = NULL, disable_after = NULL;
SELECT webhooks.activate(:hook, replay_events => false) AS replayed;
SELECT state, count(*) FROM webhooks.delivery_status WHERE webhook_id = :hook
GROUP BY state ORDER BY state;
SELECT webhooks.recover(:hook, since => now() - interval '1 hour') AS recovered;
SELECT state, count(*) FROM webhooks.delivery_status WHERE webhook_id = :hook
GROUP BY state ORDER BY state;
SELECT webhooks.recover(:hook, since => now() + interval '1 hour') AS nothing_that_recent;
SELECT try(format('SELECT webhooks.recover(%s, NULL)', :hook));
SELECT try($$SELECT webhooks.recover(999, now())$$);
