#!/usr/bin/env bash
# Build the Pulumi CLI from its Go modules, for the tests that run the real engine, and link it as .cache/engine
# (run it with NOMADRIG_PULUMI_ROOT=.cache/engine, or put .cache/engine/bin on PATH).
#   scripts/build-engine.sh           build, unless this exact build exists already (then: seconds)
#   scripts/build-engine.sh --force   build again
# The build lives in ~/.cache/nomadrig/engine/ (NOMADRIG_ENGINE_CACHE overrides it), one folder per CLI version,
# Go version and inputs; .cache/engine links the current one.
#
# What it installs, and why each piece:
#   pulumi                          the CLI, `go build` of github.com/pulumi/pulumi/pkg/v3/cmd/pulumi through the
#                                   wrapper module scripts/engine (go.mod pins the version, go.sum the checksums)
#   pulumi-resource-pulumi-python   the provider of `pulumi.dynamic` resources (the tower's provider): a script
#                                   shipped in the sdk/v3 Go module, copied from the module cache
#   pulumi-language-python          ours (scripts/engine/): the CLI starts a `runtime: python` policy pack
#                                   through this host's RunPlugin. Upstream's host is a Go module the proxy does
#                                   not serve; nomadrig's programs are inline (the Automation API serves them from
#                                   the nomadrig process), so policy packs are all it must run. A Pulumi.yaml
#                                   project run with a bare `pulumi up` is refused by it, saying why.
#
# Network: the Go module proxy only. go.sum is committed and complete, so `go` never asks the checksum
# database (not reachable from these machines) and -mod=readonly refuses any module go.sum does not vouch for.
# To move to another version: edit the two pinned lines of scripts/engine/go.mod, then in scripts/engine run
# `GOSUMDB=off go mod tidy` (GOSUMDB=off because the checksum database is unreachable here) and check that the
# lines go.sum shares with upstream's pkg/go.sum and sdk/go.sum in the module cache are identical.
#
# Without Go it builds nothing and says so (exit 0): the real-engine tests then skip, naming the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

module=scripts/engine
link=.cache/engine  # what the tests and NOMADRIG_PULUMI_ROOT=.cache/engine use
force=false
[[ "${1:-}" == "--force" ]] && force=true

if ! command -v go >/dev/null; then
  echo "build-engine: Go is not installed, so the Pulumi CLI is not built; the real-engine tests will skip." >&2
  exit 0
fi

cli_version=$(awk '$1 == "github.com/pulumi/pulumi/pkg/v3" { print $2; exit }' "$module/go.mod")
sdk_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pulumi"))' 2>/dev/null || true)
if [[ -z "$sdk_version" ]]; then
  echo "build-engine: the pulumi Python SDK is not installed in .venv; run scripts/setup.sh first." >&2
  exit 2
fi
# Pulumi supports a CLI at least as new as the SDK that drives it. The SDK is a range in pyproject, so a newer
# release on PyPI must not break the set-up: it is said, and the pin to move is named.
if ! .venv/bin/python - "$cli_version" "$sdk_version" <<'EOF'
import sys
from semver import VersionInfo
cli, sdk = VersionInfo.parse(sys.argv[1].lstrip("v")), VersionInfo.parse(sys.argv[2])
sys.exit(0 if cli.major == sdk.major and cli >= sdk else 1)
EOF
then
  echo "build-engine: warning: $module/go.mod pins the CLI at $cli_version, older than the pulumi Python SDK" \
       "$sdk_version in .venv; pin github.com/pulumi/pulumi/pkg/v3 and sdk/v3 at $sdk_version or newer there." >&2
fi

go_version=$(go env GOVERSION)
inputs=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
# Builds are kept per version, Go and module inputs in the user's cache, outside the checkout, so a fresh clone on
# the same machine (CI's) links the build it already has instead of spending minutes compiling it again.
store="${NOMADRIG_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nomadrig/engine}/pulumi-$cli_version-$go_version-$inputs"
[[ "$store" == /* ]] || store="$PWD/$store"
bin="$store/bin"
binaries=(pulumi pulumi-resource-pulumi-python)
complete() { [[ -f "$store/stamp" ]] || return 1; for name in "${binaries[@]}"; do [[ -x "$bin/$name" ]] || return 1; done
             [[ "$("$bin/pulumi" version 2>/dev/null)" == "$cli_version" ]]; }
# Our language host is a script of this checkout, not part of the Go build: installed on every run (a change to
# it never costs a rebuild), then the link is made.
use() { install -m 0755 "$module/pulumi-language-python" "$bin/pulumi-language-python"
        mkdir -p "$(dirname "$link")"; [[ -L "$link" || ! -e "$link" ]] || rm -rf "$link"; ln -sfn "$store" "$link"; }

if ! $force && complete; then
  use
  echo "build-engine: pulumi $cli_version is built ($link -> $store; Python SDK $sdk_version)."
  exit 0
fi

echo "build-engine: building pulumi $cli_version with $go_version (Python SDK $sdk_version); minutes on a cold Go cache ..."
rm -rf "$store"
mkdir -p "$bin"
started=$(date +%s)
export GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
# -p 2 and nice: the machines have 2 cores, and other work shares them. -s -w drop the debug tables, as
# Pulumi's release builds do; -X sets what `pulumi version` prints.
(cd "$module" && nice -n 10 go build -p 2 -trimpath \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$cli_version" \
  -o "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)

sdk_dir=$(cd "$module" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"

printed=$("$bin/pulumi" version)
if [[ "$printed" != "$cli_version" ]]; then
  echo "build-engine: the built CLI says it is $printed, expected $cli_version." >&2
  exit 3
fi
echo "pulumi $cli_version $go_version $inputs" > "$store/stamp"  # last: a build cut short is never used
use
for old in "$(dirname "$store")"/pulumi-*; do  # earlier builds (117 MB each) are not used by this checkout
  [[ "$old" == "$store" ]] || rm -rf "$old"
done
size=$(du -m "$bin/pulumi" | cut -f1)
echo "build-engine: built pulumi $printed in $(( $(date +%s) - started )) s ($link -> $store, pulumi ${size} MB)."
