<?php
// A receiver written from Mailingwork's (emma) webhook page, and nothing of pg_webhooks: the
// event arrives as JSON in the body of a POST. It reads the subscriber, the fields ({id, value})
// and the lists ({id, state}) the way such a script does, and records what it understood as one
// JSON line; anything else is refused with 400.
$event = json_decode(file_get_contents('php://input'), true);
if ($_SERVER['REQUEST_METHOD'] !== 'POST' || !is_array($event) || !isset($event['subscriber_id'])) {
    http_response_code(400);
    exit;
}
$fields = [];
foreach ($event['fields'] ?? [] as $field) {
    $fields[$field['id']] = $field['value'];
}
$lists = [];
foreach ($event['lists'] ?? [] as $list) {
    $lists[$list['id']] = $list['state'];
}
$record = [
    'id' => $event['id'],
    'subscriber_id' => $event['subscriber_id'],
    'fields' => $fields,
    'lists' => $lists,
    'timestamp' => $event['timestamp'],
];
file_put_contents(getenv('PG_WEBHOOKS_PHP_LOG'), json_encode($record) . "\n", FILE_APPEND | LOCK_EX);
echo 'ok';
