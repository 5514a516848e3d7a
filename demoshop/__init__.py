"""The demo shop: a small merchant site that is a client of the checkout service.

It lists a few products at its own prices, creates the order through the checkout's merchant API
(server to server, with an API key) when the shopper buys, then sends the shopper's browser to
the storefront with the checkout session it got back. It runs as a process of its own
(``python -m demoshop``) for ``make run``; the production image does not ship it.
"""
