# syntax=docker/dockerfile:1
# The Weir agent image: BPF objects, the N-API addon and the TypeScript, built in one stage and
# copied into a slim runtime. Build from the repository root:
#   docker build -t REGISTRY/weir:0.1.0 .
# amd64 only for now: bpf/Makefile compiles for __TARGET_ARCH_x86.

# ---- build: Debian bookworm with Node 20 and the toolchain scripts/setup.sh installs ----
FROM node:20-bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
# clang/llvm: the BPF objects; libbpf-dev, libelf-dev, zlib1g-dev, g++, pkg-config: the addon;
# linux-libc-dev: the kernel uapi headers clang -target bpf includes
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev libelf-dev zlib1g-dev linux-libc-dev make g++ pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# dependencies first, so a source change does not reinstall them
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY bpf ./bpf
COPY native ./native
COPY src ./src
# the same three steps as scripts/build.sh; only src/ is there, so tsc compiles the agent alone
# (tsconfig's test/ and bench/ globs match nothing)
RUN make -s -C bpf && make -s -C native && npx tsc -p .
RUN npm prune --omit=dev

# ---- runtime: Node 20 on bookworm-slim, libbpf and iproute2 (pod discovery runs `ip`) ----
FROM node:20-bookworm-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/weir
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/bpf/build ./bpf/build
COPY --from=build /src/native/build/weir_bpf.node ./native/build/weir_bpf.node
COPY LICENSE ./LICENSE
COPY bpf/LICENSE.GPL-2.0 bpf/LICENSE.BSD-2-Clause ./bpf/
# root, with the capabilities the chart grants (the agent refuses to start as another user)
USER 0
ENTRYPOINT ["node", "/opt/weir/dist/src/cli/main.js"]
CMD ["agent", "--help"]
