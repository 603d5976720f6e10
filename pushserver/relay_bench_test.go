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
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// relay is the yardstick of BenchmarkRelayComparison: a push relay that keeps nothing.
// net/http in and out, pooled keep-alive connections to the receivers, and 200 to the
// initiator once the receiver has answered 200 (502 otherwise). It sends each push as one
// packet, as the gateway sends a small one.
type relay struct {
	client   *http.Client
	fleetURL string
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
	resp, err := rl.client.Do(req)
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
// Needs wrk.
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
	for range b.N {
		fp := startFleetProcess(b, receiversFast)
		devs := benchDevices(1000)
		script := wrkScriptFile(b, devs)
		var gws, rls, ratios, gcpus, rcpus []float64
		for i := range pairs {
			var g, r, gcpu, rcpu float64
			if i%2 == 0 {
				g, gcpu = gatewayRate(b, wrk, script, fp, devs, secs)
				r, rcpu = relayRate(b, wrk, script, fp, secs)
			} else {
				r, rcpu = relayRate(b, wrk, script, fp, secs)
				g, gcpu = gatewayRate(b, wrk, script, fp, devs, secs)
			}
			gws, rls, ratios = append(gws, g), append(rls, r), append(ratios, g/r)
			gcpus, rcpus = append(gcpus, gcpu), append(rcpus, rcpu)
			b.Logf("pair %d: gateway %.0f/s %.0f µs/push, relay %.0f/s %.0f µs/push, ratio %.2f", i+1, g, gcpu, r, rcpu, g/r)
		}
		b.ReportMetric(median(gws), "gateway-pushes/s")
		b.ReportMetric(median(rls), "relay-pushes/s")
		b.ReportMetric(median(ratios), "ratio")
		b.ReportMetric(median(gcpus), "gateway-cpu-us/push")
		b.ReportMetric(median(rcpus), "relay-cpu-us/push")
	}
}

// arrivals counts the pushes completed at the receivers so far, whether or not a device
// already had the push id: every run's wrk starts its push ids afresh.
func arrivals(b *testing.B, fp *fleetProcess) int64 {
	n, dups, _ := fp.counts(b)
	return n + dups
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// gatewayRate runs a fresh gateway under wrk and returns the pushes delivered per second,
// from the first request to the last accepted push's arrival, and the CPU this process
// (the gateway; the receivers and wrk are apart) spent per push meanwhile, in µs.
func gatewayRate(b *testing.B, wrk, script string, fp *fleetProcess, devs []Device, secs int) (rate, cpuPerPush float64) {
	s, base, served := startServing(b, Options{Devices: devs, MaxActive: 100000})
	defer func() {
		s.Close()
		<-served
	}()
	attachFleet(b, base, fp.receiverURL(), devs)
	n0 := arrivals(b, fp)
	cpu0 := cpuTime()
	start := time.Now()
	v := runWrk(b, wrk, script, base, secs)
	if bad := v[2] + v[3] + v[4] + v[5] + v[6]; bad > 0 {
		b.Errorf("gateway: wrk saw %d errors", bad)
	}
	accepted := int64(testutil.ToFloat64(s.m.accepted))
	deadline := time.Now().Add(60 * time.Second)
	n := arrivals(b, fp)
	for n-n0 < accepted {
		if time.Now().After(deadline) {
			b.Fatalf("gateway: delivered %d of %d accepted", n-n0, accepted)
		}
		time.Sleep(2 * time.Millisecond)
		n = arrivals(b, fp)
	}
	return float64(n-n0) / time.Since(start).Seconds(), perPush(cpuTime()-cpu0, n-n0)
}

// perPush is cpu per push in µs.
func perPush(cpu time.Duration, pushes int64) float64 {
	return float64(cpu.Microseconds()) / float64(max(pushes, 1))
}

// relayRate runs the relay under wrk and returns the pushes it relayed per second (each
// answered 200 once delivered) and the CPU it spent per push, in µs.
func relayRate(b *testing.B, wrk, script string, fp *fleetProcess, secs int) (rate, cpuPerPush float64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	srv := &http.Server{Handler: &relay{client: &http.Client{Transport: tr}, fleetURL: fp.receiverURL()}}
	go srv.Serve(ln)
	defer srv.Close()
	n0 := arrivals(b, fp)
	cpu0 := cpuTime()
	v := runWrk(b, wrk, script, "http://"+ln.Addr().String(), secs)
	if bad := v[2] + v[3] + v[4] + v[5] + v[6]; bad > 0 {
		b.Errorf("relay: wrk saw %d errors", bad)
	}
	n := arrivals(b, fp) - n0
	return float64(n) / (float64(v[7]) / 1e6), perPush(cpuTime()-cpu0, n)
}
