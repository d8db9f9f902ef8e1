package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// call is one plugin execution as libcni made it: what the plugin got
// (stdin, environment) and what it answered. Only the plugins libcni runs
// itself are seen (not host-local, which ptp and bridge run).
type call struct {
	plugin string // the executable's base name
	cmd    string // CNI_COMMAND
	env    []string
	stdin  []byte
	stdout []byte
	stderr string
	err    error
}

func (c *call) getenv(k string) (string, bool) {
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v, true
		}
	}
	return "", false
}

// stdinField is one top-level key of the stdin object, as its exact bytes.
func (c *call) stdinField(k string) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(c.stdin, &m) != nil {
		return nil, false
	}
	v, ok := m[k]
	return v, ok
}

// recorder is a libcni invoke.Exec that runs the plugins for real
// (invoke.RawExec, the executor libcni uses by default) and keeps every
// call.
type recorder struct {
	mu    sync.Mutex
	calls []*call
}

func (r *recorder) ExecPlugin(ctx context.Context, path string, stdin []byte, env []string) ([]byte, error) {
	var stderr bytes.Buffer
	raw := &invoke.RawExec{Stderr: &stderr}
	out, err := raw.ExecPlugin(ctx, path, stdin, env)
	c := &call{plugin: filepath.Base(path), env: env, stdin: stdin, stdout: out, err: err}
	c.cmd, _ = c.getenv("CNI_COMMAND")
	c.stderr = stderr.String()
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return out, err
}

func (r *recorder) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (r *recorder) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

// take returns the calls since the last take and forgets them.
func (r *recorder) take() []*call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// sequence is "ptp ADD, portmap ADD, ..." for evidence lines.
func sequence(calls []*call) string {
	var s []string
	for _, c := range calls {
		s = append(s, c.plugin+" "+c.cmd)
	}
	if len(s) == 0 {
		return "(no plugin executed)"
	}
	return strings.Join(s, ", ")
}

// find returns the calls of one plugin with one command.
func find(calls []*call, plugin, cmd string) []*call {
	var out []*call
	for _, c := range calls {
		if c.plugin == plugin && c.cmd == cmd {
			out = append(out, c)
		}
	}
	return out
}

// newCNI is a libcni client as a runtime makes one: CNI_PATH, a cache dir
// (where the results and configs of ADD are kept for CHECK, DEL and GC)
// and the executor.
func (e *Env) newCNI(cacheDir string) (*libcni.CNIConfig, *recorder) {
	rec := &recorder{}
	return libcni.NewCNIConfigWithCacheDir([]string{e.binDir}, cacheDir, rec), rec
}
