-- The webhook registry: create, list, get, activate, deactivate, delete, rotate_secret.

-- create returns the new id
SELECT webhooks.create('crm', 'profile.updated', 'https://example.com/hook.php') AS id;
SELECT webhooks.create('crm', 'profile.*', 'https://example.com/all-profiles.php') AS id;
SELECT webhooks.create(app => 'newsletter', event => 'optin_finalized',
                       url => 'http://receiver.example:8080/optin', description => 'opt-ins') AS id;

-- list filters by app and event, like Mailingwork's GetWebHooks, and shows status and active
SELECT id, app, event, url, status, active FROM webhooks.list();
SELECT id, event FROM webhooks.list(app => 'crm');
SELECT id, app FROM webhooks.list(app => 'crm', event => 'profile.updated');
SELECT count(*) FROM webhooks.list(app => 'nobody');

-- get shows one webhook
SELECT id, app, event, active, description FROM webhooks.get(3);

-- secrets are generated in the Standard Webhooks form and never shown by list or get
SELECT webhooks.secret(1) ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS standard_form;
SELECT webhooks.secret(1) <> webhooks.secret(2) AS unique_per_webhook;
SELECT count(*) AS secret_columns_shown FROM information_schema.columns
WHERE table_schema = 'webhooks' AND table_name = 'webhook_info'
  AND column_name IN ('secret', 'previous_secret');

-- a given secret is kept
SELECT webhooks.create('crm', '*', 'https://example.com/x',
                       secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') AS id;
SELECT webhooks.secret(4) AS kept;

-- deactivate and activate switch a webhook off and on, with a reason
SELECT webhooks.deactivate(1);
SELECT active, status, status_reason FROM webhooks.get(1);
SELECT webhooks.activate(1) AS replayed;
SELECT active, status, status_reason FROM webhooks.get(1);

-- activating an active webhook and deactivating an inactive one change nothing
SELECT webhooks.activate(1) AS replayed;
SELECT webhooks.deactivate(2);
SELECT webhooks.deactivate(2);
SELECT status FROM webhooks.get(2);
SELECT webhooks.activate(2) AS replayed;

-- rotate_secret returns the new secret; during the overlap both secrets sign
SELECT webhooks.secret(4) AS before_rotation \gset
SELECT webhooks.rotate_secret(4) AS rotated_to \gset
SELECT :'rotated_to' = webhooks.secret(4) AS returns_new_secret,
       :'rotated_to' <> :'before_rotation' AS changed;
SELECT webhooks._signing_secrets(w) = ARRAY[w.secret, :'before_rotation']
       AS signs_with_new_then_old
FROM webhooks.webhooks w WHERE id = 4;
SELECT rotating_secret FROM webhooks.get(4);
-- without an overlap only the new secret signs
SELECT webhooks.rotate_secret(4, overlap => '0 seconds') IS NOT NULL AS rotated;
SELECT cardinality(webhooks._signing_secrets(w)) AS secrets FROM webhooks.webhooks w WHERE id = 4;

-- delete removes the webhook
SELECT webhooks.delete(4);
SELECT count(*) FROM webhooks.list() WHERE id = 4;

-- comments document every public function
SELECT p.proname, obj_description(p.oid, 'pg_proc') IS NOT NULL AS documented
FROM pg_proc p
WHERE p.pronamespace = 'webhooks'::regnamespace AND p.proname !~ '^_'
ORDER BY p.proname;
