// Package serveall runs one server's several listeners as one Serve: a server with more
// than one listener (the mail server's IMAP, POP3, SMTP and webmail, the DNS server's UDP
// and TCP) still has one Serve, one Shutdown and one closed error, like every other.
package serveall

import (
	"errors"
	"net/http"
	"sync"
)

// Run calls every serve at once and returns when all have returned. When one fails with
// anything but http.ErrServerClosed, Run calls stop so the others end too. It returns the
// failures joined, or http.ErrServerClosed when every serve ended by Shutdown or Close
// (or there was none to run).
func Run(stop func() error, serves ...func() error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		once sync.Once
	)
	for _, serve := range serves {
		wg.Go(func() {
			err := serve()
			if err == nil || errors.Is(err, http.ErrServerClosed) {
				return
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			once.Do(func() { _ = stop() })
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return http.ErrServerClosed
}
