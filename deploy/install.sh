#!/usr/bin/env bash
# Install (or update) the spbu-edge agent on Raspberry Pi OS Bookworm or Debian 12.
#
#   sudo deploy/install.sh                  # from the internet (PyPI, Debian)
#   sudo deploy/install.sh --bundle DIR     # offline: wheels from `make bundle`
#   deploy/install.sh --root /tmp/r --no-apt --no-venv   # lay out a tree without touching the system
#   deploy/install.sh --root /tmp/r --user nobody        # a tree owned as on a Pi (as root; tests)
#
# Idempotent: running it again updates the package and files and keeps config, keys, data
# and the broker configuration made by `spbu keys broker-config`.
set -euo pipefail

ROOT=""
BUNDLE=""
SERVICE_USER=""
APT=1
VENV=1
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --bundle) BUNDLE="${2:?--bundle needs a directory}"; shift 2 ;;
        --no-apt) APT=0; shift ;;
        --no-venv) VENV=0; shift ;;
        --user) SERVICE_USER="${2:?--user needs a user name}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
on_system() { [ -z "$ROOT" ]; }

if on_system && [ "$(id -u)" != "0" ]; then
    echo "install.sh: run as root (sudo), or give --root DIR to lay out a tree" >&2
    exit 1
fi
if on_system; then
    SERVICE_USER="${SERVICE_USER:-spbu}"
fi
if [ -n "$SERVICE_USER" ] && [ -n "$ROOT" ] && [ "$(id -u)" != "0" ]; then
    echo "install.sh: --user needs root (it sets owners)" >&2
    exit 1
fi

# 1. Service user with only the groups it needs (on the system; a tree takes an existing --user).
if on_system; then
    for group in dialout gpio video input; do
        getent group "$group" >/dev/null || groupadd --system "$group"
    done
    if ! id spbu >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/spbu --no-create-home --shell /usr/sbin/nologin spbu
        say "created user spbu"
    fi
    usermod --groups dialout,gpio,video,input spbu
fi

# 2. Debian packages: the station broker.
if on_system && [ "$APT" = 1 ]; then
    if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto python3-venv
    fi
fi

# 3. Layout. The service reads /etc/spbu as its group (root:spbu 0750, the config 0640)
# and owns only its data directory.
install -d -m 0755 "$ROOT/opt/spbu"
install -d -m 0750 "$ROOT/etc/spbu" "$ROOT/etc/spbu/keys" "$ROOT/etc/spbu/certs"
install -d -m 0750 "$ROOT/var/lib/spbu"
# The example config only if there is none: an update never overwrites a station's config.
if [ ! -e "$ROOT/etc/spbu/agent.toml" ]; then
    install -m 0640 "$SRC/deploy/agent.example.toml" "$ROOT/etc/spbu/agent.toml"
    say "wrote /etc/spbu/agent.toml from the example: run 'spbu provision' next"
fi
if [ -n "$SERVICE_USER" ]; then
    GROUP="$(id -gn "$SERVICE_USER")"
    chown "root:$GROUP" "$ROOT/etc/spbu" "$ROOT/etc/spbu/keys" "$ROOT/etc/spbu/certs"
    # Also on an update: a config written by hand or by an older install must stay readable.
    chown "root:$GROUP" "$ROOT/etc/spbu/agent.toml"
    chmod 0640 "$ROOT/etc/spbu/agent.toml"
    [ -e "$ROOT/etc/spbu/root.json" ] && chown "root:$GROUP" "$ROOT/etc/spbu/root.json"
    chown "$SERVICE_USER:$GROUP" "$ROOT/var/lib/spbu"
fi

# 4. The package in its own venv, with the Pi extras: the first release of the side-by-side
#    layout fleet updates use (/opt/spbu/releases/<version>, `current`; docs/updates.md), and
#    /opt/spbu/venv pointing through `current` so the unit always runs the release in force.
install -d -m 0755 "$ROOT/opt/spbu/releases"
install -m 0644 "$SRC/agent/updates/switch.py" "$ROOT/opt/spbu/release_switch.py"
on_system && chown "$SERVICE_USER:$GROUP" "$ROOT/opt/spbu/releases"
if [ "$VENV" = 1 ]; then
    VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$SRC/pyproject.toml" | head -n 1)"
    RELEASE="$ROOT/opt/spbu/releases/$VERSION"
    [ -x "$RELEASE/venv/bin/python" ] || python3 -m venv "$RELEASE/venv"
    if [ -n "$BUNDLE" ]; then
        "$RELEASE/venv/bin/pip" install --quiet --no-index --find-links "$BUNDLE" "spbu-edge[pi]"
    else
        "$RELEASE/venv/bin/pip" install --quiet --upgrade "${SRC}[pi]"
    fi
    ln -sfn "$VERSION" "$ROOT/opt/spbu/releases/current"
    # An install from before fleet updates had one venv here: the release replaces it.
    if [ -d "$ROOT/opt/spbu/venv" ] && [ ! -L "$ROOT/opt/spbu/venv" ]; then
        rm -rf "$ROOT/opt/spbu/venv"
    fi
    ln -sfn releases/current/venv "$ROOT/opt/spbu/venv"
else
    # Lay the entry point where the unit expects it (used by --root test trees).
    install -d -m 0755 "$ROOT/opt/spbu/venv/bin"
    [ -e "$ROOT/opt/spbu/venv/bin/spbu" ] || install -m 0755 /dev/null "$ROOT/opt/spbu/venv/bin/spbu"
