package main

import (
	"encoding/json"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func allCases() []testCase {
	cs := lifecycleCases()
	cs = append(cs,
		testCase{"gc-stale-1.1.0", func(t *T) { gcStale(t, "1.1.0") }},
		testCase{"gc-stale-1.0.0", func(t *T) { gcStale(t, "1.0.0") }},
		testCase{"convert-versions", convert},
		testCase{"error-unknown-feature", func(t *T) {
			configError(t, map[string]any{"drivers": map[string]any{"txgbe": map[string]any{"tx-csum": false}}}, 7,
				`invalid configuration: drivers.txgbe: unknown offload feature "tx-csum"`)
		}},
		testCase{"error-bad-rule", func(t *T) {
			configError(t, map[string]any{"rules": []any{map[string]any{"driver": "txgbe", "kernel": ">=six", "settings": map[string]any{}}}}, 7,
				`invalid configuration: rules[0].kernel: ">=six" is not a comparison`)
		}},
		testCase{"error-wrong-apply", func(t *T) {
			configError(t, map[string]any{"hostDriver": "txgbe", "apply": "pod"}, 7,
				`invalid configuration: apply must be "both", "container", "host" or "uplink", got "pod"`)
		}},
		testCase{"error-unknown-key", func(t *T) {
			configError(t, map[string]any{"hostInterfce": "eth0"}, 7, `invalid configuration: unknown field "hostInterfce"`)
		}},
		testCase{"status-detection-fail", statusDetection},
		testCase{"control-reformat", func(t *T) { resultControl(t, "csum-offload-reformat", false) }},
		testCase{"control-dropfield", func(t *T) { resultControl(t, "csum-offload-dropfield", true) }},
	)
	return cs
}

// gcStale: a pod the runtime no longer knows. GCNetworkList with no valid
// attachment makes libcni DEL it from its cache (every version), then
// send GC to each plugin (1.1.0 only).
func gcStale(t *T, v string) {
	e := t.env
	cni, rec := e.newCNI(e.cacheDir())
	list := t.conflist("ptp", v, map[string]any{"type": "csum-offload", "hostDriver": "txgbe"})
	p := t.newPod()
	defer p.remove()
	_, err := cni.AddNetworkList(ctx(), list, runtimeConf(p))
	t.mustCNI(err, "AddNetworkList", rec.take())
	err = cni.GCNetworkList(ctx(), list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}})
	calls := rec.take()
	t.mustCNI(err, "GCNetworkList", calls)
	want := "csum-offload DEL, portmap DEL, ptp DEL"
	if v == "1.1.0" {
		want += ", ptp GC, portmap GC, csum-offload GC"
	}
	t.check(sequence(calls) == want, "GC of a stale pod ran %s", sequence(calls))
	del := t.one(calls, "csum-offload", "DEL")
	id, _ := del.getenv("CNI_CONTAINERID")
	args, _ := del.getenv("CNI_ARGS")
	t.check(id == p.id && strings.Contains(args, "K8S_POD_NAME="+p.name), "the DEL came from the cached attachment: CNI_CONTAINERID=%s CNI_ARGS=%s", id, args)
	t.check(!exists(e.cacheFile(list.Name, p)), "the cache entry is gone")
	t.check(len(ipamHeld(e.ipamDir(), p.id)) == 0, "host-local released the address")
}

// convert: csum-offload given a prevResult of another version than its
// config (libcni's AddNetwork with a prevResult in the entry) converts it
// as documented; identity of bytes does not apply then.
func convert(t *T) {
	e := t.env
	cni, rec := e.newCNI(e.cacheDir())
	list := t.conflist("ptp", "0.4.0", map[string]any{"type": "csum-offload", "hostDriver": "txgbe"})
	p := t.newPod()
	defer p.remove()
	rt := runtimeConf(p)
	rt.CapabilityArgs = nil
	_, err := cni.AddNetworkList(ctx(), list, rt)
	calls := rec.take()
	t.mustCNI(err, "AddNetworkList 0.4.0", calls)
	prev := t.one(calls, "csum-offload", "ADD").stdout
	for _, step := range []struct{ to string }{{"1.0.0"}, {"0.3.1"}, {"1.1.0"}} {
		var pv struct {
			CNIVersion string `json:"cniVersion"`
		}
		_ = json.Unmarshal(prev, &pv)
		conf := map[string]any{"cniVersion": step.to, "name": e.prefix + "-conv", "type": "csum-offload", "hostDriver": "txgbe", "prevResult": json.RawMessage(prev)}
		b, _ := json.Marshal(conf)
		pc, err := libcni.ConfFromBytes(b)
		t.must(err, "ConfFromBytes")
		crt := *rt
		crt.ContainerID = p.id + "-c" + strings.ReplaceAll(step.to, ".", "")
		res, err := cni.AddNetwork(ctx(), pc, &crt)
		calls := rec.take()
		t.mustCNI(err, "AddNetwork "+pv.CNIVersion+" -> "+step.to, calls)
		co := t.one(calls, "csum-offload", "ADD")
		ev, err := sameResult(prev, co.stdout, step.to)
		t.check(err == nil && res.Version() == step.to, "prevResult %s in a %s config: %s%s", pv.CNIVersion, step.to, ev, errOrNil(err))
		_, err = identityBytes(co)
		t.check(err != nil, "the bytes differ, as they must across versions: %s", errOrNil(err))
		err = cni.DelNetwork(ctx(), pc, &crt)
		rec.take()
		t.check(err == nil, "DelNetwork %s", errOrNil(err))
		prev = co.stdout
	}
	err = cni.DelNetworkList(ctx(), list, rt)
	rec.take()
	t.check(err == nil, "DelNetworkList %s", errOrNil(err))
}

