"""`m3leo gee` as Earth Engine users run it, against the loopback server: stored
`earthengine authenticate` credentials refreshed on expiry and after a 401, service-account
keys (the signed JWT-bearer grant, with the Earth Engine scope), the project's sources in
order, slow answers waited for, a refused endpoint failing fast, the endpoint choice and
counts that must be positive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_aoi_gee as base
from clirun import run

from m3leo_cli.aoi.gee import HIGH_VOLUME_ENDPOINT, STANDARD_ENDPOINT, endpoint_for
from m3leo_cli.aoi.recipes import builtin_recipe, load_recipe
from m3leo_cli.config import load_settings
from m3leo_cli.server.earthengine import EarthEngineServer

PX = base.PX
region, ee = base.region, base.ee  # the fixtures: a small grid, the loopback server


def _stored_credentials(project: str | None = "stored-project") -> None:
    """What `earthengine authenticate` (and `earthengine set_project`) leave in ~."""
    path = Path.home() / ".config" / "earthengine" / "credentials"
    path.parent.mkdir(parents=True)
    doc = {"refresh_token": "stored-refresh-token", "client_id": "cid", "client_secret": "cs"}
    if project:
        doc["project"] = project
    path.write_text(json.dumps(doc))


def _service_account_key(folder: Path, token_uri: str) -> tuple[Path, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    doc = {
        "type": "service_account",
        "project_id": "sa-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "runner@sa-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path = folder / "key.json"
    path.write_text(json.dumps(doc))
    return path, pem


def test_stored_credentials_are_refreshed_when_they_expire(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("M3LEO_EE_TOKEN")
    monkeypatch.delenv("M3LEO_EE_PROJECT")
    monkeypatch.setenv("M3LEO_EE_TOKEN_URI", ee.token_uri)
    _stored_credentials()
    ee.token_lifetime = 1.0  # tokens expire during the run (google-auth refreshes early)
    ee.delay = 0.2
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--workers", "2",
            "--json")  # fmt: skip
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["downloaded"] == info["chips"] and info["failed"] == []
    assert len(ee.grants) > 1 and {g["grant_type"] for g in ee.grants} == {"refresh_token"}
    # the project `earthengine set_project` stored, in the path and the header
    assert {(q["project"], q["user_project"]) for q in ee.requests} == {
        ("stored-project", "stored-project")
    }


def test_a_401_refreshes_the_token_once(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("M3LEO_EE_TOKEN")
    monkeypatch.setenv("M3LEO_EE_TOKEN_URI", ee.token_uri)
    _stored_credentials()
    ee.revoke_next = 1  # the server revokes a token the client still thinks valid
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--workers", "1",
            "--limit", "3", "--json")  # fmt: skip
    assert r.code == 0, r.err
    assert json.loads(r.out)["token_refreshes"] == 2 and ee.rejected_tokens == 1
    assert ee.requests[0]["project"] == "my-project"  # M3LEO_EE_PROJECT before the stored one
    # a token the server refuses again after the refresh stops the run with the fix
    ee.revoke_next = 100
    r = run(capsys, "gee", region, "s1grd-median-2020", "--chip-px", str(PX), "--limit", "3")
    assert r.code == 1 and "refused the credentials (401)" in r.err
    assert "--credentials" in r.err and "earthengine authenticate" in r.err


def test_service_account_keys(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path, region: str,
    ee: EarthEngineServer, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    key, pem = _service_account_key(tmp_path, ee.token_uri)
    ee.service_account_key = pem
    monkeypatch.delenv("M3LEO_EE_TOKEN")
    monkeypatch.delenv("M3LEO_EE_PROJECT")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--limit", "2")
    assert r.code == 0, r.err
    assert [g["grant_type"] for g in ee.grants] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assert ee.requests[-1]["project"] == "sa-project"  # the key's own project
    # --credentials FILE wins over M3LEO_EE_TOKEN; GOOGLE_CLOUD_PROJECT is the last resort
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    monkeypatch.setenv("M3LEO_EE_TOKEN", "stale")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "gcp-project")
    r = run(capsys, "gee", region, "s1grd-median-2020", "--chip-px", str(PX), "--limit", "1",
            "--credentials", str(key))  # fmt: skip
    assert r.code == 0, r.err
    assert len(ee.grants) == 2 and ee.requests[-1]["project"] == "sa-project"
    # the server refuses a grant without the Earth Engine scope (what an empty scope met)
    import google.auth.exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_file(str(key))
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_scope"):
        creds.refresh(Request())
    # a key that is not one
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "nothing"}')
    r = run(capsys, "gee", region, "s1grd-median-2020", "--credentials", str(bad))
    assert r.code == 1 and "cannot use credentials file" in r.err and "service-account" in r.err


def test_project_order(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _stored_credentials(project=None)
    monkeypatch.delenv("M3LEO_EE_PROJECT")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "gcp-project")
    args = ("gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--limit", "1")
    assert run(capsys, *args).code == 0
    assert ee.requests[-1]["project"] == "gcp-project"
    (data_dir / "local" / region).joinpath(".gee-esaworldcover-2020.json").unlink()
    for p in data_dir.rglob("esaworldcover-2020/*.tif"):
        p.unlink()
    assert run(capsys, *args, "--project", "flag-project").code == 0
    assert (ee.requests[-1]["project"], ee.requests[-1]["user_project"]) == (
        "flag-project",
        "flag-project",
    )


def test_slow_answers_are_waited_for_not_retried(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ee.delay = 1.0  # a composite that takes longer than the Hub's 30 s read timeout, scaled
    monkeypatch.setenv("M3LEO_TIMEOUT", "0.2")  # the Hub download setting: not Earth Engine's
    monkeypatch.setenv("M3LEO_EE_TIMEOUT", "30")
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--limit", "2",
            "--json")  # fmt: skip
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["retries"] == 0 and info["requests"] == 2
    # a read timeout shorter than the answer: retried ee_max_retries times, then that chip's
    # failure, named with the setting that fixes it
    monkeypatch.setenv("M3LEO_EE_TIMEOUT", "0.2")
    monkeypatch.setenv("M3LEO_EE_MAX_RETRIES", "1")
    monkeypatch.setenv("M3LEO_EE_BACKOFF", "0.01")
    r = run(capsys, "gee", region, "s1grd-median-2020", "--chip-px", str(PX), "--limit", "1",
            "--json")  # fmt: skip
    assert r.code == 1 and "timed out 2 times" in r.err and "M3LEO_EE_TIMEOUT" in r.err
    assert json.loads(r.out)["retries"] == 1


def test_a_refused_endpoint_fails_fast(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("M3LEO_EE_ENDPOINT", f"http://127.0.0.1:{port}")
    r = run(capsys, "gee", region, "esaworldcover-2020", "--chip-px", str(PX), "--workers", "1",
            "--json")  # fmt: skip
    assert r.code == 1 and "cannot connect to Earth Engine" in r.err
    assert "M3LEO_EE_ENDPOINT" in r.err
    info = json.loads(r.out)
    assert info["requests"] == 2 and info["retries"] == 1  # one quick retry, then the stop
    assert info["downloaded"] == 0 and info["not_tried"] == info["chips"]


def test_endpoint_choice() -> None:
    rec = builtin_recipe("s1grd-2020")
    assert endpoint_for(load_settings({}), rec) == STANDARD_ENDPOINT
    assert endpoint_for(load_settings({"ee_high_volume": True}), rec) == HIGH_VOLUME_ENDPOINT
    own = load_settings({"ee_endpoint": "http://127.0.0.1:9", "ee_high_volume": True})
    assert endpoint_for(own, rec) == "http://127.0.0.1:9"


def test_high_volume_per_recipe(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('datakind = "dem-hv"\nimage = "USGS/SRTMGL1_003"\nbands = ["elevation"]\n'
                 "high_volume = true\n")  # fmt: skip
    assert endpoint_for(load_settings({}), load_recipe(f)) == HIGH_VOLUME_ENDPOINT


@pytest.mark.parametrize("flag", ["--limit", "--workers", "--chip-px"])
@pytest.mark.parametrize("value", ["-1", "0"])
def test_counts_must_be_positive(
    capsys: pytest.CaptureFixture[str], data_dir: Path, region: str, ee: EarthEngineServer,
    flag: str, value: str,
) -> None:  # fmt: skip
    r = run(capsys, "gee", region, "esaworldcover-2020", flag, value)
    assert r.code == 2 and f"{flag} must be at least 1" in r.err, r.err
    assert ee.requests == [] and not list(data_dir.rglob("esaworldcover-2020"))


def test_backoff_is_jittered_and_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    import m3leo_cli.aoi.eefetch as eefetch
    from m3leo_cli.aoi.eeauth import TokenSource

    waits: list[float] = []
    monkeypatch.setattr(eefetch.time, "sleep", waits.append)
    fetcher = eefetch.ChipFetcher(None, "u", TokenSource("t", static="t"), "p",
                                  builtin_recipe("esaworldcover-2020"), 8, backoff=1.0)  # fmt: skip
    for _ in range(20):
        fetcher._sleep(3, None)  # the fourth try: between half and all of 8 s
    assert all(4.0 <= w <= 8.0 for w in waits) and len(set(waits)) > 1
    fetcher._sleep(0, "2.5")
    fetcher._sleep(10, None)
    assert waits[-2:] == [2.5, eefetch.MAX_WAIT]  # Retry-After as given; at most 60 s
