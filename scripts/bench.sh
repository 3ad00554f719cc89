#!/usr/bin/env bash
# Runtime benchmarks on this machine: release builds of auren-runtime (with symbols, profile
# "profiling") against the local broker and PostgreSQL, wrk as the load generator.
# Prints one Markdown table (docs/benchmarks.md).
#
#   make bench                          this build
#   make bench BENCH_AGAINST=<git ref>  this build and <ref>, measured turn about in the same run
#
# Every figure sits beside the `GET /live` baseline of the same run and process, so a noisy
# machine shows as a low baseline, not as a regression.
# BENCH_SECONDS (6) and BENCH_RUNS (3): wrk seconds per figure and runs per build;
# BENCH_CONNECTIONS (64); BENCH_CONSUMER_EVENTS (1000000): distinct events the consumer stores
# (one process, then two in one group, into PostgreSQL with fsync off; then one process into a
# durable PostgreSQL, fsync on, beside it on the same storage), each build on its own default
# batch size unless BENCH_CONSUMER_BATCH sets one (MAX_CONCURRENT_EVENTS, which every build
# reads); the runtime's own settings (KAFKA_COMPRESSION=lz4 ...) pass through;
# BENCH_ONLY: any of http,consumer,instructions (default all three), or profile: flamegraphs of
# this build's hot paths into docs/flamegraphs/ and where their CPU goes (`make profile`).
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-6}"
RUNS="${BENCH_RUNS:-3}"
CONNS="${BENCH_CONNECTIONS:-64}"
CONSUMER_EVENTS="${BENCH_CONSUMER_EVENTS:-1000000}"
CONSUMER_BATCH="${BENCH_CONSUMER_BATCH:-}"
# The consumer's batch setting: none (each build's default) unless BENCH_CONSUMER_BATCH asks.
BATCH_ENV=() BATCH_LABEL="default batch settings"
if [ -n "$CONSUMER_BATCH" ]; then
  BATCH_ENV=(MAX_CONCURRENT_EVENTS="$CONSUMER_BATCH") BATCH_LABEL="batches ≤ $CONSUMER_BATCH"
fi
ONLY="${BENCH_ONLY:-http,consumer,instructions}"
AGAINST="${BENCH_AGAINST:-}"
export AUREN_STATE="$(mktemp -d "${TMPDIR:-/tmp}/auren-bench.XXXXXX")"
chmod 755 "$AUREN_STATE"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/broker.sh stop || true
  bash scripts/postgres.sh stop || true
  durable_pg stop || true
  rm -rf "$AUREN_STATE"
}
trap cleanup EXIT
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
# The durable PostgreSQL (fsync on) beside the fast one, on the next port.
DURABLE_PG_PORT=$((AUREN_PG_PORT + 1))
DURABLE_DB="postgres://auren@${AUREN_SERVICE_HOST}:${DURABLE_PG_PORT}/auren"
durable_pg() { # start|stop
  AUREN_PG_DURABLE=1 AUREN_PG_PORT="$DURABLE_PG_PORT" bash scripts/postgres.sh "$1"
}

# --- builds ----------------------------------------------------------------------------------
# The release profile plus line tables and symbols, in its own target folder, so a profiler can
# name functions and the shipped (stripped) release build is left alone. The binary runs with
# the environment its image sets (the Dockerfile's `ENV` lines), through a launcher that execs it.
profiling_build() { # source-dir target-dir -> launcher path
  (cd "$1" && CARGO_TARGET_DIR="$2" CARGO_PROFILE_PROFILING_INHERITS=release \
    CARGO_PROFILE_PROFILING_DEBUG=line-tables-only CARGO_PROFILE_PROFILING_STRIP=false \
    cargo build --profile profiling --locked -p auren-runtime -q)
  local image_env
  image_env="$(awk '/^FROM .* AS runtime/ {on = 1; next} /^FROM / {on = 0} on && /^ENV / {$1 = ""; print}' "$1/Dockerfile")"
  printf '#!/bin/sh\nexec env %s ${BENCH_UNDER:-} "%s" "$@"\n' "$image_env" "$2/profiling/auren-runtime" \
    > "$2/profiling/as-image"
  chmod +x "$2/profiling/as-image"
  echo "$2/profiling/as-image"
}

