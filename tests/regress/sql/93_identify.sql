-- webhooks.identify(): the identifiers a receiver knows a tracked table by (Copernica's database
-- and collection ids), sent as `database` and `collection` instead of table name and entity.
CREATE TABLE crm_profiles (id bigint PRIMARY KEY, email text);
CREATE TABLE crm_orders (id bigint PRIMARY KEY, profile_id bigint REFERENCES crm_profiles, total int);
SELECT webhooks.track('crm_profiles', entity => 'profile');
SELECT webhooks.track('crm_orders', entity => 'order', parent => 'profile_id');
SELECT webhooks.create('identify', 'profile.*', 'https://example.com/p') AS profile_hook \gset
SELECT webhooks.create('identify', 'order.*', 'https://example.com/o') AS order_hook \gset

SELECT source, database_name, collection_name
FROM webhooks.identify('crm_profiles', database => '12');
SELECT source, database_name, collection_name
FROM webhooks.identify('crm_orders', database => '12', collection => '34');

-- what claim() hands the relay as the event's data (the form renderer reads these)
INSERT INTO crm_profiles VALUES (1, 'ann@example.com');
INSERT INTO crm_orders VALUES (5, 1, 30);
SELECT webhook_id = :profile_hook AS profile_webhook,
       data::jsonb - 'new' - 'key' - 'table' - 'entity' AS identifiers
FROM webhooks.claim('identify-relay', 10, 10,
    (SELECT array_agg(id) FROM webhooks.webhooks WHERE id NOT IN (:profile_hook, :order_hook)),
    '1 minute')
ORDER BY 1 DESC;

-- NULL returns to the table's name and the entity
SELECT source, database_name, collection_name FROM webhooks.identify('crm_orders', NULL);

-- bad input: refused, naming the value; nothing changes
SELECT try('SELECT webhooks.identify(''crm_profiles'', ''12'', ''34'')');
SELECT try('SELECT webhooks.identify(''crm_profiles'', '' '')');
SELECT try(format('SELECT webhooks.identify(''crm_profiles'', %L)', repeat('x', 201)));
SELECT try('SELECT webhooks.identify(NULL, ''12'')');
CREATE TABLE crm_untracked (id int PRIMARY KEY);
SELECT try('SELECT webhooks.identify(''crm_untracked'', ''12'')');
SELECT source, database_name, collection_name FROM webhooks.tracked_tables
WHERE source IN ('crm_profiles'::regclass, 'crm_orders'::regclass) ORDER BY 1;

SELECT webhooks.delete(:profile_hook);
SELECT webhooks.delete(:order_hook);
SELECT webhooks.untrack('crm_orders');
SELECT webhooks.untrack('crm_profiles');
DROP TABLE crm_orders, crm_profiles, crm_untracked;
