"""The browser dashboard: static files (plain ES modules, no build step) served by the app.

The dashboard's own files are public — they hold no data. Everything it shows comes from the
REST API and the WebSocket, with the key the user logs in with (kept in the tab's
`sessionStorage`, sent as `Authorization: Bearer`, never put in a URL).
"""

from framewatch.dashboard.router import STATIC_DIR, router

__all__ = ["STATIC_DIR", "router"]
