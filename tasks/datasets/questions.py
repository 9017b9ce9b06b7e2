"""Questions a user would ask, made offline from a section's heading or a passage's sentences.

Fine-tuning and evaluating a retriever on anchors that are not questions teaches it the
wrong task: "Part III. Server Administration" or "21.10. LDAP Authentication > Tip" is
nobody's query. These plain rules turn headings into questions by their shape, skip
headings that only give structure, and accept a sentence as an inverse-cloze query only
when it is a whole, informative sentence of prose.

>>> heading_question("Backup and Restore > 26.3. Continuous Archiving and Point-in-Time Recovery (PITR)")
'What is continuous archiving and point-in-time recovery (PITR)?'
>>> heading_question("vacuumdb > Options > -f --full")
'What does the -f (--full) option of vacuumdb do?'
>>> heading_question("Part III. Server Administration") is None
True
"""

from __future__ import annotations

import re

from lemminflect import getAllLemmas, getLemma

from kbflow.tasks.formats.headings import (
    BOOK_DIVISION, REFERENCE_SECTIONS, SEPARATOR, STRUCTURAL, strip_numbering,
)

NOUN_GERUND_FOLLOWERS = frozenset({"of", "and", "to", "standards", "style", "conventions"})  # "Binding of names"
OPTION = re.compile(r"^(--?\w[\w-]*)(?:[ =](?!-)\S+)?(?:\s*,?\s+(--?\w[\w-]*)(?:[ =]\S+)?)?\s*$")
CALLABLE = re.compile(r"^[\w.]+\(.*\)$")  # json.dumps(), pg_backup_start()
IDENTIFIER = re.compile(r"^\w+(?:\.\w+)+$|^\w*_\w*$")  # pathlib.Path, max_wal_size
ROLE = re.compile(r":\w+(?::\w+)?:`~?([^`]+)`")  # Sphinx roles: :mod:`json` → json
LABEL_PREFIX = re.compile(r"^(?:note|tip|warning|caution|important|hint)\s*:\s*", re.IGNORECASE)
DESCRIBED = re.compile(r"^(.+?)\s+(?:---|—|--)\s+(.+)$")  # "json --- JSON encoder and decoder"
RELEASE_NOTES = re.compile(r"^(?:what's new|release\b|changelog|changes in)", re.IGNORECASE)
PREPOSITIONS = frozenset({"of", "on", "in", "for", "with", "to", "and", "from", "by", "as", "at", "vs", "versus"})
SQL_COMMAND = re.compile(  # CREATE TABLE, VACUUM, CHECKPOINT: a reference page's subject
    r"^(?:ABORT|ALTER|ANALYZE|BEGIN|CALL|CHECKPOINT|CLOSE|CLUSTER|COMMENT|COMMIT|COPY|CREATE|DEALLOCATE|DECLARE|"
    r"DELETE|DISCARD|DO|DROP|END|EXECUTE|EXPLAIN|FETCH|GRANT|IMPORT|INSERT|LISTEN|LOAD|LOCK|MERGE|MOVE|NOTIFY|"
    r"PREPARE|REASSIGN|REFRESH|REINDEX|RELEASE|RESET|REVOKE|ROLLBACK|SAVEPOINT|SECURITY|SELECT|SET|SHOW|START|"
    r"TRUNCATE|UNLISTEN|UPDATE|VACUUM|VALUES)(?: [A-Z_]+)*$"
)
QUESTION_WORDS = ("how", "why", "what", "when", "where", "which", "who", "can", "should", "is", "are", "do", "does")
COMPARISON = re.compile(r"^(.+?)\s+(?:vs\.?|versus|compared to)\s+(.+)$", re.IGNORECASE)


def is_structural(segment: str) -> bool:
    """A heading that only gives structure ("Part III …", "Note", "Synopsis"), not a topic.

    Part, chapter and appendix headings count as structure: their pages are mostly a table
    of contents, and their titles are too broad to be anyone's question.
    """
    if BOOK_DIVISION.match(segment.strip()):
        return True
    text = strip_numbering(segment).rstrip(":").strip().lower()
    return text in STRUCTURAL or text in REFERENCE_SECTIONS or not re.search(r"[a-z]{2}", text)


