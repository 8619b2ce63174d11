"""The supervisor: launches models into workers, tracks their state, routes calls, ends them.

It talks to workers only through a backend's small interface (spawn, and per worker: launch,
call, stream, stop), so a distributed backend can replace the local one without touching routes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from modelyard import venv
from modelyard.errors import Conflict, InvalidRequest, LaunchFailed, ModelyardError, NotFound, Unavailable
from modelyard.keys import ApiKey
from modelyard.plugins import Plugins
from modelyard.registry import Registry
from modelyard.types import ModelSpec, Registration, a_model_of, check_name_length
from modelyard.types.flexible import FlexibleRegistration
from modelyard.venv import Virtualenvs
from modelyard.worker import protocol as wire
from modelyard_server import gpus
from modelyard_server.gates import require_admin
from modelyard_server.local_backend import LocalProcessBackend, LocalWorker, log_tail
from modelyard_server.protocol import LaunchModelRequest
from modelyard_server.settings import Settings

log = logging.getLogger(__name__)

MODEL_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Status(str, enum.Enum):
    LAUNCHING = "LAUNCHING"
    READY = "READY"
    UNHEALTHY = "UNHEALTHY"
    FAILED = "FAILED"
    TERMINATING = "TERMINATING"


@dataclass
class ModelRecord:
    uid: str
    model_name: str
    model_type: str
    registration: Registration
    abilities: list[str]  # as declared: Xinference's vocabulary, kept whole
    engine: str | None = None
    launcher: str | None = None
    status: Status = Status.LAUNCHING
    created_at: float = field(default_factory=time.time)
    pid: int | None = None
    error: str | None = None
    exit_code: int | None = None
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
    worker: LocalWorker | None = None

    def note_progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.history.append({"stage": stage, "progress": fraction, "message": message, "at": time.time()})

    @property
    def progress(self) -> dict[str, Any]:
        """The launch's latest stage."""
        return self.history[-1]

    def describe(self) -> dict[str, Any]:
        reg = self.registration
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
            "replica": 1,
            "created": int(self.created_at),
            "error": self.error,
            "exit_code": self.exit_code,
            "stderr_tail": self.stderr_tail,
            "virtualenv": self.env_key,
            "launched_by": self.launched_by,
            "packages": self.packages,
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
                 venvs: Virtualenvs, settings: Settings | None = None):
        self.plugins = plugins
        self.registry = registry
        self.backend = backend
        self.venvs = venvs
        self.settings = settings or Settings()
        self.models: dict[str, ModelRecord] = {}
        self._starts: dict[str, asyncio.Task] = {}
        self._watch: asyncio.Task | None = None

    def start(self) -> None:
        """Begin watching the workers' health; call from the running event loop."""
        self._watch = asyncio.get_running_loop().create_task(self._watch_health())

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
                     key: ApiKey | None = None) -> ModelRecord:
        check_name_length("model_name", request.model_name)
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
                             launched_by=key.id if key is not None else None)
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
        task = asyncio.get_running_loop().create_task(
            self._start(record, launch, worker_env, env, timeout))
        self._starts[uid] = task
        task.add_done_callback(lambda t: (self._starts.pop(uid, None), t.cancelled() or t.exception()))
        if wait_ready:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # our own caller went away
                raise LaunchFailed(f"Model {uid!r} was terminated while it was launching.") from None
            except LaunchFailed as exc:
                if self.models.get(uid) is record:
                    del self.models[uid]  # the caller gets the error; nothing is left to clean up
                raise LaunchFailed(f"Failed to launch model {uid!r}: {exc.message}") from None
        return record

    async def _start(self, record: ModelRecord, launch: dict[str, Any], envs: dict[str, str],
                     env: venv.EnvSpec | None, timeout: float) -> None:
        on_progress = record.note_progress
        try:
            python = None
            if env is not None:
                # the worker starts only once its env is complete
                python = str(await asyncio.to_thread(self.venvs.ensure, env, on_progress))
            on_progress("loading", 0.7, "starting the worker")
            worker = await self.backend.spawn(record.uid, python=python, env=envs, on_progress=on_progress)
            record.worker, record.pid = worker, worker.pid
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
            if record.worker is not None:  # stopped first: its last output is then in its log
                await record.worker.stop(self.settings.stop_grace)
            self._fail(record, message)
            raise LaunchFailed(message) from None
        record.methods = list(info.get("abilities", []))
        record.packages = dict(info.get("packages", {}))
        record.status = Status.READY
        record.note_progress("ready", 1.0, "ready")
        worker.exited.add_done_callback(lambda f: self._on_exit(record, f.result()))

    def _fail(self, record: ModelRecord, error: str) -> None:
        record.status, record.error = Status.FAILED, error
        record.note_progress("failed", record.progress["progress"], error)
        if record.worker is not None:
            record.stderr_tail = log_tail(record.worker.log_path)
        self._release_env(record)

    def _release_env(self, record: ModelRecord) -> None:
        if record.env_key is not None:
            self.venvs.release(record.env_key, record.uid)

    def _on_exit(self, record: ModelRecord, code: int) -> None:
        if record.status == Status.TERMINATING:
            return
        record.exit_code = code
        self._fail(record, f"the worker process (pid {record.pid}) exited with code {code}")
        log.warning("model %s: worker exited with code %s", record.uid, code)

    # -- calls ----------------------------------------------------------------------------

    def model_name(self, uid: str) -> str | None:
        record = self.models.get(uid)
        return record.model_name if record is not None else None

    def get(self, uid: str) -> ModelRecord:
        record = self.models.get(uid)
        if record is None:
            raise NotFound(f"No model with uid {uid!r} is running. GET /v1/models lists the running models.")
        return record

    def ready_worker(self, uid: str, model_type: str | None = None, method: str | None = None) -> LocalWorker:
        record = self.get(uid)
        if model_type is not None and record.model_type != model_type:
            raise InvalidRequest(f"Model {uid!r} is {a_model_of(record.model_type)}; this route serves "
                                 f"{model_type} models.")
        if record.status != Status.READY or record.worker is None:
            detail = f": {record.error}" if record.error else ""
            raise Unavailable(f"Model {uid!r} is {record.status.value}{detail}.")
        if method is not None and record.methods and method not in record.methods:  # before the round trip
            raise InvalidRequest(f"Model {uid!r} cannot {method}: its abilities are "
                                 f"{', '.join(record.abilities) or 'none'} (it answers {', '.join(record.methods)}).")
        return record.worker

    async def call(self, uid: str, method: str, args: list, kwargs: dict, *, model_type: str | None = None,
                   mode: str = wire.MODE_JSON) -> Any:
        return await self.ready_worker(uid, model_type, method).call(method, args, kwargs, mode)

    def stream(self, uid: str, method: str, args: list, kwargs: dict, *, model_type: str | None = None,
               mode: str = wire.MODE_STREAM_JSON) -> AsyncIterator[list[Any]]:
        return self.ready_worker(uid, model_type, method).stream(method, args, kwargs, mode)

    # -- health ---------------------------------------------------------------------------

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            records = [r for r in self.models.values() if r.status in (Status.READY, Status.UNHEALTHY)]
            await asyncio.gather(*(self._check(r) for r in records), return_exceptions=True)

    async def _check(self, record: ModelRecord) -> None:
        if record.worker is None:
            return
        try:
            report = await record.worker.ping(self.settings.health_timeout)
        except asyncio.TimeoutError:
            problem = (f"its worker (pid {record.pid}) did not answer a health check within "
                       f"{self.settings.health_timeout:g} s")
        except Unavailable:
            return  # it exited: _on_exit reports that
        else:
            stalled = report.get("stalled_seconds", 0.0)
            limit = self.settings.stall_timeout
            problem = (f"a call has made no progress for {stalled:.0f} s (limit {limit:g} s)"
                       if limit and stalled > limit else None)
        if record.status not in (Status.READY, Status.UNHEALTHY):
            return  # terminated or failed while we waited
        if problem is None:
            if record.status == Status.UNHEALTHY:
                log.warning("model %s is healthy again", record.uid)
                record.status, record.error = Status.READY, None
            return
        if record.status == Status.READY:
            log.warning("model %s is unhealthy: %s", record.uid, problem)
        record.status, record.error = Status.UNHEALTHY, f"unhealthy: {problem}; terminate it to free its resources"

    # -- ending ---------------------------------------------------------------------------

    async def terminate(self, uid: str) -> None:
        record = self.get(uid)
        record.status = Status.TERMINATING
        start = self._starts.get(uid)
        if start is not None:
            start.cancel()
        if record.worker is not None:
            await record.worker.stop(self.settings.stop_grace)
        self._release_env(record)
        if self.models.get(uid) is record:
            del self.models[uid]

    async def shutdown(self) -> None:
        """End every worker; called when the server stops."""
        if self._watch is not None:
            self._watch.cancel()
        await asyncio.gather(*(self.terminate(uid) for uid in list(self.models)), return_exceptions=True)
