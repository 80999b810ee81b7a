# The Legation control plane image.
#
#   docker build -t legation:0.1.0 .
#   docker run --rm legation:0.1.0 --version
#
# BASE is any Debian-like image with python3 (>= 3.11) and its venv module; the
# default is the official slim Python image. Offline builds pass a local one:
#   docker build --build-arg BASE=legation-test-base:bookworm -t legation:test .
# (tests/e2e/test_docker_build.py makes such a base from a debootstrap root file
# system). Only the runtime dependencies are installed, never the [dev] extras.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY legation ./legation
RUN python3 -m venv /opt/legation \
 && /opt/legation/bin/pip install --no-compile . \
 && /opt/legation/bin/python -m compileall -q /opt/legation/lib \
 && /opt/legation/bin/legation --version

FROM ${BASE}
# A fixed numeric, non-root user: Kubernetes' runAsNonRoot can verify a number.
ARG UID=65532
COPY --from=build /opt/legation /opt/legation
ENV PATH=/opt/legation/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER ${UID}:${UID}
WORKDIR /tmp
# 15010 plaintext xDS, 15012 xDS over TLS, 15014 admin HTTP (metrics, health, debug)
EXPOSE 15010 15012 15014
ENTRYPOINT ["legation"]
CMD ["serve", "--in-cluster"]
