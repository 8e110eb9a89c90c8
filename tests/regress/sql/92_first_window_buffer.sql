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

-- the buffer lasts settings.retention past its window, not forever: a receiver gone for good
-- does not pin its days. Disabled again, two days on (the clock moved back by hand):
SELECT webhooks._switch_off(:auto_hook, 'disabled', 'test: failing again') \g /dev/null
SELECT webhooks.emit('buffer.again', '{}') \g /dev/null
SELECT webhooks.fan_out() > 0 AS fanned_out;
UPDATE webhooks.settings SET retention = '1 day';
UPDATE webhooks.deliveries SET event_created_at = event_created_at - interval '2 days'
WHERE webhook_id = :auto_hook AND state = 'held';
UPDATE webhooks.webhooks SET status_changed_at = status_changed_at - interval '2 days'
WHERE id = :auto_hook;
SELECT webhooks._expire_held(:auto_hook) AS expired;
SELECT expired_events FROM webhooks.get(:auto_hook);
UPDATE webhooks.settings SET retention = NULL;

-- an event dropped past the buffer was never sent: it does not start a throttle
SELECT webhooks.create('buffer', 'tag.*', 'https://example.com/tags') AS tag_hook \gset
SELECT options FROM webhooks.configure(:tag_hook, '{"throttle": "6 hours", "throttle_per": "contact"}');
SELECT webhooks._switch_off(:tag_hook, 'disabled', 'test: failing') \g /dev/null
UPDATE webhooks.webhooks SET status_changed_at = now() - interval '1 day' WHERE id = :tag_hook;
SELECT webhooks.emit('tag.added', '{"contact": "7"}') \g /dev/null
SELECT webhooks.fan_out() > 0 AS fanned_out;
SELECT webhooks.activate(:tag_hook) AS replayed;
SELECT webhooks.emit('tag.added', '{"contact": "7"}') \g /dev/null
SELECT webhooks.fan_out() > 0 AS fanned_out;
SELECT state, last_error FROM webhooks.delivery_status WHERE webhook_id = :tag_hook
ORDER BY event_id;
SELECT webhooks.delete(:tag_hook);

DROP VIEW buffered;
SELECT webhooks.delete(:auto_hook);
SELECT webhooks.delete(:admin_hook);
UPDATE webhooks.settings SET replay_window = NULL;
