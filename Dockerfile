# The podtrail operator image, for linux/amd64 and linux/arm64.
#
# The operator and its dependencies come in as wheels prepared on the host (image/build.sh:
# the operator's own wheel, and its pinned dependencies' binary wheels for CPython 3.11 on each
# platform, in build/wheels/<arch>/); nothing is downloaded during the build, so the same file
# builds on a machine without registry access, with no network at all. The base is a build
# argument: by default the official Python 3.11 slim image on Debian bookworm; where no registry
# is reachable, image/base.sh builds an equivalent one from Debian's packages and passes it as
# BASE_IMAGE.
#
#   image/build.sh            (or `make image`: the engine's own platform, classic builder or
#                              BuildKit)
#   PLATFORMS=linux/amd64,linux/arm64 image/build.sh --wheels-only
#   docker buildx build --platform linux/amd64,linux/arm64 --network none -t IMAGE .
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

FROM ${BASE_IMAGE} AS install
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The platform being built: BuildKit sets it (amd64, arm64); the classic builder does not, and
# image/build.sh passes the engine's. No default on the ARG: a default would override BuildKit's
# value, so the fallback to amd64 (a bare classic `docker build`) is in the expansion below.
ARG TARGETARCH
COPY build/wheels/pip/ /wheels/pip/
COPY build/wheels/${TARGETARCH:-amd64}/ /wheels/
# A virtual environment without pip; pip runs from its own wheel and stays in this stage.
# Bytecode is compiled with hash-based validation that is never re-checked, so the read-only
# root filesystem never sees a write attempt and no mtime has to survive the copy below.
RUN set -- /wheels/pip/pip-*.whl \
 && python3 -m venv --without-pip /opt/podtrail \
 && /opt/podtrail/bin/python "$1/pip" install \
      --no-index --find-links /wheels --no-compile --no-warn-script-location podtrail \
 && /opt/podtrail/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
      /opt/podtrail/lib \
 && /opt/podtrail/bin/python -c "import podtrail" \
 && test -x /opt/podtrail/bin/podtrail

FROM ${BASE_IMAGE}
COPY --from=install /opt/podtrail /opt/podtrail
# The operator's user, by name too: Kopf names itself after the user (getpass), which needs USER
# or a passwd entry; USER also covers a cluster that runs the pod under another UID.
RUN echo 'podtrail:x:65532:65532:podtrail:/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'podtrail:x:65532:' >> /etc/group
ENV PATH=/opt/podtrail/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    USER=podtrail
# A numeric user, so the kubelet can check `runAsNonRoot` without reading the image's passwd.
USER 65532:65532
WORKDIR /tmp
# 8080: liveness (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
ENTRYPOINT ["/opt/podtrail/bin/podtrail"]
# Last, so that what changes with every build (the revision, the time) leaves the layers above
# cached.
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ENV PODTRAIL_REVISION=${REVISION}
LABEL org.opencontainers.image.title="podtrail" \
      org.opencontainers.image.description="Kubernetes operator that keeps each pod's life as a PodLifecycleRecord timeline" \
      org.opencontainers.image.source="https://github.com/podtrail/podtrail" \
      org.opencontainers.image.url="https://github.com/podtrail/podtrail" \
      org.opencontainers.image.documentation="https://github.com/podtrail/podtrail/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
