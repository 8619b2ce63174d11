"""The supervisor: launches models into workers, tracks their state, routes calls, ends them.

It talks to workers only through a backend's small interface (spawn, and per worker: launch,
call, stream, stop), so a distributed backend can replace the local one without touching routes.

A worker that dies is started again (`restart: "on-failure"`, the default): after a short
backoff, at most `restart_max` times within `restart_window` seconds, past which its model stays
FAILED with the reason. Acknowledged launches are written to the state (`launches.LaunchLog`) and
restored, in launch order, when the server starts again; every launch, exit, restart, restore and
termination is one of the model's events.

Every call is counted in flight on its model while it runs: `request_limits` at launch caps them
(the rest get a 429), and a model idle for its `keep_alive` is unloaded (its worker stopped; it
stays listed, `UNLOADED`) and loaded again by the next request that names it, which waits for it
up to `load_wait`. `max_loaded_models` unloads the least recently used idle model to make room,
and with `load_on_demand` a request naming a registered model that is not running launches it.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from modelyard import venv
from modelyard.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    LaunchFailed,
    ModelyardError,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from modelyard.keys import ApiKey, parse_duration
from modelyard.plugins import Plugins
from modelyard.registry import Registry
from modelyard.types import ModelSpec, Registration, a_model_of, check_name_length
from modelyard.types.flexible import FlexibleRegistration
from modelyard.venv import Virtualenvs
from modelyard.worker import protocol as wire
from modelyard_server import gpus
from modelyard_server.gates import require_admin
from modelyard_server.launches import LaunchLog
from modelyard_server.local_backend import LocalProcessBackend, LocalWorker, WorkerGone, log_tail
from modelyard_server.protocol import LaunchModelRequest
from modelyard_server.settings import Settings

log = logging.getLogger(__name__)

MODEL_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# seconds before each restart within the window: the first at once, as a crash is often a one-off
RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
RESTART_POLICIES = ("on-failure", "never")
IDLE_CHECK_SECONDS = 0.2
MAX_REPLICAS = 64


def parse_keep_alive(value: Any) -> float:
    """Seconds from keep_alive's forms: a number, a duration ("10m"), -1 (never) or 0 (after each request)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (-1, 0):
        return float(value)
    if isinstance(value, str) and value.strip() in ("-1", "0"):
        return float(value)
    try:
        return parse_duration(value)
    except InvalidRequest:
        raise InvalidRequest(f"keep_alive must be seconds, a duration such as '10m', -1 (never unload) or 0 (unload "
                             f"after each request), got {value!r}.") from None


class Status(str, enum.Enum):
    LAUNCHING = "LAUNCHING"
    READY = "READY"
    UNHEALTHY = "UNHEALTHY"
    FAILED = "FAILED"
    RESTARTING = "RESTARTING"
    UNLOADED = "UNLOADED"
    TERMINATING = "TERMINATING"


# A model's status is its best replica's: it serves while any replica is READY.
_BEST_FIRST = (Status.READY, Status.LAUNCHING, Status.RESTARTING, Status.UNHEALTHY, Status.FAILED)


@dataclass
class Replica:
    """One worker process of a model, with its own health and restarts."""

    index: int
    status: Status = Status.LAUNCHING
    worker: LocalWorker | None = None
    error: str | None = None
    in_flight: int = 0
    chosen: int = 0  # when a call last went to it (a counter): ties go to the one chosen longest ago
    restarts: int = 0  # how many times its worker was started again
    restart_times: list[float] = field(default_factory=list)  # when, within the window
    retry_at: float | None = None  # while RESTARTING: when the next try starts
    last_exit: dict[str, Any] | None = None  # its worker's last unexpected exit: code, signal, log tail

    @property
    def pid(self) -> int | None:
        return self.worker.pid if self.worker is not None else None

    def describe(self) -> dict[str, Any]:
        return {"replica": self.index, "pid": self.pid, "status": self.status.value, "error": self.error,
                "in_flight": self.in_flight, "restarts": self.restarts,
                "last_exit": None if self.last_exit is None else {k: v for k, v in self.last_exit.items()
                                                                  if k != "log_tail"}}


