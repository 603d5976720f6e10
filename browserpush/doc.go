// Package browserpush is the handset's push receiver (port 7874): it takes pushes delivered
// by the push gateway over the device link (docs/device-link.md) or posted straight with
// curl, reassembles packets, applies Browser-Channel, Browser-Message, Browser-Content and
// Browser-Channel-Delete pushes to the handset, hands other ports to push applications, and
// acknowledges. Its agent (Run) attaches to the gateway while the handset is in coverage.
//
// Answers, per docs/device-link.md: 200 once the push is stored (for an earlier packet of
// a multi-packet push, once the packet is kept); errors carry X-RIM-Push-Status: 4502 (HTTP
// 404) when no application listens on the port, 400 for a malformed push, 237 (HTTP 503)
// when the push is larger than Options.MaxBody. An out-of-coverage handset answers 503
// without a status, which the gateway reads as "unreachable" and keeps the push queued.
//
// Choices the protocol material leaves open:
//   - A push to the browser port without X-RIM-Push-Type, or with an unknown type, is
//     malformed (400). Header names are matched case-insensitively, type and priority
//     values too.
//   - Browser-Channel: the channel ID is X-RIM-Push-Channel-ID, else Content-Location; the
//     page URL is Content-Location, else the channel ID; the title defaults to the URL.
//     Icons are fetched before the 200 (5 s each at most, both at once), must decode as
//     PNG, GIF or JPEG of at most 1024x1024 and 512 KiB; anything else (missing, broken,
//     not http) leaves the icon unloaded and the UI draws its default glyph. Priority high
//     raises a push.alert event.
//   - Browser-Message: a new entry every time; subject = title, else URL, else
//     "(untitled)"; from = the URL's host. With a URL the page is also cached.
//   - Browser-Content: needs Content-Location; refreshes the cache and emits only a
//     push.content event (no entry, no alert).
//   - Browser-Channel-Delete of an unknown channel is accepted (200).
//   - Expires sets the cache lifetime (default 12 hours); an unparsable Expires means
//     already expired (RFC 9111 §5.3).
//   - Content is rendered for the screen: HTML with internal/htmltext (72 columns, links resolved
//     against the page URL), text/* as is (decoded from its charset), anything else as
//     "type, size". A body labelled application/x-www-form-urlencoded (what curl -d sends)
//     or unlabelled is sniffed.
//   - Multipart pushes: each part is applied with its own headers, taking push headers it
//     lacks (type, title, channel ID, priority, icon and delete URLs) from the request.
//     Every part is checked before any is stored, so a rejected push changes nothing.
//   - Packets (X-Bbsim-Packet) are kept by push ID until the last one, which waits up to
//     30 s for the earlier ones. A packet of a push already stored (same ID and the same
//     count, length and push headers: IDs are unique per initiator only) is answered with
//     the stored result and not applied again.
//   - Application-level reliability (X-RIM-Push-Reliability-Mode or X-Rim-Push-Reliability:
//     application, application-preferred, confirmed, application-level; PAP's
//     preferconfirmed is transport level) sends POST {gateway}/device/ack with code 1000
//     after the 200, retrying from 20 ms (the gateway may not have read the 200 yet) for
//     8 attempts.
//   - A channel deleted by the user has its delete URL fetched (GET) in the background by
//     Run, once the handset is in coverage, with up to 5 attempts.
package browserpush
