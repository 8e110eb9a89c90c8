#!/usr/bin/env bash
# Developer loop: rebuild + install the extension and recreate it in the dev cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd pg_webhooks && cargo pgrx install --pg-config /usr/bin/pg_config >/dev/null)
psql -X -q -v ON_ERROR_STOP=1 -c "DROP EXTENSION IF EXISTS pg_webhooks CASCADE" -c "CREATE EXTENSION pg_webhooks"
