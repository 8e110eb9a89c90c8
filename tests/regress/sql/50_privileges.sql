-- Who may do what. An application role that may only write its own table still produces
-- events; it cannot read secrets, manage webhooks or read deliveries.
CREATE ROLE app_writer LOGIN;
CREATE ROLE hook_admin LOGIN IN ROLE webhooks_admin;
CREATE ROLE relay_login LOGIN IN ROLE webhooks_relay;
CREATE TABLE members (id serial PRIMARY KEY, email text);
CREATE TABLE not_the_admins (id int PRIMARY KEY);
SELECT webhooks.track('members', entity => 'member');
GRANT INSERT, UPDATE, DELETE, SELECT ON members TO app_writer;
GRANT USAGE ON SEQUENCE members_id_seq TO app_writer;

SET ROLE app_writer;
-- writing the tracked table works and produces events, with no grant on the webhooks schema
INSERT INTO members (email) VALUES ('writer@example.com');
UPDATE members SET email = 'writer2@example.com';
DELETE FROM members;
-- but nothing inside the schema is reachable
SELECT try($$SELECT secret FROM webhooks.webhooks$$);
SELECT try($$SELECT webhooks.secret(1)$$);
SELECT try($$SELECT * FROM webhooks.list()$$);
SELECT try($$SELECT webhooks.create('x', '*', 'https://example.com/')$$);
SELECT try($$SELECT * FROM webhooks.delivery_status$$);
SELECT try($$SELECT * FROM webhooks.events$$);
SELECT try($$SELECT webhooks.emit('email.opened', '{}')$$);
SELECT try($$SELECT * FROM webhooks.claim('x', 1, 1, '{}', '1 minute')$$);
SELECT try($$INSERT INTO webhooks.events (event, payload) VALUES ('fake.event', '{}')$$);
RESET ROLE;
SELECT event, origin IS NOT NULL AS has_origin FROM webhooks.events
WHERE event LIKE 'member.%' ORDER BY id;

-- the admin role manages webhooks and reads history and secrets, but not the tables directly
SET ROLE hook_admin;
SELECT webhooks.create('admin-app', 'member.*', 'https://example.com/members') AS admin_hook \gset
SELECT webhooks.secret(:admin_hook) LIKE 'whsec_%' AS reads_secret;
SELECT count(*) >= 0 AS reads_history FROM webhooks.delivery_status;
SELECT webhooks.emit('email.opened', '{}') > 0 AS emits;
SELECT try($$SELECT secret FROM webhooks.webhooks$$);
SELECT try($$SELECT * FROM webhooks.claim('x', 1, 1, '{}', '1 minute')$$);
-- tracking needs the TRIGGER privilege on the table, like CREATE TRIGGER does
SELECT try($$SELECT webhooks.track('not_the_admins')$$);
RESET ROLE;

-- the relay role claims and acknowledges, and can do nothing else
SET ROLE relay_login;
SELECT count(*) >= 0 AS claims FROM webhooks.claim('relay', 10, 10, '{}', '1 minute');
SELECT webhooks.ack('relay', '[]') AS acked;
SELECT webhooks.relay_idle('relay', false);
SELECT count(*) >= 0 AS maintains FROM webhooks.maintain();
SELECT try($$SELECT webhooks.create('x', '*', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.secret(1)$$);
SELECT try($$SELECT * FROM webhooks.webhooks$$);
SELECT try($$SELECT webhooks.track('members')$$);
RESET ROLE;

-- every function runs with a fixed search_path, so a caller's schema cannot hijack it
SELECT p.proname FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace AND p.prosecdef
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
SELECT webhooks.relay_leave('relay');
