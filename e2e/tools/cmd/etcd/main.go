// etcd for the local cluster: the server at the version k8s.io/kubernetes
// pins (etcd's own main is this one call).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
