-- webhooks.enrich(): a child or link table's events carry chosen columns of the parent row its
-- foreign key points to, as `parent`, read in the writer's transaction with the writer's rights.
CREATE TABLE en_contacts (id bigint PRIMARY KEY, email text, "First Name" text, "it's" text,
                          secret text);
CREATE TABLE en_tags (id serial PRIMARY KEY,
                      contact_id bigint REFERENCES en_contacts ON DELETE CASCADE, tag text);
SELECT webhooks.track('en_contacts', entity => 'contact');
SELECT webhooks.track('en_tags', entity => 'tag', parent => 'contact_id');
INSERT INTO en_contacts VALUES (1, 'ann@example.com', 'Ann', 'x', 's1'),
                               (2, 'bob@example.com', 'Bob', 'y', 's2');

-- the events written since the last call, without ids
CREATE FUNCTION en_events() RETURNS TABLE (event text, payload jsonb) LANGUAGE sql AS $$
    SELECT e.event, e.payload
    FROM webhooks.events e
    WHERE e.id > coalesce(current_setting('en.seen', true), '0')::bigint
      AND e.event LIKE 'tag.%'
    ORDER BY e.id
$$;
CREATE FUNCTION en_seen() RETURNS void LANGUAGE sql AS $$
    SELECT set_config('en.seen', (SELECT coalesce(max(id), 0)::text FROM webhooks.events), false)
$$;
SELECT en_seen();

-- the choice: shown by tracked_tables, and held by the capture triggers' arguments
SELECT source, parent_column, parent_table, parent_values
FROM webhooks.enrich('en_tags', ARRAY['email', 'First Name', 'it''s']);
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
WHERE tgrelid = 'en_tags'::regclass AND tgname LIKE 'webhooks_capture_%' ORDER BY tgname;

-- inserts, one row and many, carry the parent's values of the moment; other columns stay home
INSERT INTO en_tags (contact_id, tag) VALUES (1, 'vip');
UPDATE en_contacts SET email = 'ann@new.example' WHERE id = 1;
INSERT INTO en_tags (contact_id, tag) VALUES (1, 'buyer'), (2, 'vip'), (1, 'late');
SELECT event, payload->'new'->>'tag' AS tag, payload->'parent' AS parent FROM en_events();
SELECT en_seen();

-- an update carries the parent of the new row (a tag moved to another contact); a delete the
-- parent of the old one
UPDATE en_tags SET contact_id = 2 WHERE tag = 'late';
DELETE FROM en_tags WHERE tag = 'buyer';
SELECT event, payload->'changed' AS changed, payload->'parent' AS parent FROM en_events();
SELECT en_seen();

-- a row without a parent (a NULL key), and rows whose parent is gone (its delete cascading to
-- them), carry null
INSERT INTO en_tags (contact_id, tag) VALUES (NULL, 'orphan');
DELETE FROM en_contacts WHERE id = 2;
SELECT event, payload->'old'->>'tag' AS old_tag, payload->'new'->>'tag' AS new_tag,
       payload->'parent' AS parent
FROM en_events();
SELECT en_seen();
INSERT INTO en_contacts VALUES (2, 'bob@example.com', 'Bob', 'y', 's2');

-- schema changes do not stop writes: a column the parent no longer has is sent as null, and
-- without the foreign key there is no parent row to find
ALTER TABLE en_contacts RENAME COLUMN email TO mail;
INSERT INTO en_tags (contact_id, tag) VALUES (1, 'renamed');
ALTER TABLE en_contacts RENAME COLUMN mail TO email;
ALTER TABLE en_tags DROP CONSTRAINT en_tags_contact_id_fkey;
INSERT INTO en_tags (contact_id, tag) VALUES (1, 'no foreign key');
ALTER TABLE en_tags ADD FOREIGN KEY (contact_id) REFERENCES en_contacts ON DELETE CASCADE;
INSERT INTO en_tags (contact_id, tag) VALUES (1, 'foreign key again');
SELECT payload->'new'->>'tag' AS tag, payload->'parent' AS parent FROM en_events();
SELECT en_seen();

