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

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bbsim/bbsim/internal/pgtest"
)

// wrkScript makes wrk send RIM pushes as a push application does: one POST /push per
// request, DESTINATION cycling over the attached PINs, a fresh X-RIM-Push-ID each time. A
// script argument (after wrk's --) names the run in the push ids, so that runs against the
// same gateway do not repeat them.
const wrkScript = `
local pins = {%s}
local counter = 0
local threads = {}
local run = "0"
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  if args[1] then run = args[1] end
end
function request()
  counter = counter + 1
  local pin = pins[(counter %% #pins) + 1]
  return wrk.format("POST", "/push?DESTINATION=" .. pin .. "&PORT=7874&REQUESTURI=/", {
    ["X-RIM-Push-ID"] = "wrk-" .. run .. "-" .. tid .. "-" .. counter,
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

// wrkScriptFile writes wrkScript for devs to a file for wrk -s.
func wrkScriptFile(b *testing.B, devs []Device) string {
	pins := make([]string, len(devs))
	for i, d := range devs {
		pins[i] = strconv.Quote(d.PIN)
	}
	script := filepath.Join(b.TempDir(), "push.lua")
	if err := os.WriteFile(script, fmt.Appendf(nil, wrkScript, strings.Join(pins, ",")), 0o644); err != nil {
		b.Fatal(err)
	}
	return script
}

// runWrk runs wrk with script (and its args) against base for secs seconds, with
// benchInitiators connections, and returns wrkResult's numbers from index 1: requests,
// non-2xx, connect, read, write and timeout errors, duration (µs) and p99 latency (µs).
func runWrk(b *testing.B, wrk, script, base string, secs int, args ...string) []int64 {
	cmd := exec.Command(wrk, append([]string{"-t", "1", "-c", strconv.Itoa(benchInitiators()), "-d", fmt.Sprintf("%ds", secs), "--timeout", "10s", "-s", script, base, "--"}, args...)...)
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
	return v
}

// BenchmarkRIMEndToEndWrk: RIM pushes from wrk (an outside HTTP load generator written in C,
// so the initiators take little of the machine's two cores) accepted, stored and delivered
// to 1,000 attached receivers, once with each kind of receiver (see fleet). Initiator,
// gateway and receivers are three processes, as in the field, and each one's CPU per push
// is reported.
// BBSIM_BENCH_INITIATORS connections (default 64), BBSIM_BENCH_SECONDS of load (default 5),
// BBSIM_BENCH_STORE=postgres for the PostgreSQL store. Needs wrk (make bench-deps installs it).
func BenchmarkRIMEndToEndWrk(b *testing.B) {
	for _, kind := range []string{receiversFast, receiversStd} {
		b.Run("receivers="+strings.ReplaceAll(kind, "/", "-"), func(b *testing.B) { benchWrk(b, kind, false) })
	}
	// The receivers in a process of their own, as handsets are apart from the gateway: the
	// gateway's CPU per push is then measured alone. Two Go runtimes on two cores cost more
	// in all than one, so the rate is lower than with the receivers in the gateway's process.
	b.Run("receivers=fasthttp-process", func(b *testing.B) { benchWrk(b, receiversFast, true) })
}

// pushSink is where a wrk run's pushes arrive: a fleet in this process or in another.
type pushSink interface {
	receiverURL() string
	// counts: distinct pushes completed at a device, duplicates, and the CPU used if
	// another process.
	counts(b *testing.B) (n, dups int64, cpu time.Duration)
}

func (fl *fleet) receiverURL() string { return fl.url }

func (fl *fleet) counts(*testing.B) (n, dups int64, cpu time.Duration) {
	return fl.count.Load(), fl.dups.Load(), 0
}

func (fp *fleetProcess) receiverURL() string { return fp.url }

func benchWrk(b *testing.B, kind string, apart bool) {
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
		var fp pushSink
		if apart {
			fp = startFleetProcess(b, kind)
		} else {
			fp = newFleetOf(b, kind, false)
		}
		devs := benchDevices(1000)
		opts := Options{Devices: devs}
		if os.Getenv("BBSIM_BENCH_STORE") == "postgres" {
			opts.PushDB = pgtest.Start(b).NewDatabase(b) // its server's CPU is not in the figures
		}
		s, base := startServer(b, opts)
		attachFleet(b, base, fp.receiverURL(), devs)
		script := wrkScriptFile(b, devs)
		_, _, rcpu0 := fp.counts(b)
		accepted0 := int64(testutil.ToFloat64(s.m.accepted))
		cpu0, wrk0 := cpuTime(), childCPUTime()
		b.StartTimer()
		start := time.Now()
		v := runWrk(b, wrk, script, base, secs)
		// 503 is the server's flow control at --max-active-connections, which a real
		// initiator retries; any other non-200 answer or socket error is a failure.
		requests, busy := v[1], int64(testutil.ToFloat64(s.m.busy))
		bad := v[2] - busy + v[3] + v[4] + v[5] + v[6]
		if bad > 0 {
			b.Errorf("wrk saw %d errors (non-200 %d of which 503 %d, connect %d, read %d, write %d, timeout %d)", bad, v[2], busy, v[3], v[4], v[5], v[6])
		}
		// What the server accepted (its own counter, not wrk's count of answers, which
		// includes the 503s) while wrk ran; requests cut off by wrk's stop may or may not
		// have been accepted. Wait for each accepted push to reach its device.
		acceptedDuringRun := int64(testutil.ToFloat64(s.m.accepted)) - accepted0
		accepted := int64(testutil.ToFloat64(s.m.accepted))
		deadline := time.Now().Add(60 * time.Second)
		delivered, dups, _ := fp.counts(b)
		for delivered < accepted {
			if time.Now().After(deadline) {
				b.Fatalf("delivered %d of %d accepted", delivered, accepted)
			}
			time.Sleep(2 * time.Millisecond)
			delivered, dups, _ = fp.counts(b)
		}
		el := time.Since(start)
		gatewayCPU := cpuTime() - cpu0
		_, dups, rcpu1 := fp.counts(b)
		// A request that wrk's stop cut off may have been accepted after accepted was read,
		// and delivered since: the counter counts a push before it can be delivered, so
		// read now it bounds what arrived.
		accepted = int64(testutil.ToFloat64(s.m.accepted))
		if dups > 0 || delivered > accepted {
			b.Errorf("%d pushes arrived twice at a device; %d distinct arrived of %d accepted", dups, delivered, accepted)
		}
		b.StopTimer()
		b.ReportMetric(float64(delivered)/el.Seconds(), "pushes/s")
		b.ReportMetric(float64(acceptedDuringRun)/(float64(v[7])/1e6), "accepted/s")
		if apart {
			b.ReportMetric(float64(gatewayCPU.Microseconds())/float64(accepted), "gateway-cpu-us/push")
			b.ReportMetric(float64((rcpu1-rcpu0).Microseconds())/float64(accepted), "receivers-cpu-us/push")
		} else {
			b.ReportMetric(float64(gatewayCPU.Microseconds())/float64(accepted), "server+receivers-cpu-us/push")
		}
		b.ReportMetric(float64((childCPUTime()-wrk0).Microseconds())/float64(requests), "wrk-cpu-us/push")
		// wrk's latency covers every answer: with 503s among them it is not the time to
		// accept a push, and is named for what it is.
		if busy == 0 {
			b.ReportMetric(float64(v[8])/1000, "p99-accept-ms")
		} else {
			b.ReportMetric(float64(v[8])/1000, "p99-incl-503-ms")
		}
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
