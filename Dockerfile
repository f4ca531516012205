# syntax=docker/dockerfile:1
#
# rollgate's container image: `docker build -t rollgate .` (see deploy/README.md).
# The policies baked in at /etc/rollgate/policies are the stock pack, a fallback: mount your own
# folder over it (compose: a bind mount; Kubernetes: the chart's ConfigMap) and edits hot-reload.

# ---- build ------------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src

# Dependencies first, against stub sources, so this layer (the long part of a build) is reused
# until Cargo.toml or Cargo.lock change. benches/policy.rs must exist because the manifest
# declares that bench target; `cargo build` does not compile it.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/policy.rs \
    && cargo build --release --locked \
    && rm -rf src benches

COPY src src
COPY migrations migrations
COPY benches benches
# COPY keeps the files' own modification times, which can be older than the stub build above;
# touching the crate roots makes cargo rebuild rollgate itself rather than keep the stub.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && mkdir -p /out/data \
    && cp target/release/rollgate /out/rollgate

# ---- runtime ----------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc for the Rust binary, CA certificates, no shell, no package
# manager. The CA bundle is required: octocrab's rustls client loads the system roots
# (rustls-native-certs) and cannot reach GitHub without them.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/rollgate /usr/local/bin/rollgate
COPY policies /etc/rollgate/policies
# The SQLite directory, owned by the runtime user (distroless has no shell to mkdir/chown).
COPY --from=build --chown=65532:65532 /out/data /var/lib/rollgate

# A container must listen on every interface (the binary's default is 127.0.0.1).
# SQLite is the single-instance default; set ROLLGATE_DATABASE_URL=postgres://... for replicas.
ENV ROLLGATE_LISTEN=0.0.0.0:8080 \
    ROLLGATE_POLICIES=/etc/rollgate/policies \
    ROLLGATE_DATABASE_URL=sqlite:///var/lib/rollgate/rollgate.db

WORKDIR /var/lib/rollgate
# 65532 is distroless's "nonroot"; numeric so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080

# No HEALTHCHECK: this image has no shell, curl or wget to run one, and rollgate has no
# self-probe subcommand. Probe GET /healthz (alive) and GET /readyz (ready) from outside:
# the Helm chart's liveness and readiness probes do exactly that.
ENTRYPOINT ["/usr/local/bin/rollgate"]
CMD ["serve"]
