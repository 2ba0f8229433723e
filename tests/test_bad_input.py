"""Every command against the bad input a new user types, through the real command line.

One table: command line, the fragment its one-line error must hold. Every case must exit non-zero
with exactly one `error:` line holding the fragment, no traceback, and leave every file and folder
of the workspace and of the dataset exactly as it was (nothing written, nothing replaced).
Placeholders in the arguments name the workspace's files (see `workspace`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from backend.features import N_FEATURES
from backend.bank import random_bank, save_bank
from backend.dataset import open_dataset
from backend.hashing import gbuffer_tile_keys
from conftest import run_backend
from service_process import start_service, stop_service

UNWRITABLE = "/sys/neural-face-test"  # a folder nobody, root included, may create files in
PARALLEL_CASES = 4

RENDER = ["render", "--bank", "{bank}", "--gbuffer", "{gbuffer}", "--out", "{ws}/new.png"]
TRAIN = ["train", "--data", "{dataset}", "--out", "{ws}/new.nfbank", "--steps", "1"]
REPORT = ["report", "--bank", "{bank}", "--data", "{dataset}", "--out", "{ws}/new_report"]
BENCH = ["bench", "--renderer", "torch", "--sizes", "16", "--seconds", "0.01"]
GENERATE = ["generate", "--scene", "{scene}", "--out", "{ws}/new_dataset", "--samples", "1", "--resolution", "16"]
BENCH_DATASET = ["bench-dataset", "--scene", "{scene}", "--samples", "1", "--resolution", "16"]
SERVE = ["serve", "--port", "0", "--token-file", "{ws}/new_token", "--work-dir", "{ws}/new_work"]


def changed(args: list[str], option: str, value: str) -> list[str]:
    """`args` with `option`'s value replaced, or the option appended when it is not there."""
    args = list(args)
    if option in args:
        args[args.index(option) + 1] = value
        return args
    return [*args, option, value]


