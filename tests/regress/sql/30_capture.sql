-- Row changes of tracked tables become events in the same transaction.
CREATE TABLE profiles (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                       interests text[], settings json, location point);
SELECT webhooks.track('profiles', entity => 'profile');
SELECT source, entity, key_columns FROM webhooks.tracked_tables;

-- an insert emits <entity>.created with the new row
INSERT INTO profiles (email, country, interests, settings, location)
VALUES ('ann@example.com', 'NL', '{sports}', '{"a": 1}', '(1,2)');
SELECT event, source, payload FROM webhooks.events ORDER BY id DESC LIMIT 1;

-- an update emits <entity>.updated with old and new row and the changed columns
UPDATE profiles SET country = 'DE', interests = '{sports,music}' WHERE email = 'ann@example.com';
SELECT event, payload -> 'changed' AS changed, payload #>> '{old,country}' AS old_country,
       payload #>> '{new,country}' AS new_country
FROM webhooks.events ORDER BY id DESC LIMIT 1;

-- an update that changes nothing emits nothing, even with json and point columns
SELECT count(*) AS events_before FROM webhooks.events \gset
UPDATE profiles SET country = 'DE', settings = '{"a": 1}', location = '(1,2)';
SELECT count(*) - :events_before AS new_events FROM webhooks.events;

-- a delete emits <entity>.deleted with the old row
DELETE FROM profiles WHERE email = 'ann@example.com';
SELECT event, payload ? 'old' AS has_old, payload ? 'new' AS has_new
FROM webhooks.events ORDER BY id DESC LIMIT 1;

-- a 100-row statement emits 100 events
INSERT INTO profiles (email) SELECT 'bulk' || i || '@example.com' FROM generate_series(1, 100) i;
SELECT count(*) FROM webhooks.events WHERE event = 'profile.created'
                                       AND payload #>> '{new,email}' LIKE 'bulk%';

-- a rolled-back transaction leaves no event behind
SELECT count(*) AS events_before FROM webhooks.events \gset
BEGIN;
INSERT INTO profiles (email) VALUES ('rolled-back@example.com');
ROLLBACK;
SELECT count(*) - :events_before AS new_events FROM webhooks.events;

-- the origin is pg_webhooks.origin when set, else application_name
SET application_name = 'crm-frontend';
INSERT INTO profiles (email) VALUES ('origin1@example.com');
SET pg_webhooks.origin = 'squeezely';
INSERT INTO profiles (email) VALUES ('origin2@example.com');
RESET pg_webhooks.origin;
SELECT payload #>> '{new,email}' AS email, origin FROM webhooks.events
WHERE payload #>> '{new,email}' LIKE 'origin%' ORDER BY id;

-- composite, uuid and text primary keys, and a table without one
CREATE TABLE subscriptions (profile_id bigint, list text, PRIMARY KEY (profile_id, list));
CREATE TABLE devices (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text);
CREATE TABLE tags (name text PRIMARY KEY);
CREATE TABLE visits (at timestamptz, url text);
SELECT webhooks.track('subscriptions', entity => 'subscription');
SELECT webhooks.track('devices');
SELECT webhooks.track('tags', entity => 'tag');
SELECT webhooks.track('visits', entity => 'visit');
SELECT source, entity, key_columns FROM webhooks.tracked_tables ORDER BY entity;
INSERT INTO subscriptions VALUES (1, 'weekly');
UPDATE subscriptions SET list = 'daily' WHERE profile_id = 1;
INSERT INTO devices (name) VALUES ('phone');
INSERT INTO tags VALUES ('vip');
INSERT INTO visits VALUES ('2026-01-01', '/');
-- the key each request carries, as a webhook of these events claims them
SELECT webhooks.create('keys', '*', 'https://example.com/keys') AS keys_hook \gset
CREATE TEMP TABLE claimed_keys AS
SELECT event, event_id, data -> 'key' AS key
FROM webhooks.claim('keys', 1000, 1000,
                    ARRAY(SELECT id FROM webhooks.webhooks WHERE id <> :keys_hook), '1 minute')
WHERE webhook_id = :keys_hook;
SELECT event, key FROM claimed_keys
WHERE event ~ '^(subscription|devices|tag|visit)\.' AND event <> 'devices.created'
ORDER BY event_id;
SELECT jsonb_typeof(key -> 'id') AS uuid_key FROM claimed_keys WHERE event = 'devices.created';
SELECT webhooks.delete(:keys_hook);

