#!/usr/bin/env bash
# The broker: Apache Kafka 4.4 (KRaft, one node), from Maven Central, pinned by
# scripts/kafka/pom.xml and checked jar by jar against scripts/kafka/jars.sha256.
# `broker.sh install|start|stop`; scripts/kafka/server.sh runs one broker.
source "$(dirname "$0")/lib.sh"

install_kafka() {
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  apt_ensure openjdk-17-jre-headless maven
  say "fetching Apache Kafka's jars from Maven Central ($KAFKA_LIBS)"
  local part="$KAFKA_LIBS.part"
  rm -rf "$part" && mkdir -p "$part"
  mvn -q -B --strict-checksums -f "$AUREN_ROOT/scripts/kafka/pom.xml" \
    dependency:copy-dependencies -DoutputDirectory="$part" -DincludeScope=runtime >"$part.log" 2>&1 ||
    die "maven could not fetch the broker's jars (see $part.log)"
  # Exactly the pinned jars, each with its pinned hash.
  (cd "$part" && sha256sum --quiet -c "$AUREN_ROOT/scripts/kafka/jars.sha256") || die "a broker jar does not match scripts/kafka/jars.sha256"
  [ "$(ls "$part" | wc -l)" = "$(wc -l <"$AUREN_ROOT/scripts/kafka/jars.sha256")" ] ||
    die "maven fetched jars that scripts/kafka/jars.sha256 does not list: $(ls "$part")"
  rm -rf "$KAFKA_LIBS" && mv "$part" "$KAFKA_LIBS" && touch "$KAFKA_LIBS/.complete"
}

start_broker() {
  install_kafka
  mkdir -p "$AUREN_STATE"
  if wait_for_port "$AUREN_SERVICE_HOST" "$AUREN_KAFKA_PORT" 0; then die "port $AUREN_KAFKA_PORT already in use"; fi
  # A fresh log each time: the shared broker holds only this run's events.
  rm -rf "$AUREN_STATE/kafka"
  nohup bash "$AUREN_KAFKA_SERVER" "$AUREN_STATE/kafka" "$AUREN_SERVICE_HOST" "$AUREN_KAFKA_PORT" \
    "${AUREN_KAFKA_CONTROLLER_PORT:-$((AUREN_KAFKA_PORT + 1))}" >/dev/null 2>&1 &
  echo $! >"$AUREN_STATE/kafka.pid"
  wait_for_port "$AUREN_SERVICE_HOST" "$AUREN_KAFKA_PORT" 60 || die "the broker did not listen (see $AUREN_STATE/kafka/broker.log)"
  say "broker up on $AUREN_SERVICE_HOST:$AUREN_KAFKA_PORT (Apache Kafka, log: $AUREN_STATE/kafka/broker.log)"
}

stop_broker() {
  local pidfile="$AUREN_STATE/kafka.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install_kafka ;;
  start) start_broker ;;
  stop) stop_broker ;;
  *) die "usage: broker.sh install|start|stop" ;;
esac
