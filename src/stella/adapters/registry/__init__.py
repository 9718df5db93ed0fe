"""Registry connectors: the OCI distribution API client and the connector type registry."""