CASES = {
    # render: the bank
    "render bank missing": (changed(RENDER, "--bank", "{ws}/missing.nfbank"), "missing.nfbank"),
    "render bank empty": (changed(RENDER, "--bank", "{empty}"), "truncated"),
    "render bank truncated": (changed(RENDER, "--bank", "{truncated_bank}"), "truncated_bank.nfbank"),
    "render bank foreign safetensors": (changed(RENDER, "--bank", "{foreign_safetensors}"),
                                        "not a readable neural face weight bank"),
    "render bank a text file": (changed(RENDER, "--bank", "{notes}"), "not a safetensors file"),
    "render bank a folder": (changed(RENDER, "--bank", "{photos}"), "is a directory"),
    # render: the G-buffer
    "render gbuffer missing": (changed(RENDER, "--gbuffer", "{ws}/missing.gbuffer.exr"), "does not exist"),
    "render ground truth as gbuffer": (changed(RENDER, "--gbuffer", "{gt_as_gbuffer}"), "gt_as.gbuffer.exr"),
    "render gbuffer truncated": (changed(RENDER, "--gbuffer", "{truncated_gbuffer}"), "truncated.gbuffer.exr"),
    "render gbuffer empty": (changed(RENDER, "--gbuffer", "{empty_gbuffer}"), "empty.gbuffer.exr"),
    "render gbuffer a folder": (changed(RENDER, "--gbuffer", "{photos}"), "photos"),
    # render: the output and the options
    "render out a foreign png": (changed(RENDER, "--out", "{holiday_png}"), "did not write"),
    "render out a folder": (changed(RENDER, "--out", "{folder_png}"), "is a folder"),
    "render out unwritable": (changed(RENDER, "--out", UNWRITABLE + "/frame.png"), "not writable"),
    "render out under a file": (changed(RENDER, "--out", "{notes}/frame.png"), "is a file, not a folder"),
    "render out of another type": (changed(RENDER, "--out", "{ws}/new.jpg"), ".exr or .png"),
    "render background not a colour": (changed(RENDER, "--background", "grey"), "background"),
    "render background two values": (changed(RENDER, "--background", "0.1,0.2"), "background"),
    "render background missing exr": (changed(RENDER, "--background", "{ws}/missing.exr"), "missing.exr"),
    "render renderer unknown": (changed(RENDER, "--renderer", "optix"), "optix"),
    "render device unknown": (changed(RENDER, "--device", "gpu"), "gpu"),
    # train: the dataset
    "train data missing": (changed(TRAIN, "--data", "{ws}/missing_dataset"), "does not exist"),
    "train data an empty folder": (changed(TRAIN, "--data", "{empty_dir}"), "generate a dataset first"),
    "train data a file": (changed(TRAIN, "--data", "{notes}"), "notes.txt"),
    "train data truncated manifest": (changed(TRAIN, "--data", "{broken_dataset}"), "unreadable manifest"),
    # train: the output
    "train out a foreign file": (changed(TRAIN, "--out", "{notes}"), "did not write"),
    "train out an empty file": (changed(TRAIN, "--out", "{empty}"), "did not write"),
    "train out foreign safetensors": (changed(TRAIN, "--out", "{foreign_safetensors}"), "did not write"),
    "train out a folder": (changed(TRAIN, "--out", "{photos}"), "is a folder"),
    "train out unwritable": (changed(TRAIN, "--out", UNWRITABLE + "/bank.nfbank"), "not writable"),
    "train baseline out a foreign file": ([*changed(TRAIN, "--out", "{ws}/taken.nfbank"), "--baselines"],
                                          "taken.single_cost.nfbank"),
    # train: the values
    "train steps zero": (changed(TRAIN, "--steps", "0"), "positive"),
    "train steps negative": (changed(TRAIN, "--steps", "-5"), "positive"),
    "train steps not a number": (changed(TRAIN, "--steps", "many"), "many"),
    "train minutes zero": ([*TRAIN[:-2], "--minutes", "0"], "positive"),
    "train lr zero": (changed(TRAIN, "--lr", "0"), "--lr"),
    "train lr not finite": (changed(TRAIN, "--lr", "nan"), "--lr"),
    "train batch zero": (changed(TRAIN, "--batch", "0"), "positive"),
    "train widths zero": (changed(TRAIN, "--widths", "32,0"), "positive"),
    "train widths not numbers": (changed(TRAIN, "--widths", "wide"), "comma-separated"),
    "train bins absurd": (changed(TRAIN, "--bins", "40"), "--bins"),
    "train border blend wider than half a tile": ([*TRAIN, "--border-blend", "9"], "border blend 9 (0..8 pixels)"),
    "train tile size zero": (changed(TRAIN, "--tile-size", "0"), "--tile-size"),
    "train eval interval zero": (changed(TRAIN, "--eval-every", "0"), "positive"),
    "train patience negative": (changed(TRAIN, "--patience", "-1"), "--patience"),
    "train min bucket pixels negative": (changed(TRAIN, "--min-bucket-pixels", "-10"), "--min-bucket-pixels"),
    "train device unknown": (changed(TRAIN, "--device", "gpu"), "gpu"),
    # report
    "report out a file": (changed(REPORT, "--out", "{notes}"), "is a file"),
    "report out a foreign folder": (changed(REPORT, "--out", "{photos}"), "did not write"),
    "report out unwritable": (changed(REPORT, "--out", UNWRITABLE + "/report"), "not writable"),
    "report bank foreign safetensors": (changed(REPORT, "--bank", "{foreign_safetensors}"),
                                        "not a readable neural face weight bank"),
    "report data missing": (changed(REPORT, "--data", "{ws}/missing_dataset"), "does not exist"),
    "report data a file": (changed(REPORT, "--data", "{notes}"), "notes.txt"),
    "report renderer unknown": (changed(REPORT, "--renderer", "optix"), "optix"),
    # bench
    "bench bank missing": (changed(BENCH, "--bank", "{ws}/missing.nfbank"), "missing.nfbank"),
    "bench bank foreign safetensors": (changed(BENCH, "--bank", "{foreign_safetensors}"),
                                       "not a readable neural face weight bank"),
    "bench size zero": (changed(BENCH, "--sizes", "0"), "positive"),
    "bench size not a size": (changed(BENCH, "--sizes", "big"), "big"),
    "bench size absurd": (changed(BENCH, "--sizes", "100000x100000"), "100000x100000"),
    "bench seconds negative": (changed(BENCH, "--seconds", "-1"), "--seconds"),
    "bench seconds zero": (changed(BENCH, "--seconds", "0"), "--seconds"),
    "bench lights zero": (changed(BENCH, "--lights", "0"), "lights"),
    "bench renderer unknown": (changed(BENCH, "--renderer", "optix"), "optix"),
    # generate (the Blender ones are slower: a few)
    "generate out a foreign file": (changed(GENERATE, "--out", "{notes}"), "not a folder"),
    "generate samples zero": (changed(GENERATE, "--samples", "0"), "samples"),
    "generate samples not a number": (changed(GENERATE, "--samples", "ten"), "ten"),
    "generate scene a folder": (changed(GENERATE, "--scene", "{photos}"), "photos"),
    "generate scene empty": (changed(GENERATE, "--scene", "{empty_blend}"), "empty.blend"),
    "bench-dataset samples zero": (changed(BENCH_DATASET, "--samples", "0"), "samples"),
    "bench-dataset resolution negative": (changed(BENCH_DATASET, "--resolution", "-16"), "resolution"),
    "bench-cluster samples zero": (["bench-cluster", "--scene", "{scene}", "--samples", "0"], "samples"),
    # serve
    "serve port negative": (changed(SERVE, "--port", "-1"), "--port"),
    "serve port absurd": (changed(SERVE, "--port", "70000"), "--port"),
    "serve allow missing": (changed(SERVE, "--allow", "{ws}/missing_folder"), "missing_folder"),
    "serve work dir a file": (changed(SERVE, "--work-dir", "{notes}"), "notes.txt"),
    "serve upload limit zero": (changed(SERVE, "--max-upload-mb", "0"), "--max-upload-mb"),
    "serve parent pid zero": (changed(SERVE, "--parent-pid", "0"), "--parent-pid"),
    # the rest
    "addon out a file": (["addon", "--out", "{notes}"], "notes.txt"),
    "example cache a file": (["example", "--cache", "{notes}"], "notes.txt"),
}


