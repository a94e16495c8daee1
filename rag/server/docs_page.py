"""GET /docs: the interactive API reference, with Swagger UI served by this server, never from a CDN.

FastAPI's default page loads Swagger UI's script and style sheet from a public CDN (and its logo from FastAPI's site),
so opening it would tell a third party that this service exists and who uses it. The files are vendored in
`static/swagger-ui/` (swagger-ui-dist, version and licence in its README.md) and the page carries a
Content-Security-Policy that lets the browser fetch from this server only. Swagger UI's validator badge, which would
send the API description to validator.swagger.io, is switched off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_URL = "/docs/assets"
# Swagger UI starts from an inline script and sets inline styles; everything it fetches must come from here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)


def install(app: FastAPI) -> None:
    """Serve /docs and its assets; the app must be created with `docs_url=None, redoc_url=None`."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.add_api_route("/docs", _docs, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)


async def _docs() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Sovereign RAG - API reference",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page
