package pushserver

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the accept->device latency histogram.
var latencyBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600}

type metrics struct {
	accepted, recipients, busy, rejected, notified atomic.Int64
	notifyDropped                                  atomic.Int64
	delivered, expired, failed, cancelled, timeout atomic.Int64
	latCount                                       atomic.Int64
	latSumMicros                                   atomic.Int64
	latBuckets                                     []atomic.Int64
}

func (m *metrics) init() { m.latBuckets = make([]atomic.Int64, len(latencyBuckets)) }

func (m *metrics) count(state string) {
	switch state {
	case "delivered":
		m.delivered.Add(1)
	case "expired":
		m.expired.Add(1)
	case "failed":
		m.failed.Add(1)
	case "cancelled":
		m.cancelled.Add(1)
	case "timeout":
		m.timeout.Add(1)
	}
}

func (m *metrics) observeLatency(d time.Duration) {
	sec := d.Seconds()
	for i, b := range latencyBuckets {
		if sec <= b {
			m.latBuckets[i].Add(1)
			break
		}
	}
	m.latCount.Add(1)
	m.latSumMicros.Add(d.Microseconds())
}

// write renders the metrics in the Prometheus text exposition format.
func (m *metrics) write(w io.Writer, st *store, queued, deepest, attached, pending, active int) {
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge := func(name, help string, v int) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter("bbsim_push_accepted_total", "Pushes accepted and stored.", m.accepted.Load())
	counter("bbsim_push_recipients_total", "Recipients of accepted pushes.", m.recipients.Load())
	counter("bbsim_push_rejected_total", "Push requests answered with an error.", m.rejected.Load())
	counter("bbsim_push_busy_total", "Pushes refused because too many were pending.", m.busy.Load())
	fmt.Fprintf(w, "# HELP bbsim_push_results_total Final per-recipient results by state.\n# TYPE bbsim_push_results_total counter\n")
	for _, st := range []struct {
		name string
		v    int64
	}{{"delivered", m.delivered.Load()}, {"expired", m.expired.Load()}, {"failed", m.failed.Load()}, {"cancelled", m.cancelled.Load()}, {"timeout", m.timeout.Load()}} {
		fmt.Fprintf(w, "bbsim_push_results_total{state=%q} %d\n", st.name, st.v)
	}
	counter("bbsim_push_notifications_total", "Result notifications sent.", m.notified.Load())
	counter("bbsim_push_notifications_dropped_total", "Result notifications dropped because too many were waiting.", m.notifyDropped.Load())
	commits, ops := st.stats()
	counter("bbsim_push_store_commits_total", "Store transactions committed (group commits).", commits)
	counter("bbsim_push_store_operations_total", "Store operations carried by those commits.", ops)
	gauge("bbsim_push_queued", "Recipients queued for delivery (queue depth over all devices).", queued)
	gauge("bbsim_push_queue_depth_max", "Longest queue of one device.", deepest)
	gauge("bbsim_push_pending_ack", "Recipients waiting for an application acknowledgement.", pending)
	gauge("bbsim_push_active", "Pushes with open recipients.", active)
	gauge("bbsim_push_devices_attached", "Devices in coverage.", attached)
	fmt.Fprintf(w, "# HELP bbsim_push_delivery_seconds Accept to device acknowledgement.\n# TYPE bbsim_push_delivery_seconds histogram\n")
	var cum int64
	for i, b := range latencyBuckets {
		cum += m.latBuckets[i].Load()
		fmt.Fprintf(w, "bbsim_push_delivery_seconds_bucket{le=\"%g\"} %d\n", b, cum)
	}
	fmt.Fprintf(w, "bbsim_push_delivery_seconds_bucket{le=\"+Inf\"} %d\n", m.latCount.Load())
	fmt.Fprintf(w, "bbsim_push_delivery_seconds_sum %g\n", float64(m.latSumMicros.Load())/1e6)
	fmt.Fprintf(w, "bbsim_push_delivery_seconds_count %d\n", m.latCount.Load())
}
