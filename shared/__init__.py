"""Code shared by the ingress, the worker and the operator CLI."""
