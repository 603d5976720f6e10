package browserpush

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/htmltext"
	"github.com/bbsim/bbsim/rim"
	"golang.org/x/net/html/charset"
)

// RenderWidth is the column width pushed HTML is wrapped to for the handset's screen.
const RenderWidth = htmltext.ScreenWidth

// maxParts bounds the parts of a multipart push.
const maxParts = 64

// push is one reassembled push.
type push struct {
	id     string
	port   int
	header http.Header
	body   []byte
}

// part is one piece of browser content with its own headers (the whole push, or one part
// of a multipart push).
type part struct {
	index  int
	header http.Header
	outer  http.Header
	body   []byte
	// transcoded: the gateway transcoded this part's HTML (rim.HeaderTranscoded).
	transcoded bool
}

// inherited lists the push headers a part takes from the request when it lacks them.
var inherited = map[string]bool{
	rim.HeaderPushType: true, rim.HeaderTitle: true, rim.HeaderChannelID: true,
	rim.HeaderPriority: true, rim.HeaderUnreadIconURL: true,
	rim.HeaderReadIconURL: true, rim.HeaderDeleteURL: true,
}

// get returns a part's header; name must be in canonical form (http.CanonicalHeaderKey).
func (p *part) get(name string) string {
	if v := strings.TrimSpace(p.header.Get(name)); v != "" || p.outer == nil || !inherited[name] {
		return v
	}
	return strings.TrimSpace(p.outer.Get(name))
}

// apply stores a reassembled push on the handset. Everything is checked before anything
// is stored, so a rejected push leaves the handset as it was.
func (r *Receiver) apply(ctx context.Context, p *push) *pushError {
	if p.port != BrowserPort {
		return r.applyApp(p)
	}
	parts, perr := splitParts(p)
	if perr != nil {
		return perr
	}
	ops := make([]func(context.Context) error, 0, len(parts))
	for _, pt := range parts {
		op, perr := r.prepare(p, pt)
		if perr != nil {
			return perr
		}
		ops = append(ops, op)
	}
	for _, op := range ops {
		if err := op(ctx); err != nil {
			r.log.Error("store push", "push_id", p.id, "err", err)
			return errf(statusResources, "store push: %v", err)
		}
	}
	return nil
}

func (r *Receiver) applyApp(p *push) *pushError {
	ap := handset.AppPush{
		ID:          p.id,
		MessageID:   strings.TrimSpace(p.header.Get("Push-Message-Id")),
		ContentType: p.header.Get("Content-Type"),
		Body:        string(p.body),
	}
	_, err := r.h.AddAppPush(p.port, ap)
	if errors.Is(err, handset.ErrNotFound) {
		return errf(statusNoApp, "no application listening on port %d", p.port)
	}
	if err != nil {
		return errf(statusResources, "store push: %v", err)
	}
	return nil
}

// transcodedPart reports whether the gateway says it transcoded part i (0-based).
func transcodedPart(h http.Header, i int) bool {
	for _, n := range strings.Split(h.Get(rim.HeaderTranscoded), ",") {
		if strings.TrimSpace(n) == strconv.Itoa(i+1) {
			return true
		}
	}
	return false
}

