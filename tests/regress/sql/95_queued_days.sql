-- Claims and acknowledgements read only the days since fan_out_state.queued_since, the oldest
-- day with a pending or leased delivery (maintain() moves it up). Whatever queues a delivery of
-- an earlier day moves it back first: a fan-out of a long transaction's event, redeliver(),
-- recover() and activate(replay_events => true). Each such delivery is claimed.
SELECT webhooks.create('days', 'dayprobe.*', 'https://days.example/hook') AS day_hook \gset
SELECT webhooks._create_partition(parent, (now() AT TIME ZONE 'UTC')::date - 3)
FROM unnest(ARRAY['events', 'deliveries']) parent;
CREATE FUNCTION claim_days() RETURNS TABLE (delivery_id bigint, attempt integer, days_ago integer)
LANGUAGE sql AS $$
    SELECT c.delivery_id, c.attempt,
           (now() AT TIME ZONE 'UTC')::date - (c.occurred_at AT TIME ZONE 'UTC')::date
    FROM webhooks.claim('days', 100, 100, (SELECT array_agg(id) FROM webhooks.webhooks
                                           WHERE app <> 'days'), '1 minute') c
$$;
CREATE FUNCTION queued_since_days_ago() RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN isfinite(s.queued_since)
                THEN ((now() AT TIME ZONE 'UTC')::date - (s.queued_since AT TIME ZONE 'UTC')::date)::text
                ELSE s.queued_since::text END
    FROM webhooks.fan_out_state s
$$;
CREATE FUNCTION park_days(claimed regclass) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE outcomes jsonb;
BEGIN
    EXECUTE format('SELECT jsonb_agg(jsonb_build_object(''delivery_id'', delivery_id, ''attempt'', attempt,
                        ''outcome'', ''failed'', ''status'', 500, ''duration_ms'', 5)) FROM %s', claimed)
        INTO outcomes;
    RETURN webhooks.ack('days', outcomes);
END $$;

-- with nothing queued, maintain() moves queued_since to today
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE state IN ('pending', 'leased');
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();
SELECT queued_since_days_ago() AS nothing_queued;

-- an event of a transaction that began three days ago is fanned out, claimed, and kept in view
-- while its delivery is leased
INSERT INTO webhooks.events (created_at, event, payload)
VALUES (now() - interval '3 days', 'dayprobe.created', '{}');
CREATE TABLE day_first_claim AS SELECT * FROM claim_days();
-- (catch-all webhooks of the files before want it too; theirs are settled here)
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL
WHERE webhook_id <> :day_hook AND state IN ('pending', 'leased');
SELECT days_ago, attempt FROM day_first_claim;
SELECT queued_since_days_ago() AS fanned_out;
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();
SELECT queued_since_days_ago() AS while_leased;

-- parked, the day drops out of view
SELECT park_days('day_first_claim') AS parked;
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();
SELECT queued_since_days_ago() AS after_parking;

-- redeliver() brings it back into view, and the delivery is claimed
SELECT webhooks.redeliver(delivery_id) FROM day_first_claim;
SELECT queued_since_days_ago() AS redelivered;
CREATE TABLE day_redelivered AS SELECT * FROM claim_days();
SELECT days_ago FROM day_redelivered;
SELECT park_days('day_redelivered') AS parked;
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();

-- so does recover()
SELECT webhooks.recover(:day_hook, now() - interval '4 days') AS recovered;
SELECT queued_since_days_ago() AS after_recover;
CREATE TABLE day_recovered AS SELECT * FROM claim_days();
SELECT days_ago FROM day_recovered;
SELECT park_days('day_recovered') AS parked;
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();

-- held deliveries do not keep a day in view; activate(replay_events => true) brings them back
SELECT webhooks.deactivate(:day_hook);
SELECT webhooks.recover(:day_hook, now() - interval '4 days') AS held;
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();
SELECT queued_since_days_ago() AS while_held;
SELECT webhooks.activate(:day_hook, replay_events => true) AS replayed;
SELECT queued_since_days_ago() AS after_replay;
SELECT days_ago FROM claim_days();

-- a queued delivery in the default partition keeps every day in view
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE state IN ('pending', 'leased');
INSERT INTO webhooks.events (created_at, event, payload)
VALUES (now() - interval '30 days', 'dayprobe.created', '{}');
SELECT webhooks.fan_out() AS fanned_out;
SELECT count(*) >= 0 AS maintained FROM webhooks.maintain();
SELECT queued_since_days_ago() AS default_partition;
SELECT days_ago FROM claim_days();
