"""The measurement agent: an HTTP service on the deployment target that times uploaded ONNX models.

A search on a workstation sends each candidate here and gets the latency the target really has (settled point 5).
Measurements queue behind one lock, because two models timed at once disturb each other (settled point 6); the
event loop stays free meanwhile, so `/health` answers during a long measurement. Uploads are checked as ONNX
protobuf and nothing else: the agent never unpickles, so a hostile body can fail a request but not run code.

Every measurement setting is bounded (LIMITS, published in `/info`): a request beyond a limit is refused with 422
before it queues, and the timing process is killed past its protocol's bounds (timer_timeout_s), so one request
holds the measuring lock for at most `max_request_s`. With a token, `/openapi.json` needs it too and the
interactive `/docs` and `/redoc` pages (which could not send it) are not served.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from math import prod
from pathlib import Path
from typing import Annotated, Any

import onnx
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from google.protobuf.message import DecodeError
from pydantic import ValidationError

from nas import __version__
from nas.errors import ConfigError, TrialError, did_you_mean
from nas.hardware import BACKENDS, HardwareProfile, Measurement, Protocol, create_backend
from nas.hardware.device_info import local_device_info
from nas.hardware.onnxruntime_cpu import timer_timeout_s
from nas.hardware.remote import SETTINGS_HEADER, MeasureSettings

MB = 2**20
ONNX_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Limits:
    """The largest measurement settings the agent takes: each far above any profile nas ships (the `cpu` profile
    times for at most 20 s, batch 1 and 16), and together small enough that no request holds the device for long."""

    input_dims: int = 4
    """[C, H, W] or [C, D, H, W]."""
    input_side: int = 4096
    input_elements: int = 2**24
    """One sample's values (64 MB as float32)."""
    batch: int = 64
    throughput_batch: int = 256
    batch_elements: int = 2**26
    """Values of the largest batch fed at once (256 MB as float32)."""
    threads: int = 256
    """More would only oversubscribe the cores; a million would exhaust the process."""
    warmup_runs: int = 1000
    warmup_s: float = 5.0
    min_runs: int = 100_000
    seconds: float = 20.0
    """max_seconds, min_seconds and throughput_min_seconds."""
    throughput_min_runs: int = 10_000
    percentiles: int = 10
    max_attempts: int = 3
    """Timings of one model, retakes of a disturbed one included."""
    quiet_wait_s: float = 30.0
    """The most one measurement waits, in all, for a disturbed machine to quiet."""
    sessions: int = 10
    """Fresh timing processes per model (each with its own attempts and wait)."""

    @property
    def max_request_s(self) -> float:
        """The longest one request may hold the measuring lock: every attempt's timing process killed at its
        timeout, with the pause between attempts. A request asking for several sessions must fit in it too
        (`request_s`)."""
        worst = Protocol(warmup_s=self.warmup_s, max_seconds=self.seconds, min_seconds=self.seconds)
        return request_s(worst.model_copy(update={"max_attempts": self.max_attempts,
                                                  "quiet_wait_s": self.quiet_wait_s}))

    def published(self) -> dict[str, Any]:
        return {**asdict(self), "max_request_s": self.max_request_s}

    def problems(self, settings: MeasureSettings) -> list[str]:
        """Each setting above its limit, as 'field value is above the limit N'."""
        p = settings.protocol
        shape = settings.input_shape
        largest_batch = max(settings.batch, settings.throughput_batch)
        checks: list[tuple[str, float, float]] = [
            ("input_shape (dimensions)", len(shape), self.input_dims),
            *((f"input_shape[{i}]", side, self.input_side) for i, side in enumerate(shape)),
            ("input_shape (values per sample)", prod(shape), self.input_elements),
            ("batch", settings.batch, self.batch), ("throughput_batch", settings.throughput_batch,
                                                    self.throughput_batch),
            ("batch x input_shape (values)", largest_batch * prod(shape), self.batch_elements),
            ("threads", settings.threads or 0, self.threads),
            ("protocol.warmup_runs", p.warmup_runs, self.warmup_runs), ("protocol.warmup_s", p.warmup_s, self.warmup_s),
            ("protocol.min_runs", p.min_runs, self.min_runs),
            *((f"protocol.{name}", getattr(p, name), self.seconds)
              for name in ("max_seconds", "min_seconds", "throughput_min_seconds")),
            ("protocol.throughput_min_runs", p.throughput_min_runs, self.throughput_min_runs),
            ("protocol.percentiles (count)", len(p.percentiles), self.percentiles),
            ("protocol.max_attempts", p.max_attempts, self.max_attempts),
            ("protocol.quiet_wait_s", p.quiet_wait_s, self.quiet_wait_s),
            ("protocol.sessions", p.sessions, self.sessions),
            ("the request's longest time (s: sessions x attempts x each timing's timeout, plus waits)",
             request_s(p), self.max_request_s),
        ]
        found = [f"{field} {value:g} is above this agent's limit of {limit:g}" if isinstance(value, float) else
                 f"{field} {value} is above this agent's limit of {limit}" for field, value, limit in checks
                 if value > limit]
        found += [f"protocol.percentiles {q} is outside 0..100" for q in p.percentiles if not 0 <= q <= 100]
        return found


