#!/usr/bin/env bash
# Builds container images without a Docker daemon or a registry, with
# Debian's buildah:
#
#   build.sh project [OPTIONS]   the repository's Dockerfile (make image's
#                                fallback when docker cannot build); stage
#                                the binary at target/image/linux-ARCH first
#   build.sh pause   [OPTIONS]   e2e/images/pause/pause.c, compiled static,
#                                FROM scratch (the CRI e2e's sandbox image)
#   build.sh busybox [OPTIONS]   Debian's busybox-static with its applet
#                                links, FROM scratch (the CRI e2e's workload)
#   build.sh prometheus --binary FILE [OPTIONS]
#                                a static prometheus (e2e/tools builds it
#                                from the pinned module), FROM scratch (the
#                                local cluster's in-cluster Prometheus)
#
# Options:
#   --tag NAME       image name in buildah's storage (required)
#   --archive FILE   also write an OCI archive of the image, named --ref
#   --ref NAME       the full name the archive carries (default: --tag
#                    normalized the way containerd and kubelet do:
#                    csum-offload:0.1.0 -> docker.io/library/csum-offload:0.1.0)
#   --platform P     default linux/amd64
#   --binary FILE    the program to package (prometheus only)
#   --private DIR    keep everything in DIR: buildah storage, run root,
#                    temp files, its CNI lock and blob cache, in a private
#                    mount namespace where /var/lib is an overlay, so
#                    nothing outside DIR is written (the e2e uses this)
#
# Without --private, buildah uses its default storage
# (/var/lib/containers/storage), so `buildah images` and `buildah push`
# see the result; its temp files and CNI directory still stay under
# target/buildah, never in the node's /etc/cni/net.d or /var/tmp.
# BUILDAH_STORAGE_DRIVER picks the storage driver (default: buildah's,
# or vfs where buildah's default cannot work).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

die() {
    echo "images: $*" >&2
    exit 1
}

KIND=${1:-}
[ -n "$KIND" ] || die "usage: build.sh project|pause|busybox|prometheus --tag NAME [--archive FILE] [--ref NAME] [--platform P] [--private DIR] [--binary FILE]"
shift
TAG='' ARCHIVE='' REF='' PLATFORM=linux/amd64 PRIVATE='' BINARY=''
while [ $# -gt 0 ]; do
    case $1 in
    --tag) TAG=$2 ;;
    --archive) ARCHIVE=$2 ;;
    --ref) REF=$2 ;;
    --platform) PLATFORM=$2 ;;
    --private) PRIVATE=$2 ;;
    --binary) BINARY=$2 ;;
    *) die "unknown option $1" ;;
    esac
    shift 2
done
[ -n "$TAG" ] || die "--tag is required"
command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah), and docker cannot build here"

# A name as containerd's CRI resolves it: docker.io/library for a bare
# name, docker.io for a name without a registry host.
normalize() {
    local name=$1 first=${1%%/*}
    if [[ $name != */* ]]; then
        echo "docker.io/library/$name"
    elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then
        echo "$name"
    else
        echo "docker.io/$name"
    fi
}
[ -n "$REF" ] || REF=$(normalize "$TAG")

# --private: re-run in a private mount namespace with an overlay on
# /var/lib, because buildah writes its blob-info cache to
# /var/lib/containers/cache whatever --root says.
if [ -n "$PRIVATE" ] && [ -z "${IMAGES_PRIVATE_NS:-}" ]; then
    mkdir -p "$PRIVATE"
    PRIVATE=$(cd "$PRIVATE" && pwd)
    exec env IMAGES_PRIVATE_NS=1 unshare --mount --propagation private \
        bash "${BASH_SOURCE[0]}" "$KIND" --tag "$TAG" --ref "$REF" --platform "$PLATFORM" \
        --private "$PRIVATE" ${ARCHIVE:+--archive "$ARCHIVE"} ${BINARY:+--binary "$BINARY"}
fi

if [ -n "$PRIVATE" ]; then
    STATE=$PRIVATE
    mkdir -p "$STATE/varlib-upper" "$STATE/varlib-work"
    mount -t overlay overlay \
        -o "lowerdir=/var/lib,upperdir=$STATE/varlib-upper,workdir=$STATE/varlib-work" /var/lib
    BUILDAH=(buildah --root "$STATE/storage" --runroot "$STATE/run" --storage-driver vfs)
