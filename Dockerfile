# syntax=docker/dockerfile:1
# Multi-stage build: a locked release build, then a small distroless runtime as non-root.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# aws-lc-sys builds C code: cmake is not needed for the default build, gcc and make are in the image.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin sqs-access-operator \
 && strip target/release/sqs-access-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sqs-access-operator /usr/local/bin/sqs-access-operator
USER 65532:65532
EXPOSE 8080 8443
ENTRYPOINT ["/usr/local/bin/sqs-access-operator"]
CMD ["run"]
