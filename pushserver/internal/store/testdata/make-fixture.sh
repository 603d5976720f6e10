#!/bin/bash
# Makes push.db and bis.db (in $OUT/push) with the real bbsim binary $BBSIM: a server, a
# handset and curl as the initiator. See README.md.
set -eu
BBSIM=${BBSIM:-/tmp/bbsim-old}
OUT=${OUT:-/tmp/fx/data}
rm -rf "$OUT" "$OUT-h"; mkdir -p "$OUT"
G=http://127.0.0.1:18480
$BBSIM server --data "$OUT" --push 127.0.0.1:18480 --imap 127.0.0.1:11943 --pop3 '' --smtp '' --webmail '' --dns '' \
  --user alice@bbsim.test:blackberry:2100000A --user bob@bbsim.test:blackberry:2100000B \
  --push-app com.example.chat:s3cret:33333 --log-file "$OUT-server.log" &
SP=$!
until curl -s -o /dev/null $G/; do sleep 0.2; done
$BBSIM handset --headless --data "$OUT-h" --pin 2100000A --email alice@bbsim.test --gateway $G \
  --mail-server 127.0.0.1:11943 --listen 127.0.0.1:17974 --api 127.0.0.1:17980 \
  --app com.example.chat:33333 > "$OUT-handset.log" 2>&1 &
HP=$!
API=http://127.0.0.1:17980/api/v1
until curl -s $API/device | grep -q "\"state\": *\"attached\"" && curl -s $API/device | grep -q "\"state\": *\"active\""; do sleep 0.2; done
# r1: a browser message delivered to alice.
curl -s -X POST "$G/push?DESTINATION=2100000A&PORT=7874&REQUESTURI=/" -H 'X-RIM-Push-ID: r1' \
  -H 'X-RIM-Push-Type: Browser-Message' -H 'X-RIM-Push-Title: Hello' --data 'hello alice'; echo
# k1: an SI push without X-RIM-Push-Type, which the handset refuses with its reason.
curl -s -X POST "$G/push?DESTINATION=2100000A&PORT=7874" -H 'X-RIM-Push-ID: k1' \
  -H 'Content-Type: text/vnd.wap.si' --data '<si><indication href="http://example.test/">x</indication></si>'; echo
# b1: a BIS push to the chat app on alice's handset.
curl -s -u com.example.chat:s3cret -X POST "$G/mss/PD_pushRequest" -H 'Content-Type: multipart/related; boundary=BB; type="application/xml"' --data-binary $'--BB\r\nContent-Type: application/xml\r\n\r\n<?xml version="1.0"?><!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd"><pap><push-message push-id="b1" source-reference="com.example.chat"><address address-value="2100000A"/><quality-of-service delivery-method="unconfirmed"/></push-message></pap>\r\n--BB\r\nContent-Type: text/plain\r\n\r\nchat hello\r\n--BB--\r\n'; echo
# p1: a PAP push to alice and bob: delivered to alice, queued for bob (no handset).
curl -s -X POST "$G/pap" -H 'Content-Type: multipart/related; boundary=BB; type="application/xml"' --data-binary $'--BB\r\nContent-Type: application/xml\r\n\r\n<?xml version="1.0"?><!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd"><pap><push-message push-id="p1" deliver-before-timestamp="2099-01-01T00:00:00Z"><address address-value="WAPPUSH=2100000A%3A7874/TYPE=USER@rim.net"/><address address-value="WAPPUSH=2100000B%3A7874/TYPE=USER@rim.net"/><quality-of-service delivery-method="confirmed"/></push-message></pap>\r\n--BB\r\nContent-Type: text/plain\r\nX-RIM-Push-Type: Browser-Message\r\nX-RIM-Push-Title: Both\r\n\r\nto both\r\n--BB--\r\n'; echo
# c1: a push queued for bob, then cancelled.
curl -s -X POST "$G/push?DESTINATION=2100000B&PORT=7874" -H 'X-RIM-Push-ID: c1' \
  -H 'X-RIM-Push-Type: Browser-Message' -H 'X-RIM-Push-Title: Cancel me' --data 'never'; echo
curl -s -X POST "$G/pap" -H 'Content-Type: application/xml' --data-binary '<?xml version="1.0"?><!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd"><pap><cancel-message push-id="c1"/></pap>'; echo
# Wait for the deliveries to alice to be recorded, then take her out of coverage.
for id in r1 k1 p1; do until curl -s $G/api/v1/pushes/$id | grep -q '"pin":"2100000A"[^}]*"state":"\(delivered\|failed\)'; do sleep 0.2; done; done
curl -s $G/api/v1/pushes/b1; echo
curl -s --json '{"in":false}' $API/coverage; echo
# q1: alice is out of coverage: queued.
curl -s -X POST "$G/push?DESTINATION=2100000A&PORT=7874" -H 'X-RIM-Push-ID: q1' \
  -H 'X-RIM-Push-Type: Browser-Message' -H 'X-RIM-Push-Title: Later' --data 'for later'; echo
for id in r1 k1 b1 p1 c1 q1; do curl -s $G/api/v1/pushes/$id; echo; done
kill $HP; wait $HP || true
kill $SP; wait $SP || true
