"""Page routers of the web UI, one module per area."""

from __future__ import annotations

from stella.web.pages import home, promotions, releases, runs

MODULES = [home, releases, promotions, runs]
