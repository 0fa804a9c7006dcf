"""The container deployment (compose.yaml, Dockerfile, .dockerignore) against the
service and the scripts. No container engine runs here, so nothing is started:
`docker-compose config` (Debian package docker-compose) must accept the file, and
every variable, port, package and path it relies on must exist where it points —
the MAESTRA_* variables in fleet-manager's option table (with values it accepts),
the ports in MAESTRA_HTTP_PORT and in mosquitto/mosquitto.conf's listeners, the
packages in scripts/lib.sh, the shared libraries the binary links, the files the
CMake build needs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:
    import yaml  # python3-yaml, a dependency of Debian's docker-compose
except ImportError:  # pragma: no cover - reported by the config fixture
    yaml = None

from harness import REPO, fleet_manager_binary

COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
MOSQUITTO_CONF = REPO / "mosquitto" / "mosquitto.conf"
LIB_SH = REPO / "scripts" / "lib.sh"
DASHBOARD = REPO / "examples" / "dashboard"
# In every debian:12 image already (apt needs them).
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}


# --- helpers -------------------------------------------------------------------------------


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 timeout=30).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor `docker compose` is installed: "
                "apt-get install docker-compose (it belongs in MAESTRA_DEBIAN_PACKAGES)")


def clean_env() -> dict[str, str]:
    """The environment without MAESTRA_* and POSTGRES_* so that compose.yaml's own
    defaults are what gets validated."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MAESTRA_", "POSTGRES_"))}


