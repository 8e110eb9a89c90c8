-- Each backend keeps what webhooks.tracked says of the tables it writes
-- (pg_webhooks/src/capture/tracking.rs). Any change of the tracking reaches a writer's next
-- statement, a change rolled back leaves the kept tracking as it was, and a partition written
-- directly keeps its root's. Across sessions: tests/isolation/specs/tracking_change_beside_writer.
CREATE TABLE kept_members (id bigserial PRIMARY KEY, email text NOT NULL);
SELECT webhooks.track('kept_members', entity => 'kept_member');
CREATE FUNCTION last_event() RETURNS text LANGUAGE sql AS
    $$SELECT event || ' ' || coalesce(payload #>> '{new,email}', payload #>> '{old,email}')
      FROM webhooks.events ORDER BY id DESC LIMIT 1$$;

INSERT INTO kept_members (email) VALUES ('first@example.com');
SELECT last_event();

-- changed by hand: the next statement of this session writes the new entity
UPDATE webhooks.tracked SET entity = 'subscriber' WHERE source = 'kept_members'::regclass;
INSERT INTO kept_members (email) VALUES ('second@example.com');
SELECT last_event();

-- a change rolled back: the entity that was committed applies again
BEGIN;
UPDATE webhooks.tracked SET entity = 'rolled_back' WHERE source = 'kept_members'::regclass;
INSERT INTO kept_members (email) VALUES ('inside@example.com');
SELECT last_event();
ROLLBACK;
INSERT INTO kept_members (email) VALUES ('after-rollback@example.com');
SELECT last_event();

-- the same within a subtransaction
BEGIN;
SAVEPOINT renamed;
UPDATE webhooks.tracked SET entity = 'in_savepoint' WHERE source = 'kept_members'::regclass;
INSERT INTO kept_members (email) VALUES ('savepoint@example.com');
ROLLBACK TO SAVEPOINT renamed;
INSERT INTO kept_members (email) VALUES ('after-savepoint@example.com');
SELECT last_event();
COMMIT;

-- while the triggers that announce changes do not fire ALWAYS (disabled, or turned to ORIGIN as
-- a restore's ENABLE TRIGGER does), nothing is kept: a change by hand still applies at once
ALTER TABLE webhooks.tracked DISABLE TRIGGER tracking_reaches_writers;
INSERT INTO kept_members (email) VALUES ('unannounced@example.com');
UPDATE webhooks.tracked SET entity = 'unannounced' WHERE source = 'kept_members'::regclass;
INSERT INTO kept_members (email) VALUES ('unannounced-2@example.com');
SELECT last_event();
ALTER TABLE webhooks.tracked ENABLE TRIGGER tracking_reaches_writers;
UPDATE webhooks.tracked SET entity = 'origin_only' WHERE source = 'kept_members'::regclass;
INSERT INTO kept_members (email) VALUES ('origin@example.com');
SET session_replication_role = replica;
UPDATE webhooks.tracked SET entity = 'replicated' WHERE source = 'kept_members'::regclass;
RESET session_replication_role;
INSERT INTO kept_members (email) VALUES ('replicated@example.com');
SELECT last_event();
ALTER TABLE webhooks.tracked ENABLE ALWAYS TRIGGER tracking_reaches_writers;
UPDATE webhooks.tracked SET entity = 'subscriber' WHERE source = 'kept_members'::regclass;

-- untracked and tracked again under another entity
SELECT webhooks.untrack('kept_members');
INSERT INTO kept_members (email) VALUES ('untracked@example.com');
SELECT count(*) AS events_of_untracked FROM webhooks.events WHERE payload #>> '{new,email}' = 'untracked@example.com';
SELECT webhooks.track('kept_members', entity => 'person');
UPDATE kept_members SET email = 'renamed@example.com' WHERE email = 'first@example.com';
SELECT last_event();

-- a TRUNCATE of the tracking, rolled back, and then a write
BEGIN;
TRUNCATE webhooks.tracked;
INSERT INTO kept_members (email) VALUES ('truncated@example.com');
SELECT count(*) AS events_while_truncated FROM webhooks.events WHERE payload #>> '{new,email}' = 'truncated@example.com';
ROLLBACK;
DELETE FROM kept_members WHERE email = 'second@example.com';
SELECT last_event();

-- a partition written directly carries its root's tracking, also once its root's changes
CREATE TABLE kept_visits (id bigint, day date NOT NULL, PRIMARY KEY (id, day), email text)
    PARTITION BY RANGE (day);
CREATE TABLE kept_visits_2026 PARTITION OF kept_visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT webhooks.track('kept_visits', entity => 'visit');
INSERT INTO kept_visits_2026 VALUES (1, '2026-06-01', 'direct@example.com');
SELECT last_event(), (SELECT source FROM webhooks.events ORDER BY id DESC LIMIT 1);
UPDATE webhooks.tracked SET entity = 'stay' WHERE source = 'kept_visits'::regclass;
INSERT INTO kept_visits_2026 VALUES (2, '2026-06-02', 'direct-again@example.com');
SELECT last_event();
-- detached, the partition is no table of a tracked tree: its own triggers find no tracking
ALTER TABLE kept_visits DETACH PARTITION kept_visits_2026;
INSERT INTO kept_visits_2026 VALUES (3, '2026-06-03', 'detached@example.com');
SELECT count(*) AS events_of_detached FROM webhooks.events WHERE payload #>> '{new,email}' = 'detached@example.com';

-- (the events of this file are not kept: later files count events)
DELETE FROM webhooks.events WHERE source IN ('kept_members'::regclass, 'kept_visits'::regclass);
DROP TABLE kept_visits, kept_visits_2026;
SELECT webhooks.untrack('kept_members');
DROP TABLE kept_members;
DROP FUNCTION last_event();
