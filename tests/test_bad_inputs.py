"""Every case of the bad-input catalogue (tests/bad_input_cases.py): exit code, one clear line, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_input_cases import CASES, Case, Kit, tiny_checkpoint


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit(weights=tiny_checkpoint(tmp_path_factory.mktemp("kit") / "tiny.pt"))


def run_case(case: Case, argv: list[str]) -> int:
    """Run the case's command in-process, as the command line would."""
    if case.tool == "infer":
        from infer import main, parse_args

        device = [] if "--device" in argv else ["--device", "cpu"]
        return main(parse_args([*argv, "--quiet", *device]))
    from train import main as train_main
    from train import parse_args as train_args

    return train_main(train_args(argv))


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.is_dir() else set()


def test_catalogue_is_large_and_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case: Case, tmp_path: Path, kit: Kit, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    if case.setup is not None:
        case.setup(monkeypatch)
    out = tmp_path / "out"
    argv = case.build(tmp_path, kit)
    before = _listing(out)
    code = run_case(case, argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == case.code, err
    assert "Traceback" not in err, err
    if case.code != 0:
        assert len(lines) == 1, err
        for word in case.words:
            assert word.replace("{tmp}", str(tmp_path)) in lines[0], err
        # A failed run leaves nothing new in --out.
        assert _listing(out) == before, sorted(_listing(out) - before)
    else:
        for word in case.words:
            assert word.replace("{tmp}", str(tmp_path)) in err, err
    if case.check is not None:
        case.check(tmp_path)
