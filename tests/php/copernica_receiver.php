<?php
// A receiver written from Copernica's and SMTPeter's "webhook security" pages, and nothing of
// pg_webhooks: it checks that the Digest header is the SHA-256 of the body, that Date is at most
// 60 seconds off, the X-Copernica-ID account, and the RSA-SHA256 Signature (M. Cavage's HTTP
// Signatures draft) over the headers it names, which must include (request-target), host, date,
// digest and x-copernica-id, with openssl_verify and the public key it was given.
// Each request is recorded as one JSON line: the verdict, the key id, and what PHP decoded.
$publicKey = file_get_contents(getenv('RECEIVER_PUBLIC_KEY_FILE'));
$account = getenv('RECEIVER_ACCOUNT');
$body = file_get_contents('php://input');
$headers = array_change_key_case(getallheaders(), CASE_LOWER);

function answer($verdict, $keyId = '')
{
    $record = [
        'verdict' => $verdict,
        'key_id' => $keyId,
        'method' => $_SERVER['REQUEST_METHOD'],
        'get' => $_GET,
        'post' => $_POST,
        'headers' => array_change_key_case(getallheaders(), CASE_LOWER),
        'body' => file_get_contents('php://input'),
    ];
    file_put_contents(getenv('PG_WEBHOOKS_PHP_LOG'), json_encode($record) . "\n", FILE_APPEND | LOCK_EX);
    http_response_code($verdict === 'ok' ? 200 : 403);
    echo $verdict;
    exit;
}

if (($headers['digest'] ?? '') !== 'SHA-256=' . base64_encode(hash('sha256', $body, true))) {
    answer('rejected: digest');
}
$date = strtotime($headers['date'] ?? '');
if ($date === false || abs(time() - $date) > 60) {
    answer('rejected: date');
}
if (($headers['x-copernica-id'] ?? '') !== $account) {
    answer('rejected: account');
}
preg_match_all('/(\w+)="([^"]*)"/', $headers['signature'] ?? '', $matches, PREG_SET_ORDER);
$params = [];
foreach ($matches as $match) {
    $params[$match[1]] = $match[2];
}
if (($params['algorithm'] ?? '') !== 'rsa-sha256') {
    answer('rejected: algorithm');
}
$covered = explode(' ', strtolower($params['headers'] ?? ''));
foreach (['(request-target)', 'host', 'date', 'digest', 'x-copernica-id'] as $required) {
    if (!in_array($required, $covered, true)) {
        answer("rejected: $required is not signed");
    }
}
$lines = [];
foreach ($covered as $name) {
    if ($name === '(request-target)') {
        $lines[] = '(request-target): ' . strtolower($_SERVER['REQUEST_METHOD']) . ' ' . $_SERVER['REQUEST_URI'];
    } elseif (isset($headers[$name])) {
        $lines[] = "$name: " . $headers[$name];
    } else {
        answer("rejected: $name is missing");
    }
}
$valid = openssl_verify(implode("\n", $lines), base64_decode($params['signature'] ?? ''), $publicKey, OPENSSL_ALGO_SHA256);
answer($valid === 1 ? 'ok' : 'rejected: signature', $params['keyId'] ?? '');
