"""Rego policy evaluation with regopy (OPA's language, in process)."""
