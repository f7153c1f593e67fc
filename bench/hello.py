"""The ceiling of the server stack: Starlette under uvicorn answering a constant JSON body.

Run: ``python -m bench.hello --port PORT``
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def hello(_request: Request) -> Response:
    return Response(b'{"resourceType":"Patient","id":"hello"}', media_type="application/fhir+json")


app = Starlette(routes=[Route("/fhir/Patient/{id}", hello), Route("/fhir/metadata", hello)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
