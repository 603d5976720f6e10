package config

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, groups Group, args []string, env map[string]string) (Config, error) {
	t.Helper()
	c := Default()
	c.Data = t.TempDir()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs, groups)
	err := c.Load(fs, args, func(k string) string { return env[k] })
	return c, err
}

func TestPrecedence(t *testing.T) {
	all := GroupData | GroupMail | GroupPush | GroupDNS | GroupHandset
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(Config) string
	}{
		{"defaults", nil, nil, func(c Config) string {
			if c.Mail.IMAP != "127.0.0.1:1143" || len(c.Mail.Users) != 1 || c.Mail.Users[0] != DefaultUser || c.Push.FlowControlTimeout != 10*time.Minute {
				return "defaults not applied"
			}
			return ""
		}},
		{"env sets", nil, map[string]string{"BBSIM_IMAP": "127.0.0.1:9143", "BBSIM_POLITE_DISCONNECT": "true"}, func(c Config) string {
			if c.Mail.IMAP != "127.0.0.1:9143" || !c.Mail.PoliteDisconnect {
				return "env not applied"
			}
			return ""
		}},
		{"flag beats env", []string{"--imap", "127.0.0.1:7143"}, map[string]string{"BBSIM_IMAP": "127.0.0.1:9143"}, func(c Config) string {
			if c.Mail.IMAP != "127.0.0.1:7143" {
				return "env beat the flag"
			}
			return ""
		}},
		{"repeatable flag replaces default", []string{"--user", "bob@x.test:pw:2100000B", "--user", "carol@x.test:pw"}, nil, func(c Config) string {
			if len(c.Mail.Users) != 2 || c.Mail.Users[0].Email != "bob@x.test" || c.Mail.Users[0].PIN != "2100000B" {
				return "users not replaced"
			}
			return ""
		}},
		{"repeatable env, flag replaces", []string{"--group", "b=2100000B"}, map[string]string{"BBSIM_GROUP": "a=2100000A c=2100000C"}, func(c Config) string {
			if len(c.Push.Groups) != 1 || c.Push.Groups[0].String() != "b=2100000B" {
				return fmt.Sprintf("groups = %v", c.Push.Groups)
			}
			return ""
		}},
		{"push store from env", nil, map[string]string{"BBSIM_PUSH_DB": "postgres://bbsim:pw@127.0.0.1:5432/push"}, func(c Config) string {
			if c.Push.DB != "postgres://bbsim:pw@127.0.0.1:5432/push" {
				return "push db = " + c.Push.DB
			}
			return ""
		}},
		{"repeatable env", nil, map[string]string{"BBSIM_USER": "a@x.test:p b@x.test:q:2100000B"}, func(c Config) string {
			if len(c.Mail.Users) != 2 || c.Mail.Users[1].PIN != "2100000B" {
				return "env users not applied"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, all, tt.args, tt.env)
			if err != nil {
				t.Fatalf("Load(%q) = %v", tt.args, err)
			}
			if msg := tt.check(c); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := load(t, GroupData|GroupMail|GroupPush|GroupHandset,
		[]string{"--imap", "nope", "--store-locking", "maybe", "--pin", "XYZ", "--mail-protocol", "smoke", "--packet-size", "1"}, nil)
	if err == nil {
		t.Fatal("Load accepted a bad configuration")
	}
	for _, want := range []string{"--imap", "--store-locking", "--pin", "--mail-protocol", "--packet-size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestBadEnvIsReported(t *testing.T) {
	_, err := load(t, GroupMail, nil, map[string]string{"BBSIM_USER": "nocolon"})
	if err == nil || !strings.Contains(err.Error(), "BBSIM_USER") {
		t.Fatalf("Load with BBSIM_USER=nocolon = %v, want an error naming the variable", err)
	}
}

func TestPushInstanceNeedsPushDB(t *testing.T) {
	groups := GroupData | GroupMail | GroupPush | GroupDNS | GroupHandset
	if _, err := load(t, groups, []string{"--push-instance", "east"}, nil); err == nil || !strings.Contains(err.Error(), "--push-instance") {
		t.Fatalf("Load with --push-instance alone = %v, want an error naming the flag", err)
	}
	c, err := load(t, groups, []string{"--push-instance", "east"}, map[string]string{"BBSIM_PUSH_DB": "postgres://db/push"})
	if err != nil || c.Push.Instance != "east" {
		t.Fatalf("Load with --push-instance and BBSIM_PUSH_DB = %+v, %v", c.Push, err)
	}
}

func TestBadPushDBIsReportedWithoutPassword(t *testing.T) {
	_, err := load(t, GroupData|GroupMail|GroupPush|GroupDNS|GroupHandset, []string{"--push-db", "mysql://bbsim:s3cret@db/push"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--push-db") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Load with --push-db mysql://… = %v, want an error naming the flag, without the password", err)
	}
}

func TestHelpShowsEffectiveValue(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var out strings.Builder
	fs.SetOutput(&out)
	c.Register(fs, GroupMail)
	c.Load(fs, []string{"-h"}, func(k string) string {
		if k == "BBSIM_SMTP" {
			return "127.0.0.1:3525"
		}
		return ""
	})
	if !strings.Contains(out.String(), "127.0.0.1:3525") {
		t.Errorf("usage does not show the environment's value:\n%s", out.String())
	}
}

func TestParsers(t *testing.T) {
	if a, err := ParsePushApp("app1:secret:30000:http://127.0.0.1:8080/cp"); err != nil || a.Port != 30000 || a.CPURL != "http://127.0.0.1:8080/cp" {
		t.Errorf("ParsePushApp = %+v, %v", a, err)
	}
	for _, bad := range []string{"app1", "app1:pw:notaport", "app1:pw:1:ftp://x"} {
		if _, err := ParsePushApp(bad); err == nil {
			t.Errorf("ParsePushApp(%q) = nil error", bad)
		}
	}
	if a, err := ParseHandsetApp("app1:100"); err != nil || a.Port != 100 {
		t.Errorf("ParseHandsetApp = %+v, %v", a, err)
	}
	if in, err := ParseInitiator("acme:pw:2100000A,$sales"); err != nil || len(in.Allowed) != 2 {
		t.Errorf("ParseInitiator = %+v, %v", in, err)
	}
	if g, err := ParseGroup("$sales=2100000a,2100000B"); err != nil || g.Name != "sales" || g.PINs[0] != "2100000A" {
		t.Errorf("ParseGroup = %+v %v", g, err)
	}
	if _, err := ParseGroup("sales=zz"); err == nil {
		t.Error("ParseGroup(sales=zz) = nil error")
	}
}

func TestBeyondLoopbackNeedsToken(t *testing.T) {
	tests := []struct {
		api, apiToken, listen, listenToken string
		want                               string // in the error; "" for none
	}{
		{"127.0.0.1:7880", "", "127.0.0.1:7874", "", ""},
		{"localhost:7880", "", "[::1]:7874", "", ""},
		{"0.0.0.0:7880", "", "127.0.0.1:7874", "", "--api-token"},
		{":7880", "", "127.0.0.1:7874", "", "--api-token"},
		{"0.0.0.0:7880", "t", "127.0.0.1:7874", "", ""},
		{"127.0.0.1:7880", "", "192.0.2.1:7874", "", "--listen-token"},
		{"127.0.0.1:7880", "", "192.0.2.1:7874", "t", ""},
	}
	for _, tt := range tests {
		c := Default()
		c.Handset.API, c.Handset.APIToken, c.Handset.Listen, c.Handset.ListenToken = tt.api, tt.apiToken, tt.listen, tt.listenToken
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(api %s, listen %s) = %v, want nil", tt.api, tt.listen, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Validate(api %s, listen %s) = %v, want an error naming %s", tt.api, tt.listen, err, tt.want)
		}
	}
}

// TestUsageIsGrouped: --help lists the flags under their component, each once.
func TestUsageIsGrouped(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	all := GroupData | GroupMail | GroupPush | GroupDNS | GroupHandset | GroupUI
	c.Register(fs, all)
	var out strings.Builder
	PrintUsage(&out, fs, all)
	u := out.String()
	order := []string{"State and logs:", "--data", "Mail server:", "--imap", "Push server:", "--push-db", "DNS zone:", "--dns", "Handset:", "--pin"}
	at := 0
	for _, w := range order {
		i := strings.Index(u[at:], w)
		if i < 0 {
			t.Fatalf("usage has no %q after position %d:\n%s", w, at, u)
		}
		at += i
	}
	if n := strings.Count(u, "  --headless\n"); n != 1 {
		t.Errorf("--headless listed %d times", n)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if got := strings.Count(u, "\n  --"); got != n {
		t.Errorf("usage lists %d flags, the set has %d", got, n)
	}
}

// Groups, initiators and push apps are parsed once, as they are set: a bad one is refused
// naming the flag or variable, a good one arrives parsed, and --help hides passwords.
func TestRepeatableFlagsParsedOnce(t *testing.T) {
	groups := GroupData | GroupMail | GroupPush | GroupDNS | GroupHandset
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--group", "sales=zz"}, nil, "group"},
		{nil, map[string]string{"BBSIM_PUSH_APP": "app1:pw:0"}, "BBSIM_PUSH_APP"},
		{[]string{"--push-auth", "nopassword"}, nil, "push-auth"},
		{[]string{"--app", "app1:x"}, nil, "app"},
	} {
		if _, err := load(t, groups, tc.args, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %v) = %v, want an error naming %s", tc.args, tc.env, err, tc.want)
		}
	}
	c, err := load(t, groups, []string{"--group", "$sales=2100000a", "--push-auth", "acme:pw:$sales", "--push-app", "app1:pw:30000:http://127.0.0.1:9/cp", "--app", "app1:30000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Push.Groups) != 1 || c.Push.Groups[0].Name != "sales" || c.Push.Groups[0].PINs[0] != "2100000A" ||
		len(c.Push.Auth) != 1 || c.Push.Auth[0].Allowed[0] != "$sales" ||
		len(c.Push.Apps) != 1 || c.Push.Apps[0].Port != 30000 || c.Push.Apps[0].CPURL != "http://127.0.0.1:9/cp" ||
		len(c.Handset.Apps) != 1 || c.Handset.Apps[0].Port != 30000 {
		t.Fatalf("parsed = %+v %+v", c.Push, c.Handset.Apps)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.Register(fs, groups)
	for _, name := range []string{"push-auth", "push-app"} {
		if v := fs.Lookup(name).Value.String(); strings.Contains(v, ":pw") {
			t.Errorf("--%s shows %q, with its password", name, v)
		}
	}
}

func TestRadioFlags(t *testing.T) {
	c, err := load(t, GroupHandset, []string{"--radio", "flaky,latency=20ms", "--coverage-schedule", "in 60s, out 20s, repeat", "--radio-seed", "7"},
		map[string]string{"BBSIM_RADIO": "gprs"})
	if err != nil || c.Handset.Radio != "flaky,latency=20ms" || c.Handset.CoverageSchedule != "in 60s, out 20s, repeat" || c.Handset.RadioSeed != 7 {
		t.Errorf("radio flags = %q, %q, %d, %v", c.Handset.Radio, c.Handset.CoverageSchedule, c.Handset.RadioSeed, err)
	}
	if c, err := load(t, GroupHandset, nil, map[string]string{"BBSIM_RADIO": "edge"}); err != nil || c.Handset.Radio != "edge" {
		t.Errorf("BBSIM_RADIO=edge: radio %q, %v", c.Handset.Radio, err)
	}
	_, err = load(t, GroupHandset, []string{"--radio", "lte", "--coverage-schedule", "sometimes"}, nil)
	for _, want := range []string{`--radio: unknown radio profile "lte"`, `--coverage-schedule: coverage schedule "sometimes"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %s", err, want)
		}
	}
}
