"""tests/integration/test_openapi.py — owns the checks of the API document,
api/openapi.json (compiled into the binary, served at GET /openapi.json), against
real validators and the running server:

- the document is valid OpenAPI 3.0 by the official OpenAPI 3.0 JSON Schema
  (Debian package openapi-specification), checked with jsonschema (Debian
  python3-jsonschema), plus the rules that schema cannot express (every $ref
  resolves, path parameters declared, operationIds unique); every schema in it is
  a valid JSON Schema and every example matches its schema;
- real responses of the running service (status, Content-Type, headers, body),
  success and every error that can be provoked, are valid against the documented
  response schemas, by jsonschema, for every documented operation;
- the routes it lists are exactly those of `fleet-manager --routes` and those the
  server answers;
- the limits it states are the running binary's: `fleet-manager --help`, and each
  documented maxLength, minimum, maximum, body size and nesting depth provoked over
  HTTP at the limit and one past it.

OpenAPI 3.0 Schema Objects are not JSON Schema: they are converted (nullable,
boolean exclusiveMinimum/Maximum, siblings of $ref, OpenAPI-only keywords) into
JSON Schema 2020-12 in a copy of the whole document, which is the root every $ref
resolves in. Responses are checked strictly: an object may not carry a field its
schema does not declare (unless additionalProperties allows it), so a field the
server adds must be documented.

After editing api/openapi.json, rebuild: cmake --build build --target fleet-manager.
"""
from __future__ import annotations

import copy
import datetime
import json
import re
import subprocess
import uuid
from pathlib import Path

import jsonschema
import pytest
import requests
from jsonschema import Draft4Validator, Draft202012Validator, FormatChecker

from harness import REPO, fleet_manager_binary, wait_until

try:  # jsonschema >= 4.18 resolves references with `referencing`; Debian 12's 4.10 with RefResolver.
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError:  # pragma: no cover - depends on the installed jsonschema
    Registry = None

DOC_PATH = REPO / "api" / "openapi.json"
# The official JSON Schema of OpenAPI 3.0.x, shipped by Debian's openapi-specification.
OAS30_SCHEMA = Path("/usr/share/openapi-specification/schemas/v3.0/schema.json")
WEB_ROOT = REPO / "examples" / "dashboard"
METHODS = ("get", "post", "put", "patch", "delete", "options", "head", "trace")
ADMIN_TOKEN = "openapi-test-admin-token-0123456789"
# The URI the converted document is known by while resolving references. Nothing is
# fetched: the document is in the resolver's store, and remote references are refused.
ROOT_URI = "https://maestra.invalid/openapi.json"


def load_doc() -> dict:
    return json.loads(DOC_PATH.read_text())


DOC = load_doc()


# --- OpenAPI 3.0 schemas as JSON Schema 2020-12 ------------------------------------------------


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class Converter:
    """Converts the document's Schema Objects into JSON Schema 2020-12, in a copy of
    the whole document, and records every `example` with the pointer of the schema
    it must match."""

    def __init__(self, doc: dict):
        self.examples: list[tuple[str, object]] = []  # (pointer of a schema, example)
        self.root = self.walk(doc, "")
        # A component used as a member of allOf/anyOf/oneOf must stay open (its parent
        # decides which fields are allowed), so each component has an open twin.
        self.root["x-open-schemas"] = {
            name: self.schema(schema, f"/x-open-schemas/{escape(name)}", strict=False, record=False)
            for name, schema in doc.get("components", {}).get("schemas", {}).items()}

    def walk(self, node, where: str):
        """Copies the document, converting the Schema Objects it finds (components,
        and the `schema` of parameters, media types and headers)."""
        if isinstance(node, list):
            return [self.walk(item, f"{where}/{i}") for i, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            here = f"{where}/{escape(key)}"
            if key in ("example", "examples"):
                out[key] = copy.deepcopy(value)
            elif key == "schema" and isinstance(value, dict):
                out[key] = self.schema(value, here)
                if "example" in node:  # a media type's or a parameter's example
                    self.examples.append((here, node["example"]))
            elif where == "/components" and key == "schemas":
                out[key] = {name: self.schema(s, f"{here}/{escape(name)}") for name, s in value.items()}
            else:
                out[key] = self.walk(value, here)
        return out

    def schema(self, schema: dict, where: str, strict: bool = True, record: bool = True) -> dict:
        """One Schema Object as JSON Schema 2020-12. strict: an object schema that
        declares fields and says nothing of others refuses undeclared fields."""
        if "$ref" in schema:  # OpenAPI 3.0: the siblings of $ref are ignored
            ref = schema["$ref"]
            if not strict:
                ref = ref.replace("#/components/schemas/", "#/x-open-schemas/", 1)
            return {"$ref": ref}
        assert "discriminator" not in schema, f"{where}: discriminator is not converted; check it by hand"
        out = {}
        for key, value in schema.items():
            here = f"{where}/{escape(key)}"
            if key == "properties":
                out[key] = {name: self.schema(s, f"{here}/{escape(name)}", record=record)
                            for name, s in value.items()}
            elif key in ("items", "not"):
                out[key] = self.schema(value, here, record=record)
            elif key == "additionalProperties":
                out[key] = value if isinstance(value, bool) else self.schema(value, here, record=record)
            elif key in ("allOf", "anyOf", "oneOf"):
                out[key] = [self.schema(s, f"{here}/{i}", strict=False, record=record) for i, s in enumerate(value)]
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # booleans in 3.0, numbers in 2020-12
                if value is True:
                    out[key] = schema["minimum" if key == "exclusiveMinimum" else "maximum"]
            elif key in ("nullable", "example", "externalDocs", "xml"):  # OpenAPI-only
                if key == "example" and record:
                    self.examples.append((where, value))
            else:
                out[key] = copy.deepcopy(value)
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if schema.get(flag) is True:
                out.pop(bound, None)
        # OpenAPI 3.0.3: nullable adds "null" to the type given beside it (and only
        # there); other assertions such as enum still apply to null.
        if schema.get("nullable") is True and "type" in schema:
            out["type"] = [schema["type"], "null"]
        if strict and "additionalProperties" not in schema and any(
                k in schema for k in ("properties", "allOf", "anyOf", "oneOf")):
            out["unevaluatedProperties"] = False
        return out


RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value) -> bool:
    """The document's timestamps: RFC 3339 UTC with milliseconds, a real instant."""
    if not isinstance(value, str):
        return True
    if not RFC3339_MS.match(value):
        return False
    datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    return True


