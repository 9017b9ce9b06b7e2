"""PII: find, redact, drop or flag personal data and secrets in dataset text.

Every detector is a candidate pattern plus a validation, so that numbers which
merely look like PII are left alone: payment cards must pass Luhn, IBANs the
ISO 13616 mod-97 check and their country's length, Chinese resident ids the
ISO 7064 MOD 11-2 check digit and a real birth date, IP addresses valid octets
or groups. When candidates overlap, the more specific type wins (a resident id
is not also a phone, a card is not a phone, an email's digits are not a phone).

Deliberately NOT flagged (documentation is full of them, and none is personal
data):
- addresses in networks no person is behind: private (RFC 1918, unique-local
  fc00::/7), documentation (RFC 5737 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24;
  RFC 3849 2001:db8::/32), loopback, link-local, unspecified, multicast, shared
  (CGN) and reserved ranges, netmasks; a network written with its prefix
  (`128.1.0.0/16`, a CIDR range, not a host); MAC addresses (`08:00:2b:01:02:03`);
- numbers that are numbers: integer limits (2^k and 2^k - 1, `+2147483647`,
  `17179869184`), signed ranges (`-2147483648 to +2147483647`), dates, times with
  fractions (`15:12:02.020.001230`), version numbers (`version 1.2.3.4`), ports
  (`8.8.8.8:5432` loses only the address);
- hex digests such as git commit ids and sha256 checksums (a digest is a secret
  only as the value of a secret-named assignment, `token = "..."`); placeholder
  credentials without digits or with low entropy (`api_key = "your-api-key-here"`).
Emails at reserved example domains (example.org) ARE flagged: tests and users stand
real addresses in with them, and a placeholder keeps the sentence's meaning.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.errors import InvalidInput

# In priority order: on overlap, the earlier type wins.
PII_TYPES = (
    "secret",
    "email",
    "iban",
    "cn_resident_id",
    "payment_card",
    "ip_address",
    "cn_mobile",
    "phone",
)
PLACEHOLDERS = {name: f"[{name.upper()}]" for name in PII_TYPES}
FLAG_COLUMN = "pii_flagged"
PiiPolicy = Literal["redact", "drop", "flag"]


@dataclass(frozen=True)
class PiiMatch:
    type: str
    start: int
    end: int
    text: str


# A number must not start or end inside a longer digit run, grouped ("4111 1111") or not.
_NUM_START = r"(?<![\w+])(?<!\d[ .-])"
_NUM_END = r"(?!\w)(?![ .-]?\d)"

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
# +CC or 00CC, an optional "(0)", then digit groups; possessive groups keep a long digit run linear.
_PHONE_INTL = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?(?:\(\d{1,5}\)|\d{1,5}+)){1,8}" + _NUM_END
)
_PHONE_NA = re.compile(_NUM_START + r"(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}" + _NUM_END)
# European national numbers with a trunk 0 and one kind of separator: 020 7946 0958, 030/12345678, 01.42.68.53.00
_PHONE_EU = re.compile(_NUM_START + r"0[1-9]\d{0,4}(?P<sep>[ /.-])\d{2,8}(?:(?P=sep)\d{2,8}){0,4}" + _NUM_END)
_CN_MOBILE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:\d{8}|(?P<sep>[ -])\d{4}(?P=sep)\d{4})" + _NUM_END
)
_CARD = re.compile(_NUM_START + r"\d(?:[ -]?\d){12,18}" + _NUM_END)
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
_CN_ID = re.compile(r"(?<![\w])\d{17}[\dXx](?![\w])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
# A dotted number named as something else: "version 1.2.3.4", "section 12.3.4.5".
# Also a package's version: a requirement ("novas==3.0.0.1", "lib>=1.2.3.4") or a file name
# ("novas-3.0.0.1.tar.gz").
_VERSION_BEFORE = re.compile(
    r"(?i)\b(?:version|release|build|section|chapter|step|rule|v)\s*$|§\s*$|(?:[=<>!~]=|[a-z]-)$"
)
_PREFIX_AFTER = re.compile(r"/(\d{1,3})(?!\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")

# Technical tokens that claim their span before any PII type: a candidate overlapping one is not PII.
_TECHNICAL = re.compile(
    # MAC addresses, EUI-48 / EUI-64, ':' or '-' (a phone regex would find "01-02-03-04-05" inside one)
    r"(?<![\w:-])[0-9A-Fa-f]{2}(?P<mac>[:-])(?:[0-9A-Fa-f]{2}(?P=mac)){4,6}[0-9A-Fa-f]{2}(?![\w:-])"
    # times with fractional parts: 15:12:02.020.001230
    r"|(?<![\w:.])\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)+(?![\w:])"
    # signed numeric ranges: -2147483648 to +2147483647, -32768..+32767
    r"|(?<![\w+-])[-−]\d+(?:\.\d+)?\s*(?:to|through|\.\.|–)\s*\+?\d+(?:\.\d+)?(?![\w.])"
)
# Networks no person is behind (IANA special-purpose registries, RFC 6890 and successors).
_NOT_PERSONAL_NETWORKS = [
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918 private
        "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # RFC 5737 documentation
        "198.18.0.0/15",  # RFC 2544 benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast, netmasks such as 255.255.255.0
        "::/128", "::1/128",  # unspecified, loopback
        "100::/64",  # discard-only
        "2001:db8::/32", "3fff::/20",  # RFC 3849 / RFC 9637 documentation
        "fc00::/7",  # unique-local (private)
        "fe80::/10", "fec0::/10",  # link-local, old site-local
        "ff00::/8",  # multicast
    )
]  # fmt: skip


_SECRET_TOKENS = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    # up to the END line; without one, the base64 lines that follow
    r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|(?:\s*[A-Za-z0-9+/=:-]{16,})*)"
    r"|(?<![\w-])(?:"
    r"sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic style
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")(?![\w-])"
)
# `api_key = "..."`, `token: ...`, `"client_secret": "..."`, `Bearer ...`: only the value is the secret.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?:(?<![A-Za-z0-9])(?:[a-z0-9]+[_-])*(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|"
    r"access[_-]?key|(?:access|auth|bearer|refresh|api)?[_-]?token|password|passwd|pwd|private[_-]?key)"
    r"[\"']?\s*(?:=|:|=>)\s*[\"']?|\bbearer\s+)(?P<value>[A-Za-z0-9_\-./+=~]{16,})"
)
_MIN_SECRET_ENTROPY = 3.0  # bits per character; "aaaaaaaaaaaaaaaa" is 0, random base64 ~ 5.5

# ISO 13616 IBAN lengths by country (the SWIFT registry); an unknown country is not an IBAN.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
_CN_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}  # fmt: skip


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn_valid(number: str) -> bool:
    """Luhn (mod 10) check of a digit string: `luhn_valid("4111111111111111")` is True."""
    total = 0
    for position, ch in enumerate(reversed(number)):
        digit = int(ch)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Country length and ISO 13616 mod-97 == 1: `iban_valid("DE89 3704 0044 0532 0130 00")` is True."""
    compact = iban.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def cn_resident_id_valid(number: str) -> bool:
    """GB 11643 check digit (ISO 7064 MOD 11-2), province code and a birth date in the past."""
    number = number.upper()
    if len(number) != 18 or not number[:17].isdigit() or int(number[:2]) not in _CN_PROVINCES:
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not date(1900, 1, 1) <= born <= date.today():
        return False
    checksum = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS, strict=True)) % 11
    return _CN_ID_CHECK[checksum] == number[17]


