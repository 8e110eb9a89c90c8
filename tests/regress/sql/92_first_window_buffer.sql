-- The buffer of a webhook the system switched off, as Mailingwork keeps it: the events of the
-- first replay window after the deactivation are held for activate(replay_events => true);
-- later ones are not kept (dropped, visibly, with the reason). A webhook an admin switched off
-- keeps its rolling window. The window is 5 seconds here (wide enough for a slow machine).
INSERT INTO webhooks.settings (replay_window) VALUES ('5 seconds')
ON CONFLICT (singleton) DO UPDATE SET replay_window = excluded.replay_window;
SELECT webhooks.create('buffer', 'buffer.*', 'https://example.com/auto') AS auto_hook \gset
SELECT webhooks.create('buffer', 'buffer.*', 'https://example.com/admin') AS admin_hook \gset
-- switched off by the system (as after repeated failures or a 410), and by an admin
SELECT webhooks._switch_off(:auto_hook, 'disabled', 'test: failing') \g /dev/null
SELECT webhooks.deactivate(:admin_hook);

CREATE TEMP VIEW buffered AS
SELECT CASE s.webhook_id WHEN :auto_hook THEN 'auto' ELSE 'admin' END AS webhook, s.event,
       s.state, s.last_error
FROM webhooks.delivery_status s WHERE s.webhook_id IN (:auto_hook, :admin_hook)
ORDER BY 1, 2;

SELECT webhooks.emit('buffer.early', '{}') \g /dev/null
SELECT webhooks.fan_out() > 0 AS fanned_out;
SELECT pg_sleep(5.5);
SELECT webhooks.emit('buffer.late', '{}') \g /dev/null
SELECT webhooks.fan_out() > 0 AS fanned_out;
-- the late event came after the automatic deactivation's first window: not kept for it
SELECT * FROM buffered;

-- maintenance expires the admin-deactivated webhook's early event (older than the window);
-- the disabled one's first-window event stays, however old
SELECT webhooks._expire_held(NULL) >= 1 AS expired_some;
SELECT * FROM buffered;
SELECT expired_events FROM webhooks.get(:admin_hook);
SELECT expired_events FROM webhooks.get(:auto_hook);

-- re-activation replays what each kept
SELECT webhooks.activate(:auto_hook, replay_events => true) AS replayed_auto;
SELECT webhooks.activate(:admin_hook, replay_events => true) AS replayed_admin;
SELECT * FROM buffered;

DROP VIEW buffered;
SELECT webhooks.delete(:auto_hook);
SELECT webhooks.delete(:admin_hook);
UPDATE webhooks.settings SET replay_window = NULL;
