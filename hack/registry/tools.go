//go:build tools

// Package tools pins the container registry (distribution/v3, with htpasswd
// auth) that the real node pulls password-protected workspace images from.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
)
