"""Known-vulnerability scan of the pinned dependencies (pip-audit) and the test tools' npm packages (npm audit).

Fails (exit 1) on a known vulnerability that .ci/pip-audit-allowlist.txt does not list. When a vulnerability service
cannot be reached or does not know the packages (a mirror without PyPI's JSON API or npm's advisory endpoint, an
offline machine), it says so in one clear line and does not fail, unless ATRIUM_AUDIT_STRICT=1: an unreachable
service must not block every change, and it must not pass silently either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / ".ci" / "pip-audit-allowlist.txt"
STRICT = os.environ.get("ATRIUM_AUDIT_STRICT") == "1"


def allowlisted() -> list[str]:
    """Vulnerability ids from the allow-list: one per line, `ID  # why, and until when`."""
    if not ALLOWLIST.exists():
        return []
    ids = []
    for line in ALLOWLIST.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            ids.append(entry)
    return ids


def degraded(what: str) -> int:
    print(f"security-audit: {what}; NOT audited{' (strict: failing)' if STRICT else ''}.")
    return 1 if STRICT else 0


def python_audit() -> int:
    pip_audit = ROOT / ".venv" / "bin" / "pip-audit"
    args = [str(pip_audit), "--skip-editable", "--progress-spinner", "off", "--format", "json"]
    for vuln in allowlisted():
        args += ["--ignore-vuln", vuln]
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return degraded("pip-audit: the vulnerability service did not answer within 10 minutes")
    try:
        report = json.loads(done.stdout or "{}")
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return degraded(f"pip-audit could not query its vulnerability service ({last})")
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"security-audit: {dep['name']} {dep.get('version', '')} has known vulnerabilities: {ids}")
    if vulnerable:
        print(f"security-audit: upgrade, or list an id in {ALLOWLIST.relative_to(ROOT)} with the reason")
        return 1
    audited = len(dependencies) - len(skipped)
    if dependencies and audited == 0:
        return degraded(f"pip-audit: the vulnerability service knows none of the {len(dependencies)} installed "
                        f"packages (a package mirror without PyPI's JSON API?)")
    note = f", {len(skipped)} unknown to the service" if skipped else ""
    print(f"security-audit: Python: {audited} packages audited, no known vulnerabilities{note}")
    return 0


def npm_audit() -> int:
    status = 0
    for package_json in sorted((ROOT / "tests" / "node").glob("*/package.json")):
        directory = package_json.parent
        try:
            done = subprocess.run(["npm", "audit", "--json", "--audit-level=high"], cwd=directory,
                                  capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            status = max(status, degraded(f"npm audit in {directory.name}: {exc.__class__.__name__}"))
            continue
        try:
            report = json.loads(done.stdout or "{}")
        except ValueError:
            report = {}
        if "error" in report or "metadata" not in report:
            summary = (report.get("error") or {}).get("summary") or "the advisory endpoint returned an error"
            status = max(status, degraded(f"npm audit in tests/node/{directory.name}: {summary}"))
            continue
        counts = report["metadata"].get("vulnerabilities", {})
        serious = int(counts.get("high", 0)) + int(counts.get("critical", 0))
        if serious:
            print(f"security-audit: tests/node/{directory.name}: {serious} high or critical npm advisories "
                  f"(run `npm audit` there)")
            status = 1
        else:
            print(f"security-audit: tests/node/{directory.name}: no high or critical npm advisories")
    return status


def main() -> int:
    return max(python_audit(), npm_audit())


if __name__ == "__main__":
    sys.exit(main())
