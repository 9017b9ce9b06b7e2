"""PII: a planted corpus is fully redacted; look-alikes that fail validation are left alone."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kbflow.tasks.datasets.pii import (
    apply_pii_policy,
    cn_resident_id_valid,
    count_pii,
    find_pii,
    iban_valid,
    luhn_valid,
    redact_text,
)

# Every value is valid for its type (Luhn, mod 97, MOD 11-2 ...), in several formats.
PLANTED = {
    "email": ["ann.lee@example.org", "j_doe+billing@mail.example.co.uk", "Zhang.Wei@corp-mail.cn"],
    "phone": [
        "+44 20 7946 0958",
        "+1 (202) 555-0143",
        "202-555-0143",
        "(415) 555-0199",
        "1-800-555-0199",
        "+49 30 1234567",
        "030/12345678",
        "01 42 68 53 00",
        "0044 20 7946 0958",
        "+33 6 12 34 56 78",
    ],
    "cn_mobile": ["13800138000", "+86 139 1234 5678", "150-1234-5678", "+8618612345678"],
    "payment_card": [
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "378282246310005",
        "3782 822463 10005",
        "6011111111111117",
    ],
    "iban": [
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
    ],
    "cn_resident_id": ["11010519491231002X", "310115198511154562", "330106200002290010"],
    # Public hosts only: private, documentation and special-purpose ranges are not PII (see TECHNICAL).
    "ip_address": ["8.8.8.8", "81.2.69.160", "151.101.1.69", "2a00:1450:4001:82b::200e"],
    "secret": [
        "sk-proj-A1b2C3d4E5f6G7h8I9j0KlMnOpQr",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_A1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvWxYz12",
        "xoxb-2481357909-A1b2C3d4E5f6",
        "Zx9qP3mL0tR7vB2nK5wY",  # the value of api_key = ...
        "f3a9c1e07b5d42e8a6c0",  # the value of token: ...
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # AWS_SECRET_ACCESS_KEY=...
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0",  # Authorization: Bearer ...
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4UbaDzY\n-----END RSA PRIVATE KEY-----",
    ],
}

PROSE = {
    "email": "Write to {} if the export fails.",
    "phone": "Our support line is {}; ask for the on-call engineer.",
    "cn_mobile": "客户手机 {}，请在工作时间联系。",
    "payment_card": "The test order was paid with card {} last Tuesday.",
    "iban": "Refunds go to IBAN {} within five days.",
    "cn_resident_id": "身份证号 {} 已登记。",
    "ip_address": "The request came from {} at night.",
    "secret": "Never commit keys like {} to the repository.",
}
ASSIGNED_SECRETS = {
    "Zx9qP3mL0tR7vB2nK5wY": 'Configure it with api_key = "{}" in settings.py.',
    "f3a9c1e07b5d42e8a6c0": "headers:\n  token: {}\n",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "export AWS_SECRET_ACCESS_KEY={}",
    "9f8e7d6c5b4a39281706f5e4d3c2b1a0": "curl -H 'Authorization: Bearer {}' https://api.example.org",
}


def planted_texts() -> list[tuple[str, str, str]]:
    """(type, value, prose holding the value) for every planted value."""
    return [
        (kind, value, ASSIGNED_SECRETS.get(value, PROSE[kind]).format(value))
        for kind, values in PLANTED.items()
        for value in values
    ]


NEGATIVES = {
    "dates and times": "Released 2024-01-15, patched 15.04.2024, logged 2024/01/15 10:30:00 and 01.02.2024 10.",
    "version numbers": "Upgrade to 15.4.2 (or version 1.2.3.4, build 10.0.19041.1234, chapter 12.3.4.5).",
    "invalid Luhn": "Card 4111 1111 1111 1112 and 5555555555554445 fail the Luhn check.",
    "invalid IBAN checksum": "IBAN DE89 3704 0044 0532 0130 01 and GB82WEST12345698765433 fail mod 97.",
    "invalid resident id": "ID 110105194912310021 has a wrong check digit; 110105194913310025 has month 13.",
    "ordinary words": "The secretary read the token documentation and the password policy at the IBAN desk.",
    # Decision: digests are not secrets; they are everywhere in docs (commit ids, checksums).
    "hashes": "Commit 3f786850e387550fdab836ed7e6dc881de23001b, sha256 "
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.",
    "not-personal addresses": "Listen on 127.0.0.1:8080 or 0.0.0.0, netmask 255.255.255.0, ::1, "
    "MAC 00:1A:2B:3C:4D:5E at 10:30:00, UUID 123e4567-e89b-12d3-a456-426614174000.",
    "other numbers": "ISBN 978-3-16-148410-0, $1,299.99, 1,234,567 rows, epoch 1700000000, ext 555-0143, port 5432.",
    "placeholder credentials": 'Set api_key = "your-api-key-here" and token: xxxxxxxxxxxxxxxxxxxxxxxx; password: changeme.',
    "key paths": "private_key: /etc/ssl/private/site-2024.pem; max_tokens: 1234567890123456; Bearer tokens expire.",
    "code": "Foo::Bar::baz() returns std::vector<int>; range 1-2-3-4-5; ratio 3:4:5.",
}

# Technical text that earlier versions damaged (issue 12): each must come back unchanged from redact_text.
TECHNICAL = {
    "integer limits": "integer  4 bytes  typical choice for integer  -2147483648 to +2147483647",
    "bigint and size limits": "-9223372036854775808 to +9223372036854775807; kernel.shmmax=17179869184; "
    "up to +4294967295 rows",
    "signed ranges": "offsets from -32768..+32767 and from -1.5 to +99999999999",
    "cidr prefixes": "cidr 192.168.0.0/25, 128.1.0.0/16, 2001:4f8:3:ba::/64 and ::ffff:1.2.3.0/120",
    "rfc 1918 private": "host all all 10.6.0.0 and 172.20.143.89 and 192.168.12.10 scram-sha-256",
    "rfc 5737 documentation": "from 192.0.2.14, 198.51.100.7 and 203.0.113.200",
    "rfc 3849 documentation": "postgresql://[2001:db8::1234]/database and 2001:db8:85a3::8a2e:370:7334",
    "loopback, link-local, unspecified, multicast": "127.0.0.1, 169.254.10.20, fe80::7a31:c1ff:0000:0000, "
    "0.0.0.0, ::, ff02::1:ff00:1234, 239.255.255.250, fd12:3456:789a::1, ::ffff:10.4.3.2",
    "netmasks": "netmask 255.255.255.0, hostmask 0.0.0.255",
    "version strings": "Upgrade to version 1.2.3.4 (build 10.0.19041.1234); release 01.02.03.04.05",
    # pip's output in the Python tutorial: "novas==3.0.0.1" was redacted as an IP address
    "package versions": "pip install novas==3.0.0.1 'lib>=4.1.0.2' Downloading novas-3.0.0.1.tar.gz",
    "ports": "listen_addresses = 'localhost', port = 5432, ssh -L 63333:localhost:5432, :65535",
    "mac addresses": "'08:00:2b:01:02:03:04:05' '08-00-2b-01-02-03-04-05' 12:34:56:78:90:ab:cd:ef",
    "fractional times": "to_timestamp('15:12:02.020.001230', 'HH24:MI:SS.MS.US')",
}


@pytest.mark.parametrize(("kind", "value", "text"), planted_texts(), ids=lambda v: str(v)[:30])
def test_each_planted_value_is_found_as_its_type(kind, value, text):
    matches = find_pii(text)
    assert [(m.type, m.text) for m in matches] == [(kind, value)]


def test_planted_corpus_is_fully_redacted_in_text_and_messages():
    planted = planted_texts()
    table = pa.table(
        {
            "text": [text for _, _, text in planted],
            "messages": pa.array(
                [
                    [{"role": "user", "content": "Who wrote this?"}, {"role": "assistant", "content": text}]
                    for _, _, text in planted
                ],
                type=pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
            ),
        }
    )
    redacted, counts = apply_pii_policy(table, ["text", "messages"], "redact")

    outputs = redacted.column("text").to_pylist() + [
        m["content"] for row in redacted.column("messages").to_pylist() for m in row
    ]
    everything = "\n".join(outputs)
    for _, value, _ in planted:
        assert value not in everything
    assert all(find_pii(text) == [] for text in outputs)
    assert counts == {kind: 2 * len(values) for kind, values in PLANTED.items()}  # once per column
    assert redacted.schema == table.schema
    assert redacted.column("text")[1].as_py() == "Write to [EMAIL] if the export fails."
    assert 'api_key = "[SECRET]"' in everything  # only the value of an assignment is replaced


def test_placeholders_are_typed():
    text = "Mail ann@example.org, call 13800138000, pay to DE89370400440532013000."
    assert apply_pii_policy(pa.table({"t": [text]}), ["t"], "redact")[0]["t"][0].as_py() == (
        "Mail [EMAIL], call [CN_MOBILE], pay to [IBAN]."
    )


@pytest.mark.parametrize("name", NEGATIVES)
def test_look_alikes_are_not_pii(name):
    assert find_pii(NEGATIVES[name]) == []


@pytest.mark.parametrize("name", TECHNICAL)
def test_technical_text_stays_intact(name):
    assert redact_text(TECHNICAL[name]) == (TECHNICAL[name], {})


def test_public_hosts_are_found_beside_technical_text():
    # The address of a host is PII; its port, a private peer and a range around it are not.
    text = "host=151.101.1.69 port=5432 from 10.0.0.7, 2a00:1450:4001:82b::200e/128, -1 to +2147483647"
    assert redact_text(text)[0] == "host=[IP_ADDRESS] port=5432 from 10.0.0.7, [IP_ADDRESS]/128, -1 to +2147483647"
    # A real phone beside a range: only the range is technical.
    assert redact_text("-5 to +5; call +44 20 7946 0958")[0] == "-5 to +5; call [PHONE]"


def test_overlaps_go_to_the_more_specific_type():
    # An 18-digit id holds an 11-digit run that looks like a mobile; a grouped card looks like a phone.
    assert [m.type for m in find_pii("ID 11010519491231002X")] == ["cn_resident_id"]
    assert [m.type for m in find_pii("card 4111-1111-1111-1111")] == ["payment_card"]
    assert [m.type for m in find_pii("mail 13800138000@example.com")] == ["email"]


def test_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")
    assert not iban_valid("XX89370400440532013000")  # unknown country
    assert cn_resident_id_valid("11010519491231002x")  # lower-case check letter
    assert not cn_resident_id_valid("11010529491231002X")  # born in 2949


def _two_tables():
    return pa.table({"q": ["clean question", "mail ann@example.org", None], "a": ["ok", "ok", "call +44 20 7946 0958"]})


def test_drop_removes_rows_holding_any_pii_in_any_column():
    kept, counts = apply_pii_policy(_two_tables(), ["q", "a"], "drop")
    assert kept.to_pylist() == [{"q": "clean question", "a": "ok"}]
    assert counts == {"email": 1, "phone": 1}


def test_flag_keeps_text_and_adds_a_bool_column():
    flagged, counts = apply_pii_policy(_two_tables(), ["q", "a"], "flag")
    assert flagged.column("pii_flagged").to_pylist() == [False, True, True]
    assert flagged.column("q").to_pylist() == _two_tables().column("q").to_pylist()
    assert flagged.schema.field("pii_flagged").type == pa.bool_()
    assert counts == {"email": 1, "phone": 1}


def test_bad_policy_and_column_are_errors():
    with pytest.raises(ValueError, match="unknown PII policy"):
        apply_pii_policy(_two_tables(), ["q"], "mask")
    with pytest.raises(KeyError, match="no column 'x'"):
        apply_pii_policy(_two_tables(), ["x"], "redact")


def test_count_pii():
    assert count_pii(["ann@example.org and bob@example.org", None, "", "8.8.8.8"]) == {"email": 2, "ip_address": 1}


def test_private_key_without_end_line_loses_its_key_lines():
    text = "key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n\nNext paragraph."
    assert redact_text(text)[0] == "key:\n[SECRET]\n\nNext paragraph."
