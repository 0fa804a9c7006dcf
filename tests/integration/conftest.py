"""tests/integration/conftest.py — pytest fixtures of the integration suite
(owned by the tooling; the machinery lives in harness.py).

Fixtures:
  postgres            session: a throwaway Postgres 15 cluster (PostgresCluster)
  database_url        module: URL of a fresh database in it (maestra_<random>)
  new_database        the callable postgres.new_database() -> URL of another fresh database
  mosquitto           session: a throwaway broker (MosquittoBroker: .port .ws_port .url
                      .stop() .start() .restart() .kill() .log_text())
  start_broker        factory: another private broker, stopped at teardown
  start_service       factory: start_service(**env) -> FleetService, all stopped at teardown
  mqtt                factory: mqtt(client_id=None, broker=None, **kw) -> MqttClient, closed at teardown
A test that leaves the session broker stopped gets it started again afterwards.
When a test fails, the log tail of each fleet-manager it started is added to the report.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from harness import (
    MosquittoBroker,
    PostgresCluster,
    ServiceFactory,
    mqtt_client,
    raise_nofile_limit,
)

raise_nofile_limit()


@pytest.fixture(scope="session")
def postgres():
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="module")
def database_url(postgres) -> str:
    return postgres.new_database()


@pytest.fixture
def new_database(postgres):
    return postgres.new_database


@pytest.fixture(scope="session")
def _broker_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mosquitto")


@pytest.fixture(scope="session")
def mosquitto(_broker_root):
    broker = MosquittoBroker(_broker_root / "session")
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def start_broker(_broker_root):
    """start_broker(**kwargs) -> a new MosquittoBroker (own ports and persistence),
    for tests that restart or kill the broker without disturbing the others."""
    brokers: list[MosquittoBroker] = []

    def start(**kwargs) -> MosquittoBroker:
        workdir = Path(tempfile.mkdtemp(prefix="broker-", dir=_broker_root))
        broker = MosquittoBroker(workdir, **kwargs)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def start_service(request, postgres, mosquitto, tmp_path_factory):
    """start_service(*, args=(), broker=None, database_url=None, wait=True,
    timeout=20, name=None, **env) -> FleetService.

    Each call starts build/fleet-manager (or $FLEET_MANAGER_BIN) with
    MAESTRA_HTTP_HOST=127.0.0.1, MAESTRA_HTTP_PORT=<free port>,
    MAESTRA_DATABASE_URL=<a fresh database unless database_url= is given>,
    MAESTRA_MQTT_URL=<the session broker, or broker=>, a unique
    MAESTRA_MQTT_CLIENT_ID, then the **env overrides (None removes a variable),
    and waits until GET /health answers 200.
    """
    log_dir = tmp_path_factory.mktemp("fleet-manager")
    factory = ServiceFactory(postgres, mosquitto, log_dir)
    request.node._maestra_services = factory.services
    yield factory
    factory.close()


@pytest.fixture
def mqtt(mosquitto):
    """mqtt(client_id=None, broker=None, **kwargs) -> MqttClient connected to the
    session broker (or broker=), closed at teardown. kwargs: see harness.mqtt_client."""
    clients = []

    def connect(client_id=None, broker=None, **kwargs):
        client = mqtt_client(broker or mosquitto, client_id, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for service in getattr(item, "_maestra_services", []):
            report.sections.append(
                (f"{service.name} log tail ({service.log_path})", service.log_tail(80)))


@pytest.fixture(autouse=True)
def _restore_session_broker(request):
    """A test that stopped or killed the session broker and failed before starting
    it again must not break the tests after it."""
    broker = request.getfixturevalue("mosquitto") if "mosquitto" in request.fixturenames else None
    yield
    if broker is not None:
        broker.ensure_running()
