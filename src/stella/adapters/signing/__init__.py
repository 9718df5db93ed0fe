"""Ed25519 signing keys and DSSE envelopes for decision records."""
