"""The `llm` query generator: questions for passages from an OpenAI-compatible endpoint.

One POST {base_url}/chat/completions per passage (stdlib urllib, no client
library), spaced to `requests_per_minute`. The key, when the endpoint needs one,
comes from the environment variable named by `api_key_env`; a local server
(llama.cpp, vLLM, Ollama) needs none and gets no Authorization header.

Failures are told apart: a timeout, a refused connection, HTTP 429 or 5xx is
retried with exponential back-off (tenacity) and, once `max_retries` are spent, ends the
build with `LlmUnavailable` (naming base_url and the cause), because the next
passage would fare no better. An answer that is not a JSON list of questions is
asked again; if it stays bad, only that passage is skipped (logged, counted in
`skipped`). HTTP 400/413/422 (e.g. a passage too long for the model's context)
also skips the passage; any other 4xx (wrong key, path or model) ends the build.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import tenacity

from kbflow.config import ConfigError, LlmConfig
from kbflow.errors import KbflowError
from kbflow.tasks.datasets.pairs import GeneratedPair, Passage

log = logging.getLogger("kbflow.llm")

DEFAULT_PROMPT = """\
Write {n} different questions that a user of this documentation could ask and that \
the passage below answers. Each question must make sense on its own, without the passage.
Answer with a JSON list of {n} strings and nothing else, for example ["How do I ...?"].

