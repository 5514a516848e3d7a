"""HTTP front doors: the Payrails webhook ingress and the storefront checkout API."""
