#!/usr/bin/env bash
# Two-host system test: two real systemd hosts (systemd-nspawn, Debian 12) in their own network
# namespaces joined by a veth pair (10.77.0.1 = A, 10.77.0.2 = B; the service address
# 10.77.0.100), the freshly built .deb installed in both with dpkg, then what an admin does:
#
#   B: hotbackup setup db1 --role slave ...; systemctl enable --now hotbackup-slave@db1.socket
#   A: hotbackup setup db1 --role master ... --key-file (B's key); enable --now the master unit
#   write on A (through the service address), read on B; STATUS=, watchdog, journald fields;
#   systemd-analyze security / verify of both services; the slave's socket keeps the port across
#   a service restart; kill the slave -> link_down incident in journalctl -p warning on A;
#   cut the veth -> link_down and recovery; a frozen slave daemon is killed by the watchdog and
#   restarted; the failover scripts refuse while both nodes are healthy; crash A (kill its PID 1)
#   -> hotbackup-failover on B -> writes on B through the service address; boot A -> fenced
#   incident on A, the address stays on B -> hotbackup-rejoin on A -> hotbackup-switchover back
#   (on B, then on A) -> equal data on both.
#
# Needs root, systemd-nspawn (systemd-container), debootstrap, overlayfs and network namespaces;
# exits 77 ("skipped") with the reason when something is missing. Bounded: every step polls
# with a deadline and the whole run stops after HB_SYSTEM_TEST_TIMEOUT seconds (default 900).
# Ends only the processes it started (by PID), unmounts and deletes what it made, also on
# failure; then the hosts' journals are saved under HB_ARTIFACTS (default target/system-test),
# also after a pass when HB_SAVE_JOURNALS is set.
# The .deb: HB_DEB, else built with scripts/package.sh. The root file system is cached
# (tests/system/rootfs.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT_DIR=$(pwd)

