FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p pg-webhooks-relay

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pg-webhooks-relay /usr/local/bin/
USER nobody
ENTRYPOINT ["/usr/local/bin/pg-webhooks-relay"]
