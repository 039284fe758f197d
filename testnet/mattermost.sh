#!/usr/bin/env bash
# Mattermost source databases for transition-matrix tests (no Docker; everything on 127.0.0.1).
#
#   testnet/mattermost.sh install | up | stop | clean | env | status | verify | bench [N]
#
# A private PostgreSQL 15 cluster (port ${TM_MM_PG_PORT:-15432}) and a private MariaDB
# (port ${TM_MM_MYSQL_PORT:-13306}) holding Mattermost's schema and a deterministic fixture,
# plus the matching local file store, an mmctl-style bulk export zip and a config.json.
# State lives in ${TM_TESTNET_DIR:-<repo>/.testnet}/mattermost.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
MM="$HERE/mattermost"
TESTNET="${TM_TESTNET_DIR:-$ROOT/.testnet}"
STATE="$TESTNET/mattermost"
PG_PORT="${TM_MM_PG_PORT:-15432}"
MY_PORT="${TM_MM_MYSQL_PORT:-13306}"
BENCH_POSTS="${TM_MM_BENCH_POSTS:-1000000}"
DB=mattermost
DB_USER=mmuser
DB_PASS=mostest
# PostgreSQL runs as the `postgres` OS user, which must reach its cluster. A clone in a private
# home (root's 0700 ~, say) is out of its reach: the cluster then lives in a folder of this
# clone's own under the system's temp directory, keyed by the clone's path (so two clones never
# share one), and `clean` removes it with the rest of the state.
PGBASE="$STATE/pg"
pg_outside() { echo "${TMPDIR:-/tmp}/transition-matrix-$(printf %s "$ROOT" | sha256sum | cut -c1-12)/pg"; }
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    mkdir -p "$STATE"
    runuser -u postgres -- test -x "$STATE" 2>/dev/null || PGBASE="$(pg_outside)"
fi
PGDATA="$PGBASE/data"
PGRUN="$PGBASE/run"
MYDATA="$STATE/mysql/data"
MYRUN="$STATE/mysql/run"
GEN="$STATE/gen"
SSH_PORT="${TM_MM_SSH_PORT:-12222}"
SSHDIR="$STATE/ssh"

. "$HERE/ports.sh"
log() { echo "[mattermost] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
    return 1
}
my_bin() { command -v mariadbd || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } || return 1; }

# PostgreSQL refuses to run as root: use the `postgres` OS user the Debian package creates.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# Superuser psql over the private unix socket.
psql_su() { as_pg "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGRUN" -p "$PG_PORT" -U postgres "$@"; }
mysql_su() { mariadb --no-defaults -S "$MYRUN/mysqld.sock" -u root "$@"; }

