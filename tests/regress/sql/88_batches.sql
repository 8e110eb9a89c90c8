-- configure's "batch": up to N events per request (the relay groups them, tests/tests/batches.rs).
SELECT webhooks.create('batches', 'batch.*', 'https://example.com/batches') AS hook \gset
SELECT options FROM webhooks.configure(:hook, '{"batch": 50}');
SELECT batch_size FROM webhooks.claim('batch-relay', 0, 0, '{}', '1 minute');  -- (no rows: a shape check)
SELECT webhooks.emit('batch.one', '{}') \g /dev/null
SELECT batch_size FROM webhooks.claim('batch-relay', 100, 100,
    (SELECT array_agg(id) FROM webhooks.webhooks WHERE id <> :hook), '1 minute');
-- 1 means one event per request, as null does
SELECT options FROM webhooks.configure(:hook, '{"batch": 1}');
SELECT options FROM webhooks.configure(:hook, '{"batch": 20}');
SELECT options FROM webhooks.configure(:hook, '{"batch": null}');

-- out of range, not a whole number, not a number: refused, naming the value; nothing changes
SELECT try(format('SELECT webhooks.configure(%s, %L)', :hook, b))
FROM unnest(ARRAY['{"batch": 0}', '{"batch": 101}', '{"batch": 2.5}', '{"batch": "10"}',
                  '{"batch": [10]}']) b;
-- a JSON array of event bodies needs format json, no fields and no URL placeholders
SELECT try(format('SELECT webhooks.configure(%s, %L)', :hook, o))
FROM unnest(ARRAY['{"batch": 10, "format": "form"}',
                  '{"batch": 10, "fields": [{"column": "email"}]}']) o;
SELECT options FROM webhooks.configure(:hook, '{"batch": 10}');
SELECT try(format('SELECT webhooks.configure(%s, %L)', :hook, '{"format": "raw"}'));
SELECT try(format('SELECT webhooks.update(%s, url => %L)', :hook, 'https://example.com/__email__'));
SELECT url, options FROM webhooks.get(:hook);
-- and a value written without configure() is held to the range
SELECT try(format('UPDATE webhooks.webhooks SET batch_size = 500 WHERE id = %s', :hook));
