"""Inference: providers, failover router, circuit breaker, health checks, the gateway, conversations."""
