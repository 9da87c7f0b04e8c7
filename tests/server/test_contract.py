"""``server.yaml`` is the contract: the app serves exactly its routes, and what it answers
validates against its response schemas — and every documented status code is produced.

OpenAPI 3.0 schema objects are turned into JSON Schema here (``$ref`` inlined,
``nullable`` → a ``null`` type, OpenAPI-only keywords dropped) and checked with jsonschema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute

from parsec.cids import cid_v0_for
from parsec.server.app import create_app

from .conftest import FakeBackend, b64, client_for, make_settings

SPEC_PATH = Path(__file__).resolve().parents[2] / "server.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_OPENAPI_ONLY = {"nullable", "example", "discriminator", "xml", "externalDocs", "deprecated", "readOnly", "writeOnly"}
CID = cid_v0_for(b"hello world\n")[0]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (``#/components/...``) until a concrete object."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local refs are expected, got {ref}"
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def to_json_schema(spec: dict[str, Any], schema: Any) -> Any:
    """An OpenAPI 3.0 schema object as an equivalent JSON Schema (draft 7)."""
    schema = _resolve(spec, schema)
    if isinstance(schema, list):
        return [to_json_schema(spec, item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _OPENAPI_ONLY:
            continue
        if key == "properties":  # keys are property names, not keywords
            out[key] = {name: to_json_schema(spec, sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(spec, value)
        else:
            out[key] = value
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(route.path, method.lower()) for route in app.routes if isinstance(route, APIRoute) for method in route.methods}


def test_spec_is_openapi_3_0_with_the_go_schema_names(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.0.")
    assert {"ProvideRequest", "RetrieveRequest", "ProvideResponse", "RetrievalResponse", "Measurement"} <= set(
        spec["components"]["schemas"]
    )
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(to_json_schema(spec, schema))


def test_app_routes_equal_the_spec(spec: dict[str, Any]) -> None:
    app = create_app(FakeBackend(), make_settings())
    assert _app_routes(app) == set(_operations(spec))
    assert all(isinstance(route, APIRoute) for route in app.routes)  # no /docs, /openapi.json


def test_request_examples_validate(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    jsonschema.validate({"Content": b64(b"x" * 1024)}, to_json_schema(spec, schemas["ProvideRequest"]))
    jsonschema.validate({}, to_json_schema(spec, schemas["RetrieveRequest"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({}, to_json_schema(spec, schemas["ProvideRequest"]))


async def _trickle(chunks: int, pause: float):
    """A request body that arrives too slowly (a slow client)."""
    for _ in range(chunks):
        await anyio.sleep(pause)
        yield b" "


TOKEN = "s3cret-token-0123456789"
GUARDED = {"auth_token": TOKEN}
# (method, path as sent, spec path or None for unknown, request kwargs, backend settings[, server settings])
SCENARIOS = [
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"hello world\n")}}, {}),
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"x")}}, {"provide_error": "boom"}),
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"x")}}, {"trace": {"rpcs": 4}}),
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"x")}}, {"raises": RuntimeError("x")}),
    ("POST", "/provide", "/provide", {"content": b"{"}, {}),
    ("POST", "/provide", "/provide", {"json": {"Content": "%%%"}}, {}),
    ("POST", "/provide", "/provide", {"json": {"Content": b64(bytes(5000))}}, {}),
    ("GET", "/provide", "/provide", {}, {}),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"json": {}}, {}),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"content": b""}, {"retrieve_error": "not found"}),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"json": {}}, {"raises": OSError("reset")}),
    ("POST", "/retrieve/nope", "/retrieve/{cid}", {"json": {}}, {}),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"content": b"[]"}, {}),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"content": b" " * 100_000}, {}),
    ("PUT", f"/retrieve/{CID}", "/retrieve/{cid}", {}, {}),
    ("GET", "/readiness", "/readiness", {}, {}),
    ("GET", "/readiness", "/readiness", {}, {"ready": False}),
    ("DELETE", "/readiness", "/readiness", {}, {}),
    ("GET", "/metrics", "/metrics", {}, {}),
    ("POST", "/metrics", "/metrics", {}, {}),
    ("GET", "/unknown", None, {}, {}),
    ("POST", "/provide/", None, {}, {}),
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"x")}}, {}, GUARDED),
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"x")}, "headers": {"authorization": f"Bearer {TOKEN}"}},
     {}, GUARDED),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"json": {}, "headers": {"authorization": "Bearer wrong"}},
     {}, GUARDED),
    ("POST", "/provide", "/provide", {"content": lambda: _trickle(3, 0.2)}, {}, {"body_timeout": 0.1}),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"content": lambda: _trickle(3, 0.2)}, {}, {"body_timeout": 0.1}),
]
SMALL_HEAD = {"headers": {"x-padding": "p" * 2000}}
SCENARIOS += [
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"x")}, **SMALL_HEAD}, {}, {"max_header_bytes": 1024}),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"json": {}, **SMALL_HEAD}, {}, {"max_header_bytes": 1024}),
]
BUSY = {"max_concurrent_operations": 1}  # two requests at once: the second is 429


async def _responses(method: str, path: str, kwargs: dict, backend_settings: dict, server_settings: dict):
    """The response(s) a scenario produces; a BUSY server gets a second request while the first runs."""
    kwargs = {key: value() if callable(value) else value for key, value in kwargs.items()}
    app = create_app(FakeBackend(**backend_settings), make_settings(**server_settings))
    async with client_for(app) as client:
        if server_settings is not BUSY:
            return [await client.request(method, path, **kwargs)]
        answers = []

        async def send():
            answers.append(await client.request(method, path, **kwargs))

        async with anyio.create_task_group() as group:
            group.start_soon(send)
            await anyio.sleep(0.05)
            group.start_soon(send)
        return answers


SCENARIOS += [
    ("POST", "/provide", "/provide", {"json": {"Content": b64(b"x")}}, {"delay": 0.3}, BUSY),
    ("POST", f"/retrieve/{CID}", "/retrieve/{cid}", {"json": {}}, {"delay": 0.3}, BUSY),
]


def _response_spec(spec: dict[str, Any], spec_path: str | None, method: str, status: int) -> dict[str, Any]:
    """The documented response for ``status``: the operation's, or NotFound for unknown paths."""
    if spec_path is None:
        assert status == 404
        return _resolve(spec, spec["components"]["responses"]["NotFound"])
    responses = _operations(spec).get((spec_path, method.lower()))
    if responses is None:  # a known path with another method: any operation there documents 405
        assert status == 405
        responses = next(op for (path, _), op in _operations(spec).items() if path == spec_path)
    responses = responses["responses"]
    assert str(status) in responses, f"{method} {spec_path} answered undocumented {status}"
    return _resolve(spec, responses[str(status)])


