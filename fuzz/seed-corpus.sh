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
# The core driver: scripted traces of real use (connect, handshake, offers,
# timers, results), which the fuzzer mutates from.
mkdir -p "$here/corpus/core_driver"
python3 - "$here/corpus/core_driver" <<'PY'
import os, sys
d = sys.argv[1]
traces = {
    # peer 1 connects, confirms, offers an echo; time passes
    "echo": [2, 1, 4, 1, 5, 1, 9, 3, 97, 98, 99, 0, 0, 0, 1, 5, 0, 6, 10, 10, 4, 1],
    # two peers, an infer offer naming a model, blob chunks, a cancel
    "blobs": [2, 1, 4, 1, 2, 2, 4, 2, 5, 1, 7, 1, 120, 9, 0, 3, 0, 2, 4, 5, 1, 8, 4, 1, 2, 3, 9, 5, 2, 7, 0, 1, 6, 30, 30],
    # beacons from several keys, a submit as requester, dial results
    "discovery": [1, 5, 80, 0, 1, 1, 6, 81, 1, 2, 6, 10, 10, 10, 0, 10, 1, 9, 0, 2, 104, 105, 20, 6, 50, 50],
    # garbage on a connection, a close, a timeout storm
    "garbage": [2, 3, 3, 3, 9, 255, 255, 255, 255, 1, 2, 3, 7, 3, 6, 255, 255, 6, 255, 255],
}
for name, ops in traces.items():
    open(os.path.join(d, name), "wb").write(bytes(ops))
PY
echo "seeded $(ls "$here/corpus/stream_decoder" | wc -l) stream, $(ls "$here/corpus/datagram_decoder" | wc -l) datagram and $(ls "$here/corpus/core_driver" | wc -l) core inputs"
