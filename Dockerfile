# Production image: the server on a real MongoDB (MONGODB_URI), so without the
# embedded FerretDB launcher and without Go.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FHIR_HOST=0.0.0.0 \
    FHIR_PORT=8080 \
    FHIR_DATA_DIR=/data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels fhir-rcm-server \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin fhir \
    && mkdir /data && chown fhir /data
# The audit journal lives here: mount a volume so that events survive a restart.
VOLUME /data
USER fhir
WORKDIR /tmp
EXPOSE 8080
# A first start loads the terminology (up to 47 s to /ready on the build machine): failures
# within the start period do not count, the first success ends it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['FHIR_PORT']}/ready\", timeout=2)"]
CMD ["python", "-m", "fhir_server", "serve"]
