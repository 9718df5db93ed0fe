"""The web UI: server-rendered pages (Jinja2) with a little of the project's own JavaScript."""
