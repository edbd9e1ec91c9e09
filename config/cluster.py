"""The multi-instance topology: one definition for docker-compose.yml, the Helm chart, `make cluster` and the
cluster tests (deploy/check.py compares the artefacts with it).

    HAProxy ──► web x3 (granian) ──► PgBouncer (transaction pooling) ──► PostgreSQL
                worker x2, beat x1 ─┘        Redis (quotas, breaker, broker, beat lock)
    every web/worker process also holds one LISTEN connection straight to PostgreSQL (ATRIUM_CACHE_LISTEN_URL)

`python -m config.cluster` (behind `make cluster`) starts it on this machine for a person to try: HAProxy and
PgBouncer from Debian's packages, a private Redis, the local PostgreSQL (or DATABASE_URL), the provider simulator.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent

# The container commands of each role (the image puts celery and python on PATH, WORKDIR /app).
ROLE_COMMANDS: dict[str, list[str]] = {
    "web": ["python", "-m", "config.serve"],
    "worker": ["celery", "-A", "config", "worker", "-l", "INFO"],
    "beat": ["celery", "-A", "config", "beat", "-l", "INFO"],
    "migrate": ["python", "manage.py", "deploy_migrate"],
}

# Environment every role reads (values differ per installation). Secrets (the metrics token may be empty: then
# only a signed-in platform staff user reads /metrics):
SECRET_ENV = ["DJANGO_SECRET_KEY", "ATRIUM_ENCRYPTION_KEYS", "ATRIUM_PLATFORM_AUDIT_KEY", "ATRIUM_AUDIT_CHECKPOINT_KEY",
              "ATRIUM_METRICS_TOKEN"]
CONFIG_ENV = [
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",  # through PgBouncer
    "DATABASE_POOL_MODE",  # "transaction" behind PgBouncer's transaction pooling (config/db)
    "ATRIUM_CACHE_LISTEN_URL",  # PostgreSQL itself: LISTEN needs a session
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DJANGO_ALLOWED_HOSTS",
    "ATRIUM_BASE_DOMAIN",
    "ATRIUM_TRUSTED_PROXIES",  # HAProxy's / the ingress controller's network: X-Forwarded-For believed from it
    "ATRIUM_LOG_FORMAT",
    "PROMETHEUS_MULTIPROC_DIR",
]
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
WEB_PORT = 8000


def local_command(role: str, *extra: str) -> list[str]:
    """ROLE_COMMANDS[role] for a process started from this checkout's virtualenv."""
    head, *rest = ROLE_COMMANDS[role]
    prefix = [sys.executable] if head == "python" else [sys.executable, "-m", head]
    return [*prefix, *rest, *extra]


def haproxy_config(*, bind: str, servers: list[tuple[str, str]], health_host: str) -> str:
    """HAProxy in front of the web instances: round robin per request, health-checked on /healthz.

    No response buffering (streamed answers pass through as they come); a request refused at connect by a dead
    instance is re-dispatched to another one (`retries` + `option redispatch`), never one already sent.
    """
    lines = [
        "global",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    option httplog",
        "    option forwardfor",
        "    option redispatch",
        "    retries 2",
        "    timeout connect 2s",
        "    timeout client 300s",
        "    timeout server 300s",
        "frontend atrium",
        f"    bind {bind}",
        "    default_backend web",
        "backend web",
        "    balance roundrobin",
        "    option httpchk",
        f"    http-check send meth GET uri {HEALTH_PATH} ver HTTP/1.1 hdr Host {health_host}",
        "    http-check expect status 200",
        "    default-server inter 1s fall 2 rise 1 init-addr libc,none",
    ]
    lines += [f"    server {name} {address} check" for name, address in servers]
    return "\n".join(lines) + "\n"


def pgbouncer_config(*, listen_host: str, listen_port: int, pg_host: str, pg_port: int, auth_file: str,
                     auth_type: str = "trust", pool_size: int = 20, unix_socket_dir: str = "") -> str:
    """PgBouncer in transaction pooling; Atrium's database backend (config/db) makes that safe for schemas."""
    return "\n".join([
        "[databases]",
        f"* = host={pg_host} port={pg_port}",
        "[pgbouncer]",
        f"listen_addr = {listen_host}",
        f"listen_port = {listen_port}",
        f"unix_socket_dir = {unix_socket_dir}",
        f"auth_type = {auth_type}",
        f"auth_file = {auth_file}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 1000",
        "ignore_startup_parameters = extra_float_digits,options",
        "server_reset_query =",
        "",
    ])


# --- running it here -----------------------------------------------------------------------------------------

