"""Stella Release Orchestrator: digest-first release control plane for non-Kubernetes estates."""

__version__ = "0.1.0"
