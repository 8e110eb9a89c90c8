-- configure's "ordered_by": events with the same key go one at a time, in commit order. An
-- event goes when no earlier one of its key is pending or leased; one waiting for a retry holds
-- back only its key, and parking it releases the next (tests/tests/ordering.rs runs it with the
-- relay, concurrent writers and a crash).
CREATE TABLE ord_contacts (id int PRIMARY KEY, email text, version int NOT NULL DEFAULT 1);
SELECT webhooks.track('ord_contacts', entity => 'ord_contact');
SELECT webhooks.create('ordering', 'ord_contact.*', 'https://ordering.example/hook') AS hook \gset
SELECT options FROM webhooks.configure(:hook, '{"ordered_by": "primary key"}');

-- not a non-empty string of at most 200 characters: refused, naming the value; nothing changes
SELECT try(format('SELECT webhooks.configure(%s, %L)', :hook, o))
FROM unnest(ARRAY['{"ordered_by": 7}', '{"ordered_by": ""}', '{"ordered_by": ["id"]}',
                  json_build_object('ordered_by', repeat('x', 201))::text]) o;
SELECT options FROM webhooks.get(:hook);

-- A claim by this test's relays takes this webhook's events only; what it returns, by key.
CREATE FUNCTION claim_ordered(relay text) RETURNS TABLE (delivery_id bigint, attempt integer, contact int,
                                                          version int, event text)
LANGUAGE sql AS $$
    SELECT c.delivery_id, c.attempt, (c.data -> 'new' ->> 'id')::int,
           (c.data -> 'new' ->> 'version')::int, c.event
    FROM webhooks.claim(relay, 100, 100, (SELECT array_agg(id) FROM webhooks.webhooks
                                          WHERE app NOT IN ('ordering', 'ordering_field')),
                        '1 minute') c
    ORDER BY 3, 4
$$;
CREATE FUNCTION outcome(claimed regclass, result text, contacts int[] DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE outcomes jsonb;
BEGIN
    EXECUTE format('SELECT jsonb_agg(jsonb_build_object(''delivery_id'', delivery_id, ''attempt'', attempt,
                        ''outcome'', %L, ''status'', CASE %L WHEN ''delivered'' THEN 200 ELSE 503 END,
                        ''retry_after_ms'', 3600000, ''duration_ms'', 5))
                    FROM %s WHERE %L::int[] IS NULL OR contact = ANY (%L::int[])',
                   result, result, claimed, contacts, contacts)
        INTO outcomes;
    RETURN outcomes;
END $$;

-- two contacts created, then contact 1 updated twice, each in its own transaction
INSERT INTO ord_contacts (id, email) VALUES (1, 'one@example.com'), (2, 'two@example.com');
UPDATE ord_contacts SET version = 2 WHERE id = 1;
UPDATE ord_contacts SET version = 3 WHERE id = 1;
SELECT webhooks.fan_out() > 0 AS fanned_out;
-- each event has a row of its own, keyed by its contact (table and primary key)
SELECT count(*) AS rows, count(DISTINCT order_key) AS keys, max(cardinality(event_ids)) AS events_per_row
FROM webhooks.deliveries WHERE webhook_id = :hook;

-- each key's first event goes; the key's next waits for it, at any relay
CREATE TABLE claim_1 AS SELECT * FROM claim_ordered('relay-a');
SELECT contact, version, event, attempt FROM claim_1;
SELECT count(*) AS second_relay_gets FROM claim_ordered('relay-b');

-- delivered: its key's next goes
SELECT webhooks.ack('relay-a', outcome('claim_1', 'delivered', '{1}'));
CREATE TABLE claim_2 AS SELECT * FROM claim_ordered('relay-a');
SELECT contact, version, event, attempt FROM claim_2;

-- a retry holds back its own key only: contact 2's next event, written now, is not due before
-- the retry either; contact 1 goes on
SELECT webhooks.ack('relay-a', outcome('claim_1', 'retry', '{2}'));
UPDATE ord_contacts SET version = 2 WHERE id = 2;
SELECT webhooks.ack('relay-a', outcome('claim_2', 'delivered'));
CREATE TABLE claim_3 AS SELECT * FROM claim_ordered('relay-a');
SELECT contact, version, event, attempt FROM claim_3;
SELECT (e.payload -> 'new' ->> 'version')::int AS contact_2_version, s.state, s.attempts,
       s.next_attempt_at > now() + interval '59 minutes' AS waits_an_hour
FROM webhooks.delivery_status s JOIN webhooks.events e ON e.id = s.event_id
WHERE s.webhook_id = :hook AND e.payload -> 'new' ->> 'id' = '2' ORDER BY s.event_id;
SELECT webhooks.ack('relay-a', outcome('claim_3', 'delivered'));

-- its retry comes (attempt 2) and fails for good: parked, it releases the key's next event
UPDATE webhooks.deliveries SET due_at = now() - interval '1 second'
WHERE webhook_id = :hook AND state = 'pending' AND attempts = 1;
CREATE TABLE claim_4 AS SELECT * FROM claim_ordered('relay-a');
SELECT contact, version, event, attempt FROM claim_4;
SELECT webhooks.ack('relay-a', outcome('claim_4', 'failed'));
UPDATE webhooks.deliveries SET due_at = now() - interval '1 second'
WHERE webhook_id = :hook AND state = 'pending';
CREATE TABLE claim_5 AS SELECT * FROM claim_ordered('relay-a');
SELECT contact, version, event, attempt FROM claim_5;

