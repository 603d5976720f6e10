package browserpush

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"sync"
	"time"
)

const (
	// iconTimeout bounds one icon fetch; a slow icon server must not hold the push queue.
	iconTimeout = 5 * time.Second
	// maxIconBytes and maxIconSide reject icons no home screen needs (and decompression bombs).
	maxIconBytes = 512 << 10
	maxIconSide  = 1024
)

// fetchIcons fetches both channel icons at once. A missing or broken icon is nil: the UI
// draws its default glyph.
func (r *Receiver) fetchIcons(ctx context.Context, unreadURL, readURL string) (unread, read []byte) {
	if unreadURL == "" && readURL == "" {
		return nil, nil
	}
	var wg sync.WaitGroup
	fetch := func(u string, dst *[]byte) {
		defer wg.Done()
		if u == "" {
			return
		}
		b, err := r.fetchIcon(ctx, u)
		if err != nil {
			r.log.Info("channel icon", "url", u, "err", err)
			return
		}
		*dst = b
	}
	wg.Add(2)
	go fetch(unreadURL, &unread)
	go fetch(readURL, &read)
	wg.Wait()
	return unread, read
}

// fetchIcon downloads an icon and checks that it decodes as PNG, GIF or JPEG.
func (r *Receiver) fetchIcon(ctx context.Context, u string) ([]byte, error) {
	if !isHTTPURL(u) {
		return nil, fmt.Errorf("icon %q: not an http URL", u)
	}
	ctx, cancel := context.WithTimeout(ctx, r.iconTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("icon %s: %w", u, err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch icon: %w", err)
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch icon %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxIconBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch icon %s: %w", u, err)
	}
	if len(b) > maxIconBytes {
		return nil, fmt.Errorf("icon %s: larger than %d bytes", u, maxIconBytes)
	}
	if err := checkIcon(b); err != nil {
		return nil, fmt.Errorf("icon %s: %w", u, err)
	}
	return b, nil
}

// checkIcon decodes an icon with the decoder its format names.
func checkIcon(b []byte) error {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxIconSide || cfg.Height > maxIconSide {
		return fmt.Errorf("%dx%d is not an icon size", cfg.Width, cfg.Height)
	}
	rd := bytes.NewReader(b)
	switch format {
	case "png":
		_, err = png.Decode(rd)
	case "gif":
		_, err = gif.Decode(rd)
	case "jpeg":
		_, err = jpeg.Decode(rd)
	default:
		return fmt.Errorf("format %s is not PNG, GIF or JPEG", format)
	}
	if err != nil {
		return fmt.Errorf("decode %s: %w", format, err)
	}
	return nil
}
