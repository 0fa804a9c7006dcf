"""The OpenAPI document (api/openapi.json, compiled into the binary and served at
GET /openapi.json) against the server: it is served byte-for-byte as committed,
it is a sound OpenAPI 3.0 document (every operation has responses, every $ref
resolves), it lists exactly the routes the server answers (probed over HTTP in
one direction, read from `fleet-manager --routes` in the other),
the limits it states are the core's, and real responses have the documented shapes.

After editing api/openapi.json, rebuild: cmake --build build --target fleet-manager.
"""
from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest

from harness import REPO, fleet_manager_binary

DOC_PATH = REPO / "api" / "openapi.json"
HTTP_API = REPO / "src" / "http" / "http_api.cpp"
WEB_ROOT = REPO / "examples" / "dashboard"
METHODS = ("get", "post", "put", "patch", "delete", "options", "head", "trace")
ADMIN_TOKEN = "openapi-test-admin-token-0123456789"


def load_doc() -> dict:
    return json.loads(DOC_PATH.read_text())


DOC = load_doc()


# --- helpers -------------------------------------------------------------------------------


def resolve(ref: str, doc: dict = DOC):
    """The object a local $ref ('#/components/schemas/X') points to; KeyError if none."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node, doc: dict = DOC):
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"], doc)
    return node


def walk_refs(node, where="#"):
    """Yield (location, $ref) of every reference in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield where, value
            else:
                yield from walk_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_refs(value, f"{where}/{i}")


