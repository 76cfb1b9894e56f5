"""Every example in README.md runs as written, against the fake server, so none can rot.

The README's fenced blocks are read by their info string (```python, ```bash, ```toml).
A block is skipped only when the line right before its opening fence is exactly
``<!-- fragment -->`` (an HTML comment, invisible on GitHub): an excerpt that cannot run
alone. Skips are reported with the README line; an unmarked block that fails fails here.

``python`` blocks
    A block that defines top-level ``test_*`` functions is a pytest file: it is written
    into a fresh project (pytester) whose ``pyproject.toml`` is the README's ``toml``
    block, and run in a subprocess; every test in it must pass.

    Every other block is run as a module named ``readme_example`` (not ``__main__``, so an
    ``if __name__ == "__main__":`` server does not start), compiled with top-level
    ``await`` allowed and awaited in the test's event loop, with a fresh ``FakeConduit``
    running. Its URLs and tokens are in the environment as a configured user has them
    (``CONDUIT_TOKEN``, ``CONDUIT_LINK_TOKEN``, ``CONDUIT_BASE_URL``,
    ``CONDUIT_LINK_BASE_URL``), and its tokens are also the globals ``ORG_TOKEN`` and
    ``LINK_APP_TOKEN``, the placeholders the examples use. The block that defines an
    aiohttp ``app`` is then served with aiohttp's test client and asked for a connect
    URL of a known and of an unknown tenant.

``bash`` blocks
    Each line that starts with ``conduit-async`` (``\\`` continuations joined, ``#``
    comments dropped) is run in order, in a temporary directory holding the input files
    the README describes (``SAMPLE_FILES``), against a fake server in its own process. The
    environment has the fake's base URLs (``CONDUIT_BASE_URL``, ``CONDUIT_LINK_BASE_URL``:
    the production defaults otherwise) and, for each ``export CONDUIT_...=...`` line of
    the block, the fake's value of that token, and no other ``CONDUIT_`` variable: a
    block that forgets a token it needs fails. Each command must exit 0; a
    ``conduit-async fake-server`` line must start serving and stop cleanly on SIGTERM.
    Other lines (the set-up commands at the top: venv, ``pip install``) are not run here:
    ``.ci/run`` runs them exactly as the README says.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from conduit_async import Conduit
from conduit_async.testing import FakeConduit
from conduit_async.testing.pytest_plugin import needs_pytest_asyncio

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"
FRAGMENT = "<!-- fragment -->"
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")

#: Input files the README's commands name, with a few rows of the documented columns.
SAMPLE_FILES = {
    "clients.csv": "id,name,page_enabled\nclient1,Client 1,true\nclient2,Client 2,false\n",
    "workspaces.jsonl": '{"name": "Acme", "ext_id": "crm1"}\n{"name": "Beta", "ext_id": "crm2"}\n',
}

#: How long one README command may take: they are small examples.
COMMAND_TIMEOUT = 60.0


@attrs.frozen
class Block:
    """One fenced block of the README: `line` is the README line of its first code line."""

    lang: str
    line: int
    text: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.lang}@README.md:{self.line}"


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md, in order."""
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"README.md:{i + 1}: a fence that is never closed"
        blocks.append(
            Block(
                lang=opening["lang"],
                line=i + 2,
                text="\n".join(lines[i + 1 : end]) + "\n",
                fragment=i > 0 and lines[i - 1].strip() == FRAGMENT,
            )
        )
        i = end + 1
    return blocks


BLOCKS = readme_blocks()


def blocks(lang: str) -> list[Block]:
    return [block for block in BLOCKS if block.lang == lang]


def defined_tests(source: str) -> list[str]:
    """The top-level test functions `source` defines."""
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    ]


def is_pytest_file(block: Block) -> bool:
    return bool(defined_tests(block.text))


def defines_app(block: Block) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "app" for t in node.targets)
        for node in ast.parse(block.text).body
    )


def skip_fragment(block: Block) -> None:
    if block.fragment:
        pytest.skip(f"README.md:{block.line - 1} marks this block {FRAGMENT}")


def test_the_readme_has_examples_to_run() -> None:
    """The extraction itself works: a README whose fences stopped matching would
    otherwise pass every test below by running nothing. A block of another language
    (``py``, ``console``...) would be silently skipped, so each new kind is a decision made
    here; blocks without one (the token-window diagram) are text."""
    assert {block.lang for block in BLOCKS} <= {"python", "bash", "toml", ""}
    assert len(blocks("python")) >= 4
    assert any(is_pytest_file(block) for block in blocks("python"))
    assert sum(defines_app(block) for block in blocks("python")) == 1
    assert len(bash_commands()) >= 3
    assert [block for block in blocks("toml") if "[tool.pytest.ini_options]" in block.text]


