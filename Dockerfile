# One image for every Dagster service of docker-compose.yml (and for Dagster's Helm chart as a
# user-code deployment): the package with its object-store and distributed extras, the instance
# config in DAGSTER_HOME. Each service only chooses its command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.cfg README.md workspace.yaml ./
COPY mcp_training_dagster ./mcp_training_dagster
COPY config ./config
RUN pip install --no-cache-dir '.[s3,distributed]' \
    && mkdir -p /opt/dagster/home \
    && cp config/dagster.distributed.yaml /opt/dagster/home/dagster.yaml
ENV DAGSTER_HOME=/opt/dagster/home MCP_TRAINING_CONFIG_DIR=/app/config
