#!/usr/bin/env bash
# Fetches and runs the Apache Kafka broker (one combined KRaft node) that the system tests use.
# Its jars come from Maven Central through tests/kafka/pom.xml; it runs on the machine's Java 17.
# The product never needs Java: only the tests call this script.
#
# Usage:
#   scripts/kafka.sh fetch
#       Resolves the broker's jars into $SLUICE_KAFKA_HOME/<version>/libs (default
#       $HOME/.cache/sluice-kafka) unless they are already there; prints that directory.
#   scripts/kafka.sh start DIR PORT [CONTROLLER_PORT]
#       Formats DIR (once) and runs the broker in the foreground until it is killed: PLAINTEXT
#       on 127.0.0.1:PORT, the KRaft controller on 127.0.0.1:CONTROLLER_PORT (default PORT+1).
#       The data lives in DIR/data, the config in DIR/server.properties, the pid in
#       DIR/broker.pid. A DIR/extra.properties, if present, is appended to the config (more
#       listeners, SASL, SSL; a later key overrides an earlier one), and DIR/format.args, if
#       present, holds extra arguments of the format step, one per line (e.g. the two lines
#       --add-scram and SCRAM-SHA-256=[name=alice,password=alice-secret]). Log goes to stdout.
#       In the background, e.g.:
#         scripts/kafka.sh start /tmp/k 19092 > /tmp/k.log 2>&1 &
#   scripts/kafka.sh stop DIR
#       Kills the broker started with DIR (SIGTERM, then SIGKILL after 20 s).
#
# Environment: SLUICE_KAFKA_HOME (jar cache), SLUICE_KAFKA_HEAP (default -Xmx512m),
# JAVA (default java).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pom="$root/tests/kafka/pom.xml"
java=${JAVA:-java}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

kafka_version() { # the <kafka.version> property of the pom
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n 1
}

libs_dir() {
  echo "${SLUICE_KAFKA_HOME:-$HOME/.cache/sluice-kafka}/$(kafka_version)/libs"
}

cmd_fetch() {
  local libs stamp want tmp
  libs=$(libs_dir)
  stamp="$libs/.pom.sha256"
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  # Done before with this very pom: nothing to do (no Maven start, no network).
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$libs"
    return 0
  fi
  command -v mvn > /dev/null || { echo "kafka.sh: mvn not found (scripts/setup.sh installs maven)" >&2; return 1; }
  mkdir -p "$(dirname "$libs")"
  # One fetch at a time; a second one waits, then finds the first one's result.
  exec 9> "$(dirname "$libs")/.fetch.lock"
  flock 9
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$libs"
    return 0
  fi
  # Resolve into a fresh directory and move it into place, so an interrupted fetch never
  # leaves a half-filled libs directory that looks complete.
  tmp=$(mktemp -d "$(dirname "$libs")/libs.tmp.XXXXXX")
  if ! mvn -B -ntp -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" > "$tmp.log" 2>&1; then
    tail -n 40 "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    echo "kafka.sh: mvn could not resolve the Kafka $(kafka_version) jars from $pom" >&2
    return 1
  fi
  rm -f "$tmp.log"
  echo "$want" > "$tmp/.pom.sha256"
  rm -rf "$libs"
  mv "$tmp" "$libs"
  echo "$libs"
}

cluster_id() { # a Kafka Uuid: 16 random bytes, base64url without padding, not starting with '-'
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    case $id in -*) ;; *) echo "$id"; return ;; esac
  done
}

cmd_start() {
  [ $# -ge 2 ] || usage
  local dir=$1 port=$2 cport=${3:-$(($2 + 1))} libs
  case "$port$cport" in *[!0-9]*) echo "kafka.sh: ports must be numbers: $port $cport" >&2; exit 2 ;; esac
  libs=$(cmd_fetch)
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)

  # Settings of a single combined node (broker and controller) that a test can use at once:
  # replication factor 1 for the internal topics, no rebalance delay, no topic created as a
  # side effect of a metadata or produce request (sluice must create its topics itself).
  cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$cport
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  if [ -f "$dir/extra.properties" ]; then cat "$dir/extra.properties" >> "$dir/server.properties"; fi

  cat > "$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
# The full config dumps of every client and server config object.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
EOF

  local jvm=(${SLUICE_KAFKA_HEAP:--Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties"
    -cp "$libs/*")
  # A single-node dynamic quorum (KIP-853), the 4.x way: the node formats itself as the only
  # voter, so controller.quorum.voters stays unset. Done once per DIR, so a restart on the same
  # DIR keeps its data (a broker outage test stops and starts it again).
  if [ ! -f "$dir/data/meta.properties" ]; then
    local extra=()
    if [ -f "$dir/format.args" ]; then mapfile -t extra < "$dir/format.args"; fi
    "$java" "${jvm[@]}" kafka.tools.StorageTool format --standalone \
      --config "$dir/server.properties" --cluster-id "$(cluster_id)" ${extra[@]+"${extra[@]}"}
  fi
  echo $$ > "$dir/broker.pid"
  exec "$java" "${jvm[@]}" kafka.Kafka "$dir/server.properties"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local pidf="$1/broker.pid" pid i
  [ -f "$pidf" ] || { echo "kafka.sh: no $pidf" >&2; return 1; }
  pid=$(cat "$pidf")
  # Only a java process running this DIR's config is ours to kill.
  if ! grep -qF "$(cd "$1" && pwd)/server.properties" "/proc/$pid/cmdline" 2>/dev/null; then
    rm -f "$pidf"; return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

case "${1:-}" in
  fetch) shift; cmd_fetch "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) usage ;;
esac