def _card_valid(candidate: str) -> bool:
    digits = _digits(candidate)
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or not luhn_valid(digits):
        return False
    groups = re.split(r"[ -]", candidate)
    if len(groups) == 1:
        return True
    # Printed cards are grouped 4-4-4-4(-3), 4-6-5 (Amex) or 4-6-4 (Diners), one kind of separator.
    if len(set(re.findall(r"[ -]", candidate))) != 1:
        return False
    sizes = [len(g) for g in groups]
    return sizes[0] == 4 and all(3 <= s <= 6 for s in sizes)


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _secret_value_valid(value: str) -> bool:
    # Real keys mix letters and digits; "your-api-key-here" and "xxxxxxxxxxxxxxxx" do not.
    # A path names where a key is kept ("private_key: /etc/ssl/site-2024.pem"); it is not the key.
    return (
        not value.startswith(("/", "./", "../", "~/"))
        and any(ch.isdigit() for ch in value)
        and any(ch.isalpha() for ch in value)
        and _entropy(value) >= _MIN_SECRET_ENTROPY
    )


def _personal_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A host someone may be behind: not in a private, documentation or special-purpose network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:10.4.3.2 is the IPv4 address 10.4.3.2
    return not any(address in network for network in _NOT_PERSONAL_NETWORKS if network.version == address.version)


def _network_prefix(text: str, end: int, bits: int) -> bool:
    """The address ends in a prefix shorter than a host's (`/24`): a CIDR range, not a host."""
    prefix = _PREFIX_AFTER.match(text, end)
    return prefix is not None and int(prefix.group(1)) < bits