-- partitioned tables: changes in every partition become events of the parent
CREATE TABLE orders (id bigint, placed date, PRIMARY KEY (id, placed)) PARTITION BY RANGE (placed);
CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT webhooks.track('orders', entity => 'order');
INSERT INTO orders VALUES (1, '2025-06-01'), (2, '2026-06-01');
UPDATE orders SET placed = '2026-07-01' WHERE id = 1;
DELETE FROM orders WHERE id = 2;
SELECT event, source, payload #>> '{new,placed}' AS new_placed, payload #>> '{old,placed}' AS old_placed
FROM webhooks.events WHERE event LIKE 'order.%' ORDER BY id;

-- TRUNCATE emits no events (it is not a row change; document and move on)
SELECT count(*) AS events_before FROM webhooks.events \gset
TRUNCATE tags;
SELECT count(*) - :events_before AS new_events FROM webhooks.events;

-- untrack stops the events and removes the triggers
SELECT webhooks.untrack('tags');
INSERT INTO tags VALUES ('after-untrack');
SELECT count(*) FROM webhooks.events WHERE payload #>> '{new,name}' = 'after-untrack';
SELECT count(*) AS capture_triggers FROM pg_trigger WHERE tgrelid = 'tags'::regclass;

-- a dropped table is forgotten
DROP TABLE visits;
SELECT entity FROM webhooks.tracked_tables ORDER BY entity;

-- emit records an application event in the caller's transaction and returns its id
SELECT webhooks.emit('email.opened', '{"recipient": "ann@example.com", "ip": "192.0.2.1"}') AS id \gset
SELECT id = :id AS same_id, event, source, payload FROM webhooks.events WHERE id = :id;
SELECT webhooks.emit('email.clicked', '{}', origin => 'mailer') AS id \gset
SELECT origin FROM webhooks.events WHERE id = :id;

-- a multi-row update pairs each row's old and new image, also for rows that moved partition
INSERT INTO orders VALUES (10, '2025-02-01'), (11, '2025-03-01'), (12, '2026-04-01');
UPDATE orders SET placed = CASE id WHEN 10 THEN date '2026-02-01'  -- moves to orders_2026
                                   WHEN 11 THEN date '2025-03-02'  -- stays
                                   ELSE date '2026-04-02' END      -- stays
WHERE id >= 10;
SELECT payload #>> '{old,id}' AS old_id, payload #>> '{new,id}' AS new_id,
       payload #>> '{old,placed}' AS old_placed, payload #>> '{new,placed}' AS new_placed,
       payload -> 'changed' AS changed
FROM webhooks.events WHERE event = 'order.updated' ORDER BY id;

-- writes made directly to a partition are events of the tracked table, also in partitions
-- created or attached after track(), at any depth; untrack removes every capture trigger
CREATE TABLE regions (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE regions_nl PARTITION OF regions FOR VALUES IN ('nl');
SELECT webhooks.track('regions', entity => 'region');
CREATE TABLE regions_de PARTITION OF regions FOR VALUES IN ('de') PARTITION BY RANGE (id);
CREATE TABLE regions_de_low PARTITION OF regions_de FOR VALUES FROM (0) TO (100);
CREATE TABLE regions_be (id int NOT NULL, region text NOT NULL);
ALTER TABLE regions ATTACH PARTITION regions_be FOR VALUES IN ('be');
INSERT INTO regions VALUES (1, 'nl');        -- through the parent: one event, not two
INSERT INTO regions_nl VALUES (2, 'nl');
INSERT INTO regions_de_low VALUES (3, 'de');
INSERT INTO regions_be VALUES (4, 'be');
UPDATE regions_be SET id = 5;
DELETE FROM regions_de;
SELECT event, source, payload FROM webhooks.events WHERE source = 'regions'::regclass ORDER BY id;
SELECT count(*) AS events_of_partitions FROM webhooks.events
WHERE source IN ('regions_nl'::regclass, 'regions_de'::regclass, 'regions_be'::regclass);
SELECT webhooks.untrack('regions');
SELECT count(*) AS capture_triggers FROM pg_trigger t
JOIN webhooks._table_tree('regions') rel ON rel = t.tgrelid;
DROP TABLE regions;
