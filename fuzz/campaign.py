"""The fuzzing campaign behind scripts/fuzz: each target in turn, for N seconds, then a summary.

Each target runs in its own process (libFuzzer ends the process on the first crash) on a working
copy of its seed corpus, so the repository's corpus grows only with --update-corpus, and then
only by libFuzzer's -merge=1 (inputs that add coverage). A crash, a hang (-timeout) or running out
of memory (-rss_limit_mb) leaves its reproducer in the work directory, which is then kept.
Replay a reproducer with `python fuzz/run.py TARGET PATH`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fuzz import CORPUS, HERE, SELFTEST, TARGETS

# libFuzzer's status lines: "#123456	DONE   cov: 179 ft: 195 corp: 13/903b ...", and with -fork
# (--keep-going) "#123456: cov: 179 ft: 195 corp: 13 exec/s: ..."
_STATUS = re.compile(r"^#(\d+):?\s+(?:\w+\s+)?cov: (\d+) ft: (\d+) corp: (\d+)", re.MULTILINE)
_EXECUTED = re.compile(r"^stat::number_of_executed_units: (\d+)", re.MULTILINE)


@dataclass
class Result:
    target: str
    executions: int
    seconds: float
    cov: int
    ft: int
    corpus: int
    returncode: int
    reproducers: list[Path]
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.reproducers


def libfuzzer_args(args: argparse.Namespace, artifacts: Path) -> list[str]:
    return [
        f"-max_total_time={args.seconds_per_target}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-max_len={args.max_len}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        # A forked child fuzzes while the parent records each crash and carries on.
        *(
            ["-fork=1", "-ignore_crashes=1", "-ignore_timeouts=1", "-ignore_ooms=1"]
            if args.keep_going
            else []
        ),
    ]


def wrapper(target: str, path: Path) -> str:
    """An executable that runs `target`: libFuzzer re-runs its argv[0] to merge corpora."""
    path.write_text(
        f'#!/bin/sh\nCROSSCAST_FUZZ_ARGV0="$0" exec {shlex.quote(sys.executable)} '
        f'{shlex.quote(str(HERE / "run.py"))} {target} "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


def run_target(target: str, args: argparse.Namespace, work: Path) -> Result:
    corpus, artifacts, log = (
        work / target / "corpus",
        work / target / "artifacts",
        work / target / "log",
    )
    shutil.copytree(args.corpus_root / target, corpus)
    artifacts.mkdir()
    run = wrapper(target, work / target / "run")
    cmd = [run, *libfuzzer_args(args, artifacts), str(corpus)]
    start = time.monotonic()
    with log.open("wb") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.monotonic() - start
    text = log.read_text(errors="replace")
    status = _STATUS.findall(text)
    executed = _EXECUTED.findall(text)
    execs, cov, ft, corp = (int(x) for x in status[-1]) if status else (0, 0, 0, 0)
    if executed:
        execs = int(executed[-1])
    result = Result(target, execs, seconds, cov, ft, corp, rc, sorted(artifacts.iterdir()), log)
    if result.ok and args.update_corpus:
        merge = [run, "-merge=1", str(args.corpus_root / target), str(corpus)]
        subprocess.run(merge, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return result


def report(r: Result) -> str:
    rate = r.executions / r.seconds if r.seconds else 0.0
    if r.ok:
        verdict = "ok"
    elif r.reproducers:
        verdict = f"FAILED: {len(r.reproducers)} reproducer(s)"
    else:
        verdict = f"FAILED (exit {r.returncode})"
    return (
        f"{r.target:22} {r.executions:>11,} execs {rate:>8,.0f}/s  cov {r.cov:>5}  ft {r.ft:>5}  "
        f"corpus {r.corpus:>5}  {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.splitlines()[0])
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help=f"default: all of {', '.join(TARGETS)}"
    )
    parser.add_argument("--seconds-per-target", type=int, default=60, metavar="N")
    parser.add_argument("--timeout", type=int, default=5, help="seconds one input may take (hang)")
    parser.add_argument("--rss-limit-mb", type=int, default=1024)
    parser.add_argument("--max-len", type=int, default=4096, help="longest input, in bytes")
    parser.add_argument(
        "--keep-going", action="store_true", help="record every crash and hang, do not stop at one"
    )
    parser.add_argument(
        "--update-corpus", action="store_true", help="merge new coverage into fuzz/corpus"
    )
    parser.add_argument(
        "--corpus-root", type=Path, default=CORPUS, help="seeds: DIR/TARGET/ (default: fuzz/corpus)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="keep logs and corpora here (default: a temporary dir)"
    )
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in (*TARGETS, SELFTEST)]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="crosscast-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for target in args.targets or TARGETS:
        r = run_target(target, args, work)
        results.append(r)
        print(report(r), flush=True)
        if not r.ok:
            print("\n".join(r.log.read_text(errors="replace").splitlines()[-40:]))
            for path in r.reproducers:
                print(
                    f"{r.target}: reproducer {path}  (replay: python fuzz/run.py {r.target} {path})"
                )
    failed = [r for r in results if not r.ok]
    total = sum(r.executions for r in results)
    seconds = sum(r.seconds for r in results)
    print(
        f"TOTAL {len(results)} targets, {total:,} executions in {seconds:.0f} s, "
        f"{len(failed)} failed{': ' + ', '.join(r.target for r in failed) if failed else ''}"
    )
    if failed or args.work_dir:
        print(f"logs and corpora: {work}")
    else:
        shutil.rmtree(work)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
