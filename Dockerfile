# One image for every Python process of docker-compose.prod.yml (api, model services, auth, worker, migrate,
# import-models); the compose service picks the command. Traefik runs the official traefik:v3.7.15 image.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BENTOML_DO_NOT_TRACK=true \
    BENTOML_HOME=/srv/bentoml \
    CV_DATA_DIR=/srv/data \
    CV_MODEL_MIRROR_DIR=/mirror/models

RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 cv \
    && mkdir -p /srv/bentoml /srv/data && chown cv:cv /srv/bentoml /srv/data

WORKDIR /srv/app
COPY pyproject.toml README.md ./
COPY kernel kernel
COPY services services
COPY gateway gateway
COPY deploy deploy
COPY bentos bentos
COPY training training
COPY artifacts artifacts
RUN pip install .

USER cv
EXPOSE 3000
CMD ["bentoml", "serve", "services.api:Api", "--host", "0.0.0.0", "--port", "3000"]
