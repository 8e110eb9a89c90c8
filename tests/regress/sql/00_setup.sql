-- Set-up shared by the regression tests: the extension and a helper that runs a statement and
-- shows its SQLSTATE and message instead of failing, so bad input can be checked in one line.
CREATE EXTENSION pg_webhooks;

CREATE FUNCTION try(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Counts of everything a refused call could have written.
CREATE VIEW written AS
SELECT (SELECT count(*) FROM webhooks.webhooks) AS webhooks,
       (SELECT count(*) FROM webhooks.tracked) AS tracked,
       (SELECT count(*) FROM webhooks.events) AS events,
       (SELECT count(*) FROM webhooks.deliveries) AS deliveries;

-- Webhooks made by these tests need no ownership verification, except in 47_verification.
INSERT INTO webhooks.settings (require_verification) VALUES (false);
