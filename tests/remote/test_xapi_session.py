"""The XAPI session layer (bioxen_shell/remote/xapi.py) against the simulator, through the
unmodified XenAPI SDK: login/originator, HOST_IS_SLAVE, bad credentials, session expiry, TLS
verification/pinning/off-with-warning, error shapes, tasks and event.from waits."""
from __future__ import annotations

import logging
import warnings

import pytest
import XenAPI

from bioxen_shell.remote.xapi import (
    ORIGINATOR, InsecureTLSWarning, TLSSettings, XapiAuthError, XapiConnectionError, XapiError,
    XapiSession, XapiTimeout, normalise_fingerprint,
)
from tests.waiting import PATIENCE, wait_for
from tests.xapi_sim.fixtures import SIM_PASSWORD, SIM_USER, TEMPLATE


def session_for(url: str, password: str = SIM_PASSWORD, **kw) -> XapiSession:
    return XapiSession(url, SIM_USER, password, label="pool 'sim'", **kw)


def test_login_sends_version_and_bioxen_originator_and_logs_out(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool.url) as s:
        assert s.call("pool.get_all") == [sim.pool]
        assert len(sim.open_sessions()) == 1
    assert sim.logins == [{"user": SIM_USER, "version": "1.0", "originator": ORIGINATOR}]
    assert sim.open_sessions() == []  # always logged out


def test_session_logged_out_even_when_the_body_raises(xapi_test_pool):
    with pytest.raises(XapiError):
        with session_for(xapi_test_pool.url) as s:
            s.call("VM.start", "OpaqueRef:nope", False, False)
    assert xapi_test_pool.sim.open_sessions() == []


def test_errors_carry_code_named_params_and_call(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool.url) as s:
        vm = s.call("VM.clone", sim.template, "x")
        with pytest.raises(XapiError) as exc:
            s.call("VM.start", vm, False, False)  # still a template
        assert exc.value.code == "VM_IS_TEMPLATE"
        s.call("VM.provision", vm)
        s.call("VM.start", vm, False, False)
        with pytest.raises(XapiError) as exc:
            s.call("VM.start", vm, False, False)
    err = exc.value
    assert (err.code, err.param("expected"), err.param("actual")) == (
        "VM_BAD_POWER_STATE", "halted", "running")
    assert "VM.start failed: VM_BAD_POWER_STATE" in str(err) and "actual=running" in str(err)


def test_bad_password_is_an_auth_error_without_the_password(xapi_test_pool):
    with pytest.raises(XapiAuthError) as exc:
        session_for(xapi_test_pool.url, password="hunter2-wrong").login()
    assert exc.value.code == "SESSION_AUTHENTICATION_FAILED"
    assert "hunter2-wrong" not in str(exc.value) and "root" in str(exc.value)
    assert xapi_test_pool.sim.open_sessions() == []


def test_host_is_slave_redirects_to_the_coordinator(xapi_test_pool, caplog):
    caplog.set_level(logging.INFO, logger="bioxen_shell.remote.xapi")
    member = xapi_test_pool.member_http.url
    assert member.startswith("http://127.0.0.1:")
    with session_for(member) as s:
        assert s.coordinator_url == xapi_test_pool.url  # 127.0.0.2, same port
        assert s.call("VM.get_by_name_label", TEMPLATE)
    assert "pool member" in caplog.text
    assert SIM_PASSWORD not in caplog.text


def test_sdk_alone_does_not_follow_host_is_slave(xapi_test_pool):
    """Why the redirect logic exists: the stock SDK raises."""
    sdk = XenAPI.Session(xapi_test_pool.member_http.url)
    with pytest.raises(XenAPI.Failure) as exc:
        sdk.xenapi.login_with_password(SIM_USER, SIM_PASSWORD, "1.0", "test")
    assert exc.value.details == ["HOST_IS_SLAVE", "127.0.0.2"]


