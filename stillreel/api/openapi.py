"""Per-endpoint OpenAPI documents in fal's structure, and stillreel's small catalogue routes."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import asdict

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from stillreel import __version__
from stillreel.api import deps
from stillreel.api.input_guards import MAX_URL_CHARS, safe_text
from stillreel.api.queue import error_message
from stillreel.endpoints import rules
from stillreel.endpoints.registry import ENDPOINTS, Endpoint, find
from stillreel.jobs.schema import QUEUED, TERMINAL

router = APIRouter()


def pascal(endpoint_id: str) -> str:
    """``fal-ai/kling-video/v2.5-turbo/standard/image-to-video`` → ``KlingVideoV25TurboStandardImageToVideo``."""
    name = endpoint_id.split("/", 1)[1] if "/" in endpoint_id else endpoint_id
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[/\-.]", name) if p)


def _schemas(endpoint: Endpoint) -> dict:
    base = pascal(endpoint.id)
    ref = "#/components/schemas/{model}"
    schemas = {}
    for model, name, title in ((endpoint.input_model, f"{base}Input", None), (endpoint.output_model, f"{base}Output", "I2VOutput")):
        schema = model.model_json_schema(ref_template=ref)
        for dep_name, dep in schema.pop("$defs", {}).items():
            schemas[dep_name] = dep
        if title:
            schema["title"] = title
        schema["x-fal-order-properties"] = list(schema.get("properties", {}))
        schemas[name] = schema
    # Keep fal's shared names: the output refers to File.
    return schemas


def openapi_document(endpoint: Endpoint, server: str) -> dict:
    base = pascal(endpoint.id)
    eid = endpoint.id
    req_param = {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "Request ID"}
    status_ref = {"$ref": "#/components/schemas/QueueStatus"}
    return {
        "openapi": "3.0.4",
        "info": {
            "title": f"Queue OpenAPI for {eid}",
            "version": "1.0.0",
            "description": f"The OpenAPI schema for the {eid} queue.",
            "x-fal-metadata": {
                "endpointId": eid, "category": endpoint.category,
                "playgroundUrl": f"{server}/models/{eid}", "documentationUrl": f"{server}/models/{eid}#api",
            },
            # fal's price for this id (its model page); stillreel bills nothing.
            "x-fal-pricing": endpoint.price.to_json(),
        },
        "servers": [{"url": f"{server}/queue"}],
        "security": [{"apiKeyAuth": []}],
        "components": {
            "securitySchemes": {"apiKeyAuth": {"type": "apiKey", "in": "header", "name": "Authorization",
                                               "description": "Fal Key"}},
            "schemas": {
                "QueueStatus": {
                    "type": "object", "required": ["status", "request_id"],
                    "properties": {
                        "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
                        "request_id": {"type": "string", "description": "The request id."},
                        "response_url": {"type": "string"}, "status_url": {"type": "string"},
                        "cancel_url": {"type": "string"},
                        "logs": {"type": "object", "additionalProperties": True},
                        "metrics": {"type": "object", "additionalProperties": True},
                        "queue_position": {"type": "integer"},
                    },
                },
                **_schemas(endpoint),
            },
        },
        "paths": {
            f"/{eid}/requests/{{request_id}}/status": {"get": {
                "parameters": [req_param, {"name": "logs", "in": "query", "required": False,
                                           "schema": {"type": "number"},
                                           "description": "Whether to include logs (`1`) in the response or not (`0`)."}],
                "responses": {"200": {"description": "The request status.",
                                      "content": {"application/json": {"schema": status_ref}}}},
            }},
            f"/{eid}/requests/{{request_id}}/cancel": {"put": {
                "parameters": [req_param],
                "responses": {"200": {"description": "The request was cancelled.", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "success": {"type": "boolean", "description": "Whether the request was cancelled successfully."}}}}}}},
            }},
            f"/{eid}": {"post": {
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{base}Input"}}}},
                "responses": {"200": {"description": "The request status.",
                                      "content": {"application/json": {"schema": status_ref}}}},
            }},
            f"/{eid}/requests/{{request_id}}": {"get": {
                "parameters": [req_param],
                "responses": {"200": {"description": "Result of the request.", "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{base}Output"}}}}},
            }},
        },
    }


@router.get("/api/openapi/queue/openapi.json")
def endpoint_openapi(endpoint_id: str, request: Request):
    endpoint = find(endpoint_id)
    if endpoint is None:
        raise HTTPException(404, f"Unknown endpoint: {endpoint_id}")
    return openapi_document(endpoint, deps.base_url(request))


def _describe(request: Request, endpoint: Endpoint) -> dict:
    spec = deps.settings(request).engine_for(endpoint.id)
    return {"name": spec.name, "model": spec.options.get("model"),
            "capabilities": asdict(deps.services(request).capabilities[endpoint.id])}


@router.get("/api/config")
def config(request: Request):
    return {"auth": deps.settings(request).auth, "version": __version__,
            "engines": {e.id: _describe(request, e) for e in ENDPOINTS.values()}}


def limits(endpoint: Endpoint) -> dict:
    """The list sizes fal enforces on this endpoint's fields but its JSON schema does not publish
    (``rules.py``): the playground's editors stop offering more at these counts."""
    fields = set(endpoint.fields.values())
    out = {}
    if "multi_prompt" in fields:
        out["multi_prompt"] = {"max": rules.MAX_SHOTS}
    if "voice_ids" in fields:
        out["voice_ids"] = {"max": rules.MAX_VOICES}
    if "input_image_urls" in fields:
        out["input_image_urls"] = {"min": 1, "max": rules.MAX_INPUT_IMAGES}
    if "image_urls" in fields:
        out["image_urls"] = {"max": rules.MAX_IMAGES_TOTAL, "total": rules.MAX_IMAGES_TOTAL}
    if "elements" in fields:
        lo, hi = rules.ELEMENT_REFERENCES
        out["elements"] = {"max": rules.MAX_IMAGES_TOTAL, "total": rules.MAX_IMAGES_TOTAL,
                           "reference_image_urls": {"min": lo, "max": hi}}
    return out


