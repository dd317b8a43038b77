"""`make bench`: run every benchmarks/bench_*.py in turn, each in its own process, and print
their figures. Not part of `make test`.

    .venv/bin/python benchmarks/run.py [NAME ...]      e.g. run.py ingest queries

`scale` (bench_scale.py: the whole system with 5,000 devices for several minutes) runs only
when named: `run.py scale` (its options: run bench_scale.py itself).

The benchmarks run against PostgreSQL (the production database; each makes and drops a
throwaway database): BENCH_DATABASE_URL, else DATABASE_URL when it names PostgreSQL, else
postgres://postgres@127.0.0.1:5432/monitoring. REDIS_URL is passed on (unset: each starts
the embedded Redis under var/bench). Exit code 1 when a benchmark failed."""

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/monitoring"
# Run only when named: too long for every `make bench`.
ON_REQUEST = {"bench_scale"}


def database_url() -> str:
    for name in ("BENCH_DATABASE_URL", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgres://", "postgresql://")):
            return url
    return DEFAULT_DATABASE_URL


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not names:
        scripts = [s for s in scripts if s.stem not in ON_REQUEST]
    else:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names or s.stem in names]
        if not scripts:
            known = ", ".join(s.stem for s in HERE.glob("bench_*.py"))
            print(f"no benchmark named {', '.join(names)}; there are: {known}")
            return 2
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MONITORING_VAR_DIR": os.environ.get("MONITORING_VAR_DIR", str(ROOT / "var" / "bench")),
        "PYTHONUNBUFFERED": "1",
    }
    print(f"Benchmarks on {env['DATABASE_URL'].rsplit('@', 1)[-1]}: {', '.join(s.stem for s in scripts)}")
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} {'=' * (70 - len(script.stem))}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, check=False).returncode
        print(
            f"--- {script.stem}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {time.monotonic() - started:.0f} s"
        )
        if code:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
