#!/usr/bin/env bash
# Builds (once) the Debian 12 root file system the two-host system test boots, and prints its
# path. Cached under ${HB_ROOTFS_CACHE:-/var/tmp/hotbackup-rootfs}/KEY, where KEY is a hash of
# the suite and the package list below: change the list and a new rootfs is made; a rerun with
# the same list reuses it (debootstrap takes about a minute and 300 MB).
# Needs root and debootstrap. Built into a temporary directory and renamed when complete, so an
# interrupted build is never used.
set -euo pipefail

SUITE=bookworm
# systemd as PID 1; iproute2/iptables for the network faults; procps for ps/pgrep-free checks;
# redis-tools for redis-cli inside the hosts; iputils-arping for the service address (DAD,
# gratuitous ARP); man-db so systemd-analyze verify can check the units' Documentation=man:...
# passwd (useradd, in minbase) and systemd-sysusers create the service user.
PACKAGES="systemd,systemd-sysv,dbus,iproute2,iptables,procps,redis-tools,iputils-arping,man-db"

cache=${HB_ROOTFS_CACHE:-/var/tmp/hotbackup-rootfs}
key=$(printf '%s\n%s\n' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-16)
dir=$cache/$key
if [ -f "$dir/.complete" ]; then
    echo "$dir"
    exit 0
fi
mkdir -p "$cache"
tmp=$cache/.build-$key-$$
rm -rf "$tmp"
echo "rootfs: debootstrap $SUITE into $tmp (cached as $dir)" >&2
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" >"$cache/debootstrap-$key.log" 2>&1; then
    echo "rootfs: debootstrap failed; see $cache/debootstrap-$key.log" >&2
    tail -20 "$cache/debootstrap-$key.log" >&2
    rm -rf "$tmp"
    exit 1
fi
# No getty on the console, no networkd/resolved surprises; the test configures addresses itself.
rm -f "$tmp/etc/machine-id"
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
# Root file systems made for an older package list are never used again: drop them.
for old in "$cache"/*/; do
    old=${old%/}
    [ "$old" = "$dir" ] || [ ! -f "$old/.complete" ] || { rm -rf "$old" "$cache/debootstrap-$(basename "$old").log"; }
done
echo "$dir"