else
    STATE=$REPO/target/buildah
    BUILDAH=(buildah)
    [ -z "${BUILDAH_STORAGE_DRIVER:-}" ] || BUILDAH+=(--storage-driver "$BUILDAH_STORAGE_DRIVER")
fi
mkdir -p "$STATE/tmp" "$STATE/cni" "$STATE/context"
# buildah's own settings: no CNI config or lock in the node's
# /etc/cni/net.d, temp files (TMPDIR) not in /var/tmp.
cat >"$STATE/containers.conf" <<EOF
[network]
network_config_dir = "$STATE/cni"
EOF
export CONTAINERS_CONF=$STATE/containers.conf TMPDIR=$STATE/tmp

# buildah's default storage driver is overlay, which needs kernel-style
# whiteouts (mknod in an overlay mount); where that is refused (some
# sandboxes and nested containers) fall back to vfs rather than fail.
if [ -z "$PRIVATE" ] && [ -z "${BUILDAH_STORAGE_DRIVER:-}" ] && ! "${BUILDAH[@]}" info >/dev/null 2>"$STATE/tmp/info.err"; then
    echo "images: buildah's default storage driver fails here ($(grep -o 'Error: .*' "$STATE/tmp/info.err" | head -n1)); using vfs (set BUILDAH_STORAGE_DRIVER to choose)" >&2
    BUILDAH+=(--storage-driver vfs)
fi

# The build context and Containerfile of each kind.
case $KIND in
project)
    CONTEXT=$REPO
    FILE=$REPO/Dockerfile
    arch=${PLATFORM#*/}
    [ -x "$REPO/target/image/linux-$arch/csum-offload" ] ||
        die "target/image/linux-$arch/csum-offload is missing: make build, then stage it (make image does)"
    ;;
pause)
    CONTEXT=$STATE/context/pause
    rm -rf "$CONTEXT" && mkdir -p "$CONTEXT"
    command -v gcc >/dev/null || die "gcc is missing (apt-get install gcc libc6-dev)"
    gcc -static -Os -s -Wall -Wextra -Werror -o "$CONTEXT/pause" "$HERE/pause/pause.c"
    FILE=$CONTEXT/Containerfile
    cat >"$FILE" <<'EOF'
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
EOF
    ;;
busybox)
    CONTEXT=$STATE/context/busybox
    rm -rf "$CONTEXT" && mkdir -p "$CONTEXT/rootfs/bin" "$CONTEXT/rootfs/tmp" "$CONTEXT/rootfs/etc"
    [ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
    cp /bin/busybox "$CONTEXT/rootfs/bin/busybox"
    for app in sh nc cat echo sleep head sha256sum wc ls ip mkfifo true false id grep tee dd httpd wget mkdir cut tail ping; do
        ln -sf busybox "$CONTEXT/rootfs/bin/$app"
    done
    echo 'root:x:0:0:root:/:/bin/sh' >"$CONTEXT/rootfs/etc/passwd"
    FILE=$CONTEXT/Containerfile
    cat >"$FILE" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["/bin/sh"]
EOF
    ;;
prometheus)
    [[ -n $BINARY && -x $BINARY ]] || die "prometheus needs --binary FILE, an executable (bash e2e/tools/build.sh builds one)"
    CONTEXT=$STATE/context/prometheus
    rm -rf "$CONTEXT" && mkdir -p "$CONTEXT/rootfs/bin" "$CONTEXT/rootfs/prometheus"
    cp "$BINARY" "$CONTEXT/rootfs/bin/prometheus"
    FILE=$CONTEXT/Containerfile
    # nobody: the pod runs it as 65534 with a read-only root; its TSDB
    # lives in an emptyDir mounted on /prometheus.
    cat >"$FILE" <<'EOF'
FROM scratch
COPY rootfs/ /
USER 65534:65534
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
EOF
    ;;
*) die "unknown image kind $KIND (project, pause, busybox or prometheus)" ;;
esac

"${BUILDAH[@]}" bud --quiet --layers=false --platform "$PLATFORM" \
    -f "$FILE" -t "$TAG" "$CONTEXT" >/dev/null
echo "images: built $TAG ($KIND, $PLATFORM)"
if [ -n "$ARCHIVE" ]; then
    mkdir -p "$(dirname "$ARCHIVE")"
    rm -f "$ARCHIVE"
    "${BUILDAH[@]}" push --quiet "$TAG" "oci-archive:$ARCHIVE:$REF"
    echo "images: wrote $ARCHIVE ($REF)"
fi