# <ref> is built in a worktree with its own target folder: two checkouts sharing one target
# folder reuse each other's artefacts of the workspace crates.
build_against() { # ref -> binary path
  local sha dir="$AUREN_CACHE/bench-against"
  sha="$(git rev-parse --verify "$1^{commit}")" || die "BENCH_AGAINST: no commit named $1"
  if [ ! -e "$dir/src/.git" ]; then
    git worktree prune
    git worktree add --detach -f "$dir/src" "$sha" >/dev/null
  fi
  git -C "$dir/src" checkout -q --detach "$sha"
  profiling_build "$dir/src" "$dir/target"
}

bash scripts/deps.sh
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
# pg_stat_statements: how long PostgreSQL itself executes the consumer's batch statement.
export AUREN_PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements"
bash scripts/postgres.sh start
wants consumer && durable_pg start
bash scripts/broker.sh start
say "building this tree (profile profiling)"
BINS=("$(profiling_build "$AUREN_ROOT" "$CARGO_TARGET_DIR")")
if [ -n "$AGAINST" ]; then
  say "building $AGAINST ($(git rev-parse --short "$AGAINST")) in $AUREN_CACHE/bench-against"
  BINS=("$(build_against "$AGAINST")" "${BINS[0]}")
fi
SECRET=bench-secret
WHOOP_SECRET=bench-whoop-secret
DB="$AUREN_TEST_DATABASE_URL"
fresh_database() { # url
  psql "$1" -qc "DROP TABLE IF EXISTS events, user_metrics, _sqlx_migrations" >/dev/null 2>&1
  psql "$1" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
}
fresh_database "$DB"
wants consumer && fresh_database "$DURABLE_DB"

# wrk repeats one signed request: the replay guard (which would answer it 409 after the first
# 202) is off here; its cost is one ~0.3 µs lookup per request.
common_env=(KAFKA_BROKERS="$AUREN_TEST_KAFKA" DATABASE_URL="$DB" WEBHOOK_SECRET_OURA="$SECRET"
  WEBHOOK_SECRET_VENDOR_WHOOP="$WHOOP_SECRET"
  LOG_FORMAT=json RUST_LOG=warn API_HOST=127.0.0.1 HEALTH_CHECK_INTERVAL=5 WEBHOOK_REPLAY_CAPACITY=0)

wait_ready() { # port [poll interval, s] -> prints ms until ready
  local start=$(date +%s%N)
  until curl -sf "http://127.0.0.1:$1/readiness" >/dev/null; do sleep "${2:-0.01}"; done
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
metric() { # port name -> value (0 when absent, also while the process is not yet listening)
  { curl -s "http://127.0.0.1:$1/metrics" || true; } | awk -v m="$2" '$1 == m {printf "%d", $2; f=1} END {if (!f) print 0}'
}
peak_rss_mib() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }

# Results: one line per (build, figure, run): "<build index> <figure> <value>".
RESULTS="$AUREN_STATE/results"
: > "$RESULTS"
record() { echo "$1 $2 $3" >> "$RESULTS"; }

