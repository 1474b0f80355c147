#!/bin/bash
# Install and start what the container tests need (tests/harness):
#   debootstrap      builds the Debian 12/13 root file systems,
#   systemd-nspawn   boots them with systemd as PID 1 (package systemd-container),
#   apt-cacher-ng    the package proxy on the host side of each veth pair (the
#                    containers have no route out; .debs stay cached across runs),
#   tinyproxy        an https-capable proxy for anything that is not a .deb.
#
# Works whether or not systemd is PID 1: machines of this kind boot with another
# init, where the packaged units never start, so the daemons are started
# directly. Idempotent: safe to run before every CI run. Ports: 3142, 8888.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "ci-container-prereqs: must run as root (apt-get, systemd-nspawn, veth links)" >&2
    exit 1
fi

packages=(debootstrap systemd-container apt-cacher-ng tinyproxy iproute2 openssh-client util-linux curl tmux)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "apt-cacher-ng apt-cacher-ng/tunnelenable boolean false" | debconf-set-selections
    apt-get update -q
    # policy-rc.d exit 101 keeps maintainer scripts from starting services
    # through an init that may not be running; the daemons are started below.
    prc=/usr/sbin/policy-rc.d
    created_prc=0
    if [ ! -e "$prc" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$prc" && chmod 755 "$prc" && created_prc=1
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$created_prc" -eq 1 ]; then rm -f "$prc"; fi
fi

# apt-cacher-ng remaps deb.debian.org to the backend listed here; its packaged
# default (ftp.debian.org) does not resolve where only deb.debian.org is reachable.
echo 'http://deb.debian.org/debian/' > /etc/apt-cacher-ng/backends_debian

# tinyproxy: a private config so the system one stays untouched; it admits only
# loopback and the test containers' 10.231.0.0/16 veth addresses.
install -d /etc/nomadrig-tests
cat > /etc/nomadrig-tests/tinyproxy.conf <<'CONF'
User tinyproxy
Group tinyproxy
Port 8888
Timeout 600
LogFile "/var/log/tinyproxy/nomadrig-tests.log"
LogLevel Warning
PidFile "/run/tinyproxy/nomadrig-tests.pid"
MaxClients 100
Allow 127.0.0.1
Allow 10.231.0.0/16
DisableViaHeader Yes
CONF

listening() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_listening() {
    local i=0
    until listening "$1"; do
        i=$((i + 1))
        if [ "$i" -gt 30 ]; then
            echo "ci-container-prereqs: $2 did not start listening on port $1" >&2
            exit 1
        fi
        sleep 1
    done
}
systemd_is_init=0
[ "$(ps -p 1 -o comm=)" = "systemd" ] && systemd_is_init=1

if ! listening 3142; then
    if [ "$systemd_is_init" -eq 1 ]; then
        systemctl enable --now apt-cacher-ng
    else
        install -d -o apt-cacher-ng -g apt-cacher-ng /run/apt-cacher-ng /var/cache/apt-cacher-ng /var/log/apt-cacher-ng
        su -s /bin/sh apt-cacher-ng -c "/usr/sbin/apt-cacher-ng -c /etc/apt-cacher-ng pidfile=/run/apt-cacher-ng/pid SocketPath=/run/apt-cacher-ng/socket foreground=0"
    fi
    wait_listening 3142 apt-cacher-ng
fi

if ! listening 8888; then
    install -d -o tinyproxy -g tinyproxy /run/tinyproxy /var/log/tinyproxy
    if [ "$systemd_is_init" -eq 1 ]; then
        systemctl disable --now tinyproxy 2>/dev/null || true
    fi
    tinyproxy -c /etc/nomadrig-tests/tinyproxy.conf
    wait_listening 8888 tinyproxy
fi

# Forwarding is not needed (the containers only talk to the host side of their
# veth), but the veth links must not be blocked: nothing here touches nftables.
echo "ci-container-prereqs: debootstrap, systemd-nspawn, apt-cacher-ng :3142 and tinyproxy :8888 ready"
