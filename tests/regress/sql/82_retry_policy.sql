-- A webhook's own retry policy (configure's "retry_schedule" and "request_timeout"), instead of
-- the relay's: bounded, shown by get(), handed to the relay with each claimed delivery
-- (tests/tests/retry_policy.rs follows it for real).
SELECT webhooks.create('retry', 'retry.*', 'https://example.com/hook') AS hook \gset
SELECT options FROM webhooks.configure(:hook,
    '{"retry_schedule": ["0s", "30 seconds", "5m", "2 hours", "30 days"], "request_timeout": "45s"}');

-- the relay gets them in milliseconds
SELECT webhooks.emit('retry.sent', '{}') IS NOT NULL AS emitted;
SELECT retry_schedule_ms, request_timeout_ms
FROM webhooks.claim('retry-relay', 10, 10, '{}', '1 minute') WHERE webhook_id = :hook;

-- refused, naming the bad value, and nothing changes
SELECT try(format($$SELECT webhooks.configure(%s, %L)$$, :hook, o)) FROM unnest(ARRAY[
    '{"retry_schedule": []}',
    '{"retry_schedule": "0s,5s"}',
    '{"retry_schedule": ["0s", "soon"]}',
    '{"retry_schedule": ["0s", 5]}',
    '{"retry_schedule": ["-5 seconds"]}',
    '{"retry_schedule": ["31 days"]}',
    '{"retry_schedule": ["100000000 years"]}',
    '{"retry_schedule": ["NaN"]}',
    '{"retry_schedule": ["infinity"]}',
    '{"request_timeout": "0.5 seconds"}',
    '{"request_timeout": "11 minutes"}',
    '{"request_timeout": "infinity"}',
    '{"request_timeout": 30}',
    -- equal to 5 minutes and 5 days as intervals (a month counts 30 days there), but 26 days
    -- and minus 6 hours of elapsed time: bounds are on elapsed time
    '{"request_timeout": "5 years -1800 days 5 minutes"}',
    '{"retry_schedule": ["-1 year 365 days"]}'
]::jsonb[]) o;
SELECT try(format($$SELECT webhooks.configure(%s, %L)$$, :hook,
    jsonb_build_object('retry_schedule', (SELECT jsonb_agg('1s'::text) FROM generate_series(1, 101)))));
SELECT options FROM webhooks.get(:hook);

-- a value written past configure() is held to the same rules
SELECT try(format($$UPDATE webhooks.webhooks SET retry_schedule = '{1 year}' WHERE id = %s$$, :hook));
SELECT try(format($$UPDATE webhooks.webhooks SET retry_schedule = '{}' WHERE id = %s$$, :hook));
SELECT try(format($$UPDATE webhooks.webhooks SET retry_schedule = '{NULL}' WHERE id = %s$$, :hook));
SELECT try(format($$UPDATE webhooks.webhooks SET request_timeout = '1 hour' WHERE id = %s$$, :hook));
SELECT try(format($$UPDATE webhooks.webhooks SET request_timeout = '5 years -1800 days 5 minutes' WHERE id = %s$$, :hook));
SELECT try(format($$UPDATE webhooks.webhooks SET retry_schedule = '{"-1 year 365 days"}' WHERE id = %s$$, :hook));

-- null returns to the relay's
SELECT options FROM webhooks.configure(:hook, '{"retry_schedule": null, "request_timeout": null}');
SELECT webhooks.delete(:hook);