@pytest.mark.anyio
async def test_responses_validate_against_the_spec_and_cover_every_status(spec: dict[str, Any]) -> None:
    produced: set[tuple[str, str, str]] = set()
    for method, path, spec_path, kwargs, backend_settings, *server in SCENARIOS:
        for response in await _responses(method, path, kwargs, backend_settings, server[0] if server else {}):
            documented = _response_spec(spec, spec_path, method, response.status_code)
            content = documented["content"]
            media = response.headers["content-type"].split(";")[0]
            assert media in content, f"{method} {path}: {media} not documented"
            schema = to_json_schema(spec, content[media]["schema"])
            body = response.json() if media == "application/json" else response.text
            jsonschema.validate(body, schema)
            for header in documented.get("headers", {}):
                assert header in response.headers, f"{method} {path} {response.status_code}: no {header} header"
            if spec_path is not None and (spec_path, method.lower()) in _operations(spec):
                produced.add((spec_path, method.lower(), str(response.status_code)))

    documented_codes = {
        (path, method, code)
        for (path, method), operation in _operations(spec).items()
        for code in operation["responses"]
    }
    # 404 (unknown paths) and 405 (other methods) never come from the operation itself;
    # the scenarios with spec_path None / another method exercised them above.
    missing = {entry for entry in documented_codes - produced if entry[2] not in ("404", "405")}
    assert not missing, f"documented but never produced: {sorted(missing)}"


@pytest.mark.parametrize("status", [200, 503])
def test_readiness_documents_both_states(spec: dict[str, Any], status: int) -> None:
    assert str(status) in spec["paths"]["/readiness"]["get"]["responses"]
