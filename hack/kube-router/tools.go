//go:build tools

// Package tools pins kube-router, whose network policy controller enforces
// NetworkPolicy on the real node (hack/README.md, "NetworkPolicy"), for
// hack/build.sh.
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
