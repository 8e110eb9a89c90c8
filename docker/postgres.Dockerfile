# PostgreSQL 15 with pg_webhooks built and installed.
FROM postgres:15-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential clang libclang-dev pkg-config curl ca-certificates postgresql-server-dev-15 \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
RUN cargo install cargo-pgrx --version =0.18.1 --locked && cargo pgrx init --pg15 /usr/bin/pg_config
WORKDIR /src
COPY . .
RUN cd pg_webhooks && cargo pgrx package --pg-config /usr/bin/pg_config

FROM postgres:15-bookworm
COPY --from=build /src/target/release/pg_webhooks-pg15/usr/ /usr/
