"""The OpenAPI document and Swagger UI at /docs, served by the service itself: no CDN, so the docs work on an
offline cluster. The UI's files come from the `swagger-ui-bundle-v2` package."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from critic_service.errors import NotFound

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def openapi_document(app: FastAPI, auth: bool) -> dict[str, Any]:
    """The app's OpenAPI document; the bearer-key requirement is published only when keys are configured."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        if not auth:
            schema.get("components", {}).pop("securitySchemes", None)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.pop("security", None)
        app.openapi_schema = schema
    return app.openapi_schema


def build_docs_router(access: Any) -> APIRouter:
    """/openapi.json, /docs and its assets; `access` is the dependency that decides who may read them."""
    router = APIRouter(include_in_schema=False, dependencies=[Depends(access)])

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        service = request.app.state.service
        return JSONResponse(openapi_document(request.app, service.keys.enabled))

    @router.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{request.app.title} - API docs",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
            oauth2_redirect_url=None,
        )

    @router.get("/docs/assets/{name}")
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFound(f"no docs asset {name!r}")
        from swagger_ui_bundle import swagger_ui_path

        return FileResponse(str(swagger_ui_path / name), media_type=ASSETS[name])

    return router
