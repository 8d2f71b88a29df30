"""Who ``m3leo gee`` is to Earth Engine: credentials, fresh tokens, and the Cloud project.

Credentials, first found wins:

1. a key file given with ``--credentials FILE`` or the setting ``ee_credentials``
   (``M3LEO_EE_CREDENTIALS``, then ``GOOGLE_APPLICATION_CREDENTIALS``): a service-account key,
   or stored user credentials, loaded by google-auth with the Earth Engine scopes;
2. an access token in ``M3LEO_EE_TOKEN`` (used as is: it cannot be refreshed);
3. what ``earthengine authenticate`` stored (earthengine-api reads it; it falls back to
   gcloud's application-default credentials).

google-auth's own credential classes do the OAuth work (the refresh-token grant, the signed
JWT-bearer grant of a service account). A token is refreshed before it expires and, once, after
a 401. ``ee_token_uri`` points the token requests elsewhere (the loopback server in tests).

The project (sent in the URL and as ``X-Goog-User-Project``, as earthengine-api does):
``--project``, then ``M3LEO_EE_PROJECT``, then the project ``earthengine set_project`` stored,
then the credentials' quota project (a service-account key's own project), then
``GOOGLE_CLOUD_PROJECT``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import EarthEngineError, MissingDependencyError

EE_SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
)
_TOKEN_HINT = "or set M3LEO_EE_TOKEN to an access token (`gcloud auth print-access-token`)"


class ChipFailed(EarthEngineError):
    """This chip could not be fetched; the run records it and goes on."""


class RunStopped(EarthEngineError):
    """A failure every chip would meet (credentials, project, endpoint): the run stops."""


class TokenSource:
    """Bearer tokens for Earth Engine requests, shared by the workers of one run."""

    def __init__(self, what: str, creds: Any = None, static: str | None = None) -> None:
        self.what = what  # where the credentials came from, for messages
        self.creds, self.static = creds, static
        self.refreshes = 0
        self.file_project: str | None = None  # the project a key file names
        self._lock = threading.Lock()

    @property
    def quota_project(self) -> str | None:
        if self.creds is None:
            return None
        return getattr(self.creds, "quota_project_id", None) or self.file_project

    def token(self) -> str:
        """A token valid now (refreshed first when it is missing or about to expire)."""
        if self.static is not None:
            return self.static
        with self._lock:
            if not self.creds.valid:
                self._refresh()
            return str(self.creds.token)

    def refresh_after_401(self, stale: str) -> bool:
        """Refresh once after the server refused ``stale``; False when nothing can be done."""
        if self.static is not None:
            return False
        with self._lock:
            if self.creds.token == stale:  # another worker may have refreshed already
                self._refresh()
        return True

    def _refresh(self) -> None:
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        try:
            self.creds.refresh(Request())
        except google.auth.exceptions.GoogleAuthError as exc:
            raise RunStopped(
                f"cannot get an Earth Engine token from {self.what}: {_short(exc)}",
                "run `earthengine authenticate` again, or check the key file "
                "(--credentials, GOOGLE_APPLICATION_CREDENTIALS) and M3LEO_EE_TOKEN_URI",
            ) from None
        self.refreshes += 1


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def _google_auth() -> Any:
    try:
        import google.auth
    except ImportError:
        hint = MissingDependencyError("earthengine-api", "gee").hint
        raise EarthEngineError("no Earth Engine credentials", f"{hint}, {_TOKEN_HINT}") from None
    return google.auth


def _from_file(path: Path, token_uri: str | None) -> TokenSource:
    """A service-account key or stored user credentials (JSON), loaded by google-auth's class
    for that type with the Earth Engine scopes."""
    import json

    _google_auth()
    import google.auth.exceptions
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    hint = (
        "give a service-account key (JSON, `gcloud iam service-accounts keys create`) or "
        "stored user credentials with --credentials FILE or GOOGLE_APPLICATION_CREDENTIALS"
    )
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        kind = info.get("type") if isinstance(info, dict) else None
        if kind == "service_account":
            creds: Any = service_account.Credentials.from_service_account_info(
                info, scopes=list(EE_SCOPES)
            )
            project = info.get("project_id")
        elif kind == "authorized_user":
            creds = user_credentials.Credentials.from_authorized_user_info(
                info, scopes=list(EE_SCOPES)
            )
            project = None
        else:
            raise ValueError(f"credentials of type {kind!r} (not a service-account key)")
    except FileNotFoundError:
        raise EarthEngineError(f"no credentials file {path}", hint) from None
    except (google.auth.exceptions.GoogleAuthError, ValueError, OSError) as exc:
        raise EarthEngineError(f"cannot use credentials file {path}: {_short(exc)}", hint) from None
    if token_uri:
        creds = creds.with_token_uri(token_uri)
    source = TokenSource(f"credentials file {path}", creds=creds)
    source.file_project = project
    return source


def _stored(token_uri: str | None) -> TokenSource:
    """What ``earthengine authenticate`` stored (read by earthengine-api), else gcloud's
    application-default credentials, as ``ee.Initialize`` picks them; no request is made."""
    try:
        from ee import oauth
    except ImportError:
        hint = MissingDependencyError("earthengine-api", "gee").hint
        raise EarthEngineError(
            "no Earth Engine credentials",
            f"run `earthengine authenticate` ({hint}), {_TOKEN_HINT}",
        ) from None
    import google.auth
    import google.auth.exceptions
    from google.oauth2.credentials import Credentials

    try:
        args = oauth.get_credentials_arguments()
    except (OSError, ValueError):
        args = {}
    what = "`earthengine authenticate` credentials"
    creds: Any = None
    if args.get("refresh_token"):
        creds = Credentials(None, **args)
    else:
        try:
            creds, _ = google.auth.default(scopes=list(EE_SCOPES))
            what = "application-default credentials (gcloud)"
        except google.auth.exceptions.DefaultCredentialsError:
            creds = None
    if creds is None:
        raise EarthEngineError(
            "no Earth Engine credentials",
            "run `earthengine authenticate`, give a service-account key with --credentials "
            f"FILE, {_TOKEN_HINT}",
        )
    if token_uri and hasattr(creds, "with_token_uri"):
        creds = creds.with_token_uri(token_uri)
    return TokenSource(what, creds=creds)


def token_source(settings: Settings) -> TokenSource:
    """The credentials of this run (see the module's docstring for the order)."""
    if settings.ee_credentials is not None and settings.source_of("ee_credentials") in (
        "command line",
        "$M3LEO_EE_CREDENTIALS",
    ):
        return _from_file(settings.ee_credentials, settings.ee_token_uri)
    if settings.ee_token:
        return TokenSource("M3LEO_EE_TOKEN", static=settings.ee_token)
    if settings.ee_credentials is not None:
        return _from_file(settings.ee_credentials, settings.ee_token_uri)
    return _stored(settings.ee_token_uri)


def stored_project() -> str | None:
    """The project ``earthengine set_project`` stored, when earthengine-api is installed."""
    try:
        from ee import oauth
    except ImportError:
        return None
    try:
        project = oauth.get_credentials_arguments().get("quota_project_id")
    except (OSError, ValueError):
        return None
    return str(project) if project else None


def resolve_project(settings: Settings, flag: str | None, tokens: TokenSource) -> str:
    """``--project``, ``M3LEO_EE_PROJECT``, ee's stored project, the credentials' quota
    project, ``GOOGLE_CLOUD_PROJECT``: the first one set."""
    for candidate in (
        flag,
        settings.ee_project,
        stored_project(),
        tokens.quota_project,
        settings.cloud_project,
    ):
        if candidate:
            return str(candidate)
    raise EarthEngineError(
        "no Earth Engine project given",
        "pass --project ID (a Cloud project registered for Earth Engine), set "
        "M3LEO_EE_PROJECT, or run `earthengine set_project ID`",
    )
