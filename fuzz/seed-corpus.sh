#!/usr/bin/env bash
# Builds the fuzz seed corpus from the golden vectors: each frame as a datagram
# seed, and each frame behind its length prefix (plus a split-size byte) as a
# stream seed. Usage: fuzz/seed-corpus.sh  (from anywhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
golden="$here/../protocol/tests/golden"
mkdir -p "$here/corpus/stream_decoder" "$here/corpus/datagram_decoder"
for f in "$golden"/*.frame; do
  name=$(basename "$f" .frame)
  len=$(stat -c %s "$f")
  [ "$len" -le 1200 ] && cp "$f" "$here/corpus/datagram_decoder/$name"
  python3 - "$f" "$here/corpus/stream_decoder/$name" "$len" <<'PY'
import struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = open(src, 'rb').read()
open(dst, 'wb').write(b'\x07' + struct.pack('<I', n) + body)
PY
done
echo "seeded $(ls "$here/corpus/stream_decoder" | wc -l) stream and $(ls "$here/corpus/datagram_decoder" | wc -l) datagram inputs"
