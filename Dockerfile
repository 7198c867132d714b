# syntax=docker/dockerfile:1
# VokeTag: one image for every service group; SERVICES picks the group at run time (k8s/).
# Built after CI has linted, type-checked and tested the same commit: the image only ships it.
#
#   docker build -t voketag .
#   docker run --read-only --tmpfs /tmp --tmpfs /data -p 3000:3000 voketag      # embedded, all services
#
# The root filesystem may be read-only: the process writes only to $TMPDIR (/tmp: tsx's compile
# cache) and $VOKETAG_DATA_DIR (/data: the embedded database and dev chain; unused in a cluster).
# No secret is baked in: give them at run time as files (*_FILE variables, OPERATIONS.md).

ARG NODE_IMAGE=node:22-bookworm-slim

# ---- 1. production dependencies, exactly as locked ------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# argon2 ships prebuilt binaries for linux-x64/arm64 glibc: no compiler is needed here.
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# ---- 2. runtime --------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=3000 \
    HEALTH_PORT=9091 \
    METRICS_PORT=9090 \
    VOKETAG_DATA_DIR=/data \
    TMPDIR=/tmp \
    NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
# Owned by root and not writable by the app's user: the code cannot be changed by the process.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json moleculer.config.ts ./
COPY bin ./bin
COPY lib ./lib
COPY mixins ./mixins
COPY services ./services
# The CLI (bin/cli) talks to servers through the SDK.
COPY sdk ./sdk
COPY migrations ./migrations
# The admin web console's static files (served by the admin service at /admin).
COPY console ./console
# Operator tooling run with kubectl exec (docs/RUNBOOK-backup-restore.md).
COPY scripts/verify-ledger.ts ./scripts/
RUN mkdir -p /data && chown 1000:1000 /data
# The image's `node` user, by number so that Kubernetes can verify runAsNonRoot.
USER 1000:1000
EXPOSE 3000 9090 9091
# The node's own liveness: the probe listener (HEALTH_PORT) when it is up, else the api's port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "(async()=>{for(const p of [process.env.HEALTH_PORT,process.env.PORT||3000].filter(Boolean)){try{const r=await fetch('http://127.0.0.1:'+p+'/v1/health');if(r.ok)process.exit(0)}catch{}}process.exit(1)})()"]
# SIGTERM: stop taking work, finish what is in flight, exit within 10 s (bin/node.ts).
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "bin/node.ts"]
