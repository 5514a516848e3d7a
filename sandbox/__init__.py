"""A local, in-memory stand-in for the Payrails API and its webhook delivery."""
