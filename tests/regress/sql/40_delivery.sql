-- The relay's side: fan-out, claims as leases, acknowledgements, retries, parking, holding.
CREATE TABLE contacts (id int PRIMARY KEY, email text);
SELECT webhooks.track('contacts', entity => 'contact');
SELECT webhooks.create('shop', 'contact.created', 'https://a.example/created') AS created_hook \gset
SELECT webhooks.create('shop', 'contact.*', 'https://b.example/all') AS all_hook \gset
SELECT webhooks.create('shop', 'contact.deleted', 'https://c.example/deleted') AS deleted_hook \gset
-- start from an empty queue: fan out and park what earlier tests produced
SELECT count(*) >= 0 AS drained FROM webhooks.claim('setup', 100000, 100000, '{}', '1 hour');
UPDATE webhooks.deliveries SET state = 'failed', due_at = NULL WHERE state = 'leased';

-- each event fans out to every matching active webhook
INSERT INTO contacts VALUES (1, 'ann@example.com');
SELECT c.webhook_id = :created_hook AS to_created_hook, c.webhook_id = :all_hook AS to_all_hook,
       c.attempt, c.event, c.data -> 'key' AS key, c.data ->> 'table' AS tbl,
       cardinality(c.secrets) AS secrets
FROM webhooks.claim('relay-a', 10, 10, '{}', '60 seconds') c ORDER BY c.webhook_id;

-- a leased delivery is not claimed again while its lease runs
SELECT count(*) FROM webhooks.claim('relay-b', 10, 10, '{}', '60 seconds');

-- ... but is claimed again once the lease has run out (at-least-once), with attempt 2
UPDATE webhooks.deliveries SET due_at = now() - interval '1 second' WHERE state = 'leased';
SELECT attempt, event FROM webhooks.claim('relay-b', 10, 10, '{}', '60 seconds') ORDER BY webhook_id;

-- an acknowledgement for a lost lease (attempt 1) is ignored; the current one (2) applies
SELECT id AS d1 FROM webhooks.deliveries WHERE webhook_id = :created_hook AND state = 'leased' \gset
SELECT webhooks.ack('relay-a', jsonb_build_array(jsonb_build_object(
    'delivery_id', :d1, 'attempt', 1, 'outcome', 'delivered', 'status', 200)));
SELECT webhooks.ack('relay-b', jsonb_build_array(jsonb_build_object(
    'delivery_id', :d1, 'attempt', 2, 'outcome', 'delivered', 'status', 204,
    'duration_ms', 12, 'response', 'thanks')));
SELECT state, attempts, last_status FROM webhooks.delivery_status WHERE delivery_id = :d1;
SELECT attempt, outcome, status, duration_ms, response FROM webhooks.delivery_log
WHERE delivery_id = :d1;

