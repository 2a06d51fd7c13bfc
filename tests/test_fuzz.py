"""The fuzz targets (fuzz/): every seed replayed as a unit test, and scripts/fuzz itself.

The replay is fast and needs no fuzzer: a regression in a parser's contract (an exception that
is not its documented bad-input type) shows here without fuzzing. The tests marked slow run the
fuzzer: all targets for about 40 s in total, and the runner's crash and hang reports.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import fuzz
import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = [sys.executable, "-m", "fuzz.campaign"]  # what scripts/fuzz runs, with this interpreter
CI_SECONDS = 40  # fuzzing time of the CI run, split over the targets


def seeds(target: str) -> list[Path]:
    return sorted((fuzz.CORPUS / target).iterdir())


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_seed_corpus_replays_within_the_contract(target: str) -> None:
    one_input = fuzz.checked(fuzz.load(target))
    files = seeds(target)
    assert files, f"fuzz/corpus/{target} is empty"
    for path in files:
        one_input(path.read_bytes())  # anything but the documented bad input raises here


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_seed_corpus_reaches_past_validation(target: str) -> None:
    # Seeds that are all rejected would leave the fuzzer to find the valid format by itself.
    module = fuzz.load(target)
    accepted = 0
    for path in seeds(target):
        try:
            module.one_input(path.read_bytes())
        except module.EXPECTED:
            continue
        accepted += 1
    assert accepted >= 1


def fuzz_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FUZZ, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=600
    )


def corpus_listing() -> dict[str, list[str]]:
    return {t: [p.name for p in seeds(t)] for t in fuzz.TARGETS}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_target_fuzzes_without_a_crash_or_hang() -> None:
    before = corpus_listing()
    seconds = max(1, CI_SECONDS // len(fuzz.TARGETS))
    run = fuzz_run("--seconds-per-target", str(seconds))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    for target in fuzz.TARGETS:
        assert lines[target].endswith(" ok"), run.stdout
        executions = int(lines[target].split()[1].replace(",", ""))
        assert executions > len(before[target]), lines[target]  # it fuzzed, not only replayed
    assert corpus_listing() == before  # without --update-corpus the repository corpus stays


@pytest.fixture
def selftest_corpus(tmp_path: Path) -> Path:
    (tmp_path / fuzz.SELFTEST).mkdir()
    (tmp_path / fuzz.SELFTEST / "bad").write_bytes(b"bad input")
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "kind"), [(b"crash", "crash-"), (b"hang", "timeout-")])
def test_a_crash_or_hang_fails_the_run_and_names_the_reproducer(
    selftest_corpus: Path, seed: bytes, kind: str
) -> None:
    (selftest_corpus / fuzz.SELFTEST / "trigger").write_bytes(seed)
    run = fuzz_run(
        "--corpus-root", str(selftest_corpus), "--seconds-per-target", "5", "--timeout", "1",
        fuzz.SELFTEST,
    )  # fmt: skip
    assert run.returncode == 1
    assert "FAILED" in run.stdout
    reproducers = [
        Path(line.split()[2]) for line in run.stdout.splitlines() if " reproducer " in line
    ]
    assert [p.name.startswith(kind) for p in reproducers] == [True]
    assert reproducers[0].read_bytes() == seed
    shutil.rmtree(reproducers[0].parent.parent.parent)  # the kept work directory


@pytest.mark.slow
def test_documented_bad_input_is_no_crash(selftest_corpus: Path) -> None:
    run = fuzz_run("--corpus-root", str(selftest_corpus), "--seconds-per-target", "1", "selftest")
    assert run.returncode == 0, run.stdout
    assert "TOTAL 1 targets" in run.stdout
    assert "0 failed" in run.stdout


@pytest.mark.slow
def test_update_corpus_merges_new_coverage_in(tmp_path: Path) -> None:
    (tmp_path / "frame").mkdir()  # one valid frame: the fuzzer soon finds what it does not reach
    shutil.copy(fuzz.CORPUS / "frame" / "limited-broadcast-5076", tmp_path / "frame")
    before = {p.name for p in (tmp_path / "frame").iterdir()}
    run = fuzz_run(
        "--corpus-root", str(tmp_path), "--seconds-per-target", "2", "--update-corpus", "frame"
    )
    assert run.returncode == 0, run.stdout
    after = {p.name for p in (tmp_path / "frame").iterdir()}
    assert before < after
