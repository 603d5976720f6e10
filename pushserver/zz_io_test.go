package pushserver

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

func procWriteBytes() int64 {
	b, _ := os.ReadFile("/proc/self/io")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func BenchmarkStoreIO(b *testing.B) {
	w0 := procWriteBytes()
	BenchmarkStore(b)
	b.ReportMetric(float64(procWriteBytes()-w0)/float64(b.N), "disk-B/push")
}

func httpPost(url, body string) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
