"""A user with 100,000 messages: export, then deletion, through a real Celery worker.

Final line: {"export_s": …, "delete_s": …, "worker_peak_rss_mb": …}. Targets: < 30 s each, < 300 MB.
Memory is sampled every 50 ms over the worker's whole process tree (main process and pool child); the figure
reported is the tree's proportional set size (PSS), with summed RSS and the largest process printed beside it.

    .venv/bin/python bench/gdpr.py [MESSAGES]
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

from _common import ROOT, bench_database, bench_tenant, emit


def _tree_memory(pid: int) -> tuple[int, int, int]:
    """(PSS of the whole tree, RSS of the whole tree, largest single-process RSS), in bytes.

    PSS divides pages shared between the prefork parent and its child, so it is what the tree really costs;
    summing RSS would count every shared page twice.
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        pss = sum(p.memory_full_info().pss for p in procs)
        rss = [p.memory_info().rss for p in procs]
        return pss, sum(rss), max(rss)
    except psutil.Error:
        return 0, 0, 0


def main() -> None:
    messages_total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    per_conversation = 100
    url = bench_database("atrium_bench_gdpr")
    tenant = bench_tenant("gdpr")
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django_tenants.utils import tenant_context

    from audit.gdpr import gdpr_request
    from audit.models import GdprJob
    from inference.models import Conversation, Message

    queue = f"bench-{uuid.uuid4().hex[:6]}"
    settings.ATRIUM_GDPR_QUEUE = queue
    with tenant_context(tenant):
        user = get_user_model().objects.create_user(username="heavy", email="heavy@example.com")
        officer = get_user_model().objects.create_user(username="officer")
        started = time.perf_counter()
        for start in range(0, messages_total, 20_000):
            n = min(20_000, messages_total - start)
            conversations = Conversation.objects.bulk_create(
                [Conversation(user=user, model="claude-sonnet-5-5", title=f"chat {start + i}")
                 for i in range(0, n, per_conversation)])
            Message.objects.bulk_create(
                [Message(conversation=c, role="user" if j % 2 == 0 else "assistant", model="claude-sonnet-5-5",
                         content=[{"type": "text", "text": f"message {j} of a long conversation " * 8}])
                 for c in conversations for j in range(per_conversation)], batch_size=5000)
        print(f"created {messages_total} messages in {time.perf_counter() - started:.1f}s", flush=True)

    env = dict(os.environ, DATABASE_URL=url, ATRIUM_GDPR_QUEUE=queue, DJANGO_SETTINGS_MODULE="config.settings.test",
               CELERY_BROKER_URL=settings.CELERY_BROKER_URL, REDIS_URL=settings.REDIS_URL,
               ATRIUM_MEDIA_ROOT=str(settings.MEDIA_ROOT))
    (ROOT / "var").mkdir(exist_ok=True)
    log = (ROOT / "var" / "bench-gdpr-worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "1",
                               "--pool", "prefork", "-l", "WARNING", "--without-gossip", "--without-mingle",
                               "--without-heartbeat"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    peak = [0, 0, 0]
    sampling = True

    def sample() -> None:
        while sampling:
            for i, value in enumerate(_tree_memory(worker.pid)):
                peak[i] = max(peak[i], value)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(3)  # worker start-up

    def run(kind: str) -> float:
        with tenant_context(tenant):
            started = time.perf_counter()
            job = gdpr_request(kind=kind, subject=user, requested_by=officer)
            while True:
                job.refresh_from_db()
                if job.status in ("done", "failed"):
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            if job.status != "done":
                raise SystemExit(f"{kind} failed: {job.error}")
            print(f"{kind}: {elapsed:.2f}s, counts {job.counts}", flush=True)
            return elapsed

    try:
        export_s = run(GdprJob.Kind.EXPORT)
        print(f"after export: peak PSS {peak[0] / 2**20:.1f} MB, largest process RSS {peak[2] / 2**20:.1f} MB")
        delete_s = run(GdprJob.Kind.DELETION)
    finally:
        sampling = False
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    mb = [round(v / 1024 / 1024, 1) for v in peak]
    print(f"worker tree: peak PSS {mb[0]} MB, peak summed RSS {mb[1]} MB, largest process RSS {mb[2]} MB")
    emit({"export_s": round(export_s, 2), "delete_s": round(delete_s, 2), "worker_peak_rss_mb": mb[0]})


if __name__ == "__main__":
    main()