# --- HTTP: wrk against an api process ----------------------------------------------------------
# Signed request bodies for wrk (the signature stays valid for WEBHOOK_TOLERANCE_SECONDS).
wrk_lua() { # body-file timestamp-header timestamp signature-header signature -> lua file
  python3 - "$@" > "$1.lua" <<'PY'
import json, sys
body_file, ts_header, ts, sig_header, sig = sys.argv[1:]
print('wrk.method = "POST"')
print('wrk.body = %s' % json.dumps(open(body_file).read()))
print('wrk.headers["content-type"] = "application/json"')
print('wrk.headers["%s"] = "%s"' % (ts_header, ts))
print('wrk.headers["%s"] = "%s"' % (sig_header, sig))
PY
  cat "$AUREN_STATE/done.lua" >> "$1.lua"
  echo "$1.lua"
}
make_wrk_script() { # body-file -> lua file: the signed AUREN reading API
  local body ts sig
  body="$(cat "$1")"; ts="$(date +%s)"
  sig="sha256=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)"
  wrk_lua "$1" x-auren-timestamp "$ts" x-auren-signature "$sig"
}
make_whoop_script() { # body-file -> lua file: WHOOP v2 (base64 HMAC-SHA256 of ms timestamp + body)
  local body ts sig
  body="$(cat "$1")"; ts="$(date +%s%3N)"
  sig="$(printf '%s%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$WHOOP_SECRET" -binary | base64 -w0)"
  wrk_lua "$1" x-whoop-signature-timestamp "$ts" x-whoop-signature "$sig"
}
cat > "$AUREN_STATE/done.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.3f %.3f\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
LUA
printf '{"user_id":"bench-1","data_type":"heart_rate","value":61,"timestamp":"2026-01-01T00:00:00Z"}' > "$AUREN_STATE/single.json"
python3 -c "
import json, sys
sys.stdout.write(json.dumps([{'user_id':'bench-%d' % (i % 50),'data_type':'steps','value':i,'timestamp':'2026-01-01T00:00:00Z'} for i in range(100)]))" > "$AUREN_STATE/batch.json"
# The same single event as a vendor sends it: a WHOOP v2 notification on /vendors/whoop. wrk
# repeats it, so every copy is a retry (the same event id); each is still verified and
# produced, like a first delivery.
printf '{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"recovery.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}' > "$AUREN_STATE/whoop.json"
SINGLE_LUA="$(make_wrk_script "$AUREN_STATE/single.json")"
WHOOP_LUA="$(make_whoop_script "$AUREN_STATE/whoop.json")"
BATCH_LUA="$(make_wrk_script "$AUREN_STATE/batch.json")"
GET_LUA="$AUREN_STATE/done.lua"

wrk_once() { # connections url lua -> "req/s p50ms p99ms errors"
  local threads=2; [ "$1" -lt 2 ] && threads=1
  local out; out="$(wrk -t"$threads" -c"$1" -d"${SECONDS_PER_RUN}s" -s "$3" "$2" 2>&1)"
  local rps; rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  echo "$out" | awk -v rps="$rps" '/^RESULT/ {print rps, $4, $5, $3}'
}

http_figures() { # build-index binary
  local port=18480 b="$1"
  env "${common_env[@]}" RUN_MODE=api API_PORT=$port ADMIN_PORT=18580 KAFKA_TOPIC=bench "$2" 2>>"$AUREN_STATE/api.log" &
  local pid=$!; PIDS+=("$pid")
  record "$b" ready_ms "$(wait_ready $port)"
  local row
  for figure in live:"$CONNS":/live:"$GET_LUA" health:"$CONNS":/health:"$GET_LUA" \
      health1:1:/health:"$GET_LUA" single:"$CONNS":/webhooks/oura:"$SINGLE_LUA" \
      whoop:"$CONNS":/vendors/whoop:"$WHOOP_LUA" batch:"$CONNS":/webhooks/oura/batch:"$BATCH_LUA"; do
    IFS=: read -r name conns path lua <<< "$figure"
    # A build from before the vendor routes (BENCH_AGAINST) has no /vendors/whoop: no figure.
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port$path")" = 404 ] && continue
    row="$(wrk_once "$conns" "http://127.0.0.1:$port$path" "$lua")"
    read -r rps p50 p99 errs <<< "$row"
    record "$b" "${name}_rps" "$rps"; record "$b" "${name}_p50" "$p50"; record "$b" "${name}_p99" "$p99"
    record "$b" errors "$errs"
  done
  record "$b" api_rss "$(peak_rss_mib "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# --- consumer: a backlog of distinct events stored by a fresh consumer group --------------------
