package radio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		want    Profile
		wantErr string
	}{
		{spec: "off", want: Profile{Name: Off}},
		{spec: "", want: Profile{Name: Off}},
		{spec: "GPRS", want: profiles[0]},
		{spec: "flaky,latency=2ms,jitter=1ms", want: Profile{Name: "flaky,latency=2ms,jitter=1ms", Latency: 2 * time.Millisecond,
			Jitter: time.Millisecond, Down: 1_920_000, Up: 128_000, Loss: 0.05, RTO: minRTO, Drop: 0.03, Bars: 1, Network: "3G"}},
		{spec: "wifi,drop=10%,down=512,rto=20ms", want: Profile{Name: "wifi,drop=10%,down=512,rto=20ms", Latency: time.Millisecond,
			Down: 512_000, Up: 20_000_000, RTO: 20 * time.Millisecond, Drop: 0.1, Bars: 4, Network: "WiFi"}},
		{spec: "lte", wantErr: `unknown radio profile "lte": want one of gprs, edge, 3g, wifi, flaky, off`},
		{spec: "off,latency=1s", wantErr: "off takes no figures"},
		{spec: "3g,loss=2", wantErr: `loss: "2" is not a probability`},
		{spec: "3g,latency", wantErr: `"latency" is not KEY=VALUE`},
		{spec: "3g,speed=1", wantErr: `unknown figure "speed"`},
		{spec: "3g,latency=5ms,jitter=6ms", wantErr: "jitter 6ms exceeds latency 5ms"},
		{spec: "flaky,latency=20ms", want: Profile{Name: "flaky,latency=20ms", Latency: 20 * time.Millisecond,
			Jitter: 10 * time.Millisecond, Down: 1_920_000, Up: 128_000, Loss: 0.05, RTO: minRTO, Drop: 0.03, Bars: 1, Network: "3G"}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v, want %+v", tt.spec, got, err, tt.want)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text    string
		want    []Step
		repeat  bool
		wantErr string
	}{
		{text: ""},
		{text: "in 60s, out 20s, repeat", want: []Step{{true, 60 * time.Second, 60 * time.Second}, {false, 20 * time.Second, 20 * time.Second}}, repeat: true},
		{text: "out 1s-3s", want: []Step{{false, time.Second, 3 * time.Second}}},
		{text: "in 60s, repeat, out 2s", wantErr: "repeat must come last"},
		{text: "up 60s", wantErr: `want "in DURATION"`},
		{text: "in soon", wantErr: `"soon" is not a positive duration`},
		{text: "in 0s", wantErr: "is not a positive duration"},
		{text: "out 3s-1s", wantErr: `"1s" is not a duration of at least 3s`},
		{text: "repeat", wantErr: "no in or out step"},
	}
	for _, tt := range tests {
		got, err := ParseSchedule(tt.text)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSchedule(%q) error = %v, want one containing %q", tt.text, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got.Steps) != len(tt.want) || got.Repeat != tt.repeat || got.String() != tt.text {
			t.Errorf("ParseSchedule(%q) = %+v, %v, want steps %+v repeat %v", tt.text, got, err, tt.want, tt.repeat)
			continue
		}
		for i := range tt.want {
			if got.Steps[i] != tt.want[i] {
				t.Errorf("ParseSchedule(%q) step %d = %+v, want %+v", tt.text, i, got.Steps[i], tt.want[i])
			}
		}
	}
}

// TestScheduleRun follows a schedule in a bubble: the toggles come at the written times,
// a range draws the same times from the same seed, and a schedule without repeat ends in
// coverage.
func TestScheduleRun(t *testing.T) {
	t.Parallel()
	type toggle struct {
		at time.Duration
		in bool
		d  time.Duration
	}
	run := func(text string, seed uint64, stopAfter time.Duration) (out []toggle) {
		s, err := ParseSchedule(text)
		if err != nil {
			t.Fatal(err)
		}
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), stopAfter)
			defer cancel()
			start := time.Now()
			s.Run(ctx, seed, func(in bool, d time.Duration) { out = append(out, toggle{time.Since(start), in, d}) })
		})
		return out
	}
	got := run("in 60s, out 20s, repeat", 1, 170*time.Second)
	want := []toggle{{0, true, 60 * time.Second}, {60 * time.Second, false, 20 * time.Second}, {80 * time.Second, true, 60 * time.Second},
		{140 * time.Second, false, 20 * time.Second}, {160 * time.Second, true, 60 * time.Second}}
	if len(got) != len(want) {
		t.Fatalf("toggles = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("toggle %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := run("out 5s", 1, time.Hour); len(got) != 2 || got[1] != (toggle{5 * time.Second, true, 0}) {
		t.Errorf("a schedule without repeat: toggles %v, want out 5s then in for good", got)
	}
	a, b, c := run("out 1s-60s, in 1s, repeat", 7, 5*time.Minute), run("out 1s-60s, in 1s, repeat", 7, 5*time.Minute), run("out 1s-60s, in 1s, repeat", 8, 5*time.Minute)
	if len(a) != len(b) || len(a) < 4 {
		t.Fatalf("same seed, different runs: %v and %v", a, b)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("same seed: toggle %d = %+v and %+v", i, a[i], b[i])
		}
	}
	if len(a) == len(c) && a[0] == c[0] && a[2] == c[2] {
		t.Errorf("seeds 7 and 8 drew the same times: %v", a)
	}
}

