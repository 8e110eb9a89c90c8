-- Extra request headers per webhook (configure's "headers"), for receivers that authenticate
-- callers: their values are secrets, relay-owned headers are refused, and nothing changes on a
-- refusal (tests/tests/receiver_auth.rs sends them for real).
SELECT webhooks.create('hdr', 'hdr.*', 'https://example.com/hook') AS hook \gset
SELECT options FROM webhooks.configure(:hook,
    '{"headers": {"Authorization": "Bearer s3cret-token", "X-Api-Key": "k3y-value"}}');

-- get(), list() and the view show the names, never the values
SELECT options -> 'header_names' AS names FROM webhooks.get(:hook);
SELECT count(*) AS showing_a_value FROM webhooks.list('hdr') w
WHERE row_to_json(w)::text ~ 's3cret|k3y-value';
SELECT count(*) AS showing_a_value FROM webhooks.webhook_info w
WHERE row_to_json(w)::text ~ 's3cret|k3y-value';

-- the relay is given them with each claimed delivery
SELECT webhooks.emit('hdr.sent', '{}') IS NOT NULL AS emitted;
SELECT headers FROM webhooks.claim('hdr-relay', 10, 10, '{}', '1 minute') WHERE webhook_id = :hook;

-- refused, naming the header but not its value, and nothing changes
SELECT try(format($$SELECT webhooks.configure(%s, %L)$$, :hook, o)) FROM unnest(ARRAY[
    '{"headers": ["Authorization"]}',
    '{"headers": {"Bad Name": "x"}}',
    '{"headers": {"X-Ok": "line\r\nX-Injected: 1"}}',
    '{"headers": {"X-Ok": "caf\u00e9"}}',
    '{"headers": {"X-Ok": ""}}',
    '{"headers": {"X-Ok": "   "}}',
    '{"headers": {"X-Ok": 42}}',
    '{"headers": {"Webhook-Signature": "v1,forged"}}',
    '{"headers": {"content-type": "text/plain"}}',
    '{"headers": {"Host": "internal.example"}}',
    '{"headers": {"Transfer-Encoding": "chunked"}}',
    '{"headers": {"X-Key": "a", "x-key": "b"}}'
]::jsonb[]) o;
SELECT try(format($$SELECT webhooks.configure(%s, %L)$$, :hook,
    jsonb_build_object('headers', jsonb_build_object('X-Long', repeat('v', 4097)))));
SELECT try(format($$SELECT webhooks.configure(%s, %L)$$, :hook,
    jsonb_build_object('headers', (SELECT jsonb_object_agg('X-H' || i, 'v') FROM generate_series(1, 21) i))));
SELECT options -> 'header_names' AS unchanged FROM webhooks.get(:hook);

-- a value written past configure() is held to the same rules
SELECT try(format($$UPDATE webhooks.webhooks SET headers = '{"Connection": "close"}' WHERE id = %s$$, :hook));

-- an admin sets them but cannot read them back
SET ROLE webhooks_admin;
SELECT try('SELECT headers FROM webhooks.webhooks');
SELECT options -> 'header_names' AS names
FROM webhooks.configure(:hook, '{"headers": {"X-Api-Key": "rotated"}}');
RESET ROLE;

-- a new path on the same server keeps them; another server does not get them
SELECT options -> 'header_names' AS kept
FROM webhooks.update(:hook, url => 'https://example.com/other-hook');
SELECT options ? 'header_names' AS kept FROM webhooks.update(:hook, url => 'https://elsewhere.example/hook');
SELECT options FROM webhooks.configure(:hook, '{"headers": {"X-Api-Key": "again"}}');

-- null removes them
SELECT options ? 'header_names' AS has_headers FROM webhooks.configure(:hook, '{"headers": null}');
SELECT webhooks.delete(:hook);
