#!/usr/bin/env python3
"""Generate the binary / non-UTF-8 files of the kbflow example corpus.

Writes (overwriting, so the script is idempotent):

* docs/policies/support-sla.docx      (python-docx)
* docs/policies/refund-policy.docx    (python-docx)
* docs/releases/release-notes-3.0.pdf (fpdf2, core font Helvetica)
* docs/releases/release-notes-3.1.pdf (fpdf2, core font Helvetica)
* docs/releases/release-notes-2.9.pdf (a valid PDF truncated to 300 bytes: deliberately broken)
* docs/faq/legacy-faq-latin1.txt      (cp1252 text, deliberately not UTF-8)

Requires python-docx and fpdf2. Run from anywhere:

    python examples/make_binary_examples.py
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from docx import Document
from fpdf import FPDF

HERE = Path(__file__).resolve().parent
DOCS = HERE / "docs"
FIXED_DATE = dt.datetime(2024, 7, 1, 9, 0, 0, tzinfo=dt.timezone.utc)
TRUNCATE_AT = 300


# --------------------------------------------------------------------------- DOCX

SUPPORT_SLA = {
    "title": "Support and Service Level Agreement",
    "intro": (
        "Version 4.0, effective 1 March 2024. This document defines the support hours, "
        "response times and availability commitments that Brightfield Software gives to "
        "customers of the Lumen Notes Team and Enterprise editions and of Lumen Cloud. "
        "Community edition users are supported through the community forum and receive "
        "no guaranteed response times."
    ),
    "sections": [
        ("Support channels", [
            ("Support portal", [
                "All requests are opened in the Brightfield support portal. Team customers "
                "may register up to 3 named support contacts; Enterprise customers may "
                "register up to 10.",
                "Enterprise customers can additionally call the support hotline for "
                "Severity 1 incidents. The hotline number is printed on the license "
                "certificate.",
            ]),
            ("Support hours", [
                "Team edition: Monday to Friday, 08:00 to 18:00 Central European Time, "
                "excluding public holidays in England.",
                "Enterprise edition: the same business hours for Severity 2 to 4, and "
                "24 hours a day, 7 days a week for Severity 1 incidents.",
            ]),
        ]),
        ("Severity levels and response times", [
            ("Severity definitions", [
                "Severity 1: the production service is down or unusable for all users, "
                "or data loss is occurring.",
                "Severity 2: a major function such as sync, search or sign-in is failing "
                "for many users and there is no workaround.",
                "Severity 3: a function is impaired but a workaround exists.",
                "Severity 4: questions, documentation requests and feature suggestions.",
            ]),
            ("First response targets", [
                "Severity 1: 1 hour for Enterprise (around the clock), 4 business hours for Team.",
                "Severity 2: 4 business hours for Enterprise, 1 business day for Team.",
                "Severity 3: 1 business day for Enterprise, 2 business days for Team.",
                "Severity 4: 3 business days for both editions.",
                "A first response is a reply from a support engineer who has read the "
                "request, not an automatic acknowledgement.",
            ]),
        ]),
        ("Lumen Cloud availability", [
            ("Uptime commitment", [
                "Brightfield commits to a monthly availability of 99.9 percent for Lumen "
                "Cloud, measured by external probes that load the sign-in page and call "
                "the API health endpoint every minute.",
                "Scheduled maintenance is excluded. Maintenance takes place on Sundays "
                "between 02:00 and 04:00 UTC and is announced at least 7 days in advance "
                "on the status page.",
            ]),
            ("Service credits", [
                "If monthly availability falls below 99.9 percent, the customer receives "
                "a credit of 10 percent of that month's fee; below 99.5 percent, 25 "
                "percent; below 99.0 percent, 50 percent.",
                "Credits must be claimed through the support portal within 30 days after "
                "the end of the affected month. Credits are applied to the next invoice "
                "and are never paid out in cash.",
            ]),
        ]),
        ("Customer responsibilities", [
            ("Self-hosted installations", [
                "For self-hosted servers, Brightfield supports the two most recent minor "
                "versions of Lumen Notes. Customers must provide a support bundle created "
                "with lumen-admin support-bundle when asked.",
                "Brightfield does not log in to customer servers. Screen-sharing sessions "
                "can be arranged for Severity 1 and 2 incidents.",
            ]),
        ]),
    ],
}

REFUND_POLICY = {
    "title": "Refund Policy",
    "intro": (
        "Effective 1 March 2024. This policy applies to licenses for Lumen Notes Team and "
        "Enterprise and to Lumen Cloud subscriptions bought directly from Brightfield "
        "Software. Purchases made through a reseller are refunded according to the "
        "reseller's terms."
    ),
    "sections": [
        ("Annual plans", [
            ("30-day money-back guarantee", [
                "If you are not satisfied with your first annual purchase, you can ask for a "
                "full refund within 30 days of the purchase date. The guarantee applies only "
                "to the first purchase of an organisation, not to renewals or added seats.",
            ]),
            ("Renewals", [
                "Annual plans renew automatically. We send a reminder 30 days before the "
                "renewal date. If you did not mean to renew, you can ask for a refund of an "
                "automatic renewal within 14 days after the renewal date, provided you "
                "have not added seats since the renewal.",
            ]),
        ]),
        ("Monthly plans", [
            ("Cancelling", [
                "Monthly plans can be cancelled at any time and stay active until the end of "
                "the current billing month. We do not refund partial months.",
            ]),
        ]),
        ("Changing the number of seats", [
            ("Adding seats", [
                "Seats added during a billing period are charged pro rata for the remainder "
                "of the period.",
            ]),
            ("Removing seats", [
                "Seat reductions take effect at the next renewal date. Removing seats during "
                "a billing period does not lead to a refund or credit.",
            ]),
        ]),
        ("How refunds are paid", [
            ("Requesting a refund", [
                "Send your request to billing@brightfield.example with the order number, "
                "which has the form BF- followed by six digits (for example BF-204518).",
                "Approved refunds are paid to the original payment method within 10 "
                "business days. Refunds are made in the currency of the original payment.",
            ]),
            ("Exclusions", [
                "Service credits granted under the Support and Service Level Agreement, "
                "professional services such as migration assistance, and extended support "
                "contracts are not refundable.",
                "When a refund is issued, the license key is revoked and the server falls "
                "back to the Community edition.",
            ]),
        ]),
    ],
}


def write_docx(spec: dict, path: Path) -> None:
    doc = Document()
    props = doc.core_properties
    props.title = spec["title"]
    props.author = "Brightfield Software Ltd."
    props.created = FIXED_DATE.replace(tzinfo=None)
    props.modified = FIXED_DATE.replace(tzinfo=None)
    doc.add_paragraph(spec["title"], style="Title")
    doc.add_paragraph(spec["intro"])
    for h1, subsections in spec["sections"]:
        doc.add_paragraph(h1, style="Heading 1")
        for h2, paragraphs in subsections:
            doc.add_paragraph(h2, style="Heading 2")
            for text in paragraphs:
                doc.add_paragraph(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))


# --------------------------------------------------------------------------- PDF

RELEASE_3_0 = {
    "version": "3.0",
    "title": "Lumen Notes 3.0 Release Notes",
    "date": "12 February 2024",
    "intro": (
        "Lumen Notes 3.0 is a major release. It introduces real-time co-editing, a new "
        "plugin system and version 2 of the REST API. Because it changes the storage "
        "format, installations must be on 2.9.4 before upgrading. Read the breaking "
        "changes section before you upgrade."
    ),
    "sections": [
        ("New features", [
            "Real-time co-editing in the web client: up to 50 people can edit the same page "
            "at once, with live cursors in different colours.",
            "New plugin system: plugins are compiled to WebAssembly and run in a sandbox "
            "with a 64 MB memory limit. The first official plugins are kanban, diagrams "
            "and calendar.",
            "REST API v2 under /api/v2 with cursor pagination, personal API tokens "
            "(prefix lnt_) and webhooks signed with HMAC-SHA256.",
            "New search engine with filters (tag:, author:, in:, before:, after:), "
            "phrase search and fuzzy matching with the ~ operator.",
            "New default ports: 8470 for the web interface and API, 8471 for sync. "
            "Lumen Notes 2.x used port 8080 for everything.",
            "All exports are now UTF-8 encoded.",
        ]),
        ("Breaking changes", [
            "PostgreSQL 11 and 12 are no longer supported. PostgreSQL 13 or newer is "
            "required.",
            "Direct upgrades from 2.8 or older are not possible; upgrade to 2.9.4 first.",
            "JavaScript extensions from 2.x are disabled and must be replaced by plugins.",
            "REST API v1 is deprecated and will be removed in 3.2.",
            "The configuration key storage.upload_limit was renamed to "
            "storage.max_upload_mb.",
            "Anonymous telemetry is now off by default.",
        ]),
        ("Fixed bugs", [
            "LN-4188: attachments with a # character in the file name could not be "
            "downloaded.",
            "LN-4203: the page tree collapsed completely after a page was moved.",
            "LN-4251: LDAP group synchronisation failed for groups with more than 1,000 "
            "members.",
            "LN-4302: password reset e-mails showed the expiry time in the server's time "
            "zone instead of the user's.",
            "LN-4317: memory leak in the WebSocket server when clients reconnected "
            "frequently.",
        ]),
        ("Known issues", [
            "The Evernote importer skips tables that are nested inside lists. A fix is "
            "planned for 3.1.",
            "The mobile apps do not yet support offline mode with the new sync protocol; "
            "they work online-only in this release.",
        ]),
    ],
}

RELEASE_3_1 = {
    "version": "3.1",
    "title": "Lumen Notes 3.1 Release Notes",
    "date": "18 June 2024",
    "intro": (
        "Lumen Notes 3.1 is a minor release with new features and fixes. It can be "
        "installed directly over any 3.0.x release. The database migration adds an index "
        "on page properties and takes about one minute per 100,000 pages; run "
        "lumen-admin migrate --dry-run --target 3.1 to get an estimate for your data."
    ),
    "sections": [
        ("New features", [
            "Semantic search plugin (semantic-search): meaning-based search with a local "
            "embedding model. No data leaves the server. Available in the Team and "
            "Enterprise editions.",
            "Offline mode for the iOS and Android apps: spaces can be pinned for offline "
            "use, within the 2 GB per-device cache.",
            "OIDC group mapping: group claims from the identity provider can be mapped to "
            "Lumen Notes groups with auth.oidc.group_mapping.",
            "Backups are now compressed with zstd by default (previously gzip). Archives "
            "are about 40 percent smaller and are created faster.",
            "Webhook deliveries are retried 5 times with exponential backoff. Lumen Notes "
            "3.0 retried only 3 times at fixed one-minute intervals.",
            "New command lumen-admin support-bundle collects diagnostics for support "
            "tickets, with all secrets removed.",
            "lumen-admin doctor now checks whether ports 8470 and 8471 are reachable and "
            "supports the --json option.",
            "Search: new type: filter and stemming for Swedish and Portuguese.",
            "New Prometheus metric lumen_search_index_lag_seconds.",
        ]),
        ("Fixed bugs", [
            "LN-4420: conflict copies were created for pages that had only been renamed "
            "offline, although the edits could be merged.",
            "LN-4433: the Evernote importer skipped tables nested inside lists.",
            "LN-4461: backup restore ignored the --skip-config flag in Docker containers.",
            "LN-4479: the API returned status 500 instead of 404 for deleted attachments.",
            "LN-4502: search result highlighting broke on words containing apostrophes.",
            "LN-4515: the macOS desktop app forgot its window position on macOS 14.",
        ]),
        ("Deprecations", [
            "REST API v1 will be removed in 3.2, as announced in 3.0. Requests to /api/v1 "
            "now log a warning on the server once per hour per token.",
            "The gzip backup format remains supported for restore, but will no longer be "
            "offered for new backups from 3.3 on.",
        ]),
        ("Known issues", [
            "Changing a space's search language pauses the initial indexing of the "
            "semantic-search plugin for that space until the keyword index rebuild has "
            "finished.",
        ]),
    ],
}

RELEASE_2_9 = {
    "version": "2.9",
    "title": "Lumen Notes 2.9 Release Notes",
    "date": "9 October 2023",
    "intro": (
        "Lumen Notes 2.9 is the last minor release of the 2.x series. Version 2.9.4 is "
        "the required stepping stone for upgrades to 3.0."
    ),
    "sections": [
        ("New features", [
            "Preparation of the database for the 3.0 storage format.",
            "Cafe mode for low-bandwidth connections.",
        ]),
    ],
}


class ReleaseNotesPDF(FPDF):
    def __init__(self, spec: dict):
        super().__init__(format="A4")
        self.spec = spec
        self.set_title(spec["title"])
        self.set_author("Brightfield Software Ltd.")
        self.set_subject(f"Release notes for Lumen Notes {spec['version']}")
        self.set_creator("kbflow examples/make_binary_examples.py")
        self.set_creation_date(FIXED_DATE)
        self.set_margins(20, 20, 20)
        self.set_auto_page_break(True, margin=20)

    def footer(self):
        self.set_y(-15)
        self.set_font("Helvetica", "I", 8)
        self.cell(0, 10, f"Lumen Notes {self.spec['version']} release notes - page {self.page_no()}",
                  align="C")


def write_release_pdf(spec: dict, path: Path) -> None:
    pdf = ReleaseNotesPDF(spec)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(0, 10, spec["title"], new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, f"Version {spec['version']} - released {spec['date']} - Brightfield Software",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.multi_cell(0, 6, spec["intro"], new_x="LMARGIN", new_y="NEXT")
    for heading, items in spec["sections"]:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 14)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for item in items:
            pdf.multi_cell(0, 6, "- " + item, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))


def write_truncated_pdf(spec: dict, path: Path) -> None:
    """A real PDF cut after TRUNCATE_AT bytes, so that PDF parsers fail on it."""
    pdf = ReleaseNotesPDF(spec)
    pdf.add_page()
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, spec["title"] + "\n" + spec["intro"], new_x="LMARGIN", new_y="NEXT")
    data = bytes(pdf.output())
    path.write_bytes(data[:TRUNCATE_AT])


# --------------------------------------------------------------------------- cp1252 text

LEGACY_FAQ = """\
LUMEN NOTES 2.x - LEGACY FAQ
============================

