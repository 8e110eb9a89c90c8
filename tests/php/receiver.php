<?php
// A receiver as the seed platforms' customers write them: PHP reads the request into $_GET and
// $_POST (nested fields[...] keys become arrays) and this script records what PHP saw, one JSON
// line per request, in the file named by PG_WEBHOOKS_PHP_LOG. Run by `php -S` (tests/src/php.rs).
$record = [
    'method' => $_SERVER['REQUEST_METHOD'],
    'path' => parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH),
    'get' => $_GET,
    'post' => $_POST,
    'query_string' => $_SERVER['QUERY_STRING'] ?? '',
    'body' => file_get_contents('php://input'),
    'content_type' => $_SERVER['CONTENT_TYPE'] ?? '',
    'webhook_id' => $_SERVER['HTTP_WEBHOOK_ID'] ?? '',
    'webhook_timestamp' => $_SERVER['HTTP_WEBHOOK_TIMESTAMP'] ?? '',
    'webhook_signature' => $_SERVER['HTTP_WEBHOOK_SIGNATURE'] ?? '',
];
file_put_contents(getenv('PG_WEBHOOKS_PHP_LOG'), json_encode($record) . "\n", FILE_APPEND | LOCK_EX);
http_response_code(200);
echo 'ok';
