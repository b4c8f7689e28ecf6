# Sourced by bench/shim/run_*.sh.
# require_built HINT FILE...: exits 1, naming the first FILE that does not
# exist and what to build (HINT, may be empty).
require_built() {
  local hint=$1 f
  shift
  for f in "$@"; do
    [[ -e $f ]] || { echo "missing $f${hint:+ ($hint)}" >&2; exit 1; }
  done
}
