CREATE EXTENSION pg_webhooks;
CREATE TABLE profiles (id bigserial PRIMARY KEY, email text NOT NULL, country text);
SELECT webhooks.track('profiles', entity => 'profile');
SELECT webhooks.create('demo', 'profile.*', 'http://receiver:8000/hook.php',
                       secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