def _integer_limit(digits: str) -> bool:
    """2^k or 2^k - 1 (k >= 15): integer and size limits (2147483647, 17179869184), not phone numbers."""
    number = int(digits)
    return number >= 2**15 and (number & (number - 1) == 0 or number & (number + 1) == 0)


def _phone_valid(candidate: str) -> bool:
    digits = _digits(candidate)
    return 9 <= len(digits) <= 15 and not _integer_limit(digits)


def _trim_phone(candidate: str) -> str:
    """An international number followed by more digit groups: cut trailing groups to 15 digits."""
    while len(_digits(candidate)) > 15:
        cut = max(candidate.rfind(" "), candidate.rfind("-"), candidate.rfind("."))
        if cut <= 0:
            break
        candidate = candidate[:cut]
    return candidate


def _find_ibans(text: str) -> Iterable[tuple[int, int]]:
    # The pattern may run into the next word ("... 0130 00 DUE"): cut at the country's length.
    for match in _IBAN.finditer(text):
        length = _IBAN_LENGTHS.get(match.group()[:2])
        if length is None:
            continue
        seen = 0
        for offset, ch in enumerate(match.group()):
            seen += ch != " "
            if seen == length:
                end = match.start() + offset + 1
                # The cut must fall between two groups, not inside a word.
                if (end == match.end() or text[end] == " ") and iban_valid(text[match.start() : end]):
                    yield match.start(), end
                break


def _find(pattern: re.Pattern[str], valid: Callable[[str], bool]) -> Callable[[str], Iterable[tuple[int, int]]]:
    def find(text: str) -> Iterable[tuple[int, int]]:
        return ((m.start(), m.end()) for m in pattern.finditer(text) if valid(m.group()))

    return find


def _find_ip_addresses(text: str) -> Iterable[tuple[int, int]]:
    ipv6_spans: list[tuple[int, int]] = []
    for match in _IPV6.finditer(text):
        try:
            address = ipaddress.IPv6Address(match.group())
        except ValueError:
            continue
        ipv6_spans.append(match.span())
        # Fewer than three groups ("fe80::1", "a::b") is too little to be sure it is an address.
        groups = [g for g in match.group().split(":") if g]
        if len(groups) >= 3 and _personal_address(address) and not _network_prefix(text, match.end(), 128):
            yield match.span()
    for match in _IPV4.finditer(text):
        if any(start <= match.start() < end for start, end in ipv6_spans):
            continue  # the IPv4 tail of an IPv6 address (::ffff:1.2.3.0) was judged with it
        try:
            address = ipaddress.IPv4Address(match.group())
        except ValueError:
            continue  # an octet over 255, or a leading zero: not an address
        if (
            _personal_address(address)
            and not _network_prefix(text, match.end(), 32)
            and not _VERSION_BEFORE.search(text, max(0, match.start() - 24), match.start())
        ):
            yield match.span()


def _find_phones(text: str) -> Iterable[tuple[int, int]]:
    for match in _PHONE_INTL.finditer(text):
        trimmed = _trim_phone(match.group())
        if _phone_valid(trimmed):
            yield match.start(), match.start() + len(trimmed)
    for pattern in (_PHONE_NA, _PHONE_EU):
        for match in pattern.finditer(text):
            # "version 01.02.03.04.05" is a version, however phone-like its groups are
            if _phone_valid(match.group()) and not _VERSION_BEFORE.search(text, max(0, match.start() - 24), match.start()):
                yield match.start(), match.end()


def _find_secrets(text: str) -> Iterable[tuple[int, int]]:
    for match in _SECRET_TOKENS.finditer(text):
        yield match.start(), match.end()
    for match in _SECRET_ASSIGNMENT.finditer(text):
        if _secret_value_valid(match.group("value")):
            yield match.start("value"), match.end("value")


_DETECTORS: dict[str, Callable[[str], Iterable[tuple[int, int]]]] = {
    "secret": _find_secrets,
    "email": _find(_EMAIL, lambda s: ".." not in s),
    "iban": _find_ibans,
    "cn_resident_id": _find(_CN_ID, cn_resident_id_valid),
    "payment_card": _find(_CARD, _card_valid),
    "ip_address": _find_ip_addresses,
    "cn_mobile": _find(_CN_MOBILE, lambda s: not _integer_limit(_digits(s))),
    "phone": _find_phones,
}
_NEEDS_DIGIT = {"iban", "cn_resident_id", "payment_card", "cn_mobile", "phone"}


