-- pg_webhooks: what happened to an event or a webhook, readable in SQL.
--
--   SELECT * FROM webhooks.delivery_status WHERE event_id = 42;      -- where each delivery stands
--   SELECT * FROM webhooks.delivery_log WHERE webhook_id = 3 ORDER BY started_at DESC LIMIT 20;

CREATE VIEW webhooks.delivery_status AS
SELECT d.id AS delivery_id, d.event_id, e.event, e.created_at AS occurred_at, e.origin,
       d.webhook_id, w.app, w.url,
       d.state, d.attempts, d.due_at AS next_attempt_at, d.leased_by,
       d.last_status, d.last_error, d.updated_at
FROM webhooks.deliveries d
JOIN webhooks.events e
  ON e.xid = d.event_xid AND e.id = d.event_id AND e.created_at = d.event_created_at
LEFT JOIN webhooks.webhooks w ON w.id = d.webhook_id;

CREATE VIEW webhooks.delivery_log AS
SELECT a.delivery_id, a.event_id, e.event, a.webhook_id, w.app, w.url,
       a.attempt, a.started_at, a.duration_ms, a.outcome, a.status, a.error, a.response
FROM webhooks.attempts a
LEFT JOIN webhooks.events e ON e.xid = a.event_xid AND e.id = a.event_id
LEFT JOIN webhooks.webhooks w ON w.id = a.webhook_id;

COMMENT ON VIEW webhooks.delivery_status IS
'One row per (event, webhook): state held, pending, leased, delivered, failed or dropped.';
COMMENT ON VIEW webhooks.delivery_log IS
'Every delivery attempt: when, how long, outcome, HTTP status or error class, response excerpt.';
COMMENT ON VIEW webhooks.webhook_info IS 'Webhooks without their secrets.';
COMMENT ON VIEW webhooks.tracked_tables IS 'Tables whose row changes become events.';