@router.get("/api/endpoints")
def endpoints(request: Request):
    return [
        {"id": e.id, "title": e.title, "description": e.description, "category": e.category,
         "price": e.price.to_json(), "fields": list(e.input_model.model_fields), "limits": limits(e),
         "engine": _describe(request, e), "capabilities": _describe(request, e)["capabilities"]}
        for e in ENDPOINTS.values()
    ]


@router.get("/api/requests")
async def recent_requests(who: deps.CallerDep, services: deps.ServicesDep, limit: int = 20):
    """The caller's recent requests, as summaries. Read and rendered in the thread pool: rows
    stored before inputs were bounded can hold megabytes, which rendered on the event loop
    stalled every other caller for seconds."""
    return await run_in_threadpool(_history, services.store, who.key_id, max(1, min(limit, 200)))


def _history(store, key_id: str | None, limit: int) -> JSONResponse:
    status = {QUEUED: "IN_QUEUE"}
    return JSONResponse([
        {
            "request_id": j.id, "endpoint_id": j.endpoint_id,
            "status": status.get(j.status, "COMPLETED" if j.status in TERMINAL else "IN_PROGRESS"),
            "state": j.status,
            "created_at": dt.datetime.fromtimestamp(j.created_at, dt.timezone.utc).isoformat(),
            "inference_time": j.inference_time, "error": summary(error_message(j)), "error_type": j.error_type,
            "video": (j.result or {}).get("video"), "input": summary(j.input),
        }
        for j in store.history(key_id, limit)
    ])


# Longest string a summary shows whole: what submit admits today (prompts, URLs) passes as it is,
# so the playground's "reuse this input" works; longer strings are rows from older versions.
SUMMARY_CHARS = MAX_URL_CHARS


def summary(value, depth: int = 0):
    """``value`` for a listing: data URIs and long strings cut, lists and nesting bounded, and
    what JSON cannot carry (lone surrogates, non-finite numbers, left by older versions) made safe."""
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            head = value[: min(value.find(","), 100)] if "," in value else value[:100]
            return f"{safe_text(head)},… ({len(value)} characters)"
        return safe_text(value, SUMMARY_CHARS)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if depth >= 8:
        return "…"
    if isinstance(value, dict):  # bounds well past any Kling input (trajectories: up to 77 points)
        items = list(value.items())[:100]
        return {safe_text(str(k), 100): summary(v, depth + 1) for k, v in items}
    if isinstance(value, list):
        return [summary(v, depth + 1) for v in value[:200]]
    return value
