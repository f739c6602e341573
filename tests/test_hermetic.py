"""The hermetic guard fails tests that leak, and only those."""

from __future__ import annotations

import textwrap

import pytest

from tests.support.hermetic import REPOSITORY

pytest_plugins = ["pytester"]

LEAKY = textwrap.dedent(
    """
    import os
    import subprocess
    import sys

    def test_leaks_a_process():
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def test_leaks_an_environment_variable():
        os.environ["DYNOSCOPE_LEAKED"] = "1"

    def test_leaks_a_working_directory(tmp_path):
        os.chdir(tmp_path)

    def test_cleans_up(tmp_path, monkeypatch):
        monkeypatch.setenv("DYNOSCOPE_SCOPED", "1")
        monkeypatch.chdir(tmp_path)
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        process.wait()

    def test_after_the_leaks_sees_a_clean_slate():
        assert "DYNOSCOPE_LEAKED" not in os.environ
    """
)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_leaky=LEAKY)
    return pytester.runpytest_subprocess(
        "-p", "tests.support.hermetic", "-p", "no:randomly", "-p", "no:cacheprovider", *args
    )


def test_each_kind_of_leak_fails_its_own_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY))
    result = _run(pytester)
    result.assert_outcomes(passed=5, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*test_leaks_a_process*not hermetic: child processes left running: pid *",
            "*test_leaks_an_environment_variable*environment variables changed: DYNOSCOPE_LEAKED",
            "*test_leaks_a_working_directory*not hermetic: working directory changed to *",
        ]
    )


def test_a_file_left_in_the_tree_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY))
    stray = REPOSITORY / "tests" / f"stray-{pytester.path.name}.txt"
    pytester.makepyfile(
        test_stray=f"""
        from pathlib import Path

        def test_writes_into_the_repository():
            Path({str(stray)!r}).write_text("left behind")
        """
    )
    try:
        result = pytester.runpytest_subprocess("-p", "tests.support.hermetic", "-p", "no:randomly")
    finally:
        stray.unlink(missing_ok=True)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED (hermetic): the run left 1 file(s)*{stray.name}*"])


def test_processes_a_session_fixture_owns_must_be_gone_when_the_run_ends(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY))
    pytester.makepyfile(
        test_shared="""
        import subprocess
        import sys

        import pytest

        @pytest.mark.shared_processes
        def test_restarts_a_server_of_the_session():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "tests.support.hermetic", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAILED (hermetic): the run left processes running: pid *"])
