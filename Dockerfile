# relctl controller image: the wheel, git and ssh, a non-root user; `relctl run` is the entrypoint.
# Build: docker build -t relctl .   Run: see docs/operations.md.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
# The JSON Schemas ship inside the package (controller/schemas/).
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --home-dir /home/relctl --shell /usr/sbin/nologin relctl \
 && mkdir -p /var/lib/relctl && chown relctl:relctl /var/lib/relctl
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels relctl && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/relctl
ENV RELCTL_WORKDIR=/var/lib/relctl/work \
    RELCTL_LISTEN=0.0.0.0:8080 \
    RELCTL_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["relctl", "run"]
