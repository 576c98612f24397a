"""A loader worker stuck inside one call: it takes a request and never answers (tests the kill path)."""

import sys
import time

from ingest.loaders.isolation import recv_frame

if __name__ == "__main__":
    recv_frame(sys.stdin.buffer)
    while True:  # like a parser spinning in native code: no budget checks, no reply
        time.sleep(60)