@dataclass
class ModelRecord:
    uid: str
    model_name: str
    model_type: str
    registration: Registration
    abilities: list[str]  # as declared: Xinference's vocabulary, kept whole
    engine: str | None = None
    launcher: str | None = None
    replicas: list[Replica] = field(default_factory=lambda: [Replica(0)])
    # the model's own state over its replicas': UNLOADED (no worker on purpose) or TERMINATING
    state: Status | None = None
    created_at: float = field(default_factory=time.time)
    stderr_tail: str | None = None
    env_key: str | None = None
    spec: ModelSpec | None = None
    launched_by: str | None = None  # the id of the API key that launched it
    methods: list[str] = field(default_factory=list)  # what the worker answers, once READY
    # the versions the worker imports of the packages its runner and env name, once READY
    packages: dict[str, str | None] = field(default_factory=dict)
    # every stage the launch went through, so a client polling slowly still sees each one
    history: list[dict[str, Any]] = field(
        default_factory=lambda: [{"stage": "queued", "progress": 0.0, "message": "", "at": time.time()}])
    restart: str = "on-failure"
    # what starting a worker again runs: (launch message, worker env, env plan, launch timeout)
    start_args: tuple | None = None
    keep_alive: float = -1.0  # seconds idle before it is unloaded; -1 never, 0 after each request
    request_limit: int | None = None  # the most calls in flight at once (`request_limits`)
    waiting: int = 0  # requests waiting for it to load
    last_used: float = field(default_factory=time.monotonic)
    load_seconds: float | None = None  # its last load, from its workers' start
    loads: int = 0  # how many times it was loaded (launch, reload after an unload)
    # a load that requests wait for: a reload of an unloaded model, or a launch on demand
    loading: asyncio.Task | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)  # its starts and restarts: terminate() cancels them

    @property
    def status(self) -> Status:
        if self.state is not None:
            return self.state
        found = {replica.status for replica in self.replicas}
        return next(status for status in _BEST_FIRST if status in found)

    @property
    def error(self) -> str | None:
        if self.status == Status.READY:
            return None
        return next((replica.error for replica in self.replicas if replica.error), None)

    @property
    def in_flight(self) -> int:
        return sum(replica.in_flight for replica in self.replicas)

    @property
    def pid(self) -> int | None:
        return next((replica.pid for replica in self.replicas if replica.pid is not None), None)

    @property
    def restarts(self) -> int:
        return sum(replica.restarts for replica in self.replicas)

    @property
    def last_exit(self) -> dict[str, Any] | None:
        exits = [replica.last_exit for replica in self.replicas if replica.last_exit is not None]
        return max(exits, key=lambda e: e["at"]) if exits else None

    @property
    def retry_at(self) -> float | None:
        return min((r.retry_at for r in self.replicas if r.retry_at is not None), default=None)

    def note_progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.history.append({"stage": stage, "progress": fraction, "message": message, "at": time.time()})

    @property
    def progress(self) -> dict[str, Any]:
        """The launch's latest stage."""
        return self.history[-1]

    def describe(self) -> dict[str, Any]:
        reg = self.registration
        last_exit = self.last_exit
        described = {
            "id": self.uid,
            "object": "model",
            "owned_by": "modelyard",
            "model_uid": self.uid,
            "model_type": self.model_type,
            "model_name": self.model_name,
            "model_ability": self.abilities,
            "methods": self.methods,
            "model_description": reg.model_description,
            "model_engine": self.engine,
            "status": self.status.value,
            "pid": self.pid,
            "replica": len(self.replicas),
            "replicas": [replica.describe() for replica in self.replicas],
            "created": int(self.created_at),
            "error": self.error,
            "exit_code": last_exit["code"] if last_exit else None,
            "stderr_tail": self.stderr_tail,
            "virtualenv": self.env_key,
            "launched_by": self.launched_by,
            "packages": self.packages,
            "restart": self.restart,
            "restarts": self.restarts,
            "last_exit": last_exit,
            "keep_alive": self.keep_alive,
            "request_limits": self.request_limit,
            "in_flight": self.in_flight,
            "load_seconds": self.load_seconds,
        }
        if isinstance(reg, FlexibleRegistration):
            described.update(launcher=reg.launcher, launcher_args=reg.launcher_args, model_uri=reg.model_uri)
        if self.spec is not None:
            spec = self.spec
            described.update(model_format=spec.model_format, model_size_in_billions=spec.model_size_in_billions,
                             quantization=spec.quantization, model_hub=spec.model_hub, revision=spec.model_revision)
        for key in ("model_lang", "model_family", "context_length"):
            if hasattr(reg, key):
                described[key] = getattr(reg, key)
        return described


