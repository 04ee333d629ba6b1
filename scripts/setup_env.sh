#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv. Sourced by demo.sh and test.sh.
# Idempotent: re-installs only when requirements/dev.txt or pyproject.toml changed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPINEBRAIN_VENV:-$REPO/.venv}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3.10 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    echo "No Python 3.10 or newer found: install one, or point PYTHON=/path/to/python3 at it." >&2
    return 1
}

stamp_of() { cat "$REPO/requirements/dev.txt" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python)"
    echo "Creating virtual environment $VENV with $PY ..." >&2
    "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.spinebrain-stamp" 2>/dev/null)" != "$(stamp_of)" ]; then
    echo "Installing dependencies into $VENV (first run takes a few minutes) ..." >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    # torch first and exactly pinned, so nothing pulls a newer (CUDA) build through a range
    "$VENV/bin/python" -m pip install --quiet "$(grep -E '^torch==' "$REPO/requirements/dev.txt")"
    "$VENV/bin/python" -m pip install --quiet -r "$REPO/requirements/dev.txt"
    "$VENV/bin/python" -m pip install --quiet --no-deps -e "$REPO"
    stamp_of > "$VENV/.spinebrain-stamp"
fi
export PATH="$VENV/bin:$PATH"
