#!/usr/bin/env bash
# Build, or reuse from the cache, the binaries of the test control plane:
# kube-apiserver, etcd, helm, and kubectl when this machine has none within
# one minor version of the pinned API server.
#
# Everything comes from the Go module proxy at the versions pinned in
# versions.env beside this script; nothing is downloaded prebuilt. Binaries
# land in  $RAYSHIP_CACHE/bin/<version>/<name>  (RAYSHIP_CACHE defaults to
# ~/.cache/rayship); the Go module and build caches live under
# $RAYSHIP_CACHE/go, so caching that one folder in CI makes a rebuild cheap.
# A binary already in the cache that reports the pinned version is reused.
#
# On success, stdout carries exactly one NAME=/absolute/path line per tool
# (KUBE_APISERVER, ETCD, HELM, KUBECTL); progress and errors go to stderr.
# On failure the last line on stderr names the step that failed, after the
# tail of that step's output.
#
# Environment:
#   RAYSHIP_CACHE        cache root (default ~/.cache/rayship)
#   RAYSHIP_BUILD_JOBS   go build -p (default 2)
#   RAYSHIP_KUBECTL      use this kubectl and build none
#   GO                   go command (default: go on PATH, else /usr/local/go/bin/go)
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"

CACHE="${RAYSHIP_CACHE:-$HOME/.cache/rayship}"
BIN="$CACHE/bin"
WORK="$CACHE/build"
mkdir -p "$BIN" "$WORK"
# One build at a time per cache (parallel pytest workers, a developer's shell).
if command -v flock >/dev/null; then
    exec 9>"$CACHE/build.lock"
    flock 9
fi
LOG="$(mktemp "${TMPDIR:-/tmp}/rayship-build.XXXXXX")"

STEP="setup"
log() { printf 'build.sh: %s\n' "$*" >&2; }
step() { STEP="$1"; : >"$LOG"; log "[$STEP]"; }
# Run a command; its output goes to stderr and to the current step's log.
run() { "$@" 2>&1 | tee -a "$LOG" >&2; }
report_failure() {
    local rc=$1
    trap - ERR
    if [ -s "$LOG" ]; then
        log "---- last lines of step '$STEP' ----"
        tail -n 25 "$LOG" >&2
    fi
    log "FAILED at step '$STEP' (exit $rc)"
    rm -f "$LOG"
    exit "$rc"
}
on_error() {
    local rc=$?
    # a failure inside ( ... ) is reported once, by the outer shell
    [ "$BASH_SUBSHELL" -eq 0 ] || exit "$rc"
    report_failure "$rc"
}
trap on_error ERR
trap 'rm -f "$LOG"' EXIT

fail() { printf '%s\n' "$*" >>"$LOG"; report_failure 1; }

# ---------------------------------------------------------------- toolchain
step "go toolchain"
GO="${GO:-$(command -v go || true)}"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || fail "no Go toolchain: set GO or put go on PATH (looked for $GO)"
export GOPATH="$CACHE/go"
export GOMODCACHE="$CACHE/go/pkg/mod"
export GOCACHE="$CACHE/go/build-cache"
export GOTOOLCHAIN=local
export GOWORK=off
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -trimpath -p=${RAYSHIP_BUILD_JOBS:-2}"
log "using $("$GO" version) ; cache $CACHE"

KUBE_MINOR="$(cut -d. -f2 <<<"$KUBE_VERSION")"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"   # e.g. v1.34.10 -> v0.34.10

# Print the value of a string field of `go mod download -json` output.
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }

# A string field of a module's .info file from the proxy (Time; Origin's Hash
# when the proxy records it), or nothing.
info_field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$2" 2>/dev/null | head -n 1; }

# Download module@version (outside any module); print its JSON description.
# `go mod download -json` reports errors in the JSON "Error" field.
mod_download() {
    local json rc=0
    json="$(cd "$WORK" && GOFLAGS= "$GO" mod download -json "$1")" || rc=$?
    printf '%s\n' "$json"
    if [ "$rc" -ne 0 ]; then
        printf 'go mod download %s: %s\n' "$1" "$(json_field Error <<<"$json")" >>"$LOG"
        return "$rc"
    fi
}

