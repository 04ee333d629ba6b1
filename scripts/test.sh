#!/usr/bin/env bash
# The README's second command: set up .venv if needed, then run the test suite.
# Extra arguments go to pytest (e.g. -m "not slow", -k bridge).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_env.sh"
cd "$REPO"
python -m pytest Testing "$@"
