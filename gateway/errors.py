"""The exception tree. Each error carries a machine-readable code and says what to do."""

from __future__ import annotations


class GatewayError(Exception):
    code = "gateway_error"


class ConfigError(GatewayError):
    """Bad settings: one line per problem, each naming the variable."""

    code = "bad_config"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class PortUnavailable(GatewayError):
    """The address to listen on is taken or not ours; `line` says which and what to do."""

    code = "port_unavailable"

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class CredentialError(GatewayError):
    """A request's credentials were refused. Carries the HTTP status and WWW-Authenticate value."""

    code = "credential_error"
    status = 401
    challenge: str | None = 'Bearer realm="gateway"'

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(CredentialError):
    """The Authorization header is not `Bearer <token68>` (RFC 6750 §3.1 invalid_request)."""

    code = "invalid_request"
    status = 400
    challenge = 'Bearer realm="gateway", error="invalid_request"'


class MissingCredentials(CredentialError):
    code = "unauthenticated"
    status = 401
    challenge = 'Bearer realm="gateway"'


class InvalidToken(CredentialError):
    """The provider says the token is not valid (unknown, expired or revoked)."""

    code = "invalid_token"
    status = 401
    challenge = 'Bearer realm="gateway", error="invalid_token"'


class Forbidden(CredentialError):
    code = "forbidden"
    status = 403
    challenge: str | None = None


class BadOrigin(Forbidden):
    code = "bad_origin"


class CrossSiteRequest(Forbidden):
    """A request only the gateway's own pages may make (POST /auth/refresh) came from anywhere else."""

    code = "cross_site_request"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    challenge = 'Bearer realm="gateway", error="insufficient_scope"'


class RateLimited(CredentialError):
    """Too many failed attempts from one client address: slow down before any provider call."""

    code = "rate_limited"
    status = 429
    challenge = None

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ProviderUnavailable(CredentialError):
    """The provider could not answer (down, timed out, 429 or 5xx): not the user's fault."""

    code = "provider_unavailable"
    status = 503
    challenge = None

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