@pytest.fixture(scope="module")
def config() -> dict:
    """compose.yaml as `docker-compose config` resolves it."""
    if yaml is None:
        pytest.fail("python3-yaml is not installed (Debian's docker-compose package brings it)")
    result = subprocess.run([*compose_command(), "-f", str(COMPOSE), "--project-directory", str(REPO), "config"],
                            capture_output=True, text=True, timeout=60, env=clean_env(), cwd=REPO)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def help_options() -> set[str]:
    out = subprocess.run([str(fleet_manager_binary()), "--help"], capture_output=True, text=True, timeout=20,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    names = set(re.findall(r"\bMAESTRA_[A-Z0-9_]+\b", out.stdout))
    assert "MAESTRA_HTTP_PORT" in names, out.stdout
    return names


def accepts_configuration(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run fleet-manager --help with env: it parses (and checks) every MAESTRA_*
    variable before printing the help, and exits 2 on a bad value."""
    return subprocess.run([str(fleet_manager_binary()), "--help"], capture_output=True, text=True, timeout=20,
                          env={"PATH": "/usr/bin:/bin", **env})


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def ports(service: dict) -> list[tuple[int, int]]:
    """(published, target) pairs, from short or long syntax."""
    pairs = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.append((int(port["published"]), int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def volumes(service: dict) -> list[tuple[str, str, str]]:
    """(type, source, target) of each volume, from short or long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append((volume["type"], volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            kind = "bind" if source.startswith(("/", ".")) else "volume"
            out.append((kind, source, target))
    return out


def mosquitto_listeners() -> dict[int, str]:
    """port -> protocol of each listener in mosquitto/mosquitto.conf."""
    listeners: dict[int, str] = {}
    current = None
    for line in MOSQUITTO_CONF.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "listener":
            current = int(words[1])
            listeners[current] = "mqtt"
        elif words[0] == "protocol" and current is not None:
            listeners[current] = words[1]
    return listeners


def mosquitto_setting(name: str) -> str:
    match = re.search(rf"^{name}\s+(\S+)\s*$", MOSQUITTO_CONF.read_text(), re.M)
    assert match, f"{name} not found in {MOSQUITTO_CONF}"
    return match.group(1)


def script_packages() -> list[str]:
    match = re.search(r'^MAESTRA_DEBIAN_PACKAGES="([^"]*)"', LIB_SH.read_text(), re.M)
    assert match, f"MAESTRA_DEBIAN_PACKAGES not found in {LIB_SH}"
    return match.group(1).split()


class Stage:
    def __init__(self, base: str, name: str | None):
        self.base = base
        self.name = name
        self.instructions: list[tuple[str, str]] = []

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def apt_packages(self) -> set[str]:
        packages = set()
        for run in self.all("RUN"):
            for command in re.split(r"&&|;|\|\|", run):
                words = command.split()
                if "apt-get" in words and "install" in words:
                    packages |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
        return packages

    def env(self) -> dict[str, str]:
        values = {}
        for args in self.all("ENV"):
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                values[key] = value.strip('"')
        return values

    def copies(self) -> list[tuple[str | None, list[str], str]]:
        """(from stage or None, sources, destination) of each COPY."""
        out = []
        for args in self.all("COPY"):
            words = args.split()
            source_stage = None
            while words and words[0].startswith("--"):
                if words[0].startswith("--from="):
                    source_stage = words[0].split("=", 1)[1]
                words.pop(0)
            out.append((source_stage, words[:-1], words[-1]))
        return out


def dockerfile_stages() -> list[Stage]:
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                            if not line.lstrip().startswith("#")))
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            stages.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        elif keyword != "ARG" or stages:
            assert stages, f"Dockerfile: {keyword} before the first FROM"
            stages[-1].instructions.append((keyword, " ".join(args.split())))
    return stages


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out a repository-relative path (a pattern
    matches the path or one of its parent folders; `**` spans folders)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = re.escape(body.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negate
    return result


def runtime_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


# --- compose.yaml ------------------------------------------------------------------------------


def test_compose_config_is_valid(config):
    """Test whether docker-compose config accepts compose.yaml, and it has the three
    services with images or a build, restart policies, health checks, named
    volumes, and fleet-manager waiting for healthy dependencies."""
    services = config["services"]
    assert set(services) == {"postgres", "mosquitto", "fleet-manager"}
    assert services["postgres"]["image"].split(":")[1] == "15" and services["postgres"]["image"].startswith("postgres")
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    build = services["fleet-manager"]["build"]
    context = Path(build["context"] if isinstance(build, dict) else build)
    assert context.resolve() == REPO.resolve()
    assert (context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")).is_file()
    named = set(config.get("volumes") or {})
    assert named, "no named volumes"
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: no restart policy"
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no health check"
        for kind, source, target in volumes(service):
            if kind == "volume":
                assert source in named, f"{name}: volume {source} is not declared"
    assert any(t == "/var/lib/postgresql/data" and k == "volume" for k, _, t in volumes(services["postgres"]))
    assert any(k == "volume" for k, _, _ in volumes(services["mosquitto"]))
    depends = services["fleet-manager"]["depends_on"]
    assert {name: depends[name]["condition"] for name in depends} == {
        "postgres": "service_healthy", "mosquitto": "service_healthy"}
    health = " ".join(services["fleet-manager"]["healthcheck"]["test"])
    assert "/health" in health


def test_compose_variables_exist_in_the_service_configuration(config):
    """Test whether every MAESTRA_* variable compose.yaml and the Dockerfile use is
    an option of fleet-manager (--help lists it) and the values they set are
    accepted by its configuration parser."""
    options = help_options()
    mentioned = set(re.findall(r"\bMAESTRA_[A-Z0-9_]+\b", COMPOSE.read_text()))
    assert mentioned - options == set(), f"compose.yaml uses variables fleet-manager does not know: " \
                                         f"{sorted(mentioned - options)}"
    env = environment(config["services"]["fleet-manager"])
    assert {k for k in env if k.startswith("MAESTRA_")} <= options
    result = accepts_configuration({k: v for k, v in env.items() if k.startswith("MAESTRA_")})
    assert result.returncode == 0, f"fleet-manager rejects compose.yaml's configuration: {result.stderr}"
    image_env = runtime_stage(dockerfile_stages()).env()
    maestra = {k: v for k, v in image_env.items() if k.startswith("MAESTRA_")}
    assert set(maestra) <= options, f"Dockerfile sets unknown variables: {sorted(set(maestra) - options)}"
    result = accepts_configuration(maestra)
    assert result.returncode == 0, f"fleet-manager rejects the Dockerfile's configuration: {result.stderr}"


def test_compose_ports_and_urls_match_the_configuration(config):
    """Test whether the published ports are the service's MAESTRA_HTTP_PORT and the
    listeners of mosquitto/mosquitto.conf (1883, 9001), and the URLs fleet-manager
    gets point at those services, listeners and credentials."""
    services = config["services"]
    env = environment(services["fleet-manager"])
    http_port = int(env.get("MAESTRA_HTTP_PORT", "8080"))
    assert ports(services["fleet-manager"]) == [(8080, http_port)]
    health = " ".join(services["fleet-manager"]["healthcheck"]["test"])
    assert f":{http_port}/health" in health

    listeners = mosquitto_listeners()
    assert set(listeners) == {1883, 9001}, listeners
    published = ports(services["mosquitto"])
    assert sorted(target for _, target in published) == sorted(listeners)
    assert all(host == target for host, target in published), published

    mqtt = urlsplit(env["MAESTRA_MQTT_URL"])
    assert mqtt.scheme == "tcp" and mqtt.hostname == "mosquitto"
    assert listeners.get(mqtt.port or 1883) == "mqtt", f"{mqtt.port} is not an MQTT/TCP listener"
    websockets = [port for port, protocol in listeners.items() if protocol == "websockets"]
    assert websockets and f":{websockets[0]}" in (DASHBOARD / "app.js").read_text(), \
        "the dashboard's default broker port is not the websockets listener"
    mosquitto_check = " ".join(services["mosquitto"]["healthcheck"]["test"])
    assert f"-p {mqtt.port or 1883}" in mosquitto_check

    database = urlsplit(env["MAESTRA_DATABASE_URL"])
    pg_env = environment(services["postgres"])
    assert database.scheme in ("postgresql", "postgres") and database.hostname == "postgres"
    assert database.username == pg_env["POSTGRES_USER"]
    assert database.password == pg_env["POSTGRES_PASSWORD"]
    assert database.path.lstrip("/") == pg_env["POSTGRES_DB"]
    pg_check = " ".join(services["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in pg_check and pg_env["POSTGRES_USER"] in pg_check
    assert "dev" in pg_env["POSTGRES_PASSWORD"], "the default password must be an obviously-local one"


def test_mosquitto_runs_the_repository_config_with_persistence_in_a_named_volume(config):
    """Test whether the broker container reads mosquitto/mosquitto.conf at the path
    of the image's default command, and its persistence_location (resolved against
    the container's working directory) is inside a named volume."""
    service = config["services"]["mosquitto"]
    mounts = volumes(service)
    binds = {Path(source).resolve(): target for kind, source, target in mounts if kind == "bind"}
    assert binds.get(MOSQUITTO_CONF.resolve()) == "/mosquitto/config/mosquitto.conf", mounts
    location = mosquitto_setting("persistence_location")
    if not location.startswith("/"):
        workdir = service.get("working_dir")
        assert workdir, "persistence_location is relative: the container needs a working_dir"
        location = os.path.normpath(os.path.join(workdir, location))
    location = location.rstrip("/")
    assert any(kind == "volume" and (location + "/").startswith(target.rstrip("/") + "/")
               for kind, _, target in mounts), f"persistence {location} is not in a named volume: {mounts}"
    assert mosquitto_setting("persistence") == "true"


# --- Dockerfile ------------------------------------------------------------------------------------


def test_dockerfile_installs_the_packages_of_the_scripts():
    """Test whether every stage is Debian 12, the build stage installs the build
    packages of scripts/lib.sh (compiler, CMake, pkg-config, every -dev library),
    and the runtime stage installs no build packages but the packages of every
    shared library the binary links."""
    stages = dockerfile_stages()
    names = {s.name for s in stages if s.name}
    for stage in stages:
        assert stage.base in ("debian:12", "debian:bookworm") or stage.base in names, \
            f"stage {stage.name} is built FROM {stage.base}, not Debian 12"
    # The fuzzing toolchain (clang, its libFuzzer/sanitizer runtimes, llvm) is for
    # scripts/fuzz.sh, not for building the image.
    fuzz_only = {"libclang-rt-dev"}
    build_packages = {p for p in script_packages()
                      if (p in ("build-essential", "cmake", "pkg-config") or p.endswith("-dev")) and p not in fuzz_only}
    assert {"cmake", "libpaho-mqttpp-dev", "libpqxx-dev"} <= build_packages
    installed = set().union(*(s.apt_packages() for s in stages[:-1]))
    assert build_packages <= installed, \
        f"Dockerfile misses build packages of scripts/lib.sh: {sorted(build_packages - installed)}"
    builders = [s for s in stages if any("cmake --build" in run for run in s.all("RUN"))]
    assert builders and build_packages <= builders[0].apt_packages()
    assert any("--target fleet-manager" in run for run in builders[0].all("RUN"))

    runtime = runtime_stage(stages).apt_packages()
    assert not {p for p in runtime if p.endswith("-dev") or p in ("build-essential", "cmake")}, runtime
    assert {"ca-certificates", "curl"} <= runtime
    binary = fleet_manager_binary()
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True,
                                       timeout=20, check=True).stdout)
    assert "libpqxx-6.4.so" in needed or any(n.startswith("libpqxx") for n in needed), needed
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, timeout=20, check=True).stdout, re.M))
    for library in needed:
        path = resolved[library]
        # Debian 12 is usr-merged: dpkg knows a library under /lib or /usr/lib, as a
        # symlink or as the versioned file.
        candidates = {path, str(Path(path).resolve())}
        candidates |= {"/usr" + c for c in candidates if c.startswith("/lib/")} | {
            c[4:] for c in candidates if c.startswith("/usr/lib/")}
        for candidate in sorted(candidates):
            owner = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True, timeout=20)
            if owner.returncode == 0:
                break
        assert owner.returncode == 0, f"no Debian package owns {path}"
        package = owner.stdout.split(":")[0].strip()
        assert package in runtime or package in BASE_IMAGE_PACKAGES, \
            f"the runtime stage does not install {package} (provides {library})"


