"""The worker: claims workflow steps and runs them (embedded in the server or standalone)."""
