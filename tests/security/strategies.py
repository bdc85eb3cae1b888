"""Hypothesis strategies for what attackers send, shared by the parser fuzz tests and the live-server fuzz."""

from __future__ import annotations

import json
import string

from hypothesis import strategies as st

from gateway.tokens import MAX_TOKEN_BYTES

# --- credentials ----------------------------------------------------------------------------------------

TOKEN_CHARS = string.ascii_letters + string.digits + "-._~+/="
tokens = st.one_of(st.text(TOKEN_CHARS, min_size=1, max_size=60), st.text(max_size=40),
                   st.just("a" * (MAX_TOKEN_BYTES + 1)))
# What a header value can hold on the wire: any byte but CR and LF, read by Starlette as latin-1.
header_values = st.binary(max_size=300).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").decode("latin-1"))
schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "Bearer\t", "", "Béarer", "Bearer,"])
separators = st.sampled_from([" ", "  ", "\t", "", " \t ", "\u00a0", ","])
authorizations = st.one_of(
    st.text(max_size=80), header_values,
    st.builds(lambda s, sep, t, tail: f"{s}{sep}{t}{tail}", schemes, separators, tokens,
              st.sampled_from(["", " ", " extra", ",", "\x00", "\u2028", "=", " =="])),
)

# --- chat frames ----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=10,
)
frame_fields = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["message", "resume", "ping", "pong", "MESSAGE", ""]), json_values)},
    optional={"text": json_values | st.text(max_size=2100), "client_id": json_values | st.text(max_size=70),
              "after": json_values | st.text(max_size=50)},
)
frames = st.one_of(
    st.text(max_size=300),
    json_values.map(json.dumps),
    frame_fields.map(json.dumps),
    frame_fields.map(lambda frame: json.dumps(frame, ensure_ascii=False)),
    st.integers(1, 4000).map(lambda depth: "[" * depth),
    st.integers(1, 2000).map(lambda depth: '{"type":"message","text":"x","client_id":' + "[" * depth),
    # JSON escapes can spell lone surrogates: valid JSON, valid UTF-8 on the wire, no valid text.
    st.sampled_from(['"\\ud800"', '"\\udfff"', '"a\\ud83d"']).map(
        lambda s: '{"type":"message","text":' + s + ',"client_id":' + s + '}'),
)
