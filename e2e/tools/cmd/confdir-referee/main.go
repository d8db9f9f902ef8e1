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
//	confdir-referee DIR
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

// walk is go-cni's loadFromConfDir for max 1, keeping the file's name.
func walk(dir string) (string, *libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return "", nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		var list *libcni.NetworkConfigList
		if strings.HasSuffix(f, ".conflist") {
			list, err = libcni.ConfListFromFile(f)
			if err != nil {
				return f, nil, err
			}
		} else {
			conf, err := libcni.ConfFromFile(f)
			if err != nil {
				return f, nil, err
			}
			if conf.Network.Type == "" {
				return f, nil, fmt.Errorf("network type not found in %s", f)
			}
			if list, err = libcni.ConfListFromConf(conf); err != nil {
				return f, nil, err
			}
		}
		if len(list.Plugins) == 0 {
			return f, nil, fmt.Errorf("no networks in %s", f)
		}
		return f, list, nil
	}
	return "", nil, fmt.Errorf("no network config found in %s", dir)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: confdir-referee DIR")
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
