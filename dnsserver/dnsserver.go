// Package dnsserver is the emulated network's DNS: an authoritative zone for the bundled
// domain (A, MX and RFC 6186 SRV records pointing at the bundled servers) plus the BlackBerry
// push service's host names mapped to the bundled push gateway. It serves UDP and TCP with
// miekg/dns and its own ServeMux.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/bbsim/bbsim/internal/serveall"
)

// ErrServerClosed is returned by ServeUDP and ServeTCP after Shutdown or Close.
// Like every bbsim server's, it is http.ErrServerClosed, so one errors.Is test serves them
// all.
var ErrServerClosed = http.ErrServerClosed

// DefaultPushHosts are the push service's host names (PROTOCOLS.md §3). A leading label
// with '*' is a glob over that label.
var DefaultPushHosts = []string{"pushapi.eval.blackberry.com", "cp*.pushapi.eval.blackberry.com"}

// Services and the SRV owner names (RFC 6186) published for them.
var srvNames = map[string]string{
	"imap":       "_imap._tcp",
	"imaps":      "_imaps._tcp",
	"pop3":       "_pop3._tcp",
	"pop3s":      "_pop3s._tcp",
	"smtp":       "_submission._tcp",
	"submission": "_submission._tcp",
	"webmail":    "_http._tcp",
	"push":       "_bbpush._tcp",
}

// Host names published for each service; "mail" is the MX target.
var serviceHosts = map[string][]string{
	"imap":    {"imap"},
	"imaps":   {"imap"},
	"pop3":    {"pop3"},
	"pop3s":   {"pop3"},
	"smtp":    {"smtp", "mail"},
	"webmail": {"webmail", "www"},
	"push":    {"push"},
}

// Options configure a Server.
type Options struct {
	// Domain is the zone served. Default "bbsim.test".
	Domain string
	// Addrs maps a service to the host:port of its server: "imap", "imaps", "pop3",
	// "pop3s", "smtp", "webmail", "push". The host must be an IP address (or "localhost",
	// or empty for 127.0.0.1). Services left out get no records. Default: none.
	Addrs map[string]string
	// PushHosts are extra names answered with the push server's address. A first label
	// containing '*' is a glob over that label. Default DefaultPushHosts. Ignored without
	// a "push" address.
	PushHosts []string
	// TTL of every record, in seconds. Default 60.
	TTL uint32
	// Logger receives one debug line per query. Default: discard.
	Logger *slog.Logger
}

// Server is an authoritative DNS server for the emulated network.
type Server struct {
	domain string
	ttl    uint32
	log    *slog.Logger
	mux    *dns.ServeMux

	names    map[string][]dns.RR // owner (canonical FQDN) -> records
	globs    []globHost          // push names with a wildcard label
	soa      *dns.SOA
	zones    []string // apexes we are authoritative for
	pushAddr netip.Addr

	mu      sync.Mutex
	closed  bool
	servers []*dns.Server
}

type globHost struct {
	zone, pattern string // pattern is a canonical FQDN with '*' in its first label
}

// New builds the zone from opts.
func New(opts Options) (*Server, error) {
	if opts.Domain == "" {
		opts.Domain = "bbsim.test"
	}
	if opts.TTL == 0 {
		opts.TTL = 60
	}
	if opts.PushHosts == nil {
		opts.PushHosts = DefaultPushHosts
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if _, ok := dns.IsDomainName(opts.Domain); !ok {
		return nil, fmt.Errorf("dnsserver: domain %q is not a domain name", opts.Domain)
	}
	s := &Server{
		domain: dns.CanonicalName(opts.Domain),
		ttl:    opts.TTL,
		log:    log.With("component", "dns"),
		mux:    dns.NewServeMux(),
		names:  map[string][]dns.RR{},
	}
	s.soa = &dns.SOA{
		Hdr:     s.hdr(s.domain, dns.TypeSOA),
		Ns:      "ns." + s.domain,
		Mbox:    "hostmaster." + s.domain,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  opts.TTL,
	}
	if err := s.build(opts); err != nil {
		return nil, err
	}
	s.mux.HandleFunc(".", s.refuse)
	for _, z := range s.zones {
		s.mux.HandleFunc(z, s.answer)
	}
	return s, nil
}

func (s *Server) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: s.ttl}
}