@FORMATS.checks("uuid", raises=ValueError)
def is_uuid(value) -> bool:
    return not isinstance(value, str) or str(uuid.UUID(value)) == value


def refuse_remote(uri):
    raise AssertionError(f"a $ref points outside the document: {uri}")


CONVERTED = Converter(DOC)
ROOT = CONVERTED.root
if Registry is not None:
    REGISTRY = Registry(retrieve=refuse_remote).with_resource(
        ROOT_URI, Resource.from_contents(ROOT, default_specification=DRAFT202012))


def validator(pointer: str):
    """A JSON Schema 2020-12 validator for the schema at `pointer` in the converted
    document; its $refs resolve in the whole document."""
    schema = {"$ref": f"{ROOT_URI}#{pointer}"}
    if Registry is not None:
        return Draft202012Validator(schema, registry=REGISTRY, format_checker=FORMATS)
    resolver = jsonschema.RefResolver(ROOT_URI, ROOT, handlers={"http": refuse_remote, "https": refuse_remote})
    return Draft202012Validator(schema, resolver=resolver, format_checker=FORMATS)


def resolve(ref: str):
    """What a local $ref ('#/components/...') points to, resolved by jsonschema's
    resolver in the converted document; raises when it does not resolve."""
    url = ROOT_URI + ref
    if Registry is not None:
        return REGISTRY.resolver().lookup(url).contents
    return jsonschema.RefResolver(ROOT_URI, ROOT, handlers={"http": refuse_remote,
                                                            "https": refuse_remote}).resolve(url)[1]


def schema_errors(value, pointer: str) -> list[str]:
    """jsonschema's errors for `value`, the root causes first (a field that fails
    its schema also counts as unevaluated for its parent)."""
    errors = sorted(validator(pointer).iter_errors(value),
                    key=lambda e: (e.validator == "unevaluatedProperties", list(map(str, e.path))))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in errors]


def assert_valid(value, pointer: str, what: str):
    errors = schema_errors(value, pointer)
    assert not errors, f"{what} does not match the document ({pointer}):\n  " + "\n  ".join(errors) + \
                       f"\nvalue: {json.dumps(value)[:600]}"


# --- the document's operations and the server's routes -------------------------------------------


