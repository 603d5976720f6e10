#!/bin/sh
# Pushes to a handset through the push gateway with curl, as a push developer would.
# Usage: GW=http://127.0.0.1:8080 PIN=2100000A SITE=http://127.0.0.1:9000 sh push.sh
set -eu
: "${GW:?gateway URL}" "${PIN:?device PIN}" "${SITE:?icon site URL}"
url="$GW/push?DESTINATION=$PIN&PORT=7874&REQUESTURI=/"

push() { # push ID, then curl arguments
	id=$1
	shift
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "X-RIM-Push-ID: $id" "$@" "$url")
	if [ "$code" != 200 ]; then
		echo "push $id: gateway answered $code" >&2
		exit 1
	fi
	echo "push $id: $code"
}

push script-channel \
	-H 'X-RIM-Push-Type: Browser-Channel' -H 'X-RIM-Push-Title: Weather' \
	-H 'X-RIM-Push-Channel-ID: http://weather.example/' -H 'Content-Location: http://weather.example/' \
	-H "X-RIM-Push-Unread-Icon-URL: $SITE/unread.png" -H "X-RIM-Push-Read-Icon-URL: $SITE/read.gif" \
	-H 'Content-Type: text/html' --data-binary '<h1>Weather</h1><p>Sunny, <a href="/more">more</a></p>'

push script-message \
	-H 'X-RIM-Push-Type: Browser-Message' -H 'X-RIM-Push-Title: Storm warning' \
	-H 'Content-Location: http://weather.example/storm' -H 'Content-Type: text/plain' \
	--data-binary 'Wind from the west.'

push script-content \
	-H 'X-RIM-Push-Type: Browser-Content' -H 'Content-Location: http://weather.example/radar' \
	-H 'Content-Type: text/html; charset=utf-8' -H 'Expires: Thu, 01 Jan 2099 00:00:00 GMT' \
	--data-binary '<p>Radar: clear</p>'
