//go:build tools

// Package tools pins runc (the OCI runtime containerd starts containers with; built with -tags seccomp) for hack/build.sh.
package tools

import (
	_ "github.com/opencontainers/runc"
)
