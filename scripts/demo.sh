#!/usr/bin/env bash
# `make demo`: the runtime's main job on this machine — PostgreSQL and the broker come up, an
# api and a consumer process start, signed webhooks flow through Kafka into PostgreSQL, and a
# consumer cutover (active -> standby, standby -> active) happens mid-stream. Prints a summary.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"
export AUREN_STATE="$(mktemp -d "${TMPDIR:-/tmp}/auren-demo.XXXXXX")"
chmod 755 "$AUREN_STATE"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash scripts/broker.sh stop || true
  bash scripts/postgres.sh stop || true
  rm -rf "$AUREN_STATE"
}
trap cleanup EXIT

bash scripts/deps.sh
bash scripts/broker.sh install
bash scripts/postgres.sh start
bash scripts/broker.sh start
say "building auren-runtime"
cargo build --locked -q -p auren-runtime
BIN="$CARGO_TARGET_DIR/debug/auren-runtime"
SECRET=demo-secret TOKEN=demo-admin-token
env_common=(KAFKA_BROKERS="$AUREN_TEST_KAFKA" DATABASE_URL="$AUREN_TEST_DATABASE_URL" KAFKA_TOPIC=demo-events
  KAFKA_GROUP=demo-consumers WEBHOOK_SECRET_OURA="$SECRET" ADMIN_TOKEN="$TOKEN" API_HOST=127.0.0.1
  HEALTH_CHECK_INTERVAL=2 LOG_FORMAT=json RUST_LOG=warn)
psql "$AUREN_TEST_DATABASE_URL" -qc "DROP TABLE IF EXISTS events, user_metrics, _sqlx_migrations" >/dev/null

start() { # name port extra-env...
  local name=$1 port=$2; shift 2
  env "${env_common[@]}" API_PORT="$port" "$@" "$BIN" 2>"$AUREN_STATE/$name.log" &
  PIDS+=("$!")
  until curl -sf "http://127.0.0.1:$port/readiness" >/dev/null; do sleep 0.1; done
  say "$name ready on 127.0.0.1:$port"
}
start api 18500 RUN_MODE=api AUREN_RELEASE=v1
start consumer-blue 18501 RUN_MODE=consumer AUREN_RELEASE=blue CONSUMER_ROLE=active
start consumer-green 18502 RUN_MODE=consumer AUREN_RELEASE=green CONSUMER_ROLE=standby

say "GET /health (api):"
curl -s http://127.0.0.1:18500/health | python3 -m json.tool

say "sending 6000 signed webhooks while the consumers cut over blue -> green"
python3 scripts/loadgen.py http://127.0.0.1:18500/webhooks/oura "$SECRET" 6000 8 > "$AUREN_STATE/load.json" &
LOAD=$!
sleep "${DEMO_SWITCH_AFTER:-2}"
role() { curl -s -X PUT -H "Authorization: Bearer $TOKEN" -d "{\"role\":\"$2\"}" \
  -H 'content-type: application/json' "http://127.0.0.1:$1/admin/consumer/role"; echo; }
say "blue -> standby: $(role 18501 standby)"
say "green -> active: $(role 18502 active)"
wait $LOAD
SUMMARY="$(cat "$AUREN_STATE/load.json")"
ACCEPTED="$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['accepted'])" "$SUMMARY")"
for _ in $(seq 300); do
  STORED="$(psql "$AUREN_TEST_DATABASE_URL" -qAtc 'SELECT count(*) FROM events')"
  [ "$STORED" -ge "$ACCEPTED" ] && break
  sleep 0.2
done
DISTINCT="$(psql "$AUREN_TEST_DATABASE_URL" -qAtc 'SELECT count(DISTINCT id) FROM events')"
echo
say "summary"
echo "  load:            $SUMMARY"
echo "  events stored:   $STORED (distinct ids: $DISTINCT) of $ACCEPTED accepted"
echo "  stored by blue:  $(curl -s http://127.0.0.1:18501/metrics | awk '/^auren_runtime_events_stored_total/ {print $2}')"
echo "  stored by green: $(curl -s http://127.0.0.1:18502/metrics | awk '/^auren_runtime_events_stored_total/ {print $2}')"
echo "  per-user projection: $(psql "$AUREN_TEST_DATABASE_URL" -qAtc 'SELECT sum(event_count) FROM user_metrics') events counted"
[ "$STORED" = "$ACCEPTED" ] && [ "$DISTINCT" = "$ACCEPTED" ] || die "stored $STORED / distinct $DISTINCT != accepted $ACCEPTED"
say "every accepted event stored exactly once. Next: README.md (Quick start), docs/runtime.md, make test"
