"""The llm query generator against a loopback OpenAI-compatible server written here."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kbflow.config import ConfigError, LlmConfig
from kbflow.tasks.datasets.pairs import GeneratedPair, Passage
from kbflow.tasks.datasets.llm import LlmQueryGenerator, LlmUnavailable, parse_questions

PASSAGES = [
    Passage("c1", "d1", "docs", "Backup > Restore", "Stop the server, copy the archive back, start it again."),
    Passage("c2", "d1", "docs", "Backup > Schedule", "Backups run nightly at two and keep seven copies."),
]

# A reply: (HTTP status, body text, seconds to wait first, extra headers).
Reply = tuple[int, str, float, dict[str, str]]


def completion(content: str) -> Reply:
    body = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    return 200, json.dumps(body), 0.0, {}


class FakeLlm(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions with whatever `reply(request_number, body)` says."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, reply: Callable[[int, dict], Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply
        self.requests: list[dict] = []
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out closed the socket the late answer goes to


class _Handler(BaseHTTPRequestHandler):
    server: FakeLlm

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, text, delay, headers = self.server.reply(len(self.server.requests), body)
        time.sleep(delay)
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def llm_server() -> Iterator[Callable[[Callable[[int, dict], Reply]], FakeLlm]]:
    servers: list[FakeLlm] = []

    def start(reply: Callable[[int, dict], Reply]) -> FakeLlm:
        server = FakeLlm(reply)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def generator(base_url: str, environ: dict | None = None, sleeps: list | None = None, **settings) -> LlmQueryGenerator:
    # No rate limit here (its own test below), so `sleeps` holds only the back-offs.
    config = LlmConfig(base_url=base_url, model="test-model", requests_per_minute=1e12, **settings)
    return LlmQueryGenerator(config, environ=environ or {}, sleep=(sleeps if sleeps is not None else []).append)


def prompt_of(body: dict) -> str:
    return body["messages"][-1]["content"]


def test_questions_become_pairs(llm_server):
    server = llm_server(lambda n, body: completion(f'```json\n["Q{n}a?", "Q{n}b?", "Q{n}c?"]\n```'))
    pairs = generator(server.base_url, questions_per_chunk=2).generate(PASSAGES, random.Random(1))

    assert pairs == [
        GeneratedPair("Q1a?", PASSAGES[0].text, "c1", "llm"),
        GeneratedPair("Q1b?", PASSAGES[0].text, "c1", "llm"),
        GeneratedPair("Q2a?", PASSAGES[1].text, "c2", "llm"),
        GeneratedPair("Q2b?", PASSAGES[1].text, "c2", "llm"),
    ]
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["body"]["model"] == "test-model"
    assert PASSAGES[0].text in prompt_of(first["body"]) and "JSON list of 2 strings" in prompt_of(first["body"])
    assert "Authorization" not in first["headers"]  # no key in the environment: a local server


def test_api_key_is_sent_from_the_named_environment_variable(llm_server):
    server = llm_server(lambda n, body: completion('["How?"]'))
    gen = generator(server.base_url, environ={"MY_LLM_KEY": "sk-test-123"}, api_key_env="MY_LLM_KEY")
    gen.generate(PASSAGES[:1], random.Random(1))
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"


def test_a_server_slower_than_the_timeout_is_unavailable(llm_server):
    server = llm_server(lambda n, body: (*completion('["late?"]')[:2], 1.0, {}))
    sleeps: list[float] = []
    gen = generator(server.base_url, sleeps=sleeps, timeout_s=0.2, max_retries=1)
    with pytest.raises(LlmUnavailable, match="timed out") as error:
        gen.generate(PASSAGES, random.Random(1))
    assert server.base_url in str(error.value)
    assert len(server.requests) == 2 and sleeps == [0.5]  # one retry after a back-off


def test_bad_json_is_asked_again(llm_server):
    server = llm_server(lambda n, body: completion("Sure! Here you go: How" if n == 1 else '["How do I restore?"]'))
    gen = generator(server.base_url)
    pairs = gen.generate(PASSAGES[:1], random.Random(1))
    assert [p.query for p in pairs] == ["How do I restore?"]
    assert gen.skipped == 0 and len(server.requests) == 2


def test_a_passage_whose_answer_stays_bad_is_skipped(llm_server, caplog):
    def reply(n: int, body: dict) -> Reply:
        if "nightly" in prompt_of(body):
            return 200, "<html>not json</html>", 0.0, {}
        return completion('{"questions": ["How do I restore?"]}')

    server = llm_server(reply)
    gen = generator(server.base_url, max_retries=2)
    pairs = gen.generate(PASSAGES, random.Random(1))
    assert [(p.query, p.chunk_id) for p in pairs] == [("How do I restore?", "c1")]
    assert gen.skipped == 1
    assert len(server.requests) == 1 + 3  # c1 once, c2 three times
    assert "skipped chunk c2" in caplog.text


def test_a_closed_port_is_unavailable_fast():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    gen = generator(f"http://127.0.0.1:{port}/v1", sleeps=sleeps, max_retries=2)
    with pytest.raises(LlmUnavailable, match=f"http://127.0.0.1:{port}/v1 failed 3 time") as error:
        gen.generate(PASSAGES, random.Random(1))
    assert "refused" in str(error.value).lower()
    assert sleeps == [0.5, 1.0]  # exponential back-off between the attempts


def test_overload_and_server_errors_are_retried(llm_server):
    replies = {1: (429, "{}", 0.0, {"Retry-After": "3"}), 2: (503, "busy", 0.0, {})}
    server = llm_server(lambda n, body: replies.get(n) or completion('["How?"]'))
    sleeps: list[float] = []
    pairs = generator(server.base_url, sleeps=sleeps, max_retries=3).generate(PASSAGES[:1], random.Random(1))
    assert [p.query for p in pairs] == ["How?"]
    assert sleeps == [3.0, 1.0]  # Retry-After honoured, then back-off of the second attempt


def test_a_refused_key_ends_the_build_without_retries(llm_server):
    server = llm_server(lambda n, body: (401, '{"error": "bad key"}', 0.0, {}))
    with pytest.raises(LlmUnavailable, match="HTTP 401"):
        generator(server.base_url, max_retries=3).generate(PASSAGES, random.Random(1))
    assert len(server.requests) == 1


def test_requests_are_spaced_by_the_rate_limit(llm_server):
    server = llm_server(lambda n, body: completion('["How?"]'))
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    config = LlmConfig(base_url=server.base_url, requests_per_minute=30)
    gen = LlmQueryGenerator(config, environ={}, clock=lambda: now[0], sleep=sleep)
    gen.generate(PASSAGES + PASSAGES[:1], random.Random(1))
    assert sleeps == [2.0, 2.0] and len(server.requests) == 3
    assert "model" not in server.requests[0]["body"]  # no model configured: the server's default


def test_prompt_file(llm_server, tmp_path):
    server = llm_server(lambda n, body: completion('["How?"]'))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text('Heading: {heading}\nGive {n} questions as ["..."] for:\n{passage}', encoding="utf-8")
    generator(server.base_url, prompt_file=prompt).generate(PASSAGES[:1], random.Random(1))
    expected = f'Heading: Backup > Restore\nGive 1 questions as ["..."] for:\n{PASSAGES[0].text}'
    assert prompt_of(server.requests[0]["body"]) == expected

    prompt.write_text("Ask about this text.", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"prompt_file: .* has no \{passage\}"):
        generator(server.base_url, prompt_file=prompt)


def test_no_base_url_is_a_config_error():
    with pytest.raises(ConfigError, match="datasets.llm.base_url is not set"):
        LlmQueryGenerator(LlmConfig())


@pytest.mark.parametrize(
    ("content", "questions"),
    [
        ('["A?", "B?"]', ["A?", "B?"]),
        ('```json\n["A?"]\n```', ["A?"]),
        ('```\n["A?", "A?", " "]\n```', ["A?"]),
        ('Here are the questions:\n["A?", "B?"]\nHope this helps.', ["A?", "B?"]),
        ('{"questions": ["A?"]}', ["A?"]),
    ],
)
def test_parse_questions(content, questions):
    assert parse_questions(content) == questions


@pytest.mark.parametrize("content", ["How do I restore?", "[]", '{"a": 1}', '["A?"', "[1, 2]"])
def test_parse_questions_rejects(content):
    with pytest.raises(ValueError):
        parse_questions(content)
