// Package pushserver is the bundled push gateway: it takes RIM push and PAP requests from push
// initiators, stores every accepted push in SQLite before answering, and delivers it over the
// device link (docs/device-link.md) to attached handsets through per-device ordered queues
// with flow control, reporting results to the initiators' notify URLs.
//
// Endpoints (one listener, plus Options.Mount; HTTP/1.1 through fasthttp, handlers are
// net/http handlers, see internal/front):
//
//	POST /push?DESTINATION=…&PORT=…&REQUESTURI=…   RIM push: 200, 400, 401/403, 413, 414/431, 503
//	POST /pap                                       PAP 2.0/2.1 push, replace, status query, cancel
//	POST /device/attach, /device/detach, /device/ack, /device/check the device link
//	GET  /api/v1/pushes/{id}, /api/v1/devices       JSON state per recipient, devices and queues
//	GET  /metrics                                   Prometheus text format
//
// Choices where the public material is silent:
//   - Push authentication is HTTP Basic: 401 with a Basic challenge when credentials are
//     missing, 403 when they are wrong or the initiator may not reach a recipient. With
//     authentication on, a $group destination is allowed only to an initiator whose Allowed
//     list names that group; a PIN is allowed when listed or in a listed group.
//   - A RIM push with a push id its source already used is answered 400 ("duplicate push
//     id"); PAP answers 2007. Push ids are unique per source (the initiator's name, or the
//     BIS application id); status and cancel by push id act on the latest push with that id.
//   - RIM result notifications are POSTs with an empty body; X-RIM-Push-Status is 200 when
//     delivered, 4500 expired or no application acknowledgement in time, the device's code
//     (4502, 238, 235, 400…) when it refused, 4501 when cancelled or failed otherwise.
//     PAP notifications are resultnotification-message documents with message-state
//     delivered, expired, timeout, undeliverable or cancelled.
//   - The flow-control timeout counts from acceptance (or deliver-after, when later), and
//     deliver-before shortens it; an application acknowledgement has the same time from the
//     transport-level delivery.
//   - A push is at-least-once towards the device: a delivery the device acknowledged is
//     recorded before the next push of that device is sent, and an in-flight delivery
//     finishes across a detach, so duplicates need a crash between the device's answer and
//     that commit. Receivers drop duplicates by X-RIM-Push-ID (or Push-Message-ID).
//   - Queued pushes are held in memory as well as in the store (at most MaxActive pushes of
//     at most MaxBodyBytes each).
//
// The code follows a push's life: submit.go (checked, committed, queued), queue.go (the
// per-device queues), attach.go (the device link's attachments), deliver.go with link.go
// and linkpool.go (each device's delivery loop, on connections pooled by receiver
// address), results.go (final states, expiry, reports) and status.go (status and cancel). Gateways sharing a PostgreSQL store hand pushes over to where their
// device attached through one interface (gateways.go), implemented in handover.go; a lone
// gateway's is a no-op. The store (internal/store: SQLite, or PostgreSQL shared by gateways,
// each with numbered schema migrations) is reached through store.go, which turns pushes and
// recipients into its records and back.
//
// Life cycle (pushserver.go): New checks the options and does no I/O; Open(ctx) opens the
// store and runs delivery on ctx; Serve answers until Shutdown or Close.
package pushserver