# -- python blocks ----------------------------------------------------------------------


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A FakeConduit, and the environment of a user configured for it."""
    for name in os.environ:
        if name.startswith("CONDUIT_"):
            monkeypatch.delenv(name)
    async with FakeConduit() as server:
        monkeypatch.setenv("CONDUIT_TOKEN", server.org_token)
        monkeypatch.setenv("CONDUIT_LINK_TOKEN", server.link_token)
        monkeypatch.setenv("CONDUIT_BASE_URL", server.base_url)
        monkeypatch.setenv("CONDUIT_LINK_BASE_URL", server.link_base_url)
        yield server


async def run_block(block: Block, fake: FakeConduit) -> dict[str, Any]:
    """Run `block` as the module docstring says; its globals afterwards."""
    namespace: dict[str, Any] = {
        "__name__": "readme_example",
        "ORG_TOKEN": fake.org_token,
        "LINK_APP_TOKEN": fake.link_token,
    }
    # Blank lines in front, so that a traceback names the README's own line numbers.
    source = "\n" * (block.line - 1) + block.text
    code = compile(source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if code.co_flags & inspect.CO_COROUTINE:
        await result
    return namespace


@pytest.mark.parametrize(
    "block",
    [block for block in blocks("python") if not is_pytest_file(block)],
    ids=lambda block: block.id,
)
async def test_python_example_runs(block: Block, fake: FakeConduit) -> None:
    skip_fragment(block)
    await run_block(block, fake)


async def test_web_app_quickstart_serves_connect_urls(fake: FakeConduit) -> None:
    """The quickstart's app, served: a known tenant gets its connect URL, an unknown one a
    404 that says which tenant, and the client is closed with the app."""
    (block,) = [block for block in blocks("python") if defines_app(block)]
    skip_fragment(block)
    block_globals = await run_block(block, fake)
    app = block_globals["app"]
    assert isinstance(app, web.Application)
    fake.add_company("acme1")
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/tenants/acme1/connect")
        assert response.status == 200, await response.text()
        url = (await response.json())["url"]
        assert url.startswith(fake.url) and "acme1" in url

        response = await client.get("/tenants/nobody/connect")
        assert response.status == 404
        assert "'nobody'" in await response.text()
        (conduit,) = [value for value in app.values() if isinstance(value, Conduit)]
    assert conduit.closed


# -- the pytest example, and the plugin without pytest-asyncio ------------------------------

#: A test of the plugin's synchronous fixture, which must not need pytest-asyncio.
CLOCK_TEST = """
def test_conduit_clock_needs_no_plugin(conduit_clock):
    start = conduit_clock()
    conduit_clock.advance(60)
    assert conduit_clock() == start + 60
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A fresh project configured as the README says, holding its pytest example."""
    (toml,) = [block for block in blocks("toml") if "[tool.pytest.ini_options]" in block.text]
    pytester.makefile(".toml", pyproject=toml.text)
    files = {
        f"test_readme_{block.line}": block.text
        for block in blocks("python")
        if is_pytest_file(block) and not block.fragment
    }
    assert files
    pytester.makepyfile(test_clock=CLOCK_TEST, **files)
    return pytester


def count_tests(pytester: pytest.Pytester) -> int:
    return sum(len(defined_tests(path.read_text())) for path in pytester.path.glob("test_*.py"))


def test_pytest_example_passes_in_a_fresh_project(user_project: pytest.Pytester) -> None:
    """The README's pytest example, with the README's three lines of configuration and
    nothing else, passes (warnings as errors, as a careful project runs it)."""
    result = user_project.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=count_tests(user_project))


def test_without_pytest_asyncio_the_async_fixtures_say_what_is_missing(
    user_project: pytest.Pytester,
) -> None:
    """pytest-asyncio disabled: each test using `conduit_fake`/`conduit_client` errors at
    set-up with the message naming pytest-asyncio and how to install it; `conduit_clock`
    still works."""
    # -rN: no short summary, which on a wide terminal repeats each error's message.
    result = user_project.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider", "-rN")
    async_tests = count_tests(user_project) - 1
    result.assert_outcomes(passed=1, errors=async_tests)
    message = needs_pytest_asyncio("conduit_client")
    assert "pip install pytest-asyncio" in message and 'asyncio_mode = "auto"' in message
    assert result.stdout.str().count(message) == async_tests
    result.stdout.no_fnmatch_line("*fixture 'conduit_client' not found*")


# -- bash blocks ------------------------------------------------------------------------


def bash_commands() -> list[tuple[Block, list[str]]]:
    """Every `conduit-async` command of the README's bash blocks, as an argument list."""
    commands = []
    for block in blocks("bash"):
        for line in block.text.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "conduit-async":
                commands.append((block, words))
    return commands


@contextlib.contextmanager
def fake_server_process() -> Iterator[dict[str, str]]:
    """A fake Conduit server in its own process: its URLs and tokens (the one place to
    swap for `conduit_async.testing.FakeServerProcess`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "conduit_async.testing", "--port", "0", "--json", "--fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the fake server did not start"
        yield json.loads(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def conduit_async_command() -> list[str]:
    """The installed `conduit-async` script of this interpreter's environment (where pip
    puts it), else the same entry point through `python -m`."""
    script = Path(sys.executable).with_name("conduit-async")
    return [str(script)] if script.exists() else [sys.executable, "-m", "conduit_async"]


def run_command(args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
    command = conduit_async_command() + args[1:]
    shown = shlex.join(args)
    if args[1:2] == ["fake-server"]:
        # A server runs until stopped: it must start serving, then stop cleanly.
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=COMMAND_TIMEOUT)
        assert first and proc.returncode == 0, f"{shown}: exit {proc.returncode}\n{err}"
        return
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{shown}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize(
    "block", sorted({b for b, _ in bash_commands()}, key=lambda b: b.line), ids=lambda b: b.id
)
def test_bash_example_runs(block: Block, tmp_path: Path) -> None:
    skip_fragment(block)
    for name, text in SAMPLE_FILES.items():
        (tmp_path / name).write_text(text)
    with fake_server_process() as server:
        tokens = {"CONDUIT_TOKEN": server["org_token"], "CONDUIT_LINK_TOKEN": server["link_token"]}
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
        env.update(
            CONDUIT_BASE_URL=server["base_url"],
            CONDUIT_LINK_BASE_URL=server["link_base_url"],
            PYTHONWARNINGS="error",
        )
        for name in re.findall(r"^export (CONDUIT_\w+)=", block.text, flags=re.MULTILINE):
            assert name in tokens, f"README.md:{block.line}: no fake value for {name}"
            env[name] = tokens[name]
        for command_block, args in bash_commands():
            if command_block == block:
                run_command(args, cwd=tmp_path, env=env)
