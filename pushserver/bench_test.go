package pushserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/pgtest"
	"github.com/bbsim/bbsim/rim"
	"github.com/valyala/fasthttp"
)

// raiseNoFile lifts the soft open-files limit to the hard one.
func raiseNoFile(b *testing.B) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			b.Fatal(err)
		}
	}
	return rl.Cur
}

// fleet stands in for many devices behind one listener: it answers every packet 200,
// counts each push whose last packet arrived at a device (a push id the device had
// already completed counts as a duplicate, not again) and, when asked, records when it
// arrived.
//
// A real handset has a CPU of its own; here the thousand receivers share the two cores
// with the gateway and the initiators. By default they are fasthttp servers, the lightest
// HTTP/1.1 server at hand, so the figures are mostly the gateway's;
// BBSIM_BENCH_RECEIVERS=net/http serves them with net/http instead (about 10 µs more CPU
// per push on this machine).
type fleet struct {
	url     string       // the listener's base URL
	count   atomic.Int64 // distinct (device, push id) completed
	dups    atomic.Int64 // completions of a push id the device already had
	seen    sync.Map     // device path + " " + push id -> struct{}
	target  atomic.Int64
	done    chan struct{}
	arrived sync.Map // push id -> time.Time
	record  bool
}

const (
	receiversFast = "fasthttp"
	receiversStd  = "net/http"
)

// benchReceivers is the kind of receiver the benchmarks use (BBSIM_BENCH_RECEIVERS).
func benchReceivers() string {
	if os.Getenv("BBSIM_BENCH_RECEIVERS") == receiversStd {
		return receiversStd
	}
	return receiversFast
}

func newFleet(b *testing.B, record bool) *fleet {
	return newFleetOf(b, benchReceivers(), record)
}

func newFleetOf(b *testing.B, kind string, record bool) *fleet {
	fl, stop, err := startFleet(kind, record)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	return fl
}

// startFleet starts the receivers of a fleet on a loopback port. GET /_count answers how
// many pushes arrived, the CPU time this process has used and how many arrived twice
// ("count cpu-µs duplicates").
func startFleet(kind string, record bool) (*fleet, func(), error) {
	fl := &fleet{done: make(chan struct{}, 1), record: record}
	countAnswer := func() string {
		return fmt.Sprintf("%d %d %d", fl.count.Load(), cpuTime().Microseconds(), fl.dups.Load())
	}
	if kind == receiversStd {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/_count" {
				io.WriteString(w, countAnswer())
				return
			}
			io.Copy(io.Discard, r.Body)
			fl.packet(r.Header.Get("X-Bbsim-Packet"), r.URL.Path, r.Header.Get("X-RIM-Push-ID"))
			w.WriteHeader(http.StatusOK)
		}))
		srv.Config.MaxHeaderBytes = 1 << 16
		srv.Start()
		fl.url = srv.URL
		return fl, srv.Close, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			if string(c.Path()) == "/_count" {
				c.WriteString(countAnswer())
				return
			}
			fl.packet(string(c.Request.Header.Peek("X-Bbsim-Packet")), string(c.Path()), string(c.Request.Header.Peek("X-RIM-Push-ID")))
			c.SetStatusCode(fasthttp.StatusOK)
		},
		ReadBufferSize: 16 << 10,
	}
	go srv.Serve(ln)
	fl.url = "http://" + ln.Addr().String()
	return fl, func() { srv.Shutdown() }, nil
}

// runFleetChild serves a fleet's receivers as a process of their own (see fleetProcess)
// until stdin closes.
func runFleetChild(kind string) int {
	fl, stop, err := startFleet(kind, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	fmt.Printf("ADDR %s\n", fl.url)
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// fleetProcess is a fleet's receivers in a child process, as handsets are apart from the
// gateway: their CPU is counted apart from the gateway's.
type fleetProcess struct {
	url   string
	cmd   *exec.Cmd
	stdin io.Closer
}

func startFleetProcess(b *testing.B, kind string) *fleetProcess {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childFleetEnv+"="+kind)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	fp := &fleetProcess{cmd: cmd, stdin: in}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "ADDR ") {
		b.Fatalf("receivers process: %q, %v", line, err)
	}
	fp.url = strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
	return fp
}

