"""What the upstream client raises — every failure is one of these:

    TransportError
     ├── ConnectError        no connection (refused, unreachable, DNS, TLS handshake)
     │    └── ConnectTimeout
     ├── AnswerTimeout       connected, but no head within first-byte, or no byte within idle
     ├── Disconnected        the upstream closed or reset the connection mid-exchange
     ├── MalformedAnswer     not HTTP/1.1 we can read: a bad head, a head or body too large
     └── BadRequestHead      ours to refuse before sending (a header carrying CR or LF)

`received` tells whether any byte of the answer had arrived: a request is sent again on a
fresh connection only when none had, and only once."""

from __future__ import annotations


class TransportError(Exception):
    received = False


class ConnectError(TransportError):
    pass


class ConnectTimeout(ConnectError):
    pass


class AnswerTimeout(TransportError):
    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase  # "first_byte" or "idle"


class Disconnected(TransportError):
    def __init__(self, message: str, received: bool) -> None:
        super().__init__(message)
        self.received = received


class MalformedAnswer(TransportError):
    received = True


class BadRequestHead(TransportError):
    pass
