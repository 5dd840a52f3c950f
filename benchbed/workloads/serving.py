"""The inference server that `serve.latency` starts inside the target, as a child process of the agent.

It is the standard library's ThreadingHTTPServer (HTTP/1.1, keep-alive, one thread per connection), not an ASGI
server: the agent and everything it starts must run on a bare interpreter, and a dependency in the target would be
one more thing that differs between boundaries. The model is an MLP (`width` inputs, `layers` hidden layers of
`width`, OUT outputs) on torch (CPU) when present, else numpy, else pure Python (tiny widths only), loaded once.

Wire: POST /infer with `batch × width` float32 values (raw, little-endian) ▸ 200 with `batch × OUT` float32.
POST /result with a JSON body (the controller's results) ▸ printed on stdout as one line for the agent.
The child reports its start-up on stdout, one JSON line per step, with CLOCK_MONOTONIC timestamps
(`time.monotonic`, shared by every process of one kernel) so the agent can split interpreter start, import, load.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

OUT = 16


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def weights(width: int, layers: int) -> list[tuple[int, int, bytes]]:
    """(rows, cols, float32 bytes) per layer from one seeded stdlib generator, so every backend and target
    computes the same function (uniform, unit variance, scaled by 1/sqrt(width))."""
    import array
    import random

    rnd = random.Random(0)
    scale = 2 * 3**0.5 / width**0.5
    out = []
    for rows, cols in [(width, width)] * layers + [(width, OUT)]:
        flat = array.array("f", ((rnd.random() - 0.5) * scale for _ in range(rows * cols)))
        out.append((rows, cols, flat.tobytes()))
    return out


class Model:
    """y = relu(x W1) ... W_out; the weights are built at load time (`weights`), no file is read."""

    def __init__(self, backend: str, width: int, layers: int) -> None:
        self.backend, self.width = backend, width
        layers_ = weights(width, layers)
        if backend == "torch":
            import torch

            torch.set_grad_enabled(False)
            torch.set_num_threads(int(os.environ.get("BENCHBED_SERVE_THREADS") or 1))
            self.torch = torch
            self.w: list[Any] = [
                torch.frombuffer(bytearray(b), dtype=torch.float32).reshape(r, c) for r, c, b in layers_
            ]
        elif backend == "numpy":
            import numpy

            self.np = numpy
            self.w = [numpy.frombuffer(b, dtype=numpy.float32).reshape(r, c) for r, c, b in layers_]
        else:
            import array

            self.w = []
            for r, c, b in layers_:
                flat = array.array("f", b)
                self.w.append([list(flat[i * c : (i + 1) * c]) for i in range(r)])

    def __call__(self, body: bytes) -> bytes:
        n = len(body) // (4 * self.width)
        if n < 1 or len(body) != n * 4 * self.width:
            raise ValueError(f"body of {len(body)} bytes is not a whole batch of {self.width} float32")
        if self.backend == "torch":
            torch = self.torch
            x = torch.frombuffer(bytearray(body), dtype=torch.float32).reshape(n, self.width)
            for w in self.w[:-1]:
                x = torch.relu(x @ w)
            return bytes((x @ self.w[-1]).numpy().tobytes())
        if self.backend == "numpy":
            np = self.np
            x = np.frombuffer(body, dtype=np.float32).reshape(n, self.width)
            for w in self.w[:-1]:
                x = np.maximum(x @ w, 0)
            return bytes((x @ self.w[-1]).astype(np.float32).tobytes())
        import array

        flat = array.array("f", body)
        out = array.array("f")
        for r in range(n):
            x = list(flat[r * self.width : (r + 1) * self.width])
            for i, w in enumerate(self.w):
                y = [sum(xi * wi[j] for xi, wi in zip(x, w, strict=True)) for j in range(len(w[0]))]
                x = y if i == len(self.w) - 1 else [max(0.0, v) for v in y]
            out.extend(x)
        return out.tobytes()


def pick_backend(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    for name in ("torch", "numpy"):
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    return "python"


def main() -> None:
    """argv[1]: JSON {backend, width, layers, bind, port, crash_after}."""
    t_main = time.monotonic()
    cfg = json.loads(sys.argv[1])
    say(step="main", t=t_main)
    backend = pick_backend(cfg["backend"])
    if backend != "python":
        __import__(backend)
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    say(step="imported", t=time.monotonic(), backend=backend)
    model = Model(backend, int(cfg["width"]), int(cfg["layers"]))
    say(step="loaded", t=time.monotonic())
    crash_after = int(cfg.get("crash_after") or 0)
    served = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, code: int, body: bytes, ctype: str = "application/octet-stream") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/result":
                sys.stdout.write(json.dumps({"step": "result", "data": json.loads(body)}) + "\n")
                sys.stdout.flush()
                self._reply(200, b"{}", "application/json")
                return
            if self.path != "/infer":
                self._reply(404, b"")
                return
            served[0] += 1
            if crash_after and served[0] > crash_after:
                sys.stderr.write(f"serve: crash injected after {crash_after} requests (crash_after)\n")
                sys.stderr.flush()
                os._exit(3)
            try:
                out = model(body)
            except ValueError as err:
                self._reply(400, str(err).encode())
                return
            self._reply(200, out)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

        def handle_error(self, request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is no server error
                super().handle_error(request, client_address)

    server = Server((cfg["bind"], int(cfg["port"])), Handler)
    say(step="listening", t=time.monotonic(), port=server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
