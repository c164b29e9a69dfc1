"""Talking to OCI distribution registries: references, credentials, the HTTP client, push."""