def operations(doc: dict = DOC):
    """Yield (path, method, operation) for every documented operation."""
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def template_regex(path: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def is_no_route(response) -> bool:
    """The dispatcher's answer to a path no route matches (404 not_found 'no route ...')."""
    if response.status_code != 404:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return body.get("error") == "not_found" and str(body.get("detail", "")).startswith("no route")


def normalized(path: str) -> str:
    """A path template with its parameter names left out: /hardware/{hardware_id}/block
    -> /hardware/{}/block (the route table has regex groups, not names)."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def server_routes() -> set[tuple[str, str]]:
    """(METHOD, /path/{}) of every route the binary prints with --routes (its one
    route table), plus GET / when the server mounts the web root there."""
    out = subprocess.run([str(fleet_manager_binary()), "--routes"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    routes = set()
    for line in out.splitlines():
        method, path = line.split()[:2]
        routes.add((method, normalized(path)))
    if re.search(r'set_mount_point\(\s*"/"', HTTP_API.read_text()):
        routes.add(("GET", "/"))
    assert len(routes) >= 10, f"fleet-manager --routes printed too few routes: {out!r}"
    return routes


class SchemaError(AssertionError):
    pass


RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict,
         "array": list}


def check(value, schema, where="$", strict=True):
    """A small validator for the OpenAPI 3.0 schema subset the document uses. With
    strict, an object with declared `properties` must not carry undeclared keys
    (unless additionalProperties allows them): a field the server adds must be
    documented."""
    schema = deref(schema)
    if "allOf" in schema:  # merged: the parts' properties and required fields together
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        merged.setdefault("properties", {})
        merged.setdefault("required", [])
        for part in map(deref, schema["allOf"]):
            merged["properties"] = {**merged["properties"], **part.get("properties", {})}
            merged["required"] = merged["required"] + part.get("required", [])
            for key in ("type", "nullable", "additionalProperties"):
                if key in part:
                    merged[key] = part[key]
        schema = merged
    if value is None:
        if schema.get("nullable") or not schema:
            return
        raise SchemaError(f"{where}: null but the schema is not nullable")
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                check(value, option, where, strict=False)
                break
            except SchemaError as exc:
                errors.append(str(exc))
        else:
            raise SchemaError(f"{where}: matches no anyOf option: {errors}")
    kind = schema.get("type")
    if kind:
        expected = TYPES[kind]
        if isinstance(value, bool) and kind != "boolean" or not isinstance(value, expected):
            raise SchemaError(f"{where}: {value!r} is not of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(f"{where}: longer than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise SchemaError(f"{where}: shorter than {schema['minLength']}")
        if schema.get("format") == "uuid":
            try:
                uuid.UUID(value)
            except ValueError:
                raise SchemaError(f"{where}: {value!r} is not a UUID") from None
        if schema.get("format") == "date-time" and not RFC3339_MS.match(value):
            raise SchemaError(f"{where}: {value!r} is not RFC 3339 UTC with milliseconds")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaError(f"{where}: required field {name!r} is missing")
        for name, item in value.items():
            if name in properties:
                check(item, properties[name], f"{where}.{name}", strict)
            elif schema.get("additionalProperties") is False or (
                    strict and properties and schema.get("additionalProperties") is not True):
                raise SchemaError(f"{where}: field {name!r} is not documented")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]", strict)


def documented_response(path: str, method: str, status: int) -> dict:
    op = DOC["paths"][path][method]
    assert str(status) in op["responses"], \
        f"{method.upper()} {path} answered {status}, which the document does not list ({sorted(op['responses'])})"
    return deref(op["responses"][str(status)])


def check_response(response, path: str, method: str):
    """The response's status is documented for the operation and its JSON body
    matches the documented schema."""
    documented = documented_response(path, method, response.status_code)
    content = documented.get("content")
    if not content:
        assert response.content == b"", f"{method.upper()} {path}: documented without a body, got {response.text!r}"
        return None
    media = response.headers.get("Content-Type", "").split(";")[0].strip()
    assert media in content, f"{method.upper()} {path} {response.status_code}: Content-Type {media!r}, " \
                             f"documented {sorted(content)}"
    if media == "application/json":
        body = response.json()
        check(body, content[media]["schema"], f"{method.upper()} {path} {response.status_code}")
        return body
    return response.text


def concrete_path(path: str, device: str, hardware_id: str) -> str:
    return path.replace("{id}", device).replace("{hardware_id}", hardware_id)


# Documented answers other than a success that the probe expects from a plain
# service (no MAESTRA_SECURE): credentials exist only in secure mode.
EXPECTED_PROBE_ERRORS = {("post", "/devices/{id}/credentials"): 404, ("post", "/dashboard/credentials"): 404}


def register(service, **fields):
    body = {"name": "OpenAPI probe", "device_type": "esp32", "hardware_id": f"openapi-{uuid.uuid4().hex}",
            **fields}
    return service.post("/devices/register", json=body)


@pytest.fixture
def service(start_service):
    return start_service(MAESTRA_WEB_ROOT=str(WEB_ROOT))


# --- the document itself ---------------------------------------------------------------------


def test_document_is_sound_openapi_3():
    """Test whether api/openapi.json is an OpenAPI 3.0 document whose every path has
    operations with responses, whose every $ref resolves and whose path parameters
    are declared."""
    assert re.match(r"^3\.0\.\d+$", DOC["openapi"]), DOC["openapi"]
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert DOC["paths"], "no paths"
    for location, ref in walk_refs(DOC):
        try:
            resolve(ref)
        except (KeyError, TypeError):
            pytest.fail(f"{location}: $ref {ref!r} does not resolve")
    schemes = DOC.get("components", {}).get("securitySchemes", {})
    operation_ids = set()
    for path, item in DOC["paths"].items():
        assert path.startswith("/"), path
        ops = [m for m in METHODS if m in item]
        assert ops, f"{path}: no operations"
        templated = set(re.findall(r"\{([^}]+)\}", path))
        for method in ops:
            op = item[method]
            assert op.get("operationId") and op["operationId"] not in operation_ids, (path, method)
            operation_ids.add(op["operationId"])
            assert op.get("responses"), f"{method.upper()} {path}: no responses"
            for code, response in op["responses"].items():
                assert re.match(r"^([1-5][0-9][0-9]|default)$", code), (path, method, code)
                assert deref(response).get("description"), (path, method, code)
            params = [deref(p) for p in item.get("parameters", []) + op.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == templated, f"{method.upper()} {path}: path parameters {declared} != {templated}"
            assert all(p.get("required") for p in params if p["in"] == "path")
            for requirement in op.get("security", DOC.get("security", [])):
                for name in requirement:
                    assert name in schemes, f"{method.upper()} {path}: unknown security scheme {name}"
    for name in ["DeviceRecord", "Registration", "Heartbeat", "HeartbeatReply", "DevicePatch", "Error",
                 "HistoryEntry", "Health"]:
        schema = DOC["components"]["schemas"][name]
        for field in schema.get("required", []):
            assert field in schema["properties"], f"{name}: required {field!r} is not a property"
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert "MAESTRA_ADMIN_TOKEN" in schemes["bearerAuth"]["description"]


def test_documented_limits_are_the_cores():
    """Test whether the field limits the document states are the constants of the
    core (src/core/requests.hpp, src/core/validation.hpp)."""
    requests_hpp = (REPO / "src" / "core" / "requests.hpp").read_text()
    validation_hpp = (REPO / "src" / "core" / "validation.hpp").read_text()

    def constant(text, name):
        match = re.search(rf"{name}\s*(?:=\s*|\{{)([0-9*\s]+)", text)
        assert match, f"constant {name} not found"
        return eval(match.group(1).replace(" ", ""), {})  # noqa: S307 - digits and '*' only

    schemas = DOC["components"]["schemas"]
    limits = {"name": constant(requests_hpp, "max_name_chars"),
              "device_type": constant(requests_hpp, "max_device_type_chars"),
              "hardware_id": constant(requests_hpp, "max_hardware_id_chars"),
              "firmware_version": constant(requests_hpp, "max_firmware_chars")}
    for field, limit in limits.items():
        assert schemas["Registration"]["properties"][field]["maxLength"] == limit, field
    assert schemas["DevicePatch"]["properties"]["name"]["maxLength"] == limits["name"]
    assert schemas["DevicePatch"]["properties"]["firmware_version"]["maxLength"] == limits["firmware_version"]
    assert schemas["Heartbeat"]["properties"]["hardware_id"]["maxLength"] == limits["hardware_id"]
    low = constant(requests_hpp, "min_offline_after")
    high = constant(requests_hpp, "max_offline_after")
    for name in ["Registration", "DevicePatch", "DeviceRecord"]:
        offline_after = schemas[name]["properties"]["offline_after"]
        assert (offline_after["minimum"], offline_after["maximum"]) == (low, high), name
    body_limit = constant(validation_hpp, "max_body_bytes")
    assert str(body_limit) in DOC["info"]["description"]
    assert str(body_limit) in DOC["components"]["responses"]["PayloadTooLarge"]["description"]


# --- the server and the document ----------------------------------------------------------------


def test_served_document_is_the_repository_file(service):
    """Test whether GET /openapi.json answers the committed api/openapi.json (a stale
    binary needs a rebuild)."""
    r = service.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == load_doc(), "the binary serves another document: rebuild fleet-manager"


def test_every_served_route_is_documented():
    """Test whether each route of the server's route table (fleet-manager --routes)
    and the dashboard at GET / is an operation of the document, and the document
    has no path the table does not have."""
    routes = server_routes()
    documented = {(method.upper(), normalized(path)) for path, method, _ in operations()}
    missing = routes - documented
    assert not missing, f"routes the server answers but the document lacks: {sorted(missing)}"
    extra = documented - routes
    assert not extra, f"documented operations with no route in fleet-manager --routes: {sorted(extra)}"


def test_every_documented_route_is_served(service):
    """Test whether the server answers each documented path and method (with a real
    device id for {id}) with one of the documented statuses, never with the
    dispatcher's 'no route' 404 or 405; and answers methods the document does not
    list for a path with 405 or 404."""
    device = register(service).json()["id"]
    doomed = register(service).json()["id"]  # deleted by DELETE /devices/{id}
    hardware_id = f"openapi-blocked-{uuid.uuid4().hex[:8]}"  # blocked by PUT, unblocked by DELETE
    bodies = {
        ("post", "/devices/register"): lambda: {"name": "probe", "device_type": "esp32",
                                                "hardware_id": f"openapi-{uuid.uuid4().hex}"},
        ("post", "/devices/heartbeat"): lambda: {"device_id": device},
        ("patch", "/devices/{id}"): lambda: {"firmware_version": "2.0.0"},
        ("put", "/hardware/{hardware_id}/block"): lambda: {"reason": "openapi probe"},
    }
    ops = sorted(operations(), key=lambda o: o[1] == "delete")  # delete last
    served = []
    for path, method, _ in ops:
        concrete = concrete_path(path, doomed if method == "delete" else device, hardware_id)
        body = bodies.get((method, path))
        r = service.request(method.upper(), concrete, json=body() if body else None)
        assert not is_no_route(r) and r.status_code != 405, \
            f"{method.upper()} {path} is documented but not served: {r.status_code} {r.text[:200]}"
        expected = EXPECTED_PROBE_ERRORS.get((method, path))
        assert r.status_code < 400 or r.status_code == expected, \
            f"{method.upper()} {concrete}: {r.status_code} {r.text[:200]}"
        check_response(r, path, method)
        served.append((method, path))
    assert len(served) == len(list(operations()))

    # Conversely, over HTTP: a method the document does not list for a path is not
    # answered there (unless another documented template with that method matches).
    templates = [(template_regex(p), m) for p, m, _ in operations()]
    for path, item in DOC["paths"].items():
        concrete = concrete_path(path, device, hardware_id)
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item or any(m == method and rx.match(concrete) for rx, m in templates):
                continue
            # No body on GET/DELETE: cpp-httplib 0.11 does not read one there, and
            # the unread bytes would spoil the next request on the connection.
            r = service.request(method.upper(), concrete, json={} if method in ("post", "put", "patch") else None)
            assert r.status_code == 405 or is_no_route(r), \
                f"{method.upper()} {path} is answered ({r.status_code} {r.text[:120]}) but not documented"
            if r.status_code == 405:
                allowed = {m.strip().lower() for m in r.headers.get("Allow", "").split(",")}
                documented = {m for m in METHODS if m in item} | {
                    m for rx, m in templates if rx.match(concrete)}
                assert allowed <= documented, f"{path}: Allow {allowed} lists undocumented methods"


def test_real_responses_have_the_documented_shapes(service):
    """Test whether the bodies of real answers, success and error, match the
    documented schemas (required fields present, types, enums, timestamps, no
    undocumented fields)."""
    r = register(service, firmware_version="1.0.0", ip_address="192.168.1.100",
                 location={"room": "Lab"}, metadata={"model": "Uno R3"})
    assert r.status_code == 201
    record = check_response(r, "/devices/register", "post")
    for field in DOC["components"]["schemas"]["DeviceRecord"]["required"]:
        assert field in record, field
    device = record["id"]

    conflict = service.post("/devices/register", json={"name": "again", "device_type": "esp32",
                                                        "hardware_id": record["hardware_id"]})
    assert conflict.status_code == 409
    assert check_response(conflict, "/devices/register", "post")["id"] == device

    invalid = register(service, name="")
    assert invalid.status_code == 422
    assert check_response(invalid, "/devices/register", "post")["field"] == "name"

    malformed = service.post("/devices/register", data="{not json")
    assert malformed.status_code == 400
    check_response(malformed, "/devices/register", "post")

    too_large = service.post("/devices/register", data="{" + " " * (64 * 1024 + 10) + "}")
    assert too_large.status_code == 413
    check_response(too_large, "/devices/register", "post")

    beat = service.post("/devices/heartbeat", json={"device_id": device})
    assert beat.status_code == 200
    reply = check_response(beat, "/devices/heartbeat", "post")
    assert reply["device_id"] == device
    beat = service.post("/devices/heartbeat", json={"device_id": device})  # too soon: a warning
    assert "warning" in check_response(beat, "/devices/heartbeat", "post")

    unknown = service.post("/devices/heartbeat", json={"device_id": str(uuid.uuid4())})
    assert unknown.status_code == 404
    check_response(unknown, "/devices/heartbeat", "post")

    listed = service.get("/devices", params={"status": "online", "limit": 10, "offset": 0})
    assert any(d["id"] == device for d in check_response(listed, "/devices", "get"))
    bad_filter = service.get("/devices", params={"status": "sleeping"})
    assert bad_filter.status_code == 422
    check_response(bad_filter, "/devices", "get")

    check_response(service.get(f"/devices/{device}"), "/devices/{id}", "get")
    bad_id = service.get("/devices/not-a-uuid")
    assert bad_id.status_code == 400
    assert check_response(bad_id, "/devices/{id}", "get")["field"] == "id"
    missing = service.get(f"/devices/{uuid.uuid4()}")
    assert missing.status_code == 404
    check_response(missing, "/devices/{id}", "get")

    patched = service.patch(f"/devices/{device}", json={"status": "maintenance", "location": None})
    assert check_response(patched, "/devices/{id}", "patch")["status"] == "maintenance"
    frozen = service.patch(f"/devices/{device}", json={"hardware_id": "x"})
    assert frozen.status_code == 422
    check_response(frozen, "/devices/{id}", "patch")

    history = check_response(service.get(f"/devices/{device}/history", params={"limit": 5}),
                             "/devices/{id}/history", "get")
    assert [e["to"] for e in history][:2] == ["maintenance", "online"]
    assert history[-1]["from"] is None and history[-1]["reason"] == "registered"

    health = check_response(service.get("/health"), "/health", "get")
    assert health["database"] == "ok"
    metrics = service.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    check_response(metrics, "/metrics", "get")
    page = service.get("/")
    check_response(page, "/", "get")
    assert "<html" in page.text.lower()

    deleted = service.delete(f"/devices/{device}")
    assert deleted.status_code == 204
    check_response(deleted, "/devices/{id}", "delete")
    gone = service.delete(f"/devices/{device}")
    assert gone.status_code == 404
    check_response(gone, "/devices/{id}", "delete")


def test_documented_length_limits_are_enforced(service):
    """Test whether a registration at each documented maxLength is accepted and one
    character more is refused with 422 naming the field."""
    props = DOC["components"]["schemas"]["Registration"]["properties"]
    for field in ["name", "device_type", "hardware_id", "firmware_version"]:
        limit = props[field]["maxLength"]
        at_limit = "é" * limit  # code points, not bytes
        r = register(service, **{field: at_limit})
        assert r.status_code == 201, (field, r.text)
        over = register(service, **{field: "x" * (limit + 1)})
        assert over.status_code == 422 and over.json()["field"] == field, (field, over.text)
    offline_after = props["offline_after"]
    assert register(service, offline_after=offline_after["maximum"]).status_code == 201
    for value in (offline_after["minimum"] - 1, offline_after["maximum"] + 1):
        r = register(service, offline_after=value)
        assert r.status_code == 422 and r.json()["field"] == "offline_after", r.text


def test_bearer_auth_is_documented_where_the_server_requires_it(start_service):
    """Test whether, with MAESTRA_ADMIN_TOKEN set, exactly the operations that list
    bearerAuth answer 401 without a token, and accept the token."""
    # Two refused tokens per operation, more than the default limit a minute.
    service = start_service(MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN, MAESTRA_WEB_ROOT=str(WEB_ROOT), MAESTRA_AUTH_FAILURE_LIMIT=0)
    device = register(service).json()["id"]
    hardware_id = f"openapi-auth-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path, method, op in sorted(operations(), key=lambda o: o[1] == "delete"):
        security = op.get("security", DOC.get("security", []))
        needs_token = any("bearerAuth" in requirement for requirement in security)
        concrete = concrete_path(path, device, hardware_id)
        body = {"device_id": device} if path == "/devices/heartbeat" else (
            {"name": "p", "device_type": "esp32", "hardware_id": f"openapi-{uuid.uuid4().hex}"}
            if path == "/devices/register" else {} if method == "patch" else None)
        bare = service.request(method.upper(), concrete, json=body)
        if needs_token:
            assert {} in security, f"{method.upper()} {path}: the token is optional (only with MAESTRA_ADMIN_TOKEN)"
            assert bare.status_code == 401, f"{method.upper()} {path}: {bare.status_code} without a token"
            check_response(bare, path, method)
            wrong = service.request(method.upper(), concrete, json=body,
                                    headers={"Authorization": "Bearer wrong-token-wrong-token"})
            assert wrong.status_code == 403
            check_response(wrong, path, method)
            good = service.request(method.upper(), concrete, json=body, headers=auth)
            assert good.status_code not in (401, 403), f"{method.upper()} {path}: {good.status_code} {good.text[:200]}"
            check_response(good, path, method)
        else:
            assert bare.status_code not in (401, 403), \
                f"{method.upper()} {path} requires a token but does not document bearerAuth"