def heading_question(heading_path: str, title: str = "") -> str | None:
    """A question whose answer is the section under `heading_path`; None for structural headings.

    `title` (the document's) names the subject when the path is only a standard reference
    section such as "Description" or "Options".
    """
    if RELEASE_NOTES.match(strip_numbering(title)) or RELEASE_NOTES.match(strip_numbering(heading_path)):
        return None  # release notes: what changed once, not what a user asks about
    segments = [LABEL_PREFIX.sub("", strip_numbering(ROLE.sub(r"\1", s))) for s in heading_path.split(SEPARATOR)
                if s.strip()]
    while segments and strip_numbering(segments[-1]).lower() in {"note", "tip", "warning", "caution", "important"}:
        segments.pop()  # an admonition label is never the topic (older indexes carry it in the path)
    if not segments:
        return None
    if BOOK_DIVISION.match(heading_path.split(SEPARATOR)[-1].strip()):
        return None
    topic = segments[-1].rstrip(":").strip()
    subject = _subject(segments[:-1], title)
    section = REFERENCE_SECTIONS.get(topic.lower())
    if section and subject:
        return section.format(subject=subject)
    if is_structural(topic):
        return None
    option = OPTION.match(topic)
    if option:
        names = " (".join(filter(None, option.groups())) + (")" if option.group(2) else "")
        return f"What does the {names} option{f' of {subject}' if subject else ''} do?"
    if topic.split()[0].lower() in QUESTION_WORDS and len(topic.split()) > 2:
        return topic.rstrip(".?") + "?"
    described = DESCRIBED.match(topic)
    if described:
        return f"What is {described.group(1)} used for?"
    comparison = COMPARISON.match(topic)
    if comparison:
        return f"What is the difference between {_phrase(comparison.group(1))} and {_phrase(comparison.group(2))}?"
    if SQL_COMMAND.match(topic) or CALLABLE.match(topic):
        return f"What does {topic} do?"
    if IDENTIFIER.match(topic):
        return f"What is {topic}?"
    first, _, rest = topic.partition(" ")
    if first.lower().endswith("ing") and len(first) > 5 and rest and rest.split()[0].lower() not in NOUN_GERUND_FOLLOWERS:
        return f"How do I {_verb(first.lower())} {_phrase(rest)}?"
    if len(topic.split()) == 1 and subject and subject.lower() != topic.lower():
        return f"What {'are' if _plural(topic) else 'is'} {_phrase(topic)} in {_phrase(subject)}?"
    return f"What {'are' if _plural(topic) else 'is'} {_phrase(topic)}?"


def _subject(parents: list[str], title: str) -> str:
    """The nearest parent heading that names a topic, else the document title."""
    for parent in reversed(parents):
        if not is_structural(parent):
            described = DESCRIBED.match(parent)
            return described.group(1) if described else parent
    title = strip_numbering(title)
    return "" if is_structural(title) else title


def _verb(gerund: str) -> str:
    """The verb of an -ing word: "completing" → "complete", "adding" → "add", "syncing" → "sync".

    Spelling rules cannot tell "complet|e" from "edit" or "add" from "ad|d"; lemminflect's
    English lexicon can. A word it lacks ("rebasing", "syncing") gets its guess, except an "e"
    the stem cannot take after two consonants or a hyphen ("synce", "fsck-e").
    """
    known = getAllLemmas(gerund, upos="VERB").get("VERB")
    if known:
        return known[0]
    stem, guessed = gerund[:-3], (getLemma(gerund, upos="VERB") or ("",))[0]
    if not guessed or (guessed == f"{stem}e" and not re.search(r"[aeiou][^aeiouy]$", stem)):
        guessed = stem
    return guessed.rstrip("-")


def _plural(topic: str) -> bool:
    """Whether the phrase's head noun (its last word before a preposition) is plural."""
    words = topic.split()
    head = next((i for i, w in enumerate(words) if w.lower() in PREPOSITIONS and i > 0), len(words))
    last = words[head - 1].lower().strip(",:")
    return last.endswith("s") and not last.endswith(("ss", "us", "is", "sql"))


def _phrase(text: str) -> str:
    """Lowercase ordinary words; keep acronyms, identifiers and proper names as written."""
    return " ".join(word if _as_written(word) else word.lower() for word in text.split())


