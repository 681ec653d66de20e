"""A busy pool: hundreds of other VMs running, their guest agents reporting all the time.

On a production pool every running guest's agent rewrites its ``VM_guest_metrics`` (memory,
disks, networks) every few seconds, so a client subscribed to a whole class gets a stream of
events that are none of its business.  ``with BusyPool(sim, vms=300) as busy:`` adds such VMs
to a simulated pool and a thread that keeps updating their metrics.  Meanwhile
``busy.subscriptions`` records what every ``event.from`` asked for (as the call starts) and
``busy.deliveries`` what it answered (subscriptions and events), so a test can count what a
client was sent; ``busy.refs`` are the objects that belong to nobody under test.  Leaving
the block stops the thread and unhooks the recording; the VMs stay until the simulator is
reset.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .simulator import GiB, XapiSimulator


class BusyPool:
    def __init__(self, sim: XapiSimulator, vms: int = 300, reports_per_second: float = 300.0
                 ) -> None:
        self.sim, self.count, self.rate = sim, vms, reports_per_second
        self.vms: list[str] = []
        self.metrics: list[str] = []
        self.updates = 0            # metrics reports written so far
        self.deliveries: list[tuple[list[str], list[dict]]] = []
        self.subscriptions: list[list[str]] = []  # of every event.from call, when it began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_from: Any = None

    @property
    def refs(self) -> set[str]:
        return set(self.vms) | set(self.metrics)

    def events_about_them(self) -> list[dict]:
        """Every event delivered (to anyone) about one of the busy pool's objects."""
        mine = self.refs
        return [e for _, events in self.deliveries for e in events if e["ref"] in mine]

    def __enter__(self) -> "BusyPool":
        self._populate()
        self._record_deliveries()
        self._thread = threading.Thread(target=self._report, name="xapi-sim busy pool",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sim._methods["event.from"].fn = self._event_from

    def _populate(self) -> None:
        db = self.sim.db
        # Their memory is on the pool's other hosts: it must not crowd out the VMs under test.
        self.sim.host_memory += self.count * GiB
        with db.lock:
            for n in range(self.count):
                ip = f"10.{n // 250}.{n % 250}.{10 + n % 200}"
                metrics = db.create("VM_guest_metrics", PV_drivers_detected=True,
                                    networks={"0/ip": ip, "0/ipv4/0": ip},
                                    memory={"free": str(GiB // 2)})
                vm = db.create("VM", name_label=f"app-{n:03d}", power_state="Running",
                               resident_on=self.sim.host, domid=str(1000 + n),
                               guest_metrics=metrics)
                self.vms.append(vm)
                self.metrics.append(metrics)

    def _record_deliveries(self) -> None:
        method = self.sim._methods["event.from"]
        self._event_from = original = method.fn

        def recording(ctx: Any, classes: list, token: str, timeout: float) -> dict:
            self.subscriptions.append(list(classes))  # as the call starts (it may block)
            reply = original(ctx, classes, token, timeout)
            self.deliveries.append((list(classes), reply["events"]))
            return reply

        method.fn = recording

    def _report(self) -> None:
        """Round-robin metrics updates at ``reports_per_second``, in small batches."""
        batch = max(1, int(self.rate / 100))
        n = 0
        while not self._stop.wait(batch / self.rate):
            with self.sim.db.lock:
                for _ in range(batch):
                    metrics = self.metrics[n % len(self.metrics)]
                    if self.sim.db.exists("VM_guest_metrics", metrics):  # (until a reset)
                        self.sim.db.update(
                            "VM_guest_metrics", metrics,
                            memory={"free": str(GiB // 2 - (n % 1000) * 4096)},
                            last_updated=time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))
                    n += 1
                    self.updates += 1


def agent_reports_address_late(sim: XapiSimulator, when: Callable[[str], bool]) -> None:
    """Make the simulated guests' agents start as real ones do: the VM_guest_metrics object
    appears first, without an address, and the address is written into it later — once
    ``when(metrics_ref)`` is true (a test waits for a client to be watching it).  Turns the
    simulator's own metrics off (``guest.tools``) for the guests booted from now on."""
    sim.guest.tools = False

    def on_boot(sim: XapiSimulator, vm: str) -> None:
        with sim.db.lock:
            metrics = sim.db.create("VM_guest_metrics", PV_drivers_detected=True)
            sim.db.update("VM", vm, guest_metrics=metrics)

        def report() -> None:
            while not when(metrics):
                time.sleep(0.01)
            with sim.db.lock:
                if sim.db.exists("VM_guest_metrics", metrics):
                    ip = sim.guest.ip
                    sim.db.update("VM_guest_metrics", metrics,
                                  networks={"0/ip": ip, "0/ipv4/0": ip})

        threading.Thread(target=report, name="xapi-sim late agent", daemon=True).start()

    sim.guest.on_boot.append(on_boot)
