#!/usr/bin/env bash
# Installs, updates or removes the Phoenix host agent, the otelcol.service unit it supervises and the
# polkit rule that lets it manage that unit. Running it again only changes what differs.
#
#   curl -fsSL https://PHOENIX/install-agent.sh | sudo bash -s -- --api-url URL --token TOKEN
#
# The unit files and the polkit rule are embedded below (the script works when piped from curl);
# tests/deploy checks that they are identical to deploy/systemd/*.
set -euo pipefail

PROG=install-agent.sh
VENV=/opt/phoenix-agent/venv
CONFIG_DIR=/etc/phoenix-agent
CONFIG_FILE=$CONFIG_DIR/config.yaml
STATE_DIR=/var/lib/phoenix-agent
OTELCOL_DIR=/etc/otelcol
OTELCOL_STATE_DIR=/var/lib/otelcol
OTELCOL_BIN=/usr/local/bin/otelcol
UNIT_DIR=/etc/systemd/system
POLKIT_RULE=/etc/polkit-1/rules.d/50-phoenix-agent-otelcol.rules
EMBEDDED_FILES=(phoenix-agent.service otelcol.service 50-phoenix-agent-otelcol.rules)
# --keep-token and --enrol-wait (install-agent.sh --help).
KEEP_TOKEN=0
ENROL_WAIT=20

