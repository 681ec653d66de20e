"""An XAPI simulator: XML-RPC over HTTP(S) on loopback for the unmodified XenAPI SDK.

``start_pool(dir)`` runs a simulated pool (coordinator + member, HTTP + HTTPS);
``XapiSimulator`` is its state and rules.  See simulator.py for the test controls.
"""
from .model import NULL, XapiError
from .server import RunningPool, SimServer, start_pool
from .simulator import GiB, MiB, GuestBehaviour, XapiSimulator

__all__ = ["NULL", "XapiError", "RunningPool", "SimServer", "start_pool", "GiB", "MiB",
           "GuestBehaviour", "XapiSimulator"]
