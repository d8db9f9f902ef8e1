package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// The result checks. csum-offload documents (docs/configuration.md, ADD
// step 3) that its output is prevResult byte for byte when prevResult has
// the config's cniVersion, and otherwise prevResult converted the way
// libcni converts (ips[].version added before 1.0.0, removed from 1.0.0
// on, cniVersion set, every other field kept). The negative controls run
// these same functions on wrappers that break the promise.

func short(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes, sha256 %x...", len(b), sum[:6])
}

// identityBytes: the plugin's stdout is the prevResult of its stdin, byte
// for byte.
func identityBytes(c *call) (string, error) {
	prev, ok := c.stdinField("prevResult")
	if !ok {
		return "", fmt.Errorf("%s %s: stdin has no prevResult", c.plugin, c.cmd)
	}
	if !bytes.Equal(c.stdout, prev) {
		at := 0
		for at < len(prev) && at < len(c.stdout) && prev[at] == c.stdout[at] {
			at++
		}
		return "", fmt.Errorf("stdout (%s) differs from prevResult (%s) from byte %d", short(c.stdout), short(prev), at)
	}
	return fmt.Sprintf("stdout == prevResult byte for byte (%s)", short(prev)), nil
}

// convertLikeLibcni is the documented conversion of a result to version v.
func convertLikeLibcni(r map[string]any, v string) map[string]any {
	out := map[string]any{}
	for k, val := range r {
		out[k] = val
	}
	out["cniVersion"] = v
	ips, _ := out["ips"].([]any)
	var conv []any
	for _, ip := range ips {
		m, ok := ip.(map[string]any)
		if !ok {
			conv = append(conv, ip)
			continue
		}
		n := map[string]any{}
		for k, val := range m {
			n[k] = val
		}
		if strings.HasPrefix(v, "0.") {
			if _, has := n["version"]; !has {
				addr, _ := n["address"].(string)
				if strings.Contains(addr, ":") {
					n["version"] = "6"
				} else {
					n["version"] = "4"
				}
			}
		} else {
			delete(n, "version")
		}
		conv = append(conv, n)
	}
	if ips != nil {
		out["ips"] = conv
	}
	return out
}

// sameResult: out is prev, converted to version v if prev has another
// version, field by field (JSON values, not bytes).
func sameResult(prev, out []byte, v string) (string, error) {
	var p, o map[string]any
	if err := json.Unmarshal(prev, &p); err != nil {
		return "", fmt.Errorf("prevResult is not a JSON object: %v", err)
	}
	if err := json.Unmarshal(out, &o); err != nil {
		return "", fmt.Errorf("output is not a JSON object: %v (%q)", err, out)
	}
	want := convertLikeLibcni(p, v)
	if reflect.DeepEqual(want, o) {
		keys := make([]string, 0, len(o))
		for k := range o {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return fmt.Sprintf("output equals prevResult as %s, field by field (keys %s)", v, strings.Join(keys, ",")), nil
	}
	var diff []string
	for k, w := range want {
		if g, ok := o[k]; !ok {
			diff = append(diff, "missing "+k)
		} else if !reflect.DeepEqual(g, w) {
			diff = append(diff, "changed "+k)
		}
	}
	for k := range o {
		if _, ok := want[k]; !ok {
			diff = append(diff, "added "+k)
		}
	}
	sort.Strings(diff)
	return "", fmt.Errorf("output is not prevResult as %s: %s", v, strings.Join(diff, ", "))
}