def test_dockerfile_runtime_image_serves_the_dashboard_as_a_non_root_user():
    """Test whether the runtime stage runs fleet-manager as a non-root user with a
    curl health check on /health, exposes MAESTRA_HTTP_PORT, and points
    MAESTRA_WEB_ROOT at the copied dashboard, which has the MQTT.js file its page
    loads, installed by `npm ci --omit=dev` in a stage of its own."""
    stages = dockerfile_stages()
    runtime = runtime_stage(stages)
    user = runtime.all("USER")
    assert user and user[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    env = runtime.env()
    assert [int(p.split("/")[0]) for p in " ".join(runtime.all("EXPOSE")).split()] == \
        [int(env.get("MAESTRA_HTTP_PORT", "8080"))]
    health = " ".join(runtime.all("HEALTHCHECK"))
    assert "curl" in health and "/health" in health
    entrypoint = runtime.all("ENTRYPOINT")
    assert entrypoint and "fleet-manager" in entrypoint[-1]

    web_root = env.get("MAESTRA_WEB_ROOT", "").rstrip("/")
    assert web_root, "MAESTRA_WEB_ROOT is not set"
    copies = runtime.copies()
    assert any(stage is None and any(s.rstrip("/") == "examples/dashboard" for s in sources)
               and dest.rstrip("/") == web_root for stage, sources, dest in copies), copies
    assert ignored("examples/dashboard/node_modules/mqtt/package.json", dockerignore_patterns()), \
        "the dashboard's node_modules would be copied into the image"
    scripts = re.findall(r'<script[^>]*\bsrc="(node_modules/[^"]+)"', (DASHBOARD / "index.html").read_text())
    assert scripts, "index.html loads nothing from node_modules?"
    npm_stages = {s.name: s for s in stages if any("npm ci" in run for run in s.all("RUN"))}
    assert npm_stages, "no stage runs npm ci"
    for stage in npm_stages.values():
        assert all("--omit=dev" in run for run in stage.all("RUN") if "npm ci" in run)
        assert stage.base in ("debian:12", "debian:bookworm") and {"nodejs", "npm"} <= stage.apt_packages()
    for script in scripts:
        folder = os.path.dirname(script)
        assert any(stage in npm_stages and dest.rstrip("/") == f"{web_root}/{folder}"
                   and any(s.rstrip("/").endswith(folder) for s in sources)
                   for stage, sources, dest in copies), f"{script} (loaded by index.html) is not in the image"


def test_dockerignore_excludes_build_output_and_the_build_context_is_enough(tmp_path):
    """Test whether .dockerignore leaves out build trees, .run, node_modules and .git,
    and the files the build stage COPYs (minus ignored ones) are enough to
    configure the CMake project."""
    patterns = dockerignore_patterns()
    for path in ["build/fleet-manager", "build-unit/x", ".run/logs/a.log", ".git/HEAD",
                 "node_modules/x", "examples/dashboard/node_modules/mqtt/dist/mqtt.min.js"]:
        assert ignored(path, patterns), f".dockerignore does not exclude {path}"
    for path in ["CMakeLists.txt", "src/main.cpp", "api/openapi.json", "examples/dashboard/index.html",
                 "mosquitto/mosquitto.conf"]:
        assert not ignored(path, patterns), f".dockerignore excludes {path}"

    builder = next(s for s in dockerfile_stages() if any("cmake --build" in run for run in s.all("RUN")))
    workdir = Path(builder.all("WORKDIR")[-1])
    context = tmp_path / "context"
    for stage, sources, dest in builder.copies():
        assert stage is None
        for source in sources:
            origin = REPO / source
            assert origin.exists(), f"COPY {source}: not in the repository"
            files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                if ignored(relative, patterns):
                    continue
                if dest.endswith("/") and origin.is_file():
                    target = context / (workdir / dest / origin.name).relative_to("/")
                elif origin.is_file():
                    target = context / (workdir / dest).relative_to("/")
                else:
                    target = context / (workdir / dest / file.relative_to(origin)).relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
    source_dir = context / workdir.relative_to("/")
    # Files CMakeLists.txt reads by path or glob at build time (schema/*.sql,
    # api/openapi.json, cmake/*.cmake) must all be in the context: a missing
    # migration would configure fine and build an image without it. Optional
    # parts (if(EXISTS ...)) and the default web root (a runtime path) are not.
    for line in (REPO / "CMakeLists.txt").read_text().splitlines():
        if "if(EXISTS" in line or "MAESTRA_DEFAULT_WEB_ROOT" in line:
            continue
        for reference in re.findall(r"\$\{CMAKE_SOURCE_DIR\}/([\w./*-]+)", line):
            wanted = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob(reference)
                            if not ignored(p.relative_to(REPO).as_posix(), patterns))
            present = sorted(p.relative_to(source_dir).as_posix() for p in source_dir.glob(reference))
            assert wanted and present == wanted, \
                f"the build stage lacks {reference} (has {present}, the repository {wanted})"
    with tempfile.TemporaryDirectory(dir=tmp_path) as build_dir:
        result = subprocess.run(["cmake", "-S", str(source_dir), "-B", build_dir, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"the Dockerfile's build context does not configure:\n{result.stderr[-3000:]}"
