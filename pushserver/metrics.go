package pushserver

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bbsim/bbsim/rim"
)

// latencyBuckets are the upper bounds (seconds) of the accept->device latency histogram.
var latencyBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600}

// metrics are the gateway's Prometheus metrics, in a registry of the server's own (so
// that servers in one process do not share counts) together with the Go runtime and
// process collectors.
type metrics struct {
	reg                                  *prometheus.Registry
	accepted, recipients, busy, rejected prometheus.Counter
	notified, notifyDropped              prometheus.Counter
	results                              *prometheus.CounterVec
	byState                              map[rim.State]prometheus.Counter // results' counters, looked up once
	latency                              prometheus.Histogram
	handler                              http.Handler
}

func (m *metrics) init(s *Server) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m.accepted = counter("bbsim_push_accepted_total", "Pushes accepted and stored.")
	m.recipients = counter("bbsim_push_recipients_total", "Recipients of accepted pushes.")
	m.rejected = counter("bbsim_push_rejected_total", "Push requests answered with an error.")
	m.busy = counter("bbsim_push_busy_total", "Pushes refused because too many were pending.")
	m.notified = counter("bbsim_push_notifications_total", "Result notifications sent.")
	m.notifyDropped = counter("bbsim_push_notifications_dropped_total", "Result notifications dropped because too many were waiting.")
	m.results = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bbsim_push_results_total",
		Help: "Final per-recipient results by state."}, []string{"state"})
	m.byState = make(map[rim.State]prometheus.Counter, len(rim.FinalStates))
	for _, st := range rim.FinalStates { // each shown from zero
		m.byState[st] = m.results.WithLabelValues(string(st))
	}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bbsim_push_delivery_seconds",
		Help: "Accept to device acknowledgement.", Buckets: latencyBuckets})
	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister(m.accepted, m.recipients, m.rejected, m.busy, m.notified, m.notifyDropped, m.results, m.latency,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bbsim_push_store_commits_total",
			Help: "Store transactions committed (group commits)."}, func() float64 { c, _ := s.st.Stats(); return float64(c) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bbsim_push_store_operations_total",
			Help: "Store operations carried by those commits."}, func() float64 { _, o := s.st.Stats(); return float64(o) }),
		queueCollector{s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slogPrintln{s}})
}

// count counts a final per-recipient result.
func (m *metrics) count(state rim.State) {
	if c := m.byState[state]; c != nil {
		c.Inc()
	}
}

func (m *metrics) observeLatency(d time.Duration) { m.latency.Observe(d.Seconds()) }

var (
	queuedDesc   = prometheus.NewDesc("bbsim_push_queued", "Recipients queued for delivery (queue depth over all devices).", nil, nil)
	deepestDesc  = prometheus.NewDesc("bbsim_push_queue_depth_max", "Longest queue of one device.", nil, nil)
	pendingDesc  = prometheus.NewDesc("bbsim_push_pending_ack", "Recipients waiting for an application acknowledgement.", nil, nil)
	activeDesc   = prometheus.NewDesc("bbsim_push_active", "Pushes with open recipients.", nil, nil)
	attachedDesc = prometheus.NewDesc("bbsim_push_devices_attached", "Devices in coverage.", nil, nil)
)

// queueCollector reports the queue gauges from one look at the queues, under the lock.
type queueCollector struct{ s *Server }

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queuedDesc, deepestDesc, pendingDesc, activeDesc, attachedDesc} {
		ch <- d
	}
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	queued, attached, deepest := 0, 0, 0
	for _, d := range s.devices {
		queued += len(d.queue)
		deepest = max(deepest, len(d.queue))
		if d.attached {
			attached++
		}
	}
	pending, active := len(s.pending), s.active
	s.mu.Unlock()
	for _, g := range []struct {
		d *prometheus.Desc
		v int
	}{{queuedDesc, queued}, {deepestDesc, deepest}, {pendingDesc, pending}, {activeDesc, active}, {attachedDesc, attached}} {
		ch <- prometheus.MustNewConstMetric(g.d, prometheus.GaugeValue, float64(g.v))
	}
}

// slogPrintln logs promhttp's errors (a failed write to the scraper) through the server's
// logger.
type slogPrintln struct{ s *Server }

func (l slogPrintln) Println(v ...any) { l.s.log.Warn("metrics", "err", fmt.Sprint(v...)) }
