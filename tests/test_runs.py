import json

import torch

from detoxkit.runs import append_jsonl, list_checkpoints, load_checkpoint, read_jsonl, resolve_resume, save_checkpoint


def test_checkpoint_roundtrip_restores_tensors_optimizer_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, 5, {"model": model.state_dict()}, {"note": "x"}, {"model": opt})
    expected_next = torch.rand(3)
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    tensors, state = load_checkpoint(resolve_resume(tmp_path, "latest"), {"model": opt2})
    model2.load_state_dict(tensors["model"])
    assert state == {"step": 5, "note": "x"}
    assert torch.equal(model2.weight, model.weight)
    assert torch.equal(torch.rand(3), expected_next)  # RNG restored to the save point
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])


def test_keep_last_and_no_partial_folders(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"m": {"w": torch.zeros(1)}}, {}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_jsonl_log_survives_truncated_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"a": 1}, {"a": 2}])
    with path.open("a") as f:
        f.write('{"a": 3')  # a run killed mid-write
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_update_json_keeps_other_sections_and_records_who_wrote_each(tmp_path):
    from detoxkit.runs import update_json

    path = tmp_path / "results" / "bench.json"
    update_json(path, {"quality": {"j": 0.5}, "sizes": 3}, ["bench.py", "--section", "quality"])
    data = update_json(path, {"speed": {"ratio": 1.2}}, ["bench.py", "--section", "speed"])
    assert data == json.loads(path.read_text())
    assert data["quality"] == {"j": 0.5} and data["sizes"] == 3 and data["speed"] == {"ratio": 1.2}
    assert data["provenance"]["quality"]["command"] == "bench.py --section quality"
    assert data["provenance"]["speed"]["command"] == "bench.py --section speed"
    assert update_json(path, {"note": "x"})["provenance"].keys() == {"quality", "sizes", "speed"}
