-- pg_webhooks: what happened to an event or a webhook, readable in SQL.
--
--   SELECT * FROM webhooks.delivery_status WHERE event_id = 42;      -- where each delivery stands
--   SELECT * FROM webhooks.delivery_log WHERE webhook_id = 3 ORDER BY started_at DESC LIMIT 20;

-- A row of several events shows one line per event (but those moved out to rows of their own,
-- which show themselves); there is no index by event, so a look by event_id reads every row.
CREATE VIEW webhooks.delivery_status AS
SELECT d.id + p.k - 1 AS delivery_id, p.event_id, e.event, e.created_at AS occurred_at, e.origin,
       d.webhook_id, w.app, w.url,
       CASE WHEN length(d.marks) = 1 THEN d.state
            WHEN p.mark = 'd' THEN 'delivered'
            WHEN p.mark = 'l' THEN 'leased'
            WHEN d.state IN ('held', 'dropped') THEN d.state
            ELSE 'pending' END AS state,
       CASE WHEN length(d.marks) = 1 THEN d.attempts WHEN p.mark = '0' THEN 0 ELSE 1 END
           AS attempts,
       CASE WHEN length(d.marks) = 1 OR p.mark <> 'd' THEN d.due_at END AS next_attempt_at,
       CASE WHEN length(d.marks) = 1 OR p.mark = 'l' THEN d.leased_by END AS leased_by,
       CASE WHEN length(d.marks) = 1 OR p.mark = 'd' THEN d.last_status END AS last_status,
       CASE WHEN length(d.marks) = 1 OR p.mark = '0' THEN d.last_error END AS last_error,
       d.updated_at
FROM webhooks.deliveries d
CROSS JOIN LATERAL (
    SELECT u.event_id, u.event_xid, u.event_time, u.k, substr(d.marks, u.k::integer, 1) AS mark
    FROM unnest(d.event_ids, d.event_xids, d.event_times) WITH ORDINALITY AS u(event_id, event_xid, event_time, k)
) p
JOIN webhooks.events e
  ON e.xid = p.event_xid AND e.id = p.event_id AND e.created_at = p.event_time
LEFT JOIN webhooks.webhooks w ON w.id = d.webhook_id
WHERE p.mark <> 'm';

-- Failed attempts from webhooks.attempts, successful ones from the compact webhooks.successes.
CREATE VIEW webhooks.delivery_log AS
SELECT a.delivery_id, a.event_id, e.event, a.webhook_id, w.app, w.url,
       a.attempt, a.started_at, a.duration_ms, a.outcome, a.status, a.error, a.response
FROM (SELECT f.delivery_id, f.event_id, f.event_xid, f.webhook_id, f.attempt, f.started_at,
             f.duration_ms, f.outcome, f.status, f.error, f.response
      FROM webhooks.attempts f
      UNION ALL
      SELECT u.delivery_id, u.event_id, u.event_xid, s.webhook_id, u.attempt, u.started_at,
             u.duration_ms, 'delivered', u.status, u.error, u.response
      FROM webhooks.successes s
      CROSS JOIN LATERAL unnest(s.delivery_ids, s.event_ids, s.event_xids, s.attempts,
                                s.started_at, s.duration_ms, s.status, s.errors, s.responses)
          AS u(delivery_id, event_id, event_xid, attempt, started_at, duration_ms, status,
               error, response)) a
LEFT JOIN webhooks.events e ON e.xid = a.event_xid AND e.id = a.event_id
LEFT JOIN webhooks.webhooks w ON w.id = a.webhook_id;

COMMENT ON VIEW webhooks.delivery_status IS
'One row per (event, webhook): state held, pending, leased, delivered, failed or dropped.';
COMMENT ON VIEW webhooks.delivery_log IS
'Every delivery attempt: when, how long, outcome, HTTP status or error class, response excerpt.';
COMMENT ON VIEW webhooks.webhook_info IS 'Webhooks without their secrets.';
COMMENT ON VIEW webhooks.tracked_tables IS 'Tables whose row changes become events.';
