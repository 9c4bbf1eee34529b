#!/usr/bin/env bash
# The frozen build, as a server without Python or network would run it (`make
# dist-check`; root). After `make dist`:
#
#  1. a chroot holding only the build (onedir at /opt/murmur, onefile beside it), the
#     C libraries they link, a static busybox for the job's `sh`, and /etc/passwd;
#     no python on any path;
#  2. in new network, pid and mount namespaces with only loopback up: --version of
#     both, `ca init`, two nodes started and joined, a process job submitted and
#     succeeded (its supervisor started by the frozen fork server), `murmur status`
#     and `murmur top` (under tmux) from the onefile;
#  3. a bundle made by `murmur bundle create`, verified by the frozen build; a wrong
#     key and one flipped byte fail `verify` and `install.sh`; `install.sh` into a
#     fresh root, still with no network, and the node its systemd unit names started.
#
# Prints each step with its wall time; exits 0 when every step passed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
ONEDIR=$REPO/dist/onedir/murmur
ONEFILE=$REPO/dist/onefile/murmur
VENV_MURMUR=$REPO/.venv/bin/murmur

if [ "${1:-}" != "--inside" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "dist-smoke: needs root (chroot, namespaces)" >&2; exit 2; }
    for tool in unshare chroot tmux ldd ip busybox; do
        command -v "$tool" >/dev/null || { echo "dist-smoke: $tool is not installed" >&2; exit 2; }
    done
    [ -x "$ONEDIR/murmur" ] && [ -x "$ONEFILE" ] || { echo "dist-smoke: run make dist first" >&2; exit 2; }
    WORK=$(mktemp -d /tmp/murmur-dist-smoke.XXXXXX)
    export WORK
    trap 'rm -rf "$WORK"' EXIT
    started=$(date +%s%N)
    # Everything below runs in its own namespaces: when it exits, every process it
    # started dies with its pid namespace, and its mounts with its mount namespace.
    status=0
    unshare --net --pid --fork --mount --mount-proc "$0" --inside || status=$?
    elapsed_ms=$((($(date +%s%N) - started) / 1000000))
    printf 'dist-smoke: %s in %d.%01d s\n' "$([ $status -eq 0 ] && echo passed || echo FAILED)" \
        $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100))
    exit $status
fi

# -- inside the namespaces ----------------------------------------------------------

CH=$WORK/chroot
CHROOT=$(command -v chroot)
step_started=0
step() {
    step_started=$(date +%s%N)
    printf 'dist-smoke: %s ... ' "$*"
}
ok() {
    local ms=$((($(date +%s%N) - step_started) / 1000000))
    printf 'ok (%d.%02d s)%s\n' $((ms / 1000)) $((ms % 1000 / 10)) "${1:+ $1}"
}
fail() {
    echo "FAILED: $*"
    exit 1
}

# A minimal OS: busybox, the C libraries the build links, an account table.
make_root() {
    local root=$1
    mkdir -p "$root"/{bin,etc,tmp,proc,dev,sys,root,var/lib,usr/local/bin}
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for tool in sh echo cat sleep ls env true kill ps grep; do
        ln -sf busybox "$root/bin/$tool"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    # The C libraries: whatever the loader resolves for every ELF file of the build
    # outside the build itself (glibc, libstdc++, libgcc_s: docs/install.md).
    local libraries
    libraries=$(find "$ONEDIR" "$ONEFILE" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
        { xargs -0 -n 50 ldd 2>/dev/null || true; } |
        grep -o '^[[:space:]]*/[^ ]*\|=> /[^ ]*' | sed 's/^[[:space:]=>]*//' |
        grep -v "^$ONEDIR" | sort -u)
    for library in $libraries; do
        if [ -e "$library" ]; then cp -L --parents "$library" "$root/"; fi
    done
}

inroot() { # inroot ROOT COMMAND...: run in the chroot with a clean environment
    local root=$1
    shift
    env -i HOME=/root PATH=/usr/local/bin:/bin LANG=C.UTF-8 TERM=xterm-256color \
        ${EXTRA_ENV:-} "$CHROOT" "$root" "$@"
}

inroot_bg() { # inroot_bg ROOT LOG COMMAND...: in the background, $! the command itself
    local root=$1 log=$2
    shift 2
    env -i HOME=/root PATH=/usr/local/bin:/bin LANG=C.UTF-8 ${EXTRA_ENV:-} \
        "$CHROOT" "$root" "$@" >"$log" 2>&1 &
}

mount_into() {
    local root=$1
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
}

wait_ready() { # wait_ready LOG SECONDS
    local deadline=$((SECONDS + $2))
    until grep -q '"event": "node.ready"' "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { tail -20 "$1"; fail "no node.ready in $1 within $2 s"; }
        sleep 0.1
    done
}

