#!/usr/bin/env bash
# Runtime benchmarks on this machine: a release build of auren-runtime against the local broker
# and PostgreSQL, with wrk as the load generator. Prints a Markdown table of medians.
#   make bench            (BENCH_SECONDS=10 BENCH_RUNS=3 by default)
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
RUNS="${BENCH_RUNS:-3}"
CONNS="${BENCH_CONNECTIONS:-64}"
export AUREN_STATE="$(mktemp -d "${TMPDIR:-/tmp}/auren-bench.XXXXXX")"
chmod 755 "$AUREN_STATE"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/broker.sh stop || true
  bash scripts/postgres.sh stop || true
  rm -rf "$AUREN_STATE"
}
trap cleanup EXIT

bash scripts/deps.sh
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
bash scripts/postgres.sh start
bash scripts/broker.sh start
cargo build --release --locked -p auren-runtime -q
BIN="$CARGO_TARGET_DIR/release/auren-runtime"
SECRET=bench-secret
DB="$AUREN_TEST_DATABASE_URL"
psql "$DB" -qc "DROP TABLE IF EXISTS events, user_metrics, _sqlx_migrations" >/dev/null

# wrk repeats one signed request: the replay guard (which would answer it 409 after the first
# 202) is off here; its cost is one ~0.3 µs lookup per request.
common_env=(KAFKA_BROKERS="$AUREN_TEST_KAFKA" DATABASE_URL="$DB" WEBHOOK_SECRET_OURA="$SECRET"
  LOG_FORMAT=json RUST_LOG=warn API_HOST=127.0.0.1 HEALTH_CHECK_INTERVAL=5 WEBHOOK_REPLAY_CAPACITY=0)