Archived FAQ for Lumen Notes 2.7 to 2.9. Kept for customers who still run 2.x.
Lumen Notes 2.9 receives security fixes until 12 February 2025; please plan your
upgrade to 3.x (via 2.9.4).

This file is stored in the Windows-1252 (cp1252) encoding, like all 2.x documents.


Q: Why do accented characters such as é, ü or ñ look garbled in my 2.x exports?

A: On Windows servers, Lumen Notes 2.x wrote exports in Windows-1252 unless told
otherwise. A page titled "Résumé template" or "Café opening hours" then shows up as
"RÃ©sumÃ©" when a tool reads the file as UTF-8. Set export.encoding = utf-8 in the
[export] section of lumen.ini (the 2.x configuration file, /etc/lumen/lumen.ini) and
export again. Lumen Notes 3.0 and later always export UTF-8.


Q: Searching for "resume" does not find my page "Résumé". Is search broken?

A: No, but the 2.x search engine was accent-sensitive by default, which is a rather
naïve behaviour for European languages. Set search.fold_accents = true in lumen.ini
and rebuild the index with "lumen-admin reindex". After that, "resume", "résumé" and
"RESUME" all match. The 3.x search engine folds accents automatically.


Q: What is Café mode and is it still available?

A: Café mode was a 2.x option for slow or metered connections, for example public
Wi-Fi in a café or on a train. It stopped loading images and attachments until you
clicked them and reduced sync to once every 5 minutes. Café mode was removed in 3.0;
the 3.x clients fall back to "Limited sync" automatically when the sync WebSocket
cannot be used.