func (s *Server) add(rr dns.RR) {
	n := rr.Header().Name
	s.names[n] = append(s.names[n], rr)
}

func (s *Server) addAddr(name string, ip netip.Addr) {
	for _, rr := range s.names[name] {
		switch a := rr.(type) {
		case *dns.A:
			if netip.AddrFrom4([4]byte(a.A.To4())) == ip {
				return
			}
		case *dns.AAAA:
			if ip.Is6() && netip.AddrFrom16([16]byte(a.AAAA.To16())) == ip {
				return
			}
		}
	}
	if ip.Is4() {
		s.add(&dns.A{Hdr: s.hdr(name, dns.TypeA), A: ip.AsSlice()})
	} else {
		s.add(&dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()})
	}
}

func parseAddr(service, hostport string) (netip.Addr, uint16, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("dnsserver: %s address %q: %w", service, hostport, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, fmt.Errorf("dnsserver: %s address %q: bad port", service, hostport)
	}
	var ip netip.Addr
	switch host {
	case "", "localhost":
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		ip, err = netip.ParseAddr(host)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("dnsserver: %s address %q: host is not an IP address", service, hostport)
		}
		ip = ip.Unmap()
		if ip.IsUnspecified() {
			if ip.Is4() {
				ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			} else {
				ip = netip.IPv6Loopback()
			}
		}
	}
	return ip, uint16(port), nil
}

func (s *Server) build(opts Options) error {
	d := s.domain
	s.zones = []string{d}
	s.add(s.soa)
	s.add(&dns.NS{Hdr: s.hdr(d, dns.TypeNS), Ns: "ns." + d})

	services := make([]string, 0, len(opts.Addrs))
	for svc := range opts.Addrs {
		services = append(services, svc)
	}
	sort.Strings(services)
	nsIP := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	var errs []error
	for _, svc := range services {
		hosts, ok := serviceHosts[svc]
		if !ok {
			errs = append(errs, fmt.Errorf("dnsserver: unknown service %q", svc))
			continue
		}
		ip, port, err := parseAddr(svc, opts.Addrs[svc])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, h := range hosts {
			s.addAddr(h+"."+d, ip)
		}
		s.add(&dns.SRV{
			Hdr:      s.hdr(srvNames[svc]+"."+d, dns.TypeSRV),
			Priority: 0, Weight: 1, Port: port,
			Target: hosts[0] + "." + d,
		})
		switch svc {
		case "smtp":
			s.add(&dns.MX{Hdr: s.hdr(d, dns.TypeMX), Preference: 10, Mx: "mail." + d})
			s.addAddr(d, ip) // the apex answers A too, for clients that fall back to it
		case "push":
			s.pushAddr = ip
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.addAddr("ns."+d, nsIP)

	if s.pushAddr.IsValid() {
		for _, h := range opts.PushHosts {
			name := dns.CanonicalName(h)
			first, rest, _ := strings.Cut(name, ".")
			if strings.Contains(first, "*") {
				if _, err := path.Match(first, "x"); err != nil || rest == "" {
					return fmt.Errorf("dnsserver: push host %q: bad pattern", h)
				}
				s.globs = append(s.globs, globHost{zone: rest, pattern: name})
				s.zones = appendUnique(s.zones, rest)
				continue
			}
			if _, ok := dns.IsDomainName(name); !ok {
				return fmt.Errorf("dnsserver: push host %q is not a domain name", h)
			}
			s.addAddr(name, s.pushAddr)
			if !dns.IsSubDomain(d, name) {
				s.zones = appendUnique(s.zones, name)
			}
		}
	}
	return nil
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// lookup returns the records owned by name and whether the name exists.
func (s *Server) lookup(name string) ([]dns.RR, bool) {
	if rrs, ok := s.names[name]; ok {
		return rrs, true
	}
	first, rest, _ := strings.Cut(name, ".")
	for _, g := range s.globs {
		if rest != g.zone {
			continue
		}
		pfirst, _, _ := strings.Cut(g.pattern, ".")
		if ok, _ := path.Match(pfirst, first); ok {
			rr := &dns.A{Hdr: s.hdr(name, dns.TypeA), A: s.pushAddr.AsSlice()}
			if s.pushAddr.Is6() {
				return []dns.RR{&dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA), AAAA: s.pushAddr.AsSlice()}}, true
			}
			return []dns.RR{rr}, true
		}
	}
	// An empty non-terminal (like _tcp.bbsim.test) exists without records.
	for owner := range s.names {
		if owner != name && dns.IsSubDomain(name, owner) {
			return nil, true
		}
	}
	return nil, false
}

// zoneSOA is the SOA put in the authority section for name: ours for the domain, a
// synthesised one for the push zones.
func (s *Server) zoneSOA(name string) dns.RR {
	if dns.IsSubDomain(s.domain, name) {
		return s.soa
	}
	apex := name
	for _, z := range s.zones {
		if dns.IsSubDomain(z, name) {
			apex = z
			break
		}
	}
	soa := *s.soa
	soa.Hdr.Name = apex
	return &soa
}

// Handler returns the server's DNS handler (its own ServeMux).
func (s *Server) Handler() dns.Handler { return s.mux }

func (s *Server) answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Compress = true
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeNotImplemented)
		m.Authoritative = false
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := dns.CanonicalName(q.Name)
	rrs, exists := s.lookup(name)
	for _, rr := range rrs {
		if q.Qtype == dns.TypeANY || rr.Header().Rrtype == q.Qtype {
			cp := dns.Copy(rr)
			cp.Header().Name = q.Name // echo the question's case
			m.Answer = append(m.Answer, cp)
		}
	}
	switch {
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, s.zoneSOA(name))
	case len(m.Answer) == 0:
		m.Ns = append(m.Ns, s.zoneSOA(name))
	default:
		m.Extra = s.additional(m.Answer)
	}
	s.log.Debug("query", "name", name, "type", dns.TypeToString[q.Qtype],
		"rcode", dns.RcodeToString[m.Rcode], "answers", len(m.Answer), "remote", w.RemoteAddr().String())
	_ = w.WriteMsg(m)
}

