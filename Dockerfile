# syntax=docker/dockerfile:1
# One image per deployable of docker-compose.prod.yml, each a target of this file:
#   api          the public routes (services.api:Api); also runs `python -m services.db migrate`
#   classifier   detector   embedder   one BentoML model service each
#   (each service one BentoML worker without a supervisor: python -m services.serve, ADR 0018)
#   auth         the gateway's ForwardAuth service (python -m gateway serve)
#   worker       a Celery batch-job worker
#   importer     fills the model store volume from the mirror (checksums verified); runs once before the rest
# e.g. docker build --target api -t cv-api:latest .   Traefik, PostgreSQL and Redis run their official images.
#
# Layers: the dependencies' wheels are built from pyproject.toml alone, so a code change rebuilds only the
# last COPY layers. No model file is in an image: the importer writes them to the `models` volume, which
# every serving container mounts read-only. Every process runs as uid 10001 (cv).

ARG PYTHON_VERSION=3.11

# --- builder: wheels for every dependency (the full image has the compilers an sdist may need) ---------------
FROM python:${PYTHON_VERSION}-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml ./
# requirements.txt: [project] dependencies; requirements-import.txt: the `import` extra (onnx, for the detector's
# INT8 build), which only the importer installs.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies']), file=open('requirements.txt', 'w')); \
print('\n'.join(p['optional-dependencies']['import']), file=open('requirements-import.txt', 'w'))" \
    && pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels-import --find-links /wheels -r requirements-import.txt
# The one compiled module (Pillow's resize passes, vectorised; setup.py builds the same file for `pip install -e .`):
# built here, copied beside services/ in the images that preprocess. Without it the services resize with Pillow.
COPY services/models/_resample.c native/
RUN gcc -O3 -shared -fPIC -I"$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
        native/_resample.c -o "native/_resample$(python3-config --extension-suffix)"

# --- runtime: slim Python, the dependencies installed from the wheels, no compiler, no pip cache ------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/srv/app \
    BENTOML_DO_NOT_TRACK=true \
    BENTOML_HOME=/srv/bentoml \
    CV_DATA_DIR=/srv/data
# The model store and data folders belong to cv: a named volume mounted there starts with the same owner.
RUN useradd --create-home --uid 10001 --user-group cv \
    && mkdir -p /srv/app /srv/bentoml/models /srv/data \
    && chown -R cv:cv /srv/bentoml /srv/data
COPY --from=builder /build/requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
WORKDIR /srv/app

# --- model services: kernel/ and services/ only; each target names its service ------------------------------
FROM runtime AS model-service
COPY kernel kernel
COPY services services
COPY --from=builder /build/native/_resample.*.so services/models/
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "kernel.probe", "http://127.0.0.1:3000/readyz"]

FROM model-service AS classifier
CMD ["python", "-m", "services.serve", "services.classifier:ClassifierService", "--host", "0.0.0.0", "--port", "3000"]

FROM model-service AS detector
CMD ["python", "-m", "services.serve", "services.detector:DetectorService", "--host", "0.0.0.0", "--port", "3000"]

FROM model-service AS embedder
CMD ["python", "-m", "services.serve", "services.embedder:EmbedderService", "--host", "0.0.0.0", "--port", "3000"]

# --- worker: the batch-job Celery worker; healthy while its heartbeat row is fresh ------------------------
FROM runtime AS worker
COPY kernel kernel
COPY services services
# The drift check's reference profiles (services/drift/monitor.py).
COPY artifacts/drift artifacts/drift
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "services.jobs.alive", "--name", "cv-jobs"]
CMD ["celery", "--app", "services.jobs.celery_app", "worker", "--queues", "cv-jobs", "--hostname", "cv-jobs@%h", \
     "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat"]

# --- auth: the ForwardAuth service (gateway/ and kernel/ only) ----------------------------------------------
FROM runtime AS auth
COPY kernel kernel
COPY gateway gateway
USER 10001:10001
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "kernel.probe", "http://127.0.0.1:8081/health"]
CMD ["python", "-m", "gateway", "serve"]

# --- importer: the model store from the mirror (mounted at /mirror), with onnx and the release artifacts ----
FROM runtime AS importer
COPY --from=builder /build/requirements-import.txt /tmp/requirements-import.txt
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/wheels-import,target=/wheels-import \
    pip install --no-cache-dir --no-index --find-links=/wheels-import --find-links=/wheels \
        -r /tmp/requirements-import.txt \
    && rm /tmp/requirements-import.txt
ENV CV_MODEL_MIRROR_DIR=/mirror/models \
    CV_DATASETS_MIRROR_DIR=/mirror/datasets
COPY artifacts artifacts
COPY kernel kernel
COPY services services
COPY training training
COPY bentos bentos
USER 10001:10001
# A one-shot job: compose waits for it with service_completed_successfully, so there is nothing to probe.
HEALTHCHECK NONE
# What `make import-models` imports: each model's production version and the archived earlier ones (v6, v1).
CMD ["sh", "-c", "python bentos/classifier/import_model.py \
    && python bentos/classifier/import_model.py --version v6 --stage archived \
    && python bentos/classifier/import_model.py --version v1 --stage archived \
    && python bentos/detector/import_model.py \
    && python bentos/embedder/import_model.py \
    && python bentos/embedder/import_model.py --version v6 --stage archived \
    && python bentos/embedder/import_model.py --version v1 --stage archived"]

# --- api: the public routes; last, so a plain `docker build .` gives the api image -------------------------
FROM runtime AS api
COPY kernel kernel
COPY gateway gateway
COPY services services
COPY --from=builder /build/native/_resample.*.so services/models/
COPY artifacts/drift artifacts/drift
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "kernel.probe", "http://127.0.0.1:3000/api/v1/health"]
CMD ["python", "-m", "services.serve", "services.api:Api", "--host", "0.0.0.0", "--port", "3000"]