// counts returns the distinct pushes the process's receivers completed, the duplicates, and
// the CPU it has used.
func (fp *fleetProcess) counts(b *testing.B) (n, dups int64, cpu time.Duration) {
	resp, err := http.Get(fp.url + "/_count")
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		io.Copy(io.Discard, resp.Body) // read to the end, so the connection is reused
		resp.Body.Close()
	}()
	var us int64
	if _, err := fmt.Fscan(resp.Body, &n, &us, &dups); err != nil {
		b.Fatalf("receivers process count: %v", err)
	}
	return n, dups, time.Duration(us) * time.Microsecond
}

// packet counts a packet with its X-Bbsim-Packet "i/n" for the device at path; the last
// one completes a push.
func (fl *fleet) packet(pk, path, pushID string) {
	if i := strings.IndexByte(pk, '/'); i > 0 && atoiOK(pk[:i])+1 == atoiOK(pk[i+1:]) {
		if _, again := fl.seen.LoadOrStore(path+" "+pushID, struct{}{}); again {
			fl.dups.Add(1)
			return
		}
		if fl.record {
			fl.arrived.Store(pushID, time.Now())
		}
		if fl.count.Add(1) == fl.target.Load() {
			fl.done <- struct{}{}
		}
	}
}

// cpuTime is the CPU time (user+system) this process has used: the initiators, the gateway
// and the receivers together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func atoiOK(s string) int {
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func benchDevices(n int) []Device {
	ds := make([]Device, n)
	for i := range ds {
		ds[i] = Device{PIN: fmt.Sprintf("3%07X", i), Email: fmt.Sprintf("user%d@bbsim.test", i)}
	}
	return ds
}

func attachFleet(b *testing.B, base, fleetURL string, devs []Device) {
	for _, d := range devs {
		// Each device proposes a secret of its own (its PIN four times), the same at every
		// attach, so a gateway that kept it from an earlier run takes it again.
		body := fmt.Sprintf(`{"pin":%q,"email":%q,"receiver_url":"%s/d/%s/","device_secret":%q}`, d.PIN, d.Email, fleetURL, d.PIN, strings.Repeat(d.PIN, 4))
		resp, err := http.Post(base+"/device/attach", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("attach %s = %d", d.PIN, resp.StatusCode)
		}
	}
}

func benchClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// sendPush posts one RIM push, retrying 503 as a real initiator does; it returns the
// number of 503 answers seen.
func sendPush(c *http.Client, base, pin, id string) (busy int, err error) {
	for {
		req, _ := http.NewRequest("POST", base+"/push?DESTINATION="+pin+"&PORT=7874&REQUESTURI=/", bytes.NewReader([]byte("<p>bench</p>")))
		req.Header.Set("X-RIM-Push-ID", id)
		req.Header.Set("X-RIM-Push-Type", "Browser-Content")
		req.Header.Set("Content-Type", "text/html")
		req.Header.Set("Content-Location", "http://example.com/bench")
		resp, err := c.Do(req)
		if err != nil {
			return busy, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			return busy, nil
		case 503:
			busy++
			time.Sleep(2 * time.Millisecond)
		default:
			return busy, fmt.Errorf("push %s = %d", id, resp.StatusCode)
		}
	}
}

