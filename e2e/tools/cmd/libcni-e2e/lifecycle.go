package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// lifecycle: one pod through every verb libcni has, at one version, as a
// runtime drives it: VALIDATE, ADD, CHECK (with drift), STATUS, GC that
// keeps the pod, DEL.
func lifecycle(t *T, kind, v string) {
	e := t.env
	cni, rec := e.newCNI(e.cacheDir())
	entry := map[string]any{"type": "csum-offload", "hostDriver": "txgbe", "capabilities": map[string]any{"portMappings": true}}
	list := t.conflist(kind, v, entry)
	p := t.newPod()
	defer p.remove()
	rt := runtimeConf(p)

	_, err := cni.ValidateNetworkList(ctx(), list)
	t.check(err == nil, "ValidateNetworkList: every plugin's VERSION accepts %s %s", v, errOrNil(err))
	rec.take()

	// ADD
	res, err := cni.AddNetworkList(ctx(), list, rt)
	calls := rec.take()
	t.mustCNI(err, "AddNetworkList", calls)
	want := kind + " ADD, portmap ADD, csum-offload ADD"
	t.check(sequence(calls) == want, "ADD ran %s", sequence(calls))
	co := t.one(calls, "csum-offload", "ADD")
	pm := t.one(calls, "portmap", "ADD")
	cv, _ := co.stdinField("cniVersion")
	t.check(string(cv) == `"`+v+`"`, "csum-offload got cniVersion %s from the list", cv)
	ev, err := identityBytes(co)
	t.check(err == nil, "prevResult identity: %s%s", ev, errOrNil(err))
	prev, _ := co.stdinField("prevResult")
	ev, err = sameResult(pm.stdout, prev, v)
	t.check(err == nil, "csum-offload's prevResult is portmap's output: %s%s", ev, errOrNil(err))
	final, _ := json.Marshal(res)
	ev, err = sameResult(co.stdout, final, v)
	t.check(err == nil && res.Version() == v, "libcni's result (version %s) is csum-offload's output: %s%s", res.Version(), ev, errOrNil(err))
	if r, err := current.NewResultFromResult(res); t.check(err == nil && len(r.IPs) == 1, "result has one IP %v", errOrNil(err)) {
		addr := r.IPs[0].Address.String()
		t.check(strings.Contains(podAddrs(p, "eth0"), " "+addr+" "), "pod eth0 holds the result's address %s", addr)
	}
	rc, _ := co.stdinField("runtimeConfig")
	t.check(strings.Contains(string(rc), `"hostPort":18080`), "runtimeConfig reached csum-offload (it declares portMappings): %s", rc)
	_, ptpRC := t.one(calls, kind, "ADD").stdinField("runtimeConfig")
	t.check(!ptpRC, "libcni gave no runtimeConfig to %s (no capabilities)", kind)
	args, _ := co.getenv("CNI_ARGS")
	t.check(args == "IgnoreUnknown=true;K8S_POD_NAMESPACE=lcni;K8S_POD_NAME="+p.name, "CNI_ARGS=%s", args)
	cache := e.cacheFile(list.Name, p)
	t.check(exists(cache), "libcni cached the result in %s", cache)
	cached, err := cni.GetNetworkListCachedResult(list, rt)
	if t.check(err == nil && cached != nil, "GetNetworkListCachedResult %s", errOrNil(err)) {
		cb, _ := json.Marshal(cached)
		ev, err = sameResult(co.stdout, cb, v)
		t.check(err == nil, "cached result is csum-offload's output: %s%s", ev, errOrNil(err))
	}
	t.txOnBothEnds(p, "off")

	// CHECK
	err = cni.CheckNetworkList(ctx(), list, rt)
	calls = rec.take()
	if ge(v, "0.4.0") {
		t.mustCNI(err, "CheckNetworkList", calls)
		t.check(sequence(calls) == kind+" CHECK, portmap CHECK, csum-offload CHECK", "CHECK ran %s", sequence(calls))
		ck := t.one(calls, "csum-offload", "CHECK")
		cp, _ := ck.stdinField("prevResult")
		ev, err = sameResult(co.stdout, cp, v)
		t.check(err == nil && len(ck.stdout) == 0, "CHECK got the cached result as prevResult (%s), printed %d bytes %s", ev, len(ck.stdout), errOrNil(err))
		_, err = run("ip", "netns", "exec", p.name, "ethtool", "-K", "eth0", "tx", "on")
		t.must(err, "drift: ethtool -K eth0 tx on in the pod")
		err = cni.CheckNetworkList(ctx(), list, rt)
		rec.take()
		te, ok := cniError(err)
		t.check(ok && te.Code == 101, "CHECK after drift: *types.Error code %d: %v", code(te), err)
		_, err = run("ip", "netns", "exec", p.name, "ethtool", "-K", "eth0", "tx", "off")
		t.must(err, "undo drift")
		err = cni.CheckNetworkList(ctx(), list, rt)
		rec.take()
		t.check(err == nil, "CHECK after undoing the drift passes %s", errOrNil(err))
	} else {
		t.check(errors.Is(err, libcni.ErrorCheckNotSupp) && len(calls) == 0,
			"libcni refuses CHECK at %s without running a plugin: %v; %s", v, err, sequence(calls))
	}

	// STATUS
	err = cni.GetStatusNetworkList(ctx(), list)
	calls = rec.take()
	if ge(v, "1.1.0") {
		t.check(err == nil && sequence(calls) == kind+" STATUS, portmap STATUS, csum-offload STATUS", "STATUS ran %s %s", sequence(calls), errOrNil(err))
	} else {
		t.check(err == nil && len(calls) == 0, "libcni sends no STATUS at %s: %s %s", v, sequence(calls), errOrNil(err))
	}

	// GC with this pod among the valid attachments: nothing is deleted.
	err = cni.GCNetworkList(ctx(), list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: p.id, IfName: "eth0"}}})
	calls = rec.take()
	t.check(err == nil, "GCNetworkList with the pod valid %s", errOrNil(err))
	t.check(len(find(calls, "csum-offload", "DEL")) == 0 && exists(cache), "GC deleted nothing: the cache entry stays, no DEL ran")
	if ge(v, "1.1.0") {
		gc := t.one(calls, "csum-offload", "GC")
		va, _ := gc.stdinField("cni.dev/valid-attachments")
		t.check(strings.Contains(string(va), p.id) && len(gc.stdout) == 0, "csum-offload GC got cni.dev/valid-attachments %s", va)
	} else {
		t.check(len(calls) == 0, "libcni sends no GC at %s: %s", v, sequence(calls))
	}

	// DEL
	peer, _ := hostPeer(p, "eth0")
	err = cni.DelNetworkList(ctx(), list, rt)
	calls = rec.take()
	t.mustCNI(err, "DelNetworkList", calls)
	t.check(sequence(calls) == "csum-offload DEL, portmap DEL, "+kind+" DEL", "DEL ran %s", sequence(calls))
	_, hasPrev := t.one(calls, "csum-offload", "DEL").stdinField("prevResult")
	t.check(hasPrev == ge(v, "0.4.0"), "csum-offload's DEL got prevResult: %v (libcni sends the cached result from 0.4.0 on)", hasPrev)
	t.check(!exists(cache), "libcni removed its cache entry")
	t.check(peer != "" && !linkExists(peer), "host end %s is gone", peer)
	held := ipamHeld(e.ipamDir(), p.id)
	t.check(len(held) == 0, "host-local holds no address for the pod %v", held)
}

