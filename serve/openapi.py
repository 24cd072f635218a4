"""The OpenAPI 3.0 schema of the V2 routes, written by hand so schema-based fuzzers can drive them."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "Bad request: the body breaks the protocol."),
    "401": _json(_ref("Error"), "Missing or wrong API key."),
    "404": _json(_ref("Error"), "Unknown model or version."),
    "413": _json(_ref("Error"), "Body larger than --max-body-bytes."),
    "415": _json(_ref("Error"), "Content-Type is neither JSON nor binary tensors."),
    "503": _json(_ref("Error"), "Not ready, overloaded or shutting down."),
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Tensor": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string", "example": "input"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": ["FP32"]},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": {
                "description": "Row-major values, flat or nested to the tensor's shape.",
                "type": "array",
                "items": {"oneOf": [{"type": "number"}, {"type": "array", "items": {}}]},
            },
        },
    },
    "RequestedOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "example": "probabilities"},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data": {"type": "boolean"},
                    "classification": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": _ref("Tensor")},
            "outputs": {"type": "array", "items": _ref("RequestedOutput")},
        },
    },
    "InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("Tensor")},
        },
    },
    "TensorMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
        },
    },
}


def _get(summary: str, schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    ok = _json(schema or {"type": "object"}, "OK")
    return {"get": {"summary": summary, "responses": {"200": ok, **_ERRORS}, **extra}}


def _classify(model_param: dict[str, Any]) -> dict[str, Any]:
    # The image endpoint of cnnedge.serve.images: raw PNG/JPEG or multipart file parts.
    image = {"type": "string", "format": "binary"}
    query = [
        {"name": "top_k", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "debug", "in": "query", "schema": {"type": "integer", "enum": [0, 1]}},
        {"name": "invert", "in": "query", "schema": {"enum": ["auto", "always", "never"]}},
    ]
    return {
        "post": {
            "summary": "Classify PNG/JPEG images (raw body or multipart/form-data file parts).",
            "parameters": [model_param, *query],
            "requestBody": {
                "required": True,
                "content": {
                    "image/png": {"schema": image},
                    "image/jpeg": {"schema": image},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "array", "items": image}},
                        }
                    },
                },
            },
            "responses": {"200": _json({"type": "object"}, "Predictions"), **_ERRORS},
        }
    }


def openapi_schema(model_names: list[str], version: str) -> dict[str, Any]:
    """The OpenAPI document for this server.

    Args:
        model_names: the served models (the `{model}` parameter's enum, so fuzzers hit them).
        version: the cnnedge version.

    Returns:
        The OpenAPI 3.0.3 document as a dict.
    """
    model_param: dict[str, Any] = {
        "name": "model",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": model_names} if model_names else {"type": "string"},
    }
    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    infer: dict[str, Any] = {
        "post": {
            "summary": "Run inference (JSON tensors, or Triton binary tensors with the "
            "Inference-Header-Content-Length header).",
            "parameters": [
                {
                    "name": "Inference-Header-Content-Length",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("InferRequest")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {"200": _json(_ref("InferResponse"), "Inference result"), **_ERRORS},
        }
    }
    m, v = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    paths: dict[str, Any] = {
        "/v2/health/live": _get("Liveness"),
        "/v2/health/ready": _get("Readiness: 200 once models are loaded, 503 while draining"),
        "/v2": _get("Server metadata and extensions"),
        "/v2/models": _get("Served model names"),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    routes: list[tuple[str, list[dict[str, Any]]]] = [
        (m, [model_param]),
        (v, [model_param, version_param]),
    ]
    paths["/v2/models/stats"] = _get("Triton inference statistics of every model")
    for base, params in routes:
        paths[base] = _get("Model metadata", _ref("ModelMetadata"), parameters=params)
        paths[base + "/ready"] = _get("Model readiness", parameters=params)
        paths[base + "/config"] = _get("Triton model configuration", parameters=params)
        paths[base + "/stats"] = _get("Triton inference statistics", parameters=params)
        paths[base + "/infer"] = {
            "post": {**infer["post"], "parameters": params + infer["post"]["parameters"]}
        }
    paths["/v1/models/{model}:classify"] = _classify(model_param)
    paths["/v1/models"] = _get("Served models with labels and input shapes (for the page)")
    return {
        "openapi": "3.0.3",
        "info": {"title": "cnnedge inference server (Open Inference Protocol)", "version": version},
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


__all__ = ["openapi_schema"]
