"""`magnetar chat` driven through a real pseudo-terminal, as a person at a keyboard drives it.

Each test starts the REPL on the tiny random-weights model with pty.fork() (the child gets the pty
as its controlling terminal, so Ctrl+C typed as byte 0x03 reaches it as SIGINT through the line
discipline, and libedit sees a real terminal), types lines, arrow keys and Ctrl+C, and reads the
screen output. Generation is greedy (--temp 0), so a continuation can be compared across
processes: a conversation saved in one process and loaded in another must go on exactly as if it
had never left the first.

Run:  MAGNETAR=build/src/cli/magnetar /usr/bin/python3 -m pytest -v tests/cli/test_chat_pty.py
"""
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

TIMEOUT = 60.0
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="session")
def magnetar():
    path = os.environ.get("MAGNETAR")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("MAGNETAR must name the magnetar binary")
    return path


@pytest.fixture(scope="session")
def model(magnetar, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny.gguf"
    subprocess.run([magnetar, "synth", "--preset", "tiny", "--types", "q2", "-o", str(out)],
                   check=True, capture_output=True)
    return str(out)


class Repl:
    """One `magnetar chat` process on a pty."""

    def __init__(self, magnetar, model, home, *args):
        self.output = b""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            env = dict(os.environ, MAGNETAR_HOME=str(home), TERM="xterm")
            os.execve(magnetar, [magnetar, "chat", "-m", model, "--temp", "0", *args], env)
        self.expect(rb"magnetar> ")

    def send(self, data):
        os.write(self.fd, data)

    def line(self, text):
        self.send(text.encode() + b"\r")

    def read_some(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child exited and the pty closed
            return None
        if not chunk:
            return None
        self.output += chunk
        return True

    def expect(self, pattern, timeout=TIMEOUT):
        """Waits until `pattern` (bytes regex) matches the output after the last expect."""
        deadline = time.monotonic() + timeout
        start = getattr(self, "mark", 0)
        while True:
            m = re.compile(pattern).search(self.output, start)
            if m:
                self.mark = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self.read_some(left) is None:
                raise AssertionError(
                    f"did not see {pattern!r}; output after mark:\n"
                    f"{self.output[start:].decode(errors='replace')}")

    def text(self):
        return ANSI.sub(b"", self.output).decode(errors="replace")

    def wait(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                while self.read_some(0.05):
                    pass
                return os.waitstatus_to_exitcode(status)
            self.read_some(0.05)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("the REPL did not exit")


def answer_after(text, marker):
    """The answer text printed after the line that typed `marker`, up to the stats line."""
    part = text.rsplit(marker, 1)[1]  # libedit may redraw the typed line
    part = re.sub(r"prefill \[[^\]]*\][^\r\n]*?tok/s", "", part)  # the live bar, erased
    return part.split("prefill:", 1)[0].strip()


def test_commands_and_history(magnetar, model, tmp_path):
    r = Repl(magnetar, model, tmp_path, "-n", "4")
    r.line("/help")
    r.expect(rb"/save NAME")
    r.line("/nothink")
    r.expect(rb"thinking: off")
    r.line("/think-max")
    r.expect(rb"thinking: max")
    r.expect(rb"Think-Max works best")  # 32K context is short for it
    r.line("/think")
    r.expect(rb"thinking: high")
    r.line("/bogus")
    r.expect(rb"unknown command /bogus")
    r.line("/ctx")
    r.expect(rb"context: 0 of 32,768 tokens used")
    r.line("/ctx 4096")
    r.expect(rb"context: 4,096 tokens")
    r.line("/ctx")
    r.expect(rb"context: 0 of 4,096 tokens used")
    # History: the up arrow recalls the last line, which runs again.
    r.send(b"\x1b[A\r")
    r.expect(rb"context: 0 of 4,096 tokens used")
    r.line("/load nothing-saved")
    r.expect(rb"no saved conversation named nothing-saved")
    r.line("/save ../escape")
    r.expect(rb"/save needs a name")
    r.line("/quit")
    assert r.wait() == 0
    # libedit's history file escapes spaces as \040.
    history = (tmp_path / "chat_history").read_text().replace("\\040", " ").splitlines()
    assert "/ctx 4096" in history and "/help" in history


def test_answers_show_reasoning_dim_and_report_rates(magnetar, model, tmp_path):
    r = Repl(magnetar, model, tmp_path, "-n", "6")
    r.line("hello")
    m = r.expect(rb"prefill: (\d+) tokens at [0-9.]+ tok/s \(0 cached\), "
                 rb"decode: 6 tokens at [0-9.]+ tok/s \(length\)")
    assert b"\x1b[2m" in r.output, "reasoning is dim on a terminal"
    assert int(m.group(1)) > 0
    r.line("again")
    m = r.expect(rb"prefill: (\d+) tokens at [0-9.]+ tok/s \((\d+) cached\)")
    assert int(m.group(2)) > int(m.group(1)), "the second turn reuses the first"
    r.line("/quit")
    assert r.wait() == 0


def test_ctrl_c_stops_generation_and_twice_at_the_prompt_exits(magnetar, model, tmp_path):
    r = Repl(magnetar, model, tmp_path, "-n", "100000")
    r.line("tell me everything")
    r.expect(rb"\x1b\[2m.{20}", timeout=TIMEOUT)  # generation is under way
    r.send(b"\x03")
    r.expect(rb"\(stopped\)")
    r.expect(rb"\(cancelled\)")
    r.expect(rb"magnetar> ")
    r.line("/ctx")
    m = r.expect(rb"context: (\d+) of")
    assert int(m.group(1)) > 10, "the stopped answer is kept in the conversation"
    r.expect(rb"magnetar> ")
    r.send(b"\x03")
    r.expect(rb"Ctrl\+C again to exit")
    r.expect(rb"magnetar> ")
    r.send(b"\x03")
    assert r.wait() == 0


def test_progress_bar_during_a_long_read(magnetar, model, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(" ".join(f"word{i % 97}" for i in range(3000)))
    r = Repl(magnetar, model, tmp_path, "-n", "2")
    r.line(f"/read {doc}")
    r.expect(rb"prefill \[#* *\] [0-9,]+/[0-9,]+ tokens")
    r.expect(rb"decode: 2 tokens")
    r.line("/quit")
    assert r.wait() == 0


def test_save_then_load_in_a_fresh_process_continues_identically(magnetar, model, tmp_path):
    first = Repl(magnetar, model, tmp_path, "-n", "8")
    first.line("hello")
    first.expect(rb"decode: 8 tokens")
    first.line("/save chat1")
    first.expect(rb"saved .*chat1\.session")
    first.line("/quit")
    assert first.wait() == 0

    resumed = Repl(magnetar, model, tmp_path, "-n", "8")
    resumed.line("/list")
    resumed.expect(rb"chat1")
    resumed.line("/load chat1")
    resumed.expect(rb"loaded chat1: 1 turns, \d+ tokens, no prefill needed")
    resumed.line("what next")
    m = resumed.expect(rb"prefill: (\d+) tokens at [0-9.]+ tok/s \((\d+) cached\)")
    resumed_prefill, resumed_cached = int(m.group(1)), int(m.group(2))
    resumed.line("/quit")
    assert resumed.wait() == 0

    never_saved = Repl(magnetar, model, tmp_path / "other", "-n", "8")
    never_saved.line("hello")
    never_saved.expect(rb"decode: 8 tokens")
    never_saved.line("what next")
    m = never_saved.expect(rb"prefill: (\d+) tokens at [0-9.]+ tok/s \((\d+) cached\)")
    assert (resumed_prefill, resumed_cached) == (int(m.group(1)), int(m.group(2)))
    never_saved.line("/quit")
    assert never_saved.wait() == 0
    assert answer_after(resumed.text(), "what next") == answer_after(never_saved.text(),
                                                                     "what next")

    # A damaged file is refused and the conversation goes on.
    path = tmp_path / "sessions" / "chat1.session"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    r = Repl(magnetar, model, tmp_path, "-n", "2")
    r.line("/load chat1")
    r.expect(rb"error: conversation file is damaged")
    r.line("/ctx")
    r.expect(rb"context: 0 of")
    r.line("/quit")
    assert r.wait() == 0
