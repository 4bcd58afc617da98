#!/usr/bin/env bash
# Refreshes the vendored Swagger UI files in ui/swagger-ui/ from the npm
# registry. The build never runs this: the files are committed and embedded.
#
# To move to another version: set VERSION, run this once (it fails and prints
# the tarball's sha256), check that sum against the registry's integrity
# field (`npm view swagger-ui-dist@VERSION dist.integrity` is sha512 of the
# same tarball, verified by npm itself on download), set SHA256 and run again.
# Then run `go test ./openapi` (it checks ui/swagger-ui/SHA256SUMS and renders
# the page in Chromium).
set -euo pipefail

VERSION=5.35.0
SHA256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6

# Only what the page loads, plus the licence texts the bundle points to.
FILES=(
	swagger-ui-bundle.js
	swagger-ui-bundle.js.LICENSE.txt
	swagger-ui.css
	favicon-32x32.png
	LICENSE
	NOTICE
)

here=$(cd "$(dirname "$0")" && pwd)
dest=$here/ui/swagger-ui
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

npm pack --silent --pack-destination "$tmp" "swagger-ui-dist@$VERSION" >/dev/null
tgz=$tmp/swagger-ui-dist-$VERSION.tgz
got=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
	echo "vendor-assets.sh: swagger-ui-dist-$VERSION.tgz has sha256 $got, want $SHA256" >&2
	exit 1
fi
tar -xzf "$tgz" -C "$tmp"

rm -rf "$dest"
mkdir -p "$dest"
for f in "${FILES[@]}"; do
	cp "$tmp/package/$f" "$dest/$f"
done
(cd "$dest" && sha256sum "${FILES[@]}" >SHA256SUMS)
printf 'swagger-ui-dist %s\ntarball sha256 %s\n' "$VERSION" "$SHA256" >"$dest/VERSION"
echo "vendored swagger-ui-dist $VERSION into ${dest#"$here"/}"
