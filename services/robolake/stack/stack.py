"""Start, stop and inspect the local stack as one unit.

State lives in one directory: ``stack.json`` (PIDs, ports, versions), and one folder per component
with its configuration, data and log. ``up`` is idempotent: components already running are left
alone, stopped ones are started again on their previous ports when those are still free, so data
written before a restart is still there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from robolake.endpoints import DEFAULT_S3_BUCKET, DEFAULT_S3_REGION, Endpoints
from robolake.provision import provision
from robolake.stack import catalog, kafka, minio, prometheus
from robolake.stack.errors import StackError
from robolake.stack.process import (
    ProcessRecord,
    free_port,
    is_running,
    spawn,
    stop,
    wait_until,
)

log = logging.getLogger(__name__)

#: Started in this order and stopped in the reverse one: the catalog needs MinIO's port.
COMPONENTS: Final = ("kafka", "minio", "prometheus", "catalog")
STATE_FILE: Final = "stack.json"
DEFAULT_TIMEOUT: Final = 120.0
#: Kafka needs a few seconds for a controlled shutdown; the others stop at once.
STOP_TIMEOUT: Final = {"kafka": 30.0, "minio": 15.0, "prometheus": 15.0, "catalog": 15.0}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ComponentStatus:
    """What ``robolake stack status`` shows of one component."""

    name: str
    running: bool
    pid: int | None
    endpoint: str | None
    version: str | None
    log_path: str | None


class Stack:
    """The local Kafka + MinIO + Prometheus + Iceberg catalog stack in one state directory."""

    def __init__(self, state_dir: Path, *, bucket: str = DEFAULT_S3_BUCKET) -> None:
        self.state_dir = state_dir
        self.bucket = bucket

    # -- state -----------------------------------------------------------------------------
    @property
    def _state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {"components": {}}
        except (OSError, json.JSONDecodeError) as exc:
            raise StackError(f"unreadable stack state {self._state_path}: {exc}") from exc
        data.setdefault("components", {})
        return data

    def _save(self, state: Mapping[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self._state_path)

    @staticmethod
    def _record(component: Mapping[str, Any]) -> ProcessRecord | None:
        return ProcessRecord.from_json(component) if "pid" in component else None

    def _running(self, component: Mapping[str, Any]) -> bool:
        record = self._record(component)
        return record is not None and is_running(record)

    # -- public API --------------------------------------------------------------------------
    def endpoints(self) -> Endpoints:
        """The endpoints of the stack as last started (whether or not it runs now)."""
        components = self._load()["components"]
        try:
            kafka_port = components["kafka"]["ports"]["broker"]
            minio_port = components["minio"]["ports"]["api"]
        except KeyError as exc:
            raise StackError(
                f"no stack has been started in {self.state_dir}; run `robolake stack up`"
            ) from exc
        prom = components.get("prometheus", {}).get("ports", {}).get("web")
        rest = components.get("catalog", {}).get("ports", {}).get("rest")
        return Endpoints(
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            s3_endpoint=f"http://127.0.0.1:{minio_port}",
            s3_access_key=minio.ROOT_USER,
            s3_secret_key=minio.root_password(self.state_dir / "minio"),
            s3_bucket=self.bucket,
            prometheus_url=f"http://127.0.0.1:{prom}" if prom else None,
            catalog_uri=f"http://{catalog.HOST}:{rest}" if rest else None,
        )

    def service_env(self) -> dict[str, str]:
        """Everything a robolake service on this stack reads: the endpoints, a ticket key
        shared by its collectors (generated once, stored 0600) and its device registry."""
        env = self.endpoints().to_env()
        key_path = self.state_dir / "ticket-key"
        if not key_path.is_file():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        env["ROBOLAKE_TICKET_KEY"] = key_path.read_text().strip()
        env["ROBOLAKE_DEVICES_FILE"] = str(self.state_dir / "devices.json")
        return env

    def status(self) -> list[ComponentStatus]:
        """One line per component: running or not, its PID, endpoint, version and log."""
        components = self._load()["components"]
        result = []
        for name in COMPONENTS:
            component = components.get(name, {})
            running = self._running(component)
            ports = component.get("ports", {})
            port = ports.get("broker") or ports.get("api") or ports.get("web") or ports.get("rest")
            scheme = "" if name == "kafka" else "http://"
            result.append(
                ComponentStatus(
                    name=name,
                    running=running,
                    pid=component.get("pid") if running else None,
                    endpoint=f"{scheme}127.0.0.1:{port}" if port else None,
                    version=component.get("version"),
                    log_path=component.get("log_path"),
                )
            )
        return result

    def is_up(self) -> bool:
        """Whether every component is running."""
        return all(status.running for status in self.status())

    def install(self, progress: Progress = log.info) -> None:
        """Install every component into the cache (a no-op once cached)."""
        progress("installing Kafka jars (cached after the first run)")
        kafka.install()
        progress("installing MinIO (cached after the first run; the first build takes minutes)")
        minio.install()
        progress("installing Prometheus (cached after the first run)")
        prometheus.install()
        progress("installing the Iceberg REST catalog (Maven; cached after the first run)")
        catalog.install()

    def up(self, *, timeout: float = DEFAULT_TIMEOUT, progress: Progress = log.info) -> Endpoints:
        """Install what is missing, start what is not running, wait until all are ready."""
        self.install(progress)
        state = self._load()
        components: dict[str, dict[str, Any]] = state["components"]

        kafka_home = self.state_dir / "kafka"
        minio_home = self.state_dir / "minio"
        prom_home = self.state_dir / "prometheus"
        catalog_home = self.state_dir / "catalog"

        if not self._running(components.get("kafka", {})):
            old = components.get("kafka", {}).get("ports", {})
            ports = {
                "broker": free_port(old.get("broker")),
                "controller": free_port(old.get("controller")),
            }
            properties = kafka.write_config(
                kafka_home, port=ports["broker"], controller_port=ports["controller"]
            )
            kafka.format_storage(kafka_home, properties)
            record = spawn(
                kafka.broker_command(kafka_home, properties),
                log_path=kafka_home / "kafka.log",
                cwd=kafka_home,
            )
            components["kafka"] = {
                **record.to_json(),
                "ports": ports,
                "version": f"Apache Kafka {kafka.KAFKA_VERSION} (KRaft, kafka_2.13)",
            }
            self._save(state)

        if not self._running(components.get("minio", {})):
            old = components.get("minio", {}).get("ports", {})
            ports = {"api": free_port(old.get("api")), "console": free_port(old.get("console"))}
            record = spawn(
                minio.server_command(minio_home, port=ports["api"], console_port=ports["console"]),
                log_path=minio_home / "minio.log",
                env=minio.server_env(minio_home),
                cwd=minio_home,
            )
            components["minio"] = {**record.to_json(), "ports": ports, "version": minio.version()}
            self._save(state)

        if not self._running(components.get("prometheus", {})):
            old = components.get("prometheus", {}).get("ports", {})
            ports = {"web": free_port(old.get("web"))}
            config = prometheus.write_config(
                prom_home, minio_port=components["minio"]["ports"]["api"], port=ports["web"]
            )
            record = spawn(
                prometheus.server_command(prom_home, config, port=ports["web"]),
                log_path=prom_home / "prometheus.log",
                cwd=prom_home,
            )
            components["prometheus"] = {
                **record.to_json(),
                "ports": ports,
                "version": f"Prometheus {prometheus.version()} (Debian)",
            }
            self._save(state)

        if not self._running(components.get("catalog", {})):
            old = components.get("catalog", {}).get("ports", {})
            ports = {"rest": free_port(old.get("rest"))}
            record = spawn(
                catalog.server_command(catalog_home),
                log_path=catalog_home / "catalog.log",
                env=catalog.server_env(
                    catalog_home,
                    port=ports["rest"],
                    s3_endpoint=f"http://127.0.0.1:{components['minio']['ports']['api']}",
                    s3_access_key=minio.ROOT_USER,
                    s3_secret_key=minio.root_password(minio_home),
                    s3_region=DEFAULT_S3_REGION,
                    bucket=self.bucket,
                ),
                cwd=catalog_home,
                scrub_env_prefixes=catalog.SCRUBBED_ENV_PREFIXES,
            )
            components["catalog"] = {
                **record.to_json(),
                "ports": ports,
                "version": catalog.version(),
            }
            self._save(state)

        endpoints = self.endpoints()
        checks: dict[str, Callable[[], bool]] = {
            "kafka": lambda: kafka.is_ready(endpoints.kafka_bootstrap),
            "minio": lambda: minio.is_ready(endpoints.s3_endpoint),
            "prometheus": lambda: prometheus.is_ready(str(endpoints.prometheus_url)),
            "catalog": lambda: catalog.is_ready(str(endpoints.catalog_uri)),
        }
        for name in COMPONENTS:
            running = self._record(components[name])
            if running is None:
                raise StackError(f"{name} has no process record in {self._state_path}")
            progress(f"waiting for {name} to be ready")
            wait_until(checks[name], timeout=timeout, what=name, record=running)
        progress("creating topics and bucket (idempotent)")
        asyncio.run(provision(endpoints))
        return endpoints

    def stop_component(self, name: str, progress: Progress = log.info) -> bool:
        """Stop one component (an outage or a restart in a test; ``up`` starts it again on its
        port, with its data); return whether it was running."""
        if name not in COMPONENTS:
            raise StackError(f"unknown stack component {name!r}; one of {', '.join(COMPONENTS)}")
        record = self._record(self._load()["components"].get(name, {}))
        if record is None or not is_running(record):
            return False
        progress(f"stopping {name} (pid {record.pid})")
        stop(record, timeout=STOP_TIMEOUT[name], name=name)
        return True

    def down(self, progress: Progress = log.info) -> list[str]:
        """Stop every running component (the catalog first, Kafka last); return what stopped."""
        return [name for name in reversed(COMPONENTS) if self.stop_component(name, progress)]

    def pids(self) -> dict[str, int]:
        """PIDs of the components as last started, running or not (for leak checks)."""
        components = self._load()["components"]
        return {name: int(c["pid"]) for name, c in components.items() if "pid" in c}
