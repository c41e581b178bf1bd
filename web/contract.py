"""GET /openapi.json: the HTTP contract, a file shipped in the package (tests check it against the router)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

DOCUMENT = "openapi.json"


def openapi_document() -> bytes:
    return resources.files("web").joinpath(DOCUMENT).read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


OPENAPI = web.AppKey("openapi", bytes)


def setup_routes(app: web.Application) -> None:
    app[OPENAPI] = openapi_document()
    app.router.add_get("/openapi.json", openapi)