usage() {
    cat <<'EOF'
Usage: install-agent.sh --api-url URL [options]
       install-agent.sh --uninstall [--purge] [--root DIR]

Installs the Phoenix agent into a virtualenv under /opt/phoenix-agent, writes
/etc/phoenix-agent/config.yaml (never overwriting an existing one), installs
otelcol.service, phoenix-agent.service and the polkit rule that lets the agent
manage otelcol.service, then enables and starts both units.

Options:
  --api-url URL          control plane URL, e.g. https://phoenix.example.com:8080
                         (required when there is no config.yaml yet)
  --token TOKEN          agent token sent as "Authorization: Bearer"; stored in
                         config.yaml (mode 0640), never printed
  --host-id ID           host id (default: this machine's hostname)
  --namespace NAME       namespace the host belongs to (default: default)
  --package SPEC         what pip installs: a wheel, a source directory (the [agent]
                         extra is added) or a requirement (default: phoenix-metrics[agent])
  --index-url URL        package index for pip
  --python PATH          the python3 (3.11 or newer) to build the venv with
                         (default: python3 on PATH); the phoenix-agent user must be
                         able to run it, so not one under /root
  --otelcol-binary PATH  copy this collector binary to /usr/local/bin/otelcol
  --root DIR             install into the directory tree DIR instead of / (for tests):
                         no users are created, nothing is chowned and systemctl is
                         not called; the venv's scripts point into DIR
  --no-start             install everything but do not enable or start the units
  --keep-token           keep --token in config.yaml after the agent enrolled (by
                         default an enrolment token is removed once the agent holds a
                         token of its own: it is shared by the fleet)
  --enrol-wait SECONDS   after starting, wait this long for the agent to enrol before
                         removing the enrolment token (default 20; 0: do not wait)
  --uninstall            stop and disable the units, remove them, the polkit rule and
                         the venv; keeps config.yaml and the state directory
  --purge                with --uninstall: also remove /etc/phoenix-agent,
                         /var/lib/phoenix-agent, /etc/otelcol and /var/lib/otelcol
  --print-file NAME      print the embedded copy of NAME (phoenix-agent.service,
                         otelcol.service, 50-phoenix-agent-otelcol.rules) and exit
  -h, --help             show this help
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

usage_error() {
    printf '%s: error: %s (see --help)\n' "$PROG" "$*" >&2
    exit 2
}

say() {
    printf '==> %s\n' "$*"
}

warn() {
    printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

# A step that needs the real system (users, ownership, systemctl) and is left out under --root.
skipped() {
    printf '    skipped (--root): %s\n' "$*"
}

embedded_phoenix_agent_service() {
    cat <<'UNIT'
# Phoenix host agent: long-polls the control plane and supervises otelcol.service.
# Installed by install-agent.sh to /etc/systemd/system/phoenix-agent.service.
#
# The agent controls the collector with `systemctl start|restart|reload|is-active otelcol.service`.
# As a non-root user systemctl asks systemd over D-Bus, and polkit decides; the rule
# 50-phoenix-agent-otelcol.rules allows user phoenix-agent to manage exactly otelcol.service.
# NoNewPrivileges= does not get in the way: it only stops gaining privileges through execve
# (setuid binaries, file capabilities); a D-Bus call to systemd is not that.
#
# The agent runs with group otel so that what it writes for the collector (/etc/otelcol/collector.yaml,
# keep lists under /var/lib/phoenix-agent) is readable by the collector, while
# /etc/phoenix-agent/config.yaml (root:phoenix-agent 0640, holds the token) is not.

[Unit]
Description=Phoenix host agent
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=phoenix-agent
Group=otel
SupplementaryGroups=phoenix-agent
ExecStart=/opt/phoenix-agent/venv/bin/phoenix-agent --config /etc/phoenix-agent/config.yaml
Restart=on-failure
RestartSec=5s
StateDirectory=phoenix-agent
StateDirectoryMode=0750
UMask=0027

# Hardening. No ProtectProc=invisible: the agent reads the collector's /proc/<pid> entries.
# No MemoryDenyWriteExecute=: libffi closures (ctypes) need writable+executable pages.
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ReadWritePaths=/var/lib/phoenix-agent /etc/otelcol
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
RemoveIPC=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
# AF_UNIX for D-Bus (systemctl) and journald, AF_NETLINK for glibc's getaddrinfo.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service

[Install]
WantedBy=multi-user.target
UNIT
}

embedded_otelcol_service() {
    cat <<'UNIT'
# OpenTelemetry Collector (the Phoenix build), supervised by the Phoenix agent.
# Installed by install-agent.sh to /etc/systemd/system/otelcol.service.
#
# The agent writes /etc/otelcol/collector.yaml and then starts, reloads or restarts this unit.
# Until the agent has written a config the unit is skipped (condition), not failed.

[Unit]
Description=OpenTelemetry Collector (Phoenix)
Documentation=https://opentelemetry.io/docs/collector/
Wants=network-online.target
After=network-online.target
ConditionPathExists=/etc/otelcol/collector.yaml

[Service]
Type=simple
User=otel
Group=otel
ExecStart=/usr/local/bin/otelcol --config /etc/otelcol/collector.yaml
# The collector re-reads its configuration on SIGHUP.
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5s
StateDirectory=otelcol
StateDirectoryMode=0750
UMask=0027
LimitNOFILE=65536

# The hostmetrics process scraper reads /proc/<pid>/{exe,io,fd,...} of processes owned by other
# users: CAP_SYS_PTRACE passes the ptrace access checks on those entries and CAP_DAC_READ_SEARCH
# their file modes. For the same reason there is no ProtectProc=invisible or ProcSubset=pid, and
# DevicePolicy=closed rather than PrivateDevices= (the filesystem and disk scrapers see every device).
AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateMounts=yes
DevicePolicy=closed
RemoveIPC=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service

[Install]
WantedBy=multi-user.target
UNIT
}

embedded_polkit_rule() {
    cat <<'RULE'
// Lets the Phoenix agent (user phoenix-agent) start, stop, restart, reload and reset-failed
// otelcol.service, and nothing else. When a non-root user runs `systemctl <verb> <unit>`, systemd
// asks polkit for action org.freedesktop.systemd1.manage-units with the details "unit" and "verb".
// Installed by install-agent.sh to /etc/polkit-1/rules.d/50-phoenix-agent-otelcol.rules.
polkit.addRule(function (action, subject) {
    if (action.id !== "org.freedesktop.systemd1.manage-units" ||
        action.lookup("unit") !== "otelcol.service" ||
        subject.user !== "phoenix-agent") {
        return polkit.Result.NOT_HANDLED;
    }
    // Job verbs only: not kill, set-property, clean or freeze.
    var verbs = ["start", "stop", "restart", "reload", "try-restart", "reload-or-restart",
                 "reload-or-try-restart", "reset-failed"];
    if (verbs.indexOf(action.lookup("verb")) >= 0) {
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
RULE
}

print_embedded() {
    case $1 in
        phoenix-agent.service) embedded_phoenix_agent_service ;;
        otelcol.service) embedded_otelcol_service ;;
        50-phoenix-agent-otelcol.rules) embedded_polkit_rule ;;
        *) usage_error "--print-file: no embedded file named '$1' (one of: ${EMBEDDED_FILES[*]})" ;;
    esac
}

# A YAML double-quoted scalar; callers have rejected control characters already.
yaml_str() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

has_control_chars() {
    [[ $1 =~ [[:cntrl:]] ]]
}

main() {
    local api_url="" token="" host_id="" namespace="" package="phoenix-metrics[agent]" index_url=""
    local otelcol_binary="" root="" no_start=0 uninstall=0 purge=0 print_file="" python=python3
    local given_settings=()

    while [[ $# -gt 0 ]]; do
        local arg=$1
        # --flag=value is the same as --flag value.
        if [[ $arg == --*=* ]]; then
            set -- "${arg%%=*}" "${arg#*=}" "${@:2}"
            arg=$1
        fi
        case $arg in
            --api-url | --token | --host-id | --namespace | --package | --index-url | --otelcol-binary | --root | \
                --print-file | --python | --enrol-wait)
                [[ $# -ge 2 && -n $2 ]] || usage_error "$arg needs a value"
                case $arg in
                    --api-url) api_url=$2 given_settings+=(--api-url) ;;
                    --token) token=$2 given_settings+=(--token) ;;
                    --host-id) host_id=$2 given_settings+=(--host-id) ;;
                    --namespace) namespace=$2 given_settings+=(--namespace) ;;
                    --package) package=$2 ;;
                    --index-url) index_url=$2 ;;
                    --otelcol-binary) otelcol_binary=$2 ;;
                    --root) root=$2 ;;
                    --print-file) print_file=$2 ;;
                    --python) python=$2 ;;
                    --enrol-wait) ENROL_WAIT=$2 ;;
                esac
                shift 2
                ;;
            --no-start) no_start=1 && shift ;;
            --keep-token) KEEP_TOKEN=1 && shift ;;
            --uninstall) uninstall=1 && shift ;;
            --purge) purge=1 && shift ;;
            -h | --help) usage && exit 0 ;;
            -*) usage_error "unknown argument '$arg'" ;;
            # Not echoed: a value without its flag may well be the token.
            *) usage_error "unexpected value without a flag before it" ;;
        esac
    done

    if [[ -n $print_file ]]; then
        print_embedded "$print_file"
        exit 0
    fi

    if [[ ! $ENROL_WAIT =~ ^[0-9]{1,4}$ ]]; then
        usage_error "--enrol-wait must be a number of seconds (0 to 9999)"
    fi
    if ((purge && !uninstall)); then
        usage_error "--purge only goes with --uninstall"
    fi
    if [[ -n $api_url && ! $api_url =~ ^https?://[^/[:space:]]+ ]]; then
        usage_error "--api-url must be an http:// or https:// URL"
    fi
    if [[ -n $token ]] && has_control_chars "$token"; then
        usage_error "--token must not contain control characters"
    fi
    if [[ -n $host_id && $host_id =~ [[:space:][:cntrl:]] ]]; then
        usage_error "--host-id must not contain spaces"
    fi
    if [[ -n $namespace && $namespace =~ [[:space:][:cntrl:]] ]]; then
        usage_error "--namespace must not contain spaces"
    fi
    if has_control_chars "$api_url$package$index_url$otelcol_binary$root$python"; then
        usage_error "arguments must not contain control characters"
    fi

    if [[ -n $root ]]; then
        [[ $root == /* ]] || root=$PWD/$root
        # Strip trailing slashes so that "$root/etc" never holds "//"; --root / means the real system.
        while [[ $root == */ ]]; do root=${root%/}; done
    fi
    if [[ -z $root && $EUID -ne 0 ]]; then
        die "must run as root (use sudo), or pass --root DIR to install into a directory tree"
    fi

    if ((uninstall)); then
        do_uninstall "$root" "$purge"
    else
        do_install "$root" "$api_url" "$token" "$host_id" "$namespace" "$package" "$index_url" \
            "$otelcol_binary" "$no_start" "$python" "${given_settings[@]}"
    fi
}

systemd_running() {
    command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]
}

