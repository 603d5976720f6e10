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
// its own, and so connections of its own, as handsets each at an address of their own
// would: the fleet's receivers share one address, whose connections the relay and the
// gateway both pool.
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
//
// One gateway and one relay serve every run, as in service: warm, with their connections
// to the receivers open and the gateway's store at its working size. An unmeasured first
// run of each warms them and the receivers. BBSIM_BENCH_GATEWAY=fresh starts a gateway
// with an empty store for each run instead (its first seconds: the store's files growing
// make each commit's sync slower). BBSIM_BENCH_RELAY=per-device gives the relay a
// connection per device, as the gateway has. Each run logs its CPU per push, the
// receivers' included. Needs wrk.
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
	fresh := os.Getenv("BBSIM_BENCH_GATEWAY") == "fresh"
	perDevice := os.Getenv("BBSIM_BENCH_RELAY") == "per-device"
	for range b.N {
		fp := startFleetProcess(b, receiversFast)
		devs := benchDevices(1000)
		script := wrkScriptFile(b, devs)
		runs := 0
		var gw *benchGateway
		gateway := func(secs int) run {
			runs++
			if gw == nil || fresh {
				if gw != nil {
					gw.close()
				}
				gw = startBenchGateway(b, fp, devs)
			}
			return gw.measure(b, wrk, script, fp, secs, runs)
		}
		rl := startBenchRelay(b, fp, perDevice)
		relay := func(secs int) run {
			runs++
			return rl.measure(b, wrk, script, fp, secs, runs)
		}
		gateway(1)
		relay(1)
		var gws, rls, ratios, gcpus, rcpus []float64
		for i := range pairs {
			var g, r run
			if i%2 == 0 {
				g, r = gateway(secs), relay(secs)
			} else {
				r, g = relay(secs), gateway(secs)
			}
			gws, rls, ratios = append(gws, g.rate), append(rls, r.rate), append(ratios, g.rate/r.rate)
			gcpus, rcpus = append(gcpus, g.cpu), append(rcpus, r.cpu)
			b.Logf("pair %d: gateway %.0f/s %.0f µs/push (receivers %.0f), relay %.0f/s %.0f µs/push (receivers %.0f), ratio %.2f",
				i+1, g.rate, g.cpu, g.receiversCPU, r.rate, r.cpu, r.receiversCPU, g.rate/r.rate)
		}
		gw.close()
		rl.close()
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

// benchGateway is a gateway serving the fleet's 1,000 devices.
type benchGateway struct {
	s      *Server
	base   string
	served <-chan error
}

func startBenchGateway(b *testing.B, fp *fleetProcess, devs []Device) *benchGateway {
	s, base, served := startServing(b, Options{Devices: devs, MaxActive: 100000})
	attachFleet(b, base, fp.receiverURL(), devs)
	return &benchGateway{s, base, served}
}

func (g *benchGateway) close() {
	g.s.Close()
	<-g.served
}

// measure runs wrk against the gateway, as run number n, and measures it from the first
// request to the last accepted push's arrival.
func (g *benchGateway) measure(b *testing.B, wrk, script string, fp *fleetProcess, secs, n int) run {
	n0, rcpu0 := arrivals(b, fp)
	accepted0 := int64(testutil.ToFloat64(g.s.m.accepted))
	cpu0 := cpuTime()
	start := time.Now()
	v := runWrk(b, wrk, script, g.base, secs, strconv.Itoa(n))
	if bad := v[2] + v[3] + v[4] + v[5] + v[6]; bad > 0 {
		b.Errorf("gateway: wrk saw %d errors", bad)
	}
	accepted := int64(testutil.ToFloat64(g.s.m.accepted)) - accepted0
	deadline := time.Now().Add(60 * time.Second)
	got, rcpu := arrivals(b, fp)
	for got-n0 < accepted {
		if time.Now().After(deadline) {
			b.Fatalf("gateway: delivered %d of %d accepted", got-n0, accepted)
		}
		time.Sleep(2 * time.Millisecond)
		got, rcpu = arrivals(b, fp)
	}
	got -= n0
	return run{float64(got) / time.Since(start).Seconds(), perPush(cpuTime()-cpu0, got), perPush(rcpu-rcpu0, got)}
}

// arrivals counts the pushes completed at the receivers so far, whether or not a device
// already had the push id, and returns the CPU the receivers' process has used.
func arrivals(b *testing.B, fp *fleetProcess) (int64, time.Duration) {
	n, dups, cpu := fp.counts(b)
	return n + dups, cpu
}

// perPush is cpu per push in µs.
func perPush(cpu time.Duration, pushes int64) float64 {
	return float64(cpu.Microseconds()) / float64(max(pushes, 1))
}

// benchRelay is the relay, serving on its own listener.
type benchRelay struct {
	rl  *relay
	srv *http.Server
	url string
}

func startBenchRelay(b *testing.B, fp *fleetProcess, perDevice bool) *benchRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	rl := &relay{client: &http.Client{Transport: tr}, fleetURL: fp.receiverURL(), perDevice: perDevice, clients: map[string]*http.Client{}}
	srv := &http.Server{Handler: rl}
	go srv.Serve(ln)
	return &benchRelay{rl, srv, "http://" + ln.Addr().String()}
}

func (r *benchRelay) close() {
	r.srv.Close()
	r.rl.close()
}

// measure runs wrk against the relay, as run number n: each push is answered 200 once
// delivered.
func (r *benchRelay) measure(b *testing.B, wrk, script string, fp *fleetProcess, secs, n int) run {
	n0, rcpu0 := arrivals(b, fp)
	cpu0 := cpuTime()
	v := runWrk(b, wrk, script, r.url, secs, strconv.Itoa(n))
	if bad := v[2] + v[3] + v[4] + v[5] + v[6]; bad > 0 {
		b.Errorf("relay: wrk saw %d errors", bad)
	}
	got, rcpu := arrivals(b, fp)
	got -= n0
	return run{float64(got) / (float64(v[7]) / 1e6), perPush(cpuTime()-cpu0, got), perPush(rcpu-rcpu0, got)}
}
