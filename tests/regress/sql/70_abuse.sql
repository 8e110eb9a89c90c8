-- Hostile and out-of-range input to every text parameter of the SQL API: refused with a
-- documented SQLSTATE, or stored as plain data; never executed. A canary table shows no
-- statement ever ran, and the written counts show refused calls wrote nothing.
CREATE TABLE canary (id int);
INSERT INTO canary VALUES (1);
CREATE TABLE abuse_profiles (id int PRIMARY KEY, email text);
SELECT webhooks.create('abuse', 'abuse.*', 'https://example.com/hook') AS hook \gset
SELECT * FROM written;

-- SQL in every text parameter
SELECT try(format($$SELECT webhooks.create(%L, 'abuse.x', 'https://example.com/')$$, a))
FROM unnest(ARRAY['x''); DROP TABLE canary; --', repeat('a', 201)]) a;
SELECT try($$SELECT webhooks.create('abuse', 'abuse.x''); DROP TABLE canary; --', 'https://example.com/')$$);
SELECT try($$SELECT webhooks.create('abuse', 'abuse.x', 'https://example.com/''); DROP TABLE canary; --')$$);
SELECT try($$SELECT webhooks.create('abuse', 'abuse.x', 'https://example.com/', description => repeat('d', 2001))$$);
SELECT try($$SELECT webhooks.track('abuse_profiles', entity => 'x''); DROP TABLE canary; --')$$);
SELECT try($$SELECT webhooks.track('abuse_profiles; DROP TABLE canary')$$);
SELECT try($$SELECT webhooks.track('abuse_profiles', parent => 'id"; DROP TABLE canary; --')$$);
SELECT try($$SELECT webhooks.emit('abuse.x''); DROP TABLE canary; --', '{}')$$);
SELECT try($$SELECT webhooks.emit('abuse.x', '{}', origin => repeat('o', 201))$$);
SELECT try($$SELECT webhooks.emit('abuse.x', jsonb_build_object('big', repeat('b', 2000000)))$$);
SELECT try(format($$SELECT webhooks.update(%s, url => 'https://example.com/''); DROP TABLE canary; --#')$$, :hook));
SELECT try(format($$SELECT webhooks.configure(%s, '{"filter": "$ ? (@ == 1)); DROP TABLE canary; --"}')$$, :hook));
SELECT try(format($$SELECT webhooks.configure(%s, '{"source": "canary; DROP TABLE canary"}')$$, :hook));
SELECT try(format($$SELECT webhooks.rotate_secret(%s, new_secret => 'whsec_''; DROP TABLE canary; --')$$, :hook));
SELECT try($$SELECT webhooks.test(NULL, '{}')$$);
SELECT * FROM written;

-- stored as data, never run: column names, parameters, origins and placeholders
SELECT options -> 'fields' -> 0 ->> 'column' AS column_name, options -> 'parameters' AS parameters
FROM webhooks.configure(:hook, $${"fields": [{"column": "x\"; DROP TABLE canary; --"}],
    "parameters": {"k'); DROP TABLE canary; --": "v"},
    "exclude_origins": ["'); DROP TABLE canary; --"]}$$);
SELECT try(format($$SELECT webhooks.update(%s, url => 'https://example.com/?q=__x__''%%3B+DROP+TABLE+canary')$$, :hook));
SELECT webhooks.emit('abuse.x', '{"x\"; DROP TABLE canary; --": 1}', origin => ''');DROP TABLE canary;--') > 0 AS emitted;
SELECT count(*) AS canary_alive FROM canary;

-- bad input to the newer functions
SELECT try(s) FROM unnest(ARRAY[
    'SELECT webhooks.update(NULL)',
    'SELECT webhooks.update(999, url => ''https://example.com/'')',
    format('SELECT webhooks.update(%s, url => '''')', :hook),
    format('SELECT webhooks.update(%s, event => '''')', :hook),
    format('SELECT webhooks.update(%s, event => ''Bad Event'')', :hook),
    'SELECT webhooks.configure(NULL, ''{}'')',
    format('SELECT webhooks.configure(%s, ''"text"'')', :hook),
    'SELECT webhooks.verification_file(999)',
    'SELECT webhooks.verify(NULL)',
    'SELECT webhooks.test(999)',
    format('SELECT webhooks.test(%s, ''null'')', :hook),
    'SELECT webhooks.probe(NULL)',
    'SELECT webhooks.recover(NULL, now())',
    'SELECT webhooks.redeliver(NULL)',
    'SELECT webhooks.activate(NULL)',
    'SELECT webhooks.deactivate(NULL)',
    'SELECT webhooks.delete(NULL)',
    'SELECT webhooks.rotate_secret(NULL)',
    'SELECT webhooks.secret(NULL)'
]) s;
SELECT * FROM written;
