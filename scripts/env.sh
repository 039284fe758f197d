# Sourced by the scripts: shared settings. A cargo target directory outside the clone lets
# repeated runs on one machine (CI included) reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/transition-matrix/target}"
export TM_CACHE="${TM_CACHE:-$HOME/.cache/transition-matrix}"
TM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TM_ROOT
TM_BIN="$CARGO_TARGET_DIR/${TM_PROFILE:-debug}/transition-matrix"
export TM_BIN
