// libcni-e2e drives the real csum-offload binary through libcni
// (github.com/containernetworking/cni/libcni), the library containerd
// (go-cni), CRI-O and Podman use to run a conflist: AddNetworkList,
// CheckNetworkList, DelNetworkList, GetStatusNetworkList and
// GCNetworkList, with libcni's result cache, CNI_ARGS and capabilities,
// at every CNI version csum-offload supports. The chains are the
// reference plugins (v1.10.0: ptp, bridge, host-local, portmap) followed
// by csum-offload, in real netns with real veth pairs.
//
// It runs inside a netns of its own that e2e/libcni/run.sh creates (the
// "host" of the test: ptp's host ends, the bridge and portmap's iptables
// rules live there), and creates one pod netns per case. Each assertion
// prints one line; a case that cannot run fails, it never skips. The last
// line is "N passed, N failed"; the exit status is 1 on any failure.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// T collects one case's evidence and failures.
type T struct {
	name   string
	lines  []string
	failed bool
	env    *Env
}

// check records one assertion: ok or not, with its evidence.
func (t *T) check(ok bool, format string, args ...any) bool {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		t.failed = true
	}
	t.lines = append(t.lines, fmt.Sprintf("    %s %s", mark, fmt.Sprintf(format, args...)))
	return ok
}

// note records evidence that is not an assertion.
func (t *T) note(format string, args ...any) {
	t.lines = append(t.lines, "         "+fmt.Sprintf(format, args...))
}

// fatal ends the case as failed: a step it cannot go on without.
type fatal struct{ msg string }

func (t *T) must(err error, what string) {
	if err != nil {
		t.check(false, "%s: %v", what, err)
		panic(fatal{what})
	}
}

type testCase struct {
	name string
	run  func(t *T)
}

// Env is what every case needs: where the plugins and the state live.
type Env struct {
	binDir   string // CNI_PATH: the reference plugins, csum-offload and the wrappers
	workDir  string // cache, host-local state
	prefix   string // names of netns and links
	podCount int
}

func main() {
	env := &Env{}
	flag.StringVar(&env.binDir, "cni-bin-dir", "", "CNI_PATH with the plugins, csum-offload and the control wrappers")
	flag.StringVar(&env.workDir, "work-dir", "", "a private directory for libcni's cache and host-local's state")
	flag.StringVar(&env.prefix, "prefix", "lcni", "prefix of the netns this program creates")
	list := flag.Bool("list", false, "print the case names and exit")
	timeout := flag.Duration("case-timeout", 60*time.Second, "bound of one case")
	flag.Parse()

	cases := allCases()
	if *list {
		for _, c := range cases {
			fmt.Println(c.name)
		}
		return
	}
	if env.binDir == "" || env.workDir == "" {
		fmt.Fprintln(os.Stderr, "libcni-e2e: --cni-bin-dir and --work-dir are required")
		os.Exit(2)
	}
	if err := env.writeWrappers(); err != nil {
		fmt.Fprintln(os.Stderr, "libcni-e2e: write the control wrappers:", err)
		os.Exit(2)
	}
	patterns := flag.Args()
	passed, failed := 0, 0
	for _, c := range cases {
		if !matches(c.name, patterns) {
			continue
		}
		t := &T{name: c.name, env: env}
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(fatal); !ok {
						t.check(false, "panic: %v", r)
					}
					t.failed = true
				}
			}()
			c.run(t)
		}()
		select {
		case <-done:
		case <-time.After(*timeout):
			// The case's goroutine still runs: report and stop here;
			// run.sh removes what it left.
			t.check(false, "case did not finish within %s", *timeout)
			fmt.Printf("FAIL %s (%.1fs)\n", c.name, time.Since(start).Seconds())
			for _, l := range t.lines {
				fmt.Println(l)
			}
			fmt.Printf("%d passed, %d failed\n", passed, failed+1)
			os.Exit(1)
		}
		mark := "ok  "
		if t.failed {
			mark = "FAIL"
			failed++
		} else {
			passed++
		}
		if len(t.lines) == 0 {
			// A case with no assertion proves nothing.
			t.check(false, "the case made no assertion")
			mark = "FAIL"
			passed--
			failed++
		}
		fmt.Printf("%s %s (%.1fs)\n", mark, c.name, time.Since(start).Seconds())
		for _, l := range t.lines {
			fmt.Println(l)
		}
	}
	if passed+failed == 0 {
		fmt.Printf("no case matches %q\n", patterns)
		failed = 1
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

func matches(name string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}