skip() {
    echo "two-hosts: SKIPPED: $*" >&2
    exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root"
for cmd in systemd-nspawn debootstrap nsenter ip mount; do
    command -v "$cmd" >/dev/null || skip "needs $cmd (apt-get install systemd-container debootstrap iproute2)"
done
[ -n "${HB_DEB:-}" ] || command -v rpm >/dev/null || skip "needs rpm to check the .rpm (apt-get install rpm)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "needs overlayfs"

TOTAL=${HB_SYSTEM_TEST_TIMEOUT:-900}
START=$SECONDS
ARTIFACTS=${HB_ARTIFACTS:-$ROOT_DIR/target/system-test}
WORK=$(mktemp -d /var/tmp/hb-two-hosts.XXXXXX)
TAG=$$
NS_A=hb2hA$TAG
NS_B=hb2hB$TAG
VIP=10.77.0.100
declare -A NSPAWN PID1 NS IFACE ADDR
NS[A]=$NS_A NS[B]=$NS_B IFACE[A]=vA IFACE[B]=vB ADDR[A]=10.77.0.1 ADDR[B]=10.77.0.2
step_no=0
failed=1

log() { printf '[%4ds] %s\n' "$((SECONDS - START))" "$*"; }
step() {
    step_no=$((step_no + 1))
    log "== $step_no. $*"
    check_budget
}
fail() {
    log "FAILED: $*"
    exit 1
}
check_budget() {
    [ $((SECONDS - START)) -lt "$TOTAL" ] || fail "the run took longer than ${TOTAL}s"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.3 s until it succeeds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "not within ${limit}s: $what"
        fi
        check_budget
        sleep 0.3
    done
}

# on HOST COMMAND...: runs COMMAND inside HOST (all its namespaces), bounded to 120 s.
on() {
    local h=$1
    shift
    timeout --kill-after=5 120 nsenter -t "${PID1[$h]}" -a "$@"
}

save_journals() {
    mkdir -p "$ARTIFACTS"
    for h in A B; do
        local j=$WORK/$h/merged/var/log/journal
        if [ -d "$j" ]; then
            timeout 60 journalctl -D "$j" --no-pager -o short-precise >"$ARTIFACTS/journal-$h.txt" 2>&1 || true
        fi
        [ -f "$WORK/$h/console.log" ] && cp "$WORK/$h/console.log" "$ARTIFACTS/console-$h.log"
    done
    log "journals and consoles saved in $ARTIFACTS"
}

stop_host() { # stop_host H: TERM its nspawn (our child), KILL after 20 s.
    local h=$1 pid=${NSPAWN[$1]:-}
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    NSPAWN[$h]=
}

cleanup() {
    local rc=$?
    set +e
    if [ "$failed" = 1 ] || [ -n "${HB_SAVE_JOURNALS:-}" ]; then save_journals; fi
    for h in A B; do stop_host "$h"; done
    for h in A B; do
        mountpoint -q "$WORK/$h/merged" && umount "$WORK/$h/merged"
    done
    ip netns del "$NS_A" 2>/dev/null
    ip netns del "$NS_B" 2>/dev/null
    rm -rf "$WORK"
    if [ "$failed" = 0 ]; then
        log "two-hosts: PASSED in $((SECONDS - START))s"
        echo "system: 1 passed, 0 failed"
    else
        log "two-hosts: FAILED (exit $rc) after $((SECONDS - START))s"
        echo "system: 0 passed, 1 failed"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "root file system and package"
ROOTFS=$(tests/system/rootfs.sh)
if [ -n "${HB_DEB:-}" ]; then
    DEB=$HB_DEB
else
    scripts/package.sh >"$WORK/package.log" 2>&1 || { tail -30 "$WORK/package.log"; fail "scripts/package.sh"; }
    DEB=$(ls -t target/debian/hotbackup_*.deb | head -1)
    RPM=$(ls -t target/generate-rpm/hotbackup-*.rpm | head -1)
    step "the .rpm built beside it: files, config files, scriptlets, dependencies (rpm -qp)"
    files=$(rpm -qlp "$RPM")
    for f in /usr/bin/hotbackup /usr/lib/systemd/system/hotbackup-master@.service \
        /usr/lib/systemd/system/hotbackup-slave@.service /usr/lib/systemd/system/hotbackup-slave@.socket \
        /usr/sbin/hotbackup-failover /usr/sbin/hotbackup-rejoin /usr/sbin/hotbackup-switchover \
        /usr/lib/hotbackup/hotbackup-units /usr/lib/hotbackup/hotbackup-package \
        /usr/lib/sysusers.d/hotbackup.conf /etc/hotbackup/setup-template.toml \
        /usr/share/man/man1/hotbackup.1.gz /usr/share/man/man8/hotbackup-failover.8.gz \
        /usr/share/doc/hotbackup/README.md; do
        grep -qxF "$f" <<<"$files" || fail "the .rpm lacks $f"
    done
    [ "$(rpm -qp --configfiles "$RPM")" = /etc/hotbackup/setup-template.toml ] \
        || fail "the .rpm's config files: $(rpm -qp --configfiles "$RPM")"
    scripts=$(rpm -qp --scripts "$RPM")
    for want in "postinstall scriptlet" "hotbackup-package install" "preuninstall scriptlet" \
        "hotbackup-package stop" "postuninstall scriptlet"; do
        grep -qF "$want" <<<"$scripts" || fail "the .rpm's scriptlets lack '$want': $scripts"
    done
    rpm -qpR "$RPM" | grep -qw systemd || fail "the .rpm does not require systemd"
    # Unpacked into a scratch root (no scriptlets, no dependency check): the binary runs.
    mkdir -p "$WORK/rpmroot"
    rpm --root "$WORK/rpmroot" --dbpath /var/lib/rpm --initdb
    rpm --root "$WORK/rpmroot" --dbpath /var/lib/rpm -i --nodeps --noscripts "$RPM" 2>&1 \
        || fail "rpm -i into a scratch root"
    "$WORK/rpmroot/usr/bin/hotbackup" --version | grep -q hotbackup || fail "the .rpm's binary does not run"
    log "rpm $RPM checked ($(wc -l <<<"$files") files)"
fi
[ -f "$DEB" ] || fail "no .deb at $DEB"
log "rootfs $ROOTFS, package $DEB ($(stat -c %s "$DEB") bytes)"

step "network namespaces and veth"
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add vA netns "$NS_A" type veth peer name vB netns "$NS_B"
for h in A B; do
    ip -n "${NS[$h]}" addr add "${ADDR[$h]}/24" dev "${IFACE[$h]}"
    ip -n "${NS[$h]}" link set "${IFACE[$h]}" up
    ip -n "${NS[$h]}" link set lo up
done

prepare_host() { # prepare_host H: overlay over the rootfs, hostname, machine-id, hosts, the .deb.
    local h=$1 d=$WORK/$1
    mkdir -p "$d/upper" "$d/work" "$d/merged"
    mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$d/upper,workdir=$d/work" "$d/merged"
    echo "host$h" >"$d/merged/etc/hostname"
    tr -d '-' </proc/sys/kernel/random/uuid >"$d/merged/etc/machine-id"
    printf '127.0.0.1 localhost\n10.77.0.1 A hostA\n10.77.0.2 B hostB\n' >"$d/merged/etc/hosts"
    mkdir -p "$d/merged/var/log/journal"
    cp "$DEB" "$d/merged/root/hotbackup.deb"
}

boot_host() { # boot_host H: boots it, waits until systemd answers.
    local h=$1 d=$WORK/$1
    # CAP_NET_ADMIN: the master unit adds and removes the service address in its namespace.
    systemd-nspawn -b -D "$d/merged" -M "hb$h$TAG" --register=no --keep-unit --console=passive \
        --capability=CAP_NET_ADMIN,CAP_NET_RAW \
        --network-namespace-path="/run/netns/${NS[$h]}" >>"$d/console.log" 2>&1 &
    NSPAWN[$h]=$!
    local deadline=$((SECONDS + 60)) p=
    while :; do
        kill -0 "${NSPAWN[$h]}" 2>/dev/null || { tail -20 "$d/console.log"; fail "host $h: nspawn exited"; }
        for c in $(cat "/proc/${NSPAWN[$h]}/task/${NSPAWN[$h]}/children" 2>/dev/null); do
            [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && p=$c
        done
        [ -n "$p" ] && [ -e "/proc/$p/root/run/systemd/private" ] && break
        [ "$SECONDS" -lt "$deadline" ] || fail "host $h: systemd did not come up in 60s"
        sleep 0.2
    done
    PID1[$h]=$p
    wait_for 60 "host $h: systemd running" \
        bash -c "timeout 10 nsenter -t $p -a systemctl is-system-running | grep -qE 'running|degraded'"
}

step "boot host A and host B"
prepare_host A
prepare_host B
boot_host A
boot_host B
log "A: PID 1 = ${PID1[A]}, B: PID 1 = ${PID1[B]}"

step "install the .deb on both hosts (dpkg -i, maintainer scripts run live)"
for h in A B; do
    on "$h" dpkg -i /root/hotbackup.deb >"$WORK/dpkg-$h.log" 2>&1 || { cat "$WORK/dpkg-$h.log"; fail "dpkg -i on $h"; }
    grep -qiE 'warning|error' "$WORK/dpkg-$h.log" && { cat "$WORK/dpkg-$h.log"; fail "dpkg -i on $h was not clean"; }
    on "$h" getent passwd hotbackup >/dev/null || fail "postinst made no hotbackup user on $h"
    on "$h" test -d /var/lib/hotbackup || fail "postinst made no /var/lib/hotbackup on $h"
done
on A dpkg -s hotbackup | grep -q '^Status: install ok installed' || fail "dpkg -s on A"

step "systemd-analyze verify and security of both services"
# verify also runs `man` for each Documentation=man:... page (man-db is in the rootfs).
for page in hotbackup hotbackup-setup; do
    on A man -w "$page" >/dev/null || fail "man page $page(1) not installed"
done
for page in hotbackup-failover hotbackup-rejoin hotbackup-switchover; do
    on A man -w 8 "$page" >/dev/null || fail "man page $page(8) not installed"
done
for unit in hotbackup-master@db1.service hotbackup-slave@db1.service hotbackup-slave@db1.socket; do
    out=$(on A systemd-analyze verify "$unit" 2>&1 || true)
    [ -z "$out" ] || fail "systemd-analyze verify $unit printed: $out"
done
for unit in hotbackup-master@db1.service hotbackup-slave@db1.service; do
    exposure=$(on A systemd-analyze security --no-pager "$unit" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    log "systemd-analyze security $unit: exposure $exposure"
    awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.5) }' || fail "$unit exposure ${exposure:-?} > 2.5"
done

CFG=/etc/hotbackup/db1.toml
step "setup on B (slave) and A (master, with B's key), start the units"
on B hotbackup setup db1 --role slave --port 2000 --peer A:2000 --client-listen 0.0.0.0:7379 \
    --address "$VIP/24 dev vB" >"$WORK/setup-B.txt" 2>&1 || { cat "$WORK/setup-B.txt"; fail "setup on B"; }
grep -q 'systemctl enable --now hotbackup-slave@db1.socket' "$WORK/setup-B.txt" || fail "setup did not print the next commands"
# Idempotent: the same again changes nothing; other arguments are refused without --force.
on B hotbackup setup db1 --role slave --port 2000 --peer A:2000 --client-listen 0.0.0.0:7379 \
    --address "$VIP/24 dev vB" | grep -q '^unchanged /etc/hotbackup/db1.toml' || fail "setup is not idempotent"
set +e
on B hotbackup setup db1 --role slave --port 2001 --peer A:2000 >/dev/null 2>"$WORK/setup-refused.txt"
rc=$?
set -e
[ "$rc" = 3 ] && grep -q 'not replaced' "$WORK/setup-refused.txt" || fail "setup replaced a differing config without --force (exit $rc)"
[ "$(on B stat -c '%a %U' /etc/hotbackup/db1.key)" = "600 hotbackup" ] || fail "key is not 0600 hotbackup"
on B test -f /etc/systemd/system/hotbackup-slave@db1.socket.d/link.conf || fail "no socket drop-in"
cp "$WORK/B/merged/etc/hotbackup/db1.key" "$WORK/A/merged/root/db1.key"
on A hotbackup setup db1 --role master --port 2000 --peer B:2000 --client-listen 0.0.0.0:7379 \
    --key-file /root/db1.key --address "$VIP/24 dev vA" >"$WORK/setup-A.txt" 2>&1 || { cat "$WORK/setup-A.txt"; fail "setup on A"; }
on B systemctl daemon-reload
on A systemctl daemon-reload
on B systemctl enable --now hotbackup-slave@db1.socket
# The port is held by systemd before any daemon runs; a port check names the holder.
set +e
on B hotbackup port-check 2000 >"$WORK/port-check.txt" 2>&1
set -e
grep -q systemd "$WORK/port-check.txt" || { cat "$WORK/port-check.txt"; fail "port-check does not name systemd holding 2000"; }
on A systemctl enable --now hotbackup-master@db1.service
wait_for 30 "A's master unit active" on A systemctl is-active --quiet hotbackup-master@db1.service

step "the master dials B: socket activation starts the slave; write on A, read on B"
wait_for 30 "B's slave service started by its socket" on B systemctl is-active --quiet hotbackup-slave@db1.service
streaming() { on "$1" hotbackup status --config "$CFG" --field links | grep -q ': streaming'; }
wait_for 30 "B streaming from A" streaming B
wait_for 15 "the service address on A" on A bash -c "ip -o addr show dev vA | grep -q ' $VIP/24 '"
on A redis-cli -h "$VIP" -p 7379 SET k1 v1 | grep -q OK || fail "SET through the service address on A"
on A bash -c 'for i in $(seq 1 200); do echo "SET key:$i value-$i"; done | redis-cli -p 7379 >/dev/null'
read_is() { [ "$(on "$1" redis-cli -p 7379 GET "$2")" = "$3" ]; }
wait_for 20 "k1 on B" read_is B k1 v1
wait_for 20 "key:200 on B" read_is B key:200 value-200
on B redis-cli -p 7379 SET nope 1 | grep -q READONLY || fail "the slave took a write"

step "systemd integration: Type=notify, STATUS=, watchdog, journald fields and priorities"
show() { on "$1" systemctl show -p "$3" --value "$2"; }
[ "$(show A hotbackup-master@db1.service Type)" = notify ] || fail "Type"
[ "$(show A hotbackup-master@db1.service WatchdogUSec)" = 10s ] || fail "WatchdogSec"
status_text=$(show A hotbackup-master@db1.service StatusText)
log "A STATUS=: $status_text"
grep -q master <<<"$status_text" || fail "the master's STATUS= does not say master"
wait_for 20 "A's STATUS= shows its slave streaming, with the lag" \
    bash -c "timeout 10 nsenter -t ${PID1[A]} -a systemctl show -p StatusText --value hotbackup-master@db1.service | grep -q 'streaming lag [0-9]* ([0-9]* ms)'"
wait_for 20 "B's STATUS= says how far behind its master it is" \
    bash -c "timeout 10 nsenter -t ${PID1[B]} -a systemctl show -p StatusText --value hotbackup-slave@db1.service | grep -q 'slave.*streaming behind [0-9]* (canary [0-9]* ms)'"
log "B STATUS=: $(show B hotbackup-slave@db1.service StatusText)"
on A journalctl -u hotbackup-master@db1 -o verbose --no-pager >"$WORK/journal-A.txt"
grep -q 'HOTBACKUP_INSTANCE=db1' "$WORK/journal-A.txt" || fail "no HOTBACKUP_INSTANCE field: not logging natively to journald"
grep -q 'PRIORITY=6' "$WORK/journal-A.txt" || fail "no info-level (PRIORITY=6) records"
grep -q 'hotbackup-master@db1.service: service address\|service address 10.77.0.100/24 dev vA added' "$WORK/journal-A.txt" \
    || fail "the service address was not logged"

step "socket activation: restarting the slave service keeps the port; the link comes back"
pid_before=$(show B hotbackup-slave@db1.service MainPID)
on B systemctl restart hotbackup-slave@db1.service
on B systemctl is-active --quiet hotbackup-slave@db1.socket || fail "the socket went away with the service"
[ "$(show B hotbackup-slave@db1.service MainPID)" != "$pid_before" ] || fail "the slave did not restart"
wait_for 30 "B streaming again after its restart" streaming B

incidents() { # incidents H UNIT KIND: how many KIND incidents journalctl -p warning shows
    on "$1" journalctl -u "$2" -p warning -o verbose --no-pager | grep -c "HOTBACKUP_INCIDENT=$3" || true
}
step "kill the slave: link_down incident in journalctl -u hotbackup-master@db1 -p warning on A"
n0=$(incidents A hotbackup-master@db1 link_down)
on B systemctl kill -s KILL hotbackup-slave@db1.service
wait_for 30 "a link_down incident on A" bash -c "[ \$(timeout 20 nsenter -t ${PID1[A]} -a journalctl -u hotbackup-master@db1 -p warning -o verbose --no-pager | grep -c HOTBACKUP_INCIDENT=link_down) -gt $n0 ]"
on A journalctl -u hotbackup-master@db1 -p warning --no-pager | tail -3
wait_for 40 "B restarted (Restart=on-failure) and streaming" streaming B

step "cut the veth: link_down, then recovery (link_up) when it is back"
n0=$(incidents A hotbackup-master@db1 link_down)
u0=$(incidents A hotbackup-master@db1 link_up)
ip -n "$NS_B" link set vB down
wait_for 30 "a link_down incident on A after the cut" bash -c "[ \$(timeout 20 nsenter -t ${PID1[A]} -a journalctl -u hotbackup-master@db1 -p warning -o verbose --no-pager | grep -c HOTBACKUP_INCIDENT=link_down) -gt $n0 ]"
on A redis-cli -p 7379 SET during-cut yes | grep -q OK || fail "the master refused a write during the cut (async mode)"
ip -n "$NS_B" link set vB up
wait_for 40 "B streaming again after the cut" streaming B
wait_for 20 "the write made during the cut on B" read_is B during-cut yes
on A journalctl -u hotbackup-master@db1 -o verbose --no-pager | grep -c HOTBACKUP_INCIDENT=link_up \
    | awk -v u="$u0" '{ exit !($1 > u) }' || fail "no link_up incident after the cut"

step "watchdog: a frozen slave daemon is killed by systemd and restarted"
on B mkdir -p /etc/systemd/system/hotbackup-slave@db1.service.d
printf '[Service]\nEnvironment=HOTBACKUP_TEST_FREEZE_FILE=/run/hotbackup/db1/freeze\n' \
    >"$WORK/B/merged/etc/systemd/system/hotbackup-slave@db1.service.d/freeze.conf"
on B systemctl daemon-reload
on B systemctl restart hotbackup-slave@db1.service
wait_for 30 "B streaming (freeze drop-in)" streaming B
pid_before=$(show B hotbackup-slave@db1.service MainPID)
on B touch /run/hotbackup/db1/freeze
wait_for 40 "systemd's watchdog timeout for the frozen slave" \
    bash -c "timeout 10 nsenter -t ${PID1[B]} -a journalctl -u hotbackup-slave@db1 --no-pager | grep -qi 'watchdog timeout'"
on B rm -f /run/hotbackup/db1/freeze
wait_for 40 "the slave restarted with a new PID" \
    bash -c "p=\$(timeout 10 nsenter -t ${PID1[B]} -a systemctl show -p MainPID --value hotbackup-slave@db1.service); [ -n \"\$p\" ] && [ \"\$p\" != 0 ] && [ \"\$p\" != $pid_before ]"
wait_for 40 "B streaming after the watchdog restart" streaming B
rm -f "$WORK/B/merged/etc/systemd/system/hotbackup-slave@db1.service.d/freeze.conf"
on B systemctl daemon-reload

step "the scripts refuse while both nodes are healthy"
expect_refused() { # expect_refused HOST COMMAND...: exit 3 and a 'refused' message
    local h=$1
    shift
    set +e
    on "$h" "$@" >"$WORK/refused.txt" 2>&1
    local rc=$?
    set -e
    [ "$rc" = 3 ] && grep -q refused "$WORK/refused.txt" || { cat "$WORK/refused.txt"; fail "$* on $h: exit $rc, expected a refusal (3)"; }
    log "$h: $* -> $(head -1 "$WORK/refused.txt")"
}
expect_refused B hotbackup-failover db1
expect_refused A hotbackup-rejoin db1
on B journalctl -t hotbackup-failover --no-pager | grep -q refused || fail "the refusal is not in B's journal"

step "crash host A (kill -KILL its PID 1); hotbackup-failover on B"
kill -KILL "${PID1[A]}"
wait "${NSPAWN[A]}" 2>/dev/null || true
NSPAWN[A]=
# The namespace (ours) outlives the container: a crashed machine's NIC goes silent and its
# addresses are gone when it boots again.
ip -n "$NS_A" link set vA down
ip -n "$NS_A" addr flush dev vA
# The slave sees its master silent after link.peer_timeout.
wait_for 30 "B notices A is gone" bash -c "! timeout 10 nsenter -t ${PID1[B]} -a hotbackup status --config $CFG --field links | grep -q ': streaming'"
t0=$SECONDS
on B hotbackup-failover db1 >"$WORK/failover.txt" 2>&1 || { cat "$WORK/failover.txt"; fail "hotbackup-failover on B"; }
log "failover took $((SECONDS - t0))s: $(tail -1 "$WORK/failover.txt")"
on B systemctl is-active --quiet hotbackup-master@db1.service || fail "B's master unit is not active"
on B systemctl is-active --quiet hotbackup-slave@db1.socket && fail "B's slave socket still active"
on B systemctl is-enabled --quiet hotbackup-master@db1.service || fail "B's master unit is not enabled"
wait_for 15 "the service address on B" on B bash -c "ip -o addr show dev vB | grep -q ' $VIP/24 '"
on B redis-cli -h "$VIP" -p 7379 SET k2 v2 | grep -q OK || fail "write on B through the service address"
read_is B k1 v1 || fail "k1 lost on B"
on B journalctl -t hotbackup-failover --no-pager | grep -q 'failover done' || fail "failover not in B's journal"

step "boot A again: it is fenced (incident in its journal) and does not take the service address"
ip -n "$NS_A" addr add 10.77.0.1/24 dev vA
ip -n "$NS_A" link set vA up
boot_host A
wait_for 60 "a fenced incident on A" bash -c "timeout 20 nsenter -t ${PID1[A]} -a journalctl -b -u hotbackup-master@db1 -p warning -o verbose --no-pager | grep -q HOTBACKUP_INCIDENT=fenced"
on A journalctl -b -u hotbackup-master@db1 -p warning --no-pager | tail -3
[ "$(on A hotbackup status --config "$CFG" --field writes)" = fenced ] || fail "A is not fenced"
on A bash -c "ip -o addr show dev vA | grep -q ' $VIP/24 '" && fail "fenced A took the service address"
on A journalctl -b -u hotbackup-master@db1 --no-pager | grep -q 'NOT taken' || fail "A did not log why it left the address"
# No switchover with a fenced peer: the link does not stream.
expect_refused B hotbackup-switchover db1
on B journalctl -t hotbackup-switchover --no-pager | grep -q refused || fail "the switchover refusal is not in B's journal"

step "hotbackup-rejoin on A"
on A hotbackup-rejoin db1 >"$WORK/rejoin.txt" 2>&1 || { cat "$WORK/rejoin.txt"; fail "hotbackup-rejoin on A"; }
log "rejoin: $(tail -1 "$WORK/rejoin.txt")"
on A journalctl -t hotbackup-rejoin --no-pager | grep -q 'rejoin done' || fail "the rejoin is not in A's journal"
on A systemctl is-active --quiet hotbackup-slave@db1.service || fail "A's slave unit is not active"
on A systemctl is-active --quiet hotbackup-master@db1.service && fail "A's master unit is still active"
wait_for 30 "k2 on A" read_is A k2 v2

step "switch back with hotbackup-switchover (on B, then on A)"
on B redis-cli -h "$VIP" -p 7379 SET k3 v3 | grep -q OK || fail "write before the switchover"
# B learns where the service address went from A's gratuitous ARP alone: it accepts unsolicited
# ARP (arp_accept) and sends nothing to the address until the check below.
ip netns exec "$NS_B" sysctl -qw net.ipv4.conf.vB.arp_accept=1
on B hotbackup-switchover db1 >"$WORK/switchover-B.txt" 2>&1 || { cat "$WORK/switchover-B.txt"; fail "hotbackup-switchover on B"; }
log "switchover on B: $(tail -1 "$WORK/switchover-B.txt")"
on A hotbackup-switchover db1 >"$WORK/switchover-A.txt" 2>&1 || { cat "$WORK/switchover-A.txt"; fail "hotbackup-switchover on A"; }
log "switchover on A: $(tail -1 "$WORK/switchover-A.txt")"
on B journalctl -t hotbackup-switchover --no-pager | grep -q 'switchover done here' || fail "the switchover is not in B's journal"
on A journalctl -t hotbackup-switchover --no-pager | grep -q 'switchover done here' || fail "the switchover is not in A's journal"
on A systemctl is-active --quiet hotbackup-master@db1.service || fail "A's master unit is not active"
on B systemctl is-active --quiet hotbackup-slave@db1.service || fail "B's slave unit is not active"
wait_for 15 "the service address back on A" on A bash -c "ip -o addr show dev vA | grep -q ' $VIP/24 '"
on B bash -c "ip -o addr show dev vB | grep -q ' $VIP/24 '" && fail "B kept the service address"
mac_a=$(ip netns exec "$NS_A" cat /sys/class/net/vA/address)
wait_for 10 "B's neighbour table maps $VIP to A ($mac_a) from the gratuitous ARP" \
    bash -c "ip netns exec $NS_B ip neigh show $VIP dev vB | grep -qi 'lladdr $mac_a'"
# (logged once arping is done: it sends two announcements a second apart)
wait_for 10 "A's journal says the service address was announced with gratuitous ARP" \
    bash -c "timeout 10 nsenter -t ${PID1[A]} -a journalctl -u hotbackup-master@db1 --no-pager | grep -q 'service address $VIP/24 dev vA added, announced with gratuitous ARP'"
log "B's neighbour entry after A's announcement: $(ip netns exec "$NS_B" ip neigh show "$VIP" dev vB)"
on B redis-cli -h "$VIP" -p 7379 SET k4 v4 | grep -q OK || fail "write through the service address after switching back"
wait_for 30 "B streaming from A again" streaming B
wait_for 20 "k4 on B" read_is B k4 v4

step "equal data on both"
dump() { on "$1" bash -c 'redis-cli -p 7379 --scan | sort | while read -r k; do printf "%s=%s\n" "$k" "$(redis-cli -p 7379 GET "$k")"; done'; }
dump A >"$WORK/data-A.txt"
dump B >"$WORK/data-B.txt"
cmp -s "$WORK/data-A.txt" "$WORK/data-B.txt" || { diff "$WORK/data-A.txt" "$WORK/data-B.txt" | head; fail "A and B differ"; }
for k in k1=v1 k2=v2 k3=v3 k4=v4 during-cut=yes key:1=value-1; do
    grep -qx "$k" "$WORK/data-A.txt" || fail "$k missing"
done
log "A and B hold the same $(wc -l <"$WORK/data-A.txt") items"

step "a second database on the same hosts: B runs two slave instances (db1, db2), each for its own master"
on B hotbackup setup db2 --role slave --port 2001 --peer A:2001 --client-listen 0.0.0.0:7380 \
    >"$WORK/setup-B2.txt" 2>&1 || { cat "$WORK/setup-B2.txt"; fail "setup of db2 on B"; }
cp "$WORK/B/merged/etc/hotbackup/db2.key" "$WORK/A/merged/root/db2.key"
on A hotbackup setup db2 --role master --port 2001 --peer B:2001 --client-listen 0.0.0.0:7380 \
    --key-file /root/db2.key >"$WORK/setup-A2.txt" 2>&1 || { cat "$WORK/setup-A2.txt"; fail "setup of db2 on A"; }
grep -q 'ListenStream=.*2001' "$WORK/B/merged/etc/systemd/system/hotbackup-slave@db2.socket.d/link.conf" \
    || fail "db2's socket drop-in does not hold port 2001"
on B systemctl daemon-reload
on A systemctl daemon-reload
on B systemctl enable --now hotbackup-slave@db2.socket
on A systemctl enable --now hotbackup-master@db2.service
wait_for 30 "B's db2 slave service started by its own socket" on B systemctl is-active --quiet hotbackup-slave@db2.service
on B systemctl is-active --quiet hotbackup-slave@db1.service || fail "db1's slave stopped when db2's started"
streaming2() { on "$1" hotbackup status --config /etc/hotbackup/db2.toml --field links | grep -q ': streaming'; }
wait_for 30 "B's db2 streaming from A's db2" streaming2 B
on A redis-cli -p 7380 SET only-in-db2 yes | grep -q OK || fail "write on A's db2"
read2_is() { [ "$(on "$1" redis-cli -p 7380 GET "$2")" = "$3" ]; }
wait_for 20 "only-in-db2 on B's db2" read2_is B only-in-db2 yes
[ -z "$(on B redis-cli -p 7379 GET only-in-db2)" ] || fail "db2's write reached db1"
[ "$(on B redis-cli -p 7380 GET k1)" = "" ] || fail "db1's data is in db2"
on A redis-cli -p 7379 SET db1-still ok | grep -q OK || fail "write on A's db1 beside db2"
wait_for 20 "db1-still on B's db1" read_is B db1-still ok
log "B runs $(on B systemctl list-units --no-legend --state=active 'hotbackup-slave@*.service' | wc -l) slave instances"

step "package life cycle: reinstall (upgrade path) restarts the master; remove keeps data; purge deletes it"
pid_before=$(show A hotbackup-master@db1.service MainPID)
on A dpkg -i /root/hotbackup.deb >"$WORK/dpkg-again.log" 2>&1 || { cat "$WORK/dpkg-again.log"; fail "dpkg -i again on A"; }
wait_for 30 "A's master restarted by the upgrade" \
    bash -c "p=\$(timeout 10 nsenter -t ${PID1[A]} -a systemctl show -p MainPID --value hotbackup-master@db1.service); [ -n \"\$p\" ] && [ \"\$p\" != 0 ] && [ \"\$p\" != $pid_before ]"
wait_for 30 "A writable after the upgrade" bash -c "[ \"\$(timeout 10 nsenter -t ${PID1[A]} -a hotbackup status --config $CFG --field writes)\" = ok ]"
on B dpkg -r hotbackup >"$WORK/dpkg-r.log" 2>&1 || { cat "$WORK/dpkg-r.log"; fail "dpkg -r on B"; }
on B systemctl is-active --quiet hotbackup-slave@db1.service && fail "dpkg -r left B's instance running"
on B systemctl is-active --quiet hotbackup-slave@db2.service && fail "dpkg -r left B's db2 instance running"
on B test -d /var/lib/hotbackup/db1 || fail "dpkg -r deleted the data"
on B test -f /etc/hotbackup/db1.toml || fail "dpkg -r deleted the config"
on B dpkg -P hotbackup >"$WORK/dpkg-P.log" 2>&1 || { cat "$WORK/dpkg-P.log"; fail "dpkg -P on B"; }
on B test -e /var/lib/hotbackup && fail "dpkg -P left /var/lib/hotbackup"
on B test -e /etc/hotbackup/db1.key && fail "dpkg -P left the key"
on B test -e /etc/systemd/system/hotbackup-slave@db1.socket.d && fail "dpkg -P left the socket drop-in"
on B test -e /etc/hotbackup/db2.key && fail "dpkg -P left db2's key"
log "reinstall restarted A's master; remove kept B's data; purge deleted it"

failed=0
