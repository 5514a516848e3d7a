"""Payrails API: the typed execution model and the async client."""
