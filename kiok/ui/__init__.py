"""The admin UI: a single-page app in ``static/`` (hand-written ES modules and CSS, vendored
Preact + htm + dagre, no build step) that the masters' admin app serves at ``/``. It talks
only to the documented ``/api/v1``; nothing here imports the master."""

from kiok.ui.routes import install

__all__ = ["install"]
