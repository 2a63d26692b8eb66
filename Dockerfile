# The nudge image that docker-compose.yml runs as its worker and scheduler: the pinned tree first (a layer that
# changes only with requirements.lock), then the package and the campaign files it reads from its working folder.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1
WORKDIR /app

COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md ./
COPY engine engine
RUN pip install --no-cache-dir --no-deps .
# Settings' campaigns_dir and templates_dir default to these, relative to the working folder.
COPY campaigns campaigns
COPY templates templates

# Not root: the home volume is this user's.
RUN useradd --create-home --uid 10001 nudge && mkdir -p /var/lib/nudge && chown nudge /var/lib/nudge
USER nudge
CMD ["nudge", "--help"]
