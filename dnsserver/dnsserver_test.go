package dnsserver

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/bounded"
	"github.com/miekg/dns"
)

func start(t *testing.T) (udp, tcp string) {
	t.Helper()
	s, err := New(Options{Addrs: map[string]string{
		"imap": "127.0.0.1:1143", "pop3": "127.0.0.1:1110", "smtp": "127.0.0.1:2525", "push": "127.0.0.1:8080",
	}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	go func() { errc <- s.ServeUDP(pc) }()
	go func() { errc <- s.ServeTCP(ln) }()
	t.Cleanup(func() {
		s.Close()
		for range 2 {
			if err := <-errc; err != ErrServerClosed {
				t.Errorf("serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return pc.LocalAddr().String(), ln.Addr().String()
}

func TestZone(t *testing.T) {
	udp, tcp := start(t)
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		check func(t *testing.T, m *dns.Msg)
	}{
		{"imap.bbsim.test.", dns.TypeA, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
				t.Errorf("answer %v", m.Answer)
			}
		}},
		{"_imap._tcp.bbsim.test.", dns.TypeSRV, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 1 {
				t.Fatalf("answer %v", m.Answer)
			}
			srv := m.Answer[0].(*dns.SRV)
			if srv.Port != 1143 || srv.Target != "imap.bbsim.test." {
				t.Errorf("srv %v", srv)
			}
		}},
		{"_pop3._tcp.bbsim.test.", dns.TypeSRV, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 1 || m.Answer[0].(*dns.SRV).Port != 1110 {
				t.Errorf("answer %v", m.Answer)
			}
		}},
		{"bbsim.test.", dns.TypeMX, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 1 || m.Answer[0].(*dns.MX).Mx != "mail.bbsim.test." {
				t.Errorf("answer %v", m.Answer)
			}
		}},
		{"_imaps._tcp.bbsim.test.", dns.TypeSRV, dns.RcodeNameError, nil},
		{"nope.bbsim.test.", dns.TypeA, dns.RcodeNameError, func(t *testing.T, m *dns.Msg) {
			if len(m.Ns) != 1 {
				t.Errorf("no SOA in authority: %v", m.Ns)
			}
		}},
		{"pushapi.eval.blackberry.com.", dns.TypeA, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 1 {
				t.Errorf("answer %v", m.Answer)
			}
		}},
		{"cp1234.pushapi.eval.blackberry.com.", dns.TypeA, dns.RcodeSuccess, func(t *testing.T, m *dns.Msg) {
			if len(m.Answer) != 1 || m.Answer[0].Header().Name != "cp1234.pushapi.eval.blackberry.com." {
				t.Errorf("answer %v", m.Answer)
			}
		}},
		{"example.com.", dns.TypeA, dns.RcodeRefused, nil},
	}
	for _, net := range []string{"udp", "tcp"} {
		addr := map[string]string{"udp": udp, "tcp": tcp}[net]
		c := &dns.Client{Net: net}
		for _, tt := range tests {
			t.Run(net+" "+tt.name+" "+dns.TypeToString[tt.qtype], func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion(tt.name, tt.qtype)
				m, _, err := c.Exchange(q, addr)
				if err != nil {
					t.Fatal(err)
				}
				if m.Rcode != tt.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
				}
				if tt.check != nil {
					tt.check(t, m)
				}
			})
		}
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Domain: "bad..name"}, `dnsserver: domain "bad..name" is not a domain name`},
		{Options{Addrs: map[string]string{"gopher": "127.0.0.1:70"}}, `dnsserver: unknown service "gopher"`},
		{Options{Addrs: map[string]string{"imap": "nohost"}}, `dnsserver: imap address "nohost": address nohost: missing port in address`},
	}
	for _, tt := range tests {
		if _, err := New(tt.o); err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
}

