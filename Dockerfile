# The csum-offload image: one static binary, nothing else. The DaemonSet
# runs `csum-offload install`, which copies this same binary into the
# node's CNI bin dir, so the image must hold a binary that runs on any
# host distro: `make build` makes it static (static-pie, glibc linked in).
#
# Built by `make image`, which stages the binary at
# target/image/<os>-<arch>/csum-offload. Multi-arch: stage one binary per
# platform (e.g. linux-amd64, linux-arm64) and run
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE .
# BuildKit sets TARGETOS/TARGETARCH per platform; the defaults below serve
# the classic builder.
FROM scratch
ARG TARGETOS=linux
ARG TARGETARCH=amd64
COPY target/image/${TARGETOS}-${TARGETARCH}/csum-offload /csum-offload
# uid 0 without capabilities: the host's CNI directories belong to root
# (see manifests/daemonset.yaml for the securityContext).
USER 0:0
# No HEALTHCHECK: Kubernetes ignores it; the DaemonSet's readiness probe
# (`csum-offload install --check`) is the health signal.
# checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the DaemonSet has a readiness probe
ENTRYPOINT ["/csum-offload"]
CMD ["install"]
LABEL org.opencontainers.image.title="csum-offload" \
      org.opencontainers.image.description="CNI chained plugin and its DaemonSet installer: veth checksum offload by host NIC driver" \
      org.opencontainers.image.licenses="Apache-2.0"
