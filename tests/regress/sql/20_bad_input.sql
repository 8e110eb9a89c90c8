-- Bad input gets a clear error with a proper SQLSTATE naming the bad value, and writes nothing.
SELECT * FROM written;

-- URLs
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', 'ftp://example.com/hook')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', 'example.com/hook')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', 'http://')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', 'mailto:a@example.com')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', 'https://user:pw@example.com/')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', 'https://example.com/#frag')$$);

-- event names and patterns
SELECT try($$SELECT webhooks.create('crm', 'Profile.Updated', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.*.x', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.create('crm', 'drop table x;--', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.emit('email opened', '{}')$$);
SELECT try($$SELECT webhooks.emit('email.*', '{}')$$);

-- nulls and empty strings
SELECT try($$SELECT webhooks.create(NULL, 'profile.updated', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.create('', 'profile.updated', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.create('crm', NULL, 'https://example.com/')$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', NULL)$$);
SELECT try($$SELECT webhooks.create('crm', 'profile.updated', '  ')$$);
SELECT try($$SELECT webhooks.emit(NULL, '{}')$$);
SELECT try($$SELECT webhooks.emit('email.opened', NULL)$$);
SELECT try($$SELECT webhooks.get(NULL)$$);
SELECT try($$SELECT webhooks.activate(1, replay_events => NULL)$$);
SELECT try($$SELECT webhooks.track(NULL)$$);

-- other values
SELECT try($$SELECT webhooks.emit('email.opened', '[1, 2]')$$);
SELECT try($$SELECT webhooks.create('crm', '*', 'https://example.com/', max_in_flight => 0)$$);
SELECT try($$SELECT webhooks.create('crm', '*', 'https://example.com/', rate_limit_per_second => -1)$$);
-- NaN counts above every number in PostgreSQL, and a rate this slow made the relay panic
SELECT try(format($$SELECT webhooks.create('crm', '*', 'https://example.com/', rate_limit_per_second => %L)$$, r))
FROM unnest(ARRAY['NaN', 'Infinity', '1e-20']) r;
SELECT try($$SELECT webhooks.create('crm', '*', 'https://example.com/', max_in_flight => 100000)$$);
SELECT try($$SELECT webhooks.create('crm', '*', 'https://example.com/', secret => 'hunter2')$$);
SELECT try($$SELECT webhooks.create('crm', '*', 'https://example.com/', secret => 'whsec_c2hvcnQ=')$$);
SELECT try($$SELECT webhooks.rotate_secret(1, overlap => '-1 hour')$$);

-- unknown ids
SELECT try($$SELECT webhooks.get(999)$$);
SELECT try($$SELECT webhooks.activate(999)$$);
SELECT try($$SELECT webhooks.deactivate(999)$$);
SELECT try($$SELECT webhooks.delete(999)$$);
SELECT try($$SELECT webhooks.rotate_secret(999)$$);
SELECT try($$SELECT webhooks.secret(999)$$);
SELECT try($$SELECT webhooks.redeliver(999)$$);

-- tracking what cannot be tracked
CREATE TABLE bad_input_table (id int PRIMARY KEY);
CREATE VIEW bad_input_view AS SELECT 1 AS id;
CREATE MATERIALIZED VIEW bad_input_matview AS SELECT 1 AS id;
CREATE TABLE bad_input_parted (id int, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE bad_input_part PARTITION OF bad_input_parted FOR VALUES FROM (0) TO (10);
SELECT try($$SELECT webhooks.track('bad_input_view')$$);
SELECT try($$SELECT webhooks.track('bad_input_matview')$$);
SELECT try($$SELECT webhooks.track('no_such_table')$$);
SELECT try($$SELECT webhooks.track('bad_input_part')$$);
SELECT try($$SELECT webhooks.track('webhooks.events')$$);
SELECT try($$SELECT webhooks.track('bad_input_table', entity => 'Bad Entity')$$);
SELECT try($$SELECT webhooks.untrack('bad_input_table')$$);
SELECT webhooks.track('bad_input_table');
SELECT try($$SELECT webhooks.track('bad_input_table')$$);
SELECT webhooks.untrack('bad_input_table');

-- nothing above wrote anything
SELECT * FROM written;
