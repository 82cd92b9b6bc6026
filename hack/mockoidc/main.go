// Command mockoidc runs github.com/oauth2-proxy/mockoidc, a local OpenID
// Connect provider, for the oauth2 login tests. It prints one JSON line
// (issuer, client id and secret, control URL) and serves until killed.
// POST <control>/queue?email=E&username=U makes E the next user to log in;
// without one queued, jane.doe@example.com logs in. The provider listens on
// MOCKOIDC_ADDR (default 127.0.0.1:0): pods of the test cluster's real node
// reach it on the node's address. With MOCKOIDC_CERT and MOCKOIDC_KEY (PEM
// files) it serves HTTPS, as an issuer URL must be.
package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/oauth2-proxy/mockoidc"
)

func main() {
	addr := os.Getenv("MOCKOIDC_ADDR")
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	m, err := mockoidc.NewServer(nil)
	if err == nil {
		var provider net.Listener
		var cfg *tls.Config
		if cert, key := os.Getenv("MOCKOIDC_CERT"), os.Getenv("MOCKOIDC_KEY"); cert != "" {
			var pair tls.Certificate
			if pair, err = tls.LoadX509KeyPair(cert, key); err == nil {
				cfg = &tls.Config{Certificates: []tls.Certificate{pair}}
			}
		}
		if err == nil {
			if provider, err = net.Listen("tcp", addr); err == nil {
				// Start serves what the listener gives: TLS only if it speaks it.
				if cfg != nil {
					provider = tls.NewListener(provider, cfg)
				}
				err = m.Start(provider, cfg)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockoidc:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockoidc: control listener:", err)
		os.Exit(1)
	}
	control := http.NewServeMux()
	control.HandleFunc("/queue", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		user := mockoidc.DefaultUser()
		user.Subject = q.Get("email")
		user.Email = q.Get("email")
		user.PreferredUsername = q.Get("username")
		m.QueueUser(user)
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := m.Config()
	line, _ := json.Marshal(map[string]string{
		"issuer":        cfg.Issuer,
		"client_id":     cfg.ClientID,
		"client_secret": cfg.ClientSecret,
		"control":       "http://" + ln.Addr().String(),
	})
	fmt.Println(string(line))
	if err := http.Serve(ln, control); err != nil {
		fmt.Fprintln(os.Stderr, "mockoidc:", err)
		os.Exit(1)
	}
}
