package pushserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/pgtest"
)

// wrkScript makes wrk send RIM pushes as a push application does: one POST /push per
// request, DESTINATION cycling over the attached PINs, a fresh X-RIM-Push-ID each time.
const wrkScript = `
local pins = {%s}
local counter = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function request()
  counter = counter + 1
  local pin = pins[(counter %% #pins) + 1]
  return wrk.format("POST", "/push?DESTINATION=" .. pin .. "&PORT=7874&REQUESTURI=/", {
    ["X-RIM-Push-ID"] = "wrk-" .. tid .. "-" .. counter,
    ["X-RIM-Push-Type"] = "Browser-Content",
    ["Content-Type"] = "text/html",
    ["Content-Location"] = "http://example.com/bench",
  }, "<p>bench</p>")
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%%d status=%%d connect=%%d read=%%d write=%%d timeout=%%d us=%%d p99=%%d\n",
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout, summary.duration, latency:percentile(99)))
end
`

var wrkResult = regexp.MustCompile(`RESULT requests=(\d+) status=(\d+) connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+) us=(\d+) p99=(\d+)`)

// BenchmarkRIMEndToEndWrk: RIM pushes from wrk (an outside HTTP load generator written in C,
// so the initiators take little of the machine's two cores) accepted, stored and delivered
// to 1,000 attached receivers, once with each kind of receiver (see fleet).
// BBSIM_BENCH_INITIATORS connections (default 64), BBSIM_BENCH_SECONDS of load (default 5),
// BBSIM_BENCH_STORE=postgres for the PostgreSQL store. Needs wrk (make bench-deps installs it).
func BenchmarkRIMEndToEndWrk(b *testing.B) {
	for _, kind := range []string{receiversFast, receiversStd} {
		b.Run("receivers="+strings.ReplaceAll(kind, "/", "-"), func(b *testing.B) { benchWrk(b, kind) })
	}
}

func benchWrk(b *testing.B, kind string) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk is not installed: run make bench-deps (Debian package wrk)")
	}
	raiseNoFile(b)
	secs := 5
	if n, err := strconv.Atoi(os.Getenv("BBSIM_BENCH_SECONDS")); err == nil && n > 0 {
		secs = n
	}
	for range b.N {
		b.StopTimer()
		fl := newFleetOf(b, kind, false)
		fl.target.Store(-1)
		devs := benchDevices(1000)
		opts := Options{Devices: devs}
		if os.Getenv("BBSIM_BENCH_STORE") == "postgres" {
			opts.PushDB = pgtest.Start(b).NewDatabase(b) // its server's CPU is not in the figures
		}
		s, base := startServer(b, opts)
		attachFleet(b, base, fl, devs)
		pins := make([]string, len(devs))
		for i, d := range devs {
			pins[i] = strconv.Quote(d.PIN)
		}
		script := filepath.Join(b.TempDir(), "push.lua")
		if err := os.WriteFile(script, fmt.Appendf(nil, wrkScript, strings.Join(pins, ",")), 0o644); err != nil {
			b.Fatal(err)
		}
		cpu0, wrk0 := cpuTime(), childCPUTime()
		b.StartTimer()
		start := time.Now()
		cmd := exec.Command(wrk, "-t", "1", "-c", strconv.Itoa(benchInitiators()), "-d", fmt.Sprintf("%ds", secs), "--timeout", "10s", "-s", script, base)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		m := wrkResult.FindStringSubmatch(string(out))
		if m == nil {
			b.Fatalf("no result from wrk:\n%s", out)
		}
		v := make([]int64, len(m))
		for i := 1; i < len(m); i++ {
			v[i], _ = strconv.ParseInt(m[i], 10, 64)
		}
		// 503 is the server's flow control at --max-active-connections, which a real
		// initiator retries; any other non-200 answer or socket error is a failure.
		requests, busy := v[1], s.m.busy.Load()
		bad := v[2] - busy + v[3] + v[4] + v[5] + v[6]
		if bad > 0 {
			b.Errorf("wrk saw %d errors (non-200 %d of which 503 %d, connect %d, read %d, write %d, timeout %d)", bad, v[2], busy, v[3], v[4], v[5], v[6])
		}
		// Requests cut off by wrk's stop may or may not have been accepted: wait for what
		// the server accepted (its accepted counter) to be delivered.
		accepted := s.m.accepted.Load()
		deadline := time.Now().Add(60 * time.Second)
		for fl.count.Load() < accepted {
			if time.Now().After(deadline) {
				b.Fatalf("delivered %d of %d accepted", fl.count.Load(), accepted)
			}
			time.Sleep(time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(fl.count.Load())/el.Seconds(), "pushes/s")
		b.ReportMetric(float64(requests)/(float64(v[7])/1e6), "accepted/s")
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(accepted), "server+receivers-cpu-us/push")
		b.ReportMetric(float64((childCPUTime()-wrk0).Microseconds())/float64(requests), "wrk-cpu-us/push")
		b.ReportMetric(float64(v[8])/1000, "p99-accept-ms")
		b.ReportMetric(float64(bad), "errors")
		b.ReportMetric(float64(busy), "busy-503")
	}
}

// childCPUTime is the CPU time used by this process's finished children (wrk).
func childCPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