@pytest.fixture(scope="module")
def workspace(suzanne_dataset, suzanne_blend, tmp_path_factory) -> dict[str, str]:
    """Real files of every kind a user could pass by mistake, and the placeholders naming them."""
    ws = tmp_path_factory.mktemp("bad_input")
    dataset = open_dataset(suzanne_dataset)
    index = dataset.indices("test")[0]
    record = dataset.record(index)
    gbuffer = suzanne_dataset / record["gbuffer"]
    keys = np.unique(gbuffer_tile_keys(dataset.load_gbuffer(index)))
    bank = save_bank(random_bank(5, keys[keys > 0], [N_FEATURES, 8, 3]), ws / "bank.nfbank")

    def sample_copy(name: str, data: bytes) -> Path:
        """A G-buffer-named file with the sample's record beside it, so only its content is wrong."""
        target = ws / f"{name}.gbuffer.exr"
        target.write_bytes(data)
        (ws / f"{name}.json").write_text(json.dumps(record))
        return target

    from safetensors.numpy import save

    paths = {
        "ws": ws, "dataset": suzanne_dataset, "scene": suzanne_blend, "bank": bank,
        "gbuffer": sample_copy("good", gbuffer.read_bytes()),
        "gt_as_gbuffer": sample_copy("gt_as", (suzanne_dataset / record["ground_truth"]).read_bytes()),
        "truncated_gbuffer": sample_copy("truncated", gbuffer.read_bytes()[:3000]),
        "empty_gbuffer": sample_copy("empty", b""),
        "truncated_bank": ws / "truncated_bank.nfbank", "foreign_safetensors": ws / "weights.safetensors",
        "empty": ws / "empty.nfbank", "notes": ws / "notes.txt", "holiday_png": ws / "holiday.png",
        "photos": ws / "photos", "folder_png": ws / "folder.png", "empty_dir": ws / "empty_folder",
        "broken_dataset": ws / "broken_dataset", "empty_blend": ws / "empty.blend",
    }
    paths["truncated_bank"].write_bytes(bank.read_bytes()[: bank.stat().st_size // 2])
    paths["foreign_safetensors"].write_bytes(save({"weight": np.ones((4, 4), np.float32)}, metadata={"a": "b"}))
    paths["empty"].write_bytes(b"")
    paths["empty_blend"].write_bytes(b"")
    paths["notes"].write_text("my notes, not a bank\n")
    paths["holiday_png"].write_bytes(b"\x89PNG\r\n\x1a\n not a render of ours")
    (ws / "taken.single_cost.nfbank").write_text("a file of the user's\n")
    np.save(ws / "measurements.npy", np.arange(12))  # a user's array: not a [H, W, 4] float32 frame
    paths["photos"].mkdir()
    (paths["photos"] / "beach.jpg").write_bytes(b"\xff\xd8\xff")
    (ws / "folder.npy").mkdir()
    for folder in ("folder_png", "empty_dir", "broken_dataset"):
        paths[folder].mkdir()
    manifest = (suzanne_dataset / "manifest.json").read_bytes()
    (paths["broken_dataset"] / "manifest.json").write_bytes(manifest[: len(manifest) // 2])
    return {name: str(path) for name, path in paths.items()}


def snapshot(root: str) -> dict[str, tuple]:
    """Every path under root (relative) with its kind, mode and content hash."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = os.path.join(folder, name)
            state[os.path.relpath(path, root)] = ("dir", os.stat(path).st_mode)
        for name in files:
            path = os.path.join(folder, name)
            state[os.path.relpath(path, root)] = ("file", os.stat(path).st_mode,
                                                  hashlib.sha256(Path(path).read_bytes()).hexdigest())
    return state


@pytest.fixture(scope="module")
def outcomes(workspace, tmp_path_factory) -> dict[str, tuple]:
    """Every case run once, a few at a time (each is a process start, mostly imports), each in its own
    copy of the workspace: case -> (completed process, workspace before, workspace after)."""
    base, copies = workspace["ws"], tmp_path_factory.mktemp("bad_input_cases")
    dataset_before = snapshot(workspace["dataset"])

    def run(index: int, case: str) -> tuple:
        root = str(copies / str(index))
        shutil.copytree(base, root, symlinks=True)
        paths = {name: root + value[len(base):] if value.startswith(base) else value
                 for name, value in workspace.items()}
        args, _ = CASES[case]
        before = snapshot(root)
        result = run_backend(*(arg.format(**paths) for arg in args), timeout=180)
        return result, before, snapshot(root)

    with ThreadPoolExecutor(max_workers=PARALLEL_CASES) as pool:
        done = dict(zip(CASES, pool.map(run, range(len(CASES)), CASES)))
    assert snapshot(workspace["dataset"]) == dataset_before, "a case changed the dataset"
    return done


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, outcomes):
    result, before, after = outcomes[case]
    fragment = CASES[case][1]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode not in (0, None), result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and fragment.lower() in errors[0].lower(), result.stderr[-2000:]
    assert after == before, sorted(set(after.items()) ^ set(before.items()))
    assert not os.path.exists(UNWRITABLE)


def test_every_command_is_swept():
    from backend.cli import COMMANDS

    swept = {args[0] for args, _ in CASES.values()}
    assert swept == set(COMMANDS) - {"demo"}  # demo only chains generate, train and report


def test_outputs_of_ours_are_replaced_and_a_foreign_one_only_with_overwrite(workspace, tmp_path):
    """The other side of the rule: a render replaces its own image, and --overwrite a foreign one."""
    foreign = tmp_path / "holiday.png"
    foreign.write_bytes(Path(workspace["holiday_png"]).read_bytes())
    render = ["render", "--bank", workspace["bank"], "--gbuffer", workspace["gbuffer"]]
    for out in (tmp_path / "frame.png", tmp_path / "frame.exr"):
        for _ in range(2):
            result = run_backend(*render, "--out", out)
            assert result.returncode == 0, result.stderr[-2000:]
    assert run_backend(*render, "--out", foreign).returncode == 2
    assert run_backend(*render, "--out", foreign, "--overwrite").returncode == 0
    from backend.outputs import BANK, IMAGE, check_output

    check_output(foreign, IMAGE)  # now a render of ours
    check_output(workspace["bank"], BANK)


SERVICE_CASES = {  # the service's jobs follow the same output rule: refused before a job starts
    "train bank a foreign file": ("/train", {"bank": "{notes}"}, "did not write"),
    "train bank a folder": ("/train", {"bank": "{photos}"}, "is a folder"),
    "train report_dir a file": ("/train", {"report_dir": "{notes}"}, "is a file"),
    "train report_dir a foreign folder": ("/train", {"report_dir": "{photos}"}, '"overwrite": true'),
    "render out a foreign array": ("/render", {"out": "{ws}/measurements.npy"}, "did not write"),
    "render out a folder": ("/render", {"out": "{ws}/folder.npy"}, "is a folder"),
}


@pytest.fixture(scope="module")
def service(workspace, tmp_path_factory):
    service = start_service([Path(workspace["ws"]), Path(workspace["dataset"])], tmp_path_factory.mktemp("service"))
    yield service
    stop_service(service)


@pytest.mark.parametrize("case", list(SERVICE_CASES))
def test_service_refuses_outputs_it_did_not_write(case, workspace, service):
    route, fields, fragment = SERVICE_CASES[case]
    body = {"dataset": workspace["dataset"]} if route == "/train" else \
        {"bank": workspace["bank"], "gbuffer": workspace["gbuffer"], "renderer": "torch"}
    body.update({key: value.format(**workspace) for key, value in fields.items()})
    before = snapshot(workspace["ws"]), snapshot(workspace["dataset"])
    with service.client() as client:
        answer = client.post(route, json=body)
    assert answer.status_code == 422 and fragment in answer.json()["detail"], answer.text
    assert (snapshot(workspace["ws"]), snapshot(workspace["dataset"])) == before


def test_service_replaces_its_own_frame_and_a_foreign_one_only_when_asked(workspace, service):
    body = {"bank": workspace["bank"], "gbuffer": workspace["gbuffer"], "renderer": "torch"}
    tmp_path = Path(workspace["ws"]) / "frames"  # inside the service's allowed folders
    tmp_path.mkdir()
    foreign = tmp_path / "foreign.npy"
    np.save(foreign, np.arange(3))
    with service.client() as client:
        own = {**body, "out": str(tmp_path / "frame.npy")}
        assert client.post("/render", json=own).status_code == 200
        assert client.post("/render", json=own).status_code == 200  # its own frame: replaced
        assert client.post("/render", json={**body, "out": str(foreign)}).status_code == 422
        assert np.load(foreign).shape == (3,)
        assert client.post("/render", json={**body, "out": str(foreign), "overwrite": True}).status_code == 200
    assert np.load(foreign).shape == (64, 64, 4)
