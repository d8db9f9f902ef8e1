package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// run executes a command with a bound; the output is stdout and stderr.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// pod is a netns made by `ip netns add`, standing for a pod sandbox.
type pod struct {
	name string
	path string
	id   string // the container ID libcni gets
}

// newPod creates a pod netns; the case removes it, and run.sh removes
// every netns with the prefix whatever happens.
func (t *T) newPod() *pod {
	e := t.env
	e.podCount++
	name := fmt.Sprintf("%s-p%d", e.prefix, e.podCount)
	_, err := run("ip", "netns", "add", name)
	t.must(err, "create pod netns "+name)
	_, err = run("ip", "-n", name, "link", "set", "lo", "up")
	t.must(err, "lo up in "+name)
	id := fmt.Sprintf("%s-%s-%d", e.prefix, strings.NewReplacer(".", "", "/", "").Replace(t.name), e.podCount)
	return &pod{name: name, path: "/run/netns/" + name, id: id}
}

func (p *pod) remove() { _, _ = run("ip", "netns", "del", p.name) }

// feature reads one line of `ethtool -k IF` ("tx-checksumming: off").
// ns "" is the test's host netns (where this program runs).
func feature(ns, ifname, name string) (string, error) {
	args := []string{"ethtool", "-k", ifname}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := run(args[0], args[1:]...)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("ethtool -k %s has no %q line", ifname, name)
}

var peerRe = regexp.MustCompile(`^\d+: [^@:]+@if(\d+):`)

// hostPeer finds the host end of the pod's veth from the kernel, not from
// any plugin's result: the pod's `eth0@ifN` names the peer's ifindex N
// in the host netns.
func hostPeer(p *pod, ifname string) (string, error) {
	out, err := run("ip", "-o", "-n", p.name, "link", "show", "dev", ifname)
	if err != nil {
		return "", err
	}
	m := peerRe.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s in %s is not a veth with a peer: %q", ifname, p.name, out)
	}
	host, err := run("ip", "-o", "link", "show")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(host, "\n") {
		if strings.HasPrefix(l, m[1]+": ") {
			name := strings.SplitN(strings.TrimPrefix(l, m[1]+": "), ":", 2)[0]
			return strings.SplitN(name, "@", 2)[0], nil
		}
	}
	return "", fmt.Errorf("no link with ifindex %s in the host netns", m[1])
}

func linkExists(name string) bool {
	_, err := run("ip", "link", "show", "dev", name)
	return err == nil
}

// podAddrs is `ip -o addr show dev IF` in the pod.
func podAddrs(p *pod, ifname string) string {
	out, _ := run("ip", "-o", "-n", p.name, "addr", "show", "dev", ifname)
	return out
}

// ipamHeld lists host-local's reservations (files named by address)
// whose content names the container.
func ipamHeld(dir, id string) []string {
	var held []string
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]) == id {
			held = append(held, filepath.Base(f))
		}
	}
	return held
}