Q: Which port does the 2.x server use?

A: Lumen Notes 2.x serves the web interface, the API and sync on port 8080. Version 3.0
moved to port 8470 (web and API) and port 8471 (sync), so firewall rules must be
changed when upgrading.


Q: Can I still download the 2.x desktop app?

A: Yes, from the archive section of the Brightfield website, but only the final
release 2.9.4 is offered. The 2.x desktop app cannot connect to a 3.x server.

Brightfield Software Ltd. - Leeds - Zürich office: Bahnhofstraße 12 (sales only).
"""


def write_legacy_faq(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # newline="\r\n": a Windows-era file, CRLF line endings as well.
    with open(path, "w", encoding="cp1252", newline="\r\n") as fh:
        fh.write(LEGACY_FAQ)


# --------------------------------------------------------------------------- main

def main() -> None:
    outputs = []
    targets = [
        (DOCS / "policies" / "support-sla.docx", lambda p: write_docx(SUPPORT_SLA, p)),
        (DOCS / "policies" / "refund-policy.docx", lambda p: write_docx(REFUND_POLICY, p)),
        (DOCS / "releases" / "release-notes-3.0.pdf", lambda p: write_release_pdf(RELEASE_3_0, p)),
        (DOCS / "releases" / "release-notes-3.1.pdf", lambda p: write_release_pdf(RELEASE_3_1, p)),
        (DOCS / "releases" / "release-notes-2.9.pdf", lambda p: write_truncated_pdf(RELEASE_2_9, p)),
        (DOCS / "faq" / "legacy-faq-latin1.txt", write_legacy_faq),
    ]
    for path, writer in targets:
        writer(path)
        outputs.append(path)
    for path in outputs:
        print(f"{path.relative_to(HERE)}\t{path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
