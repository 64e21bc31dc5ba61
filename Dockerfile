# RumorDB node image: `rumor node` on 0.0.0.0, discovering peers by UDP broadcast.
#
# Works on python:3.11-slim-bookworm (python at /usr/local/bin) and on a plain Debian
# bookworm root with python3 + python3-venv (python at /usr/bin), which the project's
# container tests import under this same name: hence `python3 -m venv` and PATH, never
# an absolute interpreter path.
FROM python:3.11-slim-bookworm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home rumor \
    && mkdir -p /data /src \
    && chown rumor:rumor /data

WORKDIR /src

# Runtime dependencies first (read from pyproject, dev extra left out), so code changes
# rebuild only the last layers.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY rumordb rumordb
COPY core core
COPY live live
COPY sim sim
COPY cli cli
RUN pip install --no-deps . \
    && rm -rf /src

WORKDIR /data
USER rumor

ENV RUMOR_DATA_DIR=/data \
    RUMOR_PORT=8001 \
    RUMOR_DISCOVERY_PORT=7946

EXPOSE 8001/tcp 7946/udp
VOLUME ["/data"]

# python, not curl: slim images have no curl. http.client ignores proxy variables.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import http.client as h, os; c = h.HTTPConnection('127.0.0.1', int(os.environ.get('RUMOR_PORT', '8001')), timeout=2); c.request('GET', '/health'); raise SystemExit(c.getresponse().status != 200)"]

# Flags after these (compose `command:` or `docker run IMAGE ...`) are appended; a repeated
# flag wins over the one here.
ENTRYPOINT ["rumor", "node", "--host", "0.0.0.0", "--broadcast", "auto"]
CMD []
