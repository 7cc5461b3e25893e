"""ecwid-relay's receiver: the Starlette ASGI app (instances API and Ecwid ingest)."""
