#!/usr/bin/env bash
# Fetch the Gene Ontology SQLite (CC BY 4.0; bookworm's r-bioc-go.db 3.16.0 holds GO release 2022-07-01)
# from Debian into data/external/GO.sqlite, where seqstruct.data.sources.go looks for it by default.
#
#   scripts/fetch_go.sh [DEST_DIR]      (default DEST_DIR: data/external)
#
# Only downloads and unpacks the .deb (apt-get download + dpkg -x): installing it would pull in R.
# Idempotent: does nothing when DEST_DIR/GO.sqlite exists. Writes DEST_DIR/GO.sqlite.source.txt with the
# package version and the file's sha256, for provenance, and a .gitignore that keeps the download out of git.
set -euo pipefail

dest="${1:-data/external}"
target="$dest/GO.sqlite"
if [[ -f "$target" ]]; then
    echo "$target already present"
    exit 0
fi
for tool in apt-get dpkg sha256sum; do
    command -v "$tool" >/dev/null || { echo "fetch_go.sh: needs $tool (Debian/Ubuntu)" >&2; exit 1; }
done

mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# As root, apt-get warns that it downloads "unsandboxed" (the _apt user cannot write here): harmless.
(cd "$work" && apt-get download r-bioc-go.db)
deb="$(ls "$work"/r-bioc-go.db_*.deb)"
dpkg -x "$deb" "$work/root"
sqlite="$work/root/usr/lib/R/site-library/GO.db/extdata/GO.sqlite"
[[ -f "$sqlite" ]] || { echo "fetch_go.sh: $deb holds no GO.db/extdata/GO.sqlite" >&2; exit 1; }

# Copy beside the target, then rename: an interrupted fetch never leaves a truncated GO.sqlite.
cp "$sqlite" "$target.partial"
{
    echo "source: Debian package $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) ($(basename "$deb"))"
    echo "upstream: Gene Ontology (http://geneontology.org), licence CC BY 4.0"
    echo "sha256: $(sha256sum "$target.partial" | cut -d' ' -f1)"
} > "$target.source.txt"
mv "$target.partial" "$target"
# Keep the 86 MB download out of version control unless the directory already says otherwise.
[[ -f "$dest/.gitignore" ]] || printf '*\n' > "$dest/.gitignore"
echo "wrote $target"
