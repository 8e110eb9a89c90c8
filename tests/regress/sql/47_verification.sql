-- Ownership verification, test sends and held events past the replay window, as SQL sees them
-- (tests/tests/lifecycle.rs runs them with the real relay).
UPDATE webhooks.settings SET require_verification = true;
SELECT webhooks.create('own', 'own.*', 'https://example.com/dir/hook.php?k=1') AS hook \gset
SELECT count(*) >= 0 AS drained FROM webhooks.claim('setup', 100000, 100000, '{}', '1 hour');

-- a new webhook must be verified before it sends; events meanwhile are not recorded for it
SELECT verification_required, verification_status, active, sending FROM webhooks.get(:hook);
SELECT file_name ~ '^pg-webhooks-[0-9a-f]{16}\.txt$' AS named, content ~ '^[0-9a-f]{32}$' AS random,
       urls = ARRAY['https://example.com/dir/' || file_name, 'https://example.com/' || file_name]
           AS beside_then_root
FROM webhooks.verification_file(:hook);
SELECT webhooks.create('own', 'x.y', 'https://a.example/') AS other_hook \gset
SELECT a.file_name <> b.file_name AND a.content <> b.content AS unique_per_webhook
FROM webhooks.verification_file(:hook) a, webhooks.verification_file(:other_hook) b;
SELECT webhooks.emit('own.signal', '{}') \g /dev/null
SELECT count(*) AS claimed FROM webhooks.claim('relay', 100, 100, '{}', '1 minute');
SELECT count(*) AS recorded FROM webhooks.deliveries WHERE webhook_id = :hook;

-- a test request is refused until then, and writes nothing
SELECT try(format('SELECT webhooks.test(%s)', :hook));
SELECT count(*) AS probes FROM webhooks.probes;

-- verify() queues a probe for a relay; its outcome lands in get()
SELECT webhooks.verify(:hook) AS verify_probe \gset
SELECT kind, state FROM webhooks.probe(:verify_probe);
SELECT verification_status FROM webhooks.get(:hook);
SELECT probe_id = :verify_probe AS leased, kind, file_urls = (webhooks.verification_file(:hook)).urls AS urls
FROM webhooks.claim_probes('relay', 10, '1 minute');
SELECT count(*) AS leased_once FROM webhooks.claim_probes('relay', 10, '1 minute');
SELECT webhooks.finish_probe(:verify_probe, '{"success": true, "result": "found", "status": 200}');
SELECT verification_status, verification_reason, verified_at IS NOT NULL AS verified, sending
FROM webhooks.get(:hook);
SELECT webhooks.emit('own.signal', '{}') \g /dev/null
SELECT count(*) AS claimed FROM webhooks.claim('relay', 100, 100, '{}', '1 minute');

-- a test request carries a sample for the webhook's event unless given a payload
SELECT webhooks.test(:hook) AS test_probe \gset
SELECT kind, event, payload ? 'new' AND payload ? 'old' AS sample_update FROM webhooks.probe(:test_probe);
SELECT event, payload FROM webhooks.probe(webhooks.test(:hook, '{"a": 1}', event => 'own.custom'));
SELECT try(format($$SELECT webhooks.test(%s, '[1]')$$, :hook));
SELECT try(format($$SELECT webhooks.test(%s, event => 'Not An Event')$$, :hook));
SELECT try('SELECT webhooks.test(NULL)');
SELECT try('SELECT webhooks.verify(999)');
SELECT try('SELECT webhooks.probe(999)');
SELECT try('SELECT webhooks.verification_file(NULL)');
-- each documented application event has a sample with the fields docs/events.md lists
SELECT e AS event,
       (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(webhooks.sample_data(e)) k)
           AS fields
FROM unnest(ARRAY['email.opened', 'email.clicked', 'email.bounced', 'email.failed',
                  'email.delivered', 'email.unsubscribed', 'email.abuse', 'optin_finalized',
                  'optout_finalized', 'profilemanager_finalized']) e;

-- a verification made against an old URL does not count for the new one
SELECT webhooks.verify(:hook) AS stale_probe \gset
SELECT bool_or(probe_id = :stale_probe) AS leased FROM webhooks.claim_probes('relay', 10, '1 minute');
SELECT verification_status, sending
FROM webhooks.update(:hook, url => 'https://example.com/new/hook.php');
SELECT webhooks.finish_probe(:stale_probe, '{"success": true, "result": "found"}');
SELECT verification_status FROM webhooks.get(:hook);
SELECT try(format($$SELECT webhooks.update(%s, url => 'ftp://example.com/')$$, :hook));
SELECT try(format($$SELECT webhooks.update(%s, max_in_flight => 0)$$, :hook));
SELECT url FROM webhooks.get(:hook);

-- events held longer than the replay window are dropped and counted
UPDATE webhooks.settings SET require_verification = false;
SELECT webhooks.create('own', 'held.*', 'https://example.com/held') AS held_hook \gset
SELECT webhooks.deactivate(:held_hook);
-- (each event fanned out on its own, so each has a delivery row of its own to age)
SELECT webhooks.emit('held.signal', '{"n": 1}') \g /dev/null
SELECT webhooks.fan_out() AS fanned_out;
SELECT webhooks.emit('held.signal', '{"n": 2}') \g /dev/null
SELECT webhooks.fan_out() AS fanned_out;
SELECT webhooks.emit('held.signal', '{"n": 3}') \g /dev/null
SELECT count(*) >= 0 AS fanned_out FROM webhooks.claim('relay', 1, 1, '{}', '1 minute');
UPDATE webhooks.deliveries SET event_created_at = event_created_at - interval '6 days'
WHERE webhook_id = :held_hook AND id = (SELECT min(id) FROM webhooks.deliveries
                                        WHERE webhook_id = :held_hook);
SELECT action, object FROM webhooks.maintain() WHERE action LIKE 'expired%';
SELECT expired_events FROM webhooks.get(:held_hook);
UPDATE webhooks.deliveries SET event_created_at = event_created_at - interval '6 days'
WHERE webhook_id = :held_hook AND state = 'held'
  AND id = (SELECT min(id) FROM webhooks.deliveries
            WHERE webhook_id = :held_hook AND state = 'held');
SELECT webhooks.activate(:held_hook, replay_events => true) AS replayed;
SELECT expired_events FROM webhooks.get(:held_hook);
SELECT state, last_error, count(*) FROM webhooks.deliveries WHERE webhook_id = :held_hook
GROUP BY 1, 2 ORDER BY 1;

-- pg_webhooks' own events (webhook.disabled): emit() refuses the names, '*' does not match them
SELECT try($$SELECT webhooks.emit('webhook.disabled', '{}')$$);
SELECT webhooks._event_matches('*', 'webhook.disabled') AS catch_all,
       webhooks._event_matches('webhook.*', 'webhook.disabled') AS by_prefix,
       webhooks._event_matches('webhook.disabled', 'webhook.disabled') AS by_name;