// additional returns the address records of SRV and MX targets.
func (s *Server) additional(ans []dns.RR) []dns.RR {
	var extra []dns.RR
	for _, rr := range ans {
		var target string
		switch v := rr.(type) {
		case *dns.SRV:
			target = v.Target
		case *dns.MX:
			target = v.Mx
		default:
			continue
		}
		rrs, _ := s.lookup(dns.CanonicalName(target))
		for _, a := range rrs {
			if t := a.Header().Rrtype; t == dns.TypeA || t == dns.TypeAAAA {
				extra = append(extra, a)
			}
		}
	}
	return extra
}

// refuse answers names outside every zone we hold: we are not a recursive resolver.
func (s *Server) refuse(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeRefused)
	_ = w.WriteMsg(m)
}

// Serve answers queries on pc and on connections accepted from ln (either may be nil)
// until Shutdown or Close, then returns ErrServerClosed.
func (s *Server) Serve(pc net.PacketConn, ln net.Listener) error {
	var serves []func() error
	if pc != nil {
		serves = append(serves, func() error { return s.ServeUDP(pc) })
	}
	if ln != nil {
		serves = append(serves, func() error { return s.ServeTCP(ln) })
	}
	return serveall.Run(s.Close, serves...)
}

// ServeUDP answers queries arriving on pc until Shutdown or Close. It returns
// ErrServerClosed after those.
func (s *Server) ServeUDP(pc net.PacketConn) error {
	return s.serve(&dns.Server{PacketConn: pc, Net: "udp", Handler: s.mux}, pc)
}

// ServeTCP answers queries on connections accepted from ln until Shutdown or Close. It
// returns ErrServerClosed after those.
func (s *Server) ServeTCP(ln net.Listener) error {
	return s.serve(&dns.Server{Listener: ln, Net: "tcp", Handler: s.mux}, ln)
}

func (s *Server) serve(srv *dns.Server, c io.Closer) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.ActivateAndServe()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	if err == nil {
		return nil
	}
	return fmt.Errorf("dnsserver: serve %s: %w", srv.Net, err)
}

// Shutdown stops every serve loop and waits, within ctx, for queries in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		err := srv.ShutdownContext(ctx)
		// A server that had not started yet is stopped by closing its socket.
		if srv.PacketConn != nil {
			srv.PacketConn.Close()
		}
		if srv.Listener != nil {
			srv.Listener.Close()
		}
		if err != nil && ctx.Err() != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops the server at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)
	return nil
}
