-- Delivery rows of several events: fan-out writes one row per webhook and batch, each event
-- keeps a delivery id of its own, claims take the events a few at a time, acknowledgements
-- mark them, and an event that fails (or whose lease runs out, or that is redelivered) moves to
-- a row of its own. delivery_status and delivery_log show every event.
CREATE TABLE row_contacts (id int PRIMARY KEY, email text);
SELECT webhooks.track('row_contacts', entity => 'row_contact');
SELECT webhooks.create('rows', 'row_contact.created', 'https://rows.example/hook') AS hook \gset
SELECT array_agg(id) AS others FROM webhooks.webhooks WHERE id <> :hook \gset
CREATE FUNCTION claim_rows(relay text, per_webhook integer) RETURNS TABLE (delivery_id bigint, attempt integer)
LANGUAGE sql AS $$
    SELECT c.delivery_id, c.attempt
    FROM webhooks.claim(relay, 100, per_webhook, (SELECT array_agg(id) FROM webhooks.webhooks
                                                   WHERE app <> 'rows'), '1 minute') c
$$;
CREATE FUNCTION delivered(claimed regclass) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE outcomes jsonb;
BEGIN
    EXECUTE format('SELECT jsonb_agg(jsonb_build_object(''delivery_id'', delivery_id, ''attempt'', attempt,
                        ''outcome'', ''delivered'', ''status'', 200, ''duration_ms'', 5)) FROM %s', claimed)
        INTO outcomes;
    RETURN outcomes;
END $$;

-- five events of one transaction: one row of five, in order, each owed ('0')
INSERT INTO row_contacts SELECT i, 'r' || i || '@example.com' FROM generate_series(1, 5) i;
SELECT webhooks.fan_out() > 0 AS fanned_out;
SELECT cardinality(event_ids) AS events, marks, state FROM webhooks.deliveries WHERE webhook_id = :hook;
SELECT count(*) AS delivery_ids, count(DISTINCT delivery_id) AS distinct_ids
FROM webhooks.delivery_status WHERE webhook_id = :hook;

-- a claim takes what per_webhook allows; the rest stays claimable at once, by another relay too
CREATE TABLE first_claim AS SELECT * FROM claim_rows('relay-a', 2);
CREATE TABLE second_claim AS SELECT * FROM claim_rows('relay-b', 2);
SELECT (SELECT count(*) FROM first_claim) AS first, (SELECT count(*) FROM second_claim) AS second,
       (SELECT array_agg(DISTINCT attempt) FROM (TABLE first_claim UNION ALL TABLE second_claim) c)
           AS attempts;
SELECT marks, state FROM webhooks.deliveries WHERE webhook_id = :hook;
SELECT state, count(*) FROM webhooks.delivery_status WHERE webhook_id = :hook GROUP BY 1 ORDER BY 1;

-- delivered events are marked; a retry moves its event to a row of its own, with the attempt's
-- outcome and log; a released event is owed again
SELECT webhooks.ack('relay-a', delivered('first_claim'));
SELECT webhooks.ack('relay-b', jsonb_build_array(
    jsonb_build_object('delivery_id', (SELECT min(delivery_id) FROM second_claim), 'attempt', 1,
                       'outcome', 'retry', 'status', 503, 'retry_after_ms', 3600000,
                       'response', 'busy'),
    jsonb_build_object('delivery_id', (SELECT max(delivery_id) FROM second_claim), 'attempt', 1,
                       'outcome', 'released')));
SELECT cardinality(event_ids) AS events, marks, state, attempts, last_status
FROM webhooks.deliveries WHERE webhook_id = :hook ORDER BY id;
SELECT s.delivery_id IN (SELECT delivery_id FROM first_claim UNION ALL SELECT delivery_id FROM second_claim)
           AS same_id,
       s.state, s.attempts, s.last_status, s.next_attempt_at > now() + interval '59 minutes' AS waits
FROM webhooks.delivery_status s WHERE s.webhook_id = :hook ORDER BY s.event_id;
SELECT l.outcome, l.attempt, l.status, l.response, s.state AS now
FROM webhooks.delivery_log l JOIN webhooks.delivery_status s USING (delivery_id)
WHERE l.webhook_id = :hook ORDER BY l.outcome, l.delivery_id;

-- an acknowledgement that comes again, or for an event that moved, applies nothing
SELECT webhooks.ack('relay-a', delivered('first_claim')) AS applied_again;
SELECT webhooks.ack('relay-b', jsonb_build_array(jsonb_build_object(
    'delivery_id', (SELECT min(delivery_id) FROM second_claim), 'attempt', 1, 'outcome', 'delivered')))
    AS applied_to_moved;

