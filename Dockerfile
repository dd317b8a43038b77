# One image for every process: web (the default command), worker and beat (their command
# given by docker-compose.yml or the Kubernetes manifests). docs/operations.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MONITORING_VAR_DIR=/var/lib/monitoring \
    STATIC_ROOT=/app/staticfiles \
    WHITENOISE_USE_FINDERS=false \
    LOG_STREAM=stdout

WORKDIR /app

# ping: ICMP health checks where unprivileged ICMP sockets are not allowed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iputils-ping \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first: this layer is rebuilt only when the pins change.
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

COPY . .

# Static files collected into the image (WhiteNoise serves them); the key is a throw-away
# for this step only: the real SECRET_KEY comes from the environment at run time.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --system --uid 10001 --no-create-home --home-dir /app monitoring \
    && mkdir -p /var/lib/monitoring \
    && chown monitoring /var/lib/monitoring

USER monitoring

# 5002: dashboard, admin, REST API, websockets, /metrics; 8080: Prometheus' query API.
EXPOSE 5002 8080

CMD ["daphne", "-b", "0.0.0.0", "-p", "5002", "-e", "tcp:port=8080", "config.asgi:application"]