wait_ready() { # port -> prints ms until ready
  local start=$(date +%s%N)
  until curl -sf "http://127.0.0.1:$1/readiness" >/dev/null; do sleep 0.01; done
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Signed request bodies for wrk (the signature stays valid for WEBHOOK_TOLERANCE_SECONDS).
make_wrk_script() { # body-file -> lua file
  local body ts sig
  body="$(cat "$1")"; ts="$(date +%s)"
  sig="sha256=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)"
  python3 - "$1" "$ts" "$sig" > "$1.lua" <<'PY'
import json, sys
body = open(sys.argv[1]).read()
print('wrk.method = "POST"')
print('wrk.body = %s' % json.dumps(body))
print('wrk.headers["content-type"] = "application/json"')
print('wrk.headers["x-auren-timestamp"] = "%s"' % sys.argv[2])
print('wrk.headers["x-auren-signature"] = "%s"' % sys.argv[3])
print('done = function(summary, latency, requests)')
print('  io.write(string.format("RESULT %d %d %.3f %.3f\\n", summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, latency:percentile(50)/1000, latency:percentile(99)/1000))')
print('end')
PY
  echo "$1.lua"
}

run_wrk() { # url lua -> "req/s p50ms p99ms errors"
  local threads=2; [ "$CONNS" -lt 2 ] && threads=1
  local out; out="$(wrk -t"$threads" -c"$CONNS" -d"${SECONDS_PER_RUN}s" -s "$2" "$1" 2>&1)"
  local rps; rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  echo "$out" | awk -v rps="$rps" '/^RESULT/ {print rps, $4, $5, $3}'
}

say "ready time (5 starts)"
ready=()
for i in 1 2 3 4 5; do
  port=$((18400 + i))
  env "${common_env[@]}" RUN_MODE=api API_PORT=$port ADMIN_PORT=$((port + 100)) KAFKA_TOPIC=bench "$BIN" 2>/dev/null &
  pid=$!; ready+=("$(wait_ready $port)"); kill $pid; wait $pid 2>/dev/null || true
done
READY_MS="$(printf '%s\n' "${ready[@]}" | median)"

API_PORT=18480
env "${common_env[@]}" RUN_MODE=api API_PORT=$API_PORT ADMIN_PORT=18580 KAFKA_TOPIC=bench "$BIN" 2>"$AUREN_STATE/api.log" &
API_PID=$!; PIDS+=("$API_PID")
wait_ready $API_PORT >/dev/null

printf '{"user_id":"bench-%s","data_type":"heart_rate","value":61,"timestamp":"2026-01-01T00:00:00Z"}' 1 > "$AUREN_STATE/single.json"
python3 -c "
import json, sys
sys.stdout.write(json.dumps([{'user_id':'bench-%d' % (i % 50),'data_type':'steps','value':i,'timestamp':'2026-01-01T00:00:00Z'} for i in range(100)]))" > "$AUREN_STATE/batch.json"
SINGLE_LUA="$(make_wrk_script "$AUREN_STATE/single.json")"
BATCH_LUA="$(make_wrk_script "$AUREN_STATE/batch.json")"
printf 'done = function(s, l, r) io.write(string.format("RESULT %%d %%d %%.3f %%.3f\\n", s.requests, s.errors.status, l:percentile(50)/1000, l:percentile(99)/1000)) end\n' > "$AUREN_STATE/get.lua"

bench() { # name url lua
  local rows=()
  for _ in $(seq "$RUNS"); do rows+=("$(run_wrk "$2" "$3")"); done
  local rps p50 p99 errs
  rps="$(printf '%s\n' "${rows[@]}" | awk '{print $1}' | median)"
  p50="$(printf '%s\n' "${rows[@]}" | awk '{print $2}' | median)"
  p99="$(printf '%s\n' "${rows[@]}" | awk '{print $3}' | median)"
  errs="$(printf '%s\n' "${rows[@]}" | awk '{s+=$4} END {print s}')"
  echo "| $1 | $rps | $p50 | $p99 | $errs |"
}

say "HTTP benchmarks: ${RUNS} runs x ${SECONDS_PER_RUN}s, ${CONNS} connections"
RESULTS=()
RESULTS+=("$(bench '`GET /live` (HTTP stack baseline)' "http://127.0.0.1:$API_PORT/live" "$AUREN_STATE/get.lua")")
RESULTS+=("$(bench '`GET /health`' "http://127.0.0.1:$API_PORT/health" "$AUREN_STATE/get.lua")")
RESULTS+=("$(CONNS=1 bench '`GET /health`, 1 connection (latency)' "http://127.0.0.1:$API_PORT/health" "$AUREN_STATE/get.lua")")
RESULTS+=("$(bench '`POST /webhooks/oura` (1 event, acks=all)' "http://127.0.0.1:$API_PORT/webhooks/oura" "$SINGLE_LUA")")
RESULTS+=("$(bench '`POST /webhooks/oura/batch` (100 events)' "http://127.0.0.1:$API_PORT/webhooks/oura/batch" "$BATCH_LUA")")
API_RSS_KB="$(awk '/VmHWM/ {print $2}' /proc/$API_PID/status)"
ACCEPTED="$(curl -s "http://127.0.0.1:$API_PORT/metrics" | awk '/^auren_runtime_events_accepted_total/ {print $2}')"

say "consumer: storing the $ACCEPTED accepted events"
CONS_PORT=18481
start_ns=$(date +%s%N)
env "${common_env[@]}" RUN_MODE=consumer API_PORT=$CONS_PORT ADMIN_PORT=18581 KAFKA_TOPIC=bench KAFKA_GROUP="bench-$(date +%s)" \
  MAX_CONCURRENT_EVENTS="${BENCH_CONSUMER_BATCH:-1000}" "$BIN" 2>"$AUREN_STATE/consumer.log" &
CONS_PID=$!; PIDS+=("$CONS_PID")
first_ns=""
# wrk repeats one signed request, and a signed request's events have ids derived from it, so
# the table keeps one row per distinct request: count the records the consumer handled.
while :; do
  n="$(curl -s "http://127.0.0.1:$CONS_PORT/metrics" | awk '/^auren_runtime_consumer_batch_size_sum/ {printf "%d", $2}')"
  n="${n:-0}"
  [ -z "$first_ns" ] && [ "${n:-0}" -gt 0 ] && first_ns=$(date +%s%N) && first_n=$n
  [ "${n:-0}" -ge "${ACCEPTED%.*}" ] && break
  [ $(( ($(date +%s%N) - start_ns) / 1000000000 )) -gt 600 ] && break
  sleep 0.2
done
end_ns=$(date +%s%N)
STORED="$n"
CONS_RATE="$(awk -v n="$((STORED - first_n))" -v ns="$((end_ns - first_ns))" 'BEGIN {printf "%.0f", n / (ns / 1e9)}')"
CONS_RSS_KB="$(awk '/VmHWM/ {print $2}' /proc/$CONS_PID/status)"

echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); broker tansu (memory), PostgreSQL 15 (fsync=off); date $(date -u +%F)"
echo
echo "| what | req/s (median) | p50 ms | p99 ms | non-2xx/errors |"
echo "|---|---|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
echo
echo "| what | value |"
echo "|---|---|"
echo "| ready after start (median of 5, deps up) | ${READY_MS} ms |"
echo "| consumer -> PostgreSQL (batch ${BENCH_CONSUMER_BATCH:-1000}) | ${CONS_RATE} events/s ($STORED handled of ${ACCEPTED%.*} accepted; replays of one signed request share one row) |"
echo "| api peak RSS under load | $((API_RSS_KB / 1024)) MiB |"
echo "| consumer peak RSS | $((CONS_RSS_KB / 1024)) MiB |"