-- a retry is scheduled: the delivery waits retry_after_ms (on the database's clock), then is
-- claimed again
SELECT id AS d2 FROM webhooks.deliveries WHERE webhook_id = :all_hook AND state = 'leased' \gset
SELECT webhooks.ack('relay-b', jsonb_build_array(jsonb_build_object(
    'delivery_id', :d2, 'attempt', 2, 'outcome', 'retry', 'status', 503,
    'retry_after_ms', 3600000, 'response', 'busy')));
SELECT state, next_attempt_at > now() + interval '59 minutes' AS waits, last_status
FROM webhooks.delivery_status WHERE delivery_id = :d2;
SELECT count(*) FROM webhooks.claim('relay-b', 10, 10, '{}', '60 seconds');
SELECT consecutive_failures, failing_since IS NOT NULL AS failing FROM webhooks.get(:all_hook);
UPDATE webhooks.deliveries SET due_at = now() WHERE id = :d2;

-- after the last attempt the relay parks the delivery as failed; redeliver revives it
SELECT attempt FROM webhooks.claim('relay-b', 10, 10, '{}', '60 seconds');
SELECT webhooks.ack('relay-b', jsonb_build_array(jsonb_build_object(
    'delivery_id', :d2, 'attempt', 3, 'outcome', 'failed', 'error', 'timeout')));
SELECT state, last_error FROM webhooks.delivery_status WHERE delivery_id = :d2;
SELECT webhooks.redeliver(:d2);
SELECT state FROM webhooks.delivery_status WHERE delivery_id = :d2;
SELECT attempt FROM webhooks.claim('relay-b', 10, 10, '{}', '60 seconds');

-- released (shutdown) gives the lease back without counting an attempt
SELECT webhooks.ack('relay-b', jsonb_build_array(jsonb_build_object(
    'delivery_id', :d2, 'attempt', 4, 'outcome', 'released')));
SELECT state, attempts FROM webhooks.delivery_status WHERE delivery_id = :d2;
SELECT count(*) AS logged_attempts FROM webhooks.delivery_log WHERE delivery_id = :d2;
SELECT webhooks.ack('relay-b', (SELECT jsonb_agg(jsonb_build_object(
    'delivery_id', delivery_id, 'attempt', attempt, 'outcome', 'delivered', 'status', 200))
    FROM webhooks.claim('relay-b', 10, 10, '{}', '60 seconds')));

-- per_webhook caps a claim per webhook; skip_webhooks leaves a saturated webhook out
INSERT INTO contacts SELECT i, 'c' || i || '@example.com' FROM generate_series(10, 14) i;
SELECT webhook_id = :created_hook AS created_hook, count(*)
FROM webhooks.claim('relay-a', 100, 2, '{}', '60 seconds') GROUP BY 1 ORDER BY 1;
SELECT count(*) FROM webhooks.claim('relay-a', 100, 100, ARRAY[:created_hook, :all_hook]::bigint[], '60 seconds');
SELECT count(*) FROM webhooks.claim('relay-a', 3, 100, '{}', '60 seconds');
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE state IN ('pending', 'leased');

-- room_webhooks take room_sizes instead of per_webhook (the relay claims ahead for quick ones)
INSERT INTO contacts SELECT i, 'c' || i || '@example.com' FROM generate_series(30, 34) i;
SELECT webhook_id = :created_hook AS created_hook, count(*)
FROM webhooks.claim('relay-a', 100, 2, '{}', '60 seconds', ARRAY[:created_hook]::bigint[], ARRAY[4])
GROUP BY 1 ORDER BY 1;
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE state IN ('pending', 'leased');

-- the webhooks with due work share a claim equally, also when one has all the older deliveries
INSERT INTO contacts SELECT i, 'c' || i || '@example.com' FROM generate_series(40, 43) i;
UPDATE webhooks.deliveries SET due_at = now() - interval '1 minute'
WHERE webhook_id = :created_hook AND state = 'pending';
SELECT webhook_id = :created_hook AS created_hook, count(*)
FROM webhooks.claim('relay-a', 4, 100, '{}', '60 seconds') GROUP BY 1 ORDER BY 1;
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE state IN ('pending', 'leased');

-- 410 Gone disables the webhook at once, with a reason
DELETE FROM contacts WHERE id = 10;
SELECT delivery_id AS gone_delivery FROM webhooks.claim('relay-a', 10, 10, '{}', '60 seconds')
WHERE webhook_id = :deleted_hook \gset
SELECT webhooks.ack('relay-a', jsonb_build_array(jsonb_build_object(
    'delivery_id', :gone_delivery, 'attempt', 1, 'outcome', 'gone', 'status', 410)));
SELECT active, status, status_reason FROM webhooks.get(:deleted_hook);
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE state IN ('pending', 'leased');

-- events for an inactive webhook are held, then replayed oldest first on activate
DELETE FROM contacts WHERE id = 11;
DELETE FROM contacts WHERE id = 12;
SELECT count(*) FROM webhooks.claim('relay-a', 10, 10, ARRAY[:all_hook]::bigint[], '60 seconds');
SELECT state, count(*) FROM webhooks.delivery_status WHERE webhook_id = :deleted_hook
GROUP BY state ORDER BY state;
SELECT webhooks.activate(:deleted_hook, replay_events => true) AS replayed;
SELECT event, data #>> '{old,id}' AS contact
FROM webhooks.claim('relay-a', 10, 10, ARRAY[:all_hook]::bigint[], '60 seconds');

-- activate without replay drops what was held
SELECT webhooks.deactivate(:deleted_hook);
DELETE FROM contacts WHERE id = 13;
SELECT count(*) FROM webhooks.claim('relay-a', 10, 10, ARRAY[:all_hook]::bigint[], '60 seconds');
SELECT webhooks.activate(:deleted_hook, replay_events => false) AS replayed;
SELECT state, count(*) FROM webhooks.delivery_status
WHERE webhook_id = :deleted_hook AND event = 'contact.deleted' GROUP BY state ORDER BY state;

-- deleting a webhook removes its queued deliveries at once and keeps its attempt log
SELECT count(*) FROM webhooks.claim('relay-a', 100, 100, '{}', '60 seconds');
UPDATE webhooks.deliveries SET state = 'pending', due_at = now() WHERE state = 'leased';
SELECT webhooks.delete(:deleted_hook);
SELECT count(*) AS queued FROM webhooks.deliveries
WHERE webhook_id = :deleted_hook AND state IN ('pending', 'leased', 'held');
SELECT count(*) > 0 AS attempts_kept FROM webhooks.attempts WHERE webhook_id = :deleted_hook;

-- the queue depth counts waiting and held deliveries
SELECT * FROM webhooks.queue_depth();

-- the idle flag: writers notify only while a relay is idle
SELECT webhooks.relay_idle('relay-a', true);
SELECT name, idle FROM webhooks.relays;
SELECT webhooks.relay_leave('relay-a');
SELECT count(*) FROM webhooks.relays;
