"""The WASI HTTP host's front end: HTTP/1.1 (h11) on the running asyncio loop.

``Server(handler)`` serves ``async handler(request, response)``; ``HttpLimits`` bounds what
each connection may cost. The protocol rules live in ``protocol`` (no I/O), the loop side in
``server``.
"""

from .exchange import BodyError, Handler, Request, RequestBody, Response
from .limits import HttpLimits
from .server import Server

__all__ = ["BodyError", "Handler", "HttpLimits", "Request", "RequestBody", "Response", "Server"]
