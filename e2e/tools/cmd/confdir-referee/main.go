// confdir-referee prints, as JSON, which network config file of a CNI
// conf dir containerd would use and what it reads from it: go-cni's
// Load(WithDefaultConf) with max_conf_num = 1 (containerd's CRI default),
// which lists the dir with libcni.ConfFiles (.conf, .conflist, .json),
// sorts the paths as strings and loads them in that order, failing the
// whole load on the first file it cannot load.
//
// go-cni does not say which file it took, so the program also walks the
// sorted list with the same libcni calls and reports the first file that
// loads; "agrees" says that this walk and go-cni ended the same way (the
// same bytes, or both failed). The differential test
// (e2e/libcni/confdir.sh) compares "file" with the installer's choice.
//
// With --all it prints instead, for every candidate file, whether libcni
// loads it on its own (as go-cni loads each file when max_conf_num allows
// more than one, and as CRI-O does) and the type of each plugin it would
// run: the referee for "a config the runtime would load still names the
// plugin", which keeps the binary on uninstall.
//
//	confdir-referee DIR
//	confdir-referee --all DIR
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
)

type verdict struct {
	Dir          string   `json:"dir"`
	Files        []string `json:"files"` // the candidates, in libcni's order
	Loaded       bool     `json:"loaded"`
	Error        string   `json:"error,omitempty"`
	File         string   `json:"file,omitempty"` // base name of the file used
	Name         string   `json:"name,omitempty"`
	CNIVersion   string   `json:"cniVersion,omitempty"`
	Plugins      []string `json:"plugins,omitempty"` // each plugin's type
	DisableCheck bool     `json:"disableCheck"`
	DisableGC    bool     `json:"disableGC"`
	Agrees       bool     `json:"agrees"`
	WalkError    string   `json:"walkError,omitempty"`
}

// load is go-cni's loadFromConfDir for one file.
func load(f string) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(f, ".conflist") {
		return libcni.ConfListFromFile(f)
	}
	conf, err := libcni.ConfFromFile(f)
	if err != nil {
		return nil, err
	}
	if conf.Network.Type == "" {
		return nil, fmt.Errorf("network type not found in %s", f)
	}
	list, err := libcni.ConfListFromConf(conf)
	if err != nil {
		return nil, err
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("no networks in %s", f)
	}
	return list, nil
}

// walk is go-cni's loadFromConfDir for max 1, keeping the file's name.
func walk(dir string) (string, *libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return "", nil, err
	}
	if len(files) == 0 {
		return "", nil, fmt.Errorf("no network config found in %s", dir)
	}
	// max 1: the first file by name, and a failure fails the whole load.
	sort.Strings(files)
	list, err := load(files[0])
	return files[0], list, err
}

type fileVerdict struct {
	File    string   `json:"file"`
	Loads   bool     `json:"loads"`
	Error   string   `json:"error,omitempty"`
	Plugins []string `json:"plugins,omitempty"` // each plugin's type
	// NamesPlugin: it loads and one of its plugins is csum-offload.
	NamesPlugin bool `json:"namesPlugin"`
}

// all loads every candidate file on its own, each bounded (a FIFO blocks
// its read forever).
func all(dir string) []fileVerdict {
	out := []fileVerdict{}
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return out
	}
	sort.Strings(files)
	type res struct {
		list *libcni.NetworkConfigList
		err  error
	}
	for _, f := range files {
		ch := make(chan res, 1)
		go func() { l, err := load(f); ch <- res{l, err} }()
		var r res
		select {
		case r = <-ch:
		case <-time.After(2 * time.Second):
			r = res{nil, fmt.Errorf("reading it did not finish in 2 s")}
		}
		v := fileVerdict{File: filepath.Base(f)}
		if r.err != nil {
			v.Error = r.err.Error()
		} else {
			v.Loads = true
			for _, p := range r.list.Plugins {
				v.Plugins = append(v.Plugins, p.Network.Type)
				v.NamesPlugin = v.NamesPlugin || p.Network.Type == "csum-offload"
			}
		}
		out = append(out, v)
	}
	return out
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "--all" {
		out, _ := json.Marshal(map[string]any{"dir": os.Args[2], "all": all(os.Args[2])})
		fmt.Println(string(out))
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: confdir-referee [--all] DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	v := verdict{Dir: dir, Files: []string{}}
	if files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"}); err == nil {
		sort.Strings(files)
		for _, f := range files {
			v.Files = append(v.Files, filepath.Base(f))
		}
	}

	// go-cni itself, bounded: reading a FIFO blocks it.
	type loaded struct {
		cfg *gocni.ConfigResult
		err error
	}
	ch := make(chan loaded, 1)
	go func() {
		c, err := gocni.New(gocni.WithPluginConfDir(dir), gocni.WithPluginMaxConfNum(1), gocni.WithPluginDir([]string{"/nonexistent"}))
		if err == nil {
			err = c.Load(gocni.WithDefaultConf)
		}
		if err != nil {
			ch <- loaded{nil, err}
			return
		}
		ch <- loaded{c.GetConfig(), nil}
	}()
	type walked struct {
		file string
		list *libcni.NetworkConfigList
		err  error
	}
	wch := make(chan walked, 1)
	go func() { f, l, err := walk(dir); wch <- walked{f, l, err} }()

	deadline := time.After(5 * time.Second)
	var res loaded
	select {
	case res = <-ch:
	case <-deadline:
		res = loaded{nil, fmt.Errorf("go-cni's load did not finish in 5 s (a file blocks its read)")}
	}
	var w walked
	select {
	case w = <-wch:
	case <-deadline:
		w = walked{err: fmt.Errorf("walk blocked")}
	case <-time.After(100 * time.Millisecond):
		// go-cni's load has ended or timed out: the walk reads the same files.
		w = walked{err: fmt.Errorf("walk blocked")}
	}
	wf, wl, werr := w.file, w.list, w.err

	if res.err != nil {
		v.Error = res.err.Error()
	} else if len(res.cfg.Networks) == 1 {
		n := res.cfg.Networks[0].Config
		v.Loaded = true
		v.Name, v.CNIVersion = n.Name, n.CNIVersion
		for _, p := range n.Plugins {
			v.Plugins = append(v.Plugins, p.Network.Type)
		}
	} else {
		v.Error = fmt.Sprintf("go-cni loaded %d networks", len(res.cfg.Networks))
	}
	if werr != nil {
		v.WalkError = werr.Error()
		v.Agrees = !v.Loaded
	} else {
		v.File = filepath.Base(wf)
		v.DisableCheck, v.DisableGC = wl.DisableCheck, wl.DisableGC
		v.Agrees = v.Loaded && string(wl.Bytes) == res.cfg.Networks[0].Config.Source
	}
	if !v.Loaded {
		v.File = ""
		if wf != "" {
			v.File = filepath.Base(wf) // the file that failed the load
		}
	}
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
	if !v.Agrees {
		os.Exit(1)
	}
}