# ---------------------------------------------------------------- checks of cached binaries
kube_apiserver_ok() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "Kubernetes $KUBE_VERSION" ]; }
kubectl_version() { "$1" version --client -o json 2>/dev/null | json_field gitVersion; }
kubectl_ok() { [ -x "$1" ] && [ "$(kubectl_version "$1")" = "$KUBE_VERSION" ]; }
# grep without -q reads etcd's whole output: `grep -q` exits at the first match, and under
# pipefail etcd's SIGPIPE on the lines after it would fail the check.
etcd_ok() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -x "etcd Version: ${ETCD_VERSION#v}" >/dev/null; }
helm_ok() { [ -x "$1" ] && [ "$("$1" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; }

# kubectl: the machine's own when it is within one minor version of the
# API server (kubectl's supported skew), else one built with kube-apiserver.
KUBECTL_OUT="$BIN/$KUBE_VERSION/kubectl"
step "kubectl: choose"
if [ -n "${RAYSHIP_KUBECTL:-}" ]; then
    KUBECTL_PATH="$RAYSHIP_KUBECTL"
    log "using RAYSHIP_KUBECTL=$KUBECTL_PATH"
elif kubectl_ok "$KUBECTL_OUT"; then
    KUBECTL_PATH="$KUBECTL_OUT"
else
    KUBECTL_PATH=""
    sys_kubectl="$(command -v kubectl || true)"
    if [ -n "$sys_kubectl" ]; then
        sys_minor="$("$sys_kubectl" version --client -o json 2>/dev/null | json_field minor | tr -dc 0-9)"
        if [ -n "$sys_minor" ] && [ $((sys_minor - KUBE_MINOR)) -le 1 ] && [ $((KUBE_MINOR - sys_minor)) -le 1 ]; then
            KUBECTL_PATH="$sys_kubectl"
            log "using $sys_kubectl (client 1.$sys_minor, within one minor of $KUBE_VERSION)"
        else
            log "$sys_kubectl is client 1.${sys_minor:-?}, outside kubectl's +-1 skew of $KUBE_VERSION: building kubectl $KUBE_VERSION"
        fi
    else
        log "no kubectl on PATH: building kubectl $KUBE_VERSION"
    fi
fi

# ---------------------------------------------------------------- kube-apiserver (+ kubectl)
APISERVER_OUT="$BIN/$KUBE_VERSION/kube-apiserver"
if kube_apiserver_ok "$APISERVER_OUT" && [ -n "$KUBECTL_PATH" ]; then
    log "[kube-apiserver] cached: $APISERVER_OUT"
else
    step "kube-apiserver: download k8s.io/kubernetes@$KUBE_VERSION"
    info="$(mod_download "k8s.io/kubernetes@$KUBE_VERSION" 2>>"$LOG")" \
        || fail "could not download k8s.io/kubernetes@$KUBE_VERSION (GOPROXY=$("$GO" env GOPROXY), GOSUMDB=$("$GO" env GOSUMDB))"
    upstream_mod="$(json_field GoMod <<<"$info")"
    git_commit="$(info_field Hash "$(json_field Info <<<"$info")")"
    build_date="$(info_field Time "$(json_field Info <<<"$info")")"
    [ -f "$upstream_mod" ] || fail "no go.mod for k8s.io/kubernetes@$KUBE_VERSION in: $info"

    step "kube-apiserver: generate wrapper module"
    # Staging modules: required at v0.0.0 and replaced by ./staging/src/k8s.io/*
    # upstream; a dependent module cannot use those directory replaces, so each
    # one is replaced by the published tag of the same release.
    staging="$(awk '
        /^require[[:space:]]*\(/ { inreq = 1; next }
        /^replace[[:space:]]*\(/ { inrep = 1; next }
        /^\)/ { inreq = 0; inrep = 0; next }
        inreq && $2 == "v0.0.0" { req[$1] = 1 }
        inrep && $2 == "=>" && $3 ~ /^\.\/staging\/src\/k8s\.io\// { rep[$1] = 1 }
        END { for (m in rep) if (m in req) print m }' "$upstream_mod" | sort)"
    [ -n "$staging" ] || fail "found no staging modules in $upstream_mod"
    wrapper="$WORK/kube-$KUBE_VERSION"
    mkdir -p "$wrapper"
    {
        echo "// Generated by tests/controlplane/build.sh: builds k8s.io/kubernetes $KUBE_VERSION binaries."
        echo "module rayship.test/kube-build"
        echo
        grep -E '^(go|godebug) ' "$upstream_mod"
        echo
        echo "require k8s.io/kubernetes $KUBE_VERSION"
        echo
        echo "replace ("
        for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
        echo ")"
    } >"$wrapper/go.mod.new"
    if ! cmp -s "$wrapper/go.mod.new" "$wrapper/go.mod"; then
        mv "$wrapper/go.mod.new" "$wrapper/go.mod"
        rm -f "$wrapper/go.sum"
    else
        rm -f "$wrapper/go.mod.new"
    fi
    log "$(wc -w <<<"$staging") staging modules replaced by $STAGING_VERSION"

    pkgs=(k8s.io/kubernetes/cmd/kube-apiserver)
    [ -n "$KUBECTL_PATH" ] || pkgs+=(k8s.io/kubernetes/cmd/kubectl)
    step "kube-apiserver: go build ${pkgs[*]##*/} $KUBE_VERSION"
    ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$KUBE_MINOR"
        ldflags+=" -X $p.gitTreeState=clean -X $p.gitCommit=$git_commit -X $p.buildDate=$build_date"
    done
    out="$wrapper/out"
    rm -rf "$out" && mkdir -p "$out"
    start=$SECONDS
    (cd "$wrapper" && run "$GO" build -mod=mod -ldflags "$ldflags" -o "$out/" "${pkgs[@]}")
    log "built in $((SECONDS - start))s"

    step "kube-apiserver: check and install"
    kube_apiserver_ok "$out/kube-apiserver" \
        || fail "built kube-apiserver reports '$("$out/kube-apiserver" --version 2>&1)', want 'Kubernetes $KUBE_VERSION'"
    mkdir -p "$BIN/$KUBE_VERSION"
    mv -f "$out/kube-apiserver" "$APISERVER_OUT"
    if [ -z "$KUBECTL_PATH" ]; then
        kubectl_ok "$out/kubectl" || fail "built kubectl reports '$(kubectl_version "$out/kubectl")', want $KUBE_VERSION"
        mv -f "$out/kubectl" "$KUBECTL_OUT"
        KUBECTL_PATH="$KUBECTL_OUT"
    fi
fi

# ---------------------------------------------------------------- etcd
ETCD_OUT="$BIN/$ETCD_VERSION/etcd"
if etcd_ok "$ETCD_OUT"; then
    log "[etcd] cached: $ETCD_OUT"
else
    step "etcd: generate wrapper module"
    wrapper="$WORK/etcd-$ETCD_VERSION"
    mkdir -p "$wrapper"
    printf '// Generated by tests/controlplane/build.sh.\nmodule rayship.test/etcd-build\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
        "$("$GO" env GOVERSION | sed 's/^go//')" "$ETCD_VERSION" >"$wrapper/go.mod.new"
    if ! cmp -s "$wrapper/go.mod.new" "$wrapper/go.mod"; then
        mv "$wrapper/go.mod.new" "$wrapper/go.mod"
        rm -f "$wrapper/go.sum"
    else
        rm -f "$wrapper/go.mod.new"
    fi

    step "etcd: go build go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    out="$wrapper/out"
    rm -rf "$out" && mkdir -p "$out"
    start=$SECONDS
    (cd "$wrapper" && run "$GO" build -mod=mod -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
    log "built in $((SECONDS - start))s"

    step "etcd: check and install"
    etcd_ok "$out/etcd" || fail "built etcd reports '$("$out/etcd" --version 2>&1 | head -n 1)', want ${ETCD_VERSION#v}"
    mkdir -p "$BIN/$ETCD_VERSION"
    mv -f "$out/etcd" "$ETCD_OUT"
fi

# ---------------------------------------------------------------- helm
HELM_OUT="$BIN/$HELM_VERSION/helm"
if helm_ok "$HELM_OUT"; then
    log "[helm] cached: $HELM_OUT"
else
    major="$(cut -d. -f1 <<<"$HELM_VERSION")"   # v3
    mod="helm.sh/helm/$major"
    step "helm: download $mod@$HELM_VERSION"
    info="$(mod_download "$mod@$HELM_VERSION" 2>>"$LOG")" || fail "could not download $mod@$HELM_VERSION (GOPROXY=$("$GO" env GOPROXY), GOSUMDB=$("$GO" env GOSUMDB))"
    helm_mod="$(json_field GoMod <<<"$info")"
    helm_commit="$(info_field Hash "$(json_field Info <<<"$info")")"
    # helm's release builds stamp the Kubernetes version of their client-go
    # (v0.Y.Z -> 1.Y) as the default for `helm template` and `helm lint`.
    client_go="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$helm_mod")"
    [ -n "$client_go" ] || fail "no k8s.io/client-go requirement in $helm_mod"
    k8s_minor="$(cut -d. -f2 <<<"$client_go")"

    step "helm: go install $mod/cmd/helm@$HELM_VERSION"
    ldflags="-s -w -X $mod/internal/version.version=$HELM_VERSION -X $mod/internal/version.metadata="
    ldflags+=" -X $mod/internal/version.gitCommit=$helm_commit -X $mod/internal/version.gitTreeState=clean"
    for p in pkg/lint/rules pkg/chartutil; do
        ldflags+=" -X $mod/$p.k8sVersionMajor=1 -X $mod/$p.k8sVersionMinor=$k8s_minor"
    done
    out="$WORK/helm-$HELM_VERSION"
    rm -rf "$out" && mkdir -p "$out"
    start=$SECONDS
    (cd "$WORK" && run env GOBIN="$out" "$GO" install -ldflags "$ldflags" "$mod/cmd/helm@$HELM_VERSION")
    log "built in $((SECONDS - start))s"

    step "helm: check and install"
    helm_ok "$out/helm" || fail "built helm reports '$("$out/helm" version 2>&1)', want $HELM_VERSION"
    mkdir -p "$BIN/$HELM_VERSION"
    mv -f "$out/helm" "$HELM_OUT"
fi

STEP="done"
echo "KUBE_APISERVER=$APISERVER_OUT"
echo "ETCD=$ETCD_OUT"
echo "HELM=$HELM_OUT"
echo "KUBECTL=$KUBECTL_PATH"
log "ready: kube-apiserver $KUBE_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION, kubectl $KUBECTL_PATH"
