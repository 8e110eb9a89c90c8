-- One value, one event or one webhook's options can fail only itself: fan-out and claim go on
-- for everything else, and what could not be done is visible in SQL.
SELECT count(*) >= 0 AS drained FROM webhooks.claim('setup', 100000, 100000, '{}', '1 hour');
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE state IN ('pending', 'leased');

-- Values no float holds and nesting deeper than any JSON library's default reach a claim as
-- PostgreSQL wrote them (the key included): nothing on the way reads them as numbers.
CREATE TABLE odd_values (id numeric PRIMARY KEY, amount numeric, tree jsonb, big bigint);
SELECT webhooks.track('odd_values', entity => 'odd');
SELECT webhooks.create('poison', 'odd.*', 'https://example.com/odd') AS odd_hook \gset
INSERT INTO odd_values VALUES
    (123456789012345678901234567890.000000000000000001, 1e400, NULL, 9007199254740993),
    (2, -0.000000000000000000000000000000000000001,
     (repeat('[', 3000) || '"deep"' || repeat(']', 3000))::jsonb, -9223372036854775808);
SELECT data -> 'key' ->> 'id' AS key_id,
       data -> 'new' ->> 'amount' = (1e400)::numeric::text OR data -> 'new' ->> 'amount' LIKE '-0.0%' AS exact_amount,
       data -> 'new' ->> 'big' AS big,
       length(data::text) > 6000 AS deep_tree_whole
FROM webhooks.claim('poison', 10, 10, '{}', '1 minute') WHERE webhook_id = :odd_hook
ORDER BY event_id;

-- A filter that fails on some event's data (a date compared with a timestamptz fails even in
-- silent mode) counts as not matching for that event, with the reason in last_error; every
-- other event and webhook flows.
SELECT webhooks.create('poison', 'signal.*', 'https://example.com/filtered') AS filtered \gset
SELECT webhooks.create('poison', 'signal.*', 'https://example.com/all') AS unfiltered \gset
SELECT (webhooks.configure(:filtered,
    '{"filter": "$.at.datetime() < \"2020-01-01T00:00:00+00:00\".datetime()"}')).id = :filtered AS configured;
SELECT webhooks.emit('signal.one', '{"at": "2019-06-01T00:00:00+00:00"}') AS before_2020 \gset
SELECT webhooks.emit('signal.two', '{"at": "2019-06-01"}') AS poison_event \gset
SELECT webhooks.emit('signal.three', '{"at": "2021-06-01T00:00:00+00:00"}') AS after_2020 \gset
SELECT webhook_id = :filtered AS filtered, event
FROM webhooks.claim('poison', 10, 10, '{}', '1 minute') ORDER BY event_id, webhook_id;
SELECT event_id = :poison_event AS poison_event, state, last_error
FROM webhooks.delivery_status WHERE webhook_id = :filtered ORDER BY event_id;
-- the next events go the quick way again
SELECT webhooks.emit('signal.four', '{"at": "2018-01-01T00:00:00+00:00"}') IS NOT NULL AS emitted;
SELECT webhook_id = :filtered AS filtered, event
FROM webhooks.claim('poison', 10, 10, '{}', '1 minute') ORDER BY event_id, webhook_id;

-- A throttled webhook keys its throttle on the value's md5: a value of several kB that no btree
-- key would hold is throttled like any other, and fan-out goes on.
SELECT webhooks.create('poison', 'odd.*', 'https://example.com/throttled') AS throttled \gset
SELECT (webhooks.configure(:throttled, '{"throttle": "1 hour", "throttle_per": "tree"}')).id = :throttled
    AS configured;
INSERT INTO odd_values (id, tree)
SELECT 3, to_jsonb(string_agg(md5(g::text), '')) FROM generate_series(1, 200) g;
INSERT INTO odd_values (id, tree)
SELECT 4, to_jsonb(string_agg(md5(g::text), '')) FROM generate_series(1, 200) g;
SELECT count(*) AS claimed FROM webhooks.claim('poison', 10, 10, '{}', '1 minute')
WHERE webhook_id = :throttled;
SELECT state, last_error FROM webhooks.delivery_status WHERE webhook_id = :throttled
ORDER BY event_id;

-- An event that fails fan-out even carefully (here a row event written behind capture's back,
-- whose list of changed columns is no list) is set aside with the reason; the events around it
-- are delivered.
SELECT webhooks.create('poison', 'odd.*', 'https://example.com/on-change') AS on_change \gset
SELECT (webhooks.configure(:on_change, '{"on_change": ["amount"]}')).id = :on_change AS configured;
UPDATE odd_values SET amount = 5 WHERE id = 2;
INSERT INTO webhooks.events (event, source, payload)
VALUES ('odd.updated', 'odd_values', '{"old": {}, "new": {}, "changed": "not a list"}');
UPDATE odd_values SET amount = 6 WHERE id = 2;
SET client_min_messages = error;  -- the WARNING names the event's id, which other files move
SELECT event, count(*) FROM webhooks.claim('poison', 100, 100, '{}', '1 minute')
WHERE webhook_id = :on_change GROUP BY event;
RESET client_min_messages;
SELECT event, reason FROM webhooks.set_aside_events;
SELECT count(*) AS claimed_later FROM webhooks.claim('poison', 100, 100, '{}', '1 minute');

SELECT webhooks.delete(:odd_hook), webhooks.delete(:filtered), webhooks.delete(:unfiltered),
       webhooks.delete(:throttled), webhooks.delete(:on_change);
SELECT webhooks.untrack('odd_values');
DROP TABLE odd_values;
