package pushserver

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// relay is the yardstick of BenchmarkRelayComparison: a push relay that keeps nothing.
// net/http in and out, pooled keep-alive connections to the receivers, and 200 to the
// initiator once the receiver has answered 200 (502 otherwise). It sends each push as one
// packet, as the gateway sends a small one. With perDevice, each device gets a client of
// its own, and so connections of its own, as the gateway's device links are: the fleet's
// receivers share one address, which a relay to real handsets could not share.
type relay struct {
	client    *http.Client
	fleetURL  string
	perDevice bool

	mu      sync.Mutex
	clients map[string]*http.Client // perDevice: by PIN
}

func (rl *relay) clientFor(pin string) *http.Client {
	if !rl.perDevice {
		return rl.client
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	c := rl.clients[pin]
	if c == nil {
		c = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}}
		rl.clients[pin] = c
	}
	return c
}

func (rl *relay) close() {
	rl.client.CloseIdleConnections()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for _, c := range rl.clients {
		c.CloseIdleConnections()
	}
}

func (rl *relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pin := r.URL.Query().Get("DESTINATION")
	body, err := io.ReadAll(r.Body)
	if err != nil || pin == "" {
		http.Error(w, "bad push", http.StatusBadRequest)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, rl.fleetURL+"/d/"+pin+"/", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	req.Header.Set("X-RIM-Push-ID", r.Header.Get("X-RIM-Push-ID"))
	req.Header.Set("X-Bbsim-Packet", "0/1")
	resp, err := rl.clientFor(pin).Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, resp.Status, http.StatusBadGateway)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// BenchmarkRelayComparison: the gateway (accepting, storing durably and delivering RIM
// pushes) against the relay above, both fed by wrk (benchInitiators connections) and both
// delivering to the same 1,000 receivers in a process of their own. Runs alternate,
// gateway and relay, in BBSIM_BENCH_PAIRS pairs (default 3) of BBSIM_BENCH_SECONDS
// (default 3) each, the first of each pair alternating too; it reports the medians and
// the median of the pairs' ratios (gateway/relay), the figure to bring to 0.8 or more.
// BBSIM_BENCH_RELAY=per-device gives the relay a connection per device, as the gateway has.
// Each run logs its CPU per push, the receivers' included. Needs wrk.
func BenchmarkRelayComparison(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk is not installed: run make bench-deps (Debian package wrk)")
	}
	raiseNoFile(b)
	secs, pairs := 3, 3
	if n, err := strconv.Atoi(os.Getenv("BBSIM_BENCH_SECONDS")); err == nil && n > 0 {
		secs = n
	}
	if n, err := strconv.Atoi(os.Getenv("BBSIM_BENCH_PAIRS")); err == nil && n > 0 {
		pairs = n
	}
	perDevice := os.Getenv("BBSIM_BENCH_RELAY") == "per-device"
	for range b.N {
		fp := startFleetProcess(b, receiversFast)
		devs := benchDevices(1000)
		script := wrkScriptFile(b, devs)
		// Unmeasured, a first run of each warms the receivers' process and this one (their
		// heaps, the receivers' state, SQLite's cache): otherwise the first pair's gateway
		// run pays for it alone, at twice its CPU per push.
		gatewayRate(b, wrk, script, fp, devs, 1)
		relayRate(b, wrk, script, fp, 1, perDevice)
		var gws, rls, ratios, gcpus, rcpus []float64
		for i := range pairs {
			var g, r run
			if i%2 == 0 {
				g = gatewayRate(b, wrk, script, fp, devs, secs)
				r = relayRate(b, wrk, script, fp, secs, perDevice)
			} else {
				r = relayRate(b, wrk, script, fp, secs, perDevice)
				g = gatewayRate(b, wrk, script, fp, devs, secs)
			}
			gws, rls, ratios = append(gws, g.rate), append(rls, r.rate), append(ratios, g.rate/r.rate)
			gcpus, rcpus = append(gcpus, g.cpu), append(rcpus, r.cpu)
			b.Logf("pair %d: gateway %.0f/s %.0f µs/push (receivers %.0f), relay %.0f/s %.0f µs/push (receivers %.0f), ratio %.2f",
				i+1, g.rate, g.cpu, g.receiversCPU, r.rate, r.cpu, r.receiversCPU, g.rate/r.rate)
		}
		b.ReportMetric(median(gws), "gateway-pushes/s")
		b.ReportMetric(median(rls), "relay-pushes/s")
		b.ReportMetric(median(ratios), "ratio")
		b.ReportMetric(median(gcpus), "gateway-cpu-us/push")
		b.ReportMetric(median(rcpus), "relay-cpu-us/push")
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// run is one side's figures: pushes delivered per second, and the CPU per push (µs) of
// this process (the gateway or the relay: wrk and the receivers are apart) and of the
// receivers' process.
type run struct{ rate, cpu, receiversCPU float64 }

// gatewayRate runs a fresh gateway under wrk and measures it, from the first request to the
// last accepted push's arrival.
func gatewayRate(b *testing.B, wrk, script string, fp *fleetProcess, devs []Device, secs int) run {
	s, base, served := startServing(b, Options{Devices: devs, MaxActive: 100000})
	defer func() {
		s.Close()
		<-served
	}()
	attachFleet(b, base, fp.receiverURL(), devs)
	n0, rcpu0 := arrivals(b, fp)
	cpu0 := cpuTime()
	start := time.Now()
	v := runWrk(b, wrk, script, base, secs)
	if bad := v[2] + v[3] + v[4] + v[5] + v[6]; bad > 0 {
		b.Errorf("gateway: wrk saw %d errors", bad)
	}
	accepted := int64(testutil.ToFloat64(s.m.accepted))
	deadline := time.Now().Add(60 * time.Second)
	n, rcpu := arrivals(b, fp)
	for n-n0 < accepted {
		if time.Now().After(deadline) {
			b.Fatalf("gateway: delivered %d of %d accepted", n-n0, accepted)
		}
		time.Sleep(2 * time.Millisecond)
		n, rcpu = arrivals(b, fp)
	}
	return run{float64(n-n0) / time.Since(start).Seconds(), perPush(cpuTime()-cpu0, n-n0), perPush(rcpu-rcpu0, n-n0)}
}

// arrivals counts the pushes completed at the receivers so far, whether or not a device
// already had the push id (every run's wrk starts its push ids afresh), and returns the CPU
// the receivers' process has used.
func arrivals(b *testing.B, fp *fleetProcess) (int64, time.Duration) {
	n, dups, cpu := fp.counts(b)
	return n + dups, cpu
}

// perPush is cpu per push in µs.
func perPush(cpu time.Duration, pushes int64) float64 {
	return float64(cpu.Microseconds()) / float64(max(pushes, 1))
}

// relayRate runs the relay under wrk and measures it: each push is answered 200 once
// delivered.
func relayRate(b *testing.B, wrk, script string, fp *fleetProcess, secs int, perDevice bool) run {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	rl := &relay{client: &http.Client{Transport: tr}, fleetURL: fp.receiverURL(), perDevice: perDevice, clients: map[string]*http.Client{}}
	defer rl.close()
	srv := &http.Server{Handler: rl}
	go srv.Serve(ln)
	defer srv.Close()
	n0, rcpu0 := arrivals(b, fp)
	cpu0 := cpuTime()
	v := runWrk(b, wrk, script, "http://"+ln.Addr().String(), secs)
	if bad := v[2] + v[3] + v[4] + v[5] + v[6]; bad > 0 {
		b.Errorf("relay: wrk saw %d errors", bad)
	}
	n, rcpu := arrivals(b, fp)
	n -= n0
	return run{float64(n) / (float64(v[7]) / 1e6), perPush(cpuTime()-cpu0, n), perPush(rcpu-rcpu0, n)}
}