# Distinct events: the feed's api runs unsigned (WEBHOOK_AUTH=disabled), so every event gets a
# fresh id; a repeated signed request would give every copy the same id, one row, and the
# consumer would measure skipping duplicates.
feed_backlog() { # topic events
  local port=18482
  env "${common_env[@]}" RUN_MODE=api WEBHOOK_AUTH=disabled API_PORT=$port ADMIN_PORT=18582 KAFKA_TOPIC="$1" \
    "${BINS[-1]}" 2>>"$AUREN_STATE/feed.log" &
  local pid=$!; PIDS+=("$pid")
  wait_ready $port >/dev/null
  # bench-send.py, not wrk: wrk drops the requests in flight at its deadline, and their events
  # still reach Kafka unanswered, so the count of accepted events would not be the backlog.
  python3 scripts/bench-send.py "127.0.0.1:$port" "$(( ($2 + 99) / 100 ))" >/dev/null \
    || die "feeding the backlog failed"
  metric $port auren_runtime_events_accepted_total
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

stored_total() { # processes -> events stored by consumers 1..processes
  local sum=0 i
  for i in $(seq "$1"); do sum=$((sum + $(metric $((18480 + i)) auren_runtime_events_stored_total))); done
  echo "$sum"
}
# One consumer group of <processes> consumers (ports 18481...) stores the backlog into <database>;
# its figures are named consumer[<processes>]<suffix>_*.
consumer_figures() { # build-index binary topic events processes database [suffix [VAR=value...]]
  local b="$1" procs="$5" db="$6" suffix="${7:-}" n=0 first_n="" first_ns="" start_ns i pids=() group
  local extra=("${@:8}")
  group="bench-$b-$(date +%s%N)"
  psql "$db" -qc "TRUNCATE events, user_metrics" >/dev/null 2>&1 || true
  psql "$db" -qc "SELECT pg_stat_statements_reset()" >/dev/null
  start_ns=$(date +%s%N)
  for i in $(seq "$procs"); do
    env "${common_env[@]}" DATABASE_URL="$db" RUN_MODE=consumer API_PORT=$((18480 + i)) \
      ADMIN_PORT=$((18580 + i)) KAFKA_TOPIC="$3" KAFKA_GROUP="$group" "${BATCH_ENV[@]}" "${extra[@]}" "$2" \
      2>>"$AUREN_STATE/consumer.log" &
    pids+=("$!"); PIDS+=("$!")
  done
  while [ "$n" -lt "$4" ]; do
    n="$(stored_total "$procs")"
    if [ -z "$first_ns" ] && [ "$n" -gt 0 ]; then first_ns=$(date +%s%N); first_n=$n; fi
    [ $(( ($(date +%s%N) - start_ns) / 1000000000 )) -gt 600 ] && die "consumers stored $n of $4 in 600 s"
    sleep 0.2
  done
  local end_ns=$(date +%s%N) figure=consumer eps
  [ "$procs" = 1 ] || figure="consumer$procs"
  eps="$(awk -v n="$((n - first_n))" -v ns="$((end_ns - first_ns))" 'BEGIN {printf "%.0f", n / (ns / 1e9)}')"
  record "$b" "${figure}${suffix}_eps" "$eps"
  if [ "$procs" = 1 ]; then
    record "$b" "consumer${suffix}_rss" "$(peak_rss_mib "${pids[0]}")"
    store_figures "$b" "$((end_ns - first_ns))" "$4" "$db" "$suffix"
  fi
  local rows; rows="$(psql "$db" -tAc "SELECT count(*) FROM events")"
  [ "$rows" = "$4" ] || die "consumer: $rows rows stored for $4 distinct events"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
}

# PostgreSQL's own share of a one-consumer run: the time it spent executing the batch statement
# (all batches: one statement each), as events/s if nothing else took time (the ceiling of
# storing one batch after another), and as a share of the run's wall time. A consumer that runs
# two batch statements at once (issue 28's pipeline) overlaps their execution times, so for it
# the sum is no ceiling and the shares can exceed 100 %: the serial pass (suffix *_serial,
# CONSUMER_BATCHES_IN_FLIGHT=1, one statement at a time) gives the ceiling the default run is
# measured against (docs/benchmarks.md).
store_figures() { # build-index run-ns events database suffix
  local pg ceiling
  pg="$(psql "$4" -tAc "SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements
                          WHERE query LIKE 'WITH inserted AS%'")"
  # The pattern is the start of the batch statement in runtime/src/store.rs.
  awk -v ms="$pg" 'BEGIN {exit !(ms > 0)}' \
    || die "pg_stat_statements saw no batch statement (WITH inserted AS ...): did store.rs change it?"
  ceiling="$(awk -v ms="$pg" -v n="$3" 'BEGIN {printf "%.0f", n / (ms / 1e3)}')"
  record "$1" "store_ceiling$5_eps" "$ceiling"
  record "$1" "store_busy$5_pct" "$(awk -v ms="$pg" -v ns="$2" 'BEGIN {printf "%.0f", 100 * ms * 1e6 / ns}')"
}

# --- instructions: valgrind's callgrind counts what the runtime executes, steady where times
# are not. Two processes per figure, one given few requests (or backlog events) and one given
# many; the difference over the extra requests is the cost of one, as start, idle work and stop
# cancel out. Readiness and progress are polled slowly: every poll is a request too.
CG_REQUESTS=(200 1200)
CG_EVENTS=(2000 12000)
under_callgrind() { # name -> prefix for the launcher
  echo "valgrind -q --tool=callgrind --callgrind-out-file=$AUREN_STATE/callgrind.$1"
}
instructions() { # name -> instructions counted
  awk '/^(summary|totals):/ {print $2; exit}' "$AUREN_STATE/callgrind.$1"
}
per_extra() { # few-instructions many-instructions few many -> instructions per extra unit
  awk -v a="$1" -v b="$2" -v n="$3" -v m="$4" 'BEGIN {printf "%.0f", (b - a) / (m - n)}'
}
api_instructions() { # build-index launcher kind requests -> instructions
  local port=18483 name="api-$1-$3-$4"
  BENCH_UNDER="$(under_callgrind "$name")" env "${common_env[@]}" RUN_MODE=api API_PORT=$port \
    ADMIN_PORT=18583 KAFKA_TOPIC=bench-instructions "$2" 2>>"$AUREN_STATE/callgrind.log" &
  local pid=$!; PIDS+=("$pid")
  wait_ready $port 0.5 >/dev/null
  python3 scripts/bench-send.py "127.0.0.1:$port" "$4" --connections 1 --kind "$3" \
    --secret "$SECRET" >/dev/null || die "instructions: $3 requests not answered as expected"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  instructions "$name"
}
consumer_instructions() { # build-index launcher topic events -> instructions
  local port=18484 name="consumer-$1-$4"
  psql "$DB" -qc "TRUNCATE events, user_metrics" >/dev/null 2>&1 || true
  BENCH_UNDER="$(under_callgrind "$name")" env "${common_env[@]}" RUN_MODE=consumer API_PORT=$port \
    ADMIN_PORT=18584 KAFKA_TOPIC="$3" KAFKA_GROUP="bench-instructions-$1-$(date +%s%N)" \
    "${BATCH_ENV[@]}" "$2" 2>>"$AUREN_STATE/callgrind.log" &
  local pid=$!; PIDS+=("$pid")
  until [ "$(metric $port auren_runtime_events_stored_total)" -ge "$4" ]; do sleep 0.5; done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  instructions "$name"
}
instruction_figures() { # build-index launcher topics...
  local b="$1" bin="$2" kind few many
  for kind in live single; do
    few="$(api_instructions "$b" "$bin" "$kind" "${CG_REQUESTS[0]}")"
    many="$(api_instructions "$b" "$bin" "$kind" "${CG_REQUESTS[1]}")"
    record "$b" "${kind}_instructions" "$(per_extra "$few" "$many" "${CG_REQUESTS[@]}")"
  done
  few="$(consumer_instructions "$b" "$bin" "$3" "${CG_EVENTS[0]}")"
  many="$(consumer_instructions "$b" "$bin" "$4" "${CG_EVENTS[1]}")"
  record "$b" event_instructions "$(per_extra "$few" "$many" "${CG_EVENTS[@]}")"
}

# --- profile: perf (software clock: this VM has no hardware counters) and inferno -------------
INFERNO_VERSION=0.12.8
INFERNO="$AUREN_CACHE/tools/inferno-$INFERNO_VERSION/bin"
PROFILES="$AUREN_CACHE/profile" # perf data and folded stacks of the last `make profile`
install_profilers() {
  command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null
  [ -x "$INFERNO/inferno-flamegraph" ] || cargo install inferno --version "$INFERNO_VERSION" --locked \
    --no-default-features --features cli --root "${INFERNO%/bin}" -q
}
# One path under load: a flamegraph of the runtime process (docs/flamegraphs/<name>.svg), and
# at the same time a machine-wide sample that splits both cores between the processes.
profile_path() { # name title pid seconds -> a Markdown row
  local data="$PROFILES/$1"
  perf record -q -a -F 199 -o "$data.machine.perf" -- sleep "$4" 2>/dev/null &
  local machine=$!
  perf record -q -F 299 --call-graph dwarf,32768 -p "$3" -o "$data.perf" -- sleep "$4" 2>/dev/null
  wait "$machine"
  perf script -i "$data.perf" 2>/dev/null | "$INFERNO/inferno-collapse-perf" > "$data.folded"
  "$INFERNO/inferno-flamegraph" --title "$2" --width 1600 --minwidth 1 < "$data.folded" > "docs/flamegraphs/$1.svg"
  # Samples by process (perf names threads, and the broker's threads share the runtime's thread
  # names); the processes are still running, so ps names them.
  local split="" count pid total name
  total="$(perf script -i "$data.machine.perf" -F pid 2>/dev/null | wc -l)"
  while read -r count pid; do
    [ $(( count * 50 )) -ge "$total" ] || continue
    name="$( [ "$pid" = 0 ] && echo idle || ps -o comm= -p "$pid" || echo "pid $pid")"
    split+="${split:+, }$name $(( count * 100 * $(nproc) / total )) %"
  done < <(perf script -i "$data.machine.perf" -F pid 2>/dev/null | sort | uniq -c | sort -rn)
  echo "| $2 | $(python3 scripts/profile-summary.py < "$data.folded") | $split |"
}
profile_paths() { # binary
  mkdir -p docs/flamegraphs "$PROFILES"
  local port=18486 seconds=8
  env "${common_env[@]}" RUN_MODE=api API_PORT=$port ADMIN_PORT=18586 KAFKA_TOPIC=bench-profile "$1" 2>>"$AUREN_STATE/api.log" &
  local pid=$!; PIDS+=("$pid")
  wait_ready $port >/dev/null
  echo "| path (runtime process) | where the runtime's CPU goes | both cores, by process (200 % = machine) |"
  echo "|---|---|---|"
  for path in single:/webhooks/oura:"$SINGLE_LUA" batch:/webhooks/oura/batch:"$BATCH_LUA"; do
    IFS=: read -r name route lua <<< "$path"
    wrk -t2 -c"$CONNS" -d$((seconds + 4))s -s "$lua" "http://127.0.0.1:$port$route" >/dev/null &
    local load=$!
    sleep 2
    profile_path "api-$name" "api: POST $route, $CONNS connections" "$pid" "$seconds"
    wait "$load"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local topic="bench-profile-backlog-$(date +%s)" fed cport=18487
  fed="$(feed_backlog "$topic" 600000)"
  env "${common_env[@]}" RUN_MODE=consumer API_PORT=$cport ADMIN_PORT=18587 KAFKA_TOPIC="$topic" \
    KAFKA_GROUP="$topic" "${BATCH_ENV[@]}" "$1" 2>>"$AUREN_STATE/consumer.log" &
  pid=$!; PIDS+=("$pid")
  until [ "$(metric $cport auren_runtime_events_stored_total)" -gt 0 ]; do sleep 0.1; done
  profile_path consumer "consumer: $fed events into PostgreSQL, $BATCH_LABEL" "$pid" "$seconds"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
if wants profile; then
  install_profilers
  say "profiling this tree: docs/flamegraphs/, perf data in $PROFILES"
  profile_paths "${BINS[-1]}"
  exit 0
fi

# --- the runs -------------------------------------------------------------------------------
if wants http; then
  say "HTTP: ${RUNS} runs x ${#BINS[@]} builds, ${SECONDS_PER_RUN}s per figure, ${CONNS} connections"
  for _ in $(seq "$RUNS"); do
    for b in "${!BINS[@]}"; do http_figures "$b" "${BINS[$b]}"; done
  done
fi
if wants consumer; then
  topic="bench-backlog-$(date +%s)"
  say "consumer: feeding $CONSUMER_EVENTS distinct events to $topic"
  fed="$(feed_backlog "$topic" "$CONSUMER_EVENTS")"
  for _ in $(seq "$RUNS"); do
    for b in "${!BINS[@]}"; do
      consumer_figures "$b" "${BINS[$b]}" "$topic" "$fed" 1 "$DURABLE_DB" _durable
      # The serial ceiling: the same statement one batch at a time (builds before the
      # pipeline ignore the variable: they store one batch at a time anyway).
      consumer_figures "$b" "${BINS[$b]}" "$topic" "$fed" 1 "$DURABLE_DB" _durable_serial CONSUMER_BATCHES_IN_FLIGHT=1
      for processes in 1 2; do consumer_figures "$b" "${BINS[$b]}" "$topic" "$fed" "$processes" "$DB"; done
      consumer_figures "$b" "${BINS[$b]}" "$topic" "$fed" 1 "$DB" _serial CONSUMER_BATCHES_IN_FLIGHT=1
    done
  done
fi

if wants instructions; then
  command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
  say "instructions: callgrind, ${#BINS[@]} builds"
  few_topic="bench-instructions-$(date +%s)-few" many_topic="bench-instructions-$(date +%s)-many"
  [ "$(feed_backlog "$few_topic" "${CG_EVENTS[0]}")" = "${CG_EVENTS[0]}" ] || die "feeding $few_topic failed"
  [ "$(feed_backlog "$many_topic" "${CG_EVENTS[1]}")" = "${CG_EVENTS[1]}" ] || die "feeding $many_topic failed"
  for b in "${!BINS[@]}"; do instruction_figures "$b" "${BINS[$b]}" "$few_topic" "$many_topic"; done
fi

# --- the table ------------------------------------------------------------------------------
value() { # build figure -> median over runs (errors: the sum), empty when not measured
  local all; all="$(awk -v b="$1" -v f="$2" '$1 == b && $2 == f {print $3}' "$RESULTS")"
  [ -z "$all" ] && return 0
  if [ "$2" = errors ]; then echo "$all" | awk '{s += $1} END {print s}'; else echo "$all" | median; fi
}
# The median of one figure as a share of the median of another, per build.
share_row() { # label numerator-figure denominator-figure
  local line="| $1 |" b n d
  for b in "${!BINS[@]}"; do
    n="$(value "$b" "$2")"; d="$(value "$b" "$3")"
    line+=" $(awk -v n="$n" -v d="$d" 'BEGIN {if (d > 0 && n != "") printf "%.0f", 100 * n / d; else print "–"}') |"
  done
  [ "${#BINS[@]}" = 2 ] && line+=" |"
  echo "$line"
}
row() { # label figure
  local line="| $1 |" v
  for b in "${!BINS[@]}"; do
    v="$(value "$b" "$2")"
    line+=" ${v:-–} |"
  done
  if [ "${#BINS[@]}" = 2 ]; then
    local old new; old="$(value 0 "$2")"; new="$(value 1 "$2")"
    line+=" $(awk -v o="$old" -v n="$new" 'BEGIN {if (o > 0 && n != "") printf "%+.1f %%", (n / o - 1) * 100; else print "–"}') |"
  fi
  echo "$line"
}
echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); broker Apache Kafka 4.4 (one KRaft node), PostgreSQL 15 (fsync=off; durable rows: a second one with fsync=on, synchronous_commit=on, same disk); $(date -u '+%F %H:%M UTC'); runs: $RUNS x ${SECONDS_PER_RUN}s, medians"
echo
short() { git rev-parse --short "$1"; }
changed="$(git diff --quiet HEAD -- runtime contract Cargo.toml Cargo.lock || echo ' + changes')"
if [ -n "$AGAINST" ]; then
  echo "| figure | $AGAINST ($(short "$AGAINST")) | this tree ($(short HEAD)$changed) | change |"
  echo "|---|---|---|---|"
else
  echo "| figure | this tree ($(short HEAD)$changed) |"
  echo "|---|---|"
fi
if wants http; then
  row '`GET /live` baseline, req/s (same process, same run)' live_rps
  row '`GET /health` req/s' health_rps
  row '`GET /health`, 1 connection, p99 ms' health1_p99
  row 'single-event webhook, req/s (acks=all)' single_rps
  row 'single-event webhook, p50 ms' single_p50
  row 'single-event webhook, p99 ms' single_p99
  row 'single WHOOP v2 notification (`/vendors/whoop`), req/s (acks=all)' whoop_rps
  row 'single WHOOP v2 notification, p50 ms' whoop_p50
  row 'single WHOOP v2 notification, p99 ms' whoop_p99
  row 'batch webhook (100 events), req/s' batch_rps
  row 'batch webhook, p99 ms' batch_p99
  row 'ready after start, ms' ready_ms
  row 'api peak RSS, MiB' api_rss
  row 'non-2xx / errors, all runs' errors
fi
if wants consumer; then
  row "**durable PostgreSQL (fsync on)**: consumer → PostgreSQL, distinct events/s ($BATCH_LABEL)" consumer_durable_eps
  row "durable: PostgreSQL executing the batch statements one at a time, events/s (pg_stat_statements, serial pass CONSUMER_BATCHES_IN_FLIGHT=1; the ceiling)" store_ceiling_durable_serial_eps
  share_row '**durable: consumer events/s (default settings), % of that ceiling**' consumer_durable_eps store_ceiling_durable_serial_eps
  row 'durable: serial pass, consumer events/s' consumer_durable_serial_eps
  row "durable: the default run's summed statement time as events/s (no ceiling once statements overlap)" store_ceiling_durable_eps
  row 'durable: PostgreSQL executing the batch statement, % of the consumer run' store_busy_durable_pct
  row 'durable: consumer peak RSS, MiB' consumer_durable_rss
  row "fsync off: consumer → PostgreSQL, distinct events/s ($BATCH_LABEL)" consumer_eps
  row "fsync off: PostgreSQL executing the batch statements one at a time, events/s (serial pass; the ceiling)" store_ceiling_serial_eps
  share_row 'fsync off: consumer events/s (default settings), % of that ceiling' consumer_eps store_ceiling_serial_eps
  row 'fsync off: PostgreSQL executing the batch statement, % of the consumer run' store_busy_pct
  row 'fsync off: consumer peak RSS, MiB' consumer_rss
  row 'fsync off: two consumers in one group → PostgreSQL, distinct events/s' consumer2_eps
fi
if wants instructions; then
  row '`GET /live`, instructions per request (callgrind)' live_instructions
  row 'single-event webhook, instructions per request (callgrind)' single_instructions
  row 'consumer, instructions per stored event (callgrind)' event_instructions
fi
