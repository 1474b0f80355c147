#!/usr/bin/env bash
# Set up nomadrig in ./.venv on a fresh Debian/Ubuntu machine that has only python3.
#   scripts/setup.sh          the CLI (enough for `nomadrig plan`)
#   scripts/setup.sh --test   plus test tools, and (as root) the packages the container tests need
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=false
[[ "${1:-}" == "--test" ]] && want_tests=true

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# Debian's python3 ships without venv/ensurepip; install it when missing.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${pyver}-venv" python3-venv \
    || { echo "setup: python3-venv is missing and cannot be installed (need root or sudo)" >&2; exit 2; }
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if $want_tests; then
  .venv/bin/python -m pip install -q -e '.[test]'
  bash scripts/build-engine.sh  # the Pulumi CLI from its Go modules, for the real-engine tests (cached)
  if [[ $EUID -eq 0 && -x scripts/ci-container-prereqs.sh ]]; then
    scripts/ci-container-prereqs.sh
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