def ensure_debian_packages(*binaries: str) -> None:
    """Install haproxy / pgbouncer from Debian when missing (as `make test-deps` does for chromium)."""
    missing = [b for b in binaries if not shutil.which(b) and not Path(f"/usr/sbin/{b}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"atrium: {', '.join(missing)} missing; run 'sudo apt-get install -y {' '.join(missing)}'")
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


_next_port: list[int] = []


def free_port() -> int:
    """A free loopback port: the next one from ATRIUM_CLUSTER_PORT_BASE when it is set (a range of your own on a
    shared machine: HAProxy, web1-3, PgBouncer, Redis, the simulator take consecutive ports), else any."""
    import socket

    base = os.environ.get("ATRIUM_CLUSTER_PORT_BASE", "")
    while True:
        port = 0
        if base:
            port = _next_port[0] if _next_port else int(base)
            _next_port[:] = [port + 1]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: the next one
            return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early (status {proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port}")


def wait_healthy(port: int, proc: subprocess.Popen[bytes], what: str, *, host: str, timeout: float = 180) -> None:
    """Until GET /healthz answers 200: a web server's port opens before its workers have loaded Django, and HAProxy
    marks an instance down when its first checks time out (the cluster then answers 503 for a while)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early (status {proc.returncode})")
        request = urllib.request.Request(f"http://127.0.0.1:{port}{HEALTH_PATH}", headers={"Host": host})
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} never answered {HEALTH_PATH} with 200")


def with_host(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{userinfo}{host}:{port}", parts.path, parts.query, parts.fragment))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Cluster:
    """The topology's processes on loopback ports. `env` is the environment shared by every Atrium role."""

    workdir: Path
    env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)
    haproxy_port: int = 0
    pgbouncer_port: int = 0
    redis_port: int = 0

    def spawn(self, name: str, cmd: list[str], *, env: dict[str, str] | None = None, port: int | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env, stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        proc = Proc(name, popen, log, port)
        self.procs[name] = proc
        return proc

    def start_redis(self) -> str:
        self.redis_port = free_port()
        cmd = [binary("redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(self.workdir)]
        proc = self.spawn("redis", cmd, env=dict(os.environ))
        wait_port(self.redis_port, proc.popen, "redis-server")
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_pgbouncer(self, database_url: str, *, pool_size: int = 20) -> str:
        parts = urlsplit(database_url)
        user = parts.username or "postgres"
        auth = self.workdir / "userlist.txt"
        auth.write_text(f'"{user}" ""\n')
        self.pgbouncer_port = free_port()
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(pgbouncer_config(listen_host="127.0.0.1", listen_port=self.pgbouncer_port,
                                        pg_host=parts.hostname or "127.0.0.1", pg_port=parts.port or 5432,
                                        auth_file=str(auth), pool_size=pool_size))
        cmd = [binary("pgbouncer"), str(ini)]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            cmd = [binary("pgbouncer"), "-u", "postgres", str(ini)]
            shutil.chown(self.workdir, "postgres")
            for path in (auth, ini):
                shutil.chown(path, "postgres")
        proc = self.spawn("pgbouncer", cmd, env=dict(os.environ))
        wait_port(self.pgbouncer_port, proc.popen, "pgbouncer")
        return with_host(database_url, "127.0.0.1", self.pgbouncer_port)

    def start_web(self, name: str) -> Proc:
        port = free_port()
        metrics = self.workdir / f"prometheus-{name}"  # emptied at start (config.serve): one per instance
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        proc = self.spawn(name, local_command("web", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                                              "--threads", "8"), env=env, port=port)
        wait_port(port, proc.popen, name)
        wait_healthy(port, proc.popen, name, host=self.env.get("ATRIUM_BASE_DOMAIN", "localhost"))
        return proc

    def start_worker(self, name: str, *, queues: str = "celery", concurrency: int = 2) -> Proc:
        proc = self.spawn(name, local_command("worker", "-Q", queues, "-n", f"{name}@%h", "--concurrency",
                                              str(concurrency), "--without-gossip", "--without-mingle"))
        wait_log(proc, b"ready.")
        return proc

    def start_beat(self, name: str) -> Proc:
        return self.spawn(name, local_command("beat", "--schedule", str(self.workdir / f"{name}-schedule")))

    def start_haproxy(self, web: list[Proc], *, health_host: str, port: int = 0) -> int:
        self.haproxy_port = port or free_port()
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(haproxy_config(bind=f"127.0.0.1:{self.haproxy_port}",
                                      servers=[(p.name, f"127.0.0.1:{p.port}") for p in web],
                                      health_host=health_host))
        proc = self.spawn("haproxy", [binary("haproxy"), "-db", "-f", str(cfg)], env=dict(os.environ))
        wait_port(self.haproxy_port, proc.popen, "haproxy")
        wait_healthy(self.haproxy_port, proc.popen, "haproxy", host=health_host)
        return self.haproxy_port

    def stop(self) -> None:
        """SIGTERM to every process at once (each stops gracefully in parallel), SIGKILL to what is left after
        20 s; `make cluster`'s Ctrl-C took a minute when each was stopped in turn."""
        procs = list(reversed(list(self.procs.values())))
        for proc in procs:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_log(proc: Proc, marker: bytes, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early; see {proc.log}")
        if proc.log.exists() and marker in proc.log.read_bytes():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not log {marker!r}; see {proc.log}")


@contextlib.contextmanager
def cluster(*, database_url: str, base_env: dict[str, str], web: int = 3, workers: int = 2,
            workdir: Path | None = None, pool_size: int = 20, haproxy_port: int = 0) -> Iterator[Cluster]:
    """Redis, PgBouncer, `web` instances (config.serve) behind HAProxy, `workers` workers and one beat."""
    ensure_debian_packages("haproxy", "pgbouncer")
    directory = workdir or Path(tempfile.mkdtemp(prefix="atrium-cluster-"))
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(base_env)
    box = Cluster(directory, env)
    try:
        redis_url = box.start_redis()
        env.update(
            REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url,
            DATABASE_URL=box.start_pgbouncer(database_url, pool_size=pool_size),
            DATABASE_POOL_MODE="transaction",
            ATRIUM_CACHE_LISTEN_URL=database_url,
            PYTHONPATH=str(ROOT),
        )
        env.setdefault("ATRIUM_TRUSTED_PROXIES", "127.0.0.1")  # HAProxy connects from loopback
        webs = [box.start_web(f"web{i + 1}") for i in range(web)]
        box.start_haproxy(webs, health_host=env.get("ATRIUM_BASE_DOMAIN", "localhost"), port=haproxy_port)
        for i in range(workers):
            box.start_worker(f"worker{i + 1}")
        box.start_beat("beat1")
        yield box
    finally:
        box.stop()


def main() -> int:
    """`make cluster`: the topology with the demo tenant and the provider simulator, until Ctrl-C."""
    from config.devstack import manage, say, simulator_env

    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = os.environ.get("ATRIUM_DEV_SETTINGS", "config.settings.development")
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atrium_cluster")
    env.setdefault("ATRIUM_LOG_FORMAT", "json")
    env.setdefault("ATRIUM_METRICS_TOKEN", secrets.token_urlsafe(24))
    simulator_port = free_port()
    haproxy_port = free_port()  # known before the demo is set up, so the URLs it prints are the ones to open
    simulator_env(env, simulator_port)
    database_url = env["DATABASE_URL"]
    name = urlsplit(database_url).path.lstrip("/")
    subprocess.run(["psql", with_host(database_url, urlsplit(database_url).hostname or "127.0.0.1",
                                      urlsplit(database_url).port or 5432).rsplit("/", 1)[0] + "/postgres",
                    "-qc", f'CREATE DATABASE "{name}"'], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   check=False)
    say("migrating (directly, not through PgBouncer)")
    manage(env, "deploy_migrate")
    manage(env, "demo_setup", "--port", str(haproxy_port))
    with cluster(database_url=database_url, base_env=env, workdir=ROOT / "var" / "cluster",
                 haproxy_port=haproxy_port) as box:
        box.spawn("simulator", [sys.executable, "manage.py", "provider_simulator", "--port", str(simulator_port)])
        say(f"HAProxy on http://demo.localhost:{box.haproxy_port}/ in front of "
            + ", ".join(f"{p.name} :{p.port}" for p in box.procs.values() if p.name.startswith("web")))
        say(f"PgBouncer :{box.pgbouncer_port} (transaction pooling), Redis :{box.redis_port}; logs in {box.workdir}")
        say(f"metrics: curl -H 'Authorization: Bearer {env['ATRIUM_METRICS_TOKEN']}' "
            f"http://localhost:{box.haproxy_port}/metrics")
        say("Ctrl-C stops everything")
        try:
            while all(p.alive() for p in box.procs.values()):
                time.sleep(0.5)
            say("stopped because " + ", ".join(p.name for p in box.procs.values() if not p.alive()) + " exited")
            return 1
        except KeyboardInterrupt:
            say("stopping")
            return 0


if __name__ == "__main__":
    sys.exit(main())
