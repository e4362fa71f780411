"""The controller's HTTP side: dashboard, JSON API, Prometheus metrics (and the gateway)."""
