package lockout

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/dovecot"
	"github.com/bbsim/bbsim/internal/wirelog"
)

func TestBundledScenarios(t *testing.T) {
	// One ordered record of what each scenario's server wrote.
	wires := map[string]*wirelog.Log{}
	var mu sync.Mutex
	wrap := func(scenario, name string, ln net.Listener) net.Listener {
		mu.Lock()
		defer mu.Unlock()
		if wires[scenario] == nil {
			wires[scenario] = &wirelog.Log{}
		}
		return wires[scenario].Listener(name, ln)
	}
	rows, err := Run(t.Context(), Options{Dir: t.TempDir(), wrap: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", Table(rows))
	if len(rows) != len(Scenarios()) {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if !r.OK() {
			t.Errorf("%s: %s %v", r.Scenario, r.Err, r.Problems)
		}
	}
	byName := map[string]Row{}
	for _, r := range rows {
		byName[r.Scenario] = r
	}
	if r := byName["exclusive"]; !strings.HasPrefix(r.POP3, "-ERR [IN-USE]") || !strings.Contains(r.IMAP, "INUSE") {
		t.Errorf("exclusive: %+v", r)
	}
	if r := byName["polite-disconnect"]; !strings.Contains(r.Bye, "[UNAVAILABLE]") || r.BackIn == 0 {
		t.Errorf("polite: %+v", r)
	}
	// The handset is told before POP3 is let in: the BYE reached its socket first.
	mu.Lock()
	wire := wires["polite-disconnect"]
	mu.Unlock()
	if wire == nil {
		t.Fatal("no polite-disconnect scenario ran")
	}
	if err := wire.Before("imap: * BYE [UNAVAILABLE]", "pop3: +OK Logged in", 5*time.Second); err != nil {
		t.Error(err)
	}
}

// Against Dovecot with one connection per user and protocol, the table shows what Dovecot
// does: the limit counts IMAP and POP3 apart, so POP3 gets in while the handset idles, and
// a second IMAP client is refused over the limit.
func TestDovecotLimitOne(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{MaxUserIPConnections: 1})
	rows, err := Run(t.Context(), Options{Target: &Target{IMAP: dv.IMAPAddr, POP3: dv.POP3Addr, LMTP: dv.LMTPAddr,
		Username: "alice@bbsim.test", Password: "blackberry"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", Table(rows))
	r := rows[0]
	if !r.OK() {
		t.Fatalf("row %+v", r)
	}
	if !strings.HasPrefix(r.POP3, "+OK") {
		t.Errorf("POP3 on Dovecot: %q", r.POP3)
	}
	if !strings.Contains(r.IMAP, "mail_max_userip_connections=1") {
		t.Errorf("second IMAP on Dovecot: %q", r.IMAP)
	}
	if r.HandsetMode != "idling" || r.Bye != "" || r.Lost != 0 || r.Duplicated != 0 || r.MailDelay == 0 {
		t.Errorf("handset on Dovecot: %+v", r)
	}
}
