#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) without Docker.
#   scripts/kafka.sh fetch|up|down|status
# Jars come from Maven Central through pom.xml into .stack/kafka/lib; data and logs live in .stack/kafka.
# Listeners on 127.0.0.1: 9092 PLAINTEXT, 9093 CONTROLLER, 9094 SASL_PLAINTEXT (PLAIN, user streamer).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KDIR="$STACK/kafka"
LIB="$KDIR/lib"
CONF="$KDIR/server.properties"
PIDFILE="$KDIR/broker.pid"
PORT=9092
CONTROLLER_PORT=9093
SASL_PORT=9094
SASL_PASSWORD="${STREAMER_TEST_SASL_PASSWORD:-streamer-secret}"
HEAP="${STREAMER_KAFKA_HEAP:--Xms256m -Xmx512m}"
START_TIMEOUT="${STREAMER_KAFKA_START_TIMEOUT:-90}"

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/pom.xml"; }

check_java() {
  command -v java >/dev/null 2>&1 || die "java not found: Kafka needs a Java 17+ runtime (apt-get install -y openjdk-17-jre-headless)"
  local v
  v="$( (java -version 2>&1 || true) | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [[ -n "$v" ]] || die "java ($(command -v java)) does not run: Kafka needs a Java 17+ runtime (apt-get install -y openjdk-17-jre-headless)"
  ((v >= 17)) || die "java $v found, Kafka $(kafka_version) needs Java 17 or newer"
}

fetch_error() { # "<artifact>: <innermost cause>" from a failed Maven run
  local line artifact
  line="$(sed -e 's/\x1b\[[0-9;]*m//g' -e 's/ -> \[Help [0-9]*\]//' "$KDIR/fetch.log" | grep -m1 '^\[ERROR\] .' || echo 'no error line')"
  artifact="$(grep -o 'dependencies at [^ :]*:[^ :]*:[^ :]*:[^ :]*' <<<"$line" | head -n1 | sed 's/^dependencies at //' || true)"
  # The innermost cause is the tail after the last "): " or ": " separator.
  echo "${artifact:+$artifact: }$(sed 's/.*: \([^:]*\(: [^:]*\)\?\)$/\1/' <<<"$line" | cut -c1-160)"
}

fetch() {
  # The stamp records which pom the jars came from, so a version bump re-fetches and nothing else does.
  local stamp="$LIB/.pom.sha256" want
  want="$(sha256sum "$ROOT/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: needed once to download Kafka $(kafka_version) (apt-get install -y maven)"
  log "kafka: downloading Kafka $(kafka_version) jars from Maven Central into .stack/kafka/lib ..."
  mkdir -p "$KDIR"
  # Into a side directory first: a failed download leaves the jars that were there.
  rm -rf "$LIB.new"
  if ! mvn -B -q -Dstyle.color=never -f "$ROOT/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIB.new" \
      >"$KDIR/fetch.log" 2>&1; then
    rm -rf "$LIB.new"
    die "downloading Kafka $(kafka_version) with Maven failed: $(fetch_error) (full log: .stack/kafka/fetch.log)"
  fi
  ls "$LIB.new"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Maven finished but fetched no kafka_2.13 jar (see .stack/kafka/fetch.log)"
  rm -rf "$LIB"
  mv "$LIB.new" "$LIB"
  echo "$want" >"$stamp"
}

write_config() {
  mkdir -p "$KDIR/data" "$KDIR/logs"
  cat >"$CONF.tmp" <<CFG
# Written by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="streamer" password="$SASL_PASSWORD" user_streamer="$SASL_PASSWORD";
log.dirs=$KDIR/data
# Single node: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# A dev stack: keep a day of data at most.
log.retention.hours=24
CFG
  mv "$CONF.tmp" "$CONF"
  chmod 600 "$CONF"
}

format_storage() {
  [[ -f "$KDIR/data/meta.properties" ]] && return 0
  local id  # may start with "-": passed as --cluster-id=ID so it is not taken for an option
  id="$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  log "kafka: formatting storage in .stack/kafka/data (cluster id $id)"
  java -cp "$LIB/*" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -Dkafka.logs.dir="$KDIR/logs" \
    kafka.tools.StorageTool format --cluster-id="$id" -c "$CONF" >"$KDIR/logs/format.log" 2>&1 \
    || die "formatting Kafka storage failed: $(tail -n1 "$KDIR/logs/format.log")"
}

