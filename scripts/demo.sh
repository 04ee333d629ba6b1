#!/usr/bin/env bash
# The README's first command: set up .venv if needed, then run the demo on a built-in generated
# scan. Outputs (Slicer formats + PNG) go to demo_output/ unless a folder is given.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_env.sh"
cd "$REPO"
if [ $# -eq 0 ]; then
  spinebrain demo --out demo_output --overwrite  # the script's own folder: refreshed on every run
else
  spinebrain demo --out "$1"  # a folder you chose: earlier results there are never replaced
fi
