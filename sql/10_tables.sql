-- pg_webhooks: tables.
--
-- The shape, in one paragraph: writers' triggers append to `events` (and do nothing else). The
-- relay fans events out into `deliveries` rows of up to 100 events per matching webhook, claims
-- due events with FOR UPDATE SKIP LOCKED as committed leases, sends them, and records failed
-- attempts one by one in `attempts` and successful ones compactly in `successes`. These tables
-- are partitioned by day, so retention drops whole partitions and never runs a mass DELETE.

-- Settings: at most one row, and empty until an admin changes something; a NULL column means
-- the default. The defaults live in one place, webhooks._settings() below. (Starting empty is
-- what lets pg_dump/pg_restore carry the row: a row made by CREATE EXTENSION would collide.)
--   INSERT INTO webhooks.settings (retention) VALUES ('14 days')
--   ON CONFLICT (singleton) DO UPDATE SET retention = excluded.retention;
CREATE TABLE webhooks.settings (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention         interval CHECK (retention >= '1 day'),
    replay_window     interval CHECK (replay_window >= '0'),
    partitions_ahead  integer CHECK (partitions_ahead BETWEEN 1 AND 60),
    disable_after_failures integer CHECK (disable_after_failures >= 1),
    disable_after     interval CHECK (disable_after >= '0'),
    require_verification boolean
);

-- The settings in force, defaults filled in:
--   retention         7 days   events and their delivery history are kept this long; older days
--                              are dropped once nothing in them is still owed to a receiver
--   replay_window     5 days   events for a webhook an admin switched off are held this long
--                              (the latest ones), for activate(replay_events => true); one the
--                              system switched off keeps those of the first window after that,
--                              and later ones are dropped (Mailingwork's buffer)
--   partitions_ahead  3        daily partitions kept ready ahead of today
--   disable_after_failures 10  a webhook is disabled automatically after at least this many
--   disable_after     5 days   consecutive failed attempts spanning at least this long
--   require_verification true  new webhooks deliver nothing until webhooks.verify() found
--                              their verification file on the receiver's server
CREATE FUNCTION webhooks._settings(
    OUT retention interval, OUT replay_window interval, OUT partitions_ahead integer,
    OUT disable_after_failures integer, OUT disable_after interval,
    OUT require_verification boolean)
-- (PL/pgSQL, so that each session plans the query once: a SQL function called in FROM is
-- parsed and planned again on every call, 0.3 ms of each fan-out under load, BENCHMARKS.md)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT coalesce(s.retention, interval '7 days'),
           coalesce(s.replay_window, interval '5 days'),
           coalesce(s.partitions_ahead, 3),
           coalesce(s.disable_after_failures, 10),
           coalesce(s.disable_after, interval '5 days'),
           coalesce(s.require_verification, true)
    INTO retention, replay_window, partitions_ahead, disable_after_failures, disable_after,
         require_verification
    FROM (SELECT) AS one LEFT JOIN webhooks.settings s ON true;
END $$;

-- What is wrong with a webhook's extra request headers (configure's "headers"), or NULL: a JSON
-- object of at most 20 names, each an HTTP token, to values of visible ASCII, spaces and tabs
-- (no line breaks: a value cannot add a header or a request), at most 4,096 characters. Headers
-- the relay sets itself, and the hop-by-hop ones that belong to the connection, are refused, so
-- a stored value can neither replace a signature nor change how the request is framed. A CHECK
-- constraint on webhooks.headers holds a value written without configure() to the same rules.
CREATE FUNCTION webhooks._headers_problem(headers jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE
        WHEN headers IS NULL THEN NULL
        WHEN jsonb_typeof(headers) <> 'object' THEN 'expected an object of header names to text values'
        WHEN (SELECT count(*) FROM jsonb_object_keys(headers)) > 20 THEN 'at most 20 headers'
        ELSE (SELECT problem FROM (
            SELECT CASE
                WHEN h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$'
                    THEN format('%s is not a header name', to_jsonb(left(h.key, 100)))
                WHEN lower(h.key) IN ('content-type', 'content-length', 'content-encoding', 'host',
                                      'user-agent', 'webhook-id', 'webhook-timestamp',
                                      'webhook-signature', 'connection', 'keep-alive',
                                      'proxy-authenticate', 'proxy-authorization',
                                      'proxy-connection', 'te', 'trailer', 'transfer-encoding',
                                      'upgrade', 'expect')
                    THEN format('%s is set by the relay itself', to_jsonb(h.key))
                WHEN count(*) OVER (PARTITION BY lower(h.key)) > 1
                    THEN format('%s is given twice', to_jsonb(lower(h.key)))
                WHEN jsonb_typeof(h.value) <> 'string'
                    THEN format('the value of %s is not text', to_jsonb(h.key))
                WHEN h.value #>> '{}' !~ E'^[\\x20-\\x7E\\t]+$' OR btrim(h.value #>> '{}') = ''
                     OR length(h.value #>> '{}') > 4096
                    THEN format('the value of %s must be 1 to 4096 visible ASCII characters, '
                                'spaces or tabs', to_jsonb(h.key))
            END AS problem
            FROM jsonb_each(headers) h) checked
            WHERE problem IS NOT NULL
            ORDER BY problem
            LIMIT 1)
    END
$$;

-- Durations as the relay reads them, and as the bounds on stored ones are checked: counted in
-- elapsed time, so "5 years -1800 days" is not taken for the 5 minutes it compares equal to.
CREATE FUNCTION webhooks._milliseconds(period interval) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM period) * 1000)::bigint
$$;