func code(te *types.Error) any {
	if te == nil {
		return "(not a *types.Error)"
	}
	return te.Code
}

// driverControl: the same chain under hostDriver i40e, for which the
// built-in table changes nothing. TX checksumming must stay on: the
// features check reads the kernel and can fail.
func driverControl(t *T) {
	e := t.env
	cni, rec := e.newCNI(e.cacheDir())
	list := t.conflist("ptp", "1.0.0", map[string]any{"type": "csum-offload", "hostDriver": "i40e"})
	p := t.newPod()
	defer p.remove()
	rt := runtimeConf(p)
	_, err := cni.AddNetworkList(ctx(), list, rt)
	calls := rec.take()
	t.mustCNI(err, "AddNetworkList", calls)
	ev, err := identityBytes(t.one(calls, "csum-offload", "ADD"))
	t.check(err == nil, "prevResult identity: %s%s", ev, errOrNil(err))
	t.txOnBothEnds(p, "on")
	// The check used by the lifecycle cases, wanting off here, must fail.
	sub := &T{name: t.name, env: e}
	sub.txOnBothEnds(p, "off")
	t.check(sub.failed, "control: the tx-off assertion fails on this pod (%d lines, failed=%v)", len(sub.lines), sub.failed)
	err = cni.DelNetworkList(ctx(), list, rt)
	rec.take()
	t.check(err == nil, "DelNetworkList %s", errOrNil(err))
}

func lifecycleCases() []testCase {
	var cs []testCase
	for _, kind := range []string{"ptp", "bridge"} {
		for _, v := range versions {
			kind, v := kind, v
			cs = append(cs, testCase{fmt.Sprintf("lifecycle-%s-%s", kind, v), func(t *T) { lifecycle(t, kind, v) }})
		}
	}
	cs = append(cs, testCase{"control-driver-i40e", driverControl})
	return cs
}
