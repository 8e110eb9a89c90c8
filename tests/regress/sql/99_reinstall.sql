-- CREATE EXTENSION refuses internal roles that someone prepared to get into: whoever is a
-- member of webhooks_capture could write row events, of webhooks_owner read every secret.
SET client_min_messages = warning;
DROP EXTENSION pg_webhooks CASCADE;
RESET client_min_messages;
CREATE ROLE insider LOGIN;
GRANT webhooks_owner TO insider;
SELECT try($$CREATE EXTENSION pg_webhooks$$);
REVOKE webhooks_owner FROM insider;
ALTER ROLE webhooks_capture LOGIN;
SELECT try($$CREATE EXTENSION pg_webhooks$$);
ALTER ROLE webhooks_capture NOLOGIN;
SELECT try($$CREATE EXTENSION pg_webhooks$$);
DROP ROLE insider;