def find_pii(text: str) -> list[PiiMatch]:
    """The PII in `text`, validated, without overlaps, in text order.

    >>> [m.type for m in find_pii("mail ann@example.org or call +44 20 7946 0958")]
    ['email', 'phone']
    >>> find_pii("released 2024-01-15 as version 15.4.2")
    []
    """
    if not text:
        return []
    has_digit = any(ch.isdigit() for ch in text)
    # Technical tokens (MAC addresses, fractional times, signed ranges) block any candidate they overlap.
    taken: list[PiiMatch] = [PiiMatch("", *m.span(), m.group()) for m in _TECHNICAL.finditer(text)] if has_digit else []
    for kind in PII_TYPES:  # priority order: a span claimed by an earlier type is not re-used
        if kind in _NEEDS_DIGIT and not has_digit:
            continue
        for start, end in sorted(set(_DETECTORS[kind](text)), key=lambda span: (span[0], -span[1])):
            if all(end <= m.start or start >= m.end for m in taken):
                taken.append(PiiMatch(kind, start, end, text[start:end]))
    return sorted((m for m in taken if m.type), key=lambda m: m.start)


def redact_text(text: str) -> tuple[str, Counter]:
    """`text` with each PII span replaced by its typed placeholder ("[EMAIL]"), and counts per type."""
    matches = find_pii(text)
    parts: list[str] = []
    position = 0
    for match in matches:
        parts += [text[position : match.start], PLACEHOLDERS[match.type]]
        position = match.end
    parts.append(text[position:])
    return "".join(parts), Counter(m.type for m in matches)


def count_pii(texts: Iterable[str | None]) -> Counter:
    """PII found per type over many texts (None and "" count nothing)."""
    counts: Counter = Counter()
    for text in texts:
        if text:
            counts.update(m.type for m in find_pii(text))
    return counts


def _is_messages(type_: pa.DataType) -> bool:
    return pa.types.is_list(type_) or pa.types.is_large_list(type_)


def _scan_column(column: pa.ChunkedArray, redact: bool) -> tuple[list, list[bool], Counter]:
    """Per row: the (redacted) value, whether it held PII, and the counts over the column."""
    counts: Counter = Counter()
    values: list = []
    found: list[bool] = []

    def scan(text: str | None) -> tuple[str | None, int]:
        if not text:
            return text, 0
        redacted, counter = redact_text(text)
        counts.update(counter)
        return (redacted if redact else text), sum(counter.values())

    messages = _is_messages(column.type)
    for value in column.to_pylist():
        if value is None:
            values.append(None)
            found.append(False)
        elif messages:
            scanned = [scan(message.get("content")) if message else (None, 0) for message in value]
            values.append([
                {**message, "content": text} if message else message
                for message, (text, _) in zip(value, scanned, strict=True)
            ])
            found.append(any(n for _, n in scanned))
        else:
            text, n = scan(value)
            values.append(text)
            found.append(bool(n))
    return values, found, counts


def apply_pii_policy(table: pa.Table, columns: list[str], policy: PiiPolicy) -> tuple[pa.Table, dict[str, int]]:
    """Apply the PII policy to text columns (strings, or `messages` list<struct<role, content>>).

    redact: placeholders replace the PII; drop: rows holding any PII are removed;
    flag: text is kept and a bool column `pii_flagged` marks rows holding PII.
    Returns the new table and the PII found per type (types not found are left out).
    """
    if policy not in ("redact", "drop", "flag"):
        raise InvalidInput(f"unknown PII policy {policy!r}: use redact, drop or flag")
    counts: Counter = Counter()
    flagged = [False] * table.num_rows
    for name in columns:
        index = table.schema.get_field_index(name)
        if index < 0:
            raise KeyError(f"no column {name!r} to check for PII; the table has {table.column_names}")
        field = table.schema.field(index)
        if not (_is_messages(field.type) or pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            raise TypeError(f"column {name!r} is {field.type}, not text or messages")
        values, found, column_counts = _scan_column(table.column(index), redact=policy == "redact")
        counts.update(column_counts)
        flagged = [a or b for a, b in zip(flagged, found, strict=True)]
        if policy == "redact":
            table = table.set_column(index, field, pa.array(values, type=field.type))
    if policy == "drop":
        table = table.filter(pc.invert(pa.array(flagged, type=pa.bool_())))
    elif policy == "flag":
        flags = pa.array(flagged, type=pa.bool_())
        index = table.schema.get_field_index(FLAG_COLUMN)
        table = table.set_column(index, FLAG_COLUMN, flags) if index >= 0 else table.append_column(FLAG_COLUMN, flags)
    return table, {kind: counts[kind] for kind in PII_TYPES if counts[kind]}
