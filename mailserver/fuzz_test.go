package mailserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzPOP3Command(f *testing.F) {
	for _, s := range []string{"USER alice@bbsim.test", "PASS pass word", "STAT", "LIST 1", "RETR 1", "TOP 1 10",
		"UIDL", "DELE 1", "QUIT", "CAPA", "STLS", "noop", "LIST 1 2 3", "\x00", strings.Repeat("A", 600), "A B", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parsePOP3(line)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if len(cmd.Name) < 3 || len(cmd.Name) > 4 || strings.ToUpper(cmd.Name) != cmd.Name {
			t.Fatalf("command %q from %q", cmd.Name, line)
		}
		if len(cmd.Args) > 2 {
			t.Fatalf("%d arguments", len(cmd.Args))
		}
	})
}

// FuzzPOP3Session feeds arbitrary command lines to a real session: every line gets one
// +OK or -ERR status line (plus a listing) and nothing panics.
func FuzzPOP3Session(f *testing.F) {
	f.Add("USER alice@bbsim.test\nPASS blackberry\nSTAT\nRETR 1\nTOP 1 0\nDELE 1\nRSET\nUIDL\nQUIT\n")
	f.Add("PASS x\nUSER\nLIST\nRETR 99999999999999999999\nTOP 1 -1\nSTLS\n")
	f.Add(strings.Repeat("X", 3000) + "\nNOOP\n")
	f.Fuzz(func(t *testing.T, script string) {
		if !utf8.ValidString(script) || strings.ContainsAny(script, "\r") {
			return
		}
		// No delay after a failed login: with the default 2 s most inputs (a wrong PASS)
		// would wait, and the fuzzer would run a handful of them in a minute.
		r := startServer(t, Options{Locking: LockShared, AuthFailureDelay: -1})
		p := dialPOP3(t, r.pop3)
		for _, line := range strings.Split(script, "\n") {
			if line == "" {
				continue
			}
			got := p.cmd(line)
			if !strings.HasPrefix(got, "+OK") && !strings.HasPrefix(got, "-ERR") {
				t.Fatalf("%q: status %q", line, got)
			}
			up := strings.ToUpper(strings.TrimSpace(line))
			if strings.HasPrefix(got, "+OK") && (up == "CAPA" || up == "UIDL" || up == "LIST" || strings.HasPrefix(up, "RETR ") || strings.HasPrefix(up, "TOP ")) {
				p.multi()
			}
			if up == "QUIT" || strings.HasPrefix(up, "STLS") && strings.HasPrefix(got, "+OK") {
				return
			}
		}
	})
}

func FuzzWebmail(f *testing.F) {
	f.Add("POST", "/login", "email=alice%40bbsim.test&password=blackberry")
	f.Add("POST", "/login", "email=%ff%fe&password=")
	f.Add("GET", "/message/1", "")
	f.Add("GET", "/message/-1", "")
	f.Add("GET", "/message/99999999999999999999", "")
	f.Add("GET", "/inbox", "")
	f.Add("POST", "/logout", "")
	f.Add("GET", "/../../etc/passwd", "")
	f.Add("POST", "/login", "email=%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=x")
	f.Add("GET", "//evil.example/", "")
	s, err := New(Options{DataDir: f.TempDir(), Locking: LockShared})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	h := s.WebmailHandler()
	// A session cookie for requests that need one.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/", nil))
	token := csrfField.FindStringSubmatch(rec.Body.String())
	if token == nil {
		f.Fatal("no form token on the sign-in page")
	}
	rec2 := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "http://127.0.0.1/login", strings.NewReader(url.Values{"csrf": {token[1]}, "email": {alice}, "password": {pass}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	h.ServeHTTP(rec2, req)
	if rec2.Code != http.StatusSeeOther {
		f.Fatalf("sign-in = %d, want 303", rec2.Code)
	}
	cookies := rec2.Result().Cookies()
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#?") || method == "" || strings.ContainsAny(method, " \r\n/") {
			return
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s: %d", method, path, rec.Code)
		}
		// Redirects stay on the site.
		if loc := rec.Header().Get("Location"); rec.Code/100 == 3 && (!strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, "/\\")) {
			t.Fatalf("%s %s: %d to %q", method, path, rec.Code, loc)
		}
		if rec.Code >= 400 && rec.Body.Len() == 0 {
			t.Fatalf("%s %s: %d without a text", method, path, rec.Code)
		}
		// Pages (not the mux's redirect notes) are not cached or framed, and what the
		// request carried is escaped.
		if rec.Code/100 != 3 && strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			if rec.Header().Get("X-Frame-Options") != "DENY" || rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("%s %s: %d page without no-store and DENY: %v", method, path, rec.Code, rec.Header())
			}
			if strings.Contains(strings.ToLower(rec.Body.String()), "<script") {
				t.Fatalf("%s %s (%q): a script in the page:\n%s", method, path, body, rec.Body)
			}
		}
	})
}