// pushAll sends b.N RIM pushes through the gateway at base from benchInitiators()
// connections, in turn to each device, waits until the fleet has them all, and reports
// pushes/s and cpu-us/push (this process's CPU); it returns how long accepting them took,
// the 503 answers retried and the failures.
func pushAll(b *testing.B, fl *fleet, base string, devs []Device, prefix string) (accepted time.Duration, busy, errs int64) {
	fl.target.Store(int64(b.N))
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	initiators := benchInitiators()
	c := benchClient(initiators)
	var next, nBusy, nErrs atomic.Int64
	var wg sync.WaitGroup
	for range initiators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				n, err := sendPush(c, base, devs[i%int64(len(devs))].PIN, fmt.Sprintf("%s-%d", prefix, i))
				nBusy.Add(int64(n))
				if err != nil {
					nErrs.Add(1)
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	accepted = time.Since(start)
	select {
	case <-fl.done:
	case <-time.After(60 * time.Second):
		b.Fatalf("delivered %d of %d", fl.count.Load(), b.N)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "pushes/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/push")
	return accepted, nBusy.Load(), nErrs.Load()
}

// BenchmarkRIMEndToEnd: RIM pushes accepted (stored) and delivered to 1,000 attached
// receivers, 64 initiator connections.
func BenchmarkRIMEndToEnd(b *testing.B) {
	raiseNoFile(b)
	fl := newFleet(b, false)
	devs := benchDevices(1000)
	s, base := startServer(b, Options{Devices: devs})
	attachFleet(b, base, fl.url, devs)
	accepted, busy, errs := pushAll(b, fl, base, devs, "e2e")
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
	commits, ops := s.st.Stats()
	b.ReportMetric(float64(ops)/float64(commits), "ops/commit")
	b.ReportMetric(float64(busy), "busy-503")
	b.ReportMetric(float64(errs), "errors")
}

// BenchmarkRIMLatency1000PerSec: pushes sent at 1,000 a second to 1,000 attached receivers;
// latency from the initiator starting the request (so including accept and commit) to the
// receiver answering the push's packet.
func BenchmarkRIMLatency1000PerSec(b *testing.B) {
	raiseNoFile(b)
	fl := newFleet(b, true)
	devs := benchDevices(1000)
	_, base := startServer(b, Options{Devices: devs})
	attachFleet(b, base, fl.url, devs)
	c := benchClient(256)
	fl.target.Store(int64(b.N))
	sent := make([]time.Time, b.N)
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	var wg sync.WaitGroup
	var errs atomic.Int64
	for i := 0; i < b.N; i++ {
		<-tick.C
		sent[i] = time.Now()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := sendPush(c, base, devs[i%1000].PIN, fmt.Sprintf("lat-%d", i)); err != nil {
				errs.Add(1)
			}
		}(i)
	}
	tick.Stop()
	wg.Wait()
	select {
	case <-fl.done:
	case <-time.After(60 * time.Second):
		b.Fatalf("delivered %d of %d", fl.count.Load(), b.N)
	}
	b.StopTimer()
	lat := make([]float64, 0, b.N)
	for i := 0; i < b.N; i++ {
		v, ok := fl.arrived.Load(fmt.Sprintf("lat-%d", i))
		if ok {
			lat = append(lat, float64(v.(time.Time).Sub(sent[i]).Microseconds())/1000)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(float64(errs.Load()), "errors")
}

// BenchmarkInitiatorConnections10k holds 10,000 initiator connections open at once against a
// server in a child process (so each side has its own open-files budget); every connection
// sends one RIM push and keeps the connection open until all have been answered.
func BenchmarkInitiatorConnections10k(b *testing.B) {
	const conns = 10000
	if lim := raiseNoFile(b); lim < conns+500 {
		b.Fatalf("open-files limit %d is too low for %d connections", lim, conns)
	}
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		ch := startChild(b, b.TempDir(), fmt.Sprintf("%s=%d", childMaxActiveEnv, 4*conns))
		addr := strings.TrimPrefix(ch.base, "http://")
		b.StartTimer()
		start := time.Now()
		cs := make([]net.Conn, conns)
		var errs atomic.Int64
		var wg sync.WaitGroup
		sem := make(chan struct{}, 256) // dial pace: the listen backlog is finite
		for i := range cs {
			sem <- struct{}{}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				<-sem
				if err != nil {
					errs.Add(1)
					return
				}
				cs[i] = c
			}(i)
		}
		wg.Wait()
		held := time.Since(start)
		var ok atomic.Int64
		for i, c := range cs {
			if c == nil {
				continue
			}
			wg.Add(1)
			go func(i int, c net.Conn) {
				defer wg.Done()
				body := "<p>conn</p>"
				req := fmt.Sprintf("POST /push?DESTINATION=2100000A&PORT=7874 HTTP/1.1\r\nHost: %s\r\nX-RIM-Push-ID: conn-%d\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s", addr, i, len(body), body)
				c.SetDeadline(time.Now().Add(60 * time.Second))
				if _, err := io.WriteString(c, req); err != nil {
					errs.Add(1)
					return
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					errs.Add(1)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs.Add(1)
					return
				}
				ok.Add(1)
			}(i, c)
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		rss := childRSS(b, ch.cmd.Process.Pid) // with every connection open and idle
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
		ch.kill(b)
		b.ReportMetric(float64(conns), "conns")
		b.ReportMetric(float64(errs.Load()), "errors")
		b.ReportMetric(held.Seconds()*1000, "open-all-ms")
		b.ReportMetric(float64(ok.Load())/el.Seconds(), "pushes/s")
		b.ReportMetric(float64(rss)/(1<<20), "gateway-rss-MiB")
		if errs.Load() > 0 {
			b.Errorf("%d of %d connections failed", errs.Load(), conns)
		}
	}
}

// childRSS is the resident memory of process pid in bytes (VmRSS in /proc/pid/status).
func childRSS(b *testing.B, pid int) int64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(st)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// benchInitiators is the number of initiator connections of BenchmarkRIMEndToEnd:
// BBSIM_BENCH_INITIATORS, default 64.
func benchInitiators() int {
	if n, err := strconv.Atoi(os.Getenv("BBSIM_BENCH_INITIATORS")); err == nil && n > 0 {
		return n
	}
	return 64
}

// BenchmarkStore: the store's work for one delivered single-recipient push (insert, then
// final state), 32 pushes submitted concurrently like handlers do, so group commits form;
// in SQLite (the default) and in a PostgreSQL started here (its server's CPU is not in
// cpu-us/push).
func BenchmarkStore(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchStore(b, "") })
	b.Run("postgres", func(b *testing.B) { benchStore(b, pgtest.Start(b).NewDatabase(b)) })
}