// fetchPage is the browser fetching a page that was not pushed (handset.PageFetcher).
func (r *Receiver) fetchPage(ctx context.Context, u string) (handset.CacheEntry, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return handset.CacheEntry{}, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return handset.CacheEntry{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return handset.CacheEntry{}, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return handset.CacheEntry{}, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return r.cacheEntry(u, resp.Header.Get("Content-Type"), body, time.Time{}, false), nil
}

// splitParts returns the parts of a multipart push, or the push itself as one part.
func splitParts(p *push) ([]part, *pushError) {
	ct := p.header.Get("Content-Type")
	if !rim.IsMultipart(ct) {
		body, _, err := rim.DecodeBody(p.header, p.body)
		if err != nil {
			return nil, errf(statusMalformed, "%v", err)
		}
		return []part{{header: p.header, body: body, transcoded: transcodedPart(p.header, 0)}}, nil
	}
	mps, err := rim.SplitMultipart(ct, p.body, maxParts)
	if err != nil {
		return nil, errf(statusMalformed, "multipart push: %v", err)
	}
	parts := make([]part, 0, len(mps))
	for _, mp := range mps {
		body, _, err := rim.DecodeBody(mp.Header, mp.Body)
		if err != nil {
			return nil, errf(statusMalformed, "multipart push, part %d: %v", len(parts)+1, err)
		}
		parts = append(parts, part{index: len(parts), header: http.Header(mp.Header), outer: p.header, body: body,
			transcoded: transcodedPart(p.header, len(parts))})
	}
	return parts, nil
}

// prepare checks one part and returns the operation that stores it.
func (r *Receiver) prepare(p *push, pt part) (func(context.Context) error, *pushError) {
	typ, known := rim.PushType(pt.get(rim.HeaderPushType))
	if !known && pt.get(rim.HeaderPushType) != "" {
		return nil, errf(statusMalformed, "unknown X-RIM-Push-Type %q", pt.get(rim.HeaderPushType))
	}
	loc := pt.get(rim.HeaderContentLocation)
	chID := pt.get(rim.HeaderChannelID)
	title := pt.get(rim.HeaderTitle)
	priority := strings.ToLower(pt.get(rim.HeaderPriority))
	switch priority {
	case "none", "low", "medium", "high":
	default:
		priority = ""
	}
	ct := pt.get("Content-Type")
	var expires time.Time
	if v := pt.get("Expires"); v != "" {
		// An unparsable Expires means "already expired" (RFC 9111 §5.3).
		t, err := http.ParseTime(v)
		if err != nil {
			t = time.Unix(1, 0)
		}
		expires = t.UTC()
	}

	switch typ {
	case rim.TypeChannel:
		if chID == "" {
			chID = loc
		}
		if loc == "" {
			loc = chID
		}
		if chID == "" {
			return nil, errf(statusMalformed, "Browser-Channel needs X-RIM-Push-Channel-ID or Content-Location")
		}
		if title == "" {
			title = loc
		}
		unreadURL, readURL := pt.get(rim.HeaderUnreadIconURL), pt.get(rim.HeaderReadIconURL)
		deleteURL := pt.get(rim.HeaderDeleteURL)
		return func(ctx context.Context) error {
			ch := handset.Channel{ChannelID: chID, Title: title, URL: loc, Priority: priority,
				UnreadIconURL: unreadURL, ReadIconURL: readURL, DeleteURL: deleteURL}
			ch.UnreadIcon, ch.ReadIcon = r.fetchIcons(ctx, unreadURL, readURL)
			ch.UnreadIconLoaded, ch.ReadIconLoaded = ch.UnreadIcon != nil, ch.ReadIcon != nil
			if err := r.cachePage(loc, ct, pt.body, expires, pt.transcoded); err != nil {
				return err
			}
			ch, err := r.h.UpsertChannel(ch)
			if err != nil {
				return err
			}
			if priority == "high" {
				r.h.Emit(handset.EventPushAlert, "channel: "+title,
					map[string]string{"id": ch.ID, "channel_id": chID, "title": title, "push_id": p.id})
			}
			return nil
		}, nil

	case rim.TypeMessage:
		subject := title
		if subject == "" {
			subject = loc
		}
		if subject == "" {
			subject = "(untitled)"
		}
		return func(ctx context.Context) error {
			e := r.cacheEntry(loc, ct, pt.body, expires, pt.transcoded)
			if cached, ok := r.h.CachedPage(loc); ok && len(pt.body) == 0 && loc != "" {
				e = cached // an empty message opens the page already cached at its URL
			} else if loc != "" {
				if err := r.cachePage(loc, ct, pt.body, expires, pt.transcoded); err != nil {
					return err
				}
				e, _ = r.h.CachedPage(loc)
			}
			m, _, err := r.h.AddMessage(handset.Message{Kind: handset.KindBrowser, From: fromOf(loc),
				Subject: subject, URL: loc, ContentType: e.ContentType, Text: e.Text,
				Links: e.Links, Size: len(pt.body)})
			if err != nil {
				return err
			}
			if priority == "high" {
				r.h.Emit(handset.EventPushAlert, "message: "+subject,
					map[string]string{"id": m.ID, "subject": subject, "push_id": p.id})
			}
			return nil
		}, nil

	case rim.TypeContent:
		if loc == "" {
			loc = chID
		}
		from := ""
		if loc == "" {
			loc, from = contentURL(p)
		}
		if loc == "" {
			return nil, errf(statusMalformed, "Browser-Content needs Content-Location (or a push id or REQUESTURI to cache it under)")
		}
		return func(ctx context.Context) error {
			if err := r.cachePage(loc, ct, pt.body, expires, pt.transcoded); err != nil {
				return err
			}
			fields := map[string]string{"url": loc, "push_id": p.id, "size": fmt.Sprint(len(pt.body))}
			text := "cache refreshed: " + loc
			if from != "" {
				fields["url_from"] = from
				text += " (no Content-Location: cached under the " + from + ")"
			}
			r.h.Emit(handset.EventPushContent, text, fields)
			return nil
		}, nil

	case rim.TypeChannelDelete:
		if chID == "" {
			chID = loc
		}
		if chID == "" {
			return nil, errf(statusMalformed, "Browser-Channel-Delete needs X-RIM-Push-Channel-ID or Content-Location")
		}
		return func(ctx context.Context) error {
			_, err := r.h.DeleteChannel(chID, false)
			if errors.Is(err, handset.ErrNotFound) {
				r.log.Info("delete of an unknown channel", "channel_id", chID, "push_id", p.id)
				return nil
			}
			return err
		}, nil

	case "":
		// RIM's material names no default for a push to the browser's port without a push
		// type, so the handset refuses it, and says why: the reason reaches the initiator.
		return nil, errf(statusMalformed, "push to the browser port %d without X-RIM-Push-Type (want Browser-Channel, Browser-Message, Browser-Content or Browser-Channel-Delete)", BrowserPort)
	default:
		return nil, errf(statusMalformed, "unknown X-RIM-Push-Type %q", pt.get(rim.HeaderPushType))
	}
}

// contentURL is the URL a Browser-Content push without Content-Location is cached under:
// the push's REQUESTURI when that is an absolute URL, else cache://push/<push-id>. It
// returns which of the two it chose ("REQUESTURI" or "push-id").
func contentURL(p *push) (string, string) {
	if u, err := url.Parse(strings.TrimSpace(p.header.Get(rim.HeaderRequestURI))); err == nil && u.IsAbs() && u.Host != "" {
		return u.String(), "REQUESTURI"
	}
	if p.id == "" {
		return "", ""
	}
	return "cache://push/" + url.PathEscape(p.id), "push-id"
}

// cachePage stores pushed content under loc. An empty body keeps a page already cached
// there (RIM's multipart sample sends its channel part empty, after the content part that
// cached the page). A multipart body is a page and its resources: the page is cached under
// loc, each other part under its Content-Location resolved against loc, or under cid:<id>
// for a part of a multipart/related known by its Content-ID; the page's text then lists
// them.
func (r *Receiver) cachePage(loc, ct string, body []byte, expires time.Time, transcoded bool) error {
	if len(body) == 0 {
		// Nothing to cache: a page already cached there stays, and a push of the URL only
		// leaves the browser to fetch the page when it is opened.
		return nil
	}
	if !rim.IsMultipart(ct) {
		return r.h.PutCache(r.cacheEntry(loc, ct, body, expires, transcoded))
	}
	mps, err := rim.SplitMultipart(ct, body, maxParts)
	if err != nil {
		// Checked as the push arrived (checkContent); a page that cannot be split is
		// cached as it came.
		return r.h.PutCache(r.cacheEntry(loc, ct, body, expires, transcoded))
	}
	base, _ := url.Parse(loc)
	page := -1
	for i, mp := range mps {
		cl := strings.TrimSpace(mp.Header.Get(rim.HeaderContentLocation))
		if mt, _, _ := rim.ParseMediaType(mp.Header.Get("Content-Type")); page < 0 && (cl == "" || cl == loc) && (mt == "text/html" || mt == "application/xhtml+xml" || mt == "") {
			page = i
		}
	}
	if page < 0 {
		page = 0
	}
	var listed, urls []string
	for i, mp := range mps {
		if i == page {
			continue
		}
		pbody, _, err := rim.DecodeBody(mp.Header, mp.Body)
		if err != nil {
			continue
		}
		u := partURL(base, mp.Header)
		if u == "" {
			continue
		}
		pct := mp.Header.Get("Content-Type")
		if err := r.h.PutCache(r.cacheEntry(u, pct, pbody, expires, false)); err != nil {
			return err
		}
		mt, _, _ := rim.ParseMediaType(pct)
		urls = append(urls, u)
		listed = append(listed, fmt.Sprintf("%s (%s, %d bytes)", u, cmp.Or(mt, "unknown type"), len(pbody)))
	}
	pg := mps[page]
	pbody, _, err := rim.DecodeBody(pg.Header, pg.Body)
	if err != nil {
		pbody = pg.Body
	}
	e := r.cacheEntry(loc, pg.Header.Get("Content-Type"), pbody, expires, transcoded)
	e.Parts = urls
	if len(listed) > 0 {
		e.Text = strings.TrimRight(e.Text, "\n") + "\n\nImages and other parts cached with this page:\n  " + strings.Join(listed, "\n  ") + "\n"
	}
	return r.h.PutCache(e)
}

// partURL is the URL a part of a multipart page is cached under: its Content-Location
// resolved against the page's URL, or cid:<Content-ID>.
func partURL(base *url.URL, h map[string][]string) string {
	hdr := http.Header(h)
	if cl := strings.TrimSpace(hdr.Get(rim.HeaderContentLocation)); cl != "" {
		u, err := url.Parse(cl)
		if err != nil {
			return ""
		}
		if base != nil {
			u = base.ResolveReference(u)
		}
		return u.String()
	}
	if id := strings.Trim(strings.TrimSpace(hdr.Get("Content-Id")), "<>"); id != "" {
		return "cid:" + id
	}
	return ""
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// fromOf names the sender of a browser message: the host of its page.
func fromOf(loc string) string {
	if u, err := url.Parse(loc); err == nil && u.Host != "" {
		return u.Host
	}
	return "browser push"
}

// cacheEntry renders content for the screen: HTML to text, text as is, anything else as
// "type, size".
func (r *Receiver) cacheEntry(loc, ct string, body []byte, expires time.Time, transcoded bool) handset.CacheEntry {
	// curl -d labels any body as a form; a push is never one, so sniff it instead.
	if ct == "" || strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		ct = http.DetectContentType(body)
	}
	e := handset.CacheEntry{URL: loc, ContentType: ct, Body: body, ExpiresAt: expires}
	mt, params, err := rim.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(ct))
	}
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml" || mt == "application/vnd.wap.xhtml+xml":
		var base *url.URL
		if u, err := url.Parse(loc); err == nil && u.IsAbs() {
			base = u
		}
		text, links, err := htmltext.Render(bytes.NewReader(body), &htmltext.Options{Width: RenderWidth, ContentType: ct, Base: base})
		if err != nil {
			r.log.Info("render html", "url", loc, "err", err)
		}
		e.Text, e.Links = text, links
		e.Transcoded = transcoded
	case strings.HasPrefix(mt, "text/"):
		e.Text = plainText(body, params["charset"])
	default:
		e.Text = fmt.Sprintf("%s, %d bytes", mt, len(body))
	}
	return e
}

// plainText decodes text in its declared charset (UTF-8 when none or unknown).
func plainText(body []byte, cs string) string {
	if cs != "" && !strings.EqualFold(cs, "utf-8") {
		if rd, err := charset.NewReaderLabel(cs, bytes.NewReader(body)); err == nil {
			if b, err := io.ReadAll(rd); err == nil {
				body = b
			}
		}
	}
	if utf8.Valid(body) {
		return string(body)
	}
	return strings.ToValidUTF8(string(body), "\uFFFD")
}
