-- Per-webhook options (webhooks.configure): what is accepted, what is refused and how, and the
-- fan-out decisions they lead to (tests/tests/formats.rs and filters.rs send them for real).
CREATE TABLE opt_profiles (id bigserial PRIMARY KEY, email text, country text, password_hash text);
CREATE TABLE opt_orders (id bigserial PRIMARY KEY, profile_id bigint REFERENCES opt_profiles);
SELECT webhooks.track('opt_profiles', entity => 'opt');
SELECT webhooks.track('opt_orders', entity => 'opt_order', parent => 'profile_id');
SELECT source, parent_column, parent_table FROM webhooks.tracked_tables WHERE source::text LIKE 'opt%';
SELECT try($$SELECT webhooks.track('opt_profiles', parent => 'no_such_column')$$);
SELECT webhooks.create('opt', 'opt.*', 'https://example.com/hook?e=__email__') AS hook \gset
SELECT count(*) >= 0 AS drained FROM webhooks.claim('setup', 100000, 100000, '{}', '1 hour');

-- accepted options show in get(); null returns an option to its default
SELECT options FROM webhooks.configure(:hook, '{"format": "form", "method": "PUT",
    "fields": [{"column": "first_name", "name": "fname", "default": "friend"}, {"column": "country"}],
    "key_field": "email", "parameters": {"account": "shop", "n": 1},
    "source": "opt_profiles", "filter": "$.new.country == \"NL\"", "on_change": ["email"],
    "exclude_columns": ["password_hash"], "exclude_origins": ["squeezely"],
    "throttle": "6 hours", "throttle_per": "email"}');
SELECT options FROM webhooks.configure(:hook, '{"format": null, "method": null, "fields": null,
    "parameters": null, "filter": null, "on_change": null, "throttle": null, "throttle_per": null}');

-- refused, naming the bad value, and nothing changes
SELECT try(format($$SELECT webhooks.configure(%s, %L)$$, :hook, o)) FROM unnest(ARRAY[
    '{"colour": "red"}',
    '[1]',
    '{"format": "xml"}',
    '{"method": "DELETE"}',
    '{"method": "GET"}',
    '{"fields": []}',
    '{"fields": [{"name": "x"}]}',
    '{"fields": [{"column": "a", "name": "x"}, {"column": "b", "name": "x"}]}',
    '{"fields": [{"column": "a", "extra": 1}]}',
    '{"parameters": {"a": {"nested": 1}}}',
    '{"source": "opt_orders; DROP TABLE opt_profiles"}',
    '{"source": "pg_class"}',
    '{"filter": "$.new ? (@.country == \"NL\"))"}',
    '{"filter": "1; DROP TABLE opt_profiles"}',
    '{"on_change": "email"}',
    '{"on_change": [""]}',
    '{"exclude_origins": [1]}',
    '{"throttle": "soon", "throttle_per": "email"}',
    '{"throttle": "-1 hour", "throttle_per": "email"}',
    '{"throttle": "100000000 years", "throttle_per": "email"}',
    '{"throttle": "1 hour"}'
]) o;
SELECT try(format('SELECT webhooks.configure(%s, NULL)', :hook));
SELECT try('SELECT webhooks.configure(999, ''{}'')');
SELECT options FROM webhooks.get(:hook);
SELECT try(format($$SELECT webhooks.update(%s, url => 'https://__host__.example/')$$, :hook));
-- with fields, every URL placeholder must be one of them (or the key field)
SELECT options FROM webhooks.configure(:hook, '{"fields": [{"column": "country"}]}');
SELECT try(format($$SELECT webhooks.update(%s, url => 'https://example.com/?n=__nickname__')$$, :hook));
SELECT url, options -> 'fields' AS fields FROM webhooks.get(:hook);
-- a field that gives the key column a name of its own: the URL's __email__ is then unfilled
SELECT try(format($$SELECT webhooks.configure(%s, '{"fields": [{"column": "email", "name": "EmailAddress"}]}')$$, :hook));

-- what fan-out sends: filter, source, origins, visible changes
SELECT options FROM webhooks.configure(:hook, '{"filter": "$.new.country == \"NL\"",
    "exclude_origins": ["squeezely"], "source": null}');
INSERT INTO opt_profiles (email, country, password_hash) VALUES ('nl@example.com', 'NL', 'h1'),
                                                                ('de@example.com', 'DE', 'h2');
SET pg_webhooks.origin = 'squeezely';
INSERT INTO opt_profiles (email, country) VALUES ('loop@example.com', 'NL');
RESET pg_webhooks.origin;
UPDATE opt_profiles SET password_hash = 'h3' WHERE email = 'nl@example.com';
UPDATE opt_profiles SET email = 'nl2@example.com' WHERE email = 'nl@example.com';
INSERT INTO opt_orders (profile_id) VALUES (1);
SELECT event, data -> 'new' AS new, data -> 'changed' AS changed, format, method, key_field,
       parameters
FROM webhooks.claim('relay', 100, 100, '{}', '1 minute') ORDER BY event_id;

-- a predicate must hold, any other path must find something; data errors count as no
SELECT webhooks._path_holds('$.new.country == "NL"', '{"new": {"country": "NL"}}') AS predicate,
       webhooks._path_holds('$.new ? (@.vip == true)', '{"new": {"vip": true}}') AS found,
       webhooks._path_holds('$.new ? (@.vip == true)', '{"new": {"vip": false}}') AS not_found,
       webhooks._path_holds('strict $.new.missing == 1', '{"new": {}}') AS data_error;
