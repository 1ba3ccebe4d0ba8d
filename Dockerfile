# showroom container image: a static-enough release binary on a distroless base.
# Build: docker build -t ghcr.io/showroom-dev/showroom:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > benches/sim.rs && echo 'fn main() {}' > benches/showroom.rs \
    && cargo build --release --locked --bin showroom \
    && rm -rf src benches
COPY src ./src
COPY templates ./templates
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin showroom \
    && strip target/release/showroom

# glibc, CA certificates, a nonroot user (65532) and nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/showroom /usr/local/bin/showroom
COPY snapshots /etc/showroom/snapshots
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/showroom"]
CMD ["serve"]
