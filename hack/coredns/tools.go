//go:build tools

// Package tools pins CoreDNS (cluster DNS for pods on the real node) for hack/build.sh.
package tools

import (
	_ "github.com/coredns/coredns"
)
