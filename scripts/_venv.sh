# Sourced by scripts/test and scripts/demo: make (or refresh) a virtual environment with Airflow and
# this package, using nothing but python3 and PyPI. Usage: make_venv <airflow-version> <extras>
# Sets VENV to the environment's folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

ensure_uv() {
  # Our own uv, not whatever the machine has: the same tool on every machine and in CI.
  if [ ! -x "$ROOT/.venv/tools/bin/uv" ]; then
    echo "==> installing uv (a fast pip) into .venv/tools"
    "$PYTHON" -m venv "$ROOT/.venv/tools"
    "$ROOT/.venv/tools/bin/python" -m pip install --quiet --disable-pip-version-check uv
  fi
  UV="$ROOT/.venv/tools/bin/uv"
}

make_venv() {
  local airflow_version="$1" extras="${2:-}"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "Python 3.10 or newer is needed as '$PYTHON' (set PYTHON=...)" >&2; exit 1; }
  ensure_uv
  VENV="$ROOT/.venv/airflow-$airflow_version"
  if [ ! -x "$VENV/bin/python" ]; then
    "$UV" venv --quiet --python "$PYTHON" "$VENV"
  fi
  echo "==> installing apache-airflow==$airflow_version and this package into ${VENV#"$ROOT"/}"
  VIRTUAL_ENV="$VENV" "$UV" pip install --quiet "apache-airflow==$airflow_version" -e "$ROOT$extras"
}