def _as_written(word: str) -> bool:
    """Acronyms (SQL, WAL), names with inner capitals (PostgreSQL, PL/pgSQL), identifiers, known names.

    Title case alone is not a name: "Platform-Specific Notes" becomes "platform-specific notes".
    """
    if word.isupper() and len(word) > 1 or any(c.isdigit() or c in "_.()" for c in word):
        return True
    inner_capital = any(c.isupper() and word[i - 1] not in "-/" for i, c in enumerate(word) if i > 0)
    return inner_capital or word.strip("(),:;") in {"Python", "Windows", "Linux", "Unix", "Perl", "Tcl", "Unicode"}


# -- sentences as inverse-cloze queries ------------------------------------------------------

CODE_MARKS = re.compile(r"`|::|=>|->|\$\s|[{};]|\b\w+\(\)|^\s*[#>]|\w+=\S|</?\w+>")
STARTS_LIKE_PROSE = re.compile(r"^[\"'(]?[A-Z](?:[a-z]|\s)")
ENDS_LIKE_PROSE = re.compile(r"[.!?][\"')]?$")
# "See also Section 9.23 for …", "Refer to the psql page.": a pointer elsewhere, nothing to ask about
CROSS_REFERENCE = re.compile(r"^(?:see|refer to|for (?:more|further) (?:details|information)[^,]*,\s*see)\b",
                             re.IGNORECASE)


def is_informative_sentence(sentence: str, min_words: int = 6) -> bool:
    """A whole sentence of prose, worth asking about: not a code line, a fragment or a list of names.

    >>> is_informative_sentence("A base backup can be taken with pg_basebackup while the server runs.")
    True
    >>> is_informative_sentence("SELECT * FROM t WHERE x = 1;")
    False
    >>> is_informative_sentence("and the rest of the options")
    False
    """
    sentence = " ".join(sentence.split())
    words = sentence.split()
    if len(words) < min_words or not STARTS_LIKE_PROSE.match(sentence) or not ENDS_LIKE_PROSE.search(sentence):
        return False
    if CODE_MARKS.search(sentence) or CROSS_REFERENCE.match(sentence):
        return False
    if sentence.count("(") != sentence.count(")"):  # a piece of a parenthesis: "…otherwise.)"
        return False
    alphabetic = sum(bool(re.fullmatch(r"[A-Za-z][a-z'-]*[.,;:!?)\"]*", w)) for w in words)
    return alphabetic / len(words) >= 0.7


# -- questions a model wrote ---------------------------------------------------------------------

ANSWER_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:question|q)\s*\d*\s*[:.)-]\s*(?:\*\*)?\s*", re.IGNORECASE)
# "the passage", "this text", "the above": a question that needs the passage to make sense
NEEDS_PASSAGE = re.compile(r"\b(?:(?:the|this) (?:passage|text|excerpt|section|paragraph|document|snippet)"
                           r"|the above|mentioned above|described above|given (?:passage|text))\b", re.IGNORECASE)
MAX_QUESTION_WORDS = 40


def generated_question(answer: str, min_words: int = 3) -> str | None:
    """The question in a model's answer, or None when it is not one a user could ask on its own.

    The first line that holds a question, a "Question:" label and quotes removed; it must start like
    prose, end with "?", have `min_words` to 40 words, carry no code marks (backquotes are dropped) and
    not point at "the passage".

    >>> generated_question('Question: "How do I restore a base backup?"')
    'How do I restore a base backup?'
    >>> generated_question("What does the passage say about backups?") is None
    True
    """
    for line in answer.strip().splitlines():
        # backquotes around a name are markdown, not code: "the `json.dumps` function" asks about json.dumps
        line = ANSWER_PREFIX.sub("", line.strip().replace("`", "")).strip().strip("\"'* ").strip()
        if line:
            break
    else:
        return None
    question = line[: line.find("?") + 1] if "?" in line else line  # a question, then chatter: the question
    words = question.split()
    if not question.endswith("?") or not min_words <= len(words) <= MAX_QUESTION_WORDS:
        return None
    if not STARTS_LIKE_PROSE.match(question) or NEEDS_PASSAGE.search(question):
        return None
    if re.search(r"[{};]|=>|->|</?\w+>", question):
        return None
    return question