-- a lease that runs out: its events move to rows of their own and come back as attempt 2, and
-- a late acknowledgement of the lost lease is ignored
CREATE TABLE third_claim AS SELECT * FROM claim_rows('relay-a', 10);
SELECT count(*) AS leased FROM third_claim;
UPDATE webhooks.deliveries SET due_at = now() - interval '1 second', leased_until = now() - interval '1 second'
WHERE webhook_id = :hook AND marks LIKE '%l%';
SELECT count(*) AS leased_while_moving FROM claim_rows('relay-b', 10);
SELECT attempt, count(*) FROM claim_rows('relay-b', 10) GROUP BY 1;
SELECT webhooks.ack('relay-a', delivered('third_claim')) AS applied_late;
SELECT marks, state FROM webhooks.deliveries WHERE webhook_id = :hook AND cardinality(event_ids) > 1;

-- redeliver: a delivered event of the row moves to a row of its own, queued; its old id says so
SELECT min(delivery_id) AS redelivered FROM first_claim \gset
SELECT webhooks.redeliver(:redelivered);
SELECT count(*) AS still_listed FROM webhooks.delivery_status WHERE delivery_id = :redelivered;
SELECT state, attempts FROM webhooks.delivery_status
WHERE webhook_id = :hook AND event_id = (SELECT event_ids[1] FROM webhooks.deliveries
                                         WHERE webhook_id = :hook AND cardinality(event_ids) > 1)
ORDER BY delivery_id;
SELECT try(format('SELECT webhooks.redeliver(%s)', :redelivered));
SELECT try(format('SELECT webhooks.redeliver(%s)', :redelivered + 100));

-- held events count one by one: queue_depth, activate's replay, recover
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL, leased_until = NULL
WHERE webhook_id = :hook AND state IN ('pending', 'leased');
SELECT webhooks.deactivate(:hook);
INSERT INTO row_contacts SELECT i, 'r' || i || '@example.com' FROM generate_series(10, 13) i;
SELECT webhooks.fan_out() > 0 AS fanned_out;
SELECT held FROM webhooks.queue_depth();
SELECT webhooks.activate(:hook, replay_events => false) AS replayed;
SELECT webhooks.recover(:hook, now() - interval '1 hour') AS recovered;
SELECT state, count(*) FROM webhooks.delivery_status WHERE webhook_id = :hook GROUP BY 1 ORDER BY 1;

-- a claim never shortens the lease of events another relay holds in the same row
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL, leased_until = NULL
WHERE webhook_id = :hook AND state IN ('pending', 'leased');
INSERT INTO row_contacts SELECT i, 'r' || i || '@example.com' FROM generate_series(20, 25) i;
SELECT count(*) AS long_lease FROM webhooks.claim('relay-a', 100, 2,
    (SELECT array_agg(id) FROM webhooks.webhooks WHERE app <> 'rows'), '10 minutes');
SELECT count(*) AS short_lease FROM webhooks.claim('relay-b', 100, 2,
    (SELECT array_agg(id) FROM webhooks.webhooks WHERE app <> 'rows'), '1 second');
SELECT marks, leased_until > now() + interval '9 minutes' AS longest_kept
FROM webhooks.deliveries WHERE webhook_id = :hook AND state = 'leased';

-- switching a webhook off holds the owed events of a row whose others are leased; they are
-- then held and dropped like any held event, while the leased ones finish in their row
SELECT webhooks.deactivate(:hook);
SELECT marks, state FROM webhooks.deliveries
WHERE webhook_id = :hook AND state IN ('leased', 'held') ORDER BY id;
SELECT held FROM webhooks.queue_depth();
SELECT webhooks.activate(:hook, replay_events => false) AS replayed;
SELECT state, count(*) FROM webhooks.delivery_status
WHERE webhook_id = :hook AND event_id IN (SELECT unnest(event_ids) FROM webhooks.deliveries
                                          WHERE webhook_id = :hook AND marks LIKE 'l%')
GROUP BY 1 ORDER BY 1;

-- a deleted webhook's deliveries cannot be queued again
SELECT max(delivery_id) AS orphan FROM webhooks.delivery_status WHERE webhook_id = :hook \gset
SELECT webhooks.delete(:hook);
SELECT try(format('SELECT webhooks.redeliver(%s)', :orphan));
SELECT count(*) AS rows_of_the_deleted_webhook_owing FROM webhooks.deliveries
WHERE webhook_id = :hook AND state IN ('pending', 'leased', 'held');
