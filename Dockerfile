# Dockerfile — the fleet-manager image, built from Debian 12 (bookworm) with the
# same Debian packages as scripts/lib.sh (MAESTRA_DEBIAN_PACKAGES), in three stages:
#   build      compiles the fleet-manager target with CMake (RelWithDebInfo, like
#              the scripts; debug info stripped from the installed binary)
#   dashboard  installs the dashboard's npm dependencies (MQTT.js) from the lock
#              file with Debian's nodejs/npm
#   runtime    the runtime shared libraries only, the binary, the dashboard and
#              mqtt.min.js; runs as an unprivileged user
# Used by compose.yaml (`docker compose up --build`); on its own:
#   docker build -t maestra/fleet-manager .
#   docker run -p 8080:8080 -e MAESTRA_DATABASE_URL=postgresql://... \
#     -e MAESTRA_MQTT_URL=tcp://broker:1883 maestra/fleet-manager
# Configuration is by MAESTRA_* environment variables (`fleet-manager --help`).

# --- build ---------------------------------------------------------------------------------
FROM debian:12 AS build
ARG CMAKE_BUILD_TYPE=RelWithDebInfo
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libpaho-mqttpp-dev libpaho-mqtt-dev libcpp-httplib-dev libpqxx-dev \
      nlohmann-json3-dev doctest-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the CMake project needs (tests/ because CMakeLists.txt adds it; the
# unit tests are configured, not built). tools/ is left out: CMake skips it.
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY schema/ schema/
COPY api/ api/
COPY src/ src/
COPY tests/CMakeLists.txt tests/
COPY tests/unit/ tests/unit/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE}" \
 && cmake --build build --target fleet-manager -j "$(nproc)" \
 && install -D -m 0755 -s build/fleet-manager /out/fleet-manager \
 && /out/fleet-manager --version

# --- dashboard dependencies ------------------------------------------------------------------
FROM debian:12 AS dashboard
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /dashboard
COPY examples/dashboard/package.json examples/dashboard/package-lock.json ./
# Production dependencies only (no playwright-core), exactly as locked.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && test -f node_modules/mqtt/dist/mqtt.min.js

# --- runtime ----------------------------------------------------------------------------------
FROM debian:12 AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# The shared libraries of the -dev packages above (they pull libpq5 and the
# rest), CA certificates for ssl:// brokers and TLS to Postgres, curl for the
# health check. tests/integration/test_compose.py checks this list against the
# libraries the binary links.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libpaho-mqttpp3-1 libpaho-mqtt1.3 libcpp-httplib0.11 libpqxx-6.4 libssl3 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/maestra --create-home \
      --shell /usr/sbin/nologin maestra
COPY --from=build /out/fleet-manager /usr/local/bin/fleet-manager
# The dashboard without node_modules (.dockerignore), plus the one file of MQTT.js
# that index.html loads (node_modules/mqtt/dist/mqtt.min.js).
COPY examples/dashboard/ /usr/share/maestra/dashboard/
COPY --from=dashboard /dashboard/node_modules/mqtt/dist/ /usr/share/maestra/dashboard/node_modules/mqtt/dist/
ENV MAESTRA_WEB_ROOT=/usr/share/maestra/dashboard \
    MAESTRA_HTTP_HOST=0.0.0.0 \
    MAESTRA_HTTP_PORT=8080
USER maestra:maestra
WORKDIR /var/lib/maestra
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${MAESTRA_HTTP_PORT:-8080}/health" || exit 1
# SIGTERM (docker stop) shuts down cleanly: publishes the fleet's offline status
# and flushes last_seen.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fleet-manager"]
