package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

var versions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

func ge(v, w string) bool {
	ok, err := version.GreaterThanOrEqualTo(v, w)
	return err == nil && ok
}

// ctx bounds one libcni call (all the plugins it runs).
func ctx() context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	time.AfterFunc(21*time.Second, cancel)
	return c
}

func (e *Env) ipamDir() string  { return filepath.Join(e.workDir, "ipam") }
func (e *Env) cacheDir() string { return filepath.Join(e.workDir, "cache") }

// conflist is the chain a runtime would load: ptp or bridge (with
// host-local), portmap, then the csum-offload entry (or a wrapper).
func (t *T) conflist(kind, v string, entry map[string]any) *libcni.NetworkConfigList {
	ipam := map[string]any{
		"type":    "host-local",
		"dataDir": t.env.ipamDir(),
		"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
	}
	var main map[string]any
	switch kind {
	case "ptp":
		ipam["ranges"] = []any{[]any{map[string]any{"subnet": "10.77.1.0/24"}}}
		main = map[string]any{"type": "ptp", "ipMasq": false, "mtu": 1500, "ipam": ipam}
	case "bridge":
		ipam["ranges"] = []any{[]any{map[string]any{"subnet": "10.77.2.0/24"}}}
		main = map[string]any{"type": "bridge", "bridge": t.env.prefix + "br0", "isGateway": true, "ipMasq": false, "ipam": ipam}
	default:
		panic("chain kind " + kind)
	}
	plugins := []any{main, map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}}}
	if entry != nil {
		plugins = append(plugins, entry)
	}
	b, err := json.Marshal(map[string]any{"cniVersion": v, "name": t.env.prefix + "-" + kind, "plugins": plugins})
	t.must(err, "marshal conflist")
	list, err := libcni.NetworkConfFromBytes(b)
	t.must(err, "libcni parses the conflist")
	return list
}

// runtimeConf is what a runtime passes for one pod: CNI_ARGS as kubelet's
// CRI runtimes set them, and a port mapping for portmap's capability.
func runtimeConf(p *pod) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.id,
		NetNS:       p.path,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "true"},
			{"K8S_POD_NAMESPACE", "lcni"},
			{"K8S_POD_NAME", p.name},
		},
		CapabilityArgs: map[string]any{
			"portMappings": []any{map[string]any{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}},
		},
	}
}

// cniError is the *types.Error libcni returns for a plugin's error object.
func cniError(err error) (*types.Error, bool) {
	var te *types.Error
	if errors.As(err, &te) {
		return te, true
	}
	return nil, false
}

// mustCNI ends the case on a libcni error, with the failing plugin's
// stderr as evidence.
func (t *T) mustCNI(err error, what string, calls []*call) {
	if err == nil {
		return
	}
	for _, c := range calls {
		if c.err != nil && c.stderr != "" {
			t.note("%s %s stderr: %s", c.plugin, c.cmd, strings.TrimSpace(c.stderr))
		}
	}
	t.must(err, what)
}

// one returns the single call of plugin/cmd, or fails the case.
func (t *T) one(calls []*call, plugin, cmd string) *call {
	f := find(calls, plugin, cmd)
	if len(f) != 1 {
		t.must(fmt.Errorf("%d %s %s calls in [%s]", len(f), plugin, cmd, sequence(calls)), "find the call")
	}
	return f[0]
}

func (e *Env) cacheFile(list string, p *pod) string {
	return filepath.Join(e.cacheDir(), "results", list+"-"+p.id+"-eth0")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// txOnBothEnds asserts tx-checksumming on the pod's eth0 and on its host
// peer (found from the kernel).
func (t *T) txOnBothEnds(p *pod, want string) {
	got, err := feature(p.name, "eth0", "tx-checksumming")
	t.check(err == nil && got == want, "pod %s eth0: ethtool -k says tx-checksumming: %s (want %s) %v", p.name, got, want, errOrNil(err))
	peer, err := hostPeer(p, "eth0")
	if !t.check(err == nil, "host end of eth0 found from the kernel: %s %v", peer, errOrNil(err)) {
		return
	}
	got, err = feature("", peer, "tx-checksumming")
	t.check(err == nil && got == want, "host %s: ethtool -k says tx-checksumming: %s (want %s) %v", peer, got, want, errOrNil(err))
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}

// writeWrappers puts the negative controls' plugins into CNI_PATH: each
// runs the real csum-offload and then breaks its promise in one way.
func (e *Env) writeWrappers() error {
	w := map[string]string{
		// Same JSON, other bytes: keys sorted and indented.
		"csum-offload-reformat": `/usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True, indent=1))'`,
		// Drops one field of the result.
		"csum-offload-dropfield": `/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop("routes"); print(json.dumps(d))'`,
	}
	for name, filter := range w {
		script := `#!/bin/sh
# Negative control of libcni-e2e: the real csum-offload, its result then
# passed through: ` + filter + `
out=$("$(dirname "$0")/csum-offload")
rc=$?
if [ "$rc" -eq 0 ] && [ -n "$out" ]; then
    printf '%s' "$out" | ` + filter + `
else
    printf '%s' "$out"
fi
exit "$rc"
`
		if err := os.WriteFile(filepath.Join(e.binDir, name), []byte(script), 0o755); err != nil {
			return err
		}
	}
	return nil
}
