# syntax=docker/dockerfile:1
# regbackup: build with the full toolchain (zstd-napi compiles native code), run on a slim image with
# production dependencies only, as a non-root user.

# Node.js 24 (Active LTS), pinned to the release package.json's devDependency "node" installs for npm scripts.
FROM node:24.21.0-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts && npm rebuild zstd-napi msgpackr-extract
COPY tsconfig.json ./
COPY src ./src
COPY jobs ./jobs
COPY restore ./restore
COPY bench ./bench
COPY test ./test
RUN npx tsc -p tsconfig.json

FROM node:24.21.0-bookworm AS prod-deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm rebuild zstd-napi msgpackr-extract

FROM node:24.21.0-bookworm-slim AS runtime
# age, zstd and jq: to read backups by hand in an emergency (docs/DISASTER.md, docs/FORMAT.md "Reading a
# repository by hand").
RUN apt-get update && apt-get install -y --no-install-recommends age zstd jq ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system regbackup && useradd --system --gid regbackup --home-dir /var/lib/regbackup --create-home regbackup
WORKDIR /app
COPY --from=prod-deps /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/dist/jobs ./dist/jobs
COPY --from=build /src/dist/restore ./dist/restore
COPY package.json ./
COPY bin ./bin
COPY config ./config
COPY docs ./docs
RUN ln -s /app/bin/regbackup.js /usr/local/bin/regbackup
# Fewer malloc arenas: worker threads otherwise each keep their own, and RSS grows with them. The trim and
# mmap thresholds keep the arenas from giving back and faulting in again the pages of each encrypted segment
# (bin/regbackup.js's shebang sets the same; it says why).
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    MALLOC_TRIM_THRESHOLD_=8388608 \
    MALLOC_MMAP_THRESHOLD_=4194304 \
    XDG_CACHE_HOME=/var/cache \
    REGBACKUP_CONFIG=/etc/regbackup/regbackup.yaml
RUN mkdir -p /var/cache/regbackup && chown regbackup:regbackup /var/cache/regbackup
USER regbackup
VOLUME ["/var/cache/regbackup"]
EXPOSE 9464
# check-health exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: a warning (an RPO creeping up) is reported by
# the monitoring, it is no reason to restart the worker.
HEALTHCHECK --interval=60s --timeout=20s --start-period=30s --retries=3 \
  CMD regbackup check-health --quiet >/dev/null; test $? -le 1
ENTRYPOINT ["tini", "--", "regbackup"]
CMD ["worker"]