check_python() {
    local python=$1 version
    if ! command -v "$python" >/dev/null 2>&1; then
        if [[ $python == python3 ]]; then
            die "python3 was not found on PATH (Debian/Ubuntu: apt-get install python3 python3-venv)"
        fi
        die "--python $python was not found or is not executable"
    fi
    version=$("$python" -c 'import platform; print(platform.python_version())') ||
        die "$python does not run"
    "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
        die "python 3.11 or newer is required, $python is $version"
    "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
        die "$python cannot create virtual environments (Debian/Ubuntu: apt-get install python3-venv)"
}

# The service runs the venv's interpreter as phoenix-agent; one under a private directory (a pyenv
# python under /root) would install fine and then fail at every start.
venv_usable_by_agent() {
    if ! command -v runuser >/dev/null 2>&1; then
        return 0
    fi
    runuser -u phoenix-agent -- "$1" -c '' >/dev/null 2>&1
}

ensure_user() {
    local name=$1 home=$2 shell=/usr/sbin/nologin
    if getent passwd "$name" >/dev/null; then
        return 0
    fi
    [[ -x $shell ]] || shell=/sbin/nologin
    [[ -x $shell ]] || shell=/bin/false
    if getent group "$name" >/dev/null; then
        useradd --system --gid "$name" --home-dir "$home" --no-create-home --shell "$shell" "$name"
    else
        useradd --system --user-group --home-dir "$home" --no-create-home --shell "$shell" "$name"
    fi
    say "created system user $name"
}