-- read with the writer's rights: a writer who may not read the parent's columns cannot write
-- the table (PostgreSQL's own error), and one who may needs no grant on the webhooks schema
CREATE ROLE en_writer;
GRANT INSERT ON en_tags TO en_writer;
GRANT USAGE ON SEQUENCE en_tags_id_seq TO en_writer;
SET ROLE en_writer;
SELECT try('INSERT INTO en_tags (contact_id, tag) VALUES (1, ''by a writer'')');
RESET ROLE;
GRANT SELECT (id, email, "First Name", "it's") ON en_contacts TO en_writer;
SET ROLE en_writer;
SELECT try('INSERT INTO en_tags (contact_id, tag) VALUES (1, ''by a writer'')');
RESET ROLE;
SELECT payload->'new'->>'tag' AS tag, payload->'parent' AS parent FROM en_events();
SELECT en_seen();

-- bad input: refused, naming the value; nothing changes
CREATE TABLE en_untracked (id int PRIMARY KEY);
CREATE TABLE en_loose (id int PRIMARY KEY, contact_id bigint);
SELECT webhooks.track('en_loose', entity => 'loose', parent => 'contact_id');
SELECT try('SELECT webhooks.enrich(NULL, ARRAY[''email''])');
SELECT try('SELECT webhooks.enrich(''en_untracked'', ARRAY[''email''])');
SELECT try('SELECT webhooks.enrich(''en_contacts'', ARRAY[''email''])');
SELECT try('SELECT webhooks.enrich(''en_loose'', ARRAY[''email''])');
SELECT try(format('SELECT webhooks.enrich(''en_tags'', %L)',
                  (SELECT array_agg('c' || n) FROM generate_series(1, 21) n)));
SELECT try('SELECT webhooks.enrich(''en_tags'', ARRAY[''email'', NULL])');
SELECT try('SELECT webhooks.enrich(''en_tags'', ARRAY[''email'', ''email''])');
SELECT try('SELECT webhooks.enrich(''en_tags'', ARRAY[''email'', ''phone''])');
SELECT try('SELECT webhooks.enrich(''en_tags'', ARRAY[''email'', ''tableoid''])');
-- an admin who does not own the table may not change its triggers
CREATE ROLE en_admin IN ROLE webhooks_admin;
SET ROLE en_admin;
SELECT try('SELECT webhooks.enrich(''en_tags'', ARRAY[''secret''])');
-- nor one that owns the child table choose a parent table it does not own: the parent's row
-- security policies would run with the writers' rights
RESET ROLE;
CREATE TABLE en_notes (id int PRIMARY KEY, contact_id bigint REFERENCES en_contacts);
SELECT webhooks.track('en_notes', entity => 'note', parent => 'contact_id');
ALTER TABLE en_notes OWNER TO en_admin;
SET ROLE en_admin;
SELECT try('SELECT webhooks.enrich(''en_notes'', ARRAY[''email''])');
-- nor make tracked_tables say something the triggers do not
SELECT webhooks._remember_parent_values('en_tags');
RESET ROLE;
SELECT source, parent_values FROM webhooks.tracked_tables
WHERE source IN ('en_tags'::regclass, 'en_loose'::regclass) ORDER BY 1;
SELECT count(*) AS capture_triggers_with_arguments FROM pg_trigger
WHERE tgrelid = 'en_tags'::regclass AND tgname LIKE 'webhooks_capture_%' AND tgnargs = 4;

-- a partitioned child table: every partition sends them, one created later too
CREATE TABLE en_visits (contact_id bigint REFERENCES en_contacts, at date) PARTITION BY RANGE (at);
CREATE TABLE en_visits_2026 PARTITION OF en_visits
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT webhooks.track('en_visits', entity => 'visit', parent => 'contact_id');
SELECT parent_values FROM webhooks.enrich('en_visits', ARRAY['email']);
CREATE TABLE en_visits_2027 PARTITION OF en_visits
    FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT tgrelid::regclass AS partition, tgnargs FROM pg_trigger
WHERE tgrelid IN ('en_visits_2026'::regclass, 'en_visits_2027'::regclass)
  AND tgname = 'webhooks_capture_insert' ORDER BY 1;
INSERT INTO en_visits VALUES (1, '2027-03-01');
SELECT e.event, e.payload->'parent' AS parent FROM webhooks.events e
WHERE e.event = 'visit.created' AND e.id > current_setting('en.seen')::bigint ORDER BY e.id;

-- a webhook's column lists apply to the parent's values too
SELECT count(*) >= 0 AS drained FROM webhooks.claim('setup', 100000, 100000, '{}', '1 hour');
SELECT webhooks.create('enrich', 'tag.created', 'https://example.com/t') AS tag_hook \gset
SELECT options FROM webhooks.configure(:tag_hook, '{"exclude_columns": ["email"]}');
INSERT INTO en_tags (contact_id, tag) VALUES (1, 'listed');
SELECT data::jsonb -> 'new' ->> 'tag' AS tag, data::jsonb -> 'parent' AS parent
FROM webhooks.claim('enrich-relay', 10, 10,
    (SELECT array_agg(id) FROM webhooks.webhooks WHERE id <> :tag_hook), '1 minute');
SELECT webhooks.delete(:tag_hook);
SELECT en_seen();

-- a trigger of the owner's own under the capture trigger's name does not choose what new
-- partitions get
ALTER TRIGGER webhooks_capture_insert ON en_visits RENAME TO en_real_insert;
CREATE FUNCTION en_decoy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER webhooks_capture_insert AFTER INSERT ON en_visits
    FOR EACH STATEMENT EXECUTE FUNCTION en_decoy('contact_id', 'secret');
SELECT webhooks._capture_arguments('en_visits') AS copied_to_new_partitions;
DROP TRIGGER webhooks_capture_insert ON en_visits;
DROP FUNCTION en_decoy();
ALTER TRIGGER en_real_insert ON en_visits RENAME TO webhooks_capture_insert;
SELECT webhooks._capture_arguments('en_visits') AS copied_to_new_partitions;

-- a kept plan survives the parent's schema being renamed; a trigger made by hand with more
-- columns than enrich() allows sends the first 20
CREATE SCHEMA en_crm;
CREATE TABLE en_crm.people (id int PRIMARY KEY, email text);
CREATE TABLE en_pets (id int PRIMARY KEY, owner_id int REFERENCES en_crm.people);
INSERT INTO en_crm.people VALUES (1, 'pet@example.com');
SELECT webhooks.track('en_pets', entity => 'pet', parent => 'owner_id');
SELECT parent_values FROM webhooks.enrich('en_pets', ARRAY['email']);
INSERT INTO en_pets VALUES (1, 1);
ALTER SCHEMA en_crm RENAME TO en_crm_renamed;
INSERT INTO en_pets VALUES (2, 1);
SELECT webhooks._drop_capture_triggers('en_pets');
SELECT webhooks._add_capture_triggers('en_pets',
    ARRAY['owner_id'] || (SELECT array_agg('c' || n) FROM generate_series(1, 60) n));
INSERT INTO en_pets VALUES (3, 1);
SELECT e.payload->'new'->>'id' AS pet, e.payload->'parent' AS parent FROM webhooks.events e
WHERE e.event = 'pet.created' ORDER BY e.id;
SELECT webhooks.untrack('en_pets');
DROP TABLE en_pets, en_crm_renamed.people;
DROP SCHEMA en_crm_renamed;

-- each backend keeps the parent query's plan; a schema change made while one capture runs
-- inside another (a cast the row image runs writes to another enriched table) is seen by both,
-- and the outer one's plan stays usable
CREATE TYPE en_mood AS ENUM ('happy');
CREATE FUNCTION en_mood_json(mood en_mood) RETURNS json LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
    ALTER TABLE en_contacts RENAME COLUMN email TO mail;
    INSERT INTO en_tags (contact_id, tag) VALUES (1, 'inside a cast');
    ALTER TABLE en_contacts RENAME COLUMN mail TO email;
    RETURN to_json(mood::text);
END $$;
CREATE CAST (en_mood AS json) WITH FUNCTION en_mood_json(en_mood);
CREATE TABLE en_moods (id serial PRIMARY KEY, contact_id bigint REFERENCES en_contacts,
                       mood en_mood);
SELECT webhooks.track('en_moods', entity => 'mood', parent => 'contact_id');
SELECT parent_values FROM webhooks.enrich('en_moods', ARRAY['email']);
INSERT INTO en_moods (contact_id, mood) VALUES (1, NULL);
INSERT INTO en_moods (contact_id, mood) VALUES (1, 'happy'), (1, 'happy');
INSERT INTO en_moods (contact_id, mood) VALUES (1, NULL);
SELECT e.event, e.payload->'new'->>'tag' AS tag, e.payload->'new'->>'mood' AS mood,
       e.payload->'parent' AS parent
FROM webhooks.events e
WHERE e.event IN ('mood.created', 'tag.created') AND e.id > current_setting('en.seen')::bigint
ORDER BY e.id;
SELECT en_seen();

-- NULL stops sending them: the triggers lose their arguments, events their `parent`
SELECT source, parent_values FROM webhooks.enrich('en_tags', NULL);
SELECT count(*) AS capture_triggers_with_arguments FROM pg_trigger
WHERE tgrelid = 'en_tags'::regclass AND tgname LIKE 'webhooks_capture_%' AND tgnargs > 0;
INSERT INTO en_tags (contact_id, tag) VALUES (1, 'plain');
SELECT payload ? 'parent' AS has_parent FROM en_events();

SELECT webhooks.untrack('en_notes');
SELECT webhooks.untrack('en_moods');
SELECT webhooks.untrack('en_visits');
SELECT webhooks.untrack('en_loose');
SELECT webhooks.untrack('en_tags');
SELECT webhooks.untrack('en_contacts');
DROP TABLE en_notes, en_moods, en_visits, en_loose, en_untracked, en_tags, en_contacts;
DROP CAST (en_mood AS json);
DROP FUNCTION en_mood_json(en_mood);
DROP TYPE en_mood;
DROP FUNCTION en_events(), en_seen();
DROP ROLE en_writer, en_admin;
