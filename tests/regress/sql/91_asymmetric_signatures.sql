-- configure's "signature": ed25519 (Standard Webhooks v1a) or rsa-sha256 (HTTP Signatures, as
-- Copernica signs) with a key pair made in SQL; the relay signs (tests/tests/signatures.rs).
CREATE ROLE keys_admin IN ROLE webhooks_admin;
CREATE ROLE keys_relay IN ROLE webhooks_relay;
SELECT webhooks.create('keys', 'key.*', 'https://example.com/keys') AS hook \gset

-- a webhook signs with its shared secret until told otherwise: it has no public key
-- (the webhook's id is left out of what is printed: it depends on the tests before)
SELECT regexp_replace(try(format('SELECT * FROM webhooks.public_keys(%s)', :hook)), 'webhook \d+', 'webhook N');
SELECT regexp_replace(try(format('SELECT webhooks.rotate_signing_key(%s)', :hook)), 'webhook \d+', 'webhook N');

-- ed25519: a key pair is made; the public key is in the Standard Webhooks form
SELECT options FROM webhooks.configure(:hook, '{"signature": "ed25519"}');
SELECT signature, length(key_id) AS key_id_length, public_key ~ '^whpk_[A-Za-z0-9+/]{43}=$' AS whpk,
       current, previous_until
FROM webhooks.public_keys(:hook);
SELECT key_id AS first_key FROM webhooks.public_keys(:hook) \gset
-- naming the scheme it has keeps the key
SELECT options FROM webhooks.configure(:hook, '{"signature": "ed25519"}') \g /dev/null
SELECT key_id = :'first_key' AS same_key FROM webhooks.public_keys(:hook);

-- the relay gets the private key; an admin sees only the public one
SELECT split_part(s, ':', 1) AS scheme, split_part(s, ':', 2) = :'first_key' AS named
FROM webhooks.webhooks w, unnest(webhooks._signing_secrets(w)) s WHERE w.id = :hook;
SET ROLE keys_admin;
SELECT count(*) AS public_keys FROM webhooks.public_keys(:hook);
SELECT try('SELECT signing_key FROM webhooks.webhooks');
SELECT (to_jsonb(i) ?| ARRAY['signing_key', 'previous_signing_key', 'public_key']) AS shows_keys,
       options FROM webhooks.get(:hook) i;
RESET ROLE;
SET ROLE keys_relay;
SELECT try(format('SELECT * FROM webhooks.public_keys(%s)', :hook));
RESET ROLE;

-- rotation: during the overlap both ed25519 keys sign, the previous one is still listed
SELECT webhooks.rotate_signing_key(:hook, '1 hour') ~ '^whpk_' AS new_public_key;
SELECT key_id = :'first_key' AS is_first, current, previous_until IS NOT NULL AS until_set
FROM webhooks.public_keys(:hook) ORDER BY current DESC;
SELECT cardinality(webhooks._signing_secrets(w)) AS signing_keys, rotating_secret
FROM webhooks.webhooks w JOIN webhooks.webhook_info i USING (id) WHERE w.id = :hook;
SELECT current, signing FROM webhooks.public_keys(:hook) ORDER BY current DESC;
-- a second rotation while one overlaps would drop the key receivers hold: refused, unless it
-- drops the old keys at once
SELECT regexp_replace(try(format('SELECT webhooks.rotate_signing_key(%s, %L)', :hook, '1 hour')),
                      'webhook \d+ is still rotating its key, until .*', 'webhook N is still rotating its key, until T');
-- without overlap the previous key is gone at once
SELECT webhooks.rotate_signing_key(:hook, '0') \g /dev/null
SELECT count(*) AS public_keys FROM webhooks.public_keys(:hook);
SELECT try(format('SELECT webhooks.rotate_signing_key(%s, %L)', :hook, '-1 hour'));
SELECT try(format('SELECT webhooks.rotate_signing_key(%s, NULL)', :hook));
SELECT try('SELECT webhooks.rotate_signing_key(999999)');

-- rsa-sha256: a PEM public key; one key signs, with the account id beside it
SELECT options FROM webhooks.configure(:hook,
    '{"signature": "rsa-sha256", "signature_account": "environment_1234"}');
SELECT signature, public_key LIKE E'-----BEGIN PUBLIC KEY-----\n%-----END PUBLIC KEY-----\n' AS pem
FROM webhooks.public_keys(:hook);
SELECT key_id AS rsa_key FROM webhooks.public_keys(:hook) \gset
SELECT webhooks.rotate_signing_key(:hook, '1 hour') \g /dev/null
-- during the overlap the previous RSA key signs (a request has one Signature header)
SELECT current, signing FROM webhooks.public_keys(:hook) ORDER BY current DESC;
SELECT cardinality(webhooks._signing_secrets(w)) AS signing_keys,
       split_part((webhooks._signing_secrets(w))[1], ':', 2) = :'rsa_key' AS previous_signs,
       split_part((webhooks._signing_secrets(w))[1], ':', 4) AS account
FROM webhooks.webhooks w WHERE w.id = :hook;
-- the account defaults to webhook_<id>
SELECT options FROM webhooks.configure(:hook, '{"signature_account": null}') \g /dev/null
SELECT split_part((webhooks._signing_secrets(w))[1], ':', 4) = 'webhook_' || :hook AS default_account
FROM webhooks.webhooks w WHERE w.id = :hook;

-- bad values are refused, naming the value; nothing changes
SELECT try(format('SELECT webhooks.configure(%s, %L)', :hook, o))
FROM unnest(ARRAY['{"signature": "dsa"}', '{"signature": 1}', '{"signature": ""}',
                  '{"signature_account": "two\nlines"}', '{"signature_account": " padded"}',
                  '{"signature_account": ["a"]}']) o;
SELECT options FROM webhooks.get(:hook);
SELECT try('SELECT * FROM webhooks._new_signing_key(''dsa'')');
-- and values written without configure() are held to the rules
SELECT try(format('UPDATE webhooks.webhooks SET signing_key = NULL WHERE id = %s', :hook));
SELECT try(format('UPDATE webhooks.webhooks SET signature = %L WHERE id = %s', 'ed448', :hook));

-- back to hmac-sha256: the key pairs are dropped, the secret signs again
SELECT options FROM webhooks.configure(:hook, '{"signature": null}');
SELECT signing_key IS NULL AND previous_signing_key IS NULL AND public_key IS NULL AS dropped,
       webhooks._signing_secrets(w) = ARRAY[secret] AS secret_signs
FROM webhooks.webhooks w WHERE w.id = :hook;

SELECT webhooks.delete(:hook);
DROP ROLE keys_admin, keys_relay;
