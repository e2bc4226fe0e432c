# Multi-stage build: compile in the Rust image, run on slim Debian.
# The exact compiler link/hot-code.txt was made with (its header line): another one names the
# functions differently and the layout would not apply (build.rs warns).
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# A workspace member (the demo's DigitalOcean simulator): cargo needs every member to resolve.
COPY crates ./crates
COPY migrations ./migrations
# The hot-code layout build.rs hands to the linker (about 8 MiB less resident memory).
COPY link ./link
COPY benches ./benches
RUN cargo build --release --locked --bin deploywatch

FROM debian:bookworm-slim
# ca-certificates for the DigitalOcean API and HTTPS probes; git for file:// repository mirrors.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/deploywatch deploywatch \
 && mkdir -p /var/lib/deploywatch && chown deploywatch /var/lib/deploywatch
COPY --from=build /src/target/release/deploywatch /usr/local/bin/deploywatch
USER deploywatch
WORKDIR /var/lib/deploywatch
ENV DEPLOYWATCH_LISTEN=0.0.0.0:9797
EXPOSE 9797
HEALTHCHECK --interval=15s --timeout=3s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/9797"]
ENTRYPOINT ["/usr/local/bin/deploywatch"]
CMD ["serve"]