ip link set lo up
step "only loopback in this network namespace"
links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[ "$links" = "lo " ] || fail "links: $links"
ok

step "chroot with the build and its C libraries only"
make_root "$CH"
mkdir -p "$CH/opt/murmur"
cp -a "$ONEDIR/." "$CH/opt/murmur/"
ln -s /opt/murmur/murmur "$CH/usr/local/bin/murmur"
cp "$ONEFILE" "$CH/usr/local/bin/murmur-onefile"
mount_into "$CH"
if inroot "$CH" sh -c 'command -v python3 || command -v python || command -v python3.11'; then
    fail "a python is on the chroot's PATH"
fi
found=$(find "$CH" -xdev \( -name 'python' -o -name 'python3*' \) -type f -perm -u+x | head -1)
[ -z "$found" ] || fail "an executable python in the chroot: $found"
ok "$(du -sh "$CH" --exclude=proc --exclude=sys --exclude=dev 2>/dev/null | cut -f1) on disk"

step "murmur --version (onedir)"
version=$(inroot "$CH" murmur --version)
ok "$version"
step "murmur --version (onefile)"
[ "$(inroot "$CH" murmur-onefile --version)" = "$version" ] || fail "the onefile says otherwise"
ok

step "murmur ca init"
inroot "$CH" murmur ca init --data-dir /var/lib/murmur/n1 >"$WORK/ca-init.log" 2>&1 || {
    cat "$WORK/ca-init.log"
    fail "ca init"
}
ok

step "node n1 started"
inroot_bg "$CH" "$WORK/n1.log" murmur node start --name n1 --data-dir /var/lib/murmur/n1 \
    --listen 127.0.0.1:7070 --allow-root-jobs
nodes=$!
wait_ready "$WORK/n1.log" 60
ok

step "node n2 joined with a token"
token=$(inroot "$CH" murmur token create --node 127.0.0.1:7070 2>/dev/null)
EXTRA_ENV="MURMUR_NODE_TOKEN=$token" inroot_bg "$CH" "$WORK/n2.log" murmur node start \
    --name n2 --data-dir /var/lib/murmur/n2 --listen 127.0.0.2:7070 --join 127.0.0.1:7070 \
    --allow-root-jobs
nodes="$nodes $!"
wait_ready "$WORK/n2.log" 60
deadline=$((SECONDS + 30))
until [ "$(inroot "$CH" murmur node list --node 127.0.0.1:7070 --json 2>/dev/null |
    grep -c '"state": "NODE_STATE_ALIVE"')" = 2 ]; do
    [ $SECONDS -lt $deadline ] || fail "n1 does not list two alive nodes"
    sleep 0.2
done
ok

step "a process job submitted and succeeded"
job=$(inroot "$CH" murmur job submit --runtime process --node 127.0.0.1:7070 -- \
    sh -c 'echo frozen-ok' 2>/dev/null)
deadline=$((SECONDS + 60))
until inroot "$CH" murmur job show "$job" --json --node 127.0.0.1:7070 |
    grep -q '"state": "JOB_STATE_SUCCEEDED"'; do
    [ $SECONDS -lt $deadline ] || {
        inroot "$CH" murmur job show "$job" --node 127.0.0.1:7070 || true
        fail "job $job did not succeed"
    }
    sleep 0.2
done
inroot "$CH" murmur job logs "$job" --node 127.0.0.1:7070 | grep -qx frozen-ok ||
    fail "job $job's log lacks its output"
ps -eo args | grep -q '__run-helper murmur.node.agent.runtimes.forkserver' ||
    fail "no frozen fork server runs"
ok "job $job"

step "murmur status (onefile)"
inroot "$CH" murmur-onefile status --node 127.0.0.1:7070 >"$WORK/status.txt"
grep -q n2 "$WORK/status.txt" || { cat "$WORK/status.txt"; fail "status does not show n2"; }
ok

step "murmur top (onefile) under tmux"
export TMUX_TMPDIR=$WORK
tmux new-session -d -s smoke -x 120 -y 40 \
    "env -i HOME=/root PATH=/usr/local/bin:/bin LANG=C.UTF-8 TERM=xterm-256color $CHROOT $CH murmur-onefile top --node 127.0.0.1:7070"
deadline=$((SECONDS + 30))
until tmux capture-pane -p -t smoke | grep -q n2; do
    [ $SECONDS -lt $deadline ] || {
        tmux capture-pane -p -t smoke
        fail "top does not show n2"
    }
    sleep 0.3
done
tmux capture-pane -p -t smoke >"$WORK/top.txt"
tmux send-keys -t smoke q
deadline=$((SECONDS + 10))
while tmux has-session -t smoke 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "top did not quit on q"
    sleep 0.1
