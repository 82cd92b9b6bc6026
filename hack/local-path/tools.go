//go:build tools

// Package tools pins local-path-provisioner (the default StorageClass: home PVCs bind to directories on the node) for hack/build.sh.
package tools

import (
	_ "github.com/rancher/local-path-provisioner"
)
