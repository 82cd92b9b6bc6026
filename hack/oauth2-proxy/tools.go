//go:build tools

// Package tools pins oauth2-proxy (the real login proxy of oauth2 mode) so
// hack/build.sh can build it from the module proxy.
package tools

import _ "github.com/oauth2-proxy/oauth2-proxy/v7"