// pair returns a loopback TCP connection's two ends: the handset's, under l, and the
// peer's.
func pair(t *testing.T, l *Link) (handsetEnd, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Listener(ln, "test").Accept()
		accepted <- c
	}()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	handsetEnd = <-accepted
	t.Cleanup(func() { handsetEnd.Close(); peer.Close() })
	return handsetEnd, peer
}

// TestConnExchanges checks what each exchange pays: the latency once per direction
// change, the bytes at the direction's bandwidth, and a stall for a lost segment.
func TestConnExchanges(t *testing.T) {
	t.Parallel()
	p := Profile{Name: "test", Latency: 100 * time.Millisecond, Down: 8000, Up: 80_000, RTO: time.Second}
	l := NewLink(p, 1)
	var mu sync.Mutex
	var slept []time.Duration
	l.sleep = func(d time.Duration) { mu.Lock(); slept = append(slept, d); mu.Unlock() }
	h, peer := pair(t, l)
	br := bufio.NewReader(h)
	if _, err := peer.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(br, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{
		100*time.Millisecond + 10*time.Millisecond,  // latency, 10 bytes at 8 kbit/s
		100*time.Millisecond + 200*time.Microsecond, // a new exchange the other way: latency, 2 bytes at 80 kbit/s
		200 * time.Microsecond,                      // the same exchange: bandwidth only
	}
	mu.Lock()
	defer mu.Unlock()
	if len(slept) != len(want) {
		t.Fatalf("delays = %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Errorf("delay %d = %v, want %v", i, slept[i], want[i])
		}
	}

	lossy := NewLink(Profile{Name: "lossy", Loss: 1, RTO: 300 * time.Millisecond}, 1)
	var stall time.Duration
	lossy.sleep = func(d time.Duration) { stall = d }
	h2, _ := pair(t, lossy)
	if _, err := h2.Write([]byte("x")); err != nil || stall != 300*time.Millisecond {
		t.Errorf("a lost segment: write err %v, stall %v, want nil, 300ms", err, stall)
	}
}

// TestConnDrop checks that a dropped exchange fails on both ends: the handset gets
// ErrDropped, the peer a reset, and the link reports it.
func TestConnDrop(t *testing.T) {
	t.Parallel()
	l := NewLink(Profile{Name: "dropping", Drop: 1}, 1)
	dropped := make(chan string, 2)
	l.OnDrop(func(s string) { dropped <- s })
	h, peer := pair(t, l)
	if _, err := peer.Write([]byte("push")); err != nil {
		t.Fatal(err)
	}
	_, err := h.Read(make([]byte, 8))
	if !errors.Is(err, ErrDropped) {
		t.Fatalf("handset read: %v, want %v", err, ErrDropped)
	}
	if s := <-dropped; s != "test" {
		t.Errorf("drop reported for stream %q, want test", s)
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Read(make([]byte, 8)); err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "reset") {
		t.Errorf("peer read after the drop: %v, want a connection reset", err)
	}
}

// TestConnSeed checks that the same seed drops the same exchanges, and another seed not.
func TestConnSeed(t *testing.T) {
	t.Parallel()
	pattern := func(seed uint64, others int) string {
		var b strings.Builder
		l := NewLink(Profile{Name: "half", Drop: 0.5}, seed)
		for i := range 40 {
			if i < others {
				l.Wrap(nopConn{}, "other") // another stream's connection, in between
			}
			c := l.Wrap(nopConn{}, "s").(*conn)
			for i := range 3 {
				if _, drop := c.exchange(dirIn+i%2, 1); drop {
					b.WriteByte('x')
					break
				}
				b.WriteByte('.')
			}
			b.WriteByte(' ')
		}
		return b.String()
	}
	if a, b := pattern(42, 0), pattern(42, 7); a != b {
		t.Errorf("seed 42: drops %q, and %q with another stream's connections in between", a, b)
	}
	if a, b := pattern(42, 0), pattern(43, 0); a == b {
		t.Errorf("seeds 42 and 43 drop the same exchanges: %q", a)
	}
}

// TestOffInstallsNothing checks that an off profile shapes nothing.
func TestOffInstallsNothing(t *testing.T) {
	t.Parallel()
	l := NewLink(Profile{Name: Off}, 1)
	l.sleep = func(d time.Duration) { t.Errorf("slept %v under off", d) }
	c := l.Wrap(nopConn{}, "s").(*conn)
	if d, drop := c.exchange(dirIn, 1<<20); d != 0 || drop {
		t.Errorf("off: exchange = %v, %v; want 0, false", d, drop)
	}
}

type nopConn struct{ net.Conn }
