"""The WASI HTTP host's front end: HTTP/1.1 (h11) on the running asyncio loop.

``Server(handler)`` serves ``async handler(request, response)``; ``HttpLimits`` bounds what
each connection may cost; an ``Observer`` hears of each connection and each ``Answered``
request. The protocol rules live in ``protocol`` (no I/O), the loop side in ``server``.
"""

from .exchange import BodyError, Handler, Request, RequestBody, Response
from .limits import HttpLimits
from .server import Answered, Observer, Server

__all__ = ["Answered", "BodyError", "Handler", "HttpLimits", "Observer", "Request", "RequestBody", "Response", "Server"]
