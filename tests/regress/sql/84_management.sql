-- Copernica's management views: which webhooks apply to a database or a collection
-- (list(source => ...)), and a test request to every webhook of an app (test_all).
CREATE TABLE mgmt_profiles (id bigserial PRIMARY KEY, email text);
CREATE TABLE mgmt_orders (id bigserial PRIMARY KEY, profile_id bigint REFERENCES mgmt_profiles);
SELECT webhooks.track('mgmt_profiles', entity => 'mgmt_profile');
SELECT webhooks.track('mgmt_orders', entity => 'mgmt_order', parent => 'profile_id');
SELECT webhooks.create('mgmt', 'mgmt_profile.*', 'https://example.com/profiles') AS profiles \gset
SELECT webhooks.create('mgmt', 'mgmt_order.created', 'https://example.com/orders') AS orders \gset
SELECT webhooks.create('mgmt', '*', 'https://example.com/everything') AS everything \gset
SELECT webhooks.create('mgmt', 'email.opened', 'https://example.com/opens') AS opens \gset
SELECT webhooks.create('mgmt', '*', 'https://example.com/profiles-only') AS limited \gset
SELECT options FROM webhooks.configure(:limited, '{"source": "mgmt_profiles"}');

-- the webhooks each table's events go to (by pattern, or limited to it by source)
SELECT url FROM webhooks.list(app => 'mgmt', source => 'mgmt_profiles');
SELECT url FROM webhooks.list(app => 'mgmt', source => 'mgmt_orders');
SELECT try($$SELECT * FROM webhooks.list(source => 'no_such_table')$$);

-- a test request to each webhook of the app that may be sent one; an unverified one is left out
UPDATE webhooks.settings SET require_verification = true;
SELECT webhooks.create('mgmt', 'email.*', 'https://example.com/unverified') AS unverified \gset
UPDATE webhooks.settings SET require_verification = false;
SELECT count(*) AS tested, count(DISTINCT probe_id) AS probes,
       bool_and(webhook_id <> :unverified) AS unverified_left_out
FROM webhooks.test_all('mgmt');
SELECT kind, state, event FROM webhooks.probe_info WHERE webhook_id = :opens;
SELECT count(*) AS none FROM webhooks.test_all('no_such_app');
SELECT try($$SELECT * FROM webhooks.test_all(NULL)$$);
