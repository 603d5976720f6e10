package handset

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"
)

// DefaultCacheLifetime is how long pushed content stays in the browser cache when the push
// carries no Expires header.
const DefaultCacheLifetime = 12 * time.Hour

// Channel is a browser channel: an icon on the home screen.
type Channel struct {
	// ID is a short stable identifier derived from ChannelID, usable in URLs.
	ID        string `json:"id"`
	ChannelID string `json:"channel_id"`
	Title     string `json:"title"`
	URL       string `json:"url"`
	Read      bool   `json:"read"`
	Priority  string `json:"priority,omitempty"`
	// UnreadIconURL and ReadIconURL are where the icons came from; UnreadIcon and
	// ReadIcon hold the fetched image bytes (PNG, GIF or JPEG) when they loaded.
	UnreadIconURL    string    `json:"unread_icon_url"`
	ReadIconURL      string    `json:"read_icon_url"`
	UnreadIcon       []byte    `json:"unread_icon,omitempty"`
	ReadIcon         []byte    `json:"read_icon,omitempty"`
	UnreadIconLoaded bool      `json:"unread_icon_loaded"`
	ReadIconLoaded   bool      `json:"read_icon_loaded"`
	IconsLoaded      bool      `json:"icons_loaded"`
	DeleteURL        string    `json:"delete_url,omitempty"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// ChannelKey returns the short ID of the channel with that channel ID.
func ChannelKey(channelID string) string {
	sum := sha1.Sum([]byte(channelID))
	return hex.EncodeToString(sum[:5])
}

// UpsertChannel adds a channel, or replaces the one with the same ChannelID. A pushed
// channel is unread until opened.
func (h *Handset) UpsertChannel(c Channel) (Channel, error) {
	c.ID = ChannelKey(c.ChannelID)
	c.Read = false
	c.IconsLoaded = (c.UnreadIconURL == "" || c.UnreadIconLoaded) && (c.ReadIconURL == "" || c.ReadIconLoaded) &&
		(c.UnreadIconURL != "" || c.ReadIconURL != "")
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = h.now().UTC()
	}
	h.mu.Lock()
	if err := h.writeLocked(recChannel, c); err != nil {
		h.mu.Unlock()
		return Channel{}, err
	}
	replaced := h.applyChannelLocked(c)
	h.mu.Unlock()
	verb := "new channel"
	if replaced {
		verb = "channel updated"
	}
	h.Emit(EventPushChannel, fmt.Sprintf("%s: %s", verb, c.Title),
		map[string]string{"id": c.ID, "channel_id": c.ChannelID, "title": c.Title, "priority": c.Priority})
	return c, nil
}

func (h *Handset) applyChannelLocked(c Channel) (replaced bool) {
	for i, old := range h.channels {
		if old.ID == c.ID {
			h.channels[i] = &c
			return true
		}
	}
	h.channels = append(h.channels, &c)
	return false
}

// Channels returns the home-screen channels in the order they first appeared.
func (h *Handset) Channels() []Channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Channel, len(h.channels))
	for i, c := range h.channels {
		out[i] = *c
	}
	return out
}

// Channel returns one channel by ID (or by channel ID).
func (h *Handset) Channel(id string) (Channel, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.findChannelLocked(id); c != nil {
		return *c, nil
	}
	return Channel{}, fmt.Errorf("channel %s: %w", id, ErrNotFound)
}

func (h *Handset) findChannelLocked(id string) *Channel {
	for _, c := range h.channels {
		if c.ID == id || c.ChannelID == id {
			return c
		}
	}
	return nil
}

// OpenChannel marks the channel read and returns it with its cached page, if any.
func (h *Handset) OpenChannel(id string) (Channel, CacheEntry, error) {
	h.mu.Lock()
	c := h.findChannelLocked(id)
	if c == nil {
		h.mu.Unlock()
		return Channel{}, CacheEntry{}, fmt.Errorf("channel %s: %w", id, ErrNotFound)
	}
	wasRead := c.Read
	if !wasRead {
		if err := h.writeLocked(recChannelRead, c.ID); err != nil {
			h.mu.Unlock()
			return Channel{}, CacheEntry{}, err
		}
		c.Read = true
	}
	out := *c
	var page CacheEntry
	cached := false
	if e, ok := h.cache[c.URL]; ok && !h.expiredLocked(e) {
		page, cached = *e, true
	}
	sw, fetch, in := h.software, h.fetch, h.coverage
	h.mu.Unlock()
	if !wasRead {
		h.Emit(EventChannelOpened, "opened channel: "+out.Title, map[string]string{"id": out.ID})
	}
	page, err := h.browse(out.URL, page, cached, sw, fetch, in, map[string]string{"id": out.ID, "channel_id": out.ChannelID, "title": out.Title})
	return out, page, err
}

// Errors of opening a browser message or channel: the browser shows them instead of the
// page.
var (
	// ErrTranscoded is BlackBerry 6.0 before 6.0.0.203 opening HTML that the push gateway
	// transcoded (RIM's knowledge base: "Browser push content is not accessible on
	// BlackBerry devices running BlackBerry 6.0").
	ErrTranscoded = errors.New("browser push content is not accessible: this BlackBerry 6.0 browser cannot render HTML transcoded by the MDS Connection Service (fixed in 6.0.0.203)")
	// ErrOffline is a page that was not pushed, opened out of coverage.
	ErrOffline = errors.New("not available offline: the page was not pushed and the device is out of coverage")
)

// BrowserErrorCode names an error of opening a browser message or channel: "transcoded"
// (ErrTranscoded), "offline" (ErrOffline) or "fetch" (the page's server could not be
// reached).
func BrowserErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrTranscoded):
		return "transcoded"
	case errors.Is(err, ErrOffline):
		return "offline"
	}
	return "fetch"
}

// PageFetcher fetches a page the browser opens that is not in its cache. It is set by
// the browser's network side (browserpush); the handset opens no sockets itself.
type PageFetcher func(ctx context.Context, url string) (CacheEntry, error)

// SetPageFetcher sets how the browser fetches a page that was not pushed.
func (h *Handset) SetPageFetcher(f PageFetcher) {
	h.mu.Lock()
	h.fetch = f
	h.mu.Unlock()
}

// browse is the browser displaying url: the cached page if it can render it, else the page
// fetched over the network when in coverage. A failure is an EventOpenFailed event and an
// error wrapping ErrTranscoded, ErrOffline or the fetch's error.
func (h *Handset) browse(url string, page CacheEntry, cached bool, sw Software, fetch PageFetcher, in bool, fields map[string]string) (CacheEntry, error) {
	var err error
	switch {
	case cached && page.Transcoded && !sw.RendersTranscoded():
		err = ErrTranscoded
		fields["software"] = sw.String()
	case cached, url == "", fetch == nil: // no fetcher: a handset without a browser agent
		return page, nil
	case !in:
		err = ErrOffline
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		page, err = fetch(ctx, url)
		cancel()
		if err == nil {
			if perr := h.PutCache(page); perr != nil {
				return CacheEntry{}, perr
			}
			h.Emit(EventPageFetched, "page fetched: "+url, map[string]string{"url": url})
			return page, nil
		}
	}
	fields["url"] = url
	fields["error"] = err.Error()
	h.Emit(EventOpenFailed, "cannot display "+url+": "+err.Error(), fields)
	return CacheEntry{}, fmt.Errorf("open %s: %w", url, err)
}

// DeleteChannel removes a channel. byUser tells a deletion on the handset (which makes the
// browser fetch the channel's delete URL, from device software 4.2) from a
// Browser-Channel-Delete push.
func (h *Handset) DeleteChannel(id string, byUser bool) (Channel, error) {
	h.mu.Lock()
	c := h.findChannelLocked(id)
	if c == nil {
		h.mu.Unlock()
		return Channel{}, fmt.Errorf("channel %s: %w", id, ErrNotFound)
	}
	if err := h.writeLocked(recChannelDelete, c.ID); err != nil {
		h.mu.Unlock()
		return Channel{}, err
	}
	out := *c
	h.removeChannelLocked(c.ID)
	sw := h.software
	h.mu.Unlock()
	fields := map[string]string{"id": out.ID, "channel_id": out.ChannelID, "title": out.Title}
	if byUser {
		fields["by"] = "user"
		// The browser's network side fetches delete_url; before 4.2 the browser did not
		// know the header.
		switch {
		case out.DeleteURL == "":
		case sw.FetchesDeleteURL():
			fields["delete_url"] = out.DeleteURL
		default:
			fields["delete_url_ignored"] = out.DeleteURL
			fields["software"] = sw.String()
		}
	} else {
		fields["by"] = "push"
	}
	h.Emit(EventChannelDeleted, "channel deleted: "+out.Title, fields)
	return out, nil
}

func (h *Handset) removeChannelLocked(id string) {
	for i, c := range h.channels {
		if c.ID == id {
			h.channels = append(h.channels[:i], h.channels[i+1:]...)
			return
		}
	}
}

// CacheEntry is a page in the browser cache.
type CacheEntry struct {
	URL         string   `json:"url"`
	ContentType string   `json:"content_type"`
	Body        []byte   `json:"body,omitempty"`
	Text        string   `json:"text"`
	Links       []string `json:"links,omitempty"`
	// Parts are the URLs of the images and other parts pushed with the page (a multipart
	// push), each cached under its own URL.
	Parts []string `json:"parts,omitempty"`
	// Transcoded is HTML the push gateway transcoded as the MDS Connection Service did.
	Transcoded bool      `json:"transcoded,omitempty"`
	StoredAt   time.Time `json:"stored_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// PutCache stores a page in the browser cache. A zero ExpiresAt means the default
// lifetime of 12 hours. It emits no event: a cache refresh is silent.
func (h *Handset) PutCache(e CacheEntry) error {
	now := h.now().UTC()
	if e.StoredAt.IsZero() {
		e.StoredAt = now
	}
	if e.ExpiresAt.IsZero() {
		e.ExpiresAt = e.StoredAt.Add(DefaultCacheLifetime)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.writeLocked(recCache, e); err != nil {
		return err
	}
	h.cache[e.URL] = &e
	return nil
}

// CachedPage returns the cached page for url, if present and not expired.
func (h *Handset) CachedPage(url string) (CacheEntry, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.cache[url]
	if !ok || h.expiredLocked(e) {
		return CacheEntry{}, false
	}
	return *e, true
}

// Cache lists the browser cache entries that have not expired, by URL.
func (h *Handset) Cache() []CacheEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]CacheEntry, 0, len(h.cache))
	for _, e := range h.cache {
		if !h.expiredLocked(e) {
			out = append(out, *e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL < out[j].URL })
	return out
}

func (h *Handset) expiredLocked(e *CacheEntry) bool {
	return !e.ExpiresAt.IsZero() && !h.now().Before(e.ExpiresAt)
}
