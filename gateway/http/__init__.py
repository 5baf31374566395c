"""The HTTP surface: the ASGI app, the proxy routes, admin, auth, request validation, reload."""