cmd_install() {
    local need=()
    pg_bin >/dev/null || need+=(postgresql)
    my_bin >/dev/null || need+=(mariadb-server)
    command -v mariadb >/dev/null || need+=(mariadb-client)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v ssh-keygen >/dev/null || need+=(openssh-client)
    [ ${#need[@]} -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || die "missing packages (${need[*]}); run as root or install them"
    local t0=$EPOCHREALTIME added_policy=""
    log "installing ${need[*]}"
    # We run private clusters; keep the packages' own services from starting.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
    [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
    # Under systemd the units may still be enabled: keep them off.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now postgresql mariadb >/dev/null 2>&1 || true
    fi
    log "installed in $(since "$t0") s"
}

pg_running() { [ -f "$PGDATA/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
my_pid() {
    local pid
    [ -f "$MYRUN/mysqld.pid" ] || return 0
    pid="$(cat "$MYRUN/mysqld.pid")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_pg() {
    pg_running && return 0
    local bin t0=$EPOCHREALTIME
    bin="$(pg_bin)"
    mkdir -p "$PGBASE"
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        rm -rf "$PGDATA" "$PGBASE/fixture.hash"
        mkdir -p "$PGDATA" "$PGRUN"
        [ "$(id -u)" != 0 ] || chown -R postgres: "$PGBASE"
        # Every folder above it must be traversable for the postgres user (see PGBASE).
        as_pg test -w "$PGDATA" || die "$PGDATA is not writable by the postgres user"
        as_pg "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            -E UTF8 --locale=C.UTF-8 >"$PGBASE/initdb.log" 2>&1 \
            || { cat "$PGBASE/initdb.log" >&2; die "initdb failed"; }
        cat >>"$PGDATA/postgresql.conf" <<EOF

# transition-matrix test cluster
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGRUN'
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
shared_buffers = 256MB
maintenance_work_mem = 256MB
logging_collector = off
EOF
    fi
    mkdir -p "$PGRUN"
    [ "$(id -u)" != 0 ] || chown postgres: "$PGRUN"
    ! port_busy "$PG_PORT" || die "$(port_taken "$PG_PORT")"
    as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGBASE/postgres.log" -w -t 60 start >/dev/null \
        || { tail -n 30 "$PGBASE/postgres.log" >&2; die "PostgreSQL failed to start"; }
    claim_port "$PG_PORT"
    log "PostgreSQL up on 127.0.0.1:$PG_PORT ($(since "$t0") s)"
}

start_mysql() {
    [ -z "$(my_pid)" ] || return 0
    local t0=$EPOCHREALTIME
    mkdir -p "$MYRUN"
    cat >"$STATE/mysql/my.cnf" <<EOF
[mariadbd]
datadir = $MYDATA
socket = $MYRUN/mysqld.sock
pid-file = $MYRUN/mysqld.pid
log-error = $STATE/mysql/mysqld.log
port = $MY_PORT
bind-address = 127.0.0.1
skip-networking = 0
skip-name-resolve
user = $(id -un)
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
lower_case_table_names = 0
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
innodb_buffer_pool_size = 256M
innodb_log_file_size = 256M
performance_schema = 0
EOF
    if [ ! -d "$MYDATA/mysql" ]; then
        rm -rf "$MYDATA" "$STATE/mysql/fixture.hash"
        mkdir -p "$MYDATA"
        mariadb-install-db --defaults-file="$STATE/mysql/my.cnf" --auth-root-authentication-method=socket \
            --skip-test-db >"$STATE/mysql/install-db.log" 2>&1 \
            || { cat "$STATE/mysql/install-db.log" >&2; die "mariadb-install-db failed"; }
    fi
    ! port_busy "$MY_PORT" || die "$(port_taken "$MY_PORT")"
    setsid "$(my_bin)" --defaults-file="$STATE/mysql/my.cnf" </dev/null >>"$STATE/mysql/mysqld.log" 2>&1 &
    local deadline=$((SECONDS + 60))
    until mysql_su -e 'SELECT 1' >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 $! 2>/dev/null; then
            tail -n 30 "$STATE/mysql/mysqld.log" >&2
            die "MariaDB did not come up"
        fi
        sleep 0.2
    done
    claim_port "$MY_PORT"
    log "MariaDB up on 127.0.0.1:$MY_PORT ($(since "$t0") s)"
}

# An SSH server on loopback standing in for "the Mattermost host": key login only (a key made
# here), its own host key, and a known_hosts file for the client. Runs as the current user.
ssh_pid() { local p; p="$(cat "$SSHDIR/sshd.pid" 2>/dev/null)" && kill -0 "$p" 2>/dev/null && echo "$p"; }
start_sshd() {
    [ -n "$(ssh_pid)" ] && return 0
    mkdir -p "$SSHDIR" && chmod 700 "$SSHDIR"
    [ -f "$SSHDIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C tm-testnet-host -f "$SSHDIR/host_ed25519"
    [ -f "$SSHDIR/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C tm-testnet-client -f "$SSHDIR/client_ed25519"
    cp "$SSHDIR/client_ed25519.pub" "$SSHDIR/authorized_keys"
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SSHDIR/host_ed25519.pub")" >"$SSHDIR/known_hosts"
    # A known_hosts naming another key for the same host: the mismatch case.
    [ -f "$SSHDIR/other_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C other -f "$SSHDIR/other_ed25519"
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SSHDIR/other_ed25519.pub")" >"$SSHDIR/known_hosts_wrong"
    cat >"$SSHDIR/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $SSHDIR/host_ed25519
PidFile $SSHDIR/sshd.pid
AuthorizedKeysFile $SSHDIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowTcpForwarding yes
MaxSessions 64
LogLevel ERROR
CONF
    mkdir -p /run/sshd 2>/dev/null || true
    /usr/sbin/sshd -f "$SSHDIR/sshd_config" -E "$SSHDIR/sshd.log"
    for _ in $(seq 1 50); do [ -n "$(ssh_pid)" ] && break; sleep 0.1; done
    [ -n "$(ssh_pid)" ] || die "sshd did not start (see $SSHDIR/sshd.log)"
    log "sshd up on 127.0.0.1:$SSH_PORT"
}

cmd_stop() {
    local sp
    sp="$(ssh_pid)" && { kill "$sp"; log "sshd stopped"; }
    if pg_running; then
        as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
    fi
    local pid
    pid="$(my_pid)"
    if [ -n "$pid" ]; then
        kill "$pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then log "MariaDB (pid $pid) ignored SIGTERM, killing"; kill -9 "$pid"; fi
        log "MariaDB stopped"
    fi
}

# Hash of what defines the data: schemas + generator (+ size knob for bench).
fixture_hash() {
    (cd "$MM" && { sha256sum schema-postgres.sql schema-mysql.sql generate.py; echo "$*"; } | sha256sum | cut -c1-16)
}

generate() {  # generate OUTDIR [args...]
    local out="$1"; shift
    rm -rf "$out.tmp"
    python3 "$MM/generate.py" --out "$out.tmp" --files-dir "$out/data" \
        --pg-port "$PG_PORT" --mysql-port "$MY_PORT" "$@"
    rm -rf "$out" && mv "$out.tmp" "$out"
}

load_pg() {  # load_pg DBNAME SQLDIR
    local db="$1" dir="$2"
    psql_su -d postgres <<EOF
SET client_min_messages = warning;
DROP DATABASE IF EXISTS $db;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS';
  END IF;
END \$\$;
CREATE DATABASE $db TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8';
EOF
    psql_su -d "$db" -f - <"$MM/schema-postgres.sql"
    # COPY data is streamed through stdin (the postgres user need not read our files).
    psql_su -d "$db" -f - <"$dir/pg-data.sql"
    [ ! -f "$dir/pg-post-load.sql" ] || psql_su -d "$db" -f - <"$dir/pg-post-load.sql"
    psql_su -d "$db" <<EOF
GRANT CONNECT ON DATABASE $db TO $DB_USER;
GRANT USAGE ON SCHEMA public TO $DB_USER;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO $DB_USER;
ANALYZE;
EOF
}

load_mysql() {
    mysql_su <<EOF
DROP DATABASE IF EXISTS $DB;
CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT SELECT ON $DB.* TO '$DB_USER'@'127.0.0.1';
GRANT SELECT ON $DB.* TO '$DB_USER'@'localhost';
EOF
    mysql_su --default-character-set=utf8mb4 "$DB" <"$MM/schema-mysql.sql"
    mysql_su --default-character-set=utf8mb4 "$DB" <"$GEN/mysql-data.sql"
}

cmd_up() {
    local t0=$EPOCHREALTIME hash
    cmd_install
    hash="$(fixture_hash small)"
    start_pg
    start_mysql
    start_sshd
    if [ "$(cat "$GEN/fixture.hash" 2>/dev/null)" != "$hash" ]; then
        log "generating fixture ($hash)"
        generate "$GEN"
        echo "$hash" >"$GEN/fixture.hash"
    fi
    if [ "$(cat "$PGBASE/fixture.hash" 2>/dev/null)" != "$hash" ]; then
        log "loading PostgreSQL"
        load_pg "$DB" "$GEN"
        echo "$hash" >"$PGBASE/fixture.hash"
    fi
    if [ "$(cat "$STATE/mysql/fixture.hash" 2>/dev/null)" != "$hash" ]; then
        log "loading MariaDB"
        load_mysql
        echo "$hash" >"$STATE/mysql/fixture.hash"
    fi
    log "up in $(since "$t0") s (fixture $hash); eval \"\$(bash $0 env)\""
}

# Big PostgreSQL-only data set in database mattermost_bench.
cmd_bench() {
    local n="${1:-$BENCH_POSTS}" t0=$EPOCHREALTIME hash
    [[ "$n" =~ ^[0-9]+$ ]] || die "bench: N must be a number"
    cmd_install
    start_pg
    hash="$(fixture_hash "bench $n")"
    if [ "$(cat "$PGBASE/bench.hash" 2>/dev/null)" = "$hash" ]; then
        log "mattermost_bench already holds $n posts ($hash)"; return 0
    fi
    log "generating bench data ($n posts)"
    generate "$STATE/bench" --posts "$n" --pg-only --db-name mattermost_bench
    log "generated in $(since "$t0") s; loading"
    local t1=$EPOCHREALTIME
    load_pg mattermost_bench "$STATE/bench"
    echo "$hash" >"$PGBASE/bench.hash"
    rm -f "$STATE/bench/pg-data.sql"  # ~300 MB for 10^6 posts; the database is the copy that counts
    log "loaded in $(since "$t1") s (total $(since "$t0") s)"
}

cmd_env() {
    echo "export TM_MM_PG_URL='postgres://$DB_USER:$DB_PASS@127.0.0.1:$PG_PORT/$DB?sslmode=disable'"
    echo "export TM_MM_MYSQL_DSN='$DB_USER:$DB_PASS@tcp(127.0.0.1:$MY_PORT)/$DB?charset=utf8mb4'"
    printf 'export TM_MM_CONFIG=%q\n' "$GEN/config.json"
    printf 'export TM_MM_CONFIG_MYSQL=%q\n' "$GEN/config-mysql.json"
    printf 'export TM_MM_FILES=%q\n' "$GEN/data"
    printf 'export TM_MM_EXPORT=%q\n' "$GEN/data/export/$(cat "$GEN/export-name" 2>/dev/null || echo MISSING)"
    printf 'export TM_MM_FIXTURE=%q\n' "$GEN/fixture.json"
    echo "export TM_MM_SSH_TARGET='$(id -un)@127.0.0.1:$SSH_PORT'"
    printf 'export TM_MM_SSH_KEY=%q\n' "$SSHDIR/client_ed25519"
    printf 'export TM_MM_SSH_KNOWN_HOSTS=%q\n' "$SSHDIR/known_hosts"
    printf 'export TM_MM_SSH_KNOWN_HOSTS_WRONG=%q\n' "$SSHDIR/known_hosts_wrong"
    echo "export TM_MM_BENCH_PG_URL='postgres://$DB_USER:$DB_PASS@127.0.0.1:$PG_PORT/mattermost_bench?sslmode=disable'"
}

cmd_verify() {
    python3 "$MM/verify.py" "$GEN/fixture.json" "$PG_PORT" "$MY_PORT"
}

cmd_status() {
    if pg_running; then echo "postgres: running on 127.0.0.1:$PG_PORT ($PGDATA)"; else echo "postgres: stopped ($PGDATA)"; fi
    local pid
    pid="$(my_pid)"
    if [ -n "$pid" ]; then echo "mariadb: running pid $pid on 127.0.0.1:$MY_PORT ($MYDATA)"; else echo "mariadb: stopped ($MYDATA)"; fi
    echo "fixture hash: $(fixture_hash small) (pg loaded: $(cat "$PGBASE/fixture.hash" 2>/dev/null || echo -)," \
        "mysql loaded: $(cat "$STATE/mysql/fixture.hash" 2>/dev/null || echo -))"
    [ ! -f "$PGBASE/bench.hash" ] || echo "bench: $(cat "$PGBASE/bench.hash")"
}

# Stops everything and removes this clone's state, the PostgreSQL cluster outside it included.
cmd_clean() {
    cmd_stop
    rm -rf "$STATE" "$(dirname "$(pg_outside)")"
    log "removed $STATE and $(dirname "$(pg_outside)")"
}

case "${1:-}" in
    install) cmd_install ;;
    clean) cmd_clean ;;
    up) cmd_up ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    status) cmd_status ;;
    verify) cmd_verify ;;
    bench) cmd_bench "${2:-}" ;;
    *) echo "usage: $0 install|up|stop|clean|env|status|verify|bench [N]" >&2; exit 2 ;;
esac