# ensure_dir ROOT PATH MODE OWNER:GROUP
ensure_dir() {
    local root=$1 path=$2 mode=$3 owner=$4
    if [[ ! -d $root$path ]]; then
        mkdir -p "$root$path"
        say "created $path"
    fi
    chmod "$mode" "$root$path"
    if [[ -z $root ]]; then
        chown "$owner" "$path"
    else
        skipped "chown $owner $path"
    fi
}

# repair_tree ROOT PATH OWNER:GROUP: everything below PATH back to OWNER:GROUP, none of it open to
# others, its directories searchable by the group (the collector reads keep lists and secret side files
# there). A manual root run of the agent leaves root's files behind that the agent could not rewrite.
repair_tree() {
    local root=$1 path=$2 owner=$3
    [[ -d $root$path ]] || return 0
    if [[ -z $root ]]; then
        chown -R --no-dereference "$owner" "$path"
        find "$path" -mindepth 1 -type d -exec chmod u+rwx,g+rx,o-rwx {} +
        find "$path" -mindepth 1 -type f -exec chmod u+rw,o-rwx {} +
    else
        skipped "chown -R $owner $path"
    fi
}

# install_file ROOT DEST MODE SRC: copies SRC to ROOT/DEST unless it already holds the same bytes;
# sets FILE_CHANGED to 1 when it wrote the file, 0 when it was already up to date.
install_file() {
    local root=$1 dest=$2 mode=$3 src=$4
    FILE_CHANGED=0
    if [[ -f $root$dest ]] && cmp -s "$src" "$root$dest"; then
        chmod "$mode" "$root$dest"
        return 0
    fi
    mkdir -p "$(dirname "$root$dest")"
    # Copy next to the target and rename, so a running binary or a reader never sees half a file.
    install -m "$mode" "$src" "$root$dest.phoenix-new"
    mv -f "$root$dest.phoenix-new" "$root$dest"
    FILE_CHANGED=1
    say "installed $dest"
}

