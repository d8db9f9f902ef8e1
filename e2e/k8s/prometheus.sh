# shellcheck shell=bash disable=SC2317 # helpers are called through wait_until
# A real Prometheus inside the local cluster, for operator.sh: the one
# e2e/tools builds from the pinned module (Kubernetes discovery only),
# packaged FROM scratch by e2e/images/build.sh and imported into every
# node with the other images (cluster.sh). It runs as a Deployment in its
# own namespace with a ServiceAccount that may only get, list and watch
# pods in $NS, finds the agents with kubernetes_sd (role pod) through the
# chart's prometheus.io annotations, and evaluates the chart's rules.
#
# Why hostNetwork: in this lab the nodes' own traffic over the uplink
# crosses brokennic, the wire that leaves partial checksums unfinished
# (the field report's NIC), and the chart's policy fixes pods' veths, not
# the node's stack. A Prometheus on the pod network would be answered by
# the other node's agent over that wire, and those answers arrive with bad
# checksums; in the node's netns it reaches both agents (and the API
# server) over the control link, eth1.
#
# How the suite queries it: through the API server's service proxy
# (kubectl get --raw .../services/prometheus:web/proxy/...), with the
# admin's credentials. It needs no port-forward process to start and
# stop, no exec into an image that has no shell, and the API server
# reaches the pod's IP (its node's control address) directly.

PROM_NAMESPACE=csum-monitoring
PROM_PORT=19090

# A PromQL instant query; prints the result vector as JSON.
promql() {
    local q
    q=$(jq -rn --arg q "$1" '$q | @uri')
    k get --request-timeout=5s --raw \
        "/api/v1/namespaces/$PROM_NAMESPACE/services/prometheus:web/proxy/api/v1/query?query=$q" | jq -c '.data.result'
}

# The manifests: RBAC, the config and rules, the Deployment and the
# Service the suite queries through. Every `for:` of the rules is set to
# 0 s so the run sees each alert's expression fire instead of waiting
# minutes.
prometheus_manifests() {
    local scrape=2s
    cat <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $PROM_NAMESPACE
  labels:
    # hostNetwork (see e2e/k8s/prometheus.sh) is beyond "baseline".
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: prometheus, namespace: $PROM_NAMESPACE}
---
# Least privilege: read the pods of the agents' namespace, nothing else
# (no nodes, no nodes/proxy, no secrets, no cluster-wide list).
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: csum-offload-prometheus, namespace: $NS}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: csum-offload-prometheus, namespace: $NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: csum-offload-prometheus}
subjects:
  - {kind: ServiceAccount, name: prometheus, namespace: $PROM_NAMESPACE}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: prometheus, namespace: $PROM_NAMESPACE}
data:
  prometheus.yml: |
    global: {scrape_interval: $scrape, evaluation_interval: $scrape}
    rule_files: [/etc/prometheus/rules.yaml]
    scrape_configs:
      - job_name: csum-offload
        kubernetes_sd_configs:
          - role: pod
            # The cluster has no Service routing (no kube-proxy), so not
            # kubernetes.default: the API server's address, with the
            # ServiceAccount's token and the cluster CA.
            api_server: https://$API_IP:$API_PORT
            tls_config: {ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt}
            authorization: {credentials_file: /var/run/secrets/kubernetes.io/serviceaccount/token}
            namespaces: {names: [$NS]}
        relabel_configs:
          # What the chart's pod annotations say (metrics.podAnnotations).
          - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
            regex: "true"
            action: keep
          - source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_annotation_prometheus_io_port]
            regex: (.+);([0-9]+)
            replacement: \$1:\$2
            target_label: __address__
          - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
            regex: (.+)
            target_label: __metrics_path__
          - source_labels: [__meta_kubernetes_pod_node_name]
            target_label: node
          - source_labels: [__meta_kubernetes_pod_name]
            target_label: pod
  rules.yaml: |
$(sed -E 's/^( +)for: .*/\1for: 0s/; s/^/    /' "$CHART/files/alerts.yaml")
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: prometheus, namespace: $PROM_NAMESPACE}
spec:
  replicas: 1
  selector: {matchLabels: {app: prometheus}}
  template:
    metadata: {labels: {app: prometheus}}
    spec:
      serviceAccountName: prometheus
      hostNetwork: true
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        runAsGroup: 65534
        fsGroup: 65534
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: prometheus
          image: $PROMETHEUS_IMAGE
          imagePullPolicy: Never
          # Its own address only (the node's, hostNetwork), not every one.
          args: [--config.file=/etc/prometheus/prometheus.yml, --storage.tsdb.path=/prometheus,
                 "--web.listen-address=\$(POD_IP):$PROM_PORT", --storage.tsdb.retention.time=1h]
          env:
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
          ports: [{name: web, containerPort: $PROM_PORT}]
          readinessProbe:
            httpGet: {path: /-/ready, port: web}
            periodSeconds: 2
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: config, mountPath: /etc/prometheus, readOnly: true}
            - {name: data, mountPath: /prometheus}
      volumes:
        - {name: config, configMap: {name: prometheus}}
        - {name: data, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: prometheus, namespace: $PROM_NAMESPACE}
spec:
  selector: {app: prometheus}
  ports: [{name: web, port: $PROM_PORT, targetPort: web}]
YAML
}

start_prometheus() {
    local pod
    mkdir -p "$PROM_DIR"
    prometheus_manifests >"$PROM_DIR/prometheus.yaml"
    k apply -f "$PROM_DIR/prometheus.yaml" >/dev/null
    k -n "$PROM_NAMESPACE" rollout status deploy/prometheus --timeout=120s >/dev/null
    prom_ready() { k get --request-timeout=5s --raw "/api/v1/namespaces/$PROM_NAMESPACE/services/prometheus:web/proxy/-/ready" >/dev/null 2>&1; }
    wait_until 60 "Prometheus ready through the API server's service proxy" prom_ready
    pod=$(k -n "$PROM_NAMESPACE" get pods -l app=prometheus -o jsonpath='{.items[0].metadata.name} on {.items[0].spec.nodeName} at {.items[0].status.podIP}')
    echo "   Prometheus $(prometheus_version) in the cluster: pod $pod:$PROM_PORT, ServiceAccount $PROM_NAMESPACE/prometheus (get/list/watch pods in $NS only)"
}

prometheus_version() {
    k get --request-timeout=5s --raw "/api/v1/namespaces/$PROM_NAMESPACE/services/prometheus:web/proxy/api/v1/status/buildinfo" | jq -r '.data.version'
}

# Its log into PROM_DIR (the run's diagnostics), then it goes.
stop_prometheus() {
    [ -f "$PROM_DIR/prometheus.yaml" ] || return 0
    k -n "$PROM_NAMESPACE" logs deploy/prometheus --tail=200 --request-timeout=10s >"$PROM_DIR/prometheus.log" 2>&1 || true
    k delete --wait=true --timeout=60s -f "$PROM_DIR/prometheus.yaml" >/dev/null 2>&1 || true
    rm -f "$PROM_DIR/prometheus.yaml"
}
