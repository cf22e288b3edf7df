"""Runs the end-to-end tests: every test_* function of tests/py/test_*.py, each in a
fresh temporary directory. Prints one line per test and 'N passed, N failed'.

    EMERGECTL=bin/emergectl /usr/bin/python3 tests/py/run.py [NAME_SUBSTRING]"""
import importlib
import os
import sys
import tempfile
import time
import traceback

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from daemon import stop_all  # noqa: E402
from helpers import Skip  # noqa: E402


def main():
    want = sys.argv[1] if len(sys.argv) > 1 else ""
    passed = failed = skipped = 0
    for mod_name in sorted(f[:-3] for f in os.listdir(here) if f.startswith("test_") and f.endswith(".py")):
        mod = importlib.import_module(mod_name)
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            if want not in f"{mod_name}.{name}":
                continue
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="emerge-e2e-") as tmp:
                try:
                    getattr(mod, name)(tmp)
                    passed += 1
                    print(f"PASS {mod_name}.{name} ({time.monotonic() - t0:.1f}s)", flush=True)
                except Skip as why:
                    skipped += 1
                    print(f"SKIP {mod_name}.{name}: {why}", flush=True)
                except Exception:  # noqa: BLE001 - report every failure, keep going
                    failed += 1
                    print(f"FAIL {mod_name}.{name}", flush=True)
                    traceback.print_exc()
                finally:
                    stop_all()  # a daemon a failing test left running would hold its ports
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped (see SKIP lines)" if skipped else ""))
    sys.exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    main()
