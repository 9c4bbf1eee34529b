#!/bin/sh
# Installs what the test suite needs beyond the Python venv: a Docker engine
# (docker.io: dockerd + docker CLI), a static busybox, from which the tests
# build their own tiny image (no registry is reachable on the test machines),
# iproute2, whose `ip netns` lets the partition test cut a node off for real, and
# strace, with which the offline test sees every connection a node tries to make,
# and tmux, the real terminal `murmur top` is tested in (and dist-check's).
#
# Idempotent: installs only what is missing. Without root or apt-get it prints
# a note and exits 0; the Docker tests then skip with a reason (unless CI=true).
set -eu

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing busybox-static"
fi

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: not root; not installing:$missing (the Docker tests will skip)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: no apt-get; install$missing yourself (the Docker tests will skip)" >&2
    exit 0
fi

echo "install-test-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086  # $missing is a list of package names
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
    echo "install-test-deps: apt-get could not install$missing (the Docker tests will skip; under CI=true they fail)" >&2
fi
exit 0