Passage:
\"\"\"
{passage}
\"\"\"
"""
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
_RETRY_STATUS = {429, 500, 502, 503, 504}
_SKIP_STATUS = {400, 413, 422}  # about this passage (too long, refused), not about the endpoint
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class LlmUnavailable(KbflowError, RuntimeError):
    """The LLM endpoint cannot be used: unreachable, timing out, overloaded or refusing us."""


class _BadAnswer(ValueError):
    """The endpoint answered, but not with a list of questions."""


class _SkipPassage(ValueError):
    """The endpoint refused this passage (HTTP 400/413/422)."""


def load_prompt(config: LlmConfig) -> str:
    """The prompt template: `prompt_file` (must contain {passage}) or the built-in one."""
    if config.prompt_file is None:
        return DEFAULT_PROMPT
    try:
        template = Path(config.prompt_file).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"datasets.llm.prompt_file: cannot read {config.prompt_file}: {error}") from error
    if "{passage}" not in template:
        raise ConfigError(
            f"datasets.llm.prompt_file: {config.prompt_file} has no {{passage}} placeholder; "
            "add {passage} where the passage text goes ({n} and {heading} are optional)"
        )
    return template


def render_prompt(template: str, passage: Passage, n: int) -> str:
    """The template with {passage}, {heading} and {n} filled in (other braces stay as they are)."""
    return template.replace("{n}", str(n)).replace("{heading}", passage.heading).replace("{passage}", passage.text)


def parse_questions(content: str) -> list[str]:
    """The questions in a model's answer: a JSON list of strings, possibly in a ```json fence.

    An object holding one list (`{"questions": [...]}`) is accepted too.

    >>> parse_questions('```json\\n["How do I restore a backup?"]\\n```')
    ['How do I restore a backup?']
    """
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # Some models wrap the list in a sentence: take the outermost [...] if there is one.
        start, end = text.find("["), text.rfind("]")
        if start < 0 or end <= start:
            raise _BadAnswer(f"not JSON: {content[:80]!r}") from None
        try:
            value = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            raise _BadAnswer(f"not JSON: {content[:80]!r}") from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 else None
    if not isinstance(value, list):
        raise _BadAnswer(f"not a JSON list: {content[:80]!r}")
    questions = [q.strip() for q in value if isinstance(q, str) and q.strip()]
    if not questions:
        raise _BadAnswer(f"no questions in {content[:80]!r}")
    return list(dict.fromkeys(questions))


class LlmQueryGenerator:
    """Questions from an OpenAI-compatible chat endpoint; `skipped` counts passages given up on.

    `clock` and `sleep` are injectable so tests need not wait for rate limits and back-off.
    """

    name = "llm"

    def __init__(
        self,
        config: LlmConfig,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not config.base_url:
            raise ConfigError(
                "datasets.llm.base_url is not set: the llm generator needs an OpenAI-compatible endpoint "
                "(e.g. http://127.0.0.1:8000/v1), or remove \"llm\" from datasets.generators"
            )
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.template = load_prompt(config)
        environ = os.environ if environ is None else environ
        self._api_key = environ.get(config.api_key_env) or None
        self._clock, self._sleep = clock, sleep
        self._last_request: float | None = None
        self.skipped = 0
        self.requests = 0

    def generate(self, passages: Iterable[Passage], rng: random.Random) -> list[GeneratedPair]:
        """Up to `questions_per_chunk` pairs per passage; a passage with no usable answer is skipped."""
        pairs: list[GeneratedPair] = []
        n = self.config.questions_per_chunk
        for passage in passages:
            try:
                questions = self._ask(render_prompt(self.template, passage, n), seed=rng.randrange(2**31))
            except (_BadAnswer, _SkipPassage) as error:
                self.skipped += 1
                log.warning("llm generator: skipped chunk %s: %s", passage.chunk_id, error)
                continue
            pairs += [GeneratedPair(q, passage.text, passage.chunk_id, self.name) for q in questions[:n]]
        return pairs

    def _ask(self, prompt: str, seed: int) -> list[str]:
        """The questions for one prompt, retrying transient failures and bad answers."""
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.config.temperature,
            "seed": seed,  # servers that honour it give the same questions on a re-run
        }
        if self.config.model:
            body["model"] = self.config.model
        payload = json.dumps(body).encode("utf-8")
        attempts = self.config.max_retries + 1
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((_BadAnswer, _Transient)),
            stop=tenacity.stop_after_attempt(attempts),
            wait=_backoff,
            sleep=lambda seconds: self._sleep(seconds) if seconds > 0 else None,  # a bad answer: ask again at once
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(lambda: parse_questions(self._post(payload)))
        except _Transient as error:
            raise LlmUnavailable(
                f"LLM endpoint {self.config.base_url} failed {attempts} time(s), last: {error.cause}; "
                "check datasets.llm.base_url and that the server is up (or raise datasets.llm.timeout_s)"
            ) from error

    def _post(self, payload: bytes) -> str:
        """One rate-limited request; the answer's message content."""
        self._wait_for_rate_limit()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read(300).decode("utf-8", "replace")
            if error.code in _RETRY_STATUS:
                raise _Transient(f"HTTP {error.code}", _retry_after(error.headers.get("Retry-After"))) from None
            if error.code in _SKIP_STATUS:
                raise _SkipPassage(f"HTTP {error.code}: {detail}") from None
            raise LlmUnavailable(
                f"LLM endpoint {self.config.base_url} refused the request: HTTP {error.code} {detail!r}; "
                f"check datasets.llm.model, the key in ${self.config.api_key_env} and that base_url ends "
                "where /chat/completions starts (often .../v1)"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
            cause = error.reason if isinstance(error, urllib.error.URLError) else error
            raise _Transient(f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__) from error
        try:
            answer = json.loads(raw)
            content = answer["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as error:
            raise _BadAnswer(f"not a chat completion: {raw[:80]!r} ({type(error).__name__})") from None
        if not isinstance(content, str):
            raise _BadAnswer(f"no message content in {raw[:80]!r}")
        return content

    def _wait_for_rate_limit(self) -> None:
        interval = 60.0 / self.config.requests_per_minute
        now = self._clock()
        if self._last_request is not None and now - self._last_request < interval:
            self._sleep(interval - (now - self._last_request))
            now = self._clock()
        self._last_request = now


class _Transient(Exception):
    """A failure worth retrying: timeout, refused connection, HTTP 429 / 5xx."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause, self.retry_after = cause, retry_after


_exponential = tenacity.wait_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_MAX_S)


def _backoff(state: tenacity.RetryCallState) -> float:
    """Seconds before the next try: none after a bad answer; the server's Retry-After, else exponential."""
    error = state.outcome.exception() if state.outcome else None
    if not isinstance(error, _Transient):
        return 0.0
    return error.retry_after or _exponential(state)


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    if isinstance(error, _Transient):
        log.info("llm generator: %s, retrying in %.1f s", error.cause, wait)
    else:
        log.info("llm generator: bad answer, asking again (%d)", state.attempt_number)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (capped), or None when absent or a date."""
    try:
        return min(BACKOFF_MAX_S, max(0.0, float(value))) if value else None
    except ValueError:
        return None
