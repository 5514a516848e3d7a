"""Every Prometheus metric of the service, defined here and nowhere else.

Names carry the ``recon_`` prefix, base units and the standard suffixes. Label values come from
small fixed sets (outcomes, endpoints, event names), never from ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# --- webhook ingress -------------------------------------------------------------------------
WEBHOOK_REQUESTS = Counter(
    "recon_webhook_requests_total",
    "Webhook deliveries answered by the ingress, by outcome.",
    # accepted|too_large|timeout (408: body too slow)|missing_signature|bad_signature|
    # bad_payload|unavailable (503), internal_error (503: a bug of ours, logged with its traceback)
    ["outcome"],
)
WEBHOOK_REQUEST_SECONDS = Histogram(
    "recon_webhook_request_seconds",
    "Time from request start to response for webhook deliveries, by outcome.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_REJECTIONS = Counter(
    "recon_webhook_rejections_total",
    "Webhook deliveries refused with a 4xx, by precise reason.",
    ["reason"],
)
WEBHOOK_SIGNATURE_KEY_MATCHES = Counter(
    "recon_webhook_signature_key_matches_total",
    "Valid signatures by the index of the PAYRAILS_WEBHOOK_SECRETS key that matched.",
    ["key_index"],
)
BROKER_PUBLISHES = Counter(
    "recon_broker_publishes_total",
    "Confirmed-publish attempts to RabbitMQ, by exchange and outcome.",
    ["exchange", "outcome"],  # confirmed|returned|nacked|timeout|disconnected|blocked|backpressure
)
BROKER_PUBLISH_SECONDS = Histogram(
    "recon_broker_publish_seconds",
    "Time from publish to the broker's confirm.",
    ["exchange"],
    buckets=_LATENCY_BUCKETS,
)
BROKER_PUBLISHES_COALESCED = Counter(
    "recon_broker_publishes_coalesced_total",
    "Publishes not sent because an identical one (same message id, exchange, routing key and "
    "body: a retry storm) was awaiting its confirm; they took its outcome, by exchange.",
    ["exchange"],
)
BROKER_CONNECTED = Gauge(
    "recon_broker_connected",
    "1 while this process holds an open channel to RabbitMQ, else 0.",
)

# --- Payrails client -------------------------------------------------------------------------
PAYRAILS_REQUESTS = Counter(
    "recon_payrails_requests_total",
    "Calls to the Payrails API, by endpoint and HTTP status (or 'error' for no response).",
    ["endpoint", "status"],
)
PAYRAILS_REQUEST_SECONDS = Histogram(
    "recon_payrails_request_seconds",
    "Duration of calls to the Payrails API, by endpoint.",
    ["endpoint"],
    buckets=(*_LATENCY_BUCKETS, 30.0, 60.0),
)
PAYRAILS_TOKEN_REFRESHES = Counter(
    "recon_payrails_token_refreshes_total",
    "OAuth token requests made to Payrails, by outcome.",
    ["outcome"],  # ok|rejected|error
)

# --- worker: webhook events ------------------------------------------------------------------
EVENTS_PROCESSED = Counter(
    "recon_events_processed_total",
    "Webhook events finished by the worker, by event name and outcome.",
    ["event", "outcome"],  # reconciled|duplicate|ignored|retried|dead_lettered
)
EVENT_PROCESSING_SECONDS = Histogram(
    "recon_event_processing_seconds",
    "Time from delivery to ack for webhook events, by outcome.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
REPOLLS = Counter(
    "recon_repolls_total",
    "Executions re-polled from Payrails by the events consumer, by outcome.",
    ["outcome"],  # ok|unavailable|rejected
)
DATABASE_FAILURES = Counter(
    "recon_database_failures_total",
    "Database operations that failed as unavailable and were held for another try, by consumer.",
    ["consumer"],
)
MESSAGE_RETRIES = Counter(
    "recon_message_retries_total",
    "Messages parked on a delay queue, by source queue and delay tier in seconds.",
    ["queue", "tier"],
)
DEAD_LETTERS = Counter(
    "recon_dead_letters_total",
    "Messages sent to the dead-letter queue, by source queue and reason.",
    ["queue", "reason"],
)
ORDER_TRANSITIONS = Counter(
    "recon_order_transitions_total",
    "Order state changes, by from-state, to-state and cause.",
    ["from_status", "to_status", "cause"],
)
WEBHOOK_TO_PAID_SECONDS = Histogram(
    "recon_webhook_to_paid_seconds",
    "Time from the ingress receiving a webhook to the order.paid message being confirmed.",
    buckets=_SLOW_BUCKETS,
)

# --- worker: authorize commands --------------------------------------------------------------
AUTHORIZE_COMMANDS = Counter(
    "recon_authorize_commands_total",
    "Authorize commands finished, by outcome.",
    ["outcome"],  # authorized|denied|skipped|refused|rejected|retried|dead_lettered
)

# --- worker: payment operations (capture, cancel, refund) -----------------------------------
OPERATIONS_EXECUTED = Counter(
    "recon_operations_executed_total",
    "Operation commands finished by the worker, by operation kind and outcome.",
    ["kind", "outcome"],  # in_flight|failed|unknown|skipped|retried|missing
)
OPERATIONS_RECONCILED = Counter(
    "recon_operations_reconciled_total",
    "Operation reports from Payrails (webhooks, sweeper re-polls), by kind, reported state and "
    "what the report did.",
    ["kind", "state", "outcome"],  # outcome: applied|review|ignored|conflict|recorded|...
)
OPERATIONS_BY_STATE = Gauge(
    "recon_operations",
    "Payment operations by kind and state, as last counted by the worker.",
    ["kind", "state"],
)
OPERATIONS_OLDEST_PENDING_SECONDS = Gauge(
    "recon_operations_oldest_pending_age_seconds",
    "Age of the oldest payment operation not decided yet (requested or in flight), by kind, as "
    "last counted by the worker (0 when none).",
    ["kind"],
)
AUTHORIZATIONS_NEAR_EXPIRY = Gauge(
    "recon_authorizations_near_expiry",
    "Manual-capture orders authorized longer than AUTHORIZATION_CAPTURE_WARNING_SECONDS with an "
    "amount neither captured nor being captured, as last counted by the sweeper.",
)

# --- worker: outbox relay --------------------------------------------------------------------
OUTBOX_PUBLISHED = Counter(
    "recon_outbox_published_total",
    "Outbox rows published to the orders exchange and confirmed, by routing key.",
    ["routing_key"],
)
OUTBOX_BACKLOG = Gauge(
    "recon_outbox_backlog",
    "Outbox rows not yet published.",
)
OUTBOX_OLDEST_AGE_SECONDS = Gauge(
    "recon_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when empty).",
)

# --- worker: sweeper and gauges read from the database / broker ------------------------------
SWEEPER_RUNS = Counter(
    "recon_sweeper_runs_total",
    "Sweeper passes, by outcome.",
    ["outcome"],  # ok|error
)
SWEEPER_REPAIRS = Counter(
    "recon_sweeper_repairs_total",
    "Orders the sweeper moved to a new state, by the state reached.",
    ["to_status"],
)
ORDERS_BY_STATUS = Gauge(
    "recon_orders",
    "Orders by current status, as last counted by the worker.",
    ["status"],
)
QUEUE_MESSAGES = Gauge(
    "recon_queue_messages",
    "Messages ready in each of the service's queues, as last read by the worker.",
    ["queue"],
)

# --- checkout --------------------------------------------------------------------------------
CHECKOUT_REQUESTS = Counter(
    "recon_checkout_requests_total",
    "Checkout API requests, by endpoint and outcome.",
    ["endpoint", "outcome"],
)
CHECKOUT_REQUEST_SECONDS = Histogram(
    "recon_checkout_request_seconds",
    "Checkout API request duration, by endpoint and outcome.",
    ["endpoint", "outcome"],
    buckets=(*_LATENCY_BUCKETS, 30.0),
)
MERCHANT_AUTH_FAILURES = Counter(
    "recon_merchant_auth_failures_total",
    "Merchant API requests refused 401, by reason (missing|malformed|invalid).",
    ["reason"],
)
CHECKOUT_SESSION_REFUSALS = Counter(
    "recon_checkout_session_refusals_total",
    "Shopper requests refused for their checkout session, by reason "
    "(missing|invalid|other_order|amount_mismatch|customer_mismatch|not_payable).",
    ["reason"],
)
MERCHANT_ORDERS = Counter(
    "recon_merchant_orders_total",
    "Orders asked for by commerce backends, by channel (http|amqp) and outcome "
    "(created|repeated|conflict|invalid).",
    ["channel", "outcome"],
)
OPERATIONS_REQUESTED = Counter(
    "recon_operations_requested_total",
    "Captures, cancels and refunds commerce backends asked for and got (stored now, or the one "
    "stored for their command id), by channel (http|amqp), kind (capture|cancel|refund) and "
    "outcome (requested|repeated).",
    ["channel", "kind", "outcome"],
)
OPERATIONS_REFUSED = Counter(
    "recon_operations_refused_total",
    "Captures, cancels and refunds refused before anything was stored or Payrails called, by "
    "channel (http|amqp), kind and reason: a money rule's code (exceeds_authorized, "
    "exceeds_captured, partial_cancel, currency_mismatch, order_cancelled, not_authorized, ...), "
    "command_reused, not_found, invalid or idempotency_key_invalid.",
    ["channel", "kind", "reason"],
)
CHECKOUT_RATE_LIMITED = Counter(
    "recon_checkout_rate_limited_total",
    "Checkout requests refused with 429 by a rate limit, by the limit's scope.",
    ["scope"],  # session|address
)
CHECKOUT_RATE_LIMIT_EVICTIONS = Counter(
    "recon_checkout_rate_limit_evictions_total",
    "Keys a rate limiter forgot while still limited, to stay within its key bound, by scope.",
    ["scope"],  # session|address
)
CHECKOUT_LONG_POLLS_REFUSED = Counter(
    "recon_checkout_long_polls_refused_total",
    "Long-polls refused at once, by the bound reached: session (429) or total (503).",
    ["scope"],  # session|total
)
CHECKOUT_LONG_POLLS_IN_FLIGHT = Gauge(
    "recon_checkout_long_polls_in_flight",
    "Long-polls (place-order, payment-return) holding a slot right now.",
)

# --- every HTTP server (shared/http_server.py) -----------------------------------------------
HTTP_CLIENT_TIMEOUTS = Counter(
    "recon_http_client_timeouts_total",
    "Connections cut off because the client was too slow, by server (public|admin) and phase "
    "(idle: sent nothing; header: request head unfinished; body: body unfinished).",
    ["server", "phase"],
)
HTTP_MALFORMED_REQUESTS = Counter(
    "recon_http_malformed_requests_total",
    "Requests the HTTP parser refused (answered 400, the bytes never echoed), by server.",
    ["server"],
)