def test_expired_session_is_renewed_transparently(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool.url) as s:
        before = s.call("VM.get_all")
        sim.expire_sessions()
        assert s.call("VM.get_all") == before
    assert len(sim.logins) == 2  # the SDK logged in again with the same credentials
    assert sim.open_sessions() == []


def test_idle_timeout_expiry_is_renewed(xapi_test_pool):
    sim = xapi_test_pool.sim
    sim.session_idle_timeout = 0.3
    try:
        with session_for(xapi_test_pool.url) as s:
            import time
            time.sleep(0.4)
            assert s.call("pool.get_all") == [sim.pool]
    finally:
        sim.session_idle_timeout = None
    assert len(sim.logins) >= 2


def test_connection_refused_names_the_url():
    with pytest.raises(XapiConnectionError) as exc:
        session_for("http://127.0.0.1:9/").login()
    assert "127.0.0.1:9" in str(exc.value)


def test_dropped_connection_is_a_connection_error(xapi_test_pool):
    with session_for(xapi_test_pool.url) as s:
        # a read is asked again once after a broken connection; broken again, it fails
        xapi_test_pool.http.drop_next["VM.get_all"] = 2
        with pytest.raises(XapiConnectionError):
            s.call("VM.get_all")


# ------------------------------------------------------------------------------ TLS
def test_tls_default_refuses_an_unknown_ca_and_says_how_to_trust(xapi_test_pool):
    with pytest.raises(XapiConnectionError) as exc:
        session_for(xapi_test_pool.https.url).login()
    message = str(exc.value)
    assert "not trusted" in message
    assert xapi_test_pool.certs.fingerprint in message  # the one to pin, after checking it
    assert xapi_test_pool.sim.logins == []  # the password never left


def test_tls_with_ca_bundle(xapi_test_pool):
    tls = TLSSettings(ca_bundle=str(xapi_test_pool.certs.ca_file))
    with session_for(xapi_test_pool.https.url, tls=tls) as s:
        assert s.call("pool.get_all")


def test_tls_ca_bundle_follows_host_is_slave(xapi_test_pool):
    tls = TLSSettings(ca_bundle=str(xapi_test_pool.certs.ca_file))
    with session_for(xapi_test_pool.member_https.url, tls=tls) as s:
        assert s.coordinator_url == xapi_test_pool.https.url


def test_tls_pinned_fingerprint_accepts_only_that_certificate(xapi_test_pool):
    certs = xapi_test_pool.certs
    tls = TLSSettings(fingerprint=certs.fingerprint)
    with session_for(xapi_test_pool.https.url, tls=tls) as s:
        assert s.call("pool.get_all")
    with pytest.raises(XapiConnectionError) as exc:
        session_for(xapi_test_pool.https_other_cert.url, tls=tls).login()
    assert "fingerprint mismatch" in str(exc.value)
    assert certs.other_fingerprint in str(exc.value)
    assert len(xapi_test_pool.sim.logins) == 1  # no password sent to the impostor


def test_tls_pin_follows_redirect_via_coordinator_thumbprint(xapi_test_pool):
    """Pinned to the member's own certificate; the member names the coordinator's certificate
    (x-xenapi-response-host-certificate-thumbprint) over that trusted connection."""
    certs = xapi_test_pool.certs
    assert certs.member_fingerprint != certs.fingerprint
    tls = TLSSettings(fingerprint=certs.member_fingerprint)
    with session_for(xapi_test_pool.member_https.url, tls=tls) as s:
        assert s.coordinator_url == xapi_test_pool.https.url
        assert s.call("pool.get_all")


def test_tls_off_is_explicit_and_warns(xapi_test_pool):
    tls = TLSSettings(verify=False)
    with pytest.warns(InsecureTLSWarning, match="TLS verification is OFF"):
        with session_for(xapi_test_pool.https_other_cert.url, tls=tls) as s:
            assert s.call("pool.get_all")


