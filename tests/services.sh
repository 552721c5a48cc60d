#!/usr/bin/env bash
# Everything the connector tests talk to, on loopback, started if it is not already up:
# - the machine's services (PostgreSQL, MariaDB, Redis, RabbitMQ, Mosquitto, NATS with JetStream),
#   started with the machine's own commands when a port does not answer;
# - a Kafka-protocol broker (tansu, from the crate registry: ~15 min to build) on 9092;
# - an S3-compatible server (s3s-fs, from the crate registry: ~5 min to build) on 9000, serving a fresh
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

# Secured twins of the services, for the connectors' credentials and TLS: every one requires the
# user `weir` with the password `weir-secret` (Redis: that password) and, but for the MQTT one on
# 1884, TLS with a certificate for 127.0.0.1 and localhost signed by a test authority
# (target/services/tls/ca.pem, made here with openssl).
tls="$PWD/target/services/tls"
if ! [ -s "$tls/server.pem" ]; then
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weir test authority" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 3650 \
        -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
    # A second authority that signed nothing the services present: trusting it must fail.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weir other authority" \
        -keyout "$tls/other-ca.key" -out "$tls/other-ca.pem" 2>/dev/null
    chmod 644 "$tls"/*
fi

start 5432 PostgreSQL sh -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
start 3306 MariaDB start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start 6379 Redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
start 5672 RabbitMQ rabbitmq-server -detached
# A RabbitMQ user of the tests' own (`weir`, `weir-secret`), for the AMQP credentials.
if ! as_root rabbitmqctl -q list_users 2>/dev/null | grep -q '^weir\b'; then
    for _ in $(seq 1 30); do as_root rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
    as_root rabbitmqctl -q add_user weir weir-secret >/dev/null
    as_root rabbitmqctl -q set_permissions -p / weir '.*' '.*' '.*' >/dev/null
fi
start 1883 Mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf
# A second Mosquitto that requires a user name and password, in plain text (1884) and TLS (8884).
if ! listening 1884; then
    auth="$PWD/target/services/mosquitto-auth"
    mkdir -p "$auth"
    mosquitto_passwd -b -c "$auth/passwd" weir weir-secret
    chmod 644 "$auth/passwd"
    printf 'per_listener_settings false\nallow_anonymous false\npassword_file %s/passwd\nlistener 1884 127.0.0.1\nlistener 8884 127.0.0.1\ncertfile %s/server.pem\nkeyfile %s/server.key\n' \
        "$auth" "$tls" "$tls" >"$auth/mosquitto.conf"
    mosquitto -d -c "$auth/mosquitto.conf"
    wait_for 1884 "Mosquitto with passwords"
    wait_for 8884 "Mosquitto with TLS"
fi
# Redis with a password, TLS only (6380).
if ! listening 6380; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port 6380 --requirepass weir-secret \
        --tls-cert-file "$tls/server.pem" --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.pem" \
        --tls-auth-clients no --save "" --appendonly no --dir "$PWD/target/services" --logfile "$PWD/target/services/redis-tls.log"
    wait_for 6380 "Redis with TLS"
fi
# NATS with a user and TLS (4223).
if ! listening 4223; then
    cat >"$PWD/target/services/nats-tls.conf" <<CONF
listen: 127.0.0.1:4223
authorization { user: weir, password: weir-secret }
tls { cert_file: "$tls/server.pem", key_file: "$tls/server.key" }
CONF
    nohup nats-server -c "$PWD/target/services/nats-tls.conf" >target/services/nats-tls.log 2>&1 &
    wait_for 4223 "NATS with TLS"
fi
# PostgreSQL that takes only TLS connections with a password (5433): a cluster of its own.
if ! listening 5433; then
    pg="$PWD/target/services/pg-tls"
    bin="$(ls -d /usr/lib/postgresql/*/bin | tail -1)"
    rm -rf "$pg" && mkdir -p "$pg"
    cp "$tls/server.pem" "$tls/server.key" "$pg/" && chown -R postgres "$pg" && chmod 600 "$pg/server.key"
    printf 'weir-secret\n' >"$pg/pwfile" && chown postgres "$pg/pwfile"
    as_root runuser -u postgres -- "$bin/initdb" -D "$pg/data" -U weir --pwfile="$pg/pwfile" --auth=scram-sha-256 >/dev/null
    printf 'hostssl all all 127.0.0.1/32 scram-sha-256\n' >"$pg/data/pg_hba.conf"
    as_root runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -l "$pg/log" -w start -o \
        "-p 5433 -k $pg -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=$pg/server.pem -c ssl_key_file=$pg/server.key" >/dev/null
    PGPASSWORD=weir-secret psql "host=127.0.0.1 port=5433 user=weir dbname=postgres sslmode=require" -qc "CREATE DATABASE test" >/dev/null
fi
# A RabbitMQ node that takes only TLS (5673), with the user `weir`: a node of its own.
if ! listening 5673; then
    rmq="$PWD/target/services/rabbitmq-tls"
    rm -rf "$rmq" && mkdir -p "$rmq"
    cp "$tls/ca.pem" "$tls/server.pem" "$tls/server.key" "$rmq/"
    cat >"$rmq/rabbitmq.conf" <<CONF
listeners.tcp = none
listeners.ssl.default = 5673
ssl_options.cacertfile = $rmq/ca.pem
ssl_options.certfile = $rmq/server.pem
ssl_options.keyfile = $rmq/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
default_user = weir
default_pass = weir-secret
loopback_users = none
CONF
    echo "[]." >"$rmq/plugins"
    chown -R rabbitmq "$rmq" 2>/dev/null || true
    as_root env RABBITMQ_NODENAME=weirtls@localhost RABBITMQ_DIST_PORT=25673 RABBITMQ_MNESIA_BASE="$rmq/mnesia" \
        RABBITMQ_LOG_BASE="$rmq/log" RABBITMQ_PID_FILE="$rmq/pid" RABBITMQ_CONFIG_FILE="$rmq/rabbitmq" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$rmq/plugins" rabbitmq-server -detached >/dev/null 2>&1
    wait_for 5673 "RabbitMQ with TLS"
fi
# MariaDB that requires TLS and a password (3307): a data directory of its own.
if ! listening 3307; then
    my="$PWD/target/services/mariadb-tls"
    rm -rf "$my" && mkdir -p "$my"
    cp "$tls/server.pem" "$tls/server.key" "$tls/ca.pem" "$my/"
    mariadb-install-db --user=mysql --datadir="$my/data" --auth-root-authentication-method=normal >/dev/null 2>&1
    chown -R mysql "$my"
    nohup /usr/sbin/mariadbd --user=mysql --datadir="$my/data" \
        --port=3307 --bind-address=127.0.0.1 --socket="$my/sock" --pid-file="$my/pid" --log-error="$my/log" \
        --ssl-cert="$my/server.pem" --ssl-key="$my/server.key" --ssl-ca="$my/ca.pem" --require-secure-transport=ON \
        >/dev/null 2>&1 &
    wait_for 3307 "MariaDB with TLS"
    mariadb -S "$my/sock" -u root -e "CREATE USER weir@'%' IDENTIFIED BY 'weir-secret'; GRANT ALL ON *.* TO weir@'%'; CREATE DATABASE IF NOT EXISTS test"
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