fi

# 5. systemd units, journald limits, hardware watchdog, udev rules, broker config.
install -D -m 0644 "$SRC/deploy/systemd/spbu-agent.service" "$ROOT/etc/systemd/system/spbu-agent.service"
install -D -m 0644 "$SRC/deploy/systemd/journald-spbu.conf" "$ROOT/etc/systemd/journald.conf.d/spbu.conf"
install -D -m 0644 "$SRC/deploy/systemd/spbu-watchdog.conf" "$ROOT/etc/systemd/system.conf.d/spbu-watchdog.conf"
install -D -m 0644 "$SRC/deploy/udev/99-spbu.rules" "$ROOT/etc/udev/rules.d/99-spbu.rules"
# Authenticated time (NTS) for chrony, when chrony is the time daemon (docs/operations.md).
if [ -d "$ROOT/etc/chrony" ]; then
    install -D -m 0644 "$SRC/deploy/chrony/spbu-nts.conf" "$ROOT/etc/chrony/conf.d/spbu-nts.conf"
fi
# The loopback-only broker config goes in only if there is none, or if it is still ours
# unchanged in kind (an older copy of this file). A station's own config - the link to
# `spbu keys broker-config`'s output, with the bridge and the dashboard - is kept.
BROKER_CONF="$ROOT/etc/mosquitto/conf.d/spbu.conf"
if [ ! -e "$BROKER_CONF" ] && [ ! -L "$BROKER_CONF" ]; then
    install -D -m 0644 "$SRC/deploy/mosquitto/spbu.conf" "$BROKER_CONF"
elif [ ! -L "$BROKER_CONF" ] && grep -q "the station broker before provisioning" "$BROKER_CONF"; then
    install -D -m 0644 "$SRC/deploy/mosquitto/spbu.conf" "$BROKER_CONF"
else
    say "kept the station's broker config $BROKER_CONF"
fi

# The manager's dashboard: static files `spbu attendant serve` serves at /dashboard/ (HTTPS/1.1).
DASH_SRC="$SRC/dashboard/www"
[ -n "$BUNDLE" ] && DASH_SRC="$BUNDLE/dashboard"
if [ -f "$DASH_SRC/vendor/spbu-vendor.js" ]; then
    install -d -m 0755 "$ROOT/opt/spbu/dashboard" "$ROOT/opt/spbu/dashboard/vendor"
    for file in index.html app.js i18n.js style.css vendor/spbu-vendor.js vendor/uplot.css; do
        install -m 0644 "$DASH_SRC/$file" "$ROOT/opt/spbu/dashboard/$file"
    done
else
    say "dashboard not built (run 'make dashboard' or 'make bundle' first): skipped"
fi

# The attendant's page (static files; `spbu attendant serve` serves them over HTTPS) and its unit.
ATT_SRC="$SRC/attendant/www"
[ -n "$BUNDLE" ] && ATT_SRC="$BUNDLE/attendant"
install -D -m 0644 "$SRC/deploy/systemd/spbu-attendant-page.service" "$ROOT/etc/systemd/system/spbu-attendant-page.service"
if [ -f "$ATT_SRC/vendor/attendant-vendor.js" ]; then
    install -d -m 0755 "$ROOT/opt/spbu/attendant" "$ROOT/opt/spbu/attendant/vendor"
    for file in index.html app.js i18n.js style.css vendor/attendant-vendor.js vendor/zxing_reader.wasm; do
        install -m 0644 "$ATT_SRC/$file" "$ROOT/opt/spbu/attendant/$file"
    done
else
    say "attendant page not built (run 'make dashboard' or 'make bundle' first): skipped"
fi

# 6. SD-card care and the Pi's hardware watchdog (on the system only; see docs/deploy.md).
if on_system; then
    # No swap on the SD card: swapping wears it out and stalls the agent anyway.
    if command -v dphys-swapfile >/dev/null 2>&1; then
        dphys-swapfile swapoff || true
        systemctl disable --now dphys-swapfile.service >/dev/null 2>&1 || true
        say "swap on the SD card disabled"
    fi
    # Journal and allow-list on a data partition or USB disk labelled SPBU-DATA, if present.
    if [ -e /dev/disk/by-label/SPBU-DATA ] && ! grep -q "LABEL=SPBU-DATA" /etc/fstab; then
        echo "LABEL=SPBU-DATA /var/lib/spbu ext4 defaults,noatime,commit=5,nofail 0 2" >> /etc/fstab
        mount /var/lib/spbu && chown spbu:spbu /var/lib/spbu
        say "data on the SPBU-DATA partition"
    fi
    # bcm2835_wdt: systemd pets it (spbu-watchdog.conf); the firmware must enable it.
    for boot_config in /boot/firmware/config.txt /boot/config.txt; do
        if [ -f "$boot_config" ] && ! grep -q "^dtparam=watchdog=on" "$boot_config"; then
            echo "dtparam=watchdog=on" >> "$boot_config"
            say "hardware watchdog enabled in $boot_config (takes effect after a reboot)"
            break
        fi
    done
fi

if on_system && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    udevadm control --reload || true
    systemctl enable spbu-agent.service >/dev/null
    # The station's pages (attendant app, manager dashboard); starts once the server certificate exists.
    systemctl enable spbu-attendant-page.service >/dev/null
    say "enabled spbu-agent.service; start it after provisioning: systemctl start spbu-agent"
fi
say "done (root: ${ROOT:-/})"