// configError: an entry users get wrong fails the ADD with its documented
// code, as the *types.Error libcni returns; the runtime's DEL that follows
// still succeeds (DEL never fails on the plugin's own settings), so
// host-local releases the address.
func configError(t *T, fields map[string]any, wantCode uint, wantMsg string) {
	e := t.env
	cni, rec := e.newCNI(e.cacheDir())
	entry := map[string]any{"type": "csum-offload"}
	for k, v := range fields {
		entry[k] = v
	}
	list := t.conflist("ptp", "1.0.0", entry)
	p := t.newPod()
	defer p.remove()
	rt := runtimeConf(p)
	_, err := cni.AddNetworkList(ctx(), list, rt)
	calls := rec.take()
	te, ok := cniError(err)
	t.check(ok && te.Code == wantCode, "ADD fails with *types.Error code %v (want %d)", code(te), wantCode)
	t.check(ok && strings.HasPrefix(te.Msg, wantMsg), "msg %q starts with %q", msgOf(te), wantMsg)
	t.check(sequence(calls) == "ptp ADD, portmap ADD, csum-offload ADD", "ADD ran %s", sequence(calls))
	t.check(!exists(e.cacheFile(list.Name, p)), "libcni cached no result for the failed ADD")
	err = cni.DelNetworkList(ctx(), list, rt)
	calls = rec.take()
	t.check(err == nil && sequence(calls) == "csum-offload DEL, portmap DEL, ptp DEL", "the runtime's DEL succeeds: %s %s", sequence(calls), errOrNil(err))
	t.check(len(ipamHeld(e.ipamDir(), p.id)) == 0, "host-local released the address")
}

func msgOf(te *types.Error) string {
	if te == nil {
		return ""
	}
	return te.Msg
}

// statusDetection: STATUS is the one verb that fails on detection (code
// 50) under detectionFailure "fail"; "skip" is ready; libcni sends STATUS
// only at 1.1.0.
func statusDetection(t *T) {
	e := t.env
	cni, rec := e.newCNI(e.cacheDir())
	mk := func(v, policy string) *libcni.NetworkConfigList {
		b, _ := json.Marshal(map[string]any{"cniVersion": v, "name": e.prefix + "-status", "plugins": []any{
			map[string]any{"type": "csum-offload", "hostInterface": "nope0", "detectionFailure": policy},
		}})
		l, err := libcni.NetworkConfFromBytes(b)
		t.must(err, "conflist")
		return l
	}
	err := cni.GetStatusNetworkList(ctx(), mk("1.1.0", "fail"))
	calls := rec.take()
	te, ok := cniError(err)
	t.check(ok && te.Code == 50, "1.1.0, detectionFailure fail: *types.Error code %v: %s (%s)", code(te), msgOf(te), sequence(calls))
	t.check(strings.Contains(msgOf(te), `hostInterface "nope0" does not exist`), "the message names the cause")
	err = cni.GetStatusNetworkList(ctx(), mk("1.1.0", "skip"))
	calls = rec.take()
	t.check(err == nil && len(calls) == 1, "1.1.0, detectionFailure skip: ready (%s) %s", sequence(calls), errOrNil(err))
	err = cni.GetStatusNetworkList(ctx(), mk("1.0.0", "fail"))
	calls = rec.take()
	t.check(err == nil && len(calls) == 0, "1.0.0: libcni sends no STATUS: %s %s", sequence(calls), errOrNil(err))
}

// resultControl: a wrapper that runs the real csum-offload and then
// reformats (same JSON) or drops a field. The byte identity check must
// catch both; the field-by-field check must pass the reformat (it is not
// a byte compare in disguise) and catch the dropped field.
func resultControl(t *T, wrapper string, drops bool) {
	e := t.env
	cni, rec := e.newCNI(e.cacheDir())
	list := t.conflist("ptp", "1.0.0", map[string]any{"type": wrapper, "hostDriver": "txgbe"})
	p := t.newPod()
	defer p.remove()
	rt := runtimeConf(p)
	_, err := cni.AddNetworkList(ctx(), list, rt)
	calls := rec.take()
	t.mustCNI(err, "AddNetworkList through "+wrapper, calls)
	w := t.one(calls, wrapper, "ADD")
	_, err = identityBytes(w)
	t.check(err != nil, "identity check catches %s: %s", wrapper, errOrNil(err))
	prev, _ := w.stdinField("prevResult")
	_, err = sameResult(prev, w.stdout, "1.0.0")
	if drops {
		t.check(err != nil && strings.Contains(err.Error(), "missing routes"), "field check catches the dropped field: %s", errOrNil(err))
	} else {
		t.check(err == nil, "field check passes the reformatted result %s", errOrNil(err))
	}
	err = cni.DelNetworkList(ctx(), list, rt)
	rec.take()
	t.check(err == nil, "DelNetworkList %s", errOrNil(err))
}
