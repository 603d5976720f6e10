// Package httpguard keeps web pages and other local users away from bbsim's local HTTP
// listeners (the handset's control API and receiver, the webmail): it refuses requests
// whose Host is not the listener's own name or address (DNS rebinding), refuses
// cross-origin state changes from browsers, and checks an optional bearer token.
package httpguard

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// Options configure a guard.
type Options struct {
	// Token, when not empty, must come with every request as "Authorization: Bearer
	// TOKEN" (or as the password of HTTP Basic, which is what a URL's user info makes Go's
	// and curl's clients send). The Host check is then skipped: a page reached through a
	// rebound name does not know the token, and a listener beyond loopback may be reached
	// under any name. Default: none.
	Token string
	// Hosts are further names the Host header may carry, each also allowing its
	// subdomains (for instance the emulated network's domain). IP literals, "localhost",
	// "*.localhost" and this machine's host name are always allowed. Default: none.
	Hosts []string
	// Deny writes a refusal; default: plain text.
	Deny func(w http.ResponseWriter, status int, msg string)
}

// Wrap returns h behind the guard: the Host check, then the token, then the cross-origin
// check for methods other than GET, HEAD and OPTIONS.
func Wrap(h http.Handler, opts Options) http.Handler {
	deny := opts.Deny
	if deny == nil {
		deny = func(w http.ResponseWriter, status int, msg string) { http.Error(w, msg, status) }
	}
	hosts := []string{"localhost"}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, name)
	}
	for _, n := range opts.Hosts {
		if n = strings.Trim(strings.ToLower(n), "."); n != "" {
			hosts = append(hosts, n)
		}
	}
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opts.Token == "" && !HostAllowed(r.Host, hosts) {
			deny(w, http.StatusMisdirectedRequest, fmt.Sprintf("Host %q is not this server's name or address; use 127.0.0.1 or localhost", r.Host))
			return
		}
		if opts.Token != "" && !tokenMatches(r, opts.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bbsim"`)
			deny(w, http.StatusUnauthorized, "missing or wrong token: send Authorization: Bearer TOKEN")
			return
		}
		if err := cop.Check(r); err != nil {
			deny(w, http.StatusForbidden, "cross-origin request refused: "+err.Error())
			return
		}
		h.ServeHTTP(w, r)
	})
}

// HostAllowed reports whether a Host header names this machine: an IP literal, or one of
// names (or a subdomain of one), or a subdomain of localhost. A page fetched from another
// name that resolves here (DNS rebinding) carries that name and is refused.
func HostAllowed(hostport string, names []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, n := range names {
		if host == n || strings.HasSuffix(host, "."+n) {
			return true
		}
	}
	return false
}

func tokenMatches(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		if _, pass, basic := r.BasicAuth(); basic {
			got, ok = pass, true
		}
	}
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}

// IsLoopback reports whether a listen address binds only loopback: 127.0.0.0/8, ::1 or
// localhost. An empty host ("":8080) or 0.0.0.0 binds every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