def test_fingerprint_formats():
    hexd = "ab" * 32
    assert normalise_fingerprint("sha256:" + ":".join(["AB"] * 32)) == hexd
    assert normalise_fingerprint(hexd.upper()) == hexd
    with pytest.raises(ValueError, match="SHA-256"):
        normalise_fingerprint("sha1:12:34")


# ------------------------------------------------------------------------------ tasks/events
def test_wait_task_returns_result_and_destroys_task(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool.url) as s:
        vm = s.run_async("VM.clone", sim.template, "async-clone", timeout=PATIENCE, what="clone")
        assert vm.startswith("OpaqueRef:") and vm in sim.table("VM")
        assert sim.table("task") == {}
        assert s.call("event_from", ["vm"], "", 0.0)["events"]  # event.from via alias


def test_task_failure_surfaces_its_code(xapi_test_pool):
    sim = xapi_test_pool.sim
    sim.fail_next("VM.clone", "SR_FULL", "4294967296", "0")
    with session_for(xapi_test_pool.url) as s:
        with pytest.raises(XapiError) as exc:
            s.run_async("VM.clone", sim.template, "x", timeout=PATIENCE, what="clone")
    assert exc.value.code == "SR_FULL" and exc.value.call == "Async.VM.clone"
    assert exc.value.param("requested") == "4294967296"
    assert sim.table("task") == {}


def test_task_timeout_cancels_the_task(xapi_test_pool):
    sim = xapi_test_pool.sim
    sim.guest.clean_shutdown_hangs = True
    with session_for(xapi_test_pool.url) as s:
        vm = s.call("VM.clone", sim.template, "hangs")
        s.call("VM.provision", vm)
        s.call("VM.start", vm, False, False)
        s.wait_until(["vm"], lambda: s.call("VM.get_guest_metrics", vm) != "OpaqueRef:NULL"
                     or None, PATIENCE, "guest metrics")
        with pytest.raises(XapiTimeout, match="shutdown"):
            s.run_async("VM.clean_shutdown", vm, timeout=0.3, what="shutdown")
        assert s.call("VM.get_power_state", vm) == "Running"
    assert sim.table("task") == {}


def test_wait_until_uses_event_from_not_sleeps(xapi_test_pool):
    sim = xapi_test_pool.sim
    # The guest finishes booting only once the client waits on events: its IP is never there
    # at the first look, however slowly the machine runs.
    sim.guest.on_boot.append(lambda sim, vm: wait_for(lambda: sim.calls("event_from"), "event.from") and None)
    with session_for(xapi_test_pool.url) as s:
        vm = s.call("VM.clone", sim.template, "ev")
        s.call("VM.provision", vm)
        s.call("VM.start", vm, False, False)
        ip = s.wait_until([f"vm/{vm}", "vm_guest_metrics"], lambda: (
            s.call("VM_guest_metrics.get_networks", s.call("VM.get_guest_metrics", vm))
            .get("0/ip") if s.call("VM.get_guest_metrics", vm) != "OpaqueRef:NULL" else None),
            PATIENCE, "ip")
    assert ip == sim.guest.ip
    assert sim.calls("event_from")  # waited on events


def test_insecure_warning_is_a_real_warning_class():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("x", InsecureTLSWarning)
    assert issubclass(caught[0].category, UserWarning)


def test_busy_pool_is_retried_then_reported(xapi_test_pool):
    sim = xapi_test_pool.sim
    sim.fail_next("VM.clone", "OTHER_OPERATION_IN_PROGRESS", "VM", sim.template, "clone",
                  "OpaqueRef:other", count=2)
    with session_for(xapi_test_pool.url) as s:
        assert s.call("VM.clone", sim.template, "patient").startswith("OpaqueRef:")
        assert len(sim.calls("VM.clone")) == 3
        s.busy_timeout = 0.5
        sim.fail_next("VM.clone", "TOO_BUSY", count=100)
        with pytest.raises(XapiError) as exc:
            s.call("VM.clone", sim.template, "impatient")
    assert exc.value.code == "TOO_BUSY"
