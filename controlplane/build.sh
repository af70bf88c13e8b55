#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager for the controlplane tests
# into $XDG_CACHE_HOME/stateful-route/control-plane/<kubernetes version>/ and prints
# that folder. Binaries already there are kept. With KUBEBUILDER_ASSETS set (the
# envtest convention), the binaries found there are used instead and only the missing
# ones are built (envtest ships no kube-controller-manager).
#
# Versions come from go.mod (kubernetes) and etcd/go.mod, so changing a version is
# `go get` plus `go mod tidy` in the module, nothing here.
# Env: GO (default: go on PATH, else /usr/local/go/bin/go), BUILD_JOBS (go build -p, default 2).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
jobs="${BUILD_JOBS:-2}"

if [[ ! -x "$GO" ]]; then
	echo "controlplane/build.sh: no Go toolchain (set GO=/path/to/go)" >&2
	exit 2
fi

kube_version="$(cd "$here" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)"
dest="${XDG_CACHE_HOME:-$HOME/.cache}/stateful-route/control-plane/${kube_version}"
mkdir -p "$dest"

# What `kubectl version` and discovery (/version) report; the same -X flags as
# kubernetes' hack/lib/version.sh. The module zip carries no git commit, so the tag
# stands in for it.
major="${kube_version#v}"
major="${major%%.*}"
minor="${kube_version#v*.}"
minor="${minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X ${pkg}.gitVersion=${kube_version}"
	ldflags+=" -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
	ldflags+=" -X ${pkg}.gitCommit=${kube_version} -X ${pkg}.gitTreeState=clean"
	ldflags+=" -X ${pkg}.buildDate=${build_date}"
done

# build NAME MODULE_DIR PACKAGE [LDFLAGS]: build into $dest unless already there (or in
# KUBEBUILDER_ASSETS). Written to a temporary name first, so an interrupted build never
# leaves a binary that looks complete.
build() {
	local name="$1" dir="$2" pkg="$3" flags="${4:--s -w}"
	if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/${name}" ]]; then
		echo "${name}: from KUBEBUILDER_ASSETS (${KUBEBUILDER_ASSETS})" >&2
		return
	fi
	if [[ -x "${dest}/${name}" ]]; then
		echo "${name}: already built" >&2
		return
	fi
	echo "${name}: building ${pkg} (go build -p ${jobs})" >&2
	local start=$SECONDS
	(cd "$dir" && CGO_ENABLED=0 "$GO" build -p "$jobs" -trimpath -ldflags "$flags" \
		-o "${dest}/.${name}.tmp" "$pkg")
	mv "${dest}/.${name}.tmp" "${dest}/${name}"
	echo "${name}: built in $((SECONDS - start)) s, $(du -h "${dest}/${name}" | cut -f1)" >&2
}

build etcd "$here/etcd" .
build kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kube-controller-manager "$here" k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"

echo "$dest"
