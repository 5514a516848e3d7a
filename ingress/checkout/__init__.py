"""The checkout API: payment init, place-order, the 3-D Secure return page and order status."""
