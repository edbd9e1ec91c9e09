"""`python -m inference.simulator --port 8765`: run the provider simulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from inference.simulator.server import Simulator, iter_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.simulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--chunk-delay-ms", type=int, default=0, help="pause between streamed text deltas")
    args = parser.parse_args(argv)
    return run(args.host, args.port, args.chunk_delay_ms)


def run(host: str, port: int, chunk_delay_ms: int = 0) -> int:
    try:
        serve(host, port, chunk_delay_ms)
    except OSError as exc:
        print(f"provider simulator: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def serve(host: str, port: int, chunk_delay_ms: int = 0) -> None:
    """Serve until SIGTERM or Ctrl-C; OSError when the address cannot be bound."""
    sim = Simulator(port=port, host=host, chunk_delay_ms=chunk_delay_ms)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    for line in iter_lines(sim):
        print(line, flush=True)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.released.set()
        sim._server.server_close()


if __name__ == "__main__":
    sys.exit(main())
