package bbsimtest_test

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/bbsim/bbsim/bbsimtest"
)

// publishNews is the push application under test: it announces a news page to a handset as
// a browser channel, with RIM push.
func publishNews(pushURL, title, page string) error {
	req, err := http.NewRequest(http.MethodPost, pushURL, strings.NewReader(page))
	if err != nil {
		return err
	}
	req.Header.Set("X-RIM-Push-Type", "Browser-Channel")
	req.Header.Set("X-RIM-Push-Title", title)
	req.Header.Set("X-RIM-Push-Channel-ID", "http://news.example.test/")
	req.Header.Set("Content-Location", "http://news.example.test/")
	req.Header.Set("Content-Type", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("push refused: %s", resp.Status)
	}
	return nil
}

// A push application's test: start bbsim, point the application at its gateway, and wait
// for what the handset shows. In a test function this is
//
//	func TestPublishNews(t *testing.T) {
//		sim := bbsimtest.Start(t, nil)
//		...
//	}
//
// (bbsimtest.Run stands in for the test here, since an Example has no *testing.T.)
func Example() {
	err := bbsimtest.Run(func(t bbsimtest.TB) {
		sim := bbsimtest.Start(t, nil)
		if err := publishNews(sim.RIMPushURL(7874), "Morning news", "<h1>Today</h1><p>All quiet.</p>"); err != nil {
			t.Fatalf("publish: %v", err)
		}
		ch := sim.WaitChannel("Morning news")
		page, _ := sim.Handset.CachedPage(ch.URL)
		fmt.Printf("%s (read: %v)\n%s\n", ch.Title, ch.Read, strings.TrimSpace(page.Text))
	})
	fmt.Println("test error:", err)
	// Output:
	// Morning news (read: false)
	// Today
	// =====
	//
	// All quiet.
	// test error: <nil>
}

// A mail client's test: send a mail to the handset's mailbox and wait for the handset to
// fetch it over IMAP IDLE.
func ExampleSim_SendMail() {
	err := bbsimtest.Run(func(t bbsimtest.TB) {
		sim := bbsimtest.Start(t, nil)
		sim.SendMail("Order 42 shipped", "Your parcel is on its way.")
		m := sim.WaitMail("Order 42")
		fmt.Printf("%s from %s: %s\n", m.Subject, m.From, strings.TrimSpace(m.Text))
	})
	fmt.Println("test error:", err)
	// Output:
	// Order 42 shipped from tester@bbsim.test: Your parcel is on its way.
	// test error: <nil>
}
