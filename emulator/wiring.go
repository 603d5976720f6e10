package emulator

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/bbsim/bbsim/bisclient"
	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/dnsserver"
	"github.com/bbsim/bbsim/internal/radio"
	"github.com/bbsim/bbsim/mailserver"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/pushserver/bis"
	"github.com/bbsim/bbsim/registration"
)

// buildServers builds the bundled servers on their bound listeners.
func (e *Emulator) buildServers() error {
	if err := e.buildMail(); err != nil {
		return err
	}
	if err := e.buildPush(); err != nil {
		return err
	}
	return e.buildDNS()
}

func (e *Emulator) buildMail() error {
	c := e.cfg.Mail
	var users []mailserver.User
	for _, u := range c.Users {
		users = append(users, mailserver.User{Email: u.Email, Password: u.Password, PIN: u.PIN})
	}
	ms, err := mailserver.New(mailserver.Options{
		DataDir: filepath.Join(e.cfg.Data, "mail"), Domain: c.Domain, Users: users,
		Locking: mailserver.Locking(c.StoreLocking), PoliteDisconnect: c.PoliteDisconnect,
		NoIdle: c.NoIdle, MaxConnectionsPerUser: c.MaxConnectionsPerUser, Logger: e.log,
		AuthFailureDelay: noDelayIsNegative(e.cfg.AuthFailureDelay),
	})
	if err != nil {
		return fmt.Errorf("mail server: %w", err)
	}
	e.closers = append(e.closers, ms.Close)
	lns := mailserver.Listeners{IMAP: e.lns["imap"], POP3: e.lns["pop3"], SMTP: e.lns["smtp"], Webmail: e.lns["webmail"]}
	if lns != (mailserver.Listeners{}) {
		e.addServer("mail server", func() error { return ms.Serve(lns) }, ms.Shutdown)
	}
	return nil
}

func (e *Emulator) buildPush() error {
	c := e.cfg
	var devices []pushserver.Device
	for _, u := range c.Mail.Users {
		if u.PIN != "" {
			devices = append(devices, pushserver.Device{PIN: u.PIN, Email: u.Email, Password: u.Password})
		}
	}
	groups := map[string][]string{}
	for _, g := range c.Push.Groups {
		groups[g.Name] = g.PINs
	}
	var inits []pushserver.Initiator
	for _, in := range c.Push.Auth {
		inits = append(inits, pushserver.Initiator{Name: in.Name, Password: in.Password, Allowed: in.Allowed})
	}
	var apps []bis.App
	for _, pa := range c.Push.Apps {
		apps = append(apps, bis.App{ID: pa.ID, Password: pa.Password, Port: pa.Port, CPURL: pa.CPURL})
	}
	ps, err := pushserver.New(pushserver.Options{
		DataDir: filepath.Join(c.Data, "push"), PushDB: c.Push.DB, PushInstance: c.Push.Instance, ResetDevices: c.Push.ResetDevices, Devices: devices, Groups: groups, PacketSize: c.Push.PacketSize,
		FlowControlTimeout: c.Push.FlowControlTimeout, MaxActive: c.Push.MaxActive,
		MaxHeaderBytes: c.Push.MaxHeaderBytes, MaxBodyBytes: c.Push.MaxBodyBytes,
		ReadHeaderTimeout: c.Push.ReadHeaderTimeout, PushAuth: inits,
		Logger: e.log,
	})
	if err != nil {
		return fmt.Errorf("push server: %w", err)
	}
	e.closers = append(e.closers, ps.Close)
	e.openers = append(e.openers, func(ctx context.Context) error {
		if err := ps.Open(ctx); err != nil {
			return fmt.Errorf("push server: %w", err)
		}
		return nil
	})
	// The BIS push service lives on the push server's port and needs the server itself:
	// it is mounted once both are built.
	svc, err := bis.New(bis.Options{DataDir: filepath.Join(c.Data, "push"), Apps: apps, Gateway: ps, Logger: e.log,
		AuthFailureDelay: noDelayIsNegative(c.AuthFailureDelay)})
	if err != nil {
		return fmt.Errorf("BIS push service: %w", err)
	}
	e.closers = append(e.closers, svc.Close)
	ps.Mount("/mss/", svc.Handler())
	ps.Mount("/cp/", svc.Handler())
	ps.OnResult(svc.HandleResult)
	if ln, ok := e.lns["push"]; ok {
		e.addServer("push", func() error { return ps.Serve(ln) }, ps.Shutdown)
	}
	return nil
}

