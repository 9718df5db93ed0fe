"""Pure domain model: values, state machines and invariants. Imports only the stdlib."""
