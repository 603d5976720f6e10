<?php
// A BIS push written the way the BlackBerry Push Service PHP code copied all over the web
// writes it: the type parameter unquoted, CRLF parts, and "\n\r" after the close delimiter.
// Usage: php bis_push.php URL APPID PASSWORD PIN PUSHID TEXT
list(, $url, $appid, $password, $pin, $msgid, $text) = $argv;
$deliverbefore = gmdate('Y-m-d\TH:i:s\Z', strtotime('+5 minutes'));
$messageid = microtime(true);
$data = '--mPsbVQo0a68eIL3OAxnm' . "\r\n" .
'Content-Type: application/xml; charset=UTF-8' . "\r\n\r\n" .
'<?xml version="1.0"?>
<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.1//EN" "http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd">
<pap>
<push-message push-id="' . $msgid . '" deliver-before-timestamp="' . $deliverbefore . '" source-reference="' . $appid . '">'
. '<address address-value="' . $pin . '"/>'
. '<quality-of-service delivery-method="confirmed"/>'
. '</push-message>
</pap>' . "\r\n" .
'--mPsbVQo0a68eIL3OAxnm' . "\r\n" .
'Content-Type: text/plain' . "\r\n" .
'Push-Message-ID: ' . $messageid . "\r\n\r\n" .
stripslashes($text) . "\r\n" .
'--mPsbVQo0a68eIL3OAxnm--' . "\n\r";

$ch = curl_init();
curl_setopt($ch, CURLOPT_URL, $url);
curl_setopt($ch, CURLOPT_HEADER, false);
curl_setopt($ch, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
curl_setopt($ch, CURLOPT_USERAGENT, "Hallgren Networks BB Push Server/1.0");
curl_setopt($ch, CURLOPT_POST, true);
curl_setopt($ch, CURLOPT_POSTFIELDS, $data);
curl_setopt($ch, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
curl_setopt($ch, CURLOPT_USERPWD, $appid . ':' . $password);
curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
curl_setopt($ch, CURLOPT_HTTPHEADER, array("Content-Type: multipart/related; boundary=mPsbVQo0a68eIL3OAxnm; type=application/xml", "Accept: text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2", "Connection: keep-alive"));
$xmldata = curl_exec($ch);
$status = curl_getinfo($ch, CURLINFO_HTTP_CODE);
curl_close($ch);
echo "HTTP $status\n";
echo $xmldata;
// The copied clients read the outcome this way.
if (strpos($xmldata, 'code="1001"') !== false) {
	echo "\nACCEPTED\n";
}