CREATE FUNCTION webhooks._milliseconds(periods interval[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN periods IS NOT NULL THEN
        ARRAY(SELECT (extract(epoch FROM p) * 1000)::bigint
              FROM unnest(periods) WITH ORDINALITY AS u(p, n) ORDER BY n) END
$$;

CREATE SEQUENCE webhooks.webhooks_id_seq;

CREATE TABLE webhooks.webhooks (
    id                      bigint PRIMARY KEY DEFAULT nextval('webhooks.webhooks_id_seq'),
    app                     text NOT NULL,
    event                   text NOT NULL,      -- an event name, 'prefix.*' or '*'
    url                     text NOT NULL,
    secret                  text NOT NULL,      -- whsec_<base64>; never shown by list()/get()
    previous_secret         text,               -- still signed with until previous_secret_until
    previous_secret_until   timestamptz,
    status                  text NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'inactive', 'disabled')),
    status_reason           text,
    status_changed_at       timestamptz NOT NULL DEFAULT now(),
    description             text,
    max_in_flight           integer CHECK (max_in_flight BETWEEN 1 AND 10000), -- NULL: relay default
    rate_limit_per_second   double precision
                            CHECK (rate_limit_per_second BETWEEN 0.001 AND 1000000),
    consecutive_failures    integer NOT NULL DEFAULT 0,
    failing_since           timestamptz,
    last_success_at         timestamptz,        -- to the second: ack() rewrites it at most once a second
    -- ownership verification (sql/45_probes.sql): a file named verification_file with
    -- verification_token as content must be served next to the URL before anything is sent
    verification_required   boolean NOT NULL DEFAULT true,
    verification_file       text NOT NULL
                            DEFAULT 'pg-webhooks-' || left(md5(gen_random_uuid()::text), 16) || '.txt',
    verification_token      text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
    verification_status     text NOT NULL DEFAULT 'unverified'
                            CHECK (verification_status IN ('unverified', 'checking', 'verified', 'failed')),
    verification_reason     text,
    verified_at             timestamptz,
    expired_events          bigint NOT NULL DEFAULT 0,  -- held longer than replay_window, dropped
    -- what is sent and when (sql/25_options.sql, webhooks.configure)
    format                  text NOT NULL DEFAULT 'json'
                            CHECK (format IN ('json', 'form', 'query', 'raw')),
    method                  text NOT NULL DEFAULT 'POST' CHECK (method IN ('POST', 'GET', 'PUT')),
    fields                  jsonb,          -- [{"column", "name", "default"}]: send only these
    key_field               text,           -- always sent with fields (default 'email')
    parameters              jsonb,          -- fixed parameters, sent as parameters[key]=value
    source                  regclass,       -- only events from this table
    filter                  jsonpath,       -- only events whose payload satisfies it
    on_change               text[],         -- updates only when one of these columns changed
    include_columns         text[],         -- row columns sent (NULL: all)
    exclude_columns         text[],         -- row columns never sent
    exclude_origins         text[],         -- events from these origins are not sent
    throttle                interval,       -- at most one event per throttle_per value per interval
    throttle_per            text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- added in 0.2.0 (last, where ALTER TABLE ADD COLUMN puts them in an upgraded database)
    -- extra request headers {"Authorization": "Bearer ..."}; secret, like `secret`: no view or
    -- function shows their values
    headers                 jsonb CHECK (webhooks._headers_problem(headers) IS NULL),
    -- this webhook's own retry policy, overriding the relay's --retry-schedule and
    -- --request-timeout (NULL: the relay's): the delay before each attempt, 1 to 100 of them,
    -- each at most 30 days; the time a request may take, 1 second to 10 minutes
    retry_schedule          interval[]
                            CHECK (array_ndims(retry_schedule) = 1
                                   AND cardinality(retry_schedule) BETWEEN 1 AND 100
                                   AND array_position(retry_schedule, NULL) IS NULL
                                   AND 0 <= ALL (webhooks._milliseconds(retry_schedule))
                                   AND 2592000000 >= ALL (webhooks._milliseconds(retry_schedule))),
    request_timeout         interval
                            CHECK (webhooks._milliseconds(request_timeout) BETWEEN 1000 AND 600000),
    -- up to this many events in one request, as one signed JSON array (NULL: one per request)
    batch_size              integer CHECK (batch_size BETWEEN 2 AND 100),
    -- events with the same value of this are delivered one at a time, in commit order: 'primary
    -- key' (the row's, per table), or a row column or payload field (NULL: no ordering)
    ordered_by              text CHECK (length(ordered_by) BETWEEN 1 AND 200),
    -- how requests are signed (sql/20_registry.sql, public_keys): hmac-sha256 with `secret`
    -- (Standard Webhooks v1), ed25519 (Standard Webhooks v1a) or rsa-sha256 (HTTP Signatures,
    -- laid out as Copernica's). The private keys of the last two ('<scheme>:<key id>:<base64
    -- PKCS#8>') are read only by claim() for the relay; the public keys are for receivers.
    signature               text NOT NULL DEFAULT 'hmac-sha256'
                            CHECK (signature IN ('hmac-sha256', 'ed25519', 'rsa-sha256')),
    signing_key             text,
    public_key              text,
    -- after a rotation, until previous_key_until: ed25519 requests carry both signatures,
    -- rsa-sha256 requests are signed with the previous key (one Signature header)
    previous_signing_key    text,
    previous_public_key     text,
    previous_key_until      timestamptz,
    -- the X-Copernica-ID header of rsa-sha256 requests (NULL: 'webhook_<id>'); printable ASCII
    signature_account       text CHECK (signature_account ~ '^[!-~]([ -~]{0,198}[!-~])?$'),
    CONSTRAINT webhooks_signing_key_check CHECK (
        (signature = 'hmac-sha256') = (signing_key IS NULL)
        AND (signing_key IS NULL) = (public_key IS NULL)
        AND (previous_signing_key IS NULL) = (previous_public_key IS NULL))
);
CREATE INDEX webhooks_app_event_idx ON webhooks.webhooks (app, event);

COMMENT ON COLUMN webhooks.webhooks.status IS
    'active: delivers; inactive: switched off by an admin; disabled: switched off by the system '
    '(410 Gone or repeated failures). Events are held for activate(): an inactive webhook''s '
    'of the latest settings.replay_window, a disabled one''s of the first replay_window after it '
    'was disabled.';

-- A webhook sends only while this holds (fan_out, claim): switched on, and verified unless its
-- owner's settings did not ask for verification when it was created.
CREATE FUNCTION webhooks._sends(hook webhooks.webhooks) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT hook.status = 'active' AND (hook.verified_at IS NOT NULL OR NOT hook.verification_required)
$$;

-- Tables whose row changes become events. A child table (Copernica's subprofiles in a
-- collection) names the column that holds its parent profile's id.
CREATE TABLE webhooks.tracked (
    source       regclass PRIMARY KEY,
    entity       text NOT NULL,
    key_columns  text[] NOT NULL,
    parent_column text,
    parent_table regclass,      -- the table parent_column references, when a foreign key says so
    tracked_at   timestamptz NOT NULL DEFAULT now(),
    -- what form posts send as `database` and `collection` instead of the table's name and the
    -- entity: the identifiers a receiver already knows (webhooks.identify, sql/30_capture.sql)
    database_name   text CHECK (length(database_name) BETWEEN 1 AND 200),
    collection_name text CHECK (length(collection_name) BETWEEN 1 AND 200),
    -- the parent row's columns each event carries as `parent` (webhooks.enrich): a copy of the
    -- capture triggers' arguments, which are what the trigger reads
    parent_values   text[]
);

-- The outbox. `xid` orders fan-out by commit visibility (see relay.sql, fan_out): a sequence
-- alone cannot, because ids are handed out before commit.
CREATE SEQUENCE webhooks.events_id_seq;

CREATE TABLE webhooks.events (
    id          bigint NOT NULL DEFAULT nextval('webhooks.events_id_seq'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event       text NOT NULL,
    source      regclass,        -- NULL for events from emit()
    origin      text,            -- pg_webhooks.origin or application_name of the writer
    payload     jsonb NOT NULL
) PARTITION BY RANGE (created_at);
-- The only index: every index entry is work for the writer (BENCHMARKS.md). Fan-out walks it,
-- and deliveries find their events through it (deliveries.event_xids, event_ids).
CREATE INDEX events_xid_idx ON webhooks.events (xid, id);

-- Delivery ids come in blocks of 128, one block per row of webhooks.deliveries: the row's id is
-- the first, and the k-th event of the row has delivery id id + k - 1 (webhooks._delivery_row_id).
CREATE SEQUENCE webhooks.deliveries_id_seq INCREMENT BY 128;

-- What is owed to each webhook. Fan-out writes one row per webhook, fan-out batch and UTC day,
-- holding up to 100 events in order (event_ids, event_xids, event_times): one row, not one per
-- event and webhook, because each row costs the database a heap row and index entries three
-- times over (insert, lease, acknowledgement; BENCHMARKS.md, issue 15). state:
--   held       the webhook was inactive when the events arrived; waits for activate()
--   pending    due at due_at
--   leased     claimed by a relay until due_at (then claimable again: at-least-once)
--   delivered  a 2xx was received (for every event of the row)
--   failed     parked: retries exhausted, 410 Gone, or refused by policy; redeliver() revives it
--   dropped    held, then discarded by activate(replay_events => false) or deletion of the webhook
-- A row of one event is one delivery, updated in place as it is retried. In a row of several,
-- `marks` has one character per event: '0' owed, 'l' leased, 'd' delivered, 'm' moved out to
-- a row of its own. An event moves out when its first attempt fails (it is retried alone, with
-- its own attempt count and log), when its lease runs out, and when it is redelivered; so the
-- events left in a row of several are always on their first attempt. Such a row stays due
-- while it owes events, however many of its others are leased: claims may take its events a few
-- at a time, each answered by the acknowledgements as they come, and the row's leased_until
-- says when its leased ones are claimable again.
CREATE TABLE webhooks.deliveries (
    id                bigint NOT NULL DEFAULT nextval('webhooks.deliveries_id_seq'),
    event_created_at  timestamptz NOT NULL,   -- the newest event's time: the row's partition day
    webhook_id        bigint NOT NULL,
    state             text NOT NULL
                      CHECK (state IN ('held', 'pending', 'leased', 'delivered', 'failed', 'dropped')),
    due_at            timestamptz,
    attempts          integer NOT NULL DEFAULT 0,   -- rows of one event: attempts made
    leased_by         text,
    last_status       integer,
    last_error        text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- (after the columns above, where ALTER TABLE puts them in a database upgraded from 0.1.0)
    event_ids         bigint[] NOT NULL,
    event_xids        xid8[] NOT NULL,        -- with event_ids and event_times, finds the events
    event_times       timestamptz[] NOT NULL,
    marks             text NOT NULL,
    leased_until      timestamptz,            -- rows of several: the lease of their 'l' events
    -- ordered webhooks (ordered_by): the md5 of the event's key, and its place among the key's
    -- events (fan-out batch or requeue, then event id): the event waits for every earlier
    -- pending or leased one of its key (claim)
    order_key         text,
    order_batch       bigint,
    order_event       bigint,
    CONSTRAINT deliveries_order_check
        CHECK ((order_key IS NULL) = (order_batch IS NULL) AND (order_key IS NULL) = (order_event IS NULL)
               AND (order_key IS NULL OR length(marks) = 1)),
    CHECK (cardinality(event_ids) BETWEEN 1 AND 128 AND cardinality(event_xids) = cardinality(event_ids)
           AND cardinality(event_times) = cardinality(event_ids)
           AND length(marks) = cardinality(event_ids) AND marks ~ '^[0ldm]+$')
) PARTITION BY RANGE (event_created_at);
CREATE INDEX deliveries_id_idx ON webhooks.deliveries (id);
CREATE INDEX deliveries_due_idx ON webhooks.deliveries (webhook_id, due_at, id)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_held_idx ON webhooks.deliveries (webhook_id, id)
    WHERE state = 'held';
-- The pending and leased events of each key of an ordered webhook, in order: claim() asks it
-- whether an event is its key's next, fan-out when the key's next is due.
CREATE INDEX deliveries_order_idx ON webhooks.deliveries (webhook_id, order_key, order_batch, order_event)
    WHERE order_key IS NOT NULL AND state IN ('pending', 'leased');
-- order_batch: one number per fan-out batch, and one per requeue (redeliver, recover), which
-- puts the requeued events after everything their keys already have.
CREATE SEQUENCE webhooks.delivery_order_seq;

-- The row of a delivery id, and its event's position within that row (see deliveries_id_seq).
-- Two scalar functions, which the planner inlines: as one function of two OUT columns in FROM,
-- it ran as a query of its own for every outcome ack() read (BENCHMARKS.md).
CREATE FUNCTION webhooks._delivery_row_id(delivery_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT delivery_id - (delivery_id - 1) % 128
$$;

CREATE FUNCTION webhooks._delivery_position(delivery_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((delivery_id - 1) % 128)::integer + 1
$$;

-- How many events a row still owes while pending or leased: all of a row of one event; the
-- owed and leased ones of a row of several.
CREATE FUNCTION webhooks._owed(marks text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(marks) = 1 THEN 1 ELSE length(translate(marks, 'dm', '')) END
$$;

-- How many events of a row a claim can lease: a row of one event, or the owed ones of a row of
-- several (leased ones whose lease ran out are moved to rows of their own instead).
CREATE FUNCTION webhooks._leasable(marks text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(marks) = 1 THEN 1 ELSE length(marks) - length(replace(marks, '0', '')) END
$$;

-- marks with the events at positions ks given the marks marks_to, one character each and each
-- position at most once, as claim() and ack() give them (a NULL ks changes nothing; positions
-- outside marks are ignored). A loop in PL/pgSQL: as a SQL query it was parsed and planned on
-- every call, several per claim.
CREATE FUNCTION webhooks._marked(marks text, ks integer[], marks_to text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    FOR i IN REVERSE coalesce(array_upper(ks, 1), 0) .. coalesce(array_lower(ks, 1), 1) LOOP
        CONTINUE WHEN ks[i] IS NULL OR ks[i] NOT BETWEEN 1 AND length(marks) OR marks_to[i] IS NULL;
        marks := overlay(marks PLACING marks_to[i] FROM ks[i] FOR 1);
    END LOOP;
    RETURN marks;
END $$;

-- Failed attempts, one row each with the response's first bytes, kept as long as events are.
CREATE TABLE webhooks.attempts (
    delivery_id   bigint NOT NULL,
    event_id      bigint NOT NULL,
    event_xid     xid8 NOT NULL,
    webhook_id    bigint NOT NULL,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    outcome       text NOT NULL,     -- retry, failed, gone
    status        integer,           -- HTTP status, NULL when no response arrived
    error         text,              -- error class: timeout, connect, refused_address, ...
    response      text               -- first bytes of the response body
) PARTITION BY RANGE (started_at);
CREATE INDEX attempts_delivery_idx ON webhooks.attempts (delivery_id);
CREATE INDEX attempts_webhook_idx ON webhooks.attempts (webhook_id, started_at);

-- Successful attempts, compactly: one row per acknowledgement call and webhook, its arrays
-- holding one element per delivery. A row per attempt, with its index entries, was a third of
-- what a delivered event cost the database.
CREATE TABLE webhooks.successes (
    webhook_id    bigint NOT NULL,
    logged_at     timestamptz NOT NULL,
    delivery_ids  bigint[] NOT NULL,
    event_ids     bigint[] NOT NULL,
    event_xids    xid8[] NOT NULL,
    attempts      integer[] NOT NULL,
    started_at    timestamptz[] NOT NULL,
    duration_ms   integer[] NOT NULL,
    status        integer[] NOT NULL,
    errors        text[] NOT NULL,         -- a 2xx whose body broke off says so ('body')
    responses     text[] NOT NULL          -- first bytes of each response body (NULL: none)
) PARTITION BY RANGE (logged_at);
CREATE INDEX successes_webhook_idx ON webhooks.successes (webhook_id, logged_at);

-- Fan-out progress. Events whose transaction is visible in done_upto have been turned into
-- deliveries. A batch in progress covers the transactions visible in batch_upto but not in
-- done_upto, walked in (xid, id) order; after_xid/after_id is how far that walk got.
-- batch_order is the batch's order_batch (webhooks.deliveries): an ordered webhook's events
-- of a batch in progress wait until it is done, as a later part of the batch may hold an
-- earlier event of their key (the walk is in xid order, a key's events are in commit order).
-- queued_since: no pending or leased delivery has an event from before it. Claims and
-- acknowledgements look at the days since only: every day's partition they do not have to
-- open saves them work on every call, and with seven days kept most days hold nothing queued
-- (BENCHMARKS.md). What queues deliveries of older events moves it back first
-- (webhooks._queued_from); maintain() moves it up to the oldest day that still has some.
CREATE TABLE webhooks.fan_out_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    done_upto    pg_snapshot NOT NULL,
    batch_upto   pg_snapshot,
    after_xid    xid8 NOT NULL DEFAULT '0',
    after_id     bigint NOT NULL DEFAULT 0,
    batch_order  bigint,
    queued_since timestamptz NOT NULL DEFAULT '-infinity'
);
-- The first done_upto leaves this transaction's own xid and everything after it unseen: events
-- written in the transaction that creates the extension must be fanned out too, and
-- pg_current_snapshot() alone would count this transaction as done once a later one commits.
-- Transactions in progress now stay unseen as they are in the current snapshot.
INSERT INTO webhooks.fan_out_state (done_upto)
SELECT format('%s:%s:%s', least(pg_snapshot_xmin(now_seen), own), own,
              (SELECT string_agg(x::text, ',' ORDER BY x)
               FROM pg_snapshot_xip(now_seen) x WHERE x < own))::pg_snapshot
FROM pg_current_snapshot() now_seen, pg_current_xact_id() own;

-- maintain() locks this row so that only one maintainer runs at a time. It is granted to no
-- role, so no one can hold it to switch maintenance off (an advisory lock anyone could take).
CREATE TABLE webhooks.maintenance_lock (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
INSERT INTO webhooks.maintenance_lock DEFAULT VALUES;

-- Relays that are waiting for a NOTIFY. Writers send one only while a relay is listed here as
-- idle: a NOTIFY serialises commits (NOTES.md section 2), so a busy relay is never notified.
CREATE TABLE webhooks.relays (
    name        text PRIMARY KEY,
    idle        boolean NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX relays_idle_idx ON webhooks.relays (idle) WHERE idle;

-- Events fan-out could not turn into deliveries even one at a time and carefully: set aside
-- with the reason, so that one event cannot stop fan-out for every other (sql/40_relay.sql,
-- _fan_out_one_by_one). Kept as long as events are.
CREATE TABLE webhooks.set_aside_events (
    event_id        bigint NOT NULL,
    event_xid       xid8 NOT NULL,
    event_created_at timestamptz NOT NULL,
    event           text NOT NULL,
    reason          text NOT NULL,
    set_aside_at    timestamptz NOT NULL DEFAULT now()
);

-- What the system did to a webhook on its own (it was disabled, and why), for its owner. Each
-- row is also sent as NOTIFY webhooks_notifications with a JSON payload.
CREATE TABLE webhooks.notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id  bigint NOT NULL,
    kind        text NOT NULL,       -- 'disabled'
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_webhook_idx ON webhooks.notifications (webhook_id, created_at);

-- When a throttled webhook last sent an event for each throttle_per value (KlickTipp: a tag
-- webhook fires at most once per contact every 6 hours).
CREATE TABLE webhooks.throttles (
    webhook_id  bigint NOT NULL REFERENCES webhooks.webhooks (id) ON DELETE CASCADE,
    value       text NOT NULL,
    sent_at     timestamptz NOT NULL,
    PRIMARY KEY (webhook_id, value)
);

-- One-off requests the relay makes for an admin (sql/45_probes.sql): fetching a webhook's
-- verification file (kind 'verify') or sending one test request (kind 'test').
CREATE TABLE webhooks.probes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id    bigint NOT NULL REFERENCES webhooks.webhooks (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('verify', 'test')),
    url           text NOT NULL,      -- the webhook's URL when requested
    event         text,               -- test: the type sent
    payload       jsonb,              -- test: the data sent
    state         text NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'running', 'done')),
    requested_by  text NOT NULL DEFAULT session_user,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    leased_by     text,
    lease_until   timestamptz,
    finished_at   timestamptz,
    success       boolean,            -- verify: file found with the right content; test: a 2xx
    result        text,               -- what happened, in words
    status        integer,            -- HTTP status of the (last) request, NULL without a response
    error         text,               -- error class when no response arrived
    response      text,               -- first bytes of the (last) response body
    duration_ms   integer
);
CREATE INDEX probes_open_idx ON webhooks.probes (id) WHERE state <> 'done';
CREATE INDEX probes_webhook_idx ON webhooks.probes (webhook_id, id);

-- Default partitions: nothing is ever refused for want of a partition. maintain() keeps daily
-- partitions ahead of time so these stay empty.
CREATE TABLE webhooks.events_default PARTITION OF webhooks.events DEFAULT;
CREATE TABLE webhooks.deliveries_default PARTITION OF webhooks.deliveries DEFAULT;
CREATE TABLE webhooks.attempts_default PARTITION OF webhooks.attempts DEFAULT;
CREATE TABLE webhooks.successes_default PARTITION OF webhooks.successes DEFAULT;

-- pg_dump keeps the registry, the tracking and the settings (and the id sequences, so restored
-- webhooks keep their ids). Events and deliveries are operational data and are not dumped.
SELECT pg_catalog.pg_extension_config_dump('webhooks.settings', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.webhooks_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.tracked', '');
