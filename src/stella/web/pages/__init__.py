"""Page routers of the web UI, one module per area."""

from __future__ import annotations

from stella.web.pages import audit, estate, evidence, home, promotions, releases, runs

MODULES = [home, releases, promotions, runs]
MODULES += [estate, evidence, audit]
