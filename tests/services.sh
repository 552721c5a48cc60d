#!/usr/bin/env bash
# Everything the connector tests talk to, on loopback, started if it is not already up:
# - the machine's services (PostgreSQL, MariaDB, Redis, RabbitMQ, Mosquitto, NATS with JetStream),
#   started with the machine's own commands when a port does not answer;
# - a Kafka-protocol broker (tansu, from crates.io: ~15 min to build) on 9092;
# - an S3-compatible server (s3s-fs, from crates.io: ~5 min to build) on 9000, serving a fresh
#   directory under target/.
# Both binaries are built once per machine into a cache outside the checkout
# ($WEIR_SERVICE_TOOLS, default ~/.cache/weir/service-tools), so a fresh clone (CI) reuses them
# instead of spending 20 minutes of its budget rebuilding the same two servers.
# Idempotent: a second run only checks ports. `tests/run.sh` calls it; run it by hand before
# `cargo test` if you run tests without that script.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${WEIR_SERVICE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/service-tools}"
mkdir -p "$tools/bin" target/services

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name
    for _ in $(seq 1 150); do listening "$1" && return 0; sleep 0.2; done
    echo "services.sh: $2 did not start listening on 127.0.0.1:$1" >&2
    return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

start() { # port name command...
    local port=$1 name=$2; shift 2
    listening "$port" && return 0
    echo "services.sh: starting $name" >&2
    as_root "$@" >/dev/null 2>&1 || true
    wait_for "$port" "$name"
}

start 5432 PostgreSQL sh -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
start 3306 MariaDB start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start 6379 Redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
start 5672 RabbitMQ rabbitmq-server -detached
start 1883 Mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf
# A second Mosquitto that requires a user name and password (user `weir`, password `weir-secret`),
# for the connectors' credentials.
if ! listening 1884; then
    auth="$PWD/target/services/mosquitto-auth"
    mkdir -p "$auth"
    mosquitto_passwd -b -c "$auth/passwd" weir weir-secret
    chmod 644 "$auth/passwd"
    printf 'listener 1884 127.0.0.1\nallow_anonymous false\npassword_file %s/passwd\n' "$auth" >"$auth/mosquitto.conf"
    mosquitto -d -c "$auth/mosquitto.conf"
    wait_for 1884 "Mosquitto with passwords"
fi
start 4222 NATS start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log

# Native build inputs of the service tools built from source below (weir itself needs neither:
# its librdkafka builds with configure and make).
if ! command -v cmake >/dev/null || ! [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ]; then
    as_root apt-get install -y -qq cmake libcurl4-openssl-dev >/dev/null
fi

install_tool() { # binary crate version features
    [ -x "$tools/bin/$1" ] && return 0
    echo "services.sh: building $2 $3 into $tools/bin (once; takes minutes)" >&2
    cargo install --quiet --locked --root "$tools" "$2" --version "$3" --features "$4"
}

install_tool tansu tansu 0.6.0 dynostore
install_tool s3s-fs s3s-fs 0.14.1 binary

if ! listening 9092; then
    nohup "$tools/bin/tansu" broker --listener-url tcp://127.0.0.1:9092 \
        --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ \
        >target/services/tansu.log 2>&1 &
    wait_for 9092 tansu
fi
if ! listening 9000; then
    rm -rf target/services/s3 && mkdir -p target/services/s3/weir-test
    AWS_ACCESS_KEY_ID=weir AWS_SECRET_ACCESS_KEY=weir-secret nohup "$tools/bin/s3s-fs" \
        --host 127.0.0.1 --port 9000 --access-key weir --secret-key weir-secret \
        target/services/s3 >target/services/s3s.log 2>&1 &
    wait_for 9000 s3s-fs
fi
