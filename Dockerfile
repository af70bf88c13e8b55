# Install the operator into a virtualenv from requirements-operator.lock (every package pinned with its
# hash, the same versions the test suite runs), then copy that virtualenv into a slim image that runs as a
# non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/stateful-route
COPY requirements-operator.lock ./
RUN /opt/stateful-route/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements-operator.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/stateful-route/bin/pip install --no-cache-dir --no-deps --no-build-isolation .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /opt/stateful-route /opt/stateful-route
USER 10001
ENV PATH=/opt/stateful-route/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# 8080: kopf's liveness endpoint (--liveness); 9090: Prometheus metrics (--metrics-port).
EXPOSE 8080 9090
ENTRYPOINT ["stateful-route"]
CMD ["operator", "--all-namespaces"]
