# vt's tasks. `just dev` and `just test` are the two a newcomer needs.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install the system packages the build and tests need (idempotent; Debian 12).
setup:
    scripts/setup.sh

# Build every crate.
build:
    cargo build --workspace --all-targets

# Build the guest kernel + initramfs the microVM runtime boots (cached in ~/.cache/vt/guest).
guest:
    scripts/guest.sh

# Run every test: unit, integration, CLI, README examples, end to end (real microVMs).
test: setup guest build
    scripts/test.sh

# rustfmt and clippy, as CI expects them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks (figures go to the README's performance section).
bench:
    cargo bench -p vt-plan -p vt -p vt-tests -p vt-edge --bench planner --bench push_latency --bench microvm --bench tunnel --bench dev_cold_start --bench diff

# Set up, build, and run the sample app (templates/hello, created once in .dev/hello) with `vt dev`.
dev: setup guest
    cargo build -p vt
    [ -f .dev/hello/vt.yaml ] || target/debug/vt init --template hello .dev/hello
    cd .dev/hello && ../../target/debug/vt dev