def request_s(protocol: Protocol) -> float:
    """The longest a measurement under `protocol` may hold the lock: every session's attempts killed at their
    timeout, a second's pause after each, and each session's wait for quiet."""
    return protocol.sessions * (protocol.max_attempts * (timer_timeout_s(protocol) + 1.0) + protocol.quiet_wait_s)


LIMITS = Limits()


class _Agent:
    """The state behind the endpoints: the measuring lock, the result cache and the count of measurements."""

    def __init__(self, cache_size: int) -> None:
        self.lock = threading.Lock()
        self.measured = 0
        self.info = local_device_info()
        self.measurable = {name: self.info["precisions"][name] for name in self.info["runtimes"]
                           if name in BACKENDS and not BACKENDS.get(name).needs_model}
        """Runtime -> precisions that /measure accepts: importable here, registered as a latency backend, and
        timing the ONNX file (torch-cuda times the PyTorch module, which an upload never carries)."""
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size

    def cached(self, key: str) -> dict[str, Any] | None:
        with self._cache_lock:
            if key not in self._cache:
                return None
            self._cache.move_to_end(key)
            return self._cache[key]

    def remember(self, key: str, answer: dict[str, Any]) -> None:
        with self._cache_lock:
            self._cache[key] = answer
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def check_limits(self, settings: MeasureSettings) -> None:
        """422 naming every setting above the agent's limits (which /info lists)."""
        problems = LIMITS.problems(settings)
        if problems:
            raise HTTPException(422, f"header {SETTINGS_HEADER}: {'; '.join(problems)} (the limits are in /info)")

    def check_runtime(self, settings: MeasureSettings) -> None:
        """400 for a runtime or precision this device lacks, naming what it has."""
        has = "; ".join(f"{name} ({', '.join(p)})" for name, p in self.measurable.items()) or "none"
        if settings.runtime not in self.measurable:
            why = ("it times the PyTorch module, and the agent accepts only ONNX files"
                   if settings.runtime in BACKENDS and BACKENDS.get(settings.runtime).needs_model
                   else f"not available on this agent{did_you_mean(settings.runtime, self.measurable)}")
            raise HTTPException(400, f"runtime {settings.runtime!r}: {why} ({self.info['device']}); "
                                     f"it measures with: {has}")
        if settings.precision not in self.measurable[settings.runtime]:
            raise HTTPException(400, f"precision {settings.precision!r} is not available for runtime "
                                     f"{settings.runtime!r} on this agent ({self.info['device']}); it has: {has}")

    def measure(self, onnx_bytes: bytes, settings: MeasureSettings, key: str) -> dict[str, Any]:
        """Time one model under the lock (blocking: run it in a worker thread); a request that waited for an
        identical one gets that one's answer."""
        arrived = time.time()
        with self.lock:
            earlier = self.cached(key)
            if earlier is not None:
                return {**earlier, "cached": True, "queue_wait_s": time.time() - arrived}
            started = time.time()
            measurement = _measure_file(onnx_bytes, settings)
            finished = time.time()
            self.measured += 1
        answer = {
            "measurement": measurement.model_copy(update={"method": "remote"}).model_dump(mode="json"),
            "started_at": started,
            "finished_at": finished,
        }
        self.remember(key, answer)
        return {**answer, "cached": False, "queue_wait_s": started - arrived}


