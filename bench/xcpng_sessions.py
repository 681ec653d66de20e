"""What recording XAPI sessions costs (so a killed bioxen's can be logged out later).

Measured in the same run against the XAPI simulator over loopback HTTP, median of
``--runs`` rounds of ``--logins`` login + one call + logout each:

* **XapiSession** — the bare session: login, ``pool.get_all``, logout.
* **PoolSession** — what bioxen uses: the same, plus ``session.get_uuid``, the record
  written (fsync'ed) at login, the sweep of abandoned sessions, and the record removed at
  logout.

Run: ``python bench/xcpng_sessions.py`` (a few seconds).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--logins", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BIOXEN_STATE_DIR"] = str(Path(tmp) / "state")
        from bioxen_shell.remote import xcpng
        from bioxen_shell.remote.xapi import XapiSession
        from tests.xapi_sim import start_pool
        from tests.xapi_sim.fixtures import SIM_PASSWORD, SIM_USER
        pool = start_pool(Path(tmp) / "pool")
        try:
            password = Path(tmp) / "pw"
            password.write_text(SIM_PASSWORD + "\n")
            password.chmod(0o600)
            settings = xcpng.PoolSettings.from_mapping(
                "bench", {"url": pool.url, "user": SIM_USER, "password_file": str(password),
                          "allow_http": True}, "bench")
            import warnings
            warnings.simplefilter("ignore")

            def bare() -> XapiSession:
                return XapiSession(pool.url, SIM_USER, SIM_PASSWORD)

            def recorded() -> XapiSession:
                return xcpng.pool_session(settings)

            results = {}
            for name, make in (("XapiSession", bare), ("PoolSession", recorded)):
                rounds = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    for _ in range(args.logins):
                        with make() as s:
                            s.call("pool.get_all")
                    rounds.append((time.perf_counter() - t0) / args.logins)
                results[name] = statistics.median(rounds)
            assert pool.sim.open_sessions() == []
        finally:
            pool.stop()
    base = results["XapiSession"]
    for name, value in results.items():
        print(f"{name:12s} {value * 1000:7.2f} ms per login+call+logout "
              f"({value / base:.2f}x the bare session)")


if __name__ == "__main__":
    main()
