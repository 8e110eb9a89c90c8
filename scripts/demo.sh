#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL cluster, the extension, the relay and a sample receiver that
# verifies signatures with the official Standard Webhooks library. Tracks a profiles table,
# subscribes the receiver, writes rows, and shows the signed deliveries arriving. Cleans up after.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/lib/deps.sh
. scripts/lib/cluster.sh

WORK=$REPO/.tmp/demo
PORT=${PG_WEBHOOKS_DEMO_PORT:-25434}
RECEIVER_PORT=${PG_WEBHOOKS_DEMO_RECEIVER_PORT:-18080}

ensure_deps
ensure_python_verifier "$REPO/.tmp/venv"
install_extension
log "building the relay"
cargo build -q -p pg-webhooks-relay

cleanup() {
    [ -n "${RELAY_PID:-}" ] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    [ -n "${RECEIVER_PID:-}" ] && kill "$RECEIVER_PID" 2>/dev/null
    cluster_stop "$WORK/cluster"
    rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
log "starting a throwaway PostgreSQL 15 cluster on port $PORT"
cluster_start "$WORK/cluster" "$PORT"

sql() { psql -X -q -v ON_ERROR_STOP=1 -d demo "$@"; }
psql -X -q -d postgres -c "CREATE DATABASE demo"
log "creating the extension, a profiles table, and a webhook for its events"
sql <<SQL
CREATE EXTENSION pg_webhooks;
CREATE TABLE profiles (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                       interests text[]);
SELECT webhooks.track('profiles', entity => 'profile');
SELECT webhooks.create('demo', 'profile.*', 'http://127.0.0.1:$RECEIVER_PORT/hook.php');
SELECT webhooks.create('demo', 'email.*', 'http://127.0.0.1:$RECEIVER_PORT/email.php');
SQL
SECRETS=$(sql -At -c "SELECT string_agg(webhooks.secret(id), ' ') FROM webhooks.list()")
# ownership verification: the receiver's server publishes each webhook's verification file
mkdir -p "$WORK/www"
sql -At -F ' ' -c "SELECT f.file_name, f.content FROM webhooks.list() w,
                   webhooks.verification_file(w.id) f" |
    while read -r name content; do echo "$content" >"$WORK/www/$name"; done

log "starting the sample receiver (verifies every signature) on port $RECEIVER_PORT"
WEBHOOK_SECRET=$SECRETS WEBHOOK_WEB_ROOT=$WORK/www "$REPO/.tmp/venv/bin/python" \
    relay/sample-receiver/receiver.py "$RECEIVER_PORT" >"$WORK/receiver.log" 2>&1 &
RECEIVER_PID=$!
for _ in $(seq 1 50); do
    grep -q listening "$WORK/receiver.log" 2>/dev/null && break
    sleep 0.1
done

log "starting the relay"
target/debug/pg-webhooks-relay --database-url "host=$PGHOST port=$PGPORT user=postgres dbname=demo" \
    --allow-cidr 127.0.0.1/32 --listen-addr 127.0.0.1:0 >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!

log "verifying the webhooks (the relay fetches their verification files)"
sql -c "SELECT webhooks.verify(id) FROM webhooks.list()" >/dev/null
sql -c "SELECT p.webhook_id, p.success, p.result
        FROM webhooks.probe_info i, webhooks.probe(i.id, wait => '10 seconds') p"
[ "$(sql -At -c "SELECT count(*) FROM webhooks.list() WHERE sending")" = 2 ] ||
    { echo "verification failed; relay log:" >&2; tail -30 "$WORK/relay.log" >&2; exit 1; }

log "writing rows and emitting an application event"
sql <<'SQL'
INSERT INTO profiles (email, country, interests)
VALUES ('ann@example.com', 'NL', '{sports}'), ('bob@example.com', 'DE', '{music}');
UPDATE profiles SET country = 'BE' WHERE email = 'ann@example.com';
DELETE FROM profiles WHERE email = 'bob@example.com';
SELECT webhooks.emit('email.opened', '{"recipient": "ann@example.com", "ip": "192.0.2.7"}') AS event_id;
SQL

log "waiting for the 5 signed deliveries"
for _ in $(seq 1 100); do
    [ "$(grep -c '^verified' "$WORK/receiver.log" || true)" -ge 5 ] && break
    sleep 0.2
done
echo
echo "--- what the receiver got (each signature verified with the standardwebhooks library):"
grep -E '^(verified|REJECTED)' "$WORK/receiver.log" || true
echo
echo "--- what PostgreSQL knows about them (webhooks.delivery_status):"
sql -c "SELECT delivery_id, event, state, attempts, last_status FROM webhooks.delivery_status ORDER BY delivery_id"
verified=$(grep -c '^verified' "$WORK/receiver.log" || true)
if [ "$verified" -lt 5 ]; then
    echo "only $verified of 5 deliveries arrived; relay log:" >&2
    tail -30 "$WORK/relay.log" >&2
    exit 1
fi
log "demo done: 5 events delivered and verified; cleaning up"
