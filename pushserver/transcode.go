package pushserver

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/bbsim/bbsim/rim"
)

// markTranscoded does what the MDS Connection Service's transcoding did to a browser push,
// as bbsim stands in for it (docs/transcoding.md): HTML is transcoded unless the push's
// X-RIM-Transcode-Content (a multipart part's own, else the request's) excludes it. The
// content travels unchanged; the gateway tells the handset which parts it transcoded in
// rim.HeaderTranscoded, so that a device whose browser cannot render transcoded HTML fails
// as it did. h is the forwarded header set; one the initiator sent is dropped. parts are
// a multipart body's parts when the caller split it already (nil: split body here).
func markTranscoded(h http.Header, port int, body []byte, parts []part) {
	h.Del(rim.HeaderTranscoded)
	if port != rim.BrowserPort || h.Get(rim.HeaderPushType) == "" {
		return
	}
	ask := h.Get(rim.HeaderTranscode)
	ct := h.Get("Content-Type")
	if !rim.IsMultipart(ct) {
		if mt, _, err := rim.ParseMediaType(ct); err == nil && rim.Transcodes(ask, mt) {
			h.Set(rim.HeaderTranscoded, "1")
		}
		return
	}
	if parts == nil {
		var err error
		if parts, err = splitMultipart(ct, body); err != nil {
			return
		}
	}
	var done []string
	for i, p := range parts {
		mt, _, err := rim.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			continue
		}
		v := ask
		if pv := p.Header.Get(rim.HeaderTranscode); pv != "" {
			v = pv
		}
		if rim.Transcodes(v, mt) {
			done = append(done, strconv.Itoa(i+1))
		}
	}
	if len(done) > 0 {
		h.Set(rim.HeaderTranscoded, strings.Join(done, ","))
	}
}