def create_app(*, token: str | None, max_upload_mb: float = 200, cache_size: int = 256) -> FastAPI:
    """The agent's app; with `token`, every endpoint but /health needs `Authorization: Bearer <token>`."""
    agent = _Agent(cache_size)
    limit = int(max_upload_mb * MB)
    open_docs = token is None  # loopback only: the browsable pages are served as FastAPI does by default
    app = FastAPI(title="nas measurement agent", version=__version__, docs_url="/docs" if open_docs else None,
                  redoc_url="/redoc" if open_docs else None, openapi_url="/openapi.json" if open_docs else None)

    def authorize(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>' with the token "
                                     "in the agent's --token-file", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "busy": agent.lock.locked(), "measured": agent.measured}

    if not open_docs:
        @app.get("/openapi.json", dependencies=[Depends(authorize)], include_in_schema=False)
        def openapi() -> dict[str, Any]:
            return app.openapi()

    @app.get("/info", dependencies=[Depends(authorize)])
    def info() -> dict[str, Any]:
        return {**local_device_info(), "measurable": agent.measurable, "nas_version": __version__,
                "max_upload_mb": max_upload_mb, "limits": LIMITS.published()}

    @app.post("/measure", dependencies=[Depends(authorize)])
    async def measure(request: Request) -> dict[str, Any]:
        _check_declared_size(request, limit, max_upload_mb)
        settings = _parse_settings(request.headers.get(SETTINGS_HEADER))
        agent.check_runtime(settings)
        agent.check_limits(settings)
        content_type = request.headers.get("content-type", ONNX_CONTENT_TYPE).split(";")[0].strip().lower()
        if content_type != ONNX_CONTENT_TYPE:
            raise HTTPException(415, f"Content-Type {content_type!r} is not accepted: send the raw bytes of the "
                                     f".onnx file with Content-Type: {ONNX_CONTENT_TYPE}")
        body = await _read_body(request, limit, max_upload_mb)
        key = hashlib.sha256(body).hexdigest() + settings.header()
        earlier = agent.cached(key)
        if earlier is not None:
            return {**earlier, "cached": True, "queue_wait_s": 0.0}
        await run_in_threadpool(_check_onnx, body)
        return await run_in_threadpool(agent.measure, body, settings, key)

    return app


def _check_declared_size(request: Request, limit: int, max_upload_mb: float) -> None:
    """413 from the Content-Length header alone, before a byte of an oversize body is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise HTTPException(400, f"Content-Length {declared!r} is not a byte count")
    if int(declared) > limit:
        raise HTTPException(413, _too_large(int(declared), max_upload_mb))


async def _read_body(request: Request, limit: int, max_upload_mb: float) -> bytes:
    """The body, stopped at the limit even when no Content-Length announced its size (chunked uploads)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, _too_large(len(body), max_upload_mb, at_least=True))
    if not body:
        raise HTTPException(400, "the request has no body: send the bytes of the .onnx file")
    return bytes(body)


def _too_large(size: int, max_upload_mb: float, *, at_least: bool = False) -> str:
    return (f"the upload is {'at least ' if at_least else ''}{size / MB:.3f} MB, above this agent's limit of "
            f"{max_upload_mb:g} MB; restart the agent with a larger --max-upload-mb to accept it")


def _parse_settings(raw: str | None) -> MeasureSettings:
    if raw is None:
        raise HTTPException(400, f"missing header {SETTINGS_HEADER}: a JSON object with runtime, precision, "
                                 "input_shape, batch, throughput_batch, threads and protocol")
    try:
        return MeasureSettings.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise HTTPException(422, f"header {SETTINGS_HEADER}: {problems}") from None


def _describe(error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "(the whole value)"
    got = "" if error["type"] in ("missing", "json_invalid") else f" (got {json.dumps(error['input'])})"
    return f"{field}: {error['msg']}{got}"


def _check_onnx(body: bytes) -> None:
    """415 for what is not ONNX, 422 for ONNX the checker rejects or that points at files on this machine."""
    try:
        model = onnx.load_model_from_string(body)
    except (DecodeError, ValueError) as exc:
        raise HTTPException(415, f"the body is not an ONNX model ({type(exc).__name__}: {exc}); send the bytes of "
                                 "a .onnx file") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise HTTPException(422, f"the body is not a valid ONNX model: {type(exc).__name__}: {exc}") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _tensors(model.graph)):
        raise HTTPException(422, "the ONNX model keeps weights in external files, which an upload cannot carry; "
                                 "save it with its weights inside the .onnx file")


def _tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """Every tensor stored in `graph`: initializers and node attributes, subgraphs (If, Loop) included."""
    found = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
    for node in graph.node:
        for attr in node.attribute:
            found += ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                found += _tensors(sub)
    return found


def _measure_file(onnx_bytes: bytes, settings: MeasureSettings) -> Measurement:
    """Time the model with this device's backend; a runtime's refusal becomes 422 with its message."""
    profile = HardwareProfile(
        name="agent-request", description="measured by nas agent", backend=settings.runtime,
        precisions=[settings.precision], threads=settings.threads, batch=settings.batch,
        throughput_batch=settings.throughput_batch, protocol=settings.protocol,
    )
    with tempfile.TemporaryDirectory(prefix="nas-agent-") as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(onnx_bytes)
        try:
            return create_backend(settings.runtime).measure(
                path, profile=profile, precision=settings.precision, input_shape=tuple(settings.input_shape))
        except TrialError as exc:
            raise HTTPException(422, str(exc).replace(str(path), "the uploaded model")) from None
        except ConfigError as exc:
            raise HTTPException(400, str(exc).replace(str(path), "the uploaded model")) from None
