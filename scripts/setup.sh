#!/usr/bin/env bash
# Set up nomadrig in ./.venv on a fresh Debian/Ubuntu machine that has only python3.
#   scripts/setup.sh                              the CLI (enough for `nomadrig plan`)
#   scripts/setup.sh --test                       plus test tools, the Pulumi CLI for the real-engine tests
#                                                 (scripts/build-engine.sh: tens of minutes the first time, then
#                                                 seconds) and, as root, the packages the container tests need
#   scripts/setup.sh --test --engine-background   the same, but return while the CLI still builds (log and status
#                                                 in .cache/engine-build/); the test run waits for it before the
#                                                 real-engine tests, which it runs last. For `setup && pytest`.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=false
engine_background=false
for arg in "$@"; do
  case "$arg" in
    --test) want_tests=true ;;
    --engine-background) engine_background=true ;;
    *) echo "setup: unknown option '$arg'" >&2
       echo "  use: scripts/setup.sh [--test [--engine-background]]" >&2; exit 2 ;;
  esac
done
if $engine_background && ! $want_tests; then
  echo "setup: --engine-background goes with --test (only the tests need the Pulumi CLI)" >&2; exit 2
fi

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# The engine build runs as a background job that leaves its pid, its log and, last, its exit status in
# .cache/engine-build/ (tests/harness/engine_build.py reads them), so it overlaps what comes after it.
engine_build=.cache/engine-build
running_engine_build() {  # a build an earlier setup started that is still going: reuse it, never race it
  [[ -f "$engine_build/pid" && ! -f "$engine_build/exit" ]] && kill -0 "$(cat "$engine_build/pid")" 2>/dev/null
}
start_engine_build() {
  if running_engine_build; then
    echo "setup: the Pulumi CLI build started earlier is still running (pid $(cat "$engine_build/pid")); using it."
    return
  fi
  rm -rf "$engine_build"
  mkdir -p "$engine_build"
  ( rc=0; bash scripts/build-engine.sh > "$engine_build/log" 2>&1 || rc=$?
    echo "$rc" > "$engine_build/exit.tmp" && mv "$engine_build/exit.tmp" "$engine_build/exit" ) \
    < /dev/null > /dev/null 2>&1 &
  echo $! > "$engine_build/pid"
}
wait_engine_build() {
  if running_engine_build; then
    echo "setup: waiting for the Pulumi CLI build (log: $engine_build/log; Ctrl-C leaves it running) ..."
    while running_engine_build; do sleep 2; done
  fi
  cat "$engine_build/log"
  local rc; rc=$(cat "$engine_build/exit" 2>/dev/null || echo "none: the build was killed")
  [[ "$rc" == 0 ]] || { echo "setup: the Pulumi CLI build failed (exit $rc); see above." >&2; exit 3; }
}

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
  start_engine_build  # the Pulumi CLI from its Go modules, for the real-engine tests (cached: seconds)
  if [[ $EUID -eq 0 && -x scripts/ci-container-prereqs.sh ]]; then
    scripts/ci-container-prereqs.sh
  fi
  if $engine_background; then
    echo "setup: the Pulumi CLI builds in the background (log: $engine_build/log); the tests wait for it."
  else
    wait_engine_build
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
