# Shared by scripts/test, scripts/demo and friends: make or reuse the pinned virtual environments.
# Source it; it defines ensure_venv and sets ROOT and PY.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${ACT3_PYTHON:-python3.11}
command -v "$PY" >/dev/null || { echo "error: $PY is needed (bpy from PyPI is built for Python 3.11 only)" >&2; exit 2; }

# ensure_venv DIR REQUIREMENTS [EXTRA PIP ARGS...]: (re)install only when the pins changed.
ensure_venv() {
  local dir=$1 req=$2; shift 2
  local stamp="$dir/.act3-stamp" want
  want=$(cat "$ROOT/$req" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
  if [[ -x $dir/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  echo "setting up $(basename "$dir") from $req (pip keeps the large bpy wheel in its cache)" >&2
  [[ -x $dir/bin/python ]] || "$PY" -m venv "$dir"
  if ! "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/$req" "$@" >"$dir/.pip.log" 2>&1; then
    grep -vE "^WARNING: Location .* is ignored" "$dir/.pip.log" >&2
    echo "error: pip could not install $req into $dir" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
}
