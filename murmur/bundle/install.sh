#!/bin/sh
# Installs Murmur from this bundle on a server with no network.
#
#   sh install.sh --key RELEASE.pub [--root DIR] [--no-images] [--start] [-- FLAGS...]
#
#   --key FILE   the release public key (KEY.pub of `murmur bundle keygen`), carried
#                apart from the bundle: a key inside the bundle would prove nothing
#   --root DIR   install under DIR instead of / (also $ROOT): an image, a chroot
#   --no-images  do not `docker load` the bundle's job images
#   --start      systemctl daemon-reload, then enable and start murmur (root / only)
#   FLAGS        after --: flags of `murmur node install` (--name, --listen,
#                --advertise, --data-dir, --join HOST:PORT); a join token is read
#                from $MURMUR_NODE_TOKEN
#
# In order, stopping at the first failure: verify the whole bundle (signature, then
# every file's hash) with the bundled murmur, or with $MURMUR_VERIFY_WITH (a murmur
# you already trust); copy the build to ROOT/opt/murmur/VERSION/ (with the
# wheelhouse); point ROOT/usr/local/bin/murmur at it; write the systemd unit and, if
# there is none, the node config (`murmur node install`); load the job images.
# Nothing here opens a network connection.
set -eu
umask 022

die() {
    echo "install.sh: $*" >&2
    exit 1
}

here=$(cd "$(dirname "$0")" && pwd -P)
key=""
root=${ROOT:-/}
images=yes
start=no
while [ $# -gt 0 ]; do
    case "$1" in
    --key)
        [ $# -ge 2 ] || die "--key needs the release public key file"
        key=$2
        shift 2
        ;;
    --key=*)
        key=${1#--key=}
        shift
        ;;
    --root)
        [ $# -ge 2 ] || die "--root needs a directory"
        root=$2
        shift 2
        ;;
    --root=*)
        root=${1#--root=}
        shift
        ;;
    --no-images)
        images=no
        shift
        ;;
    --start)
        start=yes
        shift
        ;;
    --)
        shift
        break
        ;;
    -h | --help)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option $1 (see: sh install.sh --help)" ;;
    esac
done
[ -n "$key" ] || die "--key RELEASE.pub is required (the public half of the release key)"
[ -r "$key" ] || die "cannot read the release public key $key"

arch=$(uname -m)
build="$here/linux-$arch/murmur"
[ -f "$build/murmur" ] || die "this bundle has no build for $arch ($(ls -d "$here"/linux-* 2>/dev/null | sed 's|.*/linux-||' | tr '\n' ' '))"
# A copy through a file system without modes drops the execute bit: put it back to
# run the check. The check itself decides whether anything is installed.
[ -x "$build/murmur" ] || chmod 0755 "$build/murmur"

verifier=${MURMUR_VERIFY_WITH:-$build/murmur}
"$verifier" bundle verify "$here" --key "$key" || die "the bundle did not verify: nothing was installed"

version=$("$build/murmur" --version | sed -n 's/^murmur \([^ ]*\)$/\1/p')
[ -n "$version" ] || die "the bundled murmur did not say its version"
case "$version" in
*/* | .* | "") die "unexpected version string $version" ;;
esac

root=${root%/}
dest="$root/opt/murmur/$version"
staging="$dest.partial-$$"
rm -rf "$staging"
mkdir -p "$staging"
cp -R "$build/." "$staging/"
chmod 0755 "$staging/murmur"
cp "$here/manifest.json" "$staging/manifest.json"
if [ -d "$here/wheels" ]; then
    cp -R "$here/wheels" "$staging/wheels"
fi
chmod -R u+rwX,go+rX,go-w "$staging"
if [ -e "$dest" ]; then
    # The same version again: a daemon running from it keeps what it has open; the
    # old tree is moved aside, not deleted under it.
    aside="$dest.replaced-$$"
    mv "$dest" "$aside"
    echo "install.sh: $dest existed: moved to $aside (remove it once no murmur runs from it)" >&2
fi
mv "$staging" "$dest"

mkdir -p "$root/usr/local/bin"
# The link names the path as seen from inside ROOT; rename(2) swaps it at once, so a
# `murmur` started meanwhile runs either version, never neither.
ln -sfn "/opt/murmur/$version/murmur" "$root/usr/local/bin/.murmur.new-$$"
mv -f "$root/usr/local/bin/.murmur.new-$$" "$root/usr/local/bin/murmur"

"$dest/murmur" node install --root "${root:-/}" --binary /usr/local/bin/murmur "$@"

if [ "$images" = yes ] && [ -d "$here/images" ]; then
    for image in "$here"/images/*.tar; do
        [ -f "$image" ] || continue
        if ! command -v docker >/dev/null 2>&1; then
            echo "install.sh: docker is not installed: job images not loaded (docker load -i $here/images/...)" >&2
            break
        fi
        docker load -i "$image"
    done
fi

echo "installed murmur $version in ${root:-}/opt/murmur/$version; ${root:-}/usr/local/bin/murmur points at it"
if [ "$start" = yes ]; then
    [ -z "$root" ] || die "--start needs the root / (systemctl manages this machine)"
    systemctl daemon-reload
    systemctl enable --now murmur.service
    echo "started: systemctl status murmur; journalctl -u murmur -f"
fi
