"""The conformance kit the way an outside author uses it: a third-party engine package
(tests/plugins/babble: an async toy LLM on `AsyncLLMEngine`), copied out of this tree, pip-installed
into a throwaway environment, runs modelyard.testing's LLM suites through its own test file,
in-process and end to end through a server that finds the engine by its entry point."""

import shutil
import subprocess

from helpers import TESTS, bridged_venv
from modelyard.testing.llm import LLMEngineSuite, LLMServerSuite


def suite_tests(suite: type) -> int:
    return sum(name.startswith("test_") for name in dir(suite))


def test_a_third_party_engine_passes_the_kit_through_its_own_tests(tmp_path):
    package = shutil.copytree(TESTS / "plugins" / "babble", tmp_path / "babble")
    python = bridged_venv(tmp_path / "venv", package)
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], cwd=package,
                         capture_output=True, text=True, timeout=600)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    # both suites ran, every test of them, and the package's own one: none skipped, none deselected
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed == suite_tests(LLMEngineSuite) + suite_tests(LLMServerSuite) + 1, summary
    assert "skipped" not in summary and "error" not in summary, summary