func benchStore(b *testing.B, pushDB string) {
	st, err := openStore(context.Background(), b.TempDir(), pushDB, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	hdr := []byte(`{"Content-Type":["text/html"],"X-Rim-Push-Type":["Browser-Content"]}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, disk0 := cpuTime(), diskWritten()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				p := &push{id: fmt.Sprintf("st-%d", i), headers: http.Header{}, body: []byte("<p>bench</p>"), reliability: "transport", acceptedAt: time.Now()}
				r := &recip{p: p, pin: "2100000A", port: 7874, state: "queued"}
				if err := st.insertPush(context.Background(), p, hdr, []*recip{r}); err != nil {
					b.Error(err)
					return
				}
				if err := st.setState(context.Background(), r, rim.StateDelivered, 1000, time.Time{}, time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/push")
	commits, ops := st.Stats()
	b.ReportMetric(float64(ops)/float64(commits), "ops/commit")
	if disk0 >= 0 {
		b.ReportMetric(float64(diskWritten()-disk0)/float64(b.N), "disk-B/push")
	}
}

// diskWritten is what this process has caused to be written to storage (write_bytes in
// /proc/self/io: the WAL frames and checkpoints), or -1 where that is not available.
func diskWritten() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// BenchmarkHandover: two gateways sharing a PostgreSQL store (started here; its server's
// CPU is not in cpu-us/push); RIM pushes go in through gateway a for 1,000 receivers
// attached at gateway b, so every push is stored by a, handed over and delivered by b.
func BenchmarkHandover(b *testing.B) {
	raiseNoFile(b)
	db := pgtest.Start(b).NewDatabase(b)
	fl := newFleet(b, false)
	devs := benchDevices(1000)
	sa, a := startServer(b, Options{PushDB: db, PushInstance: "a", Devices: devs})
	_, gb := startServer(b, Options{PushDB: db, PushInstance: "b", Devices: devs})
	attachFleet(b, gb, fl.url, devs)
	// a hears of every attachment before the first push, so none waits for a sweep.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sa.mu.Lock()
		n := 0
		for _, d := range devs {
			if sa.ho.gateway(d.PIN) == "b" {
				n++
			}
		}
		sa.mu.Unlock()
		if n == len(devs) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("gateway a knows where %d of %d devices attached", n, len(devs))
		}
	}
	pushAll(b, fl, a, devs, "ho")
}
