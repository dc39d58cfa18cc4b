#!/bin/sh
# One KRaft node (broker and controller), configured like taskplane's local broker
# (devstack/kafka.py): replication factor 1, no topic auto-creation, no initial
# rebalance delay, one network thread, two request handlers and one group coordinator
# thread, no-op metadata records every 5 s, not 0.5, and the dev broker's JVM: the
# parallel collector with 2 threads, C1 only, compiling a method after 20 calls
# (devstack/kafka.py says why for each). Formats its storage on the first start;
# exec's Kafka so SIGTERM reaches it (controlled shutdown).
set -eu
data=/var/lib/kafka
cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://${KAFKA_LISTEN_HOST}:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://${KAFKA_ADVERTISED_HOST}:${KAFKA_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data/logs
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.session.timeout.ms=2000
group.consumer.min.session.timeout.ms=1000
group.consumer.heartbeat.interval.ms=500
group.consumer.min.heartbeat.interval.ms=250
auto.create.topics.enable=false
num.network.threads=1
num.io.threads=2
group.coordinator.threads=1
metadata.max.idle.interval.ms=5000
PROPS
cat > "$data/log4j2.properties" <<LOG
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = STDOUT
LOG
cp="/opt/kafka/libs/*"
if [ ! -f "$data/logs/meta.properties" ]; then
  cluster=$(java -cp "$cp" kafka.tools.StorageTool random-uuid)
  java -Xmx256m -cp "$cp" kafka.tools.StorageTool format -t "$cluster" -c "$data/server.properties"
fi
exec java "-Xmx${KAFKA_HEAP}" -Xms128m -XX:+UseParallelGC -XX:ParallelGCThreads=2 \
  -XX:TieredStopAtLevel=1 -XX:CompileThresholdScaling=0.1 -Djava.awt.headless=true \
  "-Dlog4j2.configurationFile=$data/log4j2.properties" -cp "$cp" kafka.Kafka "$data/server.properties"
