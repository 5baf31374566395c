"""The hot path's HTTP/1.1 client for upstreams: keep-alive connections on asyncio protocols,
answers parsed by httptools (the parser uvicorn already uses), TLS from the system's trust
store. What it raises is its own small tree (`errors.py`), which the providers' one error
module maps into the gateway's (`providers/upstream_errors.py`)."""
