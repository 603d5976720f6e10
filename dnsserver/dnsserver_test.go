package dnsserver

import (
	"net"
	"testing"

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
	for _, o := range []Options{
		{Domain: "bad..name"},
		{Addrs: map[string]string{"gopher": "127.0.0.1:70"}},
		{Addrs: map[string]string{"imap": "nohost"}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func FuzzQuery(f *testing.F) {
	s, err := New(Options{Addrs: map[string]string{"imap": "127.0.0.1:1143", "push": "127.0.0.1:8080"}})
	if err != nil {
		f.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("imap.bbsim.test.", dns.TypeA)
	b, _ := q.Pack()
	f.Add(b)
	q.SetQuestion("cp9.pushapi.eval.blackberry.com.", dns.TypeAAAA)
	b, _ = q.Pack()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		w := &recorder{}
		s.Handler().ServeDNS(w, m)
	})
}

// recorder is a dns.ResponseWriter that keeps the answer.
type recorder struct{ msg *dns.Msg }

func (r *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr      { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353} }
func (r *recorder) WriteMsg(m *dns.Msg) error { r.msg = m; return nil }
func (r *recorder) Write(b []byte) (int, error) {
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}
