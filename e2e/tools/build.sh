#!/usr/bin/env bash
# Builds the pinned test tools of this module (go.mod, go.sum) into
# target/tools/<key>/bin, where <key> hashes go.mod, go.sum, this script,
# the sources in cmd/ and the Go version: a second run with the same inputs builds nothing.
# Prints the bin dir on stdout (last line); progress and times on stderr.
# With package arguments (bash e2e/tools/build.sh helm.sh/helm/v4/cmd/helm)
# it builds only those, into a bin dir of their own (manifests/check.sh
# needs helm, not a cluster).
#
# The tools: a Kubernetes control plane and kubelet (k8s.io/kubernetes),
# etcd, containerd 2.x with its runc shim, crictl, the reference CNI
# plugins, helm, Prometheus (the in-cluster one of make e2e-k8s) and the
# test clients in cmd/. runc itself is Debian's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Go is for test tools only; the machines have it in /usr/local/go.
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "tools: go is not installed (Go 1.26 is expected in /usr/local/go)" >&2; exit 1; }
root=$(cd "$here/../.." && pwd)
cd "$here"

# Go's own caches stay where Go keeps them (shared by every checkout on
# the machine); the binaries go under the checkout's target/.
gover=$(go env GOVERSION)
key=$( { cat go.mod go.sum build.sh; find cmd -type f -name '*.go' | LC_ALL=C sort | xargs cat; echo "$gover" "$@"; } |
    sha256sum | cut -c1-16)
out=$root/target/tools/$key
bin=$out/bin
if [ -f "$out/.complete" ]; then
    echo "tools: up to date in $bin (key $key)" >&2
    echo "$bin"
    exit 0
fi

pkgs=(
    k8s.io/kubernetes/cmd/kube-apiserver
    k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler
    k8s.io/kubernetes/cmd/kubelet
    k8s.io/kubernetes/cmd/kubectl
    github.com/containerd/containerd/v2/cmd/containerd
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
    github.com/containerd/containerd/v2/cmd/ctr
    sigs.k8s.io/cri-tools/cmd/crictl
    helm.sh/helm/v4/cmd/helm
    github.com/prometheus/prometheus/cmd/prometheus
    github.com/containernetworking/plugins/plugins/main/bridge
    github.com/containernetworking/plugins/plugins/main/ptp
    github.com/containernetworking/plugins/plugins/main/loopback
    github.com/containernetworking/plugins/plugins/ipam/host-local
    github.com/containernetworking/plugins/plugins/meta/portmap
    github.com/containernetworking/plugins/plugins/meta/tuning
    ./cmd/...
)
[ $# -eq 0 ] || pkgs=("$@")
rm -rf "$out" && mkdir -p "$bin"
start=$(date +%s)
echo "tools: building ${#pkgs[@]} packages with $gover into $bin (cold builds take many minutes on 2 cores)" >&2
# Static, no cgo: the kubelet and the plugins are built this way upstream;
# containerd's btrfs snapshotter is the one part that needs cgo (unused).
# Prometheus with no service discovery but Kubernetes' (and the static
# and file ones it always has): its other SDs' cloud SDKs stay unbuilt.
# The versions the programs report (kubectl version, kubelet's node
# status, containerd's, crictl's), which a release build stamps.
v() { go list -m -f '{{.Version}}' "$1"; }
k8s=$(v k8s.io/kubernetes)
minor=${k8s#v1.}
minor=${minor%%.*}
# Prometheus' Go module v0.MMm.p is its release M.Mm.p (v0.316.0 is 3.16.0).
prom=$(v github.com/prometheus/prometheus)
prom=${prom#v0.}
prom=$((${prom%%.*} / 100)).$((${prom%%.*} % 100)).${prom#*.}
ldflags="-s -w
 -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1
 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=1
 -X k8s.io/client-go/pkg/version.gitMinor=$minor
 -X github.com/containerd/containerd/v2/version.Version=$(v github.com/containerd/containerd/v2)
 -X sigs.k8s.io/cri-tools/pkg/version.Version=$(v sigs.k8s.io/cri-tools)
 -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(v github.com/containernetworking/plugins)
 -X helm.sh/helm/v4/internal/version.version=$(v helm.sh/helm/v4)
 -X github.com/prometheus/common/version.Version=$prom"
CGO_ENABLED=0 GOFLAGS='-mod=readonly -buildvcs=false' go build -trimpath -tags no_btrfs,remove_all_sd,enable_kubernetes_sd -ldflags "${ldflags//$'\n'/}" -o "$bin/" "${pkgs[@]}"
touch "$out/.complete"
echo "tools: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