def walk_refs(node, where="#"):
    """Yield (location, $ref) of every reference in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            elif key not in ("example", "examples"):
                yield from walk_refs(value, f"{where}/{escape(key)}")
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
    -> /hardware/{}/block."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def binary_output(*args: str) -> str:
    return subprocess.run([str(fleet_manager_binary()), *args], capture_output=True, text=True,
                          timeout=10, check=True).stdout


def printed_routes() -> set[tuple[str, str]]:
    """(METHOD, /path/{}) of every route the binary prints with --routes (its one route table)."""
    out = binary_output("--routes")
    routes = set()
    for line in out.splitlines():
        method, path = line.split()[:2]
        routes.add((method, normalized(path)))
    assert len(routes) >= 10, f"fleet-manager --routes printed too few routes: {out!r}"
    return routes


class Responses:
    """Checks real responses against the document and remembers which
    (METHOD, path template, status) it checked."""

    def __init__(self):
        self.checked: set[tuple[str, str, int]] = set()

    def check(self, response, path: str, method: str, status: int | None = None):
        """The response's status is documented for the operation (and is `status`
        when given); its Content-Type is documented and its body is valid against the
        documented schema, its documented headers against theirs; a JSON body the
        server accepted (2xx) is valid against the documented request body. Returns
        the response body."""
        what = f"{method.upper()} {path} -> {response.status_code}"
        if status is not None:
            assert response.status_code == status, f"{what} (expected {status}): {response.text[:300]}"
        if response.status_code < 300 and response.request.body:
            self.check_request(response.request, path, method, what)
        responses = DOC["paths"][path][method]["responses"]
        code = str(response.status_code)
        assert code in responses or "default" in responses, \
            f"{what}, which the document does not list ({sorted(responses)}): {response.text[:300]}"
        pointer = f"/paths/{escape(path)}/{method}/responses/{code if code in responses else 'default'}"
        documented = resolve("#" + pointer)
        if "$ref" in documented:
            pointer = documented["$ref"][1:]
            documented = resolve(documented["$ref"])
        for name, header in documented.get("headers", {}).items():
            if name in response.headers and "schema" in header:
                raw = response.headers[name]
                value = int(raw) if "integer" in types(header["schema"]) and re.fullmatch(r"-?\d+", raw) else raw
                assert_valid(value, f"{pointer}/headers/{escape(name)}/schema", f"{what} header {name}")
        self.checked.add((method.upper(), path, response.status_code))
        content = documented.get("content")
        if not content:
            assert response.content == b"", f"{what}: documented without a body, got {response.text[:200]!r}"
            return None
        media = response.headers.get("Content-Type", "").split(";")[0].strip()
        assert media in content, f"{what}: Content-Type {media!r}, documented {sorted(content)}"
        body = response.json() if media == "application/json" else response.text
        if "schema" in content[media]:
            assert_valid(body, f"{pointer}/content/{escape(media)}/schema", what)
        return body

    @staticmethod
    def check_request(request, path: str, method: str, what: str):
        """A JSON body the server accepted is valid against the documented request body."""
        pointer = f"/paths/{escape(path)}/{method}/requestBody"
        documented = DOC["paths"][path][method].get("requestBody")
        assert documented, f"{what}: the server accepted a body, the document lists none"
        if "$ref" in documented:
            pointer = documented["$ref"][1:]
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        assert_valid(json.loads(body), f"{pointer}/content/application~1json/schema", f"{what}: the accepted request")

    def operations_checked(self) -> set[tuple[str, str]]:
        return {(method, path) for method, path, _ in self.checked}


def concrete_path(path: str, device: str, hardware_id: str, command: str | None = None) -> str:
    return path.replace("{id}", device).replace("{hardware_id}", hardware_id).replace(
        "{command_id}", command or str(uuid.uuid4()))


# Documented answers other than a success that the probe expects from a plain
# service (no MAESTRA_SECURE): credentials exist only in secure mode.
EXPECTED_PROBE_ERRORS = {("post", "/devices/{id}/credentials"): 404, ("post", "/dashboard/credentials"): 404}


def registration(**fields) -> dict:
    return {"name": "OpenAPI probe", "device_type": "esp32", "hardware_id": f"openapi-{uuid.uuid4().hex}", **fields}


def register(service, headers=None, **fields):
    return service.post("/devices/register", json=registration(**fields), headers=headers)


@pytest.fixture
def service(start_service):
    return start_service(MAESTRA_WEB_ROOT=str(WEB_ROOT))


# --- the document itself ---------------------------------------------------------------------


def test_document_is_valid_openapi_3_0_by_the_official_schema():
    """Test whether api/openapi.json is valid against the official OpenAPI 3.0 JSON
    Schema (Debian package openapi-specification) with jsonschema."""
    assert OAS30_SCHEMA.is_file(), \
        f"{OAS30_SCHEMA} is missing: install the Debian package openapi-specification (scripts/lib.sh lists it)"
    official = json.loads(OAS30_SCHEMA.read_text())
    assert official["id"].startswith("https://spec.openapis.org/oas/3.0/schema/"), official["id"]
    Draft4Validator.check_schema(official)
    errors = sorted(Draft4Validator(official).iter_errors(DOC), key=lambda e: list(map(str, e.absolute_path)))
    assert not errors, "api/openapi.json is not valid OpenAPI 3.0:\n  " + "\n  ".join(
        f"#/{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors)


def test_document_keeps_the_rules_the_official_schema_cannot_express():
    """Test whether every $ref resolves (with jsonschema's resolver), every path's
    template parameters are declared and required, operationIds are unique, the
    security schemes named exist, and the admin token is documented as bearerAuth."""
    for location, ref in walk_refs(DOC):
        assert ref.startswith("#/"), f"{location}: only local references are used: {ref}"
        try:
            resolve(ref)
        except Exception as exc:  # noqa: BLE001 - the resolver's own error types differ by version
            pytest.fail(f"{location}: $ref {ref!r} does not resolve: {exc}")
    schemes = DOC.get("components", {}).get("securitySchemes", {})
    operation_ids = set()
    for path, method, op in operations():
        assert op["operationId"] not in operation_ids, f"{method.upper()} {path}: operationId used twice"
        operation_ids.add(op["operationId"])
        item = DOC["paths"][path]
        params = [resolve(p["$ref"]) if "$ref" in p else p for p in item.get("parameters", []) + op.get("parameters", [])]
        declared = {p["name"] for p in params if p["in"] == "path"}
        templated = set(re.findall(r"\{([^}]+)\}", path))
        assert declared == templated, f"{method.upper()} {path}: path parameters {declared} != {templated}"
        for requirement in op.get("security", DOC.get("security", [])):
            for name in requirement:
                assert name in schemes, f"{method.upper()} {path}: unknown security scheme {name}"
    assert schemes["bearerAuth"]["type"] == "http" and schemes["bearerAuth"]["scheme"] == "bearer"
    assert "MAESTRA_ADMIN_TOKEN" in schemes["bearerAuth"]["description"]


def test_every_schema_is_valid_json_schema_and_every_example_matches_it():
    """Test whether each converted schema of the document is a valid JSON Schema
    2020-12 (jsonschema's metaschema check) and each example in the document (media
    types, parameters, schemas) is valid against its schema."""
    for schema in ROOT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert len(CONVERTED.examples) >= 20, f"too few examples found: {len(CONVERTED.examples)}"
    failures = []
    for pointer, example in CONVERTED.examples:
        failures += [f"{pointer}: {e}" for e in schema_errors(example, pointer)]
    assert not failures, "examples that do not match their schema:\n  " + "\n  ".join(failures)


def test_documented_limits_are_the_binarys():
    """Test whether the offline_after range the document states is the one the
    binary prints in --help."""
    help_text = binary_output("--help")
    match = re.search(r"--offline-after .*\n.*\((\d+)-(\d+)\)", help_text)
    assert match, f"fleet-manager --help states no offline-after range:\n{help_text}"
    low, high = int(match.group(1)), int(match.group(2))
    schemas = DOC["components"]["schemas"]
    for name in ["Registration", "DevicePatch", "DeviceRecord"]:
        offline_after = schemas[name]["properties"]["offline_after"]
        assert (offline_after["minimum"], offline_after["maximum"]) == (low, high), name


# --- the server and the document ----------------------------------------------------------------


def test_served_document_is_the_repository_file(service):
    """Test whether GET /openapi.json answers the committed api/openapi.json (a stale
    binary needs a rebuild)."""
    r = service.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == load_doc(), "the binary serves another document: rebuild fleet-manager"


def test_every_served_route_is_documented(service):
    """Test whether each route of the server's route table (fleet-manager --routes),
    and the dashboard the running server serves at GET /, is an operation of the
    document, and the document has no operation the server lacks."""
    routes = printed_routes()
    page = service.get("/")
    if page.status_code == 200 and page.headers.get("Content-Type", "").startswith("text/html"):
        routes.add(("GET", "/"))
    documented = {(method.upper(), normalized(path)) for path, method, _ in operations()}
    missing = routes - documented
    assert not missing, f"routes the server answers but the document lacks: {sorted(missing)}"
    extra = documented - routes
    assert not extra, f"documented operations with no route in fleet-manager --routes: {sorted(extra)}"


def test_every_documented_route_is_served(service):
    """Test whether the server answers each documented path and method (with a real
    device id for {id}) with a documented status and body, never with the dispatcher's
    'no route' 404 or 405; and answers methods the document does not list for a path
    with 405 (its Allow header listing only documented methods) or 404."""
    responses = Responses()
    device = register(service).json()["id"]
    doomed = register(service).json()["id"]  # deleted by DELETE /devices/{id}
    hardware_id = f"openapi-blocked-{uuid.uuid4().hex[:8]}"  # blocked by PUT, unblocked by DELETE
    command = service.post(f"/devices/{device}/commands", json={"name": "openapi.probe"}).json()["id"]  # canceled by DELETE
    bodies = {
        ("post", "/devices/{id}/commands"): lambda: {"name": "openapi.probe"},
        ("post", "/commands"): lambda: {"name": "openapi.probe", "device_ids": [device]},
        ("post", "/devices/{id}/commands/{command_id}/reply"): lambda: {"state": "delivered"},
        ("post", "/devices/register"): registration,
        ("post", "/devices/heartbeat"): lambda: {"device_id": device},
        ("patch", "/devices/{id}"): lambda: {"firmware_version": "2.0.0"},
        ("put", "/hardware/{hardware_id}/block"): lambda: {"reason": "openapi probe"},
        ("post", "/metrics"): lambda: {"device_id": device, "metric_name": "t", "metric_value": 1},
        ("post", "/metrics/batch"): lambda: [{"device_id": device, "metric_name": "t", "metric_value": 1}],
        ("post", "/events"): lambda: {"device_id": device, "event_type": "boot"},
        ("post", "/events/batch"): lambda: [{"device_id": device, "event_type": "boot"}],
    }
    ops = sorted(operations(), key=lambda o: o[1] == "delete")  # delete last
    for path, method, _ in ops:
        concrete = concrete_path(path, doomed if method == "delete" else device, hardware_id, command)
        body = bodies.get((method, path))
        r = service.request(method.upper(), concrete, json=body() if body else None)
        assert not is_no_route(r) and r.status_code != 405, \
            f"{method.upper()} {path} is documented but not served: {r.status_code} {r.text[:200]}"
        expected = EXPECTED_PROBE_ERRORS.get((method, path))
        assert r.status_code < 400 or r.status_code == expected, \
            f"{method.upper()} {concrete}: {r.status_code} {r.text[:200]}"
        responses.check(r, path, method)
    assert responses.operations_checked() == {(m.upper(), p) for p, m, _ in operations()}

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


def test_real_responses_match_the_documented_schemas(service):
    """Test whether real answers of every documented operation, success and each
    error a plain service can be made to give (400, 403, 404, 409, 413, 422), are
    valid against the documented response schemas."""
    responses = Responses()
    check = responses.check
    r = register(service, firmware_version="1.0.0", ip_address="192.168.1.100",
                 location={"room": "Lab"}, metadata={"model": "Uno R3"}, offline_after=120)
    record = check(r, "/devices/register", "post", 201)
    device = record["id"]
    other = check(register(service), "/devices/register", "post", 201)
    assert other["firmware_version"] is None

    conflict = service.post("/devices/register", json=registration(hardware_id=record["hardware_id"]))
    assert check(conflict, "/devices/register", "post", 409)["id"] == device
    assert check(register(service, name=""), "/devices/register", "post", 422)["field"] == "name"
    check(service.post("/devices/register", data="{not json"), "/devices/register", "post", 400)
    check(service.post("/devices/register", data="[]"), "/devices/register", "post", 400)
    check(service.post("/devices/register", data="{" + " " * (64 * 1024 + 10) + "}"),
          "/devices/register", "post", 413)

    reply = check(service.post("/devices/heartbeat", json={"device_id": device}), "/devices/heartbeat", "post", 200)
    assert reply["device_id"] == device
    beat = service.post("/devices/heartbeat", json={"device_id": device, "status": "error",
                                                    "metadata": {"temp": 41}})  # too soon: a warning
    assert "warning" in check(beat, "/devices/heartbeat", "post", 200)
    check(service.post("/devices/heartbeat", json={"device_id": other["id"], "status": None, "firmware_version": None}),
          "/devices/heartbeat", "post", 200)  # the nullable fields take null
    check(service.post("/devices/heartbeat", json={"device_id": str(uuid.uuid4())}), "/devices/heartbeat", "post", 404)
    check(service.post("/devices/heartbeat", json={"status": "online"}), "/devices/heartbeat", "post", 422)
    check(service.post("/devices/heartbeat", data="nope"), "/devices/heartbeat", "post", 400)
    check(service.post("/devices/heartbeat", data="{" + " " * (64 * 1024 + 10) + "}"),
          "/devices/heartbeat", "post", 413)

    listed = check(service.get("/devices", params={"status": "error", "limit": 10, "offset": 0}), "/devices", "get", 200)
    assert [d["id"] for d in listed] == [device]
    check(service.get("/devices", params={"status": "sleeping"}), "/devices", "get", 422)
    check(service.get("/devices", params={"limit": "many"}), "/devices", "get", 422)

    assert check(service.get(f"/devices/{device}"), "/devices/{id}", "get", 200)["offline_after"] == 120
    assert check(service.get("/devices/not-a-uuid"), "/devices/{id}", "get", 400)["field"] == "id"
    check(service.get(f"/devices/{uuid.uuid4()}"), "/devices/{id}", "get", 404)

    patched = service.patch(f"/devices/{device}", json={"status": "maintenance", "location": None, "offline_after": None})
    assert check(patched, "/devices/{id}", "patch", 200)["status"] == "maintenance"
    check(service.patch(f"/devices/{device}", json={"hardware_id": "x"}), "/devices/{id}", "patch", 422)
    check(service.patch(f"/devices/{device}", data="{"), "/devices/{id}", "patch", 400)
    check(service.patch(f"/devices/{uuid.uuid4()}", json={"name": "x"}), "/devices/{id}", "patch", 404)
    check(service.patch(f"/devices/{device}", data="{" + " " * (64 * 1024 + 10) + "}"), "/devices/{id}", "patch", 413)

    history = check(service.get(f"/devices/{device}/history", params={"limit": 5}), "/devices/{id}/history", "get", 200)
    assert [e["to"] for e in history][:3] == ["maintenance", "error", "online"]
    assert history[-1]["from"] is None and history[-1]["reason"] == "registered"
    check(service.get(f"/devices/{device}/history", params={"limit": 0}), "/devices/{id}/history", "get", 422)
    check(service.get("/devices/x/history"), "/devices/{id}/history", "get", 400)
    check(service.get(f"/devices/{uuid.uuid4()}/history"), "/devices/{id}/history", "get", 404)

    for path in ("/devices/{id}/credentials", "/dashboard/credentials"):  # secure mode only: see the test below
        check(service.post(concrete_path(path, device, "x"), json={}), path, "post", 404)
    check(service.post("/devices/x/credentials"), "/devices/{id}/credentials", "post", 400)

    hardware_id = "AA:BB:CC:DD:EE:FF"
    block = f"/hardware/{hardware_id}/block"
    assert check(service.request("PUT", block, json={"reason": "stolen"}), "/hardware/{hardware_id}/block", "put", 200)["blocked"]
    check(service.request("PUT", f"/hardware/{uuid.uuid4().hex}/block"), "/hardware/{hardware_id}/block", "put", 200)
    check(service.request("PUT", block, json={"reason": 5}), "/hardware/{hardware_id}/block", "put", 422)
    check(service.request("PUT", block, data="{"), "/hardware/{hardware_id}/block", "put", 400)
    check(service.request("PUT", block, data="{" + " " * (64 * 1024 + 10) + "}"), "/hardware/{hardware_id}/block", "put", 413)
    blocked = check(service.get("/hardware/blocked"), "/hardware/blocked", "get", 200)
    assert {"hardware_id": hardware_id, "reason": "stolen"}.items() <= \
        next(b for b in blocked if b["hardware_id"] == hardware_id).items()
    assert any(b["reason"] is None for b in blocked)
    check(register(service, hardware_id=hardware_id), "/devices/register", "post", 403)
    check(service.delete(block), "/hardware/{hardware_id}/block", "delete", 204)
    check(service.delete(block), "/hardware/{hardware_id}/block", "delete", 404)

    # Telemetry: the upstream bodies, their refusals, and the reads of what was stored.
    kept = other["id"]
    point = {"device_id": kept, "metric_name": "temperature", "metric_value": 23.5, "unit": "celsius",
             "tags": {"room": "lab"}}
    assert check(service.post("/metrics", json=point), "/metrics", "post", 200) == \
        {"status": "ok", "metric": "temperature"}
    assert check(service.post("/metrics", json={**point, "metric_value": "hot"}), "/metrics", "post", 422)["field"] == \
        "metric_value"
    check(service.post("/metrics", json={**point, "device_id": str(uuid.uuid4())}), "/metrics", "post", 404)
    check(service.post("/metrics", data="{"), "/metrics", "post", 400)
    check(service.post("/metrics", data="{" + " " * (64 * 1024 + 10) + "}"), "/metrics", "post", 413)
    assert check(service.post("/metrics/batch", json=[point, point]), "/metrics/batch", "post", 200)["count"] == 2
    refused = check(service.post("/metrics/batch", json=[point, {**point, "metric_value": None}]),
                    "/metrics/batch", "post", 422)
    assert refused["field"] == "[1].metric_value"
    check(service.post("/metrics/batch", json=[{**point, "device_id": str(uuid.uuid4())}]), "/metrics/batch", "post", 404)
    check(service.post("/metrics/batch", data="["), "/metrics/batch", "post", 400)
    check(service.post("/metrics/batch", data="[" + " " * (1024 * 1024 + 10) + "]"), "/metrics/batch", "post", 413)
    event = {"device_id": kept, "event_type": "door_opened", "severity": "warning", "message": "front door",
             "data": {"door": 1}}
    assert check(service.post("/events", json=event), "/events", "post", 200) == \
        {"status": "ok", "event_type": "door_opened"}
    check(service.post("/events", json={**event, "severity": "loud"}), "/events", "post", 422)
    check(service.post("/events", json={**event, "device_id": str(uuid.uuid4())}), "/events", "post", 404)
    check(service.post("/events", data="nope"), "/events", "post", 400)
    check(service.post("/events", data="{" + " " * (64 * 1024 + 10) + "}"), "/events", "post", 413)
    assert check(service.post("/events/batch", json=[event, {**event, "message": None}]), "/events/batch", "post",
                 200)["count"] == 2
    check(service.post("/events/batch", json=[event, {"device_id": kept}]), "/events/batch", "post", 422)
    check(service.post("/events/batch", json=[{**event, "device_id": str(uuid.uuid4())}]), "/events/batch", "post", 404)
    check(service.post("/events/batch", data="{}"), "/events/batch", "post", 400)
    check(service.post("/events/batch", data="[" + " " * (1024 * 1024 + 10) + "]"), "/events/batch", "post", 413)
    series = check(service.get(f"/devices/{kept}/metrics", params={"name": "temperature"}),
                   "/devices/{id}/metrics", "get", 200)
    assert [(p["value"], p["tags"]) for p in series["points"]] == [(23.5, {"room": "lab"})] * 3
    buckets = check(service.get(f"/devices/{kept}/metrics", params={"bucket": "1h", "agg": "count"}),
                    "/devices/{id}/metrics", "get", 200)
    assert sum(b["value"] for b in buckets["buckets"]) == 3
    check(service.get(f"/devices/{kept}/metrics", params={"bucket": "1s"}), "/devices/{id}/metrics", "get", 422)
    check(service.get("/devices/x/metrics"), "/devices/{id}/metrics", "get", 400)
    check(service.get(f"/devices/{uuid.uuid4()}/metrics"), "/devices/{id}/metrics", "get", 404)
    latest = check(service.get(f"/devices/{kept}/metrics/latest"), "/devices/{id}/metrics/latest", "get", 200)
    assert latest["metrics"]["temperature"]["unit"] == "celsius"
    check(service.get("/devices/x/metrics/latest"), "/devices/{id}/metrics/latest", "get", 400)
    check(service.get(f"/devices/{uuid.uuid4()}/metrics/latest"), "/devices/{id}/metrics/latest", "get", 404)
    events = check(service.get(f"/devices/{kept}/events", params={"type": "door_opened"}),
                   "/devices/{id}/events", "get", 200)
    assert len(events["events"]) == 3 and any(e["message"] is None for e in events["events"])
    check(service.get(f"/devices/{kept}/events", params={"severity": "loud"}), "/devices/{id}/events", "get", 422)
    check(service.get("/devices/x/events"), "/devices/{id}/events", "get", 400)
    check(service.get(f"/devices/{uuid.uuid4()}/events"), "/devices/{id}/events", "get", 404)
    # Commands to devices: each operation's success and the errors a plain service gives.
    create, key = "/devices/{id}/commands", {"Idempotency-Key": "openapi-" + uuid.uuid4().hex}
    made = check(service.post(f"/devices/{device}/commands", json={"name": "openapi.probe", "params": {"n": 1}},
                              headers=key), create, "post", 201)
    assert check(service.post(f"/devices/{device}/commands", json={"name": "openapi.probe", "params": {"n": 1}},
                              headers=key), create, "post", 200)["id"] == made["id"]
    assert check(service.post(f"/devices/{device}/commands", json={"name": "other"}, headers=key),
                 create, "post", 409)["id"] == made["id"]
    check(service.post(f"/devices/{device}/commands", json={"name": "a b"}), create, "post", 422)
    check(service.post(f"/devices/{device}/commands", data="{"), create, "post", 400)
    check(service.post(f"/devices/{uuid.uuid4()}/commands", json={"name": "x"}), create, "post", 404)
    check(service.post(f"/devices/{device}/commands", data="{" + " " * (64 * 1024 + 10) + "}"), create, "post", 413)
    assert made["id"] in [c["id"] for c in check(service.get(f"/devices/{device}/commands", params={"limit": 10}),
                                                   create, "get", 200)]
    check(service.get(f"/devices/{device}/commands", params={"state": "done"}), create, "get", 422)
    check(service.get("/devices/x/commands"), create, "get", 400)
    check(service.get(f"/devices/{uuid.uuid4()}/commands"), create, "get", 404)
    pending = "/devices/{id}/commands/pending"
    assert made["id"] in [c["id"] for c in check(service.get(f"/devices/{device}/commands/pending"), pending, "get", 200)]
    check(service.get(f"/devices/{device}/commands/pending", params={"wait": 31}), pending, "get", 422)
    check(service.get(f"/devices/{uuid.uuid4()}/commands/pending"), pending, "get", 404)
    reply, to_reply = "/devices/{id}/commands/{command_id}/reply", f"/devices/{device}/commands/{made['id']}/reply"
    assert check(service.post(to_reply, json={"state": "delivered"}), reply, "post", 200)["state"] == "delivered"
    check(service.post(to_reply, json={"state": "queued"}), reply, "post", 422)
    check(service.post(to_reply, data="{"), reply, "post", 400)
    check(service.post(f"/devices/{device}/commands/{uuid.uuid4()}/reply", json={"state": "delivered"}), reply, "post", 404)
    one = "/commands/{command_id}"
    assert [h["to"] for h in check(service.get(f"/commands/{made['id']}"), one, "get", 200)["history"]][0] == "queued"
    check(service.get("/commands/x"), one, "get", 400)
    check(service.get(f"/commands/{uuid.uuid4()}"), one, "get", 404)
    fanned = check(service.post("/commands", json={"name": "openapi.probe", "device_ids": [device]}), "/commands", "post", 201)
    assert [c["device_id"] for c in fanned] == [device]
    check(service.post("/commands", json={"name": "x"}), "/commands", "post", 422)
    check(service.post("/commands", data="{"), "/commands", "post", 400)
    check(service.post("/commands", json={"name": "x", "device_ids": [str(uuid.uuid4())]}), "/commands", "post", 404)
    assert check(service.delete(f"/commands/{made['id']}"), one, "delete", 200)["state"] == "canceled"
    check(service.delete(f"/commands/{made['id']}"), one, "delete", 409)
    check(service.delete(f"/commands/{uuid.uuid4()}"), one, "delete", 404)
    assert check(service.post(to_reply, json={"state": "succeeded"}), reply, "post", 409)["field"] == "state"

    assert check(service.get("/health"), "/health", "get", 200)["database"] == "ok"
    metrics = check(service.get("/metrics"), "/metrics", "get", 200)
    assert "maestra_devices" in metrics
    check(service.get("/openapi.json"), "/openapi.json", "get", 200)
    assert "<html" in check(service.get("/"), "/", "get", 200).lower()

    # The text rule of every route: a query parameter (or path) that is not valid
    # UTF-8 is 400 bad_request naming it, before anything else happens.
    for path, method, _ in operations():
        bad = check(service.request(method.upper(), concrete_path(path, device, "x") + "?openapi=%FF"), path, method, 400)
        assert (bad["error"], bad["field"]) == ("bad_request", "openapi"), (method, path, bad)
    check(service.delete("/hardware/%FF/block"), "/hardware/{hardware_id}/block", "delete", 400)
    check(service.delete("/devices/not-a-uuid"), "/devices/{id}", "delete", 400)
    check(service.delete(f"/devices/{device}"), "/devices/{id}", "delete", 204)
    check(service.delete(f"/devices/{device}"), "/devices/{id}", "delete", 404)

    documented = {(m.upper(), p) for p, m, _ in operations()}
    assert responses.operations_checked() == documented, documented - responses.operations_checked()
    successes = {(m, p) for m, p, status in responses.checked if status < 300}
    assert documented - successes == {("POST", "/devices/{id}/credentials"), ("POST", "/dashboard/credentials")}


def test_unavailable_and_standby_answers_match_the_document(start_service):
    """Test whether a standby instance (another one holds the database) answers
    /health and the other routes with the documented 503 bodies."""
    responses = Responses()
    active = start_service()
    standby = start_service(database_url=active.database_url, wait=False)
    wait_until(lambda: "standby" in standby.log_text(), timeout=15, message=standby.log_tail)

    def answers_health() -> bool:
        try:
            return standby.get("/health").status_code == 503
        except requests.ConnectionError:  # not listening yet
            return False

    wait_until(answers_health, timeout=15, message=standby.log_tail)
    health = responses.check(standby.get("/health"), "/health", "get", 503)
    assert health["status"] == "standby"
    responses.check(standby.get("/devices"), "/devices", "get", 503)
    responses.check(standby.post("/devices/register", json=registration()), "/devices/register", "post", 503)


def test_bearer_auth_is_documented_where_the_server_requires_it(start_service):
    """Test whether, with MAESTRA_ADMIN_TOKEN set, exactly the operations that list
    bearerAuth answer 401 without a token and 403 with a wrong one (documented
    bodies), and accept the token."""
    # Two refused tokens per operation, more than the default limit a minute.
    service = start_service(MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN, MAESTRA_WEB_ROOT=str(WEB_ROOT), MAESTRA_AUTH_FAILURE_LIMIT=0)
    responses = Responses()
    device = register(service).json()["id"]
    hardware_id = f"openapi-auth-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path, method, op in sorted(operations(), key=lambda o: o[1] == "delete"):
        security = op.get("security", DOC.get("security", []))
        needs_token = any("bearerAuth" in requirement for requirement in security)
        concrete = concrete_path(path, device, hardware_id)
        body = {"device_id": device} if path == "/devices/heartbeat" else (
            registration() if path == "/devices/register" else {} if method == "patch" else None)
        bare = service.request(method.upper(), concrete, json=body)
        if needs_token:
            assert {} in security, f"{method.upper()} {path}: the token is optional (only with MAESTRA_ADMIN_TOKEN)"
            responses.check(bare, path, method, 401)
            wrong = service.request(method.upper(), concrete, json=body,
                                    headers={"Authorization": "Bearer wrong-token-wrong-token"})
            responses.check(wrong, path, method, 403)
            good = service.request(method.upper(), concrete, json=body, headers=auth)
            assert good.status_code not in (401, 403), f"{method.upper()} {path}: {good.status_code} {good.text[:200]}"
            responses.check(good, path, method)
        else:
            assert bare.status_code not in (401, 403), \
                f"{method.upper()} {path} requires a token but does not document bearerAuth"


def test_throttled_credentials_answer_the_documented_429(start_service):
    """Test whether past MAESTRA_AUTH_FAILURE_LIMIT refused tokens the answer is the
    documented 429 with its Retry-After header."""
    service = start_service(MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN, MAESTRA_AUTH_FAILURE_LIMIT=1)
    responses = Responses()
    wrong = {"Authorization": "Bearer wrong-token-wrong-token"}
    responses.check(service.get("/devices", headers=wrong), "/devices", "get", 403)
    throttled = service.get("/devices", headers=wrong)
    responses.check(throttled, "/devices", "get", 429)
    assert "Retry-After" in throttled.headers, throttled.headers
    responses.check(service.get("/hardware/blocked", headers=wrong), "/hardware/blocked", "get", 429)


def test_secure_mode_answers_match_the_document(postgres, tmp_path_factory):
    """Test whether secure mode's answers are valid against the document: a
    registration with its mqtt credentials (allOf DeviceRecord + mqtt), a rotated
    device credential, issued dashboard credentials, heartbeats with and without the
    device's credentials, and a missing provisioning key."""
    from harness import ServiceFactory
    from test_security import SERVICE_PASSWORD, SERVICE_USER, SecureBroker
    broker = SecureBroker(tmp_path_factory.mktemp("openapi-secure-broker")).start()
    factory = ServiceFactory(postgres, broker, tmp_path_factory.mktemp("openapi-secure-service"))
    key = "provision-" + uuid.uuid4().hex
    try:
        service = factory(MAESTRA_SECURE="true", MAESTRA_ADMIN_TOKEN=ADMIN_TOKEN, MAESTRA_AUTH_FAILURE_LIMIT=0,
                          MAESTRA_PROVISIONING_KEY=key, MAESTRA_MQTT_USERNAME=SERVICE_USER,
                          MAESTRA_MQTT_PASSWORD=SERVICE_PASSWORD)
        wait_until(lambda: "secure_mode_ready" in service.log_text(), timeout=15, message=service.log_tail)
        responses = Responses()
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        check = responses.check
        check(register(service), "/devices/register", "post", 401)
        check(register(service, headers={"X-Provisioning-Key": "wrong"}), "/devices/register", "post", 403)
        record = check(register(service, headers={"X-Provisioning-Key": key}), "/devices/register", "post", 201)
        assert record["mqtt"]["username"] == record["id"]
        device = record["id"]
        check(service.post("/devices/heartbeat", json={"device_id": device}), "/devices/heartbeat", "post", 401)
        check(service.post("/devices/heartbeat", json={"device_id": device}, auth=(device, "wrong")),
              "/devices/heartbeat", "post", 403)
        check(service.post("/devices/heartbeat", json={"device_id": device}, auth=(device, record["mqtt"]["password"])),
              "/devices/heartbeat", "post", 200)
        rotated = check(service.post(f"/devices/{device}/credentials", headers=admin),
                        "/devices/{id}/credentials", "post", 200)
        assert rotated["device_id"] == device and rotated["mqtt"]["password"] != record["mqtt"]["password"]
        check(service.post(f"/devices/{uuid.uuid4()}/credentials", headers=admin), "/devices/{id}/credentials", "post", 404)
        issued = check(service.post("/dashboard/credentials", json={"ttl_seconds": 60}, headers=admin),
                       "/dashboard/credentials", "post", 201)
        assert issued["client_id"] == issued["username"]
        check(service.post("/dashboard/credentials", json={"ttl_seconds": 5}, headers=admin),
              "/dashboard/credentials", "post", 422)
        check(service.post("/dashboard/credentials", data="{", headers=admin), "/dashboard/credentials", "post", 400)
    finally:
        factory.close()
        broker.stop()


# --- the limits the document states, provoked over HTTP --------------------------------------------

# A value of exactly n characters that the field accepts: ip_address must be an
# address (an IPv4-mapped IPv6 address written out is 45 characters).
def text_of_length(field: str, n: int) -> str:
    if field == "ip_address":
        full = "0000:0000:0000:0000:0000:ffff:255.255.255.255"
        assert n <= len(full)
        return full[len(full) - n:] if n >= len("255.255.255.255") else "1.2.3.4"[:n]
    return "é" * n  # code points, not bytes


def types(schema: dict) -> set[str]:
    """The JSON types a converted schema names (a nullable one names "null" too)."""
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def refused_for(response, field: str) -> bool:
    if response.status_code != 422:
        return False
    return response.json().get("field") == field


def test_documented_body_limits_are_enforced(service):
    """Test whether each maxLength and integer range the document states for a
    request body field (registration, heartbeat, patch, block) is the server's: the
    value at the limit is accepted, one past it refused with 422 naming the field."""
    device = register(service).json()["id"]
    targets = {  # (method, path) -> (concrete path, a valid body to change one field of)
        ("post", "/devices/register"): ("/devices/register", registration),
        ("post", "/devices/heartbeat"): ("/devices/heartbeat", lambda: {"device_id": device}),
        ("patch", "/devices/{id}"): (f"/devices/{device}", dict),
        ("put", "/hardware/{hardware_id}/block"): (f"/hardware/openapi-{uuid.uuid4().hex[:8]}/block", dict),
    }
    tried = []
    for (method, path), (concrete, base) in targets.items():
        schema_ref = DOC["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        properties = resolve(schema_ref["$ref"])["properties"] if "$ref" in schema_ref else schema_ref["properties"]
        for field, prop in properties.items():
            # A heartbeat naming the device by hardware_id instead (an unknown one answers 404).
            valid = dict if field == "hardware_id" and path == "/devices/heartbeat" else base
            if field == "provisioning_key":
                continue  # read only when MAESTRA_PROVISIONING_KEY is set
            cases = []
            if "string" in types(prop) and "maxLength" in prop:
                limit = prop["maxLength"]
                cases = [(text_of_length(field, limit), True), ("9" * (limit + 1), False)]
            elif "integer" in types(prop) and "maximum" in prop:
                cases = [(prop["minimum"], True), (prop["maximum"], True),
                         (prop["minimum"] - 1, False), (prop["maximum"] + 1, False)]
            for value, accepted in cases:
                r = service.request(method.upper(), concrete, json={**valid(), field: value})
                what = f"{method.upper()} {path} {field}={str(value)[:20]}...({len(str(value))}): {r.status_code} {r.text[:200]}"
                if accepted:
                    assert r.status_code < 500 and not refused_for(r, field), what
                else:
                    assert refused_for(r, field) and (
                        "string" not in types(prop) or "longer than" in r.json()["detail"]), what
                tried.append((path, field))
    assert len(set(tried)) >= 11, sorted(set(tried))


def test_documented_query_and_path_limits_are_enforced(service):
    """Test whether the ranges and lengths the document states for query and path
    parameters are the server's: at the limit accepted, one past it refused (422)."""
    device = register(service).json()["id"]
    tried = 0
    for path, method, op in operations():
        if method != "get" and "{hardware_id}" not in path:
            continue
        params = [resolve(p["$ref"]) if "$ref" in p else p
                  for p in DOC["paths"][path].get("parameters", []) + op.get("parameters", [])]
        for param in params:
            schema = param["schema"]
            cases = []
            if "integer" in types(schema):
                cases = [(schema["minimum"], True), (schema["minimum"] - 1, False)]
                if "maximum" in schema:
                    # A long poll's wait at its maximum would hold the test 30 s: only the refusal past it.
                    cases += [(schema["maximum"], True)] if param["name"] != "wait" else []
                    cases += [(schema["maximum"] + 1, False)]
            elif "string" in types(schema) and "maxLength" in schema:
                cases = [("a" * schema["maxLength"], True), ("a" * (schema["maxLength"] + 1), False)]
            for value, accepted in cases:
                concrete = concrete_path(path, device, str(value) if param["in"] == "path" else "x")
                query = {param["name"]: value} if param["in"] == "query" else None
                r = service.request(method.upper(), concrete, params=query,
                                    json={} if method in ("put", "post", "patch") else None)
                what = f"{method.upper()} {path} {param['name']}={str(value)[:20]}({len(str(value))}): {r.status_code} {r.text[:200]}"
                if accepted:
                    assert r.status_code < 400 or r.status_code == 404 and param["in"] == "path", what
                else:
                    assert refused_for(r, param["name"]), what
                tried += 1
    assert tried >= 12, tried


def test_documented_body_size_and_nesting_limits_are_enforced(service):
    """Test whether the body size (PayloadTooLarge) and nesting depth (Malformed) the
    document states are the server's: a registration of exactly that many bytes or
    levels is accepted, one more refused with 413 / 400."""
    responses = DOC["components"]["responses"]
    size = int(re.search(r"larger than (\d+) bytes", responses["PayloadTooLarge"]["description"]).group(1))
    assert f"at most {size} bytes" in DOC["info"]["description"]
    base = json.dumps(registration())
    for n, status in ((size, 201), (size + 1, 413)):
        body = base[:-1] + " " * (n - len(base)) + "}"
        r = service.post("/devices/register", data=body.encode())
        assert r.status_code == status, (n, r.status_code, r.text[:200])

    depth = int(re.search(r"nested deeper than (\d+) levels", responses["Malformed"]["description"]).group(1))
    assert f"nested at most {depth} levels" in DOC["info"]["description"]
    for levels, status in ((depth, 201), (depth + 1, 400)):
        value = 0
        for _ in range(levels - 2):  # the body and `metadata` are two levels
            value = [value]
        r = service.post("/devices/register", json=registration(metadata={"deep": value}))
        assert r.status_code == status, (levels, r.status_code, r.text[:200])
