#!/usr/bin/env bash
# Local Synapse test network for transition-matrix (no Docker; everything on 127.0.0.1).
#
#   testnet/synapse.sh install | start [NAME] | stop [NAME|all] | populate | up | env | status | verify
#
# Instances: main (example.test, ports P and P+1) and whitelist (whitelist.test, port P+10),
# P = ${TM_SYNAPSE_PORT:-18008}. State lives in ${TM_TESTNET_DIR:-<repo>/.testnet}.
set -euo pipefail

SYNAPSE_VERSION=1.163.2
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TM_CACHE="${TM_CACHE:-$HOME/.cache/transition-matrix}"
VENV="$TM_CACHE/synapse-$SYNAPSE_VERSION/venv"
PY="$VENV/bin/python"
TESTNET="${TM_TESTNET_DIR:-$ROOT/.testnet}"
PORT="${TM_SYNAPSE_PORT:-18008}"
SNAPDIR="$TM_CACHE/testnet-snapshots"
export TM_HUGE_EVENTS="${TM_HUGE_EVENTS:-5000}"

. "$HERE/ports.sh"
log() { echo "[testnet] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Wall-clock seconds since $1 (an $EPOCHREALTIME value), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

server_name() { case "$1" in main) echo example.test ;; whitelist) echo whitelist.test ;; *) die "unknown instance '$1' (main|whitelist)" ;; esac; }
port_of() { case "$1" in main) echo "$PORT" ;; whitelist) echo $((PORT + 10)) ;; esac; }

cmd_install() {
    if [ -x "$PY" ] && [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"))' 2>/dev/null)" = "$SYNAPSE_VERSION" ]; then
        return 0
    fi
    local t0=$EPOCHREALTIME
    log "installing matrix-synapse==$SYNAPSE_VERSION into $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
    log "installed in $(since "$t0") s"
}

