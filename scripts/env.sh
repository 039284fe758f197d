# Sourced by the scripts: shared settings. A cargo target directory outside the clone lets
# repeated runs on one machine (CI included) reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/transition-matrix/target}"
export TM_CACHE="${TM_CACHE:-$HOME/.cache/transition-matrix}"
TM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TM_ROOT
TM_BIN="$CARGO_TARGET_DIR/${TM_PROFILE:-debug}/transition-matrix"
export TM_BIN

# Says, before a build, what a first build on this machine costs (RocksDB's C++).
announce_first_build() {
    if ! compgen -G "$CARGO_TARGET_DIR/debug/build/rust-librocksdb-sys-*/out/librocksdb.a" >/dev/null; then
        echo "[build] first build on this machine: compiling RocksDB from C++ takes about 10 minutes" \
            "on 2 cores, once (later builds reuse $CARGO_TARGET_DIR)" >&2
    fi
}