class Supervisor:
    def __init__(self, plugins: Plugins, registry: Registry, backend: LocalProcessBackend,
                 venvs: Virtualenvs, launches: LaunchLog, settings: Settings | None = None):
        self.plugins = plugins
        self.registry = registry
        self.backend = backend
        self.venvs = venvs
        self.launches = launches
        self.settings = settings or Settings()
        self.models: dict[str, ModelRecord] = {}
        self._stopping: set[asyncio.Task] = set()  # unloaded workers on their way out
        self._watch: asyncio.Task | None = None
        self._idle: asyncio.Task | None = None
        self._calls = itertools.count(1)
        self._closing = False

    def start(self) -> None:
        """Begin watching the workers' health and idleness; call from the running event loop."""
        self._watch = asyncio.get_running_loop().create_task(self._watch_health())
        self._idle = asyncio.get_running_loop().create_task(self._watch_idle())

    # -- launch ---------------------------------------------------------------------------

    def _allocate_uid(self, request: LaunchModelRequest) -> str:
        if request.model_uid is not None:
            uid = request.model_uid
            check_name_length("model_uid", uid)
            if not MODEL_UID.match(uid):
                raise InvalidRequest(f"Invalid model_uid {uid!r}: it must start with a letter or digit and "
                                     "hold only letters, digits, '.', '_' and '-'.")
            existing = self.models.get(uid)
            if existing is not None and existing.status != Status.FAILED:
                raise Conflict(f"A model with uid {uid!r} is already running; terminate it or choose another uid.")
            return uid
        uid, n = request.model_name, 1
        while uid in self.models:
            uid, n = f"{request.model_name}-{n}", n + 1
        return uid

    async def launch(self, request: LaunchModelRequest, wait_ready: bool = True,
                     key: ApiKey | None = None, restoring: bool = False) -> ModelRecord:
        check_name_length("model_name", request.model_name)
        restart = request.restart or "on-failure"
        if restart not in RESTART_POLICIES:
            raise InvalidRequest(f"restart must be one of {', '.join(RESTART_POLICIES)}, got {restart!r}.")
        keep_alive = self.settings.keep_alive if request.keep_alive is None else parse_keep_alive(request.keep_alive)
        replicas = 1 if request.replica is None else request.replica
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
            raise InvalidRequest(f"replica must be a whole number from 1 to {MAX_REPLICAS} (the model's worker "
                                 f"processes), got {replicas!r}.")
        limit = request.request_limits
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidRequest(f"request_limits must be a positive integer (the most requests in flight at once), "
                                 f"got {limit!r}.")
        timeout = self.settings.launch_timeout if request.launch_timeout is None else request.launch_timeout
        if not 0 < timeout < math.inf:
            raise InvalidRequest(f"launch_timeout must be a positive number of seconds, got {timeout!r}.")
        entry = self.registry.get(request.model_type, request.model_name)
        model_type = self.plugins.model_type(entry.model_type)
        registration = entry.registration
        self.settings.gates.check_launch(request, registration, self.plugins, key)
        runner = model_type.resolve(self.plugins, registration, request.selection())
        worker_env = {**(request.envs or {}), **gpus.placement(request.gpu_idx, request.n_gpu)}
        env = venv.plan(registration.virtualenv, enable=request.enable_virtual_env,
                        extra_packages=request.virtual_env_packages or (),
                        extra_find_links=request.virtual_env_find_links or (), requirements=runner.requirements,
                        excluded=runner.excluded_packages, constraints=runner.constraints)
        if env is not None and not self.venvs.complete(env.key):
            require_admin(key, f"Building a virtualenv ({', '.join(env.packages)}: their builds run code)")
        uid = self._allocate_uid(request)
        stale = self.models.get(uid)
        if stale is not None:  # a FAILED model under the uid asked for: the new launch replaces it
            await self.terminate(uid)
        record = ModelRecord(uid=uid, model_name=request.model_name, model_type=model_type.name,
                             registration=registration, abilities=registration.abilities(model_type),
                             engine=runner.name if runner.kind == "engine" else None,
                             launcher=runner.name if runner.kind == "launcher" else None, spec=runner.spec,
                             env_key=env.key if env is not None else None,
                             launched_by=key.id if key is not None else None, restart=restart,
                             keep_alive=keep_alive, request_limit=limit,
                             replicas=[Replica(i) for i in range(replicas)])
        self._make_room(record)
        self.models[uid] = record
        if env is not None:
            self.venvs.acquire(env.key, uid)  # before the build, so nobody removes it under us
        launch = {
            "model_uid": uid,
            "model_type": model_type.name,
            "model_name": request.model_name,
            "registration": registration.model_dump(mode="json"),
            "runner": runner.as_message(),
            "spec": runner.spec.model_dump(mode="json") if runner.spec is not None else None,
            "model_path": request.model_path,
            "kwargs": dict(request.model_extra or {}),  # every key the protocol does not name
            "packages": venv.package_names([*runner.requirements, *(registration.virtualenv.packages
                                                                   if registration.virtualenv else ()),
                                            *(request.virtual_env_packages or ())]),
        }
        record.start_args = (launch, worker_env, env, timeout)
        if request.restore is not False:  # acknowledged from here on: a restart of the server restores it
            custom = None if entry.builtin else {"model_type": model_type.name,
                                                 "model": registration.model_dump(mode="json")}
            self.launches.record(uid, request.model_dump(mode="json", exclude_none=True) | {"model_uid": uid},
                                 record.launched_by, custom)
        self.launches.event(uid, "restored" if restoring else "launched", key_id=record.launched_by,
                            model_name=request.model_name, restart=restart)
        task = record.loading = self._track(record, self._start(record))
        if wait_ready:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # our own caller went away
                raise LaunchFailed(f"Model {uid!r} was terminated while it was launching.") from None
            except LaunchFailed as exc:
                if restoring:
                    raise  # listed as FAILED, with the reason in its events; restored again next time
                if self.models.get(uid) is record:
                    del self.models[uid]  # the caller gets the error; nothing is left to clean up
                    self.launches.forget(uid)
                raise LaunchFailed(f"Failed to launch model {uid!r}: {exc.message}") from None
        return record

    def _track(self, record: ModelRecord, start: Any) -> asyncio.Task:
        """Run a start of the model's workers as a task that terminate() can cancel."""
        task = asyncio.get_running_loop().create_task(start)
        record.tasks.add(task)

        def done(t: asyncio.Task) -> None:
            record.tasks.discard(t)
            if not t.cancelled():
                t.exception()  # retrieved: a failure is on the record already

        task.add_done_callback(done)
        return task

    async def restore(self, keys: Any) -> None:
        """Launch again what was launched before the server stopped, in launch order, each with the
        security gates of now and the key that launched it (`keys`: the KeyStore). The spare
        workers started for it are ended once every restored model has started or failed."""
        starts = []
        try:
            for uid, body, key_id, custom in self.launches.restorable():
                if uid in self.models:
                    continue
                try:
                    key = None
                    if key_id is not None and keys.enabled:
                        key = keys.get(key_id)
                        if not key.usable(time.time()):
                            raise Forbidden(f"the API key that launched it ({key_id}) is revoked or expired")
                    request = LaunchModelRequest.model_validate(body)
                    if custom is not None:
                        self._register_again(custom, request.model_name, key)
                    starts.append((await self.launch(request, wait_ready=False, key=key, restoring=True)).loading)
                except (ModelyardError, ValueError) as exc:
                    reason = exc.message if isinstance(exc, ModelyardError) else str(exc)
                    log.warning("model %s was not restored: %s", uid, reason)
                    self.launches.event(uid, "restore_failed", reason=reason, key_id=key_id)
            if starts:
                await asyncio.wait(starts)
        finally:
            self.backend.end_spares()

    def _register_again(self, custom: dict[str, Any], model_name: str, key: ApiKey | None) -> None:
        """A custom registration made without persist is gone with the old server: register it
        again (unpersisted, with today's checks) so its model can be restored."""
        try:
            self.registry.get(custom["model_type"], model_name)
        except NotFound:
            self.registry.register(custom["model_type"], custom["model"], persist=False, key=key)

    async def _start(self, record: ModelRecord) -> None:
        """Start every replica of the model; if one fails to load, the model fails and the others end."""
        started = time.monotonic()
        results = await asyncio.gather(*(self._start_worker(record, replica) for replica in record.replicas),
                                       return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is None:
            record.load_seconds = round(time.monotonic() - started, 3)
            record.loads += 1
            record.last_used = time.monotonic()
            record.note_progress("ready", 1.0, "ready")
            self.launches.event(record.uid, "ready", pids=[r.pid for r in record.replicas],
                                seconds=record.load_seconds)
            return
        if not isinstance(failure, LaunchFailed):
            raise failure
        for replica in record.replicas:
            if replica.worker is not None and replica.status != Status.FAILED:
                worker, replica.worker = replica.worker, None  # a stop on purpose: no restart
                await worker.stop(self.settings.stop_grace)
            replica.status, replica.error = Status.FAILED, failure.message
        self._fail(record, failure.message)
        self.launches.event(record.uid, "launch_failed", reason=failure.message)
        raise failure

    async def _start_worker(self, record: ModelRecord, replica: Replica) -> None:
        """Start one worker of the model and load it; a failure ends the worker and raises LaunchFailed."""
        launch, envs, env, timeout = record.start_args
        on_progress = record.note_progress
        replica.status = Status.LAUNCHING
        try:
            python = None
            if env is not None:
                # the worker starts only once its env is complete
                python = str(await asyncio.to_thread(self.venvs.ensure, env, on_progress))
            on_progress("loading", 0.7, "starting the worker")
            worker = await self.backend.spawn(record.uid, python=python, env=envs, on_progress=on_progress,
                                              replica=replica.index)
            replica.worker = worker
            try:  # counted from the worker's start: an env build reports its own progress and bounds
                info = await asyncio.wait_for(worker.launch(launch), timeout)
            except asyncio.TimeoutError:
                stage = record.progress
                raise LaunchFailed(f"it did not finish loading within its launch timeout of {timeout:g} s, counted "
                                   f"from its worker's start (it was at stage {stage['stage']!r}: "
                                   f"{stage['message']}); its worker was ended. Give a larger launch_timeout (or "
                                   "MODELYARD_LAUNCH_TIMEOUT) if it needs longer.") from None
        except Exception as exc:  # CancelledError (a terminate) passes through untouched
            message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            if replica.worker is not None:  # stopped first: its last output is then in its log
                await replica.worker.stop(self.settings.stop_grace)
                record.stderr_tail = log_tail(replica.worker.log_path)
            replica.status, replica.error = Status.FAILED, message
            raise LaunchFailed(message) from None
        record.methods = list(info.get("abilities", []))
        record.packages = dict(info.get("packages", {}))
        replica.status, replica.error, replica.retry_at = Status.READY, None, None
        worker.exited.add_done_callback(lambda f: self._on_exit(record, replica, worker, f.result()))

    def _fail(self, record: ModelRecord, error: str) -> None:
        """Every replica has failed for good: the model is FAILED, and its env is free to go."""
        record.note_progress("failed", record.progress["progress"], error)
        self._release_env(record)

    def _release_env(self, record: ModelRecord) -> None:
        if record.env_key is not None:
            self.venvs.release(record.env_key, record.uid)

    def _on_exit(self, record: ModelRecord, replica: Replica, worker: LocalWorker, code: int) -> None:
        if record.state is not None or replica.worker is not worker or self._closing:
            return  # ended on purpose: terminated, unloaded, or the server stops
        tail = log_tail(worker.log_path)
        replica.last_exit = {"code": code, "signal": _signal_name(code), "pid": worker.pid, "at": time.time(),
                             "log_tail": tail}
        record.stderr_tail = tail
        reason = f"the worker process (pid {worker.pid}) exited with code {code}"
        log.warning("model %s (replica %d): worker exited with code %s", record.uid, replica.index, code)
        self.launches.event(record.uid, "exited", reason=reason, replica=replica.index,
                            **{**replica.last_exit, "log_tail": tail[-2000:]})
        replica.worker, replica.error = None, reason
        if record.restart == "never":
            replica.status = Status.FAILED
            if record.status == Status.FAILED:
                self._fail(record, reason)
            return
        replica.status = Status.RESTARTING
        self._track(record, self._restart(record, replica, reason))

    async def _restart(self, record: ModelRecord, replica: Replica, reason: str) -> None:
        """Start the replica's worker again with backoff, until it is READY or the tries in the window run out."""
        window, most = self.settings.restart_window, self.settings.restart_max
        while True:
            now = time.monotonic()
            replica.restart_times = [t for t in replica.restart_times if now - t < window]
            if len(replica.restart_times) >= most:
                message = (f"{reason}; gave up after {len(replica.restart_times)} restarts within {window:g} s "
                           f"(MODELYARD_RESTART_MAX, MODELYARD_RESTART_WINDOW); relaunch it when fixed")
                replica.status, replica.error = Status.FAILED, message
                if record.status == Status.FAILED:
                    self._fail(record, message)
                self.launches.event(record.uid, "gave_up", reason=message, replica=replica.index,
                                    restarts=replica.restarts)
                return
            delay = RESTART_BACKOFF[min(len(replica.restart_times), len(RESTART_BACKOFF) - 1)]
            replica.restart_times.append(now)
            replica.restarts += 1
            replica.retry_at = time.monotonic() + delay
            self.launches.event(record.uid, "restarting", reason=reason, replica=replica.index,
                                attempt=replica.restarts, delay_seconds=delay)
            await asyncio.sleep(delay)
            try:
                await self._start_worker(record, replica)
            except LaunchFailed as exc:
                reason = f"its restart failed: {exc.message}"
                replica.status, replica.error = Status.RESTARTING, reason
                continue
            self.launches.event(record.uid, "ready", replica=replica.index, pid=replica.pid)
            return

    # -- calls ----------------------------------------------------------------------------

    def model_name(self, uid: str) -> str | None:
        record = self.models.get(uid)
        return record.model_name if record is not None else None

    def get(self, uid: str) -> ModelRecord:
        record = self.models.get(uid)
        if record is None:
            raise NotFound(f"No model with uid {uid!r} is running. GET /v1/models lists the running models.")
        return record

    def _ready(self, record: ModelRecord, model_type: str | None, method: str | None,
               avoid: set[int] = frozenset()) -> Replica:
        """The READY replica with the fewest calls in flight (of those, the one chosen longest ago),
        skipping those in `avoid` and any whose worker has just died (its exit not yet handled)."""
        uid = record.uid
        if model_type is not None and record.model_type != model_type:
            raise InvalidRequest(f"Model {uid!r} is {a_model_of(record.model_type)}; this route serves "
                                 f"{model_type} models.")
        ready = [r for r in record.replicas if r.status == Status.READY and r.worker is not None
                 and r.index not in avoid and (r.worker.reachable or len(record.replicas) == 1)]
        if record.state is not None or not ready:
            status = record.status
            detail = f": {record.error}" if record.error else ""
            if status in (Status.RESTARTING, Status.LAUNCHING):  # it will be back: say when to try
                wait = max(1, math.ceil((record.retry_at or time.monotonic()) - time.monotonic()))
                raise Unavailable(f"Model {uid!r} is {status.value}{detail}. Try again shortly.", retry_after=wait)
            raise Unavailable(f"Model {uid!r} is {status.value}{detail}.")
        if method is not None and record.methods and method not in record.methods:  # before the round trip
            raise InvalidRequest(f"Model {uid!r} cannot {method}: its abilities are "
                                 f"{', '.join(record.abilities) or 'none'} (it answers {', '.join(record.methods)}).")
        return min(ready, key=lambda r: (r.in_flight, r.chosen))

    async def call(self, uid: str, method: str, args: list, kwargs: dict, *, model_type: str | None = None,
                   mode: str = wire.MODE_JSON, key: ApiKey | None = None) -> Any:
        avoid: set[int] = set()
        while True:
            record, replica = await self._acquire(uid, model_type, method, key, avoid)
            try:
                return await replica.worker.call(method, args, kwargs, mode)
            except WorkerGone:
                # its worker died under the call: another replica answers it, if one is ready
                avoid.add(replica.index)
                if not self._others_ready(record, avoid):
                    raise
            finally:
                self._release(record, replica)

    async def stream(self, uid: str, method: str, args: list, kwargs: dict, *, model_type: str | None = None,
                     mode: str = wire.MODE_STREAM_JSON, key: ApiKey | None = None) -> AsyncIterator[list[Any]]:
        """An async generator: the model is found (and loaded, or refused) at its first item. A
        replica that dies before its first item hands the stream to another that is ready."""
        avoid: set[int] = set()
        while True:
            record, replica = await self._acquire(uid, model_type, method, key, avoid)
            started = False
            try:
                async for batch in replica.worker.stream(method, args, kwargs, mode):
                    started = True
                    yield batch
                return
            except WorkerGone:
                avoid.add(replica.index)
                if started or not self._others_ready(record, avoid):
                    raise
            finally:
                self._release(record, replica)

    @staticmethod
    def _others_ready(record: ModelRecord, avoid: set[int]) -> bool:
        return any(r.status == Status.READY and r.index not in avoid for r in record.replicas)

    async def _acquire(self, uid: str, model_type: str | None, method: str | None, key: ApiKey | None,
                       avoid: set[int] = frozenset()) -> tuple[ModelRecord, Replica]:
        """The replica for one call, counted in flight: the model is loaded first if it is not
        (within `load_wait`), and refused with a 429 past its `request_limits`."""
        record = self.models.get(uid)
        if record is None:
            if not self.settings.load_on_demand or model_type is None:
                record = self.get(uid)  # raises NotFound
            record = await self._launch_on_demand(uid, model_type, key)
        if record.status == Status.UNLOADED:
            self._load_again(record)
        if record.loading is not None and not record.loading.done() and record.status == Status.LAUNCHING:
            await self._wait_loaded(record)
        replica = self._ready(record, model_type, method, avoid)
        if record.request_limit is not None and record.in_flight >= record.request_limit:
            raise TooManyRequests(f"Model {uid!r} has {record.in_flight} requests in flight, as many as its "
                                  f"request_limits ({record.request_limit}) allows; try again shortly.", retry_after=1)
        replica.in_flight += 1
        replica.chosen = next(self._calls)
        return record, replica

    def _release(self, record: ModelRecord, replica: Replica) -> None:
        replica.in_flight -= 1
        record.last_used = time.monotonic()
        if record.keep_alive == 0 and record.in_flight == 0 and record.status == Status.READY:
            self._unload(record, "keep_alive 0: unloaded after its request")

    async def _wait_loaded(self, record: ModelRecord) -> None:
        record.waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(record.loading), self.settings.load_wait)
        except asyncio.TimeoutError:
            raise Unavailable(f"Model {record.uid!r} is still loading after {self.settings.load_wait:g} s "
                              "(MODELYARD_LOAD_WAIT); try again shortly.", retry_after=5) from None
        except LaunchFailed:
            pass  # _ready says how it failed
        finally:
            record.waiting -= 1

    async def _launch_on_demand(self, uid: str, model_type: str, key: ApiKey | None) -> ModelRecord:
        """A request named a model that is not running: launch the registered or builtin model of
        that name with its defaults (the gates check it as any launch)."""
        try:
            self.registry.get(model_type, uid)
        except NotFound:
            raise NotFound(f"No model with uid {uid!r} is running, and no {model_type} model of that name is "
                           "registered to launch on demand. GET /v1/models lists the running models.") from None
        return await self.launch(LaunchModelRequest(model_name=uid, model_type=model_type, model_uid=uid),
                                 wait_ready=False, key=key)

    # -- idle models ----------------------------------------------------------------------

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_SECONDS)
            now = time.monotonic()
            for record in list(self.models.values()):
                if (record.status == Status.READY and record.keep_alive >= 0 and record.in_flight == 0
                        and not record.tasks and now - record.last_used >= record.keep_alive):
                    self._unload(record, f"idle for {record.keep_alive:g} s (keep_alive)")

    def _unload(self, record: ModelRecord, reason: str) -> None:
        """Stop the model's workers; it stays listed, UNLOADED, and loads again when a request names it."""
        record.state = Status.UNLOADED
        for task in list(record.tasks):  # a replica's restart
            task.cancel()
        for replica in record.replicas:
            worker, replica.worker = replica.worker, None
            replica.status, replica.error, replica.retry_at = Status.LAUNCHING, None, None
            if worker is not None:
                stopping = asyncio.get_running_loop().create_task(worker.stop(self.settings.stop_grace))
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)
        record.note_progress("unloaded", 0.0, reason)
        self.launches.event(record.uid, "unloaded", reason=reason)

    def _load_again(self, record: ModelRecord) -> None:
        self._make_room(record)
        record.state = None
        record.note_progress("queued", 0.0, "loading again for a request")
        self.launches.event(record.uid, "loading", reason="a request named it")
        record.loading = self._track(record, self._start(record))

    def _make_room(self, coming: ModelRecord) -> None:
        """Within `max_loaded_models`: unload the least recently used idle models for `coming`."""
        most = self.settings.max_loaded_models
        if not most:
            return
        loaded = [r for r in self.models.values() if r is not coming and r.state is None
                  and r.status != Status.FAILED]
        idle = sorted((r for r in loaded if r.status == Status.READY and r.in_flight == 0 and not r.tasks),
                      key=lambda r: r.last_used)
        for record in idle[:max(0, len(loaded) - most + 1)]:
            self._unload(record, f"made room for {coming.uid!r} (max_loaded_models {most})")

    # -- health ---------------------------------------------------------------------------

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            checks = [self._check(record, replica) for record in self.models.values() if record.state is None
                      for replica in record.replicas if replica.status in (Status.READY, Status.UNHEALTHY)]
            await asyncio.gather(*checks, return_exceptions=True)

    async def _check(self, record: ModelRecord, replica: Replica) -> None:
        worker = replica.worker
        if worker is None:
            return
        try:
            report = await worker.ping(self.settings.health_timeout)
        except asyncio.TimeoutError:
            problem = (f"its worker (pid {worker.pid}) did not answer a health check within "
                       f"{self.settings.health_timeout:g} s")
        except Unavailable:
            return  # it exited: _on_exit reports that
        else:
            stalled = report.get("stalled_seconds", 0.0)
            limit = self.settings.stall_timeout
            problem = (f"a call has made no progress for {stalled:.0f} s (limit {limit:g} s)"
                       if limit and stalled > limit else None)
        if replica.worker is not worker or replica.status not in (Status.READY, Status.UNHEALTHY):
            return  # terminated, unloaded or failed while we waited
        if problem is None:
            if replica.status == Status.UNHEALTHY:
                log.warning("model %s (replica %d) is healthy again", record.uid, replica.index)
                replica.status, replica.error = Status.READY, None
            return
        if replica.status == Status.READY:
            log.warning("model %s (replica %d) is unhealthy: %s", record.uid, replica.index, problem)
        replica.status = Status.UNHEALTHY
        replica.error = f"unhealthy: {problem}; terminate it to free its resources"

    # -- ending ---------------------------------------------------------------------------

    async def terminate(self, uid: str, key: ApiKey | None = None, *, forget: bool = True) -> None:
        """End the model. `forget=False` (a server that stops) keeps its launch to restore."""
        record = self.get(uid)
        if forget:
            self.launches.forget(uid)
            self.launches.event(uid, "terminated", key_id=key.id if key is not None else None)
        record.state = Status.TERMINATING
        for task in list(record.tasks):
            task.cancel()
        await asyncio.gather(*(replica.worker.stop(self.settings.stop_grace) for replica in record.replicas
                               if replica.worker is not None))
        self._release_env(record)
        if self.models.get(uid) is record:
            del self.models[uid]

    async def shutdown(self) -> None:
        """End every worker; called when the server stops."""
        self._closing = True
        for task in (self._watch, self._idle):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(self.terminate(uid, forget=False) for uid in list(self.models)),
                             *self._stopping, return_exceptions=True)


def _signal_name(code: int | None) -> str | None:
    """SIGKILL for an exit code of -9 (a process ended by a signal)."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return None
