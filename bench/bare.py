"""The ceiling for ingest: a bare Starlette POST endpoint that reads the body and answers 200.

It runs under the receiver's own uvicorn options (workers.serve.uvicorn_options), so
the two differ only in what the endpoint does.

Run: python -m bench.bare PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from workers.serve import uvicorn_options


async def accept(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"message": "accepted"})


app = Starlette(routes=[Route("/events/ecwid", accept, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, **uvicorn_options("127.0.0.1", int(sys.argv[1])))
