"""AccessPolicy (gateway.access): allow-lists, the groups claim, required scopes, room rules and bots,
without any web framework; and the settings that build it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.access import AccessPolicy, claim_values, room_key
from gateway.config import load_settings
from gateway.errors import ConfigError, Forbidden, InsufficientScope
from gateway.tokens import Principal
from tests.conftest import SettingsFactory


def user(sub: str = "alice", provider: str = "idp", email: str | None = "alice@example.com",
         groups: tuple[str, ...] = (), scopes: tuple[str, ...] = (), claims: dict[str, Any] | None = None,
         **more_claims: Any) -> Principal:
    """`groups` is Principal.groups (GitHub's teams, or a list `groups` claim); `claims` and keywords are
    the claims the provider sent."""
    return Principal(subject=sub, name=sub.title(), provider=provider, email=email, groups=groups, scopes=scopes,
                     claims={"sub": sub, **(claims or {}), **more_claims})


def bot(client_id: str = "robot", scopes: tuple[str, ...] = (), **claims: Any) -> Principal:
    return Principal(subject=client_id, name=client_id, provider="idp", scopes=scopes, is_bot=True,
                     claims={"client_id": client_id, **claims})


def admitted(policy: AccessPolicy, principal: Principal, room: str | None = None) -> bool:
    try:
        policy.check(principal, room)
    except Forbidden:
        return False
    return True


# --- no lists ---------------------------------------------------------------------------------------

def test_without_lists_everyone_signed_in_is_admitted() -> None:
    policy = AccessPolicy()
    assert not policy.restricted
    assert admitted(policy, user(email=None))
    assert admitted(policy, bot())
    assert admitted(policy, user(), "any-room")


# --- emails and domains -----------------------------------------------------------------------------

@pytest.mark.parametrize(("email", "allowed"), [
    ("alice@example.com", True),
    ("ALICE@Example.COM", True),  # case-insensitive, both parts
    ("alice@example.org", False),
    ("alice.smith@example.com", False),
    ("alice@example.com.evil.net", False),
    ("xalice@example.com", False),
    ("\u212aalice@example.com", False),  # the Kelvin sign lower()s to "k": no Unicode folding
])
def test_allowed_emails(email: str, allowed: bool) -> None:
    policy = AccessPolicy(emails=["Alice@Example.com", "kalice@example.com"])
    assert admitted(policy, user(email=email)) is allowed


@pytest.mark.parametrize(("email", "allowed"), [
    ("bob@example.com", True),
    ("Bob@EXAMPLE.COM", True),
    ("bob@sub.example.com", False),  # no subdomains
    ("bob@evil-example.com", False),  # no suffix tricks
    ("bob@evilexample.com", False),
    ("bob@example.com.evil.net", False),
    ("bob@example.com@evil.net", False),  # the last "@" decides
    ('"bob@example.com"@evil.net', False),
    ("bob%example.com@evil.net", False),
    ("bob@example.com.", False),  # a trailing dot is another name
    ("bob@example.co", False),
    ("bob@xn--exmple-cua.com", False),
    ("bob@\u212aernel.org", False),  # "Kernel.org" with a Kelvin sign
    ("bob@kernel.org", True),
    ("example.com", False),  # no "@" at all
    ("@example.com", False),  # no local part
    ("", False),
])
def test_allowed_email_domains_match_exactly(email: str, allowed: bool) -> None:
    policy = AccessPolicy(email_domains=["example.com", "@Kernel.org"])
    assert admitted(policy, user(email=email)) is allowed


@pytest.mark.parametrize("verified", [False, "false", "FALSE"])
def test_an_unverified_email_matches_nothing(verified: Any) -> None:
    policy = AccessPolicy(emails=["alice@example.com"], email_domains=["example.com"])
    with pytest.raises(Forbidden, match="not verified"):
        policy.check(user(email_verified=verified))
    assert admitted(policy, user(email_verified=True))
    assert admitted(policy, user())  # providers that do not say are taken at their word


def test_no_email_is_no_match() -> None:
    assert not admitted(AccessPolicy(email_domains=["example.com"]), user(email=None))


# --- users ------------------------------------------------------------------------------------------

def test_subjects_compare_exactly() -> None:
    policy = AccessPolicy(users=["auth0|123", "urn:corp:alice"])
    assert admitted(policy, user(sub="auth0|123"))
    assert admitted(policy, user(sub="urn:corp:alice"))  # "urn" is no provider: the entry stays whole
    assert not admitted(policy, user(sub="Auth0|123"))
    assert not admitted(policy, user(sub="auth0|1234"))


@pytest.mark.parametrize("claim", ["preferred_username", "username"])
def test_user_names_ignore_case(claim: str) -> None:
    policy = AccessPolicy(users=["Octocat"])
    assert admitted(policy, user(sub="583231", **{claim: "octocat"}))
    assert not admitted(policy, user(sub="583231", **{claim: "octocat2"}))


def test_display_names_and_emails_are_not_user_names() -> None:
    policy = AccessPolicy(users=["Alice", "alice@example.com"])
    # name "Alice" (the display name) and the email must not count: anyone can set them.
    assert not admitted(policy, user(sub="u-1", email="alice@example.com", nickname="Alice"))


def test_a_provider_prefix_limits_an_entry_to_that_provider() -> None:
    policy = AccessPolicy(users=["corp:alice", "corp:octo"], providers=["corp", "github"])
    assert admitted(policy, user(sub="alice", provider="corp"))
    assert admitted(policy, user(sub="1", provider="corp", preferred_username="OCTO"))
    assert not admitted(policy, user(sub="alice", provider="github"))
    assert not admitted(policy, user(sub="2", provider="github", preferred_username="octo"))
    assert not admitted(policy, user(sub="corp:alice", provider="github"))  # never also a bare value


# --- groups -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("claims", "found"), [
    ({"groups": ["a", "b", 3, ""]}, {"a", "b"}),
    ({"groups": "a b,c ,, d"}, {"a", "b", "c", "d"}),
    ({"groups": {"a": True}}, set()),
    ({"groups": 5}, set()),
    ({}, set()),
])
def test_claim_values_take_lists_and_strings(claims: dict[str, Any], found: set[str]) -> None:
    assert claim_values(claims, "groups") == found


def test_claim_values_follow_a_dotted_path_unless_the_exact_name_exists() -> None:
    claims = {"realm_access": {"roles": ["chat", "admin"]}, "https://example.com/roles": ["ns"],
              "resource_access": {"gateway": {"roles": "client-role"}}}
    assert claim_values(claims, "realm_access.roles") == {"chat", "admin"}
    assert claim_values(claims, "resource_access.gateway.roles") == {"client-role"}
    assert claim_values(claims, "https://example.com/roles") == {"ns"}
    assert claim_values(claims, "realm_access.missing") == set()
    assert claim_values(claims, "realm_access.roles.deeper") == set()
    assert claim_values({"a.b": ["literal"], "a": {"b": ["nested"]}}, "a.b") == {"literal"}


def test_allowed_groups_from_the_default_claim_and_github_teams() -> None:
    policy = AccessPolicy(groups=["staff", "acme/chat"])
    assert admitted(policy, user(groups=("staff",), claims={"groups": ["staff"]}))
    assert admitted(policy, user(groups=("acme/chat",)))  # GitHub: teams are no claim
    assert admitted(policy, user(claims={"groups": "users staff"}))
    assert not admitted(policy, user(claims={"groups": ["Staff"]}))  # groups compare exactly
    assert not admitted(policy, user(claims={"groups": ["staff-old"]}))


def test_a_configured_groups_claim_replaces_the_default() -> None:
    policy = AccessPolicy(groups=["chat"], groups_claim="realm_access.roles")
    assert admitted(policy, user(realm_access={"roles": ["chat"]}))
    assert not admitted(policy, user(groups=("chat",), claims={"groups": ["chat"]}))
    roles = AccessPolicy(groups=["chat"], groups_claim="roles")
    assert admitted(roles, user(roles="reader chat"))
    assert not admitted(roles, user(realm_access={"roles": ["chat"]}))


# --- how the lists combine ----------------------------------------------------------------------------

def test_the_lists_are_alternatives() -> None:
    policy = AccessPolicy(emails=["carol@other.org"], email_domains=["example.com"], users=["dave"],
                          groups=["staff"])
    assert admitted(policy, user(sub="carol", email="carol@other.org"))
    assert admitted(policy, user(sub="x", email="x@example.com"))
    assert admitted(policy, user(sub="dave", email=None))
    assert admitted(policy, user(sub="erin", email="erin@other.org", groups=("staff",)))
    assert not admitted(policy, user(sub="frank", email="frank@other.org"))


def test_the_refusal_names_who_is_signed_in_and_why() -> None:
    policy = AccessPolicy(email_domains=["example.com"])
    with pytest.raises(Forbidden) as refused:
        policy.check(user(sub="mallory", email="mallory@evil.test"))
    assert refused.value.status == 403 and refused.value.code == "forbidden"
    assert refused.value.detail.startswith("signed in as Mallory (mallory@evil.test), not allowed here: ")
    assert "example.com" not in refused.value.detail  # the lists themselves stay private


# --- required scopes --------------------------------------------------------------------------------

def test_required_scopes_are_all_needed_and_give_insufficient_scope() -> None:
    policy = AccessPolicy(required_scopes=["chat", "read"])
    assert admitted(policy, user(scopes=("openid", "read", "chat")))
    with pytest.raises(InsufficientScope) as refused:
        policy.check(user(scopes=("read",)))
    assert refused.value.status == 403
    assert refused.value.challenge is not None and 'error="insufficient_scope"' in refused.value.challenge
    assert "lacks scope chat" in refused.value.detail and "signed in as Alice" in refused.value.detail


def test_required_scopes_apply_on_top_of_the_allow_lists() -> None:
    policy = AccessPolicy(users=["alice"], required_scopes=["chat"])
    with pytest.raises(InsufficientScope):
        policy.check(user())
    assert admitted(policy, user(scopes=("chat",)))


# --- rooms ------------------------------------------------------------------------------------------

ROOMS = {"staff-room": (["staff"], ["idp:boss"]), "open": ([], [])}


def test_a_room_rule_admits_its_groups_and_users_only() -> None:
    policy = AccessPolicy(rooms=ROOMS, providers=["idp"])
    assert admitted(policy, user(groups=("staff",)), "staff-room")
    assert admitted(policy, user(sub="boss"), "staff-room")
    assert not admitted(policy, user(sub="boss", provider="other"), "staff-room")
    with pytest.raises(Forbidden, match=r"^signed in as Alice \(alice@example.com\), not allowed in #staff-room"):
        policy.check(user(), "staff-room")
    assert admitted(policy, user(), "lobby")  # other rooms are unaffected
    assert admitted(policy, user(), "open")  # a rule with empty lists restricts nothing
    assert admitted(policy, user(), None)  # the gateway itself is open


@pytest.mark.parametrize("alias", ["STAFF-ROOM", "staff_room", "Staff_Room", "sTaFf-RoOm"])
def test_a_room_rule_cannot_be_dodged_by_case_or_dashes(alias: str) -> None:
    policy = AccessPolicy(rooms=ROOMS, providers=["idp"])
    assert room_key(alias) == room_key("staff-room")
    assert not admitted(policy, user(), alias)
    assert admitted(policy, user(groups=("staff",)), alias)


def test_the_gateway_lists_still_apply_inside_a_room() -> None:
    policy = AccessPolicy(email_domains=["example.com"], rooms=ROOMS, providers=["idp"])
    outsider = user(sub="boss", email="boss@elsewhere.test")
    with pytest.raises(Forbidden, match="not allowed here"):
        policy.check(outsider, "staff-room")


def test_room_rules_read_the_configured_groups_claim() -> None:
    policy = AccessPolicy(groups_claim="realm_access.roles", rooms={"ops": (["oncall"], [])})
    assert admitted(policy, user(realm_access={"roles": ["oncall"]}), "ops")
    assert not admitted(policy, user(groups=("oncall",)), "ops")


# --- bots -------------------------------------------------------------------------------------------

def test_bots_are_admitted_by_client_id_or_groups_claim_never_by_email_rules() -> None:
    domains = AccessPolicy(email_domains=["example.com"])
    with pytest.raises(Forbidden, match="client id in GATEWAY_ALLOWED_USERS"):
        domains.check(bot())
    assert admitted(AccessPolicy(email_domains=["example.com"], users=["idp:robot"], providers=["idp"]), bot())
    assert admitted(AccessPolicy(groups=["bots"], groups_claim="realm_access.roles"),
                    bot(realm_access={"roles": ["bots"]}))
    # A bot named like a person gets no more than the person's own entry would give the bot.
    assert not admitted(AccessPolicy(users=["idp:alice"], providers=["idp"]), bot("robot", preferred_username="x"))


def test_bots_meet_required_scopes_and_room_rules_too() -> None:
    policy = AccessPolicy(required_scopes=["chat"], rooms={"ops": ([], ["robot"])})
    with pytest.raises(InsufficientScope):
        policy.check(bot())
    assert admitted(policy, bot(scopes=("chat",)), "ops")
    assert not admitted(policy, bot("other-bot", scopes=("chat",)), "ops")
    with pytest.raises(Forbidden, match=r"^signed in as bot other-bot"):
        policy.check(bot("other-bot", scopes=("chat",)), "ops")


# --- settings -----------------------------------------------------------------------------------------

def test_settings_build_the_policy_from_comma_lists(make_settings: SettingsFactory) -> None:
    settings = make_settings(allowed_emails="Alice@Example.com, bob@example.org", allowed_email_domains="@corp.test",
                             allowed_users="idp:boss", allowed_groups="staff,admins", groups_claim=" roles ",
                             required_scopes="chat")
    policy = AccessPolicy.from_settings(settings)
    assert settings.allowed_email_domains == ["corp.test"] and settings.groups_claim == "roles"
    assert admitted(policy, user(email="alice@example.com", scopes=("chat",)))
    assert admitted(policy, user(email="x@corp.test", scopes=("chat",)))
    assert admitted(policy, user(sub="boss", email=None, scopes=("chat",)))
    assert admitted(policy, user(email=None, roles=["admins"], scopes=("chat",)))
    assert not admitted(policy, user(email=None, groups=("admins",), scopes=("chat",)))


def test_room_rules_from_the_environment(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ROOMS__STAFF_ROOM__ALLOWED_GROUPS", "staff, admins")
    monkeypatch.setenv("GATEWAY_ROOMS__STAFF_ROOM__ALLOWED_USERS", "idp:boss")
    monkeypatch.setenv("GATEWAY_ROOMS__OPS__ALLOWED_USERS", "carol")
    settings = make_settings()
    assert set(settings.rooms) == {"staff_room", "ops"}
    assert settings.rooms["staff_room"].allowed_groups == ["staff", "admins"]
    policy = AccessPolicy.from_settings(settings)
    assert admitted(policy, user(groups=("admins",)), "staff-room")
    assert admitted(policy, user(sub="boss"), "Staff-Room")
    assert not admitted(policy, user(sub="carol"), "staff-room")
    assert admitted(policy, user(sub="carol"), "ops")


def test_room_rules_as_json(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ROOMS", '{"Staff-Room": {"allowed_groups": ["staff"]}}')
    policy = AccessPolicy.from_settings(make_settings())
    assert not admitted(policy, user(), "staff_room")
    assert admitted(policy, user(groups=("staff",)), "STAFF-ROOM")


def problems(make_settings: SettingsFactory, **values: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        make_settings(**values)
    return caught.value.problems


@pytest.mark.parametrize("domain", ["*.example.com", ".example.com"])
def test_wildcard_domains_are_refused_with_advice(make_settings: SettingsFactory, domain: str) -> None:
    [problem] = problems(make_settings, allowed_email_domains=f"corp.test,{domain}")
    assert problem.startswith("GATEWAY_ALLOWED_EMAIL_DOMAINS: ") and "exactly" in problem


@pytest.mark.parametrize("domain", ["a@b.test", "exa mple.com"])
def test_malformed_domains_are_refused(make_settings: SettingsFactory, domain: str) -> None:
    [problem] = problems(make_settings, allowed_email_domains=domain)
    assert problem.startswith("GATEWAY_ALLOWED_EMAIL_DOMAINS: ")


@pytest.mark.parametrize("email", ["alice", "alice@", "@example.com", "al ice@example.com"])
def test_malformed_emails_are_refused(make_settings: SettingsFactory, email: str) -> None:
    [problem] = problems(make_settings, allowed_emails=email)
    assert problem.startswith("GATEWAY_ALLOWED_EMAILS: ") and repr(email) in problem


def test_bad_room_names_and_clashing_rules_are_refused(make_settings: SettingsFactory) -> None:
    [problem] = problems(make_settings, rooms={"bad.room": {"allowed_groups": "x"}})
    assert problem.startswith("GATEWAY_ROOMS: ") and "'bad.room'" in problem
    [problem] = problems(make_settings, rooms={"a-b": {}, "A_B": {}})
    assert "two rules" in problem


def test_an_empty_groups_claim_is_refused(make_settings: SettingsFactory) -> None:
    [problem] = problems(make_settings, groups_claim="  ")
    assert problem.startswith("GATEWAY_GROUPS_CLAIM: ")


def test_every_access_setting_defaults_to_no_restriction(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    assert (settings.allowed_emails, settings.allowed_email_domains, settings.allowed_users,
            settings.allowed_groups, settings.required_scopes, settings.rooms) == ([], [], [], [], [], {})
    assert settings.groups_claim == "groups"
    assert not AccessPolicy.from_settings(settings).restricted


def test_an_example_env_file_loads_with_its_access_lines(tmp_path: Any) -> None:
    env = tmp_path / ".env"
    env.write_text("GATEWAY_PUBLIC_URL=https://chat.example.com\n"
                   "GATEWAY_SECRET_KEYS=" + "k" * 32 + "\n"
                   "GATEWAY_PROVIDERS__IDP__ISSUER=https://idp.example.com\n"
                   "GATEWAY_PROVIDERS__IDP__CLIENT_ID=gateway\n"
                   "GATEWAY_ALLOWED_EMAIL_DOMAINS=example.com\n"
                   "GATEWAY_GROUPS_CLAIM=realm_access.roles\n"
                   "GATEWAY_ROOMS={}\n"
                   "GATEWAY_ROOMS__STAFF_ROOM__ALLOWED_GROUPS=staff\n", encoding="utf-8")
    settings = load_settings(env_file=env)
    assert settings.allowed_email_domains == ["example.com"]
    assert settings.rooms["staff_room"].allowed_groups == ["staff"]