# install_embedded ROOT NAME DEST MODE
install_embedded() {
    print_embedded "$2" >"$WORK/$2"
    install_file "$1" "$3" "$4" "$WORK/$2"
}

# A fingerprint of everything pip installed in the venv: the dist-info RECORDs list each file's hash.
venv_fingerprint() {
    local python=$1 purelib
    purelib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    { cat "$purelib"/*.dist-info/RECORD 2>/dev/null || true; } | sort | cksum
}

# The enrolment token is shared by the whole fleet: once the agent holds a token of its own (it writes
# one to its state directory when the control plane answers its first call), config.yaml need not keep
# it. Returns 1 while the agent has not enrolled yet.
forget_enrolment_token() {
    local root=$1 tmp
    local config=$root$CONFIG_FILE stored=$root$STATE_DIR/agent_token
    ((KEEP_TOKEN)) && return 0
    [[ -f $config ]] && grep -q '^token:' "$config" || return 0
    # Only a token the agent got after this config was written: an older one may predate a rotation
    # an operator wrote into the config, and the agent then falls back to the configured token.
    [[ -s $stored && $stored -nt $config ]] || return 1
    tmp=$(mktemp "$root$CONFIG_DIR/.config.yaml.XXXXXX")
    CLEANUP+=("$tmp")
    grep -v '^token:' "$config" >"$tmp" || true
    chmod 0640 "$tmp"
    if [[ -z $root ]]; then
        chown root:phoenix-agent "$tmp"
    fi
    mv "$tmp" "$config"
    say "the agent holds a token of its own: removed the enrolment token from $CONFIG_FILE (--keep-token keeps it)"
}

# After the agent started: give it --enrol-wait seconds to enrol, then forget the enrolment token.
await_enrolment() {
    local root=$1 deadline=$((SECONDS + ENROL_WAIT))
    ((KEEP_TOKEN || ENROL_WAIT == 0)) && return 0
    until forget_enrolment_token "$root"; do
        if ((SECONDS >= deadline)); then
            say "the agent did not enrol within ${ENROL_WAIT}s: kept the token in $CONFIG_FILE (a host token an operator issued is never replaced; run this again after enrolment to remove an enrolment token)"
            return 0
        fi
        sleep 1
    done
}

write_config() {
    local root=$1 api_url=$2 token=$3 host_id=$4 namespace=$5 tmp
    # Written next to its final place (0600 until chmod) and renamed, so it is never half there.
    tmp=$(mktemp "$root$CONFIG_DIR/.config.yaml.XXXXXX")
    CLEANUP+=("$tmp")
    {
        printf '# Phoenix agent settings, written by install-agent.sh, which never overwrites this file.\n'
        printf '# PHOENIX_AGENT_<FIELD> (PHOENIX_AGENT_COLLECTOR__<FIELD>) environment variables override it.\n'
        printf 'api_url: %s\n' "$(yaml_str "$api_url")"
        printf 'host_id: %s\n' "$(yaml_str "$host_id")"
        printf 'namespace: %s\n' "$(yaml_str "$namespace")"
        printf 'poll_interval: 30s\n'
        printf 'log_level: info\n'
        if [[ -n $token ]]; then
            printf 'token: %s\n' "$(yaml_str "$token")"
        fi
        printf 'state_dir: %s\n' "$STATE_DIR"
        printf 'collector:\n'
        printf '  supervisor: systemd\n'
        printf '  unit: otelcol.service\n'
        printf '  binary: %s\n' "$OTELCOL_BIN"
        printf '  config_path: %s/collector.yaml\n' "$OTELCOL_DIR"
    } >"$tmp"
    chmod 0640 "$tmp"
    if [[ -z $root ]]; then
        chown root:phoenix-agent "$tmp"
    else
        skipped "chown root:phoenix-agent $CONFIG_FILE"
    fi
    mv "$tmp" "$root$CONFIG_FILE"
    say "wrote $CONFIG_FILE"
}

do_install() {
    local root=$1 api_url=$2 token=$3 host_id=$4 namespace=$5 package=$6 index_url=$7
    local otelcol_binary=$8 no_start=$9 python=${10}
    shift 10
    local given_settings=("$@")

    check_python "$python"
    if [[ ! -e $root$CONFIG_FILE && -z $api_url ]]; then
        die "--api-url is required on a fresh install (there is no $CONFIG_FILE yet)"
    fi
    if [[ -n $otelcol_binary ]]; then
        [[ -f $otelcol_binary && -x $otelcol_binary ]] || die "--otelcol-binary $otelcol_binary is not an executable file"
        "$otelcol_binary" --version >/dev/null 2>&1 ||
            die "--otelcol-binary $otelcol_binary does not run ('$otelcol_binary --version' failed)"
    fi
    if [[ -n $root ]]; then
        mkdir -p "$root"
        say "installing into $root (--root)"
    fi

    say "users"
    if [[ -z $root ]]; then
        ensure_user otel "$OTELCOL_STATE_DIR"
        ensure_user phoenix-agent "$STATE_DIR"
    else
        skipped "create system users otel and phoenix-agent"
    fi

    say "directories"
    ensure_dir "$root" "$CONFIG_DIR" 0750 root:phoenix-agent
    # The agent runs with group otel and writes the collector's config here.
    ensure_dir "$root" "$OTELCOL_DIR" 0750 phoenix-agent:otel
    ensure_dir "$root" "$STATE_DIR" 0750 phoenix-agent:otel
    repair_tree "$root" "$OTELCOL_DIR" phoenix-agent:otel
    repair_tree "$root" "$STATE_DIR" phoenix-agent:otel
    ensure_dir "$root" /opt/phoenix-agent 0755 root:root

    say "configuration $CONFIG_FILE"
    if [[ -e $root$CONFIG_FILE ]]; then
        if [[ ${#given_settings[@]} -gt 0 ]]; then
            say "kept the existing $CONFIG_FILE; ${given_settings[*]} not applied (edit the file to change them)"
        else
            say "kept the existing $CONFIG_FILE"
        fi
    else
        write_config "$root" "$api_url" "$token" "${host_id:-$(uname -n)}" "${namespace:-default}"
    fi
    forget_enrolment_token "$root" || true

    say "virtualenv $VENV"
    local venv_python=$root$VENV/bin/python
    if [[ ! -x $venv_python ]] || ! "$venv_python" -c '' >/dev/null 2>&1; then
        # --clear rebuilds a venv whose interpreter went away (e.g. after a distribution upgrade).
        "$python" -m venv --clear "$root$VENV"
        say "created $VENV"
    fi
    if [[ -z $root ]] && ! venv_usable_by_agent "$venv_python"; then
        # Built by an earlier run with a python that user cannot reach; this run's python may do.
        "$python" -m venv --clear "$root$VENV"
        say "recreated $VENV with $python"
        venv_usable_by_agent "$venv_python" ||
            die "user phoenix-agent cannot run $(readlink -f "$venv_python"): pass --python with a system-wide python3 (e.g. --python /usr/bin/python3)"
    fi
    local spec=$package
    # A local wheel or source tree gets the agent extra (psutil) unless the spec names extras itself.
    if [[ -e $spec && $spec != *\]* ]]; then
        spec=$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")
        spec="${spec}[agent]"
    fi
    local before after
    before=$(venv_fingerprint "$venv_python")
    local pip_args=(install --disable-pip-version-check --no-input --quiet --upgrade)
    if [[ -n $index_url ]]; then
        pip_args+=(--index-url "$index_url")
    fi
    "$venv_python" -m pip "${pip_args[@]}" "$spec" || die "pip could not install $package into $VENV"
    after=$(venv_fingerprint "$venv_python")
    [[ -x $root$VENV/bin/phoenix-agent ]] || die "$package does not provide the phoenix-agent command"
    local agent_changed=0
    if [[ $before != "$after" ]]; then
        agent_changed=1
        say "installed $package into $VENV"
    else
        say "$package in $VENV is up to date"
    fi

    say "collector binary $OTELCOL_BIN"
    local otelcol_changed=0
    if [[ -n $otelcol_binary ]]; then
        install_file "$root" "$OTELCOL_BIN" 0755 "$otelcol_binary"
        otelcol_changed=$FILE_CHANGED
    elif [[ ! -x $root$OTELCOL_BIN ]]; then
        warn "there is no collector at $OTELCOL_BIN: pass --otelcol-binary PATH (otelcol.service cannot start without it)"
    fi

    say "units and polkit rule"
    local units_changed=0
    install_embedded "$root" otelcol.service "$UNIT_DIR/otelcol.service" 0644
    if ((FILE_CHANGED)); then
        units_changed=1 otelcol_changed=1
    fi
    install_embedded "$root" phoenix-agent.service "$UNIT_DIR/phoenix-agent.service" 0644
    if ((FILE_CHANGED)); then
        units_changed=1 agent_changed=1
    fi
    install_embedded "$root" 50-phoenix-agent-otelcol.rules "$POLKIT_RULE" 0644

    if [[ -n $root ]]; then
        skipped "systemctl daemon-reload; systemctl enable --now otelcol.service phoenix-agent.service"
    elif ! systemd_running; then
        warn "systemd is not running here: installed the units but did not start them"
    else
        if [[ ! -d /usr/share/polkit-1 ]]; then
            warn "polkit is not installed, so the agent cannot start or restart otelcol.service (Debian/Ubuntu: apt-get install polkitd)"
        fi
        if ((units_changed)); then
            systemctl daemon-reload
        fi
        if ((no_start)); then
            say "not starting (--no-start); start with: systemctl enable --now otelcol.service phoenix-agent.service"
        else
            systemctl enable --now otelcol.service phoenix-agent.service
            # enable --now leaves a running unit alone; restart the ones whose files changed.
            if ((otelcol_changed)); then
                systemctl try-restart otelcol.service
            fi
            if ((agent_changed)); then
                systemctl try-restart phoenix-agent.service
            fi
            say "started otelcol.service and phoenix-agent.service (logs: journalctl -u phoenix-agent)"
            await_enrolment "$root"
        fi
    fi
    say "done"
}

do_uninstall() {
    local root=$1 purge=$2
    if [[ -n $root ]]; then
        skipped "systemctl disable --now phoenix-agent.service otelcol.service"
    elif systemd_running; then
        systemctl disable --now phoenix-agent.service otelcol.service 2>/dev/null || true
        say "stopped and disabled phoenix-agent.service and otelcol.service"
    fi

    local path
    for path in "$UNIT_DIR/phoenix-agent.service" "$UNIT_DIR/otelcol.service" "$POLKIT_RULE"; do
        if [[ -e $root$path ]]; then
            rm -f "$root$path"
            say "removed $path"
        fi
    done
    if [[ -d $root/opt/phoenix-agent ]]; then
        rm -rf "$root/opt/phoenix-agent"
        say "removed /opt/phoenix-agent (the venv)"
    fi
    if [[ -z $root ]] && systemd_running; then
        systemctl daemon-reload
    fi

    if ((purge)); then
        for path in "$CONFIG_DIR" "$STATE_DIR" "$OTELCOL_DIR" "$OTELCOL_STATE_DIR"; do
            if [[ -e $root$path ]]; then
                rm -rf "$root$path"
                say "removed $path"
            fi
        done
    else
        say "kept $CONFIG_FILE and $STATE_DIR (--uninstall --purge removes them)"
    fi
    say "kept $OTELCOL_BIN and the users phoenix-agent and otel"
    say "done"
}

# Everything runs from main, with stdin closed: when the script is piped into bash, nothing it
# starts can read the rest of the script, and a truncated download runs nothing.
WORK=$(mktemp -d)
CLEANUP=("$WORK")
FILE_CHANGED=0
trap 'rm -rf "${CLEANUP[@]}"' EXIT
main "$@" </dev/null