func (e *Emulator) buildDNS() error {
	addrs := map[string]string{}
	for flag, svc := range map[string]string{"imap": "imap", "pop3": "pop3", "smtp": "smtp", "webmail": "webmail", "push": "push"} {
		if a := e.Addr(flag); a != "" {
			addrs[svc] = a
		}
	}
	dns, err := dnsserver.New(dnsserver.Options{Domain: e.cfg.Mail.Domain, Addrs: addrs, Logger: e.log})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	pc, ln := e.pcs["dns"], e.lns["dns"]
	if pc != nil || ln != nil {
		e.addServer("dns", func() error { return dns.Serve(pc, ln) }, dns.Shutdown)
	}
	return nil
}

// gateway is the push gateway the handset attaches to: the bundled one when this process
// runs it.
func (e *Emulator) gateway() string {
	if e.mode&ModeServer != 0 {
		if a := e.Addr("push"); a != "" {
			return "http://" + a
		}
	}
	return e.cfg.Handset.Gateway
}

// buildAgents builds the handset's agents: mail integration, push receiver, registration.
func (e *Emulator) buildAgents() error {
	c := e.cfg.Handset
	h := e.Handset
	for _, ha := range c.Apps {
		if _, err := h.DeclareApp(ha.ID, ha.Port, ha.CPURL); err != nil {
			return err
		}
	}
	server, resolver := c.MailServer, c.Resolver
	if e.mode&ModeServer != 0 && server == "" && resolver == "" {
		// Standalone: discover the bundled servers through the bundled zone.
		resolver = e.Addr("dns")
	}
	// The bundled server's self-signed certificate is trusted, whether the server runs
	// here or as "bbsim server" with the same --data.
	var cas []string
	if f := mailserver.CertFile(filepath.Join(e.cfg.Data, "mail")); fileExists(f) {
		cas = append(cas, f)
	}
	if c.MailCAFile != "" {
		cas = append(cas, c.MailCAFile)
	}
	link, err := e.buildRadio()
	if err != nil {
		return err
	}
	// The device's connections cross the radio link, when there is one.
	linkDial := func(stream string) func(ctx context.Context, network, addr string) (net.Conn, error) {
		if link == nil {
			return nil
		}
		return link.Dialer(nil, stream)
	}
	bc, err := bisclient.New(bisclient.Options{
		Handset: h, Server: server, Protocol: c.MailProtocol, Security: c.MailSecurity,
		Username: c.Email, Password: c.Password, DNS: resolver, PollInterval: c.PollInterval,
		CAFiles: cas, Insecure: c.MailInsecure, Logger: e.log, Dial: linkDial("mail"),
	})
	if err != nil {
		return fmt.Errorf("mail integration: %w", err)
	}
	e.addAgent("bisclient", bc.Run)

	receiverURL := ""
	if ln, ok := e.lns["listen"]; ok {
		receiverURL = "http://" + ln.Addr().String() + "/"
	}
	rx, err := browserpush.New(browserpush.Options{Handset: h, Gateway: e.gateway(), ReceiverURL: receiverURL,
		CheckEvery: c.GatewayCheck, Token: c.ListenToken, Password: c.Password, Logger: e.log,
		// The device's own requests to the gateway (attach, check, acks, delete URLs, page
		// fetches) cross the same radio link.
		Dial: linkDial("device requests")})
	if err != nil {
		return fmt.Errorf("push receiver: %w", err)
	}
	e.closers = append(e.closers, rx.Close)
	if ln, ok := e.lns["listen"]; ok {
		if link != nil {
			ln = link.Listener(ln, "device link")
		}
		e.addServer("receiver", func() error { return rx.Serve(ln) }, rx.Shutdown)
	}
	e.addAgent("device link", rx.Run)

	ag, err := registration.New(registration.Options{Handset: h, Gateway: e.gateway(), Logger: e.log})
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	e.addAgent("registration", ag.Run)
	return nil
}

// buildRadio sets up the handset's radio conditions: the link its connections run under
// (nil without a profile: nothing is wrapped) and the coverage schedule's agent.
func (e *Emulator) buildRadio() (*radio.Link, error) {
	c := e.cfg.Handset
	rc, err := radio.ParseConditions(c.Radio, c.CoverageSchedule, c.RadioSeed)
	if err != nil {
		return nil, err
	}
	link := rc.Link()
	if link != nil {
		radio.Attach(e.Handset, link)
	}
	if !rc.Schedule.Empty() {
		e.addAgent("coverage schedule", func(ctx context.Context) error {
			radio.RunSchedule(ctx, rc.Schedule, rc.Seed, e.Handset)
			return nil
		})
	}
	return link, nil
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// MailCertFile is the bundled mail server's TLS certificate, "" when this emulator runs no
// mail server.
func (e *Emulator) MailCertFile() string {
	if e.mode&ModeServer == 0 {
		return ""
	}
	return mailserver.CertFile(filepath.Join(e.cfg.Data, "mail"))
}

// noDelayIsNegative maps the flag's 0 (no wait) to the Options' negative (no wait), whose
// zero means the default.
func noDelayIsNegative(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
