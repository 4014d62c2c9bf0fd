# One image for every Librarian process in services mode (see docker-compose.yml): the Dagster
# code server, dagster-webserver, dagster-daemon, the event mirror, the API and the migrations.
# The COPY instructions name exactly what the image needs, so .venv/ and data/ stay out of it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    LIBRARIAN_DATA_DIR=/data

# Dependencies first, in their own layer, so changing the code does not reinstall them.
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY librarian ./librarian
COPY librarian_api ./librarian_api
COPY librarian_assets ./librarian_assets
RUN pip install --no-deps . \
    && cd / && rm -rf /src

# Dagster instance: the repository's dagster.yaml (storage URL from LIBRARIAN_DAGSTER_DATABASE_URL).
# Dagster's local artifacts ($DAGSTER_HOME/storage: op outputs, compute logs) live on the data
# volume next to the watchlist, as they live under the data folder in embedded mode.
RUN useradd --create-home --uid 1000 librarian \
    && mkdir -p "$DAGSTER_HOME" /data/dagster-storage /run/librarian \
    && ln -s /data/dagster-storage "$DAGSTER_HOME/storage" \
    && chown -R librarian:librarian "$DAGSTER_HOME" /data /run/librarian
COPY --chown=librarian:librarian dagster.yaml $DAGSTER_HOME/dagster.yaml

WORKDIR /app
COPY --chown=librarian:librarian workspace.yaml ./

USER librarian
EXPOSE 3000 4266 8000
# Each service in docker-compose.yml sets its own command.
CMD ["python", "-m", "librarian", "--help"]
