#!/usr/bin/env bash
# One single-node Apache Kafka broker (KRaft, broker and controller in one JVM), in the
# foreground: `server.sh DIR HOST PORT CONTROLLER_PORT`. Clients reach it on HOST:PORT; the
# controller listens on 127.0.0.1:CONTROLLER_PORT. Its log lives in DIR/data and survives a
# restart (so a broker stopped with SIGKILL and started again keeps every acknowledged record);
# its own messages go to DIR/broker.log. Used by scripts/broker.sh (the shared broker of
# `make test` and the demo) and by the tests' private brokers (testkit, AUREN_KAFKA_SERVER).
# Needs KAFKA_LIBS (exported by scripts/lib.sh, filled by `scripts/broker.sh install`).
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: server.sh DIR HOST PORT CONTROLLER_PORT" >&2; exit 2; }
dir="$1" host="$2" port="$3" cport="$4"
: "${KAFKA_LIBS:?KAFKA_LIBS not set: source scripts/lib.sh and run scripts/broker.sh install}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$dir/data"
cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://$host:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# One broker and no replica: fencing it (after 9 s without a heartbeat, the default) cannot
# move leadership anywhere, it only bumps every leader epoch. The fault tests freeze the broker
# for 10 s as a network partition or a long pause would; it is not fenced for that.
broker.session.timeout.ms=30000
PROPS
java_cmd=(java ${KAFKA_HEAP_OPTS:--Xms64m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$KAFKA_LIBS/*")
if [ ! -f "$dir/data/meta.properties" ]; then
  "${java_cmd[@]}" kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id E5_ms0ZPU42c_QaA4mHVbg --config "$dir/server.properties" >>"$dir/broker.log" 2>&1
fi
exec "${java_cmd[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/broker.log" 2>&1