// FuzzQuery: any message that parses gets exactly one answer that packs and parses back,
// is a response with the query's ID, opcode and (first) question, and has a known RCODE:
// NOERROR, NXDOMAIN, FORMERR, NOTIMP, or REFUSED for names outside our zones. Answers hold
// the asked name and type; an NXDOMAIN carries the zone's SOA.
func FuzzQuery(f *testing.F) {
	s, err := New(Options{Addrs: map[string]string{"imap": "127.0.0.1:1143", "pop3": "127.0.0.1:1110",
		"smtp": "127.0.0.1:2525", "push": "127.0.0.1:8080"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"imap.bbsim.test.", dns.TypeA},
		{"cp9.pushapi.eval.blackberry.com.", dns.TypeAAAA},
		{"_imap._tcp.bbsim.test.", dns.TypeSRV},
		{"bbsim.test.", dns.TypeMX},
		{"BbSiM.TeSt.", dns.TypeANY},
		{"nope.bbsim.test.", dns.TypeA},
		{"example.com.", dns.TypeA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b)
	}
	known := map[int]bool{dns.RcodeSuccess: true, dns.RcodeNameError: true, dns.RcodeFormatError: true,
		dns.RcodeNotImplemented: true, dns.RcodeRefused: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		q := new(dns.Msg)
		if q.Unpack(b) != nil {
			return
		}
		w := &recorder{}
		// Each input is answered in process within a short deadline: no input can keep
		// the worker past -fuzztime.
		bounded.Run(t, fuzzDeadline, "ServeDNS", func(context.Context) { s.Handler().ServeDNS(w, q) })
		if w.msg == nil || w.writes != 1 {
			t.Fatalf("%d answers to %v", w.writes, q)
		}
		wire, err := w.msg.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, w.msg)
		}
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			t.Fatalf("answer does not parse: %v\n%v", err, w.msg)
		}
		if !m.Response || m.Id != q.Id || m.Opcode != q.Opcode {
			t.Fatalf("answer header %+v to query header %+v", m.MsgHdr, q.MsgHdr)
		}
		if !known[m.Rcode] {
			t.Fatalf("rcode %s to %v", dns.RcodeToString[m.Rcode], q)
		}
		if len(q.Question) == 0 {
			if len(m.Question) != 0 {
				t.Fatalf("question %v in the answer to none", m.Question)
			}
			return
		}
		if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, q.Question[0].Name) ||
			m.Question[0].Qtype != q.Question[0].Qtype || m.Question[0].Qclass != q.Question[0].Qclass {
			t.Fatalf("question %v answered with %v", q.Question, m.Question)
		}
		for _, rr := range m.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, q.Question[0].Name) || q.Question[0].Qtype != dns.TypeANY && h.Rrtype != q.Question[0].Qtype {
				t.Fatalf("answer %v to question %v", rr, q.Question[0])
			}
		}
		if m.Rcode == dns.RcodeNameError && (len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Fatalf("NXDOMAIN without the zone's SOA: %v", m.Ns)
		}
	})
}

// fuzzDeadline bounds one fuzz input's answer: microseconds normally, generous on a
// loaded machine.
const fuzzDeadline = 2 * time.Second

// recorder is a dns.ResponseWriter that keeps the answer.
type recorder struct {
	msg    *dns.Msg
	writes int
}

func (r *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr      { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353} }
func (r *recorder) WriteMsg(m *dns.Msg) error { r.msg = m; r.writes++; return nil }
func (r *recorder) Write(b []byte) (int, error) {
	r.writes++
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// TestDig asks the zone with dig, over UDP and TCP: the SRV, MX and A records a mail client
// discovers, and malformed or unsupported queries, which get FORMERR or NOTIMP (miekg/dns
// rejects them before our handler), never silence.
func TestDig(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is required (Debian bind9-dnsutils; make test-deps installs it)")
	}
	udp, tcp := start(t)
	tests := []struct {
		args   []string
		status string // the header's status
		answer string // the +short answer, or a line of the answer section
	}{
		{[]string{"_imap._tcp.bbsim.test", "SRV"}, "NOERROR", "0 1 1143 imap.bbsim.test."},
		{[]string{"_pop3._tcp.bbsim.test", "SRV"}, "NOERROR", "0 1 1110 pop3.bbsim.test."},
		{[]string{"bbsim.test", "MX"}, "NOERROR", "10 mail.bbsim.test."},
		{[]string{"imap.bbsim.test", "A"}, "NOERROR", "127.0.0.1"},
		{[]string{"nope.bbsim.test", "A"}, "NXDOMAIN", ""},
		{[]string{"example.com", "A"}, "REFUSED", ""},
		// No question at all: a malformed query.
		{[]string{"+header-only", "bbsim.test"}, "FORMERR", ""},
		{[]string{"+opcode=status", "bbsim.test"}, "NOTIMP", ""},
	}
	for _, network := range []string{"udp", "tcp"} {
		host, port, _ := net.SplitHostPort(map[string]string{"udp": udp, "tcp": tcp}[network])
		for _, tt := range tests {
			t.Run(network+" "+strings.Join(tt.args, " "), func(t *testing.T) {
				args := append([]string{"@" + host, "-p", port, "+tries=1", "+time=5", "+norecurse", "+nocmd", "+nostats"}, tt.args...)
				if network == "tcp" {
					args = append(args, "+tcp")
				}
				out, err := exec.Command("dig", args...).CombinedOutput()
				if err != nil {
					t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				if !strings.Contains(string(out), "status: "+tt.status+",") {
					t.Fatalf("dig %s: want status %s\n%s", strings.Join(tt.args, " "), tt.status, out)
				}
				if tt.answer == "" {
					return
				}
				var found bool
				for l := range strings.Lines(string(out)) {
					if f := strings.Fields(l); len(f) > 4 && !strings.HasPrefix(l, ";") && strings.Join(f[4:], " ") == tt.answer {
						found = true
					}
				}
				if !found {
					t.Fatalf("dig %s: no answer %q\n%s", strings.Join(tt.args, " "), tt.answer, out)
				}
			})
		}
	}
}
