package bisclient

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// servers returns the IMAP and POP3 addresses to use: the configured ones, or what DNS
// says for the e-mail domain.
func (c *Client) servers(ctx context.Context) (imapAddr, pop3Addr string, err error) {
	c.imapTLS, c.pop3TLS = false, false
	if c.opts.Server != "" {
		imapAddr = c.opts.Server
		if c.opts.Protocol == "pop3" {
			imapAddr = ""
			pop3Addr = c.opts.Server
		}
		if c.opts.POP3Server != "" {
			pop3Addr = c.opts.POP3Server
		} else if pop3Addr == "" {
			pop3Addr = pop3Beside(c.opts.Server, c.opts.Security == "tls")
		}
		return imapAddr, pop3Addr, nil
	}
	d, err := Discover(ctx, c.opts.DNS, c.domain())
	if err != nil {
		return "", "", err
	}
	if c.opts.POP3Server != "" {
		d.POP3, d.POP3TLS = c.opts.POP3Server, false
	}
	c.imapTLS, c.pop3TLS = d.IMAPTLS, d.POP3TLS
	return d.IMAP, d.POP3, nil
}

// pop3Beside is where the POP3 service of the IMAP server at imapAddr is taken to be: on
// the same host (the credentials go nowhere else), on the standard port, 110 (995 with
// implicit TLS; RFC 1939, RFC 8314), or 1110 beside bbsim's own IMAP port 1143.
func pop3Beside(imapAddr string, implicitTLS bool) string {
	host, port, _ := net.SplitHostPort(imapAddr)
	p := "110"
	switch {
	case port == "1143":
		p = "1110"
	case implicitTLS || port == "993":
		p = "995"
	}
	return net.JoinHostPort(host, p)
}

func (c *Client) domain() string {
	_, dom, ok := strings.Cut(c.h.Email(), "@")
	if !ok {
		_, dom, _ = strings.Cut(c.opts.Username, "@")
	}
	return dom
}

// Discovered are the servers found for a mail domain.
type Discovered struct {
	IMAP, POP3 string // host:port, "" when none
	// IMAPTLS and POP3TLS say the server found is the implicit-TLS one (imaps, pop3s).
	IMAPTLS, POP3TLS bool
}

// Discover finds a domain's mail servers through the resolver at dnsAddr: SRV records
// _imaps._tcp, _imap._tcp, _pop3s._tcp and _pop3._tcp (RFC 6186), then the MX host, then
// the domain's own address, on the standard ports.
func Discover(ctx context.Context, dnsAddr, domain string) (Discovered, error) {
	var d Discovered
	if domain == "" {
		return d, fmt.Errorf("discover: no e-mail domain")
	}
	r := &resolver{addr: dnsAddr}
	srv := func(name string) string {
		rrs, err := r.query(ctx, name+"."+dns.Fqdn(domain), dns.TypeSRV)
		if err != nil {
			return ""
		}
		for _, rr := range rrs {
			if s, ok := rr.(*dns.SRV); ok && s.Target != "." {
				host := r.addrOf(ctx, s.Target)
				if host != "" {
					return net.JoinHostPort(host, strconv.Itoa(int(s.Port)))
				}
			}
		}
		return ""
	}
	if a := srv("_imaps._tcp"); a != "" {
		d.IMAP, d.IMAPTLS = a, true
	} else if a := srv("_imap._tcp"); a != "" {
		d.IMAP = a
	}
	if a := srv("_pop3s._tcp"); a != "" {
		d.POP3, d.POP3TLS = a, true
	} else if a := srv("_pop3._tcp"); a != "" {
		d.POP3 = a
	}
	if d.IMAP != "" || d.POP3 != "" {
		return d, nil
	}
	host := ""
	if rrs, err := r.query(ctx, dns.Fqdn(domain), dns.TypeMX); err == nil {
		for _, rr := range rrs {
			if mx, ok := rr.(*dns.MX); ok {
				host = r.addrOf(ctx, mx.Mx)
				break
			}
		}
	}
	if host == "" {
		host = r.addrOf(ctx, dns.Fqdn(domain))
	}
	if host == "" {
		return d, fmt.Errorf("discover %s via %s: %w", domain, dnsAddr, errNoServer)
	}
	return Discovered{IMAP: net.JoinHostPort(host, "143"), POP3: net.JoinHostPort(host, "110")}, nil
}

type resolver struct{ addr string }

func (r *resolver) query(ctx context.Context, name string, t uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	c := &dns.Client{}
	in, _, err := c.ExchangeContext(ctx, m, r.addr)
	if err != nil {
		return nil, err
	}
	if in.Truncated {
		c.Net = "tcp"
		if in, _, err = c.ExchangeContext(ctx, m, r.addr); err != nil {
			return nil, err
		}
	}
	if in.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s %s: %s", name, dns.TypeToString[t], dns.RcodeToString[in.Rcode])
	}
	return append(in.Answer, in.Extra...), nil
}

// addrOf resolves a host name to an IPv4 (or IPv6) address literal.
func (r *resolver) addrOf(ctx context.Context, host string) string {
	if ip := net.ParseIP(strings.TrimSuffix(host, ".")); ip != nil {
		return ip.String()
	}
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, dns.Fqdn(host), t)
		if err != nil {
			continue
		}
		for _, rr := range rrs {
			switch a := rr.(type) {
			case *dns.A:
				if a.Hdr.Name == dns.Fqdn(host) {
					return a.A.String()
				}
			case *dns.AAAA:
				if a.Hdr.Name == dns.Fqdn(host) {
					return a.AAAA.String()
				}
			}
		}
	}
	return ""
}
