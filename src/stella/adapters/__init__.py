"""Adapters: the technology behind the services' ports (database, registry, secrets, ...)."""
