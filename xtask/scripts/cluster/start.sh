#!/bin/bash
# Run from the workspace root after `cargo build --release --bin waymark`; stop with
#   pkill -f "waymark serve --data-dir $B"; pkill -f "nats-server -c $B"
# Three nats-server with JetStream on loopback and three release Waymark nodes, 4 partitions.
set -e
B=${MBENCH_DIR:-/tmp/mbench}
pkill -f "nats-server -c $B" || true
pkill -f "waymark serve --data-dir $B" || true
sleep 1
rm -rf $B/n? $B/w? $B/*.log
ROUTES="nats-route://127.0.0.1:16222, nats-route://127.0.0.1:16223, nats-route://127.0.0.1:16224"
for i in 1 2 3; do
  mkdir -p $B/n$i
  cat > $B/n$i.conf <<CONF
server_name: n$i
listen: 127.0.0.1:1422$((i+1))
jetstream { store_dir: "$B/n$i", max_memory_store: 256MB, max_file_store: 4GB }
cluster { name: mbench, listen: 127.0.0.1:1622$((i+1)), routes: [$ROUTES] }
CONF
  nats-server -c $B/n$i.conf > $B/nats$i.log 2>&1 &
done
sleep 3
URLS=nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224
for i in 1 2 3; do
  "${WAYMARK_BINARY:-target/release/waymark}" serve --data-dir $B/w$i --listen 127.0.0.1:1808$i \
    --admin-token mbench-admin-token-0123456789 --clock system \
    --cluster $URLS --node-id n$i --partitions 4 > $B/w$i.log 2>&1 &
done