-- a lease that runs out (a relay that died): the same event comes back, not the key's next
UPDATE ord_contacts SET version = 4 WHERE id = 1;
SELECT webhooks.ack('relay-a', outcome('claim_5', 'delivered'));
CREATE TABLE claim_6 AS SELECT * FROM claim_ordered('relay-a');
UPDATE ord_contacts SET version = 5 WHERE id = 1;
UPDATE webhooks.deliveries SET due_at = now() - interval '1 second'
WHERE webhook_id = :hook AND state = 'leased';
CREATE TABLE claim_7 AS SELECT * FROM claim_ordered('relay-b');
SELECT 'before' AS lease, contact, version, attempt FROM claim_6
UNION ALL SELECT 'after', contact, version, attempt FROM claim_7;
-- the lost lease's late acknowledgement is ignored; the key waits for the new one
SELECT webhooks.ack('relay-a', outcome('claim_6', 'delivered')) AS applied_late;
SELECT count(*) AS claimable_meanwhile FROM claim_ordered('relay-a');
SELECT webhooks.ack('relay-b', outcome('claim_7', 'delivered'));

-- redeliver() queues an event after what its key has queued: version 5 goes first
SELECT webhooks.redeliver((SELECT delivery_id FROM claim_1 WHERE contact = 1));
CREATE TABLE claim_8 AS SELECT * FROM claim_ordered('relay-a');
SELECT webhooks.ack('relay-a', outcome('claim_8', 'delivered'));
CREATE TABLE claim_9 AS SELECT * FROM claim_ordered('relay-a');
SELECT 'first' AS turn, contact, version, event FROM claim_8
UNION ALL SELECT 'then', contact, version, event FROM claim_9;
SELECT webhooks.ack('relay-a', outcome('claim_9', 'delivered'));

-- switched off and on again with replay: the held events keep their order
SELECT webhooks.deactivate(:hook);
UPDATE ord_contacts SET version = version + 1 WHERE id = 1;
UPDATE ord_contacts SET version = version + 1 WHERE id = 1;
SELECT count(*) AS fanned_while_off FROM claim_ordered('relay-a');
SELECT webhooks.activate(:hook, replay_events => true) AS replayed;
CREATE TABLE claim_10 AS SELECT * FROM claim_ordered('relay-a');
SELECT webhooks.ack('relay-a', outcome('claim_10', 'delivered'));
CREATE TABLE claim_11 AS SELECT * FROM claim_ordered('relay-a');
SELECT 'first' AS turn, contact, version FROM claim_10 UNION ALL SELECT 'then', contact, version FROM claim_11;
SELECT webhooks.ack('relay-a', outcome('claim_11', 'delivered'));
SELECT state, count(*) FROM webhooks.delivery_status WHERE webhook_id = :hook GROUP BY 1 ORDER BY 1;

-- A payload field as the key, across event types; an event without it is not held back.
SELECT webhooks.create('ordering_field', 'ord.*', 'https://ordering.example/field') AS field_hook \gset
SELECT options FROM webhooks.configure(:field_hook, '{"ordered_by": "contact_id"}');
SELECT webhooks.emit('ord.tag_added', '{"contact_id": 7, "tag": "vip"}') \g /dev/null
SELECT webhooks.emit('ord.opened', '{"contact_id": 7}') \g /dev/null
SELECT webhooks.emit('ord.opened', '{"contact_id": 8}') \g /dev/null
SELECT webhooks.emit('ord.bounced', '{"email": "nobody@example.com"}') \g /dev/null
SELECT c.event, c.data FROM webhooks.claim('relay-a', 100, 100,
    (SELECT array_agg(id) FROM webhooks.webhooks WHERE id <> :field_hook), '1 minute') c
ORDER BY c.event_id;
SELECT (SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = :field_hook AND order_key IS NULL)
           AS unordered_rows,
       (SELECT count(*) FROM webhooks.deliveries WHERE webhook_id = :field_hook AND state = 'pending')
           AS waiting;

-- A fan-out batch too large for one call: its ordered events wait until the whole batch is
-- fanned out, as a later part of it may hold an earlier event of their key.
SELECT webhooks.delete(:field_hook);
INSERT INTO ord_contacts (id, email) SELECT i, i || '@example.com' FROM generate_series(100, 1599) i;
SELECT count(*) AS first_call_gets FROM claim_ordered('relay-a');
SELECT count(*) AS fanned_out_so_far FROM webhooks.deliveries WHERE webhook_id = :hook AND state = 'pending';
SELECT count(*) AS second_call_gets FROM claim_ordered('relay-a');
SELECT batch_upto IS NULL AS batch_done FROM webhooks.fan_out_state;

-- off again: each later event is unordered, as before
SELECT options FROM webhooks.configure(:hook, '{"ordered_by": null}');
SELECT webhooks.delete(:hook);
