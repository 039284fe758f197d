# Sourced by the testnet scripts (which set ROOT): which clone holds a loopback port. Each
# service records its clone in ${TMPDIR:-/tmp}/transition-matrix-ports/<port> when it starts, so
# a port still held by another clone's testnet is refused with that clone named.
PORTS_DIR="${TMPDIR:-/tmp}/transition-matrix-ports"

claim_port() { mkdir -p "$PORTS_DIR" && echo "$ROOT" >"$PORTS_DIR/$1"; }

# Why port $1 cannot be used: another clone's testnet, or some other process.
port_taken() {
    local owner
    owner="$(cat "$PORTS_DIR/$1" 2>/dev/null || true)"
    if [ -n "$owner" ] && [ "$owner" != "$ROOT" ]; then
        echo "127.0.0.1:$1 is held by the testnet of another clone, $owner: stop it there" \
            "(bash testnet/synapse.sh stop all; bash testnet/mattermost.sh stop) or give this" \
            "clone other ports (TM_SYNAPSE_PORT, TM_MM_PG_PORT, TM_MM_MYSQL_PORT, TM_MM_SSH_PORT)"
    else
        echo "127.0.0.1:$1 is already in use by another process (ss -ltnp | grep $1)"
    fi
}
