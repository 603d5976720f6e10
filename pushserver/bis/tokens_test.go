package bis

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"
)

// linkedGateway links every request to one PIN.
type linkedGateway struct{ noGateway }

func (linkedGateway) LinkedPIN(string) (string, bool) { return "2100000A", true }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestRegistrationTokenFlood asks for registration tokens without end, as a device in a
// loop would (PD_subReg without a token), and reports the tokens held and the heap: they
// stay bounded, asking too fast is answered 429, and expired tokens go.
func TestRegistrationTokenFlood(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Now()}
	svc, err := New(Options{DataDir: t.TempDir(), Gateway: linkedGateway{}, Now: clock.Now,
		Apps: []App{{ID: "com.example.chat", Password: "pw", Port: 33333}}})
	if err != nil {
		t.Fatal(err)
	}
	h := svc.Handler()
	ask := func(op string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/mss/PD_sub"+op+"?serviceid=com.example.chat&osversion=7.1&model=9900", nil))
		return rec
	}
	held := func() int { svc.mu.Lock(); defer svc.mu.Unlock(); return len(svc.tokens) }
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// Flat out: after tokenRate in a minute, 429 with Retry-After.
	codes := map[int]int{}
	for range 1000 {
		codes[ask("Reg").Code]++
	}
	if codes[http.StatusOK] != tokenRate || codes[http.StatusTooManyRequests] != 1000-tokenRate {
		t.Errorf("1000 requests in one instant: %v, want %d answered 200 and the rest 429", codes, tokenRate)
	}
	if rec := ask("Reg"); rec.Header().Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	// Just under the rate for a long time: a device holds a handful, whatever it asks.
	clock.Add(time.Minute)
	for range 100_000 {
		clock.Add(2100 * time.Millisecond)
		if rec := ask("Reg"); rec.Code != http.StatusOK {
			t.Fatalf("a token every 2.1 s: %d %s", rec.Code, rec.Body)
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("100,000 tokens issued: %d held, heap %d KiB → %d KiB", held(), before.HeapInuse>>10, after.HeapInuse>>10)
	if n := held(); n > tokensHeld {
		t.Errorf("%d tokens held after 100,000 asked, want at most %d", n, tokensHeld)
	}
	// Expired tokens go, even those of an operation no longer asked for.
	ask("Dereg")
	clock.Add(6 * time.Minute)
	ask("Reg")
	if n := held(); n != 1 {
		t.Errorf("%d tokens held after the others expired, want 1", n)
	}
}
