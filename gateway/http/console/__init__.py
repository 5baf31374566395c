"""The web console at `/ui`: server-rendered pages over what the gateway knows right now
(targets, the pool, spend, limits, drills, config), made live with htmx. Sign-in takes an
admin or viewer key and gives a signed session cookie; every action carries a CSRF token."""