our_pid() { # pid of the broker this checkout started, if it is still that broker
  local pid=""
  [[ -f "$PIDFILE" ]] && pid="$(cat "$PIDFILE")"
  if pid_alive "$pid" && pid_cmd_has "$pid" "$CONF"; then echo "$pid"; return; fi
  # Pid file lost (e.g. .stack/kafka/broker.pid deleted): the listener runs our config, so it is ours.
  pid="$(port_pid "$PORT")"
  if [[ -n "$pid" ]] && pid_cmd_has "$pid" "kafka.Kafka $CONF"; then echo "$pid" >"$PIDFILE"; echo "$pid"; fi
}

ready() { "$(python_bin)" "$ROOT/scripts/kafka/ready.py" "$HOST:$PORT" "$1"; }

describe_other_broker() { # who holds 9092 when it is a Kafka broker we did not start here
  local pid conf
  pid="$(port_pid "$PORT")"
  if [[ -n "$pid" ]] && pid_cmd_has "$pid" "kafka.Kafka"; then
    conf="$(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -m1 'server.properties' || true)"
    if [[ "$conf" == */.stack/kafka/server.properties ]]; then
      echo "the streamer stack of ${conf%/.stack/kafka/server.properties} (pid $pid)"
      return
    fi
    echo "a Kafka broker (pid $pid)"
    return
  fi
  echo "a Kafka broker"
}

up() {
  local pid
  pid="$(our_pid)"
  if [[ -n "$pid" ]]; then
    ready 30 || die "Kafka broker pid $pid (started here) does not answer on $HOST:$PORT; see .stack/kafka/logs/server.log or run make down"
    log "kafka: running (pid $pid) on $HOST:$PORT"
    return 0
  fi
  if port_open "$PORT"; then
    # Someone else's broker is as good as ours for tests; we leave it alone on `make down`.
    ready 5 || die "port $PORT is held by $(port_owner "$PORT"), which does not answer as a Kafka broker; stop it or free the port"
    log "kafka: reusing $(describe_other_broker) already answering on $HOST:$PORT (make down here leaves it running)"
    return 0
  fi
  local p
  for p in "$CONTROLLER_PORT" "$SASL_PORT"; do
    port_open "$p" && die "port $p (needed by the Kafka broker) is held by $(port_owner "$p")"
  done
  check_java
  fetch
  write_config
  format_storage
  log "kafka: starting Kafka $(kafka_version) on $HOST:$PORT (logs: .stack/kafka/logs/server.log)"
  # setsid: the broker outlives make and the terminal; its pid is recorded so make down stops only it.
  # shellcheck disable=SC2086
  setsid nohup java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -Dkafka.logs.dir="$KDIR/logs" \
    -cp "$LIB/*" kafka.Kafka "$CONF" >"$KDIR/logs/stdout.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until ready 2; do
    if ! pid_alive "$pid"; then
      rm -f "$PIDFILE"
      die "Kafka broker exited during start-up: $(grep -h -m1 -E 'ERROR|Exception' "$KDIR/logs/stdout.log" "$KDIR/logs/server.log" 2>/dev/null | cut -c1-200 || echo 'see .stack/kafka/logs')"
    fi
    ((SECONDS < deadline)) || die "Kafka broker (pid $pid) did not answer on $HOST:$PORT within ${START_TIMEOUT}s; see .stack/kafka/logs/server.log"
  done
  log "kafka: ready (pid $pid) after ${SECONDS}s"
}

down() {
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PIDFILE"
    if port_open "$PORT"; then
      log "kafka: not started by this checkout; leaving $(describe_other_broker) on $HOST:$PORT running"
    else
      log "kafka: not running"
    fi
    return 0
  fi
  log "kafka: stopping broker pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 45))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.5; done
  if pid_alive "$pid"; then
    log "kafka: broker did not stop within 45s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$PIDFILE"
  log "kafka: stopped"
}

status() {
  local pid
  pid="$(our_pid)"
  if [[ -n "$pid" ]]; then
    echo "kafka: running here (pid $pid) on $HOST:$PORT"
  elif port_open "$PORT"; then
    echo "kafka: $(describe_other_broker) on $HOST:$PORT (not started by this checkout)"
  else
    echo "kafka: not running"
  fi
}

case "${1:-}" in
  fetch) check_java; fetch ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: scripts/kafka.sh fetch|up|down|status" ;;
esac