# pid of a running instance, or nothing.
running_pid() {
    local pidf="$TESTNET/$1/homeserver.pid" pid
    [ -f "$pidf" ] || return 0
    pid="$(cat "$pidf")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

cmd_start() {
    local name="${1:-main}" dir server port
    server="$(server_name "$name")"
    dir="$TESTNET/$name"
    port="$(port_of "$name")"
    if [ -n "$(running_pid "$name")" ]; then return 0; fi
    cmd_install
    mkdir -p "$dir"
    if [ ! -f "$dir/homeserver.yaml.generated" ]; then
        log "generating config for $name ($server)"
        "$PY" -m synapse.app.homeserver --generate-config --report-stats=no \
            --server-name "$server" --config-path "$dir/homeserver.yaml" \
            --data-directory "$dir" >/dev/null
        mv "$dir/homeserver.yaml" "$dir/homeserver.yaml.generated"
        rm -f "$dir/$server.log.config"  # replaced by our log.config
    fi
    # Always re-derive the config: picks up port changes and a moved/restored instance dir.
    "$PY" "$HERE/configure.py" "$dir" "$name" "$port"
    # Something else on our ports (e.g. an orphan whose instance dir was deleted) would answer
    # /health for us; refuse rather than report a false success.
    local p
    for p in "$port" $([ "$name" = main ] && echo $((port + 1))); do
        if curl -s -o /dev/null -m 2 "http://127.0.0.1:$p/health"; then
            die "$(port_taken "$p")"
        fi
    done
    rm -f "$dir/homeserver.pid"
    # --daemonize forks, writes pid_file and detaches; early errors land in console.log.
    (cd "$dir" && "$PY" -m synapse.app.homeserver -c homeserver.yaml --daemonize >"$dir/console.log" 2>&1) \
        || { tail -n 30 "$dir/console.log" "$dir/homeserver.log" 2>/dev/null >&2; die "$name failed to start"; }
    local deadline=$((SECONDS + 60))
    until curl -fsS -m 2 "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ] || { [ -f "$dir/homeserver.pid" ] && [ -z "$(running_pid "$name")" ]; }; then
            tail -n 40 "$dir/console.log" "$dir/homeserver.log" 2>/dev/null >&2 || true
            die "$name did not become healthy on 127.0.0.1:$port"
        fi
        sleep 0.2
    done
    for p in "$port" $([ "$name" = main ] && echo $((port + 1))); do claim_port "$p"; done
    log "$name ($server) up on http://127.0.0.1:$port (pid $(running_pid "$name"))"
}

cmd_stop() {
    local name="${1:-main}" pid
    if [ "$name" = all ]; then cmd_stop main; cmd_stop whitelist; return; fi
    server_name "$name" >/dev/null
    pid="$(running_pid "$name")"
    [ -n "$pid" ] || return 0
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then log "$name (pid $pid) ignored SIGTERM, killing"; kill -9 "$pid"; sleep 0.5; fi
    rm -f "$TESTNET/$name/homeserver.pid"
    log "$name stopped"
}

# Hash of the files that define the scenario and the config (+ size knob and version).
# synapse.sh itself and helpers like xmatrix.py are left out on purpose.
scenario_hash() {
    (cd "$HERE" && { find configure.py populate -type f -name '*.py' | LC_ALL=C sort | xargs sha256sum;
        echo "synapse=$SYNAPSE_VERSION huge=$TM_HUGE_EVENTS"; } | sha256sum | cut -c1-16)
}

populate_py() { (cd "$HERE" && "$PY" -m "populate.$1" "${@:2}"); }

cmd_populate() {
    [ ! -f "$TESTNET/main/scenario.json" ] || die "main is already populated (rm -rf $TESTNET/main to redo)"
    cmd_start main
    local t0=$EPOCHREALTIME
    log "populating the test Synapse through its real APIs: about 2-4 minutes, once per machine (later runs restore a snapshot)"
    TM_INSTANCE="$TESTNET/main" TM_PORT="$PORT" TM_SCENARIO_HASH="$(scenario_hash)" populate_py scenario
    log "populated in $(since "$t0") s"
}

cmd_whitelist() {
    cmd_start whitelist
    TM_INSTANCE="$TESTNET/whitelist" TM_PORT="$(port_of whitelist)" populate_py fixup whitelist-admin
}

cmd_up() {
    local t0=$EPOCHREALTIME hash snap have=""
    cmd_install
    hash="$(scenario_hash)"
    snap="$SNAPDIR/main-$hash.tar"
    if [ -f "$TESTNET/main/scenario.json" ]; then
        have="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("scenario_hash",""))' "$TESTNET/main/scenario.json")"
    fi
    cmd_whitelist
    if [ "$have" = "$hash" ]; then
        log "main already populated (hash $hash)"
        cmd_start main
    elif [ -f "$snap" ]; then
        log "restoring main from snapshot $snap"
        cmd_stop main
        rm -rf "$TESTNET/main" && mkdir -p "$TESTNET/main"
        tar -xf "$snap" -C "$TESTNET/main"
        cmd_start main
    else
        [ -z "$have" ] || log "main was populated with another scenario ($have), rebuilding"
        cmd_stop main
        rm -rf "$TESTNET/main"
        cmd_populate
        # Snapshot a quiescent DB: stop first so SQLite's WAL is checkpointed.
        TM_INSTANCE="$TESTNET/main" TM_PORT="$PORT" TM_SCENARIO_HASH="$hash" populate_py fixup scenario
        cmd_stop main
        mkdir -p "$SNAPDIR"
        tar -cf "$snap.tmp" -C "$TESTNET/main" --exclude='*.log' --exclude=homeserver.pid --exclude=console.log .
        mv "$snap.tmp" "$snap"
        log "saved snapshot $snap ($(du -h "$snap" | cut -f1))"
        cmd_start main
    fi
    # Paths, URLs and the whitelist admin token may differ from the snapshot's: refresh them.
    TM_INSTANCE="$TESTNET/main" TM_PORT="$PORT" TM_SCENARIO_HASH="$hash" populate_py fixup scenario
    log "testnet up in $(since "$t0") s; scenario: $TESTNET/main/scenario.json"
}

cmd_env() {
    printf 'export TM_TESTNET_SCENARIO=%q\n' "$TESTNET/main/scenario.json"
    echo "export TM_SYNAPSE_URL=http://127.0.0.1:$PORT"
    echo "export TM_SYNAPSE_CLIENT_ONLY_URL=http://127.0.0.1:$((PORT + 1))"
    echo "export TM_SYNAPSE_WHITELIST_URL=http://127.0.0.1:$((PORT + 10))"
    # The whitelist instance also takes Mattermost imports through an application service.
    if [ -f "$TESTNET/whitelist/appservice.yaml" ]; then
        printf 'export TM_SYNAPSE_AS_TOKEN=%q\n' "$("$PY" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["as_token"])' "$TESTNET/whitelist/appservice.yaml")"
    fi
    printf 'export TM_SYNAPSE_VENV=%q\n' "$VENV"
}

cmd_verify() {
    (cd "$HERE" && "$PY" verify.py "$TESTNET/main/scenario.json")
}

cmd_status() {
    local name pid
    for name in main whitelist; do
        pid="$(running_pid "$name")"
        if [ -n "$pid" ]; then
            echo "$name: running pid $pid, $(server_name "$name") on http://127.0.0.1:$(port_of "$name") ($TESTNET/$name)"
        else
            echo "$name: stopped ($TESTNET/$name)"
        fi
    done
    if [ -f "$TESTNET/main/scenario.json" ]; then echo "scenario: $TESTNET/main/scenario.json"; fi
    echo "scenario hash: $(scenario_hash)"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start "${2:-main}" ;;
    stop) cmd_stop "${2:-main}" ;;
    populate) cmd_populate ;;
    up) cmd_up ;;
    env) cmd_env ;;
    status) cmd_status ;;
    verify) cmd_verify ;;
    *) echo "usage: $0 install|start [main|whitelist]|stop [main|whitelist|all]|populate|up|env|status|verify" >&2; exit 2 ;;
esac
