-- Retention drops whole daily partitions; it never drops a day with work still open.
-- Partitions exist from yesterday to settings.partitions_ahead days ahead.
SELECT count(*) AS event_partitions FROM pg_inherits
WHERE inhparent = 'webhooks.events'::regclass;
SELECT count(*) AS rows_in_default FROM webhooks.events_default;

-- maintain() is idempotent
SELECT * FROM webhooks.maintain();

-- a day older than the retention with a pending delivery is kept, and dropped once it is done
CREATE TABLE old_day_probe (id int PRIMARY KEY);
SELECT webhooks.track('old_day_probe', entity => 'probe');
SELECT webhooks.create('retention', 'probe.*', 'https://example.com/probe') AS probe_hook \gset
SELECT to_char((now() AT TIME ZONE 'UTC')::date - 10, 'YYYYMMDD') AS old_day \gset
SELECT webhooks._create_partition(parent, (now() AT TIME ZONE 'UTC')::date - 10)
FROM unnest(ARRAY['events', 'deliveries', 'attempts']) parent;
INSERT INTO webhooks.events (created_at, event, payload)
VALUES (now() - interval '10 days', 'probe.created', '{}');
SELECT count(*) FROM webhooks.claim('retention', 100, 100, '{}', '1 minute')
WHERE webhook_id = :probe_hook;
UPDATE webhooks.deliveries SET state = 'pending' WHERE webhook_id = :probe_hook;
SELECT action, object = 'events_p' || :'old_day' AS is_old_day FROM webhooks.maintain()
WHERE object LIKE '%' || :'old_day' || '%' OR action = 'dropped';
UPDATE webhooks.deliveries SET state = 'delivered', due_at = NULL WHERE webhook_id = :probe_hook;
SELECT action, object = to_char(to_date(:'old_day', 'YYYYMMDD'), 'YYYY-MM-DD') AS is_old_day
FROM webhooks.maintain() WHERE action = 'dropped';
SELECT count(*) AS partitions_left FROM pg_class
WHERE relname LIKE '%_p' || :'old_day';

-- partitions belong to the extension, so pg_dump leaves events out and keeps the registry
SELECT count(*) AS partitions_outside_extension
FROM pg_inherits i
WHERE i.inhparent IN ('webhooks.events'::regclass, 'webhooks.deliveries'::regclass,
                      'webhooks.attempts'::regclass)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = i.inhrelid AND d.deptype = 'e');
SELECT c.relname, e.extcondition IS NOT NULL AS dumped
FROM pg_extension e, unnest(e.extconfig) cfg JOIN pg_class c ON c.oid = cfg
WHERE e.extname = 'pg_webhooks' ORDER BY c.relname;

-- a NULL setting means its default; a value overrides only itself
SELECT * FROM webhooks._settings();
UPDATE webhooks.settings SET retention = '14 days';
SELECT * FROM webhooks._settings();
SELECT try($$UPDATE webhooks.settings SET retention = '1 hour'$$);
UPDATE webhooks.settings SET retention = NULL;

-- an old day is kept while anything in it is still owed: an event not yet fanned out, a leased
-- delivery, a held one inside the replay window; held ones past it are expired and counted
-- first, then the day goes
SELECT to_char((now() AT TIME ZONE 'UTC')::date - 12, 'YYYYMMDD') AS day12 \gset
SELECT webhooks._create_partition(parent, (now() AT TIME ZONE 'UTC')::date - 12)
FROM unnest(ARRAY['events', 'deliveries', 'attempts']) parent;
INSERT INTO webhooks.events (created_at, event, payload)
VALUES (now() - interval '12 days', 'probe.created', '{"day": 12}');
SELECT action FROM webhooks.maintain() WHERE object LIKE '%' || :'day12' || '%';
SELECT count(*) AS leased FROM webhooks.claim('retention', 100, 100, '{}', '1 minute')
WHERE webhook_id = :probe_hook;
SELECT action FROM webhooks.maintain() WHERE object LIKE '%' || :'day12' || '%';
UPDATE webhooks.settings SET replay_window = '30 days';
SELECT webhooks.deactivate(:probe_hook);
UPDATE webhooks.deliveries SET state = 'held', due_at = NULL
WHERE webhook_id = :probe_hook AND state = 'leased';
SELECT action FROM webhooks.maintain() WHERE object LIKE '%' || :'day12' || '%';
UPDATE webhooks.settings SET replay_window = NULL;
SELECT action, object = to_char(to_date(:'day12', 'YYYYMMDD'), 'YYYY-MM-DD') AS is_day12
FROM webhooks.maintain() WHERE action <> 'created';
SELECT expired_events FROM webhooks.get(:probe_hook);
SELECT count(*) AS partitions_left FROM pg_class WHERE relname LIKE '%_p' || :'day12';
