//go:build tools

// Package tools pins containerd v2 and ctr (the real node's container runtime, with its CRI plugin) for hack/build.sh.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
