#!/usr/bin/env bash
# A private RabbitMQ broker for sturdy's broker tests, on loopback ports, with
# its own node name, data folder, logs and Erlang cookie (HOME), all under DIR.
#   rabbitmq_server.sh start DIR [PORT]  starts it in its own process group and
#       waits (at most STURDY_RABBITMQ_START_TIMEOUT s, default 120) until it
#       accepts AMQP; prints "URL NODENAME" on stdout.
#   rabbitmq_server.sh stop DIR          kills the whole process group.
#   rabbitmq_server.sh ctl DIR ARGS...   rabbitmqctl against that node
#       (the restart test uses "stop_app" / "start_app").
set -euo pipefail
cmd=${1:?start|stop|ctl}
dir=${2:?DIR}
RMQ_BIN=${STURDY_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_env() {
  export HOME="$dir/home" RABBITMQ_NODENAME
  RABBITMQ_NODENAME=$(cat "$dir/nodename")
}
case $cmd in
  start)
    port=${3:-25672}
    while port_in_use "$port"; do port=$((port + 1)); done
    dist=$((port + 10000))
    while port_in_use "$dist"; do dist=$((dist + 1)); done
    mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
    echo "[]." >"$dir/enabled_plugins"
    echo "sturdy-$$-$port@localhost" >"$dir/nodename"
    node_env
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$dist \
      RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
    # Loopback only, for the management-free node; guest may log in from 127.0.0.1.
    printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$port" >"$dir/rabbitmq.conf"
    setsid "$RMQ_BIN/rabbitmq-server" </dev/null >"$dir/server.out" 2>&1 &
    echo $! >"$dir/pgid"
    limit=${STURDY_RABBITMQ_START_TIMEOUT:-120}
    start=$(date +%s)
    # The AMQP listener opens last, once the broker is booted.
    until port_in_use "$port"; do
      if ! kill -0 "$(cat "$dir/pgid")" 2>/dev/null || (($(date +%s) - start > limit)); then
        tail -20 "$dir/server.out" >&2
        echo "rabbitmq_server.sh: the broker did not start within ${limit} s" >&2
        kill -KILL -- "-$(cat "$dir/pgid")" 2>/dev/null || true
        exit 1
      fi
      sleep 0.2
    done
    echo "amqp://guest:guest@127.0.0.1:$port/ $RABBITMQ_NODENAME"
    ;;
  stop)
    [ -f "$dir/pgid" ] || exit 0
    kill -TERM -- "-$(cat "$dir/pgid")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$(cat "$dir/pgid")" 2>/dev/null || exit 0; sleep 0.1; done
    kill -KILL -- "-$(cat "$dir/pgid")" 2>/dev/null || true
    ;;
  ctl)
    shift 2
    node_env
    exec "$RMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@"
    ;;
  *) echo "usage: $0 start|stop|ctl DIR ..." >&2; exit 2 ;;
esac
