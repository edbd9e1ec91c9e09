"""In-process A/B microbenchmark of the per-call policy work of /v1/messages that needs no database: the access
policy's permission checks (policy_check), the walks of the request body (validate_body, has_images,
estimate_input_tokens), the tenant's targets (targets_for_tenant) and the per-process caches' TTL read.

    .venv/bin/python bench/policy_micro.py BASELINE_DIR [N]

BASELINE_DIR holds the baseline's copies of the modules (policy.py, calls.py, targets.py, e.g.
from `git show <commit>:access/policy.py`), loaded beside this tree's in the same process; old and new are called
in turn (old, new, new, old...), N calls each per round, so the machine's load falls on both alike. Prints the
median over rounds of CPU per call (thread_time_ns), in microseconds. The TTL's old side is the expression
config.tenant_cache.cache_ttl was before config/settings_once.py.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ.setdefault("ATRIUM_AUTH_CACHE_S", "60")
os.environ["ATRIUM_PROVIDER_ORDER"] = os.environ.get("ATRIUM_PROVIDER_ORDER", "anthropic")
from _common import module_from_file

BODY = {"model": "claude-sonnet-5-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Give me one short sentence about benchmarks."}]}
BODY_CHAT = {"model": "claude-sonnet-5-5", "max_tokens": 1024, "system": "Be brief.",
             "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello " * 20}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "Hi " * 30}]},
                          {"role": "user", "content": [{"type": "text", "text": "And now? " * 10},
                                                       {"type": "tool_result", "tool_use_id": "t1",
                                                        "content": [{"type": "text", "text": "42"}]}]}]}


def load(name: str, path: Path) -> ModuleType:
    return module_from_file(f"baseline_{name}", path)


def timed(fn: Callable[[], Any], n: int) -> float:
    start = time.thread_time_ns()
    for _ in range(n):
        fn()
    return (time.thread_time_ns() - start) / n / 1000


def ab(label: str, old: Callable[[], Any], new: Callable[[], Any], n: int, rounds: int = 30) -> None:
    assert repr(old()) == repr(new()), (label, old(), new())
    a: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        pair = ((a, old), (b, new)) if i % 2 == 0 else ((b, new), (a, old))
        for sink, fn in pair:
            sink.append(timed(fn, n))
    print(f"{label:44s} old {statistics.median(a):7.2f} us  new {statistics.median(b):7.2f} us  "
          f"min {min(a):7.2f} -> {min(b):7.2f}")


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User

    from access import policy
    from inference import calls, targets
    from tenants.models import Tenant

    base = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    old_policy = load("policy", base / "policy.py")
    old_calls = load("calls", base / "calls.py")
    old_targets = load("targets", base / "targets.py")

    user = User(pk=1, username="bench", is_active=True)
    user._perm_cache = {"access.write", "access.use_sonnet", "access.use_haiku", "access.use_tools"}
    tenant = Tenant(schema_name="bench", provider_order=["anthropic", "bedrock:eu-west-1"],
                    credentials={"anthropic": {"api_key": "sk-ant-x"}, "bedrock": {"mode": "default"}})
    for mod in (old_policy, policy):
        mod.policy_check(user=user, tenant=tenant, model="claude-sonnet-5-5", tier="sonnet", max_tokens=64)

    def check(mod: ModuleType, tokens: int) -> Callable[[], Any]:
        return lambda: mod.policy_check(user=user, tenant=tenant, model="claude-sonnet-5-5", tier="sonnet",
                                        max_tokens=tokens, has_tools=False, has_images=False)

    ab("policy_check (2 permissions)", check(old_policy, 64), check(policy, 64), n)
    ab("policy_check (3 permissions, clamp)", check(old_policy, 8192), check(policy, 8192), n)

    def walks(mod: ModuleType, body: dict[str, Any]) -> Callable[[], Any]:
        if hasattr(mod, "BodyFacts"):  # one walk
            def one() -> Any:
                facts = mod.validate_body(body)
                return facts.has_images, facts.input_estimate
            return one

        def three() -> Any:
            mod.validate_body(body)
            return mod.has_images(body), mod.estimate_input_tokens(body)
        return three

    ab("validate + has_images + estimate (bench body)", walks(old_calls, BODY), walks(calls, BODY), n)
    ab("validate + has_images + estimate (chat body)", walks(old_calls, BODY_CHAT), walks(calls, BODY_CHAT), n)
    ab("targets_for_tenant (2 targets)", lambda: old_targets.targets_for_tenant(tenant),
       lambda: targets.targets_for_tenant(tenant), n)

    from django.conf import settings

    from config.tenant_cache import cache_ttl

    ab("the auth caches' TTL (cache_ttl)", lambda: float(getattr(settings, "ATRIUM_AUTH_CACHE_S", 0) or 0),
       cache_ttl, n * 5)


if __name__ == "__main__":
    main()
