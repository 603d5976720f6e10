package rim

import "strings"

// HeaderTranscoded is the device link's own header (not RIM's): the gateway tells the
// handset which parts of a browser push it transcoded, as 1-based part numbers ("1" for a
// push that is not multipart). The gateway sets it and drops one an initiator sends.
const HeaderTranscoded = "Bbsim-Transcoded"

// TranscodedHTML is the media type of HTML after the MDS Connection Service transcoded it
// for the BlackBerry Browser (see docs/transcoding.md).
const TranscodedHTML = "application/vnd.rim.html"

// Transcodes reports whether the MDS Connection Service transcodes content of media type mt
// under an X-RIM-Transcode-Content value. With no header (v == "") MDS transcoded what it
// had a transcoder for, here HTML. Otherwise the value lists the media ranges to transcode,
// comma-separated ("*/*", "text/*", "text/html", "image/*"); "none" lists nothing, and a
// range prefixed with "!" is excluded even when another range matches ("*/*, !text/html").
// Only HTML has a transcoder in bbsim, so other types are never transcoded.
func Transcodes(v, mt string) bool {
	mt = strings.ToLower(strings.TrimSpace(mt))
	if !IsHTML(mt) {
		return false
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return true
	}
	in := false
	for _, r := range strings.Split(v, ",") {
		r = strings.ToLower(strings.TrimSpace(r))
		if i := strings.IndexByte(r, ';'); i >= 0 {
			r = strings.TrimSpace(r[:i]) // a q= or other parameter is not part of the range
		}
		neg := strings.HasPrefix(r, "!")
		r = strings.TrimSpace(strings.TrimPrefix(r, "!"))
		if !rangeMatches(r, mt) {
			continue
		}
		if neg {
			return false
		}
		in = true
	}
	return in
}

// IsHTML reports whether a media type (no parameters) is HTML the browser renders.
func IsHTML(mt string) bool {
	switch mt {
	case "text/html", "application/xhtml+xml", "application/vnd.wap.xhtml+xml":
		return true
	}
	return false
}

func rangeMatches(r, mt string) bool {
	if r == "*/*" || r == "*" || r == mt {
		return true
	}
	typ, sub, ok := strings.Cut(r, "/")
	mtyp, _, _ := strings.Cut(mt, "/")
	return ok && sub == "*" && typ == mtyp
}