done
ok

step "nodes stopped with SIGTERM"
for pid in $nodes; do kill -TERM "$pid"; done
for pid in $nodes; do wait "$pid" || fail "a node exited with $?"; done
ok "leftover onefile dirs in the chroot's /tmp: $(find "$CH/tmp" -maxdepth 1 -name '_MEI*' | wc -l)"

# -- the bundle -----------------------------------------------------------------------

step "murmur bundle keygen and create"
"$ONEDIR/murmur" bundle keygen --out "$WORK/release.key" 2>/dev/null
"$ONEDIR/murmur" bundle keygen --out "$WORK/other.key" 2>/dev/null
# The wheelhouse comes from the package index (the prep machine is connected; this
# namespace is not): made beforehand with the venv's pip, as docs/install.md says.
wheels=(--no-wheels)
if [ -d "${DIST_SMOKE_WHEELHOUSE:-}" ]; then
    wheels=(--wheelhouse "$DIST_SMOKE_WHEELHOUSE")
fi
"$ONEDIR/murmur" bundle create --key "$WORK/release.key" --out "$WORK/bundle" \
    --onedir "$ONEDIR" "${wheels[@]}" 2>"$WORK/create.log" || {
    cat "$WORK/create.log"
    fail "bundle create"
}
ok "$(du -sh "$WORK/bundle" | cut -f1)"

step "bundle verify with the release key"
"$ONEDIR/murmur" bundle verify "$WORK/bundle" --key "$WORK/release.key.pub" 2>/dev/null ||
    fail "a fresh bundle does not verify"
ok
step "a wrong key fails verify and install.sh"
if "$ONEDIR/murmur" bundle verify "$WORK/bundle" --key "$WORK/other.key.pub" 2>/dev/null; then
    fail "verified with the wrong key"
fi
if sh "$WORK/bundle/install.sh" --key "$WORK/other.key.pub" --root "$WORK/never" >/dev/null 2>&1; then
    fail "install.sh installed with the wrong key"
fi
[ ! -e "$WORK/never/opt" ] || fail "install.sh wrote something with the wrong key"
ok
step "one flipped byte fails verify and install.sh"
cp -a "$WORK/bundle" "$WORK/tampered"
target="$WORK/tampered/linux-$(uname -m)/murmur/_internal/libpython3.11.so.1.0"
byte=$(od -An -tu1 -j1000 -N1 "$target" | tr -d ' ')
# shellcheck disable=SC2059  # the octal escape is the point
printf "\\$(printf %03o $((byte ^ 1)))" | dd of="$target" bs=1 seek=1000 conv=notrunc status=none
cmp -s "$target" "$WORK/bundle/${target#"$WORK/tampered/"}" && fail "the byte did not flip"
if "$ONEDIR/murmur" bundle verify "$WORK/tampered" --key "$WORK/release.key.pub" 2>/dev/null; then
    fail "verified a changed file"
fi
if sh "$WORK/tampered/install.sh" --key "$WORK/release.key.pub" --root "$WORK/never" >/dev/null 2>&1; then
    fail "install.sh installed a changed bundle"
fi
[ ! -e "$WORK/never/opt" ] || fail "install.sh wrote something from a changed bundle"
ok

step "install.sh into a fresh root, no network"
FRESH=$WORK/fresh
make_root "$FRESH"
sh "$WORK/bundle/install.sh" --key "$WORK/release.key.pub" --root "$FRESH" -- \
    --name fresh --listen 127.0.0.9:7070 >"$WORK/install.log" 2>&1 || {
    cat "$WORK/install.log"
    fail "install.sh"
}
unit=$FRESH/etc/systemd/system/murmur.service
grep -q '^ExecStart=/usr/local/bin/murmur node start --config /etc/murmur/node.toml$' "$unit" ||
    fail "the unit's ExecStart"
grep -q '^KillMode=process$' "$unit" || fail "the unit's KillMode"
[ "$(readlink "$FRESH/usr/local/bin/murmur")" = "/opt/murmur/${version#murmur }/murmur" ] ||
    fail "the link"
ok
step "the node of the systemd unit started in the fresh root"
mount_into "$FRESH"
inroot "$FRESH" murmur ca init --data-dir /var/lib/murmur >/dev/null 2>&1 || fail "ca init"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
# shellcheck disable=SC2086  # the unit's command line, split as systemd splits it
inroot_bg "$FRESH" "$WORK/fresh.log" $exec_start
fresh_pid=$!
wait_ready "$WORK/fresh.log" 60
inroot "$FRESH" murmur status --node 127.0.0.9:7070 | grep -q fresh || fail "status of the fresh node"
kill -TERM $fresh_pid
wait $fresh_pid || fail "the fresh node exited with $?"
ok
