#!/usr/bin/env bash
# Install the system tools the test suite uses (Debian packages), only those missing.
# Runs as root (CI, containers) or through sudo; prints what it installs.
set -euo pipefail

# command -> Debian package
declare -A NEEDS=(
	[shellcheck]=shellcheck
	[systemd-analyze]=systemd
	[pkcheck]=polkitd
	[dbus-daemon]=dbus-daemon
	[chromium]=chromium
	[promtool]=prometheus
	[pgbouncer]=pgbouncer
)

missing=()
for cmd in "${!NEEDS[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDS[$cmd]}")
done
# install-agent.sh builds its venv with the system python3, which needs the venv module.
if [[ -x /usr/bin/python3 ]] && ! /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1; then
	missing+=(python3-venv)
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "system-deps: missing ${missing[*]}; install them with your package manager" >&2
	exit 1
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	SUDO=(sudo)
fi
echo "system-deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
