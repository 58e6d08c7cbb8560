#!/usr/bin/env bash
# Build the Phoenix OpenTelemetry Collector (bin/otelcol-phoenix) from
# deploy/otelcol/builder-config.yaml with the OpenTelemetry Collector Builder.
#
# - ocb is installed into .cache/otelcol/gobin at the manifest's release
#   (taken from its go.opentelemetry.io/collector/service line).
# - Generated sources and the build live in .cache/otelcol/build
#   (dist.output_path in the manifest); the log is .cache/otelcol/build.log.
# - Skips the build when bin/otelcol-phoenix exists and the manifest's sha256
#   and Phoenix's own components (deploy/otelcol/*processor) match bin/.otelcol-phoenix.sha256. Set OTELCOL_FORCE=1 to rebuild.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MANIFEST="deploy/otelcol/builder-config.yaml"
CACHE=".cache/otelcol"
GOBIN_DIR="$CACHE/gobin"
BUILD_DIR="$CACHE/build"
LOG="$CACHE/build.log"
BIN="bin/otelcol-phoenix"
HASH_FILE="bin/.otelcol-phoenix.sha256"

[[ -f "$MANIFEST" ]] || { echo "error: $MANIFEST not found" >&2; exit 1; }

# Phoenix's own components, built from source beside the manifest: part of what the hash covers.
COMPONENTS="deploy/otelcol/keeplistprocessor"
want_hash="$(cat "$MANIFEST" $(find $COMPONENTS -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) | sort) | sha256sum | cut -d' ' -f1)"
if [[ -z "${OTELCOL_FORCE:-}" && -x "$BIN" && -f "$HASH_FILE" ]] &&
	[[ "$(cat "$HASH_FILE")" == "$want_hash" ]]; then
	echo "$BIN is up to date"
	exit 0
fi

if ! command -v go >/dev/null 2>&1; then
	echo "error: 'go' not found in PATH; install Go >= 1.26 (https://go.dev/doc/install, or your distro's golang package) and retry" >&2
	exit 1
fi

# ocb must be the same release as the collector modules in the manifest.
OCB_VERSION="$(sed -n 's#^[[:space:]]*gomod:[[:space:]]*go\.opentelemetry\.io/collector/service[[:space:]]\{1,\}\(v[0-9][^[:space:]]*\).*#\1#p' "$MANIFEST" | head -n1)"
if [[ -z "$OCB_VERSION" ]]; then
	echo "error: cannot read the collector release from $MANIFEST (telemetry: gomod: go.opentelemetry.io/collector/service vX.Y.Z)" >&2
	exit 1
fi

mkdir -p "$GOBIN_DIR" "$BUILD_DIR" bin
: >"$LOG"

fail() {
	echo "error: $1 (log: $LOG); last lines:" >&2
	tail -n 30 "$LOG" >&2
	exit 1
}

export CGO_ENABLED=0
OCB="$GOBIN_DIR/builder"
# ("ocb version" prints "ocb version vX.Y.Z" on stderr.)
if [[ ! -x "$OCB" ]] || [[ "$("$OCB" version 2>&1)" != *" $OCB_VERSION" ]]; then
	echo "installing ocb $OCB_VERSION into $GOBIN_DIR"
	GOBIN="$ROOT/$GOBIN_DIR" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION" >>"$LOG" 2>&1 ||
		fail "go install of ocb $OCB_VERSION failed"
fi

echo "building $BIN with ocb $OCB_VERSION (log: $LOG) ..."
start=$SECONDS
# ocb strips symbols by default (-ldflags "-s -w") and builds with CGO_ENABLED=0.
"$OCB" --config="$MANIFEST" >>"$LOG" 2>&1 || fail "ocb build failed"

[[ -x "$BUILD_DIR/otelcol-phoenix" ]] || fail "ocb did not produce $BUILD_DIR/otelcol-phoenix"
cp "$BUILD_DIR/otelcol-phoenix" "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
echo "$want_hash" >"$HASH_FILE"
echo "built $BIN ($(du -h "$BIN" | cut -f1), $((SECONDS - start))s)"
